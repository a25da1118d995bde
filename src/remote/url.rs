//! Remote cache URLs: which kind of server, where, and with which
//! credentials.
//!
//! Accepted forms:
//!
//! - `redis://[user[:password]@]host[:port][/db]` (Redis 6+, Valkey);
//! - `redis+unix:///path/to/socket[?db=N]`;
//! - `http://[user:password@]host[:port][/base/path]` and `https://…`: any
//!   store that takes a plain `PUT` and answers `GET` and `HEAD` with
//!   200 or 404 (nginx WebDAV, Apache `mod_dav`, Artifactory, …);
//! - `s3://bucket[/prefix]`: an S3-compatible bucket (AWS S3, R2, MinIO,
//!   Garage, Ceph); the endpoint and the credentials come from the usual
//!   `AWS_*` variables (see [`super::s3`]), never from the URL.
//!
//! Invariant: credentials live only in [`RemoteUrl`]'s private fields and
//! reach nothing but the client that sends them. Everything memorun shows
//! or stores uses [`RemoteUrl::display`], which never holds them: not the
//! user info, not a query string.

use std::fmt;

use anyhow::{Result, bail};

/// The kind of server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Redis over TCP.
    Redis,
    /// Redis over a unix socket.
    RedisUnix,
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
    /// An S3-compatible bucket.
    S3,
}

/// A parsed remote cache URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    scheme: Scheme,
    /// Without credentials or query: what memorun shows.
    display: String,
    /// For HTTP: the base URL without user info, ending in `/`; for S3,
    /// the key prefix.
    base: String,
    /// User name and password from the user info (percent-decoded).
    user: Option<(String, String)>,
    /// For S3: the bucket.
    bucket: String,
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials, even in a debug print.
        write!(f, "RemoteUrl({})", self.display)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl RemoteUrl {
    /// Parse a remote URL. The error names the URL without its
    /// credentials.
    pub fn parse(s: &str) -> Result<RemoteUrl> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            bail!(
                "remote '{}' is not a URL like redis://host:6379 or https://host/cache",
                strip_userinfo(s)
            );
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => Scheme::Redis,
            "redis+unix" | "unix" | "valkey+unix" => Scheme::RedisUnix,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "s3" => Scheme::S3,
            "rediss" | "valkeys" => bail!(
                "remote '{}': Redis over TLS is not supported; use a TLS tunnel, or an https:// store",
                strip_userinfo(s)
            ),
            other => bail!(
                "remote '{}': unknown scheme '{other}' (use redis://, redis+unix://, http(s):// or s3://)",
                strip_userinfo(s)
            ),
        };
        if scheme == Scheme::RedisUnix {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !path.starts_with('/') {
                bail!(
                    "remote 'redis+unix://{path}': the socket path must be absolute, as in redis+unix:///run/redis.sock"
                );
            }
            let db = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("db="))
                .map(|d| format!("?db={d}"))
                .unwrap_or_default();
            return Ok(RemoteUrl {
                scheme,
                display: format!("redis+unix://{path}{db}"),
                base: String::new(),
                user: None,
                bucket: String::new(),
            });
        }
        if scheme == Scheme::S3 {
            return parse_s3(rest);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let scheme_text = match scheme {
            Scheme::Redis => "redis",
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::RedisUnix | Scheme::S3 => unreachable!("handled above"),
        };
        if host.is_empty() || host.contains(['?', '#', ' ']) {
            bail!("remote '{scheme_text}://{host}{path}' has no host");
        }
        if path.contains(['?', '#']) {
            bail!("remote '{scheme_text}://{host}{path}': a query or fragment is not supported");
        }
        let user = userinfo.map(|u| {
            let (name, pass) = u.split_once(':').unwrap_or((u, ""));
            (percent_decode(name), percent_decode(pass))
        });
        let display_path = path.trim_end_matches('/');
        let display = format!("{scheme_text}://{host}{display_path}");
        if scheme == Scheme::Redis && !display_path.is_empty() {
            let db = display_path.trim_start_matches('/');
            if db.parse::<u32>().is_err() {
                bail!("remote '{display}': the path of a redis:// URL is a database number");
            }
        }
        Ok(RemoteUrl {
            scheme,
            base: format!("{display}/"),
            display,
            user,
            bucket: String::new(),
        })
    }

    /// The kind of server.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL without credentials: the only form memorun shows or keeps.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// For HTTP: the base URL without user info, ending in `/`. For S3:
    /// the key prefix, ending in `/` (empty without one).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// For S3: the bucket.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// User name and password from the URL's user info, if any.
    pub(crate) fn user(&self) -> Option<(&str, &str)> {
        self.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

/// `s3://bucket[/prefix]` (`rest` is what follows `s3://`). The prefix
/// keeps its inner slashes; [`RemoteUrl::base`] is it with a trailing `/`
/// (empty without one).
fn parse_s3(rest: &str) -> Result<RemoteUrl> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains('@') {
        bail!(
            "remote 's3://{}': an s3:// URL holds no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            strip_userinfo(&format!("s3://{rest}")).trim_start_matches("s3://")
        );
    }
    // S3's rule for bucket names (Garage and MinIO follow it): 3 to 63
    // lowercase letters, digits, dots and hyphens.
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !valid {
        bail!(
            "remote 's3://{bucket}': a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens"
        );
    }
    if prefix.contains(['?', '#']) {
        bail!("remote 's3://{rest}': a query or fragment is not supported");
    }
    let prefix = prefix.trim_matches('/');
    let display = match prefix.is_empty() {
        true => format!("s3://{bucket}"),
        false => format!("s3://{bucket}/{prefix}"),
    };
    Ok(RemoteUrl {
        scheme: Scheme::S3,
        display,
        base: match prefix.is_empty() {
            true => String::new(),
            false => format!("{prefix}/"),
        },
        user: None,
        bucket: bucket.to_string(),
    })
}

/// `s` with any `user:password@` after the scheme removed, for messages.
fn strip_userinfo(s: &str) -> String {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => s.to_string(),
            }
        }
        None => match s.rfind('@') {
            Some(at) => s[at + 1..].to_string(),
            None => s.to_string(),
        },
    }
}

/// Decode `%XX` escapes (user info may hold `@`, `:` or `/` that way).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let u = RemoteUrl::parse("redis://alice:s3cr%40t@cache.example:6380/2").unwrap();
        assert_eq!(u.scheme(), Scheme::Redis);
        assert_eq!(u.display(), "redis://cache.example:6380/2");
        assert_eq!(u.user(), Some(("alice", "s3cr@t")));
        let u = RemoteUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(u.display(), "redis://127.0.0.1");
        assert!(RemoteUrl::parse("redis://host/notadb").is_err());
    }

    #[test]
    fn unix_socket_urls_keep_no_query_but_the_database() {
        let u = RemoteUrl::parse("redis+unix:///run/redis.sock?db=3&pass=hunter2").unwrap();
        assert_eq!(u.scheme(), Scheme::RedisUnix);
        assert_eq!(u.display(), "redis+unix:///run/redis.sock?db=3");
        assert!(RemoteUrl::parse("redis+unix://relative.sock").is_err());
    }

    #[test]
    fn http_urls() {
        let u = RemoteUrl::parse("https://ci:tok%3Aen@cache.example/memorun/").unwrap();
        assert_eq!(u.scheme(), Scheme::Https);
        assert_eq!(u.display(), "https://cache.example/memorun");
        assert_eq!(u.base(), "https://cache.example/memorun/");
        assert_eq!(u.user(), Some(("ci", "tok:en")));
        let u = RemoteUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.base(), "http://127.0.0.1:8080/");
        assert!(u.user().is_none());
    }

    #[test]
    fn s3_urls() {
        let u = RemoteUrl::parse("s3://team-cache").unwrap();
        assert_eq!(u.scheme(), Scheme::S3);
        assert_eq!(
            (u.display(), u.bucket(), u.base()),
            ("s3://team-cache", "team-cache", "")
        );
        let u = RemoteUrl::parse("S3://team.cache/ci/memorun/").unwrap();
        assert_eq!(u.display(), "s3://team.cache/ci/memorun");
        assert_eq!((u.bucket(), u.base()), ("team.cache", "ci/memorun/"));
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Team",
            "s3://a_b/x",
            "s3://bucket/x?y",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_and_debug_never_show_credentials() {
        for bad in [
            "ftp://bob:hunter2@host/x",
            "bob:hunter2@host",
            "rediss://bob:hunter2@host",
            "redis://bob:hunter2@host/x",
            "http://bob:hunter2@host/a?b",
            "s3://AKIA:hunter2@bucket/x",
        ] {
            let e = RemoteUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let u = RemoteUrl::parse("http://bob:hunter2@host/x").unwrap();
        assert!(!format!("{u:?} {u}").contains("hunter2"));
    }
}
