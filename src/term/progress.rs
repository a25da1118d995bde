//! Progress on a terminal: a spinner while a miss runs, a bar while inputs
//! are hashed. Never on a pipe, in CI, with `--quiet`, or on a replay.
//!
//! Invariant: the spinner is drawn only when the cursor is at the start of a
//! line. Chunks of the command's output are written with the spinner
//! cleared; a chunk that ends mid-line takes the spinner down until a later
//! chunk ends its line, so output and spinner never share a line and nothing
//! is left on screen after exit. Output bytes are never held back for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::term::format::{human_duration, human_size};
use crate::term::output;

/// How long a miss runs before the spinner appears.
pub const SPINNER_DELAY: Duration = Duration::from_millis(300);
/// How long hashing runs before its bar appears.
pub const HASH_BAR_DELAY: Duration = Duration::from_secs(1);
/// How often the spinner is redrawn.
pub const TICK: Duration = Duration::from_millis(100);

/// Whether progress may be shown: stderr is a terminal (not `TERM=dumb`),
/// `CI` is unset and memorun is not quiet.
pub fn allowed(
    stderr_is_tty: bool,
    ci: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
    quiet: bool,
) -> bool {
    stderr_is_tty && ci.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb") && !quiet
}

/// [`allowed`] for this process.
pub fn allowed_here(quiet: bool) -> bool {
    allowed(
        output::STDERR.is_terminal(),
        std::env::var_os("CI").as_deref(),
        std::env::var_os("TERM").as_deref(),
        quiet,
    )
}

fn terminal_width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, w)| usize::from(w))
}

/// Shorten `s` to at most `max` characters, with an ellipsis.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let mut out: String = s.chars().take(keep).collect();
    out.push('…');
    out
}

/// The spinner shown while a miss runs.
pub struct Spinner {
    start: Instant,
    expected: Option<Duration>,
    label: String,
    bar: Option<ProgressBar>,
    /// Whether each of stdout and stderr is the terminal.
    tty: [bool; 2],
    at_line_start: bool,
}

impl Spinner {
    /// A spinner for `display` (the command line), with the duration an
    /// earlier run took, if known. The caller checks [`allowed`] first.
    pub fn new(display: &str, expected: Option<Duration>) -> Spinner {
        Spinner {
            start: Instant::now(),
            expected,
            label: shorten(&crate::term::quote::printable(display), terminal_width()),
            bar: None,
            tty: [output::STDOUT.is_terminal(), output::STDERR.is_terminal()],
            at_line_start: true,
        }
    }

    /// Elapsed time, and against the usual duration when known.
    fn timing(&self) -> String {
        let elapsed = self.start.elapsed();
        match self.expected {
            Some(exp) if elapsed <= exp => format!(
                "{}, usually takes {} ({} left)",
                human_duration(elapsed),
                human_duration(exp),
                human_duration(exp - elapsed)
            ),
            Some(exp) => format!(
                "{}, usually takes {}",
                human_duration(elapsed),
                human_duration(exp)
            ),
            None => human_duration(elapsed),
        }
    }

    fn show(&mut self) {
        // The command comes last and is cut to the terminal's width, so the
        // line never wraps.
        let style = match self.expected {
            Some(_) if terminal_width() >= 72 => {
                ProgressStyle::with_template("{spinner} [{bar:20}] {prefix}  {wide_msg}")
            }
            _ => ProgressStyle::with_template("{spinner} {prefix}  {wide_msg}"),
        }
        .expect("valid template")
        .progress_chars("=> ");
        let len = self.expected.map_or(0, |d| d.as_millis() as u64).max(1);
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(self.timing())
            .with_message(self.label.clone());
        self.bar = Some(bar);
    }

    /// Redraw if due: called from the output loop every [`TICK`] and after
    /// each chunk.
    pub fn tick(&mut self) {
        if self.start.elapsed() < SPINNER_DELAY || !self.at_line_start {
            return;
        }
        if self.bar.is_none() {
            self.show();
        }
        let timing = self.timing();
        let pos = self.start.elapsed().as_millis() as u64;
        if let Some(bar) = &self.bar {
            if let Some(len) = bar.length() {
                bar.set_position(pos.min(len));
            }
            // Draws, and advances the spinner.
            bar.set_prefix(timing);
            bar.tick();
        }
    }

    /// Write a chunk of the command's output (with `write`) so that it does
    /// not tangle with the spinner. `stream` is 0 for stdout, 1 for stderr.
    pub fn write<R>(&mut self, stream: usize, chunk: &[u8], write: impl FnOnce() -> R) -> R {
        if !self.tty[stream] || chunk.is_empty() {
            return write();
        }
        let ends_line = chunk.last() == Some(&b'\n');
        let result = match &self.bar {
            // Cleared, written, redrawn: the cursor is back at a line start.
            Some(bar) if ends_line => bar.suspend(write),
            Some(_) => {
                self.hide();
                write()
            }
            None => write(),
        };
        self.at_line_start = ends_line;
        result
    }

    fn hide(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Take the spinner off the screen for good.
    pub fn finish(mut self) {
        self.hide();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.hide();
    }
}

/// Counts files and bytes hashed, and shows a bar once hashing has taken
/// more than [`HASH_BAR_DELAY`].
pub struct HashProgress {
    files: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HashProgress {
    /// Start counting towards `total_files` and `total_bytes`; the bar is
    /// drawn from a helper thread only when `allowed`.
    pub fn start(total_files: u64, total_bytes: u64, allowed: bool) -> HashProgress {
        let files = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let thread = allowed.then(|| {
            let (files, bytes, done) = (files.clone(), bytes.clone(), done.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < HASH_BAR_DELAY {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let style = ProgressStyle::with_template("hashing inputs [{bar:20}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> ");
                let bar = ProgressBar::with_draw_target(
                    Some(total_bytes.max(1)),
                    ProgressDrawTarget::stderr(),
                )
                .with_style(style);
                while !done.load(Ordering::Relaxed) {
                    let b = bytes.load(Ordering::Relaxed);
                    bar.set_position(b.min(total_bytes));
                    bar.set_message(format!(
                        "{}/{} files, {} of {}",
                        files.load(Ordering::Relaxed),
                        total_files,
                        human_size(b),
                        human_size(total_bytes)
                    ));
                    std::thread::sleep(TICK);
                }
                bar.finish_and_clear();
            })
        });
        HashProgress {
            files,
            bytes,
            done,
            thread,
        }
    }

    /// Count one file of `len` bytes hashed.
    pub fn add(&self, len: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Stop, and take the bar off the screen.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HashProgress {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn shown_only_on_a_terminal_outside_ci_when_not_quiet() {
        assert!(allowed(true, None, Some(OsStr::new("xterm")), false));
        assert!(allowed(true, Some(OsStr::new("")), None, false));
        assert!(!allowed(false, None, None, false), "a pipe");
        assert!(!allowed(true, Some(OsStr::new("true")), None, false), "CI");
        assert!(!allowed(true, None, None, true), "--quiet");
        assert!(
            !allowed(true, None, Some(OsStr::new("dumb")), false),
            "TERM=dumb"
        );
    }

    #[test]
    fn long_commands_are_shortened() {
        assert_eq!(shorten("make docs", 20), "make docs");
        assert_eq!(shorten("abcdefghij", 5), "abcd…");
    }
}
