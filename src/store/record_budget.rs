//! The hit records' budget: records are a cache of the recently used
//! entries, not one per entry.
//!
//! A record of a few hundred bytes takes a whole 4 KiB block, five times
//! what its row takes in the database: a record for each of a million
//! entries would be most of the store. So the records together may take
//! at most [`budget`]: a quarter of the size limit, and a quarter of the
//! database and blobs (at least [`FLOOR`], enough for the commands of any
//! one build). Every entry still gets its record when it is recorded (a
//! `make clean && make` right after is all hits from records); when that
//! puts the records over their budget, the records of the least recently
//! used entries go ([`keep_within`]). Their entries stay: a hit on one is
//! found through the database, and publishes its record again.
//!
//! Invariants:
//!
//! - `entries.record` is set (to the record's disk space) for every entry
//!   that has a record: it is set and committed in the transaction that
//!   counts the record ([`Counter::RecordBytes`]), before the record is
//!   named, and a record is never named for a row without it. A bulk
//!   deletion (`refs::delete_doomed`) deletes the records of the rows with
//!   it set, and only those.
//! - Dropping a record deletes its file, then clears the column and takes
//!   the space the file took off the counter, in the caller's write
//!   transaction (the file first: see `records`).
//! - One call drops at most [`MAX_DROP`] records, so that no invocation
//!   pauses long, and never the record of the entry being published.

use rusqlite::{Connection, Transaction, params};

use super::counters::{self, Counter};
use super::records::Records;
use super::refs::record_error;
use crate::base::Digest;

/// The least the records may take, whatever the size of the store.
pub const FLOOR: u64 = 64 * 1024 * 1024;

/// Most records one call to [`keep_within`] drops. Each is an unlink
/// (tens of microseconds, up to 150 on a loaded disk) and a row update:
/// a few milliseconds once every 32 records published, at most.
pub const MAX_DROP: i64 = 32;

/// What the records may take in a store limited to `max_bytes` whose
/// database pages in use and blobs take `db_and_blobs` bytes.
pub fn budget(max_bytes: u64, db_and_blobs: u64) -> u64 {
    (max_bytes / 4).min(FLOOR.max(db_and_blobs / 4))
}

/// The records' disk space, as counted.
pub fn record_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = ?1",
        params![Counter::RecordBytes.name()],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// The bytes of the database pages in use (not on the free list).
pub fn database_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size).max(0) as u64)
}

/// The bytes of the blobs, as the triggers of `blob_total` keep them (see
/// `schema`): one row read, whatever the number of blobs (summed only if
/// that row is missing).
pub(crate) fn blob_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COALESCE((SELECT bytes FROM blob_total), (SELECT SUM(len) FROM blobs), 0)",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// The records' budget in the store `conn` is, limited to `max_bytes`.
pub fn current_budget(conn: &Connection, max_bytes: u64) -> rusqlite::Result<u64> {
    Ok(budget(max_bytes, database_bytes(conn)? + blob_bytes(conn)?))
}

/// After a record was counted, in the same write transaction: if the
/// records are over their budget, drop the records of the least recently
/// used entries (never `keep`'s) until they are back to 90 % of it, at
/// most [`MAX_DROP`] of them. Returns how many went.
pub fn keep_within(
    tx: &Transaction<'_>,
    records: &Records,
    max_bytes: u64,
    keep: &Digest,
) -> rusqlite::Result<u64> {
    let total = record_bytes(tx)?;
    // The blobs' total is a scan of their table: only summed when the
    // database alone does not leave room.
    let db = database_bytes(tx)?;
    if total <= budget(max_bytes, db) {
        return Ok(0);
    }
    let budget = budget(max_bytes, db + blob_bytes(tx)?);
    if total <= budget {
        return Ok(0);
    }
    let target = budget - budget / 10;
    let oldest: Vec<(Vec<u8>, i64)> = tx
        .prepare_cached(
            "SELECT key, record FROM entries WHERE record IS NOT NULL AND key != ?1
             ORDER BY last_used LIMIT ?2",
        )?
        .query_map(params![&keep.0[..], MAX_DROP], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut clear = tx.prepare_cached("UPDATE entries SET record = NULL WHERE key = ?1")?;
    let (mut left, mut freed, mut dropped) = (total, 0u64, 0u64);
    for (key, space) in oldest {
        if left <= target {
            break;
        }
        // A key that is no digest names no record file.
        if let Some(d) = Digest::from_slice(&key) {
            freed += records.remove(&d).map_err(record_error)?;
        }
        clear.execute(params![key])?;
        left = left.saturating_sub(space.max(0) as u64);
        dropped += 1;
    }
    if freed > 0 {
        counters::bump(tx, &[(Counter::RecordBytes, -(freed as i64))])?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_quarter_of_the_limit_and_of_the_store_with_a_floor() {
        let gib = 1024 * 1024 * 1024;
        // 1M tiny entries: a 0.8 GB database, no blobs.
        assert_eq!(budget(5 * gib, 800_000_000), 200_000_000);
        // A small store: the floor.
        assert_eq!(budget(5 * gib, 1_000_000), FLOOR);
        // A small limit bounds even the floor.
        assert_eq!(budget(150_000, 1_000_000), 37_500);
        // Large blobs leave room for more, up to a quarter of the limit.
        assert_eq!(budget(5 * gib, 100 * gib), 5 * gib / 4);
    }
}
