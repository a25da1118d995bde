//! `--trace` against what a command can do to reach a file unseen (issue
//! 24): each test records a run, changes the file the way that matters to
//! the access, and checks that the next run prints the new result, never
//! the old one; or that a run tracing cannot vouch for is not recorded.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::util::{
    Dir, assert_contains, code, memorun_bin, require_root, set_mtime, stderr, stdout,
};

/// A file written a while before the run, as an input edited earlier.
fn write_old(d: &Dir, rel: &str, content: &str) {
    let p = d.write(rel, content);
    set_mtime(&p, SystemTime::now() - Duration::from_secs(3600));
}

/// `memorun -v --trace -- sh -c 'count; SCRIPT'`: stdout and stderr.
fn traced(d: &Dir, script: &str) -> (String, String) {
    let o = d.run_counted(&["-v", "--trace"], script);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    (stdout(&o), stderr(&o))
}

/// Run `script` traced: it must run (not replay) and be recorded; its
/// stdout.
#[track_caller]
fn recorded(d: &Dir, script: &str) -> String {
    let before = d.count();
    let (out, err) = traced(d, script);
    assert_eq!(d.count(), before + 1, "replayed: {err}");
    assert_contains(&err, ", recorded");
    out
}

/// Run `script` traced: it must replay.
#[track_caller]
fn replayed(d: &Dir, script: &str) -> String {
    let before = d.count();
    let (out, err) = traced(d, script);
    assert_eq!(d.count(), before, "ran again: {err}");
    out
}

/// Run `script` traced: it must run and not be recorded; its stderr.
#[track_caller]
fn not_recorded(d: &Dir, script: &str) -> String {
    let before = d.count();
    let (_, err) = traced(d, script);
    assert_eq!(d.count(), before + 1, "replayed: {err}");
    assert_contains(&err, "not recorded");
    err
}

/// Hole 1: the command makes a symlink and reads through it; the link is
/// its own output, but the file it reaches is an input.
#[test]
fn a_file_read_through_a_link_the_command_made_is_keyed() {
    let d = Dir::new();
    write_old(&d, "config.prod", "old\n");
    let script = "ln -sfn config.prod config; cat config";
    assert_eq!(recorded(&d, script), "old\n");
    assert_eq!(replayed(&d, script), "old\n");
    write_old(&d, "config.prod", "NEW\n");
    assert_eq!(recorded(&d, script), "NEW\n");
}

/// Hole 1, a `#!` script run through a link the command made.
#[test]
fn a_script_run_through_a_link_the_command_made_is_keyed() {
    let d = Dir::new();
    write_old(&d, "tool.sh", "#!/bin/sh\necho v1\n");
    let p = d.join("tool.sh");
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    set_mtime(&p, SystemTime::now() - Duration::from_secs(3600));
    let script = "ln -sfn tool.sh run; ./run";
    assert_eq!(recorded(&d, script), "v1\n");
    write_old(&d, "tool.sh", "#!/bin/sh\necho v2\n");
    assert_eq!(recorded(&d, script), "v2\n");
}

/// Hole 1, the variant: the link the command makes leads to a directory;
/// the user points it elsewhere (at a directory holding the old content)
/// and changes the real input. What the command reads is the real one.
#[test]
fn a_file_read_through_a_directory_link_the_command_made_is_keyed() {
    let d = Dir::new();
    write_old(&d, "real/x", "A\n");
    write_old(&d, "old/x", "A\n");
    let script = "ln -sfn real cfg; cat cfg/x";
    assert_eq!(recorded(&d, script), "A\n");
    fs::remove_file(d.join("cfg")).unwrap();
    std::os::unix::fs::symlink("old", d.join("cfg")).unwrap();
    write_old(&d, "real/x", "B\n");
    assert_eq!(recorded(&d, script), "B\n");
}

/// Hole 2: `[ -s link ]` follows the link: the target's look is keyed.
#[test]
fn a_look_through_a_link_keys_the_target() {
    let d = Dir::new();
    write_old(&d, "target", "12345\n");
    std::os::unix::fs::symlink("target", d.join("link")).unwrap();
    let script = "[ -s link ] && echo nonempty || echo empty";
    assert_eq!(recorded(&d, script), "nonempty\n");
    assert_eq!(replayed(&d, script), "nonempty\n");
    fs::write(d.join("target"), "").unwrap();
    set_mtime(
        &d.join("target"),
        SystemTime::now() - Duration::from_secs(1800),
    );
    assert_eq!(recorded(&d, script), "empty\n");
    // stat -L: the target's size, through the link.
    let script = "stat -L -c %s link";
    assert_eq!(recorded(&d, script), "0\n");
    write_old(&d, "target", "123\n");
    assert_eq!(recorded(&d, script), "4\n");
}

/// Hole 3: a path through `/proc/self/cwd` names a file of the working
/// directory.
#[test]
fn a_file_read_through_proc_self_cwd_is_keyed() {
    let d = Dir::new();
    write_old(&d, "in.txt", "in1\n");
    let script = "cat /proc/self/cwd/in.txt";
    assert_eq!(recorded(&d, script), "in1\n");
    assert_eq!(replayed(&d, script), "in1\n");
    write_old(&d, "in.txt", "in2\n");
    assert_eq!(recorded(&d, script), "in2\n");
}

/// Hole 3: a file opened with `O_PATH` (a look) and then read through
/// `/proc/self/fd/N` or `/dev/fd/N`, and one opened with `open_tree(2)`:
/// the read is of the file, keyed by its content. The change keeps the
/// size and the modification time, which a look would key.
#[test]
fn a_file_reopened_through_its_descriptor_is_keyed_by_content() {
    let d = Dir::new();
    for (how, open) in [
        ("proc", "os.open('in.txt', os.O_PATH)"),
        ("devfd", "os.open('in.txt', os.O_PATH)"),
        (
            "open_tree",
            "ctypes.CDLL(None).syscall(428, -100, b'in.txt', 0)",
        ),
    ] {
        let through = match how {
            "devfd" => "/dev/fd",
            _ => "/proc/self/fd",
        };
        let script = format!(
            "python3 -I -c \"import ctypes, os; fd = {open}; assert fd >= 0; \
             print(open('{through}/%d' % fd).read(), end='')\""
        );
        // One modification time for both contents, long ago.
        let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        set_mtime(&d.write("in.txt", "aaa\n"), fixed);
        assert_eq!(recorded(&d, &script), "aaa\n", "{how}");
        assert_eq!(replayed(&d, &script), "aaa\n", "{how}");
        set_mtime(&d.write("in.txt", "bbb\n"), fixed);
        assert_eq!(recorded(&d, &script), "bbb\n", "{how}");
    }
}

/// Hole 3: a file on the tmpfs under `/dev/shm` is a file.
#[test]
fn a_file_under_dev_shm_is_keyed() {
    let d = Dir::new();
    let name = format!("/dev/shm/memorun-test-{}", std::process::id());
    let shm = Path::new(&name);
    let write = |s: &str| {
        fs::write(shm, s).unwrap();
        set_mtime(shm, SystemTime::now() - Duration::from_secs(3600));
    };
    write("s1\n");
    let script = format!("cat {name}");
    let first = recorded(&d, &script);
    write("s2\n");
    let second = recorded(&d, &script);
    let _ = fs::remove_file(shm);
    assert_eq!((first.as_str(), second.as_str()), ("s1\n", "s2\n"));
}

/// Hole 5: a seccomp filter of the command's own could hide its calls.
#[test]
fn a_run_that_installs_a_seccomp_filter_is_not_recorded() {
    let d = Dir::new();
    d.write(
        "filter.py",
        "import ctypes, struct\n\
         libc = ctypes.CDLL(None)\n\
         libc.prctl(38, 1, 0, 0, 0)\n\
         buf = ctypes.create_string_buffer(struct.pack('HBBI', 6, 0, 0, 0x7fff0000))\n\
         class P(ctypes.Structure):\n    _fields_ = [('n', ctypes.c_ushort), ('f', ctypes.c_void_p)]\n\
         p = P(1, ctypes.addressof(buf))\n\
         print(libc.syscall(317, 1, 0, ctypes.byref(p)))\n",
    );
    let err = not_recorded(&d, "python3 -I filter.py");
    assert_contains(&err, "installed a seccomp filter");
    not_recorded(&d, "python3 -I filter.py");
}

/// Hole 6: an `io_uring` ring made before memorun ran and handed down to
/// the command: `io_uring_enter` on it is unrecordable.
#[test]
fn an_inherited_io_uring_ring_makes_the_run_unrecordable() {
    let d = Dir::new();
    let enter = "python3 -I -c \"import ctypes, os; \
                 print(ctypes.CDLL(None).syscall(426, int(os.environ['RING']), 0, 0, 0, None, 0))\"";
    let script = format!("echo run >> '{}'; {enter}", d.counter_path().display());
    let launcher = format!(
        "import ctypes, os, sys\n\
         fd = ctypes.CDLL(None).syscall(425, 4, ctypes.create_string_buffer(120))\n\
         assert fd >= 0\n\
         os.set_inheritable(fd, True)\n\
         os.environ['RING'] = str(fd)\n\
         os.execv({bin:?}, [{bin:?}, '-v', '--trace', '--', 'sh', '-c', sys.argv[1]])\n",
        bin = memorun_bin()
    );
    d.write("launch.py", launcher);
    for _ in 0..2 {
        let o = Command::new("python3")
            .arg(d.join("launch.py"))
            .arg(&script)
            .current_dir(d.path())
            .env("MEMORUN_DIR", &d.cache)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_contains(&stderr(&o), "not recorded");
        assert_contains(&stderr(&o), "io_uring_enter");
    }
    assert_eq!(d.count(), 2);
}

/// Hole 6: mounting changes what paths mean (as root).
#[test]
#[ignore = "needs root"]
fn a_run_that_mounts_is_not_recorded() {
    require_root();
    let d = Dir::new();
    fs::create_dir(d.join("mnt")).unwrap();
    let script = "unshare -m sh -c 'mount -t tmpfs none mnt && ls mnt'";
    let err = not_recorded(&d, script);
    assert_contains(&err, "mount");
}

/// Hole 6: a child cloned with `CLONE_UNTRACED` escapes the tracer: the
/// run is not recorded, and the child does not outlive memorun.
#[test]
fn a_clone_untraced_child_is_unrecordable_and_killed() {
    let d = Dir::new();
    d.write(
        "escape.py",
        "import ctypes, os, time\n\
         pid = ctypes.CDLL(None).syscall(56, 0x00800000 | 17, 0, 0, 0, 0)\n\
         if pid == 0:\n    time.sleep(60)\n    os._exit(0)\n\
         print(pid)\n",
    );
    let before = d.count();
    let t = Instant::now();
    let (out, err) = traced(&d, "python3 -I escape.py");
    // Left alive, the child would hold the output open for its minute.
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "memorun waited for it"
    );
    assert_eq!(d.count(), before + 1);
    assert_contains(&err, "CLONE_UNTRACED");
    let pid: i32 = out.trim().parse().expect("the child's pid");
    let start = Instant::now();
    loop {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let alive = state
            .as_deref()
            .and_then(|s| s.rsplit(')').next())
            .is_some_and(|s| !matches!(s.trim_start().chars().next(), Some('Z' | 'X')));
        if !alive {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the untraced child {pid} outlived memorun"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Section 3: a header generated just before the compile (`./gen.sh
/// >config.h && memorun --trace -- cc ...`) is recorded, every time.
#[test]
fn a_header_written_just_before_the_run_is_recorded() {
    let d = Dir::new();
    write_old(
        &d,
        "a.c",
        "#include \"config.h\"\nint f(void) { return V; }\n",
    );
    for i in 0..5 {
        // Written "now": within the clock's tick of the run's start (its
        // time set ahead makes that so however slow this build starts).
        let h = d.write("config.h", format!("#define V {i}\n"));
        set_mtime(&h, SystemTime::now() + Duration::from_secs(2));
        let o = d.run(["-v", "--trace", "--", "cc", "-c", "a.c", "-o", "a.o"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_contains(&stderr(&o), ", recorded");
    }
}

/// Section 3: an input modified while the command runs (after it read it)
/// is still refused, and the message says so.
#[test]
fn an_input_modified_while_the_command_runs_is_not_recorded() {
    let d = Dir::new();
    write_old(&d, "in.txt", "one\n");
    let started = d.join("started");
    let writer = {
        let (started, input) = (started.clone(), d.join("in.txt"));
        std::thread::spawn(move || {
            let t = Instant::now();
            while !started.exists() && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(5));
            }
            fs::write(input, "two, longer\n").unwrap();
            fs::write(started, "written").unwrap();
        })
    };
    let err = not_recorded(
        &d,
        "cat in.txt; : > started; while [ \"$(cat started)\" != written ]; do sleep 0.01; done",
    );
    writer.join().unwrap();
    assert_contains(
        &err,
        "traced input in.txt: modified while the command ran (after the command read it)",
    );
}

/// Issue 26, item 1: under `--trace`, a command that reads its terminal
/// (an answer typed at a prompt) is not recorded; one on the same
/// terminal that does not read it, and one reading a pipe as stdin, are.
#[test]
#[ignore = "needs script(1)"]
fn a_traced_command_that_reads_its_terminal_is_not_recorded() {
    let d = Dir::new();
    let on_terminal = |script: &str| {
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c"])
            .arg(format!(
                "'{}' -v --trace -- sh -c '{script}'",
                memorun_bin()
            ))
            .arg("/dev/null")
            .current_dir(d.path())
            .env("MEMORUN_DIR", &d.cache)
            .env_remove("CI")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run script(1): install util-linux (bsdutils on Debian)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
        let o = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for _ in 0..2 {
        let out = on_terminal("read x; echo got $x");
        assert_contains(&out, "got typed");
        assert_contains(
            &out,
            "not recorded: tracing cannot vouch for it: the command read from the terminal",
        );
    }
    assert_contains(&on_terminal("echo plain"), ", recorded");
    assert_contains(&on_terminal("echo plain"), "hit");
    assert_contains(&on_terminal("echo piped | cat"), ", recorded");
}

/// Section 3 in a build: `config.h` is generated right before the compiles
/// that include it; the first `make` records every compile, and the second
/// `make clean && make` replays every one. The header's time is set 2 s
/// ahead, as a file written within the clock's last tick looks to the
/// guard whatever the speed of this (debug) build: the times alone can
/// never clear it, only what the tracer saw at the open.
#[test]
fn make_with_a_generated_header_replays_every_compile_after_make_clean() {
    let d = Dir::new();
    d.write(
        "Makefile",
        "OBJS = a.o b.o\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n\
         config.h: gen.sh\n\t./gen.sh > config.h && touch -d @$$(($$(date +%s) + 2)) config.h\n\
         %.o: %.c config.h\n\t$(MEMORUN) -v --trace -- ./cc-counted -c $< -o $@\n\
         clean:\n\trm -f prog config.h $(OBJS)\n",
    );
    let exec = |rel: &str, body: &str| {
        let p = d.write(rel, body);
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        set_mtime(&p, SystemTime::now() - Duration::from_secs(3600));
    };
    exec("gen.sh", "#!/bin/sh\necho '#define V 0'\n");
    exec(
        "cc-counted",
        "#!/bin/sh\necho run >> count\nexec cc \"$@\"\n",
    );
    write_old(
        &d,
        "a.c",
        "#include \"config.h\"\nint b(void); int main(void) { return b() + V; }\n",
    );
    write_old(
        &d,
        "b.c",
        "#include \"config.h\"\nint b(void) { return V; }\n",
    );
    let first = crate::util::make(&d, &[]);
    assert_eq!(d.count(), 2);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert_eq!(err.matches(", recorded").count(), 2, "{err}");
    for _ in 0..2 {
        crate::util::make(&d, &["clean"]);
        let again = crate::util::make(&d, &[]);
        let err = String::from_utf8_lossy(&again.stderr).into_owned();
        assert_eq!(d.count(), 2, "make clean && make compiled again: {err}");
        assert_eq!(err.matches("hit").count(), 2, "{err}");
    }
    let status = Command::new(d.join("prog")).status().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The matrix of section 4 (the engine's part): for each way a command can
/// learn about a file, record, change the file in the way that matters to
/// that access, and run again: the command runs and prints the new
/// result, never the old one.
#[test]
fn every_way_to_learn_about_a_file_is_keyed() {
    type Step = fn(&Dir);
    let fixed = || SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    // Content changed, size and modification time kept: only the content
    // (or what the kernel reaches) can tell.
    let same_size: Step = |d| {
        set_mtime(
            &d.write("f", "BBB\n"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
        )
    };
    let bigger: Step = |d| write_old(d, "f", "echo longer\n");
    let cases: Vec<(&str, &str, Step)> = vec![
        ("open and read", "cat f", same_size),
        ("through a link it made", "ln -sfn f l2; cat l2", same_size),
        ("/proc/self/cwd", "cat /proc/self/cwd/f", same_size),
        (
            "O_PATH, /proc/self/fd",
            "python3 -I -c \"import os; fd = os.open('f', os.O_PATH); print(open('/proc/self/fd/%d' % fd).read(), end='')\"",
            same_size,
        ),
        (
            "O_PATH, /dev/fd",
            "python3 -I -c \"import os; fd = os.open('f', os.O_PATH); print(open('/dev/fd/%d' % fd).read(), end='')\"",
            same_size,
        ),
        (
            "open_tree",
            "python3 -I -c \"import ctypes; fd = ctypes.CDLL(None).syscall(428, -100, b'f', 0); print(open('/proc/self/fd/%d' % fd).read(), end='')\"",
            same_size,
        ),
        (
            "mmap",
            "python3 -I -c \"import mmap; f = open('f', 'rb'); print(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)[:].decode(), end='')\"",
            same_size,
        ),
        ("exec", "./f", |d| {
            set_mtime(
                &d.write("f", "echo B\n"),
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
            )
        }),
        ("stat", "stat -c %s f", bigger),
        ("stat -L through a link", "stat -L -c %s l", bigger),
        (
            "[ -s ] through a link",
            "[ -s l ] && echo nonempty || echo empty",
            |d| {
                set_mtime(
                    &d.write("f", ""),
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
                )
            },
        ),
        ("lstat", "stat -c %N l", |d| {
            fs::remove_file(d.join("l")).unwrap();
            std::os::unix::fs::symlink("g", d.join("l")).unwrap();
        }),
        ("ls -ln (mode)", "ls -ln f | cut -c1-10", |d| {
            fs::set_permissions(
                d.join("f"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap()
        }),
        ("a listing", "ls dir", |d| write_old(d, "dir/new", "")),
    ];
    for (how, script, change) in cases {
        let d = Dir::new();
        let f = d.write("f", "echo A\n");
        fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        set_mtime(&f, fixed());
        write_old(&d, "g", "other\n");
        write_old(&d, "dir/old", "");
        std::os::unix::fs::symlink("f", d.join("l")).unwrap();
        let before = recorded(&d, script);
        assert_eq!(replayed(&d, script), before, "{how}");
        change(&d);
        let count = d.count();
        let (after, err) = traced(&d, script);
        assert_eq!(
            d.count(),
            count + 1,
            "{how}: replayed after the change: {err}"
        );
        assert_ne!(after, before, "{how}: the same output after the change");
    }
}

/// Section 3 for a listing: a directory whose names changed just before
/// the run (its time within the clock's tick of the start) is recorded
/// when the names the command listed are still its names; a name added
/// while the command ran is refused.
#[test]
fn a_directory_changed_just_before_the_run_is_recorded() {
    let d = Dir::new();
    d.write("sub/a", "");
    let ahead = |d: &Dir| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 2;
        let o = Command::new("touch")
            .arg("-d")
            .arg(format!("@{t}"))
            .arg(d.join("sub"))
            .status();
        assert!(o.unwrap().success());
    };
    ahead(&d);
    assert_eq!(recorded(&d, "ls sub"), "a\n");
    assert_eq!(replayed(&d, "ls sub"), "a\n");
    // Another name, added after the listing, while the command runs.
    let script = "ls sub; : > started; while [ ! -e sub/late ]; do sleep 0.01; done";
    let adder = {
        let (started, late) = (d.join("started"), d.join("sub/late"));
        std::thread::spawn(move || {
            let t = Instant::now();
            while !started.exists() && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(5));
            }
            fs::write(late, "").unwrap();
        })
    };
    ahead(&d);
    let err = not_recorded(&d, script);
    adder.join().unwrap();
    assert_contains(&err, "traced input sub: modified while the command ran");
}

/// Section 3: a file written just before the run, looked at first (a
/// stat, while its times are still too recent to vouch for it) and read a
/// moment later, is recorded: the read's own look vouches for it. (The
/// compile above went through this path when the driver's stat came
/// within the clock's tick of the write and the compiler's read after it.)
#[test]
fn a_file_looked_at_then_read_a_moment_later_is_recorded() {
    let d = Dir::new();
    for i in 0..3 {
        d.write("in.txt", format!("{i}\n"));
        let o = d.run([
            "-v",
            "--trace",
            "--",
            "sh",
            "-c",
            "[ -e in.txt ]; sleep 0.1; cat in.txt",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{i}\n"));
        assert_contains(&stderr(&o), ", recorded");
    }
}
