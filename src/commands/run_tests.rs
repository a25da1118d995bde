//! The run path against store doubles (as sccache's `multilevel_test.rs`
//! does): an in-memory store, and one that fails on each operation in
//! turn. Every failure must cost a miss or an uncached run, never the
//! command.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;

use super::*;
use crate::base::Digest;
use crate::base::stat::{NoCache, StatCache};
use crate::cli::Cli;
use crate::store::blobs::SpooledData;
use crate::store::counters::{Counter, NotRecorded};
use crate::store::{
    Counters, EarlierRun, Entries, Entry, History, NewEntry, Source, Spool, Spooled, Store,
    StoredManifest, StoredStream,
};
use crate::term::ui::Verbosity;

/// The operations of the storage seam a double can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lookup,
    OpenStream,
    PutFile,
    Insert,
    Manifests,
    RecordHit,
    DiscardCorrupt,
    NoteUnrecorded,
    PreviousDuration,
    EarlierRuns,
    Count,
}

const OPS: [Op; 11] = [
    Op::Lookup,
    Op::OpenStream,
    Op::PutFile,
    Op::Insert,
    Op::Manifests,
    Op::RecordHit,
    Op::DiscardCorrupt,
    Op::NoteUnrecorded,
    Op::PreviousDuration,
    Op::EarlierRuns,
    Op::Count,
];

/// A store in memory (entries with their streams inline), failing `fail`.
struct Memory {
    dir: PathBuf,
    entries: HashMap<Digest, Entry>,
    counters: HashMap<Counter, i64>,
    fail: Option<Op>,
    /// The operations asked of it.
    asked: RefCell<Vec<Op>>,
}

impl Memory {
    fn new(dir: &Path, fail: Option<Op>) -> Memory {
        Memory {
            dir: dir.to_path_buf(),
            entries: HashMap::new(),
            counters: HashMap::new(),
            fail,
            asked: RefCell::new(Vec::new()),
        }
    }

    fn op(&self, op: Op) -> Result<()> {
        self.asked.borrow_mut().push(op);
        if self.fail == Some(op) {
            bail!("the double fails {op:?}");
        }
        Ok(())
    }
}

fn inline(s: Spooled) -> StoredStream {
    let bytes = match s.data {
        SpooledData::Inline(b) => b,
        SpooledData::Temp(t) => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut t.file(), &mut b).unwrap();
            b
        }
    };
    StoredStream {
        len: s.len,
        digest: s.digest,
        inline: Some(bytes),
    }
}

impl Entries for Memory {
    fn lookup(&mut self, key: &Digest) -> Result<Option<Entry>> {
        self.op(Op::Lookup)?;
        Ok(self.entries.get(key).cloned())
    }

    fn open_stream(&self, stream: &StoredStream) -> Result<Option<Source>> {
        self.op(Op::OpenStream)?;
        Ok(stream.inline.clone().map(Source::Bytes))
    }

    fn spool(&self) -> Spool {
        Spool::new(self.dir.clone())
    }

    fn spool_file(&self) -> Spool {
        Spool::new(self.dir.clone())
    }

    fn put_file(&self, content: Spooled) -> Result<(StoredStream, [u8; 16])> {
        self.op(Op::PutFile)?;
        let check = content.check;
        Ok((inline(content), check))
    }

    fn insert(&mut self, e: NewEntry<'_>) -> Result<()> {
        self.op(Op::Insert)?;
        let key = e.key.digest;
        let entry = Entry {
            key,
            created_ms: crate::store::now_ms(),
            duration: e.duration,
            exit_code: e.exit_code,
            stdout: inline(e.stdout),
            stderr: inline(e.stderr),
            order: inline(e.order),
            outputs: e.outputs,
            stdin_advance: e.stdin_advance,
        };
        self.entries.insert(key, entry);
        Ok(())
    }

    fn manifests(&self, _base: &Digest, _limit: usize) -> Result<Vec<StoredManifest>> {
        self.op(Op::Manifests)?;
        Ok(Vec::new())
    }

    fn record_hit(&mut self, _entry: &Entry) -> Result<()> {
        self.op(Op::RecordHit)?;
        *self.counters.entry(Counter::Hits).or_default() += 1;
        Ok(())
    }

    fn discard_corrupt(&mut self, entry: &Entry) -> Result<bool> {
        self.op(Op::DiscardCorrupt)?;
        Ok(self.entries.remove(&entry.key).is_some())
    }
}

impl History for Memory {
    fn note_unrecorded(&mut self, _command_in_dir: &Digest, why: &NotRecorded) -> Result<()> {
        self.op(Op::NoteUnrecorded)?;
        *self.counters.entry(why.counter()).or_default() += 1;
        Ok(())
    }

    fn previous_duration(&self, _argv_digest: &Digest) -> Result<Option<Duration>> {
        self.op(Op::PreviousDuration)?;
        Ok(None)
    }

    fn earlier_runs(&self, _argv_digest: &Digest, _except: &Digest) -> Result<Vec<EarlierRun>> {
        self.op(Op::EarlierRuns)?;
        Ok(Vec::new())
    }
}

impl Counters for Memory {
    fn count(&mut self, counters: &[(Counter, i64)]) -> Result<()> {
        self.op(Op::Count)?;
        for (c, n) in counters {
            *self.counters.entry(*c).or_default() += n;
        }
        Ok(())
    }
}

impl Store for Memory {
    fn take_notice(&self) -> Option<String> {
        None
    }

    fn locks_dir(&self) -> PathBuf {
        self.dir.join("locks")
    }

    fn with_stat_cache(&self, f: &mut dyn FnMut(&mut dyn StatCache)) {
        f(&mut NoCache)
    }
}

/// A command that appends a line to `counter` each time it runs, prints
/// nothing (a replay writes to this process's stdout), and exits `code`.
fn config(dir: &Path, counter: &Path, code: i32, extra: &[&str]) -> Config {
    let script = format!("echo ran >> '{}'; exit {code}", counter.display());
    let cache = dir.join("cache");
    let mut args: Vec<OsString> = vec!["memorun".into(), "--cache-dir".into(), cache.into()];
    args.extend(extra.iter().map(OsString::from));
    args.extend(["--", "sh", "-c", &script].map(OsString::from));
    let cli = Cli::try_parse_from(args).unwrap();
    Config::new(cli.run, |_| None).unwrap()
}

fn runs(counter: &Path) -> usize {
    std::fs::read_to_string(counter).map_or(0, |s| s.lines().count())
}

/// One invocation of the run path, with `store` as its local store.
fn invoke(config: &Config, store: &mut dyn Store) -> Result<i32, Failure> {
    let Prepared { resolved, feed, .. } = prepare::begin(config, true, false)
        .ok()
        .unwrap()
        .finish(config, None)
        .ok()
        .unwrap();
    run_cached(
        config,
        &Ui::new(Verbosity::Quiet),
        store,
        &resolved,
        feed,
        None,
    )
}

#[test]
fn a_memory_store_records_then_replays() {
    let t = tempfile::tempdir().unwrap();
    let counter = t.path().join("counter");
    let config = config(t.path(), &counter, 0, &[]);
    let mut store = Memory::new(t.path(), None);
    assert_eq!(invoke(&config, &mut store).unwrap(), 0);
    assert_eq!(runs(&counter), 1);
    assert_eq!(store.entries.len(), 1, "recorded");
    assert_eq!(invoke(&config, &mut store).unwrap(), 0);
    assert_eq!(runs(&counter), 1, "the second invocation replayed");
    assert_eq!(store.counters.get(&Counter::Hits), Some(&1));
}

#[test]
fn an_unrecorded_run_is_noted_and_counted() {
    let t = tempfile::tempdir().unwrap();
    let counter = t.path().join("counter");
    let config = config(t.path(), &counter, 3, &[]);
    let mut store = Memory::new(t.path(), None);
    assert_eq!(invoke(&config, &mut store).unwrap(), 3);
    assert_eq!(invoke(&config, &mut store).unwrap(), 3);
    assert_eq!(runs(&counter), 2);
    assert!(store.entries.is_empty());
    assert_eq!(store.counters.get(&Counter::NotRecordedExit), Some(&2));
}

/// Each operation failing in turn, on a miss (with -v, which explains it)
/// and on a hit (recorded by a healthy store first): the command runs or
/// replays, with its own exit code, every time.
#[test]
fn a_store_failing_any_operation_costs_a_miss_never_the_command() {
    for op in OPS {
        for code in [0, 5] {
            let t = tempfile::tempdir().unwrap();
            let counter = t.path().join("counter");
            let flags: &[&str] = if code == 0 {
                &["-v"]
            } else {
                &["-v", "--cache-failures"]
            };
            let config = config(t.path(), &counter, code, flags);
            let mut healthy = Memory::new(t.path(), None);
            assert_eq!(invoke(&config, &mut healthy).unwrap(), code);
            // A miss against the failing store, then a hit if it has one.
            let mut failing = Memory::new(t.path(), Some(op));
            let missed = invoke(&config, &mut failing);
            assert_eq!(missed.ok(), Some(code), "{op:?} failing on a miss");
            failing.entries = healthy.entries.clone();
            let before = runs(&counter);
            let hit = invoke(&config, &mut failing);
            assert_eq!(hit.ok(), Some(code), "{op:?} failing on a hit");
            let ran = runs(&counter) - before;
            match op {
                // Without a lookup or the stream, the command runs again.
                Op::Lookup | Op::OpenStream => assert_eq!(ran, 1, "{op:?}"),
                // The rest are bookkeeping on a hit: it still replays.
                _ => assert_eq!(ran, 0, "{op:?}"),
            }
            assert!(
                failing.asked.borrow().contains(&op) || !matches!(op, Op::Lookup | Op::Insert),
                "{op:?} was never asked"
            );
        }
    }
}
