//! Hit records: a small file per entry holding everything its replay
//! needs, so that a hit never opens the database.
//!
//! Opening SQLite (WAL mode, the schema parse, the statements) costs about
//! as much as the rest of a tiny hit together. After an entry is committed,
//! its record is written to `records/ab/<key hex>`; a hit that finds the
//! record replays from it, counts itself in the hit log (`hitlog`) and
//! exits, and only a miss opens the database. Records are a cache of the
//! recently used entries within a budget (`record_budget`): an entry whose
//! record was dropped is found through the database, which publishes it
//! again.
//!
//! Invariants:
//!
//! - **SQLite is the one store of record.** A record exists only for an
//!   entry the database holds, and says exactly what that entry says
//!   ([`Record::entry`] seals to the row's checksum). It is published only
//!   after the entry committed, under the database's write lock, after
//!   checking that the row is still the one it describes
//!   (`SqliteStore::publish_record`), and its row says it has one
//!   (`entries.record`, committed before the record is named). Every
//!   removal or replacement of an entry deletes its record first, in the
//!   transaction that removes the row (`refs::delete_entry`, always;
//!   `refs::delete_doomed`, for the rows that say they have one), as does
//!   dropping a record to stay within the budget, and a database that
//!   is created, rebuilt, upgraded, salvaged or reset takes every record
//!   with it ([`Records::remove_all`]). A record missing is only a slower
//!   hit.
//! - **A record is believed only whole.** It carries a format version, its
//!   own key, and a BLAKE3 checksum over all of it; one that fails any of
//!   them, or names another key, is deleted and the hit takes the database
//!   path. Inline streams are checked against their digests again before
//!   replay, and blobs against their fast checks, as for a row.
//! - Records live in the private cache directory (see `private`), written
//!   by temp file and rename: a reader sees a whole record or none.
//! - **A writer publishes only into the records directory of its own
//!   database.** It pins the directory ([`Records::pin`]) before it opens
//!   the database, and publishes through that descriptor; whatever makes a
//!   new database (a reset, a store created anew) first renames the
//!   directory away whole. A process still holding the old database then
//!   publishes into the directory renamed away, never into the new one.
//!
//! What does not get a record (and is found through the database): traced
//! entries (found through their trace manifests), and entries whose record
//! would exceed [`MAX_RECORD`] (thousands of output files).
//!
//! A power loss can lose the last transactions of a WAL database in
//! `synchronous = NORMAL` mode; a record published just before it may then
//! outlive its row. It still holds a run recorded under exactly its key
//! (never another command's or another input's result), so it is replayed;
//! the next re-record of the key removes it, or `clear --all` (a bulk
//! `clear` deletes the records its rows name, and the lost transaction
//! named none).

use rustix::fs::{self as rfs, Mode, OFlags};
use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::entry_bytes::{self, Reader};
use super::{Entry, private};
use crate::base::Digest;
use crate::base::temp::Temp;

/// The start of every record; the last byte is the format's version.
const MAGIC: [u8; 4] = *b"mrr\x02";

/// The largest record written or read. Streams up to `blobs::INLINE_MAX`
/// (64 KiB) are inline in a row and so in its record; three of them and a
/// list of output files fit. Larger entries are found through the database.
pub(crate) const MAX_RECORD: usize = 256 * 1024;

/// The directory of the records in a cache directory.
pub const DIR: &str = "records";

/// How a records directory renamed away (see [`rename_away`]) is named in
/// the temp directory, before a random number. One left by a process
/// killed before it emptied it is removed by the next `clear` once no live
/// process holds it (see [`sweep_gone`]).
const GONE_PREFIX: &str = "records-gone-";

/// An entry as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The entry, as the database would return it.
    pub entry: Entry,
    /// The command in its directory (`store::manifest`), which its hits
    /// are counted under.
    pub manifest: Digest,
    /// Fast checks (XXH3-128) of the blobs it names, streams and output
    /// files, sorted by digest; `None` for a blob recorded without one.
    pub checks: Vec<(Digest, Option<[u8; 16]>)>,
}

impl Record {
    /// The record of `entry`, a run of the command `manifest` names, with
    /// the fast checks of its blobs (in any order).
    pub fn new(
        entry: Entry,
        manifest: Digest,
        checks: impl IntoIterator<Item = (Digest, Option<[u8; 16]>)>,
    ) -> Record {
        let mut checks: Vec<_> = checks.into_iter().collect();
        checks.sort_by_key(|c| c.0);
        checks.dedup_by_key(|c| c.0);
        Record {
            entry,
            manifest,
            checks,
        }
    }

    /// The fast check recorded for the blob `digest`, if any.
    pub fn check(&self, digest: &Digest) -> Option<[u8; 16]> {
        check_in(&self.checks, digest)
    }
}

/// The fast check of the blob `digest` in `checks` (sorted by digest), if
/// any.
pub(crate) fn check_in(checks: &[(Digest, Option<[u8; 16]>)], digest: &Digest) -> Option<[u8; 16]> {
    checks
        .binary_search_by(|(d, _)| d.cmp(digest))
        .ok()
        .and_then(|i| checks[i].1)
}

/// The records of one cache directory.
#[derive(Debug)]
pub struct Records {
    root: PathBuf,
    /// A writer's records directory, as it was when it opened its
    /// database (see [`Records::pin`]).
    pinned: RefCell<Option<OwnedFd>>,
}

impl Records {
    /// The records under `cache_dir`.
    pub fn new(cache_dir: &Path) -> Records {
        Records {
            root: cache_dir.join(DIR),
            pinned: RefCell::new(None),
        }
    }

    /// Pin the records directory (creating it) as the one this writer
    /// publishes into, whatever is named `records` later. Call it before
    /// opening the database, and again after [`Records::remove_all`]: a
    /// database at least as new as the directory is then the one its
    /// records describe (see the module's invariants). Unpinned (no
    /// `/proc`, say), records are published by their path.
    ///
    /// The pinned directory is held with a shared lock for as long as this
    /// process lives: once renamed away, it is swept ([`sweep_gone`]) only
    /// when no process that may still publish into it is alive.
    pub(crate) fn pin(&self) {
        let fd = private::ensure_subdir(&self.root).ok().and_then(|()| {
            rfs::open(
                &self.root,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        });
        if let Some(fd) = &fd {
            // Unpinned, a sweep may take a renamed-away directory this
            // process still publishes into: a record lost, a slower hit.
            let _ = rfs::flock(fd, rfs::FlockOperation::NonBlockingLockShared);
        }
        *self.pinned.borrow_mut() = fd;
    }

    /// Where a writer publishes the record for `key`: in its pinned
    /// directory, by the descriptor, when it has one.
    fn publish_path(&self, key: &Digest) -> PathBuf {
        let hex = key.to_hex();
        match &*self.pinned.borrow() {
            Some(fd) if Path::new("/proc/self/fd").is_dir() => {
                PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .join(&hex[..2])
                    .join(hex)
            }
            _ => self.path(key),
        }
    }

    /// The directory holding them.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the record for `key`.
    pub(crate) fn path(&self, key: &Digest) -> PathBuf {
        let hex = key.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// The record for `key`, if there is a sound one. One that is damaged,
    /// of another version or for another key is passed over: the caller
    /// takes the database path, which knows the truth and, on a hit,
    /// publishes a sound record in its place (it is never deleted outside
    /// the database's write lock, which keeps [`Counter::RecordBytes`]
    /// right).
    ///
    /// [`Counter::RecordBytes`]: super::counters::Counter::RecordBytes
    ///
    /// Opened without following a symlink and without blocking, and read
    /// only when it is a regular file: a FIFO or a device planted at its
    /// path is passed over, never waited on.
    pub fn read(&self, key: &Digest) -> Option<Record> {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
            .open(self.path(key))
            .ok()?;
        let meta = f.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        // Its size and one byte more (to see its end): read in one go, the
        // buffer never grown (a record with a hundred inline outputs is
        // over 100 KiB).
        let mut buf = Vec::with_capacity((meta.len() as usize).min(MAX_RECORD) + 1);
        Read::by_ref(&mut f)
            .take(MAX_RECORD as u64 + 1)
            .read_to_end(&mut buf)
            .ok()?;
        decode(&buf).filter(|r| r.entry.key == *key)
    }

    /// Write the record for an entry just committed, to a temp file in
    /// `tmp_dir`; [`Pending::publish`] then gives it its name. `None`
    /// when the entry gets no record (too large).
    pub fn prepare(&self, tmp_dir: &Path, record: &Record) -> Option<Pending> {
        let bytes = encode(record)?;
        let mut temp = Temp::create(tmp_dir, "record").ok()?;
        temp.write_all(&bytes).ok()?;
        let len = disk_usage(&temp.file().metadata().ok()?);
        Some(Pending {
            temp,
            path: self.publish_path(&record.entry.key),
            len,
        })
    }

    /// Delete the record for `key`, if any, sound or not; returns the disk
    /// space it took ([`disk_usage`]; 0 when there was none). Errors other
    /// than "not there" are returned: the caller must not remove the row
    /// then. (Under a path that is not a directory, damaged by hand, there
    /// is none.)
    pub(crate) fn remove(&self, key: &Digest) -> io::Result<u64> {
        let path = self.path(key);
        let len = match fs::symlink_metadata(&path) {
            Ok(m) => disk_usage(&m),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(len),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Delete every record: the database they describe was created anew,
    /// rebuilt, upgraded, salvaged or reset. The directory is renamed away
    /// first, so no reader finds a record of it from then on, then removed;
    /// a new one is pinned.
    pub(crate) fn remove_all(&self, tmp_dir: &Path) -> io::Result<()> {
        if let Some(gone) = rename_away(&self.root, tmp_dir)? {
            // Renamed away already: what stays is swept with the temp files.
            let _ = fs::remove_dir_all(&gone);
        }
        if self.pinned.borrow().is_some() {
            self.pin();
        }
        Ok(())
    }
}

/// The disk space a record takes: its allocated blocks, not its length. A
/// record of a few hundred bytes takes a whole block (4 KiB on ext4), and
/// that is what counts toward the size limit.
pub fn disk_usage(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

/// Rename the records directory `root` to a new name in `tmp_dir`, whole
/// (see the module's invariants); returns that name, or `None` when there
/// was no directory.
pub(crate) fn rename_away(root: &Path, tmp_dir: &Path) -> io::Result<Option<PathBuf>> {
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let mut nonce = [0u8; 8];
    // Only a name: zeros, if randomness fails, still name it.
    let _ = getrandom::fill(&mut nonce);
    let gone = tmp_dir.join(format!("{GONE_PREFIX}{}", u64::from_le_bytes(nonce)));
    fs::rename(root, &gone)?;
    Ok(Some(gone))
}

/// Remove the records directories renamed away into `tmp_dir` that no live
/// process holds: one whose removal raced a writer publishing into it (a
/// `clear --all` while commands record) is left behind by its remover, and
/// taken here by a later `clear`, `clear --all` or collection. A directory
/// still pinned by a live writer (its shared lock, see [`Records::pin`])
/// stays: that writer may still publish into it. Only real directories
/// with memorun's name are removed, never through a symlink. With
/// `dry_run`, only count. Returns the files and bytes removed.
pub(crate) fn sweep_gone(tmp_dir: &Path, dry_run: bool) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(GONE_PREFIX)) else {
            continue;
        };
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = e.path();
        let Ok(fd) = rfs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        // Held: a writer that pinned it is alive.
        if rfs::flock(&fd, rfs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let (n, b) = tree_usage(&path);
        if dry_run || fs::remove_dir_all(&path).is_ok() {
            files += n;
            bytes += b;
        }
    }
    (files, bytes)
}

/// The regular files under `dir` (not following symlinks) and their bytes.
fn tree_usage(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            let (n, b) = tree_usage(&e.path());
            files += n;
            bytes += b;
        } else if t.is_file() {
            files += 1;
            bytes += e.metadata().map_or(0, |m| m.len());
        }
    }
    (files, bytes)
}

/// A record written to a temp file, waiting to be named.
pub struct Pending {
    temp: Temp,
    path: PathBuf,
    len: u64,
}

impl Pending {
    /// The disk space the record takes ([`disk_usage`]).
    pub(crate) fn space(&self) -> u64 {
        self.len
    }

    /// Give the record its name, replacing any older one (an unsound one a
    /// hit passed over). Call only while holding the database's write
    /// lock, after checking that the row it describes is there (see the
    /// module's invariants). Returns by how much the records' total size
    /// grew.
    pub fn publish(self) -> io::Result<i64> {
        let parent = self.path.parent().expect("a record path has a parent");
        let root = parent.parent().expect("a record shard has a parent");
        private::ensure_subdir(root).map_err(io::Error::other)?;
        private::ensure_subdir(parent).map_err(io::Error::other)?;
        let old = fs::symlink_metadata(&self.path).map_or(0, |m| disk_usage(&m));
        self.temp.replace(&self.path)?;
        Ok(self.len as i64 - old as i64)
    }
}

fn checksum(bytes: &[u8]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key("memorun 2026 hit record")
        .update(bytes)
        .finalize()
        .as_bytes()
}

/// Encode a record, or `None` when it would exceed [`MAX_RECORD`].
///
/// Layout (integers little-endian): magic; the entry
/// (`entry_bytes`); the manifest; the blob checks (u32 count, then digest,
/// a flag and 16 bytes each); a BLAKE3 checksum of all that.
pub(crate) fn encode(r: &Record) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    entry_bytes::put(&mut out, &r.entry);
    out.extend_from_slice(&r.manifest.0);
    out.extend_from_slice(&u32::try_from(r.checks.len()).ok()?.to_le_bytes());
    for (d, c) in &r.checks {
        out.extend_from_slice(&d.0);
        out.push(u8::from(c.is_some()));
        out.extend_from_slice(&c.unwrap_or_default());
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    (out.len() <= MAX_RECORD).then_some(out)
}

/// Decode a record; `None` unless it is whole, of this version, sound by
/// its checksum and strictly well formed. (Inline bytes are checked
/// against their digests before a replay writes them.)
pub fn decode(bytes: &[u8]) -> Option<Record> {
    if bytes.len() > MAX_RECORD || bytes.len() < MAGIC.len() + 32 {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if checksum(body) != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.array::<4>()? != MAGIC {
        return None;
    }
    let entry = entry_bytes::take(&mut r)?;
    let manifest = r.digest()?;
    let count = r.u32()? as usize;
    if count > r.0.len() / (32 + 1 + 16) {
        return None;
    }
    let mut checks = Vec::with_capacity(count);
    for _ in 0..count {
        let d = r.digest()?;
        let has = r.u8()?;
        let c: [u8; 16] = r.array()?;
        checks.push((
            d,
            match has {
                0 => None,
                1 => Some(c),
                _ => return None,
            },
        ));
    }
    if !r.is_empty() || !checks.is_sorted_by(|a, b| a.0 < b.0) {
        return None;
    }
    Some(Record {
        entry,
        manifest,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredStream;
    use std::time::Duration;

    fn stream(bytes: Option<&[u8]>, len: u64, d: u8) -> StoredStream {
        StoredStream {
            len,
            digest: Digest([d; 32]),
            inline: bytes.map(<[u8]>::to_vec),
        }
    }

    fn record() -> Record {
        Record {
            entry: Entry {
                key: Digest([1; 32]),
                created_ms: 1_700_000_000_000,
                duration: Duration::from_millis(1234),
                exit_code: 3,
                stdout: stream(Some(b"hello\n"), 6, 2),
                stderr: stream(None, 100_000, 3),
                order: stream(Some(b""), 0, 4),
                outputs: Vec::new(),
                stdin_advance: 7,
            },
            manifest: Digest([5; 32]),
            checks: vec![(Digest([3; 32]), Some([6; 16])), (Digest([8; 32]), None)],
        }
    }

    #[test]
    fn round_trips() {
        let r = record();
        let bytes = encode(&r).unwrap();
        assert_eq!(decode(&bytes), Some(r.clone()));
        assert_eq!(
            decode(&bytes).unwrap().check(&Digest([3; 32])),
            Some([6; 16])
        );
        assert_eq!(decode(&bytes).unwrap().check(&Digest([8; 32])), None);
        assert_eq!(decode(&bytes).unwrap().check(&Digest([9; 32])), None);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = encode(&record()).unwrap();
        for n in 0..bytes.len() {
            assert_eq!(decode(&bytes[..n]), None, "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert_eq!(decode(&b), None, "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }

    #[test]
    fn another_version_is_refused() {
        let mut bytes = encode(&record()).unwrap();
        bytes[3] = 3;
        let body = bytes.len() - 32;
        let sum = checksum(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum);
        assert_eq!(decode(&bytes), None);
    }

    #[test]
    fn too_large_is_not_encoded() {
        let mut r = record();
        let big = vec![b'x'; MAX_RECORD];
        r.entry.stdout = StoredStream {
            len: big.len() as u64,
            digest: Digest([2; 32]),
            inline: Some(big),
        };
        assert_eq!(encode(&r), None);
    }

    #[test]
    fn read_passes_over_a_damaged_record_and_one_for_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path());
        let r = record();
        records.prepare(dir.path(), &r).unwrap().publish().unwrap();
        assert_eq!(records.read(&r.entry.key), Some(r.clone()));
        // Another key's record under this name.
        let other = Digest([0x77; 32]);
        fs::copy(records.path(&r.entry.key), {
            fs::create_dir_all(records.path(&other).parent().unwrap()).unwrap();
            records.path(&other)
        })
        .unwrap();
        assert_eq!(records.read(&other), None);
        // A flipped byte.
        let path = records.path(&r.entry.key);
        let mut bytes = fs::read(&path).unwrap();
        bytes[40] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(records.read(&r.entry.key), None);
        // Sound or not, removed with the space it took.
        let space = disk_usage(&fs::metadata(&path).unwrap());
        assert!(space >= bytes.len() as u64);
        assert_eq!(records.remove(&r.entry.key).unwrap(), space);
        assert_eq!(records.remove(&r.entry.key).unwrap(), 0);
        records.remove_all(dir.path()).unwrap();
        assert!(!records.root().exists());
    }
}
