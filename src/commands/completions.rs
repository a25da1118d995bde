//! `memorun completions SHELL`: completion scripts generated from the clap
//! definitions, the same ones committed in `completions/`.

use clap::CommandFactory;

use crate::cli::Cli;

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "memorun", &mut out);
    out
}

/// Print the completion script for `shell`; returns the exit code.
pub(crate) fn print(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    crate::term::output::print_stdout(&script(shell))
}
