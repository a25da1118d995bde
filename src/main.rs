//! The `memorun` binary: everything lives in the library.
//!
//! `main` is the C entry point, not Rust's: the standard runtime's start-up
//! asks glibc for the main thread's stack bounds, which parses
//! `/proc/self/maps` with `sscanf` (about 46,000 instructions, an eighth of
//! a hit from a record), only to print a friendlier message on a stack
//! overflow. What else that start-up does that memorun relies on is done
//! here: the standard descriptors are made valid, SIGPIPE is ignored (a
//! reader gone is an `EPIPE` the replay handles; commands still start with
//! the default, as `std::process::Command` resets it), and a panic ends
//! with status 101 after the usual message. Arguments come from
//! `std::env::args_os`, which glibc hands to the standard library
//! whichever entry point runs.
// A test build of this file keeps the test harness's own `main`.
#![cfg_attr(not(test), no_main)]
// Unsafe code is allowed only in the C entry point and its descriptor check.
#![deny(unsafe_code)]

#[cfg(not(test))]
use std::os::raw::{c_char, c_int};

#[cfg(not(test))]
// SAFETY: `no_mangle` is unsafe because two symbols of one name would
// clash: this is the only `main` of the link (no_main: the standard
// library defines none).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    if !standard_fds_open() {
        return memorun::exit_codes::MEMORUN_ERROR;
    }
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // The panic hook prints the message; unwinding must not cross into C.
    std::panic::catch_unwind(|| memorun::run(std::env::args_os())).unwrap_or(101)
}

#[cfg(not(test))]
/// Open `/dev/null` on any of descriptors 0, 1 and 2 that is closed, as the
/// standard runtime does: otherwise the next file memorun opens (the
/// database) would become stdout, and output would be written into it.
fn standard_fds_open() -> bool {
    for fd in 0..3 {
        // SAFETY: F_GETFD on a descriptor number only reads its flags.
        #[allow(unsafe_code)]
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if closed {
            // SAFETY: a NUL-terminated path; the lowest free descriptor,
            // which is `fd`, is returned.
            #[allow(unsafe_code)]
            let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if opened != fd {
                return false;
            }
        }
    }
    true
}
