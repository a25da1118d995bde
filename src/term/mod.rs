//! The terminal side: [`output`] writes bytes to stdout and stderr, [`ui`]
//! speaks as `memorun:`, [`progress`] draws the spinner and the hashing bar,
//! [`format`](mod@format) writes sizes, durations and error reasons for people, and
//! [`quote`] makes what is shown unambiguous and safe.

pub(crate) mod format;
pub(crate) mod output;
pub(crate) mod progress;
pub(crate) mod quote;
pub(crate) mod ui;
