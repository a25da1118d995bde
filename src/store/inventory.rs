//! What `stats`, `list` and `clear` read from the store and remove: the
//! counters and sizes, the entries as listed, the entries matching a
//! filter.
//!
//! Invariants: a row that does not decode or fails its checksum is never
//! shown as recorded (left out of `list`, of the times and the top commands
//! in `stats`), but it is counted in `stats`' entries and removed by
//! `clear`; `clear` deletes in bulk through `temp.doomed` (see `refs`), in
//! batches of one transaction each ([`batch_size`]), and says the space
//! that freed ([`Cleared`]).

use std::collections::BTreeMap;
use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::Result;
use rusqlite::{Connection, TransactionBehavior, params};

use super::entry_row::{ENTRY_COLUMN_COUNT, ENTRY_COLUMNS, decode_verified};
use super::error::Error;
use super::now_ms;
use super::records::Records;
use super::refs::{self, Removed};
use crate::base::Digest;
use crate::base::temp;

/// Which entries `clear` removes.
#[derive(Debug, Clone, Default)]
pub struct ClearFilter {
    /// Only entries last used before this many milliseconds since the epoch.
    pub last_used_before_ms: Option<i64>,
    /// Only entries with a non-zero exit code.
    pub failed: bool,
    /// Only entries of this command (argv digest).
    pub argv_digest: Option<Digest>,
    /// Only entries whose command line (as shown) is this one, or starts
    /// with it followed by a space: `clear --prefix`.
    pub display_prefix: Option<String>,
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
        if let Some(c) = &self.argv_digest {
            values.push(Value::Blob(c.0.to_vec()));
            clauses.push(format!("argv_digest = ?{}", values.len()));
        }
        if let Some(p) = &self.display_prefix {
            values.push(Value::Text(p.clone()));
            let n = values.len();
            clauses.push(format!(
                "(display = ?{n} OR substr(display, 1, length(?{n}) + 1) = ?{n} || ' ')"
            ));
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
    /// Output files (captured or checked) and their bytes.
    pub files: crate::outputs::files::Totals,
    /// For a traced entry, how many traced inputs its manifest holds.
    pub traced_inputs: Option<u64>,
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
    pub entries: u64,
    /// Bytes of the database files, blobs and temp files on disk.
    pub disk_bytes: u64,
    /// Temp files: output being recorded now, or left by a crash.
    pub temp: temp::TempUsage,
    /// The disk space of the hit records (counted in `disk_bytes`).
    pub record_bytes: u64,
    /// How much they may take (see `record_budget`).
    pub record_budget: u64,
    /// The entries that have a hit record.
    pub entries_with_record: u64,
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

/// Counters, sizes and the top commands for `stats`, of the store in
/// `cache_dir` with its temp files in `tmp_dir`.
pub fn stats(
    conn: &Connection,
    cache_dir: &Path,
    tmp_dir: &Path,
    max_bytes: u64,
) -> Result<StoreStats, Error> {
    let mut s = StoreStats::default();
    {
        let mut stmt = conn.prepare("SELECT name, SUM(value) FROM counters GROUP BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (name, value) = row?;
            s.counters.insert(name, value);
        }
    }
    s.since_ms = conn
        .query_row("SELECT value FROM meta WHERE name = 'zeroed_at'", [], |r| {
            r.get(0)
        })
        .ok();
    let (entries, oldest, newest): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT COUNT(*), MIN(t), MAX(t) FROM (
           SELECT CASE WHEN typeof(created) = 'integer' THEN created END AS t FROM entries)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    s.entries = entries.max(0) as u64;
    s.oldest_ms = oldest;
    s.newest_ms = newest;
    let blob_bytes = super::record_budget::blob_bytes(conn)? as i64;
    let db = cache_dir.join("memorun.db");
    s.temp = temp::usage(tmp_dir);
    // The hit records, by the space they take (see `records`).
    let record_bytes = s
        .counters
        .get(super::counters::Counter::RecordBytes.name())
        .copied()
        .unwrap_or(0);
    s.record_bytes = record_bytes.max(0) as u64;
    s.record_budget = super::record_budget::current_budget(conn, max_bytes)?;
    // Through the partial index of the entries with a record.
    s.entries_with_record = conn
        .query_row(
            "SELECT COUNT(*) FROM entries INDEXED BY entries_with_record WHERE record IS NOT NULL",
            [],
            |r| r.get::<_, i64>(0),
        )?
        .max(0) as u64;
    s.disk_bytes = blob_bytes.max(0) as u64
        + s.record_bytes
        + s.temp.bytes
        + file_len(&db)
        + file_len(&cache_dir.join("memorun.db-wal"))
        + file_len(&cache_dir.join("memorun.db-shm"));
    // Kept per command as hits are folded, so that the time saved by
    // entries since removed (a clear, eviction, a re-record) still counts.
    let mut stmt = conn.prepare(
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

/// Reset the counters and the time saved per command, keeping the entries.
pub fn zero_counters(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM counters WHERE name != ?1",
        params![super::counters::Counter::RecordBytes.name()],
    )?;
    // The rows stay: they name the commands recorded so far.
    tx.execute("UPDATE saved SET hits = 0, saved_ms = 0", [])?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('zeroed_at', ?1)",
        params![now_ms()],
    )?;
    tx.commit()?;
    Ok(())
}

/// The entries matching `filter`, newest first, leaving out the rows that
/// do not decode or fail their checksum.
pub fn list(conn: &Connection, filter: &ClearFilter) -> Result<Vec<Listed>, Error> {
    let mut listed = Vec::new();
    list_each(conn, filter, &mut |e| {
        listed.push(e);
        ControlFlow::Continue(())
    })?;
    Ok(listed)
}

/// Hand `each` the entries matching `filter`, newest first, as they are
/// read (through the `created` index: the first rows come at once, and
/// nothing is held), until it breaks; rows that do not decode or fail
/// their checksum are left out.
pub fn list_each(
    conn: &Connection,
    filter: &ClearFilter,
    each: &mut dyn FnMut(Listed) -> ControlFlow<()>,
) -> Result<(), Error> {
    let (clause, values) = filter.sql();
    let mut stmt = conn.prepare(&list_sql(&clause))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    while let Some(r) = rows.next()? {
        if let Some(e) = listed(r)?
            && each(e).is_break()
        {
            break;
        }
    }
    Ok(())
}

/// [`list_each`]'s query: newest first, which the `created` index serves
/// without sorting (checked by a test), so a limit costs what it shows.
fn list_sql(clause: &str) -> String {
    format!(
        "SELECT {ENTRY_COLUMNS}, last_used, hits, display,
           (SELECT inputs FROM manifests WHERE entry_key = entries.key)
         FROM entries WHERE {clause} ORDER BY created DESC"
    )
}

/// One row of [`list_each`]'s query as listed, if it decodes and matches
/// its checksum.
fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Listed>> {
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
        files: crate::outputs::files::totals(&e.outputs),
        traced_inputs: r
            .get::<_, Option<i64>>(n + 3)
            .ok()
            .flatten()
            .map(|v| v.max(0) as u64),
        hits: r.get::<_, i64>(n + 1).unwrap_or(0).max(0) as u64,
        display: match r.get_ref(n + 2)? {
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        },
    }))
}

/// The fewest entries one transaction of `clear` removes, and the most.
/// Each transaction releases the write lock (a run waiting to record waits
/// for one batch, not the whole clear), and a `clear` killed mid-way has
/// removed whole batches, each leaving a consistent store. But each also
/// rewrites most pages of the indexes in random order (the key's, the
/// command's), whatever its size: at a million entries about 40,000 pages
/// written to the WAL and again to the database by its checkpoint, a
/// second of disk per batch. So a large clear takes about five batches.
pub const CLEAR_BATCH: (usize, usize) = (20_000, 100_000);

/// The batch size of a `clear` of `total` entries (see [`CLEAR_BATCH`]).
pub fn batch_size(total: usize) -> usize {
    (total / 5).clamp(CLEAR_BATCH.0, CLEAR_BATCH.1)
}

/// What `clear` removed (or, dry, would remove), and the disk space that
/// frees as the size limit counts it (see `evict`): hit records, blobs,
/// and database pages (freed for reuse by later entries: the file keeps
/// its size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    /// The entries.
    pub entries: u64,
    /// Their output bytes (stdout plus stderr).
    pub output_bytes: u64,
    /// The disk space of their hit records.
    pub record_bytes: u64,
    /// The bytes of the blobs no entry references any more.
    pub blob_bytes: u64,
    /// The database pages freed, in bytes.
    pub database_bytes: u64,
}

impl Cleared {
    /// All the space freed.
    pub fn freed_bytes(&self) -> u64 {
        self.record_bytes + self.blob_bytes + self.database_bytes
    }

    fn add(&mut self, r: &Removed, database_bytes: u64) {
        self.entries += r.entries;
        self.output_bytes += r.bytes;
        self.record_bytes += r.record_bytes;
        self.blob_bytes += r.blob_bytes;
        self.database_bytes += database_bytes;
    }
}

/// The rowids of the entries matching `filter`, in order: read once, so
/// that a filter no index serves is evaluated in one pass, not one per
/// batch.
pub fn matching(conn: &Connection, filter: &ClearFilter) -> Result<Vec<i64>, Error> {
    let (clause, values) = filter.sql();
    // Sorted here: ordered by rowid, SQLite would scan the table rather
    // than an index that serves the filter (`last_used`'s covers it).
    let mut stmt = conn.prepare(&format!("SELECT rowid FROM entries WHERE {clause}"))?;
    let ids = stmt.query_map(rusqlite::params_from_iter(values), |r| r.get(0))?;
    let mut ids: Vec<i64> = ids.collect::<rusqlite::Result<_>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// The keys of the entries in `temp.batch` that match `clause`, into
/// `temp.doomed`: a search by rowid for each (CROSS JOIN fixes the loop
/// order: SQLite would rather scan an index that serves the filter).
fn doomed_of_batch(clause: &str) -> String {
    format!(
        "INSERT OR IGNORE INTO temp.doomed (key)
         SELECT entries.key FROM temp.batch b CROSS JOIN entries ON entries.rowid = b.id
         WHERE {clause}"
    )
}

/// Remove, in one write transaction, the entries among `ids` that still
/// match `filter` (a row may have been used, or replaced, since they were
/// read). Returns what went and the database bytes that freed; the caller
/// removes the freed blob files once this has committed. With `dry_run`,
/// nothing is deleted: the transaction is rolled back, and no record file
/// is touched.
pub fn clear_batch(
    conn: &mut Connection,
    records: &Records,
    filter: &ClearFilter,
    ids: &[i64],
    dry_run: bool,
) -> Result<(Removed, u64), Error> {
    let (clause, values) = filter.sql();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let before = super::record_budget::database_bytes(&tx)?;
    refs::reset_doomed(&tx)?;
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS batch (id INTEGER PRIMARY KEY);
         DELETE FROM temp.batch;",
    )?;
    {
        let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO temp.batch (id) VALUES (?1)")?;
        for id in ids {
            stmt.execute(params![id])?;
        }
    }
    tx.execute(
        &doomed_of_batch(&clause),
        rusqlite::params_from_iter(values),
    )?;
    let removed = refs::delete_doomed_rows(&tx, (!dry_run).then_some(records))?;
    let after = super::record_budget::database_bytes(&tx)?;
    tx.execute("DELETE FROM temp.batch", [])?;
    if !dry_run {
        tx.commit()?;
    }
    Ok((removed, before.saturating_sub(after)))
}

/// The entries matching `filter`, removed (or with `dry_run`, counted) in
/// batches ([`batch_size`]; one, dry); `removed` is called with each
/// batch's deletion once it has committed, to remove the blob files it
/// freed.
pub fn clear(
    conn: &mut Connection,
    records: &Records,
    filter: &ClearFilter,
    dry_run: bool,
    mut removed: impl FnMut(&Connection, &Removed),
) -> Result<Cleared, Error> {
    let ids = matching(conn, filter)?;
    let batch = if dry_run {
        ids.len().max(1)
    } else {
        batch_size(ids.len())
    };
    let mut cleared = Cleared::default();
    for chunk in ids.chunks(batch) {
        let (r, db) = clear_batch(conn, records, filter, chunk, dry_run)?;
        if !dry_run {
            removed(conn, &r);
        }
        cleared.add(&r, db);
    }
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_clear_takes_about_five_batches() {
        assert_eq!(batch_size(10), 20_000);
        assert_eq!(batch_size(250_000), 50_000);
        assert_eq!(batch_size(500_000), 100_000);
        assert_eq!(batch_size(5_000_000), 100_000);
    }

    /// Each filter of `clear` finds a batch's doomed rows by rowid, never
    /// by scanning the table or an index.
    #[test]
    fn a_batch_is_found_by_rowid_whatever_the_filter() {
        let conn = Connection::open_in_memory().unwrap();
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        crate::store::schema::prepare(&tx).unwrap();
        refs::reset_doomed(&tx).unwrap();
        tx.execute_batch("CREATE TEMP TABLE batch (id INTEGER PRIMARY KEY)")
            .unwrap();
        let filters = [
            ClearFilter::default(),
            ClearFilter {
                last_used_before_ms: Some(5),
                failed: true,
                ..ClearFilter::default()
            },
            ClearFilter {
                argv_digest: Some(Digest([1; 32])),
                display_prefix: Some("make".into()),
                ..ClearFilter::default()
            },
        ];
        for filter in filters {
            let (clause, values) = filter.sql();
            let sql = format!("EXPLAIN QUERY PLAN {}", doomed_of_batch(&clause));
            let plan: Vec<String> = tx
                .prepare(&sql)
                .unwrap()
                .query_map(rusqlite::params_from_iter(values), |r| r.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(
                plan,
                [
                    "SCAN b",
                    "SEARCH entries USING INTEGER PRIMARY KEY (rowid=?)"
                ],
                "{filter:?}"
            );
        }
    }

    /// `list --limit` at a million entries is as fast as at ten only while
    /// the rows come off the `created` index in order, never sorted first.
    #[test]
    fn list_reads_newest_first_off_the_created_index_without_sorting() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::schema::SCHEMA).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", list_sql("1")))
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("USING INDEX entries_by_created"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
