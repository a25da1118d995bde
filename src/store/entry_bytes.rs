//! An entry's bytes: everything a replay needs of it, in one unambiguous
//! encoding, shared by the remote's transfer format (`remote::wire`) and
//! the hit records (`records`), each of which adds its own header and seal.
//!
//! ```text
//! [32]               key digest
//! i64 u64 i32        created (ms since the epoch), duration (ms), exit code
//! 3 × stream         stdout, stderr, interleaving: u64 length, [32] BLAKE3,
//!                    u8 inline flag, then (if inline) u32 length + bytes
//! u32 + bytes        the output files (`files` encoding, inline bytes
//!                    included; length 0: none)
//! u64                bytes the command read from a regular file on stdin
//! ```
//!
//! All integers are little-endian. Decoding checks the layout, not the
//! content: inline bytes are checked against their digests by whoever
//! trusts them (the remote at once, a replay before writing a byte).

use std::time::Duration;

use super::{Entry, StoredStream};
use crate::base::Digest;
use crate::outputs::files;

/// Append `entry`'s bytes to `v`.
pub fn put(v: &mut Vec<u8>, entry: &Entry) {
    v.extend_from_slice(&entry.key.0);
    v.extend_from_slice(&entry.created_ms.to_le_bytes());
    v.extend_from_slice(&(entry.duration.as_millis() as u64).to_le_bytes());
    v.extend_from_slice(&entry.exit_code.to_le_bytes());
    for s in [&entry.stdout, &entry.stderr, &entry.order] {
        v.extend_from_slice(&s.len.to_le_bytes());
        v.extend_from_slice(&s.digest.0);
        match &s.inline {
            Some(bytes) => {
                v.push(1);
                v.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                v.extend_from_slice(bytes);
            }
            None => v.push(0),
        }
    }
    let outputs = files::encode(&entry.outputs, true).unwrap_or_default();
    v.extend_from_slice(&(outputs.len() as u32).to_le_bytes());
    v.extend_from_slice(&outputs);
    v.extend_from_slice(&entry.stdin_advance.to_le_bytes());
}

/// Read an entry's bytes from `r`: `None` unless they decode exactly.
pub fn take(r: &mut Reader<'_>) -> Option<Entry> {
    let key = r.digest()?;
    let created_ms = i64::from_le_bytes(r.array()?);
    let duration = Duration::from_millis(r.u64()?);
    let exit_code = i32::from_le_bytes(r.array()?);
    let stdout = r.stream()?;
    let stderr = r.stream()?;
    let order = r.stream()?;
    let outputs = match r.u32()? as usize {
        0 => Vec::new(),
        n => files::decode(r.take(n)?)?,
    };
    let stdin_advance = r.u64()?;
    Some(Entry {
        key,
        created_ms,
        duration,
        exit_code,
        stdout,
        stderr,
        order,
        outputs,
        stdin_advance,
    })
}

/// A cursor over bytes being decoded.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// The next `N` bytes, as an array.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    /// A digest.
    pub fn digest(&mut self) -> Option<Digest> {
        Some(Digest(self.array()?))
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn stream(&mut self) -> Option<StoredStream> {
        let len = self.u64()?;
        let digest = self.digest()?;
        let inline = match self.u8()? {
            0 => None,
            1 => {
                let n = self.u32()? as usize;
                let bytes = self.take(n)?;
                if bytes.len() as u64 != len {
                    return None;
                }
                Some(bytes.to_vec())
            }
            _ => return None,
        };
        Some(StoredStream {
            len,
            digest,
            inline,
        })
    }
}
