//! Stale-while-revalidate: after replaying a stale entry, refresh it in a
//! fully detached background run.
//!
//! The refresh is this same memorun binary with the same arguments (so the
//! command's argv is exactly the one the user gave), with
//! `MEMORUN_INTERNAL_REFRESH_KEY` in its environment: it then runs with
//! `--force`, silently, and only if no other refresh of that key holds the
//! key's refresh lock. The variable is removed from the environment of the
//! command itself. It runs in
//! a new session with stdout and stderr on /dev/null and no inherited file
//! descriptors beyond stdio, so `$(memorun --stale 1h -- cmd)` returns at
//! once. Its stdin is the spooled copy of ours when we read one, so the
//! refreshed run computes the same key.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::base::Digest;
use crate::store::locks;

pub use crate::key::resolve::REFRESH_KEY_VAR;

/// The lock name that allows one refresh per key at a time.
pub fn lock_name(key: &Digest) -> String {
    format!("refresh-{}", key.to_hex())
}

/// How the refresh gets the same stdin as the run it refreshes.
pub enum RefreshStdin {
    /// A copy of the spooled stdin.
    File(File),
    /// Empty: stdin was /dev/null, or `--stdin ignore`.
    Empty,
}

/// Start the background refresh of `key` unless one is already running.
/// `args` are memorun's own arguments after the program name.
pub fn spawn(
    locks_dir: &Path,
    key: &Digest,
    args: Vec<OsString>,
    stdin: RefreshStdin,
) -> io::Result<()> {
    if locks::is_held(locks_dir, &lock_name(key)) {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.env(REFRESH_KEY_VAR, key.to_hex());
    let stdin = match stdin {
        RefreshStdin::File(f) => Stdio::from(f),
        RefreshStdin::Empty => Stdio::null(),
    };
    cmd.args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child runs only this closure, which
    // makes only async-signal-safe system calls: setsid(2), and
    // close_range(2) (or, before Linux 5.9, close(2) on each descriptor).
    // Closing descriptors that the child's copies of Rust objects own is
    // sound because none of them is used again before exec. Every
    // descriptor above stdio is closed so that the refresh holds no pipe
    // open that a caller (such as a shell's `$(...)`) waits on.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            let _ = rustix::process::setsid();
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                for fd in 3..1024 {
                    rustix::io::close(fd);
                }
            }
            Ok(())
        });
    }
    // Not waited for: the child outlives us, and init reaps it.
    let _child = cmd.spawn()?;
    Ok(())
}
