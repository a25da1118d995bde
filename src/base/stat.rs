//! What identifies a file's content cheaply (`FileStat`), the digest a
//! file had at a stat (`CachedStat`), and the `StatCache` interface key
//! building asks (the SQLite table behind it is `store::statcache`;
//! `NoCache` remembers nothing). A stat cache is only a cache: a failure
//! costs a re-hash, never a wrong digest.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Digest;

/// A file modified within this many nanoseconds of being hashed (or of the
/// run starting) is "racy": a later write in the same timestamp tick could
/// leave its stat unchanged, so its content is checked, not its stat. Two
/// seconds covers the coarsest common timestamps (FAT).
pub const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// What identifies a file's content cheaply: if any of this changes, the
/// content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl FileStat {
    /// The identity of a file from its metadata.
    pub fn of(m: &fs::Metadata) -> FileStat {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
        }
    }

    /// Whether a modification at or after `moment_ns` might not show in
    /// this stat, because the file was already modified that recently.
    pub fn is_racy(&self, moment_ns: i64) -> bool {
        let limit = moment_ns.saturating_sub(RACY_MARGIN_NS);
        self.mtime_ns >= limit || self.ctime_ns >= limit
    }
}

/// A stat-cache entry: the digest a file had when it had this stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedStat {
    /// The file's identity when hashed.
    pub stat: FileStat,
    /// Its content digest.
    pub digest: Digest,
    /// When hashing started, nanoseconds since the epoch.
    pub hashed_at_ns: i64,
}

/// Remembers digests of files by absolute path and stat.
pub trait StatCache {
    /// `None` for a real cache. `Some((files, bytes))` for none at all (a
    /// hit that does not open the database, see `store::records`): a key
    /// whose files would go through a cache, more than `files` of them or
    /// more than `bytes` in all, is then not resolved
    /// (`InputError::NeedsStatCache`) rather than hashed in full.
    fn budget(&self) -> Option<(usize, u64)> {
        None
    }
    /// The cached entry for `abs`, if any.
    fn get(&mut self, abs: &Path) -> Option<CachedStat>;
    /// Hint: many files under `abs_dir` are about to be looked up.
    fn preload(&mut self, _abs_dir: &Path) {}
    /// Remember a freshly hashed file.
    fn put(&mut self, abs: &Path, entry: CachedStat);
}

/// A stat cache that remembers nothing: every file is hashed.
pub struct NoCache;

impl StatCache for NoCache {
    fn get(&mut self, _abs: &Path) -> Option<CachedStat> {
        None
    }
    fn put(&mut self, _abs: &Path, _entry: CachedStat) {}
}
