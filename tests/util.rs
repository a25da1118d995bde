//! Test helpers: a temp work directory and cache, and the real memorun
//! binary run inside them.
//!
//! Hits and misses are proven with a counter file that the command appends
//! a line to each time it actually runs, never with timing.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use assert_cmd::Command;
use tempfile::TempDir;

/// The memorun binary under test.
pub fn memorun_bin() -> &'static str {
    env!("CARGO_BIN_EXE_memorun")
}

/// The variables that configure a remote cache and shared keys.
const REMOTE_VARS: [&str; 17] = [
    "MEMORUN_REMOTE",
    "MEMORUN_REMOTE_LOOKUP_TIMEOUT",
    "MEMORUN_REMOTE_RETRY",
    "MEMORUN_SECRET",
    "MEMORUN_REMOTE_TOKEN",
    "MEMORUN_REMOTE_READ_ONLY",
    "MEMORUN_REMOTE_TIMEOUT",
    "MEMORUN_REMOTE_MAX_SIZE",
    "MEMORUN_BASE_DIR",
    "MEMORUN_S3_ADDRESSING",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// A temp work directory with its own cache directory.
pub struct Dir {
    tmp: TempDir,
    /// The cache directory (`MEMORUN_DIR`), created on first use by memorun.
    pub cache: PathBuf,
}

impl Dir {
    /// A fresh work directory; the cache is `<work>/.cache/memorun`.
    pub fn new() -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix("memorun-test")
            .tempdir()
            .unwrap();
        let cache = tmp.path().join(".cache").join("memorun");
        Dir { tmp, cache }
    }

    /// The work directory.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A path inside the work directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Write a file in the work directory.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, contents).unwrap();
        p
    }

    /// memorun, run in the work directory against this cache, with an
    /// environment free of memorun's own variables.
    pub fn memorun(&self) -> Command {
        let mut c = Command::new(memorun_bin());
        self.prepare(c.current_dir(self.path()));
        c
    }

    /// Like [`Dir::memorun`], as a plain `std::process::Command`.
    pub fn memorun_std(&self) -> StdCommand {
        let mut c = StdCommand::new(memorun_bin());
        // Never inherit the test runner's stdin: it may be a pipe that
        // never closes, which memorun would wait on.
        c.stdin(std::process::Stdio::null())
            .current_dir(self.path())
            .env("MEMORUN_DIR", &self.cache)
            .env_remove("MEMORUN_DISABLE")
            .env_remove("CI");
        for v in REMOTE_VARS {
            c.env_remove(v);
        }
        c
    }

    fn prepare(&self, c: &mut Command) {
        c.env("MEMORUN_DIR", &self.cache)
            .env_remove("MEMORUN_DISABLE")
            .env_remove("CI");
        // A developer's own remote cache must not take part in the tests.
        for v in REMOTE_VARS {
            c.env_remove(v);
        }
    }

    /// Run memorun with `args`, returning its output whatever the status.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.memorun().args(args).output().unwrap()
    }

    /// The counter file's path.
    pub fn counter_path(&self) -> PathBuf {
        self.join("count")
    }

    /// Remove the hit records (`store::records`), as a memorun that
    /// rewrites or replaces the database does: the next hit goes through
    /// the database. For tests that put another database in place.
    pub fn drop_records(&self) {
        match fs::remove_dir_all(self.cache.join("records")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
    }

    /// How many times a counted command has actually run.
    pub fn count(&self) -> usize {
        fs::read_to_string(self.counter_path())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `sh -c SCRIPT` that first appends a line to the counter file.
    pub fn counted(&self, script: &str) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo run >> '{}'; {script}", self.counter_path().display()),
        ]
    }

    /// `memorun ARGS -- sh -c 'count; SCRIPT'`.
    pub fn run_counted(&self, args: &[&str], script: &str) -> Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push("--".into());
        all.extend(self.counted(script));
        self.run(all)
    }

    /// [`Dir::run_counted`], asserting that it replayed: the command did
    /// not run, and memorun exited 0.
    #[track_caller]
    pub fn assert_hit(&self, args: &[&str], script: &str) -> Output {
        let before = self.count();
        let o = self.run_counted(args, script);
        assert_eq!(self.count(), before, "the command ran, on a hit: {o:?}");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        o
    }

    /// [`Dir::run_counted`], asserting that the command ran, once.
    #[track_caller]
    pub fn assert_miss(&self, args: &[&str], script: &str) -> Output {
        let before = self.count();
        let o = self.run_counted(args, script);
        assert_eq!(self.count(), before + 1, "a replay, on a miss: {o:?}");
        o
    }

    /// `memorun ARGS`, which must exit 0, with its stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
    }

    /// `memorun stats --json`.
    #[track_caller]
    pub fn stats(&self) -> serde_json::Value {
        self.json(&["stats", "--json"])
    }

    /// `memorun list --json`: the recorded entries.
    #[track_caller]
    pub fn entries(&self) -> Vec<serde_json::Value> {
        match self.json(&["list", "--json"]) {
            serde_json::Value::Array(entries) => entries,
            other => panic!("list --json is not an array: {other}"),
        }
    }
}

/// stdout as a string (lossy).
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as a string (lossy).
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, or a panic with the output when killed by a signal.
pub fn code(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("memorun was killed: {o:?}"))
}

/// Assert that `text` contains `needle`, showing all of `text` if not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} not in:\n{text}");
}

/// Assert that `text` starts with `prefix`, showing all of `text` if not.
#[track_caller]
pub fn assert_starts_with(text: &str, prefix: &str) {
    assert!(
        text.starts_with(prefix),
        "{prefix:?} does not start:\n{text}"
    );
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Fail, never skip, a test that needs root and runs without it. Such tests
/// are `#[ignore = "needs root"]`; `.ci/run` runs them, as root.
#[track_caller]
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root: run `cargo test -- --ignored` as root (.ci/run does)"
    );
}

/// Wait for `child`, sampling its peak RSS (`VmHWM`, KiB) from /proc until
/// it exits. Unlike `ru_maxrss`, this does not count the test process's
/// pages that a child shares between fork and exec.
pub fn wait_with_peak_rss(child: &mut std::process::Child) -> (std::process::ExitStatus, u64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Ok(s) = fs::read_to_string(&status_path)
            && let Some(line) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(peak > 0, "no RSS sample");
    (status, peak)
}

/// Run `cmd` with `input` written to its stdin from another thread (so a
/// command that writes while it reads cannot deadlock), capturing stdout
/// and stderr.
pub fn output_with_stdin(cmd: &mut StdCommand, input: Vec<u8>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The command may stop reading early: that is its business.
        let _ = w.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Set a file's modification time (its content, and ctime, stay as they are).
pub fn set_mtime(p: &Path, t: std::time::SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// `make ARGS MEMORUN=<memorun>` in `d`, against its cache, which must
/// succeed (make is installed by .ci/run).
#[track_caller]
pub fn make(d: &Dir, args: &[&str]) -> Output {
    let o = StdCommand::new("make")
        .args(args)
        .arg(format!("MEMORUN={}", memorun_bin()))
        .current_dir(d.path())
        .env("MEMORUN_DIR", &d.cache)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .expect("make is installed (CI installs it)");
    assert!(
        o.status.success(),
        "make {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Add `n` copies of the store's one entry under new keys, each a second
/// older than the one before, sealed with their own checksum: a store of
/// `n + 1` entries without running memorun `n` times. Copy `i` has a key
/// starting with `i` (64 bits, little-endian) and was used `i` s ago.
pub fn copies(d: &Dir, n: usize) {
    use memorun::store::Entries;
    let conn = rusqlite::Connection::open(d.cache.join("memorun.db")).unwrap();
    let key: Vec<u8> = conn
        .query_row("SELECT key FROM entries", [], |r| r.get(0))
        .unwrap();
    let digest = memorun::key::Digest::from_slice(&key).unwrap();
    let mut store = memorun::store::db::SqliteStore::open(&d.cache).unwrap();
    let mut entry = store.lookup(&digest).unwrap().expect("an entry");
    drop(store);
    let others = "argv_digest, display, cwd, duration_ms, exit_code, hits, stdin_advance,
        out_len, out_digest, err_len, err_digest, order_len, order_digest,
        out_inline, err_inline, order_inline, outputs, components";
    conn.execute_batch("BEGIN").unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "INSERT INTO entries (key, created, last_used, checksum, {others})
             SELECT ?1, ?2, ?2, ?3, {others} FROM entries WHERE key = ?4"
        ))
        .unwrap();
    let created = entry.created_ms;
    for i in 1..=n {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        entry.key = memorun::key::Digest(k);
        entry.created_ms = created - i as i64 * 1000;
        let sum = entry.checksum();
        stmt.execute(rusqlite::params![
            &k[..],
            entry.created_ms,
            &sum.0[..],
            &key
        ])
        .unwrap();
    }
    drop(stmt);
    conn.execute_batch("COMMIT").unwrap();
}
