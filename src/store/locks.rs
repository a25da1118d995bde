//! Per-key locks: OS file locks (std's `File::lock`, which is `flock(2)` on
//! Linux) on files in the cache's `locks/` directory.
//!
//! A lock dies with its holder, so a process killed with `kill -9` never
//! leaves a key locked: the kernel releases the lock at once and a waiter
//! takes over. Lock files may be removed (by `clear`) only while held;
//! a locker therefore checks, after locking, that the path still names the
//! file it locked, and retries if not.
//!
//! A holder that finishes removes its lock file, so a waiter that gets the
//! lock on a file no longer linked knows the holder finished (one killed
//! with `kill -9` leaves it in place). Before removing it, a holder whose
//! run was not recorded writes that into the file, for its waiters to read
//! through the descriptor they still hold.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::store::private;

/// What a holder whose run was not recorded leaves in its lock file.
const UNRECORDED: &[u8] = b"unrecorded\n";

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    /// Open for as long as the lock is held; closing it releases the lock.
    file: File,
    path: PathBuf,
}

/// How waiting for a held lock ended.
#[derive(Debug)]
pub enum Waited {
    /// The lock is ours: it was free, or its holder died.
    Locked(Lock),
    /// The holder finished and released the lock.
    Released,
    /// The holder finished without recording its run.
    Unrecorded,
}

impl Lock {
    /// Say, to those waiting, that this holder's run was not recorded;
    /// best effort (a waiter that cannot tell just takes the lock).
    pub fn note_unrecorded(&self) {
        let _ = self.file.write_all_at(UNRECORDED, 0);
    }

    /// Release the lock and remove its file (only safe while held).
    pub fn release_and_remove(self) {
        // A file left behind is an unlocked lock: the next holder reuses it.
        let _ = fs::remove_file(&self.path);
        drop(self);
    }
}

/// The lock file for `name` in `locks_dir`.
pub fn lock_path(locks_dir: &Path, name: &str) -> PathBuf {
    locks_dir.join(format!("{name}.lock"))
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(private::FILE_MODE)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Whether `file` is still the file at `path` (not removed and replaced).
fn still_linked(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    Ok(match fs::symlink_metadata(path) {
        Ok(now) => now.dev() == held.dev() && now.ino() == held.ino(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

fn acquire(locks_dir: &Path, name: &str, blocking: bool) -> io::Result<Option<Lock>> {
    private::ensure_subdir(locks_dir).map_err(io::Error::other)?;
    let path = lock_path(locks_dir, name);
    loop {
        let file = open(&path)?;
        let locked = if blocking {
            private::lock(&file)
        } else {
            file.try_lock().map_err(io::Error::from)
        };
        match locked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        if still_linked(&file, &path)? {
            return Ok(Some(Lock { file, path }));
        }
        // Removed while we waited: lock the new file instead.
    }
}

/// Take the lock for `name` if it is free.
pub fn try_lock(locks_dir: &Path, name: &str) -> io::Result<Option<Lock>> {
    acquire(locks_dir, name, false)
}

/// Wait (asleep, not spinning) until the holder of the lock for `name`
/// lets go of it, and say how it ended.
pub fn wait(locks_dir: &Path, name: &str) -> io::Result<Waited> {
    private::ensure_subdir(locks_dir).map_err(io::Error::other)?;
    let path = lock_path(locks_dir, name);
    let file = open(&path)?;
    private::lock(&file)?;
    if still_linked(&file, &path)? {
        return Ok(Waited::Locked(Lock { file, path }));
    }
    let mut note = [0u8; UNRECORDED.len()];
    Ok(match file.read_exact_at(&mut note, 0) {
        Ok(()) if note == UNRECORDED => Waited::Unrecorded,
        _ => Waited::Released,
    })
}

/// Whether someone holds the lock for `name` right now.
pub fn is_held(locks_dir: &Path, name: &str) -> bool {
    let path = lock_path(locks_dir, name);
    let Ok(file) = open(&path) else { return false };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_and_released_on_drop() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("locks");
        let a = try_lock(&dir, "k").unwrap().expect("free");
        assert!(try_lock(&dir, "k").unwrap().is_none());
        assert!(is_held(&dir, "k"));
        assert!(try_lock(&dir, "other").unwrap().is_some());
        drop(a);
        assert!(!is_held(&dir, "k"));
        let Waited::Locked(b) = wait(&dir, "k").unwrap() else {
            panic!("a free lock was not taken");
        };
        b.release_and_remove();
        assert!(!lock_path(&dir, "k").exists());
        assert!(try_lock(&dir, "k").unwrap().is_some());
    }
}
