//! Garbage collection: removing what no entry names any more, for `clear`.
//!
//! Invariants: only files memorun names itself are removed (64-hex blob
//! names in 2-hex shard directories, temp files whose process died: see
//! `temp`, and records directories renamed away that no live process
//! holds: see `records::sweep_gone`); a symlink is never followed and the
//! cache directory is never left; a blob file younger than `YOUNG_BLOB` stays, since a
//! concurrent run may have just put it in place and be about to reference
//! it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use rusqlite::Connection;

use super::blobs::Blobs;
use crate::base::Digest;
use crate::base::temp;

/// Unreferenced blob files younger than this are left alone.
const YOUNG_BLOB: Duration = Duration::from_secs(600);

/// Remove the blob files under `blobs` that `conn`'s `blobs` table does not
/// name, and the temp files in `tmp_dir` left by a crash. With `dry_run`,
/// only count. Returns how many files and bytes went.
pub fn collect_garbage(
    conn: &Connection,
    blobs: &Blobs,
    tmp_dir: &Path,
    dry_run: bool,
) -> Result<(u64, u64)> {
    let mut known = std::collections::HashSet::new();
    {
        let mut stmt = conn.prepare("SELECT digest FROM blobs")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        for d in rows {
            if let Some(d) = Digest::from_slice(&d?) {
                known.insert(d.to_hex());
            }
        }
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut remove = |path: &Path, len: u64| {
        if dry_run || fs::remove_file(path).is_ok() {
            files += 1;
            bytes += len;
        }
    };
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Ok(dirs) = fs::read_dir(blobs.root()) {
        for sub in dirs.flatten() {
            let name = sub.file_name();
            let Some(name) = name.to_str() else { continue };
            // file_type() does not follow symlinks: a planted link to a
            // directory elsewhere is never entered.
            if !is_hex(name, 2) || !sub.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for f in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                let fname = f.file_name();
                let Some(fname) = fname.to_str() else {
                    continue;
                };
                let Ok(meta) = f.metadata() else { continue };
                // A young file may be a blob a concurrent run has just
                // put in place and is about to reference.
                let young = meta
                    .modified()
                    .ok()
                    .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
                    .is_none_or(|age| age < YOUNG_BLOB);
                if meta.file_type().is_file()
                    && is_hex(fname, 64)
                    && fname.starts_with(name)
                    && !known.contains(fname)
                    && !young
                {
                    remove(&f.path(), meta.len());
                }
            }
        }
    }
    let orphans = temp::sweep(tmp_dir, dry_run);
    let (gone_files, gone_bytes) = super::records::sweep_gone(tmp_dir, dry_run);
    Ok((
        files + orphans.files + gone_files,
        bytes + orphans.bytes + gone_bytes,
    ))
}
