//! A broken remote, remembered across invocations: after a timeout, a
//! refused or reset connection or a server error (5xx), every process that
//! shares the cache directory skips that remote for a while.
//!
//! memorun has no long-lived process to remember it in (ccache, sccache and
//! Bazel do), so the cache directory holds it: one small JSON file per
//! remote URL, `remote-<16 hex>.state` (BLAKE3 of the URL shown, without
//! credentials), written to a temp file and renamed into place, updated
//! under a lock file in `locks/`. A file that does not parse, or names
//! another URL, is ignored: the remote is tried.
//!
//! The cool-down is [`FIRST`] (60 s), doubling each time the remote fails
//! again after one ended, up to [`LONGEST`] (10 min). The process that
//! starts one warns once, saying until when and how to retry now
//! (`MEMORUN_REMOTE_RETRY=1`); the processes that skip the remote meanwhile
//! say nothing (`-v` says why). The first operation that succeeds after a
//! cool-down removes the file.
//!
//! Answers about the request rather than the server (401, 403, 404, 413, a
//! Redis error reply) never start one: they are the same for every process,
//! and each turns the remote off (or, for an upload, read-only) only for
//! its own invocation.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::temp::Temp;
use crate::store::now_ms;
use crate::store::private;

/// The first cool-down.
pub(crate) const FIRST: Duration = Duration::from_secs(60);

/// The longest.
pub(crate) const LONGEST: Duration = Duration::from_secs(600);

/// The largest state file read.
const MAX_STATE: u64 = 16 * 1024;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The remote, as shown (no credentials).
    pub url: String,
    /// Failures in a row, each after the last cool-down ended.
    pub failures: u32,
    /// When the current cool-down ends (ms since the epoch).
    pub until_ms: i64,
    /// What the last failure was.
    pub reason: String,
}

impl State {
    /// Whether it is cooling down now.
    pub(crate) fn active(&self) -> bool {
        self.until_ms > now_ms()
    }

    /// How long the cool-down after `failures` failures in a row lasts.
    pub(crate) fn length(failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        (FIRST * (1u32 << doublings)).min(LONGEST)
    }
}

/// The state of one remote in one cache directory.
#[derive(Debug, Clone)]
pub struct Cooldown {
    url: String,
    path: PathBuf,
    lock: PathBuf,
    tmp_dir: PathBuf,
}

/// The name of the state file of the remote shown as `url`.
pub fn file_name(url: &str) -> String {
    let h = blake3::hash(url.as_bytes()).to_hex();
    format!("remote-{}.state", &h[..16])
}

/// What [`Cooldown::failed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Started {
    /// This process started a cool-down: it warns.
    Now(State),
    /// Another process had started one meanwhile: say nothing.
    Already(State),
    /// The state could not be written.
    Unwritable,
}

impl Cooldown {
    /// The state of the remote shown as `url`, in the cache directory
    /// `root` (with its `locks/` and `tmp/`).
    pub fn new(root: &Path, url: &str) -> Cooldown {
        Cooldown {
            url: url.to_string(),
            path: root.join(file_name(url)),
            lock: root.join("locks").join(file_name(url)),
            tmp_dir: root.join("tmp"),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state, if there is a sound one for this URL.
    pub(crate) fn read(&self) -> Option<State> {
        read_state(&self.path).filter(|s| s.url == self.url)
    }

    /// The remote failed in a way that says it is down or broken: start a
    /// cool-down, unless another process started one meanwhile.
    pub(crate) fn failed(&self, reason: &str) -> Started {
        let Ok(_lock) = self.locked() else {
            return Started::Unwritable;
        };
        let old = self.read();
        if let Some(s) = old.as_ref().filter(|s| s.active()) {
            return Started::Already(s.clone());
        }
        let failures = old.map_or(0, |s| s.failures).saturating_add(1);
        let state = State {
            url: self.url.clone(),
            failures,
            until_ms: now_ms() + State::length(failures).as_millis() as i64,
            reason: reason.chars().take(300).collect(),
        };
        match self.write(&state) {
            Ok(()) => Started::Now(state),
            Err(_) => Started::Unwritable,
        }
    }

    /// The remote answered: its cool-down, if any, is over.
    pub(crate) fn succeeded(&self) {
        if fs::symlink_metadata(&self.path).is_ok()
            && let Ok(_lock) = self.locked()
        {
            let _ = fs::remove_file(&self.path);
        }
    }

    fn locked(&self) -> io::Result<fs::File> {
        if let Some(dir) = self.lock.parent() {
            private::ensure_subdir(dir).map_err(io::Error::other)?;
        }
        let f = private::create_private_file(&self.lock)?;
        private::lock(&f)?;
        Ok(f)
    }

    fn write(&self, state: &State) -> io::Result<()> {
        private::ensure_subdir(&self.tmp_dir).map_err(io::Error::other)?;
        let mut temp = Temp::create(&self.tmp_dir, "spool-")?;
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        temp.write_all(&bytes)?;
        temp.replace(&self.path)
    }
}

/// A state file, if it parses (nothing else: a damaged one is ignored).
pub(crate) fn read_state(path: &Path) -> Option<State> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(MAX_STATE).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every remote's state in the cache directory `root` (for `stats`).
pub(crate) fn all(root: &Path) -> Vec<State> {
    let mut out: Vec<State> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("remote-") && n.ends_with(".state")
        })
        .filter_map(|e| {
            let s = read_state(&e.path())?;
            (e.file_name().to_string_lossy() == file_name(&s.url)).then_some(s)
        })
        .collect();
    out.sort_by(|a, b| a.url.cmp(&b.url));
    out
}

/// `HH:MM:SS UTC` of a time in ms since the epoch.
pub(crate) fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_double_up_to_ten_minutes() {
        let l: Vec<u64> = (1..=6).map(|f| State::length(f).as_secs()).collect();
        assert_eq!(l, [60, 120, 240, 480, 600, 600]);
        assert_eq!(State::length(u32::MAX), LONGEST);
    }

    #[test]
    fn started_once_then_already_then_cleared() {
        let t = tempfile::tempdir().unwrap();
        let c = Cooldown::new(t.path(), "redis://h:1");
        assert_eq!(c.read(), None);
        let Started::Now(s) = c.failed("timed out") else {
            panic!("not started")
        };
        assert_eq!(s.failures, 1);
        assert!(s.active());
        assert!(matches!(c.failed("again"), Started::Already(_)));
        assert_eq!(all(t.path()), std::slice::from_ref(&s));
        // Another URL's state is its own.
        assert_eq!(Cooldown::new(t.path(), "redis://h:2").read(), None);
        // Expired, a failure doubles it.
        let mut old = s;
        old.until_ms = now_ms() - 1;
        c.write(&old).unwrap();
        let Started::Now(s) = c.failed("timed out") else {
            panic!("not started")
        };
        assert_eq!(s.failures, 2);
        c.succeeded();
        assert_eq!(c.read(), None);
        assert!(all(t.path()).is_empty());
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let c = Cooldown::new(t.path(), "redis://h:1");
        fs::write(c.path(), b"{\"url\":\"redis://h:1\",\"fail").unwrap();
        assert_eq!(c.read(), None);
        assert!(matches!(c.failed("x"), Started::Now(_)));
    }

    #[test]
    fn clock_in_utc() {
        assert_eq!(clock(1_369_353_600_000 + 3_723_000), "01:02:03 UTC");
    }
}
