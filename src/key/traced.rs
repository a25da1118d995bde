//! The inputs a traced run really used (`--trace`), and how a later run
//! finds its entry without knowing them in advance.
//!
//! A traced run's inputs are known only after it ran, so its entry cannot
//! be under the key computed before the run. Two levels, as ccache's
//! manifests: the usual key (the *base* key: command line, working
//! directory, `-e`, `-i`, stdin...) names up to `store::MAX_MANIFESTS` trace
//! manifests, each the list of paths one traced run used with their state
//! then ([`Manifest`]); the entry of that run is under
//! [`entry_key`]`(base, manifest digest)`. A lookup checks the manifests
//! against the files as they are now, most recently used first; the first
//! whose every path still matches names the entry to replay.
//!
//! What each traced path's state is made of ([`Probe`]):
//!
//! - a file the command read: its content (BLAKE3, through the stat
//!   cache);
//! - a file it executed: its content and its mode but the write bits
//!   (`chmod -x` makes it fail with 126);
//! - a directory it listed: its listing (the sorted names);
//! - a path it only looked at (`stat`, `access`): what a look tells and
//!   stays the same across checkouts: its type; for a symlink its target;
//!   for a directory its mode, owner and group; for anything else also its
//!   size, link count and modification time (not its device, inode,
//!   ctime or blocks, which differ between checkouts and machines);
//! - a path whose extended attributes it read or listed: every attribute's
//!   name and value (not following a symlink), beside whatever else it
//!   did to the path (a second item for the same path);
//! - a path it looked for and did not find: absent, so that creating it
//!   later (a header that shadows another, a new program on `PATH`) is a
//!   miss.
//!
//! The race guard covers traced inputs. The tracer notes what each input
//! was when the command first reached it, the tracee stopped at the call
//! ([`Seen`]: its stat, and its digest when the stat was too recent to
//! vouch for the content, as git does for racily clean index entries). An
//! input still as it was then is recorded, however recently it was
//! written before the command opened it (a header generated just before
//! the compile); one whose stat or content moved since was modified while
//! the command ran, and the result is not recorded. An input without such
//! a note (a listing too recent to trust) falls back to the times: one
//! modified after the run started (its mtime or ctime within
//! [`RACE_MARGIN_NS`] of the start, or later) makes the result
//! unrecordable.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::base::Digest;
use crate::key::inputs::{self, CachedStat, FileStat, StatCache};
use memorun_trace::Seen;
use memorun_trace::log::{content_digest, listing_digest};

/// A traced input modified this close before the run started, or after,
/// counts as changed while the command ran: file timestamps come from a
/// coarse clock that can lag the real time by a few milliseconds.
pub(crate) const RACE_MARGIN_NS: i64 = 20_000_000;

/// The first byte of an encoded manifest: its format version. 2: the
/// tracer keys the file a path reaches through links and `/proc` magic
/// links, a look keys owner, group and link count, executed files their
/// mode, and extended attributes their values; a manifest of 1 may lack
/// inputs, so it is not used.
const FORMAT: u8 = 2;

/// What a traced path's state is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Probe {
    /// Read: its content.
    Content,
    /// Executed: its content and mode.
    Program,
    /// Listed: its entries' names.
    Listing,
    /// Looked at without reading: its type (and a symlink's target).
    Exists,
    /// Looked for and not found.
    Absent,
    /// Its extended attributes read or listed: their names and values.
    Xattrs,
}

/// A path's state, as a manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A regular file with this content digest.
    Content(Digest),
    /// A directory listing with this digest, leaving out the names the
    /// recorded run itself wrote, created or removed there (its outputs
    /// come and go; what the command found is the rest).
    Listing(Digest, Vec<Vec<u8>>),
    /// A path of this type (see [`kind_of`]); for a symlink, the digest of
    /// its target.
    Exists(u8, Option<Digest>),
    /// Nothing there.
    Absent,
    /// An executed file: its content digest and its mode but the write
    /// bits.
    Program(Digest, u32),
    /// The digest of a path's extended attributes, names and values.
    Xattrs(Digest),
}

impl State {
    fn tag(&self) -> u8 {
        match self {
            State::Content(_) => 0,
            State::Listing(..) => 1,
            State::Exists(_, None) => 2,
            State::Exists(_, Some(_)) => 3,
            State::Absent => 4,
            State::Program(..) => 5,
            State::Xattrs(_) => 6,
        }
    }

    /// In words, for `why`.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            State::Content(_) => "a file",
            State::Listing(..) => "a directory",
            State::Exists(KIND_DIR, _) => "a directory (not read)",
            State::Exists(KIND_LINK, _) => "a symlink",
            State::Exists(..) => "a file (not read)",
            State::Absent => "absent",
            State::Program(..) => "a program",
            State::Xattrs(_) => "extended attributes",
        }
    }
}

const KIND_FILE: u8 = 1;
const KIND_DIR: u8 = 2;
const KIND_LINK: u8 = 3;
const KIND_OTHER: u8 = 4;

/// A file type as [`State::Exists`] records it.
fn kind_of(ft: &fs::FileType) -> u8 {
    if ft.is_symlink() {
        KIND_LINK
    } else if ft.is_dir() {
        KIND_DIR
    } else if ft.is_file() {
        KIND_FILE
    } else {
        KIND_OTHER
    }
}

/// The traced inputs of one run, each with its state when the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Absolute paths, sorted, each once.
    pub items: Vec<(PathBuf, State)>,
    /// For each item whose state is its content, the file's stat when it
    /// was recorded, if that stat can vouch for the content (the file was
    /// not modified within `inputs::RACY_MARGIN_NS` of being recorded): a check
    /// that finds the same stat need not read the file, nor the stat
    /// cache. Not part of the manifest's digest (it differs between
    /// machines and checkouts; the content does not).
    pub stats: Vec<Option<FileStat>>,
}

/// Why a manifest does not match the files now, or why a run's traced
/// inputs cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The path.
    pub path: PathBuf,
    /// What it was (`None` when it changed during the run).
    pub was: Option<State>,
    /// What it is now (`None` when unreadable).
    pub now: Option<State>,
    /// What happened, when `was` and `now` do not say it.
    pub how: Option<&'static str>,
}

/// The race guard's finding: modified after the command reached it.
const MODIFIED_WHILE_RUNNING: &str = "modified while the command ran (after the command read it)";

impl Mismatch {
    /// `traced input include/config.h: changed`, relative to `cwd` when
    /// under it.
    pub(crate) fn message(&self, cwd: &Path) -> String {
        let shown = shown(&self.path, cwd);
        let how = match (&self.was, &self.now) {
            _ if self.how.is_some() => self.how.unwrap_or_default(),
            (None, _) => "changed while the command ran",
            (Some(State::Absent), Some(_)) => "created",
            (Some(_), Some(State::Absent)) => "removed",
            (Some(a), Some(b)) if a.tag() != b.tag() => "replaced",
            (Some(_), None) => "unreadable",
            _ => "changed",
        };
        format!("traced input {shown}: {how}")
    }
}

/// `path` as `why` and `-v` show it: relative to `cwd` when under it (`.`
/// for `cwd` itself), else absolute.
pub(crate) fn shown(path: &Path, cwd: &Path) -> String {
    match path.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// The state of `path` now, as `probe` sees it. Content goes through
/// `cache` (and is put into it).
pub(crate) fn state_now(
    path: &Path,
    probe: Probe,
    ignore: &[Vec<u8>],
    cache: &mut dyn StatCache,
) -> io::Result<State> {
    let absent = |e: &io::Error| {
        e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory
    };
    match probe {
        // Not following a symlink: a dangling one created later is a
        // change too.
        Probe::Absent => match fs::symlink_metadata(path) {
            Ok(m) => Ok(State::Exists(kind_of(&m.file_type()), None)),
            Err(e) if absent(&e) => Ok(State::Absent),
            Err(e) => Err(e),
        },
        Probe::Exists => match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(path)?;
                Ok(State::Exists(
                    KIND_LINK,
                    Some(Digest::from(blake3::hash(target.as_os_str().as_bytes()))),
                ))
            }
            Ok(m) => Ok(State::Exists(kind_of(&m.file_type()), Some(looks(&m)))),
            Err(e) if absent(&e) => Ok(State::Absent),
            Err(e) => Err(e),
        },
        Probe::Xattrs => match fs::symlink_metadata(path) {
            Ok(_) => Ok(State::Xattrs(xattrs(path)?)),
            Err(e) if absent(&e) => Ok(State::Absent),
            Err(e) => Err(e),
        },
        Probe::Listing => match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let mut names: Vec<Vec<u8>> = fs::read_dir(path)?
                    .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
                    .collect::<io::Result<_>>()?;
                names.retain(|n| !ignore.contains(n));
                names.sort();
                let mut h = blake3::Hasher::new();
                for n in &names {
                    h.update(&(n.len() as u64).to_le_bytes());
                    h.update(n);
                }
                Ok(State::Listing(h.finalize().into(), ignore.to_vec()))
            }
            Ok(m) => Ok(State::Exists(kind_of(&m.file_type()), None)),
            Err(e) if absent(&e) => Ok(State::Absent),
            Err(e) => Err(e),
        },
        Probe::Content | Probe::Program => match fs::metadata(path) {
            Ok(m) if m.is_file() => {
                let digest = content(path, &m, cache)?;
                Ok(match probe {
                    Probe::Program => State::Program(digest, program_mode(&m)),
                    _ => State::Content(digest),
                })
            }
            // Not a file (a directory opened, not listed): keyed as a look
            // at it, so that a check, which looks, finds the same.
            Ok(_) => state_now(path, Probe::Exists, ignore, cache),
            Err(e) if absent(&e) => Ok(State::Absent),
            Err(e) => Err(e),
        },
    }
}

/// The mode bits of an executed file that decide whether and how it runs:
/// all but the write bits (which differ with the umask between checkouts).
pub(crate) fn program_mode(m: &fs::Metadata) -> u32 {
    m.mode() & 0o7555
}

/// The content digest of the regular file `path` (stat `m`), through
/// `cache`.
fn content(path: &Path, m: &fs::Metadata, cache: &mut dyn StatCache) -> io::Result<Digest> {
    let stat = FileStat::of(m);
    if let Some(c) = cache.get(path)
        && c.stat == stat
        && !c.stat.is_racy(c.hashed_at_ns)
    {
        return Ok(c.digest);
    }
    let hashed_at_ns = inputs::now_ns();
    let (digest, stat) = inputs::hash_regular(path)?;
    cache.put(
        path,
        CachedStat {
            stat,
            digest,
            hashed_at_ns,
        },
    );
    Ok(digest)
}

/// What a look at a path (`lstat` of something that is not a symlink)
/// tells that stays the same across checkouts and machines. A directory's
/// size, times and link count change as entries come and go, so a look at
/// one is keyed by its mode, owner and group; anything else also by its
/// size, link count and modification time (a make-style `-nt` check,
/// `ls -ln`, `stat -c %h`).
fn looks(m: &fs::Metadata) -> Digest {
    let mut h = blake3::Hasher::new();
    for n in [m.mode(), m.uid(), m.gid()] {
        h.update(&n.to_le_bytes());
    }
    if !m.is_dir() {
        h.update(&m.size().to_le_bytes());
        h.update(&m.nlink().to_le_bytes());
        h.update(&m.mtime().to_le_bytes());
        h.update(&m.mtime_nsec().to_le_bytes());
    }
    h.finalize().into()
}

/// The digest of `path`'s extended attributes (not following a symlink):
/// every name, sorted, with its value. A file system without them has
/// none.
fn xattrs(path: &Path) -> io::Result<Digest> {
    use rustix::io::Errno;
    /// A list or value read whole: asked its size, then read, again if it
    /// grew in between.
    fn whole(
        query: impl Fn() -> rustix::io::Result<usize>,
        read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    ) -> rustix::io::Result<Vec<u8>> {
        loop {
            let mut buf = vec![0u8; query()?];
            match read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    let list = match whole(
        || rustix::fs::llistxattr_query(path),
        |b| rustix::fs::llistxattr(path, b),
    ) {
        Ok(list) => list,
        Err(Errno::NOTSUP) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut names: Vec<&[u8]> = list.split(|&b| b == 0).filter(|n| !n.is_empty()).collect();
    names.sort();
    let mut h = blake3::Hasher::new();
    h.update(&(names.len() as u64).to_le_bytes());
    for name in names {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let value = whole(
            || rustix::fs::lgetxattr_query(path, name_os),
            |b| rustix::fs::lgetxattr(path, name_os, b),
        );
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name);
        match value {
            Ok(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u64).to_le_bytes());
                h.update(&v);
            }
            // Removed since it was listed.
            Err(Errno::NODATA) => {
                h.update(&[0]);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(h.finalize().into())
}

pub use crate::base::stat::NoCache;

/// The probe of a recorded state, to check it again.
fn probe_of(state: &State) -> Probe {
    match state {
        State::Content(_) => Probe::Content,
        State::Program(..) => Probe::Program,
        State::Xattrs(_) => Probe::Xattrs,
        State::Listing(..) => Probe::Listing,
        State::Exists(..) => Probe::Exists,
        State::Absent => Probe::Absent,
    }
}

/// Whether what `path` holds now is what the command saw: `Err` with what
/// happened when not. `seen` is what the tracer noted when the command
/// first reached it; without it, the times of the path (`looked`, not
/// following a final symlink) and of what it leads to (`led_to`) must be
/// older than the run's start.
fn race(
    path: &Path,
    probe: Probe,
    seen: Option<&Seen>,
    started_ns: i64,
    looked: Option<&fs::Metadata>,
    led_to: Option<&fs::Metadata>,
) -> Result<(), Option<&'static str>> {
    let timed = match probe {
        Probe::Content | Probe::Program | Probe::Listing => true,
        Probe::Exists | Probe::Xattrs => looked.is_some_and(|m| !m.is_dir()),
        Probe::Absent => false,
    };
    if !timed {
        return Ok(());
    }
    if let Some(s) = seen {
        // Seen twice during the run with different stats, or not the same
        // file (or the same stat) now: modified after the command read it.
        let now = led_to.map(|m| Seen::of(m, s.at_ns));
        if s.changed || !now.is_some_and(|n| n.same_stat(s)) {
            return Err(Some(MODIFIED_WHILE_RUNNING));
        }
        match (probe, s.racy(), s.digest) {
            (_, false, _) => return Ok(()),
            // A look keys the stat itself, which has not moved. (Not
            // extended attributes: a change to them within the clock's
            // tick of the open leaves the stat as it was; the times decide.)
            (Probe::Exists, true, _) => return Ok(()),
            (Probe::Content | Probe::Program | Probe::Listing, true, Some(d)) => {
                let now = match probe {
                    Probe::Content | Probe::Program => content_digest(path),
                    _ => listing_digest(path),
                };
                return match now == Some(d) {
                    true => Ok(()),
                    false => Err(Some(MODIFIED_WHILE_RUNNING)),
                };
            }
            // Too recent, and nothing else to tell by: the times decide.
            _ => {}
        }
    }
    // Modified after the run started, what a path holds now may not be
    // what the command saw.
    let limit = started_ns - RACE_MARGIN_NS;
    let t = |s: i64, ns: i64| s.saturating_mul(1_000_000_000).saturating_add(ns);
    let recent = |m: &fs::Metadata| {
        t(m.mtime(), m.mtime_nsec()) >= limit || t(m.ctime(), m.ctime_nsec()) >= limit
    };
    if looked.is_some_and(recent) || led_to.is_some_and(recent) {
        return Err(None);
    }
    Ok(())
}

/// Record the traced inputs of a run that started at `started_ns`: each
/// path's state now, unless one was modified while the command ran (then
/// the run must not be recorded: the [`Mismatch`] says which and how).
/// Each input comes with what the tracer saw of it when the command
/// reached it (see `race`). `outputs` are the paths the run wrote,
/// created or removed: left out of the listings of their directories.
pub(crate) fn record(
    inputs: &[(PathBuf, Probe, Option<Seen>)],
    outputs: &[PathBuf],
    started_ns: i64,
    cache: &mut dyn StatCache,
) -> Result<Manifest, Box<Mismatch>> {
    let mut items: Vec<(PathBuf, State, Option<FileStat>)> = Vec::with_capacity(inputs.len());
    for (path, probe, seen) in inputs {
        let ignore: Vec<Vec<u8>> = match probe {
            Probe::Listing => {
                let mut names: Vec<Vec<u8>> = outputs
                    .iter()
                    .filter(|o| o.parent() == Some(path.as_path()))
                    .filter_map(|o| o.file_name().map(|n| n.as_bytes().to_vec()))
                    .collect();
                names.sort();
                names.dedup();
                names
            }
            _ => Vec::new(),
        };
        let changed = || {
            Box::new(Mismatch {
                path: path.clone(),
                was: None,
                now: None,
                how: None,
            })
        };
        // The path itself (a symlink swapped for another is a change) and
        // what it leads to; for a look, unless it is a directory.
        let looked = fs::symlink_metadata(path).ok();
        let led_to = fs::metadata(path).ok();
        if let Err(how) = race(
            path,
            *probe,
            seen.as_ref(),
            started_ns,
            looked.as_ref(),
            led_to.as_ref(),
        ) {
            let mut m = changed();
            m.how = how;
            return Err(m);
        }
        let state = state_now(path, *probe, &ignore, cache).map_err(|_| changed())?;
        // What the command saw must still be so: a path it found absent
        // that exists now (or the other way) changed during the run.
        let consistent = match (probe, &state) {
            (Probe::Absent, State::Absent) => true,
            (Probe::Absent, _) | (_, State::Absent) => false,
            // A directory opened for reading (not listed) is keyed by
            // its type, as a look at it would be.
            (Probe::Content, s) => {
                matches!(
                    s,
                    State::Content(_) | State::Exists(KIND_DIR | KIND_LINK, _)
                )
            }
            (Probe::Program, s) => matches!(s, State::Program(..)),
            (Probe::Listing, s) => matches!(s, State::Listing(..)),
            (Probe::Exists | Probe::Xattrs, _) => true,
        };
        if !consistent {
            return Err(changed());
        }
        // Hashed, the file must still be the one whose times were checked.
        if matches!(state, State::Content(_) | State::Program(..))
            && fs::metadata(path).ok().map(|m| FileStat::of(&m))
                != led_to.as_ref().map(FileStat::of)
        {
            return Err(changed());
        }
        let stat = match state {
            State::Content(_) | State::Program(..) => fs::metadata(path)
                .ok()
                .map(|m| FileStat::of(&m))
                .filter(|st| !st.is_racy(inputs::now_ns())),
            _ => None,
        };
        items.push((path.clone(), state, stat));
    }
    // A path once per kind of state (its extended attributes are a second
    // item beside its content or look).
    items.sort_by(|a, b| (&a.0, a.1.tag()).cmp(&(&b.0, b.1.tag())));
    items.dedup_by(|a, b| a.0 == b.0 && a.1.tag() == b.1.tag());
    let stats = items.iter().map(|i| i.2).collect();
    Ok(Manifest {
        items: items.into_iter().map(|(p, s, _)| (p, s)).collect(),
        stats,
    })
}

/// Check `m` against the files now: the first path that differs, if any.
pub(crate) fn check(m: &Manifest, cache: &mut dyn StatCache) -> Option<Mismatch> {
    for (i, (path, was)) in m.items.iter().enumerate() {
        // The same file, unmodified since it was recorded: its content is
        // what was recorded.
        if let Some(Some(recorded)) = m.stats.get(i)
            && fs::metadata(path).is_ok_and(|now| FileStat::of(&now) == *recorded)
        {
            continue;
        }
        let ignore = match was {
            State::Listing(_, ignore) => ignore.as_slice(),
            _ => &[],
        };
        let now = state_now(path, probe_of(was), ignore, cache).ok();
        if now.as_ref() != Some(was) {
            return Some(Mismatch {
                path: path.clone(),
                was: Some(was.clone()),
                now,
                how: None,
            });
        }
    }
    None
}

/// The key of the entry recorded with manifest `manifest` under `base`.
pub(crate) fn entry_key(base: &Digest, manifest: &Digest) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("memorun 2026 traced entry key");
    h.update(&base.0);
    h.update(&manifest.0);
    h.finalize().into()
}

impl Manifest {
    /// The encoding stored: versioned, length-prefixed, with the stats;
    /// paths under `base` (`--base-dir`, or the working directory when it
    /// is not in the key) relative to it, so that the same base key in
    /// another checkout checks its own files (see `key::base_dir`).
    pub(crate) fn encode(&self, base: Option<&Path>) -> Vec<u8> {
        self.encoding(true, base)
    }

    /// The encoding another machine can use: the same, without the stats
    /// (they are this machine's own).
    pub fn portable(&self, base: Option<&Path>) -> Vec<u8> {
        self.encoding(false, base)
    }

    fn encoding(&self, with_stats: bool, base: Option<&Path>) -> Vec<u8> {
        // Sorted by the paths as encoded: the same order, and so the same
        // digest, in every checkout.
        let mut order: Vec<(std::borrow::Cow<'_, [u8]>, usize)> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, (p, _))| {
                (
                    crate::key::base_dir::key_form(base, p.as_os_str().as_bytes()),
                    i,
                )
            })
            .collect();
        order.sort();
        let mut v = vec![FORMAT];
        v.extend_from_slice(&(self.items.len() as u32).to_le_bytes());
        for (p, i) in &order {
            let i = *i;
            let state = &self.items[i].1;
            let p = p.as_ref();
            v.extend_from_slice(&(p.len() as u32).to_le_bytes());
            v.extend_from_slice(p);
            v.push(state.tag());
            match state {
                State::Content(d) | State::Program(d, _) => {
                    v.extend_from_slice(&d.0);
                    if let State::Program(_, mode) = state {
                        v.extend_from_slice(&mode.to_le_bytes());
                    }
                    match self.stats.get(i).copied().flatten().filter(|_| with_stats) {
                        Some(st) => {
                            v.push(1);
                            for n in [st.dev, st.ino, st.size] {
                                v.extend_from_slice(&n.to_le_bytes());
                            }
                            v.extend_from_slice(&st.mtime_ns.to_le_bytes());
                            v.extend_from_slice(&st.ctime_ns.to_le_bytes());
                        }
                        None => v.push(0),
                    }
                }
                State::Listing(d, ignore) => {
                    v.extend_from_slice(&d.0);
                    v.extend_from_slice(&(ignore.len() as u32).to_le_bytes());
                    for n in ignore {
                        v.extend_from_slice(&(n.len() as u32).to_le_bytes());
                        v.extend_from_slice(n);
                    }
                }
                State::Exists(k, link) => {
                    v.push(*k);
                    if let Some(d) = link {
                        v.extend_from_slice(&d.0);
                    }
                }
                State::Xattrs(d) => v.extend_from_slice(&d.0),
                State::Absent => {}
            }
        }
        v
    }

    /// Its digest, over its portable form: names it under a base key, the
    /// same in every checkout and on every machine.
    pub(crate) fn digest(&self, base: Option<&Path>) -> Digest {
        Digest::from(blake3::hash(&self.portable(base)))
    }

    /// Decode [`Manifest::encode`] or [`Manifest::portable`] here: paths
    /// encoded relative to a base are taken under `base`. `None` when
    /// malformed, or when it has such paths and there is no `base` here.
    pub(crate) fn decode(b: &[u8], base: Option<&Path>) -> Option<Manifest> {
        let m = Manifest::decode_raw(b)?;
        let mut items: Vec<((PathBuf, State), Option<FileStat>)> =
            m.items.into_iter().zip(m.stats).collect();
        for ((path, _), _) in &mut items {
            let bytes = path.as_os_str().as_bytes();
            if bytes.first() == Some(&crate::key::base_dir::MARK) {
                let rel = &bytes[1..];
                let base = base?;
                *path = if rel == b"." {
                    base.to_path_buf()
                } else {
                    base.join(std::ffi::OsStr::from_bytes(rel))
                };
            } else if !path.is_absolute() {
                return None;
            }
        }
        items.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        let (items, stats) = items.into_iter().unzip();
        Some(Manifest { items, stats })
    }

    fn decode_raw(mut b: &[u8]) -> Option<Manifest> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (b.get(..n)?, b.get(n..)?);
            *b = rest;
            Some(head)
        }
        fn u32_at(b: &mut &[u8]) -> Option<usize> {
            Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
        }
        if take(&mut b, 1)? != [FORMAT] {
            return None;
        }
        let n = u32_at(&mut b)?;
        let mut items = Vec::with_capacity(n.min(1 << 16));
        let mut stats = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let len = u32_at(&mut b)?;
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(take(&mut b, len)?));
            let mut stat = None;
            let tag = take(&mut b, 1)?[0];
            let state = match tag {
                0 | 5 => {
                    let d = Digest::from_slice(take(&mut b, 32)?)?;
                    let mode = match tag {
                        5 => Some(u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?)),
                        _ => None,
                    };
                    stat = match take(&mut b, 1)?[0] {
                        0 => None,
                        1 => {
                            let mut n = [0u64; 5];
                            for x in &mut n {
                                *x = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
                            }
                            Some(FileStat {
                                dev: n[0],
                                ino: n[1],
                                size: n[2],
                                mtime_ns: n[3] as i64,
                                ctime_ns: n[4] as i64,
                            })
                        }
                        _ => return None,
                    };
                    match mode {
                        Some(mode) => State::Program(d, mode),
                        None => State::Content(d),
                    }
                }
                1 => {
                    let d = Digest::from_slice(take(&mut b, 32)?)?;
                    let n = u32_at(&mut b)?;
                    let mut ignore = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        let len = u32_at(&mut b)?;
                        ignore.push(take(&mut b, len)?.to_vec());
                    }
                    State::Listing(d, ignore)
                }
                2 => State::Exists(take(&mut b, 1)?[0], None),
                3 => State::Exists(
                    take(&mut b, 1)?[0],
                    Some(Digest::from_slice(take(&mut b, 32)?)?),
                ),
                4 => State::Absent,
                6 => State::Xattrs(Digest::from_slice(take(&mut b, 32)?)?),
                _ => return None,
            };
            items.push((path, state));
            stats.push(stat);
        }
        b.is_empty().then_some(Manifest { items, stats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemCache(HashMap<PathBuf, CachedStat>);

    impl StatCache for MemCache {
        fn get(&mut self, abs: &Path) -> Option<CachedStat> {
            self.0.get(abs).copied()
        }
        fn put(&mut self, abs: &Path, entry: CachedStat) {
            self.0.insert(abs.to_path_buf(), entry);
        }
    }

    fn old(p: &Path) {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let f = fs::File::options().write(true).open(p).unwrap();
        f.set_modified(t).unwrap();
    }

    #[test]
    fn a_manifest_matches_until_a_traced_input_changes() {
        let t = tempfile::tempdir().unwrap();
        let (h, dir, gone, link) = (
            t.path().join("config.h"),
            t.path().join("inc"),
            t.path().join("shadow.h"),
            t.path().join("link"),
        );
        fs::write(&h, "#define X 1\n").unwrap();
        old(&h);
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("config.h", &link).unwrap();
        let inputs = vec![
            (h.clone(), Probe::Content, None),
            (dir.clone(), Probe::Listing, None),
            (gone.clone(), Probe::Absent, None),
            (link.clone(), Probe::Exists, None),
        ];
        let mut cache = MemCache::default();
        // Written a moment ago (its ctime says so, whatever its mtime):
        // changed while a run that started a second ago ran.
        let started = inputs::now_ns() - 1_000_000_000;
        let e = record(&inputs, &[], started, &mut cache).unwrap_err();
        assert_eq!(e.path, h);
        assert_eq!(
            e.message(t.path()),
            "traced input config.h: changed while the command ran"
        );
        // The run wrote inc/out.h: its name is not part of the listing.
        let out = dir.join("out.h");
        fs::write(&out, "").unwrap();
        let later = inputs::now_ns() + RACE_MARGIN_NS + 1;
        let m = record(&inputs, std::slice::from_ref(&out), later, &mut cache).unwrap();
        fs::remove_file(&out).unwrap();
        assert_eq!(m.items.len(), 4);
        assert_eq!(Manifest::decode(&m.encode(None), None), Some(m.clone()));
        assert_eq!(check(&m, &mut cache), None);
        let cwd = t.path();
        // Each kind of change is a mismatch, named.
        fs::write(&h, "#define X 2\n").unwrap();
        assert_eq!(
            check(&m, &mut cache).unwrap().message(cwd),
            "traced input config.h: changed"
        );
        fs::write(&h, "#define X 1\n").unwrap();
        assert_eq!(check(&m, &mut cache), None);
        fs::write(&gone, "").unwrap();
        assert_eq!(
            check(&m, &mut cache).unwrap().message(cwd),
            "traced input shadow.h: created"
        );
        fs::remove_file(&gone).unwrap();
        fs::write(dir.join("new.h"), "").unwrap();
        assert_eq!(
            check(&m, &mut cache).unwrap().message(cwd),
            "traced input inc: changed"
        );
        fs::remove_file(dir.join("new.h")).unwrap();
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("other.h", &link).unwrap();
        assert_eq!(
            check(&m, &mut cache).unwrap().message(cwd),
            "traced input link: changed"
        );
    }

    /// A file written just before the command opened it is recorded when
    /// it is still what the tracer saw at the open; one modified after the
    /// open is refused, and the message says so.
    #[test]
    fn an_input_written_just_before_the_open_is_recorded_and_one_modified_after_is_not() {
        let t = tempfile::tempdir().unwrap();
        let h = t.path().join("config.h");
        fs::write(&h, "#define X 1\n").unwrap();
        let started = inputs::now_ns() - 1_000;
        let at_open = || {
            let mut s = Seen::of(&fs::metadata(&h).unwrap(), inputs::now_ns());
            assert!(s.racy(), "written a moment ago");
            s.digest = content_digest(&h);
            s
        };
        let mut cache = MemCache::default();
        let seen = at_open();
        let m = record(
            &[(h.clone(), Probe::Content, Some(seen))],
            &[],
            started,
            &mut cache,
        );
        assert_eq!(m.unwrap().items.len(), 1);
        // Without the open-time note, the times alone cannot tell.
        let e = record(
            &[(h.clone(), Probe::Content, None)],
            &[],
            started,
            &mut cache,
        );
        assert_eq!(
            e.unwrap_err().message(t.path()),
            "traced input config.h: changed while the command ran"
        );
        // Modified after the open: another size.
        fs::write(&h, "#define X 22\n").unwrap();
        let e = record(
            &[(h.clone(), Probe::Content, Some(seen))],
            &[],
            started,
            &mut cache,
        );
        assert_eq!(
            e.unwrap_err().message(t.path()),
            "traced input config.h: modified while the command ran (after the command read it)"
        );
        // The same stat, other content (a write within the same timestamp
        // tick): the open-time digest tells.
        let mut same_stat = at_open();
        same_stat.digest = Some([0; 32]);
        let e = record(
            &[(h.clone(), Probe::Content, Some(same_stat))],
            &[],
            started,
            &mut cache,
        );
        assert!(e.unwrap_err().how.is_some());
        // Seen twice with different stats during the run.
        let mut twice = at_open();
        twice.changed = true;
        assert!(
            record(
                &[(h.clone(), Probe::Content, Some(twice))],
                &[],
                started,
                &mut cache
            )
            .is_err()
        );
    }

    /// Two checkouts at different paths under --base-dir give a manifest
    /// the same portable form and digest; one machine's decodes to its own
    /// paths; a rebased path without a base here does not decode.
    #[test]
    fn a_manifest_travels_between_checkouts() {
        let m = |root: &str| Manifest {
            items: vec![
                (
                    PathBuf::from(format!("{root}/lib.sh")),
                    State::Content(Digest([1; 32])),
                ),
                (
                    PathBuf::from("/usr/bin/sh"),
                    State::Content(Digest([2; 32])),
                ),
                (PathBuf::from(root), State::Exists(KIND_DIR, None)),
            ],
            stats: vec![None, None, None],
        };
        let (a, b) = (m("/aaa/a"), m("/zzz/b/src"));
        let (pa, pb) = (
            a.portable(Some(Path::new("/aaa/a"))),
            b.portable(Some(Path::new("/zzz/b/src"))),
        );
        assert_eq!(pa, pb);
        assert_eq!(
            a.digest(Some(Path::new("/aaa/a"))),
            Digest::from(blake3::hash(&pb))
        );
        let mut on_b = Manifest::decode(&pa, Some(Path::new("/zzz/b/src"))).unwrap();
        on_b.items.sort_by(|x, y| x.0.cmp(&y.0));
        let mut want = b.items.clone();
        want.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(on_b.items, want);
        assert_eq!(Manifest::decode(&pa, None), None);
        // Without --base-dir, paths stay absolute and must be.
        assert!(Manifest::decode(&a.portable(None), None).is_some());
    }

    /// A look keys owner, group, link count, size, mtime and mode (not the
    /// inode or ctime); an executed file its mode; extended attributes
    /// their names and values, as a second item beside the look.
    #[test]
    fn a_look_a_program_and_extended_attributes_are_keyed() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (f, prog) = (t.path().join("f"), t.path().join("s.sh"));
        fs::write(&f, "12345").unwrap();
        fs::write(&prog, "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
        old(&f);
        old(&prog);
        let inputs = vec![
            (f.clone(), Probe::Exists, None),
            (f.clone(), Probe::Xattrs, None),
            (prog.clone(), Probe::Program, None),
        ];
        let mut cache = MemCache::default();
        let later = inputs::now_ns() + RACE_MARGIN_NS + 1;
        let m = record(&inputs, &[], later, &mut cache).unwrap();
        assert_eq!(m.items.len(), 3);
        assert!(matches!(m.items[2].1, State::Program(_, 0o555)));
        assert_eq!(Manifest::decode(&m.encode(None), None), Some(m.clone()));
        assert_eq!(check(&m, &mut cache), None);
        let cwd = t.path();
        let changed = |m: &Manifest, cache: &mut MemCache| check(m, cache).map(|x| x.message(cwd));
        // The owner and group (chown), the link count (ln).
        std::os::unix::fs::lchown(&f, Some(4242), None).unwrap();
        assert_eq!(changed(&m, &mut cache).unwrap(), "traced input f: changed");
        std::os::unix::fs::lchown(&f, Some(0), Some(4242)).unwrap();
        assert!(changed(&m, &mut cache).is_some());
        std::os::unix::fs::lchown(&f, Some(0), Some(0)).unwrap();
        assert_eq!(changed(&m, &mut cache), None);
        fs::hard_link(&f, t.path().join("f2")).unwrap();
        assert!(changed(&m, &mut cache).is_some());
        fs::remove_file(t.path().join("f2")).unwrap();
        assert_eq!(changed(&m, &mut cache), None);
        // A copy moved over it (another inode, ctime) with the same look
        // is the same.
        let copy = t.path().join("copy");
        fs::copy(&f, &copy).unwrap();
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        fs::rename(&copy, &f).unwrap();
        assert_eq!(changed(&m, &mut cache), None);
        // An extended attribute added, then changed.
        rustix::fs::lsetxattr(&f, "user.memorun", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        assert_eq!(changed(&m, &mut cache).unwrap(), "traced input f: changed");
        let with_attr = record(
            &inputs,
            &[],
            inputs::now_ns() + RACE_MARGIN_NS + 1,
            &mut cache,
        )
        .unwrap();
        assert_eq!(changed(&with_attr, &mut cache), None);
        rustix::fs::lsetxattr(&f, "user.memorun", b"2", rustix::fs::XattrFlags::empty()).unwrap();
        assert!(changed(&with_attr, &mut cache).is_some());
        rustix::fs::lremovexattr(&f, "user.memorun").unwrap();
        assert_eq!(changed(&m, &mut cache), None);
        // The program's execute bits; its write bits do not matter.
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(changed(&m, &mut cache), None);
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            changed(&m, &mut cache).unwrap(),
            "traced input s.sh: changed"
        );
    }

    #[test]
    fn entry_keys_differ_by_base_and_manifest() {
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        assert_ne!(entry_key(&a, &b), entry_key(&b, &a));
        assert_ne!(entry_key(&a, &b), entry_key(&a, &a));
        // Empty, the format before (1), one from the future, truncated.
        for bad in [
            &[][..],
            &[1, 0, 0, 0, 0],
            &[3, 0, 0, 0, 0],
            &[2, 1, 0, 0, 0],
        ] {
            assert_eq!(Manifest::decode(bad, None), None);
        }
    }
}
