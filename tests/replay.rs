//! A hit replays stdout, stderr, their interleaving and the exit code byte
//! for byte, without running the command.

use std::fs;
use std::process::Stdio;

use crate::util::{Dir, assert_starts_with, code, stderr, stdout};

#[test]
fn second_run_is_a_hit_with_identical_output() {
    let d = Dir::new();
    let first = d.run_counted(&[], "echo out; echo err >&2; exit 0");
    let second = d.run_counted(&[], "echo out; echo err >&2; exit 0");
    assert_eq!(d.count(), 1, "the command ran again on a hit");
    assert_eq!(code(&first), 0);
    assert_eq!(code(&second), 0);
    assert_eq!(stdout(&first), "out\n");
    assert_eq!(stderr(&first), "err\n");
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(first.stderr, second.stderr);
}

#[test]
fn binary_output_without_trailing_newline_is_byte_identical() {
    let d = Dir::new();
    // Invalid UTF-8, NUL bytes, a lone CR and no trailing newline, on both
    // streams; inline-sized.
    let script = r"printf '\377\376\000abc\r'; printf '\200\000' >&2; printf 'z'";
    let first = d.run_counted(&[], script);
    let second = d.run_counted(&[], script);
    assert_eq!(d.count(), 1);
    assert_eq!(first.stdout, b"\xff\xfe\x00abc\rz");
    assert_eq!(first.stderr, b"\x80\x00");
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(second.stderr, first.stderr);
}

#[test]
fn blob_sized_binary_output_is_byte_identical() {
    let d = Dir::new();
    // Every byte value, repeated past the inline limit, on both streams.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    d.write("data.bin", &data);
    let script = "cat data.bin; cat data.bin >&2; printf tail";
    let first = d.run_counted(&[], script);
    let second = d.run_counted(&[], script);
    assert_eq!(d.count(), 1);
    let mut expected = data.clone();
    expected.extend_from_slice(b"tail");
    assert_eq!(first.stdout, expected);
    assert_eq!(second.stdout, expected);
    assert_eq!(second.stderr, data);
}

/// Run memorun with stdout and stderr on the same file, so the file shows
/// the order in which the two streams were written.
fn merged_output(d: &Dir, script: &str) -> Vec<u8> {
    let out = d.join("merged");
    let f = fs::File::create(&out).unwrap();
    let status = d
        .memorun_std()
        .arg("--")
        .args(d.counted(script))
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .status()
        .unwrap();
    assert!(status.success());
    fs::read(&out).unwrap()
}

#[test]
fn interleaving_of_stdout_and_stderr_is_kept() {
    let d = Dir::new();
    let script = "echo 1; sleep 0.05; echo 2 >&2; sleep 0.05; echo 3; sleep 0.05; \
                  printf 4 >&2; sleep 0.05; echo 5 >&2; sleep 0.05; echo 6";
    let miss = merged_output(&d, script);
    let hit = merged_output(&d, script);
    assert_eq!(d.count(), 1);
    assert_eq!(miss, b"1\n2\n3\n45\n6\n");
    assert_eq!(hit, miss);
}

#[test]
fn recorded_exit_code_is_replayed() {
    let d = Dir::new();
    let a = d.run_counted(&["--cache-failures"], "echo partial; exit 3");
    let b = d.run_counted(&["--cache-failures"], "echo partial; exit 3");
    assert_eq!((code(&a), code(&b)), (3, 3));
    assert_eq!(stdout(&b), "partial\n");
    assert_eq!(d.count(), 1);
}

#[test]
fn force_runs_and_records_the_new_result() {
    let d = Dir::new();
    let script = "wc -l < count";
    let a = d.run_counted(&[], script);
    let b = d.run_counted(&["--force"], script);
    let c = d.run_counted(&[], script);
    assert_eq!(d.count(), 2);
    assert_eq!(stdout(&a).trim(), "1");
    assert_eq!(stdout(&b).trim(), "2");
    assert_eq!(stdout(&c).trim(), "2", "the forced result was not recorded");
}

#[test]
fn no_cache_and_memorun_disable_neither_read_nor_write() {
    let d = Dir::new();
    d.run_counted(&["--no-cache"], "echo hi");
    assert!(!d.cache.exists(), "--no-cache created the store");
    d.run_counted(&[], "echo hi");
    assert_eq!(d.count(), 2);
    let o = d.run_counted(&["--no-cache"], "echo hi");
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(d.count(), 3, "--no-cache replayed");
    let o = d
        .memorun()
        .env("MEMORUN_DISABLE", "1")
        .arg("--")
        .args(d.counted("echo hi"))
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(d.count(), 4, "MEMORUN_DISABLE=1 replayed");
}

#[test]
fn verbose_says_hit_or_miss_and_silent_otherwise() {
    let d = Dir::new();
    let miss = d.run_counted(&["-v"], "echo hi");
    assert_starts_with(
        &stderr(&miss),
        "memorun: miss (no earlier run of this command), ran in ",
    );
    assert!(stderr(&miss).contains("recorded"));
    let hit = d.run_counted(&["-v"], "echo hi");
    assert_starts_with(&stderr(&hit), "memorun: hit, recorded ");
    assert!(stderr(&hit).contains("saved"));
    let quiet_hit = d.run_counted(&[], "echo hi");
    assert_eq!(stderr(&quiet_hit), "", "a replay added output of its own");
    assert_eq!(stdout(&quiet_hit), "hi\n");
    assert_eq!(d.count(), 1);
}

#[test]
fn double_dash_stats_runs_a_program_named_stats() {
    let d = Dir::new();
    let bin = d.join("bin");
    fs::create_dir(&bin).unwrap();
    let script = bin.join("stats");
    fs::write(&script, "#!/bin/sh\necho \"I am stats: $*\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = d
        .memorun()
        .env("PATH", path)
        .args(["--", "stats", "-x"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "I am stats: -x\n");
    assert_eq!(code(&o), 0);
}

/// `memorun -- seq 1 1000000 | head -1`, in a shell.
fn piped_to_head(d: &Dir) -> std::process::Output {
    let counted = d.counted("seq 1 1000000");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' -- sh -c \"$1\" | head -1",
            crate::util::memorun_bin()
        ))
        .arg("sh")
        .arg(&counted[2])
        .env("MEMORUN_DIR", &d.cache)
        .current_dir(d.path())
        .output()
        .unwrap()
}

#[test]
fn reader_going_away_on_miss_and_hit_is_quiet() {
    let d = Dir::new();
    // A miss whose reader goes away: quiet, and not recorded.
    let o = piped_to_head(&d);
    assert_eq!(stdout(&o), "1\n");
    assert_eq!(stderr(&o), "", "a broken pipe was reported");
    assert_eq!(d.count(), 1);
    // A full run records it.
    let full = d
        .memorun()
        .arg("--")
        .args(d.counted("seq 1 1000000"))
        .output()
        .unwrap();
    assert_eq!(d.count(), 2, "a run whose reader went away was recorded");
    assert_eq!(full.stdout.len(), 6_888_896);
    // A replay whose reader goes away: quiet too.
    let o = piped_to_head(&d);
    assert_eq!(stdout(&o), "1\n");
    assert_eq!(stderr(&o), "", "a broken pipe was reported");
    assert_eq!(d.count(), 2);
}

#[test]
fn device_arguments_are_not_read() {
    let d = Dir::new();
    let o = d.run(["--", "head", "-c", "10", "/dev/zero"]);
    assert_eq!(code(&o), 0);
    assert_eq!(o.stdout, vec![0u8; 10]);
    let o = d.run(["--", "head", "-c", "10", "/dev/zero"]);
    assert_eq!(o.stdout, vec![0u8; 10]);
}
