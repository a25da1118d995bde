//! Every exit status memorun itself chooses, in one place.
//!
//! On a miss and on a replay memorun exits with the command's own code; the
//! values here are for the cases where there is no such code.

/// memorun's own errors, usage errors included. Not 2 (clap's default), which
/// would be confused with the command's own 2.
pub const MEMORUN_ERROR: i32 = 125;

/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;

/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// Added to a signal number when the command was killed by that signal.
pub const SIGNAL_BASE: i32 = 128;

/// The exit status for a command killed by `signal`.
pub fn for_signal(signal: i32) -> i32 {
    SIGNAL_BASE + signal
}
