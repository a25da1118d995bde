//! The tracer (`memorun_trace`) from outside the process that runs
//! it: when that process is killed with SIGKILL mid-trace, no traced
//! process is left stopped, or running with a filter and no tracer.
//!
//! The tracing process is this test binary itself, re-run on
//! [`tracer_process`] with `MEMORUN_TEST_TRACER_PIDFILE` set. The engine's own tests (what it records, exit codes, signals,
//! stdin, job control) are unit tests in `src/tests.rs`.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memorun_trace::{self as trace, Spawn, TraceOptions};

const PIDFILE_VAR: &str = "MEMORUN_TEST_TRACER_PIDFILE";

/// The state letter of `pid` (`R`, `S`, `t`, `Z`...), `None` once gone.
fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn tracer_pid(pid: i32) -> Option<i32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The helper half of [`killing_the_tracer_leaves_no_traced_process_behind`],
/// run as that test's child (it returns at once otherwise). Traces a
/// shell that writes its pid and then sleeps, and never returns.
#[test]
#[ignore = "a helper process, run by killing_the_tracer_leaves_no_traced_process_behind"]
fn tracer_process() {
    let Some(pidfile) = std::env::var_os(PIDFILE_VAR) else {
        return;
    };
    let script = format!(
        "echo $$ > '{}'; exec sleep 60",
        Path::new(&pidfile).display()
    );
    let argv: Vec<OsString> = ["sh", "-c", &script].iter().map(OsString::from).collect();
    let spawn = Spawn {
        argv: &argv,
        stdio: [None, None, None],
        own_group: true,
        env_remove: None,
    };
    let _ = trace::run(spawn, &TraceOptions::default());
    panic!("the traced sleep ended before the test killed its tracer");
}

#[test]
fn killing_the_tracer_leaves_no_traced_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut tracer = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tracer_process", "--ignored", "--nocapture"])
        .env(PIDFILE_VAR, &pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the traced command's pid", Duration::from_secs(30), || {
        fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // It runs (`exec sleep` keeps the pid), traced by the helper.
    wait_for("the traced sleep", Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with("sleep"))
    });
    // TracerPid is the tracer thread, one of the helper's tasks.
    let by = tracer_pid(pid).expect("traced");
    assert!(
        Path::new(&format!("/proc/{}/task/{by}", tracer.id())).exists(),
        "traced by {by}, not by the helper {}",
        tracer.id()
    );

    tracer.kill().unwrap(); // SIGKILL
    tracer.wait().unwrap();

    // PTRACE_O_EXITKILL: the kernel killed it; it is gone, or a zombie
    // until its new parent reaps it. Never stopped, never still sleeping.
    wait_for("the traced sleep to die", Duration::from_secs(10), || {
        matches!(state(pid), None | Some('Z' | 'X'))
    });
}
