//! The wall-clock deadline of one remote operation: a server cannot
//! stretch it by answering slowly.
//!
//! - A small object (an entry, a trace manifest, an index) has the lookup
//!   deadline (`MEMORUN_REMOTE_LOOKUP_TIMEOUT`, 2 s by default): a hit is
//!   fast or it is a miss.
//! - Everything else (a blob, an upload, an existence check) has the
//!   operation deadline (`MEMORUN_REMOTE_TIMEOUT`, 10 s by default). A blob
//!   transfer ([`Deadline::transfer`]) may go on past it only while it
//!   keeps at least [`MIN_RATE`] on average after its first [`GRACE`]: a
//!   2 GB blob on a slow link still arrives, a trickle is cut off.
//!
//! Every implementation of `Remote` checks its deadline before each read
//! and write and bounds each blocking call by what is left of it (socket
//! timeouts, or the HTTP client's global timeout and a check after each
//! read), so that no sequence of answers can make an operation last longer
//! than its deadline plus one read.

use std::io;
use std::time::{Duration, Instant};

/// The time a transfer may take before its rate is held against it.
pub const GRACE: Duration = Duration::from_secs(2);

/// The average rate, after [`GRACE`], that keeps a transfer going past its
/// deadline (bytes per second).
pub const MIN_RATE: u64 = 1024 * 1024;

/// When one remote operation must end.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    started: Instant,
    limit: Duration,
    /// A transfer: may go past `limit` while it keeps [`MIN_RATE`].
    transfer: bool,
    /// Bytes of the transfer moved before this part of it began.
    before: u64,
}

impl Deadline {
    /// An operation that must end within `limit` from now.
    pub fn new(limit: Duration) -> Deadline {
        Deadline {
            started: Instant::now(),
            limit,
            transfer: false,
            before: 0,
        }
    }

    /// A transfer that must end within `limit` from now, or later while it
    /// keeps [`MIN_RATE`] after [`GRACE`].
    pub fn transfer(limit: Duration) -> Deadline {
        Deadline {
            transfer: true,
            ..Deadline::new(limit)
        }
    }

    /// The same deadline for a part of the transfer that begins once
    /// `before` bytes of it moved (a part of a multipart upload, a chunk):
    /// what the part moves counts on top of them.
    pub fn after(self, before: u64) -> Deadline {
        Deadline {
            before: self.before + before,
            ..self
        }
    }

    /// How long the operation may last in all, `moved` bytes having been
    /// sent or received.
    fn allowed(&self, moved: u64) -> Duration {
        if !self.transfer {
            return self.limit;
        }
        let moved = moved.saturating_add(self.before);
        let by_rate = GRACE + Duration::from_secs_f64(moved as f64 / MIN_RATE as f64);
        self.limit.max(by_rate)
    }

    /// The most a transfer of `len` bytes may take: its hard cap, for a
    /// client whose timeout is set once per request.
    pub fn cap(&self, len: u64) -> Duration {
        self.allowed(len)
            .saturating_sub(self.started.elapsed())
            .max(Duration::from_millis(1))
    }

    /// What is left, `moved` bytes having been moved; `None` once past.
    pub fn remaining(&self, moved: u64) -> Option<Duration> {
        self.allowed(moved)
            .checked_sub(self.started.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// [`Deadline::remaining`] as an I/O result: a timeout once past.
    pub fn left(&self, moved: u64) -> io::Result<Duration> {
        self.remaining(moved).ok_or_else(|| {
            let why = match self.transfer && self.started.elapsed() > self.limit {
                true => format!(
                    "the transfer fell below {} KiB/s after {} s",
                    MIN_RATE / 1024,
                    self.limit.as_secs_f64()
                ),
                false => format!("no complete answer within {:?}", self.limit),
            };
            io::Error::new(io::ErrorKind::TimedOut, why)
        })
    }

    /// The limit it was made with.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// A reader that fails with a timeout once its deadline has passed,
/// checked after every read (the read itself is bounded by the client).
pub struct Timed<R> {
    inner: R,
    deadline: Deadline,
    moved: u64,
}

impl<R> Timed<R> {
    /// `inner`, read within `deadline`.
    pub fn new(inner: R, deadline: Deadline) -> Timed<R> {
        Timed {
            inner,
            deadline,
            moved: 0,
        }
    }
}

impl<R: io::Read> io::Read for Timed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.deadline.left(self.moved)?;
        let n = self.inner.read(buf)?;
        self.moved += n as u64;
        if n > 0 {
            self.deadline.left(self.moved)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_deadline_is_fixed() {
        let d = Deadline::new(Duration::from_millis(50));
        assert!(d.remaining(0).is_some());
        assert!(d.remaining(u64::MAX / 2) <= Some(Duration::from_millis(50)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(d.remaining(1 << 40).is_none());
        assert_eq!(d.left(0).unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_transfer_goes_on_while_it_keeps_the_rate() {
        let d = Deadline::transfer(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        // Past its limit: nothing moved is cut off, 10 MiB moved is not
        // (2 s + 10 s at 1 MiB/s).
        assert!(d.remaining(0).is_some(), "the grace");
        assert!(d.remaining(10 * MIN_RATE).unwrap() > Duration::from_secs(11));
        assert!(d.cap(10 * MIN_RATE) > Duration::from_secs(11));
        let fixed = Deadline::transfer(Duration::from_secs(30));
        assert!(fixed.cap(MIN_RATE) > Duration::from_secs(29));
        // A later part counts what the parts before it moved.
        let part = d.after(10 * MIN_RATE);
        assert!(part.remaining(0).unwrap() > Duration::from_secs(11));
    }
}
