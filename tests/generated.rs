//! The committed shell completions (`completions/`) and man pages (`man/`)
//! are exactly what the clap definitions generate today.
//!
//! The test regenerates every file in memory and compares it with the
//! committed copy; a stale, missing or orphaned file fails it. With
//! `MEMORUN_BLESS=1` it rewrites the files instead, so a change to `cli.rs`
//! is one command away from a matching commit.

use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use memorun::cli::Cli;

use crate::util::Dir;

/// The directories whose every file is generated.
const GENERATED_DIRS: [&str; 2] = ["completions", "man"];

/// The fix printed with every failure.
const BLESS: &str = "run MEMORUN_BLESS=1 cargo test --test integration generated";

/// Each shell, and where its script is committed.
const SHELLS: [(Shell, &str); 5] = [
    (Shell::Bash, "completions/memorun.bash"),
    (Shell::Zsh, "completions/_memorun"),
    (Shell::Fish, "completions/memorun.fish"),
    (Shell::Elvish, "completions/memorun.elv"),
    (Shell::PowerShell, "completions/_memorun.ps1"),
];

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file: its path relative to the repo root and its content.
fn generate() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = SHELLS
        .iter()
        .map(|&(shell, path)| {
            (
                PathBuf::from(path),
                memorun::commands::completions::script(shell),
            )
        })
        .collect();

    // As clap_mangen::generate_to does it, but in memory: no page for the
    // `help` subcommand, and each subcommand page titled `memorun-SUB`. Every
    // page's footer names memorun and its version (a subcommand has none).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("memorun {}", cmd.get_version().unwrap());
    let pages = std::iter::once(cmd.clone())
        .chain(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for page in pages {
        let man = clap_mangen::Man::new(page).source(&source);
        let mut roff = Vec::new();
        man.render(&mut roff).unwrap();
        files.push((Path::new("man").join(man.get_filename()), roff));
    }
    files
}

fn bless() -> bool {
    std::env::var_os("MEMORUN_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn generated_files_are_up_to_date() {
    let root = repo_root();
    let files = generate();
    let mut problems = Vec::new();

    for (rel, fresh) in &files {
        let path = root.join(rel);
        let problem = match fs::read(&path) {
            Ok(committed) if committed == *fresh => continue,
            Ok(_) => "is stale",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "is missing",
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        if bless() {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, fresh).unwrap();
        } else {
            problems.push(format!("{} {problem}", rel.display()));
        }
    }

    // A file in a generated directory that nothing generates any more (a
    // removed subcommand's page) is stale too.
    for dir in GENERATED_DIRS {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let rel = Path::new(dir).join(entry.unwrap().file_name());
            if files.iter().any(|(generated, _)| *generated == rel) {
                continue;
            }
            if bless() {
                fs::remove_file(root.join(&rel)).unwrap();
            } else {
                problems.push(format!("{} is not generated any more", rel.display()));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "generated files differ from the clap definitions:\n  {}\n{BLESS}",
        problems.join("\n  ")
    );
}

#[test]
fn completions_subcommand_prints_the_committed_scripts() {
    let d = Dir::new();
    for (shell, path) in SHELLS {
        // While blessing, the other test may be rewriting the file right now.
        let committed = if bless() {
            memorun::commands::completions::script(shell)
        } else {
            fs::read(repo_root().join(path))
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}; {BLESS}"))
        };
        d.memorun()
            .args(["completions", &shell.to_string()])
            .assert()
            .success()
            .stdout(committed);
    }
}

#[test]
fn man_pages_cover_every_subcommand() {
    let names: Vec<PathBuf> = generate().into_iter().map(|(path, _)| path).collect();
    for page in [
        "memorun.1",
        "memorun-why.1",
        "memorun-stats.1",
        "memorun-list.1",
        "memorun-clear.1",
        "memorun-completions.1",
    ] {
        assert!(
            names.contains(&Path::new("man").join(page)),
            "no man/{page} among {names:?}"
        );
    }
}
