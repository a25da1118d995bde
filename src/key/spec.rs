//! What goes into a command's key, as the user asked for it: the command
//! line, `--env` patterns, `--input` paths and exclusions, `--ignore-arg`,
//! `--key`, `--key-cmd` and `--stdin`. `config` builds it from the command
//! line; [`super::resolve`] turns it into a key.

use std::ffi::OsString;

use anyhow::{Result, bail};

use super::exclude::Exclusions;
use super::stdin::StdinMode;

/// A `--env` pattern.
#[derive(Debug, Clone)]
pub enum EnvPattern {
    /// An exact variable name: set, empty and unset are all key states.
    Exact(String),
    /// A glob over variable names, such as `AWS_*`.
    Glob(globset::GlobMatcher),
}

impl EnvPattern {
    /// Parse a `--env` argument.
    pub fn parse(s: &str) -> Result<EnvPattern> {
        if s.is_empty() {
            bail!("--env needs a variable name or pattern, got an empty string");
        }
        if s.contains('=') || s.contains('\0') {
            bail!("--env '{s}' is not a variable name or pattern");
        }
        if !s.contains(['*', '?', '[', '{']) {
            return Ok(EnvPattern::Exact(s.to_string()));
        }
        match globset::Glob::new(s) {
            Ok(g) => Ok(EnvPattern::Glob(g.compile_matcher())),
            Err(e) => bail!("--env '{s}' is not a valid pattern: {}", e.kind()),
        }
    }
}

/// What goes into the key of one run.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// The command and its arguments; never empty.
    pub command: Vec<OsString>,
    /// `--env` patterns, in the order given.
    pub env: Vec<EnvPattern>,
    /// `--input` paths and globs, in the order given.
    pub inputs: Vec<OsString>,
    /// Paths left out of input walks and globs.
    pub exclude: Exclusions,
    /// `--ignore-arg` patterns.
    pub ignore_args: Vec<globset::GlobMatcher>,
    /// `--key` texts.
    pub keys: Vec<String>,
    /// `--key-cmd` commands.
    pub key_cmds: Vec<String>,
    /// How stdin goes into the key.
    pub stdin: StdinMode,
    /// Hash arguments that name regular files.
    pub auto_inputs: bool,
    /// Put the working directory into the key.
    pub include_cwd: bool,
    /// The declared outputs (`-o`) and whether automatic ones are captured:
    /// arguments they cover are not inputs; not in the key (see `outputs`).
    pub outputs: crate::outputs::OutputSpec,
    /// `--trace`: what the command reads is found by tracing it, so
    /// arguments that name files are not hashed up front (one it reads is a
    /// traced input; one it writes, an output).
    pub traced: bool,
    /// `--trace-exclude` globs, as given: in the key of a traced run.
    pub trace_exclude: Vec<String>,
    /// Whether a traced run leaves out the default exclusions (cargo's
    /// state; see `config::default_trace_excludes`): in the key as
    /// `--no-default-trace-excludes` when it does not.
    pub default_trace_excludes: bool,
    /// `--base-dir`: paths under it are keyed relative to it (absolute,
    /// canonical).
    pub base_dir: Option<std::path::PathBuf>,
}

impl KeySpec {
    /// Whether argument `index` of the command is left out of the key by an
    /// `--ignore-arg` pattern. The program itself is never left out.
    pub fn is_ignored_arg(&self, index: usize) -> bool {
        self.ignored(index)
    }

    /// The command's arguments that are in the key (after the program).
    pub fn keyed_args(&self) -> Vec<&[u8]> {
        use std::os::unix::ffi::OsStrExt;
        (1..self.command.len())
            .filter(|i| !self.ignored(*i))
            .map(|i| self.command[i].as_bytes())
            .collect()
    }

    fn ignored(&self, index: usize) -> bool {
        index > 0 && {
            let arg = std::path::Path::new(&self.command[index]);
            self.ignore_args.iter().any(|p| p.is_match(arg))
        }
    }
}
