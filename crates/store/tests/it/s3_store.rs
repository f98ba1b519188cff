//! The object-storage backend against a real S3-compatible server: `moto_server` (PyPI
//! `moto[server]`, installed by scripts/python-env.sh) on a free 127.0.0.1 port, started and
//! stopped by each test. Python: `$ATLASNORM_PYTHON`, default `.tools/py312/bin/python`.

use atlasnorm_testkit::moto;

use std::sync::Arc;
use std::time::{Duration, Instant};

use moto::{enforce_auth, free_port, Moto, SlowProxy};

use atlasnorm_store::store::zarr::s3::{self, S3Config, S3Storage};
use atlasnorm_store::store::zarr::storage::{self as zstorage, Location, Purpose};
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{
    Bytes, ListableStorageTraits, ReadableStorageTraits, StoreKey, StorePrefix,
    WritableStorageTraits,
};

fn key(k: &str) -> StoreKey {
    StoreKey::new(k).unwrap()
}

fn open(moto: &Moto, bucket: &str, prefix: &str) -> Arc<S3Storage> {
    s3::open(bucket, prefix, &moto.config()).unwrap()
}

#[test]
fn keys_round_trip_under_the_prefix() {
    let moto = Moto::start();
    moto.create_bucket("atlas");
    let store = open(&moto, "atlas", "runs/out.zarr");
    store.check_output().unwrap();
    let err = store.check_input().unwrap_err().to_string();
    assert!(err.contains("no zarr store"), "{err}");
    assert!(!store.exists().unwrap(), "the probe object was removed");

    let chunk: Vec<u8> = (0..=255u8).collect();
    store
        .set(&key("X/data/c/0"), Bytes::from(chunk.clone()))
        .unwrap();
    store
        .set(&key("X/data/c/1"), Bytes::from_static(b"second"))
        .unwrap();
    store
        .set(&key("X/indptr/c/0"), Bytes::from_static(b"indptr"))
        .unwrap();
    store
        .set(
            &key("zarr.json"),
            Bytes::from_static(b"{\"zarr_format\":3}"),
        )
        .unwrap();
    store.check_input().unwrap();
    assert!(store.exists().unwrap());

    // get, size, missing keys
    assert_eq!(
        store.get(&key("X/data/c/0")).unwrap().unwrap().as_ref(),
        &chunk[..]
    );
    assert_eq!(store.size_key(&key("X/data/c/1")).unwrap(), Some(6));
    assert_eq!(store.get(&key("X/data/c/9")).unwrap(), None);
    assert_eq!(store.size_key(&key("nope")).unwrap(), None);

    // byte ranges (what zarrs uses for shard indexes)
    let parts: Vec<Bytes> = store
        .get_partial_many(
            &key("X/data/c/0"),
            Box::new(
                [
                    ByteRange::FromStart(10, Some(5)),
                    ByteRange::Suffix(4),
                    ByteRange::FromStart(250, None),
                ]
                .into_iter(),
            ),
        )
        .unwrap()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(parts[0].as_ref(), &chunk[10..15]);
    assert_eq!(parts[1].as_ref(), &chunk[252..]);
    assert_eq!(parts[2].as_ref(), &chunk[250..]);

    // listings are relative to the prefix
    let all: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        all,
        ["X/data/c/0", "X/data/c/1", "X/indptr/c/0", "zarr.json"]
    );
    let data = store
        .list_prefix(&StorePrefix::new("X/data/").unwrap())
        .unwrap();
    assert_eq!(data.len(), 2);
    let dir = store.list_dir(&StorePrefix::new("X/").unwrap()).unwrap();
    let dirs: Vec<String> = dir.prefixes().iter().map(|p| p.to_string()).collect();
    assert_eq!(dirs, ["X/data/", "X/indptr/"]);
    assert_eq!(
        store
            .size_prefix(&StorePrefix::new("X/data/").unwrap())
            .unwrap(),
        256 + 6
    );

    // the objects really are at bucket/prefix/key
    let parent = open(&moto, "atlas", "runs");
    assert_eq!(
        parent
            .get(&key("out.zarr/X/data/c/1"))
            .unwrap()
            .unwrap()
            .as_ref(),
        b"second"
    );

    // erase, erase_prefix
    store.erase(&key("X/data/c/1")).unwrap();
    store.erase(&key("X/data/c/1")).unwrap(); // erasing a missing key is fine
    assert_eq!(store.get(&key("X/data/c/1")).unwrap(), None);
    store
        .erase_prefix(&StorePrefix::new("X/").unwrap())
        .unwrap();
    let left: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(left, ["zarr.json"]);

    // discard: everything under the prefix goes (a failed run's clean-up), nothing above it
    store
        .set(&key("X/data/c/5"), Bytes::from_static(b"x"))
        .unwrap();
    store.discard().unwrap();
    assert!(!store.exists().unwrap());
    store
        .set(
            &key("zarr.json"),
            Bytes::from_static(b"{\"zarr_format\":3}"),
        )
        .unwrap();

    // through the Location seam
    let location = Location::parse(std::path::Path::new("s3://atlas/runs/out.zarr")).unwrap();
    let storage = zstorage::open_with(&location, &moto.config(), Purpose::Input).unwrap();
    assert!(storage.get(&key("zarr.json")).unwrap().is_some());
}

#[test]
fn h5ad_on_object_storage_is_refused() {
    let err = Location::parse(std::path::Path::new("s3://b/data/pbmc.h5ad"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("zarr"), "{err}");
}

#[test]
fn missing_bucket_is_one_clear_error_without_retries() {
    let moto = Moto::start();
    let t = Instant::now();
    let store = open(&moto, "no-such-bucket", "x.zarr");
    let input = store.check_input().unwrap_err().to_string();
    let output = store.check_output().unwrap_err().to_string();
    for err in [&input, &output] {
        assert!(err.contains("s3://no-such-bucket/x.zarr"), "{err}");
        assert!(
            err.contains("bucket 'no-such-bucket' does not exist"),
            "{err}"
        );
        assert!(err.contains(&moto.endpoint()), "{err}");
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    eprintln!("missing bucket: {input}");
}

#[test]
fn wrong_credentials_are_one_clear_error() {
    let moto = Moto::start();
    let (id, secret) = enforce_auth(&moto, "private");

    let mut good = moto.config();
    good.access_key_id = Some(id.clone());
    good.secret_access_key = Some(secret);
    let store = s3::open("private", "a.zarr", &good).unwrap();
    store.check_output().unwrap();
    store
        .set(&key("zarr.json"), Bytes::from_static(b"{}"))
        .unwrap();
    store.check_input().unwrap();

    for (id, secret) in [(id.as_str(), "wrong-secret"), ("AKIANOBODY0000000000", "x")] {
        let mut bad = moto.config();
        bad.access_key_id = Some(id.into());
        bad.secret_access_key = Some(secret.into());
        let t = Instant::now();
        let store = s3::open("private", "a.zarr", &bad).unwrap();
        let input = store.check_input().unwrap_err().to_string();
        let output = store.check_output().unwrap_err().to_string();
        for err in [&input, &output] {
            assert!(err.contains("s3://private/a.zarr"), "{err}");
            assert!(err.contains("access denied"), "{err}");
            assert!(err.contains("403 Forbidden"), "{err}");
            assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        eprintln!("wrong credentials: {input}");
    }
}

#[test]
fn nothing_listening_is_one_clear_error_in_bounded_time() {
    let port = free_port();
    let config = S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        allow_http: Some(true),
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        ..S3Config::default()
    };
    let t = Instant::now();
    let store = s3::open("b", "x.zarr", &config).unwrap();
    let err = store.check_input().unwrap_err().to_string();
    assert!(err.contains("cannot reach the object store"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    eprintln!("refused: {err} ({:?})", t.elapsed());
}

#[test]
fn server_killed_mid_run_fails_writes_in_bounded_time() {
    let mut moto = Moto::start();
    moto.create_bucket("out");
    let store = open(&moto, "out", "run.zarr");
    store.check_output().unwrap();
    for i in 0..20 {
        store
            .set(&key(&format!("X/data/c/{i}")), Bytes::from(vec![1u8; 1000]))
            .unwrap();
    }
    store.flush().unwrap();
    moto.kill();

    let t = Instant::now();
    let mut first_error = None;
    for i in 20..200 {
        if let Err(e) = store.set(&key(&format!("X/data/c/{i}")), Bytes::from(vec![1u8; 1000])) {
            first_error = Some(e.to_string());
            break;
        }
    }
    // The metadata write, made last, waits for the uploads and must fail.
    let meta = store
        .set(&key("zarr.json"), Bytes::from_static(b"{}"))
        .unwrap_err()
        .to_string();
    let elapsed = t.elapsed();
    assert!(meta.contains("cannot reach the object store"), "{meta}");
    assert!(meta.contains("s3://out/run.zarr"), "{meta}");
    if let Some(e) = first_error {
        assert!(e.contains("cannot reach the object store"), "{e}");
    }
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    let read = store.get(&key("X/data/c/0")).unwrap_err().to_string();
    assert!(read.contains("cannot reach the object store"), "{read}");
    eprintln!("server killed: {meta} (after {elapsed:?})");
}

#[test]
fn requests_run_concurrently_up_to_the_limit() {
    let moto = Moto::start();
    moto.create_bucket("conc");
    let proxy = SlowProxy::start(moto.port, Duration::from_millis(20));
    let n = 200;
    let run = |limit: usize, prefix: &str| {
        let mut config = moto.config();
        config.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port));
        config.max_concurrency = limit;
        let store = s3::open("conc", prefix, &config).unwrap();
        let t = Instant::now();
        for i in 0..n {
            store
                .set(&key(&format!("c/{i}")), Bytes::from(vec![7u8; 4096]))
                .unwrap();
        }
        store.flush().unwrap();
        let elapsed = t.elapsed();
        assert_eq!(store.list().unwrap().len(), n);
        elapsed
    };
    let serial = run(1, "serial.zarr");
    let parallel = run(16, "parallel.zarr");
    eprintln!(
        "{n} puts of 4 KiB through a 20 ms proxy: limit 1 {serial:?}, limit 16 {parallel:?} \
         ({:.1}x)",
        serial.as_secs_f64() / parallel.as_secs_f64()
    );
    assert!(
        parallel * 4 < serial,
        "limit 16: {parallel:?}, limit 1: {serial:?}"
    );
}
