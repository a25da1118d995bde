//! The remote's bounds, against servers that hang, trickle, lie about
//! lengths or are shared with the wrong secret (see `hostile`), and real
//! ones (see `servers`): each operation ends by its deadline, memory stays
//! bounded whatever a reply claims, a broken remote is skipped by every
//! later run for a cool-down, a wrong secret never touches the team's
//! entries, and a manifest without the team's MAC is never looked at.
//!
//! The timings here tell a bounded wait from a hang, not a speed: short
//! deadlines are set for the tests, and the margins are generous.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hostile::{self, Hostile};
use crate::remote::{BUILD, Machine, SECRET, assert_built};
use crate::servers::{Nginx, Silent};
use crate::util::{assert_contains, code, stderr, stdout};

/// The lookup deadline the tests set (`MEMORUN_REMOTE_LOOKUP_TIMEOUT`).
const LOOKUP: Duration = Duration::from_millis(500);

/// Short deadlines: lookups 500 ms, other operations 1 s.
const SHORT: [(&str, &str); 2] = [
    ("MEMORUN_REMOTE_LOOKUP_TIMEOUT", "500ms"),
    ("MEMORUN_REMOTE_TIMEOUT", "1s"),
];

/// Run `c` with its output to files, waiting at most `limit` (then kill it
/// and fail: it hangs); its output and its peak RSS (`ru_maxrss`, KiB,
/// from `wait4`).
fn run_bounded(mut c: Command, limit: Duration) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    c.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let child = c.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if started.elapsed() > limit {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            panic!(
                "still running after {limit:?}: it hangs\n{}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The child is reaped: `child` must not wait for it again.
    std::mem::forget(child);
    let o = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: fs::read(&out).unwrap(),
        stderr: fs::read(&err).unwrap(),
    };
    (o, usage.ru_maxrss as u64)
}

/// `m.run`'s command (run options `args`), as a `Command` to spawn.
fn command(m: &Machine, url: &str, env: &[(&str, &str)], args: &[&str], script: &str) -> Command {
    let mut c = m.dir.memorun_std();
    c.env("MEMORUN_SECRET", SECRET)
        .args(["-v", "--remote", url, "--base-dir"])
        .arg(m.dir.path())
        .args(args)
        .args(["--", "sh", "-c"])
        .arg(format!("echo run >> count; {script}"))
        .arg("sh")
        .arg(m.dir.join("in.txt"));
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// The run went on as if there were no remote: the command ran once, its
/// own output.
#[track_caller]
fn ran_on_its_own(m: &Machine, o: &Output) {
    assert_eq!(code(o), 0, "{}", stderr(o));
    assert_eq!(stdout(o), "hi\n", "{}", stderr(o));
    assert_eq!(m.count(), 1, "{}", stderr(o));
}

/// A reply that arrives a byte at a time cannot stretch a lookup: it is
/// cut off by the lookup deadline (500 ms here), and the command runs.
/// (Before: only the time between two reads was bounded, and a byte
/// every 300 ms kept memorun waiting for the whole megabyte.)
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_trickling_answer_is_cut_off_by_the_lookup_deadline() {
    let every = Some(Duration::from_millis(300));
    let http = Hostile::start(hostile::http_body(1_000_000, 1_000_000, every));
    let redis = Hostile::start(hostile::redis_bulk(1000, 1000, every));
    let s3_env = [
        ("AWS_ENDPOINT_URL", http.http_url().replace("/cache", "")),
        ("AWS_REGION", "garage".to_string()),
        ("AWS_ACCESS_KEY_ID", "GK1".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "hunter2".to_string()),
    ];
    let cases = [
        (http.http_url(), Vec::new()),
        (redis.redis_url(), Vec::new()),
        ("s3://memorun".to_string(), s3_env.to_vec()),
    ];
    for (url, extra) in cases {
        let m = Machine::new();
        let mut env: Vec<(&str, &str)> = SHORT.to_vec();
        env.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let t = Instant::now();
        let (o, _) = run_bounded(
            command(&m, &url, &env, &[], "echo hi"),
            Duration::from_secs(30),
        );
        let took = t.elapsed();
        ran_on_its_own(&m, &o);
        // 500 ms, with a generous margin for a loaded machine.
        assert!(took < Duration::from_secs(4), "{url}: took {took:?}");
        assert_eq!(m.remote_stats()["timeouts"], 1, "{url}");
    }
}

/// A blob that trickles is cut off once it falls below 1 MiB/s after its
/// first 2 s (the operation deadline is 1 s here), and the command runs.
/// (Before: each byte came within the per-read timeout, and the download
/// went on for as long as the server liked.)
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_trickling_blob_is_cut_off_once_it_falls_below_the_rate() {
    let nginx = Nginx::start();
    let a = Machine::new();
    assert_built(&a.build(&nginx.url(), &[]));
    let slow = Hostile::start(hostile::http_files(
        nginx.root(),
        Duration::from_millis(100),
    ));
    let b = Machine::new();
    let c = command(&b, &slow.http_url(), &SHORT, &["-o", "out/"], BUILD);
    let t = Instant::now();
    let (o, _) = run_bounded(c, Duration::from_secs(60));
    let took = t.elapsed();
    assert_built(&o);
    assert_eq!(b.count(), 1, "{}", stderr(&o));
    // 2 s of grace, with a generous margin.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let s = b.remote_stats();
    assert_eq!(s["timeouts"], 1, "{s}");
    assert_eq!(s["hits"], 0, "{s}");
}

/// An upload to a server that reads the body slowly (4 KiB every 300 ms:
/// each write moves, so a per-write timeout never fires) is cut off once it
/// falls below 1 MiB/s after its grace (the operation deadline is 1 s
/// here), and the run, recorded locally, ends. (Before: the upload went on
/// for as long as the server kept reading.) What counts as sent is what
/// the sockets took, a few MB here: the cut comes a few seconds later.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn an_upload_read_slowly_is_cut_off() {
    let sink = Hostile::start_small(
        hostile::http_slow_sink(4096, Duration::from_millis(300)),
        4096,
    );
    let m = Machine::new();
    // 30 MB of stdout: far more than the sockets' buffers hold.
    let script = "head -c 30000000 /dev/zero | tr '\\0' u";
    let t = Instant::now();
    let (o, _) = run_bounded(
        command(&m, &sink.http_url(), &SHORT, &[], script),
        Duration::from_secs(60),
    );
    let took = t.elapsed();
    eprintln!("cut off after {took:?}");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 30_000_000);
    assert_eq!(m.count(), 1);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let s = m.remote_stats();
    assert_eq!(
        (s["timeouts"].as_u64(), s["uploads"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );
    assert_eq!(m.dir.stats()["entries"], 1, "recorded locally");
}

/// The peak RSS allowed to memorun, whatever a server answers.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// A reply far longer than what was asked (10 GB claimed, 300 MB sent as
/// fast as memorun reads) is refused before it is read: memorun's peak
/// RSS stays under 64 MiB over HTTP, S3 and Redis, and the command runs.
/// (Before: a Redis bulk was read whole before its length was checked,
/// 19.5 GB for 10 GB; an HTTP entry was read up to 64 MiB.)
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_reply_longer_than_asked_is_refused_before_it_is_read() {
    let (claim, send) = (10_000_000_000, 300_000_000);
    let http = Hostile::start(hostile::http_body(claim, send, None));
    let redis = Hostile::start(hostile::redis_bulk(claim, send, None));
    let s3_env = [
        ("AWS_ENDPOINT_URL", http.http_url().replace("/cache", "")),
        ("AWS_REGION", "garage".to_string()),
        ("AWS_ACCESS_KEY_ID", "GK1".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "hunter2".to_string()),
    ];
    let cases = [
        (http.http_url(), Vec::new()),
        (redis.redis_url(), Vec::new()),
        ("s3://memorun".to_string(), s3_env.to_vec()),
    ];
    for (url, extra) in cases {
        let m = Machine::new();
        let mut env: Vec<(&str, &str)> = SHORT.to_vec();
        env.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let (o, rss) = run_measured(command(&m, &url, &env, &[], "echo hi"));
        ran_on_its_own(&m, &o);
        eprintln!("{url}: peak RSS {rss} KiB");
        assert!(rss < RSS_LIMIT_KIB, "{url}: peak RSS {rss} KiB");
    }
}

/// The separator of the arguments in `MEMORUN_RSS_PROBE`.
const SEP: char = '\u{1f}';

/// Run `c` (which must not hang) from a process of its own, small (this
/// test binary running only [`rss_probe`]): its output, and its peak RSS
/// as `ru_maxrss` (KiB). Spawned straight from this process, `ru_maxrss`
/// would count this process's pages too (a child shares them until it
/// calls exec), which other tests running in parallel make large; the
/// probe is what `/usr/bin/time` is to a shell.
fn run_measured(c: Command) -> (Output, u64) {
    let mut argv = vec![c.get_program().to_string_lossy().into_owned()];
    argv.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
    let dir = tempfile::tempdir().unwrap();
    let mut probe = Command::new(std::env::current_exe().unwrap());
    probe
        .env("MEMORUN_RSS_PROBE_DIR", dir.path())
        .args([
            "--exact",
            "remote_bounds::rss_probe",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env("MEMORUN_RSS_PROBE", argv.join(&SEP.to_string()));
    if let Some(dir) = c.get_current_dir() {
        probe.current_dir(dir);
    }
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => probe.env(k, v),
            None => probe.env_remove(k),
        };
    }
    let (o, _) = run_bounded(probe, Duration::from_secs(60));
    let text = stdout(&o);
    let field = |name: &str| -> String {
        let line = text
            .lines()
            .find_map(|l| l.find(name).map(|i| &l[i + name.len()..]))
            .unwrap_or_else(|| panic!("no {name} from the probe: {text}{}", stderr(&o)));
        line.trim().to_string()
    };
    let rss: u64 = field("peak-rss-kib=").parse().unwrap();
    let status: i32 = field("status=").parse().unwrap();
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: fs::read(dir.path().join("stdout")).unwrap(),
        stderr: fs::read(dir.path().join("stderr")).unwrap(),
    };
    (out, rss)
}

/// Not a test: the probe of [`run_measured`], in a process of its own.
/// Runs the command `MEMORUN_RSS_PROBE` names and prints its wait status,
/// its peak RSS (`ru_maxrss` from `wait4`) and where its output is. Does
/// nothing without it.
#[test]
#[ignore = "a helper that the RSS test runs in a process of its own"]
fn rss_probe() {
    let Some(argv) = std::env::var_os("MEMORUN_RSS_PROBE") else {
        return;
    };
    let argv = argv.to_string_lossy().into_owned();
    let mut argv = argv.split(SEP);
    let dir = std::path::PathBuf::from(std::env::var_os("MEMORUN_RSS_PROBE_DIR").unwrap());
    let mut c = Command::new(argv.next().unwrap());
    c.args(argv)
        .env_remove("MEMORUN_RSS_PROBE")
        .env_remove("MEMORUN_RSS_PROBE_DIR");
    let (o, rss) = run_bounded(c, Duration::from_secs(60));
    fs::write(dir.join("stdout"), &o.stdout).unwrap();
    fs::write(dir.join("stderr"), &o.stderr).unwrap();
    println!("peak-rss-kib={rss}");
    println!("status={}", o.status.into_raw());
}

/// Fan-in against a remote that accepts and never answers: 100 runs in a
/// row, then 32 at once, each a different command (local misses that ask
/// the remote). The first costs one lookup deadline (500 ms) and starts a
/// cool-down that every later run honours without asking; the 32 at once
/// cost one deadline together; one warning in all. Without the cool-down,
/// 100 runs cost at least 100 × 500 ms = 50 s.
fn fan_in(url: &str) {
    let m = Machine::new();
    let env: Vec<(&str, &str)> = vec![
        ("MEMORUN_REMOTE_LOOKUP_TIMEOUT", "500ms"),
        ("MEMORUN_REMOTE_TIMEOUT", "10s"),
    ];
    // Their own time: 10 runs without a remote.
    let own = Instant::now();
    for i in 0..10 {
        let o = m.dir.run(["--", "echo", &format!("own {i}")]);
        assert_eq!(code(&o), 0);
    }
    let own = own.elapsed() / 10;
    let t = Instant::now();
    let mut warnings = 0;
    for i in 0..100 {
        let o = m.run(url, &env, &[], &format!("echo {i}"));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{i}\n"));
        warnings += stderr(&o).matches("warning").count();
    }
    let took = t.elapsed();
    // One deadline, plus 100 times their own time (tripled, and 50 ms
    // more each, for a loaded machine); far under the 50 s of 100 deadlines.
    let bound = LOOKUP + (own * 3 + Duration::from_millis(50)) * 100;
    eprintln!("{url}: 100 in a row took {took:?} (own {own:?} each; bound {bound:?})");
    assert!(
        took < bound.min(Duration::from_secs(40)),
        "100 in a row took {took:?}"
    );
    assert_eq!(warnings, 1, "one warning per cool-down");
    assert_eq!(m.count(), 100);
    let s = m.remote_stats();
    assert_eq!(s["timeouts"], 1, "{s}");
    assert_eq!(s["skipped"], 99, "{s}");
    assert_eq!(s["cooldown"][0]["failures"], 1, "{s}");

    // 32 at once, on a fresh cache (no cool-down yet).
    let m = Arc::new(Machine::new());
    let own = Instant::now();
    let runs: Vec<_> = (0..32)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || m.dir.run(["--", "echo", &format!("own {i}")]))
        })
        .collect();
    runs.into_iter()
        .for_each(|r| assert_eq!(code(&r.join().unwrap()), 0));
    let own = own.elapsed();
    let t = Instant::now();
    let runs: Vec<_> = (0..32)
        .map(|i| {
            let (m, url) = (m.clone(), url.to_string());
            let env = env.clone();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> = env.to_vec();
                m.run(&url, &env, &[], &format!("echo at once {i}"))
            })
        })
        .collect();
    let outs: Vec<Output> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let took = t.elapsed();
    let bound = LOOKUP + own * 2 + Duration::from_secs(2);
    eprintln!("{url}: 32 at once took {took:?} (their own {own:?}; bound {bound:?})");
    assert!(took < bound, "32 at once took {took:?}");
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(code(o), 0, "{}", stderr(o));
        assert_eq!(stdout(o), format!("at once {i}\n"));
    }
    let warnings: usize = outs
        .iter()
        .map(|o| stderr(o).matches("warning").count())
        .sum();
    assert_eq!(warnings, 1, "one warning per cool-down");
    assert_eq!(m.count(), 32, "every command ran");
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_hung_http_remote_costs_one_deadline_for_many_runs() {
    let silent = Silent::start();
    fan_in(&format!("http://127.0.0.1:{}/cache", silent.port));
}

#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_hung_redis_remote_costs_one_deadline_for_many_runs() {
    let silent = Silent::start();
    fan_in(&format!("redis://127.0.0.1:{}", silent.port));
}

/// The cool-down: skipped quietly while it lasts (`-v` says until when),
/// `MEMORUN_REMOTE_RETRY=1` asks at once, and the first answer after it
/// clears it; a damaged state file is ignored.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_cool_down_is_honoured_retried_and_cleared_by_the_first_answer() {
    let silent = Silent::start();
    let port = silent.port;
    let url = format!("http://127.0.0.1:{port}/cache");
    let m = Machine::new();
    let o = m.run(&url, &SHORT, &[], "echo hi");
    assert_contains(&stderr(&o), "no run of this cache asks it until");
    let o = m.run(&url, &SHORT, &[], "echo 2");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_contains(&stderr(&o), "not asked: cooling down until");
    let stats = m.dir.memorun().args(["stats"]).output().unwrap();
    assert_contains(&stdout(&stats), &format!("{url}: cooling down until"));
    // The server is back (a store that answers 404 to everything).
    drop(silent);
    let back = Hostile::start_on(port, hostile::http_body(0, 0, None));
    let o = m.run(&url, &SHORT, &[], "echo 3");
    assert!(back.accepted() == 0, "asked during the cool-down");
    assert_eq!(m.remote_stats()["skipped"], 2);
    // `why` says so too, and does not ask either.
    let why = m
        .dir
        .memorun()
        .env("MEMORUN_SECRET", SECRET)
        .args(["why", "--remote", &url, "--", "true"])
        .output()
        .unwrap();
    assert_contains(&stderr(&why), "is cooling down until");
    assert_contains(&stderr(&why), "MEMORUN_REMOTE_RETRY=1");
    assert!(back.accepted() == 0, "`why` asked during the cool-down");
    // Retried at once: it answers, and the cool-down is gone.
    let retry = [SHORT[0], SHORT[1], ("MEMORUN_REMOTE_RETRY", "1")];
    let o2 = m.run(&url, &retry, &[], "echo 4");
    assert_eq!(code(&o2), 0, "{}", stderr(&o2));
    assert!(back.accepted() > 0, "not retried");
    assert_eq!(m.remote_stats()["cooldown"], serde_json::json!([]));
    assert_eq!(code(&o), 0);
    // A damaged state file is ignored: the remote is asked.
    let state = fs::read_dir(&m.dir.cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".state"));
    assert!(state.is_none(), "{state:?}");
    let name = memorun::remote::cooldown::file_name(&url);
    fs::write(m.dir.cache.join(name), "{\"url\": ").unwrap();
    let before = back.accepted();
    m.run(&url, &SHORT, &[], "echo 5");
    assert!(
        back.accepted() > before,
        "a damaged state stopped the lookup"
    );
}

/// 403 and 413 on upload are about the request: no cool-down, the run is
/// read-only from then on, and a 403 says to use --remote-read-only; a
/// 500 is about the server: a cool-down.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_refused_upload_makes_the_run_read_only_without_a_cool_down() {
    let dav = "dav_methods PUT; create_full_put_path on;";
    for (location, cools) in [
        (
            format!("{dav} limit_except GET HEAD {{ deny all; }}"),
            false,
        ),
        (format!("{dav} client_max_body_size 1k;"), false),
        ("return 500;".to_string(), true),
    ] {
        let server = Nginx::with_location(&location);
        let m = Machine::new();
        let o = m
            .dir
            .memorun()
            .env("MEMORUN_SECRET", SECRET)
            .args(["--remote", &server.url(), "--", "seq", "1", "2000"])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let err = stderr(&o);
        let s = m.remote_stats();
        match cools {
            false => {
                assert_contains(&err, "refused an upload");
                assert_contains(&err, "this run only reads from it");
                assert_eq!(s["cooldown"], serde_json::json!([]), "{location}");
            }
            true => {
                assert_eq!(s["cooldown"][0]["failures"], 1, "{location}");
            }
        }
        if location.contains("deny") {
            assert_contains(&err, "HTTP 403");
            assert_contains(&err, "use --remote-read-only");
        }
        assert_eq!(err.matches("warning").count(), 1, "{err}");
    }
}

/// Two clients with `--stdin ignore` (the key does not depend on the
/// secret), one with a wrong secret, alternating 20 times, each on a fresh
/// local cache: the right client hits every time after its first run.
/// (Before: each took the other's entry for damaged and replaced it, and
/// the entries went back and forth.)
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_wrong_secret_never_replaces_the_teams_entries() {
    let server = Nginx::start();
    let wrong = [(
        "MEMORUN_SECRET",
        "ffffffffffffffffffffffffffffffffffffffffffff",
    )];
    let args = ["--stdin", "ignore"];
    for i in 0..20 {
        let right = Machine::new();
        let o = right.run(&server.url(), &[], &args, "echo team");
        assert_eq!(stdout(&o), "team\n");
        let want = if i == 0 { 1 } else { 0 };
        assert_eq!(right.count(), want, "round {i}: {}", stderr(&o));
        let s = right.remote_stats();
        assert_eq!(s["corrupt"], 0, "round {i}: {s}");
        let other = Machine::new();
        let o = other.run(&server.url(), &wrong, &args, "echo team");
        assert_eq!(stdout(&o), "team\n");
        let want = if i == 0 { 1 } else { 0 };
        assert_eq!(
            other.count(),
            want,
            "round {i}: the wrong secret's own entry"
        );
        assert_eq!(other.remote_stats()["corrupt"], 0, "round {i}");
    }
}

/// A trace manifest planted by a writer without the secret (its digest
/// right, no valid MAC; under the very names the team's would have) is
/// never used: no local path it names is looked at (strace), and no
/// request follows from it (nginx's access log).
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_planted_manifest_without_the_mac_is_never_looked_at() {
    use memorun::key::Digest;
    use memorun::key::traced::{Manifest, State};
    let server = Nginx::with_location(
        "dav_methods PUT; create_full_put_path on; client_max_body_size 0; access_log logs/access.log;",
    );
    let (a, b) = (Machine::new(), Machine::new());
    // Inputs modified as the run starts are not recorded (the race guard).
    aged(&a, &["in.txt"]);
    let traced = ["--trace"];
    let script = "cat in.txt > /dev/null; echo hi";
    let o = a.run(&server.url(), &[], &traced, script);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_contains(&stderr(&o), "uploaded");
    // The base key, from A's store.
    let db = rusqlite::Connection::open(a.dir.cache.join("memorun.db")).unwrap();
    let base: Vec<u8> = db
        .query_row("SELECT base_key FROM manifests", [], |r| r.get(0))
        .unwrap();
    let base = Digest::from_slice(&base).unwrap();
    // What a writer without the MAC key plants: a manifest that says a
    // probe path is absent, named by its digest, and an index listing it.
    let probe = format!("/memorun-probe-{}/id_ed25519", std::process::id());
    let planted = Manifest {
        items: vec![(probe.clone().into(), State::Absent)],
        stats: vec![None],
    }
    .portable(None);
    let digest = Digest::from(blake3::hash(&planted));
    let shared = memorun::remote::Shared::derive(SECRET.as_bytes());
    let plant = |name: String, mut body: Vec<u8>| {
        body.extend_from_slice(&[0u8; 32]);
        let p = server.root().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    };
    plant(shared.manifest_index_name(&base), digest.0.to_vec());
    plant(shared.manifest_name(&base, &digest), planted);
    let log = server.root().join("../../logs/access.log");
    let before = fs::read_to_string(&log).unwrap_or_default().lines().count();

    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=%file", "-o"])
        .arg(trace.path())
        .arg(crate::util::memorun_bin())
        .env("MEMORUN_SECRET", SECRET)
        .env("MEMORUN_DIR", &b.dir.cache)
        .current_dir(b.dir.path())
        .args(["-v", "--remote", &server.url(), "--base-dir"])
        .arg(b.dir.path())
        .args(traced)
        .args(["--", "sh", "-c"])
        .arg(format!("echo run >> count; {script}"))
        .arg("sh")
        .arg(b.dir.join("in.txt"));
    let (o, _) = run_bounded(c, Duration::from_secs(60));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");
    let calls = fs::read_to_string(trace.path()).unwrap();
    assert!(calls.contains("memorun.db"), "strace saw nothing");
    assert!(
        !calls.contains("memorun-probe-"),
        "a path the planted manifest names was looked at"
    );
    let requests: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(before)
        .map(str::to_string)
        .collect();
    assert!(
        requests.iter().any(|r| r.contains("manifest-index")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.contains("/manifests/")),
        "a request followed from the planted index: {requests:?}"
    );
}

/// Make `files` of `m` a minute old: a traced run does not record inputs
/// modified as it starts (the race guard).
fn aged(m: &Machine, files: &[&str]) {
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    for f in files {
        crate::util::set_mtime(&m.dir.join(f), old);
    }
    std::thread::sleep(Duration::from_millis(30));
}

/// Checking the remote's (sealed, genuine) trace manifests against the
/// files here is bounded: a manifest whose file is 40 GB here (sparse) is
/// passed over without reading it, and the lookup ends at once. (Before:
/// every traced lookup hashed the whole file.)
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn checking_remote_manifests_is_bounded() {
    let server = Nginx::start();
    let (a, b) = (Machine::new(), Machine::new());
    // Reads one byte of data.bin; exits 0 only where `ok` exists (on A),
    // so that B's run is not recorded (recording would hash data.bin).
    let script = "head -c 1 data.bin > /dev/null; test -e ok";
    a.dir.write("data.bin", "x");
    a.dir.write("ok", "");
    aged(&a, &["data.bin", "ok", "in.txt"]);
    let o = a.run(&server.url(), &[], &["--trace"], script);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_contains(&stderr(&o), "uploaded");
    let big = fs::File::create(b.dir.join("data.bin")).unwrap();
    big.set_len(40 << 30).unwrap();
    let t = Instant::now();
    let c = command(&b, &server.url(), &[], &["--trace"], script);
    let (o, _) = run_bounded(c, Duration::from_secs(120));
    let took = t.elapsed();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(b.count(), 1);
    assert_eq!(b.remote_stats()["hits"], 0);
    // Hashing 40 GB takes tens of seconds; the lookup, milliseconds.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A blob that keeps well over 1 MiB/s goes on past the operation deadline
/// (1 s here; 24 MB at 8 MB/s takes 3 s) and arrives: a remote hit.
#[test]
#[ignore = "needs redis-server and nginx: .ci/run installs them"]
fn a_slow_but_steady_blob_arrives_past_the_operation_deadline() {
    let server = Nginx::with_location(
        "dav_methods PUT; create_full_put_path on; client_max_body_size 0; limit_rate 8m;",
    );
    let (a, b) = (Machine::new(), Machine::new());
    let script = "head -c 24000000 /dev/zero | tr '\\0' y";
    // The operation deadline short, the entry's lookup not (it is not what
    // this is about).
    let env = [
        ("MEMORUN_REMOTE_LOOKUP_TIMEOUT", "10s"),
        ("MEMORUN_REMOTE_TIMEOUT", "1s"),
    ];
    let o = a.run(&server.url(), &env, &[], script);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let t = Instant::now();
    let (o, _) = run_bounded(
        command(&b, &server.url(), &env, &[], script),
        Duration::from_secs(60),
    );
    let took = t.elapsed();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 24_000_000);
    assert_eq!(b.count(), 0, "cut off: {}", stderr(&o));
    assert_contains(&stderr(&o), "hit (remote)");
    assert!(
        took > Duration::from_secs(1),
        "not past the deadline: {took:?}"
    );
}
