//! Input files: which arguments are inputs, and the digest of their content.
//!
//! An argument that names an existing **regular** file (following symlinks)
//! is an automatic input. Devices, FIFOs, sockets and directories are never
//! opened here: a FIFO would block and `/dev/zero` never ends. The file is
//! opened non-blocking and checked again with `fstat` on the open descriptor,
//! so a file swapped for a FIFO between the two checks is still not read.
//!
//! Each input keeps the identity it was hashed with ([`FileStat`]), so that a
//! change during the run can be detected.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use anyhow::{Result, anyhow};

use crate::hashing;
use crate::key::Digest;
use crate::ui::io_reason;

/// What identifies a file's content cheaply: if any of this changes, the
/// content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileStat {
    /// The identity of a file from its metadata.
    pub fn of(m: &fs::Metadata) -> FileStat {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// An input file, hashed.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path as the user wrote it.
    pub path: OsString,
    /// BLAKE3 digest of the content.
    pub digest: Digest,
    /// The file's identity when it was hashed.
    pub stat: FileStat,
}

/// The arguments that may be automatic inputs: every argument, and the
/// program itself when it is given as a path (`./build.sh`).
pub fn candidate_args(argv: &[OsString]) -> impl Iterator<Item = &OsString> {
    let program = argv
        .first()
        .filter(|p| p.as_bytes().contains(&b'/'))
        .into_iter();
    program.chain(argv.iter().skip(1))
}

/// Hash every argument that names an existing regular file. An argument that
/// names a regular file we cannot read is an error: its content would be
/// part of the result but cannot be part of the key.
pub fn auto_inputs(argv: &[OsString]) -> Result<Vec<InputFile>> {
    let mut inputs = Vec::new();
    for arg in candidate_args(argv) {
        if let Some(input) = hash_if_regular(arg)? {
            inputs.push(input);
        }
    }
    Ok(inputs)
}

/// Hash `path` if it names a regular file; `Ok(None)` if it names nothing or
/// something else.
pub fn hash_if_regular(path: &OsStr) -> Result<Option<InputFile>> {
    if path.is_empty() {
        return Ok(None);
    }
    match fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let culprit = || path.to_string_lossy().into_owned();
    let mut file = match open_nonblocking(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow!(
                "cannot read input '{}': {}",
                culprit(),
                io_reason(&e)
            ));
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| anyhow!("cannot read input '{}': {}", culprit(), io_reason(&e)))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let (digest, _) = hashing::hash_file(&mut file, meta.size())
        .map_err(|e| anyhow!("cannot read input '{}': {}", culprit(), io_reason(&e)))?;
    Ok(Some(InputFile {
        path: path.to_os_string(),
        digest,
        stat: FileStat::of(&meta),
    }))
}

fn open_nonblocking(path: &OsStr) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_regular_files_are_inputs() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("in.txt");
        fs::write(&f, "data").unwrap();
        let argv = vec![
            OsString::from("cat"),
            f.clone().into(),
            t.path().into(),
            "/dev/zero".into(),
            "/dev/null".into(),
            t.path().join("missing").into(),
            "".into(),
        ];
        let inputs = auto_inputs(&argv).unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].path, f.as_os_str());
        assert_eq!(inputs[0].digest, Digest::from(blake3::hash(b"data")));
    }

    #[test]
    fn program_counts_only_as_a_path() {
        let args = os(&["./build.sh", "x"]);
        assert_eq!(candidate_args(&args).count(), 2);
        let args = os(&["make", "x"]);
        assert_eq!(
            candidate_args(&args).collect::<Vec<_>>(),
            vec![&OsString::from("x")]
        );
    }

    #[test]
    fn fifo_is_never_opened() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(hash_if_regular(fifo.as_os_str()).unwrap().is_none());
    }
}
