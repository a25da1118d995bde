//! Temp files in the cache's `tmp/` directory that cannot outlive their
//! process unseen.
//!
//! A spool, a spooled stdin or a new secret is written to a temp file and
//! then published (linked or renamed into place) or dropped. A process
//! killed with `kill -9` cannot clean up after itself, so:
//!
//! - Where the filesystem has them (ext4, xfs, btrfs, tmpfs), a temp file is
//!   *unnamed* (`O_TMPFILE`): it vanishes with the last descriptor, and is
//!   given a name only when it is published, by `linkat` through
//!   `/proc/self/fd`.
//! - Elsewhere it is a named file `PREFIX-<random hex>`, created exclusively,
//!   on which its process holds an exclusive lock for as long as it has it
//!   open (std's `File::try_lock`, which is `flock(2)` on Linux: the lock
//!   belongs to the open file and dies with its process). A named temp file
//!   nobody holds a lock on is an orphan of a process that died: [`sweep`]
//!   removes it (at the next recorded run, and in `memorun clear`).
//!
//! Invariant: a temp file in use is never removed by a sweep: the sweep
//! removes a file only while it holds that file's lock itself, and only a
//! file that has not been written to for [`ORPHAN_AFTER`] (which covers the
//! instant between creating a named file and locking it).
//!
//! Why not the tempfile crate's `Builder`: it names, creates exclusively and
//! removes on drop, but does neither of the two things above. Its unnamed
//! files (`tempfile_in`) have no way to be published by `linkat`, and its
//! named files carry no lock, so a sweep could not tell a live process's
//! file from an orphan. The tests use the tempfile crate for their scratch
//! directories.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};

/// Mode of the files memorun creates in the cache directory: the owner's
/// only.
pub const FILE_MODE: u32 = 0o600;

/// The name prefixes of memorun's own temp files.
pub const PREFIXES: [&str; 4] = ["spool-", "stdin-", "secret-", "record-"];

/// A named temp file untouched for this long whose lock is free is an
/// orphan.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(10);

/// A temp file being written; removed on drop unless it was published.
#[derive(Debug)]
pub struct Temp {
    file: File,
    /// `Some` for a named temp file, `None` for an unnamed one.
    name: Option<Name>,
    /// The directory it lives in (where a second name goes, if needed).
    dir: PathBuf,
}

/// The name of a named temp file: removed on drop unless kept.
#[derive(Debug)]
struct Name(Option<PathBuf>);

impl Name {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a name not yet kept")
    }

    /// Leave the file under this name (it was renamed into place).
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

impl Temp {
    /// A new temp file in `dir`: unnamed where the filesystem allows,
    /// else named `PREFIX-<hex>` and locked.
    pub fn create(dir: &Path, prefix: &str) -> io::Result<Temp> {
        match unnamed(dir) {
            Ok(file) => Ok(Temp {
                file,
                name: None,
                dir: dir.to_path_buf(),
            }),
            Err(_) => Temp::named(dir, prefix),
        }
    }

    /// A named, locked temp file (the fallback of [`Temp::create`]).
    pub fn named(dir: &Path, prefix: &str) -> io::Result<Temp> {
        let (file, path) = create_exclusive(dir, prefix)?;
        let name = Name(Some(path));
        // Without its lock a named temp file could be swept while in use:
        // on failure `name` is dropped, which removes the file.
        file.try_lock()?;
        Ok(Temp {
            file,
            name: Some(name),
            dir: dir.to_path_buf(),
        })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file, with no name left on disk: a temp file only this process
    /// reads (a spooled stdin).
    pub fn into_unlinked(self) -> File {
        drop(self.name);
        self.file
    }

    /// Give the file the name `target`, failing with `AlreadyExists` when
    /// something is there already (it is left alone).
    pub fn link_new(self, target: &Path) -> io::Result<()> {
        match &self.name {
            // The temp name goes when `self` is dropped.
            Some(name) => fs::hard_link(name.path(), target),
            None => link_unnamed(&self.file, target),
        }
    }

    /// Give the file the name `target`, replacing whatever is there.
    pub fn replace(self, target: &Path) -> io::Result<()> {
        if let Some(name) = self.name {
            fs::rename(name.path(), target)?;
            name.keep();
            return Ok(());
        }
        match link_unnamed(&self.file, target) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => return other,
        }
        // Something is in the way: a second name in the temp directory,
        // renamed over it. That name is locked through our descriptor (the
        // lock belongs to the open file), so no sweep takes it meanwhile.
        self.file.try_lock()?;
        let second = loop {
            let path = self.dir.join(format!("spool-{}", random_hex()));
            match link_unnamed(&self.file, &path) {
                Ok(()) => break Name(Some(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        fs::rename(second.path(), target)?;
        second.keep();
        Ok(())
    }
}

impl Write for Temp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An unnamed file in `dir` (`O_TMPFILE`), mode 0600.
fn unnamed(dir: &Path) -> io::Result<File> {
    let fd = rfs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )?;
    Ok(File::from(fd))
}

/// Give an unnamed file a name. Through `/proc/self/fd` (any user may);
/// where `/proc` is missing, with `AT_EMPTY_PATH` (which needs privilege).
fn link_unnamed(file: &File, target: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rfs::linkat(
        rfs::CWD,
        proc_path.as_str(),
        rfs::CWD,
        target,
        AtFlags::SYMLINK_FOLLOW,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOENT) if !Path::new("/proc/self/fd").exists() => Ok(rfs::linkat(
            file,
            "",
            rfs::CWD,
            target,
            AtFlags::EMPTY_PATH,
        )?),
        Err(e) => Err(e.into()),
    }
}

fn random_hex() -> String {
    let mut rnd = [0u8; 12];
    // The name only needs to be unlikely to collide: on failure (no
    // entropy source) the time and pid still make one.
    if getrandom::fill(&mut rnd).is_err() {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        rnd[..8].copy_from_slice(&(t as u64).to_le_bytes());
        rnd[8..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    rnd.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new file with an exclusive-create random name `prefix-<hex>` in `dir`.
pub fn create_exclusive(dir: &Path, prefix: &str) -> io::Result<(File, PathBuf)> {
    loop {
        let path = dir.join(format!("{prefix}-{}", random_hex()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Temp files in `tmp_dir`: how many, and their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TempUsage {
    pub files: u64,
    pub bytes: u64,
}

/// What is in `tmp_dir` now: temp files in flight and orphans alike.
pub fn usage(tmp_dir: &Path) -> TempUsage {
    let mut u = TempUsage::default();
    for f in fs::read_dir(tmp_dir).into_iter().flatten().flatten() {
        if let Ok(m) = f.metadata()
            && m.file_type().is_file()
        {
            u.files += 1;
            u.bytes += m.len();
        }
    }
    u
}

/// Remove the orphaned temp files in `tmp_dir` (see the module doc), or
/// with `dry_run` only count them. Never follows a symlink; removes only
/// regular files with memorun's own prefixes.
pub fn sweep(tmp_dir: &Path, dry_run: bool) -> TempUsage {
    let mut swept = TempUsage::default();
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return swept;
    };
    let now = SystemTime::now();
    for f in entries.flatten() {
        let name = f.file_name();
        let Some(name) = name.to_str() else { continue };
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = f.path();
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
            .open(&path)
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        let idle = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= ORPHAN_AFTER);
        if !meta.file_type().is_file() || !idle {
            continue;
        }
        // Held: its process is alive and still has it.
        if file.try_lock().is_err() {
            continue;
        }
        // Remove only the file whose lock we hold, not one put in its place.
        let same = fs::symlink_metadata(&path)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same && (dry_run || fs::remove_file(&path).is_ok()) {
            swept.files += 1;
            swept.bytes += meta.len();
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_unnamed_temp_file_has_no_name_until_published() {
        let t = tempfile::tempdir().unwrap();
        let mut temp = Temp::create(t.path(), "spool").unwrap();
        temp.write_all(b"abc").unwrap();
        // Linux's tmpfs, ext4, xfs and btrfs all have O_TMPFILE: a named
        // file here means the unnamed path was never taken.
        assert!(
            names(t.path()).is_empty(),
            "no unnamed temp file in {} (a filesystem without O_TMPFILE?)",
            t.path().display()
        );
        let target = t.path().join("published");
        temp.replace(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"abc");
        // Replacing an existing file goes through a second name, gone after.
        let mut temp = Temp::create(t.path(), "spool").unwrap();
        temp.write_all(b"xyz").unwrap();
        temp.replace(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"xyz");
        assert_eq!(names(t.path()), ["published"]);
        let temp = Temp::create(t.path(), "secret").unwrap();
        let err = temp.link_new(&target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn named_temp_files_publish_and_vanish_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let mut temp = Temp::named(t.path(), "spool").unwrap();
        temp.write_all(b"abc").unwrap();
        assert_eq!(names(t.path()).len(), 1);
        temp.link_new(&t.path().join("a")).unwrap();
        assert_eq!(names(t.path()), ["a"]);
        drop(Temp::named(t.path(), "spool").unwrap());
        assert_eq!(names(t.path()), ["a"]);
        let mut f = Temp::named(t.path(), "stdin").unwrap().into_unlinked();
        assert_eq!(names(t.path()), ["a"]);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
    }

    #[test]
    fn a_sweep_removes_orphans_only() {
        let t = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        // In use by this process: locked, so kept however old.
        let held = Temp::named(t.path(), "spool").unwrap();
        held.file().set_modified(old).unwrap();
        // Left by a process that died: nobody holds its lock.
        let orphan = t.path().join("spool-0123");
        fs::write(&orphan, vec![0u8; 1000]).unwrap();
        File::options()
            .write(true)
            .open(&orphan)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // Just created, not yet locked by its process: kept.
        fs::write(t.path().join("spool-4567"), b"new").unwrap();
        // Not ours: kept.
        fs::write(t.path().join("other"), b"x").unwrap();
        assert_eq!(
            sweep(t.path(), true),
            TempUsage {
                files: 1,
                bytes: 1000
            }
        );
        assert!(orphan.exists(), "a dry run removed a file");
        assert_eq!(sweep(t.path(), false).files, 1);
        assert!(!orphan.exists());
        assert_eq!(names(t.path()).len(), 3);
        assert_eq!(usage(t.path()).files, 3);
        drop(held);
    }
}
