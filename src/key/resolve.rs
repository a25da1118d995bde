//! Resolving a [`KeySpec`] against the world into a [`Key`]: the command
//! line after `--ignore-arg`, the working directory, the chosen environment
//! variables, `--key` and `--key-cmd` material, the inputs and stdin.
//!
//! This is the only place that decides *what* goes into the key; `key`
//! decides *how* it is encoded. Env values are reduced to digests keyed
//! with the cache's secret here and never leave this module in plain text.
//!
//! Resolution has two steps so that the store can be asked in between which
//! arguments earlier runs of this command created ([`Base`] names the
//! command; [`resolve`] finishes the key): an output file is not an input.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, anyhow};

use crate::key::base_dir;
use crate::key::inputs::{self, Collector, InputError, StatCache, WatchItem};
use crate::key::spec::{EnvPattern, KeySpec};
use crate::key::{Component, Digest, Key};

/// Set (to the key, in hex) in the environment of a background refresh
/// (`exec::refresh`). Removed from the environment of every command
/// memorun runs, `--key-cmd`s included: defined here, below both.
pub const REFRESH_KEY_VAR: &str = "MEMORUN_INTERNAL_REFRESH_KEY";

/// The command's identity: argv after `--ignore-arg`, and where it runs.
#[derive(Debug, Clone)]
pub struct Base {
    /// The argv component (after `--ignore-arg`).
    pub argv: Component,
    /// The working directory.
    pub cwd: PathBuf,
    /// Names this command in this directory, for the output manifest.
    pub manifest: Digest,
    /// The command line, shell-quoted for display.
    pub display: String,
    /// The command line as it is keyed (without `--ignore-arg` matches).
    pub key_display: String,
}

impl Base {
    /// The identity of the spec's command, run from the current directory.
    pub fn new(spec: &KeySpec) -> Result<Base> {
        let cwd = std::env::current_dir().context("cannot determine the working directory")?;
        let base = spec.base_dir.as_deref();
        let argv: Vec<_> = spec
            .command
            .iter()
            .enumerate()
            .filter(|(i, _)| !spec.is_ignored_arg(*i))
            .map(|(_, a)| base_dir::key_form(base, a.as_bytes()))
            .collect();
        let argv = Component::argv(&argv);
        Ok(Base {
            manifest: crate::base::hashing::manifest(&argv.digest, cwd.as_os_str().as_bytes()),
            argv,
            display: display_command(&spec.command),
            key_display: display_command(
                &spec
                    .command
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !spec.is_ignored_arg(*i))
                    .map(|(_, a)| base_dir::shown(base, a))
                    .collect::<Vec<_>>(),
            ),
            cwd,
        })
    }
}

/// A resolved key, with what the run needs to remember about it.
#[derive(Debug)]
pub struct Resolved {
    /// The key and its components.
    pub key: Key,
    /// The command's identity.
    pub base: Base,
    /// Everything whose change during the run makes the result unrecordable.
    pub watch: Vec<WatchItem>,
    /// When the inputs were examined, nanoseconds since the epoch.
    pub started_ns: i64,
    /// Arguments that named nothing before the run: if the run creates them,
    /// they are outputs.
    pub maybe_outputs: Vec<OsString>,
    /// Arguments earlier runs of this command created (left out of the key;
    /// their state after the run is recorded with the entry instead).
    pub known_outputs: Vec<Vec<u8>>,
    /// A regular file on stdin, read in place.
    pub stdin_file: Option<crate::key::stdin::StdinFile>,
    /// Why a run of this key must not be recorded whatever it does (an
    /// inherited descriptor whose reads cannot be keyed), if so.
    pub unrecordable: Option<String>,
}

/// What resolution needs from the store.
pub struct Context<'a> {
    /// Keys the env value digests.
    pub secret: &'a [u8; 32],
    /// Digests of unchanged files.
    pub stat_cache: &'a mut dyn StatCache,
    /// Arguments earlier runs created (outputs, not inputs).
    pub known_outputs: &'a [Vec<u8>],
    /// Show a bar on the terminal when hashing inputs takes long.
    pub show_progress: bool,
    /// Directories no walk or glob enters (the cache directory: absolute,
    /// canonical).
    pub skip: &'a [PathBuf],
}

/// Build the key for `spec`. `env` lists the environment (normally
/// `std::env::vars_os()`); `stdin` is the stdin component, if any;
/// `key_cmds` the `--key-cmd` components from [`key_cmds`], run once per
/// invocation however often the key is resolved.
pub fn resolve(
    spec: &KeySpec,
    base: Base,
    ctx: Context<'_>,
    key_cmds: &[Component],
    env: impl Iterator<Item = (OsString, OsString)>,
    stdin: Option<Component>,
    stdin_file: Option<crate::key::stdin::StdinFile>,
) -> Result<Resolved, InputError> {
    let started_ns = inputs::now_ns();
    let mut components = vec![base.argv.clone()];
    if spec.include_cwd {
        let cwd = base.cwd.as_os_str().as_bytes();
        components.push(Component::cwd(&base_dir::key_form(
            spec.base_dir.as_deref(),
            cwd,
        )));
    }
    components.extend(env_components(&spec.env, ctx.secret, env));
    components.extend(spec.keys.iter().map(|k| Component::literal(k)));
    components.extend(trace_options(spec));
    components.extend(key_cmds.iter().cloned());
    if let Some(argv0) = spec.command.first() {
        components.push(program(argv0, &base.cwd, spec.base_dir.as_deref()));
    }

    let mut collector = Collector::new(&base.cwd, ctx.stat_cache, &spec.exclude)
        .show_progress(ctx.show_progress)
        .base_dir(spec.base_dir.as_deref())
        .skip(ctx.skip);
    for input in &spec.inputs {
        collector.explicit(input)?;
    }
    let mut maybe_outputs = Vec::new();
    if spec.auto_inputs {
        for (i, arg) in spec.command.iter().enumerate() {
            if spec.is_ignored_arg(i) || (i == 0 && !arg.as_bytes().contains(&b'/')) {
                continue;
            }
            // A declared output is not an input, whatever it holds now.
            if i > 0 && spec.outputs.covers(arg.as_bytes()) {
                continue;
            }
            if ctx
                .known_outputs
                .iter()
                .any(|o| o.as_slice() == arg.as_bytes())
            {
                continue;
            }
            if spec.traced {
                if is_missing(&base.cwd, arg) {
                    maybe_outputs.push(arg.clone());
                }
                continue;
            }
            if !collector.auto(arg) && is_missing(&base.cwd, arg) {
                maybe_outputs.push(arg.clone());
            }
        }
    }
    let piped = piped_argument(spec, &base.cwd);
    if let Some((i, _)) = &piped {
        // Never matches an entry recorded before this rule.
        components.push(Component::option(&format!("argument {i} is a pipe")));
    }
    let mut collected = collector.finish()?;
    components.extend(collected.components);
    components.extend(stdin);
    let inherited = crate::key::descriptors::inherited(ctx.secret);
    components.extend(inherited.components);
    collected.watch.extend(inherited.watch);
    if let Some(f) = stdin_file {
        collected.watch.push(WatchItem {
            name: "stdin".into(),
            abs: PathBuf::from("/dev/stdin"),
            before: inputs::Watched::Stdin(f),
            origin: inputs::Origin::Stdin,
        });
    }

    Ok(Resolved {
        key: Key::new(components),
        base,
        watch: collected.watch,
        started_ns,
        maybe_outputs,
        known_outputs: ctx.known_outputs.to_vec(),
        stdin_file,
        unrecordable: piped.map(|(_, why)| why).or(inherited.unrecordable),
    })
}

/// The first argument that names a pipe or a socket (`<(cmd)` gives the
/// command `/dev/fd/63`), and why a run given it is not recorded: what the
/// command reads there cannot be keyed, and the argument is the same string
/// whatever flows through it.
fn piped_argument(spec: &KeySpec, cwd: &std::path::Path) -> Option<(usize, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    // memorun's own stdin (`/dev/stdin`) is read to the end and keyed
    // unless --stdin ignore; the command reads the spooled copy.
    let stdin = (spec.stdin != crate::key::stdin::StdinMode::Ignore)
        .then(|| std::fs::metadata("/dev/stdin").ok())
        .flatten()
        .map(|m| (m.dev(), m.ino()));
    spec.command
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, arg)| {
            let m = std::fs::metadata(cwd.join(arg)).ok()?;
            let ft = m.file_type();
            let keyed_stdin = stdin == Some((m.dev(), m.ino()));
            ((ft.is_fifo() || ft.is_socket()) && !keyed_stdin).then(|| {
                let shown = crate::term::quote::word(arg.as_bytes());
                (
                    i,
                    format!("argument {shown} is a pipe, whose content cannot be keyed"),
                )
            })
        })
}

/// What a traced run leaves out is part of what its manifests mean: a run
/// that traces more must not match one that traced less. Keyed as typed (a
/// relative glob means the same under every working directory or
/// --base-dir), and so shown as typed when it differs.
fn trace_options(spec: &KeySpec) -> Vec<Component> {
    let mut components = Vec::new();
    if spec.traced {
        for glob in &spec.trace_exclude {
            components.push(Component::option(&format!(
                "--trace-exclude {}",
                crate::term::quote::word(glob.as_bytes())
            )));
        }
        if !spec.default_trace_excludes {
            components.push(Component::option("--no-default-trace-excludes"));
        }
    }
    components
}

/// The program component: what `execvp` would run for `argv0` from `cwd`
/// (a path with a `/` as it is; a name, the first regular file with an
/// execute bit in a `$PATH` directory, else the first one found without),
/// with its mode but the write bits (they do not decide whether or how it
/// runs, and differ with the umask between checkouts). Its content is an
/// input only when named by path (an automatic input) or traced.
fn program(argv0: &OsStr, cwd: &Path, base: Option<&Path>) -> Component {
    use std::os::unix::fs::PermissionsExt;
    let bytes = argv0.as_bytes();
    let mode_of = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .filter(|m| !m.is_dir())
            .map(|m| m.permissions().mode() & 0o7555)
    };
    let found: Option<(PathBuf, u32)> = if bytes.contains(&b'/') {
        let p = cwd.join(argv0);
        mode_of(&p).map(|m| (p, m))
    } else if bytes.is_empty() {
        None
    } else {
        // glibc's default when PATH is unset.
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        let mut first = None;
        let mut runnable = None;
        for dir in path.as_bytes().split(|&b| b == b':') {
            let dir = if dir.is_empty() { b"." } else { dir };
            let p = cwd.join(OsStr::from_bytes(dir)).join(argv0);
            if let Some(m) = mode_of(&p) {
                if m & 0o111 != 0 {
                    runnable = Some((p, m));
                    break;
                }
                first.get_or_insert((p, m));
            }
        }
        runnable.or(first)
    };
    match found {
        Some((p, mode)) => {
            let keyed = base_dir::key_form(base, p.as_os_str().as_bytes());
            Component::program(bytes, Some((&keyed, mode)))
        }
        None => Component::program(bytes, None),
    }
}

fn is_missing(cwd: &Path, arg: &OsStr) -> bool {
    !arg.is_empty()
        && matches!(
            std::fs::symlink_metadata(cwd.join(arg)),
            Err(e) if e.kind() == io::ErrorKind::NotFound
        )
}

/// Run every `--key-cmd` of `spec` in `cwd`, in order: their components.
pub fn key_cmds(spec: &KeySpec, cwd: &Path) -> Result<Vec<Component>> {
    spec.key_cmds.iter().map(|cmd| key_cmd(cmd, cwd)).collect()
}

/// Run a `--key-cmd` with `sh -c` and digest its stdout and exit status.
/// Its stdin is empty and its stderr discarded, so it cannot steal the
/// command's input or add to the output.
fn key_cmd(cmd: &str, cwd: &Path) -> Result<Component> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env_remove(REFRESH_KEY_VAR)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow!(
                "cannot run --key-cmd '{cmd}': {}",
                crate::term::format::io_reason(&e)
            )
        })?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow!("cannot read the output of --key-cmd '{cmd}': {e}")),
        }
    }
    let status = child
        .wait()
        .map_err(|e| anyhow!("cannot wait for --key-cmd '{cmd}': {e}"))?;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s));
    Ok(Component::key_cmd(cmd, h.finalize().into(), code))
}

/// One component per chosen variable (sorted by name, each once), then one
/// per glob pattern with the set of names it matched.
fn env_components(
    patterns: &[EnvPattern],
    secret: &[u8; 32],
    env: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<Component> {
    if patterns.is_empty() {
        return Vec::new();
    }
    let environment: BTreeMap<Vec<u8>, OsString> = env.map(|(k, v)| (k.into_vec(), v)).collect();
    let mut chosen: BTreeMap<Vec<u8>, Option<Digest>> = BTreeMap::new();
    let mut pattern_components = Vec::new();
    let value_digest = |v: &OsString| Digest::from(blake3::keyed_hash(secret, v.as_bytes()));
    for pattern in patterns {
        match pattern {
            EnvPattern::Exact(name) => {
                let value = environment.get(name.as_bytes());
                chosen.insert(name.as_bytes().to_vec(), value.map(value_digest));
            }
            EnvPattern::Glob(glob) => {
                let matched: Vec<Vec<u8>> = environment
                    .keys()
                    .filter(|k| glob.is_match(OsStr::from_bytes(k)))
                    .cloned()
                    .collect();
                for name in &matched {
                    chosen.insert(name.clone(), environment.get(name).map(value_digest));
                }
                pattern_components.push(Component::env_pattern(glob.glob().glob(), &matched));
            }
        }
    }
    let mut out: Vec<Component> = chosen
        .iter()
        .map(|(name, digest)| Component::env(name, *digest))
        .collect();
    out.extend(pattern_components);
    out
}

/// The command line as a shell would need it typed, safe to print (see
/// `quote`).
pub fn display_command(argv: &[OsString]) -> String {
    crate::term::quote::command(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Kind, State};

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn env_components_are_sorted_deduplicated_and_keyed() {
        let patterns = vec![
            EnvPattern::parse("B").unwrap(),
            EnvPattern::parse("A*").unwrap(),
            EnvPattern::parse("AX").unwrap(),
            EnvPattern::parse("MISSING").unwrap(),
        ];
        let env = env_of(&[("AX", "1"), ("AY", ""), ("B", "secret"), ("C", "x")]);
        let comps = env_components(&patterns, &[1; 32], env.into_iter());
        let names: Vec<(&str, Kind, State)> = comps
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.state))
            .collect();
        assert_eq!(
            names,
            vec![
                ("AX", Kind::Env, State::Present),
                ("AY", Kind::Env, State::Present),
                ("B", Kind::Env, State::Present),
                ("MISSING", Kind::Env, State::Absent),
                ("A*", Kind::EnvPattern, State::Present),
            ]
        );
        // A different secret gives different digests for the same values.
        let env = env_of(&[("AX", "1"), ("AY", ""), ("B", "secret"), ("C", "x")]);
        let other = env_components(&patterns, &[2; 32], env.into_iter());
        assert_ne!(comps[2].digest, other[2].digest);
        assert_eq!(
            comps[3].digest, other[3].digest,
            "unset has no value to key"
        );
    }

    #[test]
    fn key_cmd_output_and_status_are_in_the_key() {
        let cwd = std::env::temp_dir();
        let a = key_cmd("echo a", &cwd).unwrap();
        assert_eq!(a, key_cmd("echo a", &cwd).unwrap());
        assert_ne!(a.digest, key_cmd("echo b", &cwd).unwrap().digest);
        assert_ne!(
            key_cmd("echo a; exit 0", &cwd).unwrap().digest,
            key_cmd("echo a; exit 1", &cwd).unwrap().digest
        );
    }

    #[test]
    fn display_quotes_arguments() {
        let argv: Vec<OsString> = vec!["echo".into(), "a b".into(), "it's".into()];
        assert_eq!(display_command(&argv), r#"echo 'a b' "it's""#);
    }
}
