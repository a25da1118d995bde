//! The tracer thread: it forks the command, attaches to it, and runs the
//! `waitpid` loop that answers every stop of every traced process and
//! thread until they are all gone.
//!
//! ptrace requests must come from the thread that attached, so one thread
//! does it all: fork ([`child`]), `PTRACE_SEIZE`, the loop, and reaping the
//! command (it is this thread's child). The thread that asked for the run
//! keeps draining the output pipes and learns of the command through a
//! channel: [`Tracer::start`] returns once the command has exec'd (or
//! failed to), [`Tracer::wait`] once it has exited, [`Tracer::finish`]
//! ends the trace and returns the [`TraceLog`].
//!
//! Invariants:
//! - The loop waits with `__WNOTHREAD`: it sees only its own tracees, never
//!   another thread's children.
//! - Every stop is resumed: a signal stop re-injects its signal; a
//!   group-stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU) is left to job control
//!   with `PTRACE_LISTEN`, so Ctrl-Z and `fg` keep working.
//! - `PTRACE_O_EXITKILL`: if memorun dies, the kernel kills the tracees
//!   rather than leave them stopped, or running with a filter that fails
//!   their file-system calls.
//! - Every traced task is in `procs` from its creation to its exit, and
//!   is counted once. Its creation shows twice, in either order: its own
//!   first stop and its parent's `PTRACE_EVENT_FORK`/`VFORK`/`CLONE`
//!   (`waitpid` reports the newest tracee first, so a busy tracer may see a
//!   child start, run and exit before its parent's event). An exit seen
//!   before that event is remembered in `early_exits`, so that the event
//!   does not bring back a task that is gone. A task the tracer never sees
//!   exit is lost: the run is [`Untraceable::LostTracee`].
//! - Processes still traced when the caller is done (daemons that closed
//!   the command's output) are killed and reaped: left running without
//!   their tracer, every file-system call of theirs would fail with
//!   `ENOSYS`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use super::TraceUnavailable;
use super::child::{self, Forked, Spec};
use super::filter::Call;
use super::log::{
    Events, Exclusions, Seen, TraceLog, Untraceable, absolute, content_digest, listing_digest,
    now_ns,
};
use super::resolve::Resolver;
use super::syscalls;
use super::tracee::{self, OP_EXIT, OP_SECCOMP};

/// Why the traced command did not start.
#[derive(Debug)]
pub enum StartError {
    /// Tracing could not start; the command did not run.
    Unavailable(TraceUnavailable),
    /// The command could not be executed (not found, not executable), as
    /// it would fail untraced.
    Spawn(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Unavailable(why) => write!(f, "cannot trace: {why}"),
            StartError::Spawn(e) => write!(f, "cannot execute: {}", crate::io_reason(e)),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Unavailable(why) => Some(why),
            StartError::Spawn(e) => Some(e),
        }
    }
}

enum Report {
    Started { pid: i32, pidfd: Option<OwnedFd> },
    SpawnFailed(io::Error),
    Unavailable(TraceUnavailable),
    Exited(i32),
}

struct Shared {
    /// Set by [`Tracer::finish`]: stop tracing what is left.
    stop: AtomicBool,
    /// The tracer thread's tid, for the wake-up signal.
    tid: AtomicI32,
}

/// The signal that interrupts the tracer's `waitpid` when the caller is
/// done: its default action is to ignore, and memorun uses it for nothing
/// else. The handler does nothing; it is installed without `SA_RESTART`.
const WAKE: i32 = libc::SIGURG;

extern "C" fn on_wake(_: libc::c_int) {}

fn install_wake_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing
        // (async-signal-safe by being empty), no SA_RESTART so that a
        // blocked waitpid returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(WAKE, &sa, std::ptr::null_mut());
        }
    });
}

/// A traced command, started.
pub struct Tracer {
    rx: Receiver<Report>,
    shared: Arc<Shared>,
    handle: Option<JoinHandle<TraceLog>>,
    pid: i32,
    pidfd: Option<OwnedFd>,
    status: Option<i32>,
}

impl Tracer {
    /// Fork `spec` under a new tracer thread and wait until it has exec'd.
    pub fn start(spec: Spec, exclusions: Exclusions) -> Result<Tracer, StartError> {
        install_wake_handler();
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            tid: AtomicI32::new(0),
        });
        let handle = std::thread::Builder::new()
            .name("memorun-tracer".into())
            .spawn({
                let shared = shared.clone();
                move || trace(spec, exclusions, tx, &shared)
            })
            .map_err(|e| StartError::Unavailable(TraceUnavailable::Thread(e)))?;
        let first = rx.recv();
        let join = |h: JoinHandle<TraceLog>| {
            let _ = h.join();
        };
        match first {
            Ok(Report::Started { pid, pidfd }) => Ok(Tracer {
                rx,
                shared,
                handle: Some(handle),
                pid,
                pidfd,
                status: None,
            }),
            Ok(Report::SpawnFailed(e)) => {
                join(handle);
                Err(StartError::Spawn(e))
            }
            Ok(Report::Unavailable(r)) => {
                join(handle);
                Err(StartError::Unavailable(r))
            }
            Ok(Report::Exited(_)) | Err(_) => {
                join(handle);
                Err(StartError::Unavailable(TraceUnavailable::TracerFailed))
            }
        }
    }

    /// The command's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A pidfd of the command (readable once it has exited), if the kernel
    /// gave one.
    pub fn take_pidfd(&mut self) -> Option<OwnedFd> {
        self.pidfd.take()
    }

    /// Wait for the command to exit; its raw wait status. Processes it
    /// started may still run, traced.
    pub fn wait(&mut self) -> io::Result<i32> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        loop {
            match self.rx.recv() {
                Ok(Report::Exited(s)) => {
                    self.status = Some(s);
                    return Ok(s);
                }
                Ok(_) => continue,
                Err(_) => return Err(io::Error::other("the tracer thread ended early")),
            }
        }
    }

    /// End the trace: processes still traced are killed and reaped. The
    /// log of the whole run.
    pub fn finish(mut self) -> TraceLog {
        self.stop()
    }

    fn stop(&mut self) -> TraceLog {
        let Some(handle) = self.handle.take() else {
            return TraceLog::default();
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        // The tracer may be blocked in waitpid: interrupt it until it has
        // seen the flag (a signal that lands just before it blocks is lost,
        // hence the loop).
        while !handle.is_finished() {
            let tid = self.shared.tid.load(Ordering::SeqCst);
            if tid > 0 {
                // SAFETY: tgkill to a thread of our own process; WAKE has a
                // handler that does nothing.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, WAKE);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        handle.join().unwrap_or_default()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.stop();
    }
}

const OPTIONS: libc::c_int = libc::PTRACE_O_EXITKILL
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACESYSGOOD;

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The tracer thread.
fn trace(spec: Spec, exclusions: Exclusions, tx: Sender<Report>, shared: &Shared) -> TraceLog {
    // SAFETY: gettid has no failure mode.
    shared.tid.store(
        unsafe { libc::syscall(libc::SYS_gettid) } as i32,
        Ordering::SeqCst,
    );
    let events = Events::new(exclusions);
    let forked = child::fork(&spec);
    // The parent's copies of the command's stdio close here.
    drop(spec);
    let mut forked = match forked {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Report::SpawnFailed(e));
            return events.finish(0);
        }
    };
    let pid = forked.pid;
    // SAFETY: PTRACE_SEIZE of our own child, which is blocked reading the
    // go pipe; the options are a plain bit set.
    let seized = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            OPTIONS as usize as *mut libc::c_void,
        )
    };
    if seized != 0 {
        let e = io::Error::last_os_error();
        child::abandon(&mut forked);
        let _ = tx.send(Report::Unavailable(TraceUnavailable::PtraceRefused(e)));
        return events.finish(0);
    }
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).expect("a child's pid is positive"),
        rustix::process::PidfdFlags::empty(),
    )
    .ok();
    forked.release(true);
    let mut t = Loop {
        events,
        procs: HashMap::new(),
        early_exits: HashSet::new(),
        cwds: HashMap::new(),
        resolver: Resolver::default(),
        escaped: Vec::new(),
        main: pid,
        main_done: false,
        started: false,
        tx,
        pidfd,
        forked,
    };
    t.procs.insert(
        pid,
        Proc {
            announced: true,
            pending: None,
        },
    );
    t.events.processes = 1;
    let outlived = t.run(shared);
    t.events.finish(outlived)
}

/// A system call seen at its seccomp stop, waiting for its result.
enum Pending {
    /// `open` and friends: `existed` says whether the path existed before
    /// an `O_CREAT` open.
    Open {
        path: Target,
        flags: u64,
        existed: bool,
    },
    Exec(Target),
    /// `stat`, `access`, `readlink`: `einval_present` for readlink, where
    /// `EINVAL` means "not a symlink" (so it exists).
    Probe {
        path: Target,
        einval_present: bool,
    },
    Chdir(Option<Target>),
    Rename {
        from: Target,
        to: Target,
        exchange: bool,
    },
    Unlink(Target),
    Create(Target),
    Link {
        old: Option<Target>,
        new: Target,
    },
    Truncate(Target),
    /// Mode, owner, times or extended attributes written.
    Meta(Target),
    /// A `CLONE_UNTRACED` clone: its pid, at the exit, to kill at the end.
    Escape,
}

/// What the command reads of a path, for its [`Seen`] note.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Its stat only.
    Stat,
    /// Its content.
    Content,
    /// Its entries' names.
    Listing,
}

/// What a call that succeeded did to a name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Changed {
    Removed,
    Created,
    Written,
}

/// A path argument: what the command wrote (absolute) and what the kernel
/// reaches through it (symlinks and `/proc` magic links followed).
struct Named {
    path: PathBuf,
    real: PathBuf,
}

impl Named {
    /// The path as written, and the one reached when it differs.
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.path).chain((self.real != self.path).then_some(&self.real))
    }
}

/// A path argument: resolved, or not readable (the call is then expected
/// to fail; if it succeeds the run is not traceable).
type Target = Result<Named, ()>;

struct Proc {
    /// Whether its creation is known from its parent's event (or it is
    /// the command): `false` while only its own first stop was seen.
    announced: bool,
    pending: Option<Pending>,
}

struct Loop {
    events: Events,
    procs: HashMap<i32, Proc>,
    /// Tasks seen to exit (or to vanish in a thread's `execve`) before
    /// their parent's fork or clone event: that event, when it comes,
    /// announces a task already gone.
    early_exits: HashSet<i32>,
    /// Working directories read from `/proc`, dropped on any `chdir`
    /// (threads and `CLONE_FS` children share theirs).
    cwds: HashMap<i32, PathBuf>,
    resolver: Resolver,
    /// Processes cloned with `CLONE_UNTRACED`, killed at the end.
    escaped: Vec<OwnedFd>,
    main: i32,
    main_done: bool,
    started: bool,
    tx: Sender<Report>,
    pidfd: Option<OwnedFd>,
    forked: Forked,
}

/// Restart a stopped tracee; `syscall` to stop again at the exit of the
/// current system call.
fn resume(tid: i32, syscall: bool, sig: i32) {
    let req = if syscall {
        libc::PTRACE_SYSCALL
    } else {
        libc::PTRACE_CONT
    };
    // SAFETY: restarting a tracee of this thread; a tracee that died
    // meanwhile makes it fail with ESRCH, which is fine.
    unsafe {
        libc::ptrace(
            req,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            sig as usize as *mut libc::c_void,
        );
    }
}

fn event_msg(tid: i32) -> Option<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one unsigned long.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut msg as *mut libc::c_ulong,
        )
    };
    (r == 0).then_some(msg as u64)
}

const AT_FDCWD: i32 = libc::AT_FDCWD;
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;
const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
const ENOENT_LIKE: [i32; 2] = [libc::ENOENT, libc::ENOTDIR];
/// `-ERESTARTSYS` .. `-ERESTART_RESTARTBLOCK`: the call will run again.
const RESTART: std::ops::RangeInclusive<i32> = 512..=516;

impl Loop {
    /// The loop, until nothing is traced any more; how many processes and
    /// threads were still traced when the caller stopped it.
    fn run(&mut self, shared: &Shared) -> usize {
        let mut stopping = false;
        let mut outlived = 0;
        loop {
            if !stopping && shared.stop.load(Ordering::SeqCst) {
                stopping = true;
                outlived = self.procs.len();
                // Whatever is still traced outlived the command: kill it,
                // then reap until nothing is left.
                for &tid in self.procs.keys() {
                    // SAFETY: a tracee not yet reaped by us: its pid cannot
                    // have been reused.
                    unsafe {
                        libc::kill(tid, libc::SIGKILL);
                    }
                }
            }
            let mut status = 0;
            // SAFETY: waitpid into a local.
            let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
            if tid < 0 {
                match errno() {
                    libc::EINTR => continue,
                    _ => break, // ECHILD: nothing left
                }
            }
            if stopping {
                if libc::WIFSTOPPED(status) {
                    resume(tid, false, 0);
                } else {
                    self.exited(tid, status);
                }
                continue;
            }
            self.stopped(tid, status);
        }
        if !stopping && !self.procs.is_empty() {
            // Nothing left to wait for, yet tracees never seen to exit.
            self.events
                .untraceable(Untraceable::LostTracee(self.procs.len()));
        }
        self.kill_escaped();
        outlived
    }

    fn exited(&mut self, tid: i32, status: i32) {
        self.vanished(tid);
        if tid != self.main || self.main_done {
            return;
        }
        self.main_done = true;
        if self.started {
            let _ = self.tx.send(Report::Exited(status));
            return;
        }
        let report = match self.forked.failure() {
            Some((child::TAG_SECCOMP, e)) => Report::Unavailable(TraceUnavailable::SeccompRefused(
                io::Error::from_raw_os_error(e),
            )),
            Some((_, e)) => Report::SpawnFailed(io::Error::from_raw_os_error(e)),
            None => Report::SpawnFailed(io::Error::other("the command died before it started")),
        };
        let _ = self.tx.send(report);
    }

    fn stopped(&mut self, tid: i32, status: i32) {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.exited(tid, status);
            return;
        }
        if !libc::WIFSTOPPED(status) {
            return;
        }
        if let Entry::Vacant(e) = self.procs.entry(tid) {
            // A new task, ahead of its parent's event (or a reused tid).
            e.insert(Proc {
                announced: false,
                pending: None,
            });
            self.events.processes += 1;
            self.early_exits.remove(&tid);
            // A working directory cached under a reused tid is not its own.
            self.cwds.remove(&tid);
        }
        let sig = libc::WSTOPSIG(status);
        match status >> 16 {
            libc::PTRACE_EVENT_SECCOMP => self.seccomp(tid),
            libc::PTRACE_EVENT_EXEC => self.exec(tid),
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Some(new) = event_msg(tid) {
                    self.announced(new as i32);
                }
                resume(tid, false, 0);
            }
            PTRACE_EVENT_STOP => {
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    // A group-stop: stay stopped until SIGCONT, without
                    // holding the tracee in a ptrace stop.
                    // SAFETY: PTRACE_LISTEN on a SEIZEd tracee in group-stop.
                    unsafe {
                        libc::ptrace(
                            libc::PTRACE_LISTEN,
                            tid,
                            std::ptr::null_mut::<libc::c_void>(),
                            std::ptr::null_mut::<libc::c_void>(),
                        );
                    }
                } else {
                    // The first stop of a new tracee, or the end of a
                    // group-stop.
                    resume(tid, false, 0);
                }
            }
            0 if sig == (libc::SIGTRAP | 0x80) => self.syscall_exit(tid),
            0 => {
                // A signal for the tracee: deliver it.
                let waiting = self.procs.get(&tid).is_some_and(|p| p.pending.is_some());
                resume(tid, waiting, sig);
            }
            event => {
                // No other event was asked for.
                self.events
                    .untraceable(Untraceable::UnknownStop(event as u32));
                resume(tid, false, 0);
            }
        }
    }

    /// A parent's event says it created `new`: a task to wait for, unless
    /// its own stop came first (it is known already) or its exit did.
    fn announced(&mut self, new: i32) {
        if self.early_exits.remove(&new) {
            return;
        }
        match self.procs.entry(new) {
            Entry::Occupied(mut e) => e.get_mut().announced = true,
            Entry::Vacant(e) => {
                e.insert(Proc {
                    announced: true,
                    pending: None,
                });
                self.events.processes += 1;
                self.cwds.remove(&new);
            }
        }
    }

    /// `tid` is gone (it exited, or its tid went to the leader in a
    /// thread's `execve`). If its parent's event has not come yet, it
    /// will: it must not bring `tid` back.
    fn vanished(&mut self, tid: i32) {
        if self.procs.remove(&tid).is_none_or(|p| !p.announced) {
            self.early_exits.insert(tid);
        }
        self.cwds.remove(&tid);
    }

    /// `tid`'s working directory.
    fn cwd(&mut self, tid: i32) -> Option<PathBuf> {
        if let Some(c) = self.cwds.get(&tid) {
            return Some(c.clone());
        }
        let c = tracee::cwd(tid)?;
        self.cwds.insert(tid, c.clone());
        Some(c)
    }

    /// The path argument at `addr`, relative to `dirfd`, and what it
    /// reaches (following a final symlink when `follow`). `Ok(None)` when
    /// the call names no path (an empty path without `AT_EMPTY_PATH`: the
    /// kernel refuses it), and with `AT_EMPTY_PATH` the directory or file
    /// `dirfd` itself when `empty_ok`.
    fn resolve(
        &mut self,
        tid: i32,
        dirfd: i32,
        addr: u64,
        empty_ok: bool,
        follow: bool,
    ) -> Result<Option<Named>, ()> {
        let raw: OsString = tracee::read_path(tid, addr).ok_or(())?;
        if raw.is_empty() && !empty_ok {
            return Ok(None);
        }
        let path = if raw.as_bytes().first() == Some(&b'/') {
            absolute(Path::new("/"), &raw)
        } else {
            let base = if dirfd == AT_FDCWD {
                self.cwd(tid)
            } else {
                tracee::fd_path(tid, dirfd)
            };
            absolute(&base.ok_or(())?, &raw)
        };
        let real = self.resolver.real(tid, &path, follow);
        Ok(Some(Named { path, real }))
    }

    /// Like [`Loop::resolve`], for calls where a missing path means there
    /// is nothing to record.
    fn target(&mut self, tid: i32, dirfd: i32, addr: u64, follow: bool) -> Option<Target> {
        self.resolve(tid, dirfd, addr, false, follow).transpose()
    }

    /// A path given as `dirfd` and `path` with `AT_*` flags: an empty path
    /// with `AT_EMPTY_PATH` (or a NULL one, for `utimensat`) is `dirfd`.
    fn target_at(&mut self, tid: i32, dirfd: i32, addr: u64, flags: u64) -> Option<Target> {
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        if addr == 0 {
            return self.descriptor(tid, dirfd).map(Ok);
        }
        match self.resolve(tid, dirfd, addr, flags & AT_EMPTY_PATH != 0, follow) {
            Ok(Some(n)) if n.path.as_os_str().is_empty() => None,
            r => r.transpose(),
        }
    }

    /// The file descriptor `fd` of `tid` names, when it is a path.
    fn descriptor(&mut self, tid: i32, fd: i32) -> Option<Named> {
        let path = tracee::fd_path(tid, fd)?;
        Some(Named {
            real: path.clone(),
            path,
        })
    }

    /// A seccomp stop: the filter asked for a look at `tid`'s call before it
    /// runs. `tid` resumes, to stop again at the call's exit if its result
    /// matters.
    fn seccomp(&mut self, tid: i32) {
        self.events.stops += 1;
        let info = match tracee::syscall_info(tid) {
            Ok(i) if i.op == OP_SECCOMP => i,
            _ => {
                self.events.untraceable(Untraceable::NoSyscallInfo);
                resume(tid, false, 0);
                return;
            }
        };
        let Some(call) = Call::from_data(info.ret_data & 0xffff) else {
            self.events
                .untraceable(Untraceable::UnknownStop(info.ret_data));
            resume(tid, false, 0);
            return;
        };
        let pending = self.entered(tid, call, &info);
        let waiting = pending.is_some();
        if let Some(p) = self.procs.get_mut(&tid) {
            p.pending = pending;
        }
        resume(tid, waiting, 0);
    }

    /// The call `tid` stopped at on entry, by what the filter said it is:
    /// what was seen now, and what waits for the call's result (`None`:
    /// nothing, and the tracee runs on without a stop at its exit).
    fn entered(&mut self, tid: i32, call: Call, info: &tracee::SyscallInfo) -> Option<Pending> {
        match call {
            Call::Open | Call::Creat | Call::OpenAt | Call::OpenAt2 => self.open(tid, call, info),
            Call::Execve | Call::ExecveAt => {
                let a = info.args;
                let (dirfd, addr, flags) = match call {
                    Call::Execve => (AT_FDCWD, a[0], 0),
                    _ => (a[0] as i32, a[1], a[4]),
                };
                self.resolve(tid, dirfd, addr, flags & AT_EMPTY_PATH != 0, true)
                    .transpose()
                    .map(Pending::Exec)
            }
            Call::Getdents => {
                if let Some(dir) = tracee::fd_path(tid, info.args[0] as i32) {
                    self.snapshot(&dir, Look::Listing, None);
                    self.events.listed(dir);
                }
                None
            }
            Call::Unrecordable => {
                let table = super::filter::table(info.arch);
                let name = syscalls::name(table, info.nr_or_rval).unwrap_or("an unknown call");
                self.events.untraceable(Untraceable::Opaque(name));
                None
            }
            Call::Unknown => {
                self.events
                    .untraceable(Untraceable::UnknownCall(info.nr_or_rval));
                None
            }
            Call::Foreign => {
                self.events.untraceable(Untraceable::ForeignAbi);
                None
            }
            Call::ReadStdin => {
                if tracee::fd_path(tid, 0).is_some_and(|p| is_terminal(&p)) {
                    self.events.untraceable(Untraceable::ReadTerminal);
                }
                None
            }
            Call::Clone | Call::Clone3 | Call::Prctl | Call::Seccomp | Call::OpenTree => {
                self.guarded(tid, call, info)
            }
            Call::XattrPath | Call::XattrLink | Call::XattrFd | Call::XattrAt => {
                self.xattrs(tid, call, info);
                None
            }
            _ => self.names(tid, call, info),
        }
    }

    /// `open`, `openat`, `openat2`, `creat`. A read-only open is classified
    /// at once (see [`Loop::probe`]); one that may write waits for its
    /// result.
    fn open(&mut self, tid: i32, call: Call, info: &tracee::SyscallInfo) -> Option<Pending> {
        let a = info.args;
        let (dirfd, addr) = match call {
            Call::Open | Call::Creat => (AT_FDCWD, a[0]),
            _ => (a[0] as i32, a[1]),
        };
        let flags = match call {
            Call::Open => a[1],
            Call::Creat => (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
            Call::OpenAt => a[2],
            _ => {
                // struct open_how { u64 flags; u64 mode; u64 resolve; }
                if let Some(resolve) = tracee::read_u64(tid, a[2].wrapping_add(16))
                    && resolve & RESOLVE_IN_ROOT != 0
                {
                    self.events
                        .untraceable(Untraceable::Opaque("openat2 with RESOLVE_IN_ROOT"));
                }
                tracee::read_u64(tid, a[2]).unwrap_or(0)
            }
        };
        let lookup_only = flags & libc::O_ACCMODE as u64 == libc::O_RDONLY as u64
            && flags & (libc::O_CREAT | libc::O_TMPFILE) as u64 == 0;
        let follow = flags & libc::O_NOFOLLOW as u64 == 0;
        match self.target(tid, dirfd, addr, follow) {
            None => None,
            Some(Ok(n)) if lookup_only => {
                if flags & (libc::O_PATH | libc::O_DIRECTORY) as u64 != 0 {
                    self.probe(n, follow);
                } else {
                    self.open_for_reading(n, follow);
                }
                None
            }
            Some(path) => {
                let existed = flags & libc::O_CREAT as u64 != 0
                    && path
                        .as_ref()
                        .is_ok_and(|n| std::fs::metadata(&n.real).is_ok());
                Some(Pending::Open {
                    path,
                    flags,
                    existed,
                })
            }
        }
    }

    /// Calls checked by their arguments: a clone that would escape the
    /// tracer, a seccomp filter of the command's own, a detached mount.
    fn guarded(&mut self, tid: i32, call: Call, info: &tracee::SyscallInfo) -> Option<Pending> {
        const PR_SET_SECCOMP: u64 = 22;
        const OPEN_TREE_CLONE: u64 = 1;
        let a = info.args;
        match call {
            Call::Clone | Call::Clone3 => {
                // clone3(struct clone_args *): flags is its first u64.
                let flags = match call {
                    Call::Clone => Some(a[0]),
                    _ => tracee::read_u64(tid, a[0]),
                };
                // Unreadable clone3 arguments: the call fails with EFAULT.
                if flags.is_some_and(|f| f & u64::from(super::filter::CLONE_UNTRACED) != 0) {
                    self.events.untraceable(Untraceable::UntracedClone);
                    return Some(Pending::Escape);
                }
                None
            }
            Call::Prctl if a[0] == PR_SET_SECCOMP => {
                self.events.untraceable(Untraceable::SeccompFilter);
                None
            }
            // SECCOMP_SET_MODE_STRICT, SECCOMP_SET_MODE_FILTER; the other
            // operations only ask.
            Call::Seccomp if a[0] <= 1 => {
                self.events.untraceable(Untraceable::SeccompFilter);
                None
            }
            Call::OpenTree if a[2] & OPEN_TREE_CLONE != 0 => {
                self.events
                    .untraceable(Untraceable::Opaque("open_tree with OPEN_TREE_CLONE"));
                None
            }
            Call::OpenTree => {
                // Without a clone, an O_PATH descriptor: a look.
                if let Some(Ok(n)) = self.target_at(tid, a[0] as i32, a[1], a[2]) {
                    let follow = a[2] & AT_SYMLINK_NOFOLLOW == 0;
                    self.probe(n, follow);
                }
                None
            }
            _ => None,
        }
    }

    /// `getxattr`, `listxattr` and their forms: the attributes are an input
    /// (with the path's look, which they come with).
    fn xattrs(&mut self, tid: i32, call: Call, info: &tracee::SyscallInfo) {
        let a = info.args;
        let (target, follow) = match call {
            Call::XattrPath => (self.target(tid, AT_FDCWD, a[0], true), true),
            Call::XattrLink => (self.target(tid, AT_FDCWD, a[0], false), false),
            Call::XattrFd => (self.descriptor(tid, a[0] as i32).map(Ok), true),
            _ => (
                self.target_at(tid, a[0] as i32, a[1], a[2]),
                a[2] & AT_SYMLINK_NOFOLLOW == 0,
            ),
        };
        match target {
            Some(Ok(n)) => {
                if lookup(&n.real, follow).is_ok() {
                    for p in n.all() {
                        self.events.xattrs(p.clone());
                    }
                }
                self.probe(n, follow);
            }
            // Unreadable: the call fails, or the run is not traceable.
            Some(Err(())) => self.events.untraceable(Untraceable::UnreadablePath),
            None => {}
        }
    }

    /// The calls that look at, create, remove or change names.
    fn names(&mut self, tid: i32, call: Call, info: &tracee::SyscallInfo) -> Option<Pending> {
        let a = info.args;
        let fd = |i: usize| a[i] as i32;
        match call {
            Call::Probe
            | Call::ProbeLink
            | Call::StatAt
            | Call::Statx
            | Call::AccessAt
            | Call::ReadlinkAt
            | Call::ProbeAt4
            | Call::NameToHandle
            | Call::Inotify => self.look(tid, call, info),
            Call::Chdir => self
                .target(tid, AT_FDCWD, a[0], true)
                .map(|p| Pending::Chdir(Some(p))),
            Call::Fchdir => Some(Pending::Chdir(None)),
            Call::Rename | Call::RenameAt | Call::RenameAt2 => {
                let (from, to, flags) = match call {
                    Call::Rename => (
                        self.target(tid, AT_FDCWD, a[0], false),
                        self.target(tid, AT_FDCWD, a[1], false),
                        0,
                    ),
                    Call::RenameAt => (
                        self.target(tid, fd(0), a[1], false),
                        self.target(tid, fd(2), a[3], false),
                        0,
                    ),
                    _ => (
                        self.target(tid, fd(0), a[1], false),
                        self.target(tid, fd(2), a[3], false),
                        a[4],
                    ),
                };
                match (from, to) {
                    (Some(from), Some(to)) => Some(Pending::Rename {
                        from,
                        to,
                        exchange: flags & RENAME_EXCHANGE != 0,
                    }),
                    _ => None,
                }
            }
            Call::Unlink => self.target(tid, AT_FDCWD, a[0], false).map(Pending::Unlink),
            Call::UnlinkAt => self.target(tid, fd(0), a[1], false).map(Pending::Unlink),
            Call::Mkdir => self.target(tid, AT_FDCWD, a[0], false).map(Pending::Create),
            Call::MkdirAt => self.target(tid, fd(0), a[1], false).map(Pending::Create),
            Call::Symlink => self.target(tid, AT_FDCWD, a[1], false).map(Pending::Create),
            Call::SymlinkAt => self.target(tid, fd(1), a[2], false).map(Pending::Create),
            Call::Link => {
                let old = self.target(tid, AT_FDCWD, a[0], false);
                self.target(tid, AT_FDCWD, a[1], false)
                    .map(|new| Pending::Link { old, new })
            }
            Call::LinkAt => {
                // AT_EMPTY_PATH: linking an open (O_TMPFILE) file, no old
                // name; AT_SYMLINK_FOLLOW: the old name's target.
                let old = if a[4] & AT_EMPTY_PATH != 0 {
                    None
                } else {
                    self.target(tid, fd(0), a[1], a[4] & AT_SYMLINK_FOLLOW != 0)
                };
                self.target(tid, fd(2), a[3], false)
                    .map(|new| Pending::Link { old, new })
            }
            Call::Truncate => self
                .target(tid, AT_FDCWD, a[0], true)
                .map(Pending::Truncate),
            Call::MetaPath => self.target(tid, AT_FDCWD, a[0], true).map(Pending::Meta),
            Call::MetaLink => self.target(tid, AT_FDCWD, a[0], false).map(Pending::Meta),
            Call::MetaFd => self.descriptor(tid, fd(0)).map(|n| Pending::Meta(Ok(n))),
            Call::MetaAt => self.target_at(tid, fd(0), a[1], 0).map(Pending::Meta),
            Call::MetaAt2 => self.target_at(tid, fd(0), a[1], a[2]).map(Pending::Meta),
            Call::MetaAt3 => self.target_at(tid, fd(0), a[1], a[3]).map(Pending::Meta),
            Call::MetaAt4 => self.target_at(tid, fd(0), a[1], a[4]).map(Pending::Meta),
            _ => None,
        }
    }

    /// `stat`, `access`, `readlink` and the other looks at a path.
    fn look(&mut self, tid: i32, call: Call, info: &tracee::SyscallInfo) -> Option<Pending> {
        const AT_SYMLINK_FOLLOW_: u64 = AT_SYMLINK_FOLLOW;
        const IN_DONT_FOLLOW: u64 = 0x0200_0000;
        let a = info.args;
        let fd = |i: usize| a[i] as i32;
        let (dirfd, addr, follow) = match call {
            Call::Probe => (AT_FDCWD, a[0], true),
            Call::ProbeLink => (AT_FDCWD, a[0], false),
            Call::StatAt => (fd(0), a[1], a[3] & AT_SYMLINK_NOFOLLOW == 0),
            Call::Statx => (fd(0), a[1], a[2] & AT_SYMLINK_NOFOLLOW == 0),
            // faccessat has no flags argument; faccessat2 does. A stray
            // AT_SYMLINK_NOFOLLOW bit only makes the look at the link.
            Call::AccessAt => (fd(0), a[1], a[3] & AT_SYMLINK_NOFOLLOW == 0),
            Call::ProbeAt4 => (fd(0), a[1], a[4] & AT_SYMLINK_NOFOLLOW == 0),
            Call::NameToHandle => (fd(0), a[1], a[4] & AT_SYMLINK_FOLLOW_ != 0),
            Call::Inotify => (AT_FDCWD, a[1], a[2] & IN_DONT_FOLLOW == 0),
            _ => (fd(0), a[1], false), // readlinkat
        };
        // An empty path with AT_EMPTY_PATH is fstat(dirfd): the file was
        // opened before, nothing new.
        match self.resolve(tid, dirfd, addr, false, follow) {
            Ok(None) => None,
            Ok(Some(n)) => {
                self.probe(n, follow);
                None
            }
            // Unreadable: whether it mattered shows at the exit.
            Err(()) => Some(Pending::Probe {
                path: Err(()),
                einval_present: false,
            }),
        }
    }

    fn syscall_exit(&mut self, tid: i32) {
        let pending = self.procs.get_mut(&tid).and_then(|p| p.pending.take());
        let Some(pending) = pending else {
            resume(tid, false, 0);
            return;
        };
        // Read while it is still stopped, then let it go.
        let info = tracee::syscall_info(tid);
        let result = match info {
            Ok(i) if i.op == OP_EXIT => i.result(),
            _ => {
                resume(tid, false, 0);
                self.events.untraceable(Untraceable::NoSyscallInfo);
                return;
            }
        };
        if let (Pending::Escape, Ok(child)) = (&pending, result) {
            // The clone's child is not traced, but its parent is stopped:
            // it cannot have been reaped, so its pid is its own.
            if let Some(pid) = rustix::process::Pid::from_raw(child as i32)
                && let Ok(fd) =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            {
                self.escaped.push(fd);
            }
        }
        resume(tid, false, 0);
        if matches!(result, Err(e) if RESTART.contains(&e)) {
            // Interrupted; it stops again at seccomp when it restarts.
            return;
        }
        self.apply(pending, result);
    }

    fn apply(&mut self, pending: Pending, result: Result<i64, i32>) {
        let ok = result.is_ok();
        let errno = result.err().unwrap_or(0);
        let absent = ENOENT_LIKE.contains(&errno);
        // A path we could not read, in a call that succeeded: something was
        // touched that we cannot name.
        let mut unreadable = false;
        let mut take = |t: Target| -> Option<Named> {
            match t {
                Ok(p) => Some(p),
                Err(()) => {
                    unreadable |= ok;
                    None
                }
            }
        };
        match pending {
            Pending::Open {
                path,
                flags,
                existed,
            } => {
                let Some(n) = take(path) else {
                    return self.unreadable(unreadable);
                };
                self.opened(n, flags as i32, existed, result);
            }
            Pending::Exec(path) => {
                // Success is handled at PTRACE_EVENT_EXEC; here it failed.
                let Some(n) = take(path) else { return };
                self.looked(&n, errno == libc::EACCES, absent);
            }
            Pending::Probe {
                path,
                einval_present,
            } => {
                let Some(n) = take(path) else {
                    return self.unreadable(unreadable);
                };
                self.looked(&n, ok || (einval_present && errno == libc::EINVAL), absent);
            }
            Pending::Chdir(path) => {
                if ok {
                    self.cwds.clear();
                }
                let Some(Some(n)) = path.map(&mut take) else {
                    return self.unreadable(unreadable);
                };
                self.looked(&n, ok, absent);
            }
            Pending::Rename { from, to, exchange } => {
                let (Some(from), Some(to)) = (take(from), take(to)) else {
                    return self.unreadable(unreadable);
                };
                self.renamed(from, to, exchange, ok, absent);
            }
            Pending::Unlink(path) => {
                let Some(n) = take(path) else {
                    return self.unreadable(unreadable);
                };
                self.changed(&n, Changed::Removed, result);
            }
            Pending::Create(path) => {
                let Some(n) = take(path) else {
                    return self.unreadable(unreadable);
                };
                self.changed(&n, Changed::Created, result);
            }
            Pending::Truncate(path) | Pending::Meta(path) => {
                let Some(n) = take(path) else {
                    return self.unreadable(unreadable);
                };
                self.changed(&n, Changed::Written, result);
            }
            Pending::Link { old, new } => {
                let old = old.and_then(&mut take);
                let Some(new) = take(new) else {
                    return self.unreadable(unreadable);
                };
                self.linked(old.as_ref(), &new, result);
            }
            Pending::Escape => {}
        }
        if unreadable {
            self.events.untraceable(Untraceable::UnreadablePath);
        }
    }

    /// A hard link from `old` (`None`: unreadable, or not asked) made at
    /// `new`, at the call's exit.
    fn linked(&mut self, old: Option<&Named>, new: &Named, result: Result<i64, i32>) {
        match result {
            Ok(_) => {
                // The new name shares the old file's content: reading it
                // later reads the old file.
                if let Some(old) = old {
                    old.all().for_each(|p| self.events.read(p.clone()));
                }
                self.changed(new, Changed::Created, result);
            }
            // (ENOENT may be the old name's: nothing about the new.)
            Err(libc::EEXIST) => self.looked(new, true, false),
            Err(_) => {}
        }
    }

    /// A name removed, created or written (a truncation, new metadata), at
    /// the call's exit.
    fn changed(&mut self, n: &Named, how: Changed, result: Result<i64, i32>) {
        let errno = result.err().unwrap_or(0);
        if result.is_err() {
            let exists = errno == libc::EEXIST && how == Changed::Created;
            return self.looked(n, exists, ENOENT_LIKE.contains(&errno));
        }
        if how != Changed::Written {
            self.resolver.forget();
        }
        for p in n.all() {
            let p = p.clone();
            match how {
                Changed::Removed => self.events.removed(p),
                Changed::Created => self.events.created(p),
                Changed::Written => self.events.written(p, false, false),
            }
        }
    }

    /// Found (`present`) or not (`absent`), metadata only.
    fn looked(&mut self, n: &Named, present: bool, absent: bool) {
        for p in n.all() {
            if present {
                self.events.present(p.clone());
            } else if absent {
                self.events.absent(p.clone());
            }
        }
    }

    /// An open that could write, at its exit.
    fn opened(&mut self, n: Named, flags: i32, existed: bool, result: Result<i64, i32>) {
        let errno = result.err().unwrap_or(0);
        if ENOENT_LIKE.contains(&errno) {
            n.all().for_each(|p| self.events.absent(p.clone()));
            return;
        }
        if errno == libc::EEXIST {
            n.all().for_each(|p| self.events.present(p.clone()));
            return;
        }
        if result.is_err() {
            return;
        }
        let created = flags & libc::O_CREAT != 0 && !existed;
        let truncated = flags & libc::O_TRUNC != 0;
        if created {
            self.resolver.forget();
        }
        for p in n.all() {
            let p = p.clone();
            if flags & libc::O_TMPFILE == libc::O_TMPFILE
                || flags & (libc::O_PATH | libc::O_DIRECTORY) != 0
            {
                // O_TMPFILE: an unnamed file in the directory `p`.
                self.events.present(p);
                continue;
            }
            match flags & libc::O_ACCMODE {
                libc::O_RDONLY if !created => self.events.read(p),
                libc::O_RDONLY => self.events.written(p, true, false),
                acc => {
                    if acc == libc::O_RDWR && !created && !truncated {
                        self.events.read(p.clone());
                    }
                    self.events.written(p, created, truncated);
                }
            }
        }
    }

    fn renamed(&mut self, from: Named, to: Named, exchange: bool, ok: bool, absent: bool) {
        if !ok {
            if absent {
                from.all().for_each(|p| self.events.absent(p.clone()));
            }
            return;
        }
        self.resolver.forget();
        let is_dir = std::fs::symlink_metadata(&to.real).is_ok_and(|m| m.is_dir());
        // Within the left-out paths (a build tree), it is none of the
        // log's business.
        let left_out = self.events.excludes(&from.real) && self.events.excludes(&to.real);
        if is_dir && !left_out && !self.events.was_created(&from.real) {
            self.events
                .untraceable(Untraceable::DirectoryRenamed(from.path.clone()));
        }
        let pairs = [(&from.path, &to.path), (&from.real, &to.real)];
        for (i, (a, b)) in pairs.into_iter().enumerate() {
            if i == 1 && from.real == from.path && to.real == to.path {
                break;
            }
            if exchange {
                self.events.exchanged(a.clone(), b.clone());
            } else {
                self.events.renamed(a.clone(), b.clone());
            }
        }
    }

    /// A lookup that does not change the file system (`stat`, `access`,
    /// `readlink`, a read-only `open`), classified at the call's entry by
    /// looking the path up ourselves rather than stopping again at its
    /// exit: half the stops. The tracee is stopped, and memorun has its
    /// credentials and mount namespace, so the answer is the one the call
    /// will get, unless another process changes the path in between. If
    /// that process is traced, its own event orders the facts (a path the
    /// run creates is an output, whatever was probed); if it is not, the
    /// path changed during the run, and the recorded state (absent, or the
    /// content that memorun hashes) no longer matches the file: a miss
    /// next time, never a stale hit.
    ///
    /// Both the path as written and what it reaches are looked at: `stat`
    /// through a symlink looks at its target too.
    fn probe(&mut self, n: Named, follow: bool) {
        match lookup(&n.real, follow) {
            Ok(meta) => {
                // The note is of what the path leads to, as the race guard
                // stats it: not of a link looked at itself.
                let followed = (!meta.file_type().is_symlink()).then_some(&meta);
                for p in n.all() {
                    self.snapshot(p, Look::Stat, followed);
                    self.events.present(p.clone());
                }
            }
            Err(e) if ENOENT_LIKE.contains(&e) => {
                n.all().for_each(|p| self.events.absent(p.clone()));
            }
            Err(_) => {}
        }
    }

    /// A read-only open, classified at entry (see [`Loop::probe`]): the
    /// file reached is read, through whatever links the command made.
    fn open_for_reading(&mut self, n: Named, follow: bool) {
        if self.events.already_read(&n.real) && self.events.already_read(&n.path) {
            return;
        }
        match lookup(&n.real, follow) {
            Ok(meta) => {
                for p in n.all() {
                    self.snapshot(p, Look::Content, Some(&meta));
                    self.events.read(p.clone());
                }
            }
            Err(e) if ENOENT_LIKE.contains(&e) => {
                n.all().for_each(|p| self.events.absent(p.clone()));
            }
            Err(_) => {}
        }
    }

    /// Note what `path` is as the command reaches it (its stat, and, when
    /// the stat is too recent to vouch for what `look` reads, a digest of
    /// the content or of the listing): the race guard tells by it a file
    /// written before the command opened it from one modified while it
    /// ran. `meta` is its stat when already taken (following links).
    fn snapshot(&mut self, path: &Path, look: Look, meta: Option<&std::fs::Metadata>) {
        if let Some(s) = self.events.seen(path)
            && (s.changed || look == Look::Stat || !s.racy() || s.digest.is_some())
        {
            return;
        }
        if self.events.touched(path) || self.events.excludes(path) {
            return;
        }
        let owned;
        let meta = match meta {
            Some(m) => m,
            None => match std::fs::metadata(path) {
                Ok(m) => {
                    owned = m;
                    &owned
                }
                Err(_) => return,
            },
        };
        let mut seen = Seen::of(meta, now_ns());
        if seen.racy() {
            seen.digest = match look {
                Look::Content if meta.is_file() => content_digest(path),
                Look::Listing if meta.is_dir() => listing_digest(path),
                _ => None,
            };
        }
        self.events.see(path, seen);
    }

    fn unreadable(&mut self, yes: bool) {
        if yes {
            self.events.untraceable(Untraceable::UnreadablePath);
        }
    }

    /// `tid` exec'd. With threads, the thread that called execve takes the
    /// thread-group leader's pid: its pending call is under its old tid.
    fn exec(&mut self, tid: i32) {
        let former = event_msg(tid).map_or(tid, |m| m as i32);
        let mut pending = self.procs.get_mut(&former).and_then(|p| p.pending.take());
        if former != tid {
            self.vanished(former);
            if pending.is_none() {
                pending = self.procs.get_mut(&tid).and_then(|p| p.pending.take());
            }
        }
        if let Some(p) = self.procs.get_mut(&tid) {
            p.pending = None;
        }
        if let Some(Pending::Exec(Ok(n))) = pending {
            for p in n.all() {
                self.snapshot(p, Look::Content, None);
                self.events.executed(p.clone());
            }
        } else if let Some(Pending::Exec(Err(()))) = pending {
            self.events.untraceable(Untraceable::UnreadablePath);
        }
        let exe = tracee::exe(tid);
        for lib in tracee::mapped_files(tid, exe.as_deref()) {
            // The dynamic loader, mapped by the kernel.
            self.snapshot(&lib, Look::Content, None);
            self.events.executed(lib);
        }
        if let Some(exe) = exe {
            self.check_privileges(tid, &exe);
            self.snapshot(&exe, Look::Content, None);
            self.events.executed(exe);
        }
        if tid == self.main && !self.started {
            self.started = true;
            let _ = self.tx.send(Report::Started {
                pid: tid,
                pidfd: self.pidfd.take(),
            });
        }
        resume(tid, false, 0);
    }

    /// A set-user-ID, set-group-ID or capable program runs without its
    /// privileges under ptrace (or with no_new_privs): it would not behave
    /// as untraced.
    fn check_privileges(&mut self, tid: i32, exe: &Path) {
        let Ok(meta) = std::fs::metadata(exe) else {
            return;
        };
        let mode = meta.mode();
        let Some((euid, egid, nnp)) = tracee::creds(tid) else {
            return;
        };
        let setuid = mode & libc::S_ISUID != 0 && meta.uid() != euid;
        let setgid = mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0 && meta.gid() != egid;
        let caps = nnp && has_file_caps(exe);
        if setuid || setgid || caps {
            self.events
                .untraceable(Untraceable::Privileged(exe.to_path_buf()));
        }
    }

    /// Kill what escaped the tracer (`CLONE_UNTRACED`): it must not outlive
    /// the run unnoticed.
    fn kill_escaped(&mut self) {
        for fd in self.escaped.drain(..) {
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
        }
    }
}

/// `path`'s stat (following a final symlink when `follow`), or the errno
/// of the lookup.
fn lookup(path: &Path, follow: bool) -> Result<std::fs::Metadata, i32> {
    let r = if follow {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Whether `path` (a descriptor's target) is a terminal: a pseudo-terminal,
/// a virtual console, a serial line, the console.
fn is_terminal(path: &Path) -> bool {
    let b = path.as_os_str().as_bytes();
    b.starts_with(b"/dev/pts/") || b.starts_with(b"/dev/tty") || b == b"/dev/console"
}

fn has_file_caps(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a size query (NULL buffer, size 0) on a NUL-terminated path.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}

const PTRACE_EVENT_STOP: i32 = 128;
const RESOLVE_IN_ROOT: u64 = 0x10;
const RENAME_EXCHANGE: u64 = 2;
const AT_SYMLINK_FOLLOW: u64 = libc::AT_SYMLINK_FOLLOW as u64;
