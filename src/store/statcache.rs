//! The stat cache: (device, inode, size, mtime, ctime) → digest, by
//! absolute path, so unchanged inputs are not re-read. The types it holds
//! ([`FileStat`], [`CachedStat`]) and the [`StatCache`] interface that key
//! building uses are here; so is the SQLite table behind it.
//!
//! It is only a cache: a failure to read or write it costs a re-hash, never
//! a wrong digest or a failed command. Lookups for a directory tree are one
//! range query; updates are written in one transaction at the end.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::key::Digest;

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

/// A view of the stat cache table for one invocation.
pub struct SqliteStatCache<'c> {
    conn: &'c Connection,
    /// Preloaded entries by raw absolute path (hashing bytes is much cheaper
    /// than hashing a `Path`, which walks its components).
    loaded: HashMap<Vec<u8>, CachedStat>,
    dirty: Vec<(PathBuf, CachedStat)>,
}

fn row_to_cached(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<CachedStat>> {
    // Borrowed, not copied into a Vec: a preload decodes thousands of rows.
    let digest = row
        .get_ref(first + 5)?
        .as_blob_or_null()?
        .unwrap_or_default();
    let Some(digest) = Digest::from_slice(digest) else {
        return Ok(None);
    };
    Ok(Some(CachedStat {
        stat: FileStat {
            dev: row.get::<_, i64>(first)? as u64,
            ino: row.get::<_, i64>(first + 1)? as u64,
            size: row.get::<_, i64>(first + 2)? as u64,
            mtime_ns: row.get(first + 3)?,
            ctime_ns: row.get(first + 4)?,
        },
        digest,
        hashed_at_ns: row.get(first + 6)?,
    }))
}

impl<'c> SqliteStatCache<'c> {
    /// A view over `conn`'s `stat_cache` table.
    pub fn new(conn: &'c Connection) -> SqliteStatCache<'c> {
        SqliteStatCache {
            conn,
            loaded: HashMap::new(),
            dirty: Vec::new(),
        }
    }

    fn load_prefix(&mut self, dir: &Path) -> rusqlite::Result<()> {
        let mut lo = dir.as_os_str().as_bytes().to_vec();
        if lo.last() != Some(&b'/') {
            lo.push(b'/');
        }
        // Every path under `dir/` sorts before `dir0` ('0' follows '/').
        let mut hi = lo.clone();
        *hi.last_mut().expect("non-empty") = b'0';
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, dev, ino, size, mtime_ns, ctime_ns, digest, hashed_at_ns
             FROM stat_cache WHERE path >= ?1 AND path < ?2",
        )?;
        let rows = stmt.query_map(params![lo, hi], |row| {
            let path: Vec<u8> = row.get(0)?;
            Ok((path, row_to_cached(row, 1)?))
        })?;
        for row in rows {
            if let (path, Some(c)) = row? {
                self.loaded.insert(path, c);
            }
        }
        Ok(())
    }

    fn lookup(&self, abs: &Path) -> rusqlite::Result<Option<CachedStat>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT dev, ino, size, mtime_ns, ctime_ns, digest, hashed_at_ns
             FROM stat_cache WHERE path = ?1",
        )?;
        Ok(stmt
            .query_row(params![abs.as_os_str().as_bytes()], |row| {
                row_to_cached(row, 0)
            })
            .optional()?
            .flatten())
    }

    /// Write the entries of freshly hashed files, in one transaction.
    pub fn flush(&mut self) -> rusqlite::Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let tx = rusqlite::Transaction::new_unchecked(self.conn, TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO stat_cache
                   (path, dev, ino, size, mtime_ns, ctime_ns, digest, hashed_at_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (path, c) in &self.dirty {
                stmt.execute(params![
                    path.as_os_str().as_bytes(),
                    c.stat.dev as i64,
                    c.stat.ino as i64,
                    c.stat.size as i64,
                    c.stat.mtime_ns,
                    c.stat.ctime_ns,
                    &c.digest.0[..],
                    c.hashed_at_ns,
                ])?;
            }
        }
        tx.commit()?;
        self.dirty.clear();
        Ok(())
    }
}

impl StatCache for SqliteStatCache<'_> {
    fn get(&mut self, abs: &Path) -> Option<CachedStat> {
        if let Some(c) = self.loaded.get(abs.as_os_str().as_bytes()) {
            return Some(*c);
        }
        self.lookup(abs).ok().flatten()
    }

    fn preload(&mut self, abs_dir: &Path) {
        // Only a cache: a failed preload means per-file lookups.
        let _ = self.load_prefix(abs_dir);
    }

    fn put(&mut self, abs: &Path, entry: CachedStat) {
        self.dirty.push((abs.to_path_buf(), entry));
    }
}
