//! Unbuffered writes to memorun's own stdout and stderr.
//!
//! Output goes straight to file descriptors 1 and 2 with `write(2)`: no line
//! buffering, no added delay, and a descriptor someone left non-blocking is
//! waited on rather than reported as an error. Replaying from a file uses
//! `sendfile(2)` where the kernel allows it, falling back to `pread` and
//! `write` with a large buffer.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// One of memorun's own output descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fd(pub RawFd);

/// memorun's standard output.
pub const STDOUT: Fd = Fd(1);
/// memorun's standard error.
pub const STDERR: Fd = Fd(2);

/// Buffer size for the read/write fallback.
const COPY_BUF: usize = 256 * 1024;

impl Fd {
    /// Write all of `data`, retrying on `EINTR` and waiting on `EAGAIN`.
    pub fn write_all(self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            // SAFETY: `data` is a valid slice for the duration of the call.
            let n = unsafe { libc::write(self.0, data.as_ptr().cast(), data.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        wait_writable(self.0)?;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n as usize..];
        }
        Ok(())
    }

    /// Copy `len` bytes of `file` starting at `offset` to this descriptor.
    pub fn copy_from_file(self, file: &File, mut offset: u64, mut len: u64) -> io::Result<()> {
        let src = file.as_raw_fd();
        let mut use_sendfile = true;
        let mut buf: Vec<u8> = Vec::new();
        while len > 0 {
            if use_sendfile {
                let mut off = offset as libc::off_t;
                let want = len.min(1 << 30) as usize;
                // SAFETY: both descriptors are open; `off` is a valid pointer.
                let n = unsafe { libc::sendfile(self.0, src, &mut off, want) };
                if n > 0 {
                    offset += n as u64;
                    len -= n as u64;
                    continue;
                }
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stored output is shorter than recorded",
                    ));
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {
                        wait_writable(self.0)?;
                        continue;
                    }
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                        use_sendfile = false;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            if buf.is_empty() {
                buf = vec![0u8; COPY_BUF.min(len as usize).max(1)];
            }
            let want = buf.len().min(len as usize);
            let n = pread(src, &mut buf[..want], offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stored output is shorter than recorded",
                ));
            }
            self.write_all(&buf[..n])?;
            offset += n as u64;
            len -= n as u64;
        }
        Ok(())
    }
}

fn pread(fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, writable slice.
        let n = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Block until `fd` can take more output.
fn wait_writable(fd: RawFd) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, -1) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Write a subcommand's report to stdout; a reader that went away is not
/// an error. Returns exit code 0.
pub fn print_stdout(text: &[u8]) -> anyhow::Result<i32> {
    match STDOUT.write_all(text) {
        Ok(()) => Ok(0),
        Err(e) if is_broken_pipe(&e) => Ok(0),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

/// Whether an error means the reader of our output has gone away.
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}
