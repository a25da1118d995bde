//! The stat cache: (device, inode, size, mtime, ctime) → digest, by
//! absolute path, so unchanged inputs are not re-read: the SQLite table
//! behind the [`StatCache`] interface (in `base::stat`, with the types it
//! holds, [`FileStat`] and [`CachedStat`]) that key building uses.
//!
//! It is only a cache: a failure to read or write it costs a re-hash, never
//! a wrong digest or a failed command. Lookups for a directory tree are one
//! range query; updates are written in one transaction at the end.

use std::collections::HashMap;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::base::Digest;
pub use crate::base::stat::{CachedStat, FileStat, StatCache};

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
