//! The per-cache secret: 32 random bytes in `secret` that key the digests
//! of env values and stdin, so that a short value cannot be brute-forced
//! from the store.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::OFlags;

use crate::base::temp::Temp;

/// The per-cache secret used to key digests of env values (and stdin), so
/// that a short value cannot be brute-forced from the store.
///
/// Created once, atomically: written to a temp file, then linked into
/// place, so a concurrent reader never sees a half-written secret.
pub fn load_or_create(dir: &Path, tmp_dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join("secret");
    match read_secret(&path) {
        Ok(s) => return Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", path.display())),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
    let mut temp = Temp::create(tmp_dir, "secret")
        .with_context(|| format!("cannot create a file in '{}'", tmp_dir.display()))?;
    let written = temp
        .write_all(&secret)
        .and_then(|()| temp.file().sync_all());
    match written.and_then(|()| temp.link_new(&path)) {
        Ok(()) => Ok(secret),
        // Someone else won the race: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_secret(&path).with_context(|| format!("cannot read '{}'", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot write '{}'", path.display())),
    }
}

fn read_secret(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let mut buf = Vec::with_capacity(33);
    Read::by_ref(&mut f).take(33).read_to_end(&mut buf)?;
    buf.try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "secret is not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_leaving_no_temp_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("cache");
        super::super::private::prepare(&dir).unwrap();
        let tmp = dir.join("tmp");
        super::super::private::ensure_subdir(&tmp).unwrap();
        let s1 = load_or_create(&dir, &tmp).unwrap();
        let s2 = load_or_create(&dir, &tmp).unwrap();
        assert_eq!(s1, s2);
        let mode = fs::metadata(dir.join("secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
