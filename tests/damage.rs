//! A damaged store: bit flips in an entry's row, columns of the wrong type,
//! a database file that is not one, a hit log with garbage in it. Never a
//! wrong replay, never a warning that comes back on every run, and `list`,
//! `why`, `stats` and `clear` keep working.

use std::fs;
use std::ops::Range;

use rusqlite::types::Value;

use crate::util::{Dir, code, stderr, stdout};

/// A recorded failure: replayed only with `--cache-failures`.
const FAILING: &str = "echo out; echo err >&2; exit 1";

fn warnings(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("memorun: warning"))
        .map(str::to_string)
        .collect()
}

fn open_db(d: &Dir) -> rusqlite::Connection {
    rusqlite::Connection::open(d.cache.join("memorun.db")).unwrap()
}

/// SQLite's varint: big-endian groups of 7 bits, the ninth byte whole.
fn varint(v: u64) -> Vec<u8> {
    if v > 0x00ff_ffff_ffff_ffff {
        let mut out: Vec<u8> = (0..8).map(|i| ((v >> (57 - 7 * i)) as u8) | 0x80).collect();
        out.push(v as u8);
        return out;
    }
    let mut groups = vec![(v & 0x7f) as u8];
    let mut rest = v >> 7;
    while rest > 0 {
        groups.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    groups.reverse();
    groups
}

/// The serial type SQLite's record format gives a value.
fn serial_type(v: &Value) -> u64 {
    match v {
        Value::Null => 0,
        Value::Integer(0) => 8,
        Value::Integer(1) => 9,
        Value::Integer(i) => match *i {
            -128..=127 => 1,
            -32768..=32767 => 2,
            -8_388_608..=8_388_607 => 3,
            -2_147_483_648..=2_147_483_647 => 4,
            -140_737_488_355_328..=140_737_488_355_327 => 5,
            _ => 6,
        },
        Value::Real(_) => 7,
        Value::Blob(b) => 12 + 2 * b.len() as u64,
        Value::Text(t) => 13 + 2 * t.len() as u64,
    }
}

/// Where the only entry's record lies in the database file: its header,
/// and its body up to the last column (the large key components).
fn entry_record(d: &Dir, db: &[u8]) -> (Range<usize>, Range<usize>) {
    let conn = open_db(d);
    let ncols: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('entries')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let ncols = ncols as usize;
    let values: Vec<Value> = conn
        .query_row("SELECT * FROM entries", [], |r| {
            (0..ncols).map(|i| r.get(i)).collect()
        })
        .unwrap();
    let mut types = Vec::new();
    for v in &values {
        types.extend(varint(serial_type(v)));
    }
    let mut header = varint(types.len() as u64 + 1);
    assert_eq!(
        header.len(),
        1,
        "a header this size needs a one-byte length"
    );
    header.extend(types);
    // The body starts with the key, then the argv digest: together they
    // appear nowhere else (the indexes pair them with other columns).
    let (Value::Blob(key), Value::Blob(argv_digest)) = (&values[0], &values[1]) else {
        panic!("unexpected key columns: {values:?}");
    };
    let body_start = [key.as_slice(), argv_digest.as_slice()].concat();
    let found: Vec<usize> = db
        .windows(body_start.len())
        .enumerate()
        .filter(|(_, w)| *w == body_start.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found.len(), 1, "the row's body is not in the file once");
    let body = found[0];
    let start = body - header.len();
    assert_eq!(
        &db[start..body],
        header.as_slice(),
        "record header not found"
    );
    let last = values.last().unwrap();
    let body_len: usize = values
        .iter()
        .map(|v| match v {
            Value::Null | Value::Integer(0) | Value::Integer(1) => 0,
            Value::Integer(_) => [0, 1, 2, 3, 4, 6, 8][serial_type(v) as usize],
            Value::Real(_) => 8,
            Value::Blob(b) => b.len(),
            Value::Text(t) => t.len(),
        })
        .sum();
    let last_len = match last {
        Value::Text(t) => t.len(),
        other => panic!("the last column is not the components: {other:?}"),
    };
    (start..body, body..body + body_len - last_len)
}

/// Put back the pristine database, without its WAL or hit log.
fn restore(d: &Dir, pristine: &[u8]) {
    for f in ["memorun.db-wal", "memorun.db-shm", "hits.log"] {
        let _ = fs::remove_file(d.cache.join(f));
    }
    // The records of the database replaced (see `Dir::drop_records`).
    d.drop_records();
    fs::write(d.cache.join("memorun.db"), pristine).unwrap();
}

#[test]
fn bit_flips_in_an_entry_record_never_replay_wrongly_or_stick() {
    let d = Dir::new();
    let o = d.run_counted(&["--cache-failures"], FAILING);
    assert_eq!((code(&o), d.count()), (1, 1));
    let db_path = d.cache.join("memorun.db");
    let pristine = fs::read(&db_path).unwrap();
    let (header, body) = entry_record(&d, &pristine);
    // Every bit of the header; one bit of each byte of the body before the
    // key components (the bit rotates with the byte).
    let flips: Vec<(usize, u8)> = header
        .clone()
        .flat_map(|i| (0..8).map(move |b| (i, 1u8 << b)))
        .chain(body.clone().map(|i| (i, 1u8 << (i % 8))))
        .collect();
    let (mut wrong, mut stuck, mut warned) = (Vec::new(), Vec::new(), Vec::new());
    for &(at, bit) in &flips {
        let mut bytes = pristine.clone();
        bytes[at] ^= bit;
        restore(&d, &bytes);
        let flip = format!("byte {} bit {bit:#04x}", at - header.start);
        let ran = d.count();
        // Without --cache-failures a recorded failure is never replayed.
        let o = d.run_counted(&[], FAILING);
        if d.count() != ran + 1 || code(&o) != 1 || stdout(&o) != "out\n" {
            wrong.push(format!("{flip}: replayed without --cache-failures: {o:?}"));
        }
        // With it: replayed as recorded, or run again; never anything else.
        for round in 0..2 {
            let ran = d.count();
            let o = d.run_counted(&["--cache-failures"], FAILING);
            if (code(&o), stdout(&o).as_str()) != (1, "out\n") || !stderr(&o).contains("err\n") {
                wrong.push(format!("{flip}: round {round}: {o:?}"));
            }
            if !warnings(&o).is_empty() {
                warned.push(format!("{flip}: round {round}: {:?}", warnings(&o)));
            }
            // The second round must hit: whatever was damaged is gone.
            if round == 1 && d.count() != ran {
                stuck.push(format!("{flip}: ran again after a re-record"));
            }
        }
    }
    let n = flips.len();
    assert!(
        wrong.is_empty() && stuck.is_empty() && warned.is_empty(),
        "of {n} flips, {} gave a wrong replay, {} stayed uncached, {} warned:\n{}",
        wrong.len(),
        stuck.len(),
        warned.len(),
        [&wrong[..], &stuck[..], &warned[..]]
            .concat()
            .iter()
            .step_by(7)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The damaged entries were counted as such.
    let o = d.run(["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(s["corrupt"].as_u64().unwrap() >= 1, "{s}");
}

/// Make the entries table accept NULL anywhere, as a damaged page can.
fn allow_nulls(d: &Dir) {
    let conn = open_db(d);
    conn.execute_batch(
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = replace(sql, 'NOT NULL', '') WHERE name = 'entries';
         PRAGMA writable_schema = OFF;",
    )
    .unwrap();
}

#[test]
fn row_with_a_null_or_garbage_column_is_a_miss_and_list_why_stats_clear_work() {
    let damage = [
        ("exit_code", "NULL"),
        ("created", "NULL"),
        ("created", "'soon'"),
        ("duration_ms", "-5"),
        ("exit_code", "x'00'"),
        ("out_digest", "x'0102'"),
        ("out_len", "3.5"),
        ("display", "x'ff'"),
        ("outputs", "x'ffff'"),
        ("checksum", "NULL"),
        ("checksum", "'garbage'"),
        ("components", "'not json'"),
    ];
    for (column, value) in damage {
        let d = Dir::new();
        let args = ["--cache-failures"];
        d.run_counted(&args, FAILING);
        // An earlier run of the same command, for `why` to compare with.
        d.run_counted(&["--cache-failures", "-k", "v1"], FAILING);
        allow_nulls(&d);
        open_db(&d)
            .execute(&format!("UPDATE entries SET {column} = {value}"), [])
            .unwrap();
        let what = format!("{column} = {value}");
        for sub in [
            &["list"][..],
            &["list", "--json"],
            &["stats"],
            &["stats", "--json"],
        ] {
            let o = d.run(sub);
            assert_eq!(code(&o), 0, "{what}: {sub:?}: {}", stderr(&o));
        }
        let mut why = vec!["why", "--cache-failures", "--"];
        let script = d.counted(FAILING);
        why.extend(script.iter().map(String::as_str));
        let o = d.run(&why);
        assert_eq!(code(&o), 0, "{what}: why: {}", stderr(&o));
        // The run: a miss that re-records, silently; then a hit.
        let ran = d.count();
        let o = d.run_counted(&args, FAILING);
        assert_eq!((code(&o), stdout(&o).as_str()), (1, "out\n"), "{what}");
        assert!(warnings(&o).is_empty(), "{what}: {}", stderr(&o));
        if !matches!(column, "display" | "components") {
            assert_eq!(d.count(), ran + 1, "{what}: the damaged row was replayed");
        }
        let ran = d.count();
        let o = d.run_counted(&args, FAILING);
        assert_eq!(
            (code(&o), d.count()),
            (1, ran),
            "{what}: no hit after re-recording"
        );
        assert!(warnings(&o).is_empty(), "{what}: {}", stderr(&o));
        // Damage again, then clear around it.
        allow_nulls(&d);
        open_db(&d)
            .execute(&format!("UPDATE entries SET {column} = {value}"), [])
            .unwrap();
        let o = d.run(["clear"]);
        assert_eq!(code(&o), 0, "{what}: clear: {}", stderr(&o));
        let left: i64 = open_db(&d)
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "{what}: clear left entries");
    }
}

/// Files and links that are not memorun's, in and around a cache directory.
fn plant(d: &Dir) -> (std::path::PathBuf, std::path::PathBuf) {
    let outside = d.write("outside/keep.txt", "keep");
    fs::create_dir_all(d.cache.join("blobs")).unwrap();
    std::os::unix::fs::symlink(d.join("outside"), d.cache.join("blobs").join("ab")).unwrap();
    let mine = d.cache.join("my-notes.txt");
    fs::write(&mine, "mine").unwrap();
    (outside, mine)
}

#[test]
fn garbage_database_says_how_to_reset_and_clear_all_resets_it() {
    let d = Dir::new();
    d.run_counted(&[], "echo out");
    let (outside, mine) = plant(&d);
    let junk: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
    restore(&d, &junk);
    let o = d.run_counted(&[], "echo out");
    assert_eq!((code(&o), stdout(&o).as_str(), d.count()), (0, "out\n", 2));
    let w = warnings(&o);
    assert_eq!(w.len(), 1, "{}", stderr(&o));
    assert!(w[0].contains("memorun clear --all"), "{}", w[0]);
    for sub in [&["list"][..], &["stats"], &["clear"]] {
        let o = d.run(sub);
        assert_eq!(code(&o), 125, "{sub:?}");
        assert!(stderr(&o).contains("memorun clear --all"), "{}", stderr(&o));
    }
    let o = d.run(["clear", "--all", "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(d.cache.join("memorun.db")).unwrap(), junk);
    let o = d.run(["clear", "--all"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("reset the cache"), "{}", stdout(&o));
    // Nothing of anyone else's went, and nothing was followed.
    assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
    assert_eq!(fs::read_to_string(&mine).unwrap(), "mine");
    // A working store again: a miss that records, then a hit.
    d.run_counted(&[], "echo out");
    let o = d.run_counted(&[], "echo out");
    assert_eq!((stdout(&o).as_str(), d.count()), ("out\n", 3));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(code(&d.run(["list"])), 0);
}

fn hits(d: &Dir) -> u64 {
    let o = d.run(["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s["hits"].as_u64().unwrap()
}

#[test]
fn garbage_in_the_hit_log_is_not_counted_as_hits() {
    let d = Dir::new();
    d.run_counted(&[], "echo out");
    d.run_counted(&[], "echo out");
    d.run_counted(&[], "echo out");
    assert_eq!(hits(&d), 2);
    let log = d.cache.join("hits.log");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..1000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(&log, &garbage).unwrap();
    // Hits recorded after the garbage still count.
    d.run_counted(&[], "echo out");
    assert_eq!(hits(&d), 3, "garbage was counted, or a real hit was lost");
    assert_eq!(d.count(), 1);
}

#[test]
fn huge_sparse_hit_log_is_discarded_not_read() {
    let d = Dir::new();
    d.run_counted(&[], "echo out");
    let log = d.cache.join("hits.log");
    let f = fs::File::create(&log).unwrap();
    // 256 MiB of zeros, past any sane log: read whole, it takes seconds
    // (gigabytes took minutes) and, unchecked, counts as millions of hits.
    f.set_len(256 << 20).unwrap();
    drop(f);
    let o = d.run_counted(&[], "echo out");
    assert_eq!(stdout(&o), "out\n");
    let o = d.run(["stats", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        fs::metadata(&log).map_or(0, |m| m.len()) < 1 << 20,
        "the log was left huge"
    );
    assert_eq!(hits(&d), 0);
    let o = d.run_counted(&[], "echo out");
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(hits(&d), 1);
}

fn corrupt(d: &Dir) -> u64 {
    let o = d.run(["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s["corrupt"].as_u64().unwrap()
}

#[test]
fn entry_removed_by_a_concurrent_clear_is_a_miss_not_corruption() {
    use std::io::Read;
    use std::process::Stdio;
    let d = Dir::new();
    // Two blobs: a replay verifies all of stdout's before it opens stderr's.
    let script = "head -c 134217728 /dev/zero; head -c 100000 /dev/zero >&2";
    let o = d.run_counted(&[], script);
    assert_eq!((code(&o), o.stdout.len()), (0, 128 << 20));
    let stdout_blob = {
        let mut blobs: Vec<(u64, std::path::PathBuf)> = fs::read_dir(d.cache.join("blobs"))
            .unwrap()
            .flat_map(|s| fs::read_dir(s.unwrap().path()).unwrap())
            .map(|f| {
                let p = f.unwrap().path();
                (fs::metadata(&p).unwrap().len(), p)
            })
            .collect();
        blobs.sort();
        blobs.pop().unwrap().1
    };
    let shown = stdout_blob.to_str().unwrap().to_string();
    // Catch a hit while it verifies stdout's blob, stop it there, clear the
    // cache under it, and let it go on: stderr's blob is gone. (The test
    // only retries when it could not catch the hit in that state.)
    for _attempt in 0..20 {
        let ran = d.count();
        // stderr to a file, not a pipe: a hit that is not caught writes its
        // 100 kB of stderr without anyone reading, and must not block on it.
        let err_path = d.join("hit-stderr");
        let mut hit = d
            .memorun_std()
            .arg("-v")
            .arg("--")
            .args(d.counted(script))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let maps = format!("/proc/{}/maps", hit.id());
        let mut caught = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while hit.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the hit never ended");
            if fs::read_to_string(&maps).is_ok_and(|m| m.contains(&shown)) {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(hit.id() as i32, libc::SIGSTOP) };
                caught = true;
                break;
            }
        }
        if caught {
            let o = d.run(["clear"]);
            assert_eq!(code(&o), 0, "{}", stderr(&o));
            // SAFETY: as above.
            unsafe { libc::kill(hit.id() as i32, libc::SIGCONT) };
        }
        let status = hit.wait().unwrap();
        let mut err = String::new();
        fs::File::open(&err_path)
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "{err}");
        assert!(!err.contains("failed verification"), "{err}");
        assert!(!err.contains("warning"), "{err}");
        if d.count() == ran + 1 {
            // It found the entry gone mid-replay and ran the command.
            assert_eq!(corrupt(&d), 0, "a cleared entry was counted as corrupt");
            return;
        }
        // Not caught in time: it replayed; record again if it was cleared.
        d.run_counted(&[], script);
    }
    panic!("never caught a hit while it verified its output");
}
