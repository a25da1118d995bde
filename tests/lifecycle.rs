//! The cache lifecycle: stats, list, clear, TTL, stale-while-revalidate,
//! the size limit, and collecting what a crash leaves behind.

use std::fs;
use std::time::{Duration, Instant};

use crate::util::{Dir, code, stderr, stdout};

fn json(d: &Dir, args: &[&str]) -> serde_json::Value {
    let o = d.run(args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// Set every entry's created and last-used time back by `by`, sealing it
/// again (its checksum covers the creation time).
fn backdate(d: &Dir, by: Duration) {
    use memorun::store::Entries;
    let by = by.as_millis() as i64;
    let conn = rusqlite::Connection::open(d.cache.join("memorun.db")).unwrap();
    let keys: Vec<Vec<u8>> = conn
        .prepare("SELECT key FROM entries")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut store = memorun::store::db::SqliteStore::open(&d.cache).unwrap();
    let records = memorun::store::records::Records::new(store.root());
    for key in keys {
        let digest = memorun::key::Digest::from_slice(&key).unwrap();
        let mut entry = store.lookup(&digest).unwrap().expect("an entry");
        entry.created_ms -= by;
        // Its hit record ages with it: a hit from it must see the same age.
        if let Some(mut record) = records.read(&digest) {
            record.entry.created_ms -= by;
            assert_eq!(record.entry, entry);
            let pending = records.prepare(store.tmp_dir(), &record).unwrap();
            pending.publish().unwrap();
        }
        conn.execute(
            "UPDATE entries SET created = ?1, last_used = last_used - ?2, checksum = ?3
             WHERE key = ?4",
            rusqlite::params![entry.created_ms, by, &entry.checksum().0[..], key],
        )
        .unwrap();
    }
}

#[test]
fn stats_counts_hits_misses_and_reasons() {
    let d = Dir::new();
    let empty = json(&d, &["stats", "--json"]);
    assert_eq!(empty["hits"], 0);
    assert_eq!(empty["entries"], 0);
    for _ in 0..3 {
        d.run_counted(&[], "sleep 0.05; echo hi");
    }
    d.run_counted(&[], "exit 2");
    d.run_counted(&[], "kill -TERM $$");
    let s = json(&d, &["stats", "--json"]);
    assert_eq!(s["hits"].as_u64(), Some(2));
    assert_eq!(s["misses"].as_u64(), Some(3));
    assert_eq!(s["not_recorded"]["nonzero_exit"], 1);
    assert_eq!(s["not_recorded"]["signal"], 1);
    assert_eq!(s["entries"], 1);
    assert!(s["time_saved_ms"].as_u64().unwrap() >= 100, "{s}");
    assert!(s["bytes_on_disk"].as_u64().unwrap() > 0);
    assert_eq!(s["top_commands"][0]["hits"], 2);
    let text = stdout(&d.run(["stats"]));
    assert!(text.contains("Hit rate"), "{text}");
    assert!(text.contains("40.0 %"), "{text}");
    // --zero resets the counters, not the entries.
    assert_eq!(code(&d.run(["stats", "--zero"])), 0);
    let s = json(&d, &["stats", "--json"]);
    assert_eq!(s["hits"], 0);
    assert_eq!(s["entries"], 1);
    assert!(s["since_ms"].is_number());
}

#[test]
fn list_shows_entries_newest_first() {
    let d = Dir::new();
    d.run(["--", "echo", "first"]);
    std::thread::sleep(Duration::from_millis(20));
    d.run(["--", "echo", "second entry"]);
    let text = stdout(&d.run(["list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("KEY"), "{text}");
    assert!(lines[1].ends_with("echo 'second entry'"), "{text}");
    assert!(lines[2].ends_with("echo first"), "{text}");
    let v = json(&d, &["list", "--json"]);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["command"], "echo 'second entry'");
    assert_eq!(arr[0]["output_bytes"], 13);
    assert_eq!(arr[0]["exit_code"], 0);
}

#[test]
fn clear_filters_and_dry_run() {
    let d = Dir::new();
    d.run(["--", "echo", "old"]);
    backdate(&d, Duration::from_secs(3 * 86400));
    d.run(["--", "echo", "new"]);
    d.run(["--cache-failures", "--", "sh", "-c", "exit 3"]);
    d.run(["--", "echo", "other"]);
    let count = |d: &Dir| json(d, &["list", "--json"]).as_array().unwrap().len();
    assert_eq!(count(&d), 4);
    let o = d.run(["clear", "--older-than", "1d", "--dry-run"]);
    assert!(
        stdout(&o).contains("would remove 1 entry"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("echo old"), "{}", stdout(&o));
    assert_eq!(count(&d), 4, "--dry-run removed something");
    let o = d.run(["clear", "--older-than", "1d"]);
    assert!(stdout(&o).starts_with("removed 1 entry"), "{}", stdout(&o));
    assert_eq!(count(&d), 3);
    let o = d.run(["clear", "--failed"]);
    assert!(stdout(&o).starts_with("removed 1 entry"), "{}", stdout(&o));
    let o = d.run(["clear", "--", "echo", "other"]);
    assert!(stdout(&o).starts_with("removed 1 entry"), "{}", stdout(&o));
    let left = json(&d, &["list", "--json"]);
    assert_eq!(left[0]["command"], "echo new");
    let o = d.run(["clear"]);
    assert!(stdout(&o).starts_with("removed 1 entry"), "{}", stdout(&o));
    assert_eq!(count(&d), 0);
    // A bad duration is a usage error.
    let o = d.run(["clear", "--older-than", "soon"]);
    assert_eq!(code(&o), 125);
}

#[test]
fn clear_removes_blobs_and_crash_leftovers_but_not_planted_symlinks() {
    let d = Dir::new();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    d.write("big.bin", &big);
    d.run(["--", "cat", "big.bin"]);
    let blob_files = |d: &Dir| walk(&d.cache.join("blobs")).len();
    assert_eq!(blob_files(&d), 1);
    // Leftovers of a crash: an unreferenced blob and an old spool file.
    let orphan_hex = "ab".repeat(32);
    fs::create_dir_all(d.cache.join("blobs/ab")).unwrap();
    let orphan = d.cache.join("blobs/ab").join(&orphan_hex);
    fs::write(&orphan, b"orphan").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let spool = d.cache.join("tmp/spool-0123456789abcdef01234567");
    fs::write(&spool, b"partial").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&spool)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // A symlink planted in the cache pointing outside it, and its target.
    let outside = d.write("precious/keep.txt", "do not delete");
    std::os::unix::fs::symlink(d.join("precious"), d.cache.join("blobs/cd")).unwrap();
    std::os::unix::fs::symlink(&outside, d.cache.join("tmp/spool-link")).unwrap();
    let o = d.run(["clear"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("removed 1 entry"), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 unused files"), "{}", stdout(&o));
    assert_eq!(blob_files(&d), 0, "blob files were left behind");
    assert!(!spool.exists());
    assert_eq!(fs::read_to_string(&outside).unwrap(), "do not delete");
    assert!(
        fs::symlink_metadata(d.cache.join("blobs/cd")).is_ok(),
        "the planted symlink was removed"
    );
    assert!(fs::symlink_metadata(d.cache.join("tmp/spool-link")).is_ok());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            v.extend(walk(&e.path()));
        } else if t.is_file() {
            v.push(e.path());
        }
    }
    v
}

#[test]
fn ttl_expiry_reruns_and_replaces_the_entry() {
    let d = Dir::new();
    let script = "wc -l < count";
    d.run_counted(&["--ttl", "1h"], script);
    d.run_counted(&["--ttl", "1h"], script);
    assert_eq!(d.count(), 1);
    // TTL is not part of the key: a different TTL sees the same entry.
    d.run_counted(&["--ttl", "2h"], script);
    d.run_counted(&[], script);
    assert_eq!(d.count(), 1);
    backdate(&d, Duration::from_secs(90 * 60));
    let o = d.run_counted(&["--ttl", "1h", "-v"], script);
    assert_eq!(d.count(), 2, "an expired entry was replayed");
    assert!(stderr(&o).contains("past --ttl 1h"), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "2");
    let o = d.run_counted(&["--ttl", "1h"], script);
    assert_eq!(d.count(), 2, "the re-run did not replace the entry");
    assert_eq!(stdout(&o).trim(), "2");
    assert_eq!(json(&d, &["list", "--json"]).as_array().unwrap().len(), 1);
}

#[test]
fn stale_replays_at_once_then_the_refreshed_result_appears() {
    let d = Dir::new();
    let script = "sleep 2; wc -l < count";
    let args = ["--stale", "1m"];
    assert_eq!(stdout(&d.run_counted(&args, script)).trim(), "1");
    backdate(&d, Duration::from_secs(120));
    // Replayed at once, even through $(...), while a refresh starts.
    let start = Instant::now();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "out=$('{}' --stale 1m -- sh -c \"$1\"); echo \"$out\"",
            crate::util::memorun_bin()
        ))
        .arg("sh")
        .arg(&d.counted(script)[2])
        .env("MEMORUN_DIR", &d.cache)
        .current_dir(d.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), "1", "{}", stderr(&o));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "the stale replay waited for the refresh"
    );
    // The refresh records the new result in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.count() < 2 || json(&d, &["list", "--json"])[0]["hits"] != 0 {
        assert!(Instant::now() < deadline, "no refresh happened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = d.run_counted(&args, script);
    assert_eq!(
        stdout(&o).trim(),
        "2",
        "the refreshed result was not recorded"
    );
    assert_eq!(d.count(), 2, "more than one refresh ran");
}

#[test]
fn eviction_keeps_the_store_under_a_small_limit() {
    let d = Dir::new();
    let limit = 600_000u64;
    for i in 0..8 {
        let o = d
            .memorun()
            .env("MEMORUN_MAX_SIZE", limit.to_string())
            .args([
                "--",
                "sh",
                "-c",
                &format!("head -c 150000 /dev/zero; echo {i}"),
            ])
            .output()
            .unwrap();
        assert_eq!(o.stdout.len(), 150_002 + usize::from(i >= 10));
    }
    let s = json(&d, &["stats", "--json"]);
    let blobs: u64 = walk(&d.cache.join("blobs"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(blobs <= limit, "blobs take {blobs} bytes, limit {limit}");
    assert!(s["evicted"].as_u64().unwrap() >= 4, "{s}");
    // The most recent entry survived.
    let newest = json(&d, &["list", "--json"]);
    assert!(
        newest[0]["command"].as_str().unwrap().ends_with("echo 7'"),
        "{newest}"
    );
    // Entry count limit too; the entry just recorded survives it.
    for _ in 0..2 {
        let o = d
            .memorun()
            .env("MEMORUN_MAX_ENTRIES", "1")
            .arg("--")
            .args(d.counted("echo x"))
            .output()
            .unwrap();
        assert_eq!(stdout(&o), "x\n");
    }
    assert_eq!(
        d.count(),
        1,
        "MEMORUN_MAX_ENTRIES=1 evicted the entry just recorded"
    );
    assert_eq!(json(&d, &["list", "--json"]).as_array().unwrap().len(), 1);
}

/// A store made by a development version of memorun (no application id,
/// a schema version from before the schema was frozen) is rebuilt, empty,
/// with one notice.
#[test]
fn a_development_store_is_rebuilt_with_one_notice() {
    for old_version in [1, 6] {
        let d = Dir::new();
        d.run_counted(&[], "echo kept");
        let conn = rusqlite::Connection::open(d.cache.join("memorun.db")).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = 0; PRAGMA user_version = {old_version};"
        ))
        .unwrap();
        drop(conn);
        // Such a store had no hit records.
        d.drop_records();
        let o = d.run_counted(&[], "echo kept");
        assert_eq!((code(&o), stdout(&o).as_str()), (0, "kept\n"));
        assert_eq!(
            d.count(),
            2,
            "version {old_version}: replayed from the old store"
        );
        assert_eq!(
            stderr(&o),
            "memorun: note: rebuilt the cache: it was made by a development version of memorun\n"
        );
        let o = d.run_counted(&[], "echo kept");
        assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("kept\n", ""));
        assert_eq!(
            d.count(),
            2,
            "version {old_version}: no hit after the rebuild"
        );
    }
}

/// A store made by a newer memorun is left alone: the command runs uncached.
#[test]
fn a_newer_store_is_refused_and_left_alone() {
    let d = Dir::new();
    d.run_counted(&[], "echo hi");
    let db = d.cache.join("memorun.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", memorun::store::db::SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    // The newer memorun took the records with the upgrade, as this one does.
    d.drop_records();
    for _ in 0..2 {
        let o = d.run_counted(&[], "echo hi");
        assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
        // Not damaged: no hint to reset it.
        let err = stderr(&o);
        assert!(
            err.starts_with("memorun: warning: cannot use ")
                && err.ends_with(
                    &format!(": the store has schema version {}, newer than this memorun ({}); running uncached\n",
                    memorun::store::db::SCHEMA_VERSION + 1,
                    memorun::store::db::SCHEMA_VERSION)
                ),
            "{err}"
        );
    }
    assert_eq!(d.count(), 3, "a store it cannot read gave a hit");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (version, entries): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), COUNT(*) FROM entries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (version, entries),
        (memorun::store::db::SCHEMA_VERSION + 1, 1)
    );
}

#[test]
fn every_run_leaves_the_wal_empty() {
    // Each memorun is a new process that rebuilds the WAL index from the
    // whole WAL when it opens the store: the last one out truncates it.
    let d = Dir::new();
    let wal_len = || fs::metadata(d.cache.join("memorun.db-wal")).map_or(0, |m| m.len());
    for (i, args) in [&[][..], &[][..], &["--force"][..]].iter().enumerate() {
        let o = d.run_counted(args, "echo hi");
        assert_eq!(
            (code(&o), stdout(&o).as_str()),
            (0, "hi\n"),
            "{}",
            stderr(&o)
        );
        assert_eq!(wal_len(), 0, "after run {i}");
    }
    assert_eq!(d.count(), 2, "a miss, a hit, a forced run");
    let o = d.run(["stats"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(wal_len(), 0, "after stats");
}

/// One of `stats`' top commands: command, hits, time saved (ms).
type Top = (String, u64, u64);

/// `stats`' top commands and the totals (hits, time saved).
fn top_and_totals(d: &Dir) -> (Vec<Top>, (u64, u64)) {
    let s = json(d, &["stats", "--json"]);
    let top = s["top_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["command"].as_str().unwrap().to_string(),
                t["hits"].as_u64().unwrap(),
                t["time_saved_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    let totals = (
        s["hits"].as_u64().unwrap(),
        s["time_saved_ms"].as_u64().unwrap(),
    );
    (top, totals)
}

/// The top list's hits and time saved, summed.
fn sum(top: &[Top]) -> (u64, u64) {
    top.iter().fold((0, 0), |(h, s), t| (h + t.1, s + t.2))
}

/// Issue 13: the top commands summed `hits × duration` over the current
/// entries, so a command recorded again (after `make clean`, a `clear`, a
/// `--force`, an eviction) started from zero: 15.4 s shown of 72.4 s saved.
#[test]
fn stats_top_commands_add_up_to_the_time_saved_after_entries_are_replaced() {
    let d = Dir::new();
    let run = |args: &[&str], script: &str| {
        let o = d.run_counted(args, script);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    };
    // Recorded, replayed twice, cleared, recorded again, replayed once.
    for _ in 0..3 {
        run(&[], "echo build");
    }
    assert_eq!(d.count(), 1);
    assert_eq!(code(&d.run(["clear"])), 0);
    run(&[], "echo build");
    run(&[], "echo build");
    assert_eq!(d.count(), 2);
    let (top, totals) = top_and_totals(&d);
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!((top[0].1, top[0].2), totals, "{top:?}");
    assert_eq!(totals.0, 3);
    // Re-recorded under the same key with --force, replayed again.
    run(&["--force"], "echo build");
    run(&[], "echo build");
    let (top, totals) = top_and_totals(&d);
    assert_eq!((top[0].1, top[0].2), totals, "{top:?}");
    assert_eq!(totals.0, 4);
    // Evicted by another command's entry: what it saved still counts.
    let o = d
        .memorun()
        .env("MEMORUN_MAX_ENTRIES", "1")
        .args(["--", "echo", "other"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "other\n");
    let o = d
        .memorun()
        .env("MEMORUN_MAX_ENTRIES", "1")
        .args(["--", "echo", "other"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "other\n");
    assert_eq!(json(&d, &["list", "--json"]).as_array().unwrap().len(), 1);
    let (top, totals) = top_and_totals(&d);
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!(sum(&top), totals, "{top:?}");
    assert_eq!(totals.0, 5);
    assert!(
        top.iter().any(|t| t.0 == "echo other" && t.1 == 1),
        "{top:?}"
    );
    // The text form shows the same.
    let text = stdout(&d.run(["stats"]));
    assert!(text.contains("     4 hits  sh -c"), "{text}");
}

/// `stats --zero` resets the time saved per command with the counters; the
/// next replays count from there.
#[test]
fn stats_zero_resets_the_time_saved_per_command() {
    let d = Dir::new();
    for _ in 0..3 {
        d.run_counted(&[], "echo build");
    }
    let (top, _) = top_and_totals(&d);
    assert_eq!(top[0].1, 2, "{top:?}");
    assert_eq!(stdout(&d.run(["stats", "--zero"])), "counters reset\n");
    let (top, totals) = top_and_totals(&d);
    assert_eq!((top.len(), totals), (0, (0, 0)), "{top:?}");
    d.run_counted(&[], "echo build");
    let (top, totals) = top_and_totals(&d);
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!((top[0].1, top[0].2), totals, "{top:?}");
    assert_eq!(totals.0, 1);
    assert_eq!(d.count(), 1);
}

/// One invocation evicts at most 100 entries (`MAX_EVICT`), the least
/// recently used: at a million entries, evicting 1,000 stalled the miss
/// that did it by 200 ms.
#[test]
fn eviction_removes_at_most_a_hundred_entries_per_run_least_recently_used_first() {
    let d = Dir::new();
    d.run(["--", "echo", "first"]);
    crate::util::copies(&d, 250);
    // The entries left: copy i as Some(i), a recorded one as None.
    let keys = |d: &Dir| -> Vec<Option<u64>> {
        let conn = rusqlite::Connection::open(d.cache.join("memorun.db")).unwrap();
        let mut v: Vec<Option<u64>> = conn
            .prepare("SELECT key FROM entries")
            .unwrap()
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|k| {
                let k = k.unwrap();
                let copy = k[8..].iter().all(|&b| b == 0);
                copy.then(|| u64::from_le_bytes(k[..8].try_into().unwrap()))
            })
            .collect();
        v.sort();
        v
    };
    let run = |word: &str| {
        let o = d
            .memorun()
            .env("MEMORUN_MAX_ENTRIES", "10")
            .args(["--", "echo", word])
            .output()
            .unwrap();
        assert_eq!((code(&o), stdout(&o)), (0, format!("{word}\n")));
    };
    // 252 entries, over the limit of 10: the 100 least recently used
    // copies (used 151 to 250 s ago) go.
    run("second");
    let mut want = vec![None, None];
    want.extend((1..=150).map(Some));
    assert_eq!(keys(&d), want);
    // And 100 more, then the rest down to 9 (90% of the limit), the entries
    // just recorded among them.
    run("third");
    assert_eq!(keys(&d).len(), 53);
    run("fourth");
    assert_eq!(keys(&d).len(), 9);
    let newest = json(&d, &["list", "--json"]);
    let newest: Vec<&str> = newest
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(newest, ["echo fourth", "echo third", "echo second"]);
    assert_eq!(json(&d, &["stats", "--json"])["evicted"], 100 + 100 + 45);
}
