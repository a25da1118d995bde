//! Real servers for the remote-cache tests: redis-server and nginx (WebDAV
//! PUT), each started on a free loopback port in its own temp directory and
//! killed when dropped. Nothing listens beyond 127.0.0.1.
//!
//! The tests that use them are `#[ignore = "needs redis-server and nginx"]`:
//! `.ci/run` installs both (Debian's redis-server and nginx-light) and runs
//! them; where a binary is missing they fail, never pass (see
//! [`require`]).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::is_root;

/// Fail, never skip, a test whose server binary is missing.
#[track_caller]
pub fn require(bin: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("this test needs {bin}: `apt-get install redis-server nginx-light` (.ci/run does)")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start a server on a free port: `spawn` starts it listening on the port
/// it is given. A port is free when chosen but may be taken before the
/// server binds it (tests run in parallel): then another port is tried.
fn start(what: &str, log: &Path, mut spawn: impl FnMut(u16) -> Child) -> (Child, u16) {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(port);
        match wait_for(port, &mut child) {
            Ok(()) => return (child, port),
            Err(why) => {
                kill(&mut child);
                last = format!("{why}: {}", fs::read_to_string(log).unwrap_or_default());
            }
        }
    }
    panic!("{what} did not start: {last}")
}

/// Wait until `child` accepts connections on `port`, and is still running
/// then (not another server that took the port).
fn wait_for(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited ({status})"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(30));
            return match child.try_wait().unwrap() {
                Some(status) => Err(format!("exited ({status})")),
                None => Ok(()),
            };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("not listening on port {port} after 10 s"))
}

/// Kill a child with SIGKILL and reap it.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL a server that leads its own process group (its workers too),
/// then reap it.
fn kill_group(child: &mut Child) {
    if child.try_wait().ok().flatten().is_none() {
        // SAFETY: kill(2) on the process group of a child we started and
        // have not reaped, so its id is still ours.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    }
    kill(child);
}

/// An nginx serving a WebDAV root at `/cache/` (PUT enabled).
pub struct Nginx {
    child: Child,
    dir: TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Nginx {
    /// The usual cache: GET, HEAD and PUT under `/cache/`.
    pub fn start() -> Nginx {
        Nginx::with_location(
            "dav_methods PUT DELETE; create_full_put_path on; client_max_body_size 0;",
        )
    }

    /// nginx with `directives` in the `/cache/` location (which maps to the
    /// same root whatever they say).
    pub fn with_location(directives: &str) -> Nginx {
        let nginx = require("nginx");
        let dir = tempfile::Builder::new()
            .prefix("memorun-nginx")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["logs", "tmp", "dav/cache"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let d = d.display();
        // Without `user root;`, root's workers drop to nobody and cannot
        // write the root: every PUT would fail.
        let user = if is_root() { "user root;" } else { "" };
        let conf_path = dir.path().join("nginx.conf");
        let log = dir.path().join("logs/stderr.log");
        let (child, port) = start("nginx", &log, |port| {
            let conf = format!(
                "{user}
daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off; client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/p;
  fastcgi_temp_path {d}/tmp/f; uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;
  server {{
    listen 127.0.0.1:{port}; root {d}/dav;
    location /cache/ {{ {directives} }}
  }}
}}
"
            );
            fs::write(&conf_path, conf).unwrap();
            // Its own process group, so that killing the group takes the
            // workers too, even one the master is forking right then.
            Command::new(&nginx)
                .process_group(0)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        Nginx { child, dir, port }
    }

    /// The remote URL, with `userinfo` (`user:pass@`) if not empty.
    pub fn url_with(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}/cache", self.port)
    }

    /// The remote URL.
    pub fn url(&self) -> String {
        self.url_with("")
    }

    /// The directory the objects are stored in (the URL's base).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("dav/cache")
    }

    /// Where nginx keeps request bodies while they arrive.
    pub fn body_temp(&self) -> PathBuf {
        self.dir.path().join("tmp/body")
    }

    /// Every object stored, as paths relative to the root, sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(self.root())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                e.path()
                    .strip_prefix(self.root())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        out.sort();
        out
    }

    /// SIGKILL the master and its worker (its process group).
    pub fn kill(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-server configured as a cache (no persistence, LRU eviction).
pub struct Redis {
    child: Child,
    _dir: TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// A cache of at most `maxmemory` (a Redis size: `64mb`).
    pub fn start_with(maxmemory: &str) -> Redis {
        let bin = require("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("memorun-redis")
            .tempdir()
            .unwrap();
        let log = dir.path().join("redis.log");
        let (child, port) = start("redis-server", &log, |port| {
            Command::new(&bin)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args([
                    "--maxmemory",
                    maxmemory,
                    "--maxmemory-policy",
                    "allkeys-lru",
                ])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        Redis {
            child,
            _dir: dir,
            port,
        }
    }

    /// A cache of 1 GiB.
    pub fn start() -> Redis {
        Redis::start_with("1gb")
    }

    /// The remote URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Run one command, given as arguments, and return the raw reply.
    pub fn cmd(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"*1\r\n$4\r\nQUIT\r\n");
        s.write_all(&req).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        reply
    }

    /// `CLIENT PAUSE MS KIND` (`ALL` or `WRITE`): the server holds its
    /// clients' commands for that long.
    pub fn pause(&self, ms: u32, kind: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let ms = ms.to_string();
        let args = [&b"CLIENT"[..], b"PAUSE", ms.as_bytes(), kind.as_bytes()];
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).unwrap();
        // "+OK\r\n"; a QUIT would be paused too.
        let mut reply = [0u8; 5];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+OK\r\n");
    }

    /// The keys memorun stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        let reply = String::from_utf8_lossy(&self.cmd(&[b"KEYS", b"memorun/*"])).into_owned();
        let mut keys: Vec<String> = reply
            .lines()
            .filter(|l| l.starts_with("memorun/"))
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    /// SIGKILL it.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A listener that accepts connections and never answers (the kernel
/// completes the handshakes; nothing reads or writes).
pub struct Silent {
    _listener: TcpListener,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Silent {
    /// Listen on a free loopback port.
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        Silent {
            _listener: listener,
            port,
        }
    }
}

/// The `garage` binary: on PATH, or where `cargo install` puts it. Fails,
/// never skips, when it is missing.
#[track_caller]
pub fn require_garage() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("garage"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("this test needs garage: `cargo install --locked garage` (.ci/run does)")
        })
}

/// An S3 access key.
#[derive(Clone)]
pub struct S3Key {
    /// The key id (`GK…`).
    pub id: String,
    /// The secret.
    pub secret: String,
}

/// A single-node Garage cluster (replication factor 1, SQLite metadata,
/// blocks stored uncompressed so that what it writes tracks what it
/// receives) with one bucket, `memorun`, a read-write key and a read-only key; its
/// S3 API and its website endpoint on loopback ports.
pub struct Garage {
    child: Child,
    dir: TempDir,
    garage: PathBuf,
    /// The S3 API's port on 127.0.0.1.
    pub port: u16,
    /// The website endpoint's port on 127.0.0.1 (public, unauthenticated
    /// GET and HEAD of a bucket with website access).
    pub web_port: u16,
    /// Reads and writes `memorun`.
    pub rw: S3Key,
    /// Only reads it.
    pub ro: S3Key,
}

/// The bucket every test uses.
pub const BUCKET: &str = "memorun";

impl Garage {
    /// Start the node, lay the cluster out, create the bucket and the
    /// keys: about a second.
    pub fn start() -> Garage {
        let garage = require_garage();
        let dir = tempfile::Builder::new()
            .prefix("memorun-garage")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        let conf = d.join("garage.toml");
        let log = d.join("garage.log");
        let mut web_port = 0;
        let (child, port) = start("garage", &log, |port| {
            let (rpc, web) = (free_port(), free_port());
            web_port = web;
            // A fresh secret per cluster; any 32 bytes in hex.
            let secret: String = (0..4)
                .map(|i| {
                    format!(
                        "{:016x}",
                        0x9e37_79b9_7f4a_7c15u64.wrapping_mul(port as u64 + i)
                    )
                })
                .collect();
            fs::write(
                &conf,
                format!(
                    r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{port}"
root_domain = ".s3.garage.localhost"
[s3_web]
bind_addr = "127.0.0.1:{web}"
root_domain = ".web.garage.localhost"
"#,
                    d = d.display()
                ),
            )
            .unwrap();
            Command::new(&garage)
                .process_group(0)
                .arg("-c")
                .arg(&conf)
                .arg("server")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::from(fs::File::create(&log).unwrap()))
                .stderr(Stdio::from(fs::File::create(d.join("garage.err")).unwrap()))
                .spawn()
                .unwrap()
        });
        let mut g = Garage {
            child,
            dir,
            garage,
            port,
            web_port,
            rw: S3Key {
                id: String::new(),
                secret: String::new(),
            },
            ro: S3Key {
                id: String::new(),
                secret: String::new(),
            },
        };
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", BUCKET]);
        g.rw = g.key("memorun-rw");
        g.ro = g.key("memorun-ro");
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "memorun-rw",
        ]);
        g.cli(&["bucket", "allow", "--read", BUCKET, "--key", "memorun-ro"]);
        g
    }

    /// Run `garage ARGS` against this node (retried while the node is
    /// still coming up); its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = Command::new(&self.garage)
                .arg("-c")
                .arg(self.dir.path().join("garage.toml"))
                .args(args)
                .env("RUST_LOG", "error")
                .output()
                .unwrap();
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn key(&self, name: &str) -> S3Key {
        let out = self.cli(&["key", "create", name]);
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| panic!("no {label} in {out}"))
                .trim()
                .to_string()
        };
        S3Key {
            id: field("Key ID:"),
            secret: field("Secret key:"),
        }
    }

    /// The endpoint (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment of a machine using `key` (no key: anonymous).
    pub fn env(&self, key: Option<&S3Key>) -> Vec<(String, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint()),
            ("AWS_REGION".to_string(), "garage".to_string()),
        ];
        if let Some(k) = key {
            env.push(("AWS_ACCESS_KEY_ID".to_string(), k.id.clone()));
            env.push(("AWS_SECRET_ACCESS_KEY".to_string(), k.secret.clone()));
        }
        env
    }

    /// memorun's own S3 client on the bucket, with the read-write key: the
    /// tests list, read and overwrite objects with it (its signatures are
    /// checked against AWS's examples in `remote::s3`'s unit tests, and by
    /// Garage here).
    pub fn client(&self) -> memorun::remote::s3::S3 {
        let env = self.env(Some(&self.rw));
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
        };
        let settings = memorun::remote::s3::Settings::from_env(&lookup, BUCKET).unwrap();
        let url = memorun::remote::RemoteUrl::parse(&format!("s3://{BUCKET}")).unwrap();
        memorun::remote::s3::S3::new(&url, &settings, memorun::remote::Timeouts::default())
    }

    /// Every object's key in the bucket, sorted.
    pub fn objects(&self) -> Vec<String> {
        self.client()
            .list("")
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// An object's ETag (a multipart upload's ends in `-PARTS"`).
    pub fn etag(&self, name: &str) -> String {
        self.client()
            .list(name)
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == name)
            .expect("no such object")
            .1
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An object's bytes.
    pub fn read(&self, name: &str) -> Vec<u8> {
        use memorun::remote::Remote;
        let mut c = self.client();
        let deadline = memorun::remote::Deadline::new(Duration::from_secs(60));
        let mut r = c
            .get(name, u64::MAX, deadline)
            .unwrap()
            .expect("no such object");
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    }

    /// Overwrite an object with `bytes` (a signed PUT).
    pub fn write(&self, name: &str, bytes: &[u8]) {
        use memorun::remote::Remote;
        let deadline = memorun::remote::Deadline::new(Duration::from_secs(60));
        self.client()
            .store(
                name,
                &mut &bytes[..],
                bytes.len() as u64,
                memorun::remote::Mode::Replace,
                deadline,
            )
            .unwrap();
    }

    /// SIGKILL the node.
    pub fn kill(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}
