//! The database schema, in one place ([`SCHEMA`]), and what opening a
//! database does about its version.
//!
//! A store is recognized by two numbers in the database header: `PRAGMA
//! application_id` is [`APPLICATION_ID`] on every store memorun creates, and
//! `PRAGMA user_version` is its schema version. Under the caller's `BEGIN
//! IMMEDIATE` transaction, [`prepare`]:
//!
//! - creates a new database from [`SCHEMA`], at [`SCHEMA_VERSION`];
//! - upgrades an older version in place, one step per version (see
//!   `STEPS`), so that a crash mid-upgrade leaves the old version intact;
//! - refuses a newer version ([`Error::TooNew`]: the caller runs uncached);
//! - rebuilds, empty, a store made by a development version of memorun
//!   before the schema was frozen: those have no application id and a
//!   `user_version` from 1 to 6, numbers that now mean something else. A
//!   store is a cache, so dropping its entries costs only misses.

use anyhow::Result;

use super::error::Error;
use rusqlite::{Connection, Transaction};

/// The statements of `blob_total` and its triggers: part of [`SCHEMA`],
/// and what [`to_version_6`] adds to an older store.
macro_rules! blob_total {
    () => {
        "CREATE TABLE blob_total (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT INTO blob_total (id, bytes) SELECT 0, COALESCE(SUM(len), 0) FROM blobs;
CREATE TRIGGER blob_total_insert AFTER INSERT ON blobs BEGIN
    UPDATE blob_total SET bytes = bytes + NEW.len;
END;
CREATE TRIGGER blob_total_delete AFTER DELETE ON blobs BEGIN
    UPDATE blob_total SET bytes = bytes - OLD.len;
END;
CREATE TRIGGER blob_total_update AFTER UPDATE OF len ON blobs BEGIN
    UPDATE blob_total SET bytes = bytes - OLD.len + NEW.len;
END;
"
    };
}

/// Every table and index of a store, as a new one is created. The
/// digests are 32-byte BLAKE3 digests; times are milliseconds since the
/// Unix epoch unless the column says otherwise.
///
/// To change it: change this, add the step that brings a store at the
/// previous version here to `STEPS` (which bumps [`SCHEMA_VERSION`]), and
/// test that step on a store of the previous version.
pub const SCHEMA: &str = concat!(
    "
-- One row per recorded run, under its key. An ordinary (rowid) table, with
-- the large columns last: a lookup reads the key's index, then the row only
-- up to the columns it asks for (SQLite follows a row's overflow pages from
-- the start, and a WITHOUT ROWID table would load every row it compares in
-- full, components and all).
CREATE TABLE entries (
    key           BLOB PRIMARY KEY,
    -- The digest of the argv after --ignore-arg (Key::command): the same
    -- for all runs of one command, in any directory.
    argv_digest   BLOB NOT NULL,
    -- The command line, shell-quoted, for list, stats and why.
    display       TEXT NOT NULL,
    -- The working directory, raw bytes.
    cwd           BLOB NOT NULL,
    created       INTEGER NOT NULL,
    -- The latest replay (or the recording); eviction removes the oldest.
    last_used     INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    exit_code     INTEGER NOT NULL,
    hits          INTEGER NOT NULL DEFAULT 0,
    -- How far the command read a regular file on its stdin: a replay leaves
    -- the file offset there.
    stdin_advance INTEGER NOT NULL DEFAULT 0,
    -- The disk space its hit record takes (store::records), or NULL when it
    -- has none: records are a cache of the recently used entries, within a
    -- budget (store::record_budget). Set in the transaction that counts the
    -- record, before the record is named; cleared in the one that deletes it.
    record        INTEGER,
    -- Three streams, each a length, the digest of its bytes and the bytes
    -- themselves when small (*_inline), else NULL and a blob file named by
    -- the digest: stdout (out_*), stderr (err_*), and the order in which
    -- the command interleaved the two (order_*: Entry::order, see
    -- replay::interleaving).
    out_len       INTEGER NOT NULL,
    out_digest    BLOB NOT NULL,
    err_len       INTEGER NOT NULL,
    err_digest    BLOB NOT NULL,
    order_len       INTEGER NOT NULL,
    order_digest    BLOB NOT NULL,
    -- Entry::checksum of everything a replay uses: a row damaged on disk is
    -- a miss, not a wrong replay.
    checksum      BLOB,
    out_inline    BLOB,
    err_inline    BLOB,
    order_inline    BLOB,
    -- The output files the run left (see outputs::files): paths, types,
    -- modes, symlink targets, and file content inline or by blob digest;
    -- NULL for none.
    outputs       BLOB,
    -- The key's components, JSON, for why: megabytes for a command with
    -- thousands of inputs, hence last.
    components    TEXT NOT NULL
);
-- The recent entries of a command, for why and the previous duration.
CREATE INDEX entries_by_argv_digest ON entries (argv_digest, created);
-- Eviction, least recently used first.
CREATE INDEX entries_by_last_used ON entries (last_used);
-- list (newest first) and stats (oldest and newest).
CREATE INDEX entries_by_created ON entries (created);
-- The entries with a hit record, least recently used first: whose record
-- goes when the records are over their budget (store::record_budget).
CREATE INDEX entries_with_record ON entries (last_used, key, record)
  WHERE record IS NOT NULL;

-- The blob files, by digest, with the number of entry streams naming each:
-- a blob whose count drops to zero is removed (see store::refs).
CREATE TABLE blobs (
    digest BLOB PRIMARY KEY,
    len    INTEGER NOT NULL,
    refs   INTEGER NOT NULL,
    -- An XXH3-128 of the content: the fast check a replay verifies it with
    -- (BLAKE3 when it is NULL).
    xxh3   BLOB
) WITHOUT ROWID;

-- The bytes of all blobs, kept by triggers in every write to blobs, so that
-- the size limit and the records' budget are checked after every write
-- without summing a table of a million blobs (tens of ms).
",
    blob_total!(),
    "-- The blobs that an entry's output files are stored in (see outputs::files),
-- each once per entry: counted in blobs.refs like the streams' blobs.
CREATE TABLE file_blobs (
    key    BLOB NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (key, digest)
) WITHOUT ROWID;

-- The trace manifests of traced commands (see key::traced): under the key
-- computed before a traced run (base_key), the inputs that run used with
-- their states (paths, Manifest::encode; inputs, how many); its entry is
-- under entry_key.
CREATE TABLE manifests (
    base_key  BLOB NOT NULL,
    digest    BLOB NOT NULL,
    entry_key BLOB NOT NULL,
    inputs    INTEGER NOT NULL,
    paths     BLOB NOT NULL,
    PRIMARY KEY (base_key, digest)
) WITHOUT ROWID;
-- A manifest goes with its entry.
CREATE INDEX manifests_by_entry ON manifests (entry_key);

-- The stat cache (see store::statcache): a file's digest by absolute path,
-- trusted while its stat is unchanged.
CREATE TABLE stat_cache (
    path         BLOB PRIMARY KEY,
    dev          INTEGER NOT NULL,
    ino          INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    ctime_ns     INTEGER NOT NULL,
    digest       BLOB NOT NULL,
    -- When hashing started, ns: a stat this close to it is racy.
    hashed_at_ns INTEGER NOT NULL
) WITHOUT ROWID;

-- The next three are per command in its directory: `command_in_dir` is
-- store::manifest(argv_digest, cwd) of the command's entries.

-- Why the latest run of a command was not recorded, for why.
CREATE TABLE notes (
    command_in_dir BLOB PRIMARY KEY,
    note           TEXT NOT NULL,
    at             INTEGER NOT NULL
) WITHOUT ROWID;

-- The arguments runs of a command created: outputs, not inputs, from then on.
CREATE TABLE outputs (
    command_in_dir BLOB NOT NULL,
    path           BLOB NOT NULL,
    PRIMARY KEY (command_in_dir, path)
) WITHOUT ROWID;

-- The time replays of a command saved, kept beyond its entries (a clear,
-- eviction, a re-record), so that stats' top commands add up to the total.
CREATE TABLE saved (
    command_in_dir BLOB PRIMARY KEY,
    -- The latest command line recorded for it.
    display        TEXT NOT NULL,
    hits           INTEGER NOT NULL,
    saved_ms       INTEGER NOT NULL
) WITHOUT ROWID;

-- The counters of stats (see store::counters), sharded by pid so that
-- concurrent runs do not all update one row.
CREATE TABLE counters (
    name  TEXT NOT NULL,
    shard INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (name, shard)
) WITHOUT ROWID;

-- Single values by name: `zeroed_at`, when stats --zero last ran.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
"
);

/// `PRAGMA application_id` of every store memorun creates: "mRun". A store
/// without it was made by a development version, or by something else.
pub const APPLICATION_ID: i32 = 0x6d52_756e;

/// The `user_version`s of the development versions of memorun, which had
/// no application id (their schema history was dropped before release).
const DEVELOPMENT_VERSIONS: std::ops::RangeInclusive<i64> = 1..=6;

/// An upgrade from one schema version to the next, in the caller's
/// transaction.
type Step = fn(&Transaction<'_>) -> Result<()>;

/// The upgrades, in order: `STEPS[0]` takes a store at version 1 to version
/// 2, and so on.
const STEPS: &[Step] = &[
    to_version_2,
    to_version_3,
    to_version_4,
    to_version_5,
    to_version_6,
];

/// Version 6 keeps the blobs' total size in `blob_total`, by triggers,
/// instead of summing `blobs` after every write. A memorun at version 5
/// would write blobs through the same triggers (they are in the database)
/// but is refused the store as too new all the same, as every older one.
fn to_version_6(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(blob_total!())?;
    Ok(())
}

/// Version 5 keeps hit records of the recently used entries only, within
/// a budget (`store::record_budget`): `entries.record` says which entries
/// have one. Its caller deletes every record on any upgrade, so that `NULL`
/// (none) is true of every row. A memorun at version 4 would publish
/// records without setting it (and never drop them): it refuses the store
/// as too new.
fn to_version_5(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE entries ADD COLUMN record INTEGER;
         CREATE INDEX entries_with_record ON entries (last_used, key, record)
           WHERE record IS NOT NULL;",
    )?;
    Ok(())
}

/// Version 4 changes no table: it marks a store whose entries may have hit
/// records (`store::records`), files beside the database that a memorun
/// without them would not delete with their rows. Such a memorun refuses
/// the store as too new (and runs uncached) instead of leaving a record
/// that outlives its entry. Its caller deletes every record on any upgrade.
fn to_version_4(_tx: &Transaction<'_>) -> Result<()> {
    Ok(())
}

/// Version 3 traces commands (`--trace`): the `manifests` table.
fn to_version_3(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE manifests (
             base_key BLOB NOT NULL, digest BLOB NOT NULL, entry_key BLOB NOT NULL,
             inputs INTEGER NOT NULL, paths BLOB NOT NULL, PRIMARY KEY (base_key, digest)
         ) WITHOUT ROWID;
         CREATE INDEX manifests_by_entry ON manifests (entry_key);",
    )?;
    Ok(())
}

/// Version 2 captures output files (`outputs::files`): the `file_blobs`
/// table, and a new encoding of `entries.outputs` with checksum version 2.
/// Entries that had outputs (version 1 kept only their digests, so a hit
/// could not restore them) are removed; the others are re-sealed, if their
/// version-1 checksum holds (one that does not stays as it is, and is found
/// corrupt when looked up).
fn to_version_2(tx: &Transaction<'_>) -> Result<()> {
    use super::entry_row::{ENTRY_COLUMNS, decode_entry};
    tx.execute_batch(
        "CREATE TABLE file_blobs (
             key BLOB NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (key, digest)
         ) WITHOUT ROWID;",
    )?;
    // Written against the tables as they are at version 1 (a later step
    // may change them): their blob references go, then they do. The blob
    // files no entry names are collected by the next `clear`.
    tx.execute_batch(
        "WITH gone (digest) AS (
             SELECT out_digest FROM entries
               WHERE outputs IS NOT NULL AND out_inline IS NULL AND out_len > 0
             UNION ALL
             SELECT err_digest FROM entries
               WHERE outputs IS NOT NULL AND err_inline IS NULL AND err_len > 0
             UNION ALL
             SELECT order_digest FROM entries
               WHERE outputs IS NOT NULL AND order_inline IS NULL AND order_len > 0
         ), counts (digest, n) AS (SELECT digest, COUNT(*) FROM gone GROUP BY digest)
         UPDATE blobs SET refs = refs - (SELECT n FROM counts WHERE counts.digest = blobs.digest)
           WHERE digest IN (SELECT digest FROM counts);
         DELETE FROM entries WHERE outputs IS NOT NULL;
         DELETE FROM blobs WHERE refs <= 0;",
    )?;
    let resealed: Vec<(Vec<u8>, Vec<u8>)> = tx
        .prepare(&format!("SELECT {ENTRY_COLUMNS} FROM entries"))?
        .query_map([], |row| Ok(decode_entry(row, 0).ok()))?
        .filter_map(|r| r.ok().flatten())
        .filter(|(e, sum)| sum.as_deref() == Some(&e.seal(1).0[..]))
        .map(|(e, _)| (e.key.0.to_vec(), e.checksum().0.to_vec()))
        .collect();
    let mut update = tx.prepare("UPDATE entries SET checksum = ?2 WHERE key = ?1")?;
    for (key, sum) in resealed {
        update.execute(rusqlite::params![key, sum])?;
    }
    Ok(())
}

/// The version of [`SCHEMA`], kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1 + STEPS.len() as i64;

/// What a database is, by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A new, empty database.
    Empty,
    /// A store at this schema version: current, older or newer.
    Store(i64),
    /// A store made by a development version of memorun.
    Development,
    /// Something else: an application id or version memorun never wrote.
    Foreign(i32, i64),
}

/// Read what the database is. This is all a store at the current version
/// costs to open: two header reads, no table.
pub fn found(conn: &Connection) -> rusqlite::Result<Found> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    Ok(match (id, version) {
        (APPLICATION_ID, v) if v > 0 => Found::Store(v),
        (0, 0) => Found::Empty,
        (0, v) if DEVELOPMENT_VERSIONS.contains(&v) => Found::Development,
        (id, v) => Found::Foreign(id, v),
    })
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Nothing: the store is at the current version.
    Current,
    /// A new store.
    Created,
    /// Upgraded in place from this version.
    Upgraded(i64),
    /// A development version's store, replaced by an empty one.
    Rebuilt,
}

/// Bring the database to [`SCHEMA_VERSION`], in the caller's write
/// transaction (see the module comment).
pub fn prepare(tx: &Transaction<'_>) -> Result<Prepared, Error> {
    match found(tx)? {
        Found::Store(SCHEMA_VERSION) => Ok(Prepared::Current),
        Found::Store(v) if v > SCHEMA_VERSION => Err(Error::TooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Found::Store(v) => {
            upgrade(tx, v, STEPS)?;
            Ok(Prepared::Upgraded(v))
        }
        Found::Empty => {
            create(tx)?;
            Ok(Prepared::Created)
        }
        Found::Development => {
            drop_all(tx)?;
            create(tx)?;
            Ok(Prepared::Rebuilt)
        }
        Found::Foreign(id, v) => Err(Error::Other(anyhow::anyhow!(
            "not a memorun store (application id {id:#x}, schema version {v})"
        ))),
    }
}

/// Create the tables of [`SCHEMA`] and mark the database as a store at
/// [`SCHEMA_VERSION`].
fn create(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(&compact(SCHEMA))?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// `sql` without its comments and indentation. SQLite keeps the text of
/// each `CREATE` statement and parses it again whenever a connection opens
/// the database: every run. (The schema has no string literals, in which
/// `--` would not start a comment.)
fn compact(sql: &str) -> String {
    let lines = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or("").trim());
    lines
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drop every table (and with them their indexes) of a development
/// version's store.
fn drop_all(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let tables: Vec<String> = tx
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in tables {
        tx.execute_batch(&format!("DROP TABLE \"{}\"", table.replace('"', "\"\"")))?;
    }
    Ok(())
}

/// Run `steps` from version `from` on, and record the version they reach.
fn upgrade(tx: &Transaction<'_>, from: i64, steps: &[Step]) -> Result<(), Error> {
    let first = usize::try_from(from - 1).map_err(anyhow::Error::from)?;
    // A step runs under the write lock the caller holds: its failure is
    // never a busy one.
    for step in steps.get(first..).unwrap_or_default() {
        step(tx)?;
    }
    tx.pragma_update(None, "user_version", 1 + steps.len() as i64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::TransactionBehavior;

    fn prepared(conn: &Connection) -> Result<Prepared, Error> {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let done = prepare(&tx)?;
        tx.commit()?;
        Ok(done)
    }

    fn header(conn: &Connection) -> (i32, i64) {
        let id = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        let v = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        (id, v)
    }

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_schema ORDER BY type, name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_new_store_is_created_at_the_current_version_from_the_schema() {
        assert_eq!(SCHEMA_VERSION, 6);
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(found(&conn).unwrap(), Found::Empty);
        assert_eq!(prepared(&conn).unwrap(), Prepared::Created);
        assert_eq!(header(&conn), (APPLICATION_ID, 6));
        assert_eq!(found(&conn).unwrap(), Found::Store(6));
        // Exactly what the one constant declares, stored without comments.
        let reference = Connection::open_in_memory().unwrap();
        reference.execute_batch(SCHEMA).unwrap();
        assert_eq!(tables(&conn), tables(&reference));
        let stored: Vec<String> = conn
            .prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(stored.iter().all(|s| !s.contains("--")), "{stored:?}");
        // No string literal, in which `--` would not start a comment.
        assert!(!compact(SCHEMA).contains('\''));
        // Opened again: nothing to do.
        assert_eq!(prepared(&conn).unwrap(), Prepared::Current);
    }

    #[test]
    fn a_development_store_is_rebuilt_empty() {
        for version in DEVELOPMENT_VERSIONS {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch(
                "CREATE TABLE entries (key BLOB PRIMARY KEY, command BLOB NOT NULL) WITHOUT ROWID;
                 CREATE INDEX entries_by_command ON entries (command);
                 CREATE TABLE notes (command BLOB PRIMARY KEY, note TEXT, at INTEGER);
                 INSERT INTO entries VALUES (x'01', x'02');",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
            assert_eq!(found(&conn).unwrap(), Found::Development);
            assert_eq!(prepared(&conn).unwrap(), Prepared::Rebuilt);
            assert_eq!(header(&conn), (APPLICATION_ID, SCHEMA_VERSION));
            let reference = Connection::open_in_memory().unwrap();
            reference.execute_batch(SCHEMA).unwrap();
            assert_eq!(tables(&conn), tables(&reference));
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "version {version}");
        }
    }

    #[test]
    fn a_newer_store_is_refused_untouched() {
        let conn = Connection::open_in_memory().unwrap();
        prepared(&conn).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = prepared(&conn).unwrap_err();
        assert!(matches!(e, Error::TooNew { .. }), "{e:#}");
        assert_eq!(header(&conn), (APPLICATION_ID, SCHEMA_VERSION + 1));
    }

    #[test]
    fn a_database_memorun_did_not_make_is_refused() {
        for (id, version) in [(0x1234, 0), (0, 7), (0, -1), (APPLICATION_ID, 0)] {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch("CREATE TABLE mine (x)").unwrap();
            conn.pragma_update(None, "application_id", id).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
            assert_eq!(found(&conn).unwrap(), Found::Foreign(id, version));
            assert!(prepared(&conn).is_err());
            assert_eq!(tables(&conn), ["mine"]);
        }
    }

    /// Version 1 to 2: entries with (digest-only) outputs go, with their
    /// blob references; the others are re-sealed and still replay; an
    /// entry that failed its version-1 checksum is not laundered.
    #[test]
    fn version_1_stores_are_upgraded_keeping_entries_without_outputs() {
        use crate::base::Digest;
        use crate::store::{Entry, StoredStream};
        let conn = Connection::open_in_memory().unwrap();
        prepared(&conn).unwrap();
        // Back to version 1: no file_blobs.
        conn.execute_batch(
            "DROP TABLE file_blobs; DROP TABLE manifests; DROP INDEX entries_with_record;
             ALTER TABLE entries DROP COLUMN record; PRAGMA user_version = 1;
             DROP TRIGGER blob_total_insert; DROP TRIGGER blob_total_delete;
             DROP TRIGGER blob_total_update; DROP TABLE blob_total;",
        )
        .unwrap();
        let entry = |k: u8| Entry {
            key: Digest([k; 32]),
            created_ms: 1_700_000_000_000,
            duration: std::time::Duration::from_millis(5),
            exit_code: 0,
            stdout: StoredStream {
                len: 0,
                digest: Digest::from(blake3::hash(b"")),
                inline: Some(Vec::new()),
            },
            stderr: StoredStream {
                len: 0,
                digest: Digest::from(blake3::hash(b"")),
                inline: Some(Vec::new()),
            },
            order: StoredStream {
                len: 10,
                digest: Digest([9; 32]),
                inline: None,
            },
            outputs: Vec::new(),
            stdin_advance: 0,
        };
        let insert = |e: &Entry, outputs: Option<Vec<u8>>, sum: Digest| {
            conn.execute(
                "INSERT INTO entries (key, argv_digest, display, cwd, created, last_used,
                   duration_ms, exit_code, out_len, out_digest, out_inline, err_len, err_digest,
                   err_inline, order_len, order_digest, outputs, checksum, components)
                 VALUES (?1, x'02', 'cmd', x'', ?2, ?2, 5, 0, 0, ?3, x'', 0, ?3, x'', 10, ?4,
                   ?5, ?6, '[]')",
                rusqlite::params![
                    &e.key.0[..],
                    e.created_ms,
                    &e.stdout.digest.0[..],
                    &e.order.digest.0[..],
                    outputs,
                    &sum.0[..]
                ],
            )
            .unwrap();
        };
        let (kept, with_outputs, damaged) = (entry(1), entry(2), entry(3));
        insert(&kept, None, kept.seal(1));
        // Version 1's outputs: (u32 length, path, digest).
        let mut old = 5u32.to_le_bytes().to_vec();
        old.extend_from_slice(b"out.o");
        old.extend_from_slice(&[5; 32]);
        insert(&with_outputs, Some(old), with_outputs.seal(1));
        insert(&damaged, None, Digest([0; 32]));
        conn.execute(
            "INSERT INTO blobs (digest, len, refs) VALUES (?1, 10, 3)",
            [&[9u8; 32][..]],
        )
        .unwrap();
        assert_eq!(prepared(&conn).unwrap(), Prepared::Upgraded(1));
        assert_eq!(header(&conn), (APPLICATION_ID, SCHEMA_VERSION));
        let rows: Vec<(Vec<u8>, Vec<u8>)> = conn
            .prepare("SELECT key, checksum FROM entries ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (kept.key.0.to_vec(), kept.checksum().0.to_vec()),
                (damaged.key.0.to_vec(), vec![0; 32]),
            ]
        );
        let refs: i64 = conn
            .query_row("SELECT refs FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(refs, 2, "the removed entry's blob reference stayed");
        let reference = Connection::open_in_memory().unwrap();
        reference.execute_batch(SCHEMA).unwrap();
        assert_eq!(tables(&conn), tables(&reference));
    }

    /// Version 4 to 5: the entries stay, none with a record (the caller
    /// deletes every record on an upgrade), and the oldest with one are
    /// found through the new index.
    #[test]
    fn version_4_stores_are_upgraded_with_no_entry_having_a_record() {
        let conn = Connection::open_in_memory().unwrap();
        prepared(&conn).unwrap();
        conn.execute_batch(
            "DROP INDEX entries_with_record; ALTER TABLE entries DROP COLUMN record;
             DROP TRIGGER blob_total_insert; DROP TRIGGER blob_total_delete;
             DROP TRIGGER blob_total_update; DROP TABLE blob_total;
             PRAGMA user_version = 4;
             INSERT INTO entries (key, argv_digest, display, cwd, created, last_used,
               duration_ms, exit_code, out_len, out_digest, err_len, err_digest,
               order_len, order_digest, components)
             VALUES (x'01', x'02', 'cmd', x'', 1, 1, 1, 0, 0, x'', 0, x'', 0, x'', '[]');",
        )
        .unwrap();
        assert_eq!(prepared(&conn).unwrap(), Prepared::Upgraded(4));
        assert_eq!(header(&conn), (APPLICATION_ID, SCHEMA_VERSION));
        let record: Option<i64> = conn
            .query_row("SELECT record FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(record, None);
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT key, record FROM entries
                 WHERE record IS NOT NULL ORDER BY last_used LIMIT 10",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("entries_with_record"), "{plan}");
        let reference = Connection::open_in_memory().unwrap();
        reference.execute_batch(SCHEMA).unwrap();
        assert_eq!(tables(&conn), tables(&reference));
    }

    /// Version 6: the blobs' total, summed once when upgrading, then kept
    /// by the triggers through every insert, delete and change of a blob.
    #[test]
    fn version_5_stores_are_upgraded_with_the_blobs_total_kept_by_triggers() {
        let conn = Connection::open_in_memory().unwrap();
        prepared(&conn).unwrap();
        conn.execute_batch(
            "DROP TRIGGER blob_total_insert; DROP TRIGGER blob_total_delete;
             DROP TRIGGER blob_total_update; DROP TABLE blob_total;
             PRAGMA user_version = 5;
             INSERT INTO blobs (digest, len, refs) VALUES (x'01', 100, 1), (x'02', 20, 2);",
        )
        .unwrap();
        assert_eq!(prepared(&conn).unwrap(), Prepared::Upgraded(5));
        let total = |conn: &Connection| -> (i64, i64) {
            conn.query_row(
                "SELECT (SELECT bytes FROM blob_total), (SELECT COALESCE(SUM(len), 0) FROM blobs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(total(&conn), (120, 120));
        conn.execute_batch(
            "INSERT INTO blobs (digest, len, refs) VALUES (x'03', 7, 1);
             UPDATE blobs SET refs = refs - 1 WHERE digest = x'02';
             DELETE FROM blobs WHERE digest = x'01';
             UPDATE blobs SET len = 30 WHERE digest = x'02';",
        )
        .unwrap();
        assert_eq!(total(&conn), (37, 37));
        // A new store starts at nothing, and its triggers count too.
        let fresh = Connection::open_in_memory().unwrap();
        prepared(&fresh).unwrap();
        assert_eq!(total(&fresh), (0, 0));
        fresh
            .execute(
                "INSERT INTO blobs (digest, len, refs) VALUES (x'09', 5, 1)",
                [],
            )
            .unwrap();
        assert_eq!(total(&fresh), (5, 5));
        let reference = Connection::open_in_memory().unwrap();
        reference.execute_batch(SCHEMA).unwrap();
        assert_eq!(tables(&conn), tables(&reference));
    }

    /// How the next schema change will upgrade stores in place: a step per
    /// version, in the opening transaction, keeping the entries.
    #[test]
    fn a_step_upgrades_a_store_in_place() {
        fn add_column(tx: &Transaction<'_>) -> Result<()> {
            tx.execute_batch("ALTER TABLE entries ADD COLUMN label TEXT NOT NULL DEFAULT 'x'")?;
            Ok(())
        }
        let conn = Connection::open_in_memory().unwrap();
        prepared(&conn).unwrap();
        conn.execute(
            "INSERT INTO entries (key, argv_digest, display, cwd, created, last_used,
               duration_ms, exit_code, out_len, out_digest, err_len, err_digest,
               order_len, order_digest, components)
             VALUES (x'01', x'02', 'cmd', x'', 1, 1, 1, 0, 0, x'', 0, x'', 0, x'', '[]')",
            [],
        )
        .unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        upgrade(&tx, 1, &[add_column]).unwrap();
        tx.commit().unwrap();
        assert_eq!(header(&conn), (APPLICATION_ID, 2));
        let (display, label): (String, String) = conn
            .query_row("SELECT display, label FROM entries", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((display.as_str(), label.as_str()), ("cmd", "x"));
        // A store already at version 2 runs no step.
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        upgrade(&tx, 2, &[add_column]).unwrap();
        tx.commit().unwrap();
    }
}
