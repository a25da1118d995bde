//! Exit statuses: the command's own, 128+N for a signal, 125/126/127 for
//! memorun's errors, each with one `memorun:` line; and what gets recorded.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::util::{Dir, code, stderr, stdout};

#[test]
fn nonzero_exit_is_passed_through_and_not_recorded_by_default() {
    let d = Dir::new();
    let a = d.run_counted(&[], "echo fail; exit 7");
    let b = d.run_counted(&[], "echo fail; exit 7");
    assert_eq!((code(&a), code(&b)), (7, 7));
    assert_eq!(stdout(&b), "fail\n");
    assert_eq!(
        d.count(),
        2,
        "a failure was replayed without --cache-failures"
    );
}

#[test]
fn killed_by_signal_exits_128_plus_n_and_is_never_recorded() {
    let d = Dir::new();
    for _ in 0..2 {
        let o = d.run_counted(&["--cache-failures"], "echo before; kill -TERM $$");
        assert_eq!(code(&o), 128 + 15);
        assert_eq!(stdout(&o), "before\n");
    }
    assert_eq!(d.count(), 2);
    let o = d.run_counted(&[], "kill -KILL $$");
    assert_eq!(code(&o), 128 + 9);
}

#[test]
fn reader_gone_exits_141_on_a_miss_as_on_a_hit() {
    let d = Dir::new();
    // More output than the pipes hold; the shell itself exits 0.
    let script = "seq 1 1000000; exit 0";
    // memorun with a reader that takes one byte and goes away.
    let reader_gone = || {
        let (mut r, w) = std::io::pipe().unwrap();
        let mut child = d
            .memorun_std()
            .arg("--")
            .args(d.counted(script))
            .stdout(w)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).unwrap();
        drop(r);
        child.wait().unwrap().code()
    };
    assert_eq!(reader_gone(), Some(141), "on a miss");
    assert_eq!(d.count(), 1);
    let o = d.run_counted(&[], script);
    assert_eq!((code(&o), o.stdout.len()), (0, 6_888_896));
    assert_eq!(d.count(), 2, "the full run did not run");
    assert_eq!(reader_gone(), Some(141), "on a hit");
    assert_eq!(d.count(), 2, "the full run was not recorded");
}

#[test]
fn sigterm_to_memorun_reaches_the_command() {
    let d = Dir::new();
    let child = d
        .memorun_std()
        .arg("--")
        .args(d.counted("trap 'echo got-term; exit 5' TERM; while :; do sleep 0.05; done"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the command runs, then signal memorun only.
    for _ in 0..200 {
        if d.count() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stdout(&out), "got-term\n");
}

#[test]
fn command_not_found_is_127() {
    let d = Dir::new();
    let o = d.run(["--", "memorun-no-such-command-xyz"]);
    assert_eq!(code(&o), 127);
    assert_eq!(
        stderr(&o),
        "memorun: command not found: 'memorun-no-such-command-xyz'\n"
    );
}

#[test]
fn command_not_executable_is_126() {
    let d = Dir::new();
    let f = d.write("script", "echo hi\n");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let o = d.run(["--", "./script"]);
    assert_eq!(code(&o), 126);
    assert_eq!(
        stderr(&o),
        "memorun: cannot execute './script': permission denied\n"
    );
    let o = d.run(["--no-cache", "--", "./script"]);
    assert_eq!(code(&o), 126);
}

#[test]
fn usage_errors_are_125_with_one_line() {
    let d = Dir::new();
    for args in [
        &["--bogus", "--", "true"][..],
        &[][..],
        &["--"][..],
        &["-e", "A=B", "--", "true"][..],
        &["echo", "hi"][..],
    ] {
        let o = d.run(args);
        assert_eq!(code(&o), 125, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("memorun: "), "{args:?}: {err}");
        assert_eq!(o.stdout, b"");
    }
}

#[test]
fn help_and_version_succeed() {
    let d = Dir::new();
    let o = d.run(["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("--cache-failures"));
    let o = d.run(["--version"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("memorun "));
}
