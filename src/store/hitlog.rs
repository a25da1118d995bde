//! The hit log: how a replay counts itself without writing to the database.
//!
//! A database write on every hit would cost a transaction, WAL frames and a
//! checkpoint when the connection closes: more than the replay of a small
//! output. Instead a hit appends one fixed-size record (key, the command's
//! manifest, time, time saved) to `hits.log` under a shared `flock`.
//! Whoever next writes to the database (a miss, `stats`, `list`, `clear`,
//! or a hit that finds the log long) folds the log into the entries' hit
//! counts and last-used times and into the counters and the time saved per
//! command, then empties it, all under an exclusive `flock`, so no record
//! is lost or counted twice. The record names its command itself: the
//! entry it replayed may be gone (a concurrent `clear`, eviction or
//! re-record) by the time it is folded.
//!
//! Neither side ever waits for the lock: a process stopped while holding
//! it (Ctrl-Z, a debugger) must not hang the next run. A hit that finds the
//! log being folded counts itself in the database instead; a fold that
//! finds the log in use is left to the next writer.
//!
//! The log is a file anyone with access to the cache directory can append
//! to or grow: each record carries a magic and a checksum, a record that
//! fails either (or has an impossible time) is skipped byte by byte until a
//! good one, and one fold reads at most `MAX_FOLD` bytes, emptying the
//! rest unread.
//!
//! A database made anew (created where one was deleted, as by a `clear
//! --all` killed midway, or rebuilt) empties the log in its creating
//! transaction: the hits in it are of a store that is gone.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::OFlags;

use crate::base::Digest;
use crate::store::private;

/// Bytes per record: magic, key, manifest (see `store::manifest`), time
/// (ms), time saved (ms), and an XXH3 of all that.
const RECORD: usize = 4 + 32 + 32 + 8 + 8 + 8;

/// The start of every record; the last byte is the format's version.
const MAGIC: [u8; 4] = *b"mrh\x02";

/// Version 1 records, without the manifest (schema 5), as a log left by an
/// older memorun may still hold: read, their command found by their key.
const RECORD_V1: usize = 4 + 32 + 8 + 8 + 8;

/// The start of a version 1 record.
const MAGIC_V1: [u8; 4] = *b"mrh\x01";

/// The most one fold reads: thousands of hits past [`FOLD_AT`]. A longer
/// log was not written by hits alone; what lies past this is dropped.
const MAX_FOLD: u64 = 1024 * 1024;

/// A recorded time later than this past the fold is not a real one.
const CLOCK_SLACK_MS: i64 = 24 * 3600 * 1000;

/// Fold the log on a hit once it holds this many bytes.
pub const FOLD_AT: u64 = 64 * 1024;

/// One key's hits, as folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hits {
    /// Replays.
    pub count: i64,
    /// The latest replay, ms since the epoch.
    pub last_ms: i64,
    /// Time saved by them, ms.
    pub saved_ms: i64,
}

/// The hit log of the cache directory `cache_dir`.
pub fn path(cache_dir: &Path) -> std::path::PathBuf {
    cache_dir.join("hits.log")
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(private::FILE_MODE)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Append a hit of the entry under `key`, a run of the command `manifest`
/// names (all zeros when unknown); returns the log's size afterwards.
pub fn append(
    path: &Path,
    key: &Digest,
    manifest: &Digest,
    at_ms: i64,
    saved_ms: i64,
) -> io::Result<u64> {
    let mut f = open(path)?;
    // Never wait: a folder stopped (Ctrl-Z, a debugger) while holding the
    // log must not hang a replay. The caller counts the hit another way.
    try_lock(f.try_lock_shared())?;
    let mut rec = [0u8; RECORD];
    rec[..4].copy_from_slice(&MAGIC);
    rec[4..36].copy_from_slice(&key.0);
    rec[36..68].copy_from_slice(&manifest.0);
    rec[68..76].copy_from_slice(&at_ms.to_le_bytes());
    rec[76..84].copy_from_slice(&saved_ms.to_le_bytes());
    let check = xxhash_rust::xxh3::xxh3_64(&rec[..84]);
    rec[84..].copy_from_slice(&check.to_le_bytes());
    // One write of a few dozen bytes with O_APPEND: never interleaved.
    f.write_all(&rec)?;
    Ok(f.metadata()?.len())
}

/// A log held exclusively while it is folded.
pub struct Folding {
    file: File,
    /// Hits per key and manifest (`None` when the record does not say).
    pub hits: HashMap<(Digest, Option<Digest>), Hits>,
}

impl Folding {
    /// Empty the log (including anything past `MAX_FOLD`): call after the
    /// hits were committed to the database.
    pub fn done(self) -> io::Result<()> {
        self.file.set_len(0)
    }
}

/// Take the log exclusively and read it. `Ok(None)` when there is nothing
/// to fold. Appenders wait until the returned value is dropped.
pub fn take(path: &Path) -> io::Result<Option<Folding>> {
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Folding is bookkeeping: when another process holds the log (an
    // appender stopped mid-append, another fold), leave it to a later one
    // rather than wait, possibly for ever, on the miss path.
    match try_lock(file.try_lock()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut bytes = Vec::new();
    (&mut file).take(MAX_FOLD).read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(Folding {
        file,
        hits: parse(&bytes, super::now_ms()),
    }))
}

/// A non-blocking lock's result as an I/O result (`WouldBlock` when held).
fn try_lock(r: Result<(), std::fs::TryLockError>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// One valid record: key, manifest (if it says), time, time saved.
type Record = (Digest, Option<Digest>, i64, i64);

/// The valid records in `bytes`, per key and manifest. Garbage (and a
/// trailing partial record, from a crash mid-write) is skipped a byte at a
/// time, so records appended after it still count.
fn parse(bytes: &[u8], now_ms: i64) -> HashMap<(Digest, Option<Digest>), Hits> {
    let mut hits: HashMap<(Digest, Option<Digest>), Hits> = HashMap::new();
    let mut i = 0;
    while i < bytes.len() {
        let found = match bytes.get(i..i + 4) {
            Some(m) if m == MAGIC => bytes.get(i..i + RECORD).and_then(|r| record(r, now_ms)),
            Some(m) if m == MAGIC_V1 => bytes
                .get(i..i + RECORD_V1)
                .and_then(|r| record_v1(r, now_ms)),
            _ => None,
        };
        let Some(((key, manifest, at, saved), len)) = found else {
            i += 1;
            continue;
        };
        let h = hits.entry((key, manifest)).or_default();
        h.count += 1;
        h.last_ms = h.last_ms.max(at);
        h.saved_ms += saved;
        i += len;
    }
    hits
}

/// A record's time and time saved, if its check matches and they are
/// possible.
fn checked(rec: &[u8], now_ms: i64) -> Option<(i64, i64)> {
    let n = rec.len();
    let int = |r: std::ops::Range<usize>| i64::from_le_bytes(rec[r].try_into().expect("8 bytes"));
    let check = u64::from_le_bytes(rec[n - 8..].try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(&rec[..n - 8]) != check {
        return None;
    }
    let (at, saved) = (int(n - 24..n - 16), int(n - 16..n - 8));
    let sane = (0..=now_ms.saturating_add(CLOCK_SLACK_MS)).contains(&at) && saved >= 0;
    sane.then_some((at, saved))
}

/// One record (`rec` is [`RECORD`] bytes from its magic), if it is one.
fn record(rec: &[u8], now_ms: i64) -> Option<(Record, usize)> {
    let (at, saved) = checked(rec, now_ms)?;
    let manifest = Digest::from_slice(&rec[36..68]).filter(|m| m.0 != [0; 32]);
    Some((
        (Digest::from_slice(&rec[4..36])?, manifest, at, saved),
        RECORD,
    ))
}

/// One version 1 record, without a manifest, if it is one.
fn record_v1(rec: &[u8], now_ms: i64) -> Option<(Record, usize)> {
    let (at, saved) = checked(rec, now_ms)?;
    Some((
        (Digest::from_slice(&rec[4..36])?, None, at, saved),
        RECORD_V1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest for the records of these tests.
    const M: Digest = Digest([7; 32]);

    #[test]
    fn appended_hits_fold_once() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        assert!(take(&log).unwrap().is_none());
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        append(&log, &a, &M, 10, 100).unwrap();
        append(&log, &b, &M, 20, 5).unwrap();
        let size = append(&log, &a, &M, 30, 100).unwrap();
        assert_eq!(size, 3 * RECORD as u64);
        let f = take(&log).unwrap().unwrap();
        assert_eq!(
            f.hits[&(a, Some(M))],
            Hits {
                count: 2,
                last_ms: 30,
                saved_ms: 200
            }
        );
        assert_eq!(
            f.hits[&(b, Some(M))],
            Hits {
                count: 1,
                last_ms: 20,
                saved_ms: 5
            }
        );
        f.done().unwrap();
        assert!(take(&log).unwrap().is_none(), "folded twice");
        append(&log, &b, &M, 40, 1).unwrap();
        assert_eq!(take(&log).unwrap().unwrap().hits[&(b, Some(M))].count, 1);
    }

    #[test]
    fn garbage_and_impossible_records_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        let a = Digest([1; 32]);
        append(&log, &a, &M, 10, 1).unwrap();
        // Garbage that is not a multiple of a record, then a good record.
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[0x5a; 1000]).unwrap();
        f.write_all(&MAGIC).unwrap();
        f.write_all(&[0; 2 * RECORD]).unwrap();
        drop(f);
        append(&log, &a, &M, 20, 1).unwrap();
        // From the far future, and a negative saving: not real.
        let far = super::super::now_ms() + 10 * CLOCK_SLACK_MS;
        append(&log, &a, &M, far, 1).unwrap();
        append(&log, &a, &M, 30, -5).unwrap();
        let hits = take(&log).unwrap().unwrap().hits;
        assert_eq!(
            hits[&(a, Some(M))],
            Hits {
                count: 2,
                last_ms: 20,
                saved_ms: 2
            }
        );
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn version_one_records_are_still_read_without_a_manifest() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        let a = Digest([1; 32]);
        let mut rec = [0u8; RECORD_V1];
        rec[..4].copy_from_slice(&MAGIC_V1);
        rec[4..36].copy_from_slice(&a.0);
        rec[36..44].copy_from_slice(&10i64.to_le_bytes());
        rec[44..52].copy_from_slice(&5i64.to_le_bytes());
        let check = xxhash_rust::xxh3::xxh3_64(&rec[..52]);
        rec[52..].copy_from_slice(&check.to_le_bytes());
        std::fs::write(&log, rec).unwrap();
        append(&log, &a, &M, 20, 7).unwrap();
        // An unknown manifest is written as zeros and read as none.
        append(&log, &a, &Digest([0; 32]), 30, 1).unwrap();
        let hits = take(&log).unwrap().unwrap().hits;
        assert_eq!(hits[&(a, None)].count, 2);
        assert_eq!(hits[&(a, None)].saved_ms, 6);
        assert_eq!(hits[&(a, Some(M))].saved_ms, 7);
        assert_eq!(hits.len(), 2);
    }

    #[test]
    fn a_fold_reads_a_bounded_prefix_and_empties_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        append(&log, &Digest([1; 32]), &M, 10, 1).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(MAX_FOLD * 100)
            .unwrap();
        let f = take(&log).unwrap().unwrap();
        assert_eq!(f.hits[&(Digest([1; 32]), Some(M))].count, 1);
        f.done().unwrap();
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    }

    #[test]
    fn a_held_log_is_never_waited_for() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        let (a, m) = (Digest([1; 32]), Digest([2; 32]));
        append(&log, &a, &m, 10, 100).unwrap();
        // Another process mid-append (shared) or mid-fold (exclusive): a
        // separate open file description holds the lock.
        let other = std::fs::File::open(&log).unwrap();
        other.lock_shared().unwrap();
        assert!(take(&log).unwrap().is_none(), "a fold waited or went ahead");
        other.unlock().unwrap();
        other.lock().unwrap();
        let err = append(&log, &a, &m, 20, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        other.unlock().unwrap();
        let folding = take(&log).unwrap().unwrap();
        assert_eq!(folding.hits.values().map(|h| h.count).sum::<i64>(), 1);
    }
}
