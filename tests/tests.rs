//! End-to-end tests: the real memorun binary in a temp work directory with
//! a temp cache. One test binary; one module per area.

mod util;

mod big_output;
mod cache_dir;
mod damage;
mod exit_status;
mod fail_open;
mod faults;
mod field;
mod generated;
mod help;
mod hostile;
mod key;
mod key_control;
mod layering;
mod lifecycle;
mod list;
mod outputs;
mod planted;
mod recipes;
mod records;
mod regressions;
mod remote;
mod remote_bounds;
mod replay;
mod s3;
mod servers;
mod signals;
mod terminal;
mod trace_holes;
mod trace_key;
mod traced;
