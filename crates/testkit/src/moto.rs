//! A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]`, installed by
//! scripts/python-env.sh) on a free 127.0.0.1 port, started and stopped by each test, plus
//! helpers (raw HTTP, authentication, a slow or cuttable proxy). Python: `$ATLASNORM_PYTHON`,
//! default `.tools/py312/bin/python`. Included with `#[path = "common/moto.rs"] mod moto;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use atlasnorm_store::store::zarr::s3::S3Config;

pub fn python() -> PathBuf {
    match std::env::var_os("ATLASNORM_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => crate::repo_root().join(".tools/py312/bin/python"),
    }
}

/// A `moto_server` process on 127.0.0.1; killed (and reaped) on drop.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    _logs: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let py = python();
        assert!(
            py.exists(),
            "no Python at {} (run scripts/python-env.sh or set ATLASNORM_PYTHON)",
            py.display()
        );
        let logs = tempfile::tempdir().unwrap();
        let log_path = logs.path().join("moto.log");
        let mut moto = Moto {
            child: None,
            port: 0,
            _logs: logs,
        };
        for _attempt in 0..5 {
            moto.port = free_port();
            let log = std::fs::File::create(&log_path).unwrap();
            moto.child = Some(
                Command::new(&py)
                    .args(["-m", "moto.server", "-H", "127.0.0.1"])
                    .args(["-p", &moto.port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display())),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
                if let Some(status) = moto.child.as_mut().unwrap().try_wait().unwrap() {
                    moto.child = None;
                    let text = log();
                    // Lost the port to another process: try another one.
                    assert!(
                        text.contains("Address already in use"),
                        "moto_server exited ({status}); is moto[server] installed \
                         (scripts/python-env.sh)? log:\n{text}"
                    );
                    break;
                }
                if http(moto.port, "GET", "/moto-api/data.json", b"").is_ok() {
                    return moto;
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server not ready within 30 s; log:\n{}",
                    log()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start moto_server on a free port");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A configuration for this server with short, bounded retries.
    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            session_token: None,
            allow_http: Some(true),
            max_concurrency: 16,
            max_retries: 2,
            retry_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            io_threads: 2,
        }
    }

    /// Creates a bucket (moto accepts unsigned requests while authentication is off).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = http(self.port, "PUT", &format!("/{name}"), b"").unwrap();
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One plain HTTP/1.1 request; (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}

/// Sets up an IAM user allowed everything, a bucket, then switches authentication on.
pub fn enforce_auth(moto: &Moto, bucket: &str) -> (String, String) {
    let script = format!(
        r#"
import boto3, json
kw = dict(endpoint_url="{ep}", region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="atlas")
policy = {{"Version": "2012-10-17",
          "Statement": [{{"Effect": "Allow", "Action": "*", "Resource": "*"}}]}}
iam.put_user_policy(UserName="atlas", PolicyName="all", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="atlas")["AccessKey"]
boto3.client("s3", **kw).create_bucket(Bucket="{bucket}")
print(key["AccessKeyId"], key["SecretAccessKey"])
"#,
        ep = moto.endpoint()
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace();
    let id = words.next().unwrap().to_string();
    let secret = words.next().unwrap().to_string();
    let (status, body) = http(moto.port, "POST", "/moto-api/reset-auth", b"0").unwrap();
    assert_eq!(status, 200, "{body}");
    (id, secret)
}

/// A TCP proxy that holds every client→server read back by `delay`: a stand-in for the
/// round-trip time to real object storage. [`SlowProxy::cut`] drops every connection and
/// refuses new ones (the server "goes away" while the server's state stays inspectable).
pub struct SlowProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<TcpStream>>>,
    requests: Arc<Requests>,
}

/// Requests without a body seen going to the server, by method: each is written in one
/// piece and the next only follows the answer, so a read that starts with the method is one.
#[derive(Default)]
struct Requests {
    gets: AtomicUsize,
    heads: AtomicUsize,
}

impl SlowProxy {
    pub fn start(upstream: u16, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stopped, tracked) = (stop.clone(), open.clone());
        let requests = Arc::new(Requests::default());
        let seen = requests.clone();
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        {
                            let mut t = tracked.lock().unwrap();
                            t.push(client.try_clone().unwrap());
                            t.push(server.try_clone().unwrap());
                        }
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        let seen = seen.clone();
                        thread::spawn(move || {
                            pump_with(client, server, delay, |bytes| {
                                if bytes.starts_with(b"GET ") {
                                    seen.gets.fetch_add(1, Ordering::Relaxed);
                                } else if bytes.starts_with(b"HEAD ") {
                                    seen.heads.fetch_add(1, Ordering::Relaxed);
                                }
                            })
                        });
                        thread::spawn(move || pump(s2, c2, Duration::ZERO));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
            // The listener is dropped here: new connections are refused.
        });
        SlowProxy {
            port,
            stop,
            open,
            requests,
        }
    }

    /// GET and HEAD requests passed on so far.
    pub fn requests(&self) -> (usize, usize) {
        (
            self.requests.gets.load(Ordering::Relaxed),
            self.requests.heads.load(Ordering::Relaxed),
        )
    }

    /// Connections opened so far (with a keep-alive pool: about the peak of requests in
    /// flight at once).
    pub fn connections(&self) -> usize {
        self.open.lock().unwrap().len() / 2
    }

    /// Stops accepting and resets every open connection.
    pub fn cut(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Let the accept loop notice and drop the listener.
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn pump(from: TcpStream, to: TcpStream, delay: Duration) {
    pump_with(from, to, delay, |_| {});
}

/// [`pump`], showing `seen` each piece read before it is passed on.
fn pump_with(mut from: TcpStream, mut to: TcpStream, delay: Duration, seen: impl Fn(&[u8])) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen(&buf[..n]);
                thread::sleep(delay);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
