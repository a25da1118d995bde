//! Output files (`-o`, and the files a command creates that are named on
//! its command line): captured with the entry, restored by a hit, clean,
//! atomic and never through a symlink.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::util::{Dir, assert_contains, code, make, memorun_bin, set_mtime, stderr};

/// What is at each path under `root`: type, mode, content or target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link {}", fs::read_link(e.path()).unwrap().display())
        } else if m.is_dir() {
            format!("dir {:o}", m.mode() & 0o7777)
        } else {
            let content = fs::read(e.path()).unwrap();
            format!(
                "file {:o} {}",
                m.mode() & 0o7777,
                blake3::hash(&content).to_hex()
            )
        };
        out.insert(rel, what);
    }
    out
}

/// A build script that writes a `dist/` tree of every kind of path.
const BUILD: &str = "mkdir -p dist/sub dist/empty && \
    printf 'hello' > dist/a.txt && chmod 755 dist/a.txt && \
    head -c 100000 /dev/urandom > dist/sub/big.bin && \
    ln -sf a.txt dist/link && ln -sf /nonexistent/target dist/dangling && \
    chmod 4755 dist/sub/big.bin && chmod 700 dist/sub && echo built";

#[test]
fn a_directory_tree_is_restored_exactly_after_it_is_removed() {
    let d = Dir::new();
    d.assert_miss(&["-o", "dist/"], BUILD);
    let recorded = tree(&d.join("dist"));
    // setuid is never kept: the recorded mode is 755.
    assert_eq!(recorded["sub/big.bin"].split(' ').nth(1), Some("4755"));
    let before = SystemTime::now() - Duration::from_secs(1);
    fs::remove_dir_all(d.join("dist")).unwrap();
    let o = d.assert_hit(&["-v", "-o", "dist/"], BUILD);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "built\n");
    assert_contains(&stderr(&o), "hit, restored 4 files");
    let mut expected = recorded.clone();
    expected.insert(
        "sub/big.bin".into(),
        recorded["sub/big.bin"].replace("file 4755", "file 755"),
    );
    assert_eq!(tree(&d.join("dist")), expected);
    // Written now: make must see a restored target as new.
    let mtime = fs::metadata(d.join("dist/sub/big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(mtime > before, "restored with an old mtime");
    // Counted, and listed with the entry.
    let stats = d.stats();
    assert_eq!(stats["restored_files"], 4);
    assert_eq!(stats["restored_bytes"], 100_005);
    let entries = d.entries();
    assert_eq!(
        (&entries[0]["files"], &entries[0]["file_bytes"]),
        (&2.into(), &100_005.into())
    );
}

#[test]
fn a_hit_makes_a_declared_directory_exactly_the_recorded_tree() {
    let d = Dir::new();
    d.assert_miss(&["-o", "dist"], BUILD);
    let recorded = tree(&d.join("dist"));
    d.write("dist/stale.js", "old build");
    d.write("dist/sub/deeper/stale.o", "old");
    fs::write(d.join("dist/a.txt"), "edited").unwrap();
    fs::remove_file(d.join("dist/link")).unwrap();
    fs::create_dir(d.join("dist/link")).unwrap();
    fs::remove_dir(d.join("dist/empty")).unwrap();
    fs::write(d.join("dist/empty"), "a file where a directory was").unwrap();
    let o = d.assert_hit(&["-v", "-o", "dist"], BUILD);
    assert_contains(&stderr(&o), "removed");
    let mut now = tree(&d.join("dist"));
    let mut rec = recorded.clone();
    // The setuid bit aside, exactly what the run left.
    for t in [&mut now, &mut rec] {
        t.remove("sub/big.bin");
    }
    assert_eq!(now, rec);
}

#[test]
fn unchanged_outputs_are_kept_in_place_with_a_new_mtime() {
    let d = Dir::new();
    d.assert_miss(&["-o", "dist"], BUILD);
    let file = d.join("dist/sub/big.bin");
    let ino = fs::metadata(&file).unwrap().ino();
    set_mtime(&file, SystemTime::now() - Duration::from_secs(3600));
    let o = d.assert_hit(&["-v", "-o", "dist"], BUILD);
    let err = stderr(&o);
    assert!(err.starts_with("memorun: hit, recorded"), "{err}");
    let m = fs::metadata(&file).unwrap();
    assert_eq!(m.ino(), ino, "an unchanged output was rewritten");
    assert!(m.modified().unwrap() > SystemTime::now() - Duration::from_secs(60));
    let why = d.run(
        ["why", "-o", "dist", "--"]
            .into_iter()
            .chain(d.counted(BUILD).iter().map(String::as_str)),
    );
    assert_contains(
        &String::from_utf8_lossy(&why.stdout),
        "dist: keep 4 (unchanged)",
    );
}

#[test]
fn a_glob_output_restores_its_matches_and_leaves_the_rest() {
    let d = Dir::new();
    let script = "mkdir -p build/x && echo a > build/a.o && echo b > build/x/b.o && \
                  echo log > build/build.log";
    d.assert_miss(&["-o", "build/**/*.o"], script);
    fs::remove_dir_all(d.join("build")).unwrap();
    d.write("build/keep.txt", "mine");
    let o = d.assert_hit(&["-v", "-o", "build/**/*.o"], script);
    assert_contains(&stderr(&o), "restored 2 files");
    assert_eq!(fs::read_to_string(d.join("build/a.o")).unwrap(), "a\n");
    assert_eq!(fs::read_to_string(d.join("build/x/b.o")).unwrap(), "b\n");
    // Not an output: not restored, and what is not matched stays.
    assert!(!d.join("build/build.log").exists());
    assert_eq!(
        fs::read_to_string(d.join("build/keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_declared_output_the_command_did_not_create_is_removed_by_a_hit() {
    let d = Dir::new();
    let o = d.assert_miss(&["-o", "report.txt"], "echo done");
    assert_eq!(
        stderr(&o),
        "memorun: warning: output 'report.txt' was declared but the command did not create it\n"
    );
    d.write("report.txt", "from somewhere else");
    d.assert_hit(&["-o", "report.txt"], "echo done");
    assert!(!d.join("report.txt").exists());
}

#[test]
fn outputs_are_not_in_the_key_but_a_missing_declared_one_is_a_miss() {
    let d = Dir::new();
    let script = "echo out > out.txt";
    d.assert_miss(&[], script);
    // The entry has no capture of out.txt: run again, and record it.
    let o = d.assert_miss(&["-v", "-o", "out.txt"], script);
    assert_contains(
        &stderr(&o),
        "the entry has no output 'out.txt' (declared with -o)",
    );
    fs::remove_file(d.join("out.txt")).unwrap();
    d.assert_hit(&["-o", "out.txt"], script);
    assert_eq!(fs::read_to_string(d.join("out.txt")).unwrap(), "out\n");
    // Fewer -o than recorded: the same key, a hit.
    d.assert_hit(&[], script);
    assert_eq!(d.entries().len(), 1);
}

#[test]
fn an_input_directory_holding_a_declared_output_is_not_watched_there() {
    // Without -o's exclusion, the run would change its own input and
    // never be recorded.
    let d = Dir::new();
    d.write("src/main.txt", "source");
    let script = "mkdir -p src/gen && cat src/main.txt > src/gen/out.txt";
    d.assert_miss(&["-i", "src", "-o", "src/gen"], script);
    fs::remove_dir_all(d.join("src/gen")).unwrap();
    d.assert_hit(&["-i", "src", "-o", "src/gen"], script);
    assert_eq!(
        fs::read_to_string(d.join("src/gen/out.txt")).unwrap(),
        "source"
    );
    fs::write(d.join("src/main.txt"), "changed").unwrap();
    d.assert_miss(&["-i", "src", "-o", "src/gen"], script);
}

#[test]
fn a_corrupt_output_blob_is_a_miss_that_records_again() {
    let d = Dir::new();
    d.assert_miss(&["-o", "dist"], BUILD);
    let good = fs::read(d.join("dist/sub/big.bin")).unwrap();
    // The only blob of 100,000 bytes is the big file's.
    let blob = walkdir::WalkDir::new(d.cache.join("blobs"))
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().is_file() && e.metadata().unwrap().len() == 100_000)
        .expect("the output file is in a blob")
        .into_path();
    let mut bad = fs::read(&blob).unwrap();
    bad[500] ^= 1;
    fs::write(&blob, &bad).unwrap();
    fs::remove_dir_all(d.join("dist")).unwrap();
    let o = d.assert_miss(&["-v", "-o", "dist"], BUILD);
    assert_contains(&stderr(&o), "failed verification");
    // The command wrote fresh random bytes: never the corrupt ones.
    let now = fs::read(d.join("dist/sub/big.bin")).unwrap();
    assert_ne!(now, bad[..]);
    assert_ne!(now, good, "the command did not run");
    fs::remove_dir_all(d.join("dist")).unwrap();
    d.assert_hit(&["-o", "dist"], BUILD);
    assert_eq!(fs::read(d.join("dist/sub/big.bin")).unwrap(), now);
    assert_eq!(d.stats()["corrupt"], 1);
}

#[test]
fn a_planted_symlink_is_replaced_and_never_followed() {
    let d = Dir::new();
    let elsewhere = tempfile::tempdir().unwrap();
    d.assert_miss(&["-o", "out"], "mkdir -p out && echo secret > out/file");
    // Another user (or a bad checkout) plants out -> elsewhere.
    fs::remove_dir_all(d.join("out")).unwrap();
    symlink(elsewhere.path(), d.join("out")).unwrap();
    d.assert_hit(&["-o", "out"], "mkdir -p out && echo secret > out/file");
    assert!(fs::symlink_metadata(d.join("out")).unwrap().is_dir());
    assert_eq!(fs::read_to_string(d.join("out/file")).unwrap(), "secret\n");
    assert_eq!(
        fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "written through the symlink"
    );
}

#[test]
fn a_symlink_in_a_parent_directory_is_never_written_through() {
    let d = Dir::new();
    let elsewhere = tempfile::tempdir().unwrap();
    // The command reports whether memorun wrote there before it ran.
    let script = format!(
        "if [ -e '{}/f' ]; then echo written; else echo clean; fi; mkdir -p sub && echo x > sub/f",
        elsewhere.path().display()
    );
    d.assert_miss(&["-o", "sub/f"], &script);
    fs::remove_dir_all(d.join("sub")).unwrap();
    symlink(elsewhere.path(), d.join("sub")).unwrap();
    let o = d.assert_miss(&["-v", "-o", "sub/f"], &script);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "clean\n");
    assert_contains(&stderr(&o), "'sub' is a symlink or not a directory");
}

#[test]
fn automatic_outputs_are_restored_but_an_edited_one_is_never_overwritten() {
    let d = Dir::new();
    d.write("in.txt", "b\na\n");
    let args = [
        "--",
        "sh",
        "-c",
        "echo run >> count; sort \"$1\" > \"$2\"",
        "sh",
        "in.txt",
        "out.txt",
    ];
    let run = |extra: &[&str]| {
        let all: Vec<&str> = extra.iter().copied().chain(args).collect();
        d.run(all)
    };
    run(&[]);
    fs::remove_file(d.join("out.txt")).unwrap();
    run(&[]);
    assert_eq!(
        (
            d.count(),
            fs::read_to_string(d.join("out.txt")).unwrap().as_str()
        ),
        (1, "a\nb\n")
    );
    // Edited by hand: maybe an input after all; run, do not overwrite.
    fs::write(d.join("out.txt"), "mine\n").unwrap();
    let o = run(&["-v"]);
    assert_contains(
        &stderr(&o),
        "output 'out.txt' changed since the run that wrote it",
    );
    assert_eq!(d.count(), 2);
    // --no-auto-outputs: not restored; a missing one is a miss.
    fs::remove_file(d.join("out.txt")).unwrap();
    let o = run(&["-v", "--no-auto-outputs"]);
    assert_contains(&stderr(&o), "output 'out.txt' is missing");
    assert_eq!(d.count(), 3);
}

#[test]
fn an_output_path_naming_the_working_directory_is_refused() {
    let d = Dir::new();
    for bad in [".", "..", "./"] {
        let o = d.run_counted(&["-o", bad], "echo hi");
        assert_eq!(code(&o), 125, "{bad}");
        assert_contains(&stderr(&o), "names the working directory");
    }
    assert_eq!(d.count(), 0);
}

/// `make clean && make` replays every compile with its object restored,
/// byte for byte, and make links the program from them.
#[test]
fn make_clean_then_make_replays_every_rule_with_its_objects() {
    let d = Dir::new();
    d.write(
        "Makefile",
        "OBJS = a.o b.o c.o\n\
         prog: $(OBJS)\n\tcc -o $@ $(OBJS)\n\
         %.o: %.c\n\t$(MEMORUN) -o $@ -- ./cc-counted -c $< -o $@\n\
         clean:\n\trm -f prog $(OBJS)\n",
    );
    d.write(
        "a.c",
        "int b(void); int c(void); int main(void) { return b() + c(); }\n",
    );
    d.write("b.c", "int b(void) { return 0; }\n");
    d.write("c.c", "int c(void) { return 0; }\n");
    let cc = d.write(
        "cc-counted",
        "#!/bin/sh\necho run >> count\nexec cc \"$@\"\n",
    );
    fs::set_permissions(cc, fs::Permissions::from_mode(0o755)).unwrap();
    make(&d, &["-j4"]);
    assert_eq!(d.count(), 3);
    let objects: Vec<Vec<u8>> = ["a.o", "b.o", "c.o"]
        .iter()
        .map(|o| fs::read(d.join(o)).unwrap())
        .collect();
    make(&d, &["clean"]);
    make(&d, &["-j4"]);
    assert_eq!(d.count(), 3, "make clean && make compiled again");
    for (name, before) in ["a.o", "b.o", "c.o"].iter().zip(&objects) {
        assert_eq!(&fs::read(d.join(name)).unwrap(), before, "{name}");
    }
    assert!(Command::new(d.join("prog")).status().unwrap().success());
    // And make finds everything up to date: the restored objects are newer
    // than their sources.
    let o = Command::new("make")
        .args(["-q", &format!("MEMORUN={}", memorun_bin())])
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(o.success(), "make -q: something is out of date");
}

/// A restore killed at any moment leaves, at every path, the old file or
/// the new one, never a mix or a truncated file.
#[test]
fn kill_9_during_a_restore_leaves_the_old_or_the_new_file() {
    let d = Dir::new();
    let script = "mkdir -p dist && for i in $(seq 1 60); do head -c 300000 /dev/zero | tr '\\0' n > dist/f$i; done";
    d.assert_miss(&["-o", "dist"], script);
    let new = vec![b'n'; 300_000];
    let old = vec![b'o'; 250_000];
    for round in 0..8u64 {
        for i in 1..=60 {
            fs::write(d.join(format!("dist/f{i}")), &old).unwrap();
        }
        let mut child = d
            .memorun_std()
            .args(["-o", "dist", "--"])
            .args(d.counted(script))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2 + round * 4));
        let _ = child.kill();
        child.wait().unwrap();
        for i in 1..=60 {
            let got = fs::read(d.join(format!("dist/f{i}"))).unwrap();
            assert!(
                got == old || got == new,
                "round {round}: f{i} is neither old nor new ({} bytes)",
                got.len()
            );
        }
    }
    assert_eq!(d.count(), 1, "a restore ran the command");
    // A leftover temp file (killed between link and rename) goes with the
    // next clean restore.
    d.assert_hit(&["-o", "dist"], script);
    assert_eq!(fs::read_dir(d.join("dist")).unwrap().count(), 60);
}

/// Output blobs belong to their entries: `clear` and eviction remove them,
/// and they count toward the size limit.
#[test]
fn output_files_count_toward_the_limit_and_go_with_their_entries() {
    let d = Dir::new();
    let blob_files = || {
        walkdir::WalkDir::new(d.cache.join("blobs"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .count()
    };
    let big = |name: &str| format!("head -c 600000 /dev/urandom > {name}");
    d.assert_miss(&["-o", "a.bin"], &big("a.bin"));
    assert_eq!(blob_files(), 1);
    assert!(d.stats()["bytes_on_disk"].as_u64().unwrap() > 600_000);
    // Two such entries do not fit in 1 MB: the older one goes, blob and all.
    let limited = |args: &[&str], script: &str| {
        let mut c = d.memorun();
        c.env("MEMORUN_MAX_SIZE", "1MB")
            .args(args)
            .arg("--")
            .args(d.counted(script));
        c.output().unwrap()
    };
    let o = limited(&["-o", "b.bin"], &big("b.bin"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(d.entries().len(), 1);
    assert_eq!(d.stats()["evicted"], 1);
    assert_eq!(blob_files(), 1, "the evicted entry's output blob stayed");
    let o = d.run(["clear"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(blob_files(), 0, "clear left an output blob");
}

/// A restore gives every file its recorded mode whatever the umask (a
/// file is created with its mode less the umask, then set when bits were
/// taken away).
#[test]
fn restored_modes_do_not_depend_on_the_umask() {
    let d = Dir::new();
    let script = "mkdir -p out; head -c 10000 /dev/urandom > out/f; chmod 664 out/f; \
                  head -c 10000 /dev/urandom > out/g; chmod 751 out/g; echo x > out/small; \
                  chmod 604 out/small";
    d.assert_miss(&["-o", "out"], script);
    let recorded = tree(&d.join("out"));
    fs::remove_dir_all(d.join("out")).unwrap();
    // The same command line as recorded, under a umask that takes bits.
    let o = Command::new("sh")
        .args([
            "-c",
            "umask 077; exec \"$@\"",
            "sh",
            memorun_bin(),
            "-o",
            "out",
            "--",
        ])
        .args(d.counted(script))
        .current_dir(d.path())
        .env("MEMORUN_DIR", &d.cache)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(d.count(), 1, "the hit ran the command");
    assert_eq!(tree(&d.join("out")), recorded);
}

/// Under --base-dir, an automatic output named by an absolute path is
/// restored at this checkout's own path (never a hit without its file).
#[test]
fn an_absolute_automatic_output_is_restored_in_another_checkout() {
    let (a, b) = (Dir::new(), Dir::new());
    let cache = a.cache.clone();
    let run = |d: &Dir| {
        let o = d
            .memorun()
            .env("MEMORUN_DIR", &cache)
            .arg("--base-dir")
            .arg(d.path())
            .args(["-v", "--", "cp"])
            .arg(d.join("in.txt"))
            .arg(d.join("out.txt"))
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        stderr(&o)
    };
    for d in [&a, &b] {
        d.write("in.txt", "same input\n");
    }
    assert_contains(&run(&a), "recorded");
    let err = run(&b);
    assert_contains(&err, "hit, restored 1 file");
    assert_eq!(
        fs::read_to_string(b.join("out.txt")).unwrap(),
        "same input\n"
    );
}

/// A build script that writes 40 files of 5,000 random bytes (blobs) into
/// `many/`, with modes 600 and 640 by turns, and one stale-looking name.
const MANY: &str = "mkdir -p many && for i in $(seq 10 49); do \
    head -c 5000 /dev/urandom > many/f$i && chmod $((600 + 40 * (i % 2))) many/f$i; \
    done && echo built";

#[test]
fn a_directory_of_many_blob_files_is_restored_exactly_on_several_threads() {
    // 40 copies of blobs in one directory: written as one batch, on as
    // many threads as the machine gives (see replay::restore).
    let d = Dir::new();
    d.assert_miss(&["-o", "many"], MANY);
    let recorded = tree(&d.join("many"));
    assert_eq!(recorded.len(), 41);
    fs::remove_dir_all(d.join("many")).unwrap();
    let o = d.assert_hit(&["-v", "-o", "many"], MANY);
    assert_contains(&stderr(&o), "hit, restored 40 files");
    assert_eq!(tree(&d.join("many")), recorded);
    // Half of them gone, the others edited or still right, a stranger
    // added: made the recorded tree again.
    for i in 10..30 {
        fs::remove_file(d.join(format!("many/f{i}"))).unwrap();
    }
    for i in 30..35 {
        fs::write(d.join(format!("many/f{i}")), b"edited").unwrap();
    }
    fs::write(d.join("many/stranger"), b"x").unwrap();
    let o = d.assert_hit(&["-v", "-o", "many"], MANY);
    assert_contains(&stderr(&o), "hit, restored 25 files");
    assert_contains(&stderr(&o), "removed 1 stale");
    assert_eq!(tree(&d.join("many")), recorded);
}

#[test]
fn a_corrupt_blob_among_many_restored_at_once_is_a_miss_and_never_appears() {
    // The command first keeps a copy of whatever it finds in many/: what
    // the failed restore left there for it.
    let script = format!("mkdir -p seen; cp many/* seen/ 2>/dev/null; {MANY}");
    let d = Dir::new();
    d.assert_miss(&["-o", "many"], &script);
    // Damage the last byte of one blob: all its earlier bytes are copied
    // before its check can fail.
    let blob = walkdir::WalkDir::new(d.cache.join("blobs"))
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().is_file() && e.metadata().unwrap().len() == 5000)
        .expect("the output files are in blobs")
        .into_path();
    let mut bad = fs::read(&blob).unwrap();
    bad[4999] ^= 1;
    fs::write(&blob, &bad).unwrap();
    fs::remove_dir_all(d.join("many")).unwrap();
    fs::remove_dir_all(d.join("seen")).unwrap();
    let o = d.assert_miss(&["-v", "-o", "many"], &script);
    assert_contains(&stderr(&o), "failed verification");
    // Verified files may have been restored before the damage was found;
    // the damaged one never appeared, not even in part.
    let seen: Vec<Vec<u8>> = fs::read_dir(d.join("seen"))
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(seen.len() < 40, "all 40 were restored");
    assert!(seen.iter().all(|f| f.len() == 5000 && *f != bad));
    assert_eq!(d.stats()["corrupt"], 1);
}
