//! `memorun list`: the recorded entries, newest first, one per line or as
//! a JSON array.
//!
//! JSON: an array of objects with `key` (hex), `created_ms`, `last_used_ms`,
//! `duration_ms`, `exit_code`, `output_bytes`, `files` and `file_bytes`
//! (its output files), `traced_inputs` (null unless traced), `hits`,
//! `command` (string).

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::config::CacheLocation;
use crate::store::age;
use crate::store::db::SqliteStore;
use crate::store::inventory::{ClearFilter, Listed};
use crate::term::format::{human_duration, human_size};

/// Run `memorun list`; returns the exit code.
pub fn list(location: &CacheLocation, json: bool) -> Result<i32> {
    let entries = match location.existing_dir()? {
        None => Vec::new(),
        Some(dir) => SqliteStore::open(&dir)?.list(&ClearFilter::default())?,
    };
    let text = if json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
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
            })
            .collect();
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        table(&entries)
    };
    crate::term::output::print_stdout(text.as_bytes())
}

fn since(ms: i64) -> String {
    human_duration(age(ms))
}

/// Entries as an aligned table with a header.
pub fn table(entries: &[Listed]) -> String {
    let header = [
        "KEY", "AGE", "USED", "TOOK", "EXIT", "SIZE", "FILES", "TRACED", "HITS", "COMMAND",
    ];
    let rows: Vec<[String; 10]> = entries
        .iter()
        .map(|e| {
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
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        for (i, cell) in cells.iter().enumerate() {
            if i == cells.len() - 1 {
                out.push_str(cell);
            } else if i == 0 || i == cells.len() - 1 {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                out.push_str(&format!("{cell:>w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}
