//! The S3 client (cargo feature `s3`): [`open`] builds an [`S3Storage`]: `object_store`'s `AmazonS3` client (configured from the
//! standard `AWS_*` environment plus [`S3Config`] overrides), rooted at the store's prefix, with a
//! bound on requests in flight, retries with backoff for transient failures, and zarrs'
//! async→sync adapter driven by a tokio runtime the storage owns. It implements zarrs'
//! synchronous storage traits, so everything above sees a plain [`Storage`].
//!
//! **Writes are pipelined.** `set` of a chunk starts the upload and returns; up to
//! [`S3Config::max_concurrency`] uploads are in flight at once (a further `set` waits for a free
//! slot). Every other operation — a read, a list, an erase, and the write of any metadata
//! document (`zarr.json`, `.zarray`, `.zgroup`, `.zattrs`, `.zmetadata`) — first waits for all
//! uploads to finish and reports the first failure, if any. So a store's metadata, written last,
//! is only written once every chunk it describes is stored; and once an upload has failed every
//! later write fails with the same message. [`S3Storage::flush`] is the same barrier, explicitly.
//!
//! **Failures** come out as one message naming the `s3://` URL, the problem and what to check
//! (credentials, bucket, endpoint). Transient ones (5xx, timeouts, refused or reset
//! connections) are retried with exponential backoff, at most [`S3Config::max_retries`] times
//! and for at most [`S3Config::retry_timeout`]; permanent ones (403, 404, no such bucket) are not.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::limit::LimitStore;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore as _;
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs::storage::{
    Bytes, ListableStorageTraits, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits,
    StorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix, WritableStorageTraits,
};
use zarrs_object_store::AsyncObjectStore;
use zarrs_storage::storage_adapter::async_to_sync::{
    AsyncToSyncBlockOn, AsyncToSyncStorageAdapter,
};
use zarrs_storage::{AsyncReadableStorageTraits, AsyncWritableStorageTraits};

use super::held::{absolute, HeldRanges};
use super::known::Known;
use super::S3Config;
use crate::error::{Error, Result};
use crate::store::zarr::{Prefetch, Storage};

/// An object fetch running on the storage's runtime.
type Fetch = tokio::task::JoinHandle<std::result::Result<zarrs::storage::MaybeBytes, StorageError>>;

/// A held piece of an object (see [`super::held`]): fetched once, by whichever read needs it
/// first; `None` when the fetch failed (reads inside it then go to the object itself, which
/// reports the failure in its own words).
struct Slot {
    fetch: Mutex<Option<tokio::task::JoinHandle<Option<Bytes>>>>,
    bytes: OnceLock<Option<Bytes>>,
}

impl Slot {
    fn fetching(fetch: tokio::task::JoinHandle<Option<Bytes>>) -> Self {
        Slot {
            fetch: Mutex::new(Some(fetch)),
            bytes: OnceLock::new(),
        }
    }

    fn ready(bytes: Bytes) -> Self {
        Slot {
            fetch: Mutex::new(None),
            bytes: OnceLock::from(Some(bytes)),
        }
    }

    /// The piece's bytes, waiting for its fetch if it is still in flight.
    fn bytes(&self, runtime: &Runtime) -> Option<&Bytes> {
        self.bytes
            .get_or_init(|| {
                let fetch = self
                    .fetch
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()?;
                runtime.block_on(fetch).ok().flatten()
            })
            .as_ref()
    }
}

/// Prefetched objects held at most, per request slot: a read range's chunks and the next
/// range's, whatever their number, stay bounded.
const PREFETCH_PER_SLOT: usize = 4;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Config {
    /// The endpoint requests go to, for messages.
    fn endpoint_for_messages(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"))
            .unwrap_or_else(|| "AWS S3".to_string())
    }
}

/// The S3 client with its request limit; zarrs' adapter over it.
type Raw = LimitStore<PrefixStore<AmazonS3>>;
type Inner = AsyncObjectStore<Arc<Raw>>;

/// Runs zarrs' async storage calls to completion on the storage's own runtime.
struct BlockOn(tokio::runtime::Handle);

impl AsyncToSyncBlockOn for BlockOn {
    fn block_on<F: core::future::Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

/// A zarr store under `s3://bucket/prefix`, behind zarrs' synchronous storage traits.
pub struct S3Storage {
    url: String,
    bucket: String,
    endpoint: String,
    store: Arc<Inner>,
    /// The client itself, for ranged reads of known objects: zarrs' adapter asks an object's
    /// size (a HEAD, one more round trip) before every ranged read.
    raw: Arc<Raw>,
    sync: AsyncToSyncStorageAdapter<Inner, BlockOn>,
    /// One permit per upload in flight.
    uploads: Arc<Semaphore>,
    slots: u32,
    /// The first failed upload's message; later writes fail with it.
    upload_error: Arc<Mutex<Option<String>>>,
    /// Objects being fetched ahead of their read (see [`Prefetch`]), by key.
    prefetched: Mutex<HashMap<String, Fetch>>,
    /// Byte ranges of objects fetched ahead of partial reads, and shard indexes kept.
    held: Mutex<HeldRanges<Arc<Slot>>>,
    /// Metadata documents, object sizes and listings already read (see [`Known`]): kept for
    /// an input only ([`S3Storage::remember_answers`]); an output may be written by other
    /// processes too (Dask workers).
    known: Mutex<Option<Known>>,
    /// Dropped last (fields drop in order).
    runtime: Runtime,
}

/// Opens `s3://bucket/prefix` (no requests yet; see [`S3Storage::check_input`] and
/// [`S3Storage::check_output`]).
pub fn open(bucket: &str, prefix: &str, config: &S3Config) -> Result<Arc<S3Storage>> {
    let prefix = prefix.trim_matches('/');
    let url = format!("s3://{bucket}/{prefix}");
    let fail = |problem: String| Error::input(std::path::Path::new(&url), "/", problem);

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    // AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS CLI and SDKs.
    if let Some(region) = config
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
    {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(key) = &config.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token);
    }
    if let Some(allow) = config.allow_http {
        builder = builder.with_allow_http(allow);
    }
    let client = |key: ClientConfigKey, value: String| (AmazonS3ConfigKey::Client(key), value);
    for (key, value) in [
        client(
            ClientConfigKey::ConnectTimeout,
            humantime(config.connect_timeout),
        ),
        client(ClientConfigKey::Timeout, humantime(config.request_timeout)),
        client(
            ClientConfigKey::PoolMaxIdlePerHost,
            config.max_concurrency.max(1).to_string(),
        ),
    ] {
        builder = builder.with_config(key, value);
    }
    builder = builder.with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
            base: 2.0,
        },
        max_retries: config.max_retries,
        retry_timeout: config.retry_timeout,
    });
    let s3 = builder
        .build()
        .map_err(|e| fail(format!("cannot configure the S3 client: {e}")))?;

    let slots = config.max_concurrency.clamp(1, 4096);
    let raw = Arc::new(LimitStore::new(PrefixStore::new(s3, prefix), slots));
    let store = Arc::new(AsyncObjectStore::new(raw.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads.max(1))
        .thread_name("atlasnorm-s3")
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the I/O runtime: {e}")))?;
    let sync = AsyncToSyncStorageAdapter::new(store.clone(), BlockOn(runtime.handle().clone()));
    Ok(Arc::new(S3Storage {
        endpoint: config.endpoint_for_messages(),
        url,
        bucket: bucket.to_string(),
        store,
        raw,
        sync,
        uploads: Arc::new(Semaphore::new(slots)),
        slots: slots as u32,
        upload_error: Arc::new(Mutex::new(None)),
        prefetched: Mutex::new(HashMap::new()),
        held: Mutex::new(HeldRanges::default()),
        known: Mutex::new(None),
        runtime,
    }))
}

fn humantime(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Whether `object_store` spells `key` as it is (it percent-encodes `%`, `[`, `#`, `*`, ...).
fn spelt_alike(key: &StoreKey) -> bool {
    object_store::path::Path::from(key.as_str()).as_ref() == key.as_str()
}

/// True for the keys of metadata documents (written synchronously, after all chunk uploads).
fn is_metadata(key: &StoreKey) -> bool {
    let name = key.as_str().rsplit('/').next().unwrap_or("");
    matches!(
        name,
        "zarr.json" | ".zarray" | ".zgroup" | ".zattrs" | ".zmetadata"
    )
}

impl S3Storage {
    /// The storage as zarrs reads and writes it.
    pub fn as_storage(self: &Arc<Self>) -> Storage {
        self.clone()
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Turns an `object_store` failure into one message: the URL, what went wrong, what to check.
    pub fn explain(&self, what: &str, raw: &str) -> String {
        explain_with(&self.url, &self.bucket, &self.endpoint, what, raw)
    }

    /// [`explain`](Self::explain) without the leading URL (for errors that name it already).
    fn problem(&self, what: &str, raw: &str) -> String {
        let text = self.explain(what, raw);
        text.strip_prefix(&format!("{}: ", self.url))
            .map(str::to_string)
            .unwrap_or(text)
    }

    fn err(&self, what: &str, e: StorageError) -> StorageError {
        StorageError::Other(self.explain(what, &e.to_string()))
    }

    /// Waits until no pipelined upload is in flight (every slot free again).
    fn wait_for_uploads(&self) -> std::result::Result<(), StorageError> {
        self.runtime
            .block_on(self.uploads.acquire_many(self.slots))
            .map(drop)
            .map_err(|e| StorageError::Other(format!("{}: {e}", self.url)))
    }

    /// Waits until every pipelined upload has finished; the first failure, if any.
    pub fn flush(&self) -> std::result::Result<(), StorageError> {
        self.wait_for_uploads()?;
        self.failed()
    }

    fn failed(&self) -> std::result::Result<(), StorageError> {
        match &*self.upload_error.lock().unwrap() {
            Some(message) => Err(StorageError::Other(message.clone())),
            None => Ok(()),
        }
    }

    /// For INPUT: the bucket is reachable and a zarr store (v3 `zarr.json` or v2 `.zgroup`) is
    /// at the prefix.
    pub fn check_input(&self) -> Result<()> {
        let path = std::path::Path::new(&self.url);
        // A listing tells a missing bucket from a missing key (a GET of either is a bare 404).
        self.sync
            .list_dir(&StorePrefix::root())
            .map_err(|e| Error::input(path, "/", self.problem("list objects", &e.to_string())))?;
        for name in ["zarr.json", ".zgroup"] {
            let key = StoreKey::new(name).expect("valid key");
            let size = self
                .sync
                .size_key(&key)
                .map_err(|e| Error::input(path, "/", self.problem("read", &e.to_string())))?;
            if size.is_some() {
                return Ok(());
            }
        }
        Err(Error::input(
            path,
            "/",
            format!(
                "no zarr store here: neither zarr.json nor .zgroup exists under this prefix \
                 at {}",
                self.endpoint
            ),
        ))
    }

    /// For OUTPUT: the bucket is reachable and writable (a probe object is written and removed).
    pub fn check_output(&self) -> Result<()> {
        let path = std::path::Path::new(&self.url);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = StoreKey::new(format!(".atlasnorm-probe-{}-{nanos}", std::process::id()))
            .expect("valid key");
        self.runtime
            .block_on(self.store.set(&key, Bytes::from_static(b"probe")))
            .map_err(|e| Error::output(path, self.problem("write", &e.to_string())))?;
        self.runtime
            .block_on(self.store.erase(&key))
            .map_err(|e| Error::output(path, self.problem("delete", &e.to_string())))?;
        Ok(())
    }

    /// After a failed run: waits for the uploads still in flight (ignoring their failures) and
    /// removes every object under the prefix. On error the message says which prefix still
    /// holds objects to delete by hand.
    pub fn discard(&self) -> std::result::Result<(), StorageError> {
        self.wait_for_uploads()?;
        self.with_known(|k| k.erasing_prefix(""));
        self.sync.erase_prefix(&StorePrefix::root()).map_err(|e| {
            StorageError::Other(format!(
                "{} (a partial store without root metadata is left under {}/: delete it, e.g. \
                 `aws s3 rm --recursive {}/`)",
                self.explain("delete", &e.to_string()),
                self.url,
                self.url
            ))
        })
    }

    /// Keeps the answers to metadata reads, size queries and listings from now on (see
    /// [`Known`]): for an input, which nothing writes while atlasnorm runs.
    pub fn remember_answers(&self) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.is_none() {
            *known = Some(Known::default());
        }
    }

    /// True if any object exists under the prefix (for OUTPUT without `--force`).
    pub fn exists(&self) -> std::result::Result<bool, StorageError> {
        let listing = self.list_dir(&StorePrefix::root())?;
        Ok(!listing.keys().is_empty() || !listing.prefixes().is_empty())
    }
}

enum Problem {
    Denied,
    NoBucket,
    Unreachable,
    Other,
}

fn classify(raw: &str) -> Problem {
    let has = |needle: &str| raw.contains(needle);
    if has("NoSuchBucket") {
        Problem::NoBucket
    } else if has("403 Forbidden")
        || has("401 Unauthorized")
        || has("AccessDenied")
        || has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("ExpiredToken")
        || has("InvalidToken")
    {
        Problem::Denied
    } else if has("error sending request")
        || has("connection")
        || has("Connection")
        || has("timed out")
        || has("dns error")
        || has("HTTP error")
        || has("502 Bad Gateway")
        || has("503 Service Unavailable")
        || has("504 Gateway Timeout")
        || has("500 Internal Server Error")
    {
        Problem::Unreachable
    } else {
        Problem::Other
    }
}

impl Drop for S3Storage {
    fn drop(&mut self) {
        // Let pipelined uploads finish (each is bounded by the retry timeout); a failure here
        // has been or will be reported by the metadata write or flush that callers make last.
        let _ = self.wait_for_uploads();
    }
}

impl ReadableStorageTraits for S3Storage {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> std::result::Result<MaybeBytesIterator<'a>, StorageError> {
        self.flush()?;
        let ranges: Vec<ByteRange> = byte_ranges.collect();
        if let Some(found) = self.held_ranges(key, &ranges) {
            return Ok(Some(Box::new(
                found.into_iter().map(Ok::<Bytes, StorageError>),
            )));
        }
        if let Some(Some(size)) = self.known_size(key) {
            return self.get_ranges(key, size, &ranges);
        }
        self.sync
            .get_partial_many(key, Box::new(ranges.into_iter()))
            .map_err(|e| self.err("read", e))
    }

    fn size_key(&self, key: &StoreKey) -> std::result::Result<Option<u64>, StorageError> {
        self.flush()?;
        if let Some(size) = self.known_size(key) {
            return Ok(size);
        }
        let listable = !is_metadata(key) && spelt_alike(key);
        if let Some(size) = listable.then(|| self.size_from_listing(key)).flatten() {
            return Ok(size);
        }
        let size = self.sync.size_key(key).map_err(|e| self.err("read", e))?;
        self.with_known(|k| k.read_size(key.as_str(), size));
        Ok(size)
    }

    fn supports_get_partial(&self) -> bool {
        true
    }

    fn get(&self, key: &StoreKey) -> std::result::Result<zarrs::storage::MaybeBytes, StorageError> {
        self.flush()?;
        if is_metadata(key) {
            if let Some(doc) = self.with_known(|k| k.document(key.as_str())).flatten() {
                return Ok(doc);
            }
            let doc = self
                .runtime
                .block_on(self.store.get(key))
                .map_err(|e| self.err("read", e))?;
            self.with_known(|k| k.read_document(key.as_str(), doc.clone()));
            return Ok(doc);
        }
        let fetch = self.prefetched.lock().unwrap().remove(key.as_str());
        if let Some(fetch) = fetch {
            return match self.runtime.block_on(fetch) {
                Ok(got) => got.map_err(|e| self.err("read", e)),
                Err(e) => Err(self.err("read", StorageError::Other(e.to_string()))),
            };
        }
        self.runtime
            .block_on(self.store.get(key))
            .map_err(|e| self.err("read", e))
    }
}

impl S3Storage {
    /// The size of the object at `key` (`Some(None)`: absent) as already known. A listing
    /// names objects as `object_store` spells paths, so it answers only for keys spelt the
    /// same (every zarr chunk key; not one under a group named with `[`, `%`, `#`, ...).
    fn known_size(&self, key: &StoreKey) -> Option<Option<u64>> {
        let from_listings = is_metadata(key) || spelt_alike(key);
        self.with_known(|k| match from_listings {
            true => k.size(key.as_str()),
            false => k.size_read(key.as_str()),
        })
        .flatten()
    }

    /// The size of the chunk at `key` (`None`: absent) from one listing of its directory
    /// (`X/data/c/0`: everything under `X/data/c/`), when answers are kept and the directory
    /// has not been listed yet: one request for all of an array's chunks instead of a HEAD
    /// for each (the input check asks every chunk's size). `None` when it does not apply or
    /// the listing failed (the caller then asks for the object itself).
    fn size_from_listing(&self, key: &StoreKey) -> Option<Option<u64>> {
        let (dir, _) = key.as_str().rsplit_once('/')?;
        let prefix = format!("{dir}/");
        if self.with_known(|k| k.is_listed(&prefix))? {
            return None;
        }
        let listing = self.raw.list(Some(&object_store::path::Path::from(dir)));
        let objects: Vec<(String, u64)> = self
            .runtime
            .block_on(
                listing
                    .map_ok(|meta| (meta.location.to_string(), meta.size))
                    .try_collect(),
            )
            .ok()?;
        self.with_known(|k| {
            k.read_listing(&prefix, objects);
            k.size(key.as_str())
        })
        .flatten()
    }

    /// `f` over what is known of the store, when answers are kept.
    fn with_known<R>(&self, f: impl FnOnce(&mut Known) -> R) -> Option<R> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(f)
    }

    /// `ranges` of the object at `key`, of known `size`, read from the store (without the
    /// HEAD zarrs' adapter makes first).
    fn get_ranges<'a>(
        &self,
        key: &StoreKey,
        size: u64,
        ranges: &[ByteRange],
    ) -> std::result::Result<MaybeBytesIterator<'a>, StorageError> {
        let mut within = Vec::with_capacity(ranges.len());
        for r in ranges {
            let Some(bytes) = absolute(r, size) else {
                return Err(self.err(
                    "read",
                    StorageError::Other(format!(
                        "{key}: byte range {r} past the end ({size} bytes)"
                    )),
                ));
            };
            within.push(bytes);
        }
        let path = object_store::path::Path::from(key.as_str());
        match self.runtime.block_on(self.raw.get_ranges(&path, &within)) {
            Ok(got) => {
                if let Some((r, b)) = within
                    .iter()
                    .zip(&got)
                    .find(|(r, b)| b.len() as u64 != r.end - r.start)
                {
                    return Err(self.err(
                        "read",
                        StorageError::Other(format!(
                            "{key}: {} bytes returned for a range of {}",
                            b.len(),
                            r.end - r.start
                        )),
                    ));
                }
                Ok(Some(Box::new(
                    got.into_iter().map(Ok::<Bytes, StorageError>),
                )))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("read", StorageError::Other(e.to_string()))),
        }
    }

    /// `ranges` of `key` from the held pieces, when all lie inside them and their fetches
    /// succeeded.
    fn held_ranges(&self, key: &StoreKey, ranges: &[ByteRange]) -> Option<Vec<Bytes>> {
        let served = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .serve(key.as_str(), ranges)?;
        served
            .into_iter()
            .map(|(slot, within)| {
                let bytes = slot.bytes(&self.runtime)?;
                (within.end <= bytes.len()).then(|| bytes.slice(within))
            })
            .collect()
    }
}

impl Prefetch for S3Storage {
    fn prefetch(&self, keys: Vec<StoreKey>) {
        let cap = PREFETCH_PER_SLOT * self.slots as usize;
        let mut held = self.prefetched.lock().unwrap();
        for key in keys {
            if held.len() >= cap {
                break;
            }
            if held.contains_key(key.as_str()) {
                continue;
            }
            let store = self.store.clone();
            let name = key.as_str().to_string();
            // Each request still passes the LimitStore: at most `slots` in flight in all.
            let fetch = self.runtime.spawn(async move { store.get(&key).await });
            held.insert(name, fetch);
        }
    }

    fn prefetch_ranges(
        &self,
        key: &StoreKey,
        size: u64,
        pieces: Vec<crate::store::zarr::PieceAhead>,
        window: Range<u64>,
    ) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.forget_outside(key.as_str(), &window);
        for (bytes, units) in pieces {
            if !held.can_add(key.as_str(), size, &bytes) {
                continue;
            }
            let raw = self.raw.clone();
            let path = object_store::path::Path::from(key.as_str());
            let range = bytes.clone();
            let len = (bytes.end - bytes.start) as usize;
            // Each request still passes the LimitStore: at most `slots` in flight in all.
            let fetch = self.runtime.spawn(async move {
                let got = raw.get_ranges(&path, std::slice::from_ref(&range)).await;
                got.ok()?.pop().filter(|b| b.len() == len)
            });
            held.add(
                key.as_str(),
                size,
                bytes,
                units,
                Arc::new(Slot::fetching(fetch)),
            );
        }
    }

    fn keep(&self, key: &StoreKey, size: u64, bytes: Range<u64>, data: Bytes) {
        if data.len() as u64 == bytes.end - bytes.start {
            self.held.lock().unwrap_or_else(|e| e.into_inner()).keep(
                key.as_str(),
                size,
                bytes,
                Arc::new(Slot::ready(data)),
            );
        }
    }
}

impl ListableStorageTraits for S3Storage {
    fn list(&self) -> std::result::Result<StoreKeys, StorageError> {
        self.flush()?;
        self.sync.list().map_err(|e| self.err("list objects", e))
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> std::result::Result<StoreKeys, StorageError> {
        self.flush()?;
        self.sync
            .list_prefix(prefix)
            .map_err(|e| self.err("list objects", e))
    }

    fn list_dir(
        &self,
        prefix: &StorePrefix,
    ) -> std::result::Result<StoreKeysPrefixes, StorageError> {
        self.flush()?;
        if let Some(answer) = self.with_known(|k| k.dir(prefix.as_str())).flatten() {
            return Ok(answer);
        }
        let answer = self
            .sync
            .list_dir(prefix)
            .map_err(|e| self.err("list objects", e))?;
        self.with_known(|k| k.read_dir(prefix.as_str(), answer.clone()));
        Ok(answer)
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> std::result::Result<u64, StorageError> {
        self.flush()?;
        self.sync
            .size_prefix(prefix)
            .map_err(|e| self.err("list objects", e))
    }
}

impl WritableStorageTraits for S3Storage {
    fn set(&self, key: &StoreKey, value: Bytes) -> std::result::Result<(), StorageError> {
        if is_metadata(key) {
            self.flush()?;
            self.with_known(|k| k.writing(key.as_str()));
            self.sync
                .set(key, value.clone())
                .map_err(|e| self.err("write", e))?;
            self.with_known(|k| k.wrote_document(key.as_str(), value));
            return Ok(());
        }
        self.with_known(|k| k.writing(key.as_str()));
        self.failed()?;
        let permit = self
            .runtime
            .block_on(self.uploads.clone().acquire_owned())
            .map_err(|e| StorageError::Other(format!("{}: {e}", self.url)))?;
        self.failed()?;
        let store = self.store.clone();
        let key = key.clone();
        let error = self.upload_error.clone();
        let url = self.url.clone();
        let bucket = self.bucket.clone();
        let endpoint = self.endpoint.clone();
        self.runtime.spawn(async move {
            if let Err(e) = store.set(&key, value).await {
                let mut slot = error.lock().unwrap();
                if slot.is_none() {
                    // Same wording as S3Storage::explain, without borrowing the storage.
                    let shim = Explainer {
                        url,
                        bucket,
                        endpoint,
                    };
                    *slot = Some(shim.explain(&format!("write {key}"), &e.to_string()));
                }
            }
            drop(permit);
        });
        Ok(())
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> std::result::Result<(), StorageError> {
        zarrs::storage::store_set_partial_many(self, key, offset_values)
    }

    fn erase(&self, key: &StoreKey) -> std::result::Result<(), StorageError> {
        self.flush()?;
        self.with_known(|k| k.writing(key.as_str()));
        self.sync.erase(key).map_err(|e| self.err("delete", e))
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> std::result::Result<(), StorageError> {
        self.flush()?;
        self.with_known(|k| k.erasing_prefix(prefix.as_str()));
        self.sync
            .erase_prefix(prefix)
            .map_err(|e| self.err("delete", e))
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

/// The parts of [`S3Storage::explain`] an upload task needs.
struct Explainer {
    url: String,
    bucket: String,
    endpoint: String,
}

impl Explainer {
    fn explain(&self, what: &str, raw: &str) -> String {
        explain_with(&self.url, &self.bucket, &self.endpoint, what, raw)
    }
}

fn explain_with(url: &str, bucket: &str, endpoint: &str, what: &str, raw: &str) -> String {
    let detail = match classify(raw) {
        Problem::Denied => format!(
            "access denied ({what}): check the credentials (AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that they may read and write bucket \
             '{bucket}'"
        ),
        Problem::NoBucket => format!(
            "bucket '{bucket}' does not exist at {endpoint}: check the bucket name, \
             AWS_ENDPOINT_URL and AWS_REGION"
        ),
        Problem::Unreachable => format!(
            "cannot reach the object store at {endpoint} ({what}; gave up after retries): check \
             AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for an http:// endpoint) and that the \
             server is up"
        ),
        Problem::Other => format!("{what} failed"),
    };
    format!("{url}: {detail} [{}]", compact(raw))
}

/// The error text without the server's XML document, keeping its `<Code>` and `<Message>`.
fn compact(raw: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = raw.find(&open)? + open.len();
        let end = raw[start..].find(&format!("</{name}>"))? + start;
        Some(raw[start..end].trim().to_string())
    };
    let head = raw.split("<?xml").next().unwrap_or(raw);
    let mut text = head.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(code) = element("Code") {
        text = format!("{} {code}", text.trim_end_matches(':'));
        if let Some(message) = element("Message") {
            text = format!("{text}: {message}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_and_compacted() {
        let raw = "Generic S3 error: Error performing GET http://h/b?list-type=2 in 3ms - Server \
                   returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n\
                   <Error><Code>InvalidAccessKeyId</Code><Message>The key does not exist.\
                   </Message></Error>";
        assert!(matches!(classify(raw), Problem::Denied));
        let text = compact(raw);
        assert!(!text.contains('<') && !text.contains('\n'), "{text}");
        assert!(
            text.ends_with("403 Forbidden InvalidAccessKeyId: The key does not exist."),
            "{text}"
        );
        assert!(matches!(
            classify("404 Not Found: <Code>NoSuchBucket</Code>"),
            Problem::NoBucket
        ));
        assert!(matches!(
            classify("HTTP error: error sending request"),
            Problem::Unreachable
        ));
        assert!(matches!(classify("Unexpected length"), Problem::Other));
    }

    #[test]
    fn listings_answer_only_for_keys_object_store_spells_as_they_are() {
        let key = |k: &str| StoreKey::new(k).unwrap();
        assert!(spelt_alike(&key("X/data/c/0")));
        assert!(spelt_alike(&key("X/indices/0.1")));
        assert!(!spelt_alike(&key("obs/a[b]/c/0")));
        assert!(!spelt_alike(&key("obs/50%/0")));
    }

    #[test]
    fn metadata_keys() {
        for k in [
            "zarr.json",
            "X/zarr.json",
            "X/.zarray",
            ".zgroup",
            "obs/.zattrs",
            ".zmetadata",
        ] {
            assert!(is_metadata(&StoreKey::new(k).unwrap()), "{k}");
        }
        for k in ["X/data/c/0", "X/data/0.0", "zarr.json.bak"] {
            assert!(!is_metadata(&StoreKey::new(k).unwrap()), "{k}");
        }
    }
}
