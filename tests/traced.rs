//! `--trace`: every file a command reads goes into the key, so an
//! undeclared input can never give a stale replay; and a traced command
//! behaves exactly as untraced.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, assert_contains, code, make, memorun_bin, stderr, stdout};

/// Write `rel` and give it a modification time in the past, as a file
/// edited a while before the run (a file written within a few milliseconds
/// of a run's start counts as changed while it ran).
fn write_old(d: &Dir, rel: &str, content: &str) {
    let p = d.write(rel, content);
    let f = fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    // ctime is now: let it fall behind the margin.
    std::thread::sleep(Duration::from_millis(30));
}

fn traced(d: &Dir, args: &[&str], script: &str) -> std::process::Output {
    let mut all = vec!["-v", "--trace"];
    all.extend_from_slice(args);
    d.run_counted(&all, script)
}

#[track_caller]
fn hit(d: &Dir, args: &[&str], script: &str) -> String {
    let before = d.count();
    let o = traced(d, args, script);
    assert_eq!(d.count(), before, "ran on a hit: {}", stderr(&o));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    stderr(&o)
}

#[track_caller]
fn miss(d: &Dir, args: &[&str], script: &str) -> String {
    let before = d.count();
    let o = traced(d, args, script);
    assert_eq!(d.count(), before + 1, "replayed on a miss: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(", recorded"), "not recorded: {err}");
    err
}

/// The header case from the issue: edited, shadowed by a new file in an
/// earlier include directory, and removed again.
#[test]
fn a_header_the_compiler_includes_is_a_traced_input() {
    let d = Dir::new();
    fs::create_dir_all(d.join("first")).unwrap();
    write_old(&d, "include/config.h", "#define X 1\n");
    write_old(
        &d,
        "foo.c",
        "#include \"config.h\"\nint f(void) { return X; }\n",
    );
    let cc = "cc -Ifirst -Iinclude -c foo.c -o foo.o";
    let o: &[&str] = &["-o", "foo.o"];
    miss(&d, o, cc);
    let err = hit(&d, o, cc);
    assert_contains(&err, "traced inputs unchanged");
    let first = fs::read(d.join("foo.o")).unwrap();
    // Edited: a miss, never the old object.
    write_old(&d, "include/config.h", "#define X 2\n");
    let err = miss(&d, o, cc);
    assert_contains(&err, "miss (traced input include/config.h: changed)");
    let second = fs::read(d.join("foo.o")).unwrap();
    assert_ne!(first, second);
    hit(&d, o, cc);
    // A new header in an earlier directory shadows it: the absent probe.
    write_old(&d, "first/config.h", "#define X 3\n");
    let err = miss(&d, o, cc);
    assert_contains(&err, "traced input first/config.h: created");
    // Removed again: the manifest of the run before matches, and replays
    // (restoring its object file).
    fs::remove_file(d.join("first/config.h")).unwrap();
    fs::remove_file(d.join("foo.o")).unwrap();
    let err = hit(&d, o, cc);
    assert_contains(&err, "restored 1 file");
    assert_eq!(fs::read(d.join("foo.o")).unwrap(), second);
    // why names the manifest's inputs and what changed.
    write_old(&d, "include/config.h", "#define X 4\n");
    let why = d.run(
        ["why", "--trace", "--"]
            .into_iter()
            .chain(d.counted(cc).iter().map(String::as_str)),
    );
    let text = stdout(&why);
    assert_contains(&text, "would miss");
    // Explained from the most recently used manifest.
    assert_contains(&text, "in the most recent traced run; traced input ");
    assert!(
        !text.contains("changes since the closest earlier run"),
        "{text}"
    );
    assert_contains(&text, "  foo.c  a file");
    // list says how many traced inputs each entry has.
    let entries = d.entries();
    assert!(
        entries
            .iter()
            .all(|e| e["traced_inputs"].as_u64().unwrap() > 10),
        "{entries:?}"
    );
}

#[test]
fn a_sourced_script_and_a_program_found_on_path_are_traced_inputs() {
    let d = Dir::new();
    write_old(&d, "lib.sh", "greeting=hello\n");
    fs::create_dir_all(d.join("bin1")).unwrap();
    let tool = d.write("bin2/tool", "#!/bin/sh\necho tool v1\n");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    // Its ctime is now: let it fall behind the race guard's margin.
    std::thread::sleep(Duration::from_millis(30));
    let path = format!(
        "{}:{}:{}",
        d.join("bin1").display(),
        d.join("bin2").display(),
        std::env::var("PATH").unwrap()
    );
    let script = format!(". ./lib.sh; echo $greeting; PATH='{path}' tool");
    miss(&d, &[], &script);
    hit(&d, &[], &script);
    write_old(&d, "lib.sh", "greeting=howdy\n");
    let err = miss(&d, &[], &script);
    assert_contains(&err, "traced input lib.sh: changed");
    // A different program earlier on PATH.
    let newer = d.write("bin1/tool", "#!/bin/sh\necho tool v2\n");
    fs::set_permissions(&newer, fs::Permissions::from_mode(0o755)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let o = traced(&d, &[], &script);
    assert_eq!(stdout(&o), "howdy\ntool v2\n", "{}", stderr(&o));
    assert_contains(&stderr(&o), "traced input bin1/tool: created");
}

#[test]
fn a_python_module_imported_is_a_traced_input() {
    // Every machine this project builds on has Python: fail, never skip.
    let python = Command::new("python3").arg("-V").output();
    assert!(python.is_ok(), "python3 is not installed");
    let d = Dir::new();
    // Python lists its own directory: a run that created a file there (the
    // counter, on a first run) would not be recorded, nor one that ran
    // right after the directory changed (memorun creating its cache in it).
    std::fs::create_dir_all(&d.cache).unwrap();
    fs::set_permissions(d.join(".cache"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&d.cache, fs::Permissions::from_mode(0o700)).unwrap();
    write_old(&d, "count", "");
    write_old(&d, "helper.py", "VALUE = 1\n");
    write_old(&d, "main.py", "import helper\nprint(helper.VALUE)\n");
    let script = "python3 -B main.py";
    miss(&d, &[], script);
    hit(&d, &[], script);
    write_old(&d, "helper.py", "VALUE = 2\n");
    let o = traced(&d, &[], script);
    assert_eq!(stdout(&o), "2\n");
    assert_contains(&stderr(&o), "traced input helper.py: changed");
}

/// A file the command writes and then reads back is not an input, and
/// temp files that come and go are not in the manifest.
#[test]
fn a_file_the_command_writes_then_reads_is_not_an_input() {
    let d = Dir::new();
    let script = "echo data > scratch.tmp; cat scratch.tmp; rm scratch.tmp; \
                  t=$(mktemp); echo x > \"$t\"; cat \"$t\" >/dev/null; rm \"$t\"";
    miss(&d, &[], script);
    hit(&d, &[], script);
}

/// Processes and threads the command starts are traced too.
#[test]
fn inputs_read_by_children_and_threads_are_traced() {
    let d = Dir::new();
    d.write(
        "reader.c",
        "#include <pthread.h>\n#include <stdio.h>\n\
         static void *run(void *p) { FILE *f = fopen(p, \"r\"); char b[64] = {0};\n\
           if (f) { fgets(b, sizeof b, f); fclose(f); } fputs(b, stdout); return 0; }\n\
         int main(int c, char **v) { pthread_t t; pthread_create(&t, 0, run, v[1]);\n\
           pthread_join(t, 0); return 0; }\n",
    );
    let built = Command::new("cc")
        .args(["-pthread", "-o", "reader", "reader.c"])
        .current_dir(d.path())
        .status()
        .expect("cc is installed (CI installs it)");
    assert!(built.success());
    write_old(&d, "a.txt", "a1\n");
    write_old(&d, "b.txt", "b1\n");
    write_old(&d, "c.txt", "c1\n");
    let script = "(cat a.txt) & sh -c 'cat b.txt' & wait; ./reader c.txt";
    miss(&d, &[], script);
    hit(&d, &[], script);
    for (file, new) in [("a.txt", "a2\n"), ("b.txt", "b2\n"), ("c.txt", "c2\n")] {
        write_old(&d, file, new);
        let err = miss(&d, &[], script);
        assert_contains(&err, &format!("traced input {file}: changed"));
    }
}

#[test]
fn make_j4_over_traced_rules_replays_after_make_clean() {
    let d = Dir::new();
    d.write(
        "Makefile",
        "OBJS = a.o b.o\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n\
         %.o: %.c\n\t$(MEMORUN) --trace -- ./cc-counted -Iinclude -c $< -o $@\n\
         clean:\n\trm -f prog $(OBJS)\n",
    );
    write_old(&d, "include/v.h", "#define V 0\n");
    write_old(
        &d,
        "a.c",
        "#include \"v.h\"\nint b(void); int main(void) { return b() + V; }\n",
    );
    write_old(&d, "b.c", "int b(void) { return 0; }\n");
    let cc = d.write(
        "cc-counted",
        "#!/bin/sh\necho run >> count\nexec cc \"$@\"\n",
    );
    fs::set_permissions(cc, fs::Permissions::from_mode(0o755)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    make(&d, &["-j4"]);
    assert_eq!(d.count(), 2);
    make(&d, &["clean"]);
    make(&d, &["-j4"]);
    assert_eq!(d.count(), 2, "make clean && make compiled again");
    // The undeclared header changes: only the rule that includes it runs.
    write_old(&d, "include/v.h", "#define V 1\n");
    make(&d, &["clean"]);
    make(&d, &["-j4"]);
    assert_eq!(d.count(), 3);
    let status = Command::new(d.join("prog")).status().unwrap();
    assert_eq!(status.code(), Some(1), "linked from a stale object");
}

#[test]
fn trace_exclude_leaves_paths_out() {
    let d = Dir::new();
    write_old(&d, "volatile/stamp", "1\n");
    write_old(&d, "data.txt", "data\n");
    let script = "cat volatile/stamp data.txt > /dev/null";
    let excl = d.join("volatile").display().to_string() + "/**";
    miss(&d, &["--trace-exclude", &excl], script);
    write_old(&d, "volatile/stamp", "2\n");
    hit(&d, &["--trace-exclude", &excl], script);
    // Without the exclusion the run must key the stamp: never a replay of
    // the run that left it out.
    miss(&d, &[], script);
    write_old(&d, "data.txt", "changed\n");
    miss(&d, &["--trace-exclude", &excl], script);
}

/// Traced, a command keeps its exit status, its signals, its stdin.
#[test]
fn a_traced_command_behaves_as_untraced() {
    let d = Dir::new();
    let o = traced(&d, &["--cache-failures"], "exit 3");
    assert_eq!(code(&o), 3);
    let o = traced(&d, &[], "kill -TERM $$");
    assert_eq!(code(&o), 143);
    assert_contains(&stderr(&o), "not recorded: killed by signal 15");
    let mut cmd = d.memorun_std();
    cmd.args(["--trace", "--", "sh", "-c", "tr a-z A-Z"]);
    let o = crate::util::output_with_stdin(&mut cmd, b"piped in\n".to_vec());
    assert_eq!(stdout(&o), "PIPED IN\n");
    // A command that ignores SIGTERM still ends on its own terms.
    let o = traced(&d, &[], "trap '' TERM; kill -TERM $$; echo survived");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "survived\n"));
    // MEMORUN_TRACE=1 turns it on: the second run is a traced hit.
    let run = || {
        d.memorun()
            .env("MEMORUN_TRACE", "1")
            .args(["-v", "--"])
            .args(d.counted("cat data.txt 2>/dev/null; true"))
            .output()
            .unwrap()
    };
    assert_eq!(code(&run()), 0);
    let o = run();
    assert_contains(&stderr(&o), "traced inputs unchanged");
}

/// memorun killed with SIGKILL mid-trace leaves no process behind, stopped
/// or running (the tracer's death kills its tracees).
#[test]
fn kill_9_mid_trace_leaves_no_tracee() {
    let d = Dir::new();
    let marker = format!("memorun-trace-test-{}", std::process::id());
    let mut child = d
        .memorun_std()
        .args(["--trace", "--", "sh", "-c"])
        .arg(format!("sleep 30; : {marker}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// On a terminal, a traced command sees the terminal as an untraced one.
#[test]
#[ignore = "needs script(1)"]
fn a_traced_command_keeps_its_terminal() {
    let d = Dir::new();
    let o = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "'{}' --trace -- sh -c 'test -t 0 && echo on a tty'",
            memorun_bin()
        ))
        .arg("/dev/null")
        .current_dir(d.path())
        .env("MEMORUN_DIR", &d.cache)
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run script(1): install util-linux (bsdutils on Debian)");
    assert_contains(&String::from_utf8_lossy(&o.stdout), "on a tty");
}

/// What a command found by looking at a file, not reading it (a size, a
/// modification time: a make-style check), is in the key too.
#[test]
fn a_file_the_command_only_looks_at_is_keyed_by_what_a_look_tells() {
    let d = Dir::new();
    write_old(&d, "in.c", "int x;\n");
    write_old(&d, "out.o", "object\n");
    let script = "if [ in.c -nt out.o ]; then echo rebuild; else echo up-to-date; fi";
    miss(&d, &[], script);
    hit(&d, &[], script);
    // Touched: newer than the object now.
    let f = fs::File::options()
        .write(true)
        .open(d.join("in.c"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let o = traced(&d, &[], script);
    assert_eq!(stdout(&o), "rebuild\n", "{}", stderr(&o));
}

/// A directory the command listed and then wrote into is not what it
/// listed any more: such a run is not recorded (never replayed without the
/// name it added).
#[test]
fn a_listing_the_command_changed_is_not_recorded() {
    let d = Dir::new();
    write_old(&d, "count", "");
    write_old(&d, "dir/a", "");
    let script = "ls dir; touch dir/new";
    let o = traced(&d, &[], script);
    assert_eq!(stdout(&o), "a\n");
    assert_contains(
        &stderr(&o),
        "a directory it listed, was changed by the command itself",
    );
    let o = traced(&d, &[], script);
    assert_eq!(stdout(&o), "a\nnew\n", "{}", stderr(&o));
}

/// The same command in two checkouts sharing one cache, with --base-dir:
/// each checks its own files, never the other's.
#[test]
fn a_traced_hit_checks_the_files_of_the_checkout_it_runs_in() {
    let (a, b) = (Dir::new(), Dir::new());
    write_old(&a, "data", "A content\n");
    write_old(&b, "data", "B content\n");
    let cache = a.cache.clone();
    let run = |d: &Dir| {
        d.memorun()
            .env("MEMORUN_DIR", &cache)
            .arg("--base-dir")
            .arg(d.path())
            .args(["-v", "--trace", "--", "cat", "data"])
            .output()
            .unwrap()
    };
    let o = run(&a);
    assert_eq!(stdout(&o), "A content\n", "{}", stderr(&o));
    assert_contains(&stderr(&o), "recorded");
    let o = run(&b);
    assert_eq!(stdout(&o), "B content\n", "{}", stderr(&o));
    let o = run(&b);
    assert_eq!(stdout(&o), "B content\n", "{}", stderr(&o));
    let o = run(&a);
    assert_eq!(stdout(&o), "A content\n", "{}", stderr(&o));
    assert_contains(&stderr(&o), "hit");
}
