//! The key: everything that can change a command's result, encoded without
//! ambiguity and hashed.
//!
//! - [`encoding`]: the versioned encoding of [`Key`] and its [`Component`]s.
//! - [`spec`]: what the user asked to put in the key ([`spec::KeySpec`]).
//! - [`resolve`]: where the key is built: the spec, environment and files to
//!   a [`Key`], with what the run must watch.
//! - [`inputs`], [`exclude`], `hashing` (from `base`): which arguments and paths are
//!   input files, which are left out, and their digests; the race guard.
//! - [`stdin`]: stdin hashed, and spooled for the command.
//! - [`descriptors`]: the descriptors above 2 the command inherits.
//! - [`traced`]: the inputs a traced run used (`--trace`), as manifests
//!   checked before a lookup.
//! - [`base_dir`]: paths under `--base-dir` keyed relative to it.

pub(crate) mod base_dir;
pub(crate) mod descriptors;
pub(crate) mod encoding;
pub mod exclude;
pub use crate::base::hashing;
pub mod inputs;
pub(crate) mod resolve;
pub(crate) mod spec;
pub(crate) mod stdin;
pub mod traced;

pub use encoding::*;
