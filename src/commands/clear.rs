//! `memorun clear`: remove entries (all, or those matching filters) and
//! collect files no entry uses.
//!
//! Only what memorun created inside the cache directory is removed: rows,
//! blob files with memorun's own names, and temp files whose process died
//! (see `base::temp`). Symlinks are never followed (see
//! `store::gc`). `--all` resets the store without
//! opening its database (see `store::repair`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::config::CacheLocation;
use crate::key::Component;
use crate::store::db::SqliteStore;
use crate::store::inventory::ClearFilter;
use crate::store::now_ms;
use crate::store::{private, repair};
use crate::term::format::human_size;

/// What to clear.
#[derive(Debug, Clone, Default)]
pub struct ClearArgs {
    /// Only entries last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Only entries with a non-zero exit code.
    pub failed: bool,
    /// Only entries of this command (as it is keyed, without `-x`).
    pub command: Vec<OsString>,
    /// Say, do not do.
    pub dry_run: bool,
    /// Reset the whole store, even one whose database cannot be opened.
    pub all: bool,
    /// `command` is a prefix: every command that starts with its words.
    pub prefix: bool,
}

/// Run `memorun clear`; returns the exit code.
pub fn clear(location: &CacheLocation, args: &ClearArgs) -> Result<i32> {
    let Some(dir) = location.existing_dir()? else {
        return crate::term::output::print_stdout(b"nothing to clear\n");
    };
    if args.all {
        return reset(&dir, args.dry_run);
    }
    let mut store = SqliteStore::open(&dir)?;
    let shown = crate::term::quote::command(&args.command);
    let filter = ClearFilter {
        last_used_before_ms: args
            .older_than
            .map(|d| now_ms() - d.as_millis().min(i64::MAX as u128) as i64),
        failed: args.failed,
        argv_digest: (!args.command.is_empty() && !args.prefix).then(|| {
            let argv: Vec<&[u8]> = args.command.iter().map(|a| a.as_bytes()).collect();
            Component::argv(&argv).digest
        }),
        display_prefix: args.prefix.then(|| shown.clone()),
    };
    // Entries of longer commands that start with these words: what a user
    // who typed `clear -- cargo test` for `cargo test --offline` meant,
    // most likely. Counted before they could be removed.
    let longer = match args.command.is_empty() || args.prefix {
        true => 0,
        false => {
            let prefixed = ClearFilter {
                argv_digest: None,
                display_prefix: Some(shown.clone()),
                ..filter.clone()
            };
            store
                .list(&prefixed)?
                .iter()
                .filter(|e| e.display != shown)
                .count()
        }
    };
    let mut out = String::new();
    // The size said is the disk space freed, as the size limit counts it:
    // hit records, blobs, and database pages (see `inventory::Cleared`).
    let (verb, cleared, gc) = if args.dry_run {
        let doomed = store.list(&filter)?;
        if !doomed.is_empty() {
            out.push_str(&crate::commands::list::table(&doomed));
        }
        let cleared = store.clear(&filter, true)?;
        let gc = store.collect_garbage(store.tmp_dir(), true)?;
        ("would remove", cleared, gc)
    } else {
        let cleared = store.clear(&filter, false)?;
        let gc = store.collect_garbage(store.tmp_dir(), false)?;
        ("removed", cleared, gc)
    };
    out.push_str(&summary(verb, cleared.entries, cleared.freed_bytes(), gc));
    if longer > 0 {
        out.push_str(&format!(
            "{longer} other {} {} with `{shown}`; `memorun clear --prefix -- {shown}` removes {}\n",
            plural(longer as u64, "entry", "entries"),
            if longer == 1 { "starts" } else { "start" },
            if longer == 1 { "it" } else { "them" },
        ));
    }
    crate::term::output::print_stdout(out.as_bytes())
}

/// `clear --all`: delete the store's files without opening the database
/// (it may be what is broken), then open a new one.
fn reset(dir: &Path, dry_run: bool) -> Result<i32> {
    // The same checks as any use of the directory (ours, private, out of
    // other users' reach), and from then on its checked path.
    let dir = &private::check_private(dir)?;
    let (files, bytes) = repair::reset(dir, dry_run);
    let what = format!(
        "{files} {} ({})",
        plural(files, "file", "files"),
        human_size(bytes)
    );
    let text = if dry_run {
        format!("would reset the cache in '{}': {what}\n", dir.display())
    } else {
        SqliteStore::open(dir)?;
        format!("reset the cache in '{}': removed {what}\n", dir.display())
    };
    crate::term::output::print_stdout(text.as_bytes())
}

/// `removed 3 entries (1.2 MiB) and 2 unused files (10 KiB)`: the space
/// the entries freed, then the files no entry used.
fn summary(verb: &str, entries: u64, bytes: u64, (files, file_bytes): (u64, u64)) -> String {
    let mut s = format!(
        "{verb} {entries} {} ({})",
        plural(entries, "entry", "entries"),
        human_size(bytes)
    );
    if files > 0 {
        s.push_str(&format!(
            " and {files} unused {} ({})",
            plural(files, "file", "files"),
            human_size(file_bytes)
        ));
    }
    s.push('\n');
    s
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
