//! Small hostile servers for the remote tests, written here: each listens
//! on a free loopback port, answers every connection on a thread of its
//! own the way it was told (trickling, lying about lengths, serving a real
//! server's files slowly), and stops when dropped. What they answer is
//! chosen to stretch memorun's time or memory, never to be a real cache.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a hostile server answers one connection.
pub type Handler = dyn Fn(TcpStream, &AtomicBool) + Send + Sync;

/// A server answering every connection with a handler.
pub struct Hostile {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Hostile {
    /// Listen on a free port (or `port`, when not 0) and answer each
    /// connection with `handler`.
    pub fn start_on(port: u16, handler: Arc<Handler>) -> Hostile {
        Hostile::start_with(port, handler, None)
    }

    /// [`Hostile::start`], its connections' receive buffers `rcvbuf` bytes.
    pub fn start_small(handler: Arc<Handler>, rcvbuf: i32) -> Hostile {
        Hostile::start_with(0, handler, Some(rcvbuf))
    }

    fn start_with(port: u16, handler: Arc<Handler>, rcvbuf: Option<i32>) -> Hostile {
        // A server started again on the port of one just dropped: its
        // listener may still be closing in its thread, so the bind is
        // retried for a moment rather than failing the test.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot listen on 127.0.0.1:{port}: {e}"),
            }
        };
        if let Some(b) = rcvbuf {
            use std::os::fd::AsRawFd;
            small_receive_buffer(listener.as_raw_fd(), b);
        }
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        conn.set_nonblocking(false).unwrap();
                        // Never stuck on a client that went away.
                        let _ = conn.set_write_timeout(Some(Duration::from_secs(20)));
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
                        let (h, s) = (handler.clone(), s.clone());
                        std::thread::spawn(move || h(conn, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Hostile {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// [`Hostile::start_on`] a free port.
    pub fn start(handler: Arc<Handler>) -> Hostile {
        Hostile::start_on(0, handler)
    }

    /// An `http://` remote URL on it.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/cache", self.port)
    }

    /// A `redis://` remote URL on it.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP request's method and path; `None` when the client went away.
/// The body, if any, is left unread.
fn http_request(r: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut line = String::new();
    r.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok().filter(|n| *n > 0)?;
        if h == "\r\n" {
            return Some((method, path));
        }
    }
}

/// Write `len` bytes of `byte`, one every `every` (`None`: as fast as the
/// client reads), until done, the client goes or the server stops.
fn dribble(conn: &mut TcpStream, len: u64, every: Option<Duration>, stop: &AtomicBool) {
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0u64;
    while sent < len && !stop.load(Ordering::Relaxed) {
        let n = match every {
            Some(d) => {
                std::thread::sleep(d);
                1
            }
            None => (len - sent).min(chunk.len() as u64) as usize,
        };
        if conn.write_all(&chunk[..n]).is_err() {
            return;
        }
        sent += n as u64;
    }
}

/// HTTP: every `GET` is answered 200 with a `Content-Length` of `claim`
/// bytes, of which `send` are sent, one every `every` (or at once); `HEAD`
/// gets 404, anything else 403.
pub fn http_body(claim: u64, send: u64, every: Option<Duration>) -> Arc<Handler> {
    Arc::new(move |conn, stop| {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while let Some((method, _)) = http_request(&mut r) {
            let head = match method.as_str() {
                "GET" => format!("HTTP/1.1 200 OK\r\nContent-Length: {claim}\r\n\r\n"),
                "HEAD" => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                _ => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            match method.as_str() {
                "GET" => dribble(&mut conn, send, every, stop),
                "HEAD" => continue,
                _ => return,
            }
        }
    })
}

/// HTTP: a `GET` of a file under `root` (a real server's store) is
/// answered with it, whole at once, except blobs, which come one byte
/// every `every`; a missing file is 404 (also to `HEAD`); anything else
/// 403.
pub fn http_files(root: PathBuf, every: Duration) -> Arc<Handler> {
    Arc::new(move |conn, stop| {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while let Some((method, path)) = http_request(&mut r) {
            let rel = path.trim_start_matches("/cache/");
            let file = std::fs::read(root.join(rel)).ok();
            let head = match (method.as_str(), &file) {
                ("GET" | "HEAD", None) => {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
                }
                ("GET" | "HEAD", Some(f)) => {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", f.len())
                }
                _ => "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            match (method.as_str(), file) {
                ("GET", Some(f)) if rel.contains("/blobs/") => {
                    for b in f {
                        if stop.load(Ordering::Relaxed) || conn.write_all(&[b]).is_err() {
                            return;
                        }
                        std::thread::sleep(every);
                    }
                }
                ("GET", Some(f)) => {
                    if conn.write_all(&f).is_err() {
                        return;
                    }
                }
                ("GET" | "HEAD", None) | ("HEAD", Some(_)) => {}
                _ => return,
            }
        }
    })
}

/// One RESP command's arguments; `None` when the client went away.
fn resp_command(r: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut a = vec![0u8; len + 2];
        r.read_exact(&mut a).ok()?;
        a.truncate(len);
        args.push(a);
    }
    Some(args)
}

/// Redis: every command is answered with a bulk string said to be
/// `claim` bytes long, of which `send` are sent, one every `every` (or at
/// once).
pub fn redis_bulk(claim: u64, send: u64, every: Option<Duration>) -> Arc<Handler> {
    Arc::new(move |conn, stop| {
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while resp_command(&mut r).is_some() {
            if conn.write_all(format!("${claim}\r\n").as_bytes()).is_err() {
                return;
            }
            dribble(&mut conn, send, every, stop);
            if send < claim {
                return;
            }
            let _ = conn.write_all(b"\r\n");
        }
    })
}

/// HTTP: `GET` and `HEAD` are answered 404; a `PUT`'s body is read
/// `chunk` bytes every `every` (enough to keep each of the client's writes
/// moving), and never answered.
pub fn http_slow_sink(chunk: usize, every: Duration) -> Arc<Handler> {
    Arc::new(move |conn, stop| {
        let mut r = BufReader::with_capacity(chunk, conn.try_clone().unwrap());
        let mut conn = conn;
        while let Some((method, _)) = http_request(&mut r) {
            if method != "PUT" {
                let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            let mut buf = vec![0u8; chunk];
            while !stop.load(Ordering::Relaxed) && r.read_exact(&mut buf).is_ok() {
                std::thread::sleep(every);
            }
            return;
        }
    })
}

/// Make the receive buffer of the connections `h` accepts small (`bytes`),
/// so that a client's writes fill it at once.
pub fn small_receive_buffer(listener_fd: std::os::fd::RawFd, bytes: i32) {
    // SAFETY: setsockopt(2) on a socket we own, with a valid int option.
    let r = unsafe {
        libc::setsockopt(
            listener_fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}
