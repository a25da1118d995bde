//! Paths left out of `--input` walks and globs: `-i '!GLOB'` and
//! `--exclude GLOB`.
//!
//! A directory given with `-i` is walked whole; a build tree inside it
//! (`target/`, `node_modules/`, `dist/`) is usually something the command
//! itself writes, which would make every run unrecordable ("input changed
//! while the command ran") and the key needlessly slow to compute.
//! Exclusions are globs over paths as memorun shows them: relative to the
//! working directory (`./` and empty components dropped), or absolute.
//! `target/**` (or `target/`) leaves out the directory `target` itself as
//! well as everything under it, so that nothing under it is listed, hashed
//! or watched. A file named on its own with `-i` is never excluded.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The exclusion patterns of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    set: Option<GlobSet>,
}

/// `path` as exclusions see it: without `.` components and repeated `/`.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    crate::outputs::normalize(path)
}

/// The globs one exclusion pattern stands for: the pattern normalized,
/// and for `dir/**` or `dir/` the directory itself as well.
pub(crate) fn globs_of(pattern: &str) -> Vec<String> {
    let normalized = normalize(Path::new(pattern));
    let normalized = normalized.to_string_lossy();
    let mut globs = vec![normalized.to_string()];
    if let Some(dir) = normalized.strip_suffix("/**") {
        globs.push(dir.to_string());
    } else if pattern.ends_with('/') {
        globs.push(format!("{normalized}/**"));
    }
    globs
}

impl Exclusions {
    /// Compile `patterns` (each without its `!`). An invalid glob is an
    /// error naming it (a usage error: exclusions come from the command
    /// line).
    pub fn new(patterns: &[String]) -> Result<Exclusions> {
        if patterns.is_empty() {
            return Ok(Exclusions::default());
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            for g in globs_of(pattern).iter().filter(|g| !g.is_empty()) {
                let glob = GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| {
                        anyhow!("exclusion '{pattern}' is not a valid glob: {}", e.kind())
                    })?;
                builder.add(glob);
            }
        }
        let set = builder
            .build()
            .map_err(|e| anyhow!("invalid exclusions: {e}"))?;
        Ok(Exclusions { set: Some(set) })
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    /// Whether `shown` (a path as memorun shows it) is left out.
    pub(crate) fn excludes(&self, shown: &Path) -> bool {
        match &self.set {
            None => false,
            Some(set) => set.is_match(normalize(shown)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclusions {
        Exclusions::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_subtree_pattern_leaves_out_the_directory_and_everything_under_it() {
        let e = ex(&["target/**"]);
        for p in ["target", "./target", "target/debug/deps", ".//target/x"] {
            assert!(e.excludes(Path::new(p)), "{p}");
        }
        for p in ["src", "src/target", "targets", "."] {
            assert!(!e.excludes(Path::new(p)), "{p}");
        }
        let e = ex(&["./node_modules/"]);
        assert!(e.excludes(Path::new("node_modules")));
        assert!(e.excludes(Path::new("./node_modules/a/b.js")));
    }

    #[test]
    fn file_patterns_match_within_one_directory_level() {
        let e = ex(&["*.log", "src/**/*.tmp"]);
        assert!(e.excludes(Path::new("build.log")));
        assert!(!e.excludes(Path::new("logs/build.log")));
        assert!(e.excludes(Path::new("src/a/b/c.tmp")));
        assert!(ex(&[]).is_empty());
        assert!(!ex(&[]).excludes(Path::new("anything")));
    }

    #[test]
    fn an_invalid_pattern_is_refused_by_name() {
        let err = Exclusions::new(&["a[".to_string()]).unwrap_err();
        assert!(format!("{err:#}").contains("exclusion 'a['"), "{err:#}");
    }
}
