//! Reading a stopped tracee: its system call (`PTRACE_GET_SYSCALL_INFO`),
//! path strings in its memory (`process_vm_readv`, else
//! `PTRACE_PEEKDATA`), its working directory and descriptors (`/proc`).
//!
//! Everything here is called by the tracer thread while the tracee is in a
//! ptrace stop, so what it reads cannot change under it (other threads of
//! the tracee excepted: a command racing its own system-call arguments can
//! hide a path, which is outside what tracing promises).

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The longest path the kernel accepts, terminating NUL included.
const PATH_MAX: usize = 4096;
const PAGE: usize = 4096;

/// `PTRACE_GET_SYSCALL_INFO` operations.
pub const OP_EXIT: u8 = 2;
/// The stop is a seccomp stop: `nr`, `args` and `ret_data` are set.
pub const OP_SECCOMP: u8 = 3;

/// `struct ptrace_syscall_info` (linux/ptrace.h), with the union laid out as
/// its largest member (the seccomp one).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallInfo {
    /// `PTRACE_SYSCALL_INFO_*`.
    pub op: u8,
    reserved: u8,
    flags: u16,
    /// The `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    /// Seccomp: the number. Exit: the return value (`rval`, signed).
    pub nr_or_rval: u64,
    /// Seccomp: the arguments. Exit: `args[0]` low byte is `is_error`.
    pub args: [u64; 6],
    /// Seccomp: the filter's `SECCOMP_RET_DATA`.
    pub ret_data: u32,
    reserved2: u32,
}

impl SyscallInfo {
    /// The return value at a syscall-exit stop: `Ok(value)` or
    /// `Err(errno)`.
    pub fn result(&self) -> Result<i64, i32> {
        let rval = self.nr_or_rval as i64;
        let is_error = self.args[0] as u8 != 0;
        if is_error {
            Err((-rval) as i32)
        } else {
            Ok(rval)
        }
    }
}

/// The system call `tid` is stopped in.
pub fn syscall_info(tid: i32) -> io::Result<SyscallInfo> {
    let mut info = MaybeUninit::<SyscallInfo>::zeroed();
    // SAFETY: PTRACE_GET_SYSCALL_INFO writes at most `size` bytes (the
    // second argument) into the buffer, which is that large; `info` is
    // zero-initialized, so every byte is initialized whatever it writes.
    let n = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            tid,
            std::mem::size_of::<SyscallInfo>(),
            info.as_mut_ptr(),
        )
    };
    if n <= 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialized above, and every bit pattern is valid for
    // these integer fields.
    Ok(unsafe { info.assume_init() })
}

/// Read the NUL-terminated string at `addr` in `tid`'s memory. `None` when
/// it cannot be read or is longer than `PATH_MAX` (the kernel then fails
/// the call itself).
pub fn read_path(tid: i32, addr: u64) -> Option<OsString> {
    if addr == 0 {
        return None;
    }
    let mut buf = [0u8; PATH_MAX];
    // Two remote pieces split at the page boundary: a partial read stops
    // at a piece that faults, so a string that ends just before an
    // unmapped page still reads whole.
    let addr = addr as usize;
    let first = (PAGE - addr % PAGE).min(PATH_MAX);
    let remote = [
        libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: first,
        },
        libc::iovec {
            iov_base: addr.wrapping_add(first) as *mut libc::c_void,
            iov_len: PATH_MAX - first,
        },
    ];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let pieces = if first == PATH_MAX { 1 } else { 2 };
    // SAFETY: the local iovec describes `buf`, writable for its whole
    // length; the remote ones are only read by the kernel, which checks
    // them against the tracee's mappings.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, remote.as_ptr(), pieces, 0) };
    let got = if n >= 0 {
        n as usize
    } else {
        peek(tid, addr, &mut buf)
    };
    let s = &buf[..got];
    let end = s.iter().position(|&b| b == 0)?;
    Some(OsStr::from_bytes(&s[..end]).to_os_string())
}

/// `PTRACE_PEEKDATA`, a word at a time, until a NUL or a fault: the
/// fallback where `process_vm_readv` is refused. Returns the bytes read.
fn peek(tid: i32, addr: usize, buf: &mut [u8]) -> usize {
    const WORD: usize = std::mem::size_of::<libc::c_long>();
    let mut got = 0;
    while got + WORD <= buf.len() {
        // SAFETY: PEEKDATA returns the word in the return value; errno
        // tells a -1 word from an error, so clear it first.
        let word = unsafe {
            *libc::__errno_location() = 0;
            libc::ptrace(libc::PTRACE_PEEKDATA, tid, addr + got, 0)
        };
        // SAFETY: reading errno right after the call.
        if word == -1 && unsafe { *libc::__errno_location() } != 0 {
            break;
        }
        let bytes = word.to_ne_bytes();
        buf[got..got + WORD].copy_from_slice(&bytes);
        got += WORD;
        if bytes.contains(&0) {
            break;
        }
    }
    got
}

/// Read a plain value of type `T` at `addr` in the tracee (`struct
/// open_how`'s flags).
pub fn read_u64(tid: i32, addr: u64) -> Option<u64> {
    let mut v = 0u64;
    let local = libc::iovec {
        iov_base: (&mut v as *mut u64).cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: the local iovec is `v`, 8 writable bytes; the kernel checks
    // the remote one.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    (n == 8).then_some(v)
}

/// The target of a `/proc` symlink, when it is a path (a descriptor may
/// be a pipe or a socket, and a directory may be deleted).
fn proc_link(link: &CStr) -> Option<PathBuf> {
    let mut buf = [0u8; PATH_MAX];
    // SAFETY: `link` is NUL-terminated and `buf` is writable for its
    // length, which is what readlink may write (no NUL added).
    let n = unsafe { libc::readlink(link.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 || n as usize >= buf.len() {
        return None;
    }
    let target = &buf[..n as usize];
    if target.first() != Some(&b'/') || target.ends_with(b" (deleted)") {
        return None;
    }
    Some(PathBuf::from(OsString::from_vec(target.to_vec())))
}

fn proc_cstr(tid: i32, rest: &str) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/{tid}/{rest}")).expect("no NUL in a /proc path")
}

/// `tid`'s working directory.
pub fn cwd(tid: i32) -> Option<PathBuf> {
    proc_link(&proc_cstr(tid, "cwd"))
}

/// The path `tid`'s descriptor `fd` was opened at.
pub fn fd_path(tid: i32, fd: i32) -> Option<PathBuf> {
    proc_link(&proc_cstr(tid, &format!("fd/{fd}")))
}

/// The program `tid` runs (after an `execve`: the binary the kernel
/// loaded, the interpreter for a `#!` script).
pub fn exe(tid: i32) -> Option<PathBuf> {
    proc_link(&proc_cstr(tid, "exe"))
}

/// The files mapped into `tid` other than `exe` itself: right after an
/// `execve`, the dynamic loader (`PT_INTERP`), which the kernel opens
/// without a system call the filter could see.
pub fn mapped_files(tid: i32, exe: Option<&std::path::Path>) -> Vec<PathBuf> {
    let Ok(maps) = std::fs::read(format!("/proc/{tid}/maps")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // address perms offset dev inode path
        let Some(i) = line.iter().position(|&b| b == b'/') else {
            continue;
        };
        let path = PathBuf::from(OsStr::from_bytes(&line[i..]));
        if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
            continue;
        }
        if Some(path.as_path()) != exe && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// The effective uid and gid of `tid`, and whether it has
/// `no_new_privs` set (`/proc/PID/status`).
pub fn creds(tid: i32) -> Option<(u32, u32, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let mut euid = None;
    let mut egid = None;
    let mut nnp = false;
    for line in status.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("Uid:") => euid = fields.nth(1).and_then(|v| v.parse().ok()),
            Some("Gid:") => egid = fields.nth(1).and_then(|v| v.parse().ok()),
            Some("NoNewPrivs:") => nnp = fields.next() == Some("1"),
            _ => {}
        }
    }
    Some((euid?, egid?, nnp))
}

/// memorun's own tracer, if it is being traced or debugged.
pub fn own_tracer() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&pid| pid != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_info_matches_the_kernel_layout() {
        // struct ptrace_syscall_info: 24 bytes of header, then the seccomp
        // member (nr, args[6], ret_data, reserved2) of 64 bytes.
        assert_eq!(std::mem::size_of::<SyscallInfo>(), 88);
        assert_eq!(std::mem::offset_of!(SyscallInfo, nr_or_rval), 24);
        assert_eq!(std::mem::offset_of!(SyscallInfo, ret_data), 80);
    }

    #[test]
    fn own_process_paths_read_from_proc() {
        let me = std::process::id() as i32;
        assert_eq!(cwd(me), std::env::current_dir().ok());
        assert_eq!(exe(me), std::env::current_exe().ok());
        let (euid, _, _) = creds(me).unwrap();
        // SAFETY: geteuid cannot fail.
        assert_eq!(euid, unsafe { libc::geteuid() });
    }

    #[test]
    fn read_path_reads_our_own_memory_up_to_the_nul() {
        let s = b"/some/path\0garbage";
        let me = std::process::id() as i32;
        let got = read_path(me, s.as_ptr() as u64).unwrap();
        assert_eq!(got, OsString::from("/some/path"));
        assert_eq!(read_path(me, 0), None);
    }
}
