//! Run a command under memorun's tracer (this crate) and print what it
//! touched.
//!
//!     cargo run --release -p memorun-trace --example trace -- [--list] COMMAND [ARG]...
//!
//! The command's stdin, stdout and stderr are this program's; the counts
//! (and with `--list` every path with its classification) go to stderr.
//! Exits with the command's status (128+N for signal N), or 125 when the
//! command cannot be traced.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;

use memorun_trace::{self as trace, Spawn, StartError, TraceOptions};

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let list = args.first().is_some_and(|a| a == "--list");
    if list {
        args.remove(0);
    }
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("usage: trace [--list] COMMAND [ARG]...");
        std::process::exit(125);
    }
    let spawn = Spawn {
        argv: &args,
        stdio: [None, None, None],
        own_group: false,
        env_remove: None,
    };
    let options = TraceOptions {
        stdin_terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
        ..TraceOptions::default()
    };
    let traced = match trace::run(spawn, &options) {
        Ok(t) => t,
        Err(StartError::Unavailable(why)) => {
            eprintln!("trace: cannot trace: {why}");
            std::process::exit(125);
        }
        Err(StartError::Spawn(e)) => {
            eprintln!("trace: cannot run {:?}: {e}", args[0]);
            std::process::exit(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let log = &traced.log;
    if list {
        for p in &log.paths {
            eprintln!("{:<40} {}", p.access.to_string(), p.path.display());
        }
    }
    let c = log.counts;
    eprintln!(
        "trace: {} read, {} executed, {} listed, {} probed absent, {} probed present, {} outputs; \
         {} processes, {} stops{}{}",
        c.read,
        c.executed,
        c.listed,
        c.probed_absent,
        c.probed_present,
        c.outputs,
        c.processes,
        c.stops,
        match &log.untraceable {
            Some(why) => format!("; NOT TRACEABLE: {why}"),
            None => String::new(),
        },
        if log.outlived > 0 {
            format!("; {} outlived the command and were killed", log.outlived)
        } else {
            String::new()
        },
    );
    let status = traced.status;
    std::process::exit(
        status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(125),
    );
}
