//! Explaining a miss: what differs between two component lists, and the
//! `memorun why` report.
//!
//! Components are matched by kind and name (`env CC`, `input src/a.rs`);
//! the working directory and stdin are matched by kind alone. Values never
//! appear: only names, states ("set", "absent") and short digests.
//!
//! The earlier run a miss is explained against is the closest one, not the
//! latest: [`Target::score`] ranks an earlier entry by how many of this
//! key's components it shares, reading only what it needs of each.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::key::{Component, Key, Kind, State};
use crate::store::{EarlierRun, History, Previous};

/// One difference between an earlier run's key and this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of component changed.
    pub kind: Kind,
    /// Its name (path, variable name), empty for argv and stdin.
    pub name: String,
    /// What happened to it, in words: "changed", "new file", "was unset,
    /// now set", "/a → /b".
    pub change: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Cwd | Kind::Stdin | Kind::Argv => {
                write!(f, "{}: {}", label(self.kind), self.change)
            }
            // As typed: `--trace-exclude 'target/**': added`.
            Kind::Option => write!(f, "{}: {}", self.name, self.change),
            _ => write!(f, "{} {}: {}", label(self.kind), self.name, self.change),
        }
    }
}

/// The word for a component kind in reports.
pub fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Argv => "argv",
        Kind::Cwd => "cwd",
        Kind::Env => "env",
        Kind::EnvPattern => "env pattern",
        Kind::Input => "input",
        Kind::InputSet => "input listing",
        Kind::Stdin => "stdin",
        Kind::Literal => "key",
        Kind::KeyCmd => "key-cmd",
        Kind::Descriptor => "descriptor",
        Kind::Program => "program",
        Kind::Option => "option",
    }
}

/// The state of a component in words.
pub fn describe(c: &Component) -> String {
    match (c.kind, c.state) {
        (Kind::Env, State::Present) => format!("set ({})", c.digest.short()),
        (Kind::Env, State::Absent) => "unset".into(),
        (Kind::Input, State::Absent) => "absent".into(),
        (Kind::Program, State::Absent) => "not found".into(),
        (Kind::Stdin, State::Absent) => stdin_state(c),
        (Kind::Stdin, State::Present) => format!("hashed ({})", c.digest.short()),
        _ => c.digest.short(),
    }
}

/// A stdin that was not hashed: "no stdin data" (a terminal not read,
/// `/dev/null`, an empty pipe), or "not read (device 1:5)".
fn stdin_state(c: &Component) -> String {
    match c.name.as_str() {
        crate::key::stdin::NO_DATA => "no stdin data".into(),
        why => format!("not read ({why})"),
    }
}

fn slot(c: &Component) -> (Kind, &str) {
    match c.kind {
        Kind::Cwd | Kind::Stdin | Kind::Argv => (c.kind, ""),
        _ => (c.kind, c.name.as_str()),
    }
}

fn transition(old: &Component, new: &Component) -> String {
    match (new.kind, old.state, new.state) {
        (Kind::Cwd, _, _) => format!("{} → {}", old.name, new.name),
        (Kind::Env, State::Absent, State::Present) => "was unset, now set".into(),
        (Kind::Env, State::Present, State::Absent) => "was set, now unset".into(),
        (Kind::Input, State::Absent, State::Present) => "created".into(),
        (Kind::Input, State::Present, State::Absent) => "deleted".into(),
        (Kind::Stdin, State::Absent, State::Present) => {
            format!("was {}, now hashed", stdin_state(old))
        }
        (Kind::Stdin, State::Present, State::Absent) => {
            format!("was hashed, now {}", stdin_state(new))
        }
        (Kind::Stdin, State::Absent, State::Absent) => {
            format!("was {}, now {}", stdin_state(old), stdin_state(new))
        }
        (Kind::InputSet, _, _) => "files added, removed or renamed".into(),
        (Kind::EnvPattern, _, _) => "matches other variables".into(),
        (Kind::KeyCmd, _, _) => "output or exit status changed".into(),
        _ => "changed".into(),
    }
}

/// Every difference from `old` to `new`, in `new`'s order, then what `old`
/// had that `new` lacks.
pub fn diff(old: &[Component], new: &[Component]) -> Vec<Change> {
    let before: BTreeMap<(Kind, &str), &Component> = old.iter().map(|c| (slot(c), c)).collect();
    let after: BTreeMap<(Kind, &str), &Component> = new.iter().map(|c| (slot(c), c)).collect();
    let mut changes = Vec::new();
    for c in new {
        let change = match before.get(&slot(c)) {
            Some(o) if o.digest == c.digest => continue,
            Some(o) => transition(o, c),
            None => match (c.kind, c.state) {
                (Kind::Input, State::Present) => "new file".into(),
                (Kind::Input, State::Absent) => "new input, absent".into(),
                (Kind::Env, State::Present) => "newly chosen, set".into(),
                (Kind::Env, State::Absent) => "newly chosen, unset".into(),
                (Kind::Cwd, _) => "now in the key".into(),
                (Kind::Stdin, _) => "now in the key".into(),
                _ => "added".into(),
            },
        };
        changes.push(Change {
            kind: c.kind,
            name: c.name.clone(),
            change,
        });
    }
    for c in old {
        if !after.contains_key(&slot(c)) {
            let change = match c.kind {
                Kind::Input => "removed",
                Kind::Env => "no longer chosen",
                Kind::Cwd | Kind::Stdin => "no longer in the key",
                _ => "removed",
            };
            changes.push(Change {
                kind: c.kind,
                name: c.name.clone(),
                change: change.into(),
            });
        }
    }
    changes
}

/// How close an earlier entry is to the key being explained: the
/// components it shares exactly (kind, name and digest), then the slots it
/// shares (same kind and name, another value: `cwd /ci1` against `cwd
/// /ci2` is closer than no cwd at all). Compared in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score {
    /// Components equal in both.
    pub same: usize,
    /// Components present in both, equal or not.
    pub slots: usize,
}

/// A key's components, indexed to score earlier entries against.
pub struct Target<'a> {
    digests: HashSet<String>,
    slots: BTreeSet<(Kind, &'a str)>,
}

/// Just what scoring needs of a stored component: borrowed from the JSON
/// where it can be, and the rest of the object skipped.
#[derive(Deserialize)]
struct Slim<'a> {
    kind: Kind,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    digest: Cow<'a, str>,
}

impl<'a> Target<'a> {
    /// Index `components` (the key being explained).
    pub fn new(components: &'a [Component]) -> Target<'a> {
        Target {
            // A component's digest covers its kind, name, state and content.
            digests: components.iter().map(|c| c.digest.to_hex()).collect(),
            slots: components.iter().map(slot).collect(),
        }
    }

    /// Score an earlier entry's components, as stored (JSON); `None` when
    /// they do not decode.
    pub fn score(&self, json: &str) -> Option<Score> {
        let old: Vec<Slim<'_>> = serde_json::from_str(json).ok()?;
        let mut score = Score { same: 0, slots: 0 };
        for c in &old {
            let name = match c.kind {
                Kind::Cwd | Kind::Stdin | Kind::Argv => "",
                _ => c.name.as_ref(),
            };
            if self.slots.contains(&(c.kind, name)) {
                score.slots += 1;
                score.same += usize::from(self.digests.contains(c.digest.as_ref()));
            }
        }
        Some(score)
    }
}

/// What a key says about files: how many are in it, which were named
/// directly (an argument, `-i FILE`), and which directories and globs were
/// walked and how many files each gave. A file outside all of these is not
/// in the key, which is what a user looking at a stale hit needs to see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// Files whose content is in the key (present inputs).
    pub files: usize,
    /// Inputs named directly, in key order.
    pub named: Vec<NamedInput>,
    /// `-i` directories and globs, in key order.
    pub listings: Vec<Listing>,
}

/// An input named directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedInput {
    /// Its path, as given.
    pub name: String,
    /// Present or absent.
    pub state: State,
}

/// An `-i` directory or glob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The directory or pattern, as given.
    pub name: String,
    /// A glob pattern, not a directory.
    pub glob: bool,
    /// The files found under it.
    pub files: usize,
}

/// Whether `name` (an input's path) was found by walking `listing` (an
/// `-i` argument): a directory's files are named below it, a glob's match
/// it (as the walk matched them: without `./`, `*` not crossing `/`).
fn under(listing: &str, glob: Option<&globset::GlobMatcher>, name: &str) -> bool {
    match glob {
        Some(m) => m.is_match(name),
        None => Path::new(name).starts_with(listing) && Path::new(name) != Path::new(listing),
    }
}

/// Summarize the inputs among `components`. The files a walk or glob found
/// follow its listing component; anything else is named directly.
pub fn inputs(components: &[Component]) -> Inputs {
    let mut out = Inputs::default();
    // The listing being followed, with its matcher when it is a glob.
    let mut current: Option<(usize, Option<globset::GlobMatcher>)> = None;
    for c in components {
        match c.kind {
            Kind::InputSet => {
                let glob = glob_matcher(&c.name);
                out.listings.push(Listing {
                    name: c.name.clone(),
                    glob: glob.is_some(),
                    files: 0,
                });
                current = Some((out.listings.len() - 1, glob));
            }
            Kind::Input => {
                out.files += usize::from(c.state == State::Present);
                match &current {
                    Some((i, glob)) if under(&out.listings[*i].name, glob.as_ref(), &c.name) => {
                        out.listings[*i].files += 1;
                    }
                    _ => {
                        current = None;
                        out.named.push(NamedInput {
                            name: c.name.clone(),
                            state: c.state,
                        });
                    }
                }
            }
            _ => current = None,
        }
    }
    out
}

/// A matcher for `-i` argument `arg` if it is a glob (as `inputs` decides:
/// it has a glob metacharacter).
fn glob_matcher(arg: &str) -> Option<globset::GlobMatcher> {
    if !arg.contains(['*', '?', '[', '{']) {
        return None;
    }
    let normalized: std::path::PathBuf = Path::new(arg)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let glob = globset::GlobBuilder::new(&normalized.to_string_lossy())
        .literal_separator(true)
        .build()
        .ok()?;
    Some(glob.compile_matcher())
}

/// The earlier entry of `key`'s command closest to it (see [`Target`]).
pub fn closest_run(store: &dyn History, key: &Key) -> anyhow::Result<Option<Previous>> {
    let target = Target::new(&key.components);
    let mut best: Option<((usize, usize), EarlierRun)> = None;
    for run in store.earlier_runs(&key.command, &key.digest)? {
        let Some(score) = target.score(&run.components).map(|s| (s.same, s.slots)) else {
            continue;
        };
        // Newest first: a later run must be strictly closer to win.
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, run));
        }
    }
    Ok(best.and_then(|(_, run)| {
        Some(Previous {
            key: run.key,
            created_ms: run.created_ms,
            components: serde_json::from_str(&run.components).ok()?,
        })
    }))
}

/// Why a miss found nothing to compare with: no entry of the command here
/// and, when `remote_missed`, none on the remote either. A remote entry
/// recorded in a checkout at another path has another key unless
/// `--base-dir` (`base_dir`) keys paths relative to it: say so, once.
pub fn no_earlier_run(remote_missed: bool, base_dir: bool) -> String {
    match (remote_missed, base_dir) {
        (false, _) => "no earlier run of this command".into(),
        (true, true) => "no entry here or on the remote".into(),
        (true, false) => "no entry here or on the remote; checkouts at other paths share \
                          entries only with --base-dir"
            .into(),
    }
}

/// A one-line summary of `changes` for `-v`: the first, and how many more.
pub fn summary(changes: &[Change]) -> String {
    match changes {
        [] => "no component differs".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first}, and {} more", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Digest;

    fn d(b: u8) -> Option<Digest> {
        Some(Digest([b; 32]))
    }

    #[test]
    fn names_each_kind_of_change() {
        let argv = Component::argv(&["make"]);
        let old = vec![
            argv.clone(),
            Component::cwd(b"/a"),
            Component::env(b"CC", None),
            Component::env(b"GONE", d(1)),
            Component::input(b"src/parse.rs", d(1)),
            Component::input(b"src/old.rs", d(1)),
            Component::input(b"later", None),
            Component::stdin(Ok(Digest([1; 32]))),
        ];
        let new = vec![
            argv,
            Component::cwd(b"/b"),
            Component::env(b"CC", d(2)),
            Component::input(b"src/parse.rs", d(2)),
            Component::input(b"src/new.rs", d(1)),
            Component::input(b"later", d(3)),
            Component::stdin(Ok(Digest([2; 32]))),
        ];
        let lines: Vec<String> = diff(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "cwd: /a → /b",
                "env CC: was unset, now set",
                "input src/parse.rs: changed",
                "input src/new.rs: new file",
                "input later: created",
                "stdin: changed",
                "env GONE: no longer chosen",
                "input src/old.rs: removed",
            ]
        );
        assert!(diff(&new, &new).is_empty());
        assert_eq!(summary(&diff(&old, &new)[..1]), "cwd: /a → /b");
        assert_eq!(summary(&diff(&old, &new)), "cwd: /a → /b, and 7 more");
    }

    #[test]
    fn inputs_are_told_apart_as_named_or_walked() {
        let components = vec![
            Component::argv(&["cc"]),
            Component::input(b"config.h", d(1)),
            Component::input_set(b"src/", &[]),
            Component::input(b"src/a.c", d(1)),
            Component::input(b"src/sub/b.c", d(1)),
            Component::input_set(b"./include/*.h", &[]),
            Component::input(b"include/a.h", d(1)),
            // An argument after the glob, which it does not match.
            Component::input(b"main.c", d(1)),
            Component::input(b"typo.txt", None),
            Component::input_set(b"empty", &[]),
            Component::stdin(Err(crate::key::stdin::NO_DATA)),
        ];
        let named = |name: &str, state| NamedInput {
            name: name.into(),
            state,
        };
        let listing = |name: &str, files| Listing {
            name: name.into(),
            glob: name.contains('*'),
            files,
        };
        assert_eq!(
            inputs(&components),
            Inputs {
                files: 5,
                named: vec![
                    named("config.h", State::Present),
                    named("main.c", State::Present),
                    named("typo.txt", State::Absent),
                ],
                listings: vec![
                    listing("src/", 2),
                    listing("./include/*.h", 1),
                    listing("empty", 0),
                ],
            }
        );
    }

    #[test]
    fn scores_by_shared_components_then_shared_slots() {
        let argv = Component::argv(&["make"]);
        let new = vec![
            argv.clone(),
            Component::cwd(b"/ci2"),
            Component::input(b"src/lib.rs", d(2)),
            Component::input(b"src/main.rs", d(1)),
        ];
        let target = Target::new(&new);
        let score = |old: &[Component]| target.score(&serde_json::to_string(old).unwrap());
        let other_cwd = [
            argv.clone(),
            Component::cwd(b"/ci1"),
            Component::input(b"src/lib.rs", d(2)),
            Component::input(b"src/main.rs", d(1)),
        ];
        let no_cwd = [
            argv.clone(),
            Component::input(b"src/lib.rs", d(2)),
            Component::input(b"src/main.rs", d(1)),
        ];
        let walked_elsewhere = [
            argv.clone(),
            Component::cwd(b"/ci2"),
            Component::input(b"./src/lib.rs", d(2)),
            Component::input(b"./src/main.rs", d(1)),
            Component::input(b"./README", d(1)),
        ];
        assert_eq!(score(&other_cwd), Some(Score { same: 3, slots: 4 }));
        assert_eq!(score(&no_cwd), Some(Score { same: 3, slots: 3 }));
        assert_eq!(score(&walked_elsewhere), Some(Score { same: 2, slots: 2 }));
        assert!(score(&other_cwd) > score(&no_cwd));
        assert!(score(&no_cwd) > score(&walked_elsewhere));
        assert_eq!(score(&new), Some(Score { same: 4, slots: 4 }));
        assert_eq!(target.score("not json"), None);
    }
}
