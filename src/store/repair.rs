//! Recovering from damage that SQLite itself reports: rows whose record it
//! cannot read, indexes that no longer agree with their rows.
//!
//! A damaged row that still reads is handled where it is read (it fails to
//! decode or its checksum, and is deleted as corrupt). One that SQLite
//! cannot read, or cannot delete because the indexes no longer match it
//! ("database disk image is malformed"), would otherwise fail every lookup
//! of its key, and every `list`, `stats` and `clear`, until the whole store
//! is deleted. [`salvage`] rebuilds the entries table from the rows that
//! still read, with fresh indexes, and recounts the blob references.
//!
//! Invariant: it runs inside the caller's write transaction, so a crash
//! midway leaves the damaged table as it was, not a half-copied one.
//!
//! A database that cannot be opened at all (not a database, unreadable) is
//! beyond salvage: the error says so once, with [`RESET_HINT`], and
//! `memorun clear --all` calls [`reset`], which deletes the store's own
//! files by name, never following a symlink and never leaving the cache
//! directory, so that the next run starts a new store.

use std::fs;
use std::path::Path;

use anyhow::Result;
use rusqlite::{OptionalExtension, Transaction, params};

use super::counters::{self, Counter};
use crate::base::Digest;

/// What to tell the user when the database cannot be used at all.
pub const RESET_HINT: &str = "'memorun clear --all' resets the cache";

/// The files of the store in the cache directory, by name. The secret and
/// the lock files stay: the secret is not damaged by a broken database
/// (and keeps keyed digests stable), and a lock file may be held.
const STORE_FILES: &[&str] = &[
    "memorun.db",
    "memorun.db-wal",
    "memorun.db-shm",
    "memorun.db-journal",
    "hits.log",
];

/// Removes files by name, or with `dry_run` only counts them: regular
/// files only, a symlink is never followed (nor removed).
struct Tally {
    dry_run: bool,
    files: u64,
    bytes: u64,
}

impl Tally {
    fn new(dry_run: bool) -> Tally {
        Tally {
            dry_run,
            files: 0,
            bytes: 0,
        }
    }

    fn remove(&mut self, path: &Path) {
        if let Ok(meta) = fs::symlink_metadata(path)
            && meta.is_file()
            && (self.dry_run || fs::remove_file(path).is_ok())
        {
            self.files += 1;
            self.bytes += meta.len();
        }
    }

    /// A directory once empty (not on a dry run).
    fn remove_dir(&self, path: &Path) {
        if !self.dry_run {
            let _ = fs::remove_dir(path);
        }
    }
}

/// Remove the store in `cache_dir` (already checked to be ours): the
/// database and its side files, the hit log, the records and the blob
/// files. Only regular files with memorun's names, and the shard
/// directories once empty; a symlink is never followed (nor removed). Temp
/// files are left to `clear`'s collection, which knows when one is no
/// longer in use. With `dry_run`, only count. Returns the files and bytes
/// removed.
pub fn reset(cache_dir: &Path, dry_run: bool) -> (u64, u64) {
    let mut tally = Tally::new(dry_run);
    // The hit records first (one must never outlive its row), then the
    // database, then the blobs. The records directory is renamed away
    // whole before it is emptied: a process still holding the old database
    // publishes into the directory it pinned, which is then this one (see
    // `records`), never into the new store's. With it go those renamed
    // away before by a process killed before it emptied them.
    let records = cache_dir.join(super::records::DIR);
    let tmp_dir = cache_dir.join("tmp");
    let renamed = !dry_run
        && super::private::ensure_subdir(&tmp_dir)
            .ok()
            .and_then(|()| super::records::rename_away(&records, &tmp_dir).ok())
            .flatten()
            .is_some();
    if !renamed {
        remove_sharded(&records, &mut tally);
    }
    for name in STORE_FILES {
        tally.remove(&cache_dir.join(name));
    }
    remove_sharded(&cache_dir.join("blobs"), &mut tally);
    // Records directories an earlier reset (or a store made anew) renamed
    // away and could not empty, a killed `clear --all`'s included, that no
    // live process holds (see `records::sweep_gone`).
    let (gone_files, gone_bytes) = super::records::sweep_gone(&tmp_dir, dry_run);
    (tally.files + gone_files, tally.bytes + gone_bytes)
}

/// Remove the files of a directory sharded like `blobs/ab/abcdef...`, and
/// the shards once empty; nothing else, no symlink followed.
fn remove_sharded(dir: &Path, tally: &mut Tally) {
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let real_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !real_dir(dir) {
        return;
    }
    for shard in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = shard.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = shard.path();
        if !is_hex(name, 2) || !real_dir(&path) {
            continue;
        }
        for f in fs::read_dir(&path).into_iter().flatten().flatten() {
            if f.file_name().to_str().is_some_and(|n| is_hex(n, 64)) {
                tally.remove(&f.path());
            }
        }
        tally.remove_dir(&path);
    }
}

/// Whether SQLite found the database damaged.
pub fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseCorrupt
    )
}

/// Rebuild the entries table from its rows that read cleanly, leaving out
/// the row under `drop` if its index still finds it. Returns the blobs no
/// entry references any more (their files can go once this commits).
pub fn salvage(tx: &Transaction<'_>, drop: Option<&Digest>) -> Result<Vec<Digest>> {
    // The key's index holds the rowid: found without reading the row.
    let dropped: Option<i64> = match drop {
        Some(key) => tx
            .query_row(
                "SELECT rowid FROM entries WHERE key = ?1",
                params![&key.0[..]],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None),
        None => None,
    };
    // The table and its indexes exactly as the schema has them now.
    let table: String = tx.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'entries'",
        [],
        |r| r.get(0),
    )?;
    let columns = table
        .find('(')
        .map(|i| &table[i..])
        .ok_or_else(|| anyhow::anyhow!("unexpected schema for entries"))?;
    let indexes: Vec<String> = tx
        .prepare(
            "SELECT sql FROM sqlite_schema
             WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS entries_salvage; CREATE TABLE entries_salvage {columns};"
    ))?;
    let rowids: Vec<i64> = tx
        .prepare("SELECT rowid FROM entries")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut lost = 0i64;
    {
        let mut copy =
            tx.prepare("INSERT INTO entries_salvage SELECT * FROM entries WHERE rowid = ?1")?;
        for rowid in rowids {
            // A row SQLite cannot read is left behind with the old table.
            if Some(rowid) == dropped || copy.execute(params![rowid]).is_err() {
                lost += 1;
            }
        }
    }
    tx.execute_batch("DROP TABLE entries; ALTER TABLE entries_salvage RENAME TO entries;")?;
    for sql in indexes {
        tx.execute_batch(&sql)?;
    }
    // The rows left behind held blob references that cannot be trusted to
    // name anything: count every blob's references again, output files'
    // included (those of the entries left behind first).
    tx.execute_batch(
        "DELETE FROM file_blobs WHERE key NOT IN (SELECT key FROM entries);
         DELETE FROM manifests WHERE entry_key NOT IN (SELECT key FROM entries);",
    )?;
    tx.execute_batch(
        "UPDATE blobs SET refs = (
             SELECT COUNT(*) FROM (
                 SELECT out_digest AS d FROM entries WHERE out_inline IS NULL AND out_len > 0
                 UNION ALL
                 SELECT err_digest FROM entries WHERE err_inline IS NULL AND err_len > 0
                 UNION ALL
                 SELECT order_digest FROM entries WHERE order_inline IS NULL AND order_len > 0
                 UNION ALL
                 SELECT digest FROM file_blobs
             ) WHERE d = blobs.digest);",
    )?;
    let freed: Vec<Digest> = tx
        .prepare("SELECT digest FROM blobs WHERE refs <= 0")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .filter_map(|d| d.ok().and_then(|d| Digest::from_slice(&d)))
        .collect();
    tx.execute("DELETE FROM blobs WHERE refs <= 0", [])?;
    // The triggers kept the total through the deletions; a damaged store
    // may have had it wrong before them.
    tx.execute(
        "UPDATE blob_total SET bytes = (SELECT COALESCE(SUM(len), 0) FROM blobs)",
        [],
    )?;
    counters::bump(tx, &[(Counter::Corrupt, lost)])?;
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, TransactionBehavior};

    #[test]
    fn salvage_keeps_readable_rows_and_fresh_indexes() {
        let conn = Connection::open_in_memory().unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        crate::store::schema::prepare(&tx).unwrap();
        for k in [1u8, 2, 3] {
            tx.execute(
                "INSERT INTO entries (key, argv_digest, display, cwd, created, last_used,
                   duration_ms, exit_code, out_len, out_digest, err_len, err_digest,
                   order_len, order_digest, components)
                 VALUES (?1, x'00', 'c', x'', 1, 1, 1, 0, 5, ?2, 0, x'00', 0, x'00', '[]')",
                params![vec![k; 32], vec![9u8; 32]],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO blobs (digest, len, refs) VALUES (?1, 5, 3)",
            params![vec![9u8; 32]],
        )
        .unwrap();
        let freed = salvage(&tx, Some(&Digest([2; 32]))).unwrap();
        assert!(freed.is_empty());
        let (n, refs): (i64, i64) = tx
            .query_row(
                "SELECT (SELECT COUNT(*) FROM entries), (SELECT refs FROM blobs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, refs), (2, 2));
        let indexes: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'entries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 5, "the key's own index and the four others");
        let corrupt: i64 = tx
            .query_row(
                "SELECT SUM(value) FROM counters WHERE name = 'corrupt'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(corrupt, 1);
    }
}
