//! The tracer of a command's file-system calls: the `memorun-trace` crate
//! (`crates/memorun-trace`), re-exported here so that the rest of memorun
//! names it where the other ways of running a command live.
//!
//! The crate holds the unsafe code that `ptrace`, seccomp-BPF and the
//! fork of a traced child need, and imports nothing from memorun: what it
//! returns (paths, [`Access`] flags, [`Seen`] stats, BLAKE3 digests as
//! `[u8; 32]`) is converted by the callers ([`crate::key::traced`],
//! [`crate::commands::run`], [`crate::exec::spawn`]).

pub use memorun_trace::*;
