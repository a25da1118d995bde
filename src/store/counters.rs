//! The counters `memorun stats` shows: their names, and adding to them.
//!
//! Invariant: counters are sharded by pid (`counters(name, shard)`), so
//! concurrent runs do not all update one row; `stats` sums the shards.

use rusqlite::{Transaction, params};

/// A counter `memorun stats` shows, named on disk by [`Counter::name`]
/// (the names are the database's: never rename one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Replays.
    Hits,
    /// Runs (recorded or not) with the cache on.
    Misses,
    /// The recorded durations of replayed runs, in milliseconds.
    SavedMs,
    /// Not recorded: a non-zero exit without `--cache-failures`.
    NotRecordedExit,
    /// Not recorded: killed by a signal.
    NotRecordedSignal,
    /// Not recorded: an input changed while the command ran.
    NotRecordedInput,
    /// Not recorded: the output could not be delivered.
    NotRecordedUndelivered,
    /// Not recorded: `--trace` could not trace it (not allowed here, or a
    /// program tracing cannot vouch for).
    NotRecordedUntraced,
    /// Not recorded: the cache failed (disk full, lock timeout).
    NotRecordedCache,
    /// Cache errors that cost a miss.
    Errors,
    /// Entries that failed verification.
    Corrupt,
    /// Output files (and symlinks) a hit wrote back.
    RestoredFiles,
    /// The bytes of the output files a hit wrote back.
    RestoredBytes,
    /// Entries evicted to stay under the size limit.
    Evicted,
    /// The disk space of the hit records (see `records::disk_usage`), which
    /// count toward the size limit: kept in step by whoever publishes or
    /// deletes one, in the same transaction. Not a statistic: `stats
    /// --zero` keeps it.
    RecordBytes,
    /// Entries found on the remote, verified and installed.
    RemoteHits,
    /// Lookups the remote answered with "not there".
    RemoteMisses,
    /// Entries uploaded.
    RemoteUploads,
    /// Bytes downloaded (entries and blobs).
    RemoteBytesDown,
    /// Bytes uploaded (entries and blobs).
    RemoteBytesUp,
    /// Remote failures (refused, reset, full, …).
    RemoteErrors,
    /// Remote failures that were timeouts.
    RemoteTimeouts,
    /// Remote entries or blobs that failed verification (a miss, never
    /// replayed).
    RemoteCorrupt,
    /// Remote entries whose blobs were gone (evicted): a miss.
    RemoteIncomplete,
    /// Entries not uploaded because an object was over the size cap.
    RemoteTooLarge,
    /// Runs that did not ask the remote: it was cooling down.
    RemoteSkipped,
}

impl Counter {
    /// Its name in the database's `counters` table.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Hits => "hits",
            Counter::Misses => "misses",
            Counter::SavedMs => "time_saved_ms",
            Counter::NotRecordedExit => "not_recorded.nonzero_exit",
            Counter::NotRecordedSignal => "not_recorded.signal",
            Counter::NotRecordedInput => "not_recorded.input_changed",
            Counter::NotRecordedUndelivered => "not_recorded.output_undelivered",
            Counter::NotRecordedUntraced => "not_recorded.untraceable",
            Counter::NotRecordedCache => "not_recorded.cache_error",
            Counter::Errors => "errors",
            Counter::Corrupt => "corrupt",
            Counter::RestoredFiles => "restored_files",
            Counter::RestoredBytes => "restored_bytes",
            Counter::Evicted => "evicted",
            Counter::RecordBytes => "record_bytes",
            Counter::RemoteHits => "remote.hits",
            Counter::RemoteMisses => "remote.misses",
            Counter::RemoteUploads => "remote.uploads",
            Counter::RemoteBytesDown => "remote.bytes_down",
            Counter::RemoteBytesUp => "remote.bytes_up",
            Counter::RemoteErrors => "remote.errors",
            Counter::RemoteTimeouts => "remote.timeouts",
            Counter::RemoteCorrupt => "remote.corrupt",
            Counter::RemoteIncomplete => "remote.incomplete",
            Counter::RemoteTooLarge => "remote.too_large",
            Counter::RemoteSkipped => "remote.skipped",
        }
    }
}

/// Why a run was not recorded: the counter it is counted under (its
/// variant) and the reason in words (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRecorded {
    /// Killed by a signal, or memorun was interrupted while it ran.
    Signal(String),
    /// A non-zero exit without `--cache-failures`.
    Exit(String),
    /// Its output could not be delivered.
    Undelivered(String),
    /// The cache failed (recording, capturing outputs, the stat cache).
    Cache(String),
    /// An input changed while it ran, or it changed one itself.
    InputChanged(String),
    /// `--trace` cannot vouch for what it ran.
    Untraced(String),
}

impl NotRecorded {
    /// The counter `memorun stats` counts it under.
    pub fn counter(&self) -> Counter {
        match self {
            NotRecorded::Signal(_) => Counter::NotRecordedSignal,
            NotRecorded::Exit(_) => Counter::NotRecordedExit,
            NotRecorded::Undelivered(_) => Counter::NotRecordedUndelivered,
            NotRecorded::Cache(_) => Counter::NotRecordedCache,
            NotRecorded::InputChanged(_) => Counter::NotRecordedInput,
            NotRecorded::Untraced(_) => Counter::NotRecordedUntraced,
        }
    }

    /// The reason in words.
    pub fn reason(&self) -> &str {
        match self {
            NotRecorded::Signal(s)
            | NotRecorded::Exit(s)
            | NotRecorded::Undelivered(s)
            | NotRecorded::Cache(s)
            | NotRecorded::InputChanged(s)
            | NotRecorded::Untraced(s) => s,
        }
    }
}

impl std::fmt::Display for NotRecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Add to counters, in the caller's transaction.
pub fn bump(tx: &Transaction<'_>, counters: &[(Counter, i64)]) -> rusqlite::Result<()> {
    let shard = i64::from(std::process::id() % 8);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO counters (name, shard, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, shard) DO UPDATE SET value = value + excluded.value",
    )?;
    for (name, n) in counters {
        stmt.execute(params![name.name(), shard, n])?;
    }
    Ok(())
}
