//! `--base-dir DIR` (ccache's `base_dir`): paths under DIR are keyed
//! relative to it, so that two checkouts of one repository at different
//! paths, on one machine or many, compute the same key.
//!
//! What is rebased: the working directory, every argument that is an
//! absolute path under DIR (the program included), and the names of input
//! files under DIR. Only whole arguments: `--out=/abs/x` stays as it is.
//! Paths are compared component by component, lexically (DIR itself is
//! canonicalized once by `config`, as the working directory is by the
//! kernel).
//!
//! A rebased path is keyed as a NUL byte followed by the path relative to
//! DIR (`.` for DIR itself). No argument, path or working directory can
//! hold a NUL byte, so a rebased path never encodes like one that was
//! typed: `cc /checkout/a.c` and `cc a.c` stay two keys, as they are two
//! commands (the program sees different arguments). Shown, the prefix
//! reads `{base}/` (see `encoding::display_name`).

use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// The first byte of a rebased path.
pub const MARK: u8 = 0;

/// `path` as it is keyed under `base`: rebased if it is absolute and under
/// `base`, else as it is.
pub fn key_form<'p>(base: Option<&Path>, path: &'p [u8]) -> Cow<'p, [u8]> {
    match base.and_then(|b| rebase(b, Path::new(std::ffi::OsStr::from_bytes(path)))) {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(path),
    }
}

/// An argument as the key sees it, for display: rebased ones as
/// `{base}/...`.
pub fn shown(base: Option<&Path>, arg: &std::ffi::OsStr) -> std::ffi::OsString {
    match base.and_then(|b| rebase(b, Path::new(arg))) {
        Some(v) if v == [MARK, b'.'] => "{base}".into(),
        Some(v) => {
            let mut out = std::ffi::OsString::from("{base}/");
            out.push(std::ffi::OsStr::from_bytes(&v[1..]));
            out
        }
        None => arg.to_os_string(),
    }
}

/// The keyed form of `path` under `base`, or `None` when it is not an
/// absolute path under `base`.
pub fn rebase(base: &Path, path: &Path) -> Option<Vec<u8>> {
    if !path.is_absolute() {
        return None;
    }
    let mut parts = path.components().filter(|c| *c != Component::CurDir);
    for b in base.components().filter(|c| *c != Component::CurDir) {
        if parts.next() != Some(b) {
            return None;
        }
    }
    let rest: Vec<&std::ffi::OsStr> = parts.map(|c| c.as_os_str()).collect();
    // A `..` could climb back out of the base: keep such a path as it is.
    if rest.iter().any(|c| *c == "..") {
        return None;
    }
    let mut out = vec![MARK];
    if rest.is_empty() {
        out.push(b'.');
    }
    for (i, c) in rest.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, path: &str) -> Option<Vec<u8>> {
        rebase(Path::new(base), Path::new(path))
    }

    #[test]
    fn paths_under_the_base_are_relative_and_marked() {
        assert_eq!(r("/w/a", "/w/a/src/x.c"), Some(b"\0src/x.c".to_vec()));
        assert_eq!(r("/w/a", "/w/a"), Some(b"\0.".to_vec()));
        assert_eq!(r("/w/a/", "/w/a/./b//c"), Some(b"\0b/c".to_vec()));
        assert_eq!(r("/w/b", "/w/b/src/x.c"), r("/w/a", "/w/a/src/x.c"));
    }

    #[test]
    fn other_paths_stay_as_they_are() {
        assert_eq!(r("/w/a", "/w/ab/x"), None, "a sibling with a common prefix");
        assert_eq!(r("/w/a", "/w"), None);
        assert_eq!(r("/w/a", "src/x.c"), None, "relative");
        assert_eq!(r("/w/a", "/w/a/../b"), None, "climbs out");
        assert_eq!(key_form(None, b"/w/a/x"), &b"/w/a/x"[..]);
        assert_eq!(key_form(Some(Path::new("/w/a")), b"/w/a/x"), &b"\0x"[..]);
    }
}
