//! What a user can ask memorun for, one file each: [`run`] (run or replay a
//! command, the default), [`why`], [`stats`], [`list`], [`clear`] and
//! [`completions`]. [`prepare`] is what `run` and `why` share: the store
//! opened, stdin captured and the key resolved; [`diff`] is what changed
//! between two keys and the closest earlier entry, for `why` and a `-v`
//! miss.
//!
//! These are the only modules that tie the layers together; nothing below
//! them imports them.

pub(crate) mod clear;
pub mod completions;
pub(crate) mod diff;
pub(crate) mod list;
pub(crate) mod prepare;
pub(crate) mod run;
pub(crate) mod stats;
pub(crate) mod why;
