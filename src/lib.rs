//! memorun: a memoizing command runner.
//!
//! `memorun -- cmd args` builds a key from the command line, the working
//! directory, chosen env vars and the content of input files, then either
//! replays the recorded stdout, stderr and exit code byte for byte from an
//! embedded SQLite store, or runs the command, streaming its output live,
//! and records the result.
//!
//! The crate is laid out by concern, in the order data flows through it:
//!
//! - [`cli`]: the clap definitions, nothing else; [`config`] turns them and
//!   the `MEMORUN_*` variables into a [`config::Config`].
//! - [`key`]: what goes into the key and how it is encoded: the command
//!   line, the inputs (found, left out, hashed), stdin, and how two keys
//!   differ.
//! - [`store`]: the SQLite database, the blob files, the hit log, the stat
//!   cache, locks, temp files, and what is kept, evicted and collected.
//! - [`replay`]: a hit, written back byte for byte in the recorded
//!   interleaving, and the policy that says what may be replayed or
//!   recorded.
//! - [`outputs`]: the files a command writes, captured with its entry and
//!   restored on a hit (clean, atomic, never through a symlink).
//! - [`remote`]: a cache shared between machines (Redis, HTTP, S3): asked on a
//!   local miss, written after a recorded run, verified before anything of
//!   it is installed.
//! - [`exec`]: a miss: the command spawned, its output streamed live and
//!   captured, signals forwarded; and the background refresh.
//! - [`commands`]: one file per thing a user can ask for (`run`, `why`,
//!   `stats`, `list`, `clear`, `completions`), each tying the layers above
//!   together.
//! - [`term`]: how memorun writes, speaks, shows progress and quotes what
//!   it shows.
//! - [`error`], [`exit_codes`]: why memorun ends without the command's
//!   status, and every exit status it chooses itself.
//!
//! # Memory mapping
//!
//! memorun maps only its own blob files, to verify them before a replay
//! ([`store::blobs`]): they live in its private cache directory and are
//! never modified in place (a new blob is renamed over the path, leaving a
//! mapped inode intact), so a mapping cannot shrink under it. It never maps
//! a user's file: an input truncated by someone else while it is hashed
//! must give an I/O result, not a SIGBUS that kills memorun and the user's
//! command with it ([`base::hashing`] reads).
//!
//! # Unsafe code
//!
//! Denied, except at the named sites that allow it on the smallest item,
//! each block with a `SAFETY:` comment: SQLite's C API (`store::db`:
//! configuration before the first connection, keeping the WAL), the blob
//! mmap (`store::blobs`), the refresh's `pre_exec` (`exec::refresh`), the
//! signal handlers' registration (`exec::spawn`), and in `main.rs` the C
//! `main` the hit's start-up relies on (SIGPIPE ignored, the standard
//! descriptors checked). The tracer's `ptrace`, seccomp and fork code is
//! the `memorun-trace` crate's ([`exec::trace`]).

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub(crate) mod base;
pub mod cli;
pub mod commands;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod exec;
pub mod exit_codes;
pub mod key;
pub(crate) mod outputs;
pub mod remote;
pub(crate) mod replay;
pub mod store;
pub(crate) mod term;

use std::ffi::OsString;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Cli, Sub};
use crate::config::{CacheLocation, Config, limits_from_env, remote_display};
use crate::error::Failure;
use crate::term::ui::Ui;
use crate::term::{quote, ui};

/// Run memorun with these arguments (including the program name) and return
/// the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    exec::spawn::survive_file_size_limit();
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    let env = |name: &str| std::env::var_os(name);
    let result = match cli.subcommand {
        None => with_config(cli.run, "", commands::run::run),
        Some(Sub::Why { json, run }) => {
            with_config(run, "why ", |config, _| commands::why::why(config, json))
        }
        Some(Sub::Stats { json, zero, store }) => {
            let (limits, _) = limits_from_env(&env);
            commands::stats::stats(
                &CacheLocation::of(&store, &env),
                limits,
                remote_display(&env).as_deref(),
                json,
                zero,
            )
            .map_err(Failure::Memorun)
        }
        Some(Sub::List { json, limit, store }) => {
            commands::list::list(&CacheLocation::of(&store, &env), json, limit)
                .map_err(Failure::Memorun)
        }
        Some(Sub::Clear {
            older_than,
            failed,
            dry_run,
            all,
            prefix,
            store,
            command,
        }) => commands::clear::clear(
            &CacheLocation::of(&store, &env),
            &commands::clear::ClearArgs {
                older_than,
                failed,
                command,
                dry_run,
                all,
                prefix,
            },
        )
        .map_err(Failure::Memorun),
        Some(Sub::Completions { shell }) => {
            commands::completions::print(shell).map_err(Failure::Memorun)
        }
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            failure.report();
            failure.exit_code()
        }
    }
}

/// Build the config from run options, then call `f` with it. `sub` is the
/// subcommand as typed before the options ("why "), for the usage line.
fn with_config(
    args: cli::RunArgs,
    sub: &str,
    f: impl FnOnce(&Config, &Ui) -> Result<i32, Failure>,
) -> Result<i32, Failure> {
    if args.command.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no command given (usage: memorun {sub}[OPTIONS] -- COMMAND [ARG]...)"
        )));
    }
    let config = Config::new(args, |name| std::env::var_os(name)).map_err(Failure::Usage)?;
    let ui = Ui::new(config.verbosity);
    for w in &config.warnings {
        ui.warn(w);
    }
    for n in &config.notes {
        ui.status(n);
    }
    f(&config, &ui)
}

/// The subcommand named in `args` (before any `--`), if any.
fn subcommand_in(args: &[OsString]) -> Option<&str> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .find(|a| cmd.get_subcommands().any(|s| s.get_name() == *a))
}

/// What to suggest for an unexpected word `bad` in `args`: a command given
/// without `--` (`memorun cargo test`) is run as `memorun -- cargo test`.
fn suggestion(e: &clap::Error, args: &[OsString]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    if e.kind() != ErrorKind::UnknownArgument || subcommand_in(args).is_some() {
        return None;
    }
    let Some(ContextValue::String(bad)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if bad.starts_with('-') {
        return None;
    }
    let at = args.iter().skip(1).position(|a| a == bad.as_str())? + 1;
    let mut fixed: Vec<OsString> = vec!["memorun".into()];
    fixed.extend(args[1..at].iter().cloned());
    fixed.push("--".into());
    fixed.extend(args[at..].iter().cloned());
    Some(format!(
        "to run a command, put '--' before it: {}",
        quote::command(&fixed)
    ))
}

/// Report a clap error: help and version go to stdout with status 0; a
/// real usage error is one `memorun:` line with status 125, pointing to
/// the help of the subcommand it was for.
fn usage_error(e: &clap::Error, args: &[OsString]) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            exit_codes::MEMORUN_ERROR
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            match (suggestion(e, args), subcommand_in(args)) {
                (Some(hint), _) => ui::error(format_args!("{first}; {hint}")),
                (None, Some(sub)) => {
                    ui::error(format_args!("{first} (see 'memorun {sub} --help')"))
                }
                (None, None) => ui::error(format_args!("{first} (see 'memorun --help')")),
            }
            exit_codes::MEMORUN_ERROR
        }
    }
}
