//! memorun: a memoizing command runner.
//!
//! `memorun -- cmd args` builds a key from the command line, the working
//! directory, chosen env vars and the content of input files, then either
//! replays the recorded stdout, stderr and exit code byte for byte from an
//! embedded SQLite store, or runs the command, streaming its output live,
//! and records the result.
//!
//! Modules, in the order data flows through them:
//!
//! - [`cli`]: the clap definitions, nothing else.
//! - [`config`]: command line and `MEMORUN_*` variables → [`config::Config`].
//! - [`resolve`]: config + environment + files → a [`key::Key`].
//! - [`key`]: the versioned, unambiguous key encoding.
//! - [`inputs`], [`exclude`], [`hashing`]: which arguments and paths are
//!   input files (and which are left out); their digests.
//! - [`store`]: the storage interface and its SQLite + blob implementation.
//! - [`replay`]: a hit, written back byte for byte in the recorded order.
//! - [`run`]: a miss, spawned, streamed live and recorded via [`transcript`].
//! - [`prepare`]: store opened, stdin captured ([`stdin`]), key resolved.
//! - [`memoize`]: the flow that ties them together and picks the exit code.
//! - [`lock`]: per-key OS file locks (single-flight, one refresh per key).
//! - [`refresh`]: the detached background refresh behind `--stale`.
//! - [`explain`], [`why`]: `memorun why`, and what changed between two keys.
//! - [`stats`], [`list`], [`clear`], [`completions`]: the other subcommands.
//! - [`output`], [`ui`], [`progress`], [`quote`], [`exit_codes`]: how
//!   memorun writes, speaks, shows progress and quotes what it shows.

#![warn(missing_docs)]

pub mod clear;
pub mod cli;
pub mod completions;
pub mod config;
pub mod exclude;
pub mod exit_codes;
pub mod explain;
pub mod hashing;
pub mod inputs;
pub mod key;
pub mod list;
pub mod lock;
pub mod memoize;
pub mod output;
pub mod prepare;
pub mod progress;
pub mod quote;
pub mod refresh;
pub mod replay;
pub mod resolve;
pub mod run;
pub mod stats;
pub mod stdin;
pub mod store;
pub mod transcript;
pub mod ui;
pub mod why;

use std::ffi::OsString;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Cli, Sub};
use crate::config::{CacheLocation, Config};
use crate::run::SpawnError;
use crate::store::maintenance::Limits;
use crate::ui::Ui;

/// Run memorun with these arguments (including the program name) and return
/// the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    run::survive_file_size_limit();
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    let env = |name: &str| std::env::var_os(name);
    let result = match cli.subcommand {
        None => with_config(cli.run, "", memoize::memoize),
        Some(Sub::Why { json, run }) => {
            with_config(run, "why ", |config, _| explain::why(config, json))
        }
        Some(Sub::Stats { json, zero, store }) => {
            let (limits, _) = Limits::from_env(&env);
            stats::stats(&CacheLocation::of(&store, &env), limits, json, zero)
        }
        Some(Sub::List { json, store }) => list::list(&CacheLocation::of(&store, &env), json),
        Some(Sub::Clear {
            older_than,
            failed,
            dry_run,
            all,
            store,
            command,
        }) => clear::clear(
            &CacheLocation::of(&store, &env),
            &clear::ClearArgs {
                older_than,
                failed,
                command,
                dry_run,
                all,
            },
        ),
        Some(Sub::Completions { shell }) => completions::print(shell),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(spawn) = e.downcast_ref::<SpawnError>() {
                ui::error(spawn);
                return spawn.exit_code();
            }
            ui::error(format_args!("{e:#}"));
            exit_codes::MEMORUN_ERROR
        }
    }
}

/// Build the config from run options, then call `f` with it. `sub` is the
/// subcommand as typed before the options ("why "), for the usage line.
fn with_config(
    args: cli::RunArgs,
    sub: &str,
    f: impl FnOnce(&Config, &Ui) -> anyhow::Result<i32>,
) -> anyhow::Result<i32> {
    if args.command.is_empty() {
        anyhow::bail!("no command given (usage: memorun {sub}[OPTIONS] -- COMMAND [ARG]...)");
    }
    let config = Config::new(args, |name| std::env::var_os(name))?;
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
