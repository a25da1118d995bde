//! Signals sent to memorun: while it waits for a concurrent run of the same
//! command, and while a shell-wrapped command runs. Every process a test
//! starts is killed when it ends, pass or fail.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, memorun_bin};

/// Generous: these tests never wait this long unless memorun hangs.
const LIMIT: Duration = Duration::from_secs(15);

/// A child process killed with SIGKILL when dropped, unless it has ended.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A pid we did not spawn (a grandchild), killed when dropped if it is
/// still that process.
struct Stray(i32);

impl Drop for Stray {
    fn drop(&mut self) {
        if alive(self.0) {
            // SAFETY: kill(2) on a process this test started, still alive.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait for `child` to end; fail (and kill it) past [`LIMIT`].
fn ends(child: &mut Reaped) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "memorun did not end");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child of this test.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// The live children of `parent`.
fn children(parent: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let mut fields = stat[stat.rfind(')').unwrap() + 1..].split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if state != Some("Z") && ppid == Some(parent.to_string().as_str()) {
            pids.push(pid);
        }
    }
    pids
}

/// The pid a command wrote to `file` in the work directory.
fn pid_in(d: &Dir, file: &str) -> i32 {
    let path = d.join(file);
    wait_for(file, || {
        fs::read_to_string(&path).is_ok_and(|s| s.ends_with('\n'))
    });
    fs::read_to_string(&path).unwrap().trim().parse().unwrap()
}

#[test]
fn sigint_sigterm_sighup_end_a_run_waiting_for_the_same_command() {
    let d = Dir::new();
    // Runs until the test creates `go` (or 20 s pass).
    let script =
        "i=0; while [ ! -e go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo done";
    let mut holder = Reaped(
        d.memorun_std()
            .arg("--")
            .args(d.counted(script))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the holder to run", || d.count() == 1);
    let mut waiters = Vec::new();
    // The last one starts with SIGINT ignored, as a shell starts `memorun &`.
    for (i, sig) in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGINT]
        .into_iter()
        .enumerate()
    {
        let err = d.join(format!("waiter-{i}.err"));
        let mut cmd = d.memorun_std();
        if i == 3 {
            cmd = Command::new("sh");
            cmd.args(["-c", "trap '' INT; exec \"$0\" \"$@\"", memorun_bin()])
                .current_dir(d.path())
                .env("MEMORUN_DIR", &d.cache)
                .env_remove("MEMORUN_DISABLE")
                .env_remove("CI")
                .stdin(Stdio::null());
        }
        let child = cmd
            .args(["-v", "--"])
            .args(d.counted(script))
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap();
        waiters.push((sig, Reaped(child), err));
    }
    for (sig, waiter, err) in &waiters {
        wait_for("the waiter to wait", || {
            fs::read_to_string(err).is_ok_and(|s| s.contains("waiting for a concurrent run"))
        });
        signal(waiter.0.id(), *sig);
    }
    for (sig, mut waiter, _) in waiters {
        let status = ends(&mut waiter);
        assert_eq!(status.code(), Some(128 + sig), "signal {sig}: {status:?}");
    }
    // The holder never finished: only the signals ended the waiters.
    assert!(holder.0.try_wait().unwrap().is_none());
    fs::write(d.join("go"), "").unwrap();
    assert_eq!(ends(&mut holder).code(), Some(0));
    // So none of them ran the command, and none could have recorded it.
    assert_eq!(d.count(), 1, "a signalled waiter ran the command");
}

/// memorun without a controlling terminal (as under CI or a build tool),
/// even when the tests run at one, running `sh -c SCRIPT`.
fn memorun_sh(d: &Dir, script: &str) -> Reaped {
    let mut cmd = d.memorun_std();
    // SAFETY: setsid(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    Reaped(
        cmd.args(["--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn sigterm_ends_a_shell_wrapped_command_and_its_children() {
    let d = Dir::new();
    let mut memorun = memorun_sh(&d, "echo $$ > sh.pid; sleep 30; echo after");
    let sh = pid_in(&d, "sh.pid");
    wait_for("the sleep", || !children(sh).is_empty());
    let sleeps: Vec<Stray> = children(sh).into_iter().map(Stray).collect();
    signal(memorun.0.id(), libc::SIGTERM);
    assert_eq!(ends(&mut memorun).code(), Some(128 + libc::SIGTERM));
    for sleep in &sleeps {
        wait_for("the sleep to end", || !alive(sleep.0));
    }
}

#[test]
fn sigterm_does_not_wait_for_a_stray_that_left_the_group() {
    let d = Dir::new();
    // The stray holds memorun's pipes open, out of reach of the group.
    let mut memorun = memorun_sh(
        &d,
        "echo $$ > sh.pid; setsid sleep 30 & echo $! > stray.pid; sleep 30",
    );
    let _stray = Stray(pid_in(&d, "stray.pid"));
    let sh = pid_in(&d, "sh.pid");
    wait_for("both sleeps", || children(sh).len() == 2);
    let _sleeps: Vec<Stray> = children(sh).into_iter().map(Stray).collect();
    signal(memorun.0.id(), libc::SIGTERM);
    assert_eq!(ends(&mut memorun).code(), Some(128 + libc::SIGTERM));
}
