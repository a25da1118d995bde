//! `--help`, `-h`, `--version` and the subcommands' help: every run option
//! of the product contract is there, grouped under its heading, and every
//! option's long help carries an example.

use clap::CommandFactory;
use memorun::cli::Cli;

use crate::util::{Dir, assert_contains, code, stderr, stdout};

/// The run options of the product contract, by the heading they belong under.
const HEADINGS: [(&str, &[&str]); 4] = [
    (
        "Key",
        &[
            "-e, --env",
            "-i, --input",
            "--exclude",
            "--no-auto-inputs",
            "-x, --ignore-arg",
            "-k, --key",
            "--key-cmd",
            "--no-cwd",
            "--stdin",
        ],
    ),
    (
        "Cache policy",
        &[
            "-t, --ttl",
            "--stale",
            "--cache-failures",
            "-f, --force",
            "--no-cache",
        ],
    ),
    ("Output", &["-v, --verbose", "-q, --quiet"]),
    ("Store", &["--cache-dir"]),
];

const SUBCOMMANDS: [&str; 5] = ["why", "stats", "list", "clear", "completions"];

/// Options whose long help has no example yet, as `SUBCOMMAND --option`.
/// Give each an example in `cli.rs`, then remove it from this list.
const WITHOUT_EXAMPLE: &[&str] = &[];

/// `memorun ARGS` in `d`, which must succeed; its stdout.
fn help(d: &Dir, args: &[&str]) -> String {
    let o = d.run(args);
    assert_eq!(code(&o), 0, "memorun {args:?} failed: {o:?}");
    assert!(
        o.stderr.is_empty(),
        "memorun {args:?} wrote to stderr: {o:?}"
    );
    stdout(&o)
}

/// The lines of `help` under `heading:`, up to the next heading.
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    let header = format!("{heading}:");
    let mut lines = help.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "no '{header}' heading in:\n{help}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

#[test]
fn help_mentions_every_run_option_and_subcommand() {
    let d = Dir::new();
    let help = help(&d, &["--help"]);
    for (_, options) in HEADINGS {
        for option in options {
            assert!(help.contains(option), "--help does not mention {option}");
        }
    }
    let commands = section(&help, "Commands");
    for sub in SUBCOMMANDS {
        assert!(
            commands.iter().any(|l| l.trim_start().starts_with(sub)),
            "--help does not list the {sub} subcommand:\n{help}"
        );
    }
}

#[test]
fn help_groups_run_options_under_headings() {
    let d = Dir::new();
    for flag in ["--help", "-h"] {
        let help = help(&d, &[flag]);
        let mut last = 0;
        for (heading, options) in HEADINGS {
            let at = help
                .find(&format!("\n{heading}:\n"))
                .unwrap_or_else(|| panic!("{flag}: no '{heading}:' heading in:\n{help}"));
            assert!(at > last, "{flag}: '{heading}:' is out of order");
            last = at;
            let lines = section(&help, heading);
            for option in options {
                assert!(
                    lines.iter().any(|l| l.trim_start().starts_with(option)),
                    "{flag}: {option} is not under '{heading}:'"
                );
            }
        }
    }
}

#[test]
fn short_help_is_shorter_than_long_help() {
    let d = Dir::new();
    let short = help(&d, &["-h"]);
    let long = help(&d, &["--help"]);
    assert!(
        short.len() < long.len(),
        "-h ({} bytes) is not shorter than --help ({} bytes)",
        short.len(),
        long.len()
    );
    assert!(short.contains("see more with '--help'"));
    assert!(!short.contains("Example: `memorun"));
}

#[test]
fn every_option_has_a_help_line_and_an_example() {
    let cmd = Cli::command();
    let commands =
        std::iter::once(("", &cmd)).chain(cmd.get_subcommands().map(|sub| (sub.get_name(), sub)));
    let mut missing = Vec::new();
    let mut listed_but_fine = Vec::new();
    for (sub, command) in commands {
        let options = command
            .get_arguments()
            .filter(|a| !a.is_positional() && !a.is_hide_set())
            .filter(|a| !["help", "version"].contains(&a.get_id().as_str()));
        for arg in options {
            let name = format!("{sub} --{}", arg.get_long().unwrap())
                .trim()
                .to_owned();
            assert!(arg.get_help().is_some(), "{name} has no help line");
            let long = arg.get_long_help().or(arg.get_help()).unwrap().to_string();
            let has_example = long.contains("Example") || long.contains("`memorun ");
            match (has_example, WITHOUT_EXAMPLE.contains(&name.as_str())) {
                (false, false) => missing.push(name),
                (true, true) => listed_but_fine.push(name),
                _ => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "options whose long help has no example (add one to its doc comment in src/cli.rs): {missing:?}"
    );
    assert!(
        listed_but_fine.is_empty(),
        "these options now have an example: remove them from WITHOUT_EXAMPLE in tests/help.rs: \
         {listed_but_fine:?}"
    );
}

#[test]
fn every_subcommand_about_has_an_example() {
    let cmd = Cli::command();
    for sub in SUBCOMMANDS {
        let about = cmd
            .find_subcommand(sub)
            .unwrap_or_else(|| panic!("no {sub} subcommand"))
            .get_long_about()
            .unwrap_or_else(|| panic!("{sub} has no long about"))
            .to_string();
        assert!(
            about.contains("`memorun "),
            "the long help of {sub} has no example: {about}"
        );
    }
}

#[test]
fn version_prints_name_and_version() {
    let d = Dir::new();
    let version = help(&d, &["--version"]);
    assert_eq!(version, format!("memorun {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(help(&d, &["-V"]), version);
}

#[test]
fn subcommands_have_their_own_help() {
    let d = Dir::new();
    for sub in SUBCOMMANDS {
        let usage = format!("Usage: memorun {sub}");
        let long = help(&d, &[sub, "--help"]);
        assert!(long.contains(&usage), "{sub} --help:\n{long}");
        assert_eq!(
            help(&d, &["help", sub]),
            long,
            "help {sub} differs from {sub} --help"
        );
        let short = help(&d, &[sub, "-h"]);
        assert!(short.contains(&usage), "{sub} -h:\n{short}");
    }
}

#[test]
fn why_help_lists_the_run_options() {
    let d = Dir::new();
    let help = help(&d, &["why", "--help"]);
    for (heading, options) in HEADINGS {
        let lines = section(&help, heading);
        for option in options {
            assert!(
                lines.iter().any(|l| l.trim_start().starts_with(option)),
                "why --help: {option} is not under '{heading}:'"
            );
        }
    }
}

/// Issue 13: wrong usage got no guidance.
#[test]
fn wrong_usage_says_what_to_type_instead() {
    let d = Dir::new();
    let cases: [(&[&str], &str); 5] = [
        (
            &["-v", "cargo", "test"],
            "unexpected argument 'cargo' found; to run a command, put '--' before it: memorun -v -- cargo test",
        ),
        (
            &["why"],
            "no command given (usage: memorun why [OPTIONS] -- COMMAND [ARG]...)",
        ),
        (
            &["-v"],
            "no command given (usage: memorun [OPTIONS] -- COMMAND [ARG]...)",
        ),
        (&["stats", "--bogus"], "(see 'memorun stats --help')"),
        (&["clear", "--bogus"], "(see 'memorun clear --help')"),
    ];
    for (args, says) in cases {
        let o = d.run(args);
        assert_eq!(code(&o), 125, "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{args:?}: {}", stderr(&o));
    }
}

/// Issue 13: `-i typo.txt` was silent, even with `-v`.
#[test]
fn an_input_that_does_not_exist_is_pointed_out() {
    let d = Dir::new();
    let o = d.run(["-i", "typo.txt", "--", "true"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        stderr(&o),
        "memorun: warning: input 'typo.txt' does not exist; it is in the key as absent\n"
    );
    let o = d.run(["-v", "-i", "typo.txt", "-i", "nope", "--", "true"]);
    assert_contains(&stderr(&o), "memorun: absent inputs: 'typo.txt', 'nope'");
    assert!(
        d.run(["-q", "-i", "typo.txt", "--", "true"])
            .stderr
            .is_empty()
    );
    // A glob that matches nothing, and a dangling symlink, are meant.
    std::os::unix::fs::symlink("nowhere", d.join("link")).unwrap();
    let o = d.run(["-i", "*.nothing", "-i", "link", "--", "true"]);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}
