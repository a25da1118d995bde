//! What a traced run did to each path, and the [`TraceLog`] it adds up to.
//!
//! The tracer reports events in the order the kernel completed them;
//! [`Events`] folds them into one state per path. The order matters:
//! a file read *before* the run wrote it held content from before the run
//! (an input), a file read *after* the run created or truncated it did not.
//!
//! Invariants:
//! - An input fact (read, executed, listed, probed) is recorded only while
//!   the path still holds what it held before the run: never for a path the
//!   run created, truncated, renamed over or removed first.
//! - A path the run created and later removed (a temp file) keeps only its
//!   input facts, and is dropped when it has none.
//! - `/proc`, `/sys`, the devices and other special files under `/dev`,
//!   and the caller's exclusions are never recorded; a regular file under
//!   `/dev` (`/dev/shm`) is a file like any other. A path with a `..`
//!   component is never excluded (it may lead anywhere). The tracer
//!   resolves magic links (`/proc/self/cwd`, `/proc/self/fd/N`,
//!   `/dev/fd/N`) before a path gets here.
//! - Each input carries what it was when the command first reached it
//!   ([`Seen`]): its stat then, and when that stat was too recent to vouch
//!   for the content (git's racily-clean rule), the content's digest then.
//! - At most [`MAX_PATHS`] paths are kept; past that the run is reported
//!   not traceable rather than partly traced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;

/// The most distinct paths one traced run may touch (bounded memory).
pub const MAX_PATHS: usize = 1 << 20;

/// What a run did to one path: a set of flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u16);

impl Access {
    /// Opened for reading (or read-write) while it held its content from
    /// before the run.
    pub const READ: Access = Access(1);
    /// Executed (`execve` succeeded): the program, a script, or the
    /// interpreter or dynamic loader the kernel loaded for it.
    pub const EXECUTED: Access = Access(1 << 1);
    /// A directory whose entries were read (`getdents`).
    pub const LISTED: Access = Access(1 << 2);
    /// Looked up and not found (`ENOENT`, `ENOTDIR`): creating it later
    /// could change what the command does.
    pub const PROBED_ABSENT: Access = Access(1 << 3);
    /// Looked up and found, without reading its content (`stat`, `access`,
    /// `readlink`, a directory opened, `chdir`): the caller decides how to
    /// key its metadata.
    pub const PROBED_PRESENT: Access = Access(1 << 4);
    /// Opened for writing, or truncated.
    pub const WRITTEN: Access = Access(1 << 5);
    /// Created by the run (it did not exist when the run created it).
    pub const CREATED: Access = Access(1 << 6);
    /// Removed by the run (and not created again).
    pub const REMOVED: Access = Access(1 << 7);
    /// Renamed by the run: moved away (with [`Access::REMOVED`]) or moved
    /// over (with [`Access::WRITTEN`]).
    pub const RENAMED: Access = Access(1 << 8);
    /// A listed directory whose entries the run itself changed (created,
    /// removed or renamed a name in it): its listing after the run is not
    /// the one the command read.
    pub const LISTING_CHANGED: Access = Access(1 << 9);
    /// Its extended attributes were read or listed (`getxattr`,
    /// `listxattr` and their `l`, `f` and `at` forms).
    pub const XATTRS: Access = Access(1 << 10);

    const CONTENT: Access = Access(0b111);
    const PROBES: Access = Access(0b100_0001_1000);
    const OUTPUT: Access = Access(0b1_1110_0000);
    /// At the end of the run the path holds what the run put there.
    const PRODUCED: Access = Access(0b110_0000);
    const NAMES: [(Access, &'static str); 11] = [
        (Access::READ, "read"),
        (Access::EXECUTED, "executed"),
        (Access::LISTED, "listed"),
        (Access::PROBED_ABSENT, "probed-absent"),
        (Access::PROBED_PRESENT, "probed-present"),
        (Access::WRITTEN, "written"),
        (Access::CREATED, "created"),
        (Access::REMOVED, "removed"),
        (Access::RENAMED, "renamed"),
        (Access::LISTING_CHANGED, "listing-changed"),
        (Access::XATTRS, "xattrs"),
    ];

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    /// Something the command's result may depend on: read, executed or
    /// listed before the run changed it; or probed (absent or present)
    /// when the run did not then write or create it. A probe of the run's
    /// own output (`cc -o foo.o` checks `foo.o` before writing it) is not
    /// an input, as a created file named in argv is not: otherwise the
    /// output left by one run would make the next one miss.
    pub fn is_input(self) -> bool {
        self.intersects(Access::CONTENT | Access::XATTRS)
            || (self.intersects(Access::PROBES) && !self.intersects(Access::PRODUCED))
    }

    /// Something the run changed: written, created, removed or renamed.
    pub fn is_output(self) -> bool {
        self.intersects(Access::OUTPUT)
    }

    /// An input the run itself changed afterwards (read then written,
    /// renamed or removed; a listing it changed): what was keyed is no
    /// longer what the command saw, so such a run must not be recorded.
    pub fn is_changed_input(self) -> bool {
        (self.intersects(Access::CONTENT) && self.is_output())
            || self.contains(Access::LISTING_CHANGED)
    }

    fn insert(&mut self, other: Access) {
        self.0 |= other.0;
    }

    fn remove(&mut self, other: Access) {
        self.0 &= !other.0;
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;

    fn bitor(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Access::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// Why a traced run cannot be trusted to show every input: the caller must
/// not record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untraceable {
    /// A set-user-ID or set-group-ID program (or one with file
    /// capabilities) ran without its privileges, as it does under ptrace:
    /// the run did not behave as it would untraced.
    Privileged(PathBuf),
    /// A process made system calls through another ABI (a 32-bit program,
    /// x32): their numbers are not in the filter.
    ForeignAbi,
    /// A call that reaches files other than by path (`chroot`,
    /// `open_by_handle_at`, `io_uring_setup`, `uselib`).
    Opaque(&'static str),
    /// A path argument could not be read from the tracee, and the call
    /// succeeded.
    UnreadablePath,
    /// A directory that existed before the run was renamed: what was read
    /// under its new name came from before the run, unseen.
    DirectoryRenamed(PathBuf),
    /// The kernel did not answer `PTRACE_GET_SYSCALL_INFO` (Linux < 5.3).
    NoSyscallInfo,
    /// More than [`MAX_PATHS`] distinct paths.
    TooManyPaths,
    /// A system call number the tracer's tables do not know (a kernel
    /// newer than memorun).
    UnknownCall(u64),
    /// The command installed a seccomp filter of its own, whose answers
    /// could hide its system calls from the tracer.
    SeccompFilter,
    /// A process was cloned with `CLONE_UNTRACED`: it ran unseen.
    UntracedClone,
    /// A stop the tracer could not attribute (an unknown event or filter
    /// answer).
    UnknownStop(u32),
    /// Traced processes vanished without the tracer seeing them exit.
    LostTracee(usize),
    /// The command read its terminal (an answer typed at a prompt, which
    /// a replay would not ask for).
    ReadTerminal,
}

impl fmt::Display for Untraceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untraceable::Privileged(p) => write!(
                f,
                "{} is set-user-ID, set-group-ID or has capabilities, and runs without them when traced",
                p.display()
            ),
            Untraceable::ForeignAbi => {
                f.write_str("a process used another system-call ABI (32-bit or x32)")
            }
            Untraceable::Opaque(call) => {
                write!(
                    f,
                    "the command used {call}, whose file accesses cannot be traced"
                )
            }
            Untraceable::UnreadablePath => {
                f.write_str("a path argument could not be read from the command's memory")
            }
            Untraceable::DirectoryRenamed(p) => {
                write!(f, "the command renamed the directory {}", p.display())
            }
            Untraceable::NoSyscallInfo => {
                f.write_str("the kernel lacks PTRACE_GET_SYSCALL_INFO (Linux 5.3)")
            }
            Untraceable::TooManyPaths => {
                write!(f, "the command touched more than {MAX_PATHS} paths")
            }
            Untraceable::UnknownCall(nr) => write!(
                f,
                "the command made system call {nr}, which memorun does not know (a newer kernel?)"
            ),
            Untraceable::SeccompFilter => f.write_str(
                "the command installed a seccomp filter, which could hide its system calls",
            ),
            Untraceable::UntracedClone => {
                f.write_str("the command started a process with CLONE_UNTRACED, which ran unseen")
            }
            Untraceable::UnknownStop(what) => {
                write!(
                    f,
                    "the tracer met a stop it does not understand ({what:#x})"
                )
            }
            Untraceable::ReadTerminal => {
                f.write_str("the command read from the terminal (input typed at a prompt)")
            }
            Untraceable::LostTracee(n) => {
                write!(
                    f,
                    "the tracer lost {n} traced process(es) without seeing them exit"
                )
            }
        }
    }
}

/// Paths never recorded: the caller's (the cache directory,
/// `--trace-exclude` globs), on top of `/proc`, `/sys` and `/dev`.
#[derive(Default, Clone)]
pub struct Exclusions {
    /// Directories left out with everything under them.
    pub dirs: Vec<PathBuf>,
    /// Globs matched against the whole absolute path.
    pub globs: Option<GlobSet>,
}

impl fmt::Debug for Exclusions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exclusions")
            .field("dirs", &self.dirs)
            .field("globs", &self.globs.as_ref().map(GlobSet::len))
            .finish()
    }
}

/// Left out always: the kernel's views, not files.
const SYSTEM_DIRS: [&str; 2] = ["/proc", "/sys"];

/// Under `/dev`, only devices, terminals and the like are left out: a
/// regular file there (`/dev/shm` is a tmpfs) is a file, and everything
/// under `/dev/shm` is kept.
fn virtual_dev(path: &Path) -> bool {
    if !path.starts_with("/dev") || path.starts_with("/dev/shm") {
        return false;
    }
    !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn has_dotdot(path: &Path) -> bool {
    path.as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .any(|c| c == b"..")
}

impl Exclusions {
    /// Whether `path` (absolute, normalized) is left out.
    pub fn excludes(&self, path: &Path) -> bool {
        if has_dotdot(path) {
            return false;
        }
        SYSTEM_DIRS.iter().any(|d| path.starts_with(d))
            || virtual_dev(path)
            || self.dirs.iter().any(|d| path.starts_with(d))
            || self.globs.as_ref().is_some_and(|g| g.is_match(path))
    }
}

/// One path and what the run did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedPath {
    /// Absolute, with `.` components and repeated slashes removed; `..`
    /// is kept as the command wrote it (resolving it without the file
    /// system would be wrong across symlinks).
    pub path: PathBuf,
    /// What the run did to it.
    pub access: Access,
    /// What it was when the command first reached it, for an input.
    pub seen: Option<Seen>,
}

/// The margin within which a file's modification or change time, compared
/// with the moment it was looked at, cannot vouch for its content: file
/// timestamps come from a coarse clock, so a write just after the look can
/// leave them as they were.
pub const RACY_NS: i64 = 20_000_000;

/// An input as the command first reached it (the tracee stopped at the
/// call): its stat, and its content's digest when the stat alone could
/// not vouch for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Device, inode, size, mode: the file it was.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, ns since the epoch.
    pub ctime_ns: i64,
    /// When it was looked at, ns since the epoch.
    pub at_ns: i64,
    /// When [`Seen::racy`]: BLAKE3 of the content then (a file read) or of
    /// its sorted names (a directory listed, see [`listing_digest`]).
    pub digest: Option<[u8; 32]>,
    /// It was seen twice during the run with different stats: it changed
    /// while the command ran.
    pub changed: bool,
}

impl Seen {
    /// `meta` taken at `at_ns`.
    pub fn of(meta: &std::fs::Metadata, at_ns: i64) -> Seen {
        use std::os::unix::fs::MetadataExt;
        let t = |s: i64, ns: i64| s.saturating_mul(1_000_000_000).saturating_add(ns);
        Seen {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            mtime_ns: t(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: t(meta.ctime(), meta.ctime_nsec()),
            at_ns,
            digest: None,
            changed: false,
        }
    }

    /// The same file, unmodified, as far as a stat can tell.
    pub fn same_stat(&self, other: &Seen) -> bool {
        (
            self.dev,
            self.ino,
            self.size,
            self.mode,
            self.mtime_ns,
            self.ctime_ns,
        ) == (
            other.dev,
            other.ino,
            other.size,
            other.mode,
            other.mtime_ns,
            other.ctime_ns,
        )
    }

    /// Modified so close to the look that a write just after it could have
    /// left the stat unchanged.
    pub fn racy(&self) -> bool {
        self.mtime_ns >= self.at_ns - RACY_NS || self.ctime_ns >= self.at_ns - RACY_NS
    }
}

/// BLAKE3 of the content of the regular file `path`.
pub fn content_digest(path: &Path) -> Option<[u8; 32]> {
    let f = std::fs::File::open(path).ok()?;
    let mut h = blake3::Hasher::new();
    h.update_reader(f).ok()?;
    Some(*h.finalize().as_bytes())
}

/// BLAKE3 of the names in the directory `path`, sorted.
pub fn listing_digest(path: &Path) -> Option<[u8; 32]> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(path)
        .ok()?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<std::io::Result<_>>()
        .ok()?;
    names.sort();
    let mut h = blake3::Hasher::new();
    for n in &names {
        h.update(&(n.len() as u64).to_le_bytes());
        h.update(n);
    }
    Some(*h.finalize().as_bytes())
}

/// Now, ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How many paths of each kind, and how much work the trace was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Paths read.
    pub read: usize,
    /// Paths executed.
    pub executed: usize,
    /// Directories listed.
    pub listed: usize,
    /// Paths probed and absent.
    pub probed_absent: usize,
    /// Paths probed and present.
    pub probed_present: usize,
    /// Paths written, created, removed or renamed.
    pub outputs: usize,
    /// Processes and threads traced.
    pub processes: usize,
    /// System calls that stopped the tracee.
    pub stops: u64,
}

/// The file-system accesses of a traced run: every path once, sorted.
#[derive(Debug, Clone, Default)]
pub struct TraceLog {
    /// Every recorded path, sorted by path.
    pub paths: Vec<TracedPath>,
    /// How many of each kind.
    pub counts: Counts,
    /// Set when the run cannot be trusted to show every input; the first
    /// reason found.
    pub untraceable: Option<Untraceable>,
    /// Processes still running when the traced command was done, and
    /// killed (a process whose filter outlives its tracer fails every
    /// file-system call).
    pub outlived: usize,
}

impl TraceLog {
    /// The inputs: paths read, executed, listed or probed before the run
    /// changed them.
    pub fn inputs(&self) -> impl Iterator<Item = &TracedPath> {
        self.paths.iter().filter(|p| p.access.is_input())
    }

    /// The outputs: paths written, created, removed or renamed.
    pub fn outputs(&self) -> impl Iterator<Item = &TracedPath> {
        self.paths.iter().filter(|p| p.access.is_output())
    }

    /// Inputs the run changed itself (see [`Access::is_changed_input`]).
    pub fn changed_inputs(&self) -> impl Iterator<Item = &TracedPath> {
        self.paths.iter().filter(|p| p.access.is_changed_input())
    }

    /// What `path` was, if recorded.
    pub fn get(&self, path: &Path) -> Option<Access> {
        self.paths
            .binary_search_by(|p| p.path.as_path().cmp(path))
            .ok()
            .map(|i| self.paths[i].access)
    }
}

#[derive(Default, Clone, Copy)]
struct State {
    access: Access,
    /// What is at the path now came from the run (created, truncated,
    /// renamed or linked over): reading it is not reading an input.
    replaced: bool,
    /// The run removed what was there.
    gone: bool,
}

impl State {
    /// The run touched this path already: what it finds now says nothing
    /// about before the run.
    fn touched(self) -> bool {
        self.replaced || self.gone || self.access.is_output()
    }
}

/// The events of a traced run, folded path by path.
pub struct Events {
    exclusions: Exclusions,
    paths: HashMap<PathBuf, State>,
    seen: HashMap<PathBuf, Seen>,
    pub(super) untraceable: Option<Untraceable>,
    pub(super) processes: usize,
    pub(super) stops: u64,
}

impl Events {
    /// No events yet.
    pub fn new(exclusions: Exclusions) -> Events {
        Events {
            exclusions,
            paths: HashMap::new(),
            seen: HashMap::new(),
            untraceable: None,
            processes: 0,
            stops: 0,
        }
    }

    /// Note the first reason the run is not traceable.
    pub fn untraceable(&mut self, why: Untraceable) {
        self.untraceable.get_or_insert(why);
    }

    /// Whether `path` is left out of the log.
    pub fn excludes(&self, path: &Path) -> bool {
        self.exclusions.excludes(path)
    }

    fn state(&mut self, path: PathBuf) -> Option<&mut State> {
        if self.exclusions.excludes(&path) {
            return None;
        }
        if self.paths.len() >= MAX_PATHS && !self.paths.contains_key(&path) {
            self.untraceable(Untraceable::TooManyPaths);
            return None;
        }
        Some(self.paths.entry(path).or_default())
    }

    /// Whether the run has changed `path` already.
    pub fn touched(&self, path: &Path) -> bool {
        self.paths.get(path).is_some_and(|s| s.touched())
    }

    /// An input fact, kept only while the path holds its pre-run state.
    fn input(&mut self, path: PathBuf, flag: Access) {
        if let Some(s) = self.state(path)
            && !s.replaced
            && !s.gone
        {
            s.access.insert(flag);
        }
    }

    /// Whether `path` was read already and still holds its pre-run content
    /// (reading it again adds nothing).
    pub fn already_read(&self, path: &Path) -> bool {
        self.paths
            .get(path)
            .is_some_and(|s| s.access.contains(Access::READ) && !s.touched())
    }

    /// Opened for reading.
    pub fn read(&mut self, path: PathBuf) {
        self.input(path, Access::READ);
    }

    /// Executed.
    pub fn executed(&mut self, path: PathBuf) {
        self.input(path, Access::EXECUTED);
    }

    /// Listed.
    pub fn listed(&mut self, path: PathBuf) {
        self.input(path, Access::LISTED);
    }

    /// Found, metadata only.
    pub fn present(&mut self, path: PathBuf) {
        self.input(path, Access::PROBED_PRESENT);
    }

    /// Its extended attributes read or listed.
    pub fn xattrs(&mut self, path: PathBuf) {
        self.input(path, Access::XATTRS);
    }

    /// What `path` was when the command reached it; kept only while it
    /// holds its pre-run state. The first look is kept; a later one with
    /// another stat means it changed during the run; a later digest (the
    /// file read after a look) is added when the stat is the same.
    pub fn see(&mut self, path: &Path, seen: Seen) {
        if self.touched(path) || self.exclusions.excludes(path) {
            return;
        }
        match self.seen.get_mut(path) {
            None => {
                if self.seen.len() < MAX_PATHS {
                    self.seen.insert(path.to_path_buf(), seen);
                }
            }
            Some(first) if !first.same_stat(&seen) => first.changed = true,
            // The same stat, no longer too recent to vouch for the content
            // (a look before the clock moved on, then the read): from this
            // look on, a write would change the stat. The command read
            // nothing before it that the stat does not key.
            Some(first) if first.racy() && first.digest.is_none() && !seen.racy() => {
                first.at_ns = seen.at_ns;
            }
            Some(first) => {
                if first.digest.is_none() {
                    first.digest = seen.digest;
                }
            }
        }
    }

    /// What was seen of `path` so far.
    pub fn seen(&self, path: &Path) -> Option<&Seen> {
        self.seen.get(path)
    }

    /// Not found: a pre-run fact only if the run has not touched the path
    /// (a path it removed is absent because of the run).
    pub fn absent(&mut self, path: PathBuf) {
        if let Some(s) = self.state(path)
            && !s.touched()
        {
            s.access.insert(Access::PROBED_ABSENT);
        }
    }

    /// Opened for writing: `created` when it did not exist before the open,
    /// `truncated` when its old content is gone (`O_TRUNC`).
    pub fn written(&mut self, path: PathBuf, created: bool, truncated: bool) {
        if let Some(s) = self.state(path) {
            s.access.insert(Access::WRITTEN);
            if created {
                s.access.insert(Access::CREATED);
            }
            if created || truncated {
                s.replaced = true;
            }
            s.gone = false;
        }
    }

    /// A new name: `mkdir`, `mknod`, `symlink`, `link`.
    pub fn created(&mut self, path: PathBuf) {
        if let Some(s) = self.state(path) {
            s.access.insert(Access::CREATED);
            s.replaced = true;
            s.gone = false;
        }
    }

    /// Removed: a path the run created and now removes was a temp file and
    /// keeps only its input facts (none: it is left out of the log). The
    /// entry stays, so that a later probe is known to see the run's doing.
    pub fn removed(&mut self, path: PathBuf) {
        let Some(s) = self.state(path) else {
            return;
        };
        if s.access.contains(Access::CREATED) {
            s.access.remove(Access::OUTPUT | Access::LISTING_CHANGED);
        } else {
            s.access.insert(Access::REMOVED);
        }
        s.replaced = false;
        s.gone = true;
    }

    /// `from` renamed to `to`. What `to` holds now came from the run if
    /// `from` did; otherwise it is `from`'s pre-run content, which makes
    /// `from` an input (read) whatever happens to `to` afterwards.
    pub fn renamed(&mut self, from: PathBuf, to: PathBuf) {
        let from_created = self.was_created(&from);
        if !from_created {
            self.read(from.clone());
        }
        if let Some(s) = self.state(from) {
            if from_created {
                s.access.remove(Access::OUTPUT | Access::LISTING_CHANGED);
            } else {
                s.access.insert(Access::RENAMED | Access::REMOVED);
            }
            s.gone = true;
            s.replaced = false;
        }
        if let Some(s) = self.state(to) {
            s.access.insert(Access::RENAMED | Access::WRITTEN);
            if from_created {
                s.access.insert(Access::CREATED);
            }
            s.replaced = true;
            s.gone = false;
        }
    }

    /// `a` and `b` swapped (`RENAME_EXCHANGE`): each now holds what the
    /// other held, so both were inputs if they held pre-run content.
    pub fn exchanged(&mut self, a: PathBuf, b: PathBuf) {
        self.read(a.clone());
        self.read(b.clone());
        for p in [a, b] {
            if let Some(s) = self.state(p) {
                s.access.insert(Access::RENAMED | Access::WRITTEN);
                s.replaced = true;
                s.gone = false;
            }
        }
    }

    /// Whether the run created `path`.
    pub fn was_created(&self, path: &Path) -> bool {
        self.paths
            .get(path)
            .is_some_and(|s| s.access.contains(Access::CREATED))
    }

    /// The log, sorted; `outlived` processes were still running at the end.
    pub fn finish(self, outlived: usize) -> TraceLog {
        // Directories whose names the run changed: a file written in place
        // changes no listing.
        let changed_dirs: HashSet<&Path> = self
            .paths
            .iter()
            .filter(|(_, s)| {
                s.access
                    .intersects(Access::CREATED | Access::REMOVED | Access::RENAMED)
            })
            .filter_map(|(p, _)| p.parent())
            .collect();
        let mut sorted: BTreeMap<&Path, Access> = BTreeMap::new();
        for (p, s) in &self.paths {
            let mut access = s.access;
            if access.contains(Access::LISTED) && changed_dirs.contains(p.as_path()) {
                access.insert(Access::LISTING_CHANGED);
            }
            if access != Access::default() {
                sorted.insert(p, access);
            }
        }
        let mut counts = Counts {
            processes: self.processes,
            stops: self.stops,
            ..Counts::default()
        };
        let paths: Vec<TracedPath> = sorted
            .into_iter()
            .map(|(p, access)| {
                for (flag, n) in [
                    (Access::READ, &mut counts.read),
                    (Access::EXECUTED, &mut counts.executed),
                    (Access::LISTED, &mut counts.listed),
                    (Access::PROBED_ABSENT, &mut counts.probed_absent),
                    (Access::PROBED_PRESENT, &mut counts.probed_present),
                ] {
                    if access.contains(flag) {
                        *n += 1;
                    }
                }
                if access.is_output() {
                    counts.outputs += 1;
                }
                TracedPath {
                    path: p.to_path_buf(),
                    access,
                    seen: self.seen.get(p).copied(),
                }
            })
            .collect();
        TraceLog {
            paths,
            counts,
            untraceable: self.untraceable,
            outlived,
        }
    }
}

/// `base` joined with `rel` (kept as is when absolute), with `.`
/// components, repeated and trailing slashes removed. `..` is kept.
pub fn absolute(base: &Path, rel: &OsStr) -> PathBuf {
    let rel = rel.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(base.as_os_str().len() + rel.len() + 1);
    let parts: Box<dyn Iterator<Item = &[u8]>> = if rel.first() == Some(&b'/') {
        Box::new(rel.split(|&b| b == b'/'))
    } else {
        Box::new(
            base.as_os_str()
                .as_bytes()
                .split(|&b| b == b'/')
                .chain(rel.split(|&b| b == b'/')),
        )
    };
    for c in parts {
        if c.is_empty() || c == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn events() -> Events {
        Events::new(Exclusions::default())
    }

    fn seen(size: u64, mtime_ns: i64, at_ns: i64) -> Seen {
        Seen {
            dev: 1,
            ino: 2,
            size,
            mode: 0o100644,
            mtime_ns,
            ctime_ns: mtime_ns,
            at_ns,
            digest: None,
            changed: false,
        }
    }

    #[test]
    fn the_first_look_is_kept_and_a_later_different_one_marks_a_change() {
        let mut e = events();
        let old = seen(3, 1_000_000_000, 9_000_000_000);
        assert!(!old.racy());
        e.see(Path::new("/w/a"), old);
        e.see(Path::new("/w/a"), old);
        assert_eq!(e.seen(Path::new("/w/a")), Some(&old));
        e.see(Path::new("/w/a"), seen(4, 1_000_000_000, 9_000_000_000));
        assert!(e.seen(Path::new("/w/a")).unwrap().changed);
        // Racy: a digest taken later, with the same stat, is added.
        let racy = seen(3, 8_990_000_000, 9_000_000_000);
        assert!(racy.racy());
        e.see(Path::new("/w/b"), racy);
        e.see(
            Path::new("/w/b"),
            Seen {
                digest: Some([7; 32]),
                ..racy
            },
        );
        assert_eq!(e.seen(Path::new("/w/b")).unwrap().digest, Some([7; 32]));
        // Racy at a first look (a stat), no longer at the read with the
        // same stat: the read's stat vouches for the content (no digest
        // needed, and the race guard does not fall back to the times).
        e.see(Path::new("/w/d"), racy);
        e.see(
            Path::new("/w/d"),
            Seen {
                at_ns: 9_100_000_000,
                ..racy
            },
        );
        assert!(!e.seen(Path::new("/w/d")).unwrap().racy());
        // What the run wrote first is not seen; nor what it leaves out.
        e.written(p("/w/c"), true, true);
        e.see(Path::new("/w/c"), old);
        e.see(Path::new("/proc/1/stat"), old);
        assert_eq!(e.seen(Path::new("/w/c")), None);
        assert_eq!(e.seen(Path::new("/proc/1/stat")), None);
        e.read(p("/w/a"));
        let log = e.finish(0);
        assert!(log.paths[0].seen.is_some_and(|s| s.changed));
    }

    #[test]
    fn a_regular_file_under_dev_is_kept_and_devices_left_out() {
        let x = Exclusions::default();
        assert!(x.excludes(Path::new("/dev/null")));
        assert!(x.excludes(Path::new("/dev/pts/0")));
        assert!(x.excludes(Path::new("/proc/self/fd/3")));
        assert!(!x.excludes(Path::new("/dev/shm/anything")));
    }

    #[test]
    fn absolute_joins_and_normalizes() {
        assert_eq!(absolute(&p("/a/b"), OsStr::new("c")), p("/a/b/c"));
        assert_eq!(absolute(&p("/a/b"), OsStr::new("./c//d/")), p("/a/b/c/d"));
        assert_eq!(absolute(&p("/a/b"), OsStr::new("/x/./y")), p("/x/y"));
        assert_eq!(absolute(&p("/a/b"), OsStr::new("../c")), p("/a/b/../c"));
        assert_eq!(absolute(&p("/"), OsStr::new(".")), p("/"));
        assert_eq!(absolute(&p("/a"), OsStr::new("")), p("/a"));
    }

    #[test]
    fn read_before_the_run_wrote_it_is_an_input_that_changed() {
        let mut e = events();
        e.read(p("/w/log"));
        e.written(p("/w/log"), false, false);
        let log = e.finish(0);
        let a = log.get(Path::new("/w/log")).unwrap();
        assert!(a.contains(Access::READ) && a.contains(Access::WRITTEN));
        assert!(a.is_changed_input());
    }

    #[test]
    fn a_file_the_run_created_is_not_an_input_when_read_afterwards() {
        let mut e = events();
        e.absent(p("/w/out.o"));
        e.written(p("/w/out.o"), true, true);
        e.read(p("/w/out.o"));
        e.present(p("/w/out.o"));
        let a = e.finish(0).get(Path::new("/w/out.o")).unwrap();
        assert_eq!(a, Access::PROBED_ABSENT | Access::WRITTEN | Access::CREATED);
        assert!(!a.is_input() && !a.is_changed_input());
    }

    #[test]
    fn a_truncated_file_is_an_output_not_an_input() {
        let mut e = events();
        e.written(p("/w/out"), false, true);
        e.read(p("/w/out"));
        let a = e.finish(0).get(Path::new("/w/out")).unwrap();
        assert_eq!(a, Access::WRITTEN);
    }

    #[test]
    fn temp_files_created_and_removed_are_dropped() {
        let mut e = events();
        e.written(p("/tmp/cc123.s"), true, true);
        e.read(p("/tmp/cc123.s"));
        e.removed(p("/tmp/cc123.s"));
        e.absent(p("/tmp/cc123.s"));
        let log = e.finish(0);
        assert!(log.paths.is_empty(), "{:?}", log.paths);
    }

    #[test]
    fn a_temp_file_keeps_the_absence_probed_before_it_was_created() {
        let mut e = events();
        e.absent(p("/w/lock"));
        e.written(p("/w/lock"), true, false);
        e.removed(p("/w/lock"));
        let a = e.finish(0).get(Path::new("/w/lock")).unwrap();
        assert_eq!(a, Access::PROBED_ABSENT);
    }

    #[test]
    fn a_pre_existing_file_removed_is_an_output() {
        let mut e = events();
        e.removed(p("/w/stale"));
        e.absent(p("/w/stale"));
        e.read(p("/w/stale"));
        let a = e.finish(0).get(Path::new("/w/stale")).unwrap();
        assert_eq!(a, Access::REMOVED);
    }

    #[test]
    fn a_probe_of_an_output_the_run_overwrites_is_not_an_input() {
        let mut e = events();
        e.present(p("/w/foo.o"));
        e.written(p("/w/foo.o"), false, true);
        let a = e.finish(0).get(Path::new("/w/foo.o")).unwrap();
        assert!(!a.is_input() && !a.is_changed_input(), "{a}");
    }

    #[test]
    fn renaming_a_temp_file_over_the_target_makes_an_output() {
        let mut e = events();
        e.written(p("/w/out.tmp"), true, true);
        e.renamed(p("/w/out.tmp"), p("/w/out"));
        e.read(p("/w/out"));
        let log = e.finish(0);
        assert_eq!(log.get(Path::new("/w/out.tmp")), None);
        let a = log.get(Path::new("/w/out")).unwrap();
        assert!(a.contains(Access::RENAMED) && a.contains(Access::CREATED));
        assert!(!a.is_input());
    }

    #[test]
    fn renaming_a_pre_existing_file_reads_it() {
        let mut e = events();
        e.renamed(p("/w/a"), p("/w/b"));
        let log = e.finish(0);
        let a = log.get(Path::new("/w/a")).unwrap();
        assert!(a.contains(Access::READ) && a.contains(Access::RENAMED));
        assert!(a.is_changed_input());
    }

    #[test]
    fn a_listing_the_run_changed_is_flagged() {
        let mut e = events();
        e.listed(p("/w"));
        e.written(p("/w/new"), true, true);
        e.listed(p("/v"));
        let log = e.finish(0);
        assert!(log.get(Path::new("/w")).unwrap().is_changed_input());
        assert!(!log.get(Path::new("/v")).unwrap().is_changed_input());
    }

    #[test]
    fn system_dirs_and_exclusions_are_left_out_but_not_through_dotdot() {
        let glob = globset::GlobSetBuilder::new()
            .add(globset::Glob::new("**/*.log").unwrap())
            .build()
            .unwrap();
        let mut e = Events::new(Exclusions {
            dirs: vec![p("/home/u/.cache/memorun")],
            globs: Some(glob),
        });
        for path in [
            "/proc/self/maps",
            "/dev/null",
            "/sys/fs",
            "/home/u/.cache/memorun/x",
            "/w/build.log",
        ] {
            e.read(p(path));
        }
        e.read(p("/dev/../etc/passwd"));
        e.read(p("/procfile"));
        let log = e.finish(0);
        let paths: Vec<_> = log.paths.iter().map(|t| t.path.clone()).collect();
        assert_eq!(paths, vec![p("/dev/../etc/passwd"), p("/procfile")]);
    }

    #[test]
    fn the_log_is_sorted_and_counted() {
        let mut e = events();
        e.read(p("/b"));
        e.executed(p("/a"));
        e.read(p("/b"));
        e.absent(p("/c"));
        e.listed(p("/d"));
        e.present(p("/e"));
        e.written(p("/f"), true, false);
        let log = e.finish(0);
        let paths: Vec<_> = log.paths.iter().map(|t| t.path.clone()).collect();
        assert_eq!(paths, ["/a", "/b", "/c", "/d", "/e", "/f"].map(p));
        assert_eq!(
            (log.counts.read, log.counts.executed, log.counts.listed),
            (1, 1, 1)
        );
        assert_eq!(
            (
                log.counts.probed_absent,
                log.counts.probed_present,
                log.counts.outputs
            ),
            (1, 1, 1)
        );
        assert_eq!(log.inputs().count(), 5);
        assert_eq!(log.outputs().count(), 1);
    }
}
