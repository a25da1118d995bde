//! Local attacks: what someone who can plant files in the working tree or
//! (by mistake or malice) in the cache directory can make a hit do. A hit
//! never follows what was planted, never waits on it, and what a race
//! leaves behind is swept later.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{Dir, assert_contains, code, stderr};

/// A hit that restores an automatic output reaches it through its parent
/// directories without following a symlink: one planted in a parent makes
/// the hit a miss, and the file it leads to keeps its mode and its time.
/// (Before: the hit opened the file through the symlink, found the
/// content matched, and ran `fchmod` and `futimens` on it.)
#[test]
fn a_symlink_planted_in_a_parent_of_an_automatic_output_is_never_followed() {
    let d = Dir::new();
    let elsewhere = tempfile::tempdir().unwrap();
    // Writes the output only when it is not there, so that its own runs
    // never touch the file outside either.
    let script = "mkdir -p sub; [ -e \"$1\" ] || echo secret > \"$1\"";
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--", "sh", "-c"]);
        let full = format!("echo run >> count; {script}");
        let mut c = d.memorun();
        c.args(&args).arg(full).args(["sh", "sub/out.txt"]);
        c.output().unwrap()
    };
    let o = run(&[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(d.count(), 1);
    // A file outside the tree, with the same content, private, old.
    let outside = elsewhere.path().join("out.txt");
    fs::write(&outside, "secret\n").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    crate::util::set_mtime(&outside, old);
    let before = fs::metadata(&outside).unwrap();
    fs::remove_dir_all(d.join("sub")).unwrap();
    symlink(elsewhere.path(), d.join("sub")).unwrap();

    let o = run(&["-v"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(d.count(), 2, "a hit through a symlink in a parent");
    assert_contains(&stderr(&o), "'sub' is a symlink or not a directory");
    let after = fs::metadata(&outside).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o600, "its mode was changed");
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec()),
        "its time was changed"
    );
}

/// Wait for `child` at most `limit`; kill it and fail if it is still
/// running then.
fn wait_at_most(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A FIFO (or any file that is not a regular one) at a hit record's path
/// is passed over without waiting on it: the hit goes through the
/// database. (Before: opening the record blocked until a writer came.)
#[test]
fn a_fifo_planted_at_a_hit_record_does_not_hang_the_hit() {
    let d = Dir::new();
    d.assert_miss(&[], "echo hi");
    let root = d.cache.join(memorun::store::records::DIR);
    let record = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .flat_map(|shard| fs::read_dir(shard.path()).unwrap().flatten())
        .map(|f| f.path())
        .next()
        .expect("a hit record");
    fs::remove_file(&record).unwrap();
    let c = std::ffi::CString::new(record.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut cmd = d.memorun_std();
    cmd.args(["--"])
        .args(d.counted("echo hi"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let o = wait_at_most(cmd.spawn().unwrap(), Duration::from_secs(10));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout, b"hi\n");
    assert_eq!(d.count(), 1, "the hit became a miss");
}

/// `tmp/records-gone-*`, a records directory renamed away that its remover
/// could not empty (a `clear --all` racing recorded runs), is swept by the
/// next `clear` and `clear --all`, unless a live process still holds it.
#[test]
fn records_directories_left_by_a_racing_clear_all_are_swept() {
    let d = Dir::new();
    d.assert_miss(&[], "echo hi");
    let plant = |n: u32| {
        let gone = d.cache.join(format!("tmp/records-gone-{n}"));
        let shard = gone.join("ab");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join("ab".repeat(32)), vec![0u8; 1000]).unwrap();
        gone
    };
    // Nothing but memorun's own name is touched.
    let other = d.cache.join("tmp/records-gone-x");
    fs::create_dir_all(&other).unwrap();
    for clear in [&["clear"][..], &["clear", "--all"]] {
        let idle = plant(1);
        let held = plant(2);
        let f = fs::File::open(&held).unwrap();
        // SAFETY: flock(2) on a descriptor we own, as a writer that pinned
        // the directory holds it (shared).
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) }, 0);
        let o = d.run(clear);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(!idle.exists(), "{clear:?} left {}", idle.display());
        assert!(held.exists(), "{clear:?} removed a directory still held");
        drop(f);
        let o = d.run(clear);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(!held.exists(), "{clear:?} left {}", held.display());
        assert!(other.exists());
    }
}
