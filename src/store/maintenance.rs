//! Keeping the store seen, bounded and tidy: counters, blob reference
//! counts, eviction to a size limit, and what `stats`, `list` and `clear`
//! read and remove.
//!
//! Invariants:
//! - `blobs.refs` is the number of entry streams naming the blob; a blob
//!   file is removed only after the transaction that dropped its last
//!   reference committed.
//! - Counters are sharded by pid (`counters(name, shard)`), so concurrent
//!   runs do not all update one row; `stats` sums the shards.
//! - Eviction and clearing delete in bulk through a temp table of doomed
//!   keys, and eviction removes at most [`MAX_EVICT`] entries per run, so no
//!   invocation pauses long.
//! - Garbage collection only removes regular files memorun names itself
//!   (64-hex blob names, and temp files whose process died: see `temp`),
//!   never follows a symlink and never leaves the cache directory.
//! - Temp files are disk the cache uses: they count against the size limit
//!   and in `stats`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::db::{ENTRY_COLUMN_COUNT, ENTRY_COLUMNS, SqliteStore, decode_verified};
use super::now_ms;
use super::temp;
use crate::key::Digest;

/// Replays.
pub const HITS: &str = "hits";
/// Runs (recorded or not) with the cache on.
pub const MISSES: &str = "misses";
/// The recorded durations of replayed runs, in milliseconds.
pub const SAVED_MS: &str = "time_saved_ms";
/// Not recorded: a non-zero exit without `--cache-failures`.
pub const NOT_RECORDED_EXIT: &str = "not_recorded.nonzero_exit";
/// Not recorded: killed by a signal.
pub const NOT_RECORDED_SIGNAL: &str = "not_recorded.signal";
/// Not recorded: an input changed while the command ran.
pub const NOT_RECORDED_INPUT: &str = "not_recorded.input_changed";
/// Not recorded: the output could not be delivered.
pub const NOT_RECORDED_UNDELIVERED: &str = "not_recorded.output_undelivered";
/// Not recorded: the cache failed (disk full, lock timeout).
pub const NOT_RECORDED_CACHE: &str = "not_recorded.cache_error";
/// Cache errors that cost a miss.
pub const ERRORS: &str = "errors";
/// Entries that failed verification.
pub const CORRUPT: &str = "corrupt";
/// Entries evicted to stay under the size limit.
pub const EVICTED: &str = "evicted";

/// Most entries one invocation evicts.
pub const MAX_EVICT: i64 = 1000;

/// Unreferenced blob files younger than this are left alone by `clear`.
const YOUNG_BLOB: Duration = Duration::from_secs(600);

/// How big the store may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of blobs plus database pages in use.
    pub max_bytes: u64,
    /// Entries, if limited.
    pub max_entries: Option<u64>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 5 * 1024 * 1024 * 1024,
            max_entries: None,
        }
    }
}

/// Add to counters, in the caller's transaction.
pub fn bump(tx: &Transaction<'_>, counters: &[(&str, i64)]) -> rusqlite::Result<()> {
    let shard = i64::from(std::process::id() % 8);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO counters (name, shard, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, shard) DO UPDATE SET value = value + excluded.value",
    )?;
    for (name, n) in counters {
        stmt.execute(params![name, shard, n])?;
    }
    Ok(())
}

/// Count one more reference to a blob, and record its fast check.
pub fn reference_blob(
    tx: &Transaction<'_>,
    digest: &[u8],
    len: i64,
    check: &[u8; 16],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO blobs (digest, len, refs, xxh3) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (digest) DO UPDATE SET refs = refs + 1, xxh3 = excluded.xxh3",
    )?
    .execute(params![digest, len, &check[..]])?;
    Ok(())
}

fn reset_doomed(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (key BLOB PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.doomed;",
    )
}

/// What deleting entries removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Entries.
    pub entries: u64,
    /// Output bytes (stdout plus stderr) of those entries.
    pub bytes: u64,
    /// Blobs no entry references any more: their files can go.
    pub freed: Vec<Digest>,
}

/// Delete the entries in `temp.doomed`, dropping their blob references.
fn delete_doomed(tx: &Transaction<'_>) -> rusqlite::Result<Removed> {
    let (entries, bytes): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), CAST(TOTAL(out_len + err_len) AS INTEGER)
         FROM entries WHERE key IN (SELECT key FROM temp.doomed)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute_batch(
        "WITH gone (digest) AS (
             SELECT out_digest FROM entries
               WHERE key IN (SELECT key FROM temp.doomed) AND out_inline IS NULL AND out_len > 0
             UNION ALL
             SELECT err_digest FROM entries
               WHERE key IN (SELECT key FROM temp.doomed) AND err_inline IS NULL AND err_len > 0
             UNION ALL
             SELECT ord_digest FROM entries
               WHERE key IN (SELECT key FROM temp.doomed) AND ord_inline IS NULL AND ord_len > 0
         ), counts (digest, n) AS (SELECT digest, COUNT(*) FROM gone GROUP BY digest)
         UPDATE blobs SET refs = refs - (SELECT n FROM counts WHERE counts.digest = blobs.digest)
           WHERE digest IN (SELECT digest FROM counts);
         DELETE FROM entries WHERE key IN (SELECT key FROM temp.doomed);",
    )?;
    let freed = {
        let mut stmt = tx.prepare_cached("SELECT digest FROM blobs WHERE refs <= 0")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        rows.filter_map(|d| d.ok().and_then(|d| Digest::from_slice(&d)))
            .collect::<Vec<_>>()
    };
    tx.execute("DELETE FROM blobs WHERE refs <= 0", [])?;
    tx.execute("DELETE FROM temp.doomed", [])?;
    Ok(Removed {
        entries: entries.max(0) as u64,
        bytes: bytes.max(0) as u64,
        freed,
    })
}

/// Delete the entry under `key` if there is one, in the caller's
/// transaction; returns the blobs it was the last user of. (A point query
/// per step: this runs on every miss, where the bulk path's temp table and
/// batch statements would cost more than the rest of the write.)
pub fn delete_entry(tx: &Transaction<'_>, key: &Digest) -> rusqlite::Result<Vec<Digest>> {
    // Read as loosely typed values: a damaged row must still be deletable
    // (what it names that is not a blob's digest frees nothing).
    let blobs: Option<Vec<Vec<u8>>> = tx
        .prepare_cached(
            "SELECT CASE WHEN out_inline IS NULL AND out_len > 0 THEN out_digest END,
                    CASE WHEN err_inline IS NULL AND err_len > 0 THEN err_digest END,
                    CASE WHEN ord_inline IS NULL AND ord_len > 0 THEN ord_digest END
             FROM entries WHERE key = ?1",
        )?
        .query_row(params![&key.0[..]], |r| {
            let mut v = Vec::new();
            for i in 0..3 {
                if let rusqlite::types::Value::Blob(d) = r.get(i)? {
                    v.push(d);
                }
            }
            Ok(v)
        })
        .optional()?;
    let Some(blobs) = blobs else {
        return Ok(Vec::new());
    };
    tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
        .execute(params![&key.0[..]])?;
    let mut freed = Vec::new();
    for d in blobs {
        tx.prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE digest = ?1")?
            .execute(params![&d])?;
        let gone = tx
            .prepare_cached("DELETE FROM blobs WHERE digest = ?1 AND refs <= 0")?
            .execute(params![&d])?;
        if gone > 0 {
            freed.extend(Digest::from_slice(&d));
        }
    }
    Ok(freed)
}

/// Which entries `clear` removes.
#[derive(Debug, Clone, Default)]
pub struct ClearFilter {
    /// Only entries last used before this many milliseconds since the epoch.
    pub last_used_before_ms: Option<i64>,
    /// Only entries with a non-zero exit code.
    pub failed: bool,
    /// Only entries of this command (argv digest).
    pub command: Option<Digest>,
}

impl ClearFilter {
    fn sql(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let mut clauses = vec!["1".to_string()];
        let mut values = Vec::new();
        if let Some(before) = self.last_used_before_ms {
            values.push(Value::Integer(before));
            clauses.push(format!("last_used < ?{}", values.len()));
        }
        if self.failed {
            clauses.push("exit_code != 0".into());
        }
        if let Some(c) = &self.command {
            values.push(Value::Blob(c.0.to_vec()));
            clauses.push(format!("command = ?{}", values.len()));
        }
        (clauses.join(" AND "), values)
    }
}

/// One entry, as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key.
    pub key: Digest,
    /// Recorded at, ms since the epoch.
    pub created_ms: i64,
    /// Last replayed (or recorded) at.
    pub last_used_ms: i64,
    /// How long the command ran.
    pub duration_ms: i64,
    /// Its exit code.
    pub exit_code: i32,
    /// stdout plus stderr bytes.
    pub output_bytes: u64,
    /// Replays so far.
    pub hits: u64,
    /// The command line.
    pub display: String,
}

/// A command that saved time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopCommand {
    /// The command line.
    pub display: String,
    /// Replays of its entries, including entries since removed.
    pub hits: u64,
    /// Time saved by them, ms.
    pub saved_ms: u64,
}

/// What `stats` reports from the store.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Counter totals by name.
    pub counters: BTreeMap<String, i64>,
    /// When the counters were last zeroed, if ever.
    pub since_ms: Option<i64>,
    /// Entries.
    pub entries: u64,
    /// Bytes of the database files, blobs and temp files on disk.
    pub disk_bytes: u64,
    /// Temp files: output being recorded now, or left by a crash.
    pub temp: temp::TempUsage,
    /// Oldest entry's creation time.
    pub oldest_ms: Option<i64>,
    /// Newest entry's creation time.
    pub newest_ms: Option<i64>,
    /// Commands by time saved, most first.
    pub top: Vec<TopCommand>,
}

fn file_len(p: &Path) -> u64 {
    fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0)
}

impl SqliteStore {
    /// Bytes of blobs plus database pages in use: what the limit bounds.
    fn usage(&self) -> rusqlite::Result<u64> {
        let blobs: i64 =
            self.conn
                .query_row("SELECT COALESCE(SUM(len), 0) FROM blobs", [], |r| r.get(0))?;
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        // Temp files count too: output being recorded, and any orphan a
        // sweep could not take yet, are disk the cache uses.
        let temp = temp::usage(self.tmp_dir()).bytes;
        Ok((blobs + (pages - free).max(0) * size).max(0) as u64 + temp)
    }

    /// Remove the files of blobs no entry references. A failure leaves an
    /// unreferenced file that the next `clear` collects.
    pub(super) fn remove_blob_files(&self, freed: &[Digest]) {
        for d in freed {
            // A concurrent insert may have referenced it again since.
            let referenced = self
                .conn
                .prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")
                .and_then(|mut s| s.exists(params![&d.0[..]]))
                .unwrap_or(true);
            if !referenced {
                let _ = fs::remove_file(self.blobs.path(d));
            }
        }
    }

    /// After a write, evict least recently used entries until the store is
    /// back to about 90% of its limits. Bounded per run; best effort.
    pub fn enforce_limits(&mut self) {
        let _ = self.try_enforce_limits();
    }

    fn try_enforce_limits(&mut self) -> Result<()> {
        let limits = self.limits();
        let used = self.usage()?;
        let entries: i64 = match limits.max_entries {
            Some(_) => self
                .conn
                .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?,
            None => 0,
        };
        let over_bytes = used > limits.max_bytes;
        let over_entries = limits.max_entries.is_some_and(|m| entries as u64 > m);
        if !over_bytes && !over_entries {
            return Ok(());
        }
        // Down to about 90%, and never below one entry: the one just
        // recorded is the most recently used and must survive.
        let target_bytes = limits.max_bytes - limits.max_bytes / 10;
        let excess_bytes = used.saturating_sub(target_bytes) as i64;
        let excess_entries = limits
            .max_entries
            .map_or(0, |m| entries - (m - m / 10).max(1) as i64)
            .max(0);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        reset_doomed(&tx)?;
        // Oldest first, until both excesses are covered (each entry counted
        // by its output bytes, a fair estimate of what deleting it frees).
        let mut keys: Vec<(Vec<u8>, i64)> = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT key, out_len + err_len + ord_len + 256 FROM entries
                 ORDER BY last_used ASC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![MAX_EVICT], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let (mut bytes, mut n) = (0i64, 0i64);
            for row in rows {
                if bytes >= excess_bytes && n >= excess_entries {
                    break;
                }
                let (key, size): (Vec<u8>, i64) = row?;
                bytes += size;
                n += 1;
                keys.push((key, size));
            }
        }
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO temp.doomed (key) VALUES (?1)")?;
            for (k, _) in &keys {
                stmt.execute(params![k])?;
            }
        }
        let removed = delete_doomed(&tx)?;
        bump(&tx, &[(EVICTED, removed.entries as i64)])?;
        tx.commit()?;
        self.remove_blob_files(&removed.freed);
        Ok(())
    }

    /// Counters, sizes and the top commands for `stats`.
    /// Damaged rows are left out of the times and the top commands (their
    /// values are not what was recorded) and counted in `entries`.
    pub fn stats(&mut self, cache_dir: &Path) -> Result<StoreStats> {
        self.or_salvage(|store| store.stats_once(cache_dir))
    }

    fn stats_once(&mut self, cache_dir: &Path) -> Result<StoreStats> {
        self.fold_hits()?;
        let mut s = StoreStats::default();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT name, SUM(value) FROM counters GROUP BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (name, value) = row?;
                s.counters.insert(name, value);
            }
        }
        s.since_ms = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = 'zeroed_at'", [], |r| {
                r.get(0)
            })
            .ok();
        let (entries, oldest, newest): (i64, Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT COUNT(*), MIN(t), MAX(t) FROM (
               SELECT CASE WHEN typeof(created) = 'integer' THEN created END AS t FROM entries)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        s.entries = entries.max(0) as u64;
        s.oldest_ms = oldest;
        s.newest_ms = newest;
        let blob_bytes: i64 =
            self.conn
                .query_row("SELECT COALESCE(SUM(len), 0) FROM blobs", [], |r| r.get(0))?;
        let db = cache_dir.join("memorun.db");
        s.temp = temp::usage(self.tmp_dir());
        s.disk_bytes = blob_bytes.max(0) as u64
            + s.temp.bytes
            + file_len(&db)
            + file_len(&cache_dir.join("memorun.db-wal"))
            + file_len(&cache_dir.join("memorun.db-shm"));
        // Kept per command as hits are folded, so that the time saved by
        // entries since removed (a clear, eviction, a re-record) still counts.
        let mut stmt = self.conn.prepare(
            "SELECT display, hits, saved_ms FROM saved
             WHERE hits > 0 ORDER BY saved_ms DESC, hits DESC LIMIT 5",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TopCommand {
                display: r.get(0)?,
                hits: r.get::<_, i64>(1)?.max(0) as u64,
                saved_ms: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        s.top = rows.collect::<rusqlite::Result<_>>()?;
        Ok(s)
    }

    /// Reset the counters and the time saved per command, keeping the
    /// entries. Hits not yet folded are counted first, then reset with the
    /// rest.
    pub fn zero_counters(&mut self) -> Result<()> {
        self.fold_hits()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM counters", [])?;
        // The rows stay: they name the commands recorded so far.
        tx.execute("UPDATE saved SET hits = 0, saved_ms = 0", [])?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('zeroed_at', ?1)",
            params![now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The entries matching `filter`, newest first. A row that does not
    /// decode or fails its checksum is left out: its values are not what
    /// was recorded, and the next lookup of its key (or `clear`) removes it.
    pub fn list(&mut self, filter: &ClearFilter) -> Result<Vec<Listed>> {
        self.or_salvage(|store| store.list_once(filter))
    }

    fn list_once(&mut self, filter: &ClearFilter) -> Result<Vec<Listed>> {
        self.fold_hits()?;
        let (clause, values) = filter.sql();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ENTRY_COLUMNS}, last_used, hits, display
             FROM entries WHERE {clause} ORDER BY created DESC"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            let Some(e) = decode_verified(r, 0) else {
                return Ok(None);
            };
            let n = ENTRY_COLUMN_COUNT;
            Ok(Some(Listed {
                key: e.key,
                created_ms: e.created_ms,
                last_used_ms: r.get(n).unwrap_or(e.created_ms),
                duration_ms: e.duration.as_millis() as i64,
                exit_code: e.exit_code,
                output_bytes: e.stdout.len.saturating_add(e.stderr.len),
                hits: r.get::<_, i64>(n + 1).unwrap_or(0).max(0) as u64,
                display: match r.get_ref(n + 2)? {
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    _ => String::new(),
                },
            }))
        })?;
        let mut listed = Vec::new();
        for row in rows {
            listed.extend(row?);
        }
        Ok(listed)
    }

    /// Remove the entries matching `filter` and their now unused blobs.
    pub fn clear(&mut self, filter: &ClearFilter) -> Result<Removed> {
        self.or_salvage(|store| store.clear_once(filter))
    }

    fn clear_once(&mut self, filter: &ClearFilter) -> Result<Removed> {
        self.fold_hits()?;
        let (clause, values) = filter.sql();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        reset_doomed(&tx)?;
        tx.execute(
            &format!("INSERT INTO temp.doomed (key) SELECT key FROM entries WHERE {clause}"),
            rusqlite::params_from_iter(values),
        )?;
        let removed = delete_doomed(&tx)?;
        tx.commit()?;
        self.remove_blob_files(&removed.freed);
        Ok(removed)
    }

    /// Remove blob files no entry references and temp files left by a
    /// crash. Returns how many files and bytes went.
    pub fn collect_garbage(&self, tmp_dir: &Path, dry_run: bool) -> Result<(u64, u64)> {
        let mut known = std::collections::HashSet::new();
        {
            let mut stmt = self.conn.prepare("SELECT digest FROM blobs")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            for d in rows {
                if let Some(d) = Digest::from_slice(&d?) {
                    known.insert(d.to_hex());
                }
            }
        }
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut remove = |path: &Path, len: u64| {
            if dry_run || fs::remove_file(path).is_ok() {
                files += 1;
                bytes += len;
            }
        };
        let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if let Ok(dirs) = fs::read_dir(self.blobs.root()) {
            for sub in dirs.flatten() {
                let name = sub.file_name();
                let Some(name) = name.to_str() else { continue };
                // file_type() does not follow symlinks: a planted link to a
                // directory elsewhere is never entered.
                if !is_hex(name, 2) || !sub.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                    let fname = f.file_name();
                    let Some(fname) = fname.to_str() else {
                        continue;
                    };
                    let Ok(meta) = f.metadata() else { continue };
                    // A young file may be a blob a concurrent run has just
                    // put in place and is about to reference.
                    let young = meta
                        .modified()
                        .ok()
                        .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
                        .is_none_or(|age| age < YOUNG_BLOB);
                    if meta.file_type().is_file()
                        && is_hex(fname, 64)
                        && fname.starts_with(name)
                        && !known.contains(fname)
                        && !young
                    {
                        remove(&f.path(), meta.len());
                    }
                }
            }
        }
        let orphans = temp::sweep(tmp_dir, dry_run);
        Ok((files + orphans.files, bytes + orphans.bytes))
    }
}
