//! Descriptors above 2 that the command inherits, in the key.
//!
//! memorun hands its open descriptors to the command as they are (make's
//! jobserver pipe must reach every rule). One that names a file is an input
//! the command can read without naming any path (`sh -c 'cat <&3' 3<f`),
//! traced or not, so:
//!
//! - a regular file open for reading: keyed by its content from the
//!   descriptor's offset (a keyed digest, as stdin's), and watched like any
//!   input (changed during the run: not recorded);
//! - a regular file open for writing only: passed through unkeyed; what
//!   the command writes there is a side effect a replay does not repeat, as
//!   for any file it writes without `-o`;
//! - a directory or a block device: what the command reads through it
//!   cannot be keyed, so the run is never recorded (the component says
//!   what the descriptor names, and [`Inherited::unrecordable`] why);
//! - another character device open for reading (`/dev/zero`,
//!   `/dev/urandom`): keyed by its number, not read;
//! - pipes, sockets, terminals, `/dev/null`, and kernel objects (an
//!   eventfd, a pidfd): passed through unkeyed.
//!
//! A descriptor memorun opened itself is close-on-exec and never reaches
//! the command: only those without `FD_CLOEXEC` are looked at. Everything
//! is read from `/proc/self/fdinfo` and `/proc/self/fd`, so no descriptor
//! is borrowed by number.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use crate::base::stat::FileStat;
use crate::key::inputs::{Origin, WatchItem, Watched};
use crate::key::stdin::{StdinFile, hash_file_from, reopen};
use crate::key::{Component, Digest};

/// `O_ACCMODE`, `O_WRONLY` and `O_CLOEXEC` as `/proc/self/fdinfo` shows
/// the flags (octal, the kernel's values on every architecture memorun
/// runs on).
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_CLOEXEC: u32 = 0o2_000_000;

/// The inherited descriptors, as the key sees them.
#[derive(Debug, Default)]
pub struct Inherited {
    /// One component per keyed (or unkeyable) descriptor, by number.
    pub components: Vec<Component>,
    /// The files read through them, watched during the run.
    pub watch: Vec<WatchItem>,
    /// Why a run with these descriptors must not be recorded, if it must
    /// not.
    pub unrecordable: Option<String>,
}

/// A descriptor as `/proc/self/fdinfo` describes it.
struct Info {
    pos: u64,
    flags: u32,
}

fn info(fd: i32) -> io::Result<Info> {
    let text = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected fdinfo");
    Ok(Info {
        pos: field("pos:").and_then(|p| p.parse().ok()).ok_or_else(bad)?,
        flags: field("flags:")
            .and_then(|f| u32::from_str_radix(f, 8).ok())
            .ok_or_else(bad)?,
    })
}

/// The descriptors above 2 this process would hand to a command it runs,
/// in order.
fn inheritable() -> Vec<(i32, Info)> {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, Info)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            std::str::from_utf8(e.file_name().as_bytes())
                .ok()?
                .parse()
                .ok()
        })
        .filter(|fd: &i32| *fd > 2)
        // Gone since the listing (the listing's own descriptor) or
        // close-on-exec: not the command's.
        .filter_map(|fd| Some((fd, info(fd).ok()?)))
        .filter(|(_, i)| i.flags & O_CLOEXEC == 0)
        .collect();
    fds.sort_by_key(|(fd, _)| *fd);
    fds
}

/// A character device open for reading that gives the command bytes of
/// its own (`/dev/zero`, `/dev/urandom`, a serial port): named by its
/// number (`the device 1:5`), so that another device is another key. Not
/// `/dev/null` (no data) nor a terminal (what is typed is not keyed, as
/// on stdin: a pseudo-terminal's number differs in every session).
fn readable_device(meta: &fs::Metadata, info: &Info) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.file_type().is_char_device() || info.flags & O_ACCMODE == O_WRONLY {
        return None;
    }
    let (major, minor) = (
        rustix::fs::major(meta.rdev()),
        rustix::fs::minor(meta.rdev()),
    );
    // Linux's terminal majors: the virtual consoles and serial lines (4),
    // /dev/tty, the console and ptmx (5), Unix98 pseudo-terminals
    // (136-143) and the old BSD ones (3).
    let terminal = matches!(major, 3..=5 | 136..=143);
    let null = (major, minor) == (1, 3);
    (!terminal && !null).then(|| format!("the device {major}:{minor}"))
}

/// The inherited descriptors in the key: see the module comment. `secret`
/// keys the content digests.
pub fn inherited(secret: &[u8; 32]) -> Inherited {
    let mut out = Inherited::default();
    for (fd, info) in inheritable() {
        // What it names, for a message only.
        let link = || fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        let Ok(meta) = fs::metadata(format!("/proc/self/fd/{fd}")) else {
            continue;
        };
        let ft = meta.file_type();
        let unkeyable = |what: &str| format!("{what} {}", link().display());
        let refused = if ft.is_dir() {
            Some(unkeyable("the directory"))
        } else if ft.is_block_device() {
            Some(unkeyable("the block device"))
        } else if ft.is_file() && info.flags & O_ACCMODE != O_WRONLY {
            match keyed(fd, &info, &meta, secret) {
                Ok(file) => {
                    out.components
                        .push(Component::descriptor(fd, Ok(file.digest)));
                    out.watch.push(WatchItem {
                        name: format!("fd {fd}").into(),
                        abs: PathBuf::from(format!("/proc/self/fd/{fd}")),
                        before: Watched::Stdin(file),
                        origin: Origin::Descriptor(fd),
                    });
                    None
                }
                Err(e) => Some(format!(
                    "the file {} (unreadable: {})",
                    link().display(),
                    crate::term::format::io_reason(&e)
                )),
            }
        } else {
            if let Some(dev) = readable_device(&meta, &info) {
                out.components.push(Component::descriptor(fd, Err(&dev)));
            }
            None
        };
        if let Some(what) = refused {
            out.components.push(Component::descriptor(fd, Err(&what)));
            out.unrecordable.get_or_insert_with(|| {
                format!(
                    "it inherits descriptor {fd}, open on {what}, whose reads cannot be keyed \
                     (close it for the command: {fd}<&-)"
                )
            });
        }
    }
    out
}

/// A regular file on `fd`, hashed from the descriptor's offset.
fn keyed(fd: i32, info: &Info, meta: &fs::Metadata, secret: &[u8; 32]) -> io::Result<StdinFile> {
    let file = reopen(fd)?;
    let digest: Digest = hash_file_from(&file, info.pos, blake3::Hasher::new_keyed(secret))?;
    Ok(StdinFile {
        fd,
        stat: FileStat::of(meta),
        offset: info.pos,
        digest,
        secret: *secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_is_read() {
        let f = fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let i = info(f.as_raw_fd()).unwrap();
        assert_eq!(i.pos, 0);
        // std opens everything close-on-exec: not inherited.
        assert_ne!(i.flags & O_CLOEXEC, 0);
        assert!(!inheritable().iter().any(|(fd, _)| *fd == f.as_raw_fd()));
    }
}
