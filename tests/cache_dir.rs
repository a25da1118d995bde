//! The cache directory under attack: another user who can write its parent.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util::{Dir, require_root, stderr, stdout};

/// Swap two directories' names atomically, as an attacker would.
fn exchange(a: &Path, b: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: two valid NUL-terminated paths; renameat2 only renames.
    unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        ) == 0
    }
}

/// The attack from issue 12: the victim's cache directory sits in a
/// directory anyone can write (no sticky bit); another user keeps swapping
/// it with a directory of their own holding a planted entry for the same
/// key. Before the fix, about one run in twelve replayed the planted
/// output. Needs root, to hand the planted directory to another user.
#[test]
#[ignore = "needs root"]
fn a_cache_directory_another_user_can_swap_is_never_used() {
    const RUNS: usize = 300;
    require_root();
    let d = Dir::new();
    let shared = d.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let victim = shared.join("cache");
    let evil = shared.join("evil");
    // The victim's own directory, private and owned by the victim.
    fs::create_dir(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    // The attacker records the same command line with other output in a
    // store of their own, then puts it beside the victim's.
    let cmd = ["--", "sh", "-c", "echo ${GREETING:-real}"];
    let planted = d.join("attacker-store");
    let o = d
        .memorun()
        .env("MEMORUN_DIR", &planted)
        .env("GREETING", "PLANTED")
        .args(cmd)
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "PLANTED\n");
    fs::rename(&planted, &evil).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&evil)
        .status()
        .unwrap();
    assert!(chown.success());

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, victim, evil) = (stop.clone(), victim.clone(), evil.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) && swaps < 5_000_000 {
                swaps += u64::from(exchange(&victim, &evil));
            }
            swaps
        })
    };
    let mut planted_replays = 0;
    let mut warned = 0;
    for _ in 0..RUNS {
        let o = d
            .memorun()
            .env("MEMORUN_DIR", &victim)
            .args(cmd)
            .output()
            .unwrap();
        match stdout(&o).as_str() {
            "real\n" => {}
            "PLANTED\n" => planted_replays += 1,
            other => panic!("unexpected output {other:?}"),
        }
        warned += usize::from(stderr(&o).contains("not using it"));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 0, "the attack never swapped");
    assert_eq!(
        planted_replays, 0,
        "replayed output planted by another user"
    );
    assert_eq!(warned, RUNS, "a run used a cache directory others can swap");
}
