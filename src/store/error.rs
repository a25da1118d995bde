//! Why the local store could not be opened, or a command that reads every
//! entry (`stats`, `list`, `clear`) failed, typed: the caller decides on
//! the variant (wait and retry while busy, no reset hint for a store made
//! by a newer memorun, salvage a damaged entries table), never on an
//! error's text or by downcasting.
//!
//! Invariant: every variant shows as the error it wraps did (`Display` and
//! `source` are the inner error's), so messages are those of before.

use std::fmt;

/// Why the store could not be opened or prepared, or read whole.
#[derive(Debug)]
pub enum Error {
    /// Another connection held a lock past the busy timeout.
    Busy(rusqlite::Error),
    /// The store was made by a newer memorun (not damaged): its schema
    /// version, and the newest this memorun reads.
    TooNew {
        /// The store's schema version.
        found: i64,
        /// This memorun's.
        supported: i64,
    },
    /// Not a memorun store, or a damaged one.
    Corrupt(rusqlite::Error),
    /// Creating or reading a file of the store failed.
    Io(std::io::Error),
    /// Any other SQLite failure.
    Sqlite(rusqlite::Error),
    /// Anything else, with its context.
    Other(anyhow::Error),
}

impl Error {
    /// Whether it says the store is fine but in use or newer: no hint to
    /// reset it.
    pub fn is_usable_later(&self) -> bool {
        matches!(self, Error::Busy(_) | Error::TooNew { .. })
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, NotADatabase};
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                DatabaseBusy | DatabaseLocked => Error::Busy(e),
                DatabaseCorrupt | NotADatabase => Error::Corrupt(e),
                _ => Error::Sqlite(e),
            },
            _ => Error::Sqlite(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        Error::Other(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Busy(e) | Error::Corrupt(e) | Error::Sqlite(e) => e.fmt(f),
            Error::TooNew { found, supported } => write!(
                f,
                "the store has schema version {found}, newer than this memorun ({supported})"
            ),
            Error::Io(e) => e.fmt(f),
            Error::Other(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Busy(e) | Error::Corrupt(e) | Error::Sqlite(e) => e.source(),
            Error::TooNew { .. } => None,
            Error::Io(e) => e.source(),
            Error::Other(e) => e.chain().nth(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_locked_are_busy_and_a_non_database_is_corrupt() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert!(matches!(
            Error::from(failure(rusqlite::ffi::SQLITE_BUSY)),
            Error::Busy(_)
        ));
        assert!(matches!(
            Error::from(failure(rusqlite::ffi::SQLITE_LOCKED)),
            Error::Busy(_)
        ));
        assert!(matches!(
            Error::from(failure(rusqlite::ffi::SQLITE_NOTADB)),
            Error::Corrupt(_)
        ));
        assert!(matches!(
            Error::from(failure(rusqlite::ffi::SQLITE_FULL)),
            Error::Sqlite(_)
        ));
    }
}
