//! Starting the traced command: everything it needs is prepared before
//! `fork`, and the child runs only async-signal-safe system calls until it
//! execs (memorun has other threads, whose locks a forked child must not
//! touch).
//!
//! The child, in order: its stdin, stdout and stderr; its own process group
//! when asked; the signal mask emptied and SIGPIPE back to its default (as
//! `std::process::Command` does); then it waits for the tracer to have
//! attached (`PTRACE_SEIZE`, one byte on the `go` pipe), installs the
//! seccomp filter (with `no_new_privs` when it lacks `CAP_SYS_ADMIN`), and
//! execs. The filter must come after the tracer: with a filter that says
//! "trace" and no tracer, every file-system call would fail with `ENOSYS`.
//!
//! A failure before the exec is reported on the `report` pipe as one tag
//! byte and the errno ([`TAG_SECCOMP`], [`TAG_EXEC`]), then the child
//! exits 127. Both pipes are close-on-exec.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// The seccomp filter could not be installed (`errno` follows).
pub const TAG_SECCOMP: u8 = b'S';
/// The exec failed (`errno` follows).
pub const TAG_EXEC: u8 = b'E';

/// What the child will run, prepared before the fork.
pub struct Spec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Descriptors for fds 0, 1 and 2; `None` inherits memorun's.
    pub stdio: [Option<OwnedFd>; 3],
    /// Put the command in a process group of its own.
    pub own_group: bool,
    filter: Vec<libc::sock_filter>,
}

impl Spec {
    /// The command `argv` with memorun's environment minus `env_remove`,
    /// filtered by `filter`. Fails (as `Command::spawn` would) on a NUL
    /// byte in an argument.
    pub fn new(
        argv: &[OsString],
        env_remove: &str,
        filter: Vec<libc::sock_filter>,
    ) -> io::Result<Spec> {
        let nul = |_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "nul byte found in provided data",
            )
        };
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(nul))
            .collect::<io::Result<_>>()?;
        let program = argv
            .first()
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command line"))?;
        let envp = std::env::vars_os()
            .filter(|(k, _)| k != env_remove)
            .filter_map(|(k, v)| {
                let mut kv = k.into_encoded_bytes();
                kv.push(b'=');
                kv.extend_from_slice(v.as_encoded_bytes());
                CString::new(kv).ok()
            })
            .collect();
        Ok(Spec {
            program,
            argv,
            envp,
            stdio: [None, None, None],
            own_group: false,
            filter,
        })
    }
}

/// A forked child, stopped before its exec until [`Forked::release`].
pub struct Forked {
    /// Its pid.
    pub pid: i32,
    go: Option<OwnedFd>,
    /// Where the child reports a failure before exec (non-blocking).
    pub report: OwnedFd,
}

impl Forked {
    /// Let the child go on to install its filter and exec (`ok`), or make
    /// it exit 127 without running anything.
    pub fn release(&mut self, ok: bool) {
        if let Some(go) = self.go.take() {
            let _ = rustix::io::write(&go, &[u8::from(ok)]);
        }
    }

    /// What the child reported before it exited, if it did not exec:
    /// `(tag, errno)`.
    pub fn failure(&self) -> Option<(u8, i32)> {
        let mut buf = [0u8; 5];
        match rustix::io::read(&self.report, &mut buf) {
            Ok(5) => Some((buf[0], i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]))),
            _ => None,
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Fork the child. The parent's copies of `spec.stdio` are closed when
/// `spec` is dropped by the caller.
pub fn fork(spec: &Spec) -> io::Result<Forked> {
    let (go_r, go_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    rustix::fs::fcntl_setfl(&report_r, rustix::fs::OFlags::NONBLOCK)?;
    let mut argv: Vec<*const libc::c_char> = spec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = spec.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let prog = libc::sock_fprog {
        len: spec.filter.len() as u16,
        filter: spec.filter.as_ptr().cast_mut(),
    };
    let stdio: [RawFd; 3] =
        std::array::from_fn(|i| spec.stdio[i].as_ref().map_or(-1, |fd| fd.as_raw_fd()));
    // SAFETY: fork(2) in a multi-threaded process: the child below calls
    // only async-signal-safe functions (dup2, fcntl, setpgid, sigprocmask,
    // signal, read, write, prctl, syscall, execvpe, _exit) on memory
    // prepared before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child; see `child_main`.
        unsafe {
            child_main(
                &stdio,
                spec.own_group,
                go_r.as_raw_fd(),
                report_w.as_raw_fd(),
                spec.program.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                &prog,
            )
        }
    }
    drop((go_r, report_w));
    Ok(Forked {
        pid,
        go: Some(go_w),
        report: report_r,
    })
}

/// Report `tag` and errno on `report`, then exit 127.
///
/// # Safety
/// Only in the forked child.
unsafe fn fail(report: RawFd, tag: u8, errno: i32) -> ! {
    let e = errno.to_ne_bytes();
    let msg = [tag, e[0], e[1], e[2], e[3]];
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is ours.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The child between fork and exec.
///
/// # Safety
/// Only in the child of `fork`, with pointers into memory prepared before
/// the fork (NUL-terminated strings, NULL-terminated arrays).
#[allow(clippy::too_many_arguments)]
unsafe fn child_main(
    stdio: &[RawFd; 3],
    own_group: bool,
    go: RawFd,
    report: RawFd,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    prog: &libc::sock_fprog,
) -> ! {
    // SAFETY: each call below is an async-signal-safe system call wrapper
    // on descriptors and memory that exist in the child.
    unsafe {
        for (target, &fd) in stdio.iter().enumerate() {
            if fd < 0 {
                continue;
            }
            let target = target as RawFd;
            let ok = if fd == target {
                // dup2 onto itself would keep close-on-exec.
                libc::fcntl(fd, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, target) == target
            };
            if !ok {
                fail(report, TAG_EXEC, errno());
            }
        }
        if own_group && libc::setpgid(0, 0) != 0 {
            fail(report, TAG_EXEC, errno());
        }
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
        // Rust ignores SIGPIPE; the command gets the default, as with std.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);

        // Wait for the tracer.
        let mut b = 0u8;
        loop {
            let n = libc::read(go, (&mut b as *mut u8).cast(), 1);
            if n == 1 && b == 1 {
                break;
            }
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            // The tracer gave up (or died): run nothing.
            libc::_exit(127);
        }

        let install = || {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                prog as *const libc::sock_fprog,
            )
        };
        if install() != 0 {
            // Without CAP_SYS_ADMIN a filter needs no_new_privs.
            if errno() != libc::EACCES
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || install() != 0
            {
                fail(report, TAG_SECCOMP, errno());
            }
        }
        libc::execvpe(program, argv, envp);
        fail(report, TAG_EXEC, errno())
    }
}

/// Kill and reap a child that will not be traced.
pub fn abandon(forked: &mut Forked) {
    forked.release(false);
    // SAFETY: kill and waitpid on our own unreaped child.
    unsafe {
        libc::kill(forked.pid, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(forked.pid, &mut status, libc::__WALL) < 0 && errno() == libc::EINTR {}
    }
}

/// A borrowed descriptor as an owned duplicate, for [`Spec::stdio`].
pub fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}
