//! Running the command on a miss: [`spawn`] starts it (in its own process
//! group when there is no terminal), streams and captures its output and
//! forwards signals; [`refresh`] re-runs a stale entry in the background;
//! [`trace`] runs it under ptrace and reports every file it read or wrote.

pub mod refresh;
pub mod spawn;
pub mod trace;
