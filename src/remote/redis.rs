//! The remote on Redis (6 and later) or Valkey, with the `redis` crate's
//! synchronous client: no async runtime, one connection per invocation.
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
//! chunk at a time (the client's buffers hold a few copies of it: about
//! 48 MiB peak RSS for a hit of 100 MB or 300 MB alike). Every read is a `GETRANGE` bounded to what a
//! value may hold, so a value planted by someone else cannot make memorun
//! allocate without bound. With `maxmemory-policy allkeys-lru` a chunk can
//! be evicted apart from its index: a missing chunk is an error of the
//! stream (the tier counts the entry as incomplete, never a replay), and
//! [`Remote::exists`] checks every chunk.

use std::io::{self, Read};

use redis::{Connection, RedisError};

use super::url::RemoteUrl;
use super::{Error, Put, Remote, Timeouts};

/// The largest value memorun writes (and the most it reads at once).
pub const CHUNK: usize = 8 * 1024 * 1024;

const WHOLE: u8 = 0;
const INDEX: u8 = 1;
const INDEX_LEN: usize = 1 + 8 + 4;

/// A connection to a Redis server.
pub struct Redis {
    con: Connection,
    /// To scrub from error messages.
    password: Option<String>,
}

fn failed(e: &RedisError, password: Option<&str>) -> Error {
    let mut reason = e.to_string();
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        reason = reason.replace(p, "***");
    }
    Error {
        timeout: e.is_timeout(),
        reason,
    }
}

impl Redis {
    /// Connect, within the connect timeout, and set the operation timeout
    /// on every read and write of the socket.
    pub fn connect(url: &RemoteUrl, timeouts: Timeouts) -> Result<Redis, Error> {
        let password = url.user().map(|(_, p)| p.to_string());
        let pw = password.as_deref();
        let client = redis::Client::open(url.full()).map_err(|e| failed(&e, pw))?;
        let con = client
            .get_connection_with_timeout(timeouts.connect)
            .map_err(|e| failed(&e, pw))?;
        con.set_read_timeout(Some(timeouts.operation))
            .map_err(|e| failed(&e, pw))?;
        con.set_write_timeout(Some(timeouts.operation))
            .map_err(|e| failed(&e, pw))?;
        Ok(Redis { con, password })
    }

    fn error(&self, e: &RedisError) -> Error {
        failed(e, self.password.as_deref())
    }

    /// At most `len` bytes of the value under `name` (empty when there is
    /// none: memorun's values are never empty).
    fn range(&mut self, name: &str, len: usize) -> Result<Vec<u8>, Error> {
        redis::cmd("GETRANGE")
            .arg(name)
            .arg(0)
            .arg(len.saturating_sub(1))
            .query(&mut self.con)
            .map_err(|e| self.error(&e))
    }

    fn set(&mut self, name: &str, value: &[u8], nx: bool) -> Result<Put, Error> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(name).arg(value);
        if nx {
            cmd.arg("NX");
        }
        let answer: Option<String> = cmd.query(&mut self.con).map_err(|e| self.error(&e))?;
        Ok(match answer {
            Some(_) => Put::Stored,
            None => Put::Present,
        })
    }
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
    fn get(&mut self, name: &str) -> Result<Option<Box<dyn Read + Send + '_>>, Error> {
        let value = self.range(name, 1 + CHUNK + 1)?;
        match value.first() {
            None => Ok(None),
            Some(&WHOLE) if value.len() <= 1 + CHUNK => {
                Ok(Some(Box::new(io::Cursor::new(value).take_from(1))))
            }
            Some(&INDEX) => match parse_index(&value) {
                Some((len, count)) => Ok(Some(Box::new(Chunks {
                    redis: self,
                    name: name.to_string(),
                    left: len,
                    next: 0,
                    count,
                    buf: io::Cursor::new(Vec::new()),
                }))),
                None => Ok(Some(Box::new(Garbage))),
            },
            // Not memorun's: a stream that fails verification.
            Some(_) => Ok(Some(Box::new(Garbage))),
        }
    }

    fn exists(&mut self, name: &str) -> Result<bool, Error> {
        let head = self.range(name, INDEX_LEN)?;
        match head.first() {
            None => Ok(false),
            Some(&WHOLE) => Ok(true),
            Some(_) => {
                let Some((_, count)) = parse_index(&head) else {
                    return Ok(false);
                };
                let mut cmd = redis::cmd("EXISTS");
                for i in 0..count {
                    cmd.arg(chunk_name(name, i));
                }
                let n: u32 = cmd.query(&mut self.con).map_err(|e| self.error(&e))?;
                Ok(n == count)
            }
        }
    }

    fn put_if_absent(&mut self, name: &str, body: &mut dyn Read, len: u64) -> Result<Put, Error> {
        self.put(name, body, len, true)
    }

    fn replace(&mut self, name: &str, body: &mut dyn Read, len: u64) -> Result<Put, Error> {
        self.put(name, body, len, false)
    }
}

impl Redis {
    /// Store an object, whole or as chunks then an index; with `nx`, not
    /// over one that is there (`SET NX` on the value readers look up).
    fn put(&mut self, name: &str, body: &mut dyn Read, len: u64, nx: bool) -> Result<Put, Error> {
        let read = |body: &mut dyn Read, n: usize, v: &mut Vec<u8>| {
            body.take(n as u64)
                .read_to_end(v)
                .map_err(|e| Error::io("cannot read what is uploaded", &e))
                .and_then(|got| match got == n {
                    true => Ok(()),
                    false => Err(Error::failed("an upload's source ended early")),
                })
        };
        if len <= CHUNK as u64 {
            let mut v = Vec::with_capacity(1 + len as usize);
            v.push(WHOLE);
            read(body, len as usize, &mut v)?;
            return self.set(name, &v, nx);
        }
        if nx && self.exists(name)? {
            return Ok(Put::Present);
        }
        let count = len.div_ceil(CHUNK as u64) as u32;
        let mut left = len;
        let mut v = Vec::with_capacity(CHUNK);
        for i in 0..count {
            v.clear();
            let n = left.min(CHUNK as u64) as usize;
            read(body, n, &mut v)?;
            self.set(&chunk_name(name, i), &v, false)?;
            left -= n as u64;
        }
        let mut index = vec![INDEX];
        index.extend_from_slice(&len.to_le_bytes());
        index.extend_from_slice(&count.to_le_bytes());
        self.set(name, &index, nx)
    }
}

/// The stream of a chunked object, one chunk in memory at a time.
struct Chunks<'a> {
    redis: &'a mut Redis,
    name: String,
    left: u64,
    next: u32,
    count: u32,
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
                .range(&name, want + 1)
                .map_err(|e| match e.timeout {
                    true => io::Error::new(io::ErrorKind::TimedOut, e.reason),
                    false => io::Error::other(e.reason),
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

/// Skip the first `n` bytes of a cursor.
trait TakeFrom {
    fn take_from(self, n: u64) -> Self;
}

impl TakeFrom for io::Cursor<Vec<u8>> {
    fn take_from(mut self, n: u64) -> Self {
        self.set_position(n);
        self
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
}
