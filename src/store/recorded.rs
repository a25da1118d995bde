//! The store a hit sees before it opens the database: entries from their
//! hit records (see `records`), streams and output files from the blob
//! files, hits counted in the hit log. It is the same [`Store`] seam, so a
//! hit takes the same path (policy, restore, replay, count) whichever
//! store found it.
//!
//! Whatever a record cannot answer (a counter to add, a corrupt entry to
//! remove, a long hit log to fold, an earlier run of the command) opens
//! the database then, once, and asks it: those are rare on a hit, and the
//! answer is the database's own.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::counters::{Counter, NotRecorded};
use super::db::SqliteStore;
use super::evict::Limits;
use super::records::{self, Records};
use super::statcache::StatCache;
use super::{
    Blobs, CacheDir, Counters, EarlierRun, Entries, Entry, History, NewEntry, Source, Spool,
    Spooled, Store, StoredManifest, StoredStream, hitlog, now_ms,
};
use crate::base::Digest;
use crate::outputs::files;

/// What a hit still needs of the record it found, once its entry is the
/// caller's.
struct Found {
    key: Digest,
    manifest: Digest,
    /// Fast checks of its blobs, sorted by digest (see `Record::checks`).
    checks: Vec<(Digest, Option<[u8; 16]>)>,
}

impl Found {
    fn check(&self, digest: &Digest) -> Option<[u8; 16]> {
        records::check_in(&self.checks, digest)
    }
}

/// Entries from hit records; the database only when asked what they
/// cannot say.
pub struct RecordStore {
    dir: CacheDir,
    records: Records,
    blobs: Blobs,
    limits: Limits,
    /// The record last looked up: its blob checks and its command.
    current: Option<Found>,
    /// The database, once something needed it.
    db: RefCell<Option<SqliteStore>>,
}

impl RecordStore {
    /// The records of the cache directory `dir`; nothing is opened yet.
    pub fn new(dir: CacheDir, limits: Limits) -> RecordStore {
        RecordStore {
            records: Records::new(&dir.root),
            blobs: Blobs::new(dir.root.join("blobs")),
            dir,
            limits,
            current: None,
            db: RefCell::new(None),
        }
    }

    /// The database, if something already opened it: the caller going on
    /// to the database path uses it rather than opening it again.
    pub fn into_db(self) -> Option<SqliteStore> {
        self.db.into_inner()
    }

    /// Run `f` on the database, opening it the first time.
    fn with_db<T>(&self, f: impl FnOnce(&mut SqliteStore) -> Result<T>) -> Result<T> {
        let mut db = self.db.borrow_mut();
        if db.is_none() {
            let mut store = SqliteStore::open_in(self.dir.clone())?;
            store.set_limits(self.limits);
            *db = Some(store);
        }
        f(db.as_mut().expect("opened above"))
    }
}

impl Entries for RecordStore {
    /// A record that is not there, unsound or for another key is a miss
    /// here, never an error: the database path then looks.
    fn lookup(&mut self, key: &Digest) -> Result<Option<Entry>> {
        // The entry goes to the caller (no copy of its inline output); what
        // the rest of the hit asks of the record stays here.
        let Some(record) = self.records.read(key) else {
            self.current = None;
            return Ok(None);
        };
        self.current = Some(Found {
            key: *key,
            manifest: record.manifest,
            checks: record.checks,
        });
        Ok(Some(record.entry))
    }

    fn open_stream(&self, stream: &StoredStream) -> Result<Option<Source>> {
        super::open_verified(&self.blobs, stream, || {
            Ok(self.current.as_ref().and_then(|r| r.check(&stream.digest)))
        })
    }

    fn blob_check(&self, digest: &Digest) -> Option<[u8; 16]> {
        self.current.as_ref().and_then(|r| r.check(digest))
    }

    fn local_blobs(&self) -> Option<&Blobs> {
        Some(&self.blobs)
    }

    fn spool(&self) -> Spool {
        Spool::new(self.dir.tmp_dir.clone())
    }

    fn spool_file(&self) -> Spool {
        Spool::with_inline_max(self.dir.tmp_dir.clone(), files::FILE_INLINE_MAX)
    }

    fn put_file(&self, content: Spooled) -> Result<(StoredStream, [u8; 16])> {
        self.with_db(|db| db.put_file(content))
    }

    fn insert(&mut self, entry: NewEntry<'_>) -> Result<()> {
        self.with_db(|db| db.insert(entry))
    }

    fn manifests(&self, base: &Digest, limit: usize) -> Result<Vec<StoredManifest>> {
        self.with_db(|db| db.manifests(base, limit))
    }

    /// In the hit log, under the command the record names, as the
    /// database path counts it; the database only to fold a long log, or
    /// when the log is being folded.
    fn record_hit(&mut self, entry: &Entry) -> Result<()> {
        let manifest = match &self.current {
            Some(r) if r.key == entry.key => r.manifest,
            _ => return self.with_db(|db| db.record_hit(entry)),
        };
        let saved = entry.duration.as_millis() as i64;
        let log = hitlog::path(&self.dir.root);
        match hitlog::append(&log, &entry.key, &manifest, now_ms(), saved) {
            Ok(size) if size >= hitlog::FOLD_AT => self.with_db(|db| Ok(db.fold_hits()?)),
            Ok(_) => Ok(()),
            Err(_) => self.with_db(|db| db.record_hit(entry)),
        }
    }

    /// The database removes the row, and its record first, if it is still
    /// this entry (it shares the blob that failed).
    fn discard_corrupt(&mut self, entry: &Entry) -> Result<bool> {
        self.current = None;
        self.with_db(|db| db.discard_corrupt(entry))
    }
}

impl History for RecordStore {
    fn note_unrecorded(&mut self, command_in_dir: &Digest, why: &NotRecorded) -> Result<()> {
        self.with_db(|db| History::note_unrecorded(db, command_in_dir, why))
    }

    fn previous_duration(&self, argv_digest: &Digest) -> Result<Option<Duration>> {
        self.with_db(|db| db.previous_duration(argv_digest))
    }

    fn earlier_runs(&self, argv_digest: &Digest, except: &Digest) -> Result<Vec<EarlierRun>> {
        self.with_db(|db| db.earlier_runs(argv_digest, except))
    }
}

impl Counters for RecordStore {
    fn count(&mut self, counters: &[(Counter, i64)]) -> Result<()> {
        self.with_db(|db| db.count(counters))
    }
}

impl Store for RecordStore {
    fn take_notice(&self) -> Option<String> {
        None
    }

    fn locks_dir(&self) -> PathBuf {
        self.dir.root.join("locks")
    }

    fn with_stat_cache(&self, f: &mut dyn FnMut(&mut dyn StatCache)) {
        match self.with_db(|db| {
            db.with_stat_cache(&mut *f);
            Ok(())
        }) {
            Ok(()) => {}
            Err(_) => f(&mut crate::base::stat::NoCache),
        }
    }
}
