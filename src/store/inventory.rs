//! What `stats`, `list` and `clear` read from the store and remove: the
//! counters and sizes, the entries as listed, the entries matching a
//! filter.
//!
//! Invariants: a row that does not decode or fails its checksum is never
//! shown as recorded (left out of `list`, of the times and the top commands
//! in `stats`), but it is counted in `stats`' entries and removed by
//! `clear`; `clear` deletes in bulk through `temp.doomed` (see `refs`).

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
pub fn stats(conn: &Connection, cache_dir: &Path, tmp_dir: &Path) -> Result<StoreStats, Error> {
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
    let blob_bytes: i64 =
        conn.query_row("SELECT COALESCE(SUM(len), 0) FROM blobs", [], |r| r.get(0))?;
    let db = cache_dir.join("memorun.db");
    s.temp = temp::usage(tmp_dir);
    // The hit records, by the space they take (see `records`).
    let record_bytes = s
        .counters
        .get(super::counters::Counter::RecordBytes.name())
        .copied()
        .unwrap_or(0);
    s.disk_bytes = blob_bytes.max(0) as u64
        + record_bytes.max(0) as u64
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

/// Remove the entries matching `filter`. Returns what went: the caller
/// removes the freed blob files once this has committed.
pub fn clear(
    conn: &mut Connection,
    records: &Records,
    filter: &ClearFilter,
) -> Result<Removed, Error> {
    let (clause, values) = filter.sql();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    refs::reset_doomed(&tx)?;
    tx.execute(
        &format!("INSERT INTO temp.doomed (key) SELECT key FROM entries WHERE {clause}"),
        rusqlite::params_from_iter(values),
    )?;
    let removed = refs::delete_doomed(&tx, records)?;
    tx.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
