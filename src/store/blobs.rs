//! Output streams on their way to and from storage.
//!
//! A [`Spool`] takes a stream's bytes as they arrive. Up to [`INLINE_MAX`]
//! bytes stay in memory and go inline into the database row; past that the
//! spool moves to a temp file (exclusive-create, random name, 0600) so memory
//! stays bounded whatever the output size. A finished large stream becomes a
//! content-addressed blob `blobs/<2 hex>/<64 hex>`, renamed into place whole,
//! so a blob path never names a partial file. Every blob is verified against
//! its digest before any byte of it is replayed.
//!
//! Blobs are the only files memorun memory-maps (see "Memory mapping" in
//! the crate doc): being its own and never modified in place, they cannot
//! shrink while mapped, so verifying one cannot end in a SIGBUS.
//!
//! A blob copied into a file (an output restored on a hit) is verified as
//! it is copied instead ([`Blobs::copy_verified`]): each piece is read once
//! into a reused buffer, hashed and written, into a file nobody sees until
//! the whole blob has passed its check; a blob that fails it leaves that
//! file to be thrown away.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::base::Digest;
use crate::base::hashing;
use crate::base::temp::Temp;
use crate::store::private;

/// How much of a blob is mapped at once while verifying it.
const VERIFY_WINDOW: u64 = 8 * 1024 * 1024;

/// How much of a blob one read takes while it is copied: all of most files
/// a build writes (one read and one write each), in a buffer small enough
/// to stay in the CPU's cache from the read through the check to the write.
const COPY_BUF: usize = 256 * 1024;

/// Streams up to this size are stored inline in the database.
pub const INLINE_MAX: usize = 64 * 1024;

/// Accepts one output stream's bytes while a command runs.
pub struct Spool {
    tmp_dir: PathBuf,
    inline_max: usize,
    hasher: blake3::Hasher,
    check: xxhash_rust::xxh3::Xxh3,
    len: u64,
    mem: Vec<u8>,
    file: Option<io::BufWriter<Temp>>,
}

impl Spool {
    /// A spool whose temp file, if it needs one, goes into `tmp_dir`.
    pub fn new(tmp_dir: PathBuf) -> Spool {
        Spool::with_inline_max(tmp_dir, INLINE_MAX)
    }

    /// A spool that keeps up to `inline_max` bytes in memory (inline).
    pub fn with_inline_max(tmp_dir: PathBuf, inline_max: usize) -> Spool {
        Spool {
            tmp_dir,
            inline_max,
            hasher: blake3::Hasher::new(),
            check: xxhash_rust::xxh3::Xxh3::new(),
            len: 0,
            mem: Vec::new(),
            file: None,
        }
    }

    /// Append bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.check.update(data);
        self.len += data.len() as u64;
        if let Some(w) = &mut self.file {
            return w.write_all(data);
        }
        if self.mem.len() + data.len() <= self.inline_max {
            self.mem.extend_from_slice(data);
            return Ok(());
        }
        let temp = Temp::create(&self.tmp_dir, "spool")?;
        let mut w = io::BufWriter::with_capacity(256 * 1024, temp);
        w.write_all(&self.mem)?;
        w.write_all(data)?;
        self.mem = Vec::new();
        self.file = Some(w);
        Ok(())
    }

    /// Finish the stream: its length, digest and where its bytes are.
    pub fn finish(self) -> io::Result<Spooled> {
        let digest = self.hasher.finalize().into();
        let check = self.check.digest128().to_le_bytes();
        let data = match self.file {
            None => SpooledData::Inline(self.mem),
            Some(w) => SpooledData::Temp(w.into_inner().map_err(|e| e.into_error())?),
        };
        Ok(Spooled {
            len: self.len,
            digest,
            check,
            data,
        })
    }
}

/// A finished stream, not yet in the store.
#[derive(Debug)]
pub struct Spooled {
    /// Length in bytes.
    pub len: u64,
    /// BLAKE3 digest of the content.
    pub digest: Digest,
    /// XXH3-128 of the content: the fast integrity check for replay.
    pub check: [u8; 16],
    /// Where the bytes are.
    pub data: SpooledData,
}

/// Where a finished stream's bytes are.
#[derive(Debug)]
pub enum SpooledData {
    /// Small: in memory, to go inline into the row.
    Inline(Vec<u8>),
    /// Large: in a temp file, to become a blob.
    Temp(Temp),
}

/// The content-addressed blob files of one cache directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    /// Blobs under `root` (the cache's `blobs` directory).
    pub fn new(root: PathBuf) -> Blobs {
        Blobs { root }
    }

    /// The path of the blob with this digest.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Move a spooled temp file into place as the blob for `digest`
    /// (atomically, by rename), or drop it when a blob of that name and
    /// size is already there. A corrupt one is removed when a replay finds
    /// it (`open_verified`), so the next run that records it installs a
    /// good copy.
    pub fn install(&self, digest: &Digest, len: u64, temp: Temp) -> io::Result<()> {
        let target = self.path(digest);
        let parent = target.parent().expect("blob path has a parent");
        private::ensure_subdir(&self.root).map_err(io::Error::other)?;
        private::ensure_subdir(parent).map_err(io::Error::other)?;
        // Content-addressed: a blob already there with the right size is the
        // same content (a corrupt one is removed when a replay finds it).
        // Renaming over it anyway is slow on ext4, which flushes the new
        // file's data before a rename that replaces an existing file.
        if fs::symlink_metadata(&target).is_ok_and(|m| m.is_file() && m.len() == len) {
            return Ok(());
        }
        temp.replace(&target)
    }

    /// Open the blob for `digest`, check that it holds exactly `len` bytes
    /// matching `check` (XXH3-128, fast) or, for blobs recorded before there
    /// was one, whose BLAKE3 digest is `digest`; return it positioned at 0.
    /// `Ok(None)` means the blob is missing, short, long or altered.
    ///
    /// The whole blob is checked before any byte of it is replayed, so a
    /// corrupt blob never yields partial output. XXH3 runs at memory speed,
    /// so the check costs a fraction of the copy it guards.
    pub fn open_verified(
        &self,
        digest: &Digest,
        len: u64,
        check: Option<[u8; 16]>,
    ) -> io::Result<Option<File>> {
        let path = self.path(digest);
        let mut f = match OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = f.metadata()?;
        if !meta.is_file() || meta.size() != len {
            self.discard(&path, &meta);
            return Ok(None);
        }
        if let Some(check) = check {
            // Mapped a window at a time: the pages of a window leave our
            // resident set when it is unmapped, so a hit on a gigabyte stays
            // within a few MiB of RSS.
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            let mut offset = 0u64;
            while offset < len {
                let window = (len - offset).min(VERIFY_WINDOW);
                // SAFETY: a blob lives in memorun's private cache directory
                // and is never modified in place (a new blob is renamed over
                // the path, leaving this inode intact), so the mapping
                // cannot shrink under us: the crate's mmap policy.
                // Populated at once: one call instead of a page fault per
                // 4 KiB (a restore verifies thousands of blobs).
                #[allow(unsafe_code)]
                let map = unsafe {
                    memmap2::MmapOptions::new()
                        .offset(offset)
                        .len(window as usize)
                        .populate()
                        .map(&f)?
                };
                h.update(&map);
                offset += window;
            }
            if h.digest128().to_le_bytes() != check {
                self.discard(&path, &meta);
                return Ok(None);
            }
            return Ok(Some(f));
        }
        let (actual, n) = hashing::hash_file(&mut f, len)?;
        if n != len || actual != *digest {
            self.discard(&path, &meta);
            return Ok(None);
        }
        f.rewind()?;
        Ok(Some(f))
    }

    /// Copy the blob for `digest` into `out`, checking on the way that it
    /// holds exactly `len` bytes matching `check` (XXH3-128) or, for a blob
    /// recorded before there was one, whose BLAKE3 digest is `digest`.
    /// One pass: each piece is read once into `copier`'s buffer, hashed and
    /// written. Where the file system shares extents, `out` becomes a
    /// reflink of the blob, which is then only read to be checked.
    ///
    /// `out` must be an empty file that nobody sees before this returns
    /// `Ok(true)` (an unnamed temp file): on `Ok(false)` (the blob is
    /// missing, short, long or altered, and removed as
    /// [`Blobs::open_verified`] removes it) or an error, what `out` holds
    /// must be thrown away.
    pub fn copy_verified(
        &self,
        digest: &Digest,
        len: u64,
        check: Option<[u8; 16]>,
        out: &File,
        copier: &mut Copier,
    ) -> Result<bool, CopyError> {
        let read_error = |e| CopyError::Read(self.path(digest), e);
        let Some(blob) = copier.open(self, digest).map_err(read_error)? else {
            return Ok(false);
        };
        let cloned = copier.reflink(out, &blob);
        let mut verifier = Verifier::new(*digest, check);
        let buf = copier.buffer();
        let mut total = 0u64;
        loop {
            // One byte more than is left: a blob longer than recorded shows
            // in the read that would otherwise end it.
            let want = (len - total).saturating_add(1).min(buf.len() as u64) as usize;
            let n = match (&blob).read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            total += n as u64;
            if total > len {
                break;
            }
            verifier.update(&buf[..n]);
            if !cloned {
                (&*out).write_all(&buf[..n]).map_err(CopyError::Write)?;
            }
            // Short of what was asked, at the recorded length: at its end.
            if total == len && n < want {
                break;
            }
        }
        if total != len || !verifier.matches() {
            if let Ok(meta) = blob.metadata() {
                self.discard(&self.path(digest), &meta);
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Remove a blob found corrupt, so that the next run that records the
    /// same content puts a good copy in place; only if `path` still names
    /// the file that was checked (not one a concurrent run just installed).
    fn discard(&self, path: &Path, checked: &fs::Metadata) {
        let same = fs::symlink_metadata(path)
            .is_ok_and(|m| m.is_file() && m.dev() == checked.dev() && m.ino() == checked.ino());
        if same {
            let _ = fs::remove_file(path);
        }
    }

    /// The root directory of the blobs.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Why [`Blobs::copy_verified`] could not copy a blob.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the blob at this path failed.
    Read(PathBuf, io::Error),
    /// Writing the copy failed.
    Write(io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Read(path, e) => write!(f, "cannot read blob '{}': {e}", path.display()),
            CopyError::Write(e) => write!(f, "cannot write the copy: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// What copying many blobs reuses ([`Blobs::copy_verified`]): a read
/// buffer, the blob directory opened once, and whether reflinks work on
/// this file system. One per thread.
#[derive(Debug, Default)]
pub struct Copier {
    buf: Vec<u8>,
    /// The blob directory, opened once: a blob is then opened by a path of
    /// two components, not the cache directory's whole path.
    root: Option<(PathBuf, OwnedFd)>,
    /// A reflink failed once: not tried again for every file.
    no_reflink: bool,
}

impl Copier {
    /// A copier for another thread, knowing what this one learnt about
    /// reflinks.
    pub fn sibling(&self) -> Copier {
        Copier {
            no_reflink: self.no_reflink,
            ..Copier::default()
        }
    }

    /// The blob for `digest` in `blobs`, opened (never through a symlink)
    /// but not checked; `None` when it is missing.
    fn open(&mut self, blobs: &Blobs, digest: &Digest) -> io::Result<Option<File>> {
        if self.root.as_ref().is_none_or(|(p, _)| *p != blobs.root) {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match rustix::fs::open(&blobs.root, flags, Mode::empty()) {
                Ok(fd) => self.root = Some((blobs.root.clone(), fd)),
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let (_, root) = self.root.as_ref().expect("opened above");
        let hex = digest.to_hex();
        let rel = format!("{}/{}", &hex[..2], hex);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rustix::fs::openat(root, rel.as_str(), flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::NOENT | Errno::LOOP) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `out` was made a reflink of `blob`; the first refusal stops
    /// the asking.
    fn reflink(&mut self, out: &File, blob: &File) -> bool {
        if self.no_reflink {
            return false;
        }
        let ok = rustix::fs::ioctl_ficlone(out, blob).is_ok();
        self.no_reflink = !ok;
        ok
    }

    /// The read buffer, allocated on first use.
    fn buffer(&mut self) -> &mut [u8] {
        if self.buf.len() < COPY_BUF {
            self.buf.resize(COPY_BUF, 0);
        }
        &mut self.buf
    }
}

/// A blob's content checked as it is read: XXH3-128 against its fast
/// check, else BLAKE3 against its digest.
// One lives on the stack for each copy: not boxed (an allocation a file).
#[allow(clippy::large_enum_variant)]
enum Verifier {
    Fast(xxhash_rust::xxh3::Xxh3, [u8; 16]),
    // Boxed: rare, and much larger.
    Full(Box<blake3::Hasher>, Digest),
}

impl Verifier {
    fn new(digest: Digest, check: Option<[u8; 16]>) -> Verifier {
        match check {
            Some(c) => Verifier::Fast(xxhash_rust::xxh3::Xxh3::new(), c),
            None => Verifier::Full(Box::default(), digest),
        }
    }

    fn update(&mut self, piece: &[u8]) {
        match self {
            Verifier::Fast(h, _) => h.update(piece),
            Verifier::Full(h, _) => drop(h.update(piece)),
        }
    }

    fn matches(&self) -> bool {
        match self {
            Verifier::Fast(h, c) => h.digest128().to_le_bytes() == *c,
            Verifier::Full(h, d) => Digest::from(h.finalize()) == *d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_of(tmp: &Path, data: &[u8]) -> Spooled {
        let mut s = Spool::new(tmp.to_path_buf());
        for chunk in data.chunks(10_000) {
            s.write(chunk).unwrap();
        }
        s.finish().unwrap()
    }

    #[test]
    fn small_streams_stay_inline() {
        let t = tempfile::tempdir().unwrap();
        let sp = spool_of(t.path(), b"hello");
        assert_eq!(sp.len, 5);
        assert_eq!(sp.digest, Digest::from(blake3::hash(b"hello")));
        assert!(matches!(sp.data, SpooledData::Inline(ref v) if v == b"hello"));
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn large_streams_become_verified_blobs() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let sp = spool_of(&tmp, &data);
        assert_eq!(sp.len, data.len() as u64);
        let SpooledData::Temp(temp) = sp.data else {
            panic!("expected a temp file")
        };
        let blobs = Blobs::new(t.path().join("blobs"));
        blobs.install(&sp.digest, sp.len, temp).unwrap();
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(fs::read(blobs.path(&sp.digest)).unwrap(), data);
        for check in [Some(sp.check), None] {
            let path = blobs.path(&sp.digest);
            fs::write(&path, &data).unwrap();
            assert!(
                blobs
                    .open_verified(&sp.digest, sp.len, check)
                    .unwrap()
                    .is_some()
            );
            // A flipped byte, a short file and a missing file are all "corrupt".
            let mut bad = data.clone();
            bad[1234] ^= 1;
            fs::write(&path, &bad).unwrap();
            assert!(
                blobs
                    .open_verified(&sp.digest, sp.len, check)
                    .unwrap()
                    .is_none()
            );
            assert!(!path.exists(), "a corrupt blob was kept");
            fs::write(&path, &data[..1000]).unwrap();
            assert!(
                blobs
                    .open_verified(&sp.digest, sp.len, check)
                    .unwrap()
                    .is_none()
            );
            assert!(!path.exists(), "a short blob was kept");
            assert!(
                blobs
                    .open_verified(&sp.digest, sp.len, check)
                    .unwrap()
                    .is_none()
            );
        }
    }

    /// A blob of `data` installed in `blobs`, with its digest and check.
    fn blob_of(t: &Path, blobs: &Blobs, data: &[u8]) -> (Digest, [u8; 16]) {
        let tmp = t.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let sp = Spool::with_inline_max(tmp, 0).write_then(data);
        let SpooledData::Temp(temp) = sp.data else {
            panic!("expected a temp file")
        };
        blobs.install(&sp.digest, sp.len, temp).unwrap();
        (sp.digest, sp.check)
    }

    impl Spool {
        fn write_then(mut self, data: &[u8]) -> Spooled {
            self.write(data).unwrap();
            self.finish().unwrap()
        }
    }

    /// Copy `digest`'s blob into a new file with `copier`: whether it was
    /// verified, and what the file holds.
    fn copy(
        t: &Path,
        blobs: &Blobs,
        digest: &Digest,
        len: u64,
        check: Option<[u8; 16]>,
        copier: &mut Copier,
    ) -> (bool, Vec<u8>) {
        let out_path = t.join("out");
        let out = File::create(&out_path).unwrap();
        let ok = blobs
            .copy_verified(digest, len, check, &out, copier)
            .unwrap();
        (ok, fs::read(&out_path).unwrap())
    }

    #[test]
    fn a_copy_is_checked_as_it_is_made_and_a_bad_blob_is_never_reported_copied() {
        let t = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(t.path().join("blobs"));
        let mut copier = Copier::default();
        // One piece, and several (past the copy buffer, 256 KiB).
        for size in [100_000usize, 3 * COPY_BUF + 17] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let len = data.len() as u64;
            for fast in [true, false] {
                let (digest, check) = blob_of(t.path(), &blobs, &data);
                let check = fast.then_some(check);
                let path = blobs.path(&digest);
                assert_eq!(
                    copy(t.path(), &blobs, &digest, len, check, &mut copier),
                    (true, data.clone())
                );
                // Altered in its last piece, after earlier pieces were
                // already written: not verified, and removed.
                let mut bad = data.clone();
                bad[size - 3] ^= 1;
                fs::write(&path, &bad).unwrap();
                assert!(!copy(t.path(), &blobs, &digest, len, check, &mut copier).0);
                assert!(!path.exists(), "a corrupt blob was kept");
                // Torn (short), long, and missing.
                for torn in [&data[..size - 1], &[data.as_slice(), b"x"].concat()[..]] {
                    fs::write(&path, torn).unwrap();
                    assert!(!copy(t.path(), &blobs, &digest, len, check, &mut copier).0);
                    assert!(!path.exists(), "a blob of the wrong length was kept");
                }
                assert!(!copy(t.path(), &blobs, &digest, len, check, &mut copier).0);
                // A check that is not the content's.
                blob_of(t.path(), &blobs, &data);
                if let Some(mut c) = check {
                    c[0] ^= 1;
                    assert!(!copy(t.path(), &blobs, &digest, len, Some(c), &mut copier).0);
                }
            }
        }
    }

    #[test]
    fn a_copy_that_cannot_read_or_write_names_what_failed() {
        let t = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(t.path().join("blobs"));
        let data = vec![7u8; 5000];
        let (digest, check) = blob_of(t.path(), &blobs, &data);
        let mut copier = Copier::default();
        // Not writable: the copy's own error.
        let ro = File::open(blobs.path(&digest)).unwrap();
        let e = blobs
            .copy_verified(&digest, 5000, Some(check), &ro, &mut copier)
            .unwrap_err();
        assert!(matches!(e, CopyError::Write(_)), "{e:?}");
        assert!(e.to_string().starts_with("cannot write the copy: "), "{e}");
        // A directory where the blob should be: a read error naming it.
        let path = blobs.path(&digest);
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let out = File::create(t.path().join("out")).unwrap();
        let e = blobs
            .copy_verified(&digest, 5000, Some(check), &out, &mut copier)
            .unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("cannot read blob '{}': ", path.display())),
            "{shown}"
        );
    }

    #[test]
    fn installing_an_existing_blob_keeps_it_and_drops_the_temp_file() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let blobs = Blobs::new(t.path().join("blobs"));
        let data = vec![3u8; INLINE_MAX + 10];
        for _ in 0..2 {
            let sp = spool_of(&tmp, &data);
            let SpooledData::Temp(temp) = sp.data else {
                panic!("expected a temp file")
            };
            blobs.install(&sp.digest, sp.len, temp).unwrap();
            assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
            assert_eq!(fs::read(blobs.path(&sp.digest)).unwrap(), data);
        }
    }

    #[test]
    fn dropped_spool_leaves_no_temp_file() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Spool::new(t.path().to_path_buf());
        s.write(&vec![0u8; INLINE_MAX + 1]).unwrap();
        // Named only where the filesystem has no unnamed temp files.
        assert!(fs::read_dir(t.path()).unwrap().count() <= 1);
        drop(s.finish().unwrap());
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }
}
