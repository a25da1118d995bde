//! The seccomp-BPF program that decides which system calls stop the tracee.
//!
//! Every system call of a traced process runs this classic-BPF program in
//! the kernel. It is built from the classification of every system call
//! of the architecture ([`super::syscalls`]): a keyed call returns
//! `SECCOMP_RET_TRACE` with its [`Call`] in the 16 data bits, so the tracer
//! learns what the call is from `ret_data`; an unrecordable one returns
//! `SECCOMP_RET_TRACE` with [`Call::Unrecordable`]; a harmless one returns
//! `SECCOMP_RET_ALLOW` and runs at full speed.
//!
//! Invariants:
//! - Fail closed: a number the tables do not know (a kernel newer than
//!   them) stops as [`Call::Unknown`], and the run is not recorded.
//! - The architecture is checked first. A system call made through another
//!   ABI (a 32-bit program, `int 0x80`, the x32 ABI) has other numbers, so
//!   it stops as [`Call::Foreign`].
//! - The program is a binary search over runs of numbers with the same
//!   answer: a few hundred instructions (the kernel allows 4096) and about
//!   twenty executed per system call. Long jumps use `ja`, whose offset is
//!   32 bits. A unit test interprets it for every number below 1024 on
//!   both architectures.

pub use super::syscalls::Call;

/// `AUDIT_ARCH_X86_64`: EM_X86_64 | 64-bit | little-endian.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_AARCH64`: EM_AARCH64 | 64-bit | little-endian.
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
/// x86_64 marks x32-ABI system calls with this bit in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

use super::syscalls::{Class, classify, tables};

/// One classic-BPF instruction, as `struct sock_filter`.
pub type Insn = libc::sock_filter;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;

/// `clone`'s flag that would start a process the tracer does not follow.
pub const CLONE_UNTRACED: u32 = 0x0080_0000;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// `args[0]`, low and high 32 bits (both architectures are little-endian).
const OFF_ARG0_LO: u32 = 16;
const OFF_ARG0_HI: u32 = 20;

/// The calls that read from a descriptor given in their first argument.
const READS: [&str; 5] = ["read", "readv", "pread64", "preadv", "preadv2"];

/// The kernel's limit on a classic-BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

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

/// The answer of the filter for a system call of class `class`.
pub fn answer(class: Class) -> u32 {
    match class {
        Class::Keyed(call) => trace(call),
        Class::Harmless => libc::SECCOMP_RET_ALLOW,
        Class::Unrecordable => trace(Call::Unrecordable),
    }
}

/// The answer for every system-call number of an architecture whose
/// system calls are `table`, as runs: `(first number, answer)`, sorted,
/// the first at 0, each run until the next one's first number. A name
/// nobody classified answers as an unknown number.
pub fn runs(arch: u32, table: &[(u32, &str)]) -> Vec<(u32, u32)> {
    let unknown = trace(Call::Unknown);
    let mut out: Vec<(u32, u32)> = vec![(0, unknown)];
    let push = |from: u32, ret: u32, out: &mut Vec<(u32, u32)>| {
        if out.last().is_some_and(|l| l.1 == ret) {
            return;
        }
        if out.last().is_some_and(|l| l.0 == from) {
            out.pop();
            if out.last().is_some_and(|l| l.1 == ret) {
                return;
            }
        }
        out.push((from, ret));
    };
    for &(nr, name) in table {
        let ret = classify(name).map_or(unknown, answer);
        push(nr, ret, &mut out);
        push(nr + 1, unknown, &mut out);
    }
    if arch == AUDIT_ARCH_X86_64 {
        // x32 system calls (bit 30) have numbers of their own.
        push(X32_SYSCALL_BIT, trace(Call::Foreign), &mut out);
    }
    out
}

/// A binary search over `runs`: `jge` to split, `ja` to reach the lower
/// half past the upper one, `ret` at the leaves.
fn search(runs: &[(u32, u32)]) -> Vec<Insn> {
    if let [(_, ret)] = runs {
        return vec![stmt(RET_K, *ret)];
    }
    let mid = runs.len() / 2;
    let low = search(&runs[..mid]);
    let high = search(&runs[mid..]);
    let mut p = Vec::with_capacity(low.len() + high.len() + 2);
    // nr >= first of the upper half: fall through to the `ja` over the
    // lower half; else skip it.
    p.push(jump(JGE_K, runs[mid].0, 0, 1));
    p.push(stmt(JA, low.len() as u32));
    p.extend(low);
    p.extend(high);
    p
}

/// The filter for the architecture `arch` (an `AUDIT_ARCH_*`) whose system
/// calls are `table`; with `stdin_terminal`, reads of descriptor 0 stop
/// too (as [`Call::ReadStdin`]).
///
/// ```text
///   ld  [arch]
///   jeq #arch, 1, 0
///   ret TRACE|Foreign          ; another ABI
///   ld  [nr]
///   (stdin_terminal: jeq #read... to `fd0`; ja search
///    fd0: ld [args[0]]; jeq #0 ...; ret TRACE|ReadStdin
///    reload: ld [nr])
///   jeq #clone, 0, search; ld [args[0]]; jset #CLONE_UNTRACED
///   ret TRACE|Clone, or ret ALLOW
/// search:
///   <binary search over the runs of `runs`>
/// ```
pub fn program(arch: u32, table: &[(u32, &str)], stdin_terminal: bool) -> Vec<Insn> {
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, arch, 1, 0),
        stmt(RET_K, trace(Call::Foreign)),
        stmt(LD_W_ABS, OFF_NR),
    ];
    if stdin_terminal {
        p.extend(stdin_reads(table));
    }
    p.extend(clone_flags(table));
    p.extend(search(&runs(arch, table)));
    p
}

/// `clone` stops only with `CLONE_UNTRACED` (its flags are its first
/// argument; `clone3`'s are in memory, so it always stops): a fork runs
/// at full speed. The accumulator holds the number on the way past.
fn clone_flags(table: &[(u32, &str)]) -> Vec<Insn> {
    let Some(&(nr, _)) = table.iter().find(|e| e.1 == "clone") else {
        return Vec::new();
    };
    vec![
        jump(JEQ_K, nr, 0, 4),
        stmt(LD_W_ABS, OFF_ARG0_LO),
        jump(JSET_K, CLONE_UNTRACED, 0, 1),
        stmt(RET_K, trace(Call::Clone)),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// The prelude that stops reads of descriptor 0; the accumulator holds
/// the number on the way in and on the way out.
fn stdin_reads(table: &[(u32, &str)]) -> Vec<Insn> {
    let reads: Vec<u32> = table
        .iter()
        .filter(|e| READS.contains(&e.1))
        .map(|e| e.0)
        .collect();
    let mut p = Vec::new();
    let n = reads.len();
    for (i, nr) in reads.iter().enumerate() {
        // Matched: jump over the remaining tests and the `ja` to `fd0`.
        p.push(jump(JEQ_K, *nr, u8::try_from(n - i).expect("few reads"), 0));
    }
    // fd0 is 1 ahead, then 5 instructions to the reload.
    p.push(stmt(JA, 6));
    p.push(stmt(LD_W_ABS, OFF_ARG0_LO)); // fd0
    p.push(jump(JEQ_K, 0, 0, 3));
    p.push(stmt(LD_W_ABS, OFF_ARG0_HI));
    p.push(jump(JEQ_K, 0, 0, 1));
    p.push(stmt(RET_K, trace(Call::ReadStdin)));
    p.push(stmt(LD_W_ABS, OFF_NR)); // reload
    p
}

/// The system-call table of the architecture `arch`.
pub fn table(arch: u32) -> &'static [(u32, &'static str)] {
    if arch == AUDIT_ARCH_AARCH64 {
        tables::AARCH64
    } else {
        tables::X86_64
    }
}

/// The filter for the architecture memorun was built for, or `None` where
/// tracing is not supported.
pub fn native(stdin_terminal: bool) -> Option<(u32, Vec<Insn>)> {
    let arch = if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        AUDIT_ARCH_AARCH64
    } else {
        return None;
    };
    Some((arch, program(arch, table(arch), stdin_terminal)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions `program` emits.
    fn run(p: &[Insn], arch: u32, nr: u32) -> u32 {
        run_with(p, arch, nr, 0x1234_5678_9abc)
    }

    fn run_with(p: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
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
                        OFF_ARG0_LO => arg0 as u32,
                        OFF_ARG0_HI => (arg0 >> 32) as u32,
                        k => panic!("unexpected load at {k}"),
                    }
                }
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                JA => pc += i.k as usize,
                JSET_K => pc += usize::from(if acc & i.k != 0 { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn check(arch: u32, table: &[(u32, &str)]) {
        check_with(arch, table, false);
        check_with(arch, table, true);
    }

    fn check_with(arch: u32, table: &[(u32, &str)], stdin_terminal: bool) {
        let p = program(arch, table, stdin_terminal);
        let reads: Vec<u32> = table
            .iter()
            .filter(|e| READS.contains(&e.1))
            .map(|e| e.0)
            .collect();
        assert_eq!(reads.len(), 5);
        let clone = table.iter().find(|e| e.1 == "clone").unwrap().0;
        let untraced = u64::from(CLONE_UNTRACED) | 17;
        assert_eq!(run_with(&p, arch, clone, untraced), trace(Call::Clone));
        assert_eq!(run_with(&p, arch, clone, 17), libc::SECCOMP_RET_ALLOW);
        for &nr in &reads {
            let fd0 = run_with(&p, arch, nr, 0);
            match stdin_terminal {
                true => assert_eq!(fd0, trace(Call::ReadStdin), "syscall {nr}"),
                false => assert_eq!(fd0, libc::SECCOMP_RET_ALLOW, "syscall {nr}"),
            }
            for fd in [1, 3, 1 << 32] {
                assert_eq!(run_with(&p, arch, nr, fd), libc::SECCOMP_RET_ALLOW);
            }
        }
        assert!(p.len() < MAX_INSNS, "{} instructions", p.len());
        // Every number below 1024: its class, or unknown; a clone stops
        // only when it would escape the tracer.
        for nr in 0..1024 {
            let want = match table.iter().find(|e| e.0 == nr) {
                Some((_, "clone")) => libc::SECCOMP_RET_ALLOW,
                Some((_, name)) => answer(classify(name).expect("classified")),
                None => trace(Call::Unknown),
            };
            assert_eq!(run(&p, arch, nr), want, "syscall {nr}");
            let data = run(&p, arch, nr) & libc::SECCOMP_RET_DATA;
            if want != libc::SECCOMP_RET_ALLOW {
                assert!(Call::from_data(data).is_some(), "syscall {nr}");
            }
        }
        // Far past the table: unknown, or another ABI.
        assert_ne!(run(&p, arch, 0x3fff_ffff), libc::SECCOMP_RET_ALLOW);
        assert_ne!(run(&p, arch, u32::MAX), libc::SECCOMP_RET_ALLOW);
        // Another ABI always stops as Foreign, whatever the number.
        for other in [0x4000_0003 /* i386 */, 0x4000_0028 /* arm */, 0] {
            for nr in [0, 2, 59, 221, 257] {
                assert_eq!(run(&p, other, nr), trace(Call::Foreign));
            }
        }
    }

    #[test]
    fn x86_64_filter_answers_every_number_by_its_class() {
        check(AUDIT_ARCH_X86_64, tables::X86_64);
        let p = program(AUDIT_ARCH_X86_64, tables::X86_64, false);
        // x32 system calls (bit 30) have their own numbers.
        for nr in [0, 1, 257, 0x3fff_ffff] {
            assert_eq!(
                run(&p, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | nr),
                trace(Call::Foreign)
            );
        }
        // A few by name.
        let at = |nr| run(&p, AUDIT_ARCH_X86_64, nr);
        assert_eq!(at(0), libc::SECCOMP_RET_ALLOW); // read
        assert_eq!(at(257), trace(Call::OpenAt));
        assert_eq!(at(426), trace(Call::Unrecordable)); // io_uring_enter
        assert_eq!(at(317), trace(Call::Seccomp));
        assert_eq!(at(464), trace(Call::XattrAt)); // getxattrat
        assert_eq!(at(470), trace(Call::Unknown));
        assert_eq!(at(400), trace(Call::Unknown));
    }

    #[test]
    fn aarch64_filter_answers_every_number_by_its_class() {
        check(AUDIT_ARCH_AARCH64, tables::AARCH64);
        let p = program(AUDIT_ARCH_AARCH64, tables::AARCH64, false);
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 56), trace(Call::OpenAt));
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 250), trace(Call::Unknown));
    }

    #[test]
    fn every_call_round_trips_through_ret_data() {
        for c in Call::ALL {
            assert_eq!(Call::from_data(c as u32), Some(c));
        }
        assert_eq!(Call::from_data(0), None);
    }

    /// The generated numbers agree with libc's for the host.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_numbers_match_libc() {
        use libc::*;
        for (nr, name) in [
            (SYS_open, "open"),
            (SYS_execve, "execve"),
            (SYS_getxattr, "getxattr"),
            (SYS_openat, "openat"),
            (SYS_seccomp, "seccomp"),
            (SYS_io_uring_enter, "io_uring_enter"),
            (SYS_clone3, "clone3"),
            (SYS_faccessat2, "faccessat2"),
            (SYS_mseal, "mseal"),
        ] {
            assert_eq!(
                super::super::syscalls::name(tables::X86_64, nr as u64),
                Some(name)
            );
        }
    }
}
