//! Turning the parsed command line and the `MEMORUN_*` environment into
//! memorun's own [`Config`].
//!
//! Everything here is validation and defaulting; nothing touches the store
//! or the command. A bad value is a usage error (exit 125) that names it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::base::Digest;
use crate::cli::{self, RunArgs, StoreArgs};
use crate::exec::refresh::REFRESH_KEY_VAR;
use crate::key::exclude::Exclusions;
use crate::key::spec::{EnvPattern, KeySpec};
use crate::key::stdin::StdinMode;
use crate::outputs::OutputSpec;
use crate::remote::{self, RemoteConfig, RemoteUrl, Shared, Timeouts};
use crate::store::evict::Limits;
use crate::term::ui::Verbosity;

/// Where the store is, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// Use the store in this directory.
    Dir(PathBuf),
    /// `--no-cache` or `MEMORUN_DISABLE`: run plainly, say nothing.
    Disabled,
    /// No directory could be determined: run plainly, with this warning.
    Unavailable(String),
}

/// The store's size limits from `MEMORUN_MAX_SIZE` (`500MB`, `2GiB`;
/// default 5 GiB) and `MEMORUN_MAX_ENTRIES` (default unlimited). A value
/// that does not parse keeps the default and comes back as a warning: a
/// typo in an environment variable must not stop the command.
pub fn limits_from_env(env: &impl Fn(&str) -> Option<OsString>) -> (Limits, Vec<String>) {
    let mut warnings = Vec::new();
    let mut limits = Limits::default();
    if let Some(v) = env("MEMORUN_MAX_SIZE").filter(|v| !v.is_empty()) {
        let s = v.to_string_lossy();
        match s.trim().parse::<bytesize::ByteSize>() {
            Ok(size) => limits.max_bytes = size.as_u64(),
            Err(_) => warnings.push(format!(
                "MEMORUN_MAX_SIZE='{s}' is not a size like 500MB or 2GiB; using the default 5 GiB"
            )),
        }
    }
    if let Some(v) = env("MEMORUN_MAX_ENTRIES").filter(|v| !v.is_empty()) {
        let s = v.to_string_lossy();
        match s.trim().parse::<u64>() {
            Ok(n) => limits.max_entries = Some(n),
            Err(_) => warnings.push(format!(
                "MEMORUN_MAX_ENTRIES='{s}' is not a number; not limiting entries"
            )),
        }
    }
    (limits, warnings)
}

impl CacheLocation {
    /// The directory if it exists, `None` if it does not (nothing recorded
    /// yet), an error when there is no directory at all.
    pub fn existing_dir(&self) -> Result<Option<PathBuf>> {
        match self {
            CacheLocation::Dir(d) if d.exists() => Ok(Some(d.clone())),
            CacheLocation::Dir(_) => Ok(None),
            CacheLocation::Disabled => Ok(None),
            CacheLocation::Unavailable(why) => bail!("{why}"),
        }
    }

    /// When the default cache directory was found without `HOME` (the
    /// home directory in the password database, as `dirs` falls back to),
    /// a note saying so: a surprise in a container or under `env -i`.
    fn home_note(
        &self,
        store: &StoreArgs,
        env: &impl Fn(&str) -> Option<OsString>,
    ) -> Option<String> {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
        let chosen = store
            .cache_dir
            .as_ref()
            .is_some_and(|d| !d.as_os_str().is_empty())
            || set("MEMORUN_DIR")
            || env("XDG_CACHE_HOME").is_some_and(|v| Path::new(&v).is_absolute());
        match self {
            CacheLocation::Dir(dir) if !chosen && !set("HOME") => Some(format!(
                "HOME is not set: using the cache directory '{}', under the home directory the password database gives",
                dir.display()
            )),
            _ => None,
        }
    }

    /// `--cache-dir`, else `MEMORUN_DIR`, else `$XDG_CACHE_HOME/memorun`,
    /// else `~/.cache/memorun`. Empty values count as unset, so that
    /// `MEMORUN_DIR=` in a Makefile never stops a command.
    pub fn of(store: &StoreArgs, env: &impl Fn(&str) -> Option<OsString>) -> CacheLocation {
        let from_env = env("MEMORUN_DIR").map(PathBuf::from);
        if let Some(dir) = store
            .cache_dir
            .clone()
            .filter(|d| !d.as_os_str().is_empty())
            .or(from_env.filter(|d| !d.as_os_str().is_empty()))
        {
            CacheLocation::Dir(dir)
        } else if let Some(dir) = dirs::cache_dir() {
            CacheLocation::Dir(dir.join("memorun"))
        } else {
            CacheLocation::Unavailable(
                "no cache directory (set MEMORUN_DIR, XDG_CACHE_HOME or HOME)".into(),
            )
        }
    }
}

/// This process refreshes a stale entry in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The key of the entry being refreshed (one refresh per key at a time).
    pub key: Digest,
}

/// How to trace a command (`--trace`).
#[derive(Debug, Clone, Default)]
pub struct TraceConfig {
    /// `--trace-exclude` globs, over absolute paths (relative ones were
    /// resolved against the working directory).
    pub exclude: Option<globset::GlobSet>,
    /// The default exclusions ([`default_trace_excludes`]), each left out
    /// with everything under it; none with `--no-default-trace-excludes`.
    pub defaults: Vec<PathBuf>,
}

/// cargo's lock files under `CARGO_HOME`, and the side files of the
/// SQLite database `.global-cache`.
const CARGO_HOME_STATE: [&str; 6] = [
    ".global-cache",
    ".global-cache-journal",
    ".global-cache-wal",
    ".global-cache-shm",
    ".package-cache",
    ".package-cache-mutate",
];

/// The state of the toolchains the README's recipes use, rewritten by
/// every run, and so left out of what `--trace` records unless
/// `--no-default-trace-excludes`: cargo's lock files under `CARGO_HOME`
/// (default `~/.cargo`; `.global-cache` is an SQLite database, whose
/// journal and WAL files any concurrent cargo creates and removes) and its
/// target directory (`CARGO_TARGET_DIR`, else `./target` when
/// `./Cargo.toml` exists). Named exactly: not the
/// registry's index or sources, which decide dependency versions when
/// there is no `Cargo.lock`. Paths through a symlink are listed as given
/// and resolved, since the tracer sees the paths the command uses.
///
/// If you change this list, bump `KEY_VERSION`: the key of a traced run
/// stands for what it left out.
pub fn default_trace_excludes(env: &impl Fn(&str) -> Option<OsString>, cwd: &Path) -> Vec<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cargo_home = set("CARGO_HOME")
        .map(|h| cwd.join(h))
        .or_else(|| set("HOME").map(|h| h.join(".cargo")))
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")));
    let mut paths: Vec<PathBuf> = cargo_home
        .iter()
        .flat_map(|h| CARGO_HOME_STATE.map(|n| h.join(n)))
        .collect();
    match set("CARGO_TARGET_DIR") {
        Some(t) => paths.push(cwd.join(t)),
        None if cwd.join("Cargo.toml").is_file() => paths.push(cwd.join("target")),
        None => {}
    }
    let resolved: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| {
            let real = std::fs::canonicalize(p.parent()?)
                .ok()?
                .join(p.file_name()?);
            (real != *p).then_some(real)
        })
        .collect();
    paths.extend(resolved);
    paths
}

/// `--trace-exclude` globs compiled, a relative one resolved against `cwd`
/// as `--exclude` is; `dir/**` leaves out `dir` itself too.
fn trace_exclude_globs(globs: &[String], cwd: &Path) -> Result<Option<globset::GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for g in globs {
        let absolute = if Path::new(g).is_absolute() {
            g.clone()
        } else {
            let Some(cwd) = cwd.to_str() else {
                bail!(
                    "--trace-exclude '{g}' is relative, and the working directory '{}' is not valid UTF-8: give an absolute glob",
                    cwd.display()
                );
            };
            format!("{}/{g}", globset::escape(cwd))
        };
        for pattern in crate::key::exclude::globs_of(&absolute) {
            let glob = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    anyhow::anyhow!("--trace-exclude '{g}' is not a valid glob: {}", e.kind())
                })?;
            set.add(glob);
        }
    }
    Ok(Some(set.build().map_err(|e| anyhow::anyhow!("{e}"))?))
}

/// Everything memorun needs to know to run or replay one command.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--trace` (or `MEMORUN_TRACE=1`): the command's traced inputs go
    /// into the key; with the `--trace-exclude` globs.
    pub trace: Option<TraceConfig>,
    /// The command, and what goes into its key.
    pub key: KeySpec,
    /// Record non-zero exits too.
    pub cache_failures: bool,
    /// Run even on a hit.
    pub force: bool,
    /// Do not replay entries older than this.
    pub ttl: Option<std::time::Duration>,
    /// Replay entries older than this at once and refresh them in the
    /// background.
    pub stale: Option<std::time::Duration>,
    /// The store.
    pub cache: CacheLocation,
    /// How big the store may grow.
    pub limits: Limits,
    /// Problems with the configuration that do not stop the command.
    pub warnings: Vec<String>,
    /// What `-v` says about where the configuration came from.
    pub notes: Vec<String>,
    /// Set when this process is a background refresh.
    pub refresh: Option<Refresh>,
    /// How much to say.
    pub verbosity: Verbosity,
    /// The remote tier, when one is configured and usable.
    pub remote: Option<RemoteConfig>,
}

/// Whether an environment flag like `MEMORUN_DISABLE` is switched on.
fn flag_is_on(value: Option<&OsStr>) -> bool {
    match value.and_then(OsStr::to_str) {
        None => value.is_some_and(|v| !v.is_empty()),
        Some(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        ),
    }
}

impl Config {
    /// Build the config from run options and an environment lookup.
    pub fn new(args: RunArgs, env: impl Fn(&str) -> Option<OsString>) -> Result<Config> {
        if args.command.is_empty() {
            bail!("no command given (usage: memorun [OPTIONS] -- COMMAND [ARG]...)");
        }
        if args.command[0].is_empty() {
            bail!("the command name is empty");
        }
        let env_patterns = args
            .env
            .iter()
            .map(|s| EnvPattern::parse(s))
            .collect::<Result<Vec<_>>>()?;
        let ignore_args = ignore_arg_matchers(&args.ignore_arg)?;
        let (inputs, mut patterns) = inputs_and_exclusions(&args.input, &args.exclude)?;
        let outputs = OutputSpec::new(&args.output, !args.no_auto_outputs)?;
        let trace = trace_config(&args, &env)?;
        // Declared outputs are never inputs: out of walks and globs (only
        // compiled when there is a walk or glob: a glob set costs more to
        // build than a tiny hit), and out of the automatic inputs (see
        // `OutputSpec::covers`).
        if !inputs.is_empty() {
            patterns.extend(outputs.exclusions());
        }
        let exclude = Exclusions::new(&patterns)?;
        if args.key_cmd.iter().any(|c| c.trim().is_empty()) {
            bail!("--key-cmd needs a command, got an empty string");
        }
        let mut notes = Vec::new();
        let cache = if args.no_cache || flag_is_on(env("MEMORUN_DISABLE").as_deref()) {
            CacheLocation::Disabled
        } else {
            let cache = CacheLocation::of(&args.store, &env);
            notes.extend(cache.home_note(&args.store, &env));
            cache
        };
        let refresh = match env(REFRESH_KEY_VAR) {
            None => None,
            Some(hex) => Some(Refresh {
                key: hex
                    .to_str()
                    .and_then(Digest::from_hex)
                    .ok_or_else(|| anyhow::anyhow!("{REFRESH_KEY_VAR} is not a key"))?,
            }),
        };
        let (limits, mut warnings) = limits_from_env(&env);
        let remote = match &cache {
            CacheLocation::Dir(_) => remote_from(
                args.remote.as_deref(),
                args.remote_read_only,
                &env,
                &mut warnings,
                &mut notes,
            )?,
            _ => None,
        };
        let base_dir = base_dir_from(args.base_dir.as_deref(), &env, &mut warnings)?;
        let verbosity = if args.quiet || refresh.is_some() {
            Verbosity::Quiet
        } else if args.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Ok(Config {
            key: KeySpec {
                command: args.command,
                env: env_patterns,
                inputs,
                exclude,
                ignore_args,
                keys: args.key,
                key_cmds: args.key_cmd,
                stdin: match args.stdin {
                    cli::StdinMode::Auto => StdinMode::Auto,
                    cli::StdinMode::Hash => StdinMode::Hash,
                    cli::StdinMode::Ignore => StdinMode::Ignore,
                },
                auto_inputs: !args.no_auto_inputs,
                include_cwd: !args.no_cwd,
                outputs,
                traced: trace.is_some(),
                trace_exclude: args.trace_exclude.clone(),
                default_trace_excludes: !args.no_default_trace_excludes,
                base_dir,
            },
            trace,
            cache_failures: args.cache_failures,
            force: args.force || refresh.is_some(),
            ttl: args.ttl,
            stale: args.stale,
            cache,
            limits,
            warnings,
            notes,
            refresh,
            verbosity,
            remote,
        })
    }
}

/// The `--ignore-arg` globs, compiled.
fn ignore_arg_matchers(globs: &[String]) -> Result<Vec<globset::GlobMatcher>> {
    globs
        .iter()
        .map(|s| {
            globset::Glob::new(s)
                .map(|g| g.compile_matcher())
                .map_err(|e| {
                    anyhow::anyhow!("--ignore-arg '{s}' is not a valid pattern: {}", e.kind())
                })
        })
        .collect()
}

/// The `--input` paths, and the exclusion patterns: `--exclude`'s and
/// those of `-i '!GLOB'`, which leaves paths out as `--exclude GLOB` does.
fn inputs_and_exclusions(
    input: &[OsString],
    exclude: &[String],
) -> Result<(Vec<OsString>, Vec<String>)> {
    if let Some(empty) = input.iter().find(|p| p.is_empty() || p.as_bytes() == b"!") {
        bail!("--input needs a path, got '{}'", empty.to_string_lossy());
    }
    let (excluded, inputs): (Vec<OsString>, Vec<OsString>) = input
        .iter()
        .cloned()
        .partition(|p| p.as_bytes().starts_with(b"!"));
    let mut patterns = exclude.to_vec();
    for p in &excluded {
        match p.to_str() {
            Some(s) => patterns.push(s[1..].to_string()),
            None => bail!("exclusion '{}' is not valid UTF-8", p.to_string_lossy()),
        }
    }
    if let Some(empty) = patterns.iter().find(|p| p.is_empty()) {
        bail!("--exclude needs a pattern, got '{empty}'");
    }
    Ok((inputs, patterns))
}

/// `--trace` (or `MEMORUN_TRACE`) with its exclusions; the trace options
/// without it are refused.
fn trace_config(
    args: &RunArgs,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<Option<TraceConfig>> {
    if args.trace || flag_is_on(env("MEMORUN_TRACE").as_deref()) {
        let cwd = std::env::current_dir()
            .map_err(|e| anyhow::anyhow!("cannot determine the working directory: {e}"))?;
        return Ok(Some(TraceConfig {
            exclude: trace_exclude_globs(&args.trace_exclude, &cwd)?,
            defaults: match args.no_default_trace_excludes {
                true => Vec::new(),
                false => default_trace_excludes(env, &cwd),
            },
        }));
    }
    if !args.trace_exclude.is_empty() {
        bail!("--trace-exclude needs --trace");
    }
    if args.no_default_trace_excludes {
        bail!("--no-default-trace-excludes needs --trace");
    }
    Ok(None)
}

/// `--base-dir`, else `MEMORUN_BASE_DIR` (empty: unset), made absolute and
/// canonical (the working directory, which is compared with it, is). A
/// directory that does not exist is a usage error on the command line and
/// a warning (no base directory) in the environment.
fn base_dir_from(
    arg: Option<&Path>,
    env: &impl Fn(&str) -> Option<OsString>,
    warnings: &mut Vec<String>,
) -> Result<Option<PathBuf>> {
    let from_env = env("MEMORUN_BASE_DIR").filter(|v| !v.is_empty());
    let (dir, source) = match (arg.filter(|a| !a.as_os_str().is_empty()), &from_env) {
        (Some(a), _) => (a.to_path_buf(), "--base-dir"),
        (None, Some(e)) => (PathBuf::from(e), "MEMORUN_BASE_DIR"),
        (None, None) => return Ok(None),
    };
    match std::fs::canonicalize(&dir) {
        Ok(d) if d.is_dir() => Ok(Some(d)),
        _ if source == "--base-dir" => {
            bail!("--base-dir '{}' is not a directory", dir.display())
        }
        _ => {
            warnings.push(format!(
                "MEMORUN_BASE_DIR='{}' is not a directory; paths are keyed as they are",
                dir.display()
            ));
            Ok(None)
        }
    }
}

/// The remote tier from `--remote`/`MEMORUN_REMOTE` and the other
/// `MEMORUN_REMOTE_*` variables and `MEMORUN_SECRET`. A bad `--remote` is
/// a usage error; a bad variable, or no usable secret, is a warning and
/// no remote: a CI setting must not fail every command.
fn remote_from(
    arg: Option<&str>,
    read_only: bool,
    env: &impl Fn(&str) -> Option<OsString>,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Option<RemoteConfig>> {
    let from_env = env("MEMORUN_REMOTE").filter(|v| !v.is_empty());
    let (text, source) = match (arg.filter(|r| !r.is_empty()), &from_env) {
        (Some(r), _) => (r.to_string(), "--remote"),
        (None, Some(e)) => (e.to_string_lossy().into_owned(), "MEMORUN_REMOTE"),
        (None, None) => return Ok(None),
    };
    let url = match RemoteUrl::parse(&text) {
        Ok(u) => u,
        Err(e) if source == "--remote" => return Err(e),
        Err(e) => {
            warnings.push(format!(
                "MEMORUN_REMOTE: {e:#}; the remote cache is not used"
            ));
            return Ok(None);
        }
    };
    let secret = env("MEMORUN_SECRET").unwrap_or_default();
    if secret.len() < remote::MIN_SECRET_LEN {
        warnings.push(format!(
            "the remote cache {url} is not used: {} (every machine keys env values and stdin, and seals entries, with the team's secret; `openssl rand -hex 32` makes one)",
            match secret.is_empty() {
                true => "MEMORUN_SECRET is not set".to_string(),
                false => format!(
                    "MEMORUN_SECRET is shorter than {} characters",
                    remote::MIN_SECRET_LEN
                ),
            }
        ));
        return Ok(None);
    }
    let mut timeouts = Timeouts::default();
    if let Some(t) = env("MEMORUN_REMOTE_TIMEOUT").filter(|v| !v.is_empty()) {
        let t = t.to_string_lossy();
        match Timeouts::parse(&t) {
            Some(parsed) => timeouts = parsed,
            None => warnings.push(format!(
                "MEMORUN_REMOTE_TIMEOUT='{t}' is not a duration like 10s or 200ms,10s; using 100ms,10s"
            )),
        }
    }
    if let Some(t) = env("MEMORUN_REMOTE_LOOKUP_TIMEOUT").filter(|v| !v.is_empty()) {
        let t = t.to_string_lossy();
        match Timeouts::parse_lookup(&t) {
            Some(lookup) => timeouts.lookup = lookup,
            None => warnings.push(format!(
                "MEMORUN_REMOTE_LOOKUP_TIMEOUT='{t}' is not a duration like 2s or 500ms; using {}",
                crate::term::format::human_duration(timeouts.lookup)
            )),
        }
    }
    let mut max_object = remote::MAX_OBJECT;
    if let Some(v) = env("MEMORUN_REMOTE_MAX_SIZE").filter(|v| !v.is_empty()) {
        let v = v.to_string_lossy();
        match v.trim().parse::<bytesize::ByteSize>() {
            Ok(size) => max_object = size.as_u64(),
            Err(_) => warnings.push(format!(
                "MEMORUN_REMOTE_MAX_SIZE='{v}' is not a size like 500MB; using 1 GiB"
            )),
        }
    }
    let mut read_only = read_only || flag_is_on(env("MEMORUN_REMOTE_READ_ONLY").as_deref());
    let s3 = match url.scheme() {
        remote::url::Scheme::S3 => match remote::s3::Settings::from_env(env, url.bucket()) {
            Ok(s) => {
                if s.anonymous() && !read_only {
                    read_only = true;
                    notes.push(format!(
                        "no AWS_ACCESS_KEY_ID: the remote cache {url} is read anonymously, and nothing is uploaded"
                    ));
                }
                Some(s)
            }
            Err(e) => {
                warnings.push(format!("the remote cache {url} is not used: {e}"));
                return Ok(None);
            }
        },
        _ => None,
    };
    Ok(Some(RemoteConfig {
        url,
        read_only,
        token: env("MEMORUN_REMOTE_TOKEN")
            .filter(|t| !t.is_empty())
            .map(|t| t.to_string_lossy().into_owned()),
        shared: Shared::derive(secret.as_bytes()),
        timeouts,
        max_object,
        s3,
        retry: flag_is_on(env("MEMORUN_REMOTE_RETRY").as_deref()),
    }))
}

/// The remote named by `MEMORUN_REMOTE`, without credentials, for
/// `memorun stats`; `None` when unset or not a URL.
pub fn remote_display(env: &impl Fn(&str) -> Option<OsString>) -> Option<String> {
    let v = env("MEMORUN_REMOTE").filter(|v| !v.is_empty())?;
    RemoteUrl::parse(&v.to_string_lossy())
        .ok()
        .map(|u| u.display().to_string())
}

impl Config {
    /// What this run may replay and record (see `replay::policy`).
    pub fn policy(&self) -> crate::replay::policy::Policy {
        crate::replay::policy::Policy {
            ttl: self.ttl,
            cache_failures: self.cache_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn config(args: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        let cli =
            Cli::try_parse_from(std::iter::once("memorun").chain(args.iter().copied())).unwrap();
        let env: Vec<(String, OsString)> =
            env.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        Config::new(cli.run, move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let c = config(&["--cache-dir", "/c", "--", "true"], &[]).unwrap();
        assert!(c.key.auto_inputs && c.key.include_cwd && !c.force && !c.cache_failures);
        assert_eq!(c.cache, CacheLocation::Dir("/c".into()));
        assert_eq!(c.verbosity, Verbosity::Normal);
    }

    #[test]
    fn empty_memorun_dir_counts_as_unset() {
        let c = config(&["--", "true"], &[("MEMORUN_DIR", "")]).unwrap();
        assert_ne!(c.cache, CacheLocation::Dir("".into()));
        let c = config(&["--", "true"], &[("MEMORUN_DIR", "/m")]).unwrap();
        assert_eq!(c.cache, CacheLocation::Dir("/m".into()));
        let c = config(
            &["--cache-dir", "/c", "--", "true"],
            &[("MEMORUN_DIR", "/m")],
        )
        .unwrap();
        assert_eq!(c.cache, CacheLocation::Dir("/c".into()));
    }

    #[test]
    fn disable_switches() {
        let c = config(&["--no-cache", "--", "true"], &[]).unwrap();
        assert_eq!(c.cache, CacheLocation::Disabled);
        let c = config(&["--", "true"], &[("MEMORUN_DISABLE", "1")]).unwrap();
        assert_eq!(c.cache, CacheLocation::Disabled);
        let c = config(
            &["--cache-dir", "/c", "--", "true"],
            &[("MEMORUN_DISABLE", "0")],
        )
        .unwrap();
        assert_eq!(c.cache, CacheLocation::Dir("/c".into()));
    }

    #[test]
    fn usage_errors_name_the_culprit() {
        let e = config(&[], &[]).unwrap_err();
        assert!(e.to_string().contains("no command given"));
        let e = config(&["-e", "A=B", "--", "true"], &[]).unwrap_err();
        assert!(e.to_string().contains("'A=B'"));
        let e = config(&["-e", "[", "--", "true"], &[]).unwrap_err();
        assert!(e.to_string().contains("not a valid pattern"));
        let e = config(&["-x", "[", "--", "true"], &[]).unwrap_err();
        assert!(e.to_string().contains("--ignore-arg '['"));
        let e = config(&["--key-cmd", " ", "--", "true"], &[]).unwrap_err();
        assert!(e.to_string().contains("--key-cmd"));
    }

    #[test]
    fn ignored_args_never_include_the_program() {
        let c = config(
            &[
                "-x", "--jobs=*", "-x", "*sh", "--", "sh", "--jobs=4", "-c", "x",
            ],
            &[],
        )
        .unwrap();
        let ignored: Vec<bool> = (0..4).map(|i| c.key.is_ignored_arg(i)).collect();
        assert_eq!(ignored, [false, true, false, false]);
    }

    #[test]
    fn a_default_cache_directory_found_without_home_is_noted() {
        let home_note = |pairs: &[(&str, &str)]| {
            let c = config(&["--", "true"], pairs).unwrap();
            c.notes.iter().any(|n| n.starts_with("HOME is not set"))
        };
        assert!(home_note(&[]));
        assert!(home_note(&[("HOME", "")]));
        assert!(!home_note(&[("HOME", "/home/me")]));
        assert!(!home_note(&[("MEMORUN_DIR", "/c")]));
        assert!(!home_note(&[("XDG_CACHE_HOME", "/xdg")]));
        let c = config(&["--no-cache", "--", "true"], &[]).unwrap();
        assert!(c.notes.is_empty());
    }

    #[test]
    fn size_limits_from_the_environment() {
        let c = config(
            &["--", "true"],
            &[("MEMORUN_MAX_SIZE", "500MB"), ("MEMORUN_MAX_ENTRIES", "10")],
        )
        .unwrap();
        assert_eq!(c.limits.max_bytes, 500_000_000);
        assert_eq!(c.limits.max_entries, Some(10));
        let c = config(&["--", "true"], &[("MEMORUN_MAX_SIZE", "2GiB")]).unwrap();
        assert_eq!(c.limits.max_bytes, 2 * 1024 * 1024 * 1024);
        let c = config(&["--", "true"], &[]).unwrap();
        assert_eq!(c.limits.max_bytes, 5 * 1024 * 1024 * 1024);
        let c = config(&["--", "true"], &[("MEMORUN_MAX_SIZE", "lots")]).unwrap();
        assert_eq!(c.limits.max_bytes, 5 * 1024 * 1024 * 1024);
        assert!(
            c.warnings[0].contains("MEMORUN_MAX_SIZE='lots'"),
            "{:?}",
            c.warnings
        );
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_remote_needs_the_teams_secret() {
        let c = config(
            &["--remote", "redis://h", "--", "true"],
            &[("MEMORUN_SECRET", SECRET)],
        )
        .unwrap();
        let r = c.remote.unwrap();
        assert_eq!(r.url.display(), "redis://h");
        assert!(!r.read_only);
        assert_eq!(r.timeouts, crate::remote::Timeouts::default());
        for secret in [None, Some(""), Some("short")] {
            let env: Vec<(&str, &str)> =
                secret.map(|s| ("MEMORUN_SECRET", s)).into_iter().collect();
            let c = config(&["--remote", "redis://h", "--", "true"], &env).unwrap();
            assert!(c.remote.is_none(), "{secret:?}");
            assert!(c.warnings[0].contains("MEMORUN_SECRET"), "{:?}", c.warnings);
        }
        // No cache, no remote (and no warning about it).
        let c = config(&["--no-cache", "--remote", "redis://h", "--", "true"], &[]).unwrap();
        assert!(c.remote.is_none() && c.warnings.is_empty());
    }

    #[test]
    fn remote_settings_from_the_environment() {
        let env = [
            ("MEMORUN_REMOTE", "https://u:p@h/base"),
            ("MEMORUN_SECRET", SECRET),
            ("MEMORUN_REMOTE_READ_ONLY", "1"),
            ("MEMORUN_REMOTE_TOKEN", "tok"),
            ("MEMORUN_REMOTE_TIMEOUT", "200ms,30s"),
            ("MEMORUN_REMOTE_MAX_SIZE", "10MB"),
            ("MEMORUN_REMOTE_LOOKUP_TIMEOUT", "750ms"),
            ("MEMORUN_REMOTE_RETRY", "1"),
        ];
        let r = config(&["--", "true"], &env).unwrap().remote.unwrap();
        assert_eq!(r.url.display(), "https://h/base");
        assert!(r.read_only);
        assert_eq!(r.token.as_deref(), Some("tok"));
        assert_eq!(r.timeouts.connect, std::time::Duration::from_millis(200));
        assert_eq!(r.timeouts.lookup, std::time::Duration::from_millis(750));
        assert!(r.retry);
        assert_eq!(r.max_object, 10_000_000);
        let c = config(
            &["--", "true"],
            &[
                ("MEMORUN_REMOTE", "redis://h"),
                ("MEMORUN_SECRET", SECRET),
                ("MEMORUN_REMOTE_LOOKUP_TIMEOUT", "soon"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.remote.unwrap().timeouts.lookup,
            crate::remote::LOOKUP_TIMEOUT
        );
        assert!(
            c.warnings[0].starts_with("MEMORUN_REMOTE_LOOKUP_TIMEOUT='soon'"),
            "{:?}",
            c.warnings
        );
        // --remote wins over the variable.
        let r = config(&["--remote", "redis://other", "--", "true"], &env)
            .unwrap()
            .remote
            .unwrap();
        assert_eq!(r.url.display(), "redis://other");
    }

    #[test]
    fn a_bad_remote_url_is_an_error_on_the_command_line_and_a_warning_in_the_environment() {
        let e = config(
            &["--remote", "ftp://h", "--", "true"],
            &[("MEMORUN_SECRET", SECRET)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("ftp"), "{e}");
        let c = config(
            &["--", "true"],
            &[("MEMORUN_REMOTE", "ftp://h"), ("MEMORUN_SECRET", SECRET)],
        )
        .unwrap();
        assert!(c.remote.is_none());
        assert!(
            c.warnings[0].starts_with("MEMORUN_REMOTE:"),
            "{:?}",
            c.warnings
        );
        let c = config(
            &["--", "true"],
            &[
                ("MEMORUN_REMOTE", "redis://h"),
                ("MEMORUN_SECRET", SECRET),
                ("MEMORUN_REMOTE_TIMEOUT", "soon"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.remote.unwrap().timeouts,
            crate::remote::Timeouts::default()
        );
        assert!(c.warnings[0].contains("MEMORUN_REMOTE_TIMEOUT='soon'"));
    }

    #[test]
    fn base_dir_is_canonical_and_must_exist() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
        let link = t.path().join("link");
        let c = config(&["--base-dir", link.to_str().unwrap(), "--", "true"], &[]).unwrap();
        assert_eq!(c.key.base_dir, Some(real.canonicalize().unwrap()));
        let missing = t.path().join("missing");
        assert!(
            config(
                &["--base-dir", missing.to_str().unwrap(), "--", "true"],
                &[]
            )
            .is_err()
        );
        let c = config(
            &["--", "true"],
            &[("MEMORUN_BASE_DIR", missing.to_str().unwrap())],
        )
        .unwrap();
        assert!(c.key.base_dir.is_none());
        assert!(c.warnings[0].contains("MEMORUN_BASE_DIR"));
    }

    #[test]
    fn default_trace_excludes_name_cargos_state_exactly() {
        let t = tempfile::tempdir().unwrap();
        let cwd = t.path().canonicalize().unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let got = default_trace_excludes(&env(&[("HOME", "/h")]), &cwd);
        assert_eq!(
            got,
            [
                ".global-cache",
                ".global-cache-journal",
                ".global-cache-wal",
                ".global-cache-shm",
                ".package-cache",
                ".package-cache-mutate"
            ]
            .map(|n| PathBuf::from("/h/.cargo").join(n)),
            "no target directory without a Cargo.toml"
        );
        std::fs::write(cwd.join("Cargo.toml"), "").unwrap();
        let got = default_trace_excludes(&env(&[("CARGO_HOME", "/c")]), &cwd);
        assert_eq!(got.first(), Some(&PathBuf::from("/c/.global-cache")));
        assert_eq!(got.last(), Some(&cwd.join("target")));
        let got = default_trace_excludes(&env(&[("CARGO_TARGET_DIR", "out")]), &cwd);
        assert_eq!(got.last(), Some(&cwd.join("out")));
    }

    #[test]
    fn a_relative_trace_exclude_is_resolved_against_the_working_directory() {
        let cwd = Path::new("/w/[odd]");
        let set = trace_exclude_globs(&["target/**".into(), "/abs/*.lock".into()], cwd)
            .unwrap()
            .unwrap();
        for p in [
            "/w/[odd]/target",
            "/w/[odd]/target/debug/x",
            "/abs/Cargo.lock",
        ] {
            assert!(set.is_match(p), "{p}");
        }
        for p in [
            "/w/o/target/x",
            "/elsewhere/target/x",
            "/abs/sub/Cargo.lock",
        ] {
            assert!(!set.is_match(p), "{p}");
        }
        assert!(trace_exclude_globs(&[], cwd).unwrap().is_none());
        let e = trace_exclude_globs(&["a[".into()], cwd).unwrap_err();
        assert!(e.to_string().contains("--trace-exclude 'a['"), "{e}");
    }

    #[test]
    fn env_patterns() {
        assert!(matches!(EnvPattern::parse("HOME").unwrap(), EnvPattern::Exact(n) if n == "HOME"));
        assert!(matches!(
            EnvPattern::parse("AWS_*").unwrap(),
            EnvPattern::Glob(_)
        ));
    }
}
