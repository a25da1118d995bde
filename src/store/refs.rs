//! Blob reference counts, kept in step with the entries that name them: a
//! new entry counts one reference per stream blob it names and one per
//! blob its output files are in (listed in `file_blobs`), and deleting entries
//! (one, or in bulk through a temp table of doomed keys) drops theirs and
//! says which blobs no entry names any more.
//!
//! Invariant: `blobs.refs` is the number of entry streams naming the blob; a
//! blob file is removed only after the transaction that dropped its last
//! reference committed (by the caller, who gets the freed digests).

use rusqlite::{OptionalExtension, Transaction, params};

use super::records::Records;
use crate::base::Digest;

/// Count a reference from the entry under `key` to a blob holding one of
/// its output files (once per entry and blob), and record its fast check.
pub fn reference_file_blob(
    tx: &Transaction<'_>,
    key: &Digest,
    digest: &Digest,
    len: u64,
    check: &[u8; 16],
) -> rusqlite::Result<()> {
    let new = tx
        .prepare_cached("INSERT OR IGNORE INTO file_blobs (key, digest) VALUES (?1, ?2)")?
        .execute(params![&key.0[..], &digest.0[..]])?;
    if new > 0 {
        reference_blob(tx, &digest.0, len as i64, check)?;
    }
    Ok(())
}

/// Count one more reference to a blob, and record its fast check.
pub fn reference_blob(
    tx: &Transaction<'_>,
    digest: &[u8],
    len: i64,
    check: &[u8; 16],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO blobs (digest, len, refs, xxh3) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (digest) DO UPDATE SET refs = refs + 1, xxh3 = excluded.xxh3",
    )?
    .execute(params![digest, len, &check[..]])?;
    Ok(())
}

/// Start an empty `temp.doomed`: the keys of the entries a bulk deletion
/// ([`delete_doomed`]) removes.
pub fn reset_doomed(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS doomed (key BLOB PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM temp.doomed;",
    )
}

/// What deleting entries removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub entries: u64,
    /// Output bytes (stdout plus stderr) of those entries.
    pub bytes: u64,
    /// The disk space of the hit records deleted with them (that they
    /// had, when nothing was deleted: see [`delete_doomed_rows`]).
    pub record_bytes: u64,
    /// The bytes of the blobs no entry references any more.
    pub blob_bytes: u64,
    /// Blobs no entry references any more: their files can go.
    pub freed: Vec<Digest>,
}

/// The temp tables of a bulk deletion, besides `temp.doomed`: the doomed
/// rows by rowid (`doomed_rows`), and the blobs they reference with how
/// many times (`doomed_blobs`).
const TEMP_TABLES: &str = "
    CREATE TEMP TABLE IF NOT EXISTS doomed_rows (
        id INTEGER PRIMARY KEY, key BLOB NOT NULL, record INTEGER, bytes);
    CREATE TEMP TABLE IF NOT EXISTS doomed_blobs (digest BLOB PRIMARY KEY, n INTEGER)
        WITHOUT ROWID;
    DELETE FROM temp.doomed_rows;
    DELETE FROM temp.doomed_blobs;";

// Each statement below is driven by the temp table (CROSS JOIN fixes the
// loop order, `IN` a search per value): left to itself, SQLite's planner
// scanned all of `entries` against the temp table instead, a second per
// batch at a million entries. A unit test checks every plan.

/// The doomed rows, found through the key's index in key order.
const FIND_ROWS: &str = "
    INSERT INTO temp.doomed_rows (id, key, record, bytes)
    SELECT e.rowid, e.key, e.record, e.out_len + e.err_len
    FROM temp.doomed d CROSS JOIN entries e ON e.key = d.key";

/// The references the doomed rows hold: their streams' blobs and their
/// output files'.
const COUNT_BLOBS: &str = "
    INSERT INTO temp.doomed_blobs (digest, n)
    SELECT digest, COUNT(*) FROM (
        SELECT e.out_digest AS digest FROM temp.doomed_rows d CROSS JOIN entries e
          ON e.rowid = d.id WHERE e.out_inline IS NULL AND e.out_len > 0
        UNION ALL
        SELECT e.err_digest FROM temp.doomed_rows d CROSS JOIN entries e
          ON e.rowid = d.id WHERE e.err_inline IS NULL AND e.err_len > 0
        UNION ALL
        SELECT e.order_digest FROM temp.doomed_rows d CROSS JOIN entries e
          ON e.rowid = d.id WHERE e.order_inline IS NULL AND e.order_len > 0
        UNION ALL
        SELECT f.digest FROM temp.doomed d CROSS JOIN file_blobs f ON f.key = d.key
    ) GROUP BY digest";

/// Drop those references.
const UNREFERENCE_BLOBS: &str = "
    UPDATE blobs SET refs = refs - (SELECT n FROM temp.doomed_blobs g WHERE g.digest = blobs.digest)
    WHERE digest IN (SELECT digest FROM temp.doomed_blobs)";

/// The rows, in rowid order.
const DELETE_ROWS: &str = "DELETE FROM entries WHERE rowid IN (SELECT id FROM temp.doomed_rows)";

/// Their output files' blob lists.
const DELETE_FILE_BLOBS: &str = "DELETE FROM file_blobs WHERE key IN (SELECT key FROM temp.doomed)";

/// Their trace manifests.
const DELETE_MANIFESTS: &str =
    "DELETE FROM manifests WHERE entry_key IN (SELECT key FROM temp.doomed)";

/// The blobs no entry references any more, and their bytes.
const FREED_BLOBS: &str = "
    SELECT digest, len FROM blobs
    WHERE digest IN (SELECT digest FROM temp.doomed_blobs) AND refs <= 0";

/// Delete the entries in `temp.doomed`, dropping their blob references;
/// their hit records go first (see `records`), those of the rows that have
/// one (`entries.record`, see `record_budget`), in the order of their
/// directories.
///
/// Set-based: the doomed rows are found once through the key index (in key
/// order), and then deleted, their references counted and their blobs
/// looked up in rowid order, each a single statement.
pub fn delete_doomed(tx: &Transaction<'_>, records: &Records) -> rusqlite::Result<Removed> {
    delete_doomed_rows(tx, Some(records))
}

/// [`delete_doomed`], deleting the hit records through `records`; with
/// `None`, no record file is touched and their space is read from the
/// rows: for a dry run, whose transaction is rolled back.
pub fn delete_doomed_rows(
    tx: &Transaction<'_>,
    records: Option<&Records>,
) -> rusqlite::Result<Removed> {
    // Their rows, by rowid, with what the rest needs of them.
    tx.execute_batch(TEMP_TABLES)?;
    tx.execute(FIND_ROWS, [])?;
    let record_bytes = match records {
        Some(records) => {
            let mut stmt = tx.prepare_cached(
                "SELECT key FROM temp.doomed_rows WHERE record IS NOT NULL ORDER BY key",
            )?;
            let keys = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            let mut freed = 0;
            for k in keys {
                if let Some(k) = Digest::from_slice(&k?) {
                    freed += records.remove(&k).map_err(record_error)?;
                }
            }
            forget_record_bytes(tx, freed)?;
            freed
        }
        None => tx
            .query_row(
                "SELECT CAST(TOTAL(record) AS INTEGER) FROM temp.doomed_rows",
                [],
                |r| r.get::<_, i64>(0),
            )?
            .max(0) as u64,
    };
    let (entries, bytes): (i64, i64) = tx.query_row(
        "SELECT COUNT(*), CAST(TOTAL(bytes) AS INTEGER) FROM temp.doomed_rows",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(COUNT_BLOBS, [])?;
    for sql in [
        UNREFERENCE_BLOBS,
        DELETE_ROWS,
        DELETE_FILE_BLOBS,
        DELETE_MANIFESTS,
    ] {
        tx.execute(sql, [])?;
    }
    let (mut freed, mut blob_bytes) = (Vec::new(), 0u64);
    {
        let mut stmt = tx.prepare_cached(FREED_BLOBS)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        for (d, len) in rows.flatten() {
            if let Some(d) = Digest::from_slice(&d) {
                freed.push(d);
                blob_bytes += len.max(0) as u64;
            }
        }
    }
    tx.execute_batch(
        "DELETE FROM blobs WHERE digest IN (SELECT digest FROM temp.doomed_blobs) AND refs <= 0;
         DELETE FROM temp.doomed;
         DELETE FROM temp.doomed_rows;
         DELETE FROM temp.doomed_blobs;",
    )?;
    Ok(Removed {
        entries: entries.max(0) as u64,
        bytes: bytes.max(0) as u64,
        record_bytes,
        blob_bytes,
        freed,
    })
}

/// Delete the entry under `key` if there is one, in the caller's
/// transaction, and its hit record before it; returns the blobs it was the last user of. (A point query
/// per step: this runs on every miss, where the bulk path's temp table and
/// batch statements would cost more than the rest of the write.)
pub fn delete_entry(
    tx: &Transaction<'_>,
    records: &Records,
    key: &Digest,
) -> rusqlite::Result<Vec<Digest>> {
    // Its hit record first: a hit must never find a record without a row.
    let freed = records.remove(key).map_err(record_error)?;
    forget_record_bytes(tx, freed)?;
    // Read as loosely typed values: a damaged row must still be deletable
    // (what it names that is not a blob's digest frees nothing).
    let blobs: Option<Vec<Vec<u8>>> = tx
        .prepare_cached(
            "SELECT CASE WHEN out_inline IS NULL AND out_len > 0 THEN out_digest END,
                    CASE WHEN err_inline IS NULL AND err_len > 0 THEN err_digest END,
                    CASE WHEN order_inline IS NULL AND order_len > 0 THEN order_digest END
             FROM entries WHERE key = ?1",
        )?
        .query_row(params![&key.0[..]], |r| {
            let mut v = Vec::new();
            for i in 0..3 {
                if let rusqlite::types::Value::Blob(d) = r.get(i)? {
                    v.push(d);
                }
            }
            Ok(v)
        })
        .optional()?;
    let Some(mut blobs) = blobs else {
        return Ok(Vec::new());
    };
    {
        let mut stmt = tx.prepare_cached("SELECT digest FROM file_blobs WHERE key = ?1")?;
        let files = stmt.query_map(params![&key.0[..]], |r| r.get::<_, Vec<u8>>(0))?;
        for d in files {
            blobs.push(d?);
        }
    }
    tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
        .execute(params![&key.0[..]])?;
    tx.prepare_cached("DELETE FROM file_blobs WHERE key = ?1")?
        .execute(params![&key.0[..]])?;
    tx.prepare_cached("DELETE FROM manifests WHERE entry_key = ?1")?
        .execute(params![&key.0[..]])?;
    let mut freed = Vec::new();
    for d in blobs {
        tx.prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE digest = ?1")?
            .execute(params![&d])?;
        let gone = tx
            .prepare_cached("DELETE FROM blobs WHERE digest = ?1 AND refs <= 0")?
            .execute(params![&d])?;
        if gone > 0 {
            freed.extend(Digest::from_slice(&d));
        }
    }
    Ok(freed)
}

/// Take the bytes of deleted hit records off their total.
fn forget_record_bytes(tx: &Transaction<'_>, freed: u64) -> rusqlite::Result<()> {
    if freed == 0 {
        return Ok(());
    }
    super::counters::bump(
        tx,
        &[(super::counters::Counter::RecordBytes, -(freed as i64))],
    )
}

/// A hit record that cannot be deleted: the row must stay (and the caller's
/// transaction is rolled back), or a hit could replay what the database no
/// longer holds.
pub(crate) fn record_error(e: std::io::Error) -> rusqlite::Error {
    // Said once: the message is the error (a conversion failure would show
    // its source a second time in an error chain).
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some(format!("cannot delete a hit record: {e}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, TransactionBehavior};

    /// A bulk deletion's every statement searches `entries` and the other
    /// tables by key or rowid: none scans them (at a million entries, a
    /// scan per batch made `clear` take four times as long).
    #[test]
    fn bulk_deletion_searches_never_scans() {
        let conn = Connection::open_in_memory().unwrap();
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).unwrap();
        crate::store::schema::prepare(&tx).unwrap();
        reset_doomed(&tx).unwrap();
        tx.execute_batch(TEMP_TABLES).unwrap();
        let statements = [
            FIND_ROWS,
            COUNT_BLOBS,
            UNREFERENCE_BLOBS,
            DELETE_ROWS,
            DELETE_FILE_BLOBS,
            DELETE_MANIFESTS,
            FREED_BLOBS,
        ];
        for sql in statements {
            let plan: Vec<String> = tx
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            for step in &plan {
                // Only the temp tables and the subqueries over them are
                // scanned.
                let scanned = step.strip_prefix("SCAN ").and_then(|t| t.split(' ').next());
                assert!(
                    scanned.is_none_or(|t| {
                        t.starts_with('(') || t.starts_with("temp.doomed") || t == "d"
                    }),
                    "{sql}: {plan:?}"
                );
            }
        }
    }
}
