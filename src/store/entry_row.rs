//! An entry's row as the store reads it back: which columns, in which
//! order, decoded strictly and checked against the entry's checksum.
//!
//! Invariant: a row is only ever returned as an [`Entry`] when every column
//! is what memorun writes (no NULL, no other type, no negative length, no
//! malformed digest or output list) and its checksum matches: anything else
//! is damage, never a default.

use std::time::Duration;

use super::{Entry, StoredStream};
use crate::base::Digest;

/// The columns [`decode_entry`] reads, in its order.
pub const ENTRY_COLUMNS: &str = "key, created, duration_ms, exit_code, stdin_advance,
    out_len, out_digest, out_inline, err_len, err_digest, err_inline,
    order_len, order_digest, order_inline, outputs, checksum";

/// How many columns [`ENTRY_COLUMNS`] names.
pub const ENTRY_COLUMN_COUNT: usize = 16;

/// The entry in the [`ENTRY_COLUMNS`] starting at column `first`, if it
/// decodes and matches its checksum.
pub fn decode_verified(row: &rusqlite::Row<'_>, first: usize) -> Option<Entry> {
    let (entry, sum) = decode_entry(row, first).ok()?;
    (sum.as_deref() == Some(&entry.checksum().0[..])).then_some(entry)
}

/// A column value that cannot be what memorun wrote.
fn malformed(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Blob,
        format!("malformed entry: {what}").into(),
    )
}

/// A non-negative integer column.
fn count_at(row: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<u64> {
    u64::try_from(row.get::<_, i64>(col)?).map_err(|_| malformed(col, "negative"))
}

/// A 32-byte digest column.
fn digest_at(row: &rusqlite::Row<'_>, col: usize) -> rusqlite::Result<Digest> {
    Digest::from_slice(&row.get::<_, Vec<u8>>(col)?)
        .ok_or_else(|| malformed(col, "digest is not 32 bytes"))
}

fn stream_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StoredStream> {
    Ok(StoredStream {
        len: count_at(row, first)?,
        digest: digest_at(row, first + 1)?,
        inline: row.get(first + 2)?,
    })
}

/// Decode the [`ENTRY_COLUMNS`] starting at column `first`, strictly: a
/// NULL, a value of another type, a negative length or a malformed digest
/// or output list is an error, never a default. Returns the entry and the
/// stored checksum (`None` when the column is not a blob).
pub fn decode_entry(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<(Entry, Option<Vec<u8>>)> {
    let c = |i: usize| first + i;
    let outputs = match row.get::<_, Option<Vec<u8>>>(c(14))? {
        None => Vec::new(),
        Some(b) => crate::outputs::files::decode(&b).ok_or_else(|| malformed(c(14), "outputs"))?,
    };
    let entry = Entry {
        key: digest_at(row, c(0))?,
        created_ms: row.get(c(1))?,
        duration: Duration::from_millis(count_at(row, c(2))?),
        exit_code: row.get(c(3))?,
        stdin_advance: count_at(row, c(4))?,
        stdout: stream_at(row, c(5))?,
        stderr: stream_at(row, c(8))?,
        order: stream_at(row, c(11))?,
        outputs,
    };
    let checksum = match row.get_ref(c(15))? {
        rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
        _ => None,
    };
    Ok((entry, checksum))
}
