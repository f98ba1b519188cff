//! `atlasnorm normalize` with `s3://bucket/prefix.zarr` INPUTs and OUTPUTs, end to end: the
//! real binary, configured through the standard `AWS_*` environment (and its `--s3-*` flags),
//! against `moto_server` on 127.0.0.1 (see tests/common/moto.rs). Outputs are compared object
//! for object with the same run on local disk.

use atlasnorm_testkit::moto;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlasnorm_store::store::zarr::s3::{self, S3Config, S3Storage};
use moto::{enforce_auth, python, Moto, SlowProxy};
use zarrs::storage::{
    Bytes, ListableStorageTraits, ReadableStorageTraits, StoreKey, WritableStorageTraits,
};

const BIN: &str = env!("CARGO_BIN_EXE_atlasnorm");

/// The CLI with the environment pointing at `endpoint` (nothing inherited from the caller's
/// `AWS_*`).
fn cli(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .arg("normalize")
        .args(args)
        .arg("--quiet");
    cmd
}

fn run_ok(endpoint: &str, args: &[&str]) {
    let out = cli(endpoint, args).output().unwrap();
    assert!(
        out.status.success(),
        "atlasnorm normalize {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Synthetic counts as .h5ad and (through anndata) as a local zarr v3 store.
fn inputs(dir: &Path, cells: u32, genes: u32) -> (PathBuf, PathBuf) {
    let h5ad = dir.join("in.h5ad");
    let zarr = dir.join("in.zarr");
    let out = Command::new(BIN)
        .args(["synth", h5ad.to_str().unwrap()])
        .args(["--cells", &cells.to_string(), "--genes", &genes.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, anndata; anndata.read_h5ad(sys.argv[1]).write_zarr(sys.argv[2])",
            h5ad.to_str().unwrap(),
            zarr.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (h5ad, zarr)
}

fn storage(moto: &Moto, bucket: &str, prefix: &str) -> Arc<S3Storage> {
    s3::open(bucket, prefix, &moto.config()).unwrap()
}

/// Every file under `dir`, by its key relative to `dir`.
fn local_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every object under `s3://bucket/prefix`, by its key relative to the prefix.
fn remote_tree(moto: &Moto, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let store = storage(moto, bucket, prefix);
    store
        .list()
        .unwrap()
        .into_iter()
        .map(|k| {
            let bytes = store.get(&k).unwrap().unwrap();
            (k.as_str().to_string(), bytes.to_vec())
        })
        .collect()
}

fn upload(moto: &Moto, dir: &Path, bucket: &str, prefix: &str) {
    let store = storage(moto, bucket, prefix);
    for (key, bytes) in local_tree(dir) {
        store
            .set(&StoreKey::new(key).unwrap(), Bytes::from(bytes))
            .unwrap();
    }
    store.flush().unwrap();
}

/// Metadata documents (every other object is a chunk).
fn is_metadata(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or("");
    matches!(
        name,
        "zarr.json" | ".zarray" | ".zgroup" | ".zattrs" | ".zmetadata"
    )
}

/// The same objects; metadata byte for byte; chunks byte for byte or, where their bytes
/// differ (inner chunks of a shard are stored in the order they finish encoding, also on
/// local disk), the same decoded values bit for bit (zarr-python over both stores).
fn assert_same_tree(what: &str, got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    let keys = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "{what}: different objects");
    let mut differ = Vec::new();
    for (key, bytes) in want {
        if got[key] != *bytes {
            assert!(!is_metadata(key), "{what}: {key} differs");
            let array = key.rsplit_once("/c/").map(|x| x.0).unwrap_or(key);
            if !differ.iter().any(|a: &String| a == array) {
                differ.push(array.to_string());
            }
        }
    }
    if differ.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, tree) in [("got", got), ("want", want)] {
        for (key, bytes) in tree {
            let path = dir.path().join(name).join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
    let script = "import sys, zarr, numpy as np\n\
        a, b = zarr.open_group(sys.argv[1], mode='r'), zarr.open_group(sys.argv[2], mode='r')\n\
        for p in sys.argv[3:]:\n\
        \x20   x, y = a[p][...], b[p][...]\n\
        \x20   assert x.dtype == y.dtype and x.shape == y.shape, p\n\
        \x20   same = np.array_equal(x.view(np.uint8), y.view(np.uint8)) if x.dtype.kind in 'iufb' \
        else np.array_equal(x, y)\n\
        \x20   assert same, p\n";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(dir.path().join("got"))
        .arg(dir.path().join("want"))
        .args(&differ)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: decoded arrays differ: {}",
        stderr(&out)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn s3_and_local_runs_give_the_same_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (h5ad, zarr) = inputs(dir.path(), 2000, 1500);
    let moto = Moto::start();
    moto.create_bucket("input");
    moto.create_bucket("out");
    upload(&moto, &zarr, "input", "data/in.zarr");
    let ep = moto.endpoint();
    let opts = ["--key-added", "factor", "--zarr-chunk", "4096"];
    let with = |io: [&str; 2]| -> Vec<String> {
        io.iter()
            .chain(opts.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |io: [&str; 2]| {
        let args = with(io);
        run_ok(&ep, &args.iter().map(String::as_str).collect::<Vec<_>>());
    };

    // Local references.
    let ref_zarr = dir.path().join("ref.zarr");
    let ref_h5ad_zarr = dir.path().join("ref_from_h5ad.zarr");
    let ref_h5ad = dir.path().join("ref.h5ad");
    run([s(&zarr), s(&ref_zarr)]);
    run([s(&h5ad), s(&ref_h5ad_zarr)]);
    run([s(&zarr), s(&ref_h5ad)]);
    let want = local_tree(&ref_zarr);
    assert!(
        want.contains_key("zarr.json") && want.len() > 20,
        "{want:?}"
    );

    let t = Instant::now();
    run(["s3://input/data/in.zarr", "s3://out/s3-s3.zarr"]);
    eprintln!("s3 -> s3: {:?}", t.elapsed());
    assert_same_tree("s3 -> s3", &remote_tree(&moto, "out", "s3-s3.zarr"), &want);

    let local = dir.path().join("from-s3.zarr");
    run(["s3://input/data/in.zarr", s(&local)]);
    assert_same_tree("s3 -> local zarr", &local_tree(&local), &want);

    run([s(&zarr), "s3://out/local-s3.zarr/"]);
    assert_same_tree(
        "local zarr -> s3",
        &remote_tree(&moto, "out", "local-s3.zarr"),
        &want,
    );

    run([s(&h5ad), "s3://out/h5ad-s3.zarr"]);
    assert_same_tree(
        "local h5ad -> s3",
        &remote_tree(&moto, "out", "h5ad-s3.zarr"),
        &local_tree(&ref_h5ad_zarr),
    );

    let local_h5ad = dir.path().join("from-s3.h5ad");
    run(["s3://input/data/in.zarr", s(&local_h5ad)]);
    let same = std::fs::read(&local_h5ad).unwrap() == std::fs::read(&ref_h5ad).unwrap();
    if !same {
        // HDF5 files may differ in bytes they do not mean anything by: compare contents.
        let out = Command::new(python())
            .args([
                "-c",
                "import sys, anndata, numpy as np\n\
                 a, b = anndata.read_h5ad(sys.argv[1]), anndata.read_h5ad(sys.argv[2])\n\
                 assert (a.X != b.X).nnz == 0 and a.X.dtype == b.X.dtype\n\
                 assert np.array_equal(a.X.data.view(np.uint32), b.X.data.view(np.uint32))\n\
                 assert a.obs.equals(b.obs) and a.var.equals(b.var)\n\
                 assert a.uns.keys() == b.uns.keys()",
                s(&local_h5ad),
                s(&ref_h5ad),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "s3 -> local h5ad: {}", stderr(&out));
    }

    // The input was not touched.
    assert_same_tree(
        "input",
        &remote_tree(&moto, "input", "data/in.zarr"),
        &local_tree(&zarr),
    );
}

#[test]
fn an_existing_output_prefix_is_refused_without_force_and_replaced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, zarr) = inputs(dir.path(), 300, 200);
    let moto = Moto::start();
    moto.create_bucket("out");
    let store = storage(&moto, "out", "taken.zarr");
    store
        .set(
            &StoreKey::new("stale/object").unwrap(),
            Bytes::from_static(b"x"),
        )
        .unwrap();
    store.flush().unwrap();

    let out = cli(&moto.endpoint(), &[s(&zarr), "s3://out/taken.zarr"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("s3://out/taken.zarr"), "{err}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert!(remote_tree(&moto, "out", "taken.zarr").contains_key("stale/object"));

    run_ok(
        &moto.endpoint(),
        &[s(&zarr), "s3://out/taken.zarr", "--force"],
    );
    let reference = dir.path().join("ref.zarr");
    run_ok(&moto.endpoint(), &[s(&zarr), s(&reference)]);
    assert_same_tree(
        "--force",
        &remote_tree(&moto, "out", "taken.zarr"),
        &local_tree(&reference),
    );

    // OUTPUT = INPUT (another spelling) is refused before anything is touched.
    let out = cli(
        &moto.endpoint(),
        &["s3://out/taken.zarr", "s3://out/taken.zarr/", "--force"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("OUTPUT is the INPUT"),
        "{}",
        stderr(&out)
    );
}

/// A bigger input written through a slow proxy, so that the run is still uploading when the
/// proxy is cut.
fn slow_upload_setup(dir: &Path) -> (Moto, SlowProxy, PathBuf) {
    let (_, zarr) = inputs(dir, 6000, 2000);
    let moto = Moto::start();
    moto.create_bucket("out");
    let proxy = SlowProxy::start(moto.port, Duration::from_millis(10));
    (moto, proxy, zarr)
}

fn slow_args(zarr: &Path) -> Vec<String> {
    [
        s(zarr),
        "s3://out/run.zarr",
        "--zarr-chunk",
        "2000",
        "--zarr-shard",
        "0",
        "--s3-max-requests",
        "2",
        "--s3-retries",
        "1",
        "--s3-retry-timeout",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Waits until some objects are stored under the prefix (the run is uploading).
fn wait_for_uploads(moto: &Moto, child: &mut std::process::Child) {
    let store = storage(moto, "out", "run.zarr");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if store.list().unwrap().len() >= 20 {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it uploaded much"
        );
        assert!(Instant::now() < deadline, "no uploads within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_root_metadata(tree: &BTreeMap<String, Vec<u8>>) -> bool {
    [".zgroup", "zarr.json", ".zmetadata", ".zattrs"]
        .iter()
        .any(|k| tree.contains_key(*k))
}

#[test]
fn server_gone_mid_run_is_a_clear_error_and_leaves_no_complete_looking_output() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy, zarr) = slow_upload_setup(dir.path());
    let args = slow_args(&zarr);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut child = cli(
        &endpoint,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_uploads(&moto, &mut child);
    proxy.cut();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let elapsed = t.elapsed();
    let err = stderr(&out);
    eprintln!("server gone after {elapsed:?}:\n{err}");
    assert!(!out.status.success());
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    assert!(err.contains("s3://out/run.zarr"), "{err}");
    assert!(err.contains("cannot reach the object store"), "{err}");
    // The clean-up could not reach the server either: it says what is left.
    assert!(
        err.contains("a partial store without root metadata is left under s3://out/run.zarr/"),
        "{err}"
    );
    let left = remote_tree(&moto, "out", "run.zarr");
    assert!(!left.is_empty());
    assert!(
        !has_root_metadata(&left),
        "root metadata written: {:?}",
        left.keys().filter(|k| !k.contains('/')).collect::<Vec<_>>()
    );
}

#[test]
fn an_interrupted_run_removes_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy, zarr) = slow_upload_setup(dir.path());
    let args = slow_args(&zarr);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut child = cli(
        &endpoint,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_uploads(&moto, &mut child);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    eprintln!("interrupted ({:?}):\n{err}", t.elapsed());
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("the unfinished store under s3://out/run.zarr was removed"),
        "{err}"
    );
    assert!(remote_tree(&moto, "out", "run.zarr").is_empty());
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

#[test]
fn wrong_credentials_and_missing_buckets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, zarr) = inputs(dir.path(), 200, 100);
    let moto = Moto::start();
    let (id, secret) = enforce_auth(&moto, "private");
    let ep = moto.endpoint();
    let local_out = dir.path().join("out.zarr");
    let check = |args: &[&str], env: &[(&str, &str)], want: &[&str]| {
        let mut cmd = cli(&ep, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let t = Instant::now();
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        eprintln!("{args:?}: {err} ({:?})", t.elapsed());
        assert!(!out.status.success(), "{err}");
        for w in want {
            assert!(err.contains(w), "wanted {w:?} in: {err}");
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(!err.contains("panicked"), "{err}");
    };
    let bad = [
        ("AWS_ACCESS_KEY_ID", id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", "wrong"),
    ];
    check(
        &[s(&zarr), "s3://private/x.zarr"],
        &bad,
        &[
            "s3://private/x.zarr",
            "access denied",
            "AWS_SECRET_ACCESS_KEY",
        ],
    );
    check(
        &["s3://private/x.zarr", s(&local_out)],
        &bad,
        &["s3://private/x.zarr", "access denied"],
    );
    check(
        &[s(&zarr), "s3://no-such-bucket/x.zarr"],
        &[
            ("AWS_ACCESS_KEY_ID", id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ],
        &["bucket 'no-such-bucket' does not exist"],
    );
    // Authentication on: moto wants the IAM user's key; a missing bucket is still named.
    check(
        &["s3://nobucket/x.zarr", s(&local_out)],
        &bad,
        &["s3://nobucket/x.zarr"],
    );
    check(
        &[s(&zarr), "s3://private/x.h5ad"],
        &[],
        &["use a zarr store"],
    );
    assert!(!local_out.exists());
}

#[test]
fn flags_override_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (_, zarr) = inputs(dir.path(), 200, 100);
    let moto = Moto::start();
    moto.create_bucket("out");
    // The environment points nowhere; --s3-endpoint wins.
    let dead = format!("http://127.0.0.1:{}", moto::free_port());
    let ep = moto.endpoint();
    run_ok(
        &dead,
        &[
            s(&zarr),
            "s3://out/flags.zarr",
            "--s3-endpoint",
            &ep,
            "--s3-allow-http",
        ],
    );
    assert!(remote_tree(&moto, "out", "flags.zarr").contains_key("zarr.json"));
    let _ = S3Config::default();
}

/// An s3 input of many small chunks through a 20 ms link: completes, and prints the time
/// and the connections opened (a figure for tuning read concurrency; not a bound).
#[test]
fn an_s3_input_of_many_chunks_over_a_slow_link() {
    let dir = tempfile::tempdir().unwrap();
    // Many chunks: a local copy re-chunked small.
    let args = ["--zarr-chunk", "5000", "--zarr-shard", "0", "--no-log1p"];
    let (moto, _) = rechunked_input_on_s3(dir.path(), (4000, 2000), "small.zarr", &args);
    let proxy = SlowProxy::start(moto.port, Duration::from_millis(20));
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let t = Instant::now();
    let out = dir.path().join("out.zarr");
    run_ok(
        &endpoint,
        &["s3://input/small.zarr", s(&out), "--threads", "2"],
    );
    eprintln!(
        "s3 -> local through a 20 ms proxy: {:?}, {} connections",
        t.elapsed(),
        proxy.connections()
    );
    assert!(out.join("zarr.json").exists());
}

/// Synthetic counts (`cells`, `genes`) re-chunked by `atlasnorm normalize IN LOCAL ARGS`
/// into `dir/NAME` (a store of the layout a test needs), uploaded to `s3://input/NAME` on a
/// fresh moto server.
fn rechunked_input_on_s3(
    dir: &Path,
    (cells, genes): (u32, u32),
    name: &str,
    args: &[&str],
) -> (Moto, PathBuf) {
    let (_, zarr) = inputs(dir, cells, genes);
    let moto = Moto::start();
    moto.create_bucket("input");
    let local = dir.join(name);
    let mut all = vec![s(&zarr), s(&local)];
    all.extend_from_slice(args);
    run_ok(&moto.endpoint(), &all);
    upload(&moto, &local, "input", name);
    (moto, local)
}

/// Elements of the 1-D array at `array` (e.g. `X/data`) of a local zarr v3 store.
fn array_len(store: &Path, array: &str) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join(array).join("zarr.json")).unwrap())
            .unwrap();
    meta["shape"][0].as_u64().unwrap()
}

/// A sharded input (many shards of many inner chunks; row blocks that end inside inner
/// chunks) read from S3: its inner chunks are fetched ahead as a few ranged GETs per shard
/// (adjacent ones coalesced), its metadata and listings once, and the output is the local
/// run's. Without read-ahead every inner chunk is a GET of its own in each pass (three
/// reads of an inner chunk's worth: data and indices in pass 1, data in pass 2).
#[test]
fn a_sharded_s3_input_is_read_ahead_in_few_requests_and_gives_the_local_result() {
    let dir = tempfile::tempdir().unwrap();
    let inner = 4096;
    let (chunk, shard) = (inner.to_string(), (32 * inner).to_string());
    let args = ["--zarr-chunk", &chunk, "--zarr-shard", &shard, "--no-log1p"];
    let (moto, sharded) = rechunked_input_on_s3(dir.path(), (6000, 1500), "sharded.zarr", &args);
    let nnz = array_len(&sharded, "X/data");
    let inner_chunks = nnz.div_ceil(inner) as usize;
    assert!(inner_chunks > 300, "{inner_chunks} inner chunks");
    let proxy = SlowProxy::start(moto.port, Duration::ZERO);
    let through_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let cases: [&[&str]; 3] = [
        &["--block-values", "7001"],
        &[
            "--target-sum",
            "1e4",
            "--block-values",
            "20000",
            "--threads",
            "1",
        ],
        &["--key-added", "f"],
    ];
    for (i, extra) in cases.iter().enumerate() {
        let local = dir.path().join(format!("local{i}.zarr"));
        let args = |input: &str, output: &Path| -> Vec<String> {
            [input, s(output)]
                .iter()
                .chain(extra.iter())
                .map(|a| a.to_string())
                .collect()
        };
        let local_args = args(s(&sharded), &local);
        run_ok(
            &moto.endpoint(),
            &local_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let from_s3 = dir.path().join(format!("s3-{i}.zarr"));
        let (gets_before, heads_before) = proxy.requests();
        let s3_args = args("s3://input/sharded.zarr", &from_s3);
        run_ok(
            &through_proxy,
            &s3_args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let (gets, heads) = proxy.requests();
        let (gets, heads) = (gets - gets_before, heads - heads_before);
        eprintln!("{extra:?}: {gets} GETs, {heads} HEADs for {inner_chunks} inner chunks");
        assert_same_tree(
            &format!("s3 -> local {extra:?}"),
            &local_tree(&from_s3),
            &local_tree(&local),
        );
        assert!(
            gets + heads < inner_chunks,
            "{extra:?}: {gets} GETs and {heads} HEADs for {inner_chunks} inner chunks"
        );
    }
}
