//! The top-level flow of one invocation: open the store, resolve the key,
//! look it up, then replay or run-and-record, and pick the exit code.
//!
//! Data flows one way: config → store → key → lookup → replay or run →
//! record → exit code. Past the hit records, the run path sees one storage
//! object, a `remote::tiered::Tiered` (the local store, then the remote):
//! it asks it for a hit, tells it of a miss (single flight, the remote),
//! hands it the result. Whenever the store fails, the command still runs,
//! uncached, with one warning: the cache can cost a miss, never a build.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::commands::diff;
use crate::commands::prepare::{self, EntryKey, NotPrepared, Prepared};
use crate::config::Config;
use crate::config::TraceConfig;
use crate::error::Failure;
use crate::exec::capture;
use crate::exec::refresh::{self, RefreshStdin};
use crate::exec::spawn::{self, SpawnError, Status, TracedError};
use crate::exec::trace::{self, TraceOptions};
use crate::exit_codes;
use crate::key::inputs;
use crate::key::resolve::Resolved;
use crate::key::stdin::{self, Feed};
use crate::key::traced::Probe;
use crate::key::{self, Key, Kind, State};
use crate::remote::Tier;
use crate::remote::tiered::{Invocation, Next, Tiered};
use crate::replay::interleaving::Recorder;
use crate::replay::policy::{self, NotRecorded};
use crate::replay::restore;
use crate::replay::{self, Replayed};
use crate::store::counters::Counter;
use crate::store::recorded::RecordStore;
use crate::store::{Answered, Entries, NewEntry, NewManifest, Store, age};
use crate::term::format::{human_duration, human_size};
use crate::term::progress::Spinner;
use crate::term::ui::{self, Ui};

/// Run or replay the configured command; returns memorun's exit code.
pub fn run(config: &Config, ui: &Ui) -> Result<i32, Failure> {
    let not_prepared = |e: NotPrepared| match e {
        NotPrepared::Disabled => plain(config, Feed::Inherit),
        NotPrepared::Uncached(e, feed) => {
            ui.warn(format_args!("{e:#}; running uncached"));
            plain(config, feed)
        }
        NotPrepared::Refused(e) => Err(Failure::Usage(e)),
    };
    // A plain lookup first looks for the key's hit record, without opening
    // the database (see `store::records`): most hits end there.
    let records_first = !config.force && config.trace.is_none() && config.refresh.is_none();
    let early = match prepare::begin(config, true, records_first) {
        Ok(early) => early,
        Err(e) => return not_prepared(e),
    };
    let mut db = None;
    let mut miss_reason: Option<String> = None;
    if let Some(resolved) = &early.resolved {
        warn_missing_inputs(ui, resolved);
        let mut records = RecordStore::new(early.dir.clone(), config.limits);
        match look_up(config, ui, &mut records, resolved, &early.feed) {
            Lookup::Replayed(code) => return Ok(code),
            // It warned already.
            Lookup::Uncached => return plain(config, early.feed),
            // The database has the truth. A reason given here (a record
            // found corrupt and removed) would be lost on a second look.
            Lookup::Miss(reason) => miss_reason = reason,
        }
        db = records.into_db();
    }
    let warned = early.resolved.is_some();
    let Prepared {
        store: mut local,
        resolved,
        feed,
    } = match early.finish(config, db) {
        Ok(p) => p,
        Err(e) => return not_prepared(e),
    };
    if let Some(notice) = local.take_notice() {
        ui.note(notice);
    }
    if !warned {
        warn_missing_inputs(ui, &resolved);
    }
    run_cached(config, ui, &mut local, &resolved, feed, miss_reason)
}

/// The run path behind the storage seam, once the key is resolved: ask
/// the tiered store (the local store, then the remote) for a hit, else run
/// and hand it the result. `miss_reason`: why an earlier look missed.
fn run_cached(
    config: &Config,
    ui: &Ui,
    local: &mut dyn Store,
    resolved: &Resolved,
    feed: Feed,
    mut miss_reason: Option<String>,
) -> Result<i32, Failure> {
    let invocation = Invocation {
        resolved,
        traced: config
            .trace
            .as_ref()
            .map(|_| prepare::manifest_base(config, resolved)),
        force: config.force,
    };
    let remote = config.remote.clone().map(Tier::new);
    let mut store = Tiered::new(local, remote, invocation);
    // A background refresh runs only while it holds its key's refresh lock.
    if let Some(r) = &config.refresh
        && !store.take_refresh_lock(&refresh::lock_name(&r.key))
    {
        return Ok(0);
    }
    // Single flight, and the remote asked under the run lock: see
    // `remote::tiered`.
    loop {
        let reason = if config.force {
            Some("forced".to_string())
        } else {
            match look_up(config, ui, &mut store, resolved, &feed) {
                Lookup::Replayed(code) => {
                    store.replayed();
                    return Ok(code);
                }
                // What the remote installed could not be read: run (and
                // record, if the store lets us) rather than run plain.
                Lookup::Uncached if store.answered() != Answered::Local => break,
                Lookup::Uncached => return plain(config, feed),
                Lookup::Miss(reason) => reason,
            }
        };
        // Keep the first reason given: a second look finds the entry gone.
        miss_reason = reason.or(miss_reason);
        let mut before_wait = || {
            // Ctrl-C must not wait for the holder.
            spawn::end_on_signal_until_spawn();
            ui.status("waiting for a concurrent run of the same command");
        };
        if store.missed(ui, &mut before_wait) == Next::Run {
            break;
        }
    }
    if miss_reason.is_none() && ui.is_verbose() {
        miss_reason = Some(explain_miss(
            config,
            &store,
            resolved,
            store.remote_missed(),
        ));
    }
    let ran = run_and_record(config, ui, &mut store, resolved, feed, miss_reason);
    store.finish(ui, ran.as_ref().is_ok_and(|r| r.recorded));
    Ok(ran?.code)
}

/// An input named with `-i` that does not exist is most often a typo: say
/// so (it still counts, as absent).
fn warn_missing_inputs(ui: &Ui, resolved: &Resolved) {
    let missing = inputs::missing_named(&resolved.watch);
    let Some(first) = missing.first() else {
        return;
    };
    if ui.is_verbose() {
        let quoted: Vec<String> = missing
            .iter()
            .map(|m| format!("'{}'", m.to_string_lossy()))
            .collect();
        ui.status(format_args!("absent inputs: {}", quoted.join(", ")));
        return;
    }
    let more = match missing.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    ui.warn(format_args!(
        "input '{}'{more} does not exist; it is in the key as absent",
        first.to_string_lossy()
    ));
}

/// What a lookup found.
enum Lookup {
    /// An entry was replayed (or its reader went away): exit with this.
    Replayed(i32),
    /// Nothing to replay, with the reason when it is not simply "no entry".
    Miss(Option<String>),
    /// The store failed: run uncached (a warning was printed).
    Uncached,
}

/// The store could not be read: count it, warn, run uncached.
fn unreadable(store: &mut dyn Store, ui: &Ui, e: &anyhow::Error) -> Lookup {
    store.tally(&[(Counter::Errors, 1)]);
    ui.warn(format_args!(
        "cannot read the cache: {e:#}; running uncached"
    ));
    Lookup::Uncached
}

/// Look the key up and, when the policy allows, replay the entry. A hit
/// the remote answered says so in the status line.
fn look_up(
    config: &Config,
    ui: &Ui,
    store: &mut dyn Store,
    resolved: &Resolved,
    feed: &Feed,
) -> Lookup {
    // A traced command's entry is under the manifest that still matches.
    let (key, traced) = match prepare::entry_key(config, store, resolved) {
        Ok(EntryKey::Plain(key)) => (key, None),
        Ok(EntryKey::Traced(key, m)) => (key, Some(m.items.len())),
        Ok(EntryKey::NoMatch(why)) => return Lookup::Miss(why.map(|(why, _)| why)),
        Err(e) => return unreadable(store, ui, &e),
    };
    let entry = match store.lookup(&key) {
        Ok(Some(entry)) => entry,
        Ok(None) => return Lookup::Miss(None),
        Err(e) => return unreadable(store, ui, &e),
    };
    let entry_age = age(entry.created_ms);
    if let Some(why) = policy::refusal(&config.policy(), &entry) {
        return Lookup::Miss(Some(why));
    }
    // The output files first: the caller finds them when the replay ends.
    let cwd = &resolved.base.cwd;
    let restored = match restore::restore_entry(&entry.outputs, &config.key, store, cwd, false) {
        Ok(report) => report,
        Err(restore::Failure::Miss(why)) => return Lookup::Miss(Some(why)),
        Err(restore::Failure::Corrupt(why)) => {
            return match store.discard_corrupt(&entry) {
                Ok(true) => Lookup::Miss(Some(format!("{why}; the entry was removed"))),
                _ => Lookup::Miss(None),
            };
        }
    };
    if restored.restored > 0 {
        store.tally(&[
            (Counter::RestoredFiles, restored.restored as i64),
            (Counter::RestoredBytes, restored.restored_bytes as i64),
        ]);
    }
    match replay::replay(store, &entry) {
        Ok(Replayed::Done) => {
            // Leave a regular file on stdin where the command left it.
            if let Some(f) = resolved.stdin_file {
                stdin::seek_to(f.offset + entry.stdin_advance);
            }
            // Counting the hit is bookkeeping: never fail over it.
            let _ = store.record_hit(&entry);
            let stale = config.stale.is_some_and(|s| entry_age > s);
            let note = match stale && refresh_in_background(store, resolved, feed, ui) {
                true => "; stale, refreshing in the background",
                false if stale => {
                    "; stale, but stdin was not read, so not refreshed in the background"
                }
                false => "",
            };
            say_hit(
                ui,
                store.answered(),
                &restored,
                traced,
                &entry,
                entry_age,
                note,
            );
            Lookup::Replayed(entry.exit_code)
        }
        Ok(Replayed::ReaderGone) => {
            // Bookkeeping, as above.
            let _ = store.record_hit(&entry);
            Lookup::Replayed(exit_codes::for_signal(
                rustix::process::Signal::PIPE.as_raw(),
            ))
        }
        // Only corrupt if the entry is still there: one that a concurrent
        // `clear` removed (blobs and all) since the lookup is a plain miss.
        Ok(Replayed::Corrupt) => match store.discard_corrupt(&entry) {
            Ok(true) => Lookup::Miss(Some(
                "the stored entry failed verification and was removed".into(),
            )),
            _ => Lookup::Miss(None),
        },
        Ok(Replayed::Unreadable(e)) => {
            store.tally(&[(Counter::Errors, 1)]);
            ui.warn(format_args!("{e:#}; running uncached"));
            Lookup::Uncached
        }
        Err(e) => {
            // Our own output failed part-way: the command must not run now
            // (its output would follow a partial replay).
            ui::error(format_args!("{e:#}"));
            Lookup::Replayed(exit_codes::MEMORUN_ERROR)
        }
    }
}

/// The status line of a hit: where it came from, the files it restored,
/// how old it is and what it saved.
fn say_hit(
    ui: &Ui,
    answered: Answered,
    restored: &restore::Report,
    traced: Option<usize>,
    entry: &crate::store::Entry,
    entry_age: std::time::Duration,
    note: &str,
) {
    let mut files = match restored.restored {
        0 => String::new(),
        n => format!(
            ", restored {n} {} ({})",
            if n == 1 { "file" } else { "files" },
            human_size(restored.restored_bytes)
        ),
    };
    if restored.removed > 0 {
        files.push_str(&format!(", removed {} stale", restored.removed));
    }
    if let Some(n) = traced {
        files.push_str(&format!(", {n} traced inputs unchanged"));
    }
    let origin: std::borrow::Cow<'_, str> = match answered {
        Answered::Local => "hit".into(),
        Answered::Remote { bytes, took } => format!(
            "hit (remote), downloaded {} in {}",
            human_size(bytes),
            human_duration(took)
        )
        .into(),
    };
    ui.status(format_args!(
        "{origin}{files}, recorded {} ago, saved {}{note}",
        human_duration(entry_age),
        human_duration(entry.duration),
    ));
}

/// Start a detached refresh of a stale entry that was just replayed.
/// Returns whether a refresh was started: not when stdin was not read (a
/// terminal, a device), since a detached run cannot see the same stdin.
fn refresh_in_background(store: &dyn Store, resolved: &Resolved, feed: &Feed, ui: &Ui) -> bool {
    let stdin_component = resolved
        .key
        .components
        .iter()
        .find(|c| c.kind == Kind::Stdin);
    let stdin = if let Some(f) = feed.duplicate() {
        RefreshStdin::File(f)
    } else if let Some(sf) = resolved.stdin_file {
        // A new open file description at the same offset: the refresh must
        // not move the caller's offset on the shared one.
        match reopen_stdin_at(sf.offset) {
            Ok(f) => RefreshStdin::File(f),
            Err(_) => return false,
        }
    } else {
        match stdin_component {
            // Not read (a device): a detached run cannot see it.
            Some(c) if c.state == State::Absent && c.name != stdin::NO_DATA => return false,
            // `--stdin ignore`, or no data (empty, or a terminal keyed as
            // empty): /dev/null.
            _ => RefreshStdin::Empty,
        }
    };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match refresh::spawn(&store.locks_dir(), &resolved.key.digest, args, stdin) {
        Ok(()) => true,
        Err(e) => {
            ui.warn(format_args!(
                "cannot start the background refresh: {}",
                crate::term::format::io_reason(&e)
            ));
            false
        }
    }
}

/// Open the file on fd 0 again, positioned at `offset`.
fn reopen_stdin_at(offset: u64) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open("/proc/self/fd/0")?;
    f.seek(SeekFrom::Start(offset))?;
    Ok(f)
}

/// Why a lookup missed, from the closest earlier entry of the command;
/// with none, whether the remote was asked too (`remote_missed`).
fn explain_miss(
    config: &Config,
    store: &dyn Store,
    resolved: &Resolved,
    remote_missed: bool,
) -> String {
    match diff::closest_run(store, &resolved.key) {
        Ok(Some(old)) => diff::summary(&diff::diff(&old.components, &resolved.key.components)),
        Ok(None) => diff::no_earlier_run(remote_missed, config.key.base_dir.is_some()),
        Err(_) => "no entry".into(),
    }
}

/// Run without the cache.
fn plain(config: &Config, feed: Feed) -> Result<i32, Failure> {
    Ok(spawn::run_plain(&config.key.command, feed)?.exit_code())
}

/// How a run ended.
struct Ran {
    /// memorun's exit code.
    code: i32,
    /// Whether the result went into the store.
    recorded: bool,
}

/// Run the command, capturing what it does; decide whether its result may
/// be recorded; record it (or note why not).
fn run_and_record(
    config: &Config,
    ui: &Ui,
    store: &mut dyn Store,
    resolved: &Resolved,
    feed: Feed,
    miss_reason: Option<String>,
) -> Result<Ran, SpawnError> {
    let (mut outcome, trace_log) = match execute(config, ui, store, resolved, feed)? {
        Executed::Captured(outcome, log) => (outcome, log),
        Executed::Untraced(ran) => return Ok(ran),
    };
    if let Some(e) = &outcome.record_error {
        ui.warn(format_args!(
            "cannot record the output: {}; the result was not cached",
            crate::term::format::io_reason(e)
        ));
    }
    let decided = decide(config, ui, store, resolved, &outcome, trace_log.as_ref());
    let ran = match &miss_reason {
        Some(why) => format!("miss ({why})"),
        None => "miss".into(),
    };
    let recorded = record(ui, store, resolved, &mut outcome, decided, &ran);
    // memorun was writing into a broken pipe: it ends as `cat` would, and
    // as a replay does (see `look_up`), whatever the command's own code.
    let code = if outcome.reader_gone {
        exit_codes::for_signal(rustix::process::Signal::PIPE.as_raw())
    } else {
        outcome.status.exit_code()
    };
    Ok(Ran { code, recorded })
}

/// What running the command gave.
// Made once per run and moved once: the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Executed {
    /// It ran captured (traced: with what the tracer saw).
    Captured(spawn::Outcome, Option<trace::TraceLog>),
    /// It could not be traced, and ran uncached.
    Untraced(Ran),
}

/// Run the command captured (and traced, with `--trace`), a spinner
/// showing the usual duration when allowed.
fn execute(
    config: &Config,
    ui: &Ui,
    store: &mut dyn Store,
    resolved: &Resolved,
    feed: Feed,
) -> Result<Executed, SpawnError> {
    let recorder = Recorder::new(store.spool(), store.spool(), store.spool());
    // Only a spinner needs the usual duration: no query otherwise.
    let spinner = if ui.progress_allowed() {
        let usual = store
            .previous_duration(&resolved.key.command)
            .ok()
            .flatten();
        Some(Spinner::new(&resolved.base.display, usual))
    } else {
        None
    };
    let Some(t) = &config.trace else {
        let outcome = spawn::run_captured(&config.key.command, feed, Some(recorder), spinner)?;
        return Ok(Executed::Captured(outcome, None));
    };
    let options = trace_options(config, store, t);
    match spawn::run_captured_traced(&config.key.command, feed, Some(recorder), spinner, &options) {
        Ok((outcome, log)) => Ok(Executed::Captured(outcome, Some(log))),
        Err(TracedError::Spawn(e)) => Err(e),
        // Never run untraced under the name of a traced run: run it
        // uncached.
        Err(TracedError::NotTraced(not)) => {
            let why = NotRecorded::Untraced(format!("it cannot be traced here: {}", not.reason));
            ui.warn(format_args!(
                "cannot trace the command: {}; running it uncached",
                not.reason
            ));
            // Bookkeeping: a note lost costs `why` its explanation, never
            // the run.
            let _ = store.note_unrecorded(&resolved.base.manifest, &why);
            let code = spawn::run_plain(&config.key.command, not.stdin)?.exit_code();
            Ok(Executed::Untraced(Ran {
                code,
                recorded: false,
            }))
        }
    }
}

/// What a finished run leaves to record, or why it may not be recorded.
struct Decided {
    /// Why not, if it may not be recorded.
    why_not: Option<NotRecorded>,
    /// For a traced run: its trace manifest.
    traced: Option<NewManifest>,
    /// The output files it left.
    captured: capture::Captured,
    /// Arguments it created (outputs from now on).
    created: Vec<Vec<u8>>,
    /// How far it read a regular file on its stdin.
    stdin_advance: u64,
}

/// Whether the run that ended as `outcome` may be recorded (see
/// `replay::policy`), and what then goes with it: its trace manifest and
/// the output files it left.
fn decide(
    config: &Config,
    ui: &Ui,
    store: &mut dyn Store,
    resolved: &Resolved,
    outcome: &spawn::Outcome,
    trace_log: Option<&trace::TraceLog>,
) -> Decided {
    // How far the command read a regular file on stdin (the file offset is
    // shared with it), so a replay can leave the offset at the same place.
    let stdin_advance = match (resolved.stdin_file, stdin::offset()) {
        (Some(f), Some(now)) => now.saturating_sub(f.offset),
        _ => 0,
    };
    let created = created_args(config, resolved, trace_log);
    let mut why_not = policy::unrecordable(
        &config.policy(),
        &policy::RunEnd {
            status: match outcome.status {
                Status::Exited(code) => Ok(code),
                Status::Signaled(sig) => Err(sig),
            },
            interrupted: outcome.interrupted,
            delivery_failed: outcome.delivery_failed,
            record_error: outcome.record_error.as_ref(),
        },
        resolved,
    );
    // The automatic outputs: the arguments earlier runs created and those
    // this one did.
    let auto: Vec<Vec<u8>> = resolved
        .known_outputs
        .iter()
        .chain(&created)
        .cloned()
        .collect();
    // A traced run is recorded with the state of every input it used, so
    // that a later run finds its entry only while they all still match.
    let mut traced = None;
    if why_not.is_none()
        && let Some(log) = trace_log
    {
        let outputs = Outputs {
            declared: &config.key.outputs,
            auto: &auto,
        };
        match trace_manifest(
            store,
            resolved,
            log,
            &outputs,
            prepare::manifest_base(config, resolved).as_deref(),
            &created_after_absent(config, resolved, log),
        ) {
            Ok(m) => traced = Some(m),
            Err(refused) => why_not = Some(refused),
        }
    }
    // The files it wrote are part of what it did: captured with the entry,
    // the declared outputs and the arguments it created (see `outputs`).
    let mut captured = capture::Captured::default();
    if why_not.is_none() {
        match capture::capture(
            store,
            &resolved.base.cwd,
            &config.key.outputs,
            &auto,
            config.key.base_dir.as_deref(),
        ) {
            Ok(c) => captured = c,
            Err(e) => why_not = Some(NotRecorded::Cache(format!("{e:#}"))),
        }
    }
    if let Some(w) = captured.warnings.first() {
        ui.warn(format_args!("{w}"));
    }
    Decided {
        why_not,
        traced,
        captured,
        created,
        stdin_advance,
    }
}

/// Arguments that named nothing before and name a file now are outputs of
/// this command: later runs leave them out of the automatic inputs.
/// Traced, an argument the command wrote is an output whether or not it
/// existed before.
fn created_args(
    config: &Config,
    resolved: &Resolved,
    trace_log: Option<&trace::TraceLog>,
) -> Vec<Vec<u8>> {
    let mut created: Vec<Vec<u8>> = resolved
        .maybe_outputs
        .iter()
        .filter(|a| std::fs::metadata(resolved.base.cwd.join(a)).is_ok_and(|m| m.is_file()))
        .map(|a| a.as_bytes().to_vec())
        .collect();
    if let Some(log) = trace_log {
        for arg in config.key.keyed_args() {
            let abs = resolved.base.cwd.join(OsStr::from_bytes(arg));
            let written = log
                .get(&crate::outputs::normalize(&abs))
                .is_some_and(|a| a.intersects(trace::Access::WRITTEN | trace::Access::CREATED));
            if written
                && std::fs::metadata(&abs).is_ok_and(|m| m.is_file())
                && !created.iter().any(|c| c == arg)
            {
                created.push(arg.to_vec());
            }
        }
    }
    created
}

/// Record the run as `decided` (or note why it is not), and say so in the
/// status line, which starts with `ran`. Returns whether it was recorded.
fn record(
    ui: &Ui,
    store: &mut dyn Store,
    resolved: &Resolved,
    outcome: &mut spawn::Outcome,
    decided: Decided,
    ran: &str,
) -> bool {
    let took = human_duration(outcome.duration);
    if let Some(why) = &decided.why_not {
        // Bookkeeping: a note lost costs `why` its explanation, never the run.
        let _ = store.note_unrecorded(&resolved.base.manifest, why);
    }
    let rec = match (decided.why_not, outcome.recording.take()) {
        (None, Some(rec)) => rec,
        (why_not, _) => {
            let why_not = why_not.map_or_else(|| "recording failed".into(), |w| w.to_string());
            ui.status(format_args!(
                "{ran}, ran in {took}, not recorded: {why_not}"
            ));
            return false;
        }
    };
    // A traced entry is under its manifest's entry key.
    let traced_key = decided.traced.as_ref().map(|m: &NewManifest| Key {
        digest: key::traced::entry_key(&m.base, &m.digest),
        command: resolved.key.command,
        components: resolved.key.components.clone(),
    });
    let entry = NewEntry {
        key: traced_key.as_ref().unwrap_or(&resolved.key),
        display: resolved.base.display.clone(),
        cwd: resolved.base.cwd.as_os_str().as_bytes().to_vec(),
        duration: outcome.duration,
        exit_code: outcome.status.exit_code(),
        stdout: rec.stdout,
        stderr: rec.stderr,
        order: rec.order,
        outputs: decided.captured.roots,
        file_checks: decided.captured.checks,
        stdin_advance: decided.stdin_advance,
        manifest: resolved.base.manifest,
        // Learned only from runs that are recorded: a failed or
        // interrupted run may have created a file it would not have.
        created: decided.created,
        traced: decided.traced,
        recorded_at: None,
    };
    match store.insert(entry) {
        Ok(()) => {
            ui.status(format_args!("{ran}, ran in {took}, recorded"));
            true
        }
        Err(e) => {
            let why = NotRecorded::Cache(format!("cannot record the result: {e:#}"));
            // Bookkeeping, as above.
            let _ = store.note_unrecorded(&resolved.base.manifest, &why);
            ui.warn(format_args!("{why}"));
            false
        }
    }
}

/// What the tracer leaves out: `/proc`, `/sys`, `/dev` (always), the cache
/// directory, the default exclusions and the `--trace-exclude` globs.
fn trace_options(config: &Config, store: &dyn Store, t: &TraceConfig) -> TraceOptions {
    let mut dirs = t.defaults.clone();
    if let Some(root) = store.locks_dir().parent() {
        dirs.push(root.to_path_buf());
    }
    if let crate::config::CacheLocation::Dir(d) = &config.cache {
        dirs.push(d.clone());
    }
    TraceOptions {
        exclude: trace::Exclusions {
            dirs,
            globs: t.exclude.clone(),
        },
        // A traced command reads memorun's own stdin when it is a
        // terminal (it is not spooled): reading it leaves the run unrecorded.
        stdin_terminal: std::io::IsTerminal::is_terminal(&std::io::stdin()),
    }
}

/// A run's outputs, declared (`-o`) and automatic (arguments, relative to
/// the working directory): never its traced inputs.
struct Outputs<'a> {
    declared: &'a crate::outputs::OutputSpec,
    auto: &'a [Vec<u8>],
}

impl Outputs<'_> {
    /// Whether `abs` is an output or under a declared one.
    fn covers(&self, cwd: &Path, abs: &Path) -> bool {
        self.declared.covers_path(cwd, abs)
            || self
                .auto
                .iter()
                .any(|a| crate::outputs::normalize(&cwd.join(OsStr::from_bytes(a))) == abs)
    }

    /// The outputs named by path (not by glob), absolute: their names are
    /// left out of the listings of their directories.
    fn named(&self, cwd: &Path) -> Vec<PathBuf> {
        let declared = self.declared.declared.iter().filter(|d| d.glob.is_none());
        declared
            .map(|d| d.declared.as_slice())
            .chain(self.auto.iter().map(Vec::as_slice))
            .map(|p| crate::outputs::normalize(&cwd.join(OsStr::from_bytes(p))))
            .collect()
    }
}

/// The trace manifest of a traced run, or why the run must not be recorded
/// (see [`NotRecorded`]): it ran something tracing cannot vouch
/// for, it changed one of its own inputs, or an input changed while it ran.
/// What it did to its outputs is not an input: a hit restores them.
fn trace_manifest(
    store: &dyn Store,
    resolved: &Resolved,
    log: &trace::TraceLog,
    outputs: &Outputs<'_>,
    base_dir: Option<&std::path::Path>,
    created: &[std::path::PathBuf],
) -> Result<NewManifest, NotRecorded> {
    let cwd = &resolved.base.cwd;
    if let Some(u) = &log.untraceable {
        return Err(NotRecorded::Untraced(format!(
            "tracing cannot vouch for it: {u}"
        )));
    }
    // An input the run changed itself (a file it read then wrote, a
    // directory it listed and then wrote into): what it holds now is not
    // what the command saw.
    let not_output = |p: &&trace::TracedPath| !outputs.covers(cwd, &p.path);
    if let Some(p) = log.changed_inputs().find(not_output) {
        let shown = key::traced::shown(&p.path, cwd);
        let why = match p.access.contains(trace::Access::LISTED) {
            true => format!(
                "traced input {shown}, a directory it listed, was changed by the command \
                 itself (it wrote into it); leave its listing out with --trace-exclude '{}'",
                p.path.display()
            ),
            false => format!(
                "traced input {shown} was changed by the command itself (a lock file or a \
                 cache?); leave it out with --trace-exclude '{}'",
                p.path.display()
            ),
        };
        return Err(NotRecorded::InputChanged(why));
    }
    let inputs: Vec<(PathBuf, Probe, Option<trace::Seen>)> = log
        .inputs()
        .filter(not_output)
        .flat_map(|p| probes_of(p.access).map(|probe| (p.path.clone(), probe, p.seen)))
        .collect();
    let named = outputs.named(cwd);
    let mut recorded = None;
    store.with_stat_cache(&mut |cache| {
        recorded = Some(key::traced::record(
            &inputs,
            &named,
            resolved.started_ns,
            cache,
        ));
    });
    match recorded {
        Some(Ok(mut m)) => {
            with_absent(&mut m, created);
            Ok(NewManifest {
                base: resolved.key.digest,
                digest: m.digest(base_dir),
                paths: m.encode(base_dir),
                inputs: m.items.len() as u64,
            })
        }
        Some(Err(mismatch)) => Err(NotRecorded::InputChanged(mismatch.message(cwd))),
        None => Err(NotRecorded::Cache(
            "the stat cache was not available".into(),
        )),
    }
}

/// Paths the run looked for, did not find, and then created itself, that
/// no argument or `-o` names: its own product (cargo's `Cargo.lock` in a
/// fresh clone), keyed as the command found them, absent. The next run,
/// which finds one, is another entry. (An argument or a declared output
/// the run probes first, as `cc -o foo.o` does, stays an output only:
/// otherwise what one run left would make the next one miss.)
fn created_after_absent(
    config: &Config,
    resolved: &Resolved,
    log: &trace::TraceLog,
) -> Vec<std::path::PathBuf> {
    use trace::Access;
    let cwd = &resolved.base.cwd;
    let named = |path: &std::path::Path| {
        let rel = path.strip_prefix(cwd).ok();
        config.key.command[1..]
            .iter()
            .any(|a| key::exclude::normalize(&cwd.join(a)) == path)
            || rel.is_some_and(|r| config.key.outputs.covers(r.as_os_str().as_bytes()))
    };
    log.paths
        .iter()
        .filter(|p| p.access.contains(Access::PROBED_ABSENT | Access::CREATED))
        .filter(|p| {
            !p.access
                .intersects(Access::READ | Access::EXECUTED | Access::LISTED)
        })
        .filter(|p| !named(&p.path))
        .map(|p| p.path.clone())
        .collect()
}

/// Add `absent` to a recorded manifest, each as absent, in path order.
fn with_absent(m: &mut key::traced::Manifest, absent: &[std::path::PathBuf]) {
    if absent.is_empty() {
        return;
    }
    let mut items: Vec<_> = std::mem::take(&mut m.items)
        .into_iter()
        .zip(std::mem::take(&mut m.stats))
        .collect();
    // A path already there keeps its items (a path may have two: its
    // look and its extended attributes); the sort is stable.
    let fresh: Vec<_> = absent
        .iter()
        .filter(|p| !items.iter().any(|((q, _), _)| q == *p))
        .map(|p| ((p.clone(), key::traced::State::Absent), None))
        .collect();
    items.extend(fresh);
    items.sort_by(|a, b| a.0.0.cmp(&b.0.0));
    (m.items, m.stats) = items.into_iter().unzip();
}

/// What a traced input's state is made of, from what the command did to
/// it: its content, mode, listing or look (see `key::traced`), and its
/// extended attributes when it read them.
fn probes_of(a: trace::Access) -> impl Iterator<Item = Probe> {
    use trace::Access;
    let probed = a.intersects(Access::PROBED_ABSENT | Access::PROBED_PRESENT)
        && !a.intersects(Access::WRITTEN | Access::CREATED);
    let main = if a.contains(Access::EXECUTED) {
        Some(Probe::Program)
    } else if a.contains(Access::READ) {
        Some(Probe::Content)
    } else if a.contains(Access::LISTED) {
        Some(Probe::Listing)
    } else if probed && a.contains(Access::PROBED_PRESENT) {
        Some(Probe::Exists)
    } else if probed {
        Some(Probe::Absent)
    } else {
        None
    };
    let xattrs = a.contains(Access::XATTRS).then_some(Probe::Xattrs);
    main.into_iter().chain(xattrs)
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
