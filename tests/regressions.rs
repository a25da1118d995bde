//! Regression tests, each named for what broke (found in review).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, assert_contains, assert_starts_with, code, memorun_bin, stderr, stdout};

fn script(d: &Dir, name: &str, body: &str) {
    let p = d.write(name, body);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn interrupted_run_that_traps_the_signal_and_exits_zero_is_not_recorded() {
    let d = Dir::new();
    script(
        &d,
        "job.sh",
        "#!/bin/sh\necho run >> count\ntrap 'echo partial; exit 0' TERM\necho computing\nsleep 3 & wait\necho FULL\n",
    );
    let child = d
        .memorun_std()
        .args(["--", "./job.sh"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.count() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "computing\npartial\n");
    let o = d.run(["--", "./job.sh"]);
    assert_eq!(
        stdout(&o),
        "computing\nFULL\n",
        "an interrupted run was replayed"
    );
    assert_eq!(d.count(), 2);
}

#[test]
fn sigint_sent_to_memorun_alone_reaches_the_command() {
    let d = Dir::new();
    // The command itself, not a shell: a shell waiting for its child
    // defers SIGINT until the child exits.
    let mut child = d.memorun_std().args(["--", "sleep", "5"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "SIGINT was swallowed"
    );
    assert_eq!(status.code(), Some(130));
}

#[test]
fn glob_with_redundant_separators_still_counts_its_matches() {
    let d = Dir::new();
    d.write("src/a.txt", "one");
    for pattern in ["src//*.txt", "src/./*.txt", "./src/*.txt"] {
        let run = |d: &Dir| d.run(["-i", pattern, "--", "sh", "-c", "cat src/a.txt"]);
        fs::write(d.join("src/a.txt"), "one").unwrap();
        assert_eq!(stdout(&run(&d)), "one");
        fs::write(d.join("src/a.txt"), "two").unwrap();
        assert_eq!(stdout(&run(&d)), "two", "stale replay with -i '{pattern}'");
    }
}

#[test]
fn procfs_inputs_are_not_trusted_from_the_stat_cache() {
    let d = Dir::new();
    let a = d.run(["--", "cat", "/proc/self/stat"]);
    let b = d.run(["--", "cat", "/proc/self/stat"]);
    // Each cat is a new process: its /proc/self/stat differs; a replay
    // would show the first pid again.
    assert_ne!(a.stdout, b.stdout, "a procfs input was replayed stale");
}

#[test]
fn symlinked_input_directory_is_recorded_and_followed() {
    let d = Dir::new();
    d.write("real/a.txt", "1");
    std::os::unix::fs::symlink("real", d.join("link")).unwrap();
    for args in [&["-i", "link"][..], &["-i", "link/*.txt"][..]] {
        let run = |d: &Dir| {
            let mut all = args.to_vec();
            all.extend_from_slice(&["-v", "--", "sh", "-c", "cat real/a.txt"]);
            d.run(all)
        };
        fs::write(d.join("real/a.txt"), "1").unwrap();
        let o = run(&d);
        assert!(
            stderr(&o).contains("recorded") && !stderr(&o).contains("not recorded"),
            "{}",
            stderr(&o)
        );
        assert!(stderr(&run(&d)).starts_with("memorun: hit"), "{args:?}");
        fs::write(d.join("real/a.txt"), "2").unwrap();
        assert_eq!(stdout(&run(&d)), "2", "{args:?}");
    }
}

#[test]
fn env_brace_pattern_is_a_glob() {
    let d = Dir::new();
    let run = |v: &str| {
        d.memorun()
            .env("MEMO_FOO", v)
            .args([
                "-e",
                "{MEMO_FOO,MEMO_BAR}",
                "--",
                "sh",
                "-c",
                "echo $MEMO_FOO",
            ])
            .output()
            .unwrap()
    };
    assert_eq!(stdout(&run("1")), "1\n");
    assert_eq!(
        stdout(&run("2")),
        "2\n",
        "a braced env pattern was not in the key"
    );
}

/// A regular file on stdin is watched like any input: a run during which it
/// changed is not recorded. The output alone cannot show the bug (a wrong
/// replay prints what a run prints), so the counter and the store do.
#[test]
fn stdin_file_changed_during_the_run_is_not_recorded() {
    let d = Dir::new();
    d.write("in.txt", "old\n");
    let run = |d: &Dir| {
        d.memorun_std()
            .arg("--")
            .args(d.counted("echo new > in.txt; cat"))
            .stdin(fs::File::open(d.join("in.txt")).unwrap())
            .output()
            .unwrap()
    };
    let o = run(&d);
    assert_eq!(stdout(&o), "new\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(d.count(), 1);
    assert_eq!(
        d.entries().len(),
        0,
        "the run was recorded under the key for 'old'"
    );
    assert_eq!(d.stats()["not_recorded"]["input_changed"], 1);
    fs::write(d.join("in.txt"), "old\n").unwrap();
    let o = run(&d);
    assert_eq!(stdout(&o), "new\n");
    assert_eq!(
        d.count(),
        2,
        "a result recorded under the key for 'old' was replayed"
    );
}

#[test]
fn stdin_file_offset_after_a_hit_matches_a_run() {
    let d = Dir::new();
    d.write("data.txt", "header\nbody1\nbody2\n");
    let script = format!(
        "'{m}' -- head -n1 >/dev/null; '{m}' -- cat",
        m = memorun_bin()
    );
    for _ in 0..2 {
        let o = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("MEMORUN_DIR", &d.cache)
            .current_dir(d.path())
            .stdin(fs::File::open(d.join("data.txt")).unwrap())
            .output()
            .unwrap();
        assert_eq!(stdout(&o), "body1\nbody2\n", "{}", stderr(&o));
    }
}

/// A stale entry is refreshed in the background only when the refresh can be
/// given the same stdin. A device on stdin (here /dev/zero) is not read, so a
/// refresh would run the command on /dev/null instead: it must not start.
#[test]
fn stale_entry_with_unread_stdin_is_not_refreshed_from_dev_null() {
    let d = Dir::new();
    let run = || {
        d.memorun_std()
            .args(["--stale", "0s", "-v", "--"])
            .args(d.counted("head -c 8"))
            .stdin(fs::File::open("/dev/zero").unwrap())
            .output()
            .unwrap()
    };
    assert_eq!(run().stdout, vec![0u8; 8]);
    assert_eq!(d.count(), 1);
    let hit = run();
    assert_eq!(hit.stdout, vec![0u8; 8]);
    // A refresh, had one started, is detached: give it time to run.
    let deadline = Instant::now() + Duration::from_secs(2);
    while d.count() == 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.count(), 1, "a refresh ran the command on /dev/null");
    assert_eq!(d.entries().len(), 1, "a refresh recorded a second entry");
    assert_contains(
        &stderr(&hit),
        "stale, but stdin was not read, so not refreshed in the background",
    );
}

#[test]
fn stdin_spool_failure_keeps_every_byte() {
    let d = Dir::new();
    d.run(["--", "true"]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -f 1000; exec '{}' -- wc -c", memorun_bin()))
        .env("MEMORUN_DIR", &d.cache);
    let o = crate::util::output_with_stdin(&mut cmd, data);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "3000000", "stdin bytes were lost");
    assert_starts_with(&stderr(&o), "memorun: warning: cannot spool stdin");
}

#[test]
fn a_failed_run_does_not_make_an_input_an_output() {
    let d = Dir::new();
    // Writes a template and fails the first time; uses the file afterwards.
    script(
        &d,
        "tool.sh",
        "#!/bin/sh\nif [ ! -e \"$1\" ]; then echo threads=1 > \"$1\"; exit 1; fi\necho \"running with $(cat \"$1\")\"\n",
    );
    assert_eq!(code(&d.run(["--", "./tool.sh", "cfg.ini"])), 1);
    fs::write(d.join("cfg.ini"), "threads=4\n").unwrap();
    assert_eq!(
        stdout(&d.run(["--", "./tool.sh", "cfg.ini"])),
        "running with threads=4\n"
    );
    fs::write(d.join("cfg.ini"), "threads=8\n").unwrap();
    assert_eq!(
        stdout(&d.run(["--", "./tool.sh", "cfg.ini"])),
        "running with threads=8\n",
        "an edited input was replayed stale"
    );
}

#[test]
fn a_dangling_symlink_or_a_symlink_loop_named_as_input_is_recorded_as_absent() {
    let d = Dir::new();
    std::os::unix::fs::symlink("nowhere", d.join("dangling")).unwrap();
    std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
    for input in ["dangling", "loop"] {
        let args = ["-i", input];
        let first = d.assert_miss(&args, "echo out");
        assert_eq!(code(&first), 0);
        assert!(
            !stderr(&first).contains("changed while the command ran"),
            "{input}: {}",
            stderr(&first)
        );
        // Recorded, with the input as absent.
        let second = d.assert_hit(&args, "echo out");
        assert_eq!(stdout(&second), "out\n");
    }
    // Absent means absent: the link's target appearing is a miss.
    fs::write(d.join("nowhere"), "now here").unwrap();
    d.assert_miss(&["-i", "dangling"], "echo out");
    assert_eq!(d.count(), 3);
}

/// Issue 12: `list`, `why` and `-v` printed arguments raw (a crafted one
/// could rewrite the terminal) and non-UTF-8 lossily (two commands could
/// look the same). Text output now quotes them as a shell would.
#[test]
fn list_why_and_verbose_quote_control_bytes_and_invalid_utf8_in_arguments() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let d = Dir::new();
    let evil = OsString::from_vec(b"a\nb\x1b[2J\r".to_vec());
    let invalid = OsString::from_vec(b"\xff".to_vec());
    let lookalike = OsString::from("\u{fffd}");
    let run = |arg: &OsString| {
        d.memorun()
            .args(["-v", "--", "true"])
            .arg(arg)
            .output()
            .unwrap()
    };
    let no_raw = |what: &str, bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.contains(&0x1b) && !bytes.contains(&b'\r'),
            "{what} printed raw control bytes: {text:?}"
        );
    };
    for arg in [&evil, &invalid, &lookalike] {
        let o = run(arg);
        assert_eq!(code(&o), 0);
        no_raw("-v", &o.stderr);
        let o = d
            .memorun()
            .args(["why", "--", "true"])
            .arg(arg)
            .output()
            .unwrap();
        no_raw("why", &o.stdout);
        assert!(stdout(&o).starts_with("would hit"), "{}", stdout(&o));
    }
    let o = d.run(["list"]);
    no_raw("list", &o.stdout);
    let list = stdout(&o);
    assert!(list.contains(r"true $'a\nb\E[2J\r'"), "{list}");
    assert!(list.contains(r"true $'\xff'"), "{list}");
    assert!(list.contains("true '\u{fffd}'"), "{list}");
    // One line per entry, plus the header.
    assert_eq!(list.lines().count(), 4, "{list}");
}

/// Two different devices on stdin were one key ("not read (device)"):
/// `head -c 8 </dev/urandom` replayed what `head -c 8 </dev/zero` had
/// printed, traced or not. The device a stdin names is in the key.
#[test]
fn a_different_device_on_stdin_is_not_replayed_the_first_ones_output() {
    for traced in [false, true] {
        let d = Dir::new();
        let run = |device: &str| {
            let mut cmd = d.memorun_std();
            if traced {
                cmd.arg("--trace");
            }
            cmd.args(["-v", "--"])
                .args(d.counted("head -c 8"))
                .stdin(fs::File::open(device).unwrap())
                .output()
                .unwrap()
        };
        let zero = run("/dev/zero");
        assert_eq!(zero.stdout, vec![0u8; 8], "{}", stderr(&zero));
        assert_eq!(d.count(), 1);
        let random = run("/dev/urandom");
        assert_eq!(
            d.count(),
            2,
            "--trace {traced}: a hit replayed /dev/zero's bytes for /dev/urandom"
        );
        assert_ne!(random.stdout, vec![0u8; 8]);
        // The same device still hits.
        run("/dev/zero");
        assert_eq!(d.count(), 2, "--trace {traced}: /dev/zero again missed");
    }
}

/// A stdin that cannot be read at all (a directory: `< dir`) was replaced
/// by an empty spool file, so the command saw an empty stdin instead of the
/// error it gets without memorun. Nothing was taken: it inherits stdin.
#[test]
fn an_unreadable_stdin_reaches_the_command_as_it_is() {
    let d = Dir::new();
    fs::create_dir(d.join("sub")).unwrap();
    let o = d
        .memorun_std()
        .args(["--", "sh", "-c", "cat; echo \"rc=$?\""])
        .stdin(fs::File::open(d.join("sub")).unwrap())
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "rc=1\n", "{}", stderr(&o));
    assert_contains(&stderr(&o), "cannot spool stdin: is a directory");
}

/// A stdin pipe in non-blocking mode (the flag belongs to the pipe, set by
/// whoever made it: node, some CI runners) lost everything after the first
/// empty read: memorun took EAGAIN for an error and fed the command only
/// what it had read so far. It waits for more instead.
#[test]
fn a_nonblocking_stdin_pipe_reaches_the_command_whole() {
    let d = Dir::new();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("echo a; sleep 0.5; echo b")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    let flags = rustix::fs::fcntl_getfl(&pipe).unwrap();
    rustix::fs::fcntl_setfl(&pipe, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
    let o = d
        .memorun_std()
        .args(["--", "cat"])
        .stdin(Stdio::from(pipe))
        .output()
        .unwrap();
    child.wait().unwrap();
    assert_eq!(stdout(&o), "a\nb\n", "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// The same with spooling cut off (a file size limit): the rest of a
/// non-blocking stdin is pumped to the command, waiting through EAGAIN.
#[test]
fn a_nonblocking_stdin_pipe_reaches_the_command_whole_when_spooling_fails() {
    let d = Dir::new();
    d.run(["--", "true"]);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("head -c 2000000 /dev/zero; sleep 0.5; head -c 1000000 /dev/zero")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    let flags = rustix::fs::fcntl_getfl(&pipe).unwrap();
    rustix::fs::fcntl_setfl(&pipe, flags | rustix::fs::OFlags::NONBLOCK).unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -f 1000; exec '{}' -- wc -c", memorun_bin()))
        .env("MEMORUN_DIR", &d.cache)
        .stdin(Stdio::from(pipe))
        .output()
        .unwrap();
    child.wait().unwrap();
    assert_eq!(stdout(&o).trim(), "3000000", "{}", stderr(&o));
    assert_starts_with(&stderr(&o), "memorun: warning: cannot spool stdin");
}

/// `memorun -- cat <(echo B)` replayed what `cat <(echo A)` had printed,
/// traced or not: the argument `/dev/fd/63` is the same string each time
/// and a pipe is never read for the key. A run given a pipe or a socket as
/// an argument is never recorded.
#[test]
fn a_process_substitution_argument_is_never_replayed() {
    for trace in ["", "--trace"] {
        let d = Dir::new();
        let line = |what: &str| {
            format!(
                "'{}' -v {trace} -- sh -c 'echo run >>\"$0\"; cat \"$1\"' '{}' <(echo {what})",
                memorun_bin(),
                d.counter_path().display()
            )
        };
        let run = |what: &str| {
            Command::new("bash")
                .arg("-c")
                .arg(line(what))
                .env("MEMORUN_DIR", &d.cache)
                .current_dir(d.path())
                .output()
                .unwrap()
        };
        let a = run("A");
        assert_eq!(stdout(&a), "A\n", "{}", stderr(&a));
        assert_contains(&stderr(&a), "not recorded");
        let b = run("B");
        assert_eq!(
            stdout(&b),
            "B\n",
            "--trace {trace:?}: replayed A: {}",
            stderr(&b)
        );
        assert_eq!(d.count(), 2);
    }
}

/// The rule above leaves out memorun's own stdin: a pipe there is read to
/// its end and keyed, and `/dev/stdin` names the command's copy of it.
#[test]
fn dev_stdin_as_an_argument_is_keyed_by_what_stdin_holds() {
    let d = Dir::new();
    let run = |input: &str| {
        let mut cmd = d.memorun_std();
        let script = format!("echo run >>'{}'; cat \"$0\"", d.counter_path().display());
        cmd.args(["-v", "--", "sh", "-c", &script, "/dev/stdin"]);
        crate::util::output_with_stdin(&mut cmd, input.as_bytes().to_vec())
    };
    assert_eq!(stdout(&run("a\n")), "a\n");
    let o = run("a\n");
    assert_eq!(stdout(&o), "a\n");
    assert_eq!(d.count(), 1, "{}", stderr(&o));
    assert_eq!(stdout(&run("b\n")), "b\n");
    assert_eq!(d.count(), 2);
}
