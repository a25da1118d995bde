//! `memorun list`: the recorded entries, newest first, one per line or as
//! a JSON array, printed as they are read; `--limit N` stops after the N
//! newest.
//!
//! JSON: an array of objects with `key` (hex), `created_ms`, `last_used_ms`,
//! `duration_ms`, `exit_code`, `output_bytes`, `files` and `file_bytes`
//! (its output files), `traced_inputs` (null unless traced), `hits`,
//! `command` (string).
//!
//! Invariants:
//! - Memory does not grow with the store: rows go from the query to stdout
//!   through one buffer of [`CHUNK`] bytes. The table holds at most its
//!   first [`PAGE`] rows, which set the column widths: every row of a store
//!   (or a `--limit`) that small, so its table is aligned exactly; past
//!   them, the widths are at least [`FLOORS`] and a wider cell further
//!   down pushes the rest of its line right.
//! - A reader that goes away (`memorun list | head`) ends the listing
//!   quietly with exit code 0, as for every report; any other write error
//!   is an error.

use std::io;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::config::CacheLocation;
use crate::store::age;
use crate::store::db::SqliteStore;
use crate::store::inventory::{ClearFilter, Listed};
use crate::term::format::{human_duration, human_size};
use crate::term::output::{STDOUT, is_broken_pipe};

/// Bytes gathered before one write to stdout.
const CHUNK: usize = 64 * 1024;

/// Rows a table holds to set its column widths.
const PAGE: usize = 1000;

/// The table's columns.
const HEADER: [&str; COLUMNS] = [
    "KEY", "AGE", "USED", "TOOK", "EXIT", "SIZE", "FILES", "TRACED", "HITS", "COMMAND",
];
const COLUMNS: usize = 10;

/// The least widths of a table longer than [`PAGE`] rows: what the cells
/// of older rows need, whose ages are longer (`29days 23h 59m`), whose
/// sizes can be `1023.9 MiB`, whose commands may have run `59m 59s`.
const FLOORS: [usize; COLUMNS] = [12, 14, 14, 7, 4, 10, 5, 6, 4, 0];

/// Run `memorun list`; returns the exit code.
pub fn list(location: &CacheLocation, json: bool, limit: Option<u64>) -> Result<i32> {
    let mut out = Out::new(|b: &[u8]| STDOUT.write_all(b));
    let mut sink = match json {
        true => Sink::Json { any: false },
        false => Sink::Table(Table::default()),
    };
    if let Some(dir) = location.existing_dir()? {
        let mut left = limit.unwrap_or(u64::MAX);
        SqliteStore::open(&dir)?.list_each(&ClearFilter::default(), |e| {
            left = left.saturating_sub(1);
            sink.row(&e, &mut out);
            match left == 0 || out.stopped() {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        })?;
    }
    sink.finish(&mut out);
    out.finish()
}

/// Buffered output to stdout (or, in tests, to memory) that remembers a
/// reader gone or a write error instead of failing each write.
struct Out<W: FnMut(&[u8]) -> io::Result<()>> {
    buf: Vec<u8>,
    write: W,
    gone: bool,
    error: Option<io::Error>,
}

impl<W: FnMut(&[u8]) -> io::Result<()>> Out<W> {
    fn new(write: W) -> Self {
        Out {
            buf: Vec::with_capacity(CHUNK),
            write,
            gone: false,
            error: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.stopped() && !self.buf.is_empty() {
            match (self.write)(&self.buf) {
                Ok(()) => {}
                Err(e) if is_broken_pipe(&e) => self.gone = true,
                Err(e) => self.error = Some(e),
            }
        }
        self.buf.clear();
    }

    /// Whether writing more is pointless: the reader went away, or a write
    /// failed.
    fn stopped(&self) -> bool {
        self.gone || self.error.is_some()
    }

    fn finish(mut self) -> Result<i32> {
        self.flush();
        match self.error {
            Some(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
            None => Ok(0),
        }
    }
}

/// The form the entries are printed in.
enum Sink {
    /// A JSON array, one pretty-printed object per entry (`any`: an entry
    /// was printed, so the array is open).
    Json {
        any: bool,
    },
    Table(Table),
}

impl Sink {
    fn row<W: FnMut(&[u8]) -> io::Result<()>>(&mut self, e: &Listed, out: &mut Out<W>) {
        match self {
            Sink::Json { any } => {
                // The lines of one element of a pretty-printed array: the
                // object's own lines, one level in (a string's newlines
                // are escaped, so every line break is the printer's).
                let text = serde_json::to_string_pretty(&json_of(e)).unwrap_or_default();
                out.push(if *any { b",\n" } else { b"[\n" });
                for (i, line) in text.lines().enumerate() {
                    out.push(if i == 0 { b"  " } else { b"\n  " });
                    out.push(line.as_bytes());
                }
                *any = true;
            }
            Sink::Table(t) => t.row(e, out),
        }
    }

    fn finish<W: FnMut(&[u8]) -> io::Result<()>>(self, out: &mut Out<W>) {
        match self {
            Sink::Json { any: true } => out.push(b"\n]\n"),
            Sink::Json { any: false } => out.push(b"[]\n"),
            Sink::Table(t) => t.finish(out),
        }
    }
}

fn json_of(e: &Listed) -> serde_json::Value {
    json!({
        "key": e.key.to_hex(),
        "created_ms": e.created_ms,
        "last_used_ms": e.last_used_ms,
        "duration_ms": e.duration_ms,
        "exit_code": e.exit_code,
        "output_bytes": e.output_bytes,
        "files": e.files.files,
        "traced_inputs": e.traced_inputs,
        "file_bytes": e.files.bytes,
        "hits": e.hits,
        "command": e.display,
    })
}

/// The table as it streams: the first [`PAGE`] rows held until they set
/// the widths (`widths` is then set), the rest printed at once.
#[derive(Default)]
struct Table {
    first: Vec<[String; COLUMNS]>,
    widths: Option<[usize; COLUMNS]>,
}

impl Table {
    fn row<W: FnMut(&[u8]) -> io::Result<()>>(&mut self, e: &Listed, out: &mut Out<W>) {
        let row = cells(e);
        if let Some(widths) = &self.widths {
            let mut line = String::new();
            render(widths, &row, &mut line);
            return out.push(line.as_bytes());
        }
        self.first.push(row);
        if self.first.len() > PAGE {
            let mut widths = widths(&self.first);
            for (w, floor) in widths.iter_mut().zip(FLOORS) {
                *w = (*w).max(floor);
            }
            self.print_first(widths, out);
            self.widths = Some(widths);
        }
    }

    fn finish<W: FnMut(&[u8]) -> io::Result<()>>(mut self, out: &mut Out<W>) {
        if self.widths.is_none() {
            self.print_first(widths(&self.first), out);
        }
    }

    /// The header and the rows held, which go.
    fn print_first<W: FnMut(&[u8]) -> io::Result<()>>(
        &mut self,
        widths: [usize; COLUMNS],
        out: &mut Out<W>,
    ) {
        let mut text = String::new();
        render(&widths, &HEADER, &mut text);
        for row in self.first.drain(..) {
            render(&widths, &row, &mut text);
        }
        out.push(text.as_bytes());
    }
}

fn since(ms: i64) -> String {
    human_duration(age(ms))
}

/// One entry's cells, as the table shows them.
fn cells(e: &Listed) -> [String; COLUMNS] {
    [
        e.key.short(),
        since(e.created_ms),
        since(e.last_used_ms),
        human_duration(Duration::from_millis(e.duration_ms.max(0) as u64)),
        e.exit_code.to_string(),
        human_size(e.output_bytes),
        match e.files.files {
            0 => "-".to_string(),
            n => format!("{n} ({})", human_size(e.files.bytes)),
        },
        e.traced_inputs.map_or("-".into(), |n| n.to_string()),
        e.hits.to_string(),
        crate::term::quote::printable(&e.display).into_owned(),
    ]
}

/// The widths that fit the header and `rows`.
fn widths(rows: &[[String; COLUMNS]]) -> [usize; COLUMNS] {
    let mut widths = HEADER.map(str::len);
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One line of the table: the key left-aligned, the numbers right-aligned,
/// the command last, unpadded.
fn render<S: AsRef<str>>(widths: &[usize; COLUMNS], cells: &[S; COLUMNS], out: &mut String) {
    for (i, cell) in cells.iter().enumerate() {
        let (cell, w) = (cell.as_ref(), widths[i]);
        match i {
            0 => out.push_str(&format!("{cell:<w$}  ")),
            _ if i == COLUMNS - 1 => out.push_str(cell),
            _ => out.push_str(&format!("{cell:>w$}  ")),
        }
    }
    out.push('\n');
}

/// Entries as an aligned table with a header.
pub fn table(entries: &[Listed]) -> String {
    let rows: Vec<_> = entries.iter().map(cells).collect();
    let widths = widths(&rows);
    let mut out = String::new();
    render(&widths, &HEADER, &mut out);
    for row in &rows {
        render(&widths, row, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Digest;

    fn entry(i: u8, display: &str) -> Listed {
        Listed {
            key: Digest([i; 32]),
            created_ms: crate::base::time::now_ms() - i64::from(i) * 3_600_000,
            last_used_ms: crate::base::time::now_ms(),
            duration_ms: i64::from(i) * 1000,
            exit_code: i32::from(i),
            output_bytes: u64::from(i) << 20,
            files: Default::default(),
            traced_inputs: None,
            hits: u64::from(i),
            display: display.into(),
        }
    }

    /// What `list` prints of `entries`, through a buffer of `CHUNK` bytes.
    fn streamed(entries: &[Listed], json: bool) -> String {
        let mut written = Vec::new();
        let mut out = Out::new(|b: &[u8]| {
            written.extend_from_slice(b);
            Ok(())
        });
        let mut sink = match json {
            true => Sink::Json { any: false },
            false => Sink::Table(Table::default()),
        };
        for e in entries {
            sink.row(e, &mut out);
        }
        sink.finish(&mut out);
        assert_eq!(out.finish().unwrap(), 0);
        String::from_utf8(written).unwrap()
    }

    #[test]
    fn streamed_json_is_the_pretty_array_it_always_was() {
        for n in [0, 1, 3] {
            let entries: Vec<_> = (0..n).map(|i| entry(i, "say \"hi\"\nthere")).collect();
            let whole: Vec<_> = entries.iter().map(json_of).collect();
            let expected = serde_json::to_string_pretty(&whole).unwrap() + "\n";
            assert_eq!(streamed(&entries, true), expected, "{n} entries");
        }
    }

    #[test]
    fn a_table_of_up_to_a_page_is_aligned_on_all_its_rows() {
        let entries: Vec<_> = (0..5).map(|i| entry(i * 50, "make")).collect();
        assert_eq!(streamed(&entries, false), table(&entries));
        assert_eq!(streamed(&[], false), table(&[]));
    }

    #[test]
    fn a_longer_table_keeps_the_widths_of_its_first_page_at_least_the_floors() {
        let entries: Vec<_> = (0..PAGE + 5)
            .map(|i| entry((i % 3) as u8, "cargo t"))
            .collect();
        let text = streamed(&entries, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), PAGE + 6);
        // Every line is as long: all cells fit the widths set.
        let len = lines[0].len();
        assert!(lines.iter().all(|l| l.len() == len), "{text}");
        let mut floors = FLOORS;
        floors[COLUMNS - 1] = "COMMAND".len();
        assert_eq!(len, floors.iter().sum::<usize>() + 2 * (COLUMNS - 1));
    }

    #[test]
    fn a_reader_gone_stops_the_output_quietly() {
        let mut calls = 0;
        let mut out = Out::new(|_: &[u8]| {
            calls += 1;
            Err(io::ErrorKind::BrokenPipe.into())
        });
        out.push(&[b'x'; CHUNK]);
        assert!(out.stopped());
        out.push(&[b'x'; CHUNK]);
        assert_eq!(out.finish().unwrap(), 0);
        assert_eq!(calls, 1);
    }

    #[test]
    fn another_write_error_is_an_error() {
        let mut out = Out::new(|_: &[u8]| Err(io::ErrorKind::PermissionDenied.into()));
        out.push(b"x");
        let e = out.finish().unwrap_err();
        assert!(format!("{e:#}").contains("cannot write to stdout"), "{e:#}");
    }
}
