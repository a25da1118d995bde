//! Replaying a recorded entry: its output files put back first
//! ([`restore`]), then stdout and stderr byte for byte, in their original
//! interleaving.
//!
//! Invariant: nothing is written until every stream of the entry has been
//! verified against its digest and the interleaving has been checked to add
//! up, so a corrupt entry never produces partial or mixed output; it is a
//! miss instead.

pub(crate) mod interleaving;
pub(crate) mod policy;
pub(crate) mod restore;

use std::fs::File;
use std::io::{self, Read, Seek};

use anyhow::{Context, Result};

use crate::store::{Entry, Source, Store};
use crate::term::output::{self, Fd};
use interleaving::{RunReader, Stream};

/// How a replay ended.
#[derive(Debug)]
pub enum Replayed {
    /// Everything was written.
    Done,
    /// The entry failed verification; nothing was written.
    Corrupt,
    /// The reader of our output went away part-way (a broken pipe).
    ReaderGone,
    /// The store could not be read; nothing was written.
    Unreadable(anyhow::Error),
}

/// Replay `entry` to memorun's stdout and stderr. An error means writing
/// our own output failed part-way.
pub fn replay(store: &dyn Store, entry: &Entry) -> Result<Replayed> {
    let (stdout, stderr, order) = match open_verified(store, entry) {
        Ok(Some(streams)) => streams,
        Ok(None) => return Ok(Replayed::Corrupt),
        Err(e) => return Ok(Replayed::Unreadable(e)),
    };
    match write_runs(&order, &stdout, &stderr) {
        Ok(()) => Ok(Replayed::Done),
        Err(e) if output::is_broken_pipe(&e) => Ok(Replayed::ReaderGone),
        Err(e) => Err(e).context("cannot write the replayed output"),
    }
}

/// Open and verify all three streams, and check the interleaving against
/// the stream lengths. `Ok(None)` when anything is missing or corrupt.
fn open_verified(store: &dyn Store, entry: &Entry) -> Result<Option<(Source, Source, Source)>> {
    let Some(stdout) = store.open_stream(&entry.stdout)? else {
        return Ok(None);
    };
    let Some(stderr) = store.open_stream(&entry.stderr)? else {
        return Ok(None);
    };
    let Some(mut order) = store.open_stream(&entry.order)? else {
        return Ok(None);
    };
    if !interleaving::validate(reader(&order), entry.stdout.len, entry.stderr.len)
        .context("cannot read a stored output")?
    {
        return Ok(None);
    }
    if let Source::File(f) = &mut order {
        f.rewind().context("cannot read a stored output")?;
    }
    Ok(Some((stdout, stderr, order)))
}

fn reader(source: &Source) -> Box<dyn Read + '_> {
    match source {
        Source::Bytes(b) => Box::new(&b[..]),
        Source::File(f) => Box::new(f),
    }
}

fn write_runs(order: &Source, stdout: &Source, stderr: &Source) -> io::Result<()> {
    let mut runs = RunReader::new(reader(order));
    let (mut out_pos, mut err_pos) = (0u64, 0u64);
    while let Some(run) = runs.next_run()? {
        let (source, pos, fd) = match run.stream {
            Stream::Stdout => (stdout, &mut out_pos, output::STDOUT),
            Stream::Stderr => (stderr, &mut err_pos, output::STDERR),
        };
        write_range(source, *pos, run.len, fd)?;
        *pos += run.len;
    }
    Ok(())
}

fn write_range(source: &Source, pos: u64, len: u64, fd: Fd) -> io::Result<()> {
    match source {
        Source::Bytes(b) => fd.write_all(&b[pos as usize..(pos + len) as usize]),
        Source::File(f) => fd.copy_from_file(f as &File, pos, len),
    }
}
