//! The command-line interface: clap definitions and nothing else.
//!
//! The doc comments on the fields are the `--help` text. Turning these raw
//! arguments into memorun's own configuration happens in `config`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

const AFTER_HELP: &str = "\
Examples:
  memorun -- ./slow-report.sh --month 2026-10 data/sales.csv
  memorun -e 'AWS_*' -- aws s3 ls s3://bucket
  memorun -v -- make -C docs

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
    max_term_width = 100
)]
pub struct Cli {
    /// Options for running or replaying a command.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options for running or replaying a command.
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

    /// Also record runs that exit with a non-zero code
    ///
    /// By default only exit 0 is recorded. A run killed by a signal is never
    /// recorded. Example: `memorun --cache-failures -- ./lint.sh`.
    #[arg(long, help_heading = "Cache policy")]
    pub cache_failures: bool,

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

    /// Where the store lives
    ///
    /// Defaults to $XDG_CACHE_HOME/memorun, else ~/.cache/memorun. The
    /// directory is created with mode 0700. Example:
    /// `memorun --cache-dir .memorun -- make`.
    #[arg(long, value_name = "DIR", env = "MEMORUN_DIR", help_heading = "Store")]
    pub cache_dir: Option<PathBuf>,

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
    }
}
