//! Restoring an entry's outputs on a hit, before its stdout and stderr are
//! replayed, so that the caller finds the files when the command
//! "finishes".
//!
//! - Only the roots this invocation names are used: its `-o` paths, and
//!   the automatic outputs among its arguments ([`select`]). A path in a
//!   stored entry is never trusted on its own: an item's path under its
//!   root must be relative, without `..`, and a glob's items must match the
//!   glob, or the entry is treated as corrupt.
//! - Every write goes through descriptors: each parent directory is opened
//!   with `O_NOFOLLOW` from the working directory (or `/`), so a symlink
//!   in a parent is never followed (the restore fails and the hit becomes a
//!   miss); a symlink at a restored path is removed, never followed.
//! - A file is written to a temp file in its directory (unnamed where the
//!   file system allows, `O_TMPFILE`), given its mode, and renamed into
//!   place: a reader sees the old file or the new one, never half of one.
//!   Content comes from its blob in one pass that reads, checks and writes
//!   each piece (by reflink, `FICLONE`, where the file system shares
//!   extents, the blob then only read to be checked), never by hard link;
//!   the temp file is given its name only once the whole blob has passed
//!   its check (inline bytes are checked against their digest before they
//!   are written); a verification failure is [`Failure::Corrupt`].
//! - A file whose content and mode already match is kept, with its mtime
//!   set to now; so is everything written (make compares timestamps).
//! - A directory already there is listed once, before its entries are
//!   restored: the listing says what is there (a regular file is then
//!   opened and `fstat`ed, never a device: the listing and its `fstat`
//!   must both say regular) and what is stale. One the restore just made
//!   is neither listed nor looked into.
//! - The blob copies of a directory are written together once all its
//!   entries were seen, on several threads when they are many, each with
//!   its own [`Placer`]; the store is asked everything (the blob
//!   directory, each check) on the restoring thread first. The umask is
//!   read before any thread starts. A directory gets its recorded mode and
//!   time only after its files are in; the first failure stops the batch.
//! - A declared directory ends up holding exactly the recorded tree: what
//!   else is in it is removed (a clean restore).
//! - An automatic output that is present but not what the run left is not
//!   overwritten (it may be a file the user edited): the hit is a miss.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component as PathComponent, Path};

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT,
};
use rustix::io::Errno;

use crate::base::Digest;
use crate::outputs::OutputSpec;
use crate::outputs::files::{Item, Node, OutputRoot, RootKind};
use crate::store::{Blobs, Copier, CopyError, Source, Store, StoredStream};
use crate::term::format::io_reason;

/// Why outputs were not restored.
#[derive(Debug)]
pub enum Failure {
    /// Stored content failed verification, or the manifest names a path it
    /// may not: the entry must be discarded.
    Corrupt(String),
    /// The hit cannot be used, for this reason (an automatic output that
    /// changed, a parent that is a symlink, a write that failed): run.
    Miss(String),
}

/// What a restore did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Files and symlinks written.
    pub restored: u64,
    /// Bytes of the files written.
    pub restored_bytes: u64,
    /// Files and symlinks already as recorded.
    pub kept: u64,
    /// Paths removed (stale, or recorded absent).
    pub removed: u64,
    /// Per root, in order: how it was declared, and its own counts.
    pub roots: Vec<RootReport>,
}

/// One root's part of a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootReport {
    /// The path or pattern.
    pub declared: Vec<u8>,
    /// How it was declared.
    pub kind: RootKind,
    /// Files and symlinks written (or to write).
    pub restored: u64,
    /// Already as recorded.
    pub kept: u64,
    /// Removed (or to remove).
    pub removed: u64,
}

/// The roots of `entry_outputs` this invocation restores: each declared
/// output of `spec` (the entry must have it: else the miss's reason), and
/// each automatic output among `args` (the command's arguments as keyed)
/// that no declared output covers. The rest of a stored entry is ignored.
fn select<'e>(
    entry_outputs: &'e [OutputRoot],
    spec: &OutputSpec,
    args: &[&[u8]],
    base: Option<&std::path::Path>,
) -> Result<Vec<std::borrow::Cow<'e, OutputRoot>>, String> {
    use std::borrow::Cow;
    let mut out = Vec::new();
    for d in &spec.declared {
        match entry_outputs
            .iter()
            .find(|r| r.kind == d.kind && r.declared == d.declared)
        {
            Some(r) => out.push(Cow::Borrowed(r)),
            None => {
                return Err(format!(
                    "the entry has no output '{}' (declared with -o)",
                    String::from_utf8_lossy(&d.declared)
                ));
            }
        }
    }
    // An automatic output is recorded as its argument is keyed (under
    // --base-dir, relative to it): restored at this invocation's argument.
    for r in entry_outputs.iter().filter(|r| r.kind == RootKind::Auto) {
        let here = args
            .iter()
            .find(|a| crate::key::base_dir::key_form(base, a).as_ref() == r.declared.as_slice());
        match here {
            Some(a) if spec.covers(a) => {}
            Some(a) if *a == r.declared.as_slice() => out.push(Cow::Borrowed(r)),
            Some(a) => out.push(Cow::Owned(OutputRoot {
                kind: r.kind,
                declared: a.to_vec(),
                items: r.items.clone(),
            })),
            None => {}
        }
    }
    Ok(out)
}

/// Restore the outputs of an entry that this invocation (`key`: its
/// command line, `-o` and `--base-dir`) names: [`select`], then
/// [`restore`]. Nothing to do, nothing done: a hit without outputs pays
/// for none of this.
pub fn restore_entry(
    entry_outputs: &[OutputRoot],
    key: &crate::key::spec::KeySpec,
    store: &dyn Store,
    cwd: &Path,
    dry: bool,
) -> Result<Report, Failure> {
    if entry_outputs.is_empty() && key.outputs.declared.is_empty() {
        return Ok(Report::default());
    }
    let selected = select(
        entry_outputs,
        &key.outputs,
        &key.keyed_args(),
        key.base_dir.as_deref(),
    )
    .map_err(Failure::Miss)?;
    let roots: Vec<&OutputRoot> = selected.iter().map(AsRef::as_ref).collect();
    restore(&roots, store, cwd, dry, key.outputs.auto)
}

/// Restore `roots` (from [`select`]) in `cwd`, reading content from
/// `store`; with `dry`, change nothing and report what would be done.
/// `auto_restore` is whether missing automatic outputs may be written
/// (not `--no-auto-outputs`).
fn restore(
    roots: &[&OutputRoot],
    store: &dyn Store,
    cwd: &Path,
    dry: bool,
    auto_restore: bool,
) -> Result<Report, Failure> {
    let mut r = Restorer {
        store,
        dry,
        report: Report::default(),
        placer: Placer::default(),
        buf: Default::default(),
        batch: None,
        threads: std::cell::Cell::new(None),
    };
    if !dry {
        let blobs: Vec<Digest> = roots
            .iter()
            .flat_map(|root| &root.items)
            .filter_map(|i| match &i.node {
                Node::File { content, .. } if content.inline.is_none() => Some(content.digest),
                _ => None,
            })
            .collect();
        store.prefetch_checks(&blobs);
    }
    // Automatic outputs are checked before anything is written: one that
    // changed makes the whole hit a miss. One that matches is kept here
    // (read once); one that is missing is restored below.
    let mut missing_auto = vec![false; roots.len()];
    let mut kept_auto = vec![false; roots.len()];
    for (i, root) in roots.iter().enumerate() {
        if root.kind != RootKind::Auto {
            continue;
        }
        let shown = String::from_utf8_lossy(&root.declared).into_owned();
        let malformed = || Failure::Corrupt(format!("automatic output '{shown}' is malformed"));
        let [item] = root.items.as_slice() else {
            return Err(malformed());
        };
        let (recorded, mode) = match &item.node {
            Node::File { content, mode } => (Some((content.digest, content.len)), Some(*mode)),
            Node::Checked { digest, len } => (Some((*digest, *len)), None),
            Node::Absent => (None, None),
            _ => return Err(malformed()),
        };
        match (present_file(cwd, &root.declared), recorded) {
            (Present::ParentLink(parent), _) => {
                return Err(Failure::Miss(format!(
                    "cannot restore output '{shown}': '{parent}' is a symlink or not a directory"
                )));
            }
            (Present::Absent, None) => {}
            (Present::File(f), Some((digest, len))) if matches_content(&f, digest, len) => {
                kept_auto[i] = true;
                r.report.kept += 1;
                if !dry {
                    let st = rustix::fs::fstat(&f).map_err(|e| r.io(&shown, e))?;
                    if let Some(mode) = mode
                        && st.st_mode & 0o7777 != mode
                    {
                        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode))
                            .map_err(|e| r.io(&shown, e))?;
                    }
                    let _ = rustix::fs::futimens(&f, &now());
                }
            }
            (Present::Absent, Some(_)) if auto_restore && mode.is_some() => missing_auto[i] = true,
            (Present::Absent, Some(_)) => {
                return Err(Failure::Miss(format!("output '{shown}' is missing")));
            }
            _ => {
                return Err(Failure::Miss(format!(
                    "output '{shown}' changed since the run that wrote it"
                )));
            }
        }
    }
    for (i, root) in roots.iter().enumerate() {
        let before = r.report.clone();
        if root.kind != RootKind::Auto || missing_auto[i] {
            r.root(root, cwd)?;
        }
        r.report.roots.push(RootReport {
            declared: root.declared.clone(),
            kind: root.kind,
            restored: r.report.restored - before.restored,
            kept: r.report.kept - before.kept + u64::from(kept_auto[i]),
            removed: r.report.removed - before.removed,
        });
    }
    Ok(r.report)
}

/// What is at an automatic output's path.
enum Present {
    /// Nothing.
    Absent,
    /// A regular file, opened without following a symlink.
    File(File),
    /// Something else, or unreadable.
    Other,
    /// A parent directory (this one) is a symlink, or not a directory.
    ParentLink(String),
}

/// What is at the automatic output `declared` (relative to `cwd`, or
/// absolute), reached as a restore would reach it: each parent opened
/// `O_NOFOLLOW` from `cwd` (or `/`), so that a symlink planted in a parent
/// is never followed (the file it leads to is neither read, nor given a
/// mode or a time).
fn present_file(cwd: &Path, declared: &[u8]) -> Present {
    let declared = Path::new(OsStr::from_bytes(declared));
    let (start, rel) = match declared.strip_prefix("/") {
        Ok(rel) => (Path::new("/"), rel),
        Err(_) => (cwd, declared),
    };
    let comps = components(rel);
    let Some((name, parents)) = comps.split_last() else {
        return Present::Other;
    };
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(mut dir) = rustix::fs::open(start, dir_flags, Mode::empty()) else {
        return Present::Other;
    };
    for (i, comp) in parents.iter().enumerate() {
        dir = match rustix::fs::openat(&dir, *comp, dir_flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Present::Absent,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let parent: std::path::PathBuf = parents[..=i].iter().collect();
                return Present::ParentLink(parent.display().to_string());
            }
            Err(_) => return Present::Other,
        };
    }
    let fd = match rustix::fs::openat(
        &dir,
        *name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Present::Absent,
        Err(_) => return Present::Other,
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
            Present::File(File::from(fd))
        }
        _ => Present::Other,
    }
}

/// Read `f` to its end through `buf` (grown as needed up to 128 KiB,
/// reused), handing each piece to `each`; at most `limit` bytes, else an
/// error. Each read asks for one byte more than is left: a file of `limit`
/// bytes that fits the buffer takes one read, its end seen in it.
fn read_pieces(
    f: &File,
    limit: u64,
    buf: &mut Vec<u8>,
    mut each: impl FnMut(&[u8]),
) -> io::Result<u64> {
    use std::io::Read;
    let cap = limit.saturating_add(1).min(128 * 1024) as usize;
    if buf.len() < cap {
        buf.resize(cap, 0);
    }
    let mut r = f;
    let mut total = 0u64;
    loop {
        let want = (limit - total).saturating_add(1).min(buf.len() as u64) as usize;
        match r.read(&mut buf[..want]) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total += n as u64;
                if total > limit {
                    return Err(io::Error::other("longer than recorded"));
                }
                each(&buf[..n]);
                // Short of what was asked, at the limit: at its end.
                if total == limit && n < want {
                    return Ok(total);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// XXH3-128 of `f`, which must hold exactly `len` bytes.
fn xxh3_of(f: &File, len: u64, buf: &mut Vec<u8>) -> io::Result<[u8; 16]> {
    use xxhash_rust::xxh3::{Xxh3, xxh3_128};
    // Read whole in one piece (most files a build writes): hashed at once,
    // without the streaming state.
    let mut whole = None;
    let mut h: Option<Box<Xxh3>> = None;
    let total = read_pieces(f, len, buf, |piece| {
        match (&mut h, piece.len() as u64 == len) {
            (None, true) => whole = Some(xxh3_128(piece)),
            (h, _) => h.get_or_insert_with(Box::default).update(piece),
        }
    })?;
    if total != len {
        return Err(io::Error::other("shorter than recorded"));
    }
    let digest = match (whole, h) {
        (Some(d), None) => d,
        (_, Some(h)) => h.digest128(),
        (None, None) => xxh3_128(&[]),
    };
    Ok(digest.to_le_bytes())
}

/// Whether `f` holds exactly `bytes`.
fn same_bytes(f: &File, bytes: &[u8], buf: &mut Vec<u8>) -> bool {
    let mut at = 0usize;
    let mut same = true;
    let total = read_pieces(f, bytes.len() as u64, buf, |piece| {
        same &= bytes.get(at..at + piece.len()) == Some(piece);
        at += piece.len();
    });
    same && total.is_ok_and(|t| t == bytes.len() as u64)
}

/// Whether `f` holds exactly `len` bytes whose digest is `digest`.
fn matches_content(f: &File, digest: Digest, len: u64) -> bool {
    // Another handle on the same open file (hashing reads it to the end).
    let Ok(mut f) = f.try_clone() else {
        return false;
    };
    f.metadata().is_ok_and(|m| m.len() == len)
        && matches!(crate::base::hashing::hash_file(&mut f, len), Ok((d, n)) if n == len && d == digest)
}

/// A path's components for `openat`: `..` allowed (only ever from this
/// invocation's own `-o` or arguments), `.` dropped.
fn components(path: &Path) -> Vec<&OsStr> {
    path.components()
        .filter_map(|c| match c {
            PathComponent::Normal(n) => Some(n),
            PathComponent::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect()
}

/// Whether a stored item path is one a restore may write: relative, its
/// components plain names (no `.`, `..`, empty or NUL).
fn valid_item_path(path: &[u8]) -> bool {
    !path.is_empty()
        && !path.contains(&0)
        && path
            .split(|b| *b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// The last component of an item path, and its parent path.
fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

struct Restorer<'s> {
    store: &'s dyn Store,
    dry: bool,
    report: Report,
    /// Writes files into place (on this thread).
    placer: Placer,
    /// A read buffer for comparing files in place, reused.
    buf: std::cell::RefCell<Vec<u8>>,
    /// The blob copies of the directory being filled, written together
    /// once its entries were all seen (on several threads when many).
    batch: Option<Vec<Job>>,
    /// How many threads a large batch is written on, once asked.
    threads: std::cell::Cell<Option<usize>>,
}

/// A file to write from a blob, checked as it is copied
/// ([`crate::store::Blobs::copy_verified`]): all of it is known before a
/// thread takes it (the store stays on the restoring thread).
struct Job {
    name: std::ffi::OsString,
    mode: u32,
    digest: Digest,
    len: u64,
    check: Option<[u8; 16]>,
    /// Nothing is at `name` (see [`Placer::place`]).
    absent: bool,
}

/// Writes files into place: each through a temp file in its directory,
/// filled, given its mode, then linked or renamed in. One per thread: what
/// it learns about the file system and its copier are its own.
struct Placer {
    /// Copies blobs, checking them on the way (its buffer, the blob
    /// directory, whether reflinks work here).
    copier: std::cell::RefCell<Copier>,
    /// Whether an unnamed temp file can be linked by its descriptor
    /// (`AT_EMPTY_PATH`, which needs `CAP_DAC_READ_SEARCH`): tried until
    /// refused, then through `/proc/self/fd`, a costlier path lookup.
    empty_path: std::cell::Cell<bool>,
    /// The umask, once read.
    umask: std::cell::Cell<Option<u32>>,
}

impl Default for Placer {
    fn default() -> Placer {
        Placer {
            copier: Default::default(),
            empty_path: std::cell::Cell::new(true),
            umask: std::cell::Cell::new(None),
        }
    }
}

/// Blob copies of one directory from this many on (or this many bytes)
/// are written on several threads.
const PARALLEL_FILES: usize = 32;
const PARALLEL_BYTES: u64 = 4 << 20;
/// At most this many threads write a batch.
const MAX_THREADS: usize = 4;

impl Placer {
    /// Another placer for a thread of the same restore; the umask is read
    /// here, on the restoring thread (reading it sets it, and back).
    fn for_thread(&self) -> Placer {
        Placer {
            copier: std::cell::RefCell::new(self.copier.borrow().sibling()),
            empty_path: std::cell::Cell::new(self.empty_path.get()),
            umask: std::cell::Cell::new(Some(self.umask())),
        }
    }

    /// The process's umask, read once (setting it and back, before any
    /// other thread of the restore starts: see [`Placer::for_thread`]).
    fn umask(&self) -> u32 {
        if let Some(m) = self.umask.get() {
            return m;
        }
        let old = rustix::process::umask(Mode::from_raw_mode(0o022));
        rustix::process::umask(old);
        let m = old.as_raw_mode() & 0o777;
        self.umask.set(Some(m));
        m
    }

    /// Give the unnamed temp file `tmp` the name `name` in `dir`.
    fn link_tmp(&self, tmp: &File, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
        if self.empty_path.get() {
            match rustix::fs::linkat(tmp, "", dir, name, AtFlags::EMPTY_PATH) {
                Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::INVAL) => {
                    self.empty_path.set(false)
                }
                other => return other,
            }
        }
        let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(tmp));
        rustix::fs::linkat(CWD, proc.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
    }

    /// Write the blob copy `job` in `dir`.
    fn write_job(
        &self,
        dir: BorrowedFd<'_>,
        blobs: &Blobs,
        job: &Job,
        shown: &str,
    ) -> Result<(), Failure> {
        self.place(dir, &job.name, job.mode, job.absent, shown, |tmp| {
            let mut copier = self.copier.borrow_mut();
            copy_blob(
                blobs,
                job.digest,
                job.len,
                job.check,
                tmp,
                &mut copier,
                shown,
            )
        })
    }

    /// Write `name` in `dir` through a temp file that `fill` fills (and
    /// that nobody sees before it succeeds), given `mode`, then linked in
    /// under its name where nothing is there (`absent`), else renamed over
    /// what is.
    fn place(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        mode: u32,
        absent: bool,
        shown: &str,
        fill: impl FnOnce(&File) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let (tmp_fd, named) = create_temp(dir, mode).map_err(|e| io_failure(shown, e))?;
        let tmp = File::from(tmp_fd);
        let unlink_named = || {
            if let Some(n) = &named {
                let _ = rustix::fs::unlinkat(dir, n, AtFlags::empty());
            }
        };
        if let Err(f) = fill(&tmp) {
            unlink_named();
            return Err(f);
        }
        // An unnamed temp file was created with the mode, less the umask:
        // set it only when the umask took bits away (or it has a name).
        let chmod = named.is_some() || mode & !self.umask() != mode;
        let written = match chmod {
            true => rustix::fs::fchmod(&tmp, Mode::from_raw_mode(mode)).map_err(io::Error::from),
            false => Ok(()),
        };
        let placed = written.and_then(|()| {
            let tmp_name = match &named {
                Some(n) => n.clone(),
                None => {
                    // Nothing there: the complete file is linked in under
                    // its name at once (as atomic as a rename).
                    if absent {
                        match self.link_tmp(&tmp, dir, name) {
                            Ok(()) => return Ok(()),
                            Err(Errno::EXIST) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    let n = temp_name();
                    self.link_tmp(&tmp, dir, OsStr::new(&n))?;
                    n
                }
            };
            rustix::fs::renameat(dir, &tmp_name, dir, name).map_err(|e| {
                let _ = rustix::fs::unlinkat(dir, &tmp_name, AtFlags::empty());
                io::Error::from(e)
            })
        });
        if let Err(e) = placed {
            unlink_named();
            return Err(Failure::Miss(format!(
                "cannot restore output '{shown}': {}",
                io_reason(&e)
            )));
        }
        Ok(())
    }
}

/// Copy the blob `digest` (`len` bytes, fast check `check`) into `tmp`,
/// checking it on the way.
fn copy_blob(
    blobs: &Blobs,
    digest: Digest,
    len: u64,
    check: Option<[u8; 16]>,
    tmp: &File,
    copier: &mut Copier,
    shown: &str,
) -> Result<(), Failure> {
    match blobs.copy_verified(&digest, len, check, tmp, copier) {
        Ok(true) => Ok(()),
        Ok(false) => Err(corrupt_content(shown)),
        Err(CopyError::Read(path, e)) => Err(Failure::Miss(format!(
            "cannot read blob '{}': {}",
            path.display(),
            io_reason(&e)
        ))),
        Err(CopyError::Write(e)) => Err(Failure::Miss(format!(
            "cannot restore output '{shown}': {}",
            io_reason(&e)
        ))),
    }
}

fn corrupt_content(shown: &str) -> Failure {
    Failure::Corrupt(format!(
        "the stored content of output '{shown}' failed verification"
    ))
}

fn io_failure(shown: &str, e: Errno) -> Failure {
    Failure::Miss(format!(
        "cannot restore output '{shown}': {}",
        io_reason(&io::Error::from(e))
    ))
}

/// How a file in place is opened to be read: never through a symlink, and
/// without waiting (a FIFO) or taking a terminal.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOCTTY);

/// What a directory's listing said is at a name in it.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// Not listed: stat it.
    Unknown,
    /// Nothing (or the directory was just made).
    Absent,
    /// Something of this kind (`Unknown` where the file system does not
    /// say).
    Listed(FileType),
}

/// The names in a directory with their kinds, sorted by name.
struct Listing(Vec<(std::ffi::CString, FileType)>);

impl Listing {
    fn of(dir: &OwnedFd) -> Result<Listing, Errno> {
        let mut names = Vec::new();
        for entry in Dir::read_from(dir)? {
            let entry = entry?;
            let n = entry.file_name();
            if n.to_bytes() != b"." && n.to_bytes() != b".." {
                names.push((n.to_owned(), entry.file_type()));
            }
        }
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Listing(names))
    }

    fn seen(&self, name: &[u8]) -> Seen {
        match self.0.binary_search_by(|(n, _)| n.to_bytes().cmp(name)) {
            Ok(i) => Seen::Listed(self.0[i].1),
            Err(_) => Seen::Absent,
        }
    }
}

/// `name` in `dir` opened to be read, with its stat, if it is a regular
/// file; `None` if it is something else (an error if it could not be
/// opened: a symlink is `ELOOP`).
fn open_regular(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<(File, Stat)>, Errno> {
    let fd = rustix::fs::openat(dir, name, READ_FLAGS, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    Ok(
        (FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            .then(|| (File::from(fd), st)),
    )
}

/// The items of a root by parent path, and which parents are directories.
type Children<'a> = HashMap<&'a [u8], Vec<&'a Item>>;

/// The items of `root` grouped under their parents, with its top items
/// (the root itself, or a glob's matches), every path checked; `None` when
/// the manifest is malformed.
fn group<'a>(
    root: &'a OutputRoot,
    declared: &Path,
    shown: &str,
) -> Option<(Vec<&'a Item>, Children<'a>)> {
    let mut children: Children<'_> = HashMap::new();
    let mut top: Vec<&Item> = Vec::new();
    match root.kind {
        RootKind::Path | RootKind::Auto => {
            let mut dirs: HashSet<&[u8]> = HashSet::new();
            for item in &root.items {
                if item.path.is_empty() {
                    if !top.is_empty() {
                        return None;
                    }
                    top.push(item);
                    if matches!(item.node, Node::Dir { .. }) {
                        dirs.insert(&[]);
                    }
                    continue;
                }
                if !valid_item_path(&item.path) {
                    return None;
                }
                let (parent, _) = split_last(&item.path);
                if !dirs.contains(parent) {
                    // Sorted: a directory comes before what is in it.
                    return None;
                }
                if matches!(item.node, Node::Dir { .. }) {
                    dirs.insert(&item.path);
                }
                children.entry(parent).or_default().push(item);
            }
            if top.is_empty() {
                return None;
            }
        }
        RootKind::Glob => {
            let matcher = globset::GlobBuilder::new(shown)
                .literal_separator(true)
                .build()
                .ok()?
                .compile_matcher();
            let base = crate::outputs::glob_base(declared);
            let mut dirs: HashSet<&[u8]> = HashSet::new();
            for item in &root.items {
                if !valid_item_path(&item.path) {
                    return None;
                }
                let (parent, _) = split_last(&item.path);
                let under = dirs.contains(parent);
                if under {
                    children.entry(parent).or_default().push(item);
                } else if matcher.is_match(base.join(OsStr::from_bytes(&item.path))) {
                    top.push(item);
                } else {
                    return None;
                }
                if matches!(item.node, Node::Dir { .. }) {
                    dirs.insert(&item.path);
                }
            }
        }
    }
    Some((top, children))
}

impl Restorer<'_> {
    fn root(&mut self, root: &OutputRoot, cwd: &Path) -> Result<(), Failure> {
        let declared = Path::new(OsStr::from_bytes(&root.declared));
        let shown = declared.to_string_lossy().into_owned();
        let corrupt = || Failure::Corrupt(format!("output '{shown}': malformed manifest"));
        // Group the items under their parents, checking every path.
        let (top, children) = group(root, declared, &shown).ok_or_else(corrupt)?;
        // Where the root is: its parent directories, opened one by one.
        let (start, rel): (&Path, &Path) = if declared.is_absolute() {
            (
                Path::new("/"),
                declared.strip_prefix("/").unwrap_or(declared),
            )
        } else {
            (cwd, declared)
        };
        let start_fd = rustix::fs::open(
            start,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Failure::Miss(format!("cannot open '{}': {e}", start.display())))?;
        let comps = components(rel);
        match root.kind {
            RootKind::Path | RootKind::Auto => {
                let Some((name, parents)) = comps.split_last() else {
                    return Err(corrupt());
                };
                let dir = self.open_chain(start_fd, parents, &shown)?;
                let item = top[0];
                self.node(
                    dir.as_ref().map(|d| d.as_fd()),
                    Seen::Unknown,
                    name,
                    item,
                    &children,
                    &shown,
                )
            }
            // Nothing matched: nothing to make, not even the base directory.
            RootKind::Glob if top.is_empty() => Ok(()),
            RootKind::Glob => self.glob_matches(start_fd, declared, &top, &children, &shown),
        }
    }

    /// Restore the matches of a glob root, under its base directory.
    fn glob_matches(
        &mut self,
        start_fd: OwnedFd,
        declared: &Path,
        top: &[&Item],
        children: &Children<'_>,
        shown: &str,
    ) -> Result<(), Failure> {
        let base = crate::outputs::glob_base(declared);
        let base_comps = components(base.strip_prefix("/").unwrap_or(&base));
        let base_fd = self.open_chain(start_fd, &base_comps, shown)?;
        for item in top {
            // Directories between the base and a match are made as needed,
            // never cleaned: they are not outputs.
            let (parent, name) = split_last(&item.path);
            let parents: Vec<&OsStr> = if parent.is_empty() {
                Vec::new()
            } else {
                parent
                    .split(|b| *b == b'/')
                    .map(OsStr::from_bytes)
                    .collect()
            };
            let dir = match &base_fd {
                Some(b) => {
                    let b = rustix::io::dup(b).map_err(|e| self.io(shown, e))?;
                    self.open_chain(b, &parents, shown)?
                }
                None => None,
            };
            self.node(
                dir.as_ref().map(|d| d.as_fd()),
                Seen::Unknown,
                OsStr::from_bytes(name),
                item,
                children,
                shown,
            )?;
        }
        Ok(())
    }

    fn io(&self, shown: &str, e: Errno) -> Failure {
        Failure::Miss(format!(
            "cannot restore output '{shown}': {}",
            io_reason(&io::Error::from(e))
        ))
    }

    /// Open (creating when not dry) each directory of `comps` below
    /// `start`, never through a symlink. `None` (dry only): one is missing.
    fn open_chain(
        &self,
        start: OwnedFd,
        comps: &[&OsStr],
        shown: &str,
    ) -> Result<Option<OwnedFd>, Failure> {
        let mut fd = start;
        for (i, comp) in comps.iter().enumerate() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
            let next = match rustix::fs::openat(&fd, *comp, flags, Mode::empty()) {
                Ok(f) => f,
                Err(Errno::NOENT) if self.dry => return Ok(None),
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&fd, *comp, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.io(shown, e)),
                    }
                    rustix::fs::openat(&fd, *comp, flags, Mode::empty())
                        .map_err(|e| self.parent_error(shown, comps, i, e))?
                }
                Err(e) => return Err(self.parent_error(shown, comps, i, e)),
            };
            fd = next;
        }
        Ok(Some(fd))
    }

    fn parent_error(&self, shown: &str, comps: &[&OsStr], i: usize, e: Errno) -> Failure {
        let parent: std::path::PathBuf = comps[..=i].iter().collect();
        match e {
            Errno::LOOP | Errno::NOTDIR => Failure::Miss(format!(
                "cannot restore output '{shown}': '{}' is a symlink or not a directory",
                parent.display()
            )),
            e => self.io(shown, e),
        }
    }

    /// Make `name` in `dir` what `item` records (`dir` is `None` when it
    /// does not exist yet, dry only; `seen`: what its listing said is
    /// there, if it was listed).
    fn node(
        &mut self,
        dir: Option<BorrowedFd<'_>>,
        seen: Seen,
        name: &OsStr,
        item: &Item,
        children: &Children<'_>,
        shown: &str,
    ) -> Result<(), Failure> {
        let mut opened = None;
        let existing = match (dir, seen) {
            (None, _) | (_, Seen::Absent) => None,
            // A regular file to compare: opened at once (never a device:
            // the listing said it is a regular file, and its fstat must
            // agree), where a stat by name and then an open would walk its
            // path twice.
            (Some(d), Seen::Listed(FileType::RegularFile))
                if matches!(item.node, Node::File { .. }) =>
            {
                match open_regular(d, name) {
                    Ok(Some((f, st))) => {
                        opened = Some(f);
                        Some(st)
                    }
                    Err(Errno::NOENT) => None,
                    // Not a regular file after all, or not readable: as
                    // without the listing.
                    Ok(None) | Err(_) => self.stat(d, name, shown)?,
                }
            }
            (Some(d), _) => self.stat(d, name, shown)?,
        };
        let kind = existing.map(|st| FileType::from_raw_mode(st.st_mode));
        match &item.node {
            Node::Absent => {
                if let (Some(d), Some(k)) = (dir, kind) {
                    self.report.removed += 1;
                    if !self.dry {
                        remove_any(d, name, k).map_err(|e| self.io(shown, e))?;
                    }
                }
                Ok(())
            }
            Node::File { mode, content } => {
                if let (Some(d), Some(FileType::RegularFile), Some(st)) = (dir, kind, existing)
                    && self.keep_file(d, name, opened, &st, *mode, content)
                {
                    self.report.kept += 1;
                    return Ok(());
                }
                self.report.restored += 1;
                self.report.restored_bytes += content.len;
                if self.dry {
                    return Ok(());
                }
                let d = dir.expect("not dry: the directory exists");
                if kind == Some(FileType::Directory) {
                    remove_any(d, name, FileType::Directory).map_err(|e| self.io(shown, e))?;
                }
                let absent = kind.is_none() || kind == Some(FileType::Directory);
                self.write_file(d, name, *mode, content, absent, shown)
            }
            Node::Symlink { target } => self.symlink(dir, name, kind, target, shown),
            Node::Dir { mode } => {
                self.dir(dir, name, existing.as_ref(), *mode, item, children, shown)
            }
            Node::Checked { .. } => Err(Failure::Corrupt(format!(
                "output '{shown}': malformed manifest"
            ))),
        }
    }

    /// What is at `name` in `dir` (never following a symlink), if anything.
    fn stat(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
    ) -> Result<Option<Stat>, Failure> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.io(shown, e)),
        }
    }

    /// Restore a symlink to `target` as `name` in `dir` (of kind `kind`
    /// now), unless it is there already.
    fn symlink(
        &mut self,
        dir: Option<BorrowedFd<'_>>,
        name: &OsStr,
        kind: Option<FileType>,
        target: &[u8],
        shown: &str,
    ) -> Result<(), Failure> {
        if let (Some(d), Some(FileType::Symlink)) = (dir, kind)
            && rustix::fs::readlinkat(d, name, Vec::new()).is_ok_and(|t| t.as_bytes() == target)
        {
            self.report.kept += 1;
            if !self.dry {
                // Its time marks it as restored; a link that keeps its old
                // time is still the right link.
                let _ = rustix::fs::utimensat(d, name, &now(), AtFlags::SYMLINK_NOFOLLOW);
            }
            return Ok(());
        }
        self.report.restored += 1;
        if self.dry {
            return Ok(());
        }
        let d = dir.expect("not dry: the directory exists");
        if kind == Some(FileType::Directory) {
            remove_any(d, name, FileType::Directory).map_err(|e| self.io(shown, e))?;
        }
        if target.contains(&0) {
            return Err(Failure::Corrupt(format!(
                "output '{shown}': malformed symlink"
            )));
        }
        let tmp = temp_name();
        rustix::fs::symlinkat(OsStr::from_bytes(target), d, &tmp).map_err(|e| self.io(shown, e))?;
        rustix::fs::renameat(d, &tmp, d, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(d, &tmp, AtFlags::empty());
            self.io(shown, e)
        })
    }

    /// Restore a directory as `name` in `dir` (`existing`: what is there
    /// now), and what `children` holds under it; what else it holds goes.
    #[allow(clippy::too_many_arguments)]
    fn dir(
        &mut self,
        dir: Option<BorrowedFd<'_>>,
        name: &OsStr,
        existing: Option<&Stat>,
        mode: u32,
        item: &Item,
        children: &Children<'_>,
        shown: &str,
    ) -> Result<(), Failure> {
        let kind = existing.map(|st| FileType::from_raw_mode(st.st_mode));
        // Made here, now: empty.
        let fresh = !self.dry && kind != Some(FileType::Directory);
        // Its mode now, when it is a directory already there.
        let mut now_mode = existing.filter(|_| !fresh).map(|st| st.st_mode & 0o7777);
        let sub = match (dir, kind) {
            (Some(d), Some(FileType::Directory)) => Some(
                rustix::fs::openat(
                    d,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| self.io(shown, e))?,
            ),
            (Some(d), k) if !self.dry => {
                if let Some(k) = k {
                    self.report.removed += 1;
                    remove_any(d, name, k).map_err(|e| self.io(shown, e))?;
                }
                rustix::fs::mkdirat(d, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| self.io(shown, e))?;
                Some(
                    rustix::fs::openat(
                        d,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io(shown, e))?,
                )
            }
            _ => None,
        };
        // Writable while it is filled, whatever its recorded mode (one
        // already there may be already).
        if let Some(s) = &sub
            && !self.dry
            && now_mode.is_none_or(|m| m & 0o700 != 0o700)
        {
            rustix::fs::fchmod(s, Mode::from_raw_mode(0o700 | mode))
                .map_err(|e| self.io(shown, e))?;
            now_mode = Some(0o700 | mode);
        }
        let kids: &[&Item] = children
            .get(item.path.as_slice())
            .map(Vec::as_slice)
            .unwrap_or_default();
        // What it holds, listed once: which kids are there and of what
        // kind, and what else is there to remove. One just made is empty.
        let listing = match &sub {
            Some(s) if !fresh => Some(Listing::of(s).map_err(|e| self.io(shown, e))?),
            _ => None,
        };
        // The blob copies among them are written together, below.
        let outer = self.batch.replace(Vec::new());
        for kid in kids {
            let (_, kid_name) = split_last(&kid.path);
            let seen = match &listing {
                _ if fresh => Seen::Absent,
                Some(l) => l.seen(kid_name),
                None => Seen::Unknown,
            };
            self.node(
                sub.as_ref().map(|s| s.as_fd()),
                seen,
                OsStr::from_bytes(kid_name),
                kid,
                children,
                shown,
            )?;
        }
        let jobs = std::mem::replace(&mut self.batch, outer).unwrap_or_default();
        if let Some(s) = &sub {
            self.write_batch(s.as_fd(), &jobs, shown)?;
            if let Some(l) = &listing {
                self.clean(s, kids, l, shown)?;
            }
            if !self.dry {
                if now_mode != Some(mode) {
                    rustix::fs::fchmod(s, Mode::from_raw_mode(mode))
                        .map_err(|e| self.io(shown, e))?;
                }
                // Only its time: the directory is restored either way.
                let _ = rustix::fs::futimens(s, &now());
            }
        }
        Ok(())
    }

    /// Remove what `dir` held (`listing`) beyond `kids` (the recorded
    /// entries).
    fn clean(
        &mut self,
        dir: &OwnedFd,
        kids: &[&Item],
        listing: &Listing,
        shown: &str,
    ) -> Result<(), Failure> {
        let names: HashSet<&[u8]> = kids.iter().map(|k| split_last(&k.path).1).collect();
        for (n, _) in &listing.0 {
            if names.contains(n.to_bytes()) {
                continue;
            }
            self.report.removed += 1;
            if self.dry {
                continue;
            }
            let st = match rustix::fs::statat(dir, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.io(shown, e)),
            };
            remove_any(dir, n.as_c_str(), FileType::from_raw_mode(st.st_mode))
                .map_err(|e| self.io(shown, e))?;
        }
        Ok(())
    }

    /// Whether the regular file `name` already holds `content` (then its
    /// mode is set and its mtime made now, unless dry); `opened`: it, if
    /// already open.
    fn keep_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        opened: Option<File>,
        st: &Stat,
        mode: u32,
        content: &StoredStream,
    ) -> bool {
        if st.st_size as u64 != content.len {
            return false;
        }
        let f = match opened {
            Some(f) => f,
            None => match rustix::fs::openat(dir, name, READ_FLAGS, Mode::empty()) {
                Ok(fd) => File::from(fd),
                Err(_) => return false,
            },
        };
        // Inline content is compared byte for byte. A file in a blob has a
        // fast check, read at memory speed: enough to tell the recorded
        // content from any other that is not crafted to collide (and
        // whoever can write this file could write any).
        let mut buf = self.buf.borrow_mut();
        let same = match &content.inline {
            Some(bytes) => same_bytes(&f, bytes, &mut buf),
            None => match self.store.blob_check(&content.digest) {
                Some(check) => xxh3_of(&f, content.len, &mut buf).is_ok_and(|c| c == check),
                None => matches_content(&f, content.digest, content.len),
            },
        };
        if !same {
            return false;
        }
        if !self.dry {
            if st.st_mode & 0o7777 != mode
                && rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).is_err()
            {
                return false;
            }
            let _ = rustix::fs::futimens(&f, &now());
        }
        true
    }

    /// Fill the temp file `tmp` (that nobody sees yet) with `content`,
    /// verified: a blob is checked as it is copied, in one pass
    /// ([`crate::store::Blobs::copy_verified`]); inline bytes are checked
    /// before they are written. When this fails, `tmp` is thrown away.
    fn fill(&self, tmp: &File, content: &StoredStream, shown: &str) -> Result<(), Failure> {
        if let (None, Some(blobs)) = (&content.inline, self.store.local_blobs()) {
            if content.len == 0 {
                return Ok(());
            }
            let check = self.store.blob_check(&content.digest);
            let mut copier = self.placer.copier.borrow_mut();
            return copy_blob(
                blobs,
                content.digest,
                content.len,
                check,
                tmp,
                &mut copier,
                shown,
            );
        }
        let source = match self.store.open_stream(content) {
            Ok(Some(s)) => s,
            Ok(None) if content.len == 0 => Source::Bytes(Vec::new()),
            Ok(None) => return Err(corrupt_content(shown)),
            Err(e) => return Err(Failure::Miss(format!("{e:#}"))),
        };
        copy_into(&source, tmp, content.len).map_err(|e| {
            Failure::Miss(format!(
                "cannot restore output '{shown}': {}",
                io_reason(&e)
            ))
        })
    }

    /// Write `content` to `name` in `dir` through a temp file renamed into
    /// place; a blob's copy goes into the batch of the directory being
    /// filled, if any.
    fn write_file(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        mode: u32,
        content: &StoredStream,
        absent: bool,
        shown: &str,
    ) -> Result<(), Failure> {
        if content.inline.is_none() && content.len > 0 && self.store.local_blobs().is_some() {
            let check = self.store.blob_check(&content.digest);
            if let Some(batch) = &mut self.batch {
                batch.push(Job {
                    name: name.to_owned(),
                    mode,
                    digest: content.digest,
                    len: content.len,
                    check,
                    absent,
                });
                return Ok(());
            }
        }
        self.placer.place(dir, name, mode, absent, shown, |tmp| {
            self.fill(tmp, content, shown)
        })
    }

    /// Write the blob copies `jobs` in `dir`: on several threads when they
    /// are many or large, each taking the next one left; the first failure
    /// stops them all.
    fn write_batch(&self, dir: BorrowedFd<'_>, jobs: &[Job], shown: &str) -> Result<(), Failure> {
        let Some(blobs) = self.store.local_blobs() else {
            return Ok(());
        };
        let bytes: u64 = jobs.iter().map(|j| j.len).sum();
        let threads = match jobs.len() >= PARALLEL_FILES || bytes >= PARALLEL_BYTES {
            true => self.threads().min(jobs.len()),
            false => 1,
        };
        if threads <= 1 {
            return jobs
                .iter()
                .try_for_each(|j| self.placer.write_job(dir, blobs, j, shown));
        }
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failure = std::sync::Mutex::new(None);
        let work = |placer: &Placer| {
            while !stop.load(Ordering::Relaxed) {
                let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                if let Err(f) = placer.write_job(dir, blobs, job, shown) {
                    stop.store(true, Ordering::Relaxed);
                    failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(f);
                }
            }
        };
        let work = &work;
        // Read before another thread starts (reading it sets it).
        self.placer.umask();
        std::thread::scope(|s| {
            for _ in 1..threads {
                let p = self.placer.for_thread();
                // A thread that cannot start leaves its share to the others.
                let _ = std::thread::Builder::new().spawn_scoped(s, move || work(&p));
            }
            work(&self.placer);
        });
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// How many threads may write a batch: the CPUs this process may use,
    /// up to [`MAX_THREADS`]; asked once.
    fn threads(&self) -> usize {
        if let Some(n) = self.threads.get() {
            return n;
        }
        let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
        self.threads.set(Some(n));
        n
    }
}

/// A temp file in `dir`: unnamed (`O_TMPFILE`) where the file system
/// allows, else a new random name (returned).
fn create_temp(dir: BorrowedFd<'_>, mode: u32) -> Result<(OwnedFd, Option<String>), Errno> {
    // Unnamed, nobody else can open it: it may have its final mode at once.
    match rustix::fs::openat(
        dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode & 0o777),
    ) {
        Ok(fd) => return Ok((fd, None)),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    loop {
        let n = temp_name();
        match rustix::fs::openat(
            dir,
            n.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((fd, Some(n))),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A random temp file name, hidden.
fn temp_name() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!(
        ".memorun-{}.tmp",
        u64::from_le_bytes(b) ^ u64::from(std::process::id())
    )
}

/// Copy a verified source into `out`: exactly `len` bytes.
fn copy_into(source: &Source, out: &File, len: u64) -> io::Result<()> {
    use std::io::Write;
    match source {
        Source::Bytes(b) => (&*out).write_all(b),
        Source::File(f) => match io::copy(&mut &*f, &mut &*out)? == len {
            true => Ok(()),
            false => Err(io::Error::other("the stored content is short")),
        },
    }
}

/// Timestamps setting the mtime to now, leaving the atime.
fn now() -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
    }
}

/// Remove `name` from `dir`: a directory with everything in it (never
/// following a symlink), anything else by unlinking it.
fn remove_any<P: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    name: P,
    kind: FileType,
) -> Result<(), Errno> {
    let dir = dir.as_fd();
    if kind != FileType::Directory {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        };
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    // Its entries can only be removed while it is writable.
    let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o700));
    let mut names = Vec::new();
    for entry in Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
    }
    for n in names {
        let st = match rustix::fs::statat(&sub, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        remove_any(&sub, n.as_c_str(), FileType::from_raw_mode(st.st_mode))?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}
