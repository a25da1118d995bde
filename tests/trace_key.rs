//! What goes into a key beyond the command line and the named inputs
//! (issue 24): descriptors the command inherits, the program's mode, what
//! a traced look at a file tells, extended attributes, and declared
//! outputs that are never traced inputs. And the matrix: every way a
//! command can learn about a file, recorded, the file changed, run again:
//! never the old output.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::util::{Dir, assert_contains, code, memorun_bin, require_root, stderr, stdout};

/// Give `p` a modification time a minute ago and let its ctime fall
/// behind the race margin: a file edited a while before the run.
fn age(p: &Path) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
}

fn write_old(d: &Dir, rel: &str, content: &str) {
    let p = d.write(rel, content);
    age(&p);
}

/// `sh -c LINE` in `d`, with `$M` the memorun under test and `$COUNT` the
/// counter file: for what only a shell can set up around memorun
/// (descriptors above 2, `PATH`).
fn shell(d: &Dir, line: &str) -> Output {
    // There before the first run: a command that lists the directory
    // finds the same names after it.
    if !d.counter_path().exists() {
        fs::write(d.counter_path(), "").unwrap();
        // The cache directory too (under the work directory in tests).
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
            .create(&d.cache)
            .unwrap();
        // Its directory's times fall behind the race margin.
        std::thread::sleep(Duration::from_millis(30));
    }
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(d.path())
        .env("M", memorun_bin())
        .env("COUNT", d.counter_path())
        .env("MEMORUN_DIR", &d.cache)
        .env_remove("MEMORUN_DISABLE")
        .env_remove("MEMORUN_REMOTE")
        .env_remove("MEMORUN_BASE_DIR")
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Run `line` through [`shell`] and check whether the command ran.
#[track_caller]
fn ran(d: &Dir, line: &str, expect_run: bool) -> Output {
    let before = d.count();
    let o = shell(d, line);
    let what = if expect_run { "replayed" } else { "ran" };
    assert_eq!(
        d.count(),
        before + usize::from(expect_run),
        "{what}: {}",
        stderr(&o)
    );
    o
}

#[test]
fn a_file_on_an_inherited_descriptor_is_keyed_by_content() {
    for trace in ["", "--trace"] {
        let d = Dir::new();
        write_old(&d, "f", "old\n");
        let line = format!("$M -v {trace} -- sh -c 'echo run >>\"$COUNT\"; cat <&3' 3<f");
        let o = ran(&d, &line, true);
        assert_contains(&stderr(&o), ", recorded");
        let o = ran(&d, &line, false);
        assert_eq!(stdout(&o), "old\n");
        write_old(&d, "f", "NEW\n");
        let o = ran(&d, &line, true);
        assert_eq!(stdout(&o), "NEW\n", "{trace}");
        assert_contains(&stderr(&o), "descriptor 3: changed");
        // From the descriptor's offset: the bytes the command reads.
        write_old(&d, "f", "skip\nread\n");
        let line = format!(
            "exec 3<f; read -r first <&3; $M -v {trace} -- sh -c 'echo run >>\"$COUNT\"; cat <&3'"
        );
        let o = ran(&d, &line, true);
        assert_eq!(stdout(&o), "read\n");
        let o = ran(&d, &line, false);
        assert_eq!(stdout(&o), "read\n");
    }
}

/// A character device on an inherited descriptor passed through unkeyed:
/// `3</dev/urandom` replayed what the command had read from `3</dev/zero`,
/// traced or not. The device is keyed by its number.
#[test]
fn a_different_device_on_an_inherited_descriptor_is_a_miss() {
    for trace in ["", "--trace"] {
        let d = Dir::new();
        let line = |dev: &str| {
            format!(
                "$M -v {trace} -- sh -c 'echo run >>\"$COUNT\"; head -c 4 <&3 | od -An -tx1' 3<{dev}"
            )
        };
        let zero = ran(&d, &line("/dev/zero"), true);
        assert_eq!(stdout(&zero).trim(), "00 00 00 00");
        let o = ran(&d, &line("/dev/urandom"), true);
        assert_ne!(stdout(&o).trim(), "00 00 00 00", "{trace}");
        ran(&d, &line("/dev/zero"), false);
        // /dev/null and a descriptor open for writing only stay unkeyed.
        ran(&d, &line("/dev/null"), true);
        let o = ran(&d, &line("/dev/null"), false);
        assert_contains(&stderr(&o), "hit");
    }
}

#[test]
fn a_directory_on_an_inherited_descriptor_is_never_recorded() {
    let d = Dir::new();
    fs::create_dir(d.join("sub")).unwrap();
    let line = "$M -v -- sh -c 'echo run >>\"$COUNT\"; ls <&3' 3<sub";
    let o = ran(&d, line, true);
    assert_contains(
        &stderr(&o),
        "not recorded: it inherits descriptor 3, open on the directory",
    );
    ran(&d, line, true);
    let o = shell(&d, "$M why -- sh -c 'echo run >>\"$COUNT\"; ls <&3' 3<sub");
    assert_contains(
        &stdout(&o),
        "a run would not be recorded: it inherits descriptor 3",
    );
}

/// Pipes pass through unkeyed: make's jobserver reaches a sub-make run
/// through memorun, which records and replays it.
#[test]
fn make_j_keeps_its_jobserver_pipe_through_memorun() {
    let d = Dir::new();
    fs::create_dir(d.join("sub")).unwrap();
    d.write(
        "sub/Makefile",
        "all: a b\na:\n\t@sleep 0.1; echo a\nb:\n\t@sleep 0.1; echo b\n.PHONY: all a b\n",
    );
    d.write(
        "Makefile",
        format!(
            "all:\n\t+@$(MEMORUN) -v -- sh -c 'echo run >>{count}; $(MAKE) -s -C sub'\n.PHONY: all\n",
            count = d.counter_path().display()
        ),
    );
    let make = |d: &Dir| {
        Command::new("make")
            .args(["-j2", "-s", &format!("MEMORUN={}", memorun_bin())])
            .current_dir(d.path())
            .env("MEMORUN_DIR", &d.cache)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .output()
            .unwrap()
    };
    let o = make(&d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("jobserver"), "{err}");
    assert_contains(&err, ", recorded");
    // The sub-make got the jobserver through memorun (its -j2 ran in
    // parallel, not as -j1 with a warning).
    assert!(
        !err.contains("-jN forced") && !err.contains("jobserver unavailable"),
        "{err}"
    );
    let o = make(&d);
    assert_contains(&stderr(&o), "memorun: hit");
    assert_eq!(d.count(), 1);
}

#[test]
fn a_program_made_not_executable_is_not_replayed() {
    let d = Dir::new();
    fs::create_dir(d.join("bin")).unwrap();
    for (rel, line) in [
        ("s.sh", "$M -- ./s.sh"),
        ("bin/t.sh", "PATH=\"$PWD/bin:$PATH\" $M -- t.sh"),
    ] {
        let p = d.write(
            rel,
            format!(
                "#!/bin/sh\necho run >>'{}'; echo ok\n",
                d.counter_path().display()
            ),
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        age(&p);
        let o = ran(&d, line, true);
        assert_eq!(stdout(&o), "ok\n");
        ran(&d, line, false);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let o = shell(&d, line);
        assert_eq!(code(&o), 126, "{rel}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{rel}");
        // Executable again (its write bits aside): the entry replays.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o775)).unwrap();
        let o = ran(&d, line, false);
        assert_eq!(stdout(&o), "ok\n");
    }
}

#[test]
fn a_traced_script_made_not_executable_is_not_replayed() {
    let d = Dir::new();
    let p = d.write("s.sh", "#!/bin/sh\necho ok\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    age(&p);
    let line = "$M -v --trace -- sh -c 'echo run >>\"$COUNT\"; ./s.sh'";
    let o = ran(&d, line, true);
    assert_contains(&stderr(&o), ", recorded");
    ran(&d, line, false);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let o = ran(&d, line, true);
    assert_eq!(code(&o), 126, "{}", stderr(&o));
    assert_contains(&stderr(&o), "traced input s.sh: changed");
}

#[test]
fn a_traced_look_keys_the_link_count() {
    let d = Dir::new();
    write_old(&d, "f", "x");
    let line = "$M -v --trace -- sh -c 'echo run >>\"$COUNT\"; stat -c %h f'";
    let o = ran(&d, line, true);
    assert_contains(&stderr(&o), ", recorded");
    ran(&d, line, false);
    fs::hard_link(d.join("f"), d.join("g")).unwrap();
    let o = ran(&d, line, true);
    assert_eq!(stdout(&o), "2\n");
}

#[test]
#[ignore = "needs root"]
fn a_traced_look_keys_the_owner_and_group() {
    require_root();
    let d = Dir::new();
    write_old(&d, "f", "x");
    let line = "$M -v --trace -- sh -c 'echo run >>\"$COUNT\"; ls -ln f | cut -d\" \" -f3,4'";
    let o = ran(&d, line, true);
    assert_contains(&stderr(&o), ", recorded");
    assert_eq!(stdout(&o), "0 0\n");
    ran(&d, line, false);
    std::os::unix::fs::chown(d.join("f"), Some(4242), None).unwrap();
    assert_eq!(stdout(&ran(&d, line, true)), "4242 0\n");
    std::os::unix::fs::chown(d.join("f"), None, Some(4343)).unwrap();
    assert_eq!(stdout(&ran(&d, line, true)), "4242 4343\n");
}

/// Needs the engine half of issue 24 (the xattr calls traced).
#[test]
fn a_traced_extended_attribute_read_is_keyed() {
    let d = Dir::new();
    write_old(&d, "f", "x");
    let set = |v: &str| {
        let o = Command::new("python3")
            .args([
                "-c",
                &format!("import os; os.setxattr('f', 'user.memorun', b'{v}')"),
            ])
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(30));
    };
    set("old");
    let line = "$M -v --trace -- python3 -c 'import os; print(open(os.environ[\"COUNT\"], \"a\").write(\"run\\n\")); print(os.getxattr(\"f\", \"user.memorun\"))'";
    let o = ran(&d, line, true);
    assert_contains(&stderr(&o), ", recorded");
    ran(&d, line, false);
    set("NEW");
    let o = ran(&d, line, true);
    assert_contains(&stdout(&o), "b'NEW'");
}

/// `mkdir -p out` in a traced run with `-o out` does not make `out` an
/// input: after `rm -rf out`, the next run is a hit that restores it.
#[test]
fn a_declared_output_directory_is_not_a_traced_input() {
    let d = Dir::new();
    fs::create_dir(d.join("out")).unwrap();
    fs::create_dir(d.join("gen")).unwrap();
    let line = "$M -v --trace -o out -o 'gen/*.txt' -- sh -c \
                'echo run >>\"$COUNT\"; mkdir -p out; [ -e gen/a.txt ]; echo made >out/f; echo a >gen/a.txt; ls'";
    let o = ran(&d, line, true);
    assert_contains(&stderr(&o), ", recorded");
    fs::remove_dir_all(d.join("out")).unwrap();
    fs::remove_file(d.join("gen/a.txt")).unwrap();
    let o = ran(&d, line, false);
    assert_contains(&stderr(&o), "memorun: hit");
    assert_eq!(fs::read_to_string(d.join("out/f")).unwrap(), "made\n");
    assert_eq!(fs::read_to_string(d.join("gen/a.txt")).unwrap(), "a\n");
}

/// One way a command learns about a file: set up, a script that learns,
/// a change that matters to it.
struct Cell {
    name: &'static str,
    setup: &'static str,
    script: &'static str,
    change: &'static str,
}

const PY_O_PATH: &str = "python3 -c 'import os; fd = os.open(\"f\", os.O_PATH); \
                         print(open(\"/proc/self/fd/%d\" % fd).read(), end=\"\")'";
const PY_OPEN_TREE: &str = "python3 -c 'import ctypes, os; \
    libc = ctypes.CDLL(None, use_errno=True); libc.syscall.restype = ctypes.c_long; \
    fd = libc.syscall(428, -100, b\"f\", 0x80000); assert fd >= 0, os.strerror(ctypes.get_errno()); \
    print(open(\"/proc/self/fd/%d\" % fd).read(), end=\"\")'";
const PY_MMAP: &str = "python3 -c 'import mmap, os; fd = os.open(\"f\", os.O_RDONLY); \
    print(mmap.mmap(fd, 0, prot=mmap.PROT_READ).read().decode(), end=\"\")'";
const PY_XATTR: &str = "python3 -c 'import os; print(os.getxattr(\"f\", \"user.k\"))'";

const MATRIX: &[Cell] = &[
    Cell {
        name: "open and read",
        setup: "echo old >f",
        script: "cat f",
        change: "echo NEW >f",
    },
    Cell {
        name: "via a symlink it made",
        setup: "echo old >f",
        script: "ln -sfn f link; cat link",
        change: "echo NEW >f",
    },
    Cell {
        name: "via a symlink it made to a directory",
        setup: "mkdir a b; echo old >a/f; echo old >b/f",
        script: "ln -sfn a dir; cat dir/f",
        change: "echo NEW >a/f",
    },
    Cell {
        name: "via its own symlink, re-pointed at the old content",
        setup: "mkdir a b; echo old >a/f; echo old >b/f",
        script: "ln -sfn a dir; cat dir/f",
        change: "ln -sfn b dir; echo NEW >a/f",
    },
    Cell {
        name: "a #! script through a symlink it made",
        setup: "printf '#!/bin/sh\\necho old\\n' >s; chmod +x s",
        script: "ln -sfn s run; ./run",
        change: "printf '#!/bin/sh\\necho NEW\\n' >s",
    },
    Cell {
        name: "/proc/self/cwd",
        setup: "echo old >f",
        script: "cat /proc/self/cwd/f",
        change: "echo NEW >f",
    },
    Cell {
        name: "/proc/self/fd after an O_PATH open",
        setup: "echo old >f",
        script: PY_O_PATH,
        change: "echo NEW >f",
    },
    Cell {
        name: "/dev/fd",
        setup: "echo old >f",
        script: "exec 4<f; cat /dev/fd/4",
        change: "echo NEW >f",
    },
    Cell {
        name: "open_tree then /proc/self/fd",
        setup: "echo old >f",
        script: PY_OPEN_TREE,
        change: "echo NEW >f",
    },
    Cell {
        name: "mmap",
        setup: "echo old >f",
        script: PY_MMAP,
        change: "echo NEW >f",
    },
    Cell {
        name: "exec",
        setup: "printf '#!/bin/sh\\necho old\\n' >s; chmod +x s",
        script: "./s",
        change: "printf '#!/bin/sh\\necho NEW\\n' >s",
    },
    Cell {
        name: "exec bit",
        setup: "printf '#!/bin/sh\\necho old\\n' >s; chmod +x s",
        script: "./s || echo cannot",
        change: "chmod -x s",
    },
    Cell {
        name: "stat",
        setup: "echo old >f",
        script: "stat -c %s f",
        change: "echo longer >f",
    },
    Cell {
        name: "lstat",
        setup: "echo x >f; echo x >g; ln -s f link",
        script: "stat -c %N link",
        change: "ln -sfn g link",
    },
    Cell {
        name: "stat -L",
        setup: "echo old >f; ln -s f link",
        script: "stat -L -c %s link",
        change: "echo longer >f",
    },
    Cell {
        name: "[ -s ] through a link",
        setup: "echo 12345 >f; ln -s f link",
        script: "[ -s link ] && echo nonempty || echo empty",
        change: ": >f",
    },
    Cell {
        name: "ls -ln (owner, or mode without root)",
        setup: "echo x >f",
        script: "ls -ln f | cut -d' ' -f1,3,4",
        change: "if [ \"$(id -u)\" = 0 ]; then chown 4242 f; else chmod 600 f; fi",
    },
    Cell {
        name: "link count",
        setup: "echo x >f",
        script: "stat -c %h f",
        change: "ln f g",
    },
    Cell {
        name: "getxattr",
        setup: "echo x >f; python3 -c 'import os; os.setxattr(\"f\", \"user.k\", b\"old\")'",
        script: PY_XATTR,
        change: "python3 -c 'import os; os.setxattr(\"f\", \"user.k\", b\"NEW\")'",
    },
    Cell {
        name: "a listing",
        setup: "mkdir d; touch d/a",
        script: "ls d",
        change: "touch d/b",
    },
];

/// Every cell: recorded, changed, run again: the output is what the
/// command prints now, never the old one. All cells run; the failures are
/// listed together.
#[test]
fn the_trace_matrix_never_replays_an_old_output() {
    let mut failed = Vec::new();
    for cell in MATRIX {
        if let Err(why) = matrix_cell(cell) {
            failed.push(format!("{}: {why}", cell.name));
        }
    }
    assert!(
        failed.is_empty(),
        "cells that failed:\n{}",
        failed.join("\n")
    );
}

fn matrix_cell(cell: &Cell) -> Result<(), String> {
    let d = Dir::new();
    let sh = |line: &str| -> Output { shell(&d, line) };
    let setup = sh(cell.setup);
    if !setup.status.success() {
        return Err(format!("setup failed: {}", stderr(&setup)));
    }
    // Everything set up a while before the run (see `age`).
    sh(
        "find . -path ./.cache -prune -o -type f -exec touch -h -d '-1 min' {} + ; find . -path ./.cache -prune -o -type l -exec touch -h -d '-1 min' {} +",
    );
    std::thread::sleep(Duration::from_millis(30));
    let script = format!("echo run >>\"$COUNT\"; {}", cell.script);
    let quoted = format!("'{}'", script.replace('\'', "'\\''"));
    let line = format!("$M -v --trace -- sh -c {quoted}");
    let first = sh(&line);
    if !stderr(&first).contains(", recorded") {
        return Err(format!(
            "the first run was not recorded: {}",
            stderr(&first)
        ));
    }
    let replay = sh(&line);
    if stdout(&replay) != stdout(&first) || !stderr(&replay).contains("memorun: hit") {
        return Err(format!("no hit before the change: {}", stderr(&replay)));
    }
    let change = sh(cell.change);
    if !change.status.success() {
        return Err(format!("the change failed: {}", stderr(&change)));
    }
    let before = d.count();
    let after = sh(&line);
    let now = sh(&format!("sh -c {quoted}"));
    if stdout(&after) == stdout(&first) && stdout(&now) != stdout(&first) {
        return Err(format!(
            "replayed the old output {:?} (the command prints {:?}): {}",
            stdout(&first),
            stdout(&now),
            stderr(&after)
        ));
    }
    if d.count() == before {
        return Err(format!("not run after the change: {}", stderr(&after)));
    }
    if stdout(&after) != stdout(&now) {
        return Err(format!(
            "printed {:?}, the command prints {:?}",
            stdout(&after),
            stdout(&now)
        ));
    }
    Ok(())
}

/// A Makefile whose objects depend on a header generated just before them:
/// the second `make clean && make` replays every compile. Needs the engine
/// half of issue 24 (a file written just before the run is recorded).
#[test]
fn a_makefile_with_a_generated_header_replays_every_compile() {
    let d = Dir::new();
    d.write("gen.sh", "echo '#define X 1'\n");
    d.write("a.c", "#include \"config.h\"\nint a(void) { return X; }\n");
    d.write(
        "b.c",
        "#include \"config.h\"\nint b(void) { return X + 1; }\n",
    );
    d.write(
        "Makefile",
        "CC_M = $(MEMORUN) -v --trace -- cc\n\
         all: a.o b.o\n\
         config.h: gen.sh\n\tsh gen.sh >config.h\n\
         a.o: a.c config.h\n\t$(CC_M) -c a.c -o a.o\n\
         b.o: b.c config.h\n\t$(CC_M) -c b.c -o b.o\n\
         clean:\n\trm -f a.o b.o config.h\n\
         .PHONY: all clean\n",
    );
    for f in ["gen.sh", "a.c", "b.c", "Makefile"] {
        age(&d.join(f));
    }
    let make = |args: &[&str]| crate::util::make(&d, args);
    make(&[]);
    make(&["clean"]);
    let o = make(&[]);
    let err = stderr(&o);
    assert_eq!(err.matches("memorun: hit").count(), 2, "{err}");
    make(&["clean"]);
    let o = make(&[]);
    let err = stderr(&o);
    assert_eq!(err.matches("memorun: hit").count(), 2, "{err}");
    assert!(d.join("a.o").exists() && d.join("b.o").exists());
    // The header changes: both compile again.
    d.write("gen.sh", "echo '#define X 2'\n");
    make(&["clean"]);
    let o = make(&[]);
    assert_eq!(
        stderr(&o).matches("memorun: miss").count(),
        2,
        "{}",
        stderr(&o)
    );
}
