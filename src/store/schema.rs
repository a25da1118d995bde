//! The database schema, its version, and upgrades from older versions.
//!
//! Invariant: `PRAGMA user_version` is the schema version. A new store is
//! created at [`SCHEMA_VERSION`]; an older one is upgraded in place, inside
//! the caller's `BEGIN IMMEDIATE` transaction, so a crash mid-upgrade leaves
//! the old version intact. A newer one is refused (the caller runs uncached).

use anyhow::{Result, bail};
use rusqlite::Transaction;

/// Version of the database schema, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 6;

/// Version 1: entries, the stat cache, notes and the output manifest.
const SCHEMA_V1: &str = "
CREATE TABLE entries (
    key         BLOB PRIMARY KEY,
    command     BLOB NOT NULL,
    display     TEXT NOT NULL,
    cwd         BLOB NOT NULL,
    components  TEXT NOT NULL,
    created     INTEGER NOT NULL,
    last_used   INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    exit_code   INTEGER NOT NULL,
    hits        INTEGER NOT NULL DEFAULT 0,
    out_len     INTEGER NOT NULL,
    out_digest  BLOB NOT NULL,
    out_inline  BLOB,
    err_len     INTEGER NOT NULL,
    err_digest  BLOB NOT NULL,
    err_inline  BLOB,
    ord_len     INTEGER NOT NULL,
    ord_digest  BLOB NOT NULL,
    ord_inline  BLOB
) WITHOUT ROWID;
CREATE INDEX entries_by_command ON entries (command, created);
CREATE INDEX entries_by_last_used ON entries (last_used);
CREATE TABLE stat_cache (
    path         BLOB PRIMARY KEY,
    dev          INTEGER NOT NULL,
    ino          INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    ctime_ns     INTEGER NOT NULL,
    digest       BLOB NOT NULL,
    hashed_at_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE notes (
    command BLOB PRIMARY KEY,
    note    TEXT NOT NULL,
    at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE outputs (
    command BLOB NOT NULL,
    path    BLOB NOT NULL,
    PRIMARY KEY (command, path)
) WITHOUT ROWID;
";

/// Version 2 adds blobs with reference counts (for size accounting,
/// eviction and collection) and an XXH3-128 fast integrity check (NULL for
/// blobs carried over from version 1, which are checked with BLAKE3),
/// sharded counters for `stats`, and a small key-value table.
const V1_TO_V2: &str = "
CREATE TABLE blobs (
    digest BLOB PRIMARY KEY,
    len    INTEGER NOT NULL,
    refs   INTEGER NOT NULL,
    xxh3   BLOB
) WITHOUT ROWID;
INSERT INTO blobs (digest, len, refs)
    SELECT digest, len, COUNT(*) FROM (
        SELECT out_digest AS digest, out_len AS len FROM entries WHERE out_inline IS NULL AND out_len > 0
        UNION ALL
        SELECT err_digest, err_len FROM entries WHERE err_inline IS NULL AND err_len > 0
        UNION ALL
        SELECT ord_digest, ord_len FROM entries WHERE ord_inline IS NULL AND ord_len > 0
    ) GROUP BY digest;
CREATE TABLE counters (
    name  TEXT NOT NULL,
    shard INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (name, shard)
) WITHOUT ROWID;
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
CREATE INDEX entries_by_created ON entries (created);
";

/// Version 3 records, per entry, the files the run left in place of the
/// arguments it creates (its outputs) with their digests, so that a replay
/// happens only while those files are still what the run left; and how far
/// the command read a regular file on its stdin ([`V3_STDIN_ADVANCE`]).
const V2_TO_V3: &str = "ALTER TABLE entries ADD COLUMN outputs BLOB;";

/// How far the command read a regular file on its stdin, so that a replay
/// leaves the file offset where the command would have. Part of version 3,
/// but the first builds at version 3 created stores without it: the upgrade
/// to version 4 adds it wherever it is missing.
const V3_STDIN_ADVANCE: &str =
    "ALTER TABLE entries ADD COLUMN stdin_advance INTEGER NOT NULL DEFAULT 0;";

/// Version 4 rebuilds `entries` as an ordinary (rowid) table, with its large
/// columns last: the key components (JSON, one object per input: megabytes
/// for a command with thousands of input files) after everything else.
/// In a WITHOUT ROWID table the whole row is the b-tree key, and a lookup
/// loads every row it compares against in full, overflow pages and all
/// (SQLite's documentation advises WITHOUT ROWID only for small rows); and
/// SQLite follows a row's overflow chain from its start, so a column after
/// `components` cost reading all of it. A lookup now reads the key's index
/// and the row up to the columns it asks for.
const V3_TO_V4: &str = "
CREATE TABLE entries_v4 (
    key           BLOB PRIMARY KEY,
    command       BLOB NOT NULL,
    display       TEXT NOT NULL,
    cwd           BLOB NOT NULL,
    created       INTEGER NOT NULL,
    last_used     INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    exit_code     INTEGER NOT NULL,
    hits          INTEGER NOT NULL DEFAULT 0,
    stdin_advance INTEGER NOT NULL DEFAULT 0,
    out_len       INTEGER NOT NULL,
    out_digest    BLOB NOT NULL,
    err_len       INTEGER NOT NULL,
    err_digest    BLOB NOT NULL,
    ord_len       INTEGER NOT NULL,
    ord_digest    BLOB NOT NULL,
    out_inline    BLOB,
    err_inline    BLOB,
    ord_inline    BLOB,
    outputs       BLOB,
    components    TEXT NOT NULL
);
INSERT INTO entries_v4
    (key, command, display, cwd, created, last_used, duration_ms, exit_code, hits,
     stdin_advance, out_len, out_digest, err_len, err_digest, ord_len, ord_digest,
     out_inline, err_inline, ord_inline, outputs, components)
    SELECT key, command, display, cwd, created, last_used, duration_ms, exit_code, hits,
           stdin_advance, out_len, out_digest, err_len, err_digest, ord_len, ord_digest,
           out_inline, err_inline, ord_inline, outputs, components
    FROM entries;
DROP TABLE entries;
ALTER TABLE entries_v4 RENAME TO entries;
CREATE INDEX entries_by_command ON entries (command, created);
CREATE INDEX entries_by_last_used ON entries (last_used);
CREATE INDEX entries_by_created ON entries (created);
";

/// Version 5 gives each entry a checksum over everything a replay uses
/// ([`crate::store::Entry::checksum`]), so that a row damaged on disk is
/// a miss instead of a wrong replay. The column goes before the large ones
/// (see version 4), which means rebuilding the table once more; the entries
/// carried over are sealed by [`seal_carried_over`].
const V4_TO_V5: &str = "
CREATE TABLE entries_v5 (
    key           BLOB PRIMARY KEY,
    command       BLOB NOT NULL,
    display       TEXT NOT NULL,
    cwd           BLOB NOT NULL,
    created       INTEGER NOT NULL,
    last_used     INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    exit_code     INTEGER NOT NULL,
    hits          INTEGER NOT NULL DEFAULT 0,
    stdin_advance INTEGER NOT NULL DEFAULT 0,
    out_len       INTEGER NOT NULL,
    out_digest    BLOB NOT NULL,
    err_len       INTEGER NOT NULL,
    err_digest    BLOB NOT NULL,
    ord_len       INTEGER NOT NULL,
    ord_digest    BLOB NOT NULL,
    checksum      BLOB,
    out_inline    BLOB,
    err_inline    BLOB,
    ord_inline    BLOB,
    outputs       BLOB,
    components    TEXT NOT NULL
);
INSERT INTO entries_v5
    (key, command, display, cwd, created, last_used, duration_ms, exit_code, hits,
     stdin_advance, out_len, out_digest, err_len, err_digest, ord_len, ord_digest,
     out_inline, err_inline, ord_inline, outputs, components)
    SELECT key, command, display, cwd, created, last_used, duration_ms, exit_code, hits,
           stdin_advance, out_len, out_digest, err_len, err_digest, ord_len, ord_digest,
           out_inline, err_inline, ord_inline, outputs, components
    FROM entries;
DROP TABLE entries;
ALTER TABLE entries_v5 RENAME TO entries;
CREATE INDEX entries_by_command ON entries (command, created);
CREATE INDEX entries_by_last_used ON entries (last_used);
CREATE INDEX entries_by_created ON entries (created);
";

/// Version 6 keeps the time replays saved per command (per manifest, see
/// [`crate::store::manifest`]), which outlives the command's entries: a
/// command recorded again after `make clean` or a `clear` keeps what its
/// earlier entries saved, so the top commands in `stats` add up to the
/// total. Filled from the entries carried over by [`seed_saved`].
const V5_TO_V6: &str = "
CREATE TABLE saved (
    command  BLOB PRIMARY KEY,
    display  TEXT NOT NULL,
    hits     INTEGER NOT NULL,
    saved_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Start each command's time saved, on the upgrade to version 6, from what
/// its entries carried over saved (all that is known of the past), named
/// after its latest entry. Rows that are not what memorun writes are left
/// out.
fn seed_saved(tx: &Transaction<'_>) -> Result<()> {
    let mut stmt = tx.prepare(
        "SELECT command, cwd, display, hits, hits * duration_ms FROM entries
         WHERE typeof(command) = 'blob' AND typeof(cwd) = 'blob' AND typeof(display) = 'text'
           AND typeof(hits) = 'integer' AND typeof(duration_ms) = 'integer'
         ORDER BY created",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut insert = tx.prepare(
        "INSERT INTO saved (command, display, hits, saved_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (command) DO UPDATE SET display = excluded.display,
           hits = hits + excluded.hits, saved_ms = saved_ms + excluded.saved_ms",
    )?;
    for row in rows {
        let (command, cwd, display, hits, saved) = row?;
        let Some(command) = crate::key::Digest::from_slice(&command) else {
            continue;
        };
        let manifest = crate::store::manifest(&command, &cwd);
        insert.execute(rusqlite::params![
            &manifest.0[..],
            display,
            hits.max(0),
            saved.max(0)
        ])?;
    }
    Ok(())
}

/// Compute the checksum of every entry an upgrade to version 5 carried
/// over. They are trusted as they are (nothing older can be verified); a
/// row that does not decode is left without one, and the first lookup of
/// it removes it as corrupt.
fn seal_carried_over(tx: &Transaction<'_>) -> Result<()> {
    let sealed: Vec<(i64, Vec<u8>)> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT rowid, {} FROM entries",
            super::entry_row::ENTRY_COLUMNS
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, super::entry_row::decode_entry(r, 1)))
        })?;
        let mut sealed = Vec::new();
        for row in rows {
            if let (rowid, Ok((entry, _))) = row? {
                sealed.push((rowid, entry.checksum().0.to_vec()));
            }
        }
        sealed
    };
    let mut stmt = tx.prepare("UPDATE entries SET checksum = ?1 WHERE rowid = ?2")?;
    for (rowid, checksum) in sealed {
        stmt.execute(rusqlite::params![checksum, rowid])?;
    }
    Ok(())
}

/// Bring the database from `version` to [`SCHEMA_VERSION`]. Returns the
/// version it upgraded from, or `None` for a fresh or current store.
pub fn migrate(tx: &Transaction<'_>, version: i64) -> Result<Option<i64>> {
    if version == SCHEMA_VERSION {
        return Ok(None);
    }
    if !(0..SCHEMA_VERSION).contains(&version) {
        bail!("the store has an unknown schema version {version}");
    }
    // Each step in turn, from the store's version on.
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if version < 2 {
        tx.execute_batch(V1_TO_V2)?;
    }
    if version < 3 {
        tx.execute_batch(V2_TO_V3)?;
    }
    let has_stdin_advance: bool = tx.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('entries') WHERE name = 'stdin_advance'",
        [],
        |r| r.get(0),
    )?;
    if !has_stdin_advance {
        tx.execute_batch(V3_STDIN_ADVANCE)?;
    }
    if version < 4 {
        tx.execute_batch(V3_TO_V4)?;
    }
    if version < 5 {
        tx.execute_batch(V4_TO_V5)?;
        seal_carried_over(tx)?;
    }
    tx.execute_batch(V5_TO_V6)?;
    seed_saved(tx)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok((version != 0).then_some(version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, TransactionBehavior};

    #[test]
    fn version_one_is_upgraded_in_place_with_blob_counts() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO entries VALUES (x'01', x'02', 'cmd', x'', '[]', 1, 1, 5, 0, 0,
             100000, x'aa', NULL, 3, x'bb', x'616263', 1, x'cc', x'00')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO entries VALUES (x'02', x'02', 'cmd', x'', '[]', 2, 2, 5, 0, 0,
             100000, x'aa', NULL, 0, x'dd', x'', 0, x'ee', x'')",
            [],
        )
        .unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        assert_eq!(migrate(&tx, 1).unwrap(), Some(1));
        tx.commit().unwrap();
        let (n, refs, len): (i64, i64, i64) = conn
            .query_row("SELECT COUNT(*), SUM(refs), SUM(len) FROM blobs", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((n, refs, len), (1, 2, 100000));
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn version_three_is_rebuilt_with_the_components_last() {
        let conn = Connection::open_in_memory().unwrap();
        for batch in [SCHEMA_V1, V1_TO_V2, V2_TO_V3, V3_STDIN_ADVANCE] {
            conn.execute_batch(batch).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO entries VALUES (x'01', x'02', 'cmd', x'03', '[1]', 5, 6, 7, 8, 9,
             10, x'aa', x'61', 11, x'bb', NULL, 12, x'cc', x'00', x'0102', 13)",
            [],
        )
        .unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        assert_eq!(migrate(&tx, 3).unwrap(), Some(3));
        tx.commit().unwrap();
        let last: String = conn
            .query_row(
                "SELECT name FROM pragma_table_info('entries') ORDER BY cid DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(last, "components");
        // Every value as SQL text: one comparison for all the columns.
        let row: String = conn
            .query_row(
                "SELECT quote(display) || ' ' || created || ' ' || hits || ' '
                        || quote(out_inline) || ' ' || quote(err_inline) || ' '
                        || quote(outputs) || ' ' || stdin_advance || ' ' || components
                 FROM entries WHERE key = x'01'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(row, "'cmd' 5 9 X'61' NULL X'0102' 13 [1]");
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'entries'
                   AND name LIKE 'entries_by_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 3);
    }

    #[test]
    fn an_early_version_three_store_without_stdin_advance_is_upgraded() {
        let conn = Connection::open_in_memory().unwrap();
        for batch in [SCHEMA_V1, V1_TO_V2, V2_TO_V3] {
            conn.execute_batch(batch).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO entries VALUES (x'01', x'02', 'cmd', x'03', '[1]', 5, 6, 7, 8, 9,
             10, x'aa', x'61', 11, x'bb', NULL, 12, x'cc', x'00', x'0102')",
            [],
        )
        .unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        assert_eq!(migrate(&tx, 3).unwrap(), Some(3));
        tx.commit().unwrap();
        let (advance, components): (i64, String) = conn
            .query_row(
                "SELECT stdin_advance, components FROM entries WHERE key = x'01'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((advance, components.as_str()), (0, "[1]"));
    }

    #[test]
    fn version_four_entries_are_sealed_on_the_way_to_five() {
        let conn = Connection::open_in_memory().unwrap();
        for batch in [SCHEMA_V1, V1_TO_V2, V2_TO_V3, V3_STDIN_ADVANCE, V3_TO_V4] {
            conn.execute_batch(batch).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        let insert = "INSERT INTO entries (key, command, display, cwd, created, last_used,
               duration_ms, exit_code, out_len, out_digest, out_inline, err_len, err_digest,
               ord_len, ord_digest, components)
             VALUES (?1, x'02', 'cmd', x'', 5, 6, 7, ?2, 1, ?3, x'61', 0, ?3, 0, ?3, '[]')";
        let digest = vec![3u8; 32];
        conn.execute(insert, rusqlite::params![vec![1u8; 32], 0, digest])
            .unwrap();
        // Not what memorun writes: an exit code that is not an integer.
        conn.execute(insert, rusqlite::params![vec![2u8; 32], "x", digest])
            .unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        assert_eq!(migrate(&tx, 4).unwrap(), Some(4));
        tx.commit().unwrap();
        let sums: Vec<Option<Vec<u8>>> = conn
            .prepare("SELECT checksum FROM entries ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let expected = crate::store::Entry {
            key: crate::key::Digest([1; 32]),
            created_ms: 5,
            duration: std::time::Duration::from_millis(7),
            exit_code: 0,
            stdout: crate::store::StoredStream {
                len: 1,
                digest: crate::key::Digest([3; 32]),
                inline: Some(b"a".to_vec()),
            },
            stderr: crate::store::StoredStream {
                len: 0,
                digest: crate::key::Digest([3; 32]),
                inline: None,
            },
            order: crate::store::StoredStream {
                len: 0,
                digest: crate::key::Digest([3; 32]),
                inline: None,
            },
            outputs: Vec::new(),
            stdin_advance: 0,
        }
        .checksum();
        assert_eq!(sums, [Some(expected.0.to_vec()), None]);
    }

    #[test]
    fn version_five_entries_start_the_time_saved_per_command() {
        let conn = Connection::open_in_memory().unwrap();
        let batches = [
            SCHEMA_V1,
            V1_TO_V2,
            V2_TO_V3,
            V3_STDIN_ADVANCE,
            V3_TO_V4,
            V4_TO_V5,
        ];
        for batch in batches {
            conn.execute_batch(batch).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        let insert = "INSERT INTO entries (key, command, display, cwd, created, last_used,
               duration_ms, exit_code, hits, out_len, out_digest, err_len, err_digest,
               ord_len, ord_digest, components)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 0, ?7, 0, x'', 0, x'', 0, x'', '[]')";
        let make = vec![2u8; 32];
        // Two entries of `make` in /a (the later one's display wins), one
        // in /b, and one whose hits are not a number.
        use rusqlite::types::Value;
        let rows = [
            (1u8, "make", &b"/a"[..], (1, 100), Value::from(2)),
            (2, "make -j4", b"/a", (2, 300), Value::from(1)),
            (3, "make", b"/b", (3, 50), Value::from(4)),
            (4, "make", b"/c", (4, 50), Value::from("x".to_string())),
        ];
        for (key, display, cwd, (created, duration), hits) in rows {
            conn.execute(
                insert,
                rusqlite::params![vec![key; 32], make, display, cwd, created, duration, hits],
            )
            .unwrap();
        }
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        assert_eq!(migrate(&tx, 5).unwrap(), Some(5));
        tx.commit().unwrap();
        let saved = |cwd: &[u8]| -> Option<(String, i64, i64)> {
            let m = crate::store::manifest(&crate::key::Digest([2; 32]), cwd);
            conn.query_row(
                "SELECT display, hits, saved_ms FROM saved WHERE command = ?1",
                [&m.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok()
        };
        assert_eq!(saved(b"/a"), Some(("make -j4".into(), 3, 500)));
        assert_eq!(saved(b"/b"), Some(("make".into(), 4, 200)));
        assert_eq!(saved(b"/c"), None);
    }

    #[test]
    fn newer_versions_are_refused() {
        let conn = Connection::open_in_memory().unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        assert!(migrate(&tx, SCHEMA_VERSION + 1).is_err());
    }
}
