//! `memorun list`: `--limit`, its bad values, and a listing that streams
//! (memory that does not grow with the store, a reader that goes away).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::util::{Dir, code, copies, stderr, stdout, wait_with_peak_rss};

/// Record `n` entries of `echo N`, oldest first, each at least a few
/// milliseconds after the one before.
fn record(d: &Dir, n: usize) {
    for i in 0..n {
        let o = d.run(["--", "echo", &i.to_string()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn list_limit_shows_the_n_newest_newest_first() {
    let d = Dir::new();
    record(&d, 4);
    let o = d.run(["list", "--limit", "2", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let commands: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["echo 3", "echo 2"]);
    // The table: its header and the same two, and -n for short.
    let text = stdout(&d.run(["list", "-n", "2"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("KEY"), "{text}");
    assert!(lines[1].ends_with("echo 3"), "{text}");
    assert!(lines[2].ends_with("echo 2"), "{text}");
    // More than there are: all of them.
    let v = d.json(&["list", "--limit", "10", "--json"]);
    assert_eq!(v.as_array().unwrap().len(), 4);
    // An empty store (no cache directory yet): nothing, not an error.
    let empty = Dir::new();
    assert_eq!(stdout(&empty.run(["list", "-n", "3", "--json"])), "[]\n");
}

#[test]
fn list_limit_that_is_not_a_positive_number_is_a_usage_error_naming_it() {
    let d = Dir::new();
    record(&d, 1);
    for bad in ["0", "x", "-1", "2.5", ""] {
        let o = d.run(["list", "--limit", bad]);
        assert_eq!(code(&o), 125, "--limit {bad:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "--limit {bad:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "--limit {bad:?}: {err}");
        assert!(err.contains("--limit"), "--limit {bad:?}: {err}");
        assert!(err.contains(&format!("'{bad}'")), "--limit {bad:?}: {err}");
    }
}

#[test]
fn list_streams_a_big_store_in_little_memory() {
    let d = Dir::new();
    record(&d, 1);
    copies(&d, 50_000);
    for json in [false, true] {
        let mut cmd = d.memorun_std();
        cmd.arg("list").stdout(Stdio::piped()).stderr(Stdio::null());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || BufReader::new(out).lines().count());
        let (status, peak_kib) = wait_with_peak_rss(&mut child);
        assert!(status.success(), "json {json}: {status}");
        let lines = lines.join().unwrap();
        // All of them: a header and 50,001 rows, or 13 lines each and
        // the brackets.
        let want = if json { 50_001 * 13 + 2 } else { 50_002 };
        assert_eq!(lines, want, "json {json}");
        // Holding the rows took 48 MiB (the table; JSON more); streaming
        // them, about 12 MiB whatever their number.
        assert!(peak_kib < 24 * 1024, "json {json}: peak RSS {peak_kib} KiB");
    }
}

#[test]
fn list_into_a_reader_that_goes_away_ends_quietly() {
    let d = Dir::new();
    record(&d, 1);
    copies(&d, 5_000);
    for json in [false, true] {
        let mut cmd = d.memorun_std();
        cmd.arg("list")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // Like `memorun list | head -1`: the reader is gone now.
        let o = child.wait_with_output().unwrap();
        assert!(first.starts_with(if json { "[" } else { "KEY" }), "{first}");
        assert_eq!(code(&o), 0, "json {json}: {}", stderr(&o));
        assert!(o.stderr.is_empty(), "json {json}: {}", stderr(&o));
    }
}
