//! Issue 26: the everyday path, as a new user walks it. A developer at a
//! terminal shares entries with CI; the docs' cargo recipes record on a
//! fresh clone of a library crate (no `Cargo.lock`) and hit after; a cache
//! directory inside the working tree is never an input; `--trace -- cargo
//! test` works without hand-written exclusions; and every miss says its
//! true reason, in the words the user typed.
//!
//! The crate is a tiny one written by the test (no dependencies, no
//! network: `CARGO_NET_OFFLINE`), built into a target directory beside it;
//! a `cargo` wrapper first on `PATH` counts the real runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::recipes::recipe_commands;
use crate::remote::SECRET;
use crate::servers::Redis;
use crate::util::{Dir, assert_contains, code, memorun_bin, output_with_stdin, stderr, stdout};

/// A library crate without `Cargo.lock`, as a fresh clone of one is: its
/// directory, a target directory and a cache beside it, and a counter of
/// cargo's runs.
struct Crate {
    tmp: tempfile::TempDir,
    /// Where the cache is (`MEMORUN_DIR`).
    cache: PathBuf,
}

const LIB: &str = "pub fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n\n\
#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(1, 2), 3);\n    }\n}\n";

impl Crate {
    fn new() -> Crate {
        let tmp = tempfile::Builder::new()
            .prefix("memorun-crate")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("tiny");
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
        )
        .unwrap();
        fs::write(dir.join("src/lib.rs"), LIB).unwrap();
        // Library crates do not commit it (strsim's .gitignore lists it).
        fs::write(dir.join(".gitignore"), "/target\nCargo.lock\n").unwrap();
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let wrapper = bin.join("cargo");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
                tmp.path().join("count").display(),
                real_cargo().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(memorun_bin(), bin.join("memorun")).unwrap();
        let cache = tmp.path().join("cache");
        // A traced input changed within 20 ms of the run's start counts as
        // changed during it (the traced race guard): a clone is older than
        // that by the time anyone runs a command in it.
        std::thread::sleep(std::time::Duration::from_millis(100));
        Crate { tmp, cache }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("tiny")
    }

    /// How many times cargo ran.
    fn count(&self) -> usize {
        fs::read_to_string(self.tmp.path().join("count"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `sh -c LINE` in the crate, with `memorun` and the counting `cargo`
    /// first on `PATH`, offline, against this crate's cache.
    fn sh(&self, line: &str) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.tmp.path().join("bin")];
        paths.extend(std::env::split_paths(&path));
        let mut c = Command::new("sh");
        c.args(["-c", line])
            .current_dir(self.dir())
            .env("PATH", std::env::join_paths(paths).unwrap())
            .env("MEMORUN_DIR", &self.cache)
            .env("CARGO_TARGET_DIR", self.tmp.path().join("target"))
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TERM_COLOR", "never")
            .stdin(Stdio::null());
        // What the test runner's cargo set for this test binary, and what
        // would make memorun share a remote.
        for v in [
            "CARGO_MANIFEST_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CI",
            "MEMORUN_REMOTE",
            "MEMORUN_TRACE",
            "MEMORUN_BASE_DIR",
            "MEMORUN_DISABLE",
        ] {
            c.env_remove(v);
        }
        let o = c.output().unwrap();
        assert_eq!(code(&o), 0, "{line}: {}", stderr(&o));
        o
    }

    fn remove_lock(&self) {
        fs::remove_file(self.dir().join("Cargo.lock")).unwrap();
    }
}

/// The `cargo` the tests are built with (a rustup proxy, most often).
fn real_cargo() -> PathBuf {
    if let Some(c) = std::env::var_os("CARGO") {
        return PathBuf::from(c);
    }
    let o = Command::new("sh")
        .args(["-c", "command -v cargo"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

/// A recipe line on a fresh clone: the first run records (the lock it
/// creates is its product); with the lock now there, the next is another
/// key and records; then it hits; and another fresh clone (no lock) hits
/// the first entry.
#[track_caller]
fn records_on_a_fresh_clone_then_hits(c: &Crate, line: &str) {
    let before = c.count();
    let first = c.sh(line);
    assert_contains(&stdout(&first), "test tests::adds ... ok");
    assert_eq!(c.count(), before + 1, "{line}: {}", stderr(&first));
    assert!(c.dir().join("Cargo.lock").exists());
    c.sh(line);
    assert_eq!(c.count(), before + 2, "{line}: the lock is another key");
    let o = c.sh(line);
    assert_eq!(c.count(), before + 2, "{line}: no hit with the lock");
    assert_contains(&stdout(&o), "test tests::adds ... ok");
    c.remove_lock();
    let o = c.sh(line);
    assert_eq!(
        c.count(),
        before + 2,
        "{line}: a fresh clone did not hit: {}\nthe first run: {}",
        stderr(&o),
        stderr(&first)
    );
    assert_contains(&stdout(&o), "test tests::adds ... ok");
}

/// Issue 26: `-i Cargo.lock` reported "input 'Cargo.lock' changed while
/// the command ran" on every fresh clone, and `-i .` "input '.' changed":
/// the test-suite recipe never recorded for a library crate.
#[test]
fn the_cargo_recipes_record_on_a_fresh_clone_of_a_library_crate() {
    let lines = recipe_commands("cargo-test");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        let c = Crate::new();
        records_on_a_fresh_clone_then_hits(&c, line);
    }
}

/// Issue 26: `--trace -- cargo test` needed `--trace-exclude` for cargo's
/// lock files (`~/.cargo/.global-cache` was "changed by the command
/// itself") and target directory. The default exclusions cover them; an
/// edit of the library is still a miss.
#[test]
fn traced_cargo_test_records_and_hits_without_trace_excludes() {
    let lines: Vec<String> = recipe_commands("trace")
        .into_iter()
        .filter(|l| l.contains("-- cargo test"))
        .collect();
    assert_eq!(lines, ["memorun --trace -- cargo test"]);
    let line = "memorun -v --trace -- cargo test --offline";
    let c = Crate::new();
    records_on_a_fresh_clone_then_hits(&c, line);
    // The lock back, as the recorded run with it left it: a hit.
    c.sh(line);
    c.sh(line);
    let runs = c.count();
    fs::write(
        c.dir().join("src/lib.rs"),
        LIB.replace("fn adds()", "fn adds_up()"),
    )
    .unwrap();
    let o = c.sh(&format!("{line} 2>&1"));
    assert_eq!(c.count(), runs + 1, "an edit of src/lib.rs replayed");
    assert_contains(&stdout(&o), "test tests::adds_up ... ok");
}

/// Issue 26: with the GitHub Actions layout (`MEMORUN_DIR` in the
/// workspace) and `-i .`, the first run was "input '.memorun' changed
/// while the command ran". The cache directory is never an input.
#[test]
fn a_cache_directory_inside_the_walked_tree_is_never_an_input() {
    for input in [".", "**"] {
        let d = Dir::new();
        d.write("data/a.txt", "a\n");
        let cache = d.join(".memorun");
        let run = || {
            d.memorun_std()
                .env("MEMORUN_DIR", &cache)
                .args(["-v", "-i", input, "-i", "!count", "--"])
                .args(d.counted("cat data/a.txt"))
                .output()
                .unwrap()
        };
        let o = run();
        assert_contains(&stderr(&o), "recorded");
        assert_eq!((d.count(), stdout(&o)), (1, "a\n".to_string()), "{input}");
        let o = run();
        assert_eq!(d.count(), 1, "{input}: {}", stderr(&o));
        let w = d
            .memorun_std()
            .env("MEMORUN_DIR", &cache)
            .args(["why", "--json", "-i", input, "-i", "!count", "--"])
            .args(d.counted("cat data/a.txt"))
            .output()
            .unwrap();
        assert!(!stdout(&w).contains(".memorun"), "{}", stdout(&w));
    }
}

/// Issue 26: an input absent at the start and created by the run is its
/// product: recorded under "absent"; the next run, which finds it, is
/// another key. A name that appears in a walked directory likewise; one
/// changed or removed still stops recording.
#[test]
fn what_a_run_creates_among_its_inputs_is_its_product() {
    let d = Dir::new();
    let args = ["-v", "-i", "made.txt"];
    let o = d.assert_miss(&args, "test -e made.txt || echo new > made.txt");
    assert_contains(&stderr(&o), "recorded");
    d.assert_miss(&args, "test -e made.txt || echo new > made.txt");
    d.assert_hit(&args, "test -e made.txt || echo new > made.txt");
    fs::remove_file(d.join("made.txt")).unwrap();
    d.assert_hit(&args, "test -e made.txt || echo new > made.txt");

    d.write("tree/kept.txt", "kept\n");
    let walk = ["-v", "-i", "tree"];
    let o = d.assert_miss(&walk, "date > tree/new-$$.txt");
    assert_contains(&stderr(&o), "recorded");
    let o = d.assert_miss(&walk, "echo changed > tree/kept.txt");
    assert_contains(
        &stderr(&o),
        "not recorded: input 'tree/kept.txt' changed while the command ran",
    );
    let o = d.assert_miss(&walk, "rm tree/kept.txt");
    assert_contains(&stderr(&o), "not recorded: input 'tree/kept.txt' changed");
}

/// Issue 26: a run at a terminal keyed stdin as "not read (terminal)" and
/// CI's `</dev/null` as "hashed (empty)": no hit across the two, even
/// through a shared remote. Both are "no stdin data" now, and so is an
/// empty pipe.
#[test]
#[ignore = "needs script(1) and redis-server: .ci/run installs them"]
fn a_terminal_run_and_a_dev_null_run_share_one_entry_through_redis() {
    let server = Redis::start();
    let url = server.url();
    let d = Dir::new();
    let script = d.counted("echo built");
    // At a terminal, with its own cache: `script` runs the line with sh,
    // which makes the same argv as `script` above.
    let o = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "'{}' -v --remote {url} -- sh -c \"echo run >> '{}'; echo built\"",
            memorun_bin(),
            d.counter_path().display()
        ))
        .arg("/dev/null")
        .current_dir(d.path())
        .env("MEMORUN_DIR", d.join("laptop"))
        .env("MEMORUN_SECRET", SECRET)
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run script(1): install util-linux");
    let pty = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_contains(&pty, "built");
    assert_contains(
        &pty,
        "miss (no entry here or on the remote; checkouts at other paths share entries only with --base-dir)",
    );
    assert_contains(&pty, "uploaded");
    assert_eq!(d.count(), 1);
    // In CI, on /dev/null, with another cache: a hit from the remote.
    let ci = |cache: &str| {
        let mut c = d.memorun_std();
        c.env("MEMORUN_DIR", d.join(cache))
            .env("MEMORUN_SECRET", SECRET)
            .args(["-v", "--remote", &url, "--"])
            .args(&script);
        c
    };
    let o = ci("ci").output().unwrap();
    assert_eq!(
        d.count(),
        1,
        "no hit across a terminal and /dev/null: {}",
        stderr(&o)
    );
    assert_contains(&stderr(&o), "hit (remote)");
    assert_eq!(stdout(&o), "built\n");
    // An empty pipe too.
    let o = output_with_stdin(&mut ci("pipe"), Vec::new());
    assert_eq!(d.count(), 1, "{}", stderr(&o));
    // `why` with no local store asks the remote now.
    let w = d
        .memorun_std()
        .env("MEMORUN_DIR", d.join("never-used"))
        .env("MEMORUN_SECRET", SECRET)
        .args(["why", "--remote", &url, "--"])
        .args(&script)
        .output()
        .unwrap();
    assert_contains(&stdout(&w), "would hit from the remote cache");
    assert!(!d.join("never-used").exists(), "why created the cache");
    let w = d
        .memorun_std()
        .env("MEMORUN_DIR", d.join("never-used"))
        .env("MEMORUN_SECRET", SECRET)
        .args(["why", "--remote", &url, "--", "echo", "never", "recorded"])
        .output()
        .unwrap();
    assert_contains(&stdout(&w), "the remote cache");
    assert_contains(&stdout(&w), "does not hold the entry");
    assert_contains(
        &stdout(&w),
        "no entry here or on the remote; checkouts at other paths share entries only with --base-dir",
    );
}

/// `why` and `-v` say what stdin is keyed as.
#[test]
fn stdin_with_no_data_is_one_key() {
    let d = Dir::new();
    d.run(["--", "echo", "something else"]);
    let w = d.run(["why", "--", "true"]);
    // The components are a table: the label column is as wide as the
    // widest label (`program NAME` since issue 24).
    let out = stdout(&w);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["stdin", "no", "stdin", "data"]),
        "no 'stdin  no stdin data' line in:\n{out}"
    );
    d.assert_miss(&[], "true");
    // /dev/null (the helper's stdin) and an empty pipe: one entry.
    let mut c = d.memorun_std();
    c.arg("--").args(d.counted("true"));
    output_with_stdin(&mut c, Vec::new());
    assert_eq!(d.count(), 1, "an empty pipe is not /dev/null");
    let mut c = d.memorun_std();
    c.args(["-v", "--"]).args(d.counted("true"));
    let o = output_with_stdin(&mut c, b"data".to_vec());
    assert_contains(&stderr(&o), "miss (stdin: was no stdin data, now hashed)");
}

/// Issue 26: the miss named the option by its internal encoding (`key
/// \x00trace-exclude\x00...`). It names it as typed.
#[test]
fn a_miss_names_an_option_as_typed() {
    for (option, said) in [
        (
            &["--trace-exclude", "target/**"][..],
            "memorun: miss (--trace-exclude 'target/**': added), ran in ",
        ),
        (
            &["--no-default-trace-excludes"][..],
            "memorun: miss (--no-default-trace-excludes: added), ran in ",
        ),
    ] {
        let d = Dir::new();
        // Its traced inputs (sh, its libraries) are old: it records.
        let cmd = "echo hi";
        let o = d.assert_miss(&["-v", "--trace"], cmd);
        assert_contains(&stderr(&o), "recorded");
        let args: Vec<&str> = ["-v", "--trace"].iter().chain(option).copied().collect();
        let o = d.assert_miss(&args, cmd);
        assert_contains(&stderr(&o), said);
        d.assert_hit(&["--trace"], cmd);
    }
}

/// A relative `--trace-exclude` is resolved against the working
/// directory, as `--exclude` is: a file under it changed by the command
/// itself no longer stops recording.
#[test]
fn a_relative_trace_exclude_is_resolved_against_the_working_directory() {
    let d = Dir::new();
    d.write("state/log", "0\n");
    let cmd = "cat state/log >/dev/null; echo 1 >> state/log";
    let o = d.assert_miss(&["-v", "--trace"], cmd);
    assert_contains(
        &stderr(&o),
        "traced input state/log was changed by the command itself",
    );
    let args = ["-v", "--trace", "--trace-exclude", "state/**"];
    let o = d.assert_miss(&args, cmd);
    assert_contains(&stderr(&o), "recorded");
    d.assert_hit(&args, cmd);
}

/// `why --trace` lists the default exclusions, named exactly.
#[test]
fn why_trace_shows_the_default_exclusions() {
    let d = Dir::new();
    d.run(["--", "true"]);
    d.write("Cargo.toml", "");
    let home = d.join("cargo-home");
    let w = d
        .memorun()
        .env("CARGO_HOME", &home)
        .env_remove("CARGO_TARGET_DIR")
        .args(["why", "--trace", "--", "true"])
        .output()
        .unwrap();
    // Shown relative to the working directory, where they are under it.
    assert_contains(
        &stdout(&w),
        "  by default (--no-default-trace-excludes keeps them): cargo-home/.global-cache, \
         cargo-home/.global-cache-journal, cargo-home/.global-cache-wal, \
         cargo-home/.global-cache-shm, cargo-home/.package-cache, \
         cargo-home/.package-cache-mutate, target\n",
    );
    let w = d.run([
        "why",
        "--trace",
        "--no-default-trace-excludes",
        "--",
        "true",
    ]);
    assert_contains(
        &stdout(&w),
        "no default exclusions (--no-default-trace-excludes)",
    );
}

/// Issue 26: `clear -- cargo test` removed nothing, silently, when the
/// entries were `cargo test --offline`.
#[test]
fn clear_says_how_many_longer_commands_start_with_the_words() {
    let d = Dir::new();
    for cmd in [["echo", "test", "--offline"], ["echo", "test", "-q"]] {
        d.run(std::iter::once("--").chain(cmd));
    }
    d.run(["--", "echo", "testing"]);
    let o = d.run(["clear", "--", "echo", "test"]);
    assert_eq!(
        stdout(&o),
        "removed 0 entries (0 B)\n2 other entries start with `echo test`; \
         `memorun clear --prefix -- echo test` removes them\n"
    );
    let o = d.run(["clear", "--prefix", "--", "echo", "test"]);
    assert_contains(&stdout(&o), "removed 2 entries");
    assert_eq!(d.entries().len(), 1, "echo testing is not `echo test ...`");
}

/// `stats --help` pointed to the README for the fields; they are in
/// docs/commands.md.
#[test]
fn stats_help_points_to_the_page_with_the_fields() {
    let o = Command::new(memorun_bin())
        .args(["stats", "--help"])
        .output()
        .unwrap();
    let help = stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_contains(&help, "docs/commands.md describes every field");
    let page =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/commands.md")).unwrap();
    assert_contains(&page, "hit_rate");
}
