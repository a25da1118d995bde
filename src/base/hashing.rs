//! BLAKE3 content hashing of files, choosing the fast path by size.
//!
//! Files are read, not memory-mapped (see "Memory mapping" in the crate
//! doc): a file truncated by someone else while we hash it must give an I/O
//! result, never a SIGBUS that kills memorun and with it the user's command.
//! Large reads are hashed on all cores.

use std::fs::File;
use std::io::{self, Read};

use super::Digest;

/// Below this many bytes a chunk is hashed on the current thread.
const PARALLEL_MIN: usize = 512 * 1024;
/// Read size for large files.
const BIG_BUF: usize = 1024 * 1024;

/// Hash everything `file` yields from its current position to EOF. `size_hint`
/// (the file's size from `fstat`) picks the buffer size. Returns the digest
/// and the number of bytes hashed.
pub fn hash_file(file: &mut File, size_hint: u64) -> io::Result<(Digest, u64)> {
    hash_with(blake3::Hasher::new(), file, size_hint)
}

/// Like [`hash_file`], with a caller-supplied (for example keyed) hasher.
pub(crate) fn hash_with(
    mut hasher: blake3::Hasher,
    reader: &mut impl Read,
    size_hint: u64,
) -> io::Result<(Digest, u64)> {
    // Sized to the file (plus one byte to see EOF in one read), up to a
    // megabyte: zeroing a big buffer per small file would cost more than
    // hashing it.
    let cap = (size_hint as usize).saturating_add(1).clamp(4096, BIG_BUF);
    let mut buf = vec![0u8; cap];
    let mut total = 0u64;
    loop {
        let n = read_full(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        if n >= PARALLEL_MIN {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
        total += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok((hasher.finalize().into(), total))
}

/// Read until `buf` is full or EOF; returns the number of bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Names a command (its argv digest after `--ignore-arg`) in a directory:
/// the arguments it created (outputs), why its latest run was not recorded
/// (notes) and the time its replays saved are kept under this, in their
/// `command_in_dir` column. An entry's is `manifest(argv_digest, cwd)` of
/// its row.
pub(crate) fn manifest(argv_digest: &Digest, cwd: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"memorun manifest");
    h.update(&argv_digest.0);
    h.update(cwd);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn matches_one_shot_hash_for_all_sizes() {
        for size in [0usize, 1, 65_535, 65_536, 700_000, 2 * 1024 * 1024 + 3] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&data).unwrap();
            use std::io::Seek;
            f.rewind().unwrap();
            let (d, n) = hash_file(&mut f, size as u64).unwrap();
            assert_eq!(n, size as u64);
            assert_eq!(d, Digest::from(blake3::hash(&data)), "size {size}");
        }
    }
}
