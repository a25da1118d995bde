//! stdin in the key: read it, hash it (keyed with the cache's secret, so its
//! digest reveals nothing), and give the command the very same bytes.
//!
//! - `auto`: a pipe or socket is read to EOF and spooled to an unlinked temp
//!   file, which becomes the command's stdin: memory stays bounded for any
//!   size, and nothing of it is left in the cache directory. A regular file
//!   is hashed with `pread` from its current offset without being consumed,
//!   and inherited. A terminal or another device is not read; the command
//!   inherits it. A device is keyed by its number (`device 1:5`), so two
//!   devices never share an entry.
//! - `hash`: read and hash whatever stdin is, a terminal included.
//! - `ignore`: never read or hashed; inherited.
//!
//! Invariant: a terminal that `auto` does not read, `/dev/null`, an empty
//! pipe and an empty file all key as one component, [`NO_DATA`]: as far as
//! memorun can know they give the command the same thing, nothing, so a
//! run at a terminal and one in CI (`</dev/null`) share an entry. An answer
//! typed at a prompt is not seen (see docs/key.md); `--stdin hash` keys
//! what is typed.
//!
//! If spooling fails part-way (a full disk), the bytes already taken are not
//! lost: the command is fed them, then the rest of stdin, through a pipe.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Stdio;
use std::thread::JoinHandle;

use crate::base::hashing;
use crate::base::stat::FileStat;
use crate::base::temp::Temp;
use crate::key::{Component, Digest};

/// How the command gets its stdin.
#[derive(Debug)]
pub enum Feed {
    /// memorun's own stdin, untouched.
    Inherit,
    /// A spooled copy of what memorun read, positioned at 0.
    File(File),
    /// Part of stdin was taken before spooling failed: feed `taken`, then
    /// the rest of memorun's stdin, through a pipe.
    Pump {
        /// The bytes already taken from stdin.
        taken: Vec<u8>,
        /// The spool file holding what came before `taken`, at offset 0.
        spooled: Option<File>,
    },
}

/// A regular file on stdin (or on another descriptor the command
/// inherits, see `key::descriptors`): what it was when hashed.
#[derive(Clone, Copy)]
pub struct StdinFile {
    /// The descriptor: 0 for stdin.
    pub fd: i32,
    /// Its identity when hashed (a change during the run makes the result
    /// unrecordable, as for any input).
    pub stat: FileStat,
    /// The offset the command started reading at.
    pub offset: u64,
    /// The keyed digest of its content from `offset`.
    pub digest: Digest,
    /// The key of that digest (the cache's secret).
    pub secret: [u8; 32],
}

impl std::fmt::Debug for StdinFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("StdinFile")
            .field("fd", &self.fd)
            .field("stat", &self.stat)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl StdinFile {
    /// Whether the descriptor still holds what was hashed: same stat, and,
    /// when the stat is too recent to vouch for it, the same content.
    pub fn unchanged(&self, started_ns: i64) -> bool {
        let file = match self.fd {
            0 => fd0(),
            fd => reopen(fd),
        };
        let Ok(file) = file else { return false };
        match file.metadata() {
            Ok(m) if FileStat::of(&m) != self.stat => false,
            Ok(_) if self.stat.is_racy(started_ns) => {
                hash_file_from(&file, self.offset, blake3::Hasher::new_keyed(&self.secret))
                    .is_ok_and(|d| d == self.digest)
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// stdin, captured.
#[derive(Debug)]
pub struct Captured {
    /// Set when stdin is a regular file, read in place rather than spooled.
    pub file: Option<StdinFile>,
    /// The key component, or `None` with `--stdin ignore`.
    pub component: Option<Component>,
    /// How the command gets its stdin.
    pub feed: Feed,
}

/// Spooling failed; the command must still get all of stdin.
#[derive(Debug)]
pub struct SpoolFailed {
    /// What went wrong.
    pub error: io::Error,
    /// How the command gets its stdin nonetheless.
    pub feed: Feed,
}

const BUF: usize = 256 * 1024;

/// The stdin component's reason when stdin gives the command no data: a
/// terminal not read, `/dev/null`, an empty pipe or file.
pub const NO_DATA: &str = "no data";

/// The component of a stdin that holds no data.
fn no_data() -> Option<Component> {
    Some(Component::stdin(Err(NO_DATA)))
}

/// The component of `digest`, the keyed digest of `len` bytes of stdin.
fn hashed(digest: Digest, len: u64) -> Option<Component> {
    match len {
        0 => no_data(),
        _ => Some(Component::stdin(Ok(digest))),
    }
}

/// How stdin goes into the key (`--stdin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// Hash stdin when it is a file or a pipe; not when it is a terminal.
    Auto,
    /// Always read stdin to EOF and hash it, even from a terminal.
    Hash,
    /// Never read or hash stdin; the command inherits it as is.
    Ignore,
}

/// The most stdin memorun spools (and so can key); a longer stdin makes the
/// run uncached, its bytes streamed to the command as they come.
pub const SPOOL_MAX: u64 = 2 * 1024 * 1024 * 1024;

fn same_file(m: &std::fs::Metadata, path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|o| o.dev() == m.dev() && o.ino() == m.ino())
}

/// Read, hash and (when `spool_dir` is given) spool stdin per `mode`.
/// Without a spool directory stdin is hashed and discarded (for `why`).
pub fn capture(
    mode: StdinMode,
    secret: &[u8; 32],
    spool_dir: Option<&Path>,
) -> Result<Captured, SpoolFailed> {
    let inherit = |why: &str| Captured {
        component: Some(Component::stdin(Err(why))),
        feed: Feed::Inherit,
        file: None,
    };
    if mode == StdinMode::Ignore {
        return Ok(Captured {
            component: None,
            feed: Feed::Inherit,
            file: None,
        });
    }
    let Ok((stdin, meta)) = fd0().and_then(|f| f.metadata().map(|m| (f, m))) else {
        return Ok(inherit("closed"));
    };
    let ft = meta.file_type();
    let keyed = || blake3::Hasher::new_keyed(secret);
    let is_tty = stdin.is_terminal();
    if mode == StdinMode::Auto {
        // Not read: the command may prompt on it, and what is typed is not
        // seen (the documented limit; `--stdin hash` reads it).
        if is_tty || (ft.is_char_device() && same_file(&meta, "/dev/null")) {
            return Ok(Captured {
                component: no_data(),
                feed: Feed::Inherit,
                file: None,
            });
        }
        if ft.is_char_device() || ft.is_block_device() {
            // Which device: `/dev/zero` and `/dev/urandom` give the command
            // different bytes, so they must not share a key.
            let dev = meta.rdev();
            let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
            return Ok(inherit(&format!("device {major}:{minor}")));
        }
    }
    if ft.is_file() {
        // Hash from the current offset without consuming it.
        if let Some(offset) = offset() {
            let digest = hash_file_from(&stdin, offset, keyed()).map_err(|error| SpoolFailed {
                error,
                feed: Feed::Inherit,
            })?;
            return Ok(Captured {
                component: hashed(digest, meta.len().saturating_sub(offset)),
                feed: Feed::Inherit,
                file: Some(StdinFile {
                    fd: 0,
                    stat: FileStat::of(&meta),
                    offset,
                    digest,
                    secret: *secret,
                }),
            });
        }
    }
    read_pipe(&stdin, keyed(), spool_dir)
}

/// memorun's stdin as a `File`: a duplicate of fd 0, sharing its open file
/// description (and so its offset) with fd 0, closed on drop.
fn fd0() -> io::Result<File> {
    Ok(File::from(rustix::stdio::stdin().try_clone_to_owned()?))
}

/// The file descriptor `fd` names, opened anew for reading (its own
/// offset: the command's is left alone).
pub(crate) fn reopen(fd: i32) -> io::Result<File> {
    File::open(format!("/proc/self/fd/{fd}"))
}

/// Where fd 0 is now, when it is a file that has an offset (not a pipe).
pub fn offset() -> Option<u64> {
    rustix::fs::tell(rustix::stdio::stdin()).ok()
}

/// Move fd 0 to `offset`; on failure it stays where it was.
pub fn seek_to(offset: u64) {
    let _ = rustix::fs::seek(rustix::stdio::stdin(), rustix::fs::SeekFrom::Start(offset));
}

/// Hash a file from `offset` to its end with `pread`, leaving the file
/// offset (shared with the command) where it is.
pub(crate) fn hash_file_from(f: &File, offset: u64, h: blake3::Hasher) -> io::Result<Digest> {
    struct ReadAt<'a>(&'a File, u64);
    impl Read for ReadAt<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read_at(buf, self.1)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    let size = f.metadata()?.len().saturating_sub(offset);
    Ok(hashing::hash_with(h, &mut ReadAt(f, offset), size)?.0)
}

fn read_pipe(
    mut stdin: &File,
    mut h: blake3::Hasher,
    spool_dir: Option<&Path>,
) -> Result<Captured, SpoolFailed> {
    let mut spool = match spool_dir {
        None => None,
        // Unnamed, or unlinked at once: stdin never outlives this process
        // on disk.
        Some(dir) => match Temp::create(dir, "stdin") {
            Ok(temp) => Some(temp.into_unlinked()),
            Err(error) => {
                return Err(SpoolFailed {
                    error,
                    feed: Feed::Inherit,
                });
            }
        },
    };
    let mut buf = vec![0u8; BUF];
    let mut spooled_len = 0u64;
    let mut total = 0u64;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A pipe left non-blocking by whoever made it: wait for more,
            // as a blocking read would (EAGAIN is not the end of stdin).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match wait_readable(stdin) {
                Ok(()) => continue,
                Err(error) => return Err(read_failed(error, spool.take(), total)),
            },
            Err(error) => {
                return Err(read_failed(error, spool.take(), total));
            }
        };
        h.update(&buf[..n]);
        total += n as u64;
        let written = match &mut spool {
            None => Ok(()),
            // A stream that never ends (`yes | memorun -- head -n1`) must
            // not fill the disk: past the cap, run uncached, streaming.
            Some(_) if spooled_len + n as u64 > SPOOL_MAX => Err(io::Error::other(format!(
                "it is larger than {}",
                crate::term::format::human_size(SPOOL_MAX)
            ))),
            Some(f) => f.write_all(&buf[..n]),
        };
        if written.is_ok() {
            spooled_len += n as u64;
        }
        if let (Some(f), Err(error)) = (&mut spool, written) {
            // A partial write may have landed; the pump re-sends this whole
            // chunk, so cut the file back to what was fully written.
            let spooled = f
                .set_len(spooled_len)
                .ok()
                .and_then(|()| rewound(spool.take().expect("spool")).ok());
            return Err(SpoolFailed {
                error,
                feed: Feed::Pump {
                    taken: buf[..n].to_vec(),
                    spooled,
                },
            });
        }
    }
    let feed = match spool {
        Some(f) => Feed::File(rewound(f).map_err(|error| SpoolFailed {
            error,
            feed: Feed::Inherit,
        })?),
        None => Feed::Inherit,
    };
    Ok(Captured {
        component: hashed(h.finalize().into(), total),
        feed,
        file: None,
    })
}

/// Reading stdin failed after `total` bytes, `spool` holding them: what
/// was read so far must still reach the command; when nothing was
/// (`< dir`), stdin is intact, so the command inherits it and meets the
/// same error as without memorun.
fn read_failed(error: io::Error, spool: Option<File>, total: u64) -> SpoolFailed {
    let feed = match spool {
        Some(f) if total > 0 => rewound(f).map_or(Feed::Inherit, Feed::File),
        _ => Feed::Inherit,
    };
    SpoolFailed { error, feed }
}

/// Block until `f` has data or its writers are gone.
fn wait_readable(f: &File) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags};
    let mut p = [PollFd::new(f, PollFlags::IN)];
    loop {
        match rustix::event::poll(&mut p, None) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn rewound(mut f: File) -> io::Result<File> {
    f.rewind()?;
    Ok(f)
}

impl Feed {
    /// A second handle on a spooled stdin, for a background refresh.
    pub fn duplicate(&self) -> Option<File> {
        match self {
            Feed::File(f) => f.try_clone().ok(),
            _ => None,
        }
    }

    /// The command's stdin, and a thread to join after it exits when the
    /// bytes are pumped through a pipe.
    pub fn into_stdio(self) -> io::Result<(Stdio, Option<JoinHandle<()>>)> {
        match self {
            Feed::Inherit => Ok((Stdio::inherit(), None)),
            Feed::File(f) => Ok((Stdio::from(f), None)),
            Feed::Pump { taken, spooled } => {
                let (read, write) = std::io::pipe()?;
                let handle = std::thread::spawn(move || {
                    let mut w = write;
                    let _ = pump(&mut w, taken, spooled);
                });
                Ok((Stdio::from(OwnedFd::from(read)), Some(handle)))
            }
        }
    }
}

fn pump(w: &mut impl Write, taken: Vec<u8>, spooled: Option<File>) -> io::Result<()> {
    if let Some(mut f) = spooled {
        io::copy(&mut f, w)?;
    }
    w.write_all(&taken)?;
    let mut stdin = fd0()?;
    let mut buf = vec![0u8; BUF];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => w.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Non-blocking stdin: wait for more, as in `read_pipe`.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(&stdin)?,
            Err(e) => return Err(e),
        }
    }
}
