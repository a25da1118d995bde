//! On a terminal: the spinner, and colour. Driven through a pseudo-terminal
//! with util-linux `script`; skipped (with a message) where it is missing.

use std::process::{Command, Stdio};

use crate::util::{Dir, memorun_bin, stderr};

/// Run `memorun ARGS` on a pseudo-terminal; everything it printed.
fn on_pty(d: &Dir, args: &str, env: &[(&str, &str)], remove: &[&str]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux script is not installed");
        return None;
    }
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("'{}' {args}", memorun_bin()))
        .arg("/dev/null")
        .current_dir(d.path())
        .env("MEMORUN_DIR", &d.cache)
        .env("TERM", "xterm")
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let o = cmd.output().unwrap();
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

const SLOW: &str = "-- sh -c 'echo first; sleep 1.2; echo second'";

fn has_spinner(out: &str) -> bool {
    // The spinner line names the command; the command's own output does not.
    out.contains("sh -c 'echo first; sleep 1.2; echo second'")
}

#[test]
fn spinner_appears_on_a_terminal() {
    let d = Dir::new();
    let Some(out) = on_pty(&d, SLOW, &[], &[]) else {
        return;
    };
    assert!(has_spinner(&out), "no spinner: {out:?}");
    assert!(out.contains("first\r\n"), "{out:?}");
    assert!(out.contains("second\r\n"), "{out:?}");
    // A second, forced run knows how long it usually takes.
    let Some(out) = on_pty(&d, &format!("-f {SLOW}"), &[], &[]) else {
        return;
    };
    assert!(out.contains("usually takes"), "no expected time: {out:?}");
    // A replay draws nothing.
    let Some(out) = on_pty(&d, SLOW, &[], &[]) else {
        return;
    };
    assert!(!has_spinner(&out), "a spinner on a replay: {out:?}");
}

#[test]
fn no_spinner_in_ci_or_when_quiet_or_on_a_pipe() {
    let d = Dir::new();
    let Some(out) = on_pty(&d, SLOW, &[("CI", "true")], &[]) else {
        return;
    };
    assert!(!has_spinner(&out), "a spinner with CI set: {out:?}");
    let Some(out) = on_pty(&d, &format!("-q -f {SLOW}"), &[], &[]) else {
        return;
    };
    assert!(!has_spinner(&out), "a spinner with --quiet: {out:?}");
    let o = d
        .memorun()
        .args(["-f", "--", "sh", "-c", "echo first; sleep 1.2; echo second"])
        .env_remove("CI")
        .output()
        .unwrap();
    assert_eq!(stderr(&o), "", "bytes on a piped stderr");
    assert_eq!(o.stdout, b"first\nsecond\n");
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let d = Dir::new();
    let blocker = d.write("not-a-dir", "x");
    let args = "-- echo hi";
    let dir = format!("{}/cache", blocker.display());
    let Some(out) = on_pty(&d, args, &[("MEMORUN_DIR", &dir)], &[]) else {
        return;
    };
    assert!(out.contains("warning: "), "{out:?}");
    assert!(out.contains("\x1b["), "no colour on a terminal: {out:?}");
    let Some(out) = on_pty(&d, args, &[("MEMORUN_DIR", &dir), ("NO_COLOR", "1")], &[]) else {
        return;
    };
    assert!(out.contains("memorun: warning: "), "{out:?}");
    assert!(!out.contains("\x1b["), "colour despite NO_COLOR: {out:?}");
    // Never on a pipe.
    let o = d
        .memorun()
        .env("MEMORUN_DIR", &dir)
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).starts_with("memorun: warning: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn spinner_never_shares_a_line_with_partial_output() {
    let d = Dir::new();
    // A line left open for longer than the spinner's delay: the spinner must
    // stay off that line until the command ends it.
    let args =
        "-- sh -c 'echo first; sleep 0.5; printf partial; sleep 0.8; echo \" end\"; sleep 0.5'";
    let Some(out) = on_pty(&d, args, &[], &[]) else {
        return;
    };
    assert!(
        out.contains("partial end\r\n"),
        "the spinner tore a line: {out:?}"
    );
    assert!(
        out.contains("sleep 0.5"),
        "no spinner at all, the test proves nothing: {out:?}"
    );
}
