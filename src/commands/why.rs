//! `memorun why`: say whether a command would hit or miss, what its key is
//! made of, and what changed since the closest earlier run. Runs nothing.
//!
//! stdin is hashed (so a piped stdin is judged like a real run would judge
//! it) but not spooled, and never printed. Env values are never printed.

use anyhow::Result;
use serde_json::{Value, json};

use crate::commands::diff::{self, Change};
use crate::commands::prepare::{self, EntryKey, NotPrepared, Prepared, prepare};
use crate::config::Config;
use crate::error::Failure;
use crate::key::traced;
use crate::key::{Component, Digest, Kind, State};
use crate::outputs::files::RootKind;
use crate::remote::Tier;
use crate::replay::policy;
use crate::replay::restore::{self, RootReport};
use crate::store::age;
use crate::store::{Entries, Entry};
use crate::term::format::human_duration;
use crate::term::quote::printable;
use crate::term::ui::Ui;

/// Input files the text form lists among the components: a walk can put
/// thousands in a key (the summary counts them; `--json` lists them all).
const SHOWN_INPUTS: usize = 20;

/// Inputs named directly that the summary lists by name.
const SHOWN_NAMED: usize = 10;

/// What `why` found.
struct Report {
    key: String,
    command: String,
    keyed_argv: String,
    entry: Option<Entry>,
    refused: Option<String>,
    components: Vec<Component>,
    /// The closest earlier entry (key, created), on a miss.
    previous: Option<(Digest, i64)>,
    changes: Vec<Change>,
    not_recorded: Option<(String, i64)>,
    /// Why a run would not be recorded whatever it does, if so.
    unrecordable: Option<String>,
    uncached: Option<String>,
    /// With `--trace`: the manifest that matches or the closest one.
    traced: Option<Traced>,
    /// The working directory, to show traced paths under it relatively.
    cwd: std::path::PathBuf,
    /// What a hit would do to the output files.
    outputs: Vec<RootReport>,
    /// The remote (URL without credentials) and whether it holds the
    /// entry (`None`: it could not be asked).
    remote: Option<(String, Option<bool>)>,
    /// With `--trace`: the default exclusions in force, and the
    /// `--trace-exclude` globs as typed.
    trace_excludes: Option<(Vec<std::path::PathBuf>, Vec<String>)>,
    /// Whether `--base-dir` is set (what a miss with no entry says).
    base_dir: bool,
}

/// Run `memorun why`; returns the exit code.
pub fn why(config: &Config, json: bool) -> Result<i32, Failure> {
    explain(config, json).map_err(|e| match e {
        Why::Refused(e) => Failure::Usage(e),
        Why::Failed(e) => Failure::Memorun(e),
    })
}

/// Why `why` could not explain.
enum Why {
    /// An input refused (a usage error).
    Refused(anyhow::Error),
    /// The store or the output failed.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Why {
    fn from(e: anyhow::Error) -> Why {
        Why::Failed(e)
    }
}

impl From<serde_json::Error> for Why {
    fn from(e: serde_json::Error) -> Why {
        Why::Failed(e.into())
    }
}

fn explain(config: &Config, json: bool) -> Result<i32, Why> {
    // Explaining must not create a cache that does not exist yet.
    let missing = match &config.cache {
        crate::config::CacheLocation::Dir(d) if !d.exists() => Some(d.clone()),
        _ => None,
    };
    let scratch;
    let with_scratch;
    let config = match (&missing, &config.remote) {
        (Some(d), None) => {
            let text = if json {
                serde_json::to_string_pretty(
                    &json!({ "would": "miss", "reason": "nothing recorded yet" }),
                )? + "\n"
            } else {
                format!(
                    "would miss: nothing recorded yet ('{}' does not exist)\n",
                    d.display()
                )
            };
            return Ok(crate::term::output::print_stdout(text.as_bytes())?);
        }
        // The remote is asked now: the key is resolved with a throwaway
        // store (the team's secret keys it, not the local one), and the
        // user's cache directory is still not created.
        (Some(_), Some(_)) => {
            scratch = Scratch::new()?;
            with_scratch = Config {
                cache: crate::config::CacheLocation::Dir(scratch.0.join("cache")),
                ..config.clone()
            };
            &with_scratch
        }
        (None, _) => config,
    };
    let report = match prepare(config, false) {
        Ok(p) => build(config, p)?,
        Err(NotPrepared::Disabled) => {
            uncached("the cache is disabled (--no-cache or MEMORUN_DISABLE)")
        }
        Err(NotPrepared::Uncached(e, _)) => uncached(&format!("{e:#}")),
        Err(NotPrepared::Refused(e)) => return Err(Why::Refused(e)),
    };
    let text = if json {
        serde_json::to_string_pretty(&to_json(&report))? + "\n"
    } else {
        let mut text = to_text(&report);
        if let Some(d) = &missing {
            text.insert_str(
                0,
                &format!(
                    "nothing recorded here yet ('{}' does not exist)\n",
                    d.display()
                ),
            );
        }
        text
    };
    Ok(crate::term::output::print_stdout(text.as_bytes())?)
}

/// A private directory of this process's own, removed with everything in
/// it when dropped: where `why` keeps a throwaway store.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("memorun-why-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create '{}': {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uncached(why: &str) -> Report {
    Report {
        key: String::new(),
        command: String::new(),
        keyed_argv: String::new(),
        entry: None,
        refused: None,
        components: Vec::new(),
        previous: None,
        changes: Vec::new(),
        not_recorded: None,
        unrecordable: None,
        uncached: Some(why.to_string()),
        traced: None,
        cwd: std::path::PathBuf::new(),
        outputs: Vec::new(),
        remote: None,
        trace_excludes: None,
        base_dir: false,
    }
}

/// Whether the remote holds the entry: asked whatever the local store
/// holds, a look, never a download. Not for a traced command: its entry is
/// found through the remote's trace manifests, which `why` does not
/// download. With the remote's name.
fn remote_holds(
    config: &Config,
    store: &mut crate::store::db::SqliteStore,
    key: &crate::base::Digest,
) -> Option<(String, Option<bool>)> {
    config
        .remote
        .clone()
        .filter(|_| config.trace.is_none())
        .map(|r| {
            let mut tier = Tier::new(r);
            let ui = Ui::new(config.verbosity);
            let holds = tier.holds(store, &ui, key);
            if let Some(until) = tier.skipped_until() {
                ui.note(format_args!(
                    "the remote cache {} is cooling down until {}; MEMORUN_REMOTE_RETRY=1 asks it now",
                    tier.display(),
                    crate::remote::cooldown::clock(until)
                ));
            }
            (tier.display().to_string(), holds)
        })
}

fn build(config: &Config, p: Prepared) -> Result<Report> {
    let Prepared {
        mut store,
        resolved,
        ..
    } = p;
    let key = &resolved.key;
    // Traced: the entry of the manifest whose inputs all still match.
    let (entry, traced) = match prepare::entry_key(config, &store, &resolved)? {
        EntryKey::Plain(k) => (store.lookup(&k)?, None),
        EntryKey::Traced(k, m) => (
            store.lookup(&k)?,
            Some(Traced {
                manifest: Some(m),
                mismatch: None,
            }),
        ),
        EntryKey::NoMatch(Some((why, m))) => (
            None,
            Some(Traced {
                manifest: Some(m),
                mismatch: Some(why),
            }),
        ),
        EntryKey::NoMatch(None) => (
            None,
            Some(Traced {
                manifest: None,
                mismatch: None,
            }),
        ),
    };
    let mut refused = match &entry {
        _ if config.force => Some("--force runs it whatever is recorded".to_string()),
        Some(e) => policy::refusal(&config.policy(), e),
        None => None,
    };
    // What a hit would restore and keep, changing nothing.
    let mut outputs = Vec::new();
    if let (Some(e), None) = (&entry, &refused) {
        let planned =
            restore::restore_entry(&e.outputs, &config.key, &store, &resolved.base.cwd, true);
        match planned {
            Ok(report) => outputs = report.roots,
            Err(restore::Failure::Miss(why) | restore::Failure::Corrupt(why)) => {
                refused = Some(why)
            }
        }
    }
    // Only an explanation: a store that cannot give it still gives the rest.
    let closest = match entry {
        None => diff::closest_run(&store, key),
        Some(_) => Ok(None),
    };
    let (previous, changes) = match closest {
        Ok(Some(old)) => (
            Some((old.key, old.created_ms)),
            diff::diff(&old.components, &key.components),
        ),
        _ => (None, Vec::new()),
    };
    let remote = remote_holds(config, &mut store, &key.digest);
    Ok(Report {
        key: key.digest.to_hex(),
        command: resolved.base.display.clone(),
        keyed_argv: resolved.base.key_display.clone(),
        entry,
        refused,
        components: key.components.clone(),
        previous,
        changes,
        not_recorded: store.note(&resolved.base.manifest)?,
        unrecordable: resolved.unrecordable.clone(),
        uncached: None,
        traced,
        cwd: resolved.base.cwd.clone(),
        outputs,
        remote,
        trace_excludes: config
            .trace
            .as_ref()
            .map(|t| (t.defaults.clone(), config.key.trace_exclude.clone())),
        base_dir: config.key.base_dir.is_some(),
    })
}

fn would_hit(r: &Report) -> bool {
    r.entry.is_some() && miss_reason(r).is_none() && r.uncached.is_none()
}

/// Why an existing entry would not be replayed.
fn miss_reason(r: &Report) -> Option<String> {
    r.refused.clone()
}

fn component_line(c: &Component, keyed_argv: &str) -> (String, String) {
    match c.kind {
        Kind::Argv => ("argv".into(), keyed_argv.to_string()),
        Kind::Cwd => ("cwd".into(), printable(&c.name).into_owned()),
        Kind::Stdin => ("stdin".into(), diff::describe(c)),
        Kind::Option => (printable(&c.name).into_owned(), "given".into()),
        _ => (
            format!("{} {}", diff::label(c.kind), printable(&c.name)),
            diff::describe(c),
        ),
    }
}

fn to_text(r: &Report) -> String {
    let mut s = String::new();
    if let Some(why) = &r.uncached {
        s.push_str(&format!("would run uncached: {why}\n"));
        return s;
    }
    match (&r.entry, miss_reason(r)) {
        (Some(_), Some(why)) => s.push_str(&format!("would miss: {why}\n")),
        (Some(e), None) => s.push_str(&format!(
            "would hit: recorded {} ago, exit code {}, saves {}\n",
            human_duration(age(e.created_ms)),
            e.exit_code,
            human_duration(e.duration)
        )),
        (None, _) => match &r.remote {
            Some((url, Some(true))) => s.push_str(&format!(
                "would hit from the remote cache {url}: not in the local store, a run downloads it\n"
            )),
            _ => s.push_str("would miss\n"),
        },
    }
    if let Some(why) = &r.unrecordable {
        s.push_str(&format!(
            "a run would not be recorded: {}\n",
            printable(why)
        ));
    }
    s.push_str(&format!("key {}\n", &r.key[..12]));
    let lines: Vec<(String, String)> = r
        .components
        .iter()
        .map(|c| component_line(c, &r.keyed_argv))
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    s.push_str("components:\n");
    let mut inputs_shown = 0;
    for (c, (label, value)) in r.components.iter().zip(&lines) {
        if c.kind == Kind::Input {
            inputs_shown += 1;
            if inputs_shown > SHOWN_INPUTS {
                continue;
            }
        }
        s.push_str(&format!("  {label:width$}  {value}\n"));
    }
    if inputs_shown > SHOWN_INPUTS {
        s.push_str(&format!(
            "  ... and {} more inputs (--json lists them all)\n",
            inputs_shown - SHOWN_INPUTS
        ));
    }
    let declared = diff::inputs(&r.components);
    // Traced, the key's inputs are the traced ones (below), plus any -i.
    if r.traced.is_none() || declared.files > 0 {
        inputs_text(&mut s, &declared);
    }
    if let Some(t) = &r.traced {
        traced_text(&mut s, t, &r.cwd);
    }
    if let Some((defaults, globs)) = &r.trace_excludes {
        trace_excludes_text(&mut s, defaults, globs, &r.cwd);
    }
    outputs_text(&mut s, &r.outputs);
    changes_text(&mut s, r);
    match &r.remote {
        Some((url, Some(true))) if r.entry.is_some() => {
            s.push_str(&format!("the remote cache {url} holds the entry too\n"))
        }
        Some((url, Some(false))) => {
            s.push_str(&format!("the remote cache {url} does not hold the entry\n"))
        }
        Some((url, None)) => s.push_str(&format!(
            "the remote cache {url} could not be asked (see the warning)\n"
        )),
        _ => {}
    }
    if let Some((note, at)) = &r.not_recorded {
        s.push_str(&format!(
            "the latest run, {} ago, was not recorded: {}\n",
            human_duration(age(*at)),
            printable(note)
        ));
    }
    s
}

/// On a miss, what changed since the closest earlier run, or that there
/// is none (here, and on the remote when it was asked).
fn changes_text(s: &mut String, r: &Report) {
    // Traced, a miss with the same components is the traced inputs' doing
    // (said above).
    let traced_only = r.traced.is_some() && r.changes.is_empty();
    if r.entry.is_none() && !traced_only {
        match r.previous {
            Some((key, created)) => {
                s.push_str(&format!(
                    "changes since the closest earlier run ({}, recorded {} ago):\n",
                    key.short(),
                    human_duration(age(created))
                ));
                if r.changes.is_empty() {
                    s.push_str("  none in the components (an argument left out with -x differs)\n");
                }
                for c in &r.changes {
                    s.push_str(&format!("  {}\n", printable(&c.to_string())));
                }
            }
            None => {
                let remote_missed = matches!(r.remote, Some((_, Some(false))));
                s.push_str(&diff::no_earlier_run(remote_missed, r.base_dir));
                s.push('\n');
            }
        }
    }
}

/// What `--trace` found: the manifest that matches, or the most recent one
/// and the input that changed.
struct Traced {
    manifest: Option<traced::Manifest>,
    mismatch: Option<String>,
}

/// The traced inputs (the first [`SHOWN_INPUTS`]) and the one that changed.
fn traced_text(s: &mut String, t: &Traced, cwd: &std::path::Path) {
    let Some(m) = &t.manifest else {
        s.push_str("traced inputs: none yet (no traced run of this command was recorded)\n");
        return;
    };
    match &t.mismatch {
        None => s.push_str(&format!(
            "traced inputs: {}, all unchanged since the run was recorded\n",
            m.items.len()
        )),
        Some(why) => s.push_str(&format!(
            "traced inputs: {} in the most recent traced run; {why}\n",
            m.items.len()
        )),
    }
    // The project's own files first: they are what a user edits.
    let mut items: Vec<&(std::path::PathBuf, traced::State)> = m.items.iter().collect();
    items.sort_by_key(|(p, _)| !p.starts_with(cwd));
    for (path, state) in items.into_iter().take(SHOWN_INPUTS) {
        s.push_str(&format!(
            "  {}  {}\n",
            printable(&traced::shown(path, cwd)),
            state.describe()
        ));
    }
    if m.items.len() > SHOWN_INPUTS {
        s.push_str(&format!(
            "  ... and {} more (--json lists them all)\n",
            m.items.len() - SHOWN_INPUTS
        ));
    }
}

/// What tracing leaves out: always the kernel's views and the cache
/// directory, the default exclusions unless turned off, and the globs.
fn trace_excludes_text(
    s: &mut String,
    defaults: &[std::path::PathBuf],
    globs: &[String],
    cwd: &std::path::Path,
) {
    s.push_str(
        "left out of tracing: /proc, /sys, /dev, the cache directory
",
    );
    if defaults.is_empty() {
        s.push_str(
            "  no default exclusions (--no-default-trace-excludes)
",
        );
    } else {
        let shown: Vec<String> = defaults
            .iter()
            .map(|p| printable(&traced::shown(p, cwd)).into_owned())
            .collect();
        s.push_str(&format!(
            "  by default (--no-default-trace-excludes keeps them): {}
",
            shown.join(", ")
        ));
    }
    for g in globs {
        s.push_str(&format!(
            "  --trace-exclude {}\n",
            printable(&crate::term::quote::word(g.as_bytes()))
        ));
    }
}

/// Say what a hit would do to each output: restore, keep or remove.
fn outputs_text(s: &mut String, outputs: &[RootReport]) {
    if outputs.is_empty() {
        return;
    }
    s.push_str("outputs a hit would restore:\n");
    for o in outputs {
        s.push_str(&format!(
            "  {}{}: {}\n",
            printable(&String::from_utf8_lossy(&o.declared)),
            match o.kind {
                RootKind::Auto => " (automatic)",
                _ => "",
            },
            output_action(o)
        ));
    }
}

fn output_action(o: &RootReport) -> String {
    let mut parts = Vec::new();
    if o.restored > 0 {
        parts.push(format!("restore {}", o.restored));
    }
    if o.kept > 0 {
        parts.push(format!("keep {} (unchanged)", o.kept));
    }
    if o.removed > 0 {
        parts.push(format!("remove {} (stale)", o.removed));
    }
    if parts.is_empty() {
        parts.push("nothing to do".into());
    }
    parts.join(", ")
}

/// Say which files the key holds, so that a user can see which are not in
/// it: counts for walks and globs, names (up to [`SHOWN_NAMED`]) otherwise.
fn inputs_text(s: &mut String, inputs: &diff::Inputs) {
    if inputs.named.is_empty() && inputs.listings.is_empty() {
        s.push_str(
            "inputs in the key: none (no file's content is in the key; \
             name files as arguments or with -i)\n",
        );
        return;
    }
    let files = |n: usize| format!("{n} {}", if n == 1 { "file" } else { "files" });
    s.push_str(&format!("inputs in the key: {}\n", files(inputs.files)));
    if !inputs.named.is_empty() {
        let mut names: Vec<String> = inputs
            .named
            .iter()
            .take(SHOWN_NAMED)
            .map(|n| match n.state {
                State::Present => printable(&n.name).into_owned(),
                State::Absent => format!("{} (absent)", printable(&n.name)),
            })
            .collect();
        if inputs.named.len() > SHOWN_NAMED {
            names.push(format!("and {} more", inputs.named.len() - SHOWN_NAMED));
        }
        s.push_str(&format!("  named: {}\n", names.join(", ")));
    }
    for l in &inputs.listings {
        let how = if l.glob { "matching" } else { "under" };
        s.push_str(&format!(
            "  {how} {}: {}\n",
            printable(&l.name),
            files(l.files)
        ));
    }
    s.push_str("  any other file is not in the key: a change to it is not seen\n");
}

fn to_json(r: &Report) -> Value {
    if let Some(why) = &r.uncached {
        return json!({ "would": "run-uncached", "reason": why });
    }
    let entry = r.entry.as_ref().map(|e| {
        json!({
            "created_ms": e.created_ms,
            "age_ms": age(e.created_ms).as_millis() as u64,
            "duration_ms": e.duration.as_millis() as u64,
            "exit_code": e.exit_code,
        })
    });
    let components: Vec<Value> = r
        .components
        .iter()
        .map(|c| {
            json!({
                "kind": c.kind,
                "name": if c.kind == Kind::Argv { r.command.clone() } else { c.name.clone() },
                "state": c.state,
                "digest": c.digest.to_hex(),
            })
        })
        .collect();
    json!({
        "would": if would_hit(r) { "hit" } else { "miss" },
        "key": r.key,
        "command": r.command,
        "entry": entry,
        "refused": r.refused,
        "components": components,
        "inputs": diff::inputs(&r.components),
        "previous": r.previous.map(|(key, created)| json!({
            "key": key.to_hex(),
            "created_ms": created,
            "age_ms": age(created).as_millis() as u64,
        })),
        "changes": r.changes,
        "traced": r.traced.as_ref().map(|t| json!({
            "matches": t.manifest.is_some() && t.mismatch.is_none(),
            "changed": t.mismatch,
            "inputs": t.manifest.as_ref().map(|m| m.items.iter().map(|(p, st)| json!({
                "path": p.to_string_lossy(),
                "state": st.describe(),
            })).collect::<Vec<_>>()),
        })),
        "remote": r.remote.as_ref().map(|(url, holds)| json!({ "url": url, "holds": holds })),
        "trace_excludes": r.trace_excludes.as_ref().map(|(defaults, globs)| json!({
            "defaults": defaults.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            "globs": globs,
        })),
        "outputs": r.outputs.iter().map(|o| json!({
            "path": String::from_utf8_lossy(&o.declared),
            "kind": match o.kind {
                RootKind::Path => "path",
                RootKind::Glob => "glob",
                RootKind::Auto => "automatic",
            },
            "restore": o.restored,
            "keep": o.kept,
            "remove": o.removed,
        })).collect::<Vec<_>>(),
        "unrecordable": r.unrecordable,
        "not_recorded": r.not_recorded.as_ref().map(|(note, at)| json!({ "reason": note, "at_ms": at })),
    })
}
