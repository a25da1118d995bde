//! An entry as it travels to and from a remote: versioned, length-prefixed,
//! sealed with a MAC; and the seal of the remote's other objects (trace
//! manifests and their index, [`seal`]).
//!
//! ```text
//! "memorun entry\0"  magic (14 bytes)
//! u32                format version (FORMAT)
//! ...                the entry (`store::entry_bytes`: key, times, exit
//!                    code, streams, output files, stdin advance)
//! [32]               MAC: keyed BLAKE3 of everything above
//! ```
//!
//! All integers are little-endian. The MAC is keyed with a key derived from
//! the team's secret (`MEMORUN_SECRET`), so an entry written by anyone who
//! does not hold it does not verify, and it covers the key, so a sealed
//! entry cannot be moved under another key's name. Inline bytes must match
//! their digest. Anything that does not decode exactly is `None`: a miss,
//! never a default. Streams and files too large to be inline travel as
//! blobs named by their BLAKE3 digest, checked after download.
//!
//! The key's components are not sent: whoever looks an entry up has just
//! computed the same key from the same components (their names and values
//! are in the digests), and `why` explains against the local ones.

use crate::base::Digest;
use crate::outputs::files;
use crate::store::entry_bytes::{self, Reader};
use crate::store::{Entry, StoredStream};

const MAGIC: &[u8; 14] = b"memorun entry\0";

/// The format version. If you change the layout above, change this: an
/// older memorun then misses on the newer entries instead of misreading
/// them.
pub const FORMAT: u32 = 1;

/// An entry larger than this is neither read nor sent (a remote cannot
/// make memorun allocate without bound: with the copies decoding makes,
/// a lookup stays far below 64 MiB of memory). Entries hold only inline
/// bytes (at most 64 KiB per stream, 4 KiB per file) and the files'
/// metadata: this is thousands of output files.
pub const MAX_ENTRY: u64 = 8 * 1024 * 1024;

/// The length of a seal ([`seal`]): a MAC.
pub const SEAL_LEN: usize = 32;

/// `body` followed by its MAC under `mac_key`, for the object of kind
/// `what` named by `parts` (a trace manifest by its base key and digest,
/// an index by its base key): a sealed object moved under another name,
/// or sealed without the secret, does not open.
pub fn seal(mac_key: &[u8; 32], what: &str, parts: &[&Digest], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + SEAL_LEN);
    v.extend_from_slice(body);
    v.extend_from_slice(seal_mac(mac_key, what, parts, body).as_bytes());
    v
}

/// The body of an object sealed by [`seal`] for this name, if its MAC
/// verifies; nothing of it is looked at otherwise.
pub fn open<'a>(
    mac_key: &[u8; 32],
    what: &str,
    parts: &[&Digest],
    sealed: &'a [u8],
) -> Option<&'a [u8]> {
    let (body, mac) = sealed.split_at(sealed.len().checked_sub(SEAL_LEN)?);
    // blake3::Hash compares in constant time.
    (seal_mac(mac_key, what, parts, body) == blake3::Hash::from_bytes(mac.try_into().ok()?))
        .then_some(body)
}

fn seal_mac(mac_key: &[u8; 32], what: &str, parts: &[&Digest], body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(mac_key);
    h.update(b"memorun sealed object\0");
    h.update(&super::LAYOUT.to_le_bytes());
    h.update(&(what.len() as u32).to_le_bytes());
    h.update(what.as_bytes());
    h.update(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        h.update(&p.0);
    }
    h.update(body);
    h.finalize()
}

/// Encode `entry` and seal it with `mac_key`.
pub fn encode(entry: &Entry, mac_key: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&FORMAT.to_le_bytes());
    entry_bytes::put(&mut v, entry);
    let mac = blake3::keyed_hash(mac_key, &v);
    v.extend_from_slice(mac.as_bytes());
    v
}

/// Decode an entry fetched under `key`'s name: `None` unless its MAC
/// verifies under `mac_key`, it is for `key`, and every part decodes
/// exactly (inline bytes matching their digests).
pub fn decode(bytes: &[u8], key: &Digest, mac_key: &[u8; 32]) -> Option<Entry> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, mac) = bytes.split_at(body_len);
    // blake3::Hash compares in constant time.
    if blake3::keyed_hash(mac_key, body) != blake3::Hash::from_bytes(mac.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC || r.u32()? != FORMAT {
        return None;
    }
    let entry = entry_bytes::take(&mut r)?;
    let sound = entry.key == *key
        && r.is_empty()
        && [&entry.stdout, &entry.stderr, &entry.order]
            .into_iter()
            .all(inline_matches)
        && inline_files_match(&entry.outputs);
    sound.then_some(entry)
}

fn inline_matches(s: &StoredStream) -> bool {
    match &s.inline {
        Some(b) => b.len() as u64 == s.len && Digest::from(blake3::hash(b)) == s.digest,
        None => true,
    }
}

fn inline_files_match(roots: &[files::OutputRoot]) -> bool {
    roots.iter().flat_map(|r| &r.items).all(|i| match &i.node {
        files::Node::File { content, .. } => inline_matches(content),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stream(bytes: &[u8], inline: bool) -> StoredStream {
        StoredStream {
            len: bytes.len() as u64,
            digest: blake3::hash(bytes).into(),
            inline: inline.then(|| bytes.to_vec()),
        }
    }

    fn entry() -> Entry {
        Entry {
            key: Digest([7; 32]),
            created_ms: 1_700_000_000_000,
            duration: Duration::from_millis(1234),
            exit_code: 3,
            stdout: stream(b"out", true),
            stderr: stream(b"a large stream kept in a blob", false),
            order: stream(b"", true),
            outputs: vec![files::OutputRoot {
                kind: files::RootKind::Path,
                declared: b"dist".to_vec(),
                items: vec![files::Item {
                    path: b"a.js".to_vec(),
                    node: files::Node::File {
                        mode: 0o644,
                        content: stream(b"console.log(1)", true),
                    },
                }],
            }],
            stdin_advance: 9,
        }
    }

    #[test]
    fn round_trip() {
        let e = entry();
        let bytes = encode(&e, &[1; 32]);
        let d = decode(&bytes, &e.key, &[1; 32]).unwrap();
        assert_eq!(d.checksum(), e.checksum());
        assert_eq!(d.stdout.inline.as_deref(), Some(&b"out"[..]));
        assert_eq!(d.outputs, e.outputs);
    }

    /// A forged, moved, truncated or altered entry never decodes.
    #[test]
    fn anything_but_the_sealed_entry_is_refused() {
        let e = entry();
        let bytes = encode(&e, &[1; 32]);
        assert!(decode(&bytes, &e.key, &[2; 32]).is_none(), "another secret");
        assert!(
            decode(&bytes, &Digest([8; 32]), &[1; 32]).is_none(),
            "another key"
        );
        for cut in [0, 1, 31, 32, bytes.len() - 1] {
            assert!(
                decode(&bytes[..cut], &e.key, &[1; 32]).is_none(),
                "cut {cut}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(decode(&b, &e.key, &[1; 32]).is_none(), "flip at {i}");
        }
        // Sealed with the right key, but the inline bytes do not match
        // their digest: still refused.
        let mut bad = entry();
        bad.stdout.inline = Some(b"OUT".to_vec());
        assert!(decode(&encode(&bad, &[1; 32]), &bad.key, &[1; 32]).is_none());
    }

    /// A sealed object opens only with its key and under its own name.
    #[test]
    fn a_seal_opens_only_for_its_name_and_key() {
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        let sealed = seal(&[1; 32], "manifest", &[&a, &b], b"body");
        assert_eq!(
            open(&[1; 32], "manifest", &[&a, &b], &sealed),
            Some(&b"body"[..])
        );
        assert!(open(&[2; 32], "manifest", &[&a, &b], &sealed).is_none());
        assert!(open(&[1; 32], "manifest", &[&b, &a], &sealed).is_none());
        assert!(open(&[1; 32], "manifest index", &[&a, &b], &sealed).is_none());
        assert!(open(&[1; 32], "manifest", &[&a, &b], &sealed[1..]).is_none());
        assert!(open(&[1; 32], "manifest", &[&a, &b], b"short").is_none());
        // A plain manifest named by its digest (what a writer without the
        // secret can plant) does not open.
        assert!(open(&[1; 32], "manifest", &[&a, &b], &[0u8; 64]).is_none());
    }

    /// If this fails, the layout changed: bump `FORMAT`, then update the
    /// expected digest.
    #[test]
    fn format_is_stable() {
        assert_eq!(FORMAT, 1, "update the golden digest with the version");
        let bytes = encode(&entry(), &[1; 32]);
        assert_eq!(&bytes[..14], MAGIC);
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            "3b51c6fe5b462f894302b445bda86490a5305dabfe2ef08890271ae43cfcbced"
        );
    }
}
