//! What every layer shares, and the one module that imports nothing else
//! from the crate (`tests/layering.rs` checks it): content digests and the
//! hashing functions that make them, file stats and the stat-cache
//! interface, the reference to a stored stream, temp files, the clock.
//!
//! - [`digest`]: [`Digest`], a BLAKE3 digest.
//! - [`hashing`]: files hashed by size; `manifest`, the digest that names a
//!   command in a directory.
//! - [`stat`]: `FileStat`, `CachedStat`, the `StatCache` trait, `NoCache`.
//! - [`stream`]: [`StoredStream`], a stored stream by length and digest.
//! - [`temp`]: temp files that vanish with their process.
//! - [`time`]: `now_ns`, `now_ms`.

pub(crate) mod digest;
pub mod hashing; // re-exported as `key::hashing`
pub(crate) mod stat;
pub(crate) mod stream;
pub(crate) mod temp;
pub(crate) mod time;

pub use digest::Digest;
pub use stream::StoredStream;
