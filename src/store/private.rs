//! The cache directory: created private, refused when it is not ours.
//!
//! Invariants: the directory is created with mode 0700 in the `mkdir` call
//! itself (no chmod window), every file memorun creates in it is 0600, and a
//! directory owned by another user, writable by group or others, or inside
//! a directory another user could use to swap it for their own is never
//! used; once checked, it is used by its canonical path.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rustix::fs::{self as rfs, Mode, OFlags};

/// Mode for every file memorun creates.
pub use crate::base::temp::FILE_MODE;
/// Mode for every directory memorun creates.
pub const DIR_MODE: u32 = 0o700;

/// Create `path` (and missing parents) with mode 0700, then check that it
/// is ours alone and that nobody else can put another directory in its
/// place. Returns the path to use from then on: the directory's canonical
/// path, whose every ancestor only we and root can change.
///
/// Why the ancestors: every later open (SQLite's among them) walks the path
/// again. If another user can write a parent, they can swap the checked
/// directory for one of their own (`renameat2(RENAME_EXCHANGE)`) between
/// the check and the opens, and we would replay what they planted. A path
/// whose parents only we and root can write names the checked directory
/// for as long as we use it. (ssh's `StrictModes` applies the same rule.)
pub fn prepare(path: &Path) -> Result<PathBuf> {
    match DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create cache directory '{}'", path.display()));
        }
    }
    check_private(path)
}

/// Refuse a directory that another user owns, that group or others can
/// write, that is a symlink, or that sits where another user could swap it
/// (see [`prepare`]); returns its canonical path.
pub fn check_private(path: &Path) -> Result<PathBuf> {
    // Opened once, without following a symlink: the checks below are of
    // this directory, not of whatever the name points to a moment later.
    let dir = match rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return Err(not_a_directory(path, e.into())),
    };
    let st = rfs::fstat(&dir)
        .map_err(io::Error::from)
        .with_context(|| format!("cannot read cache directory '{}'", path.display()))?;
    let euid = rustix::process::geteuid().as_raw();
    if st.st_uid != euid {
        bail!(
            "cache directory '{}' is owned by uid {}, not by you (uid {euid}); not using it",
            path.display(),
            st.st_uid
        );
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        bail!(
            "cache directory '{}' is writable by group or others (mode {mode:o}); not using it",
            path.display(),
        );
    }
    // The directory we opened, by the path the kernel knows it by.
    let real = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .or_else(|_| fs::canonicalize(path))
        .with_context(|| format!("cannot resolve cache directory '{}'", path.display()))?;
    for ancestor in real.ancestors().skip(1) {
        check_ancestor(path, ancestor, euid)?;
    }
    // The path, now known to be out of other users' reach, must still name
    // the directory that was checked.
    let now = fs::symlink_metadata(&real)
        .with_context(|| format!("cannot read cache directory '{}'", real.display()))?;
    if now.dev() != st.st_dev as u64 || now.ino() != st.st_ino as u64 {
        bail!(
            "cache directory '{}' was replaced while it was checked; not using it",
            path.display()
        );
    }
    Ok(real)
}

/// Why `path` could not be opened as a directory: a symlink is named as one.
fn not_a_directory(path: &Path, e: io::Error) -> anyhow::Error {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(path).unwrap_or_default();
            anyhow!(
                "cache directory '{shown}' is a symlink (to '{}'); not using it (name the directory itself)",
                target.display()
            )
        }
        Ok(m) if !m.is_dir() => anyhow!("cache directory '{shown}' is not a directory"),
        _ => anyhow!(e).context(format!("cannot open cache directory '{shown}'")),
    }
}

/// Refuse an ancestor of the cache directory that someone other than us
/// and root can change: one another user owns, or one that group or others
/// can write without the sticky bit (which stops them renaming our entry).
/// A group-writable directory of our own whose group is our own primary
/// group (a user-private group, the usual setup with umask 002) is ours.
fn check_ancestor(cache: &Path, ancestor: &Path, euid: u32) -> Result<()> {
    let m = fs::symlink_metadata(ancestor)
        .with_context(|| format!("cannot read '{}'", ancestor.display()))?;
    let (shown, at) = (cache.display(), ancestor.display());
    if m.uid() != 0 && m.uid() != euid {
        bail!(
            "cache directory '{shown}' is inside '{at}', which uid {} owns and could replace it; not using it",
            m.uid()
        );
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o1000 != 0 {
        return Ok(());
    }
    if mode & 0o002 != 0 {
        bail!(
            "cache directory '{shown}' is inside '{at}', which anyone can write (mode {mode:o}, no sticky bit) and so replace it; not using it"
        );
    }
    let own_group = m.uid() == euid && m.gid() == rustix::process::getegid().as_raw();
    if mode & 0o020 != 0 && !own_group {
        bail!(
            "cache directory '{shown}' is inside '{at}', which group {} can write (mode {mode:o}) and so replace it; not using it",
            m.gid()
        );
    }
    Ok(())
}

/// Wait for an exclusive lock on `file`: std's `File::lock`, which on Linux
/// is `flock(2)`, so the lock belongs to the open file description and is
/// released when its last descriptor is closed.
pub fn lock(file: &File) -> io::Result<()> {
    retry_on_intr(|| file.lock())
}

/// std does not retry a lock interrupted by a signal. memorun's own
/// handlers restart `flock` (`SA_RESTART`); this covers any other.
fn retry_on_intr(mut lock: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    loop {
        match lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            done => return done,
        }
    }
}

/// Create a subdirectory of the cache with mode 0700 if it is missing.
pub fn ensure_subdir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create '{}'", path.display())),
    }
}

/// Open `path` for writing, creating it 0600 if missing (never truncating).
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_a_private_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b/cache");
        prepare(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn refuses_group_writable_directory() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let err = prepare(t.path()).unwrap_err();
        assert!(format!("{err:#}").contains("writable by group or others"));
    }

    #[test]
    fn names_a_symlink_and_the_sticky_bit_in_its_refusals() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        prepare(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = format!("{:#}", prepare(&link).unwrap_err());
        assert!(err.contains("is a symlink (to '"), "{err}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = format!("{:#}", prepare(&real).unwrap_err());
        assert!(err.contains("(mode 1777)"), "{err}");
    }

    #[test]
    fn refuses_a_directory_others_could_swap_and_returns_the_real_path() {
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join("shared");
        fs::create_dir(&parent).unwrap();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", prepare(&parent.join("cache")).unwrap_err());
        assert!(err.contains("which anyone can write (mode 777"), "{err}");
        // With the sticky bit (as /tmp has) others cannot rename our entry.
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777)).unwrap();
        let real = prepare(&parent.join("./cache")).unwrap();
        assert_eq!(real, fs::canonicalize(parent.join("cache")).unwrap());
    }

    #[test]
    fn refuses_a_file() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("file");
        fs::write(&f, "x").unwrap();
        assert!(prepare(&f.join("cache")).is_err());
    }
}
