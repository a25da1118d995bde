//! Why memorun ends without the command's own exit status, and the one
//! place that maps each reason to its exit code.
//!
//! On a miss and on a replay memorun exits with the command's code; a
//! [`Failure`] is everything else. The mapping is an exhaustive `match`,
//! so which paths can end with 125, 126 or 127 is visible in the types.

use crate::exec::spawn::SpawnError;
use crate::exit_codes;
use crate::term::ui;

/// Why memorun ends without the command's own exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command line or the configuration is wrong, or an input is
    /// refused: nothing ran (125).
    Usage(anyhow::Error),
    /// The command could not be started: 127 when it was not found, 126
    /// when it could not be executed.
    Spawn(SpawnError),
    /// memorun itself failed where there is no command to fall back to:
    /// `why`, `stats`, `list` or `clear` on a store they cannot use, or
    /// writing their output (125).
    Memorun(anyhow::Error),
}

impl Failure {
    /// The exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Usage(_) => exit_codes::MEMORUN_ERROR,
            Failure::Spawn(e) => e.exit_code(),
            Failure::Memorun(_) => exit_codes::MEMORUN_ERROR,
        }
    }

    /// Say what went wrong, once, as `memorun: ...` on stderr.
    pub fn report(&self) {
        match self {
            Failure::Usage(e) | Failure::Memorun(e) => ui::error(format_args!("{e:#}")),
            Failure::Spawn(e) => ui::error(e),
        }
    }
}

impl From<SpawnError> for Failure {
    fn from(e: SpawnError) -> Failure {
        Failure::Spawn(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn each_failure_has_its_exit_code() {
        let spawn = |kind| {
            Failure::Spawn(SpawnError {
                program: "x".into(),
                error: io::Error::from(kind),
            })
        };
        assert_eq!(spawn(io::ErrorKind::NotFound).exit_code(), 127);
        assert_eq!(spawn(io::ErrorKind::PermissionDenied).exit_code(), 126);
        assert_eq!(Failure::Usage(anyhow::anyhow!("x")).exit_code(), 125);
        assert_eq!(Failure::Memorun(anyhow::anyhow!("x")).exit_code(), 125);
    }
}
