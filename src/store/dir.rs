//! The cache directory: created private, refused when it is not ours.
//!
//! Invariants: the directory is created with mode 0700 in the `mkdir` call
//! itself (no chmod window), every file memorun creates in it is 0600, and a
//! directory owned by another user or writable by group or others is never
//! used. The per-cache secret that keys env and stdin digests lives here too.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Mode for every file memorun creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode for every directory memorun creates.
pub const DIR_MODE: u32 = 0o700;

/// Create `path` (and missing parents) with mode 0700, then check that it is
/// a directory owned by us and not writable by group or others.
pub fn prepare(path: &Path) -> Result<()> {
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

/// Refuse a directory that another user owns or that group or others can
/// write: anyone who can write it can plant entries that we would replay.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path)
        .with_context(|| format!("cannot read cache directory '{}'", path.display()))?;
    if !meta.is_dir() {
        bail!("cache directory '{}' is not a directory", path.display());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        bail!(
            "cache directory '{}' is owned by uid {}, not by you (uid {euid}); not using it",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "cache directory '{}' is writable by group or others (mode {:o}); not using it",
            path.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

/// `flock(2)` on `file` with `op` (`LOCK_SH`, `LOCK_EX`, `| LOCK_NB`),
/// retried on EINTR; released when the file is closed.
pub fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock on an open descriptor.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
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
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// A new file with an exclusive-create random name `prefix-<hex>` in `dir`.
pub fn create_temp(dir: &Path, prefix: &str) -> io::Result<(File, PathBuf)> {
    loop {
        let mut rnd = [0u8; 12];
        getrandom::fill(&mut rnd).map_err(io::Error::other)?;
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{prefix}-{name}"));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The per-cache secret used to key digests of env values (and stdin), so
/// that a short value cannot be brute-forced from the store.
///
/// Created once, atomically: written to a temp file, then hard-linked into
/// place, so a concurrent reader never sees a half-written secret.
pub fn load_or_create_secret(dir: &Path, tmp_dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join("secret");
    match read_secret(&path) {
        Ok(s) => return Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", path.display())),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    let (mut f, tmp) = create_temp(tmp_dir, "secret")
        .with_context(|| format!("cannot create a file in '{}'", tmp_dir.display()))?;
    let written = f.write_all(&secret).and_then(|()| f.sync_all());
    let linked = written.and_then(|()| fs::hard_link(&tmp, &path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(secret),
        // Someone else won the race: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_secret(&path).with_context(|| format!("cannot read '{}'", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot write '{}'", path.display())),
    }
}

fn read_secret(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut buf = Vec::with_capacity(33);
    Read::by_ref(&mut f).take(33).read_to_end(&mut buf)?;
    buf.try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "secret is not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_directory_and_secret() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/b/cache");
        prepare(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let tmp = dir.join("tmp");
        ensure_subdir(&tmp).unwrap();
        let s1 = load_or_create_secret(&dir, &tmp).unwrap();
        let s2 = load_or_create_secret(&dir, &tmp).unwrap();
        assert_eq!(s1, s2);
        let mode = fs::metadata(dir.join("secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn refuses_group_writable_directory() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let err = prepare(t.path()).unwrap_err();
        assert!(format!("{err:#}").contains("writable by group or others"));
    }

    #[test]
    fn refuses_a_file() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("file");
        fs::write(&f, "x").unwrap();
        assert!(prepare(&f.join("cache")).is_err());
    }
}
