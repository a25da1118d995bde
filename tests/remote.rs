//! The remote tier against real servers (see `servers`): two "machines"
//! (two work directories at different paths, each with its own cache)
//! sharing one Redis or one nginx, and every way a remote can fail.
//!
//! In every case: the command's output and exit code are right, nothing
//! wrong is replayed (proved with the counter file and the bytes), and
//! `stats` counts what happened.

use std::fs;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::servers::{Nginx, Redis, Silent, free_port};
use crate::util::{Dir, assert_contains, code, stderr, stdout};

/// The team's secret, as CI would set it.
pub(crate) const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";

/// What the command does: stdout large enough for a blob, stderr, an
/// output file of random bytes (so a re-run could never reproduce it) and
/// a small one, then exit 0.
pub(crate) const BUILD: &str = "seq 1 20000; echo warn >&2; mkdir -p out; \
    head -c 300000 /dev/urandom > out/big.bin; echo small > out/small.txt";

/// One machine: a checkout at its own path, with its own cache.
pub(crate) struct Machine {
    pub(crate) dir: Dir,
}

impl Machine {
    pub(crate) fn new() -> Machine {
        let dir = Dir::new();
        dir.write("in.txt", "the same input on every machine\n");
        Machine { dir }
    }

    /// `memorun -v --remote URL --base-dir HERE ARGS -- sh -c 'count; SCRIPT' in.txt`,
    /// with the team's secret and `env` set.
    pub(crate) fn run(
        &self,
        url: &str,
        env: &[(&str, &str)],
        args: &[&str],
        script: &str,
    ) -> Output {
        let mut c = self.dir.memorun();
        // Tests about other things than deadlines must not miss on a
        // loaded machine: a generous lookup deadline, unless the test sets
        // one (or the operation's, which bounds it).
        let timed = env
            .iter()
            .any(|(k, _)| k.starts_with("MEMORUN_REMOTE_") && k.ends_with("TIMEOUT"));
        if !timed {
            c.env("MEMORUN_REMOTE_LOOKUP_TIMEOUT", "10s");
        }
        c.env("MEMORUN_SECRET", SECRET)
            .args(["-v", "--remote", url, "--base-dir"])
            .arg(self.dir.path())
            .args(args)
            .args(["--", "sh", "-c"])
            .arg(format!("echo run >> count; {script}"))
            .arg("sh")
            .arg(self.dir.join("in.txt"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    pub(crate) fn build(&self, url: &str, env: &[(&str, &str)]) -> Output {
        self.run(url, env, &["-o", "out/"], BUILD)
    }

    pub(crate) fn count(&self) -> usize {
        self.dir.count()
    }

    pub(crate) fn remote_stats(&self) -> serde_json::Value {
        self.dir.stats()["remote"].clone()
    }

    pub(crate) fn file(&self, rel: &str) -> Vec<u8> {
        fs::read(self.dir.join(rel)).unwrap()
    }
}

/// The expected stdout of `BUILD`.
pub(crate) fn build_stdout() -> String {
    (1..=20000).map(|i| format!("{i}\n")).collect()
}

/// The output is the command's own (or its replay), byte for byte.
#[track_caller]
pub(crate) fn assert_built(o: &Output) {
    assert_eq!(code(o), 0, "{}", stderr(o));
    assert!(stdout(o) == build_stdout(), "stdout differs");
    // The command's own stderr, around memorun's -v lines.
    let err = stderr(o);
    let own: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("memorun: "))
        .collect();
    assert_eq!(own, ["warn"], "{err}");
}

/// A run on one machine is a hit on another, byte for byte, output files
/// included; the second machine's next run is a local hit that does not
/// touch the network (the server is gone by then).
pub(crate) fn two_machines(url: &str, env: &[(&str, &str)], kill: &mut dyn FnMut()) {
    let (a, b) = (Machine::new(), Machine::new());
    let o = a.build(url, env);
    assert_built(&o);
    assert_contains(&stderr(&o), "memorun: uploaded");
    assert_eq!(a.remote_stats()["uploads"], 1);

    let o = b.build(url, env);
    assert_built(&o);
    assert_eq!(b.count(), 0, "the command ran on the second machine");
    assert_contains(&stderr(&o), "hit (remote), downloaded");
    assert_eq!(b.file("out/big.bin"), a.file("out/big.bin"));
    assert_eq!(b.file("out/small.txt"), b"small\n");
    let s = b.remote_stats();
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(s["bytes_down"].as_u64().unwrap() > 300_000, "{s}");
    assert_eq!(b.dir.stats()["hits"], 1);

    kill();
    fs::remove_dir_all(b.dir.join("out")).unwrap();
    let o = b.build(url, env);
    assert_built(&o);
    assert_eq!(b.count(), 0);
    assert_contains(&stderr(&o), "memorun: hit, restored 2 files");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(b.file("out/big.bin"), a.file("out/big.bin"));
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn two_machines_share_through_nginx() {
    let mut server = Nginx::start();
    let url = server.url();
    two_machines(&url, &[], &mut || server.kill());
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn two_machines_share_through_redis() {
    let mut server = Redis::start();
    let url = server.url();
    two_machines(&url, &[], &mut || server.kill());
}

/// Objects larger than a Redis chunk (8 MiB) travel as chunks.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_large_output_travels_in_chunks_through_redis() {
    let server = Redis::start();
    let (a, b) = (Machine::new(), Machine::new());
    let script = "head -c 20000000 /dev/urandom > blob.bin; cat blob.bin";
    let o = a.run(&server.url(), &[], &[], script);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        server.keys().iter().any(|k| k.ends_with("#2")),
        "{:?}",
        server.keys()
    );
    let o2 = b.run(&server.url(), &[], &[], script);
    assert_eq!(code(&o2), 0, "{}", stderr(&o2));
    assert_eq!(b.count(), 0);
    assert!(o2.stdout == o.stdout, "the replay differs");
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn read_only_looks_up_and_never_writes() {
    let server = Nginx::start();
    let (a, b, c) = (Machine::new(), Machine::new(), Machine::new());
    let o = a.run(&server.url(), &[], &["--remote-read-only"], "echo hi");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    assert!(server.objects().is_empty(), "{:?}", server.objects());
    assert_eq!(a.remote_stats()["uploads"], 0);
    assert_eq!(a.remote_stats()["misses"], 1);

    b.run(&server.url(), &[], &[], "echo hi");
    assert!(!server.objects().is_empty());
    let before = server.objects();
    let o = c.run(
        &server.url(),
        &[("MEMORUN_REMOTE_READ_ONLY", "1")],
        &[],
        "echo hi",
    );
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    assert_eq!(c.count(), 0, "a read-only machine still hits");
    assert_eq!(server.objects(), before);
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn without_the_secret_the_remote_is_not_used_and_a_warning_says_why() {
    let server = Nginx::start();
    let d = Dir::new();
    let o = d
        .memorun()
        .args(["--remote", &server.url(), "--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    assert_contains(&stderr(&o), "MEMORUN_SECRET is not set");
    assert_eq!(stderr(&o).matches("memorun:").count(), 1, "{}", stderr(&o));
    assert!(server.objects().is_empty());
    // Too short a secret is refused the same way.
    let o = d
        .memorun()
        .env("MEMORUN_SECRET", "hunter2")
        .env("MEMORUN_REMOTE", server.url())
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert_contains(&stderr(&o), "shorter than 32 characters");
    assert!(!stderr(&o).contains("hunter2"));
}

/// A bad `--remote` is a usage error; a bad `MEMORUN_REMOTE` only a
/// warning (a CI setting must not fail every command).
#[test]
fn a_bad_remote_url() {
    let d = Dir::new();
    let o = d.run(["--remote", "ftp://x", "--", "echo", "hi"]);
    assert_eq!(code(&o), 125);
    assert_contains(&stderr(&o), "unknown scheme 'ftp'");
    let o = d
        .memorun()
        .env("MEMORUN_REMOTE", "ftp://bob:hunter2@x")
        .env("MEMORUN_SECRET", SECRET)
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    assert_contains(&stderr(&o), "MEMORUN_REMOTE: remote 'ftp://x'");
    assert!(!stderr(&o).contains("hunter2"));
}

/// Fail open: the run is right, one warning, counted, and it costs at most
/// `limit`. A failure that says the server is down or broken starts a
/// cool-down (the warning says until when and how to retry now); one about
/// the request (a 403) turns the remote off for this run only.
#[track_caller]
pub(crate) fn assert_failed_open(
    m: &Machine,
    o: &Output,
    took: Duration,
    limit: Duration,
    counter: &str,
) {
    assert_eq!(code(o), 0, "{}", stderr(o));
    assert_eq!(stdout(o), "hi\n");
    assert_eq!(m.count(), 1);
    let err = stderr(o);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(took < limit, "took {took:?}");
    let s = m.remote_stats();
    assert_eq!(s[counter], 1, "{s}");
    if s["cooldown"].as_array().unwrap().is_empty() {
        assert_contains(&err, "not used for the rest of this run");
    } else {
        assert_contains(&err, "no run of this cache asks it until");
        assert_contains(&err, "MEMORUN_REMOTE_RETRY=1 retries now");
        assert_eq!(s["cooldown"][0]["failures"], 1, "{s}");
    }
}

/// [`assert_failed_open`], for a failure that starts a cool-down.
#[track_caller]
pub(crate) fn assert_cooling(
    m: &Machine,
    o: &Output,
    took: Duration,
    limit: Duration,
    counter: &str,
) {
    assert_failed_open(m, o, took, limit, counter);
    assert_eq!(m.remote_stats()["cooldown"][0]["failures"], 1);
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_server_that_is_not_running() {
    for url in [
        format!("http://127.0.0.1:{}/cache", free_port()),
        format!("redis://127.0.0.1:{}", free_port()),
    ] {
        let m = Machine::new();
        let t = Instant::now();
        let o = m.run(&url, &[], &[], "echo hi");
        assert_cooling(&m, &o, t.elapsed(), Duration::from_secs(5), "errors");
        assert_contains(&stderr(&o), &url);
        // Recorded locally all the same.
        assert_eq!(m.dir.stats()["entries"], 1);
    }
}

/// A server that accepts and never answers costs one timeout, then the
/// run goes on as if there were no remote.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_listener_that_never_answers_costs_one_timeout() {
    let silent = Silent::start();
    for url in [
        format!("http://127.0.0.1:{}/cache", silent.port),
        format!("redis://127.0.0.1:{}", silent.port),
    ] {
        let m = Machine::new();
        let t = Instant::now();
        let o = m.run(&url, &[("MEMORUN_REMOTE_TIMEOUT", "1s")], &[], "echo hi");
        let took = t.elapsed();
        assert_cooling(&m, &o, took, Duration::from_secs(4), "timeouts");
    }
}

/// 403 on writes (a read-only server), 413 (too large), 500 (broken).
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn refusing_servers_fail_open() {
    let dav = "dav_methods PUT; create_full_put_path on;";
    let cases = [
        (
            format!("{dav} limit_except GET HEAD {{ deny all; }}"),
            "403",
        ),
        (format!("{dav} client_max_body_size 1k;"), "413"),
        ("return 500;".to_string(), "500"),
    ];
    for (location, status) in cases {
        let server = Nginx::with_location(&location);
        let m = Machine::new();
        let t = Instant::now();
        let o = m.run(&server.url(), &[], &[], "seq 1 2000; echo hi");
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stdout(&o).ends_with("2000\nhi\n"));
        assert_contains(&stderr(&o), &format!("the server answered {status}"));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(m.remote_stats()["errors"], 1, "{status}");
        assert_eq!(m.remote_stats()["uploads"], 0, "{status}");
        assert_eq!(m.dir.stats()["entries"], 1, "{status}: recorded locally");
    }
}

/// A full Redis that evicts nothing answers OOM to a write: counted, the
/// run is right, recorded locally.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_full_redis_fails_open() {
    let server = Redis::start();
    server.cmd(&[b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction"]);
    server.cmd(&[b"CONFIG", b"SET", b"maxmemory", b"1"]);
    let m = Machine::new();
    let o = m.run(&server.url(), &[], &[], "seq 1 2000; echo hi");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).ends_with("2000\nhi\n"));
    assert_contains(&stderr(&o), "OOM");
    assert_eq!(m.remote_stats()["errors"], 1);
    assert_eq!(m.remote_stats()["uploads"], 0);
    assert_eq!(m.dir.stats()["entries"], 1);
}

/// Flip one byte of a file.
fn flip(path: &std::path::Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_corrupt_entry_or_blob_on_the_server_is_a_miss() {
    for what in ["entries", "blobs"] {
        let server = Nginx::start();
        let (a, b) = (Machine::new(), Machine::new());
        assert_built(&a.build(&server.url(), &[]));
        for obj in server.objects().iter().filter(|o| o.contains(what)) {
            flip(&server.root().join(obj), 100);
        }
        let o = b.build(&server.url(), &[]);
        assert_built(&o);
        assert_eq!(b.count(), 1, "{what}: replayed a corrupt object");
        assert_ne!(b.file("out/big.bin"), a.file("out/big.bin"));
        assert_contains(&stderr(&o), "failed verification");
        assert_eq!(b.remote_stats()["corrupt"], 1, "{what}");
        assert_eq!(b.remote_stats()["hits"], 0, "{what}");
        // B's run replaced what was damaged: a third machine hits B's.
        let c = Machine::new();
        assert_built(&c.build(&server.url(), &[]));
        assert_eq!(c.count(), 0, "{what}: the damage was not repaired");
        assert_eq!(c.file("out/big.bin"), b.file("out/big.bin"));
    }
}

/// A damaged blob whose content the next run produces again (same name):
/// the repair sends it again rather than trusting that it is there.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_damaged_blob_is_sent_again_by_the_run_that_finds_it() {
    let server = Nginx::start();
    let (a, b, c) = (Machine::new(), Machine::new(), Machine::new());
    let script = "seq 1 100000";
    a.run(&server.url(), &[], &[], script);
    for o in server.objects().iter().filter(|o| o.contains("blobs")) {
        flip(&server.root().join(o), 1000);
    }
    let o = b.run(&server.url(), &[], &[], script);
    assert_eq!(
        (b.count(), b.remote_stats()["corrupt"].as_u64()),
        (1, Some(1))
    );
    let o2 = c.run(&server.url(), &[], &[], script);
    assert_eq!(c.count(), 0, "the damaged blob is still there");
    assert!(o2.stdout == o.stdout);
}

/// A large blob (downloaded by two threads) that is longer, or shorter,
/// than its entry says: a miss, and the download stops.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_large_blob_of_the_wrong_length_is_a_miss() {
    for extra in [1usize, 0] {
        let server = Nginx::start();
        let (a, b) = (Machine::new(), Machine::new());
        let script = "head -c 6000000 /dev/urandom";
        let o = a.run(&server.url(), &[], &[], script);
        assert_eq!(o.stdout.len(), 6_000_000);
        let blob = server
            .objects()
            .into_iter()
            .find(|o| o.contains("blobs"))
            .unwrap();
        let path = server.root().join(blob);
        let mut bytes = fs::read(&path).unwrap();
        match extra {
            0 => bytes.truncate(bytes.len() - 1),
            n => bytes.extend(std::iter::repeat_n(b'x', n)),
        }
        fs::write(&path, bytes).unwrap();
        let o2 = b.run(&server.url(), &[], &[], script);
        assert_eq!(code(&o2), 0, "{}", stderr(&o2));
        assert_eq!(b.count(), 1, "replayed a blob of the wrong length");
        assert_ne!(o2.stdout, o.stdout);
        assert_eq!(b.remote_stats()["corrupt"], 1);
    }
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn garbage_in_redis_is_a_miss() {
    let server = Redis::start();
    let (a, b) = (Machine::new(), Machine::new());
    a.run(&server.url(), &[], &[], "echo hi");
    let entry = server
        .keys()
        .into_iter()
        .find(|k| k.contains("/entries/"))
        .unwrap();
    server.cmd(&[b"SET", entry.as_bytes(), b"\x00garbage"]);
    let o = b.run(&server.url(), &[], &[], "echo hi");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    assert_eq!(b.count(), 1);
    assert_eq!(b.remote_stats()["corrupt"], 1);
    // A value memorun never writes (no leading tag) is garbage too.
    server.cmd(&[b"SET", entry.as_bytes(), b"plain text"]);
    let c = Machine::new();
    c.run(&server.url(), &[], &[], "echo hi");
    assert_eq!(
        (c.count(), c.remote_stats()["corrupt"].as_u64()),
        (1, Some(1))
    );
}

/// A machine that does not hold the team's secret can write to the server
/// (a misconfigured bucket), but what it writes is never replayed.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn an_entry_written_without_the_secret_is_never_replayed() {
    let server = Nginx::start();
    let (mallory, b) = (Machine::new(), Machine::new());
    mallory.dir.write("note", "forged\n");
    b.dir.write("note", "honest\n");
    // Without env or stdin in the key, both compute the same key: the
    // forged entry sits under the very name B looks up.
    let other = "ffffffffffffffffffffffffffffffffffffffffffffffff";
    let args = ["--stdin", "ignore"];
    let o = mallory.run(
        &server.url(),
        &[("MEMORUN_SECRET", other)],
        &args,
        "cat note",
    );
    assert_eq!(stdout(&o), "forged\n");
    assert!(!server.objects().is_empty());
    // Its names are keyed with its own secret: B never even sees it.
    let o = b.run(&server.url(), &[], &args, "cat note");
    assert_eq!(stdout(&o), "honest\n");
    assert_eq!(b.count(), 1);
    assert_eq!(b.remote_stats()["corrupt"], 0);
    assert_eq!(b.remote_stats()["misses"], 1);
    // Nor is a genuine entry moved under another key's name.
    let c = Machine::new();
    c.dir.write("note", "other\n");
    let entries: Vec<String> = server
        .objects()
        .into_iter()
        .filter(|o| o.contains("entries"))
        .collect();
    let o = c.run(&server.url(), &[], &[], "cat note");
    assert_eq!(stdout(&o), "other\n");
    let mine = server
        .objects()
        .into_iter()
        .find(|o| o.contains("entries") && !entries.contains(o))
        .expect("c uploaded its entry");
    let genuine = Machine::new();
    genuine.dir.write("note", "genuine\n");
    genuine.run(&server.url(), &[], &args, "cat note");
    fs::copy(server.root().join(&entries[0]), server.root().join(&mine)).unwrap();
    let d = Machine::new();
    d.dir.write("note", "d's own\n");
    let o = d.run(&server.url(), &[], &[], "cat note");
    assert_eq!(stdout(&o), "d's own\n");
    assert_eq!(d.remote_stats()["corrupt"], 1);
}

/// Takes the blobs off a server.
type Evict<'a> = Box<dyn Fn() + 'a>;

/// Blobs evicted apart from their entry: a miss, and the run puts them
/// back, so the next machine hits.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn evicted_blobs_are_a_miss_and_the_run_puts_them_back() {
    let nginx = Nginx::start();
    let redis = Redis::start();
    let nginx_url = nginx.url();
    let redis_url = redis.url();
    let evict: [(&str, Evict); 2] = [
        (
            &nginx_url,
            Box::new(|| {
                for o in nginx.objects().iter().filter(|o| o.contains("blobs")) {
                    fs::remove_file(nginx.root().join(o)).unwrap();
                }
            }),
        ),
        (
            &redis_url,
            Box::new(|| {
                for k in redis.keys().iter().filter(|k| k.contains("/blobs/")) {
                    redis.cmd(&[b"DEL", k.as_bytes()]);
                }
            }),
        ),
    ];
    for (url, evict) in evict {
        let (a, b, c) = (Machine::new(), Machine::new(), Machine::new());
        assert_built(&a.build(url, &[]));
        evict();
        let o = b.build(url, &[]);
        assert_built(&o);
        assert_eq!(b.count(), 1, "{url}");
        assert_contains(&stderr(&o), "blobs are gone");
        assert_eq!(b.remote_stats()["incomplete"], 1, "{url}");
        assert_contains(&stderr(&o), "memorun: uploaded");
        let o = c.build(url, &[]);
        assert_built(&o);
        assert_eq!(c.count(), 0, "{url}: the blobs were not put back");
        assert_eq!(c.file("out/big.bin"), b.file("out/big.bin"));
    }
}

/// With `allkeys-lru` and a tiny `maxmemory`, Redis evicts what it likes:
/// whatever it evicted, the second machine's run is right.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn lru_eviction_in_a_tiny_redis_never_replays_anything_wrong() {
    let server = Redis::start_with("3mb");
    let (a, b) = (Machine::new(), Machine::new());
    assert_built(&a.build(&server.url(), &[]));
    for i in 0..64 {
        let filler = vec![b'x'; 64 * 1024];
        server.cmd(&[b"SET", format!("filler{i}").as_bytes(), &filler]);
    }
    let o = b.build(&server.url(), &[]);
    assert_built(&o);
    let s = b.remote_stats();
    if b.count() == 0 {
        assert_eq!(b.file("out/big.bin"), a.file("out/big.bin"));
        assert_eq!(s["hits"], 1);
    } else {
        assert_eq!(s["hits"], 0, "{s}");
    }
}

/// The server dies (SIGKILL) while a 40 MB blob is on its way down: the
/// download fails, nothing of it is installed, the command runs.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn server_killed_during_a_download() {
    // Slow answers (4 MB/s), so that the kill lands mid-download.
    let mut server = Nginx::with_location(
        "dav_methods PUT; create_full_put_path on; client_max_body_size 0; limit_rate 4m;",
    );
    let (a, b) = (Machine::new(), Machine::new());
    let script = "head -c 40000000 /dev/zero | tr '\\0' x; echo";
    let o = a.run(&server.url(), &[], &[], script);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let url = server.url();
    let child = std::thread::spawn(move || {
        let o = b.run(&url, &[], &[], script);
        (b, o)
    });
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    let (b, o) = child.join().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 40_000_001);
    assert_eq!(b.count(), 1, "the command did not run");
    let s = b.remote_stats();
    assert_eq!(
        s["errors"].as_u64().unwrap() + s["timeouts"].as_u64().unwrap(),
        1,
        "{s}"
    );
    assert_eq!(s["hits"], 0);
    assert!(s["bytes_down"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(b.dir.stats()["entries"], 1, "only its own run");
}

/// The server dies (SIGKILL) while a blob is on its way up: the run is
/// right, recorded locally, the failure counted, and no entry is left on
/// the server (it goes up last).
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn server_killed_during_an_upload() {
    let mut server = Nginx::start();
    let m = Machine::new();
    let url = server.url();
    let body_temp = server.body_temp();
    let script = "head -c 150000000 /dev/zero; echo";
    let runner = std::thread::spawn(move || {
        let o = m.run(&url, &[], &[], script);
        (m, o)
    });
    // nginx spools a request body to a temp file as it arrives.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read_dir(&body_temp).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no upload began");
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let (m, o) = runner.join().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 150_000_001);
    let s = m.remote_stats();
    assert_eq!(s["uploads"], 0, "{s}");
    assert_eq!(
        s["errors"].as_u64().unwrap() + s["timeouts"].as_u64().unwrap(),
        1,
        "{s}"
    );
    assert!(
        !server.objects().iter().any(|o| o.contains("entries")),
        "{:?}",
        server.objects()
    );
    assert_eq!(m.dir.stats()["entries"], 1);
}

/// Redis is SIGKILLed while memorun waits for it: during a lookup (every
/// command paused with CLIENT PAUSE, so the kill lands while the request
/// is in flight) and during an upload (writes paused, so the kill lands
/// while a SET is in flight). The run is right either way, and counted.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn redis_killed_during_a_download_and_an_upload() {
    for pause in ["ALL", "WRITE"] {
        let mut server = Redis::start();
        let m = Machine::new();
        if pause == "ALL" {
            // Something to download, so that the lookup would find it.
            Machine::new().run(&server.url(), &[], &[], "seq 1 100000; touch ran");
        }
        server.pause(20_000, pause);
        let url = server.url();
        let ran = m.dir.join("ran");
        let runner = std::thread::spawn(move || {
            let o = m.run(&url, &[], &[], "seq 1 100000; touch ran");
            (m, o)
        });
        if pause == "WRITE" {
            // The command ran (reads are not paused); the upload follows.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ran.exists() {
                assert!(Instant::now() < deadline, "the command did not run");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        server.kill();
        let (m, o) = runner.join().unwrap();
        assert_eq!(code(&o), 0, "{pause}: {}", stderr(&o));
        assert!(stdout(&o).ends_with("\n100000\n"), "{pause}");
        assert_eq!(m.count(), 1, "{pause}");
        let s = m.remote_stats();
        assert_eq!(
            s["errors"].as_u64().unwrap() + s["timeouts"].as_u64().unwrap(),
            1,
            "{pause}: {s}"
        );
        assert_eq!(
            (s["hits"].as_u64(), s["uploads"].as_u64()),
            (Some(0), Some(0)),
            "{pause}"
        );
        assert_eq!(m.dir.stats()["entries"], 1, "{pause}");
    }
}

/// Credentials in the URL and the token never appear in what memorun
/// prints or stores.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn credentials_are_never_shown_or_stored() {
    let server = Nginx::with_location("return 500;");
    let m = Machine::new();
    let url = server.url_with("bob:hunter2@");
    let o = m.run(
        &url,
        &[("MEMORUN_REMOTE_TOKEN", "tok-s3cret")],
        &[],
        "echo hi",
    );
    assert_eq!(stdout(&o), "hi\n");
    let err = stderr(&o);
    assert_contains(&err, &server.url());
    for secret in ["hunter2", "tok-s3cret", "bob"] {
        assert!(!err.contains(secret), "{err}");
        let stats = m
            .dir
            .memorun()
            .env("MEMORUN_REMOTE", &url)
            .args(["stats"])
            .output()
            .unwrap();
        assert!(!stdout(&stats).contains(secret));
        assert_contains(&stdout(&stats), &server.url());
        for f in walkdir::WalkDir::new(&m.dir.cache)
            .into_iter()
            .filter_map(Result::ok)
        {
            if f.file_type().is_file() {
                let bytes = fs::read(f.path()).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} in {}",
                    f.path().display()
                );
            }
        }
    }
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn why_says_whether_the_remote_holds_the_entry() {
    let server = Redis::start();
    let (a, b) = (Machine::new(), Machine::new());
    let why = |m: &Machine| {
        let o = m
            .dir
            .memorun()
            .env("MEMORUN_SECRET", SECRET)
            .args(["why", "--remote", &server.url(), "--base-dir"])
            .arg(m.dir.path())
            .args(["--", "sh", "-c", "echo run >> count; echo hi", "sh"])
            .arg(m.dir.join("in.txt"))
            .output()
            .unwrap();
        stdout(&o)
    };
    // With no local store, `why` asks the remote now (issue 26), and
    // still creates no store.
    assert_contains(&why(&b), "does not hold the entry");
    assert!(!b.dir.cache.exists(), "why created the cache");
    b.dir.run(["--", "true"]);
    assert_contains(&why(&b), "does not hold the entry");
    a.run(&server.url(), &[], &[], "echo hi");
    let text = why(&b);
    assert_contains(&text, "would hit from the remote cache");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("cwd ") && l.ends_with(" {base}")),
        "{text}"
    );
    assert_contains(&text, "sh '{base}/in.txt'");
    assert_contains(&text, "{base}/in.txt");
    assert_contains(&why(&a), "holds the entry too");
    assert_eq!(b.count(), 0, "why ran the command");
}

/// Concurrent runs of a key download it once: the others wait on the run
/// lock, then replay the local copy.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn concurrent_runs_download_an_entry_once() {
    let server = Nginx::start();
    let a = Machine::new();
    assert_built(&a.build(&server.url(), &[]));
    let b = std::sync::Arc::new(Machine::new());
    let url = server.url();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (b, url) = (b.clone(), url.clone());
            std::thread::spawn(move || b.run(&url, &[], &[], BUILD))
        })
        .collect();
    for r in runs {
        let o = r.join().unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stdout(&o) == build_stdout());
    }
    assert_eq!(b.count(), 0);
    assert_eq!(b.remote_stats()["hits"], 1);
    assert_eq!(b.dir.stats()["hits"], 4);
}

/// `--base-dir` on one machine: two checkouts share entries through one
/// cache, absolute arguments included; without it they do not.
#[test]
fn base_dir_shares_entries_between_checkouts() {
    let (a, b) = (Dir::new(), Dir::new());
    let cache = a.cache.clone();
    for d in [&a, &b] {
        d.write("in.txt", "same\n");
    }
    let run = |d: &Dir, base: bool| {
        let mut c = d.memorun();
        c.env("MEMORUN_DIR", &cache);
        if base {
            c.env("MEMORUN_BASE_DIR", d.path());
        }
        c.args(["--", "sh", "-c", "echo run >> count; cat \"$1\"", "sh"])
            .arg(d.join("in.txt"))
            .output()
            .unwrap()
    };
    assert_eq!(stdout(&run(&a, true)), "same\n");
    assert_eq!(stdout(&run(&b, true)), "same\n");
    assert_eq!((a.count(), b.count()), (1, 0));
    run(&b, false);
    assert_eq!(b.count(), 1, "without a base directory, paths differ");
    // The content of an input under the base still counts.
    b.write("in.txt", "changed\n");
    assert_eq!(stdout(&run(&b, true)), "changed\n");
    assert_eq!(b.count(), 2);
}

/// A traced command's entry travels with its trace manifest: a machine
/// whose files match it (paths under --base-dir relative) hits; one whose
/// traced input differs runs the command, and never replays the other's.
pub(crate) fn traced_across_machines(url: &str, env: &[(&str, &str)]) {
    let (a, b) = (Machine::new(), Machine::new());
    for m in [&a, &b] {
        m.dir.write("lib.sh", "greeting=hello\n");
        let f = fs::File::options()
            .write(true)
            .open(m.dir.join("lib.sh"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(30));
    let script = ". ./lib.sh; echo $greeting > out.txt; echo $greeting";
    let traced = ["--trace", "-o", "out.txt"];
    let o = a.run(url, env, &traced, script);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "hello\n"),
        "{}",
        stderr(&o)
    );
    assert_contains(&stderr(&o), "uploaded");
    // Another checkout, another path: the manifest matches, a remote hit.
    let o = b.run(url, env, &traced, script);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "hello\n"),
        "{}",
        stderr(&o)
    );
    assert_contains(&stderr(&o), "hit (remote)");
    assert_contains(&stderr(&o), "traced inputs unchanged");
    assert_eq!(b.count(), 0, "the command ran on a remote hit");
    assert_eq!(b.file("out.txt"), b"hello\n");
    // A third machine whose sourced file differs: its own run, never the
    // others' replay.
    let c = Machine::new();
    c.dir.write("lib.sh", "greeting=howdy\n");
    std::thread::sleep(Duration::from_millis(30));
    let o = c.run(url, env, &traced, script);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "howdy\n"),
        "{}",
        stderr(&o)
    );
    assert_eq!(c.count(), 1);
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_traced_entry_travels_with_its_manifest_through_nginx() {
    let server = Nginx::start();
    traced_across_machines(&server.url(), &[]);
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_traced_entry_travels_with_its_manifest_through_redis() {
    let server = Redis::start();
    traced_across_machines(&server.url(), &[]);
}
