//! Eviction: keeping the store under its size limits by removing the least
//! recently used entries after a write.
//!
//! Invariants:
//! - What the limit bounds is blob bytes plus database pages in use plus
//!   temp files (output being recorded, orphans of a crash): all disk the
//!   cache uses.
//! - One eviction removes at most [`MAX_EVICT`] entries, in bulk, so no
//!   invocation pauses long; it never removes the entry just recorded (the
//!   most recently used). What an eviction costs is the pages its deletes
//!   dirty (a row, its key and its command's index entries: about four
//!   random pages an entry in a big store, each written to the WAL and
//!   then checkpointed) and the entries' hit records unlinked, so the
//!   bound is on entries.

use std::path::Path;

use anyhow::Result;
use rusqlite::{Connection, TransactionBehavior, params};

use super::counters::{self, Counter};
use super::records::Records;
use super::refs::{self, Removed};
use crate::base::temp;

/// Most entries one invocation evicts. At a million entries, evicting 1,000
/// made the miss that did it about 240 ms slower; 100, about 20 ms with
/// hit records only for the recently used entries (so none to unlink for
/// the least recently used) and about 70 ms on a loaded machine with a
/// record for every entry: within or near the 50 ms P5 allows
/// (`bench/run.sh p5`). A store over its limit by many small entries takes
/// more invocations to come back under it; each one that records a small
/// entry still removes 100.
pub const MAX_EVICT: i64 = 100;

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

/// Bytes of blobs plus database pages in use plus hit records plus the
/// temp files in `tmp_dir`: what [`Limits::max_bytes`] bounds.
fn usage(conn: &Connection, tmp_dir: &Path) -> rusqlite::Result<u64> {
    use super::record_budget::{blob_bytes, database_bytes, record_bytes};
    // Temp files count too: output being recorded, and any orphan a
    // sweep could not take yet, are disk the cache uses. The hit records
    // repeat what a row holds inline, and count as well.
    let temp = temp::usage(tmp_dir).bytes;
    Ok(blob_bytes(conn)? + database_bytes(conn)? + record_bytes(conn)? + temp)
}

/// If the store is over `limits`, evict least recently used entries until
/// it is back to about 90% of them, and count them. Returns what went: the
/// caller removes the freed blob files once this has committed.
pub fn evict(
    conn: &mut Connection,
    limits: Limits,
    tmp_dir: &Path,
    records: &Records,
) -> Result<Removed> {
    let used = usage(conn, tmp_dir)?;
    let entries: i64 = match limits.max_entries {
        Some(_) => conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?,
        None => 0,
    };
    let over_bytes = used > limits.max_bytes;
    let over_entries = limits.max_entries.is_some_and(|m| entries as u64 > m);
    if !over_bytes && !over_entries {
        return Ok(Removed::default());
    }
    // Down to about 90%, and never below one entry: the one just
    // recorded is the most recently used and must survive.
    let target_bytes = limits.max_bytes - limits.max_bytes / 10;
    let excess_bytes = used.saturating_sub(target_bytes) as i64;
    let excess_entries = limits
        .max_entries
        .map_or(0, |m| entries - (m - m / 10).max(1) as i64)
        .max(0);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    refs::reset_doomed(&tx)?;
    // Oldest first, until both excesses are covered (each entry counted
    // by its output bytes and output files, a fair estimate of what
    // deleting it frees: a blob shared with a surviving entry stays).
    let mut keys: Vec<(Vec<u8>, i64)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT key, out_len + err_len + order_len + 256 + COALESCE(LENGTH(outputs), 0)
               + COALESCE((SELECT SUM(b.len) FROM file_blobs f JOIN blobs b
                           ON b.digest = f.digest WHERE f.key = entries.key), 0)
             FROM entries ORDER BY last_used ASC LIMIT ?1",
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
        let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO temp.doomed (key) VALUES (?1)")?;
        for (k, _) in &keys {
            stmt.execute(params![k])?;
        }
    }
    let removed = refs::delete_doomed(&tx, records)?;
    counters::bump(&tx, &[(Counter::Evicted, removed.entries as i64)])?;
    tx.commit()?;
    Ok(removed)
}
