//! Capturing the outputs of a run that is about to be recorded: each
//! declared path's tree, each glob's matches, each automatic output, with
//! their content stored as the store stores file content (inline or as a
//! shared blob), read through descriptors that never follow a symlink.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::base::Digest;
use crate::outputs::OutputSpec;
use crate::outputs::files::{Item, Node, OutputRoot, RootKind};
use crate::store::Store;
use crate::term::format::io_reason;

/// What capturing found.
#[derive(Debug, Default)]
pub struct Captured {
    /// The roots, declared first, then automatic.
    pub roots: Vec<OutputRoot>,
    /// The fast check of each blob the roots name, sorted by digest.
    pub checks: Vec<(Digest, [u8; 16])>,
    /// Declared outputs the command did not create, and paths that are not
    /// files, directories or symlinks (left out), for one warning.
    pub warnings: Vec<String>,
}

/// Capture the outputs of a run in `cwd`: the declared ones of `spec`, and
/// the automatic ones in `auto` (arguments as given; those a declared
/// output covers are left to it; recorded as keyed under `base`). An error means the run must not be
/// recorded: an output that cannot be read cannot be restored.
pub fn capture(
    store: &dyn Store,
    cwd: &Path,
    spec: &OutputSpec,
    auto: &[Vec<u8>],
    base: Option<&Path>,
) -> anyhow::Result<Captured> {
    let mut c = Captured::default();
    for d in &spec.declared {
        let declared = OsStr::from_bytes(&d.declared);
        let mut items = Vec::new();
        match &d.glob {
            None => {
                let abs = cwd.join(declared);
                match fs::symlink_metadata(&abs) {
                    Err(e) if is_absent(&e) => {
                        c.warnings.push(format!(
                            "output '{}' was declared but the command did not create it",
                            declared.to_string_lossy()
                        ));
                        items.push(Item {
                            path: Vec::new(),
                            node: Node::Absent,
                        });
                    }
                    Err(e) => return Err(unreadable(declared, &e)),
                    Ok(_) => walk(store, &abs, declared, &|_| true, &mut items, &mut c)?,
                }
            }
            Some((base, matcher)) => {
                let abs = cwd.join(base);
                if fs::metadata(&abs).is_ok_and(|m| m.is_dir()) {
                    let pick = |rel: &Path| matcher.is_match(base.join(rel));
                    walk(store, &abs, declared, &pick, &mut items, &mut c)?;
                    // The base directory itself is not an output.
                    items.retain(|i| !i.path.is_empty());
                }
                if items.is_empty() {
                    c.warnings.push(format!(
                        "output '{}' was declared but the command created nothing that matches it",
                        declared.to_string_lossy()
                    ));
                }
            }
        }
        c.roots.push(OutputRoot {
            kind: d.kind,
            declared: d.declared.clone(),
            items,
        });
    }
    for arg in auto {
        if spec.covers(arg) || c.roots.iter().any(|r| r.declared == *arg) {
            continue;
        }
        let shown = OsStr::from_bytes(arg);
        let abs = cwd.join(shown);
        let node = match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_file() => {
                if spec.auto {
                    file_node(store, &abs, shown, &mut c)?
                } else {
                    let (digest, stat) = crate::key::inputs::hash_regular(&abs)
                        .map_err(|e| unreadable(shown, &e))?;
                    Node::Checked {
                        len: stat.size,
                        digest,
                    }
                }
            }
            // Only a regular file the command created is an output.
            _ => continue,
        };
        c.roots.push(OutputRoot {
            kind: RootKind::Auto,
            // As the argument is keyed: under --base-dir, relative to it,
            // so that another checkout restores it at its own path.
            declared: crate::key::base_dir::key_form(base, arg).into_owned(),
            items: vec![Item {
                path: Vec::new(),
                node,
            }],
        });
    }
    c.checks.sort();
    c.checks.dedup_by(|a, b| a.0 == b.0);
    Ok(c)
}

fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
}

fn unreadable(path: &OsStr, e: &io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot capture output '{}': {}",
        path.to_string_lossy(),
        io_reason(e)
    )
}

/// Everything at and under `abs` (not following symlinks), in sorted
/// order, whose path relative to `abs` passes `pick` or is under a
/// directory that did. Paths are relative to `abs`; `abs` itself is "".
fn walk(
    store: &dyn Store,
    abs: &Path,
    declared: &OsStr,
    pick: &dyn Fn(&Path) -> bool,
    items: &mut Vec<Item>,
    c: &mut Captured,
) -> anyhow::Result<()> {
    let mut picked_dirs: Vec<PathBuf> = Vec::new();
    let walker = walkdir::WalkDir::new(abs)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(abs).to_path_buf();
            let io = e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("a filesystem loop"));
            unreadable(path.as_os_str(), &io)
        })?;
        let rel = entry.path().strip_prefix(abs).unwrap_or(Path::new(""));
        let under_picked = picked_dirs.iter().any(|d| rel.starts_with(d) && rel != d);
        if !under_picked && !pick(rel) {
            continue;
        }
        let shown_path = Path::new(declared).join(rel);
        let shown = shown_path.as_os_str();
        let ft = entry.file_type();
        let meta = entry.metadata().map_err(|e| {
            unreadable(
                shown,
                &e.into_io_error()
                    .unwrap_or_else(|| io::Error::other("unreadable")),
            )
        })?;
        let node = if ft.is_dir() {
            if !under_picked {
                picked_dirs.push(rel.to_path_buf());
            }
            Node::Dir {
                mode: meta.mode() & 0o777,
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(|e| unreadable(shown, &e))?;
            Node::Symlink {
                target: target.into_os_string().into_encoded_bytes(),
            }
        } else if ft.is_file() {
            file_node(store, entry.path(), shown, c)?
        } else {
            c.warnings.push(format!(
                "output '{}' has '{}', which is not a file, directory or symlink; it is not captured",
                declared.to_string_lossy(),
                shown.to_string_lossy()
            ));
            continue;
        };
        items.push(Item {
            path: rel.as_os_str().as_bytes().to_vec(),
            node,
        });
    }
    Ok(())
}

/// A regular file's content into the store, read through a descriptor
/// opened without following a symlink; its mode from the same descriptor.
fn file_node(
    store: &dyn Store,
    abs: &Path,
    shown: &OsStr,
    c: &mut Captured,
) -> anyhow::Result<Node> {
    let mut f: File = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(abs)
        .map_err(|e| unreadable(shown, &e))?;
    let meta = f.metadata().map_err(|e| unreadable(shown, &e))?;
    if !meta.is_file() {
        return Err(unreadable(
            shown,
            &io::Error::other("it is no longer a regular file"),
        ));
    }
    let mut spool = store.spool_file();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => spool.write(&buf[..n]).map_err(|e| store_error(shown, &e))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(shown, &e)),
        }
    }
    let spooled = spool.finish().map_err(|e| store_error(shown, &e))?;
    let (content, check) = store.put_file(spooled)?;
    if content.inline.is_none() && content.len > 0 {
        c.checks.push((content.digest, check));
    }
    Ok(Node::File {
        mode: meta.mode() & 0o777,
        content,
    })
}

fn store_error(shown: &OsStr, e: &io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot store output '{}': {}",
        shown.to_string_lossy(),
        io_reason(e)
    )
}
