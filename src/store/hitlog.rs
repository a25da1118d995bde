//! The hit log: how a replay counts itself without writing to the database.
//!
//! A database write on every hit would cost a transaction, WAL frames and a
//! checkpoint when the connection closes: more than the replay of a small
//! output. Instead a hit appends one fixed-size record (key, time, time
//! saved) to `hits.log` under a shared `flock`. Whoever next writes to the
//! database (a miss, `stats`, `list`, `clear`, or a hit that finds the log
//! long) folds the log into the entries' hit counts and last-used times and
//! into the counters, then empties it, all under an exclusive `flock`, so no
//! record is lost or counted twice.
//!
//! The log is a file anyone with access to the cache directory can append
//! to or grow: each record carries a magic and a checksum, a record that
//! fails either (or has an impossible time) is skipped byte by byte until a
//! good one, and one fold reads at most [`MAX_FOLD`] bytes, emptying the
//! rest unread.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::key::Digest;
use crate::store::dir::{self, flock};

/// Bytes per record: magic, key, time (ms), time saved (ms), and an XXH3
/// of all that.
const RECORD: usize = 4 + 32 + 8 + 8 + 8;

/// The start of every record; the last byte is the format's version.
const MAGIC: [u8; 4] = *b"mrh\x01";

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

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(dir::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Append a hit; returns the log's size afterwards.
pub fn append(path: &Path, key: &Digest, at_ms: i64, saved_ms: i64) -> io::Result<u64> {
    let mut f = open(path)?;
    flock(&f, libc::LOCK_SH)?;
    let mut rec = [0u8; RECORD];
    rec[..4].copy_from_slice(&MAGIC);
    rec[4..36].copy_from_slice(&key.0);
    rec[36..44].copy_from_slice(&at_ms.to_le_bytes());
    rec[44..52].copy_from_slice(&saved_ms.to_le_bytes());
    let check = xxhash_rust::xxh3::xxh3_64(&rec[..52]);
    rec[52..].copy_from_slice(&check.to_le_bytes());
    // One write of a few dozen bytes with O_APPEND: never interleaved.
    f.write_all(&rec)?;
    Ok(f.metadata()?.len())
}

/// A log held exclusively while it is folded.
pub struct Folding {
    file: File,
    /// Hits per key.
    pub hits: HashMap<Digest, Hits>,
}

impl Folding {
    /// Empty the log (including anything past [`MAX_FOLD`]): call after the
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
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    flock(&file, libc::LOCK_EX)?;
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

/// The valid records in `bytes`, per key. Garbage (and a trailing partial
/// record, from a crash mid-write) is skipped a byte at a time, so records
/// appended after it still count.
fn parse(bytes: &[u8], now_ms: i64) -> HashMap<Digest, Hits> {
    let mut hits: HashMap<Digest, Hits> = HashMap::new();
    let mut i = 0;
    while let Some(rec) = bytes.get(i..i + RECORD) {
        let Some((key, at, saved)) = record(rec, now_ms) else {
            i += 1;
            continue;
        };
        let h = hits.entry(key).or_default();
        h.count += 1;
        h.last_ms = h.last_ms.max(at);
        h.saved_ms += saved;
        i += RECORD;
    }
    hits
}

/// Key, time and time saved of one record, if it is one.
fn record(rec: &[u8], now_ms: i64) -> Option<(Digest, i64, i64)> {
    let int = |r: std::ops::Range<usize>| i64::from_le_bytes(rec[r].try_into().expect("8 bytes"));
    let check = u64::from_le_bytes(rec[52..].try_into().expect("8 bytes"));
    if rec[..4] != MAGIC || xxhash_rust::xxh3::xxh3_64(&rec[..52]) != check {
        return None;
    }
    let (at, saved) = (int(36..44), int(44..52));
    let sane = (0..=now_ms.saturating_add(CLOCK_SLACK_MS)).contains(&at) && saved >= 0;
    Some((Digest::from_slice(&rec[4..36])?, at, saved)).filter(|_| sane)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_hits_fold_once() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        assert!(take(&log).unwrap().is_none());
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        append(&log, &a, 10, 100).unwrap();
        append(&log, &b, 20, 5).unwrap();
        let size = append(&log, &a, 30, 100).unwrap();
        assert_eq!(size, 3 * RECORD as u64);
        let f = take(&log).unwrap().unwrap();
        assert_eq!(
            f.hits[&a],
            Hits {
                count: 2,
                last_ms: 30,
                saved_ms: 200
            }
        );
        assert_eq!(
            f.hits[&b],
            Hits {
                count: 1,
                last_ms: 20,
                saved_ms: 5
            }
        );
        f.done().unwrap();
        assert!(take(&log).unwrap().is_none(), "folded twice");
        append(&log, &b, 40, 1).unwrap();
        assert_eq!(take(&log).unwrap().unwrap().hits[&b].count, 1);
    }

    #[test]
    fn garbage_and_impossible_records_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        let a = Digest([1; 32]);
        append(&log, &a, 10, 1).unwrap();
        // Garbage that is not a multiple of a record, then a good record.
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[0x5a; 1000]).unwrap();
        f.write_all(&MAGIC).unwrap();
        f.write_all(&[0; 2 * RECORD]).unwrap();
        drop(f);
        append(&log, &a, 20, 1).unwrap();
        // From the far future, and a negative saving: not real.
        let far = super::super::now_ms() + 10 * CLOCK_SLACK_MS;
        append(&log, &a, far, 1).unwrap();
        append(&log, &a, 30, -5).unwrap();
        let hits = take(&log).unwrap().unwrap().hits;
        assert_eq!(
            hits[&a],
            Hits {
                count: 2,
                last_ms: 20,
                saved_ms: 2
            }
        );
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn a_fold_reads_a_bounded_prefix_and_empties_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("hits.log");
        append(&log, &Digest([1; 32]), 10, 1).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(MAX_FOLD * 100)
            .unwrap();
        let f = take(&log).unwrap().unwrap();
        assert_eq!(f.hits[&Digest([1; 32])].count, 1);
        f.done().unwrap();
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    }
}
