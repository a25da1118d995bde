//! `StoredStream`: how an entry refers to a recorded byte stream (stdout,
//! stderr, the interleaving, an output file's content): its length and
//! digest, and the bytes themselves when small enough to live in the row.

use super::Digest;

/// One recorded stream of an entry: stdout, stderr or the interleaving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStream {
    /// Length in bytes.
    pub len: u64,
    /// BLAKE3 digest of the content; names the blob when not inline.
    pub digest: Digest,
    /// The bytes, when small enough to live in the row.
    pub inline: Option<Vec<u8>>,
}
