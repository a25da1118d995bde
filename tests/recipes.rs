//! The docs' recipes, run as a user would copy them: a Makefile that
//! compiles C with headers, under real make and a real C compiler (here),
//! and the cargo recipes (in `field`).
//!
//! A recipe is taken from the docs themselves, not copied: the fenced
//! block under a line `<!-- recipe: NAME -->`, in README.md or any page of
//! docs/ (wherever it moves), so that a recipe that stops working fails
//! the tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::util::{Dir, memorun_bin, set_mtime};

/// The fenced block under `<!-- recipe: NAME -->`: exactly one in
/// README.md and docs/*.md.
pub(crate) fn recipe(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let marker = format!("<!-- recipe: {name} -->");
    let mut found = Vec::new();
    for page in &pages {
        let text = fs::read_to_string(page).unwrap();
        let mut lines = text.lines();
        while lines.by_ref().any(|l| l.trim() == marker) {
            let fence = lines.next().unwrap_or_default();
            assert!(
                fence.starts_with("```"),
                "{}: {marker} is not above a fenced block",
                page.display()
            );
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            found.push(block.join("\n") + "\n");
        }
    }
    assert_eq!(
        found.len(),
        1,
        "{marker}: expected once in README.md and docs/"
    );
    found.pop().unwrap()
}

/// The `memorun ...` command lines of recipe `name` (see [`recipe`]).
pub(crate) fn recipe_commands(name: &str) -> Vec<String> {
    recipe(name)
        .lines()
        .filter(|l| l.starts_with("memorun "))
        .map(String::from)
        .collect()
}

/// The Makefile recipe from the docs ("Output files").
fn makefile() -> String {
    recipe("makefile")
}

/// `make ARGS` in `d` with the recipe's variables set on the command line
/// (one object, the compiler behind a wrapper that counts compiles), and
/// `memorun` on `PATH`, as the recipe expects.
#[track_caller]
fn make(d: &Dir, args: &[&str]) -> Output {
    let bin = d.join("bin");
    if !bin.exists() {
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(memorun_bin(), bin.join("memorun")).unwrap();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(bin).chain(std::env::split_paths(&path));
    let o = Command::new("make")
        .args(args)
        .args(["CC=./cc-counted", "OBJS=main.o"])
        .current_dir(d.path())
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("MEMORUN_DIR", &d.cache)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .output()
        .expect("make is installed (CI installs it)");
    assert!(
        o.status.success(),
        "make {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn setup() -> Dir {
    let d = Dir::new();
    d.write("Makefile", makefile());
    d.write("include/greet.h", "#define GREETING \"hello\"\n");
    d.write(
        "main.c",
        "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { puts(GREETING); return 0; }\n",
    );
    let cc = d.write(
        "cc-counted",
        // Counts compiles, not the link.
        "#!/bin/sh\ncase \" $* \" in *\" -c \"*) echo run >> count;; esac\nexec cc \"$@\"\n",
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
    let without = makefile().replace(" -i 'include/**'", "");
    assert_ne!(without, makefile(), "the recipe names the headers");
    d.write("Makefile", without);
    make(&d, &[]);
    d.write("include/greet.h", "#define GREETING \"howdy\"\n");
    make(&d, &[]);
    assert_eq!(d.count(), 1);
    assert_eq!(prog(&d), "hello\n");
}

/// The three rules of "A Makefile rule" as written: each runs once, then
/// `make -B` (every rule run again) is all hits with the same bytes; a
/// template edit re-renders the page that reads it.
#[test]
fn the_makefile_rules_replay_and_see_what_they_name() {
    let d = setup();
    d.write("Makefile", recipe("make-rules"));
    d.write("data.csv", "north,3\n");
    d.write("pages/a.md", "# A\n");
    d.write("templates/head.html", "<head>\n");
    for (script, body) in [
        ("render.sh", "echo render >> count\ncat \"$1\"\n"),
        (
            "build-page",
            "echo page >> count\ncat templates/head.html \"$1\"\n",
        ),
    ] {
        let p = d.write(script, format!("#!/bin/sh\n{body}"));
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let targets = ["report.html", "out/a.html", "main.o"];
    make(&d, &targets);
    assert_eq!(d.count(), 3);
    let before: Vec<Vec<u8>> = targets
        .iter()
        .map(|t| fs::read(d.join(t)).unwrap())
        .collect();
    let args: Vec<&str> = std::iter::once("-B").chain(targets).collect();
    make(&d, &args);
    assert_eq!(d.count(), 3, "make -B ran a rule memorun had recorded");
    let after: Vec<Vec<u8>> = targets
        .iter()
        .map(|t| fs::read(d.join(t)).unwrap())
        .collect();
    assert_eq!(before, after);
    d.write("templates/head.html", "<head lang=en>\n");
    make(&d, &["-B", "out/a.html"]);
    assert_eq!(d.count(), 4, "a template edit was not a miss");
    assert_eq!(
        fs::read_to_string(d.join("out/a.html")).unwrap(),
        "<head lang=en>\n# A\n"
    );
}
