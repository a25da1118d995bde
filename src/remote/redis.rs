//! The remote on Redis (6 and later) or Valkey, spoken to directly in RESP
//! (the protocol's second version): one connection per invocation, five
//! commands (`AUTH`, `SELECT`, `GETRANGE`, `SET`, `EXISTS`), no async
//! runtime and no client crate.
//!
//! Why not a client crate: a client reads a whole reply before the caller
//! sees it, so a server that answers a bounded `GETRANGE` with a bulk string
//! of 10 GB makes it allocate 10 GB. Here a bulk string's length is read
//! first, and one longer than what was asked is refused before a byte of it
//! is read (the connection is then dropped: it is out of step). Every read
//! and write is bounded by what is left of the operation's deadline (the
//! socket's timeouts are set before each one), so a server that answers a
//! byte at a time cannot stretch an operation either.
//!
//! Each object is one or more string values:
//!
//! - up to [`CHUNK`] bytes: one value under the object's name, a `0` byte
//!   followed by the bytes;
//! - larger: an index under the object's name (a `1` byte, the total length
//!   as u64 and the chunk count as u32, little-endian) and the chunks under
//!   `NAME#0`, `NAME#1`, …, each at most [`CHUNK`] bytes, written before the
//!   index.
//!
//! Values stay far below Redis's 512 MB string limit, and memorun reads one
//! chunk at a time into a buffer of exactly the size asked. With
//! `maxmemory-policy allkeys-lru` a chunk can be evicted apart from its
//! index: a missing chunk is an error of the stream (the tier counts the
//! entry as incomplete, never a replay), and [`Remote::exists`] checks every
//! chunk.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::deadline::Deadline;
use super::url::{RemoteUrl, Scheme};
use super::{Cause, Error, Mode, Put, Remote, Timeouts};

/// The largest value memorun writes (and the most it reads at once).
pub const CHUNK: usize = 8 * 1024 * 1024;

const WHOLE: u8 = 0;
const INDEX: u8 = 1;
const INDEX_LEN: usize = 1 + 8 + 4;

/// The longest line of a reply read (a status, an error, a length).
const MAX_LINE: usize = 4096;

/// A socket to the server.
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Socket::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection to a Redis server.
pub struct Redis {
    conn: BufReader<Socket>,
    /// To scrub from error messages.
    password: Option<String>,
    /// Out of step with the server (a reply refused half-read, a timeout):
    /// every later command fails.
    broken: bool,
}

/// One reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Status(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
}

/// Where a `redis://` or `redis+unix://` URL points, and which database.
fn address(url: &RemoteUrl) -> Result<(Result<String, String>, u32), Error> {
    let shown = url.display();
    let bad = || Error::failed(format!("remote '{shown}': not a Redis address"));
    match url.scheme() {
        Scheme::RedisUnix => {
            let rest = shown.strip_prefix("redis+unix://").ok_or_else(bad)?;
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let db = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("db="))
                .map_or(Ok(0), str::parse)
                .map_err(|_| bad())?;
            Ok((Err(path.to_string()), db))
        }
        _ => {
            let rest = shown.strip_prefix("redis://").ok_or_else(bad)?;
            let (host, db) = rest.split_once('/').unwrap_or((rest, ""));
            let db = match db {
                "" => 0,
                d => d.parse().map_err(|_| bad())?,
            };
            // `[::1]:6379`, `host:6379`, `host`.
            let has_port = match host.rfind(']') {
                Some(i) => host[i..].contains(':'),
                None => host.contains(':'),
            };
            let host = match has_port {
                true => host.to_string(),
                false => format!("{host}:6379"),
            };
            Ok((Ok(host), db))
        }
    }
}

impl Redis {
    /// Connect within the connect timeout, then authenticate and select
    /// the database within `deadline`.
    pub fn connect(
        url: &RemoteUrl,
        timeouts: Timeouts,
        deadline: Deadline,
    ) -> Result<Redis, Error> {
        let (addr, db) = address(url)?;
        let down = |e: io::Error| Error::io("cannot connect", &e);
        let socket = match addr {
            Ok(host) => {
                let mut last = io::Error::other("no address");
                let mut found = None;
                for a in host.to_socket_addrs().map_err(down)? {
                    let t = timeouts.connect.min(deadline.left(0).map_err(down)?);
                    match TcpStream::connect_timeout(&a, t) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or_else(|| down(last))?;
                let _ = s.set_nodelay(true);
                Socket::Tcp(s)
            }
            Err(path) => Socket::Unix(UnixStream::connect(path).map_err(down)?),
        };
        let mut r = Redis {
            conn: BufReader::with_capacity(64 * 1024, socket),
            password: url.user().map(|(_, p)| p.to_string()),
            broken: false,
        };
        if let Some((user, pass)) = url.user().filter(|(_, p)| !p.is_empty()) {
            let (user, pass) = (user.to_string(), pass.to_string());
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if !user.is_empty() {
                args.push(user.as_bytes());
            }
            args.push(pass.as_bytes());
            r.command(&args, 0, &deadline)?;
        }
        if db != 0 {
            r.command(&[b"SELECT", db.to_string().as_bytes()], 0, &deadline)?;
        }
        Ok(r)
    }

    /// Send a command and read its reply, accepting a bulk string of at
    /// most `max` bytes, all within `deadline`.
    fn command(&mut self, args: &[&[u8]], max: usize, deadline: &Deadline) -> Result<Reply, Error> {
        self.command_moved(args, max, deadline, 0)
    }

    /// [`Redis::command`], `moved` bytes of the operation having moved
    /// already (a transfer's deadline depends on it).
    fn command_moved(
        &mut self,
        args: &[&[u8]],
        max: usize,
        deadline: &Deadline,
        moved: u64,
    ) -> Result<Reply, Error> {
        if self.broken {
            return Err(Error::failed("the connection was dropped"));
        }
        let result = self.exchange(args, max, deadline, moved);
        if let Err(e) = &result
            && !matches!(e, Error::Refused(..))
        {
            // A timeout or a refused reply leaves the stream out of step.
            self.broken = true;
        }
        result.map_err(|mut e| {
            if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
                *e.reason_mut() = e.reason().replace(p, "***");
            }
            e
        })
    }

    fn exchange(
        &mut self,
        args: &[&[u8]],
        max: usize,
        deadline: &Deadline,
        moved: u64,
    ) -> Result<Reply, Error> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        let io = |e: io::Error| Error::io("Redis", &e);
        let mut sent = 0;
        while sent < req.len() {
            self.arm(deadline, moved + sent as u64).map_err(io)?;
            match self.conn.get_mut().write(&req[sent..]) {
                Ok(0) => return Err(io(io::ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        let moved = moved + sent as u64;
        let line = self.line(deadline, moved).map_err(io)?;
        let (kind, rest) = line.split_at(1);
        let text = || String::from_utf8_lossy(rest).into_owned();
        match kind {
            b"+" => Ok(Reply::Status(text())),
            b"-" => Err(Error::new(
                Cause::Refused(None),
                format!("Redis answered: {}", text()),
            )),
            b":" => text()
                .parse()
                .map(Reply::Int)
                .map_err(|_| protocol("an integer that is not one")),
            b"$" => {
                let n: i64 = text()
                    .parse()
                    .map_err(|_| protocol("a bulk length that is not a number"))?;
                if n < 0 {
                    return Ok(Reply::Nil);
                }
                if n as u64 > max as u64 {
                    // Refused before a byte of it is read.
                    return Err(Error::new(
                        Cause::ServerError,
                        format!(
                            "Redis answered {n} bytes to a request for at most {max}; not read"
                        ),
                    ));
                }
                let mut v = vec![0u8; n as usize + 2];
                let mut got = 0;
                while got < v.len() {
                    self.arm(deadline, moved + got as u64).map_err(io)?;
                    match self.conn.read(&mut v[got..]) {
                        Ok(0) => return Err(io(io::ErrorKind::UnexpectedEof.into())),
                        Ok(k) => got += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io(e)),
                    }
                }
                if !v.ends_with(b"\r\n") {
                    return Err(protocol("a bulk string without its end"));
                }
                v.truncate(n as usize);
                Ok(Reply::Bulk(v))
            }
            _ => Err(protocol("a reply of a kind memorun never asks for")),
        }
    }

    /// Bound the next socket call by what is left of `deadline`.
    fn arm(&mut self, deadline: &Deadline, moved: u64) -> io::Result<()> {
        let left = deadline.left(moved)?;
        self.conn.get_ref().set_timeouts(left)
    }

    /// One reply line, without its CRLF, at most [`MAX_LINE`] bytes.
    fn line(&mut self, deadline: &Deadline, moved: u64) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            self.arm(deadline, moved)?;
            let buf = match self.conn.fill_buf() {
                Ok([]) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let (take, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            line.extend_from_slice(&buf[..take]);
            self.conn.consume(take);
            if line.len() > MAX_LINE + 2 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a reply line too long",
                ));
            }
            if done {
                if line.len() < 3 || !line.ends_with(b"\r\n") {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "a bad reply"));
                }
                line.truncate(line.len() - 2);
                return Ok(line);
            }
        }
    }

    /// At most `len` bytes of the value under `name` (empty when there is
    /// none: memorun's values are never empty).
    fn range(
        &mut self,
        name: &str,
        len: usize,
        deadline: &Deadline,
        moved: u64,
    ) -> Result<Vec<u8>, Error> {
        let end = len.saturating_sub(1).to_string();
        let args: [&[u8]; 4] = [b"GETRANGE", name.as_bytes(), b"0", end.as_bytes()];
        match self.command_moved(&args, len, deadline, moved)? {
            Reply::Bulk(v) => Ok(v),
            Reply::Nil => Ok(Vec::new()),
            other => Err(protocol(&format!("{other:?} to GETRANGE"))),
        }
    }

    fn set(
        &mut self,
        name: &str,
        value: &[u8],
        nx: bool,
        deadline: &Deadline,
    ) -> Result<Put, Error> {
        let mut args: Vec<&[u8]> = vec![b"SET", name.as_bytes(), value];
        if nx {
            args.push(b"NX");
        }
        match self.command(&args, 0, deadline)? {
            Reply::Status(_) => Ok(Put::Stored),
            Reply::Nil => Ok(Put::Present),
            other => Err(protocol(&format!("{other:?} to SET"))),
        }
    }
}

/// A reply that breaks the protocol: the server is not sound.
fn protocol(what: &str) -> Error {
    Error::new(Cause::ServerError, format!("Redis answered {what}"))
}

fn chunk_name(name: &str, i: u32) -> String {
    format!("{name}#{i}")
}

/// The index of a chunked object: total length and chunk count, if
/// `value` is one and is consistent.
fn parse_index(value: &[u8]) -> Option<(u64, u32)> {
    if value.len() != INDEX_LEN || value[0] != INDEX {
        return None;
    }
    let len = u64::from_le_bytes(value[1..9].try_into().ok()?);
    let count = u32::from_le_bytes(value[9..13].try_into().ok()?);
    (u64::from(count) == len.div_ceil(CHUNK as u64) && count > 0).then_some((len, count))
}

impl Remote for Redis {
    fn get(
        &mut self,
        name: &str,
        max: u64,
        deadline: Deadline,
    ) -> Result<Option<Box<dyn Read + Send + '_>>, Error> {
        // Never more than a chunk, never more than asked (and its tag).
        let want = (max as usize).min(CHUNK).saturating_add(1).max(INDEX_LEN);
        let value = self.range(name, want + 1, &deadline, 0)?;
        match value.first() {
            None => Ok(None),
            Some(&WHOLE) if value.len() <= want => {
                let mut c = io::Cursor::new(value);
                c.set_position(1);
                Ok(Some(Box::new(c)))
            }
            Some(&INDEX) => match parse_index(&value) {
                Some((len, count)) if len <= max => Ok(Some(Box::new(Chunks {
                    redis: self,
                    name: name.to_string(),
                    left: len,
                    next: 0,
                    count,
                    moved: 0,
                    deadline,
                    buf: io::Cursor::new(Vec::new()),
                }))),
                _ => Ok(Some(Box::new(Garbage))),
            },
            // Not memorun's, or longer than asked: a stream that fails
            // verification.
            Some(_) => Ok(Some(Box::new(Garbage))),
        }
    }

    fn exists(&mut self, name: &str, deadline: Deadline) -> Result<bool, Error> {
        let head = self.range(name, INDEX_LEN, &deadline, 0)?;
        match head.first() {
            None => Ok(false),
            Some(&WHOLE) => Ok(true),
            Some(_) => {
                let Some((_, count)) = parse_index(&head) else {
                    return Ok(false);
                };
                let names: Vec<String> = (0..count).map(|i| chunk_name(name, i)).collect();
                let mut args: Vec<&[u8]> = vec![b"EXISTS"];
                args.extend(names.iter().map(|n| n.as_bytes()));
                match self.command(&args, 0, &deadline)? {
                    Reply::Int(n) => Ok(n == i64::from(count)),
                    other => Err(protocol(&format!("{other:?} to EXISTS"))),
                }
            }
        }
    }

    fn store(
        &mut self,
        name: &str,
        body: &mut dyn Read,
        len: u64,
        mode: Mode,
        deadline: Deadline,
    ) -> Result<Put, Error> {
        self.put(name, body, len, mode == Mode::IfAbsent, deadline)
    }
}

impl Redis {
    /// Store an object, whole or as chunks then an index; with `nx`, not
    /// over one that is there (`SET NX` on the value readers look up).
    fn put(
        &mut self,
        name: &str,
        body: &mut dyn Read,
        len: u64,
        nx: bool,
        deadline: Deadline,
    ) -> Result<Put, Error> {
        let read = |body: &mut dyn Read, n: usize, v: &mut Vec<u8>| {
            body.take(n as u64)
                .read_to_end(v)
                .map_err(|e| Error::failed(format!("cannot read what is uploaded: {e}")))
                .and_then(|got| match got == n {
                    true => Ok(()),
                    false => Err(Error::failed("an upload's source ended early")),
                })
        };
        if len <= CHUNK as u64 {
            let mut v = Vec::with_capacity(1 + len as usize);
            v.push(WHOLE);
            read(body, len as usize, &mut v)?;
            return self.set(name, &v, nx, &deadline);
        }
        if nx && self.exists(name, deadline)? {
            return Ok(Put::Present);
        }
        let count = len.div_ceil(CHUNK as u64) as u32;
        let mut left = len;
        let mut v = Vec::with_capacity(CHUNK);
        for i in 0..count {
            v.clear();
            let n = left.min(CHUNK as u64) as usize;
            read(body, n, &mut v)?;
            let mut args: Vec<&[u8]> = vec![b"SET"];
            let chunk = chunk_name(name, i);
            args.push(chunk.as_bytes());
            args.push(&v);
            self.command_moved(&args, 0, &deadline, len - left)?;
            left -= n as u64;
        }
        let mut index = vec![INDEX];
        index.extend_from_slice(&len.to_le_bytes());
        index.extend_from_slice(&count.to_le_bytes());
        self.set(name, &index, nx, &deadline.after(len))
    }
}

/// The stream of a chunked object, one chunk in memory at a time.
struct Chunks<'a> {
    redis: &'a mut Redis,
    name: String,
    left: u64,
    next: u32,
    count: u32,
    moved: u64,
    deadline: Deadline,
    buf: io::Cursor<Vec<u8>>,
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.position() as usize == self.buf.get_ref().len() {
            if self.next == self.count {
                return Ok(0);
            }
            let want = self.left.min(CHUNK as u64) as usize;
            let name = chunk_name(&self.name, self.next);
            let chunk = self
                .redis
                .range(&name, want + 1, &self.deadline, self.moved)
                .map_err(|e| match e {
                    Error::Timeout(reason) => io::Error::new(io::ErrorKind::TimedOut, reason),
                    e => io::Error::other(e.reason().to_string()),
                })?;
            if chunk.is_empty() {
                // Evicted apart from its index.
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("chunk {} of {} is gone", self.next, self.name),
                ));
            }
            if chunk.len() != want {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("chunk {} of {} is missing or damaged", self.next, self.name),
                ));
            }
            self.left -= want as u64;
            self.moved += want as u64;
            self.next += 1;
            self.buf = io::Cursor::new(chunk);
        }
        self.buf.read(out)
    }
}

/// A value that is not memorun's: reads fail as invalid data.
struct Garbage;

impl Read for Garbage {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an object memorun wrote",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_must_agree_with_itself() {
        let index = |len: u64, count: u32| {
            let mut v = vec![INDEX];
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&count.to_le_bytes());
            v
        };
        assert_eq!(
            parse_index(&index(CHUNK as u64 + 1, 2)),
            Some((CHUNK as u64 + 1, 2))
        );
        assert_eq!(parse_index(&index(CHUNK as u64 + 1, 3)), None);
        assert_eq!(parse_index(&index(0, 0)), None);
        assert_eq!(parse_index(&index(5, 1)[..12]), None);
    }

    #[test]
    fn addresses() {
        let a = |u: &str| address(&RemoteUrl::parse(u).unwrap()).unwrap();
        assert_eq!(a("redis://h"), (Ok("h:6379".into()), 0));
        assert_eq!(a("redis://u:p@h:7/3"), (Ok("h:7".into()), 3));
        assert_eq!(a("redis://[::1]"), (Ok("[::1]:6379".into()), 0));
        assert_eq!(a("redis://[::1]:9"), (Ok("[::1]:9".into()), 0));
        assert_eq!(
            a("redis+unix:///run/r.sock?db=2"),
            (Err("/run/r.sock".into()), 2)
        );
    }
}
