//! The README's cookbook, run as a user would copy it: a Makefile that
//! compiles C with headers, under real make and a real C compiler.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::util::{Dir, make, set_mtime};

/// The Makefile recipe from the README ("A Makefile rule"), with the
/// compiler behind a wrapper that counts its runs.
const MAKEFILE: &str = "\
CC = ./cc-counted
OBJS = main.o

prog: $(OBJS)
\tcc -o $@ $(OBJS)

%.o: %.c $(wildcard include/*.h)
\t$(MEMORUN) -i 'include/**' -o $@ -- $(CC) -Iinclude -c $< -o $@

clean:
\trm -f prog $(OBJS)
";

fn setup() -> Dir {
    let d = Dir::new();
    d.write("Makefile", MAKEFILE);
    d.write("include/greet.h", "#define GREETING \"hello\"\n");
    d.write(
        "main.c",
        "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { puts(GREETING); return 0; }\n",
    );
    let cc = d.write(
        "cc-counted",
        "#!/bin/sh\necho run >> count\nexec cc \"$@\"\n",
    );
    fs::set_permissions(cc, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn prog(d: &Dir) -> String {
    let o = Command::new(d.join("prog")).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Issue 13: with the README's own recipe, editing a header replayed the
/// old object file. The recipe now names the headers with `-i`.
#[test]
fn the_makefile_recipe_recompiles_when_a_header_changes() {
    let d = setup();
    make(&d, &[]);
    assert_eq!(prog(&d), "hello\n");
    assert_eq!(d.count(), 1);
    d.write("include/greet.h", "#define GREETING \"howdy\"\n");
    make(&d, &[]);
    assert_eq!(d.count(), 2, "a header edit was not a miss");
    assert_eq!(prog(&d), "howdy\n", "a stale object file was replayed");
}

/// Issue 13: a hit left the target older than its prerequisites, so after
/// `touch main.c` make re-ran the rule on every invocation. A hit now
/// gives the outputs it knows a fresh mtime, as a real run would.
#[test]
fn after_a_hit_make_finds_the_target_up_to_date() {
    let d = setup();
    make(&d, &[]);
    // The source is touched, not changed (newer than the object, same
    // content): make runs the rule, memorun hits.
    let now = SystemTime::now();
    set_mtime(&d.join("main.o"), now - Duration::from_secs(100));
    set_mtime(&d.join("main.c"), now - Duration::from_secs(50));
    let o = make(&d, &["main.o"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("-c main.c -o main.o"));
    assert_eq!(d.count(), 1, "the compiler ran on a hit");
    let o = make(&d, &["main.o"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("is up to date"),
        "make ran the rule again:\n{out}"
    );
}

/// Why the recipe names the headers: a rule without `-i 'include/**'`
/// cannot see a header edit (what the README warns about), and replays
/// the object compiled from the old header.
#[test]
fn without_the_header_input_a_header_edit_replays_the_old_object() {
    let d = setup();
    d.write("Makefile", MAKEFILE.replace(" -i 'include/**'", ""));
    make(&d, &[]);
    d.write("include/greet.h", "#define GREETING \"howdy\"\n");
    make(&d, &[]);
    assert_eq!(d.count(), 1);
    assert_eq!(prog(&d), "hello\n");
}
