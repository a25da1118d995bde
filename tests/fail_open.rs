//! A broken cache never breaks the command: it runs uncached, its output
//! passes through, its exit code is kept, and memorun warns once.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::util::{Dir, assert_contains, assert_starts_with, code, is_root, stderr, stdout};

fn assert_ran_uncached(d: &Dir, o: &std::process::Output, expected_count: usize) {
    assert_eq!(stdout(o), "out\n");
    assert_eq!(code(o), 3);
    let err = stderr(o);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("memorun: warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "expected one warning, got: {err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.contains("err\n"));
    assert_eq!(d.count(), expected_count);
}

const SCRIPT: &str = "echo out; echo err >&2; exit 3";

#[test]
fn garbage_database_file() {
    let d = Dir::new();
    fs::create_dir_all(&d.cache).unwrap();
    fs::set_permissions(&d.cache, fs::Permissions::from_mode(0o700)).unwrap();
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    fs::write(d.cache.join("memorun.db"), &junk).unwrap();
    let o = d.run_counted(&["--cache-failures"], SCRIPT);
    assert_ran_uncached(&d, &o, 1);
    let o = d.run_counted(&["--cache-failures"], SCRIPT);
    assert_ran_uncached(&d, &o, 2);
    assert_eq!(
        fs::read(d.cache.join("memorun.db")).unwrap(),
        junk,
        "memorun overwrote a file it could not read"
    );
}

#[test]
fn truncated_database_header() {
    let d = Dir::new();
    d.run_counted(&["--cache-failures"], SCRIPT);
    let db = d.cache.join("memorun.db");
    // Lose the WAL (as copying only the .db file would), then damage the
    // main file's header.
    let _ = fs::remove_file(d.cache.join("memorun.db-wal"));
    let _ = fs::remove_file(d.cache.join("memorun.db-shm"));
    let mut bytes = fs::read(&db).unwrap();
    assert!(bytes.len() >= 16, "no database header to damage");
    bytes[..16].copy_from_slice(b"definitely not!!");
    fs::write(&db, &bytes).unwrap();
    d.drop_records();
    let o = d.run_counted(&["--cache-failures"], SCRIPT);
    assert_ran_uncached(&d, &o, 2);
}

#[test]
fn cache_path_under_a_regular_file() {
    let d = Dir::new();
    let file = d.write("plain-file", "x");
    let o = d
        .memorun()
        .env("MEMORUN_DIR", file.join("cache"))
        .arg("--")
        .args(d.counted(SCRIPT))
        .output()
        .unwrap();
    assert_ran_uncached(&d, &o, 1);
    assert!(
        stderr(&o).contains("plain-file"),
        "the warning does not name the path"
    );
}

#[test]
fn unwritable_cache_directory() {
    if is_root() {
        // root writes anywhere; use a path that cannot be created instead.
        let d = Dir::new();
        let o = d
            .memorun()
            .env("MEMORUN_DIR", "/proc/memorun-cannot-exist/cache")
            .arg("--")
            .args(d.counted(SCRIPT))
            .output()
            .unwrap();
        assert_ran_uncached(&d, &o, 1);
        return;
    }
    let d = Dir::new();
    let parent = d.join("ro");
    fs::create_dir(&parent).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o500)).unwrap();
    let o = d
        .memorun()
        .env("MEMORUN_DIR", parent.join("cache"))
        .arg("--")
        .args(d.counted(SCRIPT))
        .output()
        .unwrap();
    assert_ran_uncached(&d, &o, 1);
}

#[test]
fn group_writable_cache_directory_is_not_used() {
    let d = Dir::new();
    fs::create_dir_all(&d.cache).unwrap();
    fs::set_permissions(&d.cache, fs::Permissions::from_mode(0o777)).unwrap();
    let o = d.run_counted(&["--cache-failures"], SCRIPT);
    assert_ran_uncached(&d, &o, 1);
    assert!(stderr(&o).contains("writable by group or others"));
    assert!(!d.cache.join("memorun.db").exists());
}

#[test]
fn quiet_suppresses_the_warning() {
    let d = Dir::new();
    let file = d.write("plain-file", "x");
    let o = d
        .memorun()
        .env("MEMORUN_DIR", file.join("cache"))
        .args(["-q", "--"])
        .args(d.counted(SCRIPT))
        .output()
        .unwrap();
    assert_eq!(stderr(&o), "err\n");
    assert_eq!(code(&o), 3);
}

#[test]
fn corrupt_blob_is_a_miss_and_is_rerecorded() {
    let d = Dir::new();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    d.write("data.bin", &data);
    let script = "cat data.bin";
    d.run_counted(&[], script);
    // Flip one byte in the one blob.
    let blob = walk_files(&d.cache.join("blobs")).pop().expect("a blob");
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100_000] ^= 0x40;
    fs::write(&blob, &bytes).unwrap();
    let o = d.run_counted(&["-v"], script);
    assert_eq!(o.stdout, data, "corrupt output was replayed");
    assert_eq!(d.count(), 2);
    assert!(stderr(&o).contains("failed verification"), "{}", stderr(&o));
    let o = d.run_counted(&[], script);
    assert_eq!(o.stdout, data);
    assert_eq!(d.count(), 2, "the re-run was not re-recorded");
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn store_files_are_private_whatever_the_umask() {
    let d = Dir::new();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{}' -- echo hi",
            crate::util::memorun_bin()
        ))
        .env("MEMORUN_DIR", &d.cache)
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "hi\n");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.cache), 0o700);
    assert_eq!(mode(&d.cache.join("memorun.db")), 0o600);
    // The WAL and its index persist between runs, and hold entries too.
    assert_eq!(mode(&d.cache.join("memorun.db-wal")), 0o600);
    assert_eq!(mode(&d.cache.join("memorun.db-shm")), 0o600);
    assert_eq!(mode(&d.cache.join("secret")), 0o600);
    assert_eq!(mode(&d.cache.join("tmp")), 0o700);
}

#[test]
fn empty_or_invalid_settings_never_stop_the_command() {
    let d = Dir::new();
    let o = d
        .memorun()
        .env("MEMORUN_DIR", "")
        .env("XDG_CACHE_HOME", d.join("xdg"))
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "hi\n"),
        "{}",
        stderr(&o)
    );
    assert!(
        d.join("xdg/memorun").exists(),
        "an empty MEMORUN_DIR did not fall back"
    );
    let o = d
        .memorun()
        .env("MEMORUN_MAX_SIZE", "lots")
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hi\n"));
    assert_starts_with(&stderr(&o), "memorun: warning: MEMORUN_MAX_SIZE='lots'");
    let o = d
        .memorun()
        .env("MEMORUN_MAX_ENTRIES", "x")
        .args(["--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    assert_contains(&stderr(&o), "MEMORUN_MAX_ENTRIES='x'");
}

#[test]
fn a_result_that_cannot_be_stored_is_passed_through_and_explained() {
    let d = Dir::new();
    assert_eq!(code(&d.run(["--", "true"])), 0); // creates the store
    // A large output goes to a blob file; make the blob directory a file.
    let _ = fs::remove_dir_all(d.cache.join("blobs"));
    fs::write(d.cache.join("blobs"), "not a directory").unwrap();
    let script = "head -c 100000 /dev/zero | tr '\\0' a";
    for run in 1..=2 {
        let o = d.run_counted(&[], script);
        assert_eq!(code(&o), 0);
        assert_eq!(
            o.stdout,
            vec![b'a'; 100_000],
            "output was not passed through"
        );
        let err = stderr(&o);
        assert!(
            err.starts_with("memorun: warning: cannot record the result: "),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(d.count(), run, "a result that was not stored replayed");
    }
    let mut why = d.memorun();
    let o = why
        .arg("why")
        .arg("--")
        .args(d.counted(script))
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("was not recorded: cannot record the result: "),
        "{text}"
    );
}

/// Closed standard descriptors: memorun opens `/dev/null` on them before
/// anything else, so that none of its own files (the hit log, a spool, a
/// record) becomes stdout and takes the command's output.
#[test]
fn closed_standard_descriptors_take_nothing_of_the_cache() {
    let d = Dir::new();
    let closed = |script: &str| {
        let mut c = d.memorun_std();
        c.args(["--", "sh", "-c", script]);
        // SAFETY: between fork and exec, closing descriptors only.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                libc::close(1);
                libc::close(2);
                Ok(())
            });
        }
        c.status().unwrap()
    };
    let script = "echo ran >> count; echo out; echo err >&2";
    assert!(closed(script).success(), "the miss");
    assert!(closed(script).success(), "the hit");
    assert_eq!(d.count(), 1, "the second run was not a hit");
    let o = d
        .memorun_std()
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!((stdout(&o).as_str(), d.count()), ("out\n", 1));
    assert_eq!(stderr(&o), "err\n");
    let s = d.stats();
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
}
