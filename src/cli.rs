//! The command-line interface: clap definitions and nothing else.
//!
//! The doc comments on the fields are the `--help` text. Turning these raw
//! arguments into memorun's own configuration happens in `config`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  memorun -- ./slow-report.sh --month 2026-10 data/sales.csv
  memorun -e 'AWS_*' -- aws s3 ls s3://bucket
  memorun -i data/ -x '--log=*' -- python3 report.py --log=run.log
  memorun --key-cmd 'git rev-parse HEAD' -- make docs
  memorun why -- make docs

The command runs directly, without a shell: `memorun -- stats` runs a program
named `stats`. Use `sh -c '...'` for pipelines.";

/// Memoize a command: replay its recorded output when nothing that went into
/// it changed.
///
/// The first run of a command runs it, streaming its output live, and records
/// stdout, stderr (with their interleaving) and the exit code. The next run
/// with the same key replays them byte for byte without running anything.
#[derive(Debug, Parser)]
#[command(
    name = "memorun",
    version,
    about,
    long_about,
    after_help = AFTER_HELP,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "SUBCOMMAND"
)]
pub struct Cli {
    /// A subcommand; without one, memorun runs or replays COMMAND.
    #[command(subcommand)]
    pub subcommand: Option<Sub>,

    /// Options for running or replaying a command.
    #[command(flatten)]
    pub run: RunArgs,
}

/// memorun's subcommands. A command named like one of them still runs after
/// `--`: `memorun -- why` runs a program named `why`.
///
/// Deferred: their arguments are only defined when one of them is used, not
/// on every run of a command (a measurable share of a hit's start-up).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
// Parsed once per process: boxing the run options would only add an
// allocation to every `why`.
#[allow(clippy::large_enum_variant)]
pub enum Sub {
    /// Explain whether COMMAND would hit or miss, and why; runs nothing
    ///
    /// Prints the key components (argv, cwd, env names, inputs, stdin, key
    /// material; never env values) and, on a miss, what differs from the
    /// most recent entry of the same command. Example:
    /// `memorun why -i src/ -- make`.
    Why {
        /// Print a JSON object instead of text
        ///
        /// Fields: `would` ("hit" or "miss"), `key`, `entry` (the hit
        /// entry, or null), `components`, `previous` (the closest earlier
        /// entry of the same command, or null) and `changes`. Example:
        /// `memorun why --json -- make | jq -r '.changes[].name'`.
        #[arg(long)]
        json: bool,

        /// The same run options the command would be run with.
        #[command(flatten)]
        run: RunArgs,
    },

    /// Show counters, sizes and time saved
    ///
    /// Hits, misses, hit rate, time saved, runs not recorded by reason,
    /// errors, entries and bytes on disk against the size limit, the oldest
    /// and newest entry, and the commands that saved the most time. Example:
    /// `memorun stats --json | jq .hits`.
    Stats {
        /// Print a JSON object instead of a table
        ///
        /// A stable object: `hits`, `misses` and the other counters are
        /// numbers; docs/commands.md describes every field. Example:
        /// `memorun stats --json | jq .hit_rate`.
        #[arg(long)]
        json: bool,

        /// Reset the counters (the entries stay)
        ///
        /// Example: `memorun stats --zero`.
        #[arg(long)]
        zero: bool,

        /// Where the store is.
        #[command(flatten)]
        store: StoreArgs,
    },

    /// List the recorded entries, newest first
    ///
    /// One line per entry: short key, age, last use, duration, exit code,
    /// output size, hits and the command. Rows are printed as they are
    /// read, so the first come at once in a store of any size. Examples:
    /// `memorun list -n 20`, `memorun list | grep make`.
    List {
        /// Print a JSON array instead of a table
        ///
        /// Each object has `key`, `created_ms`, `last_used_ms`,
        /// `duration_ms`, `exit_code`, `output_bytes`, `files`,
        /// `file_bytes`, `traced_inputs`, `hits` and `command`.
        /// Example: `memorun list --json | jq -r '.[].command'`.
        #[arg(long)]
        json: bool,

        /// Only the N newest entries
        ///
        /// Example: `memorun list -n 20`.
        #[arg(short = 'n', long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
        limit: Option<u64>,

        /// Where the store is.
        #[command(flatten)]
        store: StoreArgs,
    },

    /// Remove entries: all of them, or those matching the filters
    ///
    /// Also collects blob and temp files that no entry uses (left by a
    /// crash). Only files memorun created inside the cache directory are
    /// removed; symlinks are never followed. Examples:
    /// `memorun clear --older-than 30d`, `memorun clear --failed --dry-run`,
    /// `memorun clear -- make docs`, `memorun clear --prefix -- cargo test`.
    Clear {
        /// Only entries last used longer ago than DURATION
        ///
        /// Durations are written like `90s`, `12h`, `30d`, `1h30m`. Example:
        /// `memorun clear --older-than 30d`.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<Duration>,

        /// Only entries of runs that exited with a non-zero code
        ///
        /// Such entries exist only when recorded with --cache-failures.
        /// Example: `memorun clear --failed`.
        #[arg(long)]
        failed: bool,

        /// Say what would be removed, and remove nothing
        ///
        /// Example: `memorun clear --older-than 7d --dry-run`.
        #[arg(long)]
        dry_run: bool,

        /// Reset the cache: delete its database, hit log and blobs, then
        /// start a new store
        ///
        /// Works even when the database cannot be opened (damaged, not a
        /// database). Only memorun's own files inside the cache directory
        /// are deleted; symlinks are not followed. Example:
        /// `memorun clear --all`.
        #[arg(long, conflicts_with_all = ["older_than", "failed", "command"])]
        all: bool,

        /// With -- COMMAND: every command that starts with those words
        ///
        /// `memorun clear --prefix -- cargo test` removes the entries of
        /// `cargo test`, `cargo test --offline`, `cargo test -p foo`...
        #[arg(long, requires = "command")]
        prefix: bool,

        /// Where the store is.
        #[command(flatten)]
        store: StoreArgs,

        /// Only entries of this command (exactly these words, or with
        /// --prefix starting with them), whatever their inputs
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },

    /// Print a shell completion script
    ///
    /// Example: `memorun completions bash > ~/.local/share/bash-completion/completions/memorun`.
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Parse a duration written the way people write them: `90s`, `10m`, `1d`,
/// `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration like 90s, 10m, 1h30m or 2d ({e})"))
}

/// Parse `list --limit`: a whole number of entries, at least 1.
pub fn parse_limit(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("'0' would show nothing: give 1 or more, or leave --limit out for all".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a number of entries like 20")),
    }
}

// Where the store lives; shared by running and by the store subcommands.
// (Not a doc comment: with the subcommands deferred, clap would take a
// flattened struct's doc comment as the subcommand's own description.)
#[allow(missing_docs)]
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where the store lives [env: MEMORUN_DIR]
    ///
    /// Defaults to $MEMORUN_DIR, else $XDG_CACHE_HOME/memorun, else
    /// ~/.cache/memorun; an empty value counts as unset. The directory is
    /// created with mode 0700. Example: `memorun --cache-dir .memorun -- make`.
    #[arg(long, value_name = "DIR", help_heading = "Store")]
    pub cache_dir: Option<PathBuf>,
}

/// How stdin goes into the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StdinMode {
    /// Hash stdin when it is a file or a pipe; not when it is a terminal.
    Auto,
    /// Always read stdin to EOF and hash it, even from a terminal.
    Hash,
    /// Never read or hash stdin; the command inherits it as is.
    Ignore,
}

// Options for running or replaying a command. (Not a doc comment: see
// `StoreArgs`.)
#[allow(missing_docs)]
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Include environment variables whose name matches PATTERN in the key
    ///
    /// PATTERN is an exact name (`HOME`) or a glob (`AWS_*`). Repeatable.
    /// An unset variable and a variable set to the empty string are
    /// different keys. Only a keyed digest of each value is stored, never
    /// the value. Example: `memorun -e CC -e 'CFLAGS*' -- make`.
    #[arg(
        short = 'e',
        long = "env",
        value_name = "PATTERN",
        help_heading = "Key"
    )]
    pub env: Vec<String>,

    /// Include the content of a file, a directory tree or a quoted glob
    ///
    /// A file counts by its content; a directory by the sorted list of
    /// everything under it plus each file's content (a symlink to a file by
    /// its target's content, a symlink to a directory as a link, not
    /// followed); a glob (`'src/**/*.rs'`) by the set it matches plus each
    /// match's content. A missing path is an "absent" component: creating it
    /// later changes the key. Repeatable. Example:
    /// `memorun -i data/ -i 'conf/*.toml' -- ./report.sh`.
    ///
    /// A path starting with `!` is an exclusion, as `--exclude` gives one:
    /// `-i . -i '!target/**'`.
    #[arg(short = 'i', long = "input", value_name = "PATH", help_heading = "Key")]
    pub input: Vec<OsString>,

    /// Leave paths matching this glob out of `--input` walks and globs
    ///
    /// For what the command writes inside an input directory (a build
    /// tree, caches, logs): excluded paths are neither hashed nor watched
    /// while the command runs. `DIR/**` or `DIR/` leaves out DIR itself and
    /// everything under it. Paths are matched as shown, relative to the
    /// working directory. Repeatable; same as `-i '!GLOB'`. Example:
    /// `memorun -i . --exclude 'target/**' -- cargo test`.
    #[arg(long, value_name = "GLOB", help_heading = "Key")]
    pub exclude: Vec<String>,

    /// Leave arguments matching this glob out of the key
    ///
    /// Matching arguments are neither in the key nor automatic inputs: use
    /// it for `--verbose`, `--jobs=*`, a log file path or a `--run-id=*`.
    /// Repeatable. Example:
    /// `memorun -x '--jobs=*' -x 'build.log' -- ./build.sh --jobs=8 build.log`.
    #[arg(
        short = 'x',
        long = "ignore-arg",
        value_name = "PATTERN",
        allow_hyphen_values = true,
        help_heading = "Key"
    )]
    pub ignore_arg: Vec<String>,

    /// Put extra literal text into the key
    ///
    /// A version string, a branch name, a schema version. Repeatable.
    /// Example: `memorun -k v2 -- ./export.sh`.
    #[arg(
        short = 'k',
        long = "key",
        value_name = "TEXT",
        allow_hyphen_values = true,
        help_heading = "Key"
    )]
    pub key: Vec<String>,

    /// Run CMD with `sh -c` and put its stdout and exit status into the key
    ///
    /// Repeatable. Examples: `--key-cmd 'git rev-parse HEAD'`,
    /// `--key-cmd 'python3 --version'`, `--key-cmd 'date +%F'` for a
    /// once-a-day cache.
    #[arg(long = "key-cmd", value_name = "CMD", help_heading = "Key")]
    pub key_cmd: Vec<String>,

    /// How stdin goes into the key: auto, hash or ignore
    ///
    /// `auto` reads a file or pipe on stdin to EOF, hashes it and feeds the
    /// same bytes to the command; a terminal is not read. `hash` always
    /// reads and hashes. `ignore` never reads: the command inherits stdin.
    /// A pipe that never closes keeps memorun waiting: use `--stdin ignore`.
    /// Example: `tail -f log | memorun --stdin ignore -- ./watch.sh`.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "auto",
        help_heading = "Key"
    )]
    pub stdin: StdinMode,

    /// Do not hash arguments that name existing files
    ///
    /// By default every argument that names an existing regular file is an
    /// input: its content goes into the key, so editing the file causes a
    /// re-run. Example: `memorun --no-auto-inputs -- ./fetch.sh config.json`.
    #[arg(long, help_heading = "Key")]
    pub no_auto_inputs: bool,

    /// Leave the working directory out of the key
    ///
    /// By default the same command run from two directories is two entries.
    /// Example: `memorun --no-cwd -- python3 --version`.
    #[arg(long, help_heading = "Key")]
    pub no_cwd: bool,

    /// Key paths under DIR relative to it [env: MEMORUN_BASE_DIR]
    ///
    /// The working directory, arguments that are absolute paths under DIR
    /// and input paths under DIR go into the key relative to DIR (shown as
    /// `{base}/...` by `memorun why`), so checkouts of one repository at
    /// different paths share entries, on one machine or through a remote
    /// cache. Output the command prints is replayed as recorded, absolute
    /// paths included. Example: `memorun --base-dir "$PWD" -- make`.
    #[arg(long, value_name = "DIR", help_heading = "Key")]
    pub base_dir: Option<PathBuf>,

    /// A file, directory or quoted glob the command writes: restored on a hit
    ///
    /// Captured with the entry after a recorded run and put back on a hit
    /// before the output is replayed: a directory ends up holding exactly
    /// what the run left (stale files in it are removed), each file is
    /// written whole and renamed into place with its mode and a fresh
    /// mtime, and nothing is ever written through a symlink. Outputs are
    /// not part of the key and never inputs. A declared output the command
    /// does not create is removed by a hit. Repeatable. Example:
    /// `memorun -o dist/ -- npm run build`.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        help_heading = "Outputs"
    )]
    pub output: Vec<OsString>,

    /// Do not capture the files the command creates that are named on its
    /// command line
    ///
    /// By default an argument that named nothing before the run and a file
    /// after it (`cc -c in.c -o out.o`) is captured and restored on a hit
    /// like a `-o` file. With this flag such a file must still be in place
    /// for a hit, as the run left it. Example:
    /// `memorun --no-auto-outputs -- cc -c in.c -o out.o`.
    #[arg(long, help_heading = "Outputs")]
    pub no_auto_outputs: bool,

    /// Trace the command's file-system calls and key on every file it read
    ///
    /// Linux (x86_64, aarch64): the command and every process it starts run
    /// under ptrace with a seccomp filter, so only file-system calls stop
    /// them. Every file it read or executed (by content), directory it
    /// listed and path it looked for and did not find goes into the key,
    /// so editing a header that `cc -c foo.c` includes, or adding one that
    /// shadows it, is a miss. Also `MEMORUN_TRACE=1`. Where tracing is not
    /// allowed the command runs uncached, with one warning. Example:
    /// `memorun --trace -- cc -c foo.c -o foo.o`.
    #[arg(long, help_heading = "Key")]
    pub trace: bool,

    /// Leave paths matching this glob out of what --trace records
    ///
    /// A relative glob is resolved against the working directory, as
    /// --exclude is (`target/**`); an absolute one is matched as it is.
    /// `/proc`, `/sys`, `/dev` and the cache directory are always left
    /// out, and by default cargo's lock files and target directory (see
    /// --no-default-trace-excludes). Repeatable. Example:
    /// `memorun --trace --trace-exclude '/var/cache/**' -- make`.
    #[arg(long, value_name = "GLOB", help_heading = "Key")]
    pub trace_exclude: Vec<String>,

    /// Do not leave out the toolchain state --trace leaves out by default
    ///
    /// By default a traced run leaves out what cargo rewrites on every
    /// run: its lock files (`$CARGO_HOME/.global-cache` and its `-journal`,
    /// `-wal`, `-shm`, `.package-cache`, `.package-cache-mutate`;
    /// `CARGO_HOME` defaults to `~/.cargo`) and,
    /// in a directory with a `Cargo.toml`, its target directory
    /// (`$CARGO_TARGET_DIR`, else `./target`). Not the registry's index or
    /// sources. `memorun why --trace` lists them. Example:
    /// `memorun --trace --no-default-trace-excludes -- cargo test`.
    #[arg(long, help_heading = "Key")]
    pub no_default_trace_excludes: bool,

    /// Also record runs that exit with a non-zero code
    ///
    /// By default only exit 0 is recorded. A run killed by a signal is never
    /// recorded. Example: `memorun --cache-failures -- ./lint.sh`.
    #[arg(long, help_heading = "Cache policy")]
    pub cache_failures: bool,

    /// Do not replay an entry older than DURATION
    ///
    /// The command runs and its result replaces the entry. A read policy,
    /// not part of the key: `--ttl 1h` and `--ttl 2h` see the same entries.
    /// Example: `memorun --ttl 10m -- curl -s https://api.example.com/rates`.
    #[arg(short = 't', long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Cache policy")]
    pub ttl: Option<Duration>,

    /// Past this age, replay at once and refresh in the background
    ///
    /// Stale-while-revalidate: an entry older than DURATION (and within
    /// --ttl, if given) is replayed immediately while a fully detached
    /// background run records a fresh result. Example:
    /// `memorun --stale 1h -- ./slow-dashboard.sh`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Cache policy")]
    pub stale: Option<Duration>,

    /// Run even on a hit, and record the new result
    ///
    /// Example: `memorun -f -- ./slow-report.sh` to refresh an entry.
    #[arg(short, long, help_heading = "Cache policy")]
    pub force: bool,

    /// Run plainly: neither read nor write the cache
    ///
    /// Setting MEMORUN_DISABLE=1 does the same for every invocation.
    /// Example: `memorun --no-cache -- make test`.
    #[arg(long, help_heading = "Cache policy")]
    pub no_cache: bool,

    /// A cache shared between machines [env: MEMORUN_REMOTE]
    ///
    /// `redis://[user:password@]host[:port][/db]`, `redis+unix:///path`,
    /// the `http://` or `https://` base URL of a store that takes PUT and
    /// answers GET and HEAD (nginx WebDAV, Apache mod_dav, Artifactory), or
    /// `s3://bucket[/prefix]` (endpoint, region and keys from AWS_*
    /// variables; no keys: anonymous, read-only). Local hits never touch it; on a local miss the remote is asked, and a
    /// recorded run is uploaded. Needs the team's secret in MEMORUN_SECRET
    /// (at least 32 characters); a bearer token goes in
    /// MEMORUN_REMOTE_TOKEN. A remote that fails is not used for the rest
    /// of the run; one that times out (2 s per lookup, 10 s per other
    /// operation: MEMORUN_REMOTE_LOOKUP_TIMEOUT, MEMORUN_REMOTE_TIMEOUT),
    /// refuses or answers 5xx is skipped by every run of this cache for a
    /// cool-down (MEMORUN_REMOTE_RETRY=1 retries now). Example:
    /// `MEMORUN_REMOTE=https://cache.example.com/memorun memorun -- make`.
    #[arg(long, value_name = "URL", help_heading = "Remote")]
    pub remote: Option<String>,

    /// Look entries up on the remote, never write to it [env:
    /// MEMORUN_REMOTE_READ_ONLY]
    ///
    /// For jobs that must not be trusted with the shared cache (pull
    /// requests); enforce it on the server too. Example:
    /// `memorun --remote-read-only -- make test`.
    #[arg(long, help_heading = "Remote")]
    pub remote_read_only: bool,

    /// Print a one-line status on stderr (hit or miss, time saved)
    ///
    /// Example: `memorun -v -- make` prints
    /// `memorun: hit, recorded 3m ago, saved 41.2s`.
    #[arg(short, long, conflicts_with = "quiet", help_heading = "Output")]
    pub verbose: bool,

    /// Print no warnings
    ///
    /// memorun's own errors are still reported. Example: `memorun -q -- make`.
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,

    /// Where the store is.
    #[command(flatten)]
    pub store: StoreArgs,

    /// The command to run, and its arguments
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_after_double_dash() {
        let cli = Cli::try_parse_from(["memorun", "-e", "HOME", "--", "stats", "-v"]).unwrap();
        assert_eq!(cli.run.env, vec!["HOME"]);
        assert_eq!(cli.run.command, vec!["stats", "-v"]);
        assert!(!cli.run.verbose);
        assert!(cli.subcommand.is_none());
    }

    #[test]
    fn why_takes_run_options() {
        let cli =
            Cli::try_parse_from(["memorun", "why", "--json", "-i", "x", "--", "why"]).unwrap();
        let Some(Sub::Why { json, run }) = cli.subcommand else {
            panic!("expected why")
        };
        assert!(json);
        assert_eq!(run.input, vec!["x"]);
        assert_eq!(run.command, vec!["why"]);
        let cli = Cli::try_parse_from(["memorun", "--", "why"]).unwrap();
        assert!(cli.subcommand.is_none());
        assert_eq!(cli.run.command, vec!["why"]);
    }
}
