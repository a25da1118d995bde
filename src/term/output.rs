//! Unbuffered writes to memorun's own stdout and stderr.
//!
//! Output goes straight to file descriptors 1 and 2 with `write(2)`: no line
//! buffering, no added delay, and a descriptor someone left non-blocking is
//! waited on rather than reported as an error. Replaying from a file uses
//! `sendfile(2)` where the kernel allows it, falling back to `pread` and
//! `write` with a large buffer.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;

/// One of memorun's own output descriptors.
#[derive(Debug, Clone, Copy)]
pub struct Fd(BorrowedFd<'static>);

/// memorun's standard output.
pub const STDOUT: Fd = Fd(rustix::stdio::stdout());
/// memorun's standard error.
pub const STDERR: Fd = Fd(rustix::stdio::stderr());

/// Buffer size for the read/write fallback.
const COPY_BUF: usize = 256 * 1024;

impl Fd {
    /// Whether this descriptor is a terminal.
    pub fn is_terminal(self) -> bool {
        self.0.is_terminal()
    }

    /// Write all of `data`, retrying on `EINTR` and waiting on `EAGAIN`.
    pub fn write_all(self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match rustix::io::write(self.0, data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => wait_writable(self.0)?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Copy `len` bytes of `file` starting at `offset` to this descriptor.
    pub fn copy_from_file(self, file: &File, mut offset: u64, mut len: u64) -> io::Result<()> {
        let mut use_sendfile = true;
        let mut buf: Vec<u8> = Vec::new();
        while len > 0 {
            if use_sendfile {
                let want = len.min(1 << 30) as usize;
                let mut off = offset;
                match rustix::fs::sendfile(self.0, file, Some(&mut off), want) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "stored output is shorter than recorded",
                        ));
                    }
                    Ok(n) => {
                        offset += n as u64;
                        len -= n as u64;
                    }
                    Err(Errno::INTR) => {}
                    Err(Errno::AGAIN) => wait_writable(self.0)?,
                    Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => use_sendfile = false,
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            if buf.is_empty() {
                buf = vec![0u8; COPY_BUF.min(len as usize).max(1)];
            }
            let want = buf.len().min(len as usize);
            let n = pread(file, &mut buf[..want], offset)?;
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

fn pread(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Block until `fd` can take more output.
fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = [PollFd::from_borrowed_fd(fd, PollFlags::OUT)];
    loop {
        match rustix::event::poll(&mut p, None) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
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
