//! The remote on an S3-compatible bucket: AWS S3, Cloudflare R2, MinIO,
//! Ceph, Garage.
//!
//! Requests go through the same `ureq` agent as the HTTP kind (same
//! timeouts, no redirects) and are signed with AWS Signature Version 4,
//! written here over `ring`, which rustls already links: an S3 SDK would
//! bring an async runtime and several megabytes into a program whose hit
//! costs a millisecond. Bodies are sent as `UNSIGNED-PAYLOAD`, so that
//! they stream from their reader without being read twice; TLS protects
//! them on the way (with an `https` endpoint), the entry's MAC and the
//! blobs' digests end to end.
//!
//! Where, and as whom ([`Settings::from_env`], read once with the rest of
//! the configuration):
//!
//! - the endpoint: `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else
//!   AWS (`https://s3.REGION.amazonaws.com`);
//! - the region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`;
//! - addressing: path-style (`ENDPOINT/BUCKET/KEY`) with a custom
//!   endpoint, as Garage and MinIO want, and for a bucket name with dots on
//!   AWS (its certificate does not cover them); virtual-hosted
//!   (`BUCKET.ENDPOINT/KEY`) on AWS otherwise. `MEMORUN_S3_ADDRESSING=path`
//!   or `virtual` overrides it;
//! - credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, with
//!   `AWS_SESSION_TOKEN` for temporary ones. Without them, requests go
//!   unsigned (a public bucket) and nothing is uploaded.
//!
//! An object is `PREFIX/NAME` in the bucket. Answers: a `GET` or `HEAD` of
//! 200 is there, 404 is not; anything else (403 for a wrong key or a
//! policy that refuses, a redirect to another region, 5xx) is a failure
//! that turns the remote off for the invocation, and its message carries
//! S3's error code. An object is stored with a `PUT` that carries
//! `If-None-Match: *` (AWS, R2 and MinIO answer 412 when the name is
//! taken); Garage 2.5 ignores that header on writes, so a `HEAD` comes
//! first whatever the store. Objects from [`MULTIPART_FROM`] bytes go up as
//! a multipart upload of [`PART_SIZE`] parts, each streamed from the
//! reader; a failed upload is aborted (unless the server timed out: the
//! bucket's lifecycle rule cleans those up).
//!
//! Invariant: the secret key and the session token live only in
//! [`Credentials`]' private fields and reach nothing but the signature and
//! the `x-amz-security-token` header; no `Debug` or message shows them.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};
use ureq::Agent;
use ureq::http::Response;

use super::deadline::{Deadline, Timed};
use super::http::{Body, agent, body_within, failed, status_cause, within};
use super::url::RemoteUrl;
use super::{Error, Mode, Put, Remote, Timeouts};

/// Objects from this size on go up as a multipart upload.
pub(crate) const MULTIPART_FROM: u64 = 64 * 1024 * 1024;

/// The size of each part but the last (S3 takes 5 MiB to 5 GiB, and at most
/// 10,000 parts: 320 GiB here, far over `MEMORUN_REMOTE_MAX_SIZE`'s
/// default of 1 GiB).
pub(crate) const PART_SIZE: u64 = 32 * 1024 * 1024;

/// The payload hash of a body that is not hashed.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Access keys. `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(..)")
    }
}

/// Where the bucket is and how to sign for it, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `https`, or `http` for a store on a private network.
    tls: bool,
    /// The endpoint's `host[:port]`.
    host: String,
    /// The region signed for (Garage's is `garage`, MinIO's `us-east-1`).
    pub region: String,
    /// `ENDPOINT/BUCKET/KEY` rather than `BUCKET.ENDPOINT/KEY`.
    pub path_style: bool,
    /// `None`: anonymous (unsigned requests, read-only).
    credentials: Option<Credentials>,
}

impl Settings {
    /// The settings for `bucket` from the `AWS_*` variables (see the module
    /// comment). An error is a sentence naming the variable at fault,
    /// without its value when that could be a secret.
    pub fn from_env(
        env: &impl Fn(&str) -> Option<OsString>,
        bucket: &str,
    ) -> Result<Settings, String> {
        let var = |name: &str| {
            env(name)
                .map(|v| v.to_string_lossy().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let custom = var("AWS_ENDPOINT_URL_S3")
            .map(|e| ("AWS_ENDPOINT_URL_S3", e))
            .or_else(|| var("AWS_ENDPOINT_URL").map(|e| ("AWS_ENDPOINT_URL", e)));
        let (tls, host) = match &custom {
            Some((name, url)) => {
                parse_endpoint(url).map_err(|why| format!("{name}={url}: {why}"))?
            }
            None => (true, format!("s3.{region}.amazonaws.com")),
        };
        let path_style = match var("MEMORUN_S3_ADDRESSING").as_deref() {
            Some("path") => true,
            Some("virtual") => false,
            Some(other) => {
                return Err(format!(
                    "MEMORUN_S3_ADDRESSING='{other}' is neither 'path' nor 'virtual'"
                ));
            }
            None => custom.is_some() || bucket.contains('.'),
        };
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key), Some(secret_key)) => Some(Credentials {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err("AWS_ACCESS_KEY_ID is set but not AWS_SECRET_ACCESS_KEY".into());
            }
            (None, Some(_)) => {
                return Err("AWS_SECRET_ACCESS_KEY is set but not AWS_ACCESS_KEY_ID".into());
            }
        };
        Ok(Settings {
            tls,
            host,
            region,
            path_style,
            credentials,
        })
    }

    /// No credentials: requests go unsigned, and nothing is uploaded.
    pub(crate) fn anonymous(&self) -> bool {
        self.credentials.is_none()
    }
}

/// `http(s)://host[:port][/]` → (TLS, `host[:port]`).
fn parse_endpoint(url: &str) -> Result<(bool, String), &'static str> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("not an http:// or https:// URL");
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err("an endpoint is http(s)://host[:port], without a path");
    }
    Ok((tls, host.to_string()))
}

/// An S3 bucket.
pub struct S3 {
    agent: Agent,
    settings: Settings,
    /// `http(s)://HOST`, where requests go.
    origin: String,
    /// The `Host` header (signed).
    host: String,
    /// The path before an object's key: `/BUCKET/` or `/`.
    path_base: String,
    /// The key prefix (`ci/` or empty).
    prefix: String,
    timeouts: Timeouts,
}

/// A request's method, for signing.
#[derive(Clone, Copy)]
enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

impl S3 {
    /// A client for the bucket `url` names; nothing is connected until the
    /// first request.
    pub fn new(url: &RemoteUrl, settings: &Settings, timeouts: Timeouts) -> S3 {
        let bucket = url.bucket();
        let (host, path_base) = match settings.path_style {
            true => (settings.host.clone(), format!("/{bucket}/")),
            false => (format!("{bucket}.{}", settings.host), "/".to_string()),
        };
        S3 {
            agent: agent(timeouts),
            origin: format!("{}://{host}", if settings.tls { "https" } else { "http" }),
            host,
            path_base,
            prefix: url.base().to_string(),
            settings: settings.clone(),
            timeouts,
        }
    }

    /// The URL and the headers of a request for the object `name`, signed
    /// unless anonymous. `payload` is the body's SHA-256 in hex, or
    /// `UNSIGNED-PAYLOAD`.
    fn prepare(
        &self,
        method: Method,
        name: &str,
        query: &[(&str, &str)],
        payload: &str,
    ) -> (String, Vec<(&'static str, String)>) {
        self.prepare_key(method, &format!("{}{name}", self.prefix), query, payload)
    }

    /// [`S3::prepare`] for the object key `key` (the bucket itself when
    /// empty).
    fn prepare_key(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        payload: &str,
    ) -> (String, Vec<(&'static str, String)>) {
        let path = format!("{}{}", self.path_base, uri_encode(key, false));
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        pairs.sort();
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let url = match query.is_empty() {
            true => format!("{}{path}", self.origin),
            false => format!("{}{path}?{query}", self.origin),
        };
        let mut headers = vec![("Host", self.host.clone())];
        let Some(creds) = &self.settings.credentials else {
            return (url, headers);
        };
        let (amz_date, _) = amz_date(SystemTime::now());
        let mut signed = vec![
            ("host", self.host.as_str()),
            ("x-amz-content-sha256", payload),
            ("x-amz-date", amz_date.as_str()),
        ];
        if let Some(token) = &creds.session_token {
            signed.push(("x-amz-security-token", token));
        }
        let auth = authorization(
            creds,
            &self.settings.region,
            method.as_str(),
            &path,
            &query,
            &signed,
            payload,
            &amz_date,
        );
        headers.push(("x-amz-content-sha256", payload.to_string()));
        headers.push(("x-amz-date", amz_date.clone()));
        if let Some(token) = &creds.session_token {
            headers.push(("x-amz-security-token", token.clone()));
        }
        headers.push(("Authorization", auth));
        (url, headers)
    }

    /// A request without a body, within `deadline` (for an answer of up
    /// to `len` bytes).
    fn call(
        &self,
        method: Method,
        name: &str,
        query: &[(&str, &str)],
        deadline: &Deadline,
        len: u64,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let (url, headers) = self.prepare(method, name, query, UNSIGNED_PAYLOAD);
        let mut req = match method {
            Method::Get => self.agent.get(&url),
            Method::Head => self.agent.head(&url),
            Method::Delete => self.agent.delete(&url),
            Method::Put | Method::Post => unreachable!("requests with a body go through send"),
        };
        for (k, v) in headers {
            req = req.header(k, v);
        }
        within(req, deadline, len).call()
    }

    /// A request with `len` bytes of `body`, plus `extra` headers
    /// (unsigned), within `deadline`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: Method,
        name: &str,
        query: &[(&str, &str)],
        extra: &[(&'static str, &str)],
        payload: &str,
        body: &mut dyn Read,
        len: u64,
        deadline: &Deadline,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let (url, headers) = self.prepare(method, name, query, payload);
        let mut req = match method {
            Method::Put => self.agent.put(&url),
            Method::Post => self.agent.post(&url),
            Method::Get | Method::Head | Method::Delete => {
                unreachable!("requests without a body go through call")
            }
        };
        for (k, v) in headers {
            req = req.header(k, v);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        within(req, deadline, len)
            .header("Content-Length", len.to_string())
            .send(ureq::SendBody::from_reader(&mut Timed::new(
                body.take(len),
                *deadline,
            )))
    }

    /// Store `len` bytes of `body` as `name`; with `if_absent`, asking the
    /// store not to replace an object (a 412 says it is there).
    fn put(
        &mut self,
        name: &str,
        body: &mut dyn Read,
        len: u64,
        if_absent: bool,
        deadline: Deadline,
    ) -> Result<Put, Error> {
        if len >= MULTIPART_FROM {
            return self.multipart(name, body, len, if_absent, deadline);
        }
        let extra: &[(&str, &str)] = match if_absent {
            true => &[("If-None-Match", "*")],
            false => &[],
        };
        let r = self
            .send(
                Method::Put,
                name,
                &[],
                extra,
                UNSIGNED_PAYLOAD,
                body,
                len,
                &deadline,
            )
            .map_err(|e| failed("PUT", name, e))?;
        match r.status().as_u16() {
            200..=299 => Ok(Put::Stored),
            // AWS: 409 while another conditional write of the name is in
            // flight; it will be there.
            412 | 409 if if_absent => Ok(Put::Present),
            _ => Err(refused("PUT", name, r)),
        }
    }

    /// A multipart upload, each part streamed from `body`: never more than
    /// a copy buffer in memory. Aborted when it fails.
    fn multipart(
        &mut self,
        name: &str,
        body: &mut dyn Read,
        len: u64,
        if_absent: bool,
        deadline: Deadline,
    ) -> Result<Put, Error> {
        let r = self
            .send(
                Method::Post,
                name,
                &[("uploads", "")],
                &[],
                EMPTY_SHA256,
                &mut io::empty(),
                0,
                &deadline,
            )
            .map_err(|e| failed("POST (multipart upload)", name, e))?;
        if r.status().as_u16() != 200 {
            return Err(refused("POST (multipart upload)", name, r));
        }
        let answer = read_answer(r, "POST (multipart upload)", name)?;
        let Some(id) = xml_element(&answer, "UploadId") else {
            return Err(Error::failed(format!(
                "POST (multipart upload) {name}: no UploadId in the answer"
            )));
        };
        let result = self.parts(name, &id, body, len, if_absent, &deadline);
        match &result {
            Ok(Put::Stored) => {}
            // A timeout would cost another one; the bucket's lifecycle rule
            // (AbortIncompleteMultipartUpload) takes the parts away.
            Err(e) if e.cools_down() => {}
            _ => {
                let abort = Deadline::new(self.timeouts.lookup);
                let _ = self.call(Method::Delete, name, &[("uploadId", &id)], &abort, 0);
            }
        }
        result
    }

    /// Send the parts of upload `id`, then complete it.
    fn parts(
        &mut self,
        name: &str,
        id: &str,
        body: &mut dyn Read,
        len: u64,
        if_absent: bool,
        deadline: &Deadline,
    ) -> Result<Put, Error> {
        let mut etags = Vec::new();
        let mut sent = 0u64;
        while sent < len {
            let part = (len - sent).min(PART_SIZE);
            let number = (etags.len() + 1).to_string();
            let what = format!("PUT (part {number})");
            let r = self
                .send(
                    Method::Put,
                    name,
                    &[("partNumber", &number), ("uploadId", id)],
                    &[],
                    UNSIGNED_PAYLOAD,
                    body,
                    part,
                    &deadline.after(sent),
                )
                .map_err(|e| failed(&what, name, e))?;
            if r.status().as_u16() != 200 {
                return Err(refused(&what, name, r));
            }
            let Some(etag) = r.headers().get("etag").and_then(|v| v.to_str().ok()) else {
                return Err(Error::failed(format!(
                    "{what} {name}: no ETag in the answer"
                )));
            };
            etags.push(etag.to_string());
            sent += part;
        }
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml_escape(etag)
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let extra: &[(&str, &str)] = match if_absent {
            true => &[("If-None-Match", "*")],
            false => &[],
        };
        let what = "POST (complete multipart upload)";
        let r = self
            .send(
                Method::Post,
                name,
                &[("uploadId", id)],
                extra,
                &sha256_hex(xml.as_bytes()),
                &mut xml.as_bytes(),
                xml.len() as u64,
                &deadline.after(len),
            )
            .map_err(|e| failed(what, name, e))?;
        match r.status().as_u16() {
            // S3 may answer 200 and put an error in the body.
            200 => {
                let answer = read_answer(r, what, name)?;
                match xml_element(&answer, "Code") {
                    Some(code) if answer.contains("<Error>") => Err(Error::failed(format!(
                        "{what} {name}: the server answered 200 ({code})"
                    ))),
                    _ => Ok(Put::Stored),
                }
            }
            412 | 409 if if_absent => Ok(Put::Present),
            _ => Err(refused(what, name, r)),
        }
    }
}

impl S3 {
    /// The objects under the prefix whose names start with `start`
    /// (`memorun/v1/`), as (name, ETag), sorted: for the tests, and for
    /// looking at a cache by hand. Never called by a run.
    pub fn list(&mut self, start: &str) -> Result<Vec<(String, String)>, Error> {
        let prefix = format!("{}{start}", self.prefix);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix.as_str())];
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let (url, headers) = self.prepare_key(Method::Get, "", &query, UNSIGNED_PAYLOAD);
            let mut req = self.agent.get(&url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let deadline = Deadline::new(self.timeouts.operation);
            let r = within(req, &deadline, 1 << 20)
                .call()
                .map_err(|e| failed("GET (list)", &prefix, e))?;
            if r.status().as_u16() != 200 {
                return Err(refused("GET (list)", &prefix, r));
            }
            let mut xml = read_answer(r, "GET (list)", &prefix)?;
            token = xml_element(&xml, "NextContinuationToken");
            while let Some(key) = xml_element(&xml, "Key") {
                let end = xml.find("</Contents>").unwrap_or(xml.len());
                let etag = xml_element(&xml[..end], "ETag").unwrap_or_default();
                names.push((key[self.prefix.len().min(key.len())..].to_string(), etag));
                xml.drain(..end);
                if xml.starts_with("</Contents>") {
                    xml.drain(.."</Contents>".len());
                }
            }
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Remote for S3 {
    fn get(
        &mut self,
        name: &str,
        max: u64,
        deadline: Deadline,
    ) -> Result<Option<Box<dyn Read + Send + '_>>, Error> {
        let r = self
            .call(Method::Get, name, &[], &deadline, max)
            .map_err(|e| failed("GET", name, e))?;
        match r.status().as_u16() {
            200 => Ok(Some(body_within(r, max, deadline))),
            404 => Ok(None),
            _ => Err(refused("GET", name, r)),
        }
    }

    fn exists(&mut self, name: &str, deadline: Deadline) -> Result<bool, Error> {
        let r = self
            .call(Method::Head, name, &[], &deadline, 0)
            .map_err(|e| failed("HEAD", name, e))?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(refused("HEAD", name, r)),
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
        // Garage ignores If-None-Match on writes: ask first.
        if mode == Mode::IfAbsent && self.exists(name, deadline)? {
            return Ok(Put::Present);
        }
        self.put(name, body, len, mode == Mode::IfAbsent, deadline)
    }
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("origin", &self.origin)
            .field("path_base", &self.path_base)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// A refusal, with S3's error code and message when the answer has them
/// (`GET` and `PUT` answers do; `HEAD` ones have no body).
fn refused(what: &str, name: &str, r: Response<ureq::Body>) -> Error {
    let status = r.status();
    let mut text = String::new();
    let _ = r
        .into_body()
        .into_reader()
        .take(4096)
        .read_to_string(&mut text);
    let code = xml_element(&text, "Code");
    // One line, and short: it goes into a warning.
    let message = xml_element(&text, "Message").map(|m| {
        let m = m.split_whitespace().collect::<Vec<_>>().join(" ");
        m.chars().take(160).collect::<String>()
    });
    let hint = match (status.as_u16(), message.as_deref()) {
        // AWS answers a missing object with a bare 403 to a key without
        // s3:ListBucket.
        (403, None | Some("Access Denied")) if what == "GET" || what == "HEAD" => {
            "; a key that reads needs s3:GetObject and s3:ListBucket"
        }
        (301 | 307, _) => "; is AWS_REGION the bucket's region?",
        _ => "",
    };
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        (None, _) => String::new(),
    };
    Error::new(
        status_cause(status.as_u16()),
        format!("{what} {name}: the server answered {status}{detail}{hint}"),
    )
}

/// A small answer's body (the XML of a multipart upload), at most 1 MiB.
fn read_answer(r: Response<ureq::Body>, what: &str, name: &str) -> Result<String, Error> {
    let mut text = String::new();
    Body(r.into_body().into_reader())
        .take(1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(&format!("{what} {name}"), &e))?;
    Ok(text)
}

/// The text of the first `<tag>…</tag>` in `xml`, unescaped. S3's answers
/// are flat enough that this is all the XML memorun needs.
fn xml_element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// SHA-256 of nothing.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - . _ ~` as `%XX`,
/// and `/` too in a query (`slash`), not in a path.
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `(YYYYMMDDTHHMMSSZ, YYYYMMDD)` in UTC.
fn amz_date(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (time, date)
}

/// The `Authorization` header of a SigV4 request. `headers` are the signed
/// ones, lowercase names, sorted by name.
#[allow(clippy::too_many_arguments)]
fn authorization(
    creds: &Credentials,
    region: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    payload: &str,
    amz_date: &str,
) -> String {
    let names = headers
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical = format!("{method}\n{path}\n{query}\n{canonical_headers}\n{names}\n{payload}");
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k = mac(format!("AWS4{}", creds.secret_key).as_bytes(), date);
    let k = mac(k.as_ref(), region);
    let k = mac(k.as_ref(), "s3");
    let k = mac(k.as_ref(), "aws4_request");
    let signature = hex(mac(k.as_ref(), &to_sign).as_ref());
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
        creds.access_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example credentials of AWS's SigV4 documentation for S3.
    fn example() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn signature(auth: &str) -> &str {
        auth.rsplit_once("Signature=").unwrap().1
    }

    /// AWS's "Signature Calculations for the Authorization Header"
    /// examples (GET Object with a Range, GET Bucket lifecycle, GET
    /// Bucket list objects).
    #[test]
    fn signatures_match_aws_examples() {
        let host = "examplebucket.s3.amazonaws.com";
        let date = "20130524T000000Z";
        let auth = authorization(
            &example(),
            "us-east-1",
            "GET",
            "/test.txt",
            "",
            &[
                ("host", host),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", date),
            ],
            EMPTY_SHA256,
            date,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        let plain = [
            ("host", host),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", date),
        ];
        let auth = authorization(
            &example(),
            "us-east-1",
            "GET",
            "/",
            "lifecycle=",
            &plain,
            EMPTY_SHA256,
            date,
        );
        assert_eq!(
            signature(&auth),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        let auth = authorization(
            &example(),
            "us-east-1",
            "GET",
            "/",
            "max-keys=2&prefix=J",
            &plain,
            EMPTY_SHA256,
            date,
        );
        assert_eq!(
            signature(&auth),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn dates_in_utc() {
        let t = |s| UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(
            amz_date(t(1_369_353_600)),
            ("20130524T000000Z".into(), "20130524".into())
        );
        assert_eq!(amz_date(t(951_825_599)).0, "20000229T115959Z");
        assert_eq!(amz_date(t(4_102_444_799)).0, "20991231T235959Z");
    }

    #[test]
    fn encoding() {
        assert_eq!(
            uri_encode("ci/memorun/v1/a b~", false),
            "ci/memorun/v1/a%20b~"
        );
        assert_eq!(uri_encode("a/b=c", true), "a%2Fb%3Dc");
    }

    fn settings(vars: &[(&str, &str)], bucket: &str) -> Result<Settings, String> {
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        };
        Settings::from_env(&env, bucket)
    }

    #[test]
    fn settings_from_the_environment() {
        // AWS: virtual-hosted, unless the bucket has dots.
        let s = settings(&[("AWS_REGION", "eu-west-3")], "cache").unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.path_style),
            (true, "s3.eu-west-3.amazonaws.com", false)
        );
        assert!(s.anonymous());
        assert!(settings(&[], "my.cache").unwrap().path_style);
        assert_eq!(settings(&[], "cache").unwrap().region, "us-east-1");
        // A custom endpoint (Garage, MinIO): path-style.
        let vars = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900/"),
            ("AWS_DEFAULT_REGION", "garage"),
            ("AWS_ACCESS_KEY_ID", "GK1"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2"),
        ];
        let s = settings(&vars, "cache").unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.path_style),
            (false, "127.0.0.1:3900", true)
        );
        assert_eq!(s.region, "garage");
        assert!(!s.anonymous());
        assert!(!format!("{s:?}").contains("hunter2"));
        // The S3-specific endpoint wins; the override wins.
        let s = settings(
            &[
                ("AWS_ENDPOINT_URL", "http://a"),
                ("AWS_ENDPOINT_URL_S3", "https://b:9000"),
                ("MEMORUN_S3_ADDRESSING", "virtual"),
            ],
            "cache",
        )
        .unwrap();
        assert_eq!(
            (s.tls, s.host.as_str(), s.path_style),
            (true, "b:9000", false)
        );
        for bad in [
            vec![("AWS_ENDPOINT_URL", "127.0.0.1:3900")],
            vec![("AWS_ENDPOINT_URL", "http://h/path")],
            vec![("MEMORUN_S3_ADDRESSING", "dns")],
            vec![("AWS_ACCESS_KEY_ID", "GK1")],
            vec![("AWS_SECRET_ACCESS_KEY", "hunter2")],
        ] {
            let e = settings(&bad, "cache").unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn requests_are_addressed_and_signed() {
        let url = RemoteUrl::parse("s3://cache/ci").unwrap();
        let vars = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900"),
            ("AWS_REGION", "garage"),
            ("AWS_ACCESS_KEY_ID", "GK1"),
            ("AWS_SECRET_ACCESS_KEY", "hunter2"),
            ("AWS_SESSION_TOKEN", "tok"),
        ];
        let s3 = S3::new(
            &url,
            &settings(&vars, "cache").unwrap(),
            Timeouts::default(),
        );
        let (u, h) = s3.prepare(
            Method::Put,
            "memorun/x",
            &[("uploadId", "a/b"), ("partNumber", "2")],
            UNSIGNED_PAYLOAD,
        );
        assert_eq!(
            u,
            "http://127.0.0.1:3900/cache/ci/memorun/x?partNumber=2&uploadId=a%2Fb"
        );
        let names: Vec<&str> = h.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "Host",
                "x-amz-content-sha256",
                "x-amz-date",
                "x-amz-security-token",
                "Authorization"
            ]
        );
        let auth = &h.last().unwrap().1;
        assert!(
            auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
            ),
            "{auth}"
        );
        assert!(!auth.contains("hunter2"));
        // Anonymous: no signature at all.
        let anon = S3::new(&url, &settings(&[], "cache").unwrap(), Timeouts::default());
        let (u, h) = anon.prepare(Method::Get, "memorun/x", &[], UNSIGNED_PAYLOAD);
        assert_eq!(u, "https://cache.s3.us-east-1.amazonaws.com/ci/memorun/x");
        assert_eq!(
            h,
            [("Host", "cache.s3.us-east-1.amazonaws.com".to_string())]
        );
    }

    #[test]
    fn xml_answers() {
        let x = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket>\
                 <UploadId>VXBsb2FkIElE&amp;x</UploadId></InitiateMultipartUploadResult>";
        assert_eq!(
            xml_element(x, "UploadId").as_deref(),
            Some("VXBsb2FkIElE&x")
        );
        assert_eq!(xml_element(x, "Code"), None);
        assert_eq!(xml_escape("\"e&t\""), "&quot;e&amp;t&quot;");
    }
}
