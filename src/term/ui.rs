//! How memorun talks on stderr: the `memorun:` prefix, verbosity, colour,
//! and warnings at most once per invocation.
//!
//! Without `-v`, a successful run or replay adds no byte of its own to the
//! output, so a replay is indistinguishable from a run.

use std::cell::Cell;

use anstyle::{AnsiColor, Color, Style};

use crate::term::output;

/// How much memorun says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Warnings and errors.
    Normal,
    /// A status line too.
    Verbose,
}

/// memorun's voice on stderr.
#[derive(Debug)]
pub struct Ui {
    verbosity: Verbosity,
    warned: Cell<bool>,
}

impl Ui {
    /// A UI at the given verbosity.
    pub fn new(verbosity: Verbosity) -> Ui {
        Ui {
            verbosity,
            warned: Cell::new(false),
        }
    }

    /// Print `memorun: warning: {msg}`, once per invocation, unless quiet.
    pub fn warn(&self, msg: impl std::fmt::Display) {
        if self.verbosity == Verbosity::Quiet || self.warned.replace(true) {
            return;
        }
        print_line(&format!("{}{}", label("warning: ", WARNING), safe(msg)));
    }

    /// Print `memorun: note: {msg}` unless quiet (not a warning: it does
    /// not use up the one warning per invocation).
    pub fn note(&self, msg: impl std::fmt::Display) {
        if self.verbosity != Verbosity::Quiet {
            print_line(&format!("{}{}", label("note: ", NOTE), safe(msg)));
        }
    }

    /// Whether progress (spinner, hashing bar) may be drawn on stderr.
    pub fn progress_allowed(&self) -> bool {
        crate::term::progress::allowed_here(self.verbosity == Verbosity::Quiet)
    }

    /// Whether `-v` was given.
    pub fn is_verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// Print a `-v` status line.
    pub fn status(&self, msg: impl std::fmt::Display) {
        if self.verbosity == Verbosity::Verbose {
            print_line(&format!("{}{}", label("", STATUS), safe(msg)));
        }
    }
}

/// Print `memorun: {msg}` on stderr, always.
pub fn error(msg: impl std::fmt::Display) {
    print_line(&format!("{}{}", label("", ERROR), safe(msg)));
}

/// A message made safe for the terminal: a path or argument in it cannot
/// add a line or send an escape sequence (see `quote`).
fn safe(msg: impl std::fmt::Display) -> String {
    let msg = msg.to_string();
    match crate::term::quote::printable(&msg) {
        std::borrow::Cow::Borrowed(_) => msg,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

const WARNING: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::Yellow)));
const NOTE: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::Cyan)));
const ERROR: Style = Style::new()
    .bold()
    .fg_color(Some(Color::Ansi(AnsiColor::Red)));
const STATUS: Style = Style::new().bold();

/// `memorun: ` plus a label, styled when colour is on.
fn label(kind: &str, style: Style) -> String {
    if colour_enabled() {
        format!("{style}memorun: {kind}{style:#}")
    } else {
        format!("memorun: {kind}")
    }
}

/// Whether to colour: only when stderr is a terminal and `NO_COLOR` is not
/// set to something (see no-color.org).
pub fn colour_enabled() -> bool {
    colour_decision(
        output::STDERR.is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour_decision(stderr_is_tty: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_tty && no_color.is_none_or(|v| v.is_empty())
}

fn print_line(line: &str) {
    let mut s = String::with_capacity(line.len() + 1);
    s.push_str(line);
    s.push('\n');
    // A failure to report is not worth failing the user's command over.
    let _ = output::STDERR.write_all(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_decision(true, None));
        assert!(colour_decision(true, Some(OsStr::new(""))));
        assert!(!colour_decision(true, Some(OsStr::new("1"))));
        assert!(!colour_decision(false, None));
    }
}
