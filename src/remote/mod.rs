//! The remote tier: a cache shared between machines, on servers people
//! already run (Redis, an HTTP store that takes `PUT`, an S3 bucket).
//!
//! - [`Remote`] is the seam: get an object by name as a bounded stream,
//!   store one unless it is there, ask whether one is there, each within a
//!   [`Deadline`]. One file per kind of server implements it ([`redis`],
//!   [`http`], [`s3`]); another kind is a new file and a line in
//!   [`connect`].
//! - [`Tier`] is the logic on top, the same for every kind: look a key up
//!   and install what it finds into the local store ([`Tier::fetch`]),
//!   upload a recorded entry ([`Tier::upload`]), say whether the remote
//!   holds an entry ([`Tier::holds`]).
//! - [`wire`] is the entry's transfer format and the MACs of everything
//!   the remote holds; [`url`] parses the URL and keeps its credentials
//!   out of sight; [`deadline`] bounds each operation's wall-clock time;
//!   [`cooldown`] remembers a broken remote across invocations.
//!
//! Objects are named `memorun/v2/entries/<id>`, `memorun/v2/blobs/<2
//! hex>/<id>`, `memorun/v2/manifests/<id>` and
//! `memorun/v2/manifest-index/<id>` (a path under an HTTP base URL, a key
//! in Redis, an object key under the bucket's prefix), where each `<id>` is
//! a keyed BLAKE3 of what the object is (the key, the blob's digest, ...)
//! under a key derived from the team's secret: two secrets never address
//! the same object, so a client with the wrong secret never finds, and so
//! never "repairs", the team's entries. Version 1's names are never read.
//!
//! Invariants, in the order of the product's promises:
//!
//! - Nothing unverified is used: an entry, a trace manifest and a manifest
//!   index must carry a valid MAC under the team's secret for their own
//!   name, checked before anything in them is decoded (and before any local
//!   path a manifest names is looked at), and every blob must hash to its
//!   digest; anything else is a miss, counted, and never replayed. The
//!   local store then replays it through the usual path, verifying it
//!   again.
//! - The remote never fails or hangs a run: every operation has a
//!   wall-clock deadline no server can stretch ([`deadline`]), every reply
//!   is bounded in memory whatever its length claims, and the first failure
//!   turns the remote off for the rest of the invocation with one warning;
//!   one that says the server is down or broken turns it off for every
//!   invocation sharing the cache directory for a while ([`cooldown`]).
//! - Blobs go up before the entry that names them, and an entry already
//!   there is never overwritten, so a reader never sees an entry whose
//!   blobs were not uploaded (eviction can still take them: a miss). The
//!   one exception: an entry this invocation found broken (blobs gone,
//!   failing verification) is replaced by the one its run recorded.
//! - Nothing here runs, connects or allocates unless a remote is
//!   configured: a local hit costs what it cost before.

pub mod cooldown;
pub(crate) mod deadline;
pub(crate) mod http;
pub(crate) mod redis;
pub mod s3;
pub(crate) mod tiered;
pub(crate) mod url;
pub(crate) mod wire;

use std::fmt;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::key::{Digest, Key};
use crate::outputs::files::{Node, OutputRoot};
use crate::store::counters::Counter;
use crate::store::{Entry, NewEntry, Source, Spool, Store, StoredStream};
use crate::term::format::human_size;
use crate::term::ui::Ui;

pub use deadline::Deadline;
pub use url::RemoteUrl;

/// Default connect timeout (ccache's): a remote that is down costs this
/// once per cool-down.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

/// Default deadline of a lookup of a small object (an entry, a trace
/// manifest, an index): a hit is fast or it is a miss.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Default deadline of any other operation (a blob may take longer while
/// it keeps `deadline::MIN_RATE`).
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Default cap on one object sent to the remote: larger entries stay
/// local, counted as too large.
pub(crate) const MAX_OBJECT: u64 = 1024 * 1024 * 1024;

/// The version of the remote's layout, in every object's name. If you
/// change a name or what an object holds, change this: older memoruns
/// then never read the new objects, nor newer ones the old.
pub(crate) const LAYOUT: u32 = 2;

/// How long a remote may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect.
    pub connect: Duration,
    /// To look up a small object (entry, manifest, index), in all.
    pub lookup: Duration,
    /// For any other operation, in all (see [`deadline`]).
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            lookup: LOOKUP_TIMEOUT,
            operation: OPERATION_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// Parse `MEMORUN_REMOTE_TIMEOUT`: `OPERATION` (`10s`) or
    /// `CONNECT,OPERATION` (`500ms,30s`). With one value the connect
    /// timeout is the default or that value, whichever is shorter. The
    /// lookup deadline is the default or the operation's, whichever is
    /// shorter.
    pub fn parse(s: &str) -> Option<Timeouts> {
        let d = |t: &str| {
            humantime::parse_duration(t.trim())
                .ok()
                .filter(|d| !d.is_zero())
        };
        let (connect, operation) = match s.split_once(',') {
            Some((c, o)) => (d(c)?, d(o)?),
            None => {
                let operation = d(s)?;
                (CONNECT_TIMEOUT.min(operation), operation)
            }
        };
        Some(Timeouts {
            connect,
            lookup: LOOKUP_TIMEOUT.min(operation),
            operation,
        })
    }

    /// Parse `MEMORUN_REMOTE_LOOKUP_TIMEOUT` (`2s`, `500ms`).
    pub(crate) fn parse_lookup(s: &str) -> Option<Duration> {
        humantime::parse_duration(s.trim())
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// Keys derived from the team's secret (`MEMORUN_SECRET`).
#[derive(Clone, PartialEq, Eq)]
pub struct Shared {
    /// Keys the digests of env values and stdin, in place of the store's
    /// own secret, so that every machine computes the same key.
    pub key_secret: [u8; 32],
    /// Keys the MAC of every entry, manifest and index on the remote.
    pub mac_key: [u8; 32],
    /// Keys the names of the remote's objects.
    pub name_key: [u8; 32],
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared(..)")
    }
}

/// The shortest `MEMORUN_SECRET` accepted: env values are keyed with it,
/// and a short one would make them cheaper to brute-force than the store's
/// own 32 random bytes do.
pub(crate) const MIN_SECRET_LEN: usize = 32;

impl Shared {
    /// Derive the keys from the secret's bytes (BLAKE3 key derivation,
    /// one context per use, so that one key never serves two purposes).
    pub fn derive(secret: &[u8]) -> Shared {
        Shared {
            key_secret: blake3::derive_key(
                "memorun 2026 shared secret: env and stdin digests",
                secret,
            ),
            mac_key: blake3::derive_key("memorun 2026 shared secret: remote entry MAC", secret),
            name_key: blake3::derive_key("memorun 2026 shared secret: remote object names", secret),
        }
    }

    /// The keyed id of an object of kind `what` for `parts`, in hex.
    fn id(&self, what: &str, parts: &[&Digest]) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.name_key);
        h.update(&(what.len() as u32).to_le_bytes());
        h.update(what.as_bytes());
        for p in parts {
            h.update(&p.0);
        }
        h.finalize().to_hex().to_string()
    }

    /// The name of the entry under `key`.
    pub(crate) fn entry_name(&self, key: &Digest) -> String {
        format!("memorun/v{LAYOUT}/entries/{}", self.id("entry", &[key]))
    }

    /// The name of the blob with this digest.
    pub(crate) fn blob_name(&self, digest: &Digest) -> String {
        let id = self.id("blob", &[digest]);
        format!("memorun/v{LAYOUT}/blobs/{}/{id}", &id[..2])
    }

    /// The list of trace manifests recorded under the base key `base` (see
    /// `key::traced`): up to `MAX_MANIFESTS` digests, most recent first,
    /// sealed.
    pub fn manifest_index_name(&self, base: &Digest) -> String {
        format!(
            "memorun/v{LAYOUT}/manifest-index/{}",
            self.id("manifest index", &[base])
        )
    }

    /// A trace manifest, in its portable form, sealed.
    pub fn manifest_name(&self, base: &Digest, digest: &Digest) -> String {
        format!(
            "memorun/v{LAYOUT}/manifests/{}",
            self.id("manifest", &[base, digest])
        )
    }
}

/// A configured remote.
#[derive(Clone)]
pub(crate) struct RemoteConfig {
    /// Where.
    pub url: RemoteUrl,
    /// Look up, never write.
    pub read_only: bool,
    /// A bearer token (`MEMORUN_REMOTE_TOKEN`), for HTTP.
    pub token: Option<String>,
    /// Keys derived from the team's secret.
    pub shared: Shared,
    /// How long the remote may take.
    pub timeouts: Timeouts,
    /// The largest object sent.
    pub max_object: u64,
    /// For an `s3://` URL: the endpoint, region and credentials.
    pub s3: Option<s3::Settings>,
    /// Ask the remote even while it cools down (`MEMORUN_REMOTE_RETRY=1`).
    pub retry: bool,
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("read_only", &self.read_only)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// What kind of failure a remote operation met: whether it says the
/// server is down or broken (a cool-down for every invocation) or is about
/// this request (this invocation only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The deadline passed.
    Timeout,
    /// Refused, reset, unreachable, cut short.
    Down,
    /// A server error (5xx), or an answer that breaks the protocol.
    ServerError,
    /// An answer about the request (401, 403, 404, 413, a Redis error
    /// reply), with the HTTP status when there is one.
    Refused(Option<u16>),
    /// Anything else (a local failure).
    Other,
}

/// Why a remote operation failed: what kind of failure (its variant; see
/// [`Cause`]) and what happened, without credentials.
#[derive(Debug)]
pub enum Error {
    /// The deadline passed.
    Timeout(String),
    /// Refused, reset, unreachable, cut short.
    Down(String),
    /// A server error (5xx), or an answer that breaks the protocol.
    ServerError(String),
    /// An answer about the request, with the HTTP status when there is one.
    Refused(Option<u16>, String),
    /// Anything else (a local failure).
    Other(String),
}

impl Error {
    /// A failure of kind `cause`.
    pub fn new(cause: Cause, reason: impl Into<String>) -> Error {
        let reason = reason.into();
        match cause {
            Cause::Timeout => Error::Timeout(reason),
            Cause::Down => Error::Down(reason),
            Cause::ServerError => Error::ServerError(reason),
            Cause::Refused(status) => Error::Refused(status, reason),
            Cause::Other => Error::Other(reason),
        }
    }

    /// A failure that is neither the server's nor the request's.
    pub(crate) fn failed(reason: impl Into<String>) -> Error {
        Error::Other(reason.into())
    }

    /// An I/O failure talking to the server: a timeout if it says so, else
    /// the server is down.
    pub(crate) fn io(what: &str, e: &io::Error) -> Error {
        let reason = format!("{what}: {e}");
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(reason),
            _ => Error::Down(reason),
        }
    }

    /// What kind of failure it is.
    pub(crate) fn cause(&self) -> Cause {
        match self {
            Error::Timeout(_) => Cause::Timeout,
            Error::Down(_) => Cause::Down,
            Error::ServerError(_) => Cause::ServerError,
            Error::Refused(status, _) => Cause::Refused(*status),
            Error::Other(_) => Cause::Other,
        }
    }

    /// What happened, without credentials.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Error::Timeout(r)
            | Error::Down(r)
            | Error::ServerError(r)
            | Error::Refused(_, r)
            | Error::Other(r) => r,
        }
    }

    /// The reason, to edit (credentials taken out of it).
    pub(crate) fn reason_mut(&mut self) -> &mut String {
        match self {
            Error::Timeout(r)
            | Error::Down(r)
            | Error::ServerError(r)
            | Error::Refused(_, r)
            | Error::Other(r) => r,
        }
    }

    /// It was a timeout.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// It says the server is down or broken: a cool-down.
    pub(crate) fn cools_down(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_) | Error::Down(_) | Error::ServerError(_)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Error {}

/// How [`Remote::store`] treats an object already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Leave it as it is ([`Put::Present`]).
    IfAbsent,
    /// Replace it.
    Replace,
}

/// What storing an object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// It was stored.
    Stored,
    /// One of that name was already there; it was left as it was.
    Present,
}

/// A server that holds memorun's objects. Implementations stream: no
/// object is held in memory whole beyond a bounded chunk, and every call
/// ends by its deadline whatever the server does.
pub trait Remote {
    /// The object named `name` as a stream, or `None` when there is none.
    /// An object said to be longer than `max` is not read: its stream
    /// fails as invalid data at once. The stream ends in an error, not
    /// early, when the object is cut short, and in a timeout when
    /// `deadline` passes.
    fn get(
        &mut self,
        name: &str,
        max: u64,
        deadline: Deadline,
    ) -> Result<Option<Box<dyn Read + Send + '_>>, Error>;

    /// Whether an object named `name` is there, whole.
    fn exists(&mut self, name: &str, deadline: Deadline) -> Result<bool, Error>;

    /// Store `len` bytes from `body` as `name`: with [`Mode::IfAbsent`]
    /// unless an object of that name is there already; with
    /// [`Mode::Replace`] replacing what is there (only ever an entry found
    /// broken). Readers see the old object or the new one, never a mix.
    fn store(
        &mut self,
        name: &str,
        body: &mut dyn Read,
        len: u64,
        mode: Mode,
        deadline: Deadline,
    ) -> Result<Put, Error>;
}

/// Connect to the remote `config` names (Redis connects and logs in here,
/// within `deadline`; HTTP and S3 connect on their first request).
pub(crate) fn connect(config: &RemoteConfig, deadline: Deadline) -> Result<Box<dyn Remote>, Error> {
    match config.url.scheme() {
        url::Scheme::Redis | url::Scheme::RedisUnix => Ok(Box::new(redis::Redis::connect(
            &config.url,
            config.timeouts,
            deadline,
        )?)),
        url::Scheme::Http | url::Scheme::Https => Ok(Box::new(http::Http::new(
            &config.url,
            config.token.as_deref(),
            config.timeouts,
        ))),
        url::Scheme::S3 => match &config.s3 {
            Some(settings) => Ok(Box::new(s3::S3::new(
                &config.url,
                settings,
                config.timeouts,
            ))),
            None => Err(Error::failed("no S3 settings")),
        },
    }
}

/// Trace manifests bigger than this are not exchanged (a run that read
/// this much is better rerun than matched over the network).
const MAX_MANIFEST: u64 = 16 * 1024 * 1024;

/// What the local store needs to install an entry for this invocation:
/// the remote gives the outcome, the invocation its own names for it.
pub(crate) struct Local<'a> {
    /// The key (the same on every machine).
    pub key: &'a Key,
    /// The command line for display.
    pub display: String,
    /// The working directory, raw bytes.
    pub cwd: Vec<u8>,
    /// Names the command in its directory.
    pub manifest: Digest,
    /// For a traced command: the trace manifest the entry is found
    /// through, installed with it.
    pub traced: Option<crate::store::NewManifest>,
}

/// What a remote lookup did.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The entry was downloaded, verified and installed in the local store.
    Installed {
        /// Bytes downloaded.
        bytes: u64,
        /// How long it took.
        took: Duration,
    },
    /// Not there, incomplete or not valid (counted): run the command.
    Miss,
    /// The remote is off for this invocation.
    Off,
}

/// What an upload did.
#[derive(Debug)]
pub(crate) enum Uploaded {
    /// The entry (and the blobs the remote lacked) went up.
    Stored {
        /// Bytes sent.
        bytes: u64,
        /// How long it took.
        took: Duration,
    },
    /// Nothing to do: read-only, off, too large, or already there.
    Skipped,
}

/// The remote tier of one invocation: connected on first use, off after
/// its first failure (read-only after a refused upload), skipped while
/// the remote cools down.
pub(crate) struct Tier {
    config: RemoteConfig,
    remote: Option<Box<dyn Remote>>,
    off: bool,
    /// The configuration's, or set by a refused upload.
    read_only: bool,
    /// The key whose remote entry was found broken (blobs gone, or not
    /// verifying): the upload after the run replaces it.
    broken: Option<Digest>,
    /// This remote's cool-down state in the cache directory, once asked.
    cooldown: Option<cooldown::Cooldown>,
    /// A state file was there: the first answer removes it.
    cooling: bool,
    /// Not asked: cooling down until then (ms since the epoch).
    skipped_until: Option<i64>,
}

/// Copy buffer for blobs.
const COPY_BUF: usize = 256 * 1024;

/// What an operation of the tier is, for what a failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

impl Tier {
    /// A tier for `config`; nothing is connected yet.
    pub fn new(config: RemoteConfig) -> Tier {
        Tier {
            read_only: config.read_only,
            config,
            remote: None,
            off: false,
            broken: None,
            cooldown: None,
            cooling: false,
            skipped_until: None,
        }
    }

    /// The URL without credentials.
    pub(crate) fn display(&self) -> &str {
        self.config.url.display()
    }

    /// When the remote was not asked because it cools down: until when
    /// (ms since the epoch).
    pub(crate) fn skipped_until(&self) -> Option<i64> {
        self.skipped_until
    }

    /// Whether this invocation may write.
    pub(crate) fn writable(&self) -> bool {
        !self.read_only && !self.off
    }

    fn lookup_deadline(&self) -> Deadline {
        Deadline::new(self.config.timeouts.lookup)
    }

    fn operation_deadline(&self) -> Deadline {
        Deadline::new(self.config.timeouts.operation)
    }

    fn transfer_deadline(&self) -> Deadline {
        Deadline::transfer(self.config.timeouts.operation)
    }

    /// The remote, connected, or `None` when it is off or cooling down.
    fn remote(
        &mut self,
        store: &mut dyn Store,
        ui: &Ui,
        deadline: Deadline,
    ) -> Option<&mut (dyn Remote + 'static)> {
        if self.off {
            return None;
        }
        if self.remote.is_none() {
            if self.cooldown.is_none() && self.skip_while_cooling(store, ui) {
                return None;
            }
            match connect(&self.config, deadline) {
                Ok(r) => self.remote = Some(r),
                Err(e) => {
                    self.fail(store, ui, &e, Op::Read);
                    return None;
                }
            }
        }
        self.remote.as_deref_mut()
    }

    /// Read this remote's cool-down state: when it is cooling down (and no
    /// retry was asked for), turn it off for this run, quietly.
    fn skip_while_cooling(&mut self, store: &mut dyn Store, ui: &Ui) -> bool {
        let locks = store.locks_dir();
        let Some(root) = locks.parent() else {
            return false;
        };
        let cd = cooldown::Cooldown::new(root, self.config.url.display());
        let state = cd.read();
        self.cooldown = Some(cd);
        let Some(state) = state else {
            return false;
        };
        self.cooling = true;
        if !state.active() || self.config.retry {
            return false;
        }
        self.off = true;
        self.skipped_until = Some(state.until_ms);
        store.tally(&[(Counter::RemoteSkipped, 1)]);
        ui.status(format_args!(
            "remote cache {} not asked: cooling down until {} after {} ({}); \
             MEMORUN_REMOTE_RETRY=1 retries now",
            self.display(),
            cooldown::clock(state.until_ms),
            plural_failures(state.failures),
            state.reason
        ));
        true
    }

    /// The remote answered (whatever the answer): a cool-down is over.
    fn answered(&mut self) {
        if self.cooling {
            self.cooling = false;
            if let Some(cd) = &self.cooldown {
                cd.succeeded();
            }
        }
    }

    /// A failure: count it; a refused upload makes the rest of the run
    /// read-only; anything else turns the remote off for the run, and for
    /// every run of this cache for a while when it says the server is down
    /// or broken. One warning.
    fn fail(&mut self, store: &mut dyn Store, ui: &Ui, e: &Error, op: Op) {
        let counter = match e.is_timeout() {
            true => Counter::RemoteTimeouts,
            false => Counter::RemoteErrors,
        };
        store.tally(&[(counter, 1)]);
        if let (Op::Write, Cause::Refused(status)) = (op, e.cause()) {
            self.read_only = true;
            let hint = match status {
                Some(401 | 403) => {
                    ". If this machine may not write there, use --remote-read-only \
                     (or MEMORUN_REMOTE_READ_ONLY=1)"
                }
                Some(413) => {
                    ". The server refuses objects this large: raise its limit, or lower \
                     MEMORUN_REMOTE_MAX_SIZE"
                }
                _ => "",
            };
            let what = match (status, ui.is_verbose()) {
                (_, true) => e.reason().to_string(),
                (Some(s), false) => format!("HTTP {s}"),
                (None, false) => e.reason().to_string(),
            };
            ui.warn(format_args!(
                "remote cache {} refused an upload ({what}); this run only reads from it{hint}",
                self.display()
            ));
            return;
        }
        self.off = true;
        self.remote = None;
        let how = match e.is_timeout() {
            true => "timed out",
            false => "failed",
        };
        let why = match ui.is_verbose() {
            true => format!(": {}", e.reason()),
            false => String::new(),
        };
        if e.cools_down()
            && let Some(cd) = &self.cooldown
        {
            self.cooling = false;
            match cd.failed(e.reason()) {
                cooldown::Started::Now(s) => {
                    ui.warn(format_args!(
                        "remote cache {} {how}{why}; no run of this cache asks it until {} \
                         ({}); MEMORUN_REMOTE_RETRY=1 retries now{}",
                        self.display(),
                        cooldown::clock(s.until_ms),
                        crate::term::format::human_duration(cooldown::State::length(s.failures)),
                        if why.is_empty() { " (-v says why)" } else { "" }
                    ));
                    return;
                }
                cooldown::Started::Already(s) => {
                    ui.status(format_args!(
                        "remote cache {} {how}{why}; cooling down until {}",
                        self.display(),
                        cooldown::clock(s.until_ms)
                    ));
                    return;
                }
                cooldown::Started::Unwritable => {}
            }
        }
        match why.is_empty() {
            true => ui.warn(format_args!(
                "remote cache {} {how}; not used for the rest of this run (-v says why)",
                self.display()
            )),
            false => ui.warn(format_args!(
                "remote cache {}{why}; not used for the rest of this run",
                self.display()
            )),
        }
    }

    /// Whether the remote holds an entry under `key` (for `why`); `None`
    /// when it cannot be asked.
    pub(crate) fn holds(&mut self, store: &mut dyn Store, ui: &Ui, key: &Digest) -> Option<bool> {
        let name = self.config.shared.entry_name(key);
        let deadline = self.lookup_deadline();
        let remote = self.remote(store, ui, deadline)?;
        match remote.exists(&name, deadline) {
            Ok(b) => {
                self.answered();
                Some(b)
            }
            Err(e) => {
                self.fail(store, ui, &e, Op::Read);
                None
            }
        }
    }

    /// Look `local.key` up on the remote; if it is there and verifies,
    /// install it in `store` (as recorded then) for the caller to replay.
    pub(crate) fn fetch(&mut self, store: &mut dyn Store, ui: &Ui, local: Local<'_>) -> Fetched {
        let started = Instant::now();
        let key = local.key.digest;
        let shared = self.config.shared.clone();
        let deadline = self.lookup_deadline();
        let Some(remote) = self.remote(store, ui, deadline) else {
            return Fetched::Off;
        };
        let found = match download_entry(remote, &shared, &key, deadline) {
            Ok(f) => f,
            Err(e) => {
                self.fail(store, ui, &e, Op::Read);
                return Fetched::Off;
            }
        };
        self.answered();
        let (entry, bytes) = match found {
            Found::Entry(entry, n) => (*entry, n),
            Found::Absent => {
                store.tally(&[(Counter::RemoteMisses, 1)]);
                return Fetched::Miss;
            }
            Found::Invalid(n) => {
                self.broken = Some(key);
                ui.status("the remote entry failed verification; running the command");
                store.tally(&[
                    (Counter::RemoteMisses, 1),
                    (Counter::RemoteCorrupt, 1),
                    (Counter::RemoteBytesDown, n as i64),
                ]);
                return Fetched::Miss;
            }
        };
        self.install(store, ui, local, entry, bytes, started)
    }

    /// Download the blobs of `entry` (each verified against its digest)
    /// and install it in the local store.
    fn install(
        &mut self,
        store: &mut dyn Store,
        ui: &Ui,
        local: Local<'_>,
        mut entry: Entry,
        mut bytes: u64,
        started: Instant,
    ) -> Fetched {
        let key = local.key.digest;
        let shared = self.config.shared.clone();
        let op = self.config.timeouts.operation;
        let transfer = self.transfer_deadline();
        let Some(remote) = self.remote(store, ui, transfer) else {
            return Fetched::Off;
        };
        // The blobs, each verified against its name, spooled locally.
        let mut streams = Vec::with_capacity(3);
        for s in [&entry.stdout, &entry.stderr, &entry.order] {
            let deadline = Deadline::transfer(op);
            match fetch_stream(remote, &shared, s, store.spool(), &mut bytes, deadline) {
                Ok(Ok(spooled)) => streams.push(spooled),
                Ok(Err(miss)) => return self.blob_miss(store, ui, &key, miss, bytes),
                Err(e) => {
                    store.tally(&[(Counter::RemoteBytesDown, bytes as i64)]);
                    self.fail(store, ui, &e, Op::Read);
                    return Fetched::Off;
                }
            }
        }
        let file_checks = match self.install_files(store, ui, &key, &mut entry, &mut bytes) {
            Ok(checks) => checks,
            Err(done) => return done,
        };
        let order = streams.pop().expect("three streams");
        let stderr = streams.pop().expect("three streams");
        let stdout = streams.pop().expect("three streams");
        // The arguments the command created: outputs from now on, here as
        // on the machine that recorded it.
        let created = entry
            .outputs
            .iter()
            .filter(|r| r.kind == crate::outputs::files::RootKind::Auto)
            .map(|r| r.declared.clone())
            .collect();
        let new = NewEntry {
            key: local.key,
            display: local.display,
            cwd: local.cwd,
            duration: entry.duration,
            exit_code: entry.exit_code,
            stdout,
            stderr,
            order,
            outputs: entry.outputs,
            file_checks,
            stdin_advance: entry.stdin_advance,
            manifest: local.manifest,
            created,
            traced: local.traced,
            recorded_at: Some(entry.created_ms.min(crate::store::now_ms())),
        };
        if let Err(e) = store.insert(new) {
            return local_failure(store, ui, e, bytes);
        }
        store.tally(&[
            (Counter::RemoteHits, 1),
            (Counter::RemoteBytesDown, bytes as i64),
        ]);
        Fetched::Installed {
            bytes,
            took: started.elapsed(),
        }
    }

    /// Download the output files' blobs of `entry` (each distinct one
    /// once, verified) into the store, pointing `entry` at the stored
    /// copies; their fast checks, or how the fetch ended.
    fn install_files(
        &mut self,
        store: &mut dyn Store,
        ui: &Ui,
        key: &Digest,
        entry: &mut Entry,
        bytes: &mut u64,
    ) -> Result<Vec<(Digest, [u8; 16])>, Fetched> {
        let shared = self.config.shared.clone();
        let op = self.config.timeouts.operation;
        let Some(remote) = self.remote(store, ui, Deadline::transfer(op)) else {
            return Err(Fetched::Off);
        };
        let mut file_checks = Vec::new();
        let mut installed_files: Vec<(Digest, StoredStream)> = Vec::new();
        for content in file_blobs(&mut entry.outputs) {
            if let Some((_, s)) = installed_files.iter().find(|(d, _)| *d == content.digest) {
                *content = s.clone();
                continue;
            }
            let deadline = Deadline::transfer(op);
            let spooled = match fetch_stream(
                remote,
                &shared,
                content,
                store.spool_file(),
                bytes,
                deadline,
            ) {
                Ok(Ok(s)) => s,
                Ok(Err(miss)) => return Err(self.blob_miss(store, ui, key, miss, *bytes)),
                Err(e) => {
                    store.tally(&[(Counter::RemoteBytesDown, *bytes as i64)]);
                    self.fail(store, ui, &e, Op::Read);
                    return Err(Fetched::Off);
                }
            };
            match store.put_file(spooled) {
                Ok((stored, check)) => {
                    if stored.inline.is_none() {
                        file_checks.push((stored.digest, check));
                    }
                    installed_files.push((content.digest, stored.clone()));
                    *content = stored;
                }
                Err(e) => return Err(local_failure(store, ui, e, *bytes)),
            }
        }
        file_checks.sort();
        file_checks.dedup_by(|a, b| a.0 == b.0);
        Ok(file_checks)
    }

    /// A blob was missing or did not verify: a miss, counted; an upload
    /// after the run will put the blobs back.
    fn blob_miss(
        &mut self,
        store: &mut dyn Store,
        ui: &Ui,
        key: &Digest,
        miss: BlobMiss,
        bytes: u64,
    ) -> Fetched {
        let counter = match miss {
            BlobMiss::Absent => {
                ui.status("the remote entry's blobs are gone (evicted); running the command");
                Counter::RemoteIncomplete
            }
            BlobMiss::Invalid => {
                ui.status("a blob of the remote entry failed verification; running the command");
                Counter::RemoteCorrupt
            }
        };
        self.broken = Some(*key);
        store.tally(&[
            (Counter::RemoteMisses, 1),
            (counter, 1),
            (Counter::RemoteBytesDown, bytes as i64),
        ]);
        Fetched::Miss
    }

    /// The trace manifests the remote lists under `base`, most recent
    /// first, leaving out `known` ones, each handed to `matches` as it
    /// arrives, until one does: its digest. The index and each manifest
    /// must carry a valid MAC for their own name, checked before anything
    /// in them is read (a writer without the secret cannot make this
    /// machine look at a path), and each manifest must hash to its digest.
    /// The whole search, `matches` included (it gets the deadline), ends
    /// by the lookup deadline; at most `MAX_MANIFESTS` are read, each at
    /// most `MAX_MANIFEST` bytes, one at a time.
    pub(crate) fn find_manifest(
        &mut self,
        store: &mut dyn Store,
        ui: &Ui,
        base: &Digest,
        known: &[Digest],
        matches: &mut dyn FnMut(&Digest, &[u8], &Deadline) -> bool,
    ) -> Option<Digest> {
        let shared = self.config.shared.clone();
        let deadline = self.lookup_deadline();
        let remote = self.remote(store, ui, deadline)?;
        let result = (|| -> Result<Option<Digest>, Error> {
            let limit = 32 * crate::store::MAX_MANIFESTS as u64 + wire::SEAL_LEN as u64;
            let name = shared.manifest_index_name(base);
            let Some(sealed) = read_small(remote, &name, limit, deadline)? else {
                return Ok(None);
            };
            let Some(index) = wire::open(&shared.mac_key, "manifest index", &[base], &sealed)
            else {
                return Ok(None);
            };
            let mut seen: Vec<Digest> = Vec::new();
            for d in index.chunks_exact(32).filter_map(Digest::from_slice) {
                if known.contains(&d) || seen.contains(&d) {
                    continue;
                }
                if deadline.remaining(0).is_none() {
                    break;
                }
                seen.push(d);
                let name = shared.manifest_name(base, &d);
                let limit = MAX_MANIFEST + wire::SEAL_LEN as u64;
                let Some(sealed) = read_small(remote, &name, limit, deadline)? else {
                    continue;
                };
                let Some(body) = wire::open(&shared.mac_key, "manifest", &[base, &d], &sealed)
                else {
                    continue;
                };
                if Digest::from(blake3::hash(body)) == d && matches(&d, body, &deadline) {
                    return Ok(Some(d));
                }
            }
            Ok(None)
        })();
        match result {
            Ok(found) => {
                self.answered();
                found
            }
            Err(e) => {
                self.fail(store, ui, &e, Op::Read);
                None
            }
        }
    }

    /// Publish the trace manifest `digest` (portable form `bytes`) of an
    /// entry just uploaded: the manifest, then the index of `base` with it
    /// first, each sealed. Two writers at once may lose one's index line:
    /// a miss later, never a wrong replay.
    pub(crate) fn upload_manifest(
        &mut self,
        store: &mut dyn Store,
        ui: &Ui,
        base: &Digest,
        digest: &Digest,
        bytes: &[u8],
    ) {
        if !self.writable() || bytes.len() as u64 > MAX_MANIFEST {
            return;
        }
        let shared = self.config.shared.clone();
        let deadline = self.operation_deadline();
        let Some(remote) = self.remote(store, ui, deadline) else {
            return;
        };
        let result = (|| -> Result<(), Error> {
            let sealed = wire::seal(&shared.mac_key, "manifest", &[base, digest], bytes);
            remote.store(
                &shared.manifest_name(base, digest),
                &mut io::Cursor::new(&sealed),
                sealed.len() as u64,
                Mode::IfAbsent,
                deadline,
            )?;
            let name = shared.manifest_index_name(base);
            let limit = 32 * crate::store::MAX_MANIFESTS as u64 + wire::SEAL_LEN as u64;
            let old = read_small(remote, &name, limit, deadline)?.unwrap_or_default();
            let old = wire::open(&shared.mac_key, "manifest index", &[base], &old).unwrap_or(&[]);
            let mut index = digest.0.to_vec();
            for d in old.chunks_exact(32).filter(|d| *d != digest.0) {
                if index.len() >= 32 * crate::store::MAX_MANIFESTS {
                    break;
                }
                index.extend_from_slice(d);
            }
            let sealed = wire::seal(&shared.mac_key, "manifest index", &[base], &index);
            remote.store(
                &name,
                &mut io::Cursor::new(&sealed),
                sealed.len() as u64,
                Mode::Replace,
                deadline,
            )?;
            Ok(())
        })();
        match result {
            Ok(()) => self.answered(),
            Err(e) => self.fail(store, ui, &e, Op::Write),
        }
    }

    /// Upload `entry` (just recorded locally): the blobs the remote lacks,
    /// then the entry, unless the remote has it already.
    pub(crate) fn upload(&mut self, store: &mut dyn Store, ui: &Ui, entry: &Entry) -> Uploaded {
        if !self.writable() {
            return Uploaded::Skipped;
        }
        let started = Instant::now();
        let blobs = entry_blobs(entry);
        if let Some(big) = blobs.iter().find(|b| b.len > self.config.max_object) {
            ui.status(format_args!(
                "not uploaded: an output of {} is over the remote's limit of {}",
                human_size(big.len),
                human_size(self.config.max_object)
            ));
            store.tally(&[(Counter::RemoteTooLarge, 1)]);
            return Uploaded::Skipped;
        }
        let shared = self.config.shared.clone();
        let wire = wire::encode(entry, &shared.mac_key);
        if wire.len() as u64 > wire::MAX_ENTRY {
            ui.status("not uploaded: the entry is over the remote's limit (too many output files)");
            store.tally(&[(Counter::RemoteTooLarge, 1)]);
            return Uploaded::Skipped;
        }
        let name = shared.entry_name(&entry.key);
        let repair = self.broken == Some(entry.key);
        // Writers hold the secret: a valid entry replaces a broken one
        // (blobs evicted, bytes damaged), never a valid one.
        let mode = match repair {
            true => Mode::Replace,
            false => Mode::IfAbsent,
        };
        let timeouts = self.config.timeouts;
        let Some(remote) = self.remote(store, ui, Deadline::new(timeouts.lookup)) else {
            return Uploaded::Skipped;
        };
        let mut sent = 0u64;
        let result = (|| -> Result<Option<Put>, Error> {
            if !repair && remote.exists(&name, Deadline::new(timeouts.lookup))? {
                return Ok(None);
            }
            for b in &blobs {
                let blob = shared.blob_name(&b.digest);
                // Repairing, a blob that is there may be the damaged one:
                // send them all (the same name is always the same bytes).
                if !repair && remote.exists(&blob, Deadline::new(timeouts.operation))? {
                    continue;
                }
                // The local copy, verified: never upload damaged bytes.
                let mut source = match store.open_stream(b) {
                    Ok(Some(Source::File(f))) => Box::new(f) as Box<dyn Read>,
                    Ok(Some(Source::Bytes(v))) => Box::new(io::Cursor::new(v)),
                    // Gone since it was recorded (evicted, cleared): do
                    // not upload an entry without its blobs.
                    _ => return Ok(None),
                };
                let deadline = Deadline::transfer(timeouts.operation);
                remote.store(&blob, &mut source, b.len, mode, deadline)?;
                sent += b.len;
            }
            let mut body = io::Cursor::new(&wire);
            let deadline = Deadline::new(timeouts.operation);
            let put = remote.store(&name, &mut body, wire.len() as u64, mode, deadline)?;
            sent += wire.len() as u64;
            Ok(Some(put))
        })();
        if result.is_ok() {
            self.answered();
        }
        match result {
            Ok(Some(Put::Stored)) => {
                store.tally(&[
                    (Counter::RemoteUploads, 1),
                    (Counter::RemoteBytesUp, sent as i64),
                ]);
                Uploaded::Stored {
                    bytes: sent,
                    took: started.elapsed(),
                }
            }
            Ok(_) => {
                if sent > 0 {
                    store.tally(&[(Counter::RemoteBytesUp, sent as i64)]);
                }
                Uploaded::Skipped
            }
            Err(e) => {
                store.tally(&[(Counter::RemoteBytesUp, sent as i64)]);
                self.fail(store, ui, &e, Op::Write);
                Uploaded::Skipped
            }
        }
    }
}

/// "1 failure", "3 failures in a row".
fn plural_failures(n: u32) -> String {
    match n {
        1 => "a failure".to_string(),
        n => format!("{n} failures in a row"),
    }
}

/// The blobs an entry names (streams and files not inline), each once.
fn entry_blobs(entry: &Entry) -> Vec<StoredStream> {
    let mut blobs: Vec<StoredStream> = [&entry.stdout, &entry.stderr, &entry.order]
        .into_iter()
        .filter(|s| s.inline.is_none() && s.len > 0)
        .cloned()
        .collect();
    for root in &entry.outputs {
        for item in &root.items {
            if let Node::File { content, .. } = &item.node
                && content.inline.is_none()
                && content.len > 0
            {
                blobs.push(content.clone());
            }
        }
    }
    blobs.sort_by_key(|b| b.digest);
    blobs.dedup_by(|a, b| a.digest == b.digest);
    blobs
}

/// The local store failed while installing: a miss (the run records it).
fn local_failure(store: &mut dyn Store, ui: &Ui, e: anyhow::Error, bytes: u64) -> Fetched {
    store.tally(&[
        (Counter::Errors, 1),
        (Counter::RemoteBytesDown, bytes as i64),
    ]);
    ui.warn(format_args!("cannot install the remote entry: {e:#}"));
    Fetched::Miss
}

/// The file contents of `roots` that live in blobs.
fn file_blobs(roots: &mut [OutputRoot]) -> impl Iterator<Item = &mut StoredStream> {
    roots
        .iter_mut()
        .flat_map(|r| &mut r.items)
        .filter_map(|i| match &mut i.node {
            Node::File { content, .. } if content.inline.is_none() && content.len > 0 => {
                Some(content)
            }
            _ => None,
        })
}

enum Found {
    Entry(Box<Entry>, u64),
    Absent,
    /// There, but not a valid entry for this key (bytes read).
    Invalid(u64),
}

/// A small object whole, at most `limit` bytes (`None`: not there, or
/// not a whole object of at most that size: one said to be longer is not
/// read at all).
fn read_small(
    remote: &mut dyn Remote,
    name: &str,
    limit: u64,
    deadline: Deadline,
) -> Result<Option<Vec<u8>>, Error> {
    let Some(reader) = remote.get(name, limit, deadline)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    match reader.take(limit + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 <= limit => Ok(Some(bytes)),
        Ok(_) => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::NotFound
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io("cannot read from the remote", &e)),
    }
}

fn download_entry(
    remote: &mut dyn Remote,
    shared: &Shared,
    key: &Digest,
    deadline: Deadline,
) -> Result<Found, Error> {
    let Some(reader) = remote.get(&shared.entry_name(key), wire::MAX_ENTRY, deadline)? else {
        return Ok(Found::Absent);
    };
    let mut bytes = Vec::new();
    match reader.take(wire::MAX_ENTRY + 1).read_to_end(&mut bytes) {
        Ok(_) => {}
        // Not an object memorun wrote, too long, or cut short by eviction.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(Found::Invalid(bytes.len() as u64));
        }
        Err(e) => return Err(Error::io("cannot read the entry", &e)),
    }
    let n = bytes.len() as u64;
    Ok(match wire::decode(&bytes, key, &shared.mac_key) {
        Some(entry) => Found::Entry(Box::new(entry), n),
        None => Found::Invalid(n),
    })
}

/// Why a blob did not come.
enum BlobMiss {
    Absent,
    Invalid,
}

/// The bytes of `s`: inline ones from the entry (already checked), else
/// its blob downloaded into `spool` within `deadline` and checked against
/// its digest.
fn fetch_stream(
    remote: &mut dyn Remote,
    shared: &Shared,
    s: &StoredStream,
    mut spool: Spool,
    bytes: &mut u64,
    deadline: Deadline,
) -> Result<Result<crate::store::Spooled, BlobMiss>, Error> {
    let spool_err = |e: io::Error| Error::failed(format!("cannot spool a download: {e}"));
    if let Some(inline) = &s.inline {
        spool.write(inline).map_err(spool_err)?;
        return Ok(Ok(spool.finish().map_err(spool_err)?));
    }
    if s.len > 0 {
        let Some(mut reader) = remote.get(&shared.blob_name(&s.digest), s.len, deadline)? else {
            return Ok(Err(BlobMiss::Absent));
        };
        let mut sink = |chunk: &[u8]| spool.write(chunk);
        let copied = match s.len >= PIPELINE_FROM {
            true => copy_pipelined(&mut *reader, &mut sink, s.len, bytes),
            false => copy(&mut *reader, &mut sink, s.len, bytes),
        };
        match copied {
            Copied::Done => {}
            Copied::TooLong => return Ok(Err(BlobMiss::Invalid)),
            Copied::Read(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Ok(Err(BlobMiss::Invalid));
            }
            Copied::Read(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Err(BlobMiss::Absent));
            }
            Copied::Read(e) => return Err(Error::io("cannot read a blob", &e)),
            Copied::Write(e) => return Err(spool_err(e)),
        }
    }
    let spooled = spool.finish().map_err(spool_err)?;
    if spooled.len != s.len || spooled.digest != s.digest {
        return Ok(Err(BlobMiss::Invalid));
    }
    Ok(Ok(spooled))
}

/// How a copy from the remote ended.
enum Copied {
    /// To the end, no longer than allowed.
    Done,
    /// The object is longer than its entry says.
    TooLong,
    /// Reading from the remote failed.
    Read(io::Error),
    /// Writing locally failed.
    Write(io::Error),
}

/// Blobs from this size on are copied by two threads: one receives while
/// the other hashes and writes, so the network never waits on the disk.
const PIPELINE_FROM: u64 = 4 * 1024 * 1024;

/// Buffers in flight between the two threads (memory stays bounded:
/// `PIPELINE_DEPTH + 2` buffers of `COPY_BUF`).
const PIPELINE_DEPTH: usize = 4;

/// Copy at most `limit` bytes from `reader` into `sink`, counting them in
/// `bytes`.
fn copy(
    reader: &mut dyn Read,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    limit: u64,
    bytes: &mut u64,
) -> Copied {
    let mut buf = vec![0u8; COPY_BUF];
    let mut got = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Copied::Done,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Copied::Read(e),
        };
        got += n as u64;
        *bytes += n as u64;
        if got > limit {
            return Copied::TooLong;
        }
        if let Err(e) = sink(&buf[..n]) {
            return Copied::Write(e);
        }
    }
}

/// [`copy`], with the reading on a thread of its own.
fn copy_pipelined(
    reader: &mut (dyn Read + Send),
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    limit: u64,
    bytes: &mut u64,
) -> Copied {
    use std::sync::mpsc::sync_channel;
    let (full_tx, full_rx) = sync_channel::<io::Result<Vec<u8>>>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH + 2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            loop {
                let mut buf = empty_rx.try_recv().unwrap_or_default();
                buf.resize(COPY_BUF, 0);
                let mut n = 0;
                // Fill the buffer (or reach the end): fewer, larger
                // hand-overs.
                let result = loop {
                    match reader.read(&mut buf[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => {
                            n += k;
                            if n == buf.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(n);
                let end = n == 0;
                // Done at the end, after an error, or when the other side
                // stopped (too long, a write failed: it dropped its end).
                let stop = match result {
                    Ok(()) => full_tx.send(Ok(buf)).is_err() || end,
                    Err(e) => {
                        let _ = full_tx.send(Err(e));
                        true
                    }
                };
                if stop {
                    return;
                }
            }
        });
        // Owned here, so that an early return drops it, which ends the
        // reading thread's next send before the scope joins it.
        let full_rx = full_rx;
        let mut got = 0u64;
        for msg in full_rx.iter() {
            let buf = match msg {
                Ok(buf) if buf.is_empty() => return Copied::Done,
                Ok(buf) => buf,
                Err(e) => return Copied::Read(e),
            };
            got += buf.len() as u64;
            *bytes += buf.len() as u64;
            if got > limit {
                return Copied::TooLong;
            }
            if let Err(e) = sink(&buf) {
                return Copied::Write(e);
            }
            let _ = empty_tx.try_send(buf);
        }
        // The reader ended without saying so: it panicked.
        Copied::Read(io::Error::other("the download thread failed"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        let t = Timeouts::parse("30s").unwrap();
        assert_eq!(t.operation, Duration::from_secs(30));
        assert_eq!(t.connect, CONNECT_TIMEOUT);
        assert_eq!(t.lookup, LOOKUP_TIMEOUT);
        let t = Timeouts::parse("50ms").unwrap();
        assert_eq!(t.connect, Duration::from_millis(50));
        assert_eq!(t.lookup, Duration::from_millis(50));
        let t = Timeouts::parse("500ms, 1m").unwrap();
        assert_eq!(t.connect, Duration::from_millis(500));
        assert_eq!(t.operation, Duration::from_secs(60));
        assert!(Timeouts::parse("soon").is_none());
        assert!(Timeouts::parse("0s").is_none());
        assert_eq!(
            Timeouts::parse_lookup("300ms"),
            Some(Duration::from_millis(300))
        );
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_secret() {
        let a = Shared::derive(b"0123456789abcdef0123456789abcdef");
        let b = Shared::derive(b"0123456789abcdef0123456789abcdeF");
        assert_ne!(a.key_secret, a.mac_key);
        assert_ne!(a.name_key, a.mac_key);
        assert_ne!(a.key_secret, b.key_secret);
        assert_ne!(a.mac_key, b.mac_key);
        assert_eq!(format!("{a:?}"), "Shared(..)");
    }

    /// Names depend on the secret and on what the object is: two secrets
    /// never address the same object.
    #[test]
    fn object_names_are_keyed_with_the_secret() {
        let a = Shared::derive(b"0123456789abcdef0123456789abcdef");
        let b = Shared::derive(b"0123456789abcdef0123456789abcdeF");
        let d = Digest([0xab; 32]);
        let e = a.entry_name(&d);
        assert!(e.starts_with("memorun/v2/entries/"), "{e}");
        assert!(!e.contains(&d.to_hex().to_string()));
        assert_ne!(e, b.entry_name(&d));
        assert_ne!(a.blob_name(&d), b.blob_name(&d));
        let blob = a.blob_name(&d);
        let id = blob.rsplit('/').next().unwrap();
        assert_eq!(blob, format!("memorun/v2/blobs/{}/{id}", &id[..2]));
        assert_ne!(a.manifest_index_name(&d), b.manifest_index_name(&d));
        assert_ne!(
            a.manifest_name(&d, &d),
            a.manifest_name(&d, &Digest([1; 32]))
        );
        assert_ne!(
            a.entry_name(&d).rsplit('/').next(),
            a.blob_name(&d).rsplit('/').next()
        );
    }
}
