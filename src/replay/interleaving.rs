//! The interleaving of stdout and stderr, and the recorder that captures it.
//!
//! stdout and stderr are stored as two separate streams, so a large output
//! that is all stdout replays with one big kernel copy. Their interleaving is
//! a third stream, the *order*: a list of runs "N bytes of stdout", "M bytes
//! of stderr", each a LEB128 varint `len << 1 | stream`. Adjacent chunks of
//! the same stream are merged into one run, so a command that never mixes
//! its streams has an order of one or two varints.
//!
//! Invariant: the run lengths of each stream sum to that stream's length;
//! [`validate`] checks it before anything is replayed.

use std::io::{self, Read};

use crate::store::{Spool, Spooled};

/// Which of the command's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A run of consecutive bytes on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The stream.
    pub stream: Stream,
    /// How many bytes.
    pub len: u64,
}

/// Append the varint encoding of `run` to `out`.
pub fn encode_run(run: Run, out: &mut Vec<u8>) {
    let bit = match run.stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    };
    // Lengths come from reads and never approach 2^63.
    let mut v = (run.len << 1) | bit;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads runs back from an order stream.
pub struct RunReader<R> {
    inner: io::BufReader<R>,
}

impl<R: Read> RunReader<R> {
    /// Read runs from `inner`.
    pub fn new(inner: R) -> RunReader<R> {
        RunReader {
            inner: io::BufReader::with_capacity(64 * 1024, inner),
        }
    }

    /// The next run, `Ok(None)` at the end, an `InvalidData` error on a
    /// malformed encoding.
    pub fn next_run(&mut self) -> io::Result<Option<Run>> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        let mut byte = [0u8; 1];
        loop {
            match self.inner.read(&mut byte) {
                Ok(0) if shift == 0 => return Ok(None),
                Ok(0) => return Err(invalid("truncated run")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if shift >= 63 && byte[0] > 1 {
                return Err(invalid("run length overflows"));
            }
            v |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let stream = if v & 1 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        Ok(Some(Run {
            stream,
            len: v >> 1,
        }))
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Check that an order stream is well formed and that its runs add up to
/// exactly `stdout_len` and `stderr_len`. Returns `false` when they do not.
pub fn validate(order: impl Read, stdout_len: u64, stderr_len: u64) -> io::Result<bool> {
    let mut reader = RunReader::new(order);
    let (mut out, mut err) = (0u64, 0u64);
    loop {
        match reader.next_run() {
            Ok(Some(run)) => {
                let total = match run.stream {
                    Stream::Stdout => &mut out,
                    Stream::Stderr => &mut err,
                };
                *total = match total.checked_add(run.len) {
                    Some(t) => t,
                    None => return Ok(false),
                };
            }
            Ok(None) => return Ok(out == stdout_len && err == stderr_len),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Captures a command's two output streams and their interleaving into
/// spools while the command runs.
pub struct Recorder {
    stdout: Spool,
    stderr: Spool,
    order: Spool,
    pending: Option<Run>,
    buf: Vec<u8>,
}

/// The three finished streams of a recorded run.
pub struct Recording {
    /// stdout.
    pub stdout: Spooled,
    /// stderr.
    pub stderr: Spooled,
    /// The interleaving.
    pub order: Spooled,
}

impl Recorder {
    /// A recorder writing to three fresh spools.
    pub fn new(stdout: Spool, stderr: Spool, order: Spool) -> Recorder {
        Recorder {
            stdout,
            stderr,
            order,
            pending: None,
            buf: Vec::with_capacity(16),
        }
    }

    /// Record a chunk the command wrote to `stream`.
    pub fn chunk(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        match stream {
            Stream::Stdout => self.stdout.write(data)?,
            Stream::Stderr => self.stderr.write(data)?,
        }
        match &mut self.pending {
            Some(run) if run.stream == stream => run.len += data.len() as u64,
            _ => {
                self.flush_pending()?;
                self.pending = Some(Run {
                    stream,
                    len: data.len() as u64,
                });
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if let Some(run) = self.pending.take() {
            self.buf.clear();
            encode_run(run, &mut self.buf);
            self.order.write(&self.buf)?;
        }
        Ok(())
    }

    /// Finish all three streams.
    pub fn finish(mut self) -> io::Result<Recording> {
        self.flush_pending()?;
        Ok(Recording {
            stdout: self.stdout.finish()?,
            stderr: self.stderr.finish()?,
            order: self.order.finish()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::blobs::SpooledData;

    fn runs_of(bytes: &[u8]) -> Vec<Run> {
        let mut r = RunReader::new(bytes);
        let mut v = Vec::new();
        while let Some(run) = r.next_run().unwrap() {
            v.push(run);
        }
        v
    }

    #[test]
    fn varint_round_trip() {
        let runs = [
            Run {
                stream: Stream::Stdout,
                len: 0,
            },
            Run {
                stream: Stream::Stderr,
                len: 1,
            },
            Run {
                stream: Stream::Stdout,
                len: 63,
            },
            Run {
                stream: Stream::Stderr,
                len: 64,
            },
            Run {
                stream: Stream::Stdout,
                len: 1 << 40,
            },
            Run {
                stream: Stream::Stderr,
                len: (1 << 62) - 1,
            },
        ];
        let mut buf = Vec::new();
        for r in runs {
            encode_run(r, &mut buf);
        }
        assert_eq!(runs_of(&buf), runs);
    }

    #[test]
    fn malformed_orders_are_rejected() {
        assert!(!validate(&[0x80u8][..], 0, 0).unwrap());
        let mut buf = Vec::new();
        encode_run(
            Run {
                stream: Stream::Stdout,
                len: 5,
            },
            &mut buf,
        );
        assert!(validate(&buf[..], 5, 0).unwrap());
        assert!(!validate(&buf[..], 4, 0).unwrap());
        assert!(!validate(&buf[..], 5, 1).unwrap());
        assert!(!validate(&[0xffu8; 12][..], 0, 0).unwrap());
    }

    #[test]
    fn recorder_merges_adjacent_chunks() {
        let t = tempfile::tempdir().unwrap();
        let sp = || Spool::new(t.path().to_path_buf());
        let mut rec = Recorder::new(sp(), sp(), sp());
        rec.chunk(Stream::Stdout, b"ab").unwrap();
        rec.chunk(Stream::Stdout, b"c").unwrap();
        rec.chunk(Stream::Stderr, b"E").unwrap();
        rec.chunk(Stream::Stdout, b"").unwrap();
        rec.chunk(Stream::Stdout, b"d").unwrap();
        let r = rec.finish().unwrap();
        let SpooledData::Inline(order) = r.order.data else {
            panic!()
        };
        assert_eq!(
            runs_of(&order),
            [
                Run {
                    stream: Stream::Stdout,
                    len: 3
                },
                Run {
                    stream: Stream::Stderr,
                    len: 1
                },
                Run {
                    stream: Stream::Stdout,
                    len: 1
                },
            ]
        );
        assert!(validate(&order[..], 4, 1).unwrap());
    }
}
