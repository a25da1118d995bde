//! The top-level flow of one invocation: open the store, resolve the key,
//! look it up, then replay or run-and-record, and pick the exit code.
//!
//! Data flows one way: config → store → key → lookup → replay or run →
//! record → exit code. Whenever the store fails, the command still runs,
//! uncached, with one warning: the cache can cost a miss, never a build.

use std::time::Duration;

use anyhow::Result;

use crate::config::{CacheLocation, Config};
use crate::exit_codes;
use crate::replay::{self, Replayed};
use crate::resolve::{self, Resolved};
use crate::run::{self, Status};
use crate::store::sqlite::SqliteStore;
use crate::store::{NewEntry, Store, now_ms};
use crate::transcript::Recorder;
use crate::ui::{Ui, human_duration};

/// Run or replay the configured command; returns memorun's exit code.
pub fn memoize(config: &Config, ui: &Ui) -> Result<i32> {
    let dir = match &config.cache {
        CacheLocation::Dir(dir) => dir,
        CacheLocation::Disabled => return plain(config),
        CacheLocation::Unavailable(why) => {
            ui.warn(why);
            return plain(config);
        }
    };
    let mut store = match SqliteStore::open(dir) {
        Ok(store) => store,
        Err(e) => {
            ui.warn(format_args!("{e:#}; running uncached"));
            return plain(config);
        }
    };
    let resolved = match resolve::resolve(config, store.secret(), std::env::vars_os()) {
        Ok(r) => r,
        Err(e) => {
            ui.warn(format_args!("{e:#}; running uncached"));
            return plain(config);
        }
    };
    if !config.force {
        match store.lookup(&resolved.key.digest) {
            Ok(Some(entry)) => match replay::replay(&store, &entry)? {
                Replayed::Done => {
                    // Counting the hit is bookkeeping: never fail over it.
                    let _ = store.record_hit(&entry.key);
                    ui.status(format_args!(
                        "hit, recorded {} ago, saved {}",
                        human_duration(age(entry.created_ms)),
                        human_duration(entry.duration)
                    ));
                    return Ok(entry.exit_code);
                }
                Replayed::ReaderGone => {
                    let _ = store.record_hit(&entry.key);
                    return Ok(exit_codes::for_signal(libc::SIGPIPE));
                }
                Replayed::Corrupt => {
                    ui.status("stored entry failed verification; removed it, running again");
                    let _ = store.remove(&entry.key);
                }
                Replayed::Unreadable(e) => {
                    ui.warn(format_args!("{e:#}; running uncached"));
                    return plain(config);
                }
            },
            Ok(None) => {}
            Err(e) => {
                ui.warn(format_args!(
                    "cannot read the cache: {e:#}; running uncached"
                ));
                return plain(config);
            }
        }
    }
    run_and_record(config, ui, &mut store, &resolved)
}

/// Run without the cache.
fn plain(config: &Config) -> Result<i32> {
    Ok(run::run_plain(&config.command)?.exit_code())
}

fn age(created_ms: i64) -> Duration {
    Duration::from_millis((now_ms() - created_ms).max(0) as u64)
}

/// Why a finished run is not recorded.
fn unrecordable(config: &Config, outcome: &run::Outcome) -> Option<String> {
    match outcome.status {
        Status::Signaled(sig) => return Some(format!("killed by signal {sig}")),
        Status::Exited(code) if code != 0 && !config.cache_failures => {
            return Some(format!("exit code {code} (--cache-failures records it)"));
        }
        Status::Exited(_) => {}
    }
    if outcome.delivery_failed {
        return Some("its output could not be delivered".into());
    }
    if let Some(e) = &outcome.record_error {
        return Some(format!(
            "cannot record its output: {}",
            crate::ui::io_reason(e)
        ));
    }
    None
}

fn run_and_record(
    config: &Config,
    ui: &Ui,
    store: &mut SqliteStore,
    resolved: &Resolved,
) -> Result<i32> {
    let recorder = Recorder::new(store.spool(), store.spool(), store.spool());
    let outcome = run::run_captured(&config.command, Some(recorder))?;
    let ran = if config.force { "forced run" } else { "miss" };
    let took = human_duration(outcome.duration);
    if let Some(e) = &outcome.record_error {
        ui.warn(format_args!(
            "cannot record the output: {}; the result was not cached",
            crate::ui::io_reason(e)
        ));
    }
    match (unrecordable(config, &outcome), outcome.recording) {
        (None, Some(rec)) => {
            let entry = NewEntry {
                key: &resolved.key,
                display: resolved.display.clone(),
                cwd: resolved.cwd.clone(),
                duration: outcome.duration,
                exit_code: outcome.status.exit_code(),
                stdout: rec.stdout,
                stderr: rec.stderr,
                order: rec.order,
            };
            match store.insert(entry) {
                Ok(()) => ui.status(format_args!("{ran}, ran in {took}, recorded")),
                Err(e) => ui.warn(format_args!("cannot record the result: {e:#}")),
            }
        }
        (why, _) => {
            let why = why.unwrap_or_else(|| "recording failed".into());
            ui.status(format_args!("{ran}, ran in {took}, not recorded: {why}"));
        }
    }
    Ok(outcome.status.exit_code())
}
