//! Running the command: spawn it, stream its output live, and record it.
//!
//! On a miss the command's stdout and stderr are pipes that one `poll(2)`
//! loop drains. Each chunk is written to memorun's own stdout or stderr as
//! soon as it arrives (no line buffering, no added delay) and handed to the
//! [`Recorder`], which keeps the order of the chunks. Nothing holds a whole
//! output in memory.
//!
//! Signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT): before the command starts,
//! for instance while waiting for a concurrent run of the same key, one
//! ends memorun at once with 128+N: nothing has run, nothing is recorded.
//! While the command runs they are forwarded to it, and memorun outlives
//! them to report its fate: a command killed by signal N makes memorun exit
//! 128+N, and such a run is never recorded.
//!
//! The command runs in a process group of its own, so that a signal sent to
//! memorun alone (by a CI runner, a build tool, `kill PID`) reaches the
//! whole job, `sh -c 'sleep 30; ...'` included, as `timeout(1)` and `tini`
//! do it. Except when memorun has a controlling terminal: there the command
//! stays in memorun's group, the job the shell controls. Only the terminal's
//! foreground group may read it (another group gets SIGTTIN and stops, and
//! `fg` would resume memorun's group, not the command's), and Ctrl-C,
//! `Ctrl-\` and Ctrl-Z go to the whole foreground group, command included.
//! Handing the terminal to the command's group instead (`tcsetpgrp`) would
//! make memorun a job-control shell, stopping and resuming itself with the
//! command. At a terminal, the shell signals the whole job anyway (Ctrl-C,
//! `kill %1`).
//!
//! [`run_captured_traced`] is the same run under the tracer of
//! [`crate::exec::trace`]: the tracer thread forks and reaps the command,
//! this thread streams its output exactly as above and learns its status
//! from the tracer.

use std::ffi::OsString;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::io::Errno;
use rustix::process::{Pid, Signal};

use crate::exec::trace::{self, StartError, TraceLog, TraceOptions, TraceUnavailable};
use crate::exit_codes;
use crate::key::stdin::Feed;
use crate::replay::interleaving::{Recorder, Recording, Stream};
use crate::term::output::{self, Fd};
use crate::term::progress::{self, Spinner};

/// Size of the pipes between the command and memorun, when the kernel allows.
const PIPE_SIZE: usize = 1024 * 1024;
/// Read buffer for the command's output.
const READ_BUF: usize = 256 * 1024;
/// Reads per pipe, at most, once the command was interrupted and has
/// exited: more than both pipes hold, so only a stray process that keeps
/// writing is cut short.
const LAST_READS: u32 = 16;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl Status {
    fn from_exit(status: ExitStatus) -> Status {
        match (status.code(), status.signal()) {
            (Some(code), _) => Status::Exited(code),
            (None, Some(sig)) => Status::Signaled(sig),
            (None, None) => Status::Exited(exit_codes::MEMORUN_ERROR),
        }
    }

    /// The exit code memorun should end with.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Exited(code) => code,
            Status::Signaled(sig) => exit_codes::for_signal(sig),
        }
    }
}

/// The command could not be started.
#[derive(Debug)]
pub struct SpawnError {
    /// The program as given.
    pub program: String,
    /// Why.
    pub error: io::Error,
}

impl SpawnError {
    /// 127 when the program was not found, 126 when it could not be run.
    pub fn exit_code(&self) -> i32 {
        if self.error.kind() == io::ErrorKind::NotFound {
            exit_codes::NOT_FOUND
        } else {
            exit_codes::CANNOT_EXECUTE
        }
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.error.kind() == io::ErrorKind::NotFound {
            write!(f, "command not found: '{}'", self.program)
        } else {
            write!(
                f,
                "cannot execute '{}': {}",
                self.program,
                crate::term::format::io_reason(&self.error)
            )
        }
    }
}

impl std::error::Error for SpawnError {}

/// What happened during a captured run.
pub struct Outcome {
    /// How the command ended.
    pub status: Status,
    /// Wall time from spawn to exit.
    pub duration: Duration,
    /// The recorded streams, unless recording was off or failed.
    pub recording: Option<Recording>,
    /// Why recording failed part-way (for instance a full disk).
    pub record_error: Option<io::Error>,
    /// Some output could not be delivered (the reader went away, or writing
    /// failed), so the result must not be recorded.
    pub delivery_failed: bool,
    /// The reader of memorun's stdout or stderr went away: memorun was
    /// writing into a broken pipe, as `cat` would be.
    pub reader_gone: bool,
    /// memorun was sent an interrupting signal while the command ran.
    pub interrupted: bool,
}

/// What the signal handlers act on: [`NOT_STARTED`], [`SPAWNING`],
/// [`FINISHED`], or the pid of the running command.
static CHILD: AtomicI32 = AtomicI32::new(NOT_STARTED);
/// No command started yet: a signal ends memorun at once.
const NOT_STARTED: i32 = 0;
/// The command is being spawned: a signal waits in [`PENDING`] until its
/// pid is known, then is forwarded.
const SPAWNING: i32 = -1;
/// The command has ended: a signal is only noted in [`INTERRUPTED`].
const FINISHED: i32 = -2;

/// A signal that arrived while spawning, with [`SENT`] when it was sent
/// with kill(2) rather than by the terminal; 0 when none.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// Flag in [`PENDING`]: the signal came from kill(2) or sigqueue(3).
const SENT: i32 = 1 << 16;

/// The command leads its own process group: forward signals to the group.
static OWN_GROUP: AtomicBool = AtomicBool::new(false);

/// Set when memorun received SIGINT, SIGTERM, SIGHUP or SIGQUIT while the
/// command ran: a command that traps the signal and exits 0 has still been
/// interrupted, and its result must not be recorded.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Survive `RLIMIT_FSIZE`: with a handler for SIGXFSZ (instead of its
/// default action, which kills the process) a write past the limit fails
/// with `EFBIG`, which the store treats as "cannot record". A handler, not
/// SIG_IGN, so that commands run with the default action restored.
pub fn survive_file_size_limit() {
    // The flag is never read: what matters is that SIGXFSZ has a handler.
    let _ = signal_hook::flag::register(Signal::XFSZ.as_raw(), Arc::new(AtomicBool::new(false)));
}

/// From now until the command is spawned, SIGINT, SIGTERM, SIGHUP and
/// SIGQUIT end memorun at once with 128+N. Called before blocking on a
/// lock: the wait must not outlast the user's Ctrl-C (a blocking `flock`
/// restarted after a handler that only sets a flag never would).
pub fn end_on_signal_until_spawn() {
    install_signal_handlers();
}

/// Install the signal handlers once per process.
fn install_signal_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in [Signal::TERM, Signal::HUP, Signal::INT, Signal::QUIT] {
            let sig = sig.as_raw();
            // SAFETY: the handler only touches atomics and calls kill(2)
            // (rustix's, a bare system call) and _exit(2) (signal-hook's),
            // all async-signal-safe; it allocates nothing. Unlike SIG_IGN,
            // a handler is reset to the default action in the command at
            // exec.
            #[allow(unsafe_code)]
            let _ = unsafe {
                signal_hook_registry::register_sigaction(sig, move |info: &libc::siginfo_t| {
                    on_signal(sig, info)
                })
            };
        }
    });
}

/// The signal handler: only async-signal-safe calls.
fn on_signal(sig: i32, info: &libc::siginfo_t) {
    let sent = matches!(info.si_code, libc::SI_USER | libc::SI_QUEUE);
    match CHILD.load(Ordering::SeqCst) {
        NOT_STARTED => {
            // Nothing ran, and nothing is held that the kernel does not
            // release: end now, as the signal asked.
            // _exit(2): no atexit handlers, no flushing; async-signal-safe.
            signal_hook::low_level::exit(exit_codes::for_signal(sig))
        }
        SPAWNING => {
            INTERRUPTED.store(true, Ordering::SeqCst);
            PENDING.store(sig | if sent { SENT } else { 0 }, Ordering::SeqCst);
            // The spawner may have stored the pid, and found PENDING still
            // empty, since our first load: then forwarding is ours to do.
            let pid = CHILD.load(Ordering::SeqCst);
            if pid > 0 {
                forward_pending(pid);
            }
        }
        FINISHED => INTERRUPTED.store(true, Ordering::SeqCst),
        pid => {
            INTERRUPTED.store(true, Ordering::SeqCst);
            forward(pid, sig, sent);
        }
    }
}

/// Forward the signal that arrived while spawning, if any is left.
fn forward_pending(pid: i32) {
    let p = PENDING.swap(0, Ordering::SeqCst);
    if p != 0 {
        forward(pid, p & !SENT, p & SENT != 0);
    }
}

/// Pass `sig` on to the command `pid` (async-signal-safe).
fn forward(pid: i32, sig: i32, sent: bool) {
    let (Some(pid), Some(sig)) = (Pid::from_raw(pid), Signal::from_named_raw(sig)) else {
        return;
    };
    if OWN_GROUP.load(Ordering::SeqCst) {
        // No terminal signals the command's group: forward everything.
        let _ = rustix::process::kill_process_group(pid, sig);
    } else if matches!(sig, Signal::TERM | Signal::HUP) || sent {
        // SIGINT and SIGQUIT typed at the terminal already reach the command
        // (same process group): forward only what was sent to memorun alone.
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Whether memorun has a controlling terminal (see the module comment):
/// /dev/tty opens only then. Non-blocking: the open of a serial line may
/// otherwise wait for its carrier.
fn has_terminal() -> bool {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open("/dev/tty")
        .is_ok()
}

fn command(argv: &[OsString]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_remove(crate::exec::refresh::REFRESH_KEY_VAR);
    cmd
}

fn spawn(mut cmd: Command, argv: &[OsString]) -> Result<Child, SpawnError> {
    let own_group = !has_terminal();
    if own_group {
        cmd.process_group(0);
    }
    OWN_GROUP.store(own_group, Ordering::SeqCst);
    CHILD.store(SPAWNING, Ordering::SeqCst);
    install_signal_handlers();
    let child = cmd.spawn().map_err(|error| {
        CHILD.store(FINISHED, Ordering::SeqCst);
        SpawnError {
            program: argv[0].to_string_lossy().into_owned(),
            error,
        }
    })?;
    let pid = child.id() as i32;
    CHILD.store(pid, Ordering::SeqCst);
    forward_pending(pid);
    Ok(child)
}

fn wait(child: &mut Child) -> io::Result<Status> {
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    CHILD.store(FINISHED, Ordering::SeqCst);
    Ok(Status::from_exit(status))
}

fn stdin_of(argv: &[OsString], feed: Feed) -> Result<(Stdio, Option<JoinHandle<()>>), SpawnError> {
    feed.into_stdio().map_err(|error| SpawnError {
        program: argv[0].to_string_lossy().into_owned(),
        error,
    })
}

/// Run the command with memorun's own stdout and stderr: no capture, no
/// recording. `stdin` is what it reads.
pub fn run_plain(argv: &[OsString], stdin: Feed) -> Result<Status, SpawnError> {
    let mut cmd = command(argv);
    // The pump thread, if any, ends with the process.
    let (stdin, _pump) = stdin_of(argv, stdin)?;
    cmd.stdin(stdin);
    let mut child = spawn(cmd, argv)?;
    wait(&mut child).map_err(|error| SpawnError {
        program: argv[0].to_string_lossy().into_owned(),
        error,
    })
}

/// One of the command's output pipes, as seen from memorun.
struct Pipe {
    fd: Option<OwnedFd>,
    stream: Stream,
    to: Fd,
    /// Our own stdout or stderr failed: drain, but do not forward.
    forwarding: bool,
}

/// Run the command with its output captured: stream it live and, when a
/// recorder is given, record it.
pub fn run_captured(
    argv: &[OsString],
    stdin: Feed,
    recorder: Option<Recorder>,
    spinner: Option<Spinner>,
) -> Result<Outcome, SpawnError> {
    let mut cmd = command(argv);
    let (stdin, _pump) = stdin_of(argv, stdin)?;
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = spawn(cmd, argv)?;
    let out: OwnedFd = child.stdout.take().expect("piped stdout").into();
    let err: OwnedFd = child.stderr.take().expect("piped stderr").into();
    // Readable when the command has exited (Linux 5.3 and later).
    let pidfd = rustix::process::pidfd_open(
        Pid::from_child(&child),
        rustix::process::PidfdFlags::empty(),
    )
    .ok();
    let streamed = stream(out, err, pidfd, recorder, spinner);
    let status = wait(&mut child).map_err(|error| SpawnError {
        program: argv[0].to_string_lossy().into_owned(),
        error,
    })?;
    Ok(streamed.outcome(status, start.elapsed()))
}

/// A traced run that did not happen.
pub enum TracedError {
    /// Tracing is not possible here, and the command has not run:
    /// everything the run needs is handed back, so that the caller can warn
    /// once and run it untraced (and so uncached).
    NotTraced(Box<NotTraced>),
    /// The command could not be started (126, 127), as it would fail
    /// untraced.
    Spawn(SpawnError),
}

/// Why a command was not traced, and what it still needs to run.
pub struct NotTraced {
    /// Why.
    pub reason: TraceUnavailable,
    /// Its stdin, untouched. (The recorder and spinner it was given are
    /// dropped unused: an untraced run is not recorded, and the spinner
    /// had not started.)
    pub stdin: Feed,
}

/// [`run_captured`] with the command traced ([`trace`]): the same output
/// streaming and recording, signal forwarding, process group and exit
/// status, plus the [`TraceLog`] of its file-system accesses.
///
/// The command is forked by the tracer thread, which also reaps it; this
/// thread drains the pipes and learns its status from the tracer. When
/// tracing cannot start, nothing has run and [`TracedError::NotTraced`]
/// gives back what an untraced run needs. A stdin that could not be
/// spooled ([`Feed::Pump`]) is not traced: such a run is not recorded
/// anyway.
pub fn run_captured_traced(
    argv: &[OsString],
    stdin: Feed,
    recorder: Option<Recorder>,
    spinner: Option<Spinner>,
    options: &TraceOptions,
) -> Result<(Outcome, TraceLog), TracedError> {
    let not_traced = |reason, stdin, _: Option<Recorder>, _: Option<Spinner>| {
        Err(TracedError::NotTraced(Box::new(NotTraced {
            reason,
            stdin,
        })))
    };
    let spawn_error = |error| {
        TracedError::Spawn(SpawnError {
            program: argv[0].to_string_lossy().into_owned(),
            error,
        })
    };
    if let Err(reason) = trace::preflight() {
        return not_traced(reason, stdin, recorder, spinner);
    }
    let stdin_fd = match &stdin {
        Feed::Inherit => None,
        // A copy for the child: the Feed itself goes back to the caller
        // if tracing fails, still at offset 0.
        Feed::File(f) => Some(
            std::os::fd::AsFd::as_fd(f)
                .try_clone_to_owned()
                .map_err(spawn_error)?,
        ),
        Feed::Pump { .. } => {
            return not_traced(TraceUnavailable::StdinNotSpooled, stdin, recorder, spinner);
        }
    };
    let (out_r, out_w) = io::pipe().map_err(spawn_error)?;
    let (err_r, err_w) = io::pipe().map_err(spawn_error)?;
    let own_group = !has_terminal();
    OWN_GROUP.store(own_group, Ordering::SeqCst);
    CHILD.store(SPAWNING, Ordering::SeqCst);
    install_signal_handlers();
    let start = Instant::now();
    let spawn = trace::Spawn {
        argv,
        stdio: [stdin_fd, Some(out_w.into()), Some(err_w.into())],
        own_group,
        env_remove: Some(crate::exec::refresh::REFRESH_KEY_VAR),
    };
    let mut tracer = match trace::start(spawn, options) {
        Ok(t) => t,
        Err(StartError::Unavailable(reason)) => {
            // Nothing ran: back to "a signal ends memorun at once"; one
            // that came meanwhile is forwarded to the untraced run.
            CHILD.store(NOT_STARTED, Ordering::SeqCst);
            return not_traced(reason, stdin, recorder, spinner);
        }
        Err(StartError::Spawn(error)) => {
            CHILD.store(FINISHED, Ordering::SeqCst);
            return Err(spawn_error(error));
        }
    };
    drop(stdin);
    let pid = tracer.pid();
    CHILD.store(pid, Ordering::SeqCst);
    forward_pending(pid);
    let pidfd = tracer.take_pidfd();
    let streamed = stream(out_r.into(), err_r.into(), pidfd, recorder, spinner);
    let status = tracer.wait();
    CHILD.store(FINISHED, Ordering::SeqCst);
    let status = Status::from_exit(ExitStatus::from_raw(status.map_err(spawn_error)?));
    let duration = start.elapsed();
    let log = tracer.finish();
    Ok((streamed.outcome(status, duration), log))
}

/// What [`stream`] saw, before the command's status is known.
struct Streamed {
    recorder: Option<Recorder>,
    record_error: Option<io::Error>,
    delivery_failed: bool,
    reader_gone: bool,
}

impl Streamed {
    fn outcome(self, status: Status, duration: Duration) -> Outcome {
        let mut record_error = self.record_error;
        let recording = match self.recorder.map(Recorder::finish).transpose() {
            Ok(r) => r,
            Err(e) => {
                record_error = Some(e);
                None
            }
        };
        Outcome {
            status,
            duration,
            recording,
            record_error,
            delivery_failed: self.delivery_failed,
            reader_gone: self.reader_gone,
            interrupted: INTERRUPTED.load(Ordering::SeqCst),
        }
    }
}

/// Drain the command's stdout and stderr through one `poll` loop until
/// both are closed (or, once the command was interrupted and has exited,
/// until they are empty): each chunk to memorun's own stdout or stderr at
/// once, and to the recorder. `pidfd` says when the command has exited.
fn stream(
    out: OwnedFd,
    err: OwnedFd,
    pidfd: Option<OwnedFd>,
    recorder: Option<Recorder>,
    spinner: Option<Spinner>,
) -> Streamed {
    let mut s = Streaming::new(out, err, recorder, spinner);
    let mut exited = false;
    let mut last_reads = 0;
    while s.pipes.iter().any(|p| p.fd.is_some()) {
        // The command has exited after memorun forwarded it a terminating
        // signal: take what is in the pipes now and stop, rather than wait
        // for a process that left its group and still holds them open.
        let last_pass = exited && INTERRUPTED.load(Ordering::SeqCst);
        // The pidfd is watched until the command has exited.
        let (ready, r) = match s.poll(pidfd.as_ref().filter(|_| !exited), last_pass) {
            Ok(polled) => polled,
            Err(Errno::INTR) => continue,
            // poll cannot fail this way with valid arguments; stop capturing
            // rather than spin, and let the command finish on its own.
            Err(_) => {
                s.streamed.delivery_failed = true;
                break;
            }
        };
        if last_pass {
            last_reads += 1;
            if r == 0 || last_reads > LAST_READS {
                break;
            }
        }
        exited |= ready[2];
        for (i, ready) in ready.into_iter().take(2).enumerate() {
            if ready {
                s.drain(i);
            }
        }
    }
    s.finish()
}

/// The state of [`stream`]'s loop: the two pipes, the read buffer, the
/// spinner, and what is streamed so far.
struct Streaming {
    /// The command's stdout and stderr, in that order.
    pipes: [Pipe; 2],
    buf: Vec<u8>,
    spinner: Option<Spinner>,
    streamed: Streamed,
}

impl Streaming {
    fn new(
        out: OwnedFd,
        err: OwnedFd,
        recorder: Option<Recorder>,
        spinner: Option<Spinner>,
    ) -> Streaming {
        let pipes = [
            Pipe {
                fd: Some(out),
                stream: Stream::Stdout,
                to: output::STDOUT,
                forwarding: true,
            },
            Pipe {
                fd: Some(err),
                stream: Stream::Stderr,
                to: output::STDERR,
                forwarding: true,
            },
        ];
        for fd in pipes.iter().flat_map(|p| &p.fd) {
            // Failure is harmless: the pipe keeps its default size.
            let _ = rustix::pipe::fcntl_setpipe_size(fd, PIPE_SIZE);
        }
        Streaming {
            pipes,
            buf: vec![0u8; READ_BUF],
            spinner,
            streamed: Streamed {
                recorder,
                record_error: None,
                delivery_failed: false,
                reader_gone: false,
            },
        }
    }

    /// Wait until stdout, stderr or `pidfd` is readable (at once on the
    /// last pass; at most a tick while a spinner shows, which it advances):
    /// which of the three are, and how many descriptors poll(2) counted.
    fn poll(
        &mut self,
        pidfd: Option<&OwnedFd>,
        last_pass: bool,
    ) -> Result<([bool; 3], usize), Errno> {
        let timeout = match &mut self.spinner {
            _ if last_pass => Some(Timespec::default()),
            Some(s) => {
                s.tick();
                Some(Timespec::try_from(progress::TICK).expect("a short tick"))
            }
            None => None,
        };
        let watched = [self.pipes[0].fd.as_ref(), self.pipes[1].fd.as_ref(), pidfd];
        let mut pfds: Vec<PollFd<'_>> = watched
            .iter()
            .flatten()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        let r = rustix::event::poll(&mut pfds, timeout.as_ref())?;
        let mut ready = [false; 3];
        let mut revents = pfds.iter().map(|p| !p.revents().is_empty());
        for (ready, fd) in ready.iter_mut().zip(&watched) {
            if fd.is_some() {
                *ready = revents.next().unwrap_or(false);
            }
        }
        Ok((ready, r))
    }

    /// Read what pipe `i` holds and pass it on: to memorun's own stdout or
    /// stderr (while that works), and to the recorder.
    fn drain(&mut self, i: usize) {
        let p = &mut self.pipes[i];
        let streamed = &mut self.streamed;
        let Some(fd) = &p.fd else { return };
        let n = match rustix::io::read(fd, &mut self.buf[..]) {
            Ok(0) => {
                p.fd = None;
                return;
            }
            Ok(n) => n,
            Err(Errno::INTR | Errno::AGAIN) => return,
            Err(_) => {
                p.fd = None;
                streamed.delivery_failed = true;
                return;
            }
        };
        let chunk = &self.buf[..n];
        let to = p.to;
        let written = match (&mut self.spinner, p.forwarding) {
            (_, false) => Ok(()),
            (Some(s), true) => s.write(p.stream as usize, chunk, || to.write_all(chunk)),
            (None, true) => to.write_all(chunk),
        };
        if let Err(e) = written {
            p.forwarding = false;
            streamed.delivery_failed = true;
            if output::is_broken_pipe(&e) {
                // Our reader went away: close the command's pipe so that
                // it sees the broken pipe too, as it would have without
                // memorun in between.
                streamed.reader_gone = true;
                p.fd = None;
                return;
            }
        }
        if let Some(rec) = &mut streamed.recorder
            && let Err(e) = rec.chunk(p.stream, chunk)
        {
            streamed.recorder = None;
            streamed.record_error = Some(e);
        }
    }

    /// The pipes closed and the spinner cleared: what was streamed.
    fn finish(self) -> Streamed {
        let Streaming {
            pipes,
            spinner,
            streamed,
            ..
        } = self;
        drop(pipes);
        if let Some(s) = spinner {
            s.finish();
        }
        streamed
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::store::blobs::{Spool, Spooled, SpooledData};

    fn recorder(dir: &std::path::Path) -> Recorder {
        let spool = || Spool::new(dir.to_path_buf());
        Recorder::new(spool(), spool(), spool())
    }

    fn bytes(s: &Spooled) -> &[u8] {
        match &s.data {
            SpooledData::Inline(v) => v,
            SpooledData::Temp(_) => panic!("a short output is inline"),
        }
    }

    fn argv(script: &str) -> Vec<OsString> {
        ["sh", "-c", script].iter().map(OsString::from).collect()
    }

    fn traced(argv: &[OsString], stdin: Feed, dir: &std::path::Path) -> (Outcome, TraceLog) {
        match run_captured_traced(
            argv,
            stdin,
            Some(recorder(dir)),
            None,
            &TraceOptions::default(),
        ) {
            Ok(r) => r,
            Err(TracedError::NotTraced(n)) => panic!("not traced: {}", n.reason),
            Err(TracedError::Spawn(e)) => panic!("{e}"),
        }
    }

    /// The spawn statics (the pid signals go to) are per process: one
    /// test runs every case in turn.
    #[test]
    fn a_traced_run_streams_records_and_ends_as_an_untraced_one() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input");
        std::fs::write(&input, "trace-test input\n").unwrap();
        let script = format!(
            "cat '{}'; printf 'trace-test stderr\\n' >&2; printf 'trace-test again\\n'; exit 7",
            input.display()
        );
        for (script, status) in [
            (script.as_str(), Status::Exited(7)),
            ("kill -TERM $$; sleep 5", Status::Signaled(libc::SIGTERM)),
        ] {
            let argv = argv(script);
            let plain = run_captured(&argv, Feed::Inherit, Some(recorder(tmp.path())), None)
                .unwrap_or_else(|e| panic!("{e}"));
            let (outcome, log) = traced(&argv, Feed::Inherit, tmp.path());
            assert_eq!(plain.status, status);
            assert_eq!(outcome.status, status);
            let (a, b) = (plain.recording.unwrap(), outcome.recording.unwrap());
            assert_eq!(bytes(&a.stdout), bytes(&b.stdout));
            assert_eq!(bytes(&a.stderr), bytes(&b.stderr));
            // The interleaving is as the poll loop saw it: two runs of the
            // same command, traced or not, may see two writes to the two
            // pipes at once and order them differently. That it is
            // consistent is what counts.
            assert!(
                crate::replay::interleaving::validate(bytes(&b.order), b.stdout.len, b.stderr.len)
                    .unwrap()
            );
            assert!(!outcome.delivery_failed && !outcome.interrupted);
            assert_eq!(log.untraceable, None);
            if status == Status::Exited(7) {
                assert_eq!(bytes(&b.stdout), b"trace-test input\ntrace-test again\n");
                assert!(log.get(&input.canonicalize().unwrap()).is_some());
            }
        }

        // stdin from a spooled file reaches the command.
        let mut spooled = tempfile::tempfile().unwrap();
        spooled.write_all(b"from stdin\n").unwrap();
        std::io::Seek::rewind(&mut spooled).unwrap();
        let (outcome, _) = traced(&argv("cat"), Feed::File(spooled), tmp.path());
        assert_eq!(bytes(&outcome.recording.unwrap().stdout), b"from stdin\n");

        // A missing program is 127, as untraced.
        match run_captured_traced(
            &[OsString::from("memorun-no-such-program")],
            Feed::Inherit,
            None,
            None,
            &TraceOptions::default(),
        ) {
            Err(TracedError::Spawn(e)) => assert_eq!(e.exit_code(), exit_codes::NOT_FOUND),
            _ => panic!("expected a spawn error"),
        }
    }
}
