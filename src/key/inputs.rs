//! Input files: what counts as an input, the digest of each, and whether any
//! of them changed while the command ran.
//!
//! Two sources of inputs:
//!
//! - **automatic**: an argument that names an existing *regular* file
//!   (following symlinks). Devices, FIFOs, sockets and directories are never
//!   opened this way: a FIFO would block and `/dev/zero` never ends.
//! - **explicit** (`--input`): a file; a directory, walked in sorted order
//!   without following symlinks (a symlink to a file counts by its target's
//!   content, one to a directory as a link); or a glob. A path that does not
//!   exist is an "absent" component. A FIFO, socket or device named directly
//!   is refused.
//!
//! Files are opened non-blocking and checked again with `fstat` on the open
//! descriptor, so a file swapped for a FIFO between the checks is not read.
//! Unchanged files are not re-read: a [`StatCache`] maps (device, inode,
//! size, mtime, ctime) to the digest, and an entry whose timestamps fall
//! within [`RACY_MARGIN_NS`] of the moment it was hashed is not trusted (a
//! write in the same timestamp tick would not show in the stat). Files that
//! need hashing are hashed in parallel.
//!
//! Everything hashed is also *watched*: after the run, [`changed_during_run`]
//! compares each file and walked entry with its state before, so a result
//! computed from content that changed under the command is never recorded.
//! What the run *added* is its own product, not a change: an input absent
//! before the run and present after it (`Cargo.lock`, made by `cargo
//! test`), or a name that appeared in a walked directory. The key holds
//! what was there before, so the next run, which sees it, is another key.
//! (Without tracing, memorun cannot tell the command's creation from
//! another process's: the residual race docs/key.md describes.)
//!
//! The cache directory (and so whatever memorun writes) is never walked or
//! matched, whatever the options: see [`Collector::skip`].

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component as PathComponent, Path, PathBuf};

use anyhow::{Result, anyhow};
use rayon::prelude::*;
use rustix::fs::OFlags;

use crate::base::hashing;
pub use crate::base::stat::{CachedStat, FileStat, NoCache, RACY_MARGIN_NS, StatCache};
use crate::key::base_dir;
use crate::key::exclude::Exclusions;
use crate::key::{Component, Digest, FileType, ListingEntry};
use crate::term::format::io_reason;
use crate::term::progress::HashProgress;

/// From this many files to hash, hash them on all cores.
const PARALLEL_FILES: usize = 16;
/// From this many bytes (in two files or more), hash them on all cores.
const PARALLEL_BYTES: u64 = 4 * 1024 * 1024;

/// Files up to this size that are named on their own (not found in a
/// directory walk) are hashed every time instead of being looked up in the
/// stat cache: reading 16 KiB and hashing it costs less than the query.
const SMALL_FILE: u64 = 16 * 1024;

/// Why the inputs (or the key) could not be resolved.
#[derive(Debug)]
pub enum InputError {
    /// An input refused outright (a FIFO, socket or device named as an
    /// input, an invalid glob): a usage error, exit 125.
    Refused(String),
    /// An input that cannot be read, or another problem computing the key:
    /// the cache cannot be used, and the command runs uncached.
    Unreadable(anyhow::Error),
    /// Over the budget of a resolution without a stat cache (see
    /// `StatCache::budget`): resolve again with one.
    NeedsStatCache,
}

impl From<anyhow::Error> for InputError {
    fn from(e: anyhow::Error) -> InputError {
        InputError::Unreadable(e)
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Refused(why) => f.write_str(why),
            InputError::Unreadable(e) => write!(f, "{e:#}"),
            InputError::NeedsStatCache => f.write_str("the inputs need the stat cache"),
        }
    }
}

/// What a watched path was before the run.
#[derive(Debug, Clone)]
pub enum Watched {
    /// A file with this content and stat.
    File {
        /// Content digest.
        digest: Digest,
        /// Stat when hashed.
        stat: FileStat,
    },
    /// A directory that was listed. Only its removal (or its replacement
    /// by something else) is a change: a name it lost is seen through that
    /// name's own watch, and a name it gained is the run's product.
    Dir,
    /// A symlink listed in a walk without being followed (to a directory,
    /// or dangling): its target.
    Link(Vec<u8>),
    /// A FIFO, socket or device listed in a walk (never opened): its type.
    Special(fs::FileType),
    /// Nothing: the path did not exist. Present after the run, it is what
    /// the run created: no change.
    Absent,
    /// memorun's stdin, a regular file read in place.
    Stdin(crate::key::stdin::StdinFile),
}

/// A path whose state went into the key.
#[derive(Debug, Clone)]
pub struct WatchItem {
    /// The path as shown to the user.
    pub name: OsString,
    /// The absolute path.
    pub abs: PathBuf,
    /// Its state before the run.
    pub before: Watched,
    /// How it came into the key.
    pub origin: Origin,
}

/// How a watched path came into the key: what the user would change to
/// leave it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An argument that names a file (an automatic input).
    Argument,
    /// Named with `-i` on its own.
    Named,
    /// Found walking the directory given with `-i` (as given).
    Walk(OsString),
    /// Matched by (or reached for) the glob given with `-i` (as given),
    /// whose fixed leading part is the directory given second.
    Glob(OsString, PathBuf),
    /// memorun's stdin.
    Stdin,
    /// A descriptor above 2 the command inherits (see `key::descriptors`).
    Descriptor(i32),
}

/// The inputs, resolved: key components in order, and what to watch.
#[derive(Debug, Default)]
pub struct Collected {
    /// Key components, in the order inputs were given.
    pub components: Vec<Component>,
    /// Everything whose change during the run makes the result unrecordable.
    pub watch: Vec<WatchItem>,
}

enum Slot {
    Done(Component),
    File(usize),
}

struct FileTask {
    name: OsString,
    abs: PathBuf,
    origin: Origin,
    stat: FileStat,
    digest: Option<Digest>,
    /// Whether to look it up in, and add it to, the stat cache.
    use_cache: bool,
}

/// Collects inputs in order, then hashes what the stat cache cannot vouch
/// for, in parallel.
pub struct Collector<'a> {
    cwd: &'a Path,
    cache: &'a mut dyn StatCache,
    exclude: &'a Exclusions,
    slots: Vec<Slot>,
    files: Vec<FileTask>,
    watch: Vec<WatchItem>,
    show_progress: bool,
    /// `--base-dir`: names of inputs under it are keyed relative to it.
    base: Option<&'a Path>,
    /// Directories never walked or matched (the cache directory).
    skip: &'a [PathBuf],
}

fn unreadable(name: &Path, e: &io::Error) -> anyhow::Error {
    anyhow!("cannot read input '{}': {}", name.display(), io_reason(e))
}

fn special_kind(ft: &fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn has_glob_meta(s: &OsStr) -> bool {
    s.as_bytes()
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
}

/// What an input glob `arg` walks: its matcher (against paths as the walk
/// forms them: without `./`, `//` or `/./`, which would otherwise make the
/// pattern match nothing), the longest leading part without
/// metacharacters to walk from, and how deep the pattern can reach.
fn glob_walk(arg: &OsStr) -> Result<(globset::GlobMatcher, PathBuf, usize), InputError> {
    let Some(pattern) = arg.to_str() else {
        return Err(InputError::Refused(format!(
            "input pattern '{}' is not valid UTF-8",
            arg.to_string_lossy()
        )));
    };
    let normalized = crate::key::exclude::normalize(Path::new(pattern));
    let normalized = normalized.to_string_lossy().into_owned();
    let pattern = normalized.as_str();
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| {
            InputError::Refused(format!(
                "input pattern '{pattern}' is not valid: {}",
                e.kind()
            ))
        })?
        .compile_matcher();
    let parts: Vec<PathComponent<'_>> = Path::new(pattern).components().collect();
    let literal = parts
        .iter()
        .take_while(|c| !has_glob_meta(c.as_os_str()))
        .count()
        .min(parts.len().saturating_sub(1));
    let base: PathBuf = parts[..literal].iter().collect();
    let depth = if pattern.contains("**") {
        usize::MAX
    } else {
        parts.len() - literal
    };
    Ok((matcher, base, depth))
}

impl<'a> Collector<'a> {
    /// A collector resolving relative paths against `cwd`.
    pub fn new(
        cwd: &'a Path,
        cache: &'a mut dyn StatCache,
        exclude: &'a Exclusions,
    ) -> Collector<'a> {
        Collector {
            cwd,
            cache,
            exclude,
            slots: Vec::new(),
            files: Vec::new(),
            watch: Vec::new(),
            show_progress: false,
            base: None,
            skip: &[],
        }
    }

    /// Never walk into or match anything under `dirs` (absolute, canonical:
    /// walks are of physical paths): the cache directory, which memorun
    /// writes while the command runs, is never one of its inputs.
    pub(crate) fn skip(mut self, dirs: &'a [PathBuf]) -> Self {
        self.skip = dirs;
        self
    }

    /// Key the names of inputs under `base` relative to it (see
    /// `base_dir`).
    pub(crate) fn base_dir(mut self, base: Option<&'a Path>) -> Self {
        self.base = base;
        self
    }

    /// Show a progress bar on the terminal if hashing takes long.
    pub(crate) fn show_progress(mut self, yes: bool) -> Self {
        self.show_progress = yes;
        self
    }

    /// Without a stat cache (see `StatCache::budget`), a walk that has
    /// come upon more entries than the budget's files gives up at once,
    /// rather than list a tree that will be listed again with the cache.
    fn within_budget(&self, entries: usize) -> Result<(), InputError> {
        match self.cache.budget() {
            Some((files, _)) if entries > files => Err(InputError::NeedsStatCache),
            _ => Ok(()),
        }
    }

    /// Queue a file for hashing. Files found in a walk or by a glob have
    /// their stat-cache entries preloaded in one query.
    fn push_file(&mut self, name: OsString, abs: PathBuf, stat: FileStat, origin: Origin) {
        let walked = matches!(origin, Origin::Walk(_) | Origin::Glob(..));
        self.files.push(FileTask {
            name,
            abs,
            origin,
            stat,
            digest: None,
            // A small file named on its own is cheaper to read and hash than
            // to look up in the stat cache (an SQL query of its own); in a
            // walk, the lookup is a hash-map probe into the preloaded rows.
            use_cache: walked || stat.size > SMALL_FILE,
        });
        self.slots.push(Slot::File(self.files.len() - 1));
    }

    fn push_absent(&mut self, name: &OsStr) {
        self.slots.push(Slot::Done(Component::input(
            &base_dir::key_form(self.base, name.as_bytes()),
            None,
        )));
        self.watch.push(WatchItem {
            name: name.to_os_string(),
            abs: self.cwd.join(name),
            before: Watched::Absent,
            origin: Origin::Named,
        });
    }

    /// An automatic input: `arg` counts only if it names an existing regular
    /// file. Returns whether it did.
    pub(crate) fn auto(&mut self, arg: &OsStr) -> bool {
        if arg.is_empty() {
            return false;
        }
        match fs::metadata(self.cwd.join(arg)) {
            Ok(m) if m.is_file() => {
                self.push_file(
                    arg.to_os_string(),
                    self.cwd.join(arg),
                    FileStat::of(&m),
                    Origin::Argument,
                );
                true
            }
            _ => false,
        }
    }

    /// An explicit `--input`: a file, a directory or a glob.
    pub fn explicit(&mut self, arg: &OsStr) -> Result<(), InputError> {
        let abs = self.cwd.join(arg);
        let lmeta = match fs::symlink_metadata(&abs) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => None,
            Err(e) => return Err(unreadable(Path::new(arg), &e).into()),
        };
        if lmeta.is_none() && has_glob_meta(arg) {
            return self.glob(arg);
        }
        let Some(lmeta) = lmeta else {
            self.push_absent(arg);
            return Ok(());
        };
        let meta = if lmeta.file_type().is_symlink() {
            match fs::metadata(&abs) {
                Ok(m) => m,
                // A dangling symlink: its target is absent.
                Err(_) => {
                    self.push_absent(arg);
                    return Ok(());
                }
            }
        } else {
            lmeta
        };
        if meta.is_file() {
            self.push_file(arg.to_os_string(), abs, FileStat::of(&meta), Origin::Named);
            Ok(())
        } else if meta.is_dir() {
            self.walk(arg, &abs)
        } else {
            Err(InputError::Refused(format!(
                "input '{}' is {}; memorun never reads one as an input",
                Path::new(arg).display(),
                special_kind(&meta.file_type())
            )))
        }
    }

    /// Classify one walked entry (not following symlinks) into a listing
    /// entry, queueing files for hashing and watching directories.
    fn entry(
        &mut self,
        name: PathBuf,
        abs: PathBuf,
        (ft, lstat): (fs::FileType, FileStat),
        rel: Vec<u8>,
        origin: &Origin,
    ) -> ListingEntry {
        let mut entry = ListingEntry {
            path: rel,
            file_type: FileType::Special,
            link_target: Vec::new(),
        };
        let before = if ft.is_dir() {
            entry.file_type = FileType::Dir;
            Watched::Dir
        } else if ft.is_file() {
            entry.file_type = FileType::File;
            self.push_file(name.into_os_string(), abs, lstat, origin.clone());
            return entry;
        } else if ft.is_symlink() {
            match fs::metadata(&abs) {
                Ok(m) if m.is_file() => {
                    entry.file_type = FileType::File;
                    self.push_file(name.into_os_string(), abs, FileStat::of(&m), origin.clone());
                    return entry;
                }
                Ok(m) if !m.is_dir() => Watched::Link(link_target(&abs)),
                // A link to a directory, or dangling: recorded, not followed.
                _ => {
                    entry.file_type = FileType::Link;
                    entry.link_target = link_target(&abs);
                    Watched::Link(entry.link_target.clone())
                }
            }
        } else {
            Watched::Special(ft)
        };
        self.watch.push(WatchItem {
            before,
            name: name.into_os_string(),
            abs,
            origin: origin.clone(),
        });
        entry
    }

    fn walk(&mut self, arg: &OsStr, abs: &Path) -> Result<(), InputError> {
        self.cache.preload(abs);
        let origin = Origin::Walk(arg.to_os_string());
        self.watch.push(WatchItem {
            name: arg.to_os_string(),
            abs: abs.to_path_buf(),
            before: Watched::Dir,
            origin: origin.clone(),
        });
        let set_slot = self.slots.len();
        self.slots.push(Slot::Done(Component::input_set(
            &base_dir::key_form(self.base, arg.as_bytes()),
            &[],
        )));
        // Walked unsorted, then sorted once by relative path bytes: the
        // walker's own sort re-parses both paths on every comparison. The
        // sort moves small (prefix, path, index) triples, not the entries,
        // and most comparisons are of the paths' first 16 bytes as one
        // integer (big-endian and zero-padded, which orders as the bytes do).
        let mut found = Vec::new();
        let mut order = Vec::new();
        let (exclude, skip) = (self.exclude, self.skip);
        let walker = walkdir::WalkDir::new(abs)
            .follow_links(false)
            .min_depth(1)
            .into_iter()
            // An excluded directory is not entered at all.
            .filter_entry(|e| {
                !skipped(skip, e.path())
                    && (exclude.is_empty()
                        || !exclude.excludes(&Path::new(arg).join(relative_path(e.path(), abs))))
            });
        for item in walker {
            let item = item.map_err(|e| walk_error(arg, abs, e))?;
            let lmeta = item.metadata().map_err(|e| walk_error(arg, abs, e))?;
            self.within_budget(found.len() + 1)?;
            let path = item.into_path();
            let rel = relative_bytes(&path, abs).to_vec();
            order.push((sort_prefix(&rel), rel, found.len()));
            // What `entry` needs of the metadata, a third of its size.
            found.push((path, (lmeta.file_type(), FileStat::of(&lmeta))));
        }
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut listing = Vec::with_capacity(found.len());
        for (_, rel, i) in order {
            let (path, ft_stat) = &mut found[i];
            // `Path::join`, allocated once at its final size.
            let mut name = PathBuf::with_capacity(arg.len() + 1 + rel.len());
            name.push(arg);
            name.push(OsStr::from_bytes(&rel));
            let path = std::mem::take(path);
            listing.push(self.entry(name, path, *ft_stat, rel, &origin));
        }
        self.slots[set_slot] = Slot::Done(Component::input_set(
            &base_dir::key_form(self.base, arg.as_bytes()),
            &listing,
        ));
        Ok(())
    }

    fn glob(&mut self, arg: &OsStr) -> Result<(), InputError> {
        let (matcher, base, depth) = glob_walk(arg)?;
        let base_abs = self.cwd.join(&base);
        let origin = Origin::Glob(arg.to_os_string(), base.clone());
        let set_slot = self.slots.len();
        self.slots.push(Slot::Done(Component::input_set(
            &base_dir::key_form(self.base, arg.as_bytes()),
            &[],
        )));
        let mut listing = Vec::new();
        // The base may be a symlink to a directory: followed, as a shell's
        // glob would.
        match fs::metadata(&base_abs) {
            Ok(m) if m.is_dir() => {
                self.cache.preload(&base_abs);
                self.watch.push(WatchItem {
                    name: base.clone().into_os_string(),
                    abs: base_abs.clone(),
                    before: Watched::Dir,
                    origin: origin.clone(),
                });
            }
            // No base directory: nothing matches, until it is created.
            _ => {
                self.watch.push(WatchItem {
                    name: base.clone().into_os_string(),
                    abs: base_abs.clone(),
                    before: Watched::Absent,
                    origin: origin.clone(),
                });
                self.slots[set_slot] = Slot::Done(Component::input_set(
                    &base_dir::key_form(self.base, arg.as_bytes()),
                    &listing,
                ));
                return Ok(());
            }
        }
        let (exclude, skip) = (self.exclude, self.skip);
        let walker = walkdir::WalkDir::new(&base_abs)
            .follow_links(false)
            .sort_by_file_name()
            .min_depth(1)
            .max_depth(depth)
            .into_iter()
            .filter_entry(|e| {
                !skipped(skip, e.path())
                    && (exclude.is_empty()
                        || !exclude.excludes(&base.join(relative_path(e.path(), &base_abs))))
            });
        for (n, item) in walker.enumerate() {
            self.within_budget(n + 1)?;
            let item = item.map_err(|e| walk_error(base.as_os_str(), &base_abs, e))?;
            let rel = item.path().strip_prefix(&base_abs).unwrap_or(item.path());
            let shown = base.join(rel);
            let lmeta = item
                .metadata()
                .map_err(|e| walk_error(base.as_os_str(), &base_abs, e))?;
            if !matcher.is_match(&shown) {
                if lmeta.is_dir() {
                    // Watch directories the pattern reaches into: one
                    // removed takes its matches with it.
                    self.watch.push(WatchItem {
                        before: Watched::Dir,
                        name: shown.into_os_string(),
                        abs: item.path().to_path_buf(),
                        origin: origin.clone(),
                    });
                }
                continue;
            }
            let bytes = shown.as_os_str().as_bytes().to_vec();
            let ft_stat = (lmeta.file_type(), FileStat::of(&lmeta));
            let entry = self.entry(shown, item.into_path(), ft_stat, bytes, &origin);
            listing.push(entry);
        }
        self.slots[set_slot] = Slot::Done(Component::input_set(
            &base_dir::key_form(self.base, arg.as_bytes()),
            &listing,
        ));
        Ok(())
    }

    /// Hash what needs hashing (in parallel), update the stat cache, and
    /// return the components in order with what to watch.
    pub fn finish(mut self) -> Result<Collected, InputError> {
        if let Some((files, bytes)) = self.cache.budget() {
            let cached = self.files.iter().filter(|t| t.use_cache);
            if cached.clone().count() > files || cached.map(|t| t.stat.size).sum::<u64>() > bytes {
                return Err(InputError::NeedsStatCache);
            }
        }
        for task in self.files.iter_mut().filter(|t| t.use_cache) {
            if let Some(c) = self.cache.get(&task.abs)
                && c.stat == task.stat
                && !c.stat.is_racy(c.hashed_at_ns)
            {
                task.digest = Some(c.digest);
            }
        }
        let hashed_at_ns = now_ns();
        let todo: Vec<usize> = (0..self.files.len())
            .filter(|&i| self.files[i].digest.is_none())
            .collect();
        let bytes: u64 = todo.iter().map(|&i| self.files[i].stat.size).sum();
        // A thread pool costs more than it saves on a few small files (the
        // common hit path); big files are hashed on all cores either way.
        let parallel = todo.len() >= PARALLEL_FILES || (todo.len() >= 2 && bytes >= PARALLEL_BYTES);
        let progress = HashProgress::start(
            todo.len() as u64,
            bytes,
            self.show_progress && !todo.is_empty(),
        );
        let hash = |&i: &usize| {
            let r = hash_regular_checked(&self.files[i].abs);
            progress.add(self.files[i].stat.size);
            (i, r)
        };
        let results: Vec<(usize, Hashed)> = if parallel {
            todo.par_iter().map(hash).collect()
        } else {
            todo.iter().map(hash).collect()
        };
        progress.finish();
        for (i, result) in results {
            let task = &mut self.files[i];
            let (digest, stat, stat_describes_content) =
                result.map_err(|e| unreadable(Path::new(&task.name), &e))?;
            task.digest = Some(digest);
            task.stat = stat;
            if !stat_describes_content || !task.use_cache {
                continue;
            }
            self.cache.put(
                &task.abs,
                CachedStat {
                    stat,
                    digest,
                    hashed_at_ns,
                },
            );
        }
        let base = self.base;
        let mut out = Collected {
            components: Vec::with_capacity(self.slots.len()),
            watch: self.watch,
        };
        for slot in self.slots {
            match slot {
                Slot::Done(c) => out.components.push(c),
                Slot::File(i) => {
                    let t = &self.files[i];
                    let digest = t.digest.expect("every file task was hashed");
                    let name = base_dir::key_form(base, t.name.as_bytes());
                    out.components.push(Component::input(&name, Some(digest)));
                    out.watch.push(WatchItem {
                        name: t.name.clone(),
                        abs: t.abs.clone(),
                        before: Watched::File {
                            digest,
                            stat: t.stat,
                        },
                        origin: t.origin.clone(),
                    });
                }
            }
        }
        Ok(out)
    }
}

fn walk_error(arg: &OsStr, abs: &Path, e: walkdir::Error) -> anyhow::Error {
    let shown = match e.path() {
        Some(p) => Path::new(arg).join(p.strip_prefix(abs).unwrap_or(p)),
        None => PathBuf::from(arg),
    };
    if e.loop_ancestor().is_some() {
        return anyhow!("input '{}' contains a filesystem loop", shown.display());
    }
    match e.io_error() {
        Some(io) => unreadable(&shown, io),
        None => anyhow!("cannot read input '{}'", shown.display()),
    }
}

/// `path` relative to `base`, for a path under `base` (see
/// [`relative_bytes`]).
fn relative_path<'p>(path: &'p Path, base: &Path) -> &'p Path {
    Path::new(OsStr::from_bytes(relative_bytes(path, base)))
}

/// `path` relative to `base`, as bytes, for a path the walk of `base`
/// produced (`base` joined with the rest). Comparing bytes is much cheaper
/// than `Path::strip_prefix`, which parses both paths into components.
fn relative_bytes<'p>(path: &'p Path, base: &Path) -> &'p [u8] {
    let bytes = path.as_os_str().as_bytes();
    match bytes.strip_prefix(base.as_os_str().as_bytes()) {
        Some(rest) => rest.strip_prefix(b"/").unwrap_or(rest),
        None => path
            .strip_prefix(base)
            .map_or(&[][..], |r| r.as_os_str().as_bytes()),
    }
}

/// The first 16 bytes of `bytes` as a big-endian integer, zero-padded: for
/// two byte strings, a smaller prefix means a smaller string; equal
/// prefixes need the full comparison.
fn sort_prefix(bytes: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let n = bytes.len().min(16);
    head[..n].copy_from_slice(&bytes[..n]);
    u128::from_be_bytes(head)
}

/// Whether `abs`, a path a walk came upon, is in or under a skipped
/// directory.
fn skipped(skip: &[PathBuf], abs: &Path) -> bool {
    skip.iter().any(|d| abs.starts_with(d))
}

/// A symlink's target, as bytes (empty when it cannot be read).
fn link_target(abs: &Path) -> Vec<u8> {
    fs::read_link(abs)
        .map(|t| t.into_os_string().into_vec())
        .unwrap_or_default()
}

pub use crate::base::time::now_ns;

/// Open `path` without blocking, check that the open file is regular, and
/// hash it. Returns the digest and the stat of the file that was read.
pub(crate) fn hash_regular(path: &Path) -> io::Result<(Digest, FileStat)> {
    hash_regular_checked(path).map(|(d, s, _)| (d, s))
}

/// A file's digest and stat, and whether the stat's size matched the bytes.
type Hashed = io::Result<(Digest, FileStat, bool)>;

/// Like [`hash_regular`], also saying whether the bytes read matched the
/// stat's size. They do not for procfs and sysfs files (size 0, content
/// computed on read): a stat says nothing about such a file's content.
fn hash_regular_checked(path: &Path) -> Hashed {
    let mut file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is no longer a regular file",
        ));
    }
    let (digest, read) = hashing::hash_file(&mut file, meta.size())?;
    Ok((digest, FileStat::of(&meta), read == meta.size()))
}

fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
}

/// The inputs named with `-i` that do not exist at all (a dangling symlink
/// is there on purpose): in the key as absent, and most often a typo.
pub(crate) fn missing_named(watch: &[WatchItem]) -> Vec<&OsStr> {
    watch
        .iter()
        .filter(|w| w.origin == Origin::Named && matches!(w.before, Watched::Absent))
        .filter(|w| fs::symlink_metadata(&w.abs).is_err())
        .map(|w| w.name.as_os_str())
        .collect()
}

/// Why a run whose input `w` changed is not recorded, and what would leave
/// that input out of the key, by how it came into it.
pub(crate) fn changed_message(w: &WatchItem) -> String {
    let name = crate::term::quote::word(w.name.as_bytes());
    let hint = match &w.origin {
        Origin::Argument => format!("leave it out of the key with -x {name} or --no-auto-inputs"),
        Origin::Named => format!("it is an output, not an input: do not name it with -i {name}"),
        Origin::Walk(root) => exclusion_hint(Path::new(root), w),
        Origin::Glob(_, base) => exclusion_hint(base, w),
        Origin::Stdin => "leave stdin out of the key with --stdin ignore".to_string(),
        Origin::Descriptor(fd) => format!("do not hand it descriptor {fd}"),
    };
    let what = match w.origin {
        Origin::Stdin => "stdin".to_string(),
        Origin::Descriptor(fd) => format!("the file on descriptor {fd}"),
        _ => format!(
            "input '{}'",
            crate::term::quote::printable(&w.name.to_string_lossy())
        ),
    };
    format!("{what} changed while the command ran (if the command writes it, {hint})")
}

/// `leave it out with -i '!DIR/**'`, naming the topmost directory (or the
/// file) below the walked `root` that leads to `w`.
fn exclusion_hint(root: &Path, w: &WatchItem) -> String {
    let root = crate::key::exclude::normalize(root);
    let shown = crate::key::exclude::normalize(Path::new(&w.name));
    let rel = shown.strip_prefix(&root).unwrap_or(&shown);
    let mut parts = rel.components();
    let pattern = match (parts.next(), parts.next()) {
        // The walked directory itself (an entry was added or removed).
        (None, _) => return "leave the paths it writes out with --exclude GLOB".to_string(),
        (Some(first), rest) => {
            let top = root.join(first);
            let is_dir = rest.is_some() || matches!(w.before, Watched::Dir);
            if is_dir {
                format!("{}/**", top.display())
            } else {
                top.display().to_string()
            }
        }
    };
    let quoted = crate::term::quote::word(format!("!{pattern}").as_bytes()).into_owned();
    format!("leave it out with -i {quoted}")
}

/// The first watched path whose state differs from before the run, if any.
/// `started_ns` is when the inputs were examined; files modified that
/// recently are compared by content, not only by stat. What the run added
/// (an absent path now present, a new name in a walked directory) is not a
/// change: see the module documentation.
pub(crate) fn changed_during_run(watch: &[WatchItem], started_ns: i64) -> Option<&WatchItem> {
    watch.iter().find(|w| match &w.before {
        Watched::Absent => false,
        Watched::Stdin(file) => !file.unchanged(started_ns),
        // Followed: an --input root may be a symlink to a directory (walked
        // subdirectories are never links).
        Watched::Dir => !fs::metadata(&w.abs).is_ok_and(|m| m.is_dir()),
        Watched::Link(target) => {
            fs::read_link(&w.abs)
                .map(|t| t.into_os_string().into_vec())
                .ok()
                .as_ref()
                != Some(target)
        }
        Watched::Special(ft) => {
            fs::symlink_metadata(&w.abs).map(|m| m.file_type()).ok() != Some(*ft)
        }
        Watched::File { digest, stat } => match fs::metadata(&w.abs) {
            Ok(m) if FileStat::of(&m) != *stat => true,
            Ok(_) if stat.is_racy(started_ns) => match hash_regular(&w.abs) {
                Ok((now, _)) => now != *digest,
                Err(_) => true,
            },
            Ok(_) => false,
            Err(_) => true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MapCache(HashMap<PathBuf, CachedStat>, usize);

    impl StatCache for MapCache {
        fn get(&mut self, abs: &Path) -> Option<CachedStat> {
            self.0.get(abs).copied()
        }
        fn put(&mut self, abs: &Path, entry: CachedStat) {
            self.1 += 1;
            self.0.insert(abs.to_path_buf(), entry);
        }
    }

    fn collect(
        cwd: &Path,
        cache: &mut dyn StatCache,
        explicit: &[&str],
        auto: &[&str],
    ) -> Result<Collected, InputError> {
        let none = Exclusions::default();
        let mut c = Collector::new(cwd, cache, &none);
        for e in explicit {
            c.explicit(OsStr::new(e))?;
        }
        for a in auto {
            c.auto(OsStr::new(a));
        }
        c.finish()
    }

    fn names(c: &Collected) -> Vec<(Kind, String, bool)> {
        c.components
            .iter()
            .map(|c| {
                (
                    c.kind,
                    c.name.clone(),
                    c.state == crate::key::State::Present,
                )
            })
            .collect()
    }

    #[test]
    fn only_regular_files_are_automatic_inputs() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("in.txt"), "data").unwrap();
        fs::create_dir(t.path().join("dir")).unwrap();
        let c = collect(
            t.path(),
            &mut NoCache,
            &[],
            &["in.txt", "dir", "/dev/zero", "/dev/null", "missing", ""],
        )
        .unwrap();
        assert_eq!(names(&c), vec![(Kind::Input, "in.txt".into(), true)]);
        assert_eq!(
            c.components[0],
            Component::input(b"in.txt", Some(Digest::from(blake3::hash(b"data"))))
        );
    }

    #[test]
    fn sort_prefix_then_bytes_orders_as_the_bytes_do() {
        let key = |b: &[u8]| (sort_prefix(b), b.to_vec());
        let cases: [&[u8]; 9] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a-c",
            b"a/b",
            b"0123456789abcdef",
            b"0123456789abcdef0",
            b"0123456789abcdef\0",
        ];
        for a in cases {
            for b in cases {
                assert_eq!(key(a).cmp(&key(b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn sort_prefix_order_matches_byte_order(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let ka = (sort_prefix(&a), &a);
            let kb = (sort_prefix(&b), &b);
            proptest::prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }
    }

    #[test]
    fn directory_walk_is_sorted_and_lists_links_without_following() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("src");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("b.txt"), "b").unwrap();
        fs::write(d.join("a.txt"), "a").unwrap();
        fs::write(d.join("sub/c.txt"), "c").unwrap();
        std::os::unix::fs::symlink("a.txt", d.join("link-to-file")).unwrap();
        std::os::unix::fs::symlink(".", d.join("loop")).unwrap();
        let c = collect(t.path(), &mut NoCache, &["src"], &[]).unwrap();
        assert_eq!(
            names(&c),
            vec![
                (Kind::InputSet, "src".into(), true),
                (Kind::Input, "src/a.txt".into(), true),
                (Kind::Input, "src/b.txt".into(), true),
                (Kind::Input, "src/link-to-file".into(), true),
                (Kind::Input, "src/sub/c.txt".into(), true),
            ]
        );
        assert_eq!(
            c.components[3].digest,
            Component::input(b"src/link-to-file", Some(Digest::from(blake3::hash(b"a")))).digest
        );
    }

    #[test]
    fn glob_matches_files_by_pattern() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("src/deep")).unwrap();
        fs::write(t.path().join("src/a.rs"), "a").unwrap();
        fs::write(t.path().join("src/b.txt"), "b").unwrap();
        fs::write(t.path().join("src/deep/c.rs"), "c").unwrap();
        let c = collect(t.path(), &mut NoCache, &["src/*.rs"], &[]).unwrap();
        assert_eq!(
            names(&c),
            vec![
                (Kind::InputSet, "src/*.rs".into(), true),
                (Kind::Input, "src/a.rs".into(), true)
            ]
        );
        let c = collect(t.path(), &mut NoCache, &["src/**/*.rs"], &[]).unwrap();
        let inputs: Vec<String> = names(&c).into_iter().skip(1).map(|n| n.1).collect();
        assert_eq!(inputs, vec!["src/a.rs", "src/deep/c.rs"]);
        let c = collect(t.path(), &mut NoCache, &["nothing/*.rs"], &[]).unwrap();
        assert_eq!(
            names(&c),
            vec![(Kind::InputSet, "nothing/*.rs".into(), true)]
        );
    }

    #[test]
    fn absent_and_refused_inputs() {
        let t = tempfile::tempdir().unwrap();
        let c = collect(t.path(), &mut NoCache, &["missing.txt"], &[]).unwrap();
        assert_eq!(names(&c), vec![(Kind::Input, "missing.txt".into(), false)]);
        let e = collect(t.path(), &mut NoCache, &["/dev/null"], &[]).unwrap_err();
        assert!(
            matches!(&e, InputError::Refused(why) if why.contains("is a device")),
            "{e}"
        );
    }

    #[test]
    fn stat_cache_skips_unchanged_files_but_not_racy_ones() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        // Bigger than SMALL_FILE: named on its own, it goes through the cache.
        let (one, two) = ("one".repeat(8000), "two".repeat(8000));
        fs::write(&f, &one).unwrap();
        let mut cache = MapCache::default();
        collect(t.path(), &mut cache, &["f"], &[]).unwrap();
        assert_eq!(cache.1, 1);
        // Just written: racy, so hashed again.
        collect(t.path(), &mut cache, &["f"], &[]).unwrap();
        assert_eq!(cache.1, 2);
        // Pretend it was hashed long after its last change: trusted.
        let e = cache.0.get_mut(&f).unwrap();
        e.hashed_at_ns = e.stat.mtime_ns.max(e.stat.ctime_ns) + 10 * RACY_MARGIN_NS;
        collect(t.path(), &mut cache, &["f"], &[]).unwrap();
        assert_eq!(cache.1, 2);
        // A changed stat is hashed again, and gives the new content.
        fs::write(&f, &two).unwrap();
        let c = collect(t.path(), &mut cache, &["f"], &[]).unwrap();
        assert_eq!(cache.1, 3);
        assert_eq!(
            c.components[0],
            Component::input(b"f", Some(Digest::from(blake3::hash(two.as_bytes()))))
        );
    }

    #[test]
    fn small_named_files_bypass_the_stat_cache_but_walked_ones_do_not() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("small"), "one").unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/x"), "x").unwrap();
        let mut cache = MapCache::default();
        collect(t.path(), &mut cache, &["small"], &[]).unwrap();
        assert_eq!(cache.1, 0, "a small named file is never put in the cache");
        // Even a stale cache entry for it is not consulted.
        let small = t.path().join("small");
        let c = collect(t.path(), &mut NoCache, &["small"], &[]).unwrap();
        let digest = |c: &Collected| c.components[0].clone();
        let fresh = digest(&c);
        let mut lying = MapCache::default();
        collect(t.path(), &mut lying, &["d"], &[]).unwrap();
        let mut wrong = *lying.0.values().next().unwrap();
        wrong.stat = FileStat::of(&fs::metadata(&small).unwrap());
        wrong.hashed_at_ns = wrong.stat.mtime_ns.max(wrong.stat.ctime_ns) + 10 * RACY_MARGIN_NS;
        lying.0.insert(small.clone(), wrong);
        let c = collect(t.path(), &mut lying, &["small"], &[]).unwrap();
        assert_eq!(digest(&c), fresh);
        // A walked file, however small, is cached.
        assert_eq!(lying.1, 1, "d/x was put in the cache");
    }

    /// No stat cache, with a budget: a walk past it gives up as soon as it
    /// has seen too many entries; within it, every file is hashed.
    #[test]
    fn a_budget_without_a_stat_cache_stops_a_walk_early() {
        // Counts the entries the walk looked at before giving up (each is
        // checked against the budget as it is found).
        struct Budget(usize, std::cell::Cell<usize>);
        impl StatCache for Budget {
            fn budget(&self) -> Option<(usize, u64)> {
                self.1.set(self.1.get() + 1);
                Some((self.0, u64::MAX))
            }
            fn get(&mut self, _: &Path) -> Option<CachedStat> {
                None
            }
            fn put(&mut self, _: &Path, _: CachedStat) {}
        }
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        for i in 0..40 {
            fs::write(t.path().join(format!("d/{i}")), "x").unwrap();
        }
        for input in ["d", "d/*"] {
            let mut over = Budget(32, Default::default());
            let r = collect(t.path(), &mut over, &[input], &[]);
            assert!(matches!(r, Err(InputError::NeedsStatCache)), "{input}");
            assert_eq!(
                over.1.get(),
                33,
                "{input}: the walk went on past the budget"
            );
        }
        let within = collect(t.path(), &mut Budget(64, Default::default()), &["d"], &[]).unwrap();
        let with_cache = collect(t.path(), &mut NoCache, &["d"], &[]).unwrap();
        assert_eq!(within.components, with_cache.components);
    }

    #[test]
    fn changes_during_the_run_are_seen() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/x"), "x").unwrap();
        fs::write(t.path().join("f"), "1234").unwrap();
        let start = now_ns();
        let c = collect(t.path(), &mut NoCache, &["d", "f", "absent"], &[]).unwrap();
        let changed = |c: &Collected| changed_during_run(&c.watch, start).map(|w| w.name.clone());
        assert_eq!(changed(&c), None);
        // Same size, same mtime tick: only the content tells.
        fs::write(t.path().join("f"), "5678").unwrap();
        assert_eq!(changed(&c), Some("f".into()));
        fs::write(t.path().join("f"), "1234").unwrap();
        fs::remove_file(t.path().join("d/x")).unwrap();
        assert_eq!(changed(&c), Some("d/x".into()));
        fs::remove_dir(t.path().join("d")).unwrap();
        assert_eq!(changed(&c), Some("d".into()));
    }

    /// Issue 26: `cargo test` creates `Cargo.lock`, named with `-i` or
    /// found in `-i .`; what a run adds is its product, not a change.
    #[test]
    fn what_the_run_adds_is_no_change() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/x"), "x").unwrap();
        std::os::unix::fs::symlink("nowhere", t.path().join("d/link")).unwrap();
        let start = now_ns();
        let c = collect(t.path(), &mut NoCache, &["d", "absent", "g/*.txt"], &[]).unwrap();
        fs::write(t.path().join("absent"), "made by the run").unwrap();
        fs::write(t.path().join("d/new"), "").unwrap();
        fs::create_dir_all(t.path().join("d/sub/deeper")).unwrap();
        fs::create_dir_all(t.path().join("g")).unwrap();
        fs::write(t.path().join("g/a.txt"), "").unwrap();
        assert!(changed_during_run(&c.watch, start).is_none());
        // A link the walk listed without following is watched by target.
        fs::remove_file(t.path().join("d/link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", t.path().join("d/link")).unwrap();
        assert_eq!(
            changed_during_run(&c.watch, start).map(|w| w.name.clone()),
            Some("d/link".into())
        );
    }

    #[test]
    fn skipped_directories_are_never_walked() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join(".memorun/tmp")).unwrap();
        fs::write(t.path().join(".memorun/memorun.db"), "db").unwrap();
        fs::write(t.path().join("a"), "a").unwrap();
        let skip = [t.path().join(".memorun")];
        let none = Exclusions::default();
        for input in [".", "**/*"] {
            let mut cache = NoCache;
            let mut c = Collector::new(t.path(), &mut cache, &none).skip(&skip);
            c.explicit(OsStr::new(input)).unwrap();
            let got = c.finish().unwrap();
            let inputs: Vec<String> = names(&got).into_iter().skip(1).map(|n| n.1).collect();
            assert_eq!(
                inputs,
                vec![if input == "." { "./a" } else { "a" }],
                "{input}"
            );
            assert!(got.watch.iter().all(|w| !w.abs.starts_with(&skip[0])));
        }
    }

    #[test]
    fn the_hint_for_a_changed_input_names_the_option_for_its_origin() {
        let item = |name: &str, origin: Origin, before: Watched| WatchItem {
            name: name.into(),
            abs: PathBuf::from("/"),
            before,
            origin,
        };
        let file = || Watched::File {
            digest: Digest([0; 32]),
            stat: FileStat::of(&fs::metadata("/").unwrap()),
        };
        let cases = [
            (
                item("out.txt", Origin::Argument, file()),
                "-x out.txt or --no-auto-inputs",
            ),
            (
                item("gen.h", Origin::Named, file()),
                "do not name it with -i gen.h",
            ),
            (
                item("./target/debug/x", Origin::Walk(".".into()), file()),
                "-i '!target/**'",
            ),
            (
                item("src/build.log", Origin::Walk("src".into()), file()),
                "-i '!src/build.log'",
            ),
            (
                item(
                    "a/gen/x.rs",
                    Origin::Glob("a/**/*.rs".into(), "a".into()),
                    file(),
                ),
                "-i '!a/gen/**'",
            ),
            (
                item("stdin", Origin::Stdin, Watched::Absent),
                "--stdin ignore",
            ),
        ];
        for (w, hint) in cases {
            let msg = changed_message(&w);
            assert!(msg.contains(hint), "{msg}");
        }
    }

    #[test]
    fn fifo_is_never_opened() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let got = collect(t.path(), &mut NoCache, &[], &["fifo"]).unwrap();
        assert!(got.components.is_empty());
        let e = collect(t.path(), &mut NoCache, &["fifo"], &[]).unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        // Inside a directory it is listed, not opened.
        let c = collect(t.path(), &mut NoCache, &["."], &[]).unwrap();
        assert_eq!(c.components.len(), 1);
    }
}
