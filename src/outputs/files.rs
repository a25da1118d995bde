//! The output files of an entry: what a run left at the paths it wrote,
//! as the store keeps it and a hit restores it (see `crate::outputs`).
//!
//! An entry's outputs are a list of [`OutputRoot`]s, one per path given
//! with `-o` (a file, a directory or a glob) or per argument the command
//! created (an automatic output). Each holds the [`Item`]s the run left
//! under it, sorted by path: for a path root, the root itself (empty
//! relative path) and, for a directory, everything below it; for a glob,
//! what matched, relative to the glob's literal base directory. An item is
//! a regular file (permission bits and content), a directory (permission
//! bits), a symlink (its target, verbatim) or absent.
//!
//! File content lives where a stream's does ([`StoredStream`]): inline in
//! the row up to [`FILE_INLINE_MAX`] bytes, else in a content-addressed blob
//! shared with every other entry and stream of the same bytes (each entry
//! that names a blob counts one reference in `file_blobs`, see
//! `store::refs`).
//!
//! The encoding ([`encode`]) is length-prefixed and versioned: a row whose
//! outputs do not decode is damage, never a default. Paths are kept as
//! raw bytes, exactly as the file system gave them; what they may contain
//! is checked where they are used (`replay::restore`), since a stored
//! manifest is not trusted to name only paths under its root.

use crate::base::{Digest, StoredStream};

/// Output files up to this size are stored inline in the entry's row;
/// larger ones in blobs. Small enough that a row with hundreds of small
/// outputs stays a few hundred KiB, which a hit reads whole.
pub const FILE_INLINE_MAX: usize = 4096;

/// The first byte of [`encode`]'s output: its format version.
const FORMAT: u8 = 2;

/// How a root was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `-o PATH`: a file, a directory or something absent.
    Path,
    /// `-o 'GLOB'`: the paths that matched it.
    Glob,
    /// An argument of the command that names a file the command created.
    Auto,
}

impl RootKind {
    fn tag(self) -> u8 {
        match self {
            RootKind::Path => 0,
            RootKind::Glob => 1,
            RootKind::Auto => 2,
        }
    }

    fn from_tag(t: u8) -> Option<RootKind> {
        Some(match t {
            0 => RootKind::Path,
            1 => RootKind::Glob,
            2 => RootKind::Auto,
            _ => return None,
        })
    }
}

/// One declared output and what the run left under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRoot {
    /// How it was declared.
    pub kind: RootKind,
    /// As declared (lexically normalized): a path relative to the working
    /// directory or absolute, or a glob pattern.
    pub declared: Vec<u8>,
    /// What the run left, sorted by path.
    pub items: Vec<Item>,
}

/// One path under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Relative to the root (empty: the root itself) or, for a glob, to
    /// its literal base directory.
    pub path: Vec<u8>,
    /// What is there.
    pub node: Node,
}

/// What a run left at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing.
    Absent,
    /// A directory with these permission bits.
    Dir {
        /// `mode & 0o777`.
        mode: u32,
    },
    /// A symlink, never followed.
    Symlink {
        /// Its target, verbatim.
        target: Vec<u8>,
    },
    /// A regular file, captured.
    File {
        /// `mode & 0o777`: setuid, setgid and sticky are never kept.
        mode: u32,
        /// Its content.
        content: StoredStream,
    },
    /// A regular file whose content was checked but not captured (an
    /// automatic output under `--no-auto-outputs`): a hit needs it in place.
    Checked {
        /// Its length.
        len: u64,
        /// Its BLAKE3 digest.
        digest: Digest,
    },
}

impl Node {
    fn tag(&self) -> u8 {
        match self {
            Node::Absent => 0,
            Node::Dir { .. } => 1,
            Node::Symlink { .. } => 2,
            Node::File { .. } => 3,
            Node::Checked { .. } => 4,
        }
    }
}

/// Totals over a set of roots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Regular files (captured or checked).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The regular files under `roots` and their bytes.
pub fn totals(roots: &[OutputRoot]) -> Totals {
    let mut t = Totals::default();
    for item in roots.iter().flat_map(|r| &r.items) {
        match &item.node {
            Node::File { content, .. } => {
                t.files += 1;
                t.bytes = t.bytes.saturating_add(content.len);
            }
            Node::Checked { len, .. } => {
                t.files += 1;
                t.bytes = t.bytes.saturating_add(*len);
            }
            _ => {}
        }
    }
    t
}

/// The blobs `roots` keep file content in (each once), with their lengths.
pub fn blob_digests(roots: &[OutputRoot]) -> Vec<(Digest, u64)> {
    let mut out: Vec<(Digest, u64)> = roots
        .iter()
        .flat_map(|r| &r.items)
        .filter_map(|i| match &i.node {
            Node::File { content, .. } if content.inline.is_none() && content.len > 0 => {
                Some((content.digest, content.len))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Encode `roots` for the database; `None` for no roots. With `inline`
/// false the inline bytes are left out (their digests stay): the form the
/// entry checksum covers.
pub fn encode(roots: &[OutputRoot], inline: bool) -> Option<Vec<u8>> {
    if roots.is_empty() {
        return None;
    }
    let mut v = vec![FORMAT];
    put_len(&mut v, roots.len());
    for root in roots {
        v.push(root.kind.tag());
        put_bytes(&mut v, &root.declared);
        put_len(&mut v, root.items.len());
        for item in &root.items {
            put_bytes(&mut v, &item.path);
            v.push(item.node.tag());
            match &item.node {
                Node::Absent => {}
                Node::Dir { mode } => v.extend_from_slice(&mode.to_le_bytes()),
                Node::Symlink { target } => put_bytes(&mut v, target),
                Node::File { mode, content } => {
                    v.extend_from_slice(&mode.to_le_bytes());
                    v.extend_from_slice(&content.len.to_le_bytes());
                    v.extend_from_slice(&content.digest.0);
                    match (&content.inline, inline) {
                        (Some(bytes), true) => {
                            v.push(1);
                            put_bytes(&mut v, bytes);
                        }
                        (Some(_), false) => v.push(1),
                        (None, _) => v.push(0),
                    }
                }
                Node::Checked { len, digest } => {
                    v.extend_from_slice(&len.to_le_bytes());
                    v.extend_from_slice(&digest.0);
                }
            }
        }
    }
    Some(v)
}

fn put_len(v: &mut Vec<u8>, n: usize) {
    v.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(v: &mut Vec<u8>, b: &[u8]) {
    put_len(v, b.len());
    v.extend_from_slice(b);
}

/// Decode what [`encode`] wrote (with the inline bytes); `None` when the
/// bytes are malformed in any way.
pub fn decode(bytes: &[u8]) -> Option<Vec<OutputRoot>> {
    let mut r = Reader(bytes);
    if r.u8()? != FORMAT {
        return None;
    }
    let n = r.len()?;
    let mut roots = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let kind = RootKind::from_tag(r.u8()?)?;
        let declared = r.bytes()?.to_vec();
        let m = r.len()?;
        let mut items = Vec::with_capacity(m.min(4096));
        for _ in 0..m {
            let path = r.bytes()?.to_vec();
            let node = match r.u8()? {
                0 => Node::Absent,
                1 => Node::Dir { mode: r.mode()? },
                2 => Node::Symlink {
                    target: r.bytes()?.to_vec(),
                },
                3 => {
                    let mode = r.mode()?;
                    let len = r.u64()?;
                    let digest = Digest::from_slice(r.take(32)?)?;
                    let inline = match r.u8()? {
                        0 => None,
                        1 => Some(r.bytes()?.to_vec()),
                        _ => return None,
                    };
                    Node::File {
                        mode,
                        content: StoredStream {
                            len,
                            digest,
                            inline,
                        },
                    }
                }
                4 => Node::Checked {
                    len: r.u64()?,
                    digest: Digest::from_slice(r.take(32)?)?,
                },
                _ => return None,
            };
            items.push(Item { path, node });
        }
        roots.push(OutputRoot {
            kind,
            declared,
            items,
        });
    }
    r.0.is_empty().then_some(roots)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn len(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn mode(&mut self) -> Option<u32> {
        let m = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        (m & !0o777 == 0).then_some(m)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Vec<OutputRoot> {
        vec![
            OutputRoot {
                kind: RootKind::Path,
                declared: b"dist".to_vec(),
                items: vec![
                    Item {
                        path: b"".to_vec(),
                        node: Node::Dir { mode: 0o755 },
                    },
                    Item {
                        path: b"a.js".to_vec(),
                        node: Node::File {
                            mode: 0o644,
                            content: StoredStream {
                                len: 3,
                                digest: Digest::from(blake3::hash(b"abc")),
                                inline: Some(b"abc".to_vec()),
                            },
                        },
                    },
                    Item {
                        path: b"big\xff".to_vec(),
                        node: Node::File {
                            mode: 0o755,
                            content: StoredStream {
                                len: 1 << 20,
                                digest: Digest([7; 32]),
                                inline: None,
                            },
                        },
                    },
                    Item {
                        path: b"link".to_vec(),
                        node: Node::Symlink {
                            target: b"../x".to_vec(),
                        },
                    },
                ],
            },
            OutputRoot {
                kind: RootKind::Auto,
                declared: b"out.o".to_vec(),
                items: vec![Item {
                    path: Vec::new(),
                    node: Node::Checked {
                        len: 9,
                        digest: Digest([9; 32]),
                    },
                }],
            },
            OutputRoot {
                kind: RootKind::Glob,
                declared: b"*.log".to_vec(),
                items: vec![],
            },
            OutputRoot {
                kind: RootKind::Path,
                declared: b"gone".to_vec(),
                items: vec![Item {
                    path: Vec::new(),
                    node: Node::Absent,
                }],
            },
        ]
    }

    #[test]
    fn outputs_round_trip_and_reject_damage() {
        let roots = sample();
        let bytes = encode(&roots, true).unwrap();
        assert_eq!(decode(&bytes).unwrap(), roots);
        assert_eq!(encode(&[], true), None);
        // Every truncation and a trailing byte are malformed.
        for n in 0..bytes.len() {
            assert_eq!(decode(&bytes[..n]), None, "truncated at {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(&long), None);
        // A mode with setuid is not what memorun writes.
        let mut bad = sample();
        bad[0].items[0].node = Node::Dir { mode: 0o4755 };
        assert_eq!(decode(&encode(&bad, true).unwrap()), None);
    }

    #[test]
    fn the_checksum_form_leaves_inline_bytes_out_but_not_their_presence() {
        let a = encode(&sample(), false).unwrap();
        let mut other = sample();
        if let Node::File { content, .. } = &mut other[0].items[1].node {
            content.inline = Some(b"xyz".to_vec());
        }
        assert_eq!(encode(&other, false).unwrap(), a);
        if let Node::File { content, .. } = &mut other[0].items[1].node {
            content.inline = None;
        }
        assert_ne!(encode(&other, false).unwrap(), a);
    }

    #[test]
    fn totals_and_blobs() {
        let roots = sample();
        assert_eq!(
            totals(&roots),
            Totals {
                files: 3,
                bytes: 3 + (1 << 20) + 9
            }
        );
        assert_eq!(blob_digests(&roots), vec![(Digest([7; 32]), 1 << 20)]);
    }
}
