//! Key control: --input, --ignore-arg, --key, --key-cmd, --stdin, the race
//! guard, output files, and `memorun why`.

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use crate::util::{Dir, assert_contains, assert_starts_with, code, set_mtime, stderr, stdout};

#[test]
fn input_directory_add_rename_and_content_change() {
    let d = Dir::new();
    d.write("data/a.txt", "aaaa");
    d.write("data/sub/b.txt", "bbbb");
    let run = |d: &Dir| d.run_counted(&["-i", "data"], "cat data/a.txt");
    run(&d);
    run(&d);
    assert_eq!(d.count(), 1);
    // Content change with the same size and mtime.
    // A touch alone changes no content: still a hit.
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&d.join("data/sub/b.txt"), old);
    run(&d);
    assert_eq!(d.count(), 1, "an mtime change alone caused a re-run");
    fs::write(d.join("data/sub/b.txt"), "BBBB").unwrap();
    set_mtime(&d.join("data/sub/b.txt"), old);
    run(&d);
    assert_eq!(d.count(), 2, "same-size same-mtime edit was not seen");
    run(&d);
    assert_eq!(d.count(), 2);
    // Add a file.
    d.write("data/new.txt", "");
    run(&d);
    assert_eq!(d.count(), 3, "a new file was not seen");
    // Rename a file.
    fs::rename(d.join("data/new.txt"), d.join("data/renamed.txt")).unwrap();
    run(&d);
    assert_eq!(d.count(), 4, "a rename was not seen");
    // An empty directory counts too.
    fs::create_dir(d.join("data/empty")).unwrap();
    run(&d);
    assert_eq!(d.count(), 5, "a new directory was not seen");
    run(&d);
    assert_eq!(d.count(), 5);
}

#[test]
fn input_glob_counts_matches_only() {
    let d = Dir::new();
    d.write("src/a.rs", "a");
    d.write("src/notes.txt", "n");
    let run = |d: &Dir| d.run_counted(&["-i", "src/*.rs"], "true");
    run(&d);
    fs::write(d.join("src/notes.txt"), "changed").unwrap();
    run(&d);
    assert_eq!(d.count(), 1, "a non-matching file changed the key");
    fs::write(d.join("src/a.rs"), "changed").unwrap();
    run(&d);
    assert_eq!(d.count(), 2);
    d.write("src/b.rs", "b");
    run(&d);
    assert_eq!(d.count(), 3, "a new match was not seen");
}

#[test]
fn absent_input_that_is_later_created() {
    let d = Dir::new();
    let run = |d: &Dir| {
        d.run_counted(
            &["-i", "later.txt"],
            "cat later.txt 2>/dev/null || echo none",
        )
    };
    assert_eq!(stdout(&run(&d)), "none\n");
    assert_eq!(stdout(&run(&d)), "none\n");
    assert_eq!(d.count(), 1);
    d.write("later.txt", "here\n");
    assert_eq!(stdout(&run(&d)), "here\n");
    assert_eq!(d.count(), 2);
}

#[test]
fn symlink_input_counts_by_target_content() {
    let d = Dir::new();
    d.write("target.txt", "one");
    std::os::unix::fs::symlink("target.txt", d.join("link")).unwrap();
    let run = |d: &Dir| {
        d.run([
            "--",
            "sh",
            "-c",
            "echo run >> count; cat \"$1\"",
            "sh",
            "link",
        ])
    };
    assert_eq!(stdout(&run(&d)), "one");
    fs::write(d.join("target.txt"), "two").unwrap();
    assert_eq!(
        stdout(&run(&d)),
        "two",
        "a symlink's target change was not seen"
    );
    assert_eq!(d.count(), 2);
    // Under an --input directory too.
    d.write("dir/real.txt", "x");
    std::os::unix::fs::symlink("real.txt", d.join("dir/alias")).unwrap();
    let run = |d: &Dir| d.run_counted(&["-i", "dir"], "true");
    run(&d);
    fs::write(d.join("dir/real.txt"), "y").unwrap();
    run(&d);
    assert_eq!(d.count(), 4);
}

#[test]
fn fifo_and_symlink_loop_inputs_finish_promptly() {
    let d = Dir::new();
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let start = Instant::now();
    let o = d.run(["-i", "fifo", "--", "true"]);
    assert_eq!(code(&o), 125);
    assert_contains(&stderr(&o), "input 'fifo' is a FIFO");
    // As an argument it is simply not an input.
    let o = d.run(["--", "sh", "-c", "echo ok", "sh", "fifo"]);
    assert_eq!(stdout(&o), "ok\n");
    // Symlink loops inside an --input directory are links, not followed.
    fs::create_dir(d.join("loopy")).unwrap();
    std::os::unix::fs::symlink(".", d.join("loopy/self")).unwrap();
    std::os::unix::fs::symlink("../loopy", d.join("loopy/up")).unwrap();
    std::os::unix::fs::symlink("a", d.join("loopy/b")).unwrap();
    std::os::unix::fs::symlink("b", d.join("loopy/a")).unwrap();
    let o = d.run(["-i", "loopy", "-i", "loopy/**", "--", "echo", "fine"]);
    assert_eq!(stdout(&o), "fine\n");
    assert_eq!(code(&o), 0);
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn ignore_arg_on_a_flag_and_on_a_file() {
    let d = Dir::new();
    let run = |d: &Dir, args: &[&str]| {
        let mut all = vec![
            "-x",
            "--verbose",
            "-x",
            "--jobs=*",
            "-x",
            "*.log",
            "--",
            "sh",
            "-c",
        ];
        all.push("echo run >> count; echo done");
        all.push("sh");
        all.extend_from_slice(args);
        d.run(all)
    };
    d.write("run.log", "first");
    run(&d, &["--jobs=2", "run.log"]);
    run(&d, &["--jobs=8", "--verbose", "run.log"]);
    fs::write(d.join("run.log"), "a log that changed").unwrap();
    run(&d, &["--jobs=4", "run.log"]);
    assert_eq!(
        d.count(),
        1,
        "an ignored argument or its file content reached the key"
    );
    run(&d, &["--jobs=4", "other"]);
    assert_eq!(d.count(), 2, "a kept argument did not count");
}

#[test]
fn key_text_and_key_command() {
    let d = Dir::new();
    d.assert_miss(&["-k", "v1"], "true");
    d.assert_hit(&["-k", "v1"], "true");
    d.assert_miss(&["-k", "v2"], "true");
    d.write("version", "1");
    let kc = ["--key-cmd", "cat version"];
    d.assert_miss(&kc, "true");
    d.assert_hit(&kc, "true");
    // A change of the key command's output.
    fs::write(d.join("version"), "2").unwrap();
    d.assert_miss(&kc, "true");
    // The exit status counts too, and the key command's stderr is not ours.
    let kc = ["--key-cmd", "echo oops >&2; test -e flag"];
    let o = d.assert_miss(&kc, "echo out");
    assert_eq!(stderr(&o), "");
    d.write("flag", "");
    d.assert_miss(&kc, "echo out");
    assert_eq!(d.count(), 6);
}

#[test]
fn key_command_that_cannot_start_runs_uncached() {
    let d = Dir::new();
    let o = d
        .memorun()
        .env("PATH", "/nonexistent")
        .args(["--key-cmd", "true", "--", "/bin/echo", "hi"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(code(&o), 0);
    assert_starts_with(&stderr(&o), "memorun: warning: cannot run --key-cmd 'true'");
}

/// `memorun ARGS -- sh -c 'count; cat'` with `input` piped to stdin.
fn with_stdin(d: &Dir, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut cmd = d.memorun_std();
    cmd.args(args).arg("--").args(d.counted("cat"));
    crate::util::output_with_stdin(&mut cmd, input.to_vec())
}

#[test]
fn stdin_from_a_pipe_is_in_the_key() {
    let d = Dir::new();
    assert_eq!(with_stdin(&d, &[], b"a\n").stdout, b"a\n");
    assert_eq!(
        with_stdin(&d, &[], b"b\n").stdout,
        b"b\n",
        "replayed the output for other stdin"
    );
    assert_eq!(with_stdin(&d, &[], b"a\n").stdout, b"a\n");
    assert_eq!(d.count(), 2);
    // Larger than any buffer, byte for byte.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(with_stdin(&d, &[], &big).stdout, big);
    assert_eq!(with_stdin(&d, &[], &big).stdout, big);
    assert_eq!(d.count(), 3);
}

#[test]
fn stdin_from_a_file_and_ignored_stdin() {
    let d = Dir::new();
    let run = |d: &Dir, args: &[&str], file: &str| {
        d.memorun_std()
            .args(args)
            .arg("--")
            .args(d.counted("cat"))
            .stdin(fs::File::open(d.join(file)).unwrap())
            .output()
            .unwrap()
    };
    d.write("in1", "one\n");
    d.write("in2", "two\n");
    assert_eq!(stdout(&run(&d, &[], "in1")), "one\n");
    assert_eq!(stdout(&run(&d, &[], "in2")), "two\n");
    assert_eq!(stdout(&run(&d, &[], "in1")), "one\n");
    assert_eq!(d.count(), 2);
    // --stdin ignore: stdin is not in the key (so this replays "one").
    assert_eq!(stdout(&run(&d, &["--stdin", "ignore"], "in1")), "one\n");
    assert_eq!(stdout(&run(&d, &["--stdin", "ignore"], "in2")), "one\n");
    assert_eq!(d.count(), 3);
    // /dev/null is empty stdin, the same as an empty pipe.
    let o = d
        .memorun_std()
        .arg("--")
        .args(d.counted("cat"))
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"");
    assert_eq!(with_stdin(&d, &[], b"").stdout, b"");
    assert_eq!(d.count(), 4);
}

#[test]
fn race_guard_input_changed_during_the_run_then_restored() {
    let d = Dir::new();
    d.write("in.txt", "original\n");
    // The command reads the input mid-change: its output reflects other
    // content than what was hashed, even though the file ends up restored.
    let script = "cat in.txt > seen; printf 'changed!\\n' > in.txt; cat in.txt; printf 'original\\n' > in.txt";
    let args = ["-i", "in.txt", "-v"];
    let o = d.run_counted(&args, script);
    assert_eq!(stdout(&o), "changed!\n");
    assert_contains(
        &stderr(&o),
        "not recorded: input 'in.txt' changed while the command ran",
    );
    assert_eq!(fs::read_to_string(d.join("in.txt")).unwrap(), "original\n");
    d.run_counted(&args, script);
    assert_eq!(
        d.count(),
        2,
        "a result computed during an input change was replayed"
    );
}

#[test]
fn output_file_named_in_argv_does_not_stop_the_next_hit() {
    let d = Dir::new();
    d.write("in.txt", "b\na\n");
    let run = |d: &Dir| {
        d.run([
            "--",
            "sh",
            "-c",
            "echo run >> count; sort \"$1\" > \"$2\"",
            "sh",
            "in.txt",
            "out.txt",
        ])
    };
    run(&d);
    assert_eq!(fs::read_to_string(d.join("out.txt")).unwrap(), "a\nb\n");
    run(&d);
    run(&d);
    assert_eq!(
        d.count(),
        1,
        "the command's own output file became an input"
    );
    // The real input still counts.
    fs::write(d.join("in.txt"), "d\nc\n").unwrap();
    run(&d);
    assert_eq!(d.count(), 2);
    assert_eq!(fs::read_to_string(d.join("out.txt")).unwrap(), "c\nd\n");
    // A recorded output that is gone is restored by the hit (see
    // outputs.rs for the rest of output capture).
    fs::remove_file(d.join("out.txt")).unwrap();
    run(&d);
    assert_eq!(d.count(), 2);
    assert_eq!(fs::read_to_string(d.join("out.txt")).unwrap(), "c\nd\n");
}

#[test]
fn cc_style_output_argument_hits_on_the_second_run() {
    let d = Dir::new();
    d.write("in.c", "int main;");
    let run = |d: &Dir| {
        d.run([
            "--",
            "sh",
            "-c",
            "echo run >> count; cp \"$3\" \"$2\"",
            "cc",
            "-o",
            "out.o",
            "in.c",
        ])
    };
    run(&d);
    run(&d);
    assert_eq!(d.count(), 1);
}

/// Every byte of every file under `dir` (the WAL included).
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.extend(fs::read(e).unwrap());
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_env_value_or_stdin_text_in_the_cache_directory() {
    let d = Dir::new();
    let env_secret = "hunter2-env-SECRET-value";
    let stdin_secret = b"stdin-SECRET-7f3a91-text";
    let mut child = d
        .memorun_std()
        .env("MEMO_SECRET", env_secret)
        .args([
            "-e",
            "MEMO_SECRET",
            "-e",
            "MEMO_*",
            "--",
            "sh",
            "-c",
            "cat >/dev/null; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin_secret).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "done\n");
    // `why` must not write them either.
    let w = d
        .memorun()
        .env("MEMO_SECRET", env_secret)
        .args(["why", "-e", "MEMO_SECRET", "--", "true"])
        .output()
        .unwrap();
    assert!(!stdout(&w).contains(env_secret));
    let bytes = all_bytes(&d.cache);
    assert!(bytes.len() > 1000, "expected a store");
    assert!(
        !contains(&bytes, env_secret.as_bytes()),
        "an env value is in the cache directory"
    );
    assert!(
        !contains(&bytes, stdin_secret),
        "stdin text is in the cache directory"
    );
    assert!(
        contains(&bytes, b"MEMO_SECRET"),
        "env names are stored (sanity check of the grep)"
    );
}

#[test]
fn why_names_the_changed_file_and_env_var_never_a_value() {
    let d = Dir::new();
    d.write("src/parse.rs", "fn a() {}");
    let args = ["-i", "src", "-e", "MEMO_CC", "--", "true"];
    let o = d
        .memorun()
        .env_remove("MEMO_CC")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let why = |d: &Dir| {
        d.memorun()
            .env("MEMO_CC", "gcc-secret-value")
            .arg("why")
            .args(args)
            .output()
            .unwrap()
    };
    let w = why(&d);
    assert_eq!(code(&w), 0);
    let text = stdout(&w);
    assert!(text.starts_with("would miss"), "{text}");
    assert!(text.contains("env MEMO_CC: was unset, now set"), "{text}");
    assert!(
        !text.contains("gcc-secret-value"),
        "why printed an env value"
    );
    fs::write(d.join("src/parse.rs"), "fn b() {}").unwrap();
    d.write("src/new.rs", "");
    let text = stdout(&why(&d));
    assert!(text.contains("input src/parse.rs: changed"), "{text}");
    assert!(text.contains("input src/new.rs: new file"), "{text}");
    // JSON.
    let j = d
        .memorun()
        .env("MEMO_CC", "gcc-secret-value")
        .args(["why", "--json"])
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["would"], "miss");
    let changes: Vec<String> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}: {}",
                c["kind"].as_str().unwrap(),
                c["name"].as_str().unwrap(),
                c["change"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        changes.contains(&"input src/parse.rs: changed".to_string()),
        "{changes:?}"
    );
    assert!(!String::from_utf8_lossy(&j.stdout).contains("gcc-secret-value"));
    // And a hit.
    let o = d.memorun().env("MEMO_CC", "x").args(args).output().unwrap();
    assert_eq!(code(&o), 0);
    let w = d
        .memorun()
        .env("MEMO_CC", "x")
        .arg("why")
        .args(args)
        .output()
        .unwrap();
    assert_starts_with(&stdout(&w), "would hit: recorded ");
}

#[test]
fn why_says_when_no_earlier_entry_exists_and_runs_nothing() {
    let d = Dir::new();
    // Without a cache directory, why says so and creates nothing.
    let w = d.memorun().args(["why", "--", "true"]).output().unwrap();
    assert_starts_with(&stdout(&w), "would miss: nothing recorded yet");
    assert!(!d.cache.exists(), "why created the cache directory");
    d.run(["--", "echo", "something else"]);
    let w = d
        .memorun()
        .args(["why", "--"])
        .args(d.counted("true"))
        .output()
        .unwrap();
    assert_eq!(code(&w), 0);
    assert_contains(&stdout(&w), "no earlier run of this command");
    assert_eq!(d.count(), 0, "why ran the command");
}

#[test]
fn verbose_miss_names_the_reason() {
    let d = Dir::new();
    d.write("in.txt", "1");
    let run = |d: &Dir| d.run(["-v", "--", "cat", "in.txt"]);
    run(&d);
    fs::write(d.join("in.txt"), "2").unwrap();
    let o = run(&d);
    assert_starts_with(&stderr(&o), "memorun: miss (input in.txt: changed), ran in");
}

#[test]
fn huge_stdin_is_spooled_with_bounded_memory() {
    // 200 MB through memorun's stdin spool; its peak RSS must stay small.
    const SIZE: usize = 200_000_000;
    let d = Dir::new();
    let mut child = d
        .memorun_std()
        .args(["--", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'z'; 1 << 20];
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    });
    let mut out = child.stdout.take().unwrap();
    let (status, peak_kib) = crate::util::wait_with_peak_rss(&mut child);
    writer.join().unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut out, &mut s).unwrap();
    assert!(status.success());
    assert_eq!(s.trim(), SIZE.to_string());
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB for a 200 MB stdin"
    );
}

#[test]
fn why_applies_the_read_policy() {
    let d = Dir::new();
    d.run(["--", "echo", "x"]);
    let w = |args: &[&str]| {
        let mut all = vec!["why"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "echo", "x"]);
        stdout(&d.run(all))
    };
    assert!(w(&[]).starts_with("would hit"), "{}", w(&[]));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        w(&["--ttl", "1s"]).starts_with("would miss: the entry is"),
        "{}",
        w(&["--ttl", "1s"])
    );
    assert!(
        w(&["-f"]).starts_with("would miss: --force"),
        "{}",
        w(&["-f"])
    );
    d.run(["--cache-failures", "--", "sh", "-c", "exit 3"]);
    let o = stdout(&d.run(["why", "--", "sh", "-c", "exit 3"]));
    assert!(o.starts_with("would miss: the entry is a failure"), "{o}");
    let o = stdout(&d.run(["why", "--cache-failures", "--", "sh", "-c", "exit 3"]));
    assert!(o.starts_with("would hit"), "{o}");
    // The argv row shows the command as keyed, without ignored arguments.
    let o = stdout(&d.run(["why", "-x", "--jobs=*", "--", "echo", "x", "--jobs=4"]));
    let argv = o
        .lines()
        .find(|l| l.trim_start().starts_with("argv"))
        .unwrap();
    assert!(argv.trim_end().ends_with(" echo x"), "{o}");
}

#[test]
fn an_output_edited_by_the_user_is_not_replayed_over() {
    // The first run creates config.json (so it is an output, left out of
    // the key); if the user then edits it, the recorded result no longer
    // describes what the command would do.
    let d = Dir::new();
    let run = |d: &Dir| {
        d.run([
            "--",
            "sh",
            "-c",
            "echo run >> count; [ -e \"$1\" ] || echo default > \"$1\"; cat \"$1\"",
            "sh",
            "config.json",
        ])
    };
    assert_eq!(stdout(&run(&d)), "default\n");
    assert_eq!(stdout(&run(&d)), "default\n");
    assert_eq!(d.count(), 1);
    fs::write(d.join("config.json"), "edited\n").unwrap();
    let o = run(&d);
    assert_eq!(stdout(&o), "edited\n", "a stale result was replayed");
    assert_eq!(d.count(), 2);
    assert_eq!(stdout(&run(&d)), "edited\n");
    assert_eq!(d.count(), 2, "the new state was not recorded");
}

/// Issue 13: `memorun -i . -- cargo test` was never recorded (cargo writes
/// `target/` while it runs), and the hint said `-x`, which only drops
/// arguments. `-i '!target/**'` (or `--exclude`) leaves the subtree out of
/// the walk and of the race guard, and the hint names it.
#[test]
fn an_excluded_subtree_written_by_the_command_does_not_stop_recording() {
    let d = Dir::new();
    // The counter file is in the work directory: the project is below it.
    d.write("p/src/lib.rs", "fn main() {}");
    d.write("p/target/debug/old", "x");
    // It rewrites a file it made before: what a run only adds is its
    // product, a change is a race.
    let build = "mkdir -p p/target/debug; date +%N >> p/target/debug/old; echo built";
    // Without an exclusion: not recorded, and the hint says what to do.
    let o = d.run_counted(&["-v", "-i", "p"], build);
    assert_eq!(stdout(&o), "built\n");
    assert_contains(
        &stderr(&o),
        "changed while the command ran (if the command writes it, leave it out with -i '!p/target/**')",
    );
    d.run_counted(&["-i", "p"], build);
    assert_eq!(d.count(), 2, "a run whose input changed was recorded");
    for exclusion in [["-i", "!p/target/**"], ["--exclude", "./p/target/"]] {
        d.write("p/src/lib.rs", format!("// {exclusion:?}"));
        let before = d.count();
        let args = ["-v", "-i", "p", exclusion[0], exclusion[1]];
        let o = d.run_counted(&args, build);
        assert!(stderr(&o).contains("recorded"), "{}", stderr(&o));
        let o = d.run_counted(&args, build);
        assert_eq!(stdout(&o), "built\n");
        assert_eq!(
            d.count(),
            before + 1,
            "{exclusion:?} did not make it recordable"
        );
        // What is left in the key still counts.
        d.write("p/src/lib.rs", format!("// {before}"));
        d.run_counted(&args, build);
        assert_eq!(
            d.count(),
            before + 2,
            "an edit outside the exclusion was missed"
        );
    }
    // Globs honour exclusions too, and a new file in an excluded directory
    // is no change.
    let args = ["-i", "p/**/*.rs", "-i", "!p/target/**"];
    d.write("p/target/gen.rs", "1");
    d.run_counted(&args, "echo glob");
    let before = d.count();
    d.write("p/target/gen.rs", "2");
    d.write("p/target/more.rs", "3");
    d.run_counted(&args, "echo glob");
    assert_eq!(d.count(), before, "an excluded file changed the key");
    let o = d.run(["-i", "!a[", "--", "true"]);
    assert_eq!(code(&o), 125);
    assert!(stderr(&o).contains("exclusion 'a['"), "{}", stderr(&o));
}

/// The closest earlier entry a miss is explained against, as `why --json`
/// names it: its full key.
fn previous_key(o: &std::process::Output) -> String {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["previous"]["key"].as_str().unwrap().to_string()
}

/// Issue 13: after a switch from `-i .` to `-i src/`, `why` diffed against
/// the latest entry (the `-i .` walk) and listed hundreds of paths, and `-v`
/// said `input listing src/: added, and N more`, hiding the one real change.
#[test]
fn why_explains_a_miss_against_the_closest_entry_not_the_latest() {
    let d = Dir::new();
    // The project is below the work directory, away from the counter file.
    for f in [
        "src/lib.rs",
        "src/main.rs",
        "README",
        "docs/a.md",
        "docs/b.md",
    ] {
        d.write(format!("p/{f}"), f);
    }
    let cmd = d.counted("echo built");
    let in_p = |args: &[&str]| {
        d.memorun()
            .current_dir(d.join("p"))
            .args(args)
            .arg("--")
            .args(&cmd)
            .output()
            .unwrap()
    };
    in_p(&["-i", "src/"]);
    let closest = stdout(&in_p(&["why", "--json", "-i", "src/"]));
    let closest: serde_json::Value = serde_json::from_str(&closest).unwrap();
    let closest = closest["key"].as_str().unwrap().to_string();
    // The latest entry of the command walks the whole project.
    in_p(&["-i", "."]);
    assert_eq!(d.count(), 2);
    d.write("p/src/lib.rs", "edited");
    let text = stdout(&in_p(&["why", "-i", "src/"]));
    let mut changes = text
        .lines()
        .skip_while(|l| !l.starts_with("changes since the closest earlier run"));
    let heading = changes.next().unwrap_or_default();
    assert!(
        heading.starts_with(&format!(
            "changes since the closest earlier run ({}, recorded ",
            &closest[..12]
        )),
        "{text}"
    );
    assert_eq!(
        changes.collect::<Vec<_>>(),
        ["  input src/lib.rs: changed"],
        "{text}"
    );
    assert_eq!(
        previous_key(&in_p(&["why", "--json", "-i", "src/"])),
        closest
    );
    let o = in_p(&["-v", "-i", "src/"]);
    assert_starts_with(
        &stderr(&o),
        "memorun: miss (input src/lib.rs: changed), ran in",
    );
    assert_eq!(d.count(), 3);
}

/// Issue 13: a CI store held a `--no-cwd` run and a cwd-keyed run of the
/// same step; a checkout at a new path was explained against the latest
/// (`cwd: now in the key`) instead of the cwd-keyed one (`cwd: /ci1 → /ci2`).
#[test]
fn why_explains_a_moved_checkout_as_a_cwd_change() {
    let d = Dir::new();
    let (ci1, ci2) = (d.join("ci1"), d.join("ci2"));
    fs::create_dir_all(&ci1).unwrap();
    fs::create_dir_all(&ci2).unwrap();
    let cmd = d.counted("echo step");
    let run_in = |dir: &std::path::Path, args: &[&str]| {
        d.memorun()
            .current_dir(dir)
            .args(args)
            .arg("--")
            .args(&cmd)
            .output()
            .unwrap()
    };
    run_in(&ci1, &[]);
    run_in(&ci1, &["--no-cwd"]);
    assert_eq!(d.count(), 2);
    let text = stdout(&run_in(&ci2, &["why"]));
    let change = format!("  cwd: {} → {}", ci1.display(), ci2.display());
    let changes: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("changes since the closest earlier run"))
        .skip(1)
        .collect();
    assert_eq!(changes, [change.as_str()], "{text}");
    // The JSON names the same entry as the text.
    let key = previous_key(&run_in(&ci2, &["why", "--json"]));
    assert!(
        text.contains(&format!("({}, recorded ", &key[..12])),
        "{text}"
    );
    let o = run_in(&ci2, &["-v"]);
    assert!(
        stderr(&o).starts_with(&format!("memorun: miss ({})", change.trim())),
        "{}",
        stderr(&o)
    );
}

/// Issue 13: a header that `cc -c foo.c` includes is not in the key, and a
/// hit replayed the old object; `why` on the hit did not make it plain
/// which files the key holds. It says so now, in text and JSON, with counts
/// for walks and globs however many files they hold.
#[test]
fn why_on_a_hit_says_which_files_the_key_holds() {
    let d = Dir::new();
    d.write("foo.c", "#include \"include/foo.h\"");
    d.write("include/foo.h", "int x;");
    for i in 0..30 {
        d.write(format!("src/f{i:02}.c"), format!("{i}"));
    }
    let why = |args: &[&str]| {
        let mut all = vec!["why"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "cat", "foo.c"]);
        stdout(&d.run(all))
    };
    d.run(["--", "cat", "foo.c"]);
    let text = why(&[]);
    assert!(text.starts_with("would hit"), "{text}");
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("inputs in the key"))
        .collect();
    assert_eq!(
        summary,
        [
            "inputs in the key: 1 file",
            "  named: foo.c",
            "  any other file is not in the key: a change to it is not seen",
        ],
        "{text}"
    );
    // With the headers and a walked directory declared.
    let args = ["-i", "include/*.h", "-i", "src"];
    d.run(["-i", "include/*.h", "-i", "src", "--", "cat", "foo.c"]);
    let text = why(&args);
    assert!(text.starts_with("would hit"), "{text}");
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("inputs in the key"))
        .collect();
    assert_eq!(
        summary,
        [
            "inputs in the key: 32 files",
            "  named: foo.c",
            "  matching include/*.h: 1 file",
            "  under src: 30 files",
            "  any other file is not in the key: a change to it is not seen",
        ],
        "{text}"
    );
    // The components list stays short; JSON has everything.
    assert!(
        text.contains("  ... and 12 more inputs (--json lists them all)\n"),
        "{text}"
    );
    assert!(text.lines().count() < 40, "{text}");
    let mut all = vec!["why", "--json"];
    all.extend_from_slice(&args);
    all.extend_from_slice(&["--", "cat", "foo.c"]);
    let v: serde_json::Value = serde_json::from_slice(&d.run(all).stdout).unwrap();
    assert_eq!(v["would"], "hit");
    assert_eq!(v["inputs"]["files"], 32);
    assert_eq!(v["inputs"]["named"][0]["name"], "foo.c");
    assert_eq!(v["inputs"]["listings"][0]["name"], "include/*.h");
    assert_eq!(v["inputs"]["listings"][0]["glob"], true);
    assert_eq!(v["inputs"]["listings"][1]["files"], 30);
    let inputs = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "input")
        .count();
    assert_eq!(inputs, 32);
}
