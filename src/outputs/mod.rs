//! Output files, the model: what the user declared ([`OutputSpec`]) and
//! what an entry holds ([`files`]). Below the store, which keeps them; the
//! work on the file system is above it: captured with the entry after a
//! recorded run (`exec::capture`) and put back on a hit
//! (`replay::restore`).
//!
//! Two kinds of outputs:
//!
//! - **Declared** with `-o PATH` (repeatable): a file, a directory (its
//!   whole tree) or a quoted glob, resolved against the working directory
//!   like `-i`. A declared output the command did not create is recorded
//!   as absent, and a hit removes what is there.
//! - **Automatic**: an argument of the command that named nothing before
//!   the run and a regular file after it (`cc -o out.o`), and the arguments
//!   earlier runs created. Captured too, unless `--no-auto-outputs`; then
//!   only their digests are kept, and a hit needs them in place.
//!
//! Outputs are part of the entry, not of the key. A hit restores every
//! declared output and every missing automatic one before it replays
//! stdout and stderr. A declared output is made exactly what the run left
//! (a clean restore: stale files in a declared directory go); an automatic
//! one that is present but no longer what the run left is a miss, since
//! it may be a file the user edited (it was never declared an output).
//!
//! Declared outputs are neither inputs nor watched: they are left out of
//! automatic inputs and of `-i` walks and globs.

pub(crate) mod files;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component as PathComponent, Path, PathBuf};

use anyhow::{Result, bail};

use crate::outputs::files::RootKind;

/// One `-o` of this invocation.
#[derive(Debug, Clone)]
pub struct Declared {
    /// [`RootKind::Path`] or [`RootKind::Glob`].
    pub kind: RootKind,
    /// The path or pattern, lexically normalized (no `.` components, no
    /// repeated or trailing `/`).
    pub declared: Vec<u8>,
    /// For a glob: its literal leading directory and its matcher (over
    /// normalized paths as [`Declared::declared`] is written).
    pub glob: Option<(PathBuf, globset::GlobMatcher)>,
}

/// The outputs this invocation declares, and whether automatic outputs are
/// captured.
#[derive(Debug, Clone, Default)]
pub struct OutputSpec {
    /// The `-o` paths and globs, each once, in the order given.
    pub declared: Vec<Declared>,
    /// Capture (and restore) automatic outputs: not `--no-auto-outputs`.
    pub auto: bool,
}

/// Whether `s` has a glob metacharacter.
pub fn has_glob_meta(s: &[u8]) -> bool {
    s.iter().any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
}

/// `path` without `.` components and repeated or trailing `/`.
pub fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, PathComponent::CurDir))
        .collect()
}

impl OutputSpec {
    /// Parse the `-o` arguments. A path that names the working directory
    /// or one of its ancestors is refused: a clean restore would empty it.
    pub fn new(paths: &[OsString], auto: bool) -> Result<OutputSpec> {
        let mut declared: Vec<Declared> = Vec::new();
        for raw in paths {
            let shown = raw.to_string_lossy();
            if raw.is_empty() {
                bail!("--output needs a path, got ''");
            }
            let norm = normalize(Path::new(raw));
            let only_up = norm
                .components()
                .all(|c| matches!(c, PathComponent::ParentDir | PathComponent::RootDir));
            let cwd_or_above = only_up
                || (norm.is_absolute()
                    && std::env::current_dir().is_ok_and(|cwd| cwd.starts_with(&norm)));
            if cwd_or_above {
                bail!(
                    "--output '{shown}' names the working directory or a directory above it; \
                     name what the command writes inside it"
                );
            }
            let bytes = norm.as_os_str().as_bytes().to_vec();
            if declared.iter().any(|d| d.declared == bytes) {
                continue;
            }
            let glob = if has_glob_meta(&bytes) {
                let Some(pattern) = norm.to_str() else {
                    bail!("--output pattern '{shown}' is not valid UTF-8");
                };
                let matcher = globset::GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| {
                        anyhow::anyhow!("--output pattern '{shown}' is not valid: {}", e.kind())
                    })?
                    .compile_matcher();
                Some((glob_base(&norm), matcher))
            } else {
                None
            };
            declared.push(Declared {
                kind: if glob.is_some() {
                    RootKind::Glob
                } else {
                    RootKind::Path
                },
                declared: bytes,
                glob,
            });
        }
        Ok(OutputSpec { declared, auto })
    }

    /// Exclusion patterns that leave the declared outputs out of `-i`
    /// walks and globs (`dist` and everything under it; a glob as it is).
    /// Paths that are not UTF-8 cannot be patterns and are left in.
    pub fn exclusions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.declared {
            let Ok(s) = std::str::from_utf8(&d.declared) else {
                continue;
            };
            match d.kind {
                RootKind::Glob => out.push(s.to_string()),
                _ => {
                    let literal = globset::escape(s);
                    out.push(format!("{literal}/**"));
                }
            }
        }
        out
    }

    /// Whether `arg` (a command-line argument, as given) is, or is under, a
    /// declared output: then it is not an input, nor an automatic output.
    pub fn covers(&self, arg: &[u8]) -> bool {
        let norm = normalize(Path::new(std::ffi::OsStr::from_bytes(arg)));
        self.declared.iter().any(|d| match &d.glob {
            Some((_, m)) => m.is_match(&norm),
            None => norm.starts_with(Path::new(std::ffi::OsStr::from_bytes(&d.declared))),
        })
    }
}

impl OutputSpec {
    /// Whether the absolute path `abs` is, or is under, a declared output,
    /// declared relative to `cwd` or absolute: then a traced run's access
    /// to it is not an input (memorun restores it on a hit).
    pub fn covers_path(&self, cwd: &Path, abs: &Path) -> bool {
        self.covers(abs.as_os_str().as_bytes())
            || abs.strip_prefix(cwd).is_ok_and(|rel| {
                !rel.as_os_str().is_empty() && self.covers(rel.as_os_str().as_bytes())
            })
    }
}

/// The longest leading part of a glob without metacharacters: the
/// directory its matches are under.
pub fn glob_base(pattern: &Path) -> PathBuf {
    let parts: Vec<PathComponent<'_>> = pattern.components().collect();
    let literal = parts
        .iter()
        .take_while(|c| !has_glob_meta(c.as_os_str().as_bytes()))
        .count()
        .min(parts.len().saturating_sub(1));
    parts[..literal].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(paths: &[&str]) -> Result<OutputSpec> {
        OutputSpec::new(&paths.iter().map(OsString::from).collect::<Vec<_>>(), true)
    }

    #[test]
    fn declared_outputs_are_normalized_deduplicated_and_classified() {
        let s = spec(&["./dist/", "dist", "build//*.o", "out.o"]).unwrap();
        let got: Vec<(&[u8], RootKind)> = s
            .declared
            .iter()
            .map(|d| (d.declared.as_slice(), d.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"dist"[..], RootKind::Path),
                (&b"build/*.o"[..], RootKind::Glob),
                (&b"out.o"[..], RootKind::Path),
            ]
        );
        assert_eq!(s.declared[1].glob.as_ref().unwrap().0, Path::new("build"));
        assert!(s.covers(b"dist/a.js") && s.covers(b"./dist") && s.covers(b"build/x.o"));
        assert!(s.covers(b"out.o") && !s.covers(b"out.o.d") && !s.covers(b"distx"));
        assert_eq!(s.exclusions(), ["dist/**", "build/*.o", "out.o/**"]);
        let cwd = Path::new("/w");
        assert!(s.covers_path(cwd, Path::new("/w/dist")));
        assert!(s.covers_path(cwd, Path::new("/w/dist/a/b.js")));
        assert!(s.covers_path(cwd, Path::new("/w/build/x.o")));
        assert!(!s.covers_path(cwd, Path::new("/w/build")));
        assert!(!s.covers_path(cwd, Path::new("/w")));
        assert!(!s.covers_path(cwd, Path::new("/elsewhere/dist")));
    }

    #[test]
    fn the_working_directory_and_above_are_refused() {
        for p in [".", "./", "..", "../..", "/", ""] {
            let e = spec(&[p]).unwrap_err();
            assert!(format!("{e:#}").contains("--output"), "{p}: {e:#}");
        }
        let cwd = std::env::current_dir().unwrap();
        assert!(spec(&[cwd.to_str().unwrap()]).is_err());
        assert!(spec(&["../sibling/out"]).is_ok());
        assert!(spec(&["a["]).is_err());
    }
}
