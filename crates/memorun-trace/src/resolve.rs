//! What a path names, for a stopped tracee: its symlinks followed, and the
//! magic links of `/proc` (`/proc/self`, `/proc/PID/cwd`, `/proc/PID/root`,
//! `/proc/PID/fd/N`, and `/dev/fd/N`, `/dev/stdin` which lead there)
//! replaced by the tracee's own working directory and descriptors.
//!
//! The tracer keys a file at the path the command named *and* at the path
//! the kernel reached: a read through a symlink the command made itself
//! reads the link's target, an input; `stat` through a link looks at the
//! target; `cat /proc/self/cwd/f` reads `f`.
//!
//! Invariants:
//! - Only memorun's own view is used, with the tracee stopped: the answer
//!   is the one the call gets, unless another process changes the path in
//!   between (the race guard's business).
//! - A magic link that names no path (a pipe, a socket, a deleted file)
//!   stays a `/proc` path, which the log leaves out.
//! - Resolved directories (by the path as written, `..` included) are
//!   cached until the run itself changes a name ([`Resolver::forget`]);
//!   paths under `/proc` and `/dev` are never cached (`/proc/self` differs
//!   between tracees).

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Symlinks followed in one path before giving up, as the kernel does
/// (`ELOOP` after 40).
const MAX_LINKS: usize = 40;

/// Resolved directories, per run.
#[derive(Default)]
pub struct Resolver {
    dirs: HashMap<PathBuf, PathBuf>,
}

impl Resolver {
    /// The run changed a name: what a directory path leads to may have
    /// changed.
    pub fn forget(&mut self) {
        self.dirs.clear();
    }

    /// What the absolute `path` names for `tid`, following a final symlink
    /// when `follow`. Where a component does not exist, the rest is kept
    /// as written.
    pub fn real(&mut self, tid: i32, path: &Path, follow: bool) -> PathBuf {
        // /proc/self differs between tracees, and /dev/fd leads there.
        let uncached = path.starts_with("/proc") || path.starts_with("/dev");
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return walk(tid, path, follow);
        };
        if uncached {
            return walk(tid, path, follow);
        }
        let dir = match self.dirs.get(parent) {
            Some(d) => d.clone(),
            None => {
                let d = walk(tid, parent, true);
                if self.dirs.len() < 1 << 16 {
                    self.dirs.insert(parent.to_path_buf(), d.clone());
                }
                d
            }
        };
        let at = dir.join(name);
        if follow && std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return walk(tid, &at, true);
        }
        at
    }
}

fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

/// Resolve `path` component by component.
pub fn walk(tid: i32, path: &Path, follow_last: bool) -> PathBuf {
    let mut todo: VecDeque<OsString> = components(path).collect();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            out.pop();
            continue;
        }
        let at = out.join(&c);
        if todo.is_empty() && !follow_last {
            return at;
        }
        // The tracer's /proc/self is not the tracee's.
        if at == Path::new("/proc/self") || at == Path::new("/proc/thread-self") {
            out = PathBuf::from(format!("/proc/{tid}"));
            continue;
        }
        let meta = std::fs::symlink_metadata(&at);
        match meta {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                let target = std::fs::read_link(&at).ok();
                let magic = at.starts_with("/proc");
                let Some(target) = target.filter(|_| links <= MAX_LINKS) else {
                    return rest(at, todo);
                };
                let t = target.as_os_str().as_bytes();
                if magic && (t.first() != Some(&b'/') || t.ends_with(b" (deleted)")) {
                    // A pipe, a socket, an anonymous inode, a deleted file.
                    return rest(at, todo);
                }
                if t.first() == Some(&b'/') {
                    out = PathBuf::from("/");
                }
                let mut front: Vec<OsString> = components(&target).collect();
                while let Some(x) = front.pop() {
                    todo.push_front(x);
                }
            }
            Ok(_) => out = at,
            Err(_) => return rest(at, todo),
        }
    }
    out
}

/// `at` and the components not resolved, as written (`..` dropped with
/// the component before it, as the kernel would have failed anyway).
fn rest(at: PathBuf, todo: VecDeque<OsString>) -> PathBuf {
    let mut out = at;
    for c in todo {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn links_are_followed_to_what_they_name() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().canonicalize().unwrap();
        fs::create_dir(d.join("real")).unwrap();
        fs::write(d.join("real/f"), "").unwrap();
        std::os::unix::fs::symlink("real", d.join("dir")).unwrap();
        std::os::unix::fs::symlink("dir/f", d.join("file")).unwrap();
        std::os::unix::fs::symlink(d.join("real/nothing"), d.join("dangling")).unwrap();
        let me = std::process::id() as i32;
        let mut r = Resolver::default();
        assert_eq!(r.real(me, &d.join("file"), true), d.join("real/f"));
        assert_eq!(r.real(me, &d.join("file"), false), d.join("file"));
        assert_eq!(r.real(me, &d.join("dir/f"), false), d.join("real/f"));
        assert_eq!(
            r.real(me, &d.join("dangling"), true),
            d.join("real/nothing")
        );
        assert_eq!(r.real(me, &d.join("dir/../real/f"), true), d.join("real/f"));
        assert_eq!(r.real(me, &d.join("no/such/f"), true), d.join("no/such/f"));
    }

    #[test]
    fn proc_magic_links_name_the_tracee_s_cwd_and_descriptors() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().canonicalize().unwrap();
        fs::write(d.join("f"), "x").unwrap();
        let f = fs::File::open(d.join("f")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let me = std::process::id() as i32;
        let cwd = std::env::current_dir().unwrap();
        let mut r = Resolver::default();
        assert_eq!(
            r.real(me, Path::new("/proc/self/cwd/x"), true),
            cwd.join("x")
        );
        assert_eq!(
            r.real(me, Path::new("/proc/self/root/etc"), true),
            Path::new("/etc")
        );
        let by_fd = format!("/proc/self/fd/{fd}");
        assert_eq!(r.real(me, Path::new(&by_fd), true), d.join("f"));
        assert_eq!(
            r.real(me, Path::new(&format!("/dev/fd/{fd}")), true),
            d.join("f")
        );
        // Not followed: the link itself, under /proc.
        assert!(r.real(me, Path::new(&by_fd), false).starts_with("/proc"));
        // A pipe names no path.
        let (rd, _wr) = rustix::pipe::pipe().unwrap();
        let pipe = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&rd));
        assert!(r.real(me, Path::new(&pipe), true).starts_with("/proc"));
    }
}
