//! On a terminal: the spinner, and colour. Driven through a pseudo-terminal
//! with util-linux `script`, so these tests are `#[ignore = "needs
//! script(1)"]`: `cargo test -- --ignored` runs them, and fails them where
//! `script` is missing (`.ci/run` installs it).

use std::process::{Command, Stdio};

use crate::util::{Dir, assert_starts_with, memorun_bin, stderr};

/// Run `memorun ARGS` on a pseudo-terminal; everything it printed.
fn on_pty(d: &Dir, args: &str, env: &[(&str, &str)], remove: &[&str]) -> String {
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
    let o = cmd
        .output()
        .expect("cannot run script(1): install util-linux (bsdutils on Debian)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const SLOW: &str = "-- sh -c 'echo first; sleep 1.2; echo second'";

fn has_spinner(out: &str) -> bool {
    // The spinner line names the command; the command's own output does not.
    out.contains("sh -c 'echo first; sleep 1.2; echo second'")
}

#[test]
#[ignore = "needs script(1)"]
fn spinner_appears_on_a_terminal() {
    let d = Dir::new();
    let out = on_pty(&d, SLOW, &[], &[]);
    assert!(has_spinner(&out), "no spinner: {out:?}");
    assert!(out.contains("first\r\n"), "{out:?}");
    assert!(out.contains("second\r\n"), "{out:?}");
    // A second, forced run knows how long it usually takes.
    let out = on_pty(&d, &format!("-f {SLOW}"), &[], &[]);
    assert!(out.contains("usually takes"), "no expected time: {out:?}");
    // A replay draws nothing.
    let out = on_pty(&d, SLOW, &[], &[]);
    assert!(!has_spinner(&out), "a spinner on a replay: {out:?}");
}

#[test]
#[ignore = "needs script(1)"]
fn no_spinner_in_ci_or_when_quiet() {
    let d = Dir::new();
    let out = on_pty(&d, SLOW, &[("CI", "true")], &[]);
    assert!(!has_spinner(&out), "a spinner with CI set: {out:?}");
    let out = on_pty(&d, &format!("-q -f {SLOW}"), &[], &[]);
    assert!(!has_spinner(&out), "a spinner with --quiet: {out:?}");
}

/// The pipe half needs no `script`, so it runs by default.
#[test]
fn no_spinner_on_a_pipe() {
    let d = Dir::new();
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
#[ignore = "needs script(1)"]
fn colour_on_a_terminal_unless_no_color() {
    let d = Dir::new();
    let blocker = d.write("not-a-dir", "x");
    let args = "-- echo hi";
    let dir = format!("{}/cache", blocker.display());
    let out = on_pty(&d, args, &[("MEMORUN_DIR", &dir)], &[]);
    assert!(out.contains("warning: "), "{out:?}");
    assert!(out.contains("\x1b["), "no colour on a terminal: {out:?}");
    let out = on_pty(&d, args, &[("MEMORUN_DIR", &dir), ("NO_COLOR", "1")], &[]);
    assert!(out.contains("memorun: warning: "), "{out:?}");
    assert!(!out.contains("\x1b["), "colour despite NO_COLOR: {out:?}");
}

/// The pipe half needs no `script`, so it runs by default.
#[test]
fn no_colour_on_a_pipe() {
    let d = Dir::new();
    let blocker = d.write("not-a-dir", "x");
    let dir = format!("{}/cache", blocker.display());
    let o = d
        .memorun()
        .env("MEMORUN_DIR", &dir)
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert_starts_with(&stderr(&o), "memorun: warning: ");
    assert!(!stderr(&o).contains('\x1b'), "colour on a pipe: {o:?}");
}

#[test]
#[ignore = "needs script(1)"]
fn spinner_never_shares_a_line_with_partial_output() {
    let d = Dir::new();
    // A line left open for longer than the spinner's delay: the spinner must
    // stay off that line until the command ends it.
    let args =
        "-- sh -c 'echo first; sleep 0.5; printf partial; sleep 0.8; echo \" end\"; sleep 0.5'";
    let out = on_pty(&d, args, &[], &[]);
    assert!(
        out.contains("partial end\r\n"),
        "the spinner tore a line: {out:?}"
    );
    assert!(
        out.contains("sleep 0.5"),
        "no spinner at all, the test proves nothing: {out:?}"
    );
}
