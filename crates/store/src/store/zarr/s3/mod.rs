//! Zarr stores on S3-compatible object storage (AWS S3, MinIO, Ceph, GCS's S3 endpoint, ...).
//!
//! [`S3Config`] (how to reach the server) is always there, so options and the command line do
//! not depend on how atlasnorm was built; the client itself, [`S3Storage`] (`object_store`
//! driven by a tokio runtime), is behind the cargo feature `s3` (on by default). Built
//! without it, every `s3://` location fails to open with one error saying so.

use std::time::Duration;

#[cfg(feature = "s3")]
mod client;
#[cfg(feature = "s3")]
mod held;
#[cfg(feature = "s3")]
mod known;
#[cfg(feature = "s3")]
pub use client::{open, S3Storage};

#[cfg(not(feature = "s3"))]
mod absent;
#[cfg(not(feature = "s3"))]
pub use absent::{open, S3Storage};

/// How to reach object storage. Every `Option` left `None` comes from the environment
/// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ALLOW_HTTP`, and the other `AWS_*` variables
/// `object_store` understands); a `Some` overrides it (command-line flags).
#[derive(Clone, Debug, PartialEq)]
pub struct S3Config {
    /// `https://host:port` of an S3-compatible server; `None`: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Permit `http://` endpoints (no TLS).
    pub allow_http: Option<bool>,
    /// Requests in flight at once, reads and writes together (also the number of pipelined
    /// chunk uploads, each holding its chunk in memory until stored).
    pub max_concurrency: usize,
    /// Retries of one request after a transient failure (0: none).
    pub max_retries: usize,
    /// No retry starts later than this after a request's first attempt.
    pub retry_timeout: Duration,
    /// First backoff between retries (doubling, up to `max_backoff`).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Establishing a connection.
    pub connect_timeout: Duration,
    /// One whole request (sending and receiving the body).
    pub request_timeout: Duration,
    /// Threads of the runtime that drives the requests.
    pub io_threads: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: None,
            max_concurrency: 32,
            max_retries: 6,
            retry_timeout: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            io_threads: 2,
        }
    }
}
