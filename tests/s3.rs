//! The S3 kind against a real Garage (see `servers::Garage`): the same
//! two-machine, read-only and fault tests as Redis and nginx, and what is
//! S3's own: access keys that may only read, anonymous access, multipart
//! uploads of large outputs with bounded memory.
//!
//! Garage is started per test (about a second), on loopback, and killed
//! when the test ends.

use std::fs::{self, File};
use std::io::Read;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::remote::{
    BUILD, Machine, SECRET, assert_built, assert_cooling, assert_failed_open,
    traced_across_machines, two_machines,
};
use crate::servers::{BUCKET, Garage, S3Key, Silent, free_port};
use crate::util::{assert_contains, code, stderr, stdout, wait_with_peak_rss};

/// `(name, value)` pairs as `Machine::run` takes them.
fn vars(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The bucket's URL.
fn url() -> String {
    format!("s3://{BUCKET}")
}

#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn two_machines_share_through_garage() {
    let mut server = Garage::start();
    let env = server.env(Some(&server.rw.clone()));
    two_machines(&url(), &vars(&env), &mut || server.kill());
}

#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_traced_entry_travels_with_its_manifest_through_garage() {
    let server = Garage::start();
    let env = server.env(Some(&server.rw));
    traced_across_machines(&url(), &vars(&env));
    assert!(
        server
            .objects()
            .iter()
            .any(|o| o.contains("manifest-index")),
        "{:?}",
        server.objects()
    );
}

/// A prefix keeps memorun's objects apart from the rest of the bucket.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_prefix_holds_the_objects() {
    let server = Garage::start();
    let env = server.env(Some(&server.rw));
    let (a, b) = (Machine::new(), Machine::new());
    let url = format!("s3://{BUCKET}/team/ci");
    a.run(&url, &vars(&env), &[], "seq 1 50000");
    let objects = server.objects();
    assert!(!objects.is_empty());
    assert!(
        objects.iter().all(|o| o.starts_with("team/ci/memorun/v2/")),
        "{objects:?}"
    );
    let o = b.run(&url, &vars(&env), &[], "seq 1 50000");
    assert_eq!((code(&o), b.count()), (0, 0), "{}", stderr(&o));
    // Another prefix is another cache.
    let c = Machine::new();
    c.run(
        &format!("s3://{BUCKET}/other"),
        &vars(&env),
        &[],
        "seq 1 50000",
    );
    assert_eq!(c.count(), 1);
}

/// A read-only key looks up and hits. With `--remote-read-only` it never
/// tries to write; without it, Garage refuses the upload (403), which
/// costs a warning and nothing else.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_read_only_key_hits_and_never_writes() {
    let server = Garage::start();
    let rw = server.env(Some(&server.rw));
    let ro = server.env(Some(&server.ro));
    let (a, b, c, d) = (
        Machine::new(),
        Machine::new(),
        Machine::new(),
        Machine::new(),
    );
    assert_built(&a.build(&url(), &vars(&rw)));
    let before = server.objects();

    let o = b.run(
        &url(),
        &vars(&ro),
        &["--remote-read-only", "-o", "out/"],
        BUILD,
    );
    assert_built(&o);
    assert_eq!(b.count(), 0, "a read-only key does not hit");
    assert_eq!(b.remote_stats()["hits"], 1);

    let o = c.run(&url(), &vars(&ro), &["--remote-read-only"], "echo other");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "other\n"));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(c.remote_stats()["misses"], 1);
    assert_eq!(c.remote_stats()["uploads"], 0);

    // The key, not only the flag, keeps the bucket as it was.
    let o = d.run(&url(), &vars(&ro), &[], "echo other");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "other\n"));
    assert_contains(&stderr(&o), "403");
    assert_eq!(stderr(&o).matches("warning").count(), 1, "{}", stderr(&o));
    assert_eq!(d.remote_stats()["errors"], 1);
    assert_eq!(d.dir.stats()["entries"], 1, "recorded locally");
    assert_eq!(server.objects(), before);
}

/// No credentials: anonymous and read-only, said once with -v. Garage's
/// S3 API refuses anonymous requests (403): the run fails open. Garage's
/// website endpoint serves a bucket publicly (GET and HEAD, no
/// signature): there an anonymous machine hits what a writer uploaded.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn anonymous_reads_and_never_writes() {
    let server = Garage::start();
    let m = Machine::new();
    let o = m.run(&url(), &vars(&server.env(None)), &[], "echo hi");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    let err = stderr(&o);
    assert_eq!(err.matches("read anonymously").count(), 1, "{err}");
    assert_contains(&err, "403");
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert_eq!(m.remote_stats()["uploads"], 0);
    assert!(server.objects().is_empty(), "{:?}", server.objects());

    // Published through the website endpoint: its Host header names the
    // bucket ("localhost", an alias), and its path is the object's key.
    // Path-style addressing puts the bucket name first in the path, so
    // the writer stores under that prefix.
    server.cli(&["bucket", "alias", BUCKET, "localhost"]);
    server.cli(&["bucket", "website", "--allow", BUCKET]);
    let writer = Machine::new();
    assert_built(&writer.build(
        &format!("s3://{BUCKET}/localhost"),
        &vars(&server.env(Some(&server.rw))),
    ));
    let public = [
        (
            "AWS_ENDPOINT_URL",
            format!("http://localhost:{}", server.web_port),
        ),
        ("AWS_REGION", "garage".to_string()),
    ];
    let public: Vec<(&str, &str)> = public.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let before = server.objects();
    let reader = Machine::new();
    let o = reader.build("s3://localhost", &public);
    assert_built(&o);
    assert_eq!(reader.count(), 0, "an anonymous reader does not hit");
    assert_eq!(reader.file("out/big.bin"), writer.file("out/big.bin"));
    assert_contains(&stderr(&o), "read anonymously");
    // A miss: nothing uploaded.
    let o = reader.run("s3://localhost", &public, &[], "echo new");
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "new\n"));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert_eq!(reader.remote_stats()["misses"], 1);
    assert_eq!(reader.remote_stats()["uploads"], 0);
    assert_eq!(server.objects(), before);
}

/// A wrong secret key: one clear warning naming S3's error, the run goes
/// on, nothing is lost; no secret key shows or is stored.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_wrong_secret_key_warns_once_and_the_run_goes_on() {
    let server = Garage::start();
    let wrong = S3Key {
        id: server.rw.id.clone(),
        secret: "0".repeat(64),
    };
    let m = Machine::new();
    let o = m.run(&url(), &vars(&server.env(Some(&wrong))), &[], "echo hi");
    // A 403 is about the request: off for this run, no cool-down.
    assert_failed_open(&m, &o, Duration::ZERO, Duration::from_secs(5), "errors");
    assert_eq!(m.remote_stats()["cooldown"], serde_json::json!([]));
    assert_contains(&stderr(&o), "403");
    assert!(!stderr(&o).contains(&wrong.secret));
    assert_eq!(m.dir.stats()["entries"], 1);
    // With the right one, it uploads; neither secret is in the store.
    let o = m.run(
        &url(),
        &vars(&server.env(Some(&server.rw))),
        &[],
        "echo there",
    );
    assert_contains(&stderr(&o), "memorun: uploaded");
    for f in walkdir::WalkDir::new(&m.dir.cache)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|f| f.file_type().is_file())
    {
        let bytes = fs::read(f.path()).unwrap();
        for secret in [&wrong.secret, &server.rw.secret] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "a secret key in {}", f.path().display());
        }
    }
}

/// Garage stopped (nothing listens), and a listener that never answers:
/// each costs a bounded time once, and the run is right.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_stopped_or_silent_endpoint_fails_open_in_bounded_time() {
    let mut server = Garage::start();
    let env = server.env(Some(&server.rw));
    server.kill();
    let m = Machine::new();
    let t = Instant::now();
    let o = m.run(&url(), &vars(&env), &[], "echo hi");
    assert_cooling(&m, &o, t.elapsed(), Duration::from_secs(5), "errors");
    assert_contains(&stderr(&o), "s3://memorun");

    let silent = Silent::start();
    let mut env = env.clone();
    env[0].1 = format!("http://127.0.0.1:{}", silent.port);
    env.push(("MEMORUN_REMOTE_TIMEOUT".into(), "1s".into()));
    let m = Machine::new();
    let t = Instant::now();
    let o = m.run(&url(), &vars(&env), &[], "echo hi");
    assert_cooling(&m, &o, t.elapsed(), Duration::from_secs(4), "timeouts");

    // An endpoint port nothing listens on, from the start.
    env[0].1 = format!("http://127.0.0.1:{}", free_port());
    let m = Machine::new();
    let o = m.run(&url(), &vars(&env), &[], "echo hi");
    assert_cooling(&m, &o, Duration::ZERO, Duration::from_secs(1), "errors");
}

/// Flip one byte of an object, with a signed PUT of our own.
fn flip(server: &Garage, name: &str, at: usize) {
    let mut b = server.read(name);
    let i = at.min(b.len() - 1);
    b[i] ^= 0x01;
    server.write(name, &b);
}

/// A damaged entry or blob is a miss, never replayed; the run that finds
/// it replaces it, and the next machine hits.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_corrupt_entry_or_blob_in_the_bucket_is_a_miss() {
    let server = Garage::start();
    let env = server.env(Some(&server.rw));
    for what in ["entries", "blobs"] {
        let (a, b, c) = (Machine::new(), Machine::new(), Machine::new());
        let prefix = format!("s3://{BUCKET}/{what}");
        assert_built(&a.build(&prefix, &vars(&env)));
        for obj in server
            .objects()
            .iter()
            .filter(|o| o.starts_with(&format!("{what}/memorun/v2/{what}/")))
        {
            flip(&server, obj, 100);
        }
        let o = b.build(&prefix, &vars(&env));
        assert_built(&o);
        assert_eq!(b.count(), 1, "{what}: replayed a corrupt object");
        assert_ne!(b.file("out/big.bin"), a.file("out/big.bin"));
        assert_contains(&stderr(&o), "failed verification");
        assert_eq!(b.remote_stats()["corrupt"], 1, "{what}");
        assert_eq!(b.remote_stats()["hits"], 0, "{what}");
        assert_built(&c.build(&prefix, &vars(&env)));
        assert_eq!(c.count(), 0, "{what}: the damage was not repaired");
        assert_eq!(c.file("out/big.bin"), b.file("out/big.bin"));
    }
}

/// An entry already in the bucket is never overwritten. Garage ignores
/// `If-None-Match: *` on a PUT (it overwrites), so this holds only
/// because memorun asks with a HEAD first.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn an_entry_in_the_bucket_is_never_overwritten() {
    let server = Garage::start();
    let env = server.env(Some(&server.rw));
    let (a, b) = (Machine::new(), Machine::new());
    let script = "head -c 16 /dev/urandom | od -An -tx1";
    let first = a.run(&url(), &vars(&env), &[], script);
    let entry = server
        .objects()
        .into_iter()
        .find(|o| o.contains("/entries/"))
        .unwrap();
    let before = server.read(&entry);
    // B runs it again (forced) and records its own, different result.
    let o = b.run(&url(), &vars(&env), &["--force"], script);
    assert_eq!(b.count(), 1);
    assert_ne!(o.stdout, first.stdout);
    assert_eq!(server.read(&entry), before, "the entry was overwritten");
    assert_eq!(b.remote_stats()["uploads"], 0);
}

/// The process's peak RSS may not exceed this for a 200 MB output.
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// Run `script` on `m` with stdout to `out`; exit code, peak RSS, stderr.
fn run_measured(
    m: &Machine,
    env: &[(String, String)],
    script: &str,
    out: &std::path::Path,
) -> (i32, u64, String) {
    let mut c = m.dir.memorun_std();
    c.env("MEMORUN_SECRET", SECRET)
        .args(["-v", "--remote", &url(), "--base-dir"])
        .arg(m.dir.path())
        .args(["--", "sh", "-c"])
        .arg(format!("echo run >> count; {script}"))
        .stdout(Stdio::from(File::create(out).unwrap()))
        .stderr(Stdio::from(File::create(m.dir.join("stderr")).unwrap()));
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let (status, peak) = wait_with_peak_rss(&mut child);
    let err = fs::read_to_string(m.dir.join("stderr")).unwrap();
    (status.code().expect("memorun died"), peak, err)
}

fn file_digest(p: &std::path::Path) -> (u64, blake3::Hash) {
    let mut f = File::open(p).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            return (n, h.finalize());
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// A 200 MB output goes up as a multipart upload and comes down on
/// another machine, byte for byte, each memorun process staying under
/// `RSS_LIMIT_KIB` (nothing is held whole).
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn a_200_mb_output_round_trips_through_a_multipart_upload_in_bounded_memory() {
    let server = Garage::start();
    let env = server.env(Some(&server.rw));
    let (a, b) = (Machine::new(), Machine::new());
    let script = "yes 'memorun multipart line' | head -c 200000000";
    let (out_a, out_b) = (a.dir.join("stdout"), b.dir.join("stdout"));
    let (code_a, rss_a, err) = run_measured(&a, &env, script, &out_a);
    assert_eq!(code_a, 0, "{err}");
    assert_contains(&err, "memorun: uploaded");
    eprintln!("miss and upload: peak RSS {rss_a} KiB");
    assert!(
        rss_a < RSS_LIMIT_KIB,
        "miss and upload: peak RSS {rss_a} KiB"
    );
    // More than one part: Garage keeps 1 MiB blocks, so the data dir alone
    // cannot say; the object's ETag can (`<md5 of the parts>-<count>`).
    let blob = server
        .objects()
        .into_iter()
        .find(|o| o.contains("/blobs/"))
        .unwrap();
    let etag = server.etag(&blob);
    assert!(etag.ends_with("-6\""), "not a 6-part upload: {etag}");

    let (code_b, rss_b, err) = run_measured(&b, &env, script, &out_b);
    assert_eq!(code_b, 0, "{err}");
    assert_contains(&err, "hit (remote)");
    assert_eq!(b.count(), 0);
    eprintln!("remote hit: peak RSS {rss_b} KiB");
    assert!(rss_b < RSS_LIMIT_KIB, "remote hit: peak RSS {rss_b} KiB");
    let (n, digest) = file_digest(&out_b);
    assert_eq!((n, digest), file_digest(&out_a), "the replay differs");
    assert_eq!(n, 200_000_000);
}

/// Bytes `pid` has written so far (`wchar` of /proc/PID/io: files and
/// pipes, not sockets).
fn io_chars(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Garage is SIGKILLed while a 100 MB blob is on its way up (a multipart
/// upload), then while one is on its way down: the run is right, recorded
/// locally, the failure counted, and no entry is left in the bucket.
#[test]
#[ignore = "needs garage: .ci/run installs it"]
fn garage_killed_during_an_upload_and_a_download() {
    // Random bytes: Garage stores each distinct 1 MiB block once.
    let script = "head -c 100000000 /dev/urandom";
    // Upload: kill once Garage has stored 40 MB (in the second part).
    let mut server = Garage::start();
    let env = server.env(Some(&server.rw));
    let pid = server.pid();
    let start = io_chars(pid, "wchar:");
    let m = Machine::new();
    let (url, env2) = (url(), env.clone());
    let runner = std::thread::spawn(move || {
        let o = m.run(&url, &vars(&env2), &[], script);
        (m, o)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while io_chars(pid, "wchar:") < start + 40_000_000 {
        assert!(Instant::now() < deadline, "no upload began");
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let (m, o) = runner.join().unwrap();
    check_killed(&m, &o, 100_000_000);
    assert_eq!(m.remote_stats()["uploads"], 0);

    // Download: an entry uploaded whole, then Garage killed once memorun
    // has spooled 20 MB of its blob.
    let server = Garage::start();
    let env = server.env(Some(&server.rw));
    let a = Machine::new();
    let o = a.run(&crate::s3::url(), &vars(&env), &[], script);
    assert_contains(&stderr(&o), "memorun: uploaded");
    let mut server = server;
    let b = Machine::new();
    let mut c = b.dir.memorun_std();
    c.env("MEMORUN_SECRET", SECRET)
        .args(["-v", "--remote", &crate::s3::url(), "--base-dir"])
        .arg(b.dir.path())
        .args(["--", "sh", "-c"])
        .arg(format!("echo run >> count; {script}"))
        .arg("sh")
        .arg(b.dir.join("in.txt"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        c.env(k, v);
    }
    let child = c.spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while io_chars(pid, "wchar:") < 20_000_000 {
        assert!(Instant::now() < deadline, "no download began");
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let o = waiter.join().unwrap();
    check_killed(&b, &o, 100_000_000);
    assert_eq!(b.remote_stats()["hits"], 0);
    assert!(b.remote_stats()["bytes_down"].as_u64().unwrap() > 0);
}

/// The run after a kill: its own output, recorded locally, one failure
/// counted, no upload.
#[track_caller]
fn check_killed(m: &Machine, o: &Output, len: usize) {
    assert_eq!(code(o), 0, "{}", stderr(o));
    assert_eq!(o.stdout.len(), len);
    assert_eq!(m.count(), 1, "the command did not run");
    let s = m.remote_stats();
    assert_eq!(
        s["errors"].as_u64().unwrap() + s["timeouts"].as_u64().unwrap(),
        1,
        "{s}"
    );
    assert_eq!(m.dir.stats()["entries"], 1, "{}", stderr(o));
    assert_eq!(stderr(o).matches("warning").count(), 1, "{}", stderr(o));
}
