//! The counters `memorun stats` shows: their names, and adding to them.
//!
//! Invariant: counters are sharded by pid (`counters(name, shard)`), so
//! concurrent runs do not all update one row; `stats` sums the shards.

use rusqlite::{Transaction, params};

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
/// Not recorded: `--trace` could not trace it (not allowed here, or a
/// program tracing cannot vouch for).
pub const NOT_RECORDED_UNTRACED: &str = "not_recorded.untraceable";
/// Not recorded: the cache failed (disk full, lock timeout).
pub const NOT_RECORDED_CACHE: &str = "not_recorded.cache_error";
/// Cache errors that cost a miss.
pub const ERRORS: &str = "errors";
/// Entries that failed verification.
pub const CORRUPT: &str = "corrupt";
/// Output files (and symlinks) a hit wrote back.
pub const RESTORED_FILES: &str = "restored_files";
/// The bytes of the output files a hit wrote back.
pub const RESTORED_BYTES: &str = "restored_bytes";
/// Entries evicted to stay under the size limit.
pub const EVICTED: &str = "evicted";
/// The disk space of the hit records (see `records::disk_usage`), which count
/// toward the size limit: kept in step by whoever publishes or deletes
/// one, in the same transaction. Not a statistic: `stats --zero` keeps it.
pub const RECORD_BYTES: &str = "record_bytes";

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
