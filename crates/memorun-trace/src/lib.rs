//! Tracing a command's file-system accesses (Linux, x86_64 and aarch64):
//! which files it read, executed, listed or looked for, and which it
//! wrote, so that files nobody declared can go into the key.
//!
//! The command runs under `ptrace` with a seccomp-BPF filter
//! ([`filter`]) built from the classification of every system call of the
//! architecture ([`syscalls`]): the keyed calls (the `open`, `exec`,
//! `stat`, `access`, `readlink`, directory-read, `rename`/`unlink`/`mkdir`,
//! xattr and metadata families, `truncate`, `chdir`) and the unrecordable
//! ones stop it; the harmless rest runs at full speed. A dedicated thread
//! ([`tracer`]) forks the command, attaches with `PTRACE_SEIZE`, follows
//! every process and thread it starts, and for each stopped call reads the
//! path (resolving it against the caller's working directory or directory
//! descriptor, then through symlinks and `/proc` magic links, [`resolve`])
//! and, where the outcome matters, the result at the call's exit. [`log`]
//! folds those events into a sorted [`TraceLog`], each input with what it
//! was when the command reached it ([`Seen`]).
//!
//! # Guarantees
//!
//! - Fail open, never silently: when tracing cannot start (ptrace refused
//!   by a container or `kernel.yama.ptrace_scope`, memorun itself traced,
//!   no seccomp, another architecture), [`TraceUnavailable`] comes back
//!   *before* the command has run. It never runs untraced under the name
//!   of a traced run.
//! - Fail closed for recording: a run that tracing cannot vouch for says so
//!   in [`TraceLog::untraceable`] and must not be recorded: a set-user-ID,
//!   set-group-ID or file-capability program (it runs without its
//!   privileges when traced, or with `no_new_privs`, so it behaved
//!   differently), a 32-bit or x32 process (other system-call numbers),
//!   an unrecordable call (mounts, `chroot`, `setns`, `io_uring`, handles),
//!   a seccomp filter of its own, a `CLONE_UNTRACED` child, a system-call
//!   number the tables do not know, a stop the tracer cannot attribute, a
//!   tracee lost, a path that could not be read from the tracee.
//! - Traced, the command behaves as untraced: same stdio, exit status,
//!   signals (re-delivered), job control (group-stops are left to
//!   `PTRACE_LISTEN`), process group.
//!
//! # Limits
//!
//! Tracing sees what goes through path-based system calls of the traced
//! processes. It does not see the network, the clock (vDSO calls never
//! enter the kernel), randomness, machine state (`uname`, the CPU set,
//! `/proc` and `/sys` content), other processes' state, files a daemon
//! reads on the command's behalf (a build server, a compiler cache), files
//! reached through a descriptor received over a socket, or a path a
//! command changes in its own memory while the call runs (a race only a
//! hostile program would make). Processes still running when the command
//! is done (daemons that closed its output) are killed: a process whose
//! filter outlives its tracer would fail every file-system call.
//!
//! # A crate of its own
//!
//! memorun's `--trace` uses it through `memorun::exec::trace`; it imports
//! nothing from memorun (digests are BLAKE3 `[u8; 32]`, errors its own
//! [`StartError`] and [`TraceUnavailable`]). It holds the unsafe code that
//! tracing needs, each block with a `SAFETY:` comment: the fork and the
//! child's steps before exec ([`child`], async-signal-safe only), `ptrace`
//! and `waitpid` ([`tracer`]), and reading a stopped tracee's registers
//! and memory ([`tracee`]). No function here is over 100 lines
//! (`clippy::too_many_lines`, threshold in the workspace's `clippy.toml`).

pub mod child;
pub mod filter;
pub mod log;
pub mod resolve;
pub mod syscalls;
pub mod tracee;
pub mod tracer;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

pub use log::{Access, Counts, Exclusions, Seen, TraceLog, TracedPath, Untraceable};
pub use tracer::{StartError, Tracer};

/// How to trace.
#[derive(Debug, Clone, Default)]
pub struct TraceOptions {
    /// Paths never recorded, besides `/proc`, `/sys` and `/dev`: the cache
    /// directory, `--trace-exclude` globs.
    pub exclude: Exclusions,
    /// The command's stdin is a terminal: a read of the terminal (an
    /// answer typed at a prompt) makes the run unrecordable. Reads of
    /// descriptor 0 stop only then.
    pub stdin_terminal: bool,
}

/// Why a command cannot be traced here. The command has not run.
#[derive(Debug)]
pub enum TraceUnavailable {
    /// Not Linux on x86_64 or aarch64.
    Unsupported,
    /// memorun is itself traced or debugged (this process id is its
    /// tracer).
    AlreadyTraced(i32),
    /// `PTRACE_SEIZE` was refused (a container's seccomp profile, Yama's
    /// `ptrace_scope`, a missing capability).
    PtraceRefused(io::Error),
    /// The seccomp filter could not be installed.
    SeccompRefused(io::Error),
    /// The tracer thread could not be started.
    Thread(io::Error),
    /// stdin could not be spooled: such a run is not recorded anyway.
    StdinNotSpooled,
    /// The tracer thread ended before the command started.
    TracerFailed,
}

impl fmt::Display for TraceUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceUnavailable::Unsupported => {
                f.write_str("tracing needs Linux on x86_64 or aarch64")
            }
            TraceUnavailable::AlreadyTraced(pid) => {
                write!(f, "memorun is itself being traced (by process {pid})")
            }
            TraceUnavailable::PtraceRefused(e) => write!(f, "ptrace was refused: {}", io_reason(e)),
            TraceUnavailable::SeccompRefused(e) => {
                write!(f, "a seccomp filter was refused: {}", io_reason(e))
            }
            TraceUnavailable::Thread(e) => {
                write!(f, "cannot start the tracer thread: {}", io_reason(e))
            }
            TraceUnavailable::StdinNotSpooled => f.write_str("stdin could not be spooled"),
            TraceUnavailable::TracerFailed => f.write_str("the tracer ended unexpectedly"),
        }
    }
}

impl std::error::Error for TraceUnavailable {}

/// An I/O error as a short lower-case reason, without the "(os error N)"
/// suffix: "permission denied".
fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.find(" (os error").map_or(s.as_str(), |i| &s[..i]);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What can be checked before anything is forked: the platform, and
/// whether memorun is itself traced (a debugger attached to memorun, or
/// `strace -f`, which would also claim the command).
pub fn preflight() -> Result<(), TraceUnavailable> {
    if filter::native(false).is_none() {
        return Err(TraceUnavailable::Unsupported);
    }
    if let Some(pid) = tracee::own_tracer() {
        return Err(TraceUnavailable::AlreadyTraced(pid));
    }
    Ok(())
}

/// The command to trace and its stdio: each of fds 0, 1 and 2 is the
/// given descriptor, or memorun's own when `None`.
pub struct Spawn<'a> {
    /// The program and its arguments; the program is looked up in `PATH`.
    pub argv: &'a [OsString],
    /// stdin, stdout, stderr.
    pub stdio: [Option<OwnedFd>; 3],
    /// Run it in a process group of its own.
    pub own_group: bool,
    /// An environment variable left out of the command's environment.
    pub env_remove: Option<&'a str>,
}

/// Start `spawn` traced; it has exec'd when this returns.
pub fn start(spawn: Spawn<'_>, options: &TraceOptions) -> Result<Tracer, StartError> {
    preflight().map_err(StartError::Unavailable)?;
    let (_, program) = filter::native(options.stdin_terminal)
        .ok_or(StartError::Unavailable(TraceUnavailable::Unsupported))?;
    let mut spec = child::Spec::new(spawn.argv, spawn.env_remove.unwrap_or(""), program)
        .map_err(StartError::Spawn)?;
    spec.stdio = spawn.stdio;
    spec.own_group = spawn.own_group;
    Tracer::start(spec, options.exclude.clone())
}

/// A traced run to its end.
#[derive(Debug)]
pub struct Traced {
    /// How the command ended.
    pub status: ExitStatus,
    /// What it did to the file system.
    pub log: TraceLog,
}

/// Run `spawn` traced to its end: the blocking form of [`start`],
/// [`Tracer::wait`] and [`Tracer::finish`].
pub fn run(spawn: Spawn<'_>, options: &TraceOptions) -> Result<Traced, StartError> {
    let mut tracer = start(spawn, options)?;
    let status = tracer
        .wait()
        .map_err(|_| StartError::Unavailable(TraceUnavailable::TracerFailed))?;
    Ok(Traced {
        status: ExitStatus::from_raw(status),
        log: tracer.finish(),
    })
}

#[cfg(test)]
mod tests;
