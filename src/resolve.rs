//! Resolving a [`Config`] against the world into a [`Key`]: reading the
//! working directory, the chosen environment variables and the inputs.
//!
//! This is the only place that decides *what* goes into the key; `key`
//! decides *how* it is encoded. Env values are reduced to digests keyed
//! with the cache's secret here and never leave this module in plain text.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use anyhow::{Context, Result};

use crate::config::{Config, EnvPattern};
use crate::inputs::{self, InputFile};
use crate::key::{Component, Digest, Key};

/// A resolved key, with what the run needs to remember about it.
#[derive(Debug)]
pub struct Resolved {
    /// The key and its components.
    pub key: Key,
    /// The working directory (raw bytes), whether or not it is in the key.
    pub cwd: Vec<u8>,
    /// The input files that were hashed, with their identities.
    pub inputs: Vec<InputFile>,
    /// The command line, shell-quoted for display.
    pub display: String,
}

/// Build the key for `config`. `secret` keys the env value digests. `env`
/// lists the environment (normally `std::env::vars_os()`).
pub fn resolve(
    config: &Config,
    secret: &[u8; 32],
    env: impl Iterator<Item = (OsString, OsString)>,
) -> Result<Resolved> {
    let argv: Vec<&[u8]> = config.command.iter().map(|a| a.as_bytes()).collect();
    let mut components = vec![Component::argv(&argv)];

    let cwd = std::env::current_dir()
        .context("cannot determine the working directory")?
        .into_os_string()
        .into_vec();
    if config.include_cwd {
        components.push(Component::cwd(&cwd));
    }

    components.extend(env_components(&config.env, secret, env));

    let inputs = if config.auto_inputs {
        inputs::auto_inputs(&config.command)?
    } else {
        Vec::new()
    };
    for input in &inputs {
        components.push(Component::input(input.path.as_bytes(), Some(input.digest)));
    }

    Ok(Resolved {
        key: Key::new(components),
        cwd,
        inputs,
        display: display_command(&config.command),
    })
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
                    .filter(|k| glob.matches(&String::from_utf8_lossy(k)))
                    .cloned()
                    .collect();
                for name in &matched {
                    chosen.insert(name.clone(), environment.get(name).map(value_digest));
                }
                pattern_components.push(Component::env_pattern(glob.as_str(), &matched));
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

/// The command line as a shell would need it typed (lossy for non-UTF-8).
pub fn display_command(argv: &[OsString]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
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
    fn display_quotes_arguments() {
        let argv: Vec<OsString> = vec!["echo".into(), "a b".into(), "it's".into()];
        assert_eq!(display_command(&argv), r#"echo 'a b' "it's""#);
    }
}
