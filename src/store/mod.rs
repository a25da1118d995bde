//! Storage of recorded runs behind one seam.
//!
//! The run path (`commands::run`, `replay`, `commands::diff`) sees only narrow
//! traits, by role: [`Entries`] (look an entry up, open one of its streams
//! verified, spool a new stream, insert an entry, count a hit, discard a
//! corrupt entry, trace manifests), [`History`] (why a run was not
//! recorded, how long the last one took, the earlier entries of the same
//! command) and [`Counters`] (typed: [`counters::Counter`]); [`Store`] adds
//! what only a store on this machine has (locks, the stat cache). The
//! local implementation is SQLite plus content-addressed blob files
//! ([`db::SqliteStore`], and [`recorded::RecordStore`] in front of it for
//! a hit from its record); the remote tier stands behind it in
//! `remote::tiered::Tiered`, which implements the same roles. What only
//! the local store has (the secret, `stats`, `list`, `clear`) stays on
//! `SqliteStore`, used by `commands::prepare` and the store subcommands.

pub(crate) mod blobs;
pub(crate) mod counters;
pub mod db;
pub(crate) mod entry_bytes;
pub(crate) mod entry_row;
pub(crate) mod error;
pub(crate) mod evict;
pub(crate) mod gc;
pub(crate) mod hitlog;
pub(crate) mod inventory;
pub(crate) mod locks;
pub(crate) mod private;
pub(crate) mod record_budget;
pub(crate) mod recorded;
pub mod records;
pub(crate) mod refs;
pub(crate) mod repair;
pub(crate) mod schema;
pub(crate) mod secret;
pub(crate) mod statcache;

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

pub use blobs::{Blobs, Copier, CopyError, Spool, Spooled};

use crate::base::Digest;
use crate::key::Key;
use crate::outputs::files;
use counters::{Counter, NotRecorded};

/// A cache directory checked to be ours alone (see `private`), with its
/// temp directory and its secret: what any use of the cache needs, with
/// the database ([`db::SqliteStore::open_in`]) or without it (a hit from
/// a record, see [`records`]).
#[derive(Debug, Clone)]
pub(crate) struct CacheDir {
    /// Its canonical path: the one that was checked.
    pub root: PathBuf,
    /// `root/tmp`, for spools and other temp files.
    pub tmp_dir: PathBuf,
    /// The per-cache secret for keyed digests.
    pub secret: [u8; 32],
}

impl CacheDir {
    /// Create (if needed) and check the cache directory `dir`, its temp
    /// directory and its secret.
    pub fn open(dir: &std::path::Path) -> Result<CacheDir> {
        // From here on the directory is named by the path that was checked.
        let root = private::prepare(dir)?;
        let tmp_dir = root.join("tmp");
        private::ensure_subdir(&tmp_dir)?;
        let secret = secret::load_or_create(&root, &tmp_dir)?;
        Ok(CacheDir {
            root,
            tmp_dir,
            secret,
        })
    }
}

pub use crate::base::StoredStream;

/// A recorded run, as looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key digest.
    pub key: Digest,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// How long the command ran.
    pub duration: Duration,
    /// The command's exit code.
    pub exit_code: i32,
    /// Recorded stdout.
    pub stdout: StoredStream,
    /// Recorded stderr.
    pub stderr: StoredStream,
    /// The interleaving of stdout and stderr (see `replay::interleaving`).
    pub order: StoredStream,
    /// The output files the run left (see [`files`]).
    pub outputs: Vec<files::OutputRoot>,
    /// How many bytes the command read from a regular file on its stdin.
    pub stdin_advance: u64,
}

/// Version of the entry checksum's encoding. If you add a field to
/// [`Entry`], or change how [`Entry::checksum`] encodes one, change this
/// (and add a schema upgrade step that re-seals the entries it keeps: see
/// `schema`).
pub(crate) const CHECKSUM_VERSION: u32 = 2;

impl Entry {
    /// A BLAKE3 digest of everything a replay uses, stored beside the row so
    /// that a row damaged on disk (a flipped bit turning a recorded failure
    /// into a success, a creation time decades off) is recognized as
    /// corrupt instead of replayed. Inline bytes are covered through their
    /// stream's digest, which they are checked against before replay.
    ///
    /// The encoding is unambiguous: fixed-size integers (little-endian) in
    /// a fixed order, and a count or length before every variable part. It
    /// is not keyed: it detects damage, not forgery (whoever can write the
    /// database can read the cache's secret too).
    pub fn checksum(&self) -> Digest {
        self.seal(CHECKSUM_VERSION)
    }

    /// The checksum as version `version` of the encoding computed it.
    /// Versions 1 and 2 differ only in how they encode outputs, and agree
    /// on an entry without any (see the schema's upgrade to version 2).
    pub(crate) fn seal(&self, version: u32) -> Digest {
        let mut h = blake3::Hasher::new_derive_key("memorun 2026 entry checksum");
        h.update(&version.to_le_bytes());
        h.update(&self.key.0);
        h.update(&self.created_ms.to_le_bytes());
        h.update(&(self.duration.as_millis() as u64).to_le_bytes());
        h.update(&self.exit_code.to_le_bytes());
        for s in [&self.stdout, &self.stderr, &self.order] {
            h.update(&s.len.to_le_bytes());
            h.update(&s.digest.0);
            h.update(&[u8::from(s.inline.is_some())]);
        }
        // Inline file bytes are covered through their digests, as a
        // stream's are; none at all encodes as version 1 did.
        match files::encode(&self.outputs, false) {
            None => h.update(&0u64.to_le_bytes()),
            Some(bytes) => {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes)
            }
        };
        h.update(&self.stdin_advance.to_le_bytes());
        h.finalize().into()
    }
}

/// The bytes of a stream, ready to replay.
#[derive(Debug)]
pub enum Source {
    /// Inline bytes.
    Bytes(Vec<u8>),
    /// A verified blob file, positioned at 0.
    File(File),
}

/// The bytes of `stream`, verified: inline bytes against its digest, a
/// blob against the fast check `check` gives (BLAKE3 without one).
/// `Ok(None)`: missing or corrupt.
pub(crate) fn open_verified(
    blobs: &Blobs,
    stream: &StoredStream,
    check: impl FnOnce() -> Result<Option<[u8; 16]>>,
) -> Result<Option<Source>> {
    if let Some(bytes) = &stream.inline {
        let ok =
            bytes.len() as u64 == stream.len && Digest::from(blake3::hash(bytes)) == stream.digest;
        return Ok(ok.then(|| Source::Bytes(bytes.clone())));
    }
    if stream.len == 0 {
        return Ok(None);
    }
    let file = blobs
        .open_verified(&stream.digest, stream.len, check()?)
        .with_context(|| {
            format!(
                "cannot read blob '{}'",
                blobs.path(&stream.digest).display()
            )
        })?;
    Ok(file.map(Source::File))
}

/// A finished run to record.
#[derive(Debug)]
pub struct NewEntry<'a> {
    /// Its key, with the component digests.
    pub key: &'a Key,
    /// The command line for display (shell-quoted).
    pub display: String,
    /// The working directory, raw bytes.
    pub cwd: Vec<u8>,
    /// How long the command ran.
    pub duration: Duration,
    /// The command's exit code.
    pub exit_code: i32,
    /// Recorded stdout.
    pub stdout: Spooled,
    /// Recorded stderr.
    pub stderr: Spooled,
    /// The interleaving.
    pub order: Spooled,
    /// The output files the run left, their content already in the store
    /// (see [`Entries::put_file`]).
    pub outputs: Vec<files::OutputRoot>,
    /// The fast check (XXH3-128) of each blob `outputs` names, sorted by
    /// digest.
    pub file_checks: Vec<(Digest, [u8; 16])>,
    /// How many bytes the command read from a regular file on its stdin.
    pub stdin_advance: u64,
    /// Names the command in its directory (see `resolve::Base::manifest`).
    pub manifest: Digest,
    /// Arguments that named nothing before the run and name a file now:
    /// outputs of the command from now on.
    pub created: Vec<Vec<u8>>,
    /// For a traced run: the manifest its entry is found through.
    pub traced: Option<NewManifest>,
    /// For an entry recorded elsewhere and installed here (from a remote
    /// tier): when it was recorded. `None`: by this run, now (a miss).
    pub recorded_at: Option<i64>,
}

/// Trace manifests kept per base key; the entries of the least recently
/// used beyond this go (see `key::traced`).
pub(crate) const MAX_MANIFESTS: usize = 16;

/// The trace manifest of a traced run being recorded (see `key::traced`):
/// its entry goes under `key::traced::entry_key(base, digest)`.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// The key computed before the run.
    pub base: Digest,
    /// The manifest's digest.
    pub digest: Digest,
    /// How many paths it holds.
    pub inputs: u64,
    /// Its encoding.
    pub paths: Vec<u8>,
}

/// A trace manifest as looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// The key of its entry.
    pub entry_key: Digest,
    /// Its encoding (`key::traced::Manifest::encode`).
    pub paths: Vec<u8>,
}

/// The entries role: what a lookup, a replay and a recording need. A
/// tiered store (local, then remote: `remote::tiered`) implements it as the
/// local store does, so that the run path asks one object for a hit and
/// hands one object a result.
pub trait Entries {
    /// The entry recorded under `key`, if any. A row that does not decode
    /// or fails its [`Entry::checksum`] is never returned: it is removed,
    /// counted as corrupt, and the lookup is a miss.
    fn lookup(&mut self, key: &Digest) -> Result<Option<Entry>>;

    /// Which tier the entry of the latest [`Entries::lookup`] came from
    /// (for the status line and `stats`).
    fn answered(&self) -> Answered {
        Answered::Local
    }

    /// The bytes of `stream`, verified against its digest and length.
    /// `Ok(None)` means the stream is missing or corrupt.
    fn open_stream(&self, stream: &StoredStream) -> Result<Option<Source>>;

    /// Read ahead what verifying these blobs needs, before many
    /// [`Entries::open_stream`]s (a restore of thousands of files). Only a
    /// hint.
    fn prefetch_checks(&self, _digests: &[Digest]) {}

    /// The fast check (XXH3-128 of the content) recorded for a blob.
    fn blob_check(&self, _digest: &Digest) -> Option<[u8; 16]> {
        None
    }

    /// The blob files on this machine, for a caller that copies a blob
    /// checking it on the way ([`Blobs::copy_verified`], with
    /// [`Entries::blob_check`]) rather than through
    /// [`Entries::open_stream`]. `None`: only `open_stream` can read them.
    fn local_blobs(&self) -> Option<&Blobs> {
        None
    }

    /// A new spool for one output stream of a run being recorded.
    fn spool(&self) -> Spool;

    /// A new spool for the content of one output file (inline up to
    /// [`files::FILE_INLINE_MAX`] bytes).
    fn spool_file(&self) -> Spool;

    /// Store the content of one output file: inline when small, else as a
    /// blob installed now (before the entry that will name it). Returns
    /// where it is and the blob's fast check.
    fn put_file(&self, content: Spooled) -> Result<(StoredStream, [u8; 16])>;

    /// Record a finished run, or install one recorded elsewhere (see
    /// [`NewEntry::recorded_at`]), replacing any entry with the same key.
    fn insert(&mut self, entry: NewEntry<'_>) -> Result<()>;

    /// The trace manifests recorded under `base` (the key computed before
    /// a traced run), most recently used entry first, at most `limit`.
    fn manifests(&self, base: &Digest, limit: usize) -> Result<Vec<StoredManifest>>;

    /// Count a replay of `entry` and update its last-used time.
    fn record_hit(&mut self, entry: &Entry) -> Result<()>;

    /// `entry` failed verification when replayed: remove it and count it
    /// as corrupt, if it is still the entry recorded under its key. Returns
    /// `false` when it is gone or was replaced since it was looked up (a
    /// concurrent `clear`, eviction or re-record took it, and its blobs with
    /// it): a plain miss, not corruption.
    fn discard_corrupt(&mut self, entry: &Entry) -> Result<bool>;
}

/// The history role: what explains a miss or an unrecorded run, and
/// what a spinner expects, from earlier runs of the same command.
pub trait History {
    /// Remember why the latest run of the command in its directory
    /// (`command_in_dir`, see [`manifest`]) was not recorded, and count it
    /// (a miss, and its reason's counter).
    fn note_unrecorded(&mut self, command_in_dir: &Digest, why: &NotRecorded) -> Result<()>;

    /// How long the most recent recorded run of the same command took.
    fn previous_duration(&self, argv_digest: &Digest) -> Result<Option<Duration>>;

    /// The most recent entries of the same command other than `except`,
    /// newest first, at most a few dozen: what `commands::diff::closest_run`
    /// scores to explain a miss.
    fn earlier_runs(&self, argv_digest: &Digest, except: &Digest) -> Result<Vec<EarlierRun>>;
}

/// The counters role: the numbers `memorun stats` shows.
pub trait Counters {
    /// Add to counters.
    fn count(&mut self, counters: &[(Counter, i64)]) -> Result<()>;

    /// Add to counters, best effort: a count lost makes `stats` a little
    /// low, and must never cost a run or a replay.
    fn tally(&mut self, counters: &[(Counter, i64)]) {
        let _ = self.count(counters);
    }
}

/// What the run and replay paths need from storage: its three roles, and
/// what only a store on this machine has (locks, the stat cache).
pub trait Store: Entries + History + Counters {
    /// A one-line notice about opening the store (a schema upgrade), once.
    fn take_notice(&self) -> Option<String>;

    /// Where per-key lock files live (single flight, background refresh).
    fn locks_dir(&self) -> PathBuf;

    /// Run `f` with the stat cache (digests of unchanged files), then save
    /// what it learned. Only a cache: failing to save costs a re-hash.
    fn with_stat_cache(&self, f: &mut dyn FnMut(&mut dyn statcache::StatCache));
}

/// Which tier answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The store on this machine.
    Local,
    /// The remote tier: it was downloaded and installed locally first.
    Remote {
        /// Bytes downloaded.
        bytes: u64,
        /// How long it took.
        took: Duration,
    },
}

/// An earlier entry of a command as stored: its components not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierRun {
    /// Its key.
    pub key: Digest,
    /// When it was recorded, ms since the epoch.
    pub created_ms: i64,
    /// Its key's components, as stored (JSON).
    pub components: String,
}

/// An earlier entry of a command, as a miss is explained against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Previous {
    /// Its key.
    pub key: Digest,
    /// When it was recorded, ms since the epoch.
    pub created_ms: i64,
    /// Its key's components.
    pub components: Vec<crate::key::Component>,
}

pub(crate) use crate::base::hashing::manifest;

/// How long ago `ms` (milliseconds since the Unix epoch) was; zero for a
/// time in the future.
pub(crate) fn age(ms: i64) -> Duration {
    Duration::from_millis((now_ms() - ms).max(0) as u64)
}

pub(crate) use crate::base::time::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let stream = |b: u8, inline: Option<&[u8]>| StoredStream {
            len: 3,
            digest: Digest([b; 32]),
            inline: inline.map(<[u8]>::to_vec),
        };
        Entry {
            key: Digest([1; 32]),
            created_ms: 1_700_000_000_000,
            duration: Duration::from_millis(1500),
            exit_code: 1,
            stdout: stream(2, Some(b"abc")),
            stderr: stream(3, None),
            order: stream(4, Some(b"xyz")),
            outputs: vec![files::OutputRoot {
                kind: files::RootKind::Auto,
                declared: b"out.o".to_vec(),
                items: vec![files::Item {
                    path: Vec::new(),
                    node: files::Node::File {
                        mode: 0o644,
                        content: StoredStream {
                            len: 5,
                            digest: Digest([5; 32]),
                            inline: None,
                        },
                    },
                }],
            }],
            stdin_advance: 7,
        }
    }

    /// Every field a replay uses changes the checksum.
    #[test]
    fn checksum_covers_every_field() {
        let base = entry().checksum();
        let changes: [fn(&mut Entry); 11] = [
            |e| e.key.0[31] ^= 1,
            |e| e.created_ms -= 1,
            |e| e.duration += Duration::from_millis(1),
            |e| e.exit_code = 0,
            |e| e.stdout.len += 1,
            |e| e.stderr.digest.0[0] ^= 1,
            |e| e.order.inline = None,
            |e| e.outputs[0].declared.push(b'x'),
            |e| e.outputs[0].items[0].node = files::Node::Absent,
            |e| e.outputs.clear(),
            |e| e.stdin_advance = 0,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut e = entry();
            change(&mut e);
            assert_ne!(e.checksum(), base, "change {i} is not covered");
        }
    }

    /// If this fails, the checksum's encoding changed: bump
    /// `CHECKSUM_VERSION` and add a schema upgrade step that re-seals the
    /// entries, then update the expected digest.
    #[test]
    fn checksum_encoding_is_stable() {
        assert_eq!(
            CHECKSUM_VERSION, 2,
            "update the golden digest with the version"
        );
        // Version 1 sealed an entry without outputs as version 2 does,
        // but for the version number (the schema upgrade re-seals those).
        // Version 1's encoding, written out as it was:
        let mut plain = entry();
        plain.outputs.clear();
        let mut h = blake3::Hasher::new_derive_key("memorun 2026 entry checksum");
        h.update(&1u32.to_le_bytes());
        h.update(&plain.key.0);
        h.update(&plain.created_ms.to_le_bytes());
        h.update(&(plain.duration.as_millis() as u64).to_le_bytes());
        h.update(&plain.exit_code.to_le_bytes());
        for s in [&plain.stdout, &plain.stderr, &plain.order] {
            h.update(&s.len.to_le_bytes());
            h.update(&s.digest.0);
            h.update(&[u8::from(s.inline.is_some())]);
        }
        h.update(&0u64.to_le_bytes());
        h.update(&plain.stdin_advance.to_le_bytes());
        assert_eq!(plain.seal(1), Digest::from(h.finalize()));
        assert_eq!(
            entry().checksum().to_hex(),
            "0269d550596cb9f573270dcc7bc9dd6c2724a8e9bbe343ceb7ae0b45a0ddd6a1"
        );
    }
}
