//! The one place that says what may be replayed and what may be recorded.
//!
//! - **Replay** ([`refusal`]): an entry past `--ttl` is not replayed; nor is
//!   a recorded failure to a run without `--cache-failures` (that run would
//!   not have recorded it). Whether its output files can be restored is
//!   decided by `replay::restore`: an entry without an output this run
//!   declares, or whose automatic output was changed by someone else, is
//!   not replayed either.
//! - **Record** ([`unrecordable`]): a run killed by a signal, a non-zero exit
//!   without `--cache-failures`, a run memorun was interrupted during, one
//!   whose output could not be delivered or stored, and one whose inputs
//!   changed while it ran (the race guard) are not recorded.
//!
//! Invariant: the two agree: whatever a run would not record, a run with
//! the same options does not replay.

use std::io;
use std::time::Duration;

use crate::key::inputs;
use crate::key::resolve::Resolved;
pub use crate::store::counters::NotRecorded;
use crate::store::{Entry, age};
use crate::term::format::{human_duration, io_reason};

/// The options that decide what a run may replay and record.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `--ttl`: entries older than this are not replayed.
    pub ttl: Option<Duration>,
    /// `--cache-failures`: non-zero exits are recorded and replayed.
    pub cache_failures: bool,
}

/// Why `entry` may not be replayed to this run, if it may not.
pub fn refusal(policy: &Policy, entry: &Entry) -> Option<String> {
    let entry_age = age(entry.created_ms);
    if let Some(ttl) = policy.ttl.filter(|ttl| entry_age > *ttl) {
        return Some(format!(
            "the entry is {} old, past --ttl {}",
            human_duration(entry_age),
            human_duration(ttl)
        ));
    }
    if entry.exit_code != 0 && !policy.cache_failures {
        return Some(format!(
            "the entry is a failure (exit code {}) and --cache-failures is off",
            entry.exit_code
        ));
    }
    None
}

/// How a run ended, as far as recording it is concerned.
#[derive(Debug)]
pub struct RunEnd<'a> {
    /// The exit code, or the signal that killed the command.
    pub status: Result<i32, i32>,
    /// memorun itself got an interrupting signal while the command ran.
    pub interrupted: bool,
    /// Some output could not be delivered (the reader went away).
    pub delivery_failed: bool,
    /// Why recording the output failed part-way, if it did.
    pub record_error: Option<&'a io::Error>,
}

/// Why the run that ended as `end` may not be recorded, if it may not.
pub fn unrecordable(policy: &Policy, end: &RunEnd<'_>, resolved: &Resolved) -> Option<NotRecorded> {
    match end.status {
        Err(sig) => return Some(NotRecorded::Signal(format!("killed by signal {sig}"))),
        Ok(code) if code != 0 && !policy.cache_failures => {
            return Some(NotRecorded::Exit(format!(
                "exit code {code} (--cache-failures records it)"
            )));
        }
        Ok(_) => {}
    }
    if end.interrupted {
        return Some(NotRecorded::Signal(
            "memorun was interrupted by a signal while the command ran".into(),
        ));
    }
    if end.delivery_failed {
        return Some(NotRecorded::Undelivered(
            "its output could not be delivered".into(),
        ));
    }
    if let Some(e) = end.record_error {
        return Some(NotRecorded::Cache(format!(
            "cannot record its output: {}",
            io_reason(e)
        )));
    }
    if let Some(why) = &resolved.unrecordable {
        return Some(NotRecorded::InputChanged(why.clone()));
    }
    if let Some(w) = inputs::changed_during_run(&resolved.watch, resolved.started_ns) {
        return Some(NotRecorded::InputChanged(inputs::changed_message(w)));
    }
    None
}
