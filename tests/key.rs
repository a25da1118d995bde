//! What goes into the key: a change to any component is a miss, and only
//! such a change.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, SystemTime};

use crate::util::{Dir, code, stdout};

#[test]
fn env_var_set_unset_and_empty_are_three_keys() {
    let d = Dir::new();
    let run = |value: Option<&str>| {
        let mut c = d.memorun();
        match value {
            Some(v) => c.env("MEMO_TEST_V", v),
            None => c.env_remove("MEMO_TEST_V"),
        };
        c.args(["-e", "MEMO_TEST_V", "--"])
            .args(d.counted("echo \"[${MEMO_TEST_V-unset}]\""))
            .output()
            .unwrap()
    };
    assert_eq!(stdout(&run(None)), "[unset]\n");
    assert_eq!(stdout(&run(Some(""))), "[]\n");
    assert_eq!(stdout(&run(Some("x"))), "[x]\n");
    assert_eq!(d.count(), 3);
    assert_eq!(stdout(&run(None)), "[unset]\n");
    assert_eq!(stdout(&run(Some(""))), "[]\n");
    assert_eq!(stdout(&run(Some("x"))), "[x]\n");
    assert_eq!(d.count(), 3, "a known env state was not a hit");
    assert_eq!(stdout(&run(Some("y"))), "[y]\n");
    assert_eq!(d.count(), 4);
}

#[test]
fn env_glob_pattern_sees_new_variables() {
    let d = Dir::new();
    let run = |extra: Option<(&str, &str)>| {
        let mut c = d.memorun();
        c.env("MEMO_GLOB_A", "1").env_remove("MEMO_GLOB_B");
        if let Some((k, v)) = extra {
            c.env(k, v);
        }
        c.args(["-e", "MEMO_GLOB_*", "--"])
            .args(d.counted("env | grep ^MEMO_GLOB_ | sort"))
            .output()
            .unwrap()
    };
    run(None);
    run(None);
    assert_eq!(d.count(), 1);
    let o = run(Some(("MEMO_GLOB_B", "2")));
    assert_eq!(stdout(&o), "MEMO_GLOB_A=1\nMEMO_GLOB_B=2\n");
    assert_eq!(d.count(), 2);
}

#[test]
fn unchosen_env_vars_are_not_in_the_key() {
    let d = Dir::new();
    d.memorun()
        .env("MEMO_OTHER", "1")
        .arg("--")
        .args(d.counted("true"))
        .output()
        .unwrap();
    d.memorun()
        .env("MEMO_OTHER", "2")
        .arg("--")
        .args(d.counted("true"))
        .output()
        .unwrap();
    assert_eq!(d.count(), 1);
}

#[test]
fn input_content_change_with_same_size_and_mtime_is_a_miss() {
    let d = Dir::new();
    let f = d.write("in.txt", "aaaa\n");
    let mtime = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let cat = |d: &Dir| {
        d.run([
            "--",
            "sh",
            "-c",
            "echo run >> count; cat \"$1\"",
            "sh",
            "in.txt",
        ])
    };
    assert_eq!(stdout(&cat(&d)), "aaaa\n");
    assert_eq!(stdout(&cat(&d)), "aaaa\n");
    assert_eq!(d.count(), 1);
    fs::write(&f, "bbbb\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(&f).unwrap().len(), 5);
    assert_eq!(
        stdout(&cat(&d)),
        "bbbb\n",
        "stale replay after the input changed"
    );
    assert_eq!(d.count(), 2);
}

#[test]
fn no_auto_inputs_ignores_file_content() {
    let d = Dir::new();
    d.write("in.txt", "a");
    let run = |d: &Dir| {
        d.run([
            "--no-auto-inputs",
            "--",
            "sh",
            "-c",
            "echo run >> count; cat in.txt",
            "sh",
            "in.txt",
        ])
    };
    run(&d);
    d.write("in.txt", "b");
    assert_eq!(
        stdout(&run(&d)),
        "a",
        "--no-auto-inputs still hashed the file"
    );
    assert_eq!(d.count(), 1);
}

#[test]
fn script_named_as_program_path_is_an_input() {
    let d = Dir::new();
    let script = d.write("build.sh", "#!/bin/sh\necho run >> count\necho v1\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(stdout(&d.run(["--", "./build.sh"])), "v1\n");
    fs::write(&script, "#!/bin/sh\necho run >> count\necho v2\n").unwrap();
    assert_eq!(stdout(&d.run(["--", "./build.sh"])), "v2\n");
    assert_eq!(d.count(), 2);
}

#[test]
fn argv_boundaries_are_kept() {
    let d = Dir::new();
    let run = |args: &[&str]| {
        let mut all = vec!["--", "sh", "-c", "echo run >> count; echo $#", "sh"];
        all.extend_from_slice(args);
        stdout(&d.run(all))
    };
    assert_eq!(run(&["a b"]), "1\n");
    assert_eq!(run(&["a", "b"]), "2\n");
    assert_eq!(run(&["ab", ""]), "2\n");
    assert_eq!(run(&["a", "b"]), "2\n");
    assert_eq!(d.count(), 3);
}

#[test]
fn non_utf8_arguments_are_raw_bytes() {
    let d = Dir::new();
    let run = |byte: u8| {
        let arg = OsString::from_vec(vec![b'x', byte]);
        d.memorun()
            .args([
                "--",
                "sh",
                "-c",
                "echo run >> count; printf %s \"$1\"",
                "sh",
            ])
            .arg(arg)
            .output()
            .unwrap()
    };
    assert_eq!(run(0xff).stdout, b"x\xff");
    assert_eq!(
        run(0xfe).stdout,
        b"x\xfe",
        "two invalid UTF-8 arguments collided"
    );
    assert_eq!(run(0xff).stdout, b"x\xff");
    assert_eq!(d.count(), 2);
}

#[test]
fn cwd_is_in_the_key_unless_no_cwd() {
    let d = Dir::new();
    fs::create_dir(d.join("a")).unwrap();
    fs::create_dir(d.join("b")).unwrap();
    let counted = d.counted("pwd");
    let run = |sub: &str, extra: &[&str]| {
        let o = d
            .memorun()
            .current_dir(d.join(sub))
            .args(extra)
            .arg("--")
            .args(&counted)
            .output()
            .unwrap();
        assert_eq!(code(&o), 0);
        stdout(&o)
    };
    assert!(run("a", &[]).ends_with("/a\n"));
    assert!(run("b", &[]).ends_with("/b\n"));
    assert!(run("a", &[]).ends_with("/a\n"));
    assert_eq!(d.count(), 2);
    run("a", &["--no-cwd"]);
    assert_eq!(d.count(), 3);
    assert!(
        run("b", &["--no-cwd"]).ends_with("/a\n"),
        "--no-cwd kept cwd in the key"
    );
    assert_eq!(d.count(), 3);
}
