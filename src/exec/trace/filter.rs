//! The seccomp-BPF program that decides which system calls stop the tracee.
//!
//! Every system call of a traced process runs this small classic-BPF
//! program in the kernel. The file-system calls the tracer must see return
//! `SECCOMP_RET_TRACE` with a [`Call`] in the 16 data bits, so the tracer
//! learns what the call is from `ret_data` without a table of its own;
//! everything else returns `SECCOMP_RET_ALLOW` and runs at full speed.
//!
//! Invariants:
//! - The architecture is checked first. A system call made through another
//!   ABI (a 32-bit program, `int 0x80`, the x32 ABI) has other numbers, so
//!   it stops as [`Call::Foreign`]: the tracer then reports the run as not
//!   traceable instead of missing its file accesses.
//! - Calls that open a path by other means than a path name, or change how
//!   paths resolve (`chroot`, `open_by_handle_at`, `io_uring_setup`,
//!   `uselib`), stop as [`Call::Opaque`]: the run is not traceable.
//! - The program is a straight list of comparisons, checked by a unit test
//!   that interprets it for every table entry on both architectures.

/// What a stopped system call is, as the filter tells the tracer in the
/// `SECCOMP_RET_DATA` bits. The argument layout is the call's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Call {
    /// `open(path, flags)`.
    Open = 1,
    /// `openat(dirfd, path, flags)`.
    OpenAt,
    /// `openat2(dirfd, path, how)`: the flags are in `*how`.
    OpenAt2,
    /// `creat(path)`: `open(path, O_CREAT|O_WRONLY|O_TRUNC)`.
    Creat,
    /// `execve(path, ...)`.
    Execve,
    /// `execveat(dirfd, path, argv, envp, flags)`.
    ExecveAt,
    /// `stat(path)` or `access(path)`: a probe that follows symlinks.
    Probe,
    /// `lstat(path)` or `readlink(path)`: a probe of the link itself.
    ProbeLink,
    /// `newfstatat(dirfd, path, buf, flags)`.
    StatAt,
    /// `statx(dirfd, path, flags, ...)`.
    Statx,
    /// `faccessat(dirfd, path, mode)` and `faccessat2(..., flags)`.
    AccessAt,
    /// `readlinkat(dirfd, path, ...)`.
    ReadlinkAt,
    /// `getdents(fd)` or `getdents64(fd)`: a directory listed.
    Getdents,
    /// `chdir(path)`.
    Chdir,
    /// `fchdir(fd)`.
    Fchdir,
    /// `rename(old, new)`.
    Rename,
    /// `renameat(olddirfd, old, newdirfd, new)`.
    RenameAt,
    /// `renameat2(olddirfd, old, newdirfd, new, flags)`.
    RenameAt2,
    /// `unlink(path)` or `rmdir(path)`.
    Unlink,
    /// `unlinkat(dirfd, path, flags)`.
    UnlinkAt,
    /// `mkdir(path)` or `mknod(path)`: a new name.
    Mkdir,
    /// `mkdirat(dirfd, path)` or `mknodat(dirfd, path)`.
    MkdirAt,
    /// `link(old, new)`.
    Link,
    /// `linkat(olddirfd, old, newdirfd, new, flags)`.
    LinkAt,
    /// `symlink(target, new)`.
    Symlink,
    /// `symlinkat(target, newdirfd, new)`.
    SymlinkAt,
    /// `truncate(path, len)`.
    Truncate,
    /// A call whose file accesses cannot be seen by path: the run is not
    /// traceable.
    Opaque,
    /// A system call of another ABI: the run is not traceable.
    Foreign,
}

impl Call {
    const ALL: [Call; 29] = [
        Call::Open,
        Call::OpenAt,
        Call::OpenAt2,
        Call::Creat,
        Call::Execve,
        Call::ExecveAt,
        Call::Probe,
        Call::ProbeLink,
        Call::StatAt,
        Call::Statx,
        Call::AccessAt,
        Call::ReadlinkAt,
        Call::Getdents,
        Call::Chdir,
        Call::Fchdir,
        Call::Rename,
        Call::RenameAt,
        Call::RenameAt2,
        Call::Unlink,
        Call::UnlinkAt,
        Call::Mkdir,
        Call::MkdirAt,
        Call::Link,
        Call::LinkAt,
        Call::Symlink,
        Call::SymlinkAt,
        Call::Truncate,
        Call::Opaque,
        Call::Foreign,
    ];

    /// The call the filter encoded in `ret_data`, if any.
    pub fn from_data(data: u32) -> Option<Call> {
        Call::ALL.into_iter().find(|c| *c as u32 == data)
    }
}

/// `AUDIT_ARCH_X86_64`: EM_X86_64 | 64-bit | little-endian.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_AARCH64`: EM_AARCH64 | 64-bit | little-endian.
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
/// x86_64 marks x32-ABI system calls with this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The traced system calls of x86_64, by number (`arch/x86/entry/syscalls/
/// syscall_64.tbl`; checked against `libc::SYS_*` by a test).
pub const X86_64: &[(u32, Call)] = &[
    (2, Call::Open),
    (4, Call::Probe),      // stat
    (6, Call::ProbeLink),  // lstat
    (21, Call::Probe),     // access
    (59, Call::Execve),    // execve
    (76, Call::Truncate),  // truncate
    (78, Call::Getdents),  // getdents
    (80, Call::Chdir),     // chdir
    (81, Call::Fchdir),    // fchdir
    (82, Call::Rename),    // rename
    (83, Call::Mkdir),     // mkdir
    (84, Call::Unlink),    // rmdir
    (85, Call::Creat),     // creat
    (86, Call::Link),      // link
    (87, Call::Unlink),    // unlink
    (88, Call::Symlink),   // symlink
    (89, Call::ProbeLink), // readlink
    (133, Call::Mkdir),    // mknod
    (134, Call::Opaque),   // uselib
    (161, Call::Opaque),   // chroot
    (217, Call::Getdents), // getdents64
    (257, Call::OpenAt),   // openat
    (258, Call::MkdirAt),  // mkdirat
    (259, Call::MkdirAt),  // mknodat
    (262, Call::StatAt),   // newfstatat
    (263, Call::UnlinkAt), // unlinkat
    (264, Call::RenameAt), // renameat
    (265, Call::LinkAt),   // linkat
    (266, Call::SymlinkAt),
    (267, Call::ReadlinkAt),
    (269, Call::AccessAt),  // faccessat
    (304, Call::Opaque),    // open_by_handle_at
    (316, Call::RenameAt2), // renameat2
    (322, Call::ExecveAt),  // execveat
    (332, Call::Statx),     // statx
    (425, Call::Opaque),    // io_uring_setup
    (437, Call::OpenAt2),   // openat2
    (439, Call::AccessAt),  // faccessat2
];

/// The traced system calls of aarch64 (the generic table,
/// `include/uapi/asm-generic/unistd.h`: only the `*at` forms exist).
pub const AARCH64: &[(u32, Call)] = &[
    (33, Call::MkdirAt),  // mknodat
    (34, Call::MkdirAt),  // mkdirat
    (35, Call::UnlinkAt), // unlinkat
    (36, Call::SymlinkAt),
    (37, Call::LinkAt),   // linkat
    (45, Call::Truncate), // truncate
    (48, Call::AccessAt), // faccessat
    (49, Call::Chdir),    // chdir
    (50, Call::Fchdir),   // fchdir
    (51, Call::Opaque),   // chroot
    (56, Call::OpenAt),   // openat
    (61, Call::Getdents), // getdents64
    (78, Call::ReadlinkAt),
    (79, Call::StatAt),     // newfstatat
    (221, Call::Execve),    // execve
    (265, Call::Opaque),    // open_by_handle_at
    (276, Call::RenameAt2), // renameat2
    (281, Call::ExecveAt),  // execveat
    (291, Call::Statx),     // statx
    (425, Call::Opaque),    // io_uring_setup
    (437, Call::OpenAt2),   // openat2
    (439, Call::AccessAt),  // faccessat2
];

/// One classic-BPF instruction, as `struct sock_filter`.
pub type Insn = libc::sock_filter;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn trace(call: Call) -> u32 {
    libc::SECCOMP_RET_TRACE | call as u32
}

/// The filter for the architecture `arch` (an `AUDIT_ARCH_*`) whose
/// traced calls are `table`.
///
/// ```text
///   ld  [arch]
///   jeq #arch, 0, foreign       ; another ABI: stop as Foreign
///   ld  [nr]
///   jge #X32_SYSCALL_BIT, foreign   (x86_64 only)
///   jeq #nr1, 0, 1 ; ret TRACE|call1
///   ...
///   ret ALLOW
/// foreign:
///   ret TRACE|Foreign
/// ```
pub fn program(arch: u32, table: &[(u32, Call)]) -> Vec<Insn> {
    let x32 = arch == AUDIT_ARCH_X86_64;
    let mut p = Vec::with_capacity(table.len() * 2 + 8);
    p.push(stmt(LD_W_ABS, OFF_ARCH));
    // Patched below to jump to the final `foreign` return.
    let arch_check = p.len();
    p.push(jump(JEQ_K, arch, 0, 0));
    p.push(stmt(LD_W_ABS, OFF_NR));
    let x32_check = p.len();
    if x32 {
        p.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 0));
    }
    for &(nr, call) in table {
        p.push(jump(JEQ_K, nr, 0, 1));
        p.push(stmt(RET_K, trace(call)));
    }
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    let foreign = p.len();
    p.push(stmt(RET_K, trace(Call::Foreign)));
    // A jump's offset counts from the next instruction and fits in a u8:
    // the tables are short enough (checked by `program_fits`).
    p[arch_check].jf = u8::try_from(foreign - arch_check - 1).expect("short filter");
    if x32 {
        p[x32_check].jt = u8::try_from(foreign - x32_check - 1).expect("short filter");
    }
    p
}

/// The filter for the architecture memorun was built for, or `None` where
/// tracing is not supported.
pub fn native() -> Option<(u32, Vec<Insn>)> {
    if cfg!(target_arch = "x86_64") {
        Some((AUDIT_ARCH_X86_64, program(AUDIT_ARCH_X86_64, X86_64)))
    } else if cfg!(target_arch = "aarch64") {
        Some((AUDIT_ARCH_AARCH64, program(AUDIT_ARCH_AARCH64, AARCH64)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions `program` emits.
    fn run(p: &[Insn], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        k => panic!("unexpected load at {k}"),
                    }
                }
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn check(arch: u32, table: &[(u32, Call)]) {
        let p = program(arch, table);
        assert!(p.len() < 255, "jumps must fit in a u8");
        for &(nr, call) in table {
            assert_eq!(run(&p, arch, nr), trace(call), "syscall {nr}");
            assert_eq!(Call::from_data(run(&p, arch, nr) & 0xffff), Some(call));
        }
        let traced: Vec<u32> = table.iter().map(|e| e.0).collect();
        for nr in 0..600 {
            if !traced.contains(&nr) {
                assert_eq!(run(&p, arch, nr), libc::SECCOMP_RET_ALLOW, "syscall {nr}");
            }
        }
        // Another ABI always stops as Foreign, whatever the number.
        for other in [0x4000_0003 /* i386 */, 0x4000_0028 /* arm */, 0] {
            assert_eq!(run(&p, other, 2), trace(Call::Foreign));
        }
    }

    #[test]
    fn x86_64_filter_stops_exactly_the_table() {
        check(AUDIT_ARCH_X86_64, X86_64);
        let p = program(AUDIT_ARCH_X86_64, X86_64);
        // x32 system calls (bit 30) have their own numbers.
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 257),
            trace(Call::Foreign)
        );
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT),
            trace(Call::Foreign)
        );
    }

    #[test]
    fn aarch64_filter_stops_exactly_the_table() {
        check(AUDIT_ARCH_AARCH64, AARCH64);
    }

    #[test]
    fn every_call_round_trips_through_ret_data() {
        for c in Call::ALL {
            assert_eq!(Call::from_data(c as u32), Some(c));
        }
        assert_eq!(Call::from_data(0), None);
    }

    /// The hand-written numbers agree with libc's for the host.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_numbers_match_libc() {
        use libc::*;
        let expected: &[(c_long, Call)] = &[
            (SYS_open, Call::Open),
            (SYS_stat, Call::Probe),
            (SYS_lstat, Call::ProbeLink),
            (SYS_access, Call::Probe),
            (SYS_execve, Call::Execve),
            (SYS_truncate, Call::Truncate),
            (SYS_getdents, Call::Getdents),
            (SYS_chdir, Call::Chdir),
            (SYS_fchdir, Call::Fchdir),
            (SYS_rename, Call::Rename),
            (SYS_mkdir, Call::Mkdir),
            (SYS_rmdir, Call::Unlink),
            (SYS_creat, Call::Creat),
            (SYS_link, Call::Link),
            (SYS_unlink, Call::Unlink),
            (SYS_symlink, Call::Symlink),
            (SYS_readlink, Call::ProbeLink),
            (SYS_mknod, Call::Mkdir),
            (SYS_uselib, Call::Opaque),
            (SYS_chroot, Call::Opaque),
            (SYS_getdents64, Call::Getdents),
            (SYS_openat, Call::OpenAt),
            (SYS_mkdirat, Call::MkdirAt),
            (SYS_mknodat, Call::MkdirAt),
            (SYS_newfstatat, Call::StatAt),
            (SYS_unlinkat, Call::UnlinkAt),
            (SYS_renameat, Call::RenameAt),
            (SYS_linkat, Call::LinkAt),
            (SYS_symlinkat, Call::SymlinkAt),
            (SYS_readlinkat, Call::ReadlinkAt),
            (SYS_faccessat, Call::AccessAt),
            (SYS_open_by_handle_at, Call::Opaque),
            (SYS_renameat2, Call::RenameAt2),
            (SYS_execveat, Call::ExecveAt),
            (SYS_statx, Call::Statx),
            (SYS_io_uring_setup, Call::Opaque),
            (SYS_openat2, Call::OpenAt2),
            (SYS_faccessat2, Call::AccessAt),
        ];
        let mut want: Vec<(u32, Call)> = expected.iter().map(|&(n, c)| (n as u32, c)).collect();
        want.sort_by_key(|e| e.0);
        assert_eq!(want, X86_64);
    }
}
