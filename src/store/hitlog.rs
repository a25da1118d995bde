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

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::key::Digest;
use crate::store::dir::{self, flock};

/// Bytes per record: key, time (ms), time saved (ms).
const RECORD: usize = 32 + 8 + 8;

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
    rec[..32].copy_from_slice(&key.0);
    rec[32..40].copy_from_slice(&at_ms.to_le_bytes());
    rec[40..].copy_from_slice(&saved_ms.to_le_bytes());
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
    /// Empty the log: call after the hits were committed to the database.
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
    file.read_to_end(&mut bytes)?;
    if bytes.len() < RECORD {
        return Ok(None);
    }
    let mut hits: HashMap<Digest, Hits> = HashMap::new();
    // A trailing partial record (a crash mid-write) is ignored.
    for rec in bytes.chunks_exact(RECORD) {
        let key = Digest(rec[..32].try_into().expect("32 bytes"));
        let at = i64::from_le_bytes(rec[32..40].try_into().expect("8 bytes"));
        let saved = i64::from_le_bytes(rec[40..].try_into().expect("8 bytes"));
        let h = hits.entry(key).or_default();
        h.count += 1;
        h.last_ms = h.last_ms.max(at);
        h.saved_ms += saved;
    }
    Ok(Some(Folding { file, hits }))
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
}
