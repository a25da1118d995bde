//! The remote on an HTTP store that takes a plain `PUT` and answers `GET`
//! and `HEAD` with 200 or 404: nginx with WebDAV `dav_methods PUT`, Apache
//! `mod_dav`, Artifactory's generic repositories, an S3-compatible gateway
//! that accepts them.
//!
//! `ureq` (synchronous, rustls for https with the Mozilla roots it ships):
//! bodies are streamed both ways, never read whole. An object is
//! `BASE/NAME`. Authentication is a bearer token (`MEMORUN_REMOTE_TOKEN`)
//! when one is set, else basic auth from the URL's user info; redirects are
//! not followed (they could carry the credentials to another host).
//!
//! Answers: 200 is there, 404 and 410 are not; a `PUT` is done on any 2xx
//! and "already there" on 412 (it is sent with `If-None-Match: *`, which
//! servers that know it honour; for those that ignore it a `HEAD` comes
//! first). Anything else (401, 403, 413, 5xx, a redirect) is a failure that
//! turns the remote off for the invocation (a 5xx for a while, see
//! `cooldown`; a refused `PUT` only makes the invocation read-only).
//!
//! Bounds: every request carries its operation's deadline as ureq's global
//! timeout (from the name lookup to the body's last byte), and its body is
//! read through [`Timed`], which also cuts a transfer that falls below the
//! deadline's rate. An answer whose `Content-Length` is more than what was
//! asked is not read.

use std::io::{self, Read};

use ureq::Agent;
use ureq::http::Response;

use super::deadline::{Deadline, Timed};
use super::url::RemoteUrl;
use super::{Cause, Error, Mode, Put, Remote, Timeouts};

/// An HTTP store.
pub struct Http {
    agent: Agent,
    base: String,
    /// The `Authorization` header's value, if any.
    auth: Option<String>,
}

impl Http {
    /// A client for the store at `url`; nothing is connected until the
    /// first request.
    pub fn new(url: &RemoteUrl, token: Option<&str>, timeouts: Timeouts) -> Http {
        let agent = agent(timeouts);
        let auth = match (token.filter(|t| !t.is_empty()), url.user()) {
            (Some(t), _) => Some(format!("Bearer {t}")),
            (None, Some((u, p))) => {
                Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
            }
            (None, None) => None,
        };
        Http {
            agent,
            base: url.base().to_string(),
            auth,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }
}

/// An HTTP client with memorun's timeouts that follows no redirect (one
/// could carry the credentials to another host) and reports every status
/// as an answer, not an error. Shared by the HTTP and S3 kinds.
pub(super) fn agent(timeouts: Timeouts) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(timeouts.connect))
        // A name that does not resolve costs a second at most, not the
        // operation's ten: ten times the connect timeout (a cold DNS
        // answer can take longer than a connection on a LAN).
        .timeout_resolve(Some((timeouts.connect * 10).min(timeouts.operation)))
        .timeout_send_request(Some(timeouts.operation))
        .timeout_recv_response(Some(timeouts.operation))
        .timeout_per_read(Some(timeouts.operation))
        .timeout_per_write(Some(timeouts.operation))
        .user_agent(concat!("memorun/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A failed request: a timeout when ureq says so, else the server is
/// down or broken (refused, reset, not HTTP). The message names the
/// object, never the base URL's credentials (they are not in `base`).
pub(super) fn failed(what: &str, name: &str, e: ureq::Error) -> Error {
    let timeout = matches!(e, ureq::Error::Timeout(_))
        || matches!(&e, ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut);
    Error::new(
        match timeout {
            true => Cause::Timeout,
            false => Cause::Down,
        },
        format!("{what} {name}: {e}"),
    )
}

/// What a status that is not an answer says: a server error (5xx), or a
/// refusal of this request.
pub(super) fn status_cause(status: u16) -> Cause {
    match status {
        500..=599 => Cause::ServerError,
        s => Cause::Refused(Some(s)),
    }
}

fn refused<T>(what: &str, name: &str, r: &Response<T>) -> Error {
    Error::new(
        status_cause(r.status().as_u16()),
        format!("{what} {name}: the server answered {}", r.status()),
    )
}

/// The body of a 200 answer to a `GET` of at most `max` bytes, read within
/// `deadline`; one whose `Content-Length` says more is not read (its
/// stream fails as invalid data).
pub(super) fn body_within(
    r: Response<ureq::Body>,
    max: u64,
    deadline: Deadline,
) -> Box<dyn Read + Send> {
    let announced = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > max) {
        return Box::new(TooLong);
    }
    Box::new(Timed::new(Body(r.into_body().into_reader()), deadline))
}

/// A request bounded by `deadline` for a body of up to `len` bytes.
pub(super) fn within<B>(
    req: ureq::RequestBuilder<B>,
    deadline: &Deadline,
    len: u64,
) -> ureq::RequestBuilder<B> {
    req.config().timeout_global(Some(deadline.cap(len))).build()
}

/// An answer longer than asked: not read.
struct TooLong;

impl Read for TooLong {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the answer is longer than asked; not read",
        ))
    }
}

/// A body reader whose timeouts are I/O timeouts (ureq reports them as
/// "other" errors wrapping its own).
pub(super) struct Body<R>(pub(super) R);

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            let timeout = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<ureq::Error>())
                .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            match timeout {
                true => io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
                false => e,
            }
        })
    }
}

impl Remote for Http {
    fn get(
        &mut self,
        name: &str,
        max: u64,
        deadline: Deadline,
    ) -> Result<Option<Box<dyn Read + Send + '_>>, Error> {
        let r = within(
            self.with_auth(self.agent.get(self.url(name))),
            &deadline,
            max,
        )
        .call()
        .map_err(|e| failed("GET", name, e))?;
        match r.status().as_u16() {
            200 => Ok(Some(body_within(r, max, deadline))),
            404 | 410 => Ok(None),
            _ => Err(refused("GET", name, &r)),
        }
    }

    fn exists(&mut self, name: &str, deadline: Deadline) -> Result<bool, Error> {
        let r = within(
            self.with_auth(self.agent.head(self.url(name))),
            &deadline,
            0,
        )
        .call()
        .map_err(|e| failed("HEAD", name, e))?;
        match r.status().as_u16() {
            200 | 204 => Ok(true),
            404 | 410 => Ok(false),
            _ => Err(refused("HEAD", name, &r)),
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
        if mode == Mode::IfAbsent && self.exists(name, deadline)? {
            return Ok(Put::Present);
        }
        self.put(name, body, len, mode == Mode::IfAbsent, deadline)
    }
}

impl Http {
    /// PUT `len` bytes from `body`; with `if_absent`, asking the server not
    /// to replace an object (412 when it is there).
    fn put(
        &mut self,
        name: &str,
        body: &mut dyn Read,
        len: u64,
        if_absent: bool,
        deadline: Deadline,
    ) -> Result<Put, Error> {
        let mut req = self.with_auth(self.agent.put(self.url(name)));
        if if_absent {
            req = req.header("If-None-Match", "*");
        }
        let r = within(req, &deadline, len)
            .header("Content-Length", len.to_string())
            .header("Content-Type", "application/octet-stream")
            .send(ureq::SendBody::from_reader(&mut Timed::new(
                body.take(len),
                deadline,
            )))
            .map_err(|e| failed("PUT", name, e))?;
        match r.status().as_u16() {
            200..=299 => Ok(Put::Stored),
            412 => Ok(Put::Present),
            _ => Err(refused("PUT", name, &r)),
        }
    }
}

/// Standard base64 with padding, for basic auth.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
