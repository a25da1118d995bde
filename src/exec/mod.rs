//! Running the command on a miss: [`spawn`] starts it (in its own process
//! group when there is no terminal), streams and captures its output and
//! forwards signals; [`refresh`] re-runs a stale entry in the background;
//! [`trace`] runs it under ptrace and reports every file it read or wrote;
//! [`capture`] stores the output files of a run about to be recorded.

pub(crate) mod capture;
pub(crate) mod refresh;
pub(crate) mod spawn;
pub(crate) mod trace;
