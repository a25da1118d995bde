//! The local store: an SQLite database (bundled SQLite, WAL) plus blob files.
//!
//! Layout of a cache directory:
//!
//! ```text
//! memorun.db (+ -wal, -shm)   entries, one row per key
//! secret                      32 random bytes keying env and stdin digests
//! blobs/ab/abcdef...          large streams, named by their BLAKE3 digest
//! tmp/                        spools and other temp files in flight (see temp)
//! ```
//!
//! Invariants: every write runs in a `BEGIN IMMEDIATE` transaction; a row is
//! inserted only after all of its blobs are in place, so no row points at a
//! partial blob; the schema and its version are `schema`'s.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::blobs::{Blobs, Spool, Spooled, SpooledData};
use super::counters::{Counter, NotRecorded, bump};
use super::entry_row::{ENTRY_COLUMN_COUNT, ENTRY_COLUMNS, decode_entry};
use super::error::Error;
use super::evict::{self, Limits};
use super::inventory::{self, ClearFilter, Cleared, Listed, StoreStats};
use super::record_budget;
use super::records::{self, Pending, Record, Records};
use super::refs;
use super::schema::{self, Found, Prepared};
use super::statcache::SqliteStatCache;
use super::{
    CacheDir, Counters, EarlierRun, Entries, Entry, History, NewEntry, Source, Store,
    StoredManifest, StoredStream, now_ms, private,
};
use super::{gc, hitlog, repair};
use crate::base::Digest;
use crate::base::temp;

pub use super::schema::SCHEMA_VERSION;

/// How long a statement waits for another process's lock before giving up
/// (and the call runs uncached).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many of a command's most recent entries `earlier_runs` gives to
/// find the closest: enough for the variants one command is run with, and a
/// bound on what explaining a miss reads (an entry's components can be
/// megabytes of JSON for a command with thousands of inputs).
const CLOSEST_OF: i64 = 50;

/// A cache directory opened for use.
pub struct SqliteStore {
    conn: Connection,
    blobs: Blobs,
    root: PathBuf,
    tmp_dir: PathBuf,
    secret: [u8; 32],
    notice: std::cell::RefCell<Option<String>>,
    /// Fast checks of blobs read ahead of a batch of `open_stream`s (see
    /// `prefetch_checks`): a restore of thousands of files then makes one
    /// query, not one each.
    checks: std::cell::RefCell<std::collections::HashMap<Digest, Option<[u8; 16]>>>,
    limits: Limits,
    /// The entry last looked up, with its command's manifest: a hit of it
    /// is logged under that command without another query.
    looked_up: Option<(Digest, Digest)>,
    /// The hit records of its entries (see `records`).
    records: Records,
}

impl SqliteStore {
    /// Open (creating if needed) the store in `dir`. Any problem, from a
    /// foreign-owned directory to a file that is not a database, is an error
    /// the caller turns into "run uncached".
    pub fn open(cache_dir: &Path) -> Result<SqliteStore> {
        SqliteStore::open_in(CacheDir::open(cache_dir)?)
    }

    /// Open (creating if needed) the store in a cache directory already
    /// checked and prepared.
    pub(crate) fn open_in(dir: CacheDir) -> Result<SqliteStore> {
        let CacheDir {
            root,
            tmp_dir,
            secret,
        } = dir;
        let cache_dir = &root;
        let db_path = cache_dir.join("memorun.db");
        // From here on, a failure other than a lock held too long is the
        // database itself: say how to start over.
        let unusable = |e: anyhow::Error| anyhow::anyhow!("{e:#} ({})", repair::RESET_HINT);
        // Create the file 0600 ourselves: SQLite would use 0644 & ~umask, and
        // it gives the -wal and -shm files the main file's mode.
        private::create_private_file(&db_path)
            .with_context(|| format!("cannot open '{}'", db_path.display()))
            .map_err(unusable)?;
        // Pinned before the database is opened: see `records`.
        let records = Records::new(cache_dir);
        records.pin();
        configure_sqlite();
        let conn = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open '{}'", db_path.display()))
        .map_err(unusable)?;
        let store = SqliteStore {
            conn,
            blobs: Blobs::new(cache_dir.join("blobs")),
            root: cache_dir.to_path_buf(),
            tmp_dir,
            secret,
            notice: Default::default(),
            checks: Default::default(),
            limits: Limits::default(),
            looked_up: None,
            records,
        };
        // Creating a store (switching to WAL, creating the schema) takes
        // locks that SQLite will not wait for when waiting could deadlock:
        // it answers SQLITE_BUSY at once. Many processes starting on a new
        // cache directory at the same time (make -j) retry until the
        // winner is done, within the usual busy timeout.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match store.init() {
                Ok(()) => return Ok(store),
                Err(Error::Busy(_)) if std::time::Instant::now() < deadline => {
                    let jitter = u64::from(std::process::id() % 20);
                    std::thread::sleep(Duration::from_millis(10 + jitter));
                }
                Err(e) => {
                    let later = e.is_usable_later();
                    let e = anyhow::Error::new(e)
                        .context(format!("cannot use '{}'", db_path.display()));
                    return Err(if later { e } else { unusable(e) });
                }
            }
        }
    }

    /// An in-memory store for unit tests, with blobs under `dir`.
    #[cfg(test)]
    pub(crate) fn in_memory(dir: &Path) -> Result<SqliteStore> {
        let store = SqliteStore {
            conn: Connection::open_in_memory()?,
            blobs: Blobs::new(dir.join("blobs")),
            root: dir.to_path_buf(),
            tmp_dir: dir.to_path_buf(),
            secret: [9; 32],
            notice: Default::default(),
            checks: Default::default(),
            limits: Limits::default(),
            looked_up: None,
            records: Records::new(dir),
        };
        store.init()?;
        Ok(store)
    }

    /// A one-line notice about opening the store (a schema upgrade), once.
    pub(crate) fn take_notice(&self) -> Option<String> {
        self.notice.borrow_mut().take()
    }

    /// The size limits to keep after each write.
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The size limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The cache directory's blob store.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// The per-cache secret for keyed digests.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    fn hit_log(&self) -> PathBuf {
        hitlog::path(&self.root)
    }

    /// Fold the hit log into the entries, the time saved per command and
    /// the counters (see `hitlog`).
    pub(crate) fn fold_hits(&mut self) -> Result<(), Error> {
        let Some(folding) = hitlog::take(&self.hit_log())? else {
            return Ok(());
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (mut count, mut saved) = (0i64, 0i64);
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE entries SET hits = hits + ?1, last_used = MAX(last_used, ?2) WHERE key = ?3",
            )?;
            for ((key, manifest), h) in &folding.hits {
                stmt.execute(params![h.count, h.last_ms, &key.0[..]])?;
                count += h.count;
                saved += h.saved_ms;
                // A record of an older memorun names only the entry.
                let manifest = match manifest {
                    Some(m) => Some(*m),
                    None => manifest_of(&tx, key)?,
                };
                if let Some(m) = manifest {
                    add_saved(&tx, &m, key, h.count, h.saved_ms)?;
                }
            }
        }
        bump(&tx, &[(Counter::Hits, count), (Counter::SavedMs, saved)])?;
        tx.commit()?;
        folding.done()?;
        Ok(())
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where per-key lock files live.
    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Where temp files go (spools, stdin).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// A view of the stat cache for this invocation.
    pub(crate) fn stat_cache(&self) -> SqliteStatCache<'_> {
        SqliteStatCache::new(&self.conn)
    }

    /// The arguments earlier runs of `manifest` created: outputs, not inputs.
    pub(crate) fn known_outputs(&self, manifest: &Digest) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT path FROM outputs WHERE command_in_dir = ?1 ORDER BY path")?;
        let rows = stmt.query_map(params![&manifest.0[..]], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remember why the latest run of `manifest` was not recorded, and
    /// count it, in one transaction. (A run that is recorded clears the
    /// note in `insert`.)
    pub(crate) fn note_unrecorded(
        &mut self,
        manifest: &Digest,
        note: &str,
        counters: &[(Counter, i64)],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO notes (command_in_dir, note, at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![&manifest.0[..], note, now_ms()])?;
        bump(&tx, counters)?;
        tx.commit()?;
        temp::sweep(&self.tmp_dir, false);
        Ok(())
    }

    /// Why the latest run of `manifest` was not recorded, and when.
    pub(crate) fn note(&self, manifest: &Digest) -> Result<Option<(String, i64)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT note, at FROM notes WHERE command_in_dir = ?1")?
            .query_row(params![&manifest.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// How long the most recent recorded run of the same command took.
    pub(crate) fn previous_duration(&self, argv_digest: &Digest) -> Result<Option<Duration>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT duration_ms FROM entries WHERE argv_digest = ?1 ORDER BY created DESC LIMIT 1",
            )?
            .query_row(params![&argv_digest.0[..]], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    /// The most recent entries of the same command (same argv after
    /// `--ignore-arg`) other than `except`, newest first, their components
    /// as stored (JSON; `commands::diff::closest_run` scores them). Bounded:
    /// only the `CLOSEST_OF` most recent; a row that does not read is
    /// passed over.
    pub(crate) fn earlier_runs(
        &self,
        argv_digest: &Digest,
        except: &Digest,
    ) -> Result<Vec<EarlierRun>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, created, components FROM entries
             WHERE argv_digest = ?1 AND key != ?2 ORDER BY created DESC LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![&argv_digest.0[..], &except.0[..], CLOSEST_OF])?;
        let mut runs = Vec::new();
        while let Some(r) = rows.next()? {
            let (Ok(key), Ok(created_ms), Ok(ValueRef::Text(json))) =
                (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1), r.get_ref(2))
            else {
                continue;
            };
            let (Some(key), Ok(json)) = (Digest::from_slice(&key), std::str::from_utf8(json))
            else {
                continue;
            };
            runs.push(EarlierRun {
                key,
                created_ms,
                components: json.to_string(),
            });
        }
        Ok(runs)
    }

    /// Forget the entry under `key` (tests set up states with it).
    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &Digest) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let freed = refs::delete_entry(&tx, &self.records, key)?;
        tx.commit()?;
        self.remove_blob_files(&freed);
        Ok(())
    }

    fn init(&self) -> Result<(), Error> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // The WAL stays small: each invocation is a new process that must
        // rebuild the WAL index from the whole WAL when it opens, so the last
        // connection to close checkpoints it (SQLite's default) and truncates
        // it to nothing (the size limit of 0), and a hit writes nothing at all
        // (see `hitlog`). The -wal and -shm files themselves persist: a hit
        // that had to create both and delete them again on the way out would
        // spend about as long on that as on its query.
        persist_wal(&self.conn);
        self.conn
            .execute_batch("PRAGMA journal_size_limit = 0; PRAGMA synchronous = NORMAL;")
            .map_err(|e| match Error::from(e) {
                busy @ Error::Busy(_) => busy,
                other => {
                    Error::Other(anyhow::Error::new(other).context("cannot configure the database"))
                }
            })?;
        // The first statement to read the file is where "file is not a
        // database" shows up.
        let found = schema::found(&self.conn)?;
        if found == Found::Store(SCHEMA_VERSION) {
            // Created by `schema::prepare` below, in WAL mode, which the
            // file keeps.
            return Ok(());
        }
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
                return Err(Error::Other(anyhow::anyhow!(
                    "cannot switch the database to WAL mode (got '{mode}')"
                )));
            }
        }
        if let Found::Store(version) = found
            && version > SCHEMA_VERSION
        {
            return Err(Error::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        // Under the write lock, which `prepare` reads the header again
        // under: another process may have won.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let prepared = schema::prepare(&tx)?;
        // A database made anew, rebuilt or upgraded has no entry an older
        // record could describe (left by a store deleted by hand, or by
        // a crash mid-way): they go before anyone can read the new store.
        if prepared != Prepared::Current {
            remove_all_records(&self.records, &self.tmp_dir, &tx)?;
        }
        // Nor has it been replayed: a hit log left by the database before
        // it (one deleted by a `clear --all` killed midway, or by hand; a
        // development version's) goes, before any hit of this one can be
        // logged, or its hits would count as this store's.
        if matches!(prepared, Prepared::Created | Prepared::Rebuilt)
            && let Ok(Some(log)) = hitlog::take(&self.hit_log())
        {
            let _ = log.done();
        }
        tx.commit()?;
        let notice = match prepared {
            Prepared::Current | Prepared::Created => return Ok(()),
            Prepared::Upgraded(from) => {
                format!("upgraded the cache from schema version {from} to {SCHEMA_VERSION}")
            }
            Prepared::Rebuilt => {
                // What the old store held goes with it: its hits (above),
                // and its blob files (all but the youngest, which a run of
                // an older memorun may be about to use).
                let _ = self.collect_garbage(&self.tmp_dir, false);
                "rebuilt the cache: it was made by a development version of memorun".to_string()
            }
        };
        *self.notice.borrow_mut() = Some(notice);
        Ok(())
    }

    /// Turn a spooled stream into what its row records, installing its
    /// blob (a row only ever points at a blob that is complete and in
    /// place); with the stream's fast check.
    fn put_stream(&self, s: Spooled) -> Result<(StoredStream, [u8; 16])> {
        let inline = match s.data {
            SpooledData::Inline(bytes) => Some(bytes),
            SpooledData::Temp(temp) => {
                self.blobs
                    .install(&s.digest, s.len, temp)
                    .with_context(|| {
                        format!(
                            "cannot store an output blob in '{}'",
                            self.blobs.root().display()
                        )
                    })?;
                None
            }
        };
        let stream = StoredStream {
            len: s.len,
            digest: s.digest,
            inline,
        };
        Ok((stream, s.check))
    }

    /// Remove the row under `key`, which failed to decode, its checksum or
    /// a replay's verification, and count it as corrupt. With `expected`,
    /// only if the row still has that checksum (it is still the entry that
    /// failed); returns whether a row was removed.
    fn remove_corrupt(
        &mut self,
        key: &Digest,
        expected: Option<&Digest>,
    ) -> rusqlite::Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(expected) = expected {
            let current: Option<rusqlite::types::Value> = tx
                .prepare_cached("SELECT checksum FROM entries WHERE key = ?1")?
                .query_row(params![&key.0[..]], |r| r.get(0))
                .optional()?;
            if current != Some(rusqlite::types::Value::Blob(expected.0.to_vec())) {
                return Ok(false);
            }
        }
        let freed = refs::delete_entry(&tx, &self.records, key)?;
        bump(&tx, &[(Counter::Corrupt, 1)])?;
        tx.commit()?;
        self.remove_blob_files(&freed);
        Ok(true)
    }

    /// Rebuild the entries table around rows SQLite cannot read or delete,
    /// leaving out `drop` (see `repair`).
    fn salvage(&mut self, drop: Option<&Digest>) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Which rows survive is SQLite's to say: every record goes first.
        remove_all_records(&self.records, &self.tmp_dir, &tx)?;
        let freed = repair::salvage(&tx, drop)?;
        // The rows kept say which had a record: none has, now.
        tx.execute(
            "UPDATE entries SET record = NULL WHERE record IS NOT NULL",
            [],
        )?;
        tx.commit()?;
        self.remove_blob_files(&freed);
        Ok(())
    }

    /// Run `f`; if SQLite finds the entries damaged, salvage them and run
    /// it once more. For the commands that read every entry (`list`,
    /// `stats`, `clear`, `why`), which must keep working around a bad row.
    /// Only a damaged database is salvaged, not one that is no database at
    /// all (that is for `clear --all`, see `repair`).
    fn or_salvage<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, Error>) -> Result<T> {
        match f(self) {
            Err(Error::Corrupt(e)) if repair::is_corrupt(&e) => {
                self.salvage(None)?;
                Ok(f(self)?)
            }
            other => Ok(other?),
        }
    }

    /// Remove the files of blobs no entry references. A failure leaves an
    /// unreferenced file that the next `clear` collects.
    fn remove_blob_files(&self, freed: &[Digest]) {
        remove_blob_files(&self.conn, &self.blobs, freed);
    }

    /// Give the entry in `record`, just replayed through the database, its
    /// hit record again (see `records`): written aside; counted, marked in
    /// its row (`entries.record`) and made room for (`record_budget`) in
    /// one transaction, if the row is still the entry it describes; then
    /// named as a new entry's is ([`SqliteStore::name_record`]). Best
    /// effort, and only if the write lock is free: a hit never waits to
    /// publish (without a record, hits take the database path).
    fn publish_record(&self, record: Record) {
        let Some(pending) = self.records.prepare(&self.tmp_dir, &record) else {
            return;
        };
        let key = record.entry.key;
        let Some(tx) = self.lock_row_now(&record.entry) else {
            return;
        };
        // It replaces a damaged record, if any (a sound one is never
        // published again): only the difference is counted.
        let old = std::fs::symlink_metadata(self.records.path(&key))
            .map_or(0, |m| super::records::disk_usage(&m));
        let counted = (|| {
            bump(
                &tx,
                &[(Counter::RecordBytes, pending.space() as i64 - old as i64)],
            )?;
            // In use now (the hit log says so too, later): not the first
            // to go.
            tx.prepare_cached(
                "UPDATE entries SET record = ?1, last_used = MAX(last_used, ?2) WHERE key = ?3",
            )?
            .execute(params![pending.space() as i64, now_ms(), &key.0[..]])?;
            record_budget::keep_within(&tx, &self.records, self.limits.max_bytes, &key)?;
            tx.commit()
        })();
        if counted.is_ok() {
            self.name_record(pending, &record.entry);
            // A hit otherwise writes nothing: closing would checkpoint
            // these few pages, and sync the database three times, for
            // more than the hit itself costs. The next run that records
            // checkpoints them with its own.
            let _ = self
                .conn
                .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        }
    }

    /// [`SqliteStore::lock_row`], if the write lock can be had at once.
    fn lock_row_now(&self, entry: &Entry) -> Option<rusqlite::Transaction<'_>> {
        self.conn.busy_timeout(Duration::ZERO).ok()?;
        let tx = self.lock_row(entry);
        // Restored before anything else runs; should it fail, statements
        // fail busy sooner: misses, never a wrong replay.
        let _ = self.conn.busy_timeout(BUSY_TIMEOUT);
        tx
    }

    /// Take the write lock if the row under `entry`'s key is still `entry`:
    /// while it is held, no deletion can come between the check and a
    /// record's name.
    fn lock_row(&self, entry: &Entry) -> Option<rusqlite::Transaction<'_>> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .ok()?;
        let current: Option<Vec<u8>> = tx
            .prepare_cached("SELECT checksum FROM entries WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row(params![&entry.key.0[..]], |r| r.get(0))
                    .optional()
            })
            .ok()
            .flatten();
        (current.as_deref() == Some(&entry.checksum().0[..])).then_some(tx)
    }

    /// Name the record of an entry just inserted, its space already
    /// counted by the insert (see `insert`): under the write lock, if the
    /// row is still the entry. Nothing is written to the database. When it
    /// is not named (the row was replaced meanwhile, a failure), its space
    /// stays counted: over, never under.
    fn name_record(&self, pending: Pending, entry: &Entry) {
        let Some(tx) = self.lock_row(entry) else {
            return;
        };
        // Unpublished, the entry is found through the database: a slower
        // hit, never a wrong one.
        let _ = pending.publish();
        // Nothing was written: this only releases the lock.
        let _ = tx.commit();
    }

    /// The hit record of an entry replayed through the database, when it
    /// has none (recorded before records existed, or it was lost).
    fn publish_missing_record(&self, entry: &Entry, manifest: Digest) {
        // One that is there and sound is the one (a record is only ever
        // published for its row); an unsound one is replaced.
        if self.records.read(&entry.key).is_some() {
            return;
        }
        // A traced entry is found through its trace manifest, never by key.
        let traced = self
            .conn
            .prepare_cached("SELECT 1 FROM manifests WHERE entry_key = ?1")
            .and_then(|mut s| s.exists(params![&entry.key.0[..]]))
            .unwrap_or(true);
        if traced {
            return;
        }
        let digests: Vec<Digest> = [&entry.stdout, &entry.stderr, &entry.order]
            .into_iter()
            .filter(|s| s.inline.is_none() && s.len > 0)
            .map(|s| s.digest)
            .chain(
                crate::outputs::files::blob_digests(&entry.outputs)
                    .into_iter()
                    .map(|(d, _)| d),
            )
            .collect();
        // Too large for a record (thousands of output files): found
        // through the database every time, so asking for its checks (a
        // query per blob) would be wasted on every hit. A check takes the
        // same room whether known or not.
        let mut record = Record::new(entry.clone(), manifest, digests.iter().map(|d| (*d, None)));
        if records::encode(&record).is_none() {
            return;
        }
        for (d, check) in &mut record.checks {
            *check = self.check_of(d).ok().flatten();
        }
        self.publish_record(record);
    }

    /// The fast check (XXH3-128) recorded for a blob, if any.
    fn check_of(&self, digest: &Digest) -> Result<Option<[u8; 16]>> {
        Ok(self
            .conn
            .prepare_cached("SELECT xxh3 FROM blobs WHERE digest = ?1")?
            .query_row(params![&digest.0[..]], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten()
            .and_then(|c| c.try_into().ok()))
    }

    /// After a write, evict least recently used entries until the store is
    /// back to about 90% of its limits (see `evict`). Best effort.
    pub(crate) fn enforce_limits(&mut self) {
        if let Ok(removed) = evict::evict(&mut self.conn, self.limits, &self.tmp_dir, &self.records)
        {
            self.remove_blob_files(&removed.freed);
        }
    }

    /// Counters, sizes and the top commands for `stats` (see `inventory`).
    pub(crate) fn stats(&mut self, cache_dir: &Path) -> Result<StoreStats> {
        self.or_salvage(|store| {
            store.fold_hits()?;
            inventory::stats(
                &store.conn,
                cache_dir,
                &store.tmp_dir,
                store.limits.max_bytes,
            )
        })
    }

    /// Reset the counters and the time saved per command, keeping the
    /// entries. Hits not yet folded are counted first, then reset with the
    /// rest.
    pub(crate) fn zero_counters(&mut self) -> Result<()> {
        self.fold_hits()?;
        inventory::zero_counters(&mut self.conn)
    }

    /// The entries matching `filter`, newest first. A row that does not
    /// decode or fails its checksum is left out: its values are not what
    /// was recorded, and the next lookup of its key (or `clear`) removes it.
    pub(crate) fn list(&mut self, filter: &ClearFilter) -> Result<Vec<Listed>> {
        self.or_salvage(|store| {
            store.fold_hits()?;
            inventory::list(&store.conn, filter)
        })
    }

    /// Hand `each` the entries matching `filter`, newest first, as they are
    /// read, until it breaks (see `inventory::list_each`). A damaged
    /// database is salvaged and read again only while no row has gone to
    /// `each`: after that, the error is returned.
    pub(crate) fn list_each(
        &mut self,
        filter: &ClearFilter,
        mut each: impl FnMut(Listed) -> ControlFlow<()>,
    ) -> Result<()> {
        self.or_salvage(|store| store.fold_hits())?;
        let mut shown = false;
        let first = inventory::list_each(&self.conn, filter, &mut |e| {
            shown = true;
            each(e)
        });
        match first {
            Err(Error::Corrupt(e)) if !shown && repair::is_corrupt(&e) => {
                self.salvage(None)?;
                Ok(inventory::list_each(&self.conn, filter, &mut each)?)
            }
            other => Ok(other?),
        }
    }

    /// Remove the entries matching `filter` and their now unused blobs
    /// (see `inventory::clear`); with `dry_run`, only say what would go.
    pub(crate) fn clear(&mut self, filter: &ClearFilter, dry_run: bool) -> Result<Cleared> {
        // Clearing many entries touches most of the database's pages,
        // several times over (the table and each index): a page cache to
        // match, allocated only as it is used, spares re-reading them.
        let _ = self.conn.execute_batch("PRAGMA cache_size = -262144");
        let cleared = self.or_salvage(|store| {
            store.fold_hits()?;
            let blobs = &store.blobs;
            inventory::clear(
                &mut store.conn,
                &store.records,
                filter,
                dry_run,
                |conn, removed| remove_blob_files(conn, blobs, &removed.freed),
            )
        });
        let _ = self.conn.execute_batch("PRAGMA cache_size = -2000");
        cleared
    }

    /// Remove blob files no entry references and temp files left by a
    /// crash (see `gc`). Returns how many files and bytes went.
    pub(crate) fn collect_garbage(&self, tmp_dir: &Path, dry_run: bool) -> Result<(u64, u64)> {
        gc::collect_garbage(&self.conn, &self.blobs, tmp_dir, dry_run)
    }
}

/// Remove the files of the blobs `freed` that no entry references (see
/// [`SqliteStore::remove_blob_files`]).
fn remove_blob_files(conn: &Connection, blobs: &Blobs, freed: &[Digest]) {
    for d in freed {
        // A concurrent insert may have referenced it again since.
        let referenced = conn
            .prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")
            .and_then(|mut s| s.exists(params![&d.0[..]]))
            .unwrap_or(true);
        if !referenced {
            // A file left behind is collected by the next `clear`.
            let _ = std::fs::remove_file(blobs.path(d));
        }
    }
}

/// Process-wide SQLite settings, made once before the first connection.
///
/// A memorun process runs a handful of small queries, so SQLite's
/// per-connection memory pools cost more than they save: the lookaside
/// allocator (120 KB) and the page cache's first bulk allocation (20 pages)
/// are each threaded into a free list when the connection opens, which
/// writes to, and so faults in, every page of them. Without them SQLite
/// takes its memory from malloc as it goes.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection exists
        // (it answers SQLITE_MISUSE, and changes nothing, if SQLite is
        // already initialized); the variadic arguments are the documented
        // ones: two ints for LOOKASIDE; a buffer pointer and two ints for
        // PAGECACHE.
        #[allow(unsafe_code)]
        unsafe {
            use rusqlite::ffi;
            use std::os::raw::c_int;
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_LOOKASIDE, 0 as c_int, 0 as c_int);
            // No memory statistics: they cost a global mutex per malloc.
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as c_int,
                0 as c_int,
            );
        }
    });
}

/// Keep the -wal and -shm files when the last connection closes
/// (`SQLITE_FCNTL_PERSIST_WAL`). Only an optimization: on failure SQLite
/// deletes and re-creates them as usual.
fn persist_wal(conn: &Connection) {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: the handle is a live connection owned by `conn`, "main" is a
    // NUL-terminated schema name, and PERSIST_WAL reads and writes one int
    // through the pointer, which outlives the call.
    #[allow(unsafe_code)]
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        );
    }
}

/// Delete every hit record, and their total, in the caller's transaction:
/// the database they describe was made anew, rebuilt or salvaged.
fn remove_all_records(
    records: &Records,
    tmp_dir: &Path,
    tx: &rusqlite::Transaction<'_>,
) -> Result<()> {
    records.remove_all(tmp_dir)?;
    tx.execute(
        "DELETE FROM counters WHERE name = ?1",
        params![Counter::RecordBytes.name()],
    )?;
    Ok(())
}

/// The fast checks a hit record keeps: of the streams in blobs, and of the
/// output files' blobs.
fn blob_checks(
    streams: &[(&StoredStream, [u8; 16]); 3],
    file_checks: &[(Digest, [u8; 16])],
) -> Vec<(Digest, Option<[u8; 16]>)> {
    streams
        .iter()
        .filter(|(s, _)| s.inline.is_none() && s.len > 0)
        .map(|(s, check)| (s.digest, Some(*check)))
        .chain(file_checks.iter().map(|(d, c)| (*d, Some(*c))))
        .collect()
}

/// A recorded run of the command in its directory: no note on why it was
/// not, its replays count toward the command's time saved under the latest
/// way it was written, and the arguments it created are outputs from now
/// on. `manifest` is the invocation's name for the command in its
/// directory, `command_in_dir` the row's.
fn note_recorded(
    tx: &rusqlite::Transaction<'_>,
    manifest: &Digest,
    command_in_dir: &Digest,
    display: &str,
    created: &[Vec<u8>],
) -> Result<()> {
    tx.prepare_cached("DELETE FROM notes WHERE command_in_dir = ?1")?
        .execute(params![&manifest.0[..]])?;
    tx.prepare_cached(
        "INSERT INTO saved (command_in_dir, display, hits, saved_ms) VALUES (?1, ?2, 0, 0)
         ON CONFLICT (command_in_dir) DO UPDATE SET display = excluded.display",
    )?
    .execute(params![&command_in_dir.0[..], display])?;
    if !created.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO outputs (command_in_dir, path) VALUES (?1, ?2)",
        )?;
        for p in created {
            stmt.execute(params![&manifest.0[..], p])?;
        }
    }
    Ok(())
}

/// The columns of an entry's row that are not in its [`Entry`].
struct Row<'a> {
    argv_digest: &'a Digest,
    display: &'a str,
    cwd: &'a [u8],
    components: &'a str,
    /// The disk space of its hit record, when it gets one (see
    /// `record_budget`).
    record: Option<i64>,
}

/// Write the row of `entry`, sealed with its checksum.
fn write_row(tx: &rusqlite::Transaction<'_>, entry: &Entry, row: &Row<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO entries
           (key, argv_digest, display, cwd, components, created, last_used,
            duration_ms, exit_code, hits,
            out_len, out_digest, out_inline,
            err_len, err_digest, err_inline,
            order_len, order_digest, order_inline, outputs, stdin_advance, checksum, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, 0,
                 ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?
    .execute(params![
        &entry.key.0[..],
        &row.argv_digest.0[..],
        row.display,
        row.cwd,
        row.components,
        entry.created_ms,
        entry.duration.as_millis() as i64,
        entry.exit_code,
        entry.stdout.len as i64,
        &entry.stdout.digest.0[..],
        entry.stdout.inline,
        entry.stderr.len as i64,
        &entry.stderr.digest.0[..],
        entry.stderr.inline,
        entry.order.len as i64,
        &entry.order.digest.0[..],
        entry.order.inline,
        crate::outputs::files::encode(&entry.outputs, true),
        entry.stdin_advance as i64,
        &entry.checksum().0[..],
        row.record,
    ])?;
    Ok(())
}

/// Keep the trace manifest `m` of the entry under `entry_key`: a bounded
/// number per base key, the least recently used going with their entries.
/// Returns the blobs those entries freed.
fn keep_manifest(
    tx: &rusqlite::Transaction<'_>,
    records: &Records,
    m: &super::NewManifest,
    entry_key: &Digest,
) -> Result<Vec<Digest>> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO manifests (base_key, digest, entry_key, inputs, paths)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        &m.base.0[..],
        &m.digest.0[..],
        &entry_key.0[..],
        m.inputs as i64,
        &m.paths
    ])?;
    let old: Vec<Vec<u8>> = tx
        .prepare_cached(
            "SELECT m.entry_key FROM manifests m LEFT JOIN entries e ON e.key = m.entry_key
             WHERE m.base_key = ?1 AND m.entry_key != ?2
             ORDER BY e.last_used DESC LIMIT -1 OFFSET ?3",
        )?
        .query_map(
            params![
                &m.base.0[..],
                &entry_key.0[..],
                super::MAX_MANIFESTS as i64 - 1
            ],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut freed = Vec::new();
    for k in old.iter().filter_map(|k| Digest::from_slice(k)) {
        freed.extend(refs::delete_entry(tx, records, &k)?);
        tx.prepare_cached("DELETE FROM manifests WHERE entry_key = ?1")?
            .execute(params![&k.0[..]])?;
    }
    Ok(freed)
}

/// The manifest of the entry's command, from its `argv_digest` and `cwd`
/// columns starting at `first` (`None` when they are not what memorun
/// writes: the hit then counts in the totals only).
fn manifest_at(row: &rusqlite::Row<'_>, first: usize) -> Option<Digest> {
    let argv_digest = Digest::from_slice(&row.get::<_, Vec<u8>>(first).ok()?)?;
    let cwd: Vec<u8> = row.get(first + 1).ok()?;
    Some(super::manifest(&argv_digest, &cwd))
}

/// The manifest of the command of the entry under `key`, if it is there.
fn manifest_of(conn: &Connection, key: &Digest) -> rusqlite::Result<Option<Digest>> {
    Ok(conn
        .prepare_cached("SELECT argv_digest, cwd FROM entries WHERE key = ?1")?
        .query_row(params![&key.0[..]], |r| Ok(manifest_at(r, 0)))
        .optional()?
        .flatten())
}

/// Add replays to a command's time saved, in the caller's transaction. The
/// row is made when the command is recorded; made here (named after the
/// entry, if it is still there) only for a command recorded before there
/// were such rows, or whose row is gone.
fn add_saved(
    conn: &Connection,
    manifest: &Digest,
    key: &Digest,
    hits: i64,
    saved_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO saved (command_in_dir, display, hits, saved_ms)
         VALUES (?1, COALESCE((SELECT display FROM entries WHERE key = ?2), ''), ?3, ?4)
         ON CONFLICT (command_in_dir) DO UPDATE SET
           hits = hits + excluded.hits, saved_ms = saved_ms + excluded.saved_ms",
    )?
    .execute(params![&manifest.0[..], &key.0[..], hits, saved_ms])?;
    Ok(())
}

impl Entries for SqliteStore {
    fn lookup(&mut self, key: &Digest) -> Result<Option<Entry>> {
        let found = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS}, argv_digest, cwd FROM entries WHERE key = ?1"
            ))?
            .query_row(params![&key.0[..]], |row| {
                Ok((decode_entry(row, 0), manifest_at(row, ENTRY_COLUMN_COUNT)))
            })
            .optional();
        let found = match found {
            Ok(None) => return Ok(None),
            Ok(Some((decoded, manifest))) => {
                self.looked_up = manifest.map(|m| (*key, m));
                decoded.ok()
            }
            // The row's record is damaged beyond reading.
            Err(e) if repair::is_corrupt(&e) => None,
            Err(e) => return Err(e.into()),
        };
        match found {
            // The key column is checked too: the row is found through the
            // key's index, which a damaged row no longer agrees with.
            Some((entry, Some(sum))) if entry.key == *key && sum == entry.checksum().0 => {
                Ok(Some(entry))
            }
            _ => {
                match self.remove_corrupt(key, None) {
                    // Not even deletable (its indexes no longer match it).
                    Err(e) if repair::is_corrupt(&e) => self.salvage(Some(key))?,
                    other => drop(other?),
                }
                Ok(None)
            }
        }
    }

    fn open_stream(&self, stream: &StoredStream) -> Result<Option<Source>> {
        super::open_verified(&self.blobs, stream, || {
            let prefetched = self.checks.borrow().get(&stream.digest).copied();
            match prefetched {
                Some(check) => Ok(check),
                None => self.check_of(&stream.digest),
            }
        })
    }

    fn spool(&self) -> Spool {
        Spool::new(self.tmp_dir.clone())
    }

    fn blob_check(&self, digest: &Digest) -> Option<[u8; 16]> {
        if let Some(c) = self.checks.borrow().get(digest) {
            return *c;
        }
        self.check_of(digest).ok().flatten()
    }

    fn local_blobs(&self) -> Option<&Blobs> {
        Some(&self.blobs)
    }

    fn prefetch_checks(&self, digests: &[Digest]) {
        // One read transaction for all of them; only a cache: a failure
        // leaves open_stream to ask one by one.
        let Ok(tx) = self.conn.unchecked_transaction() else {
            return;
        };
        let mut checks = self.checks.borrow_mut();
        for d in digests {
            if let Ok(c) = self.check_of(d) {
                checks.insert(*d, c);
            }
        }
        drop(tx);
    }

    fn manifests(&self, base: &Digest, limit: usize) -> Result<Vec<StoredManifest>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.digest, m.entry_key, m.paths FROM manifests m
             LEFT JOIN entries e ON e.key = m.entry_key
             WHERE m.base_key = ?1 ORDER BY e.last_used DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![&base.0[..], limit as i64], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (d, k, paths) = row?;
            if let (Some(digest), Some(entry_key)) =
                (Digest::from_slice(&d), Digest::from_slice(&k))
            {
                out.push(StoredManifest {
                    digest,
                    entry_key,
                    paths,
                });
            }
        }
        Ok(out)
    }

    fn spool_file(&self) -> Spool {
        Spool::with_inline_max(self.tmp_dir.clone(), crate::outputs::files::FILE_INLINE_MAX)
    }

    fn put_file(&self, content: Spooled) -> Result<(StoredStream, [u8; 16])> {
        self.put_stream(content)
    }

    /// In steps: its streams installed, its hit record written aside,
    /// then one transaction (the entry it replaces gives up its blobs; the
    /// command's notes, time saved and outputs; the row; its blob
    /// references; its trace manifest; the miss), then what the commit
    /// frees.
    fn insert(&mut self, e: NewEntry<'_>) -> Result<()> {
        // Bookkeeping only: a failure to fold must not lose this result.
        let _ = self.fold_hits();
        let (stdout, out_check) = self.put_stream(e.stdout)?;
        let (stderr, err_check) = self.put_stream(e.stderr)?;
        let (order, order_check) = self.put_stream(e.order)?;
        // The entry exactly as a lookup will decode it, to seal it.
        let entry = Entry {
            key: e.key.digest,
            created_ms: e.recorded_at.unwrap_or_else(now_ms),
            duration: Duration::from_millis(e.duration.as_millis() as u64),
            exit_code: e.exit_code,
            stdout,
            stderr,
            order,
            outputs: e.outputs,
            stdin_advance: e.stdin_advance,
        };
        let streams = [
            (&entry.stdout, out_check),
            (&entry.stderr, err_check),
            (&entry.order, order_check),
        ];
        let file_blobs = crate::outputs::files::blob_digests(&entry.outputs);
        let components = serde_json::to_string(&e.key.components)?;
        // The command in its directory, as a hit finds it: from the row's
        // command and cwd.
        let command_in_dir = super::manifest(&e.key.command, &e.cwd);
        // Its hit record, written aside now and counted in the transaction,
        // so that a miss writes the database once; named after the commit.
        // A traced entry is found through its trace manifest, never by one.
        let record = match e.traced {
            Some(_) => None,
            None => {
                let checks = blob_checks(&streams, &e.file_checks);
                let record = Record::new(entry.clone(), command_in_dir, checks);
                self.records.prepare(&self.tmp_dir, &record)
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The entry this one replaces, if any, gives up its blobs.
        let mut freed = refs::delete_entry(&tx, &self.records, &entry.key)?;
        if let Some(pending) = &record {
            bump(&tx, &[(Counter::RecordBytes, pending.space() as i64)])?;
            // Room for it: the least recently used entries' records go.
            record_budget::keep_within(&tx, &self.records, self.limits.max_bytes, &entry.key)?;
        }
        note_recorded(&tx, &e.manifest, &command_in_dir, &e.display, &e.created)?;
        let row = Row {
            argv_digest: &e.key.command,
            display: &e.display,
            cwd: &e.cwd,
            components: &components,
            record: record.as_ref().map(|p| p.space() as i64),
        };
        for (s, check) in &streams {
            if s.inline.is_none() && s.len > 0 {
                refs::reference_blob(&tx, &s.digest.0, s.len as i64, check)?;
            }
        }
        write_row(&tx, &entry, &row)?;
        for (digest, len) in &file_blobs {
            let check = e
                .file_checks
                .binary_search_by(|(d, _)| d.cmp(digest))
                .map(|i| e.file_checks[i].1)
                .map_err(|_| anyhow::anyhow!("an output file's blob has no check"))?;
            refs::reference_file_blob(&tx, &entry.key, digest, *len, &check)?;
        }
        // Re-referenced in this same transaction: not freed after all.
        freed.retain(|d| {
            !streams
                .iter()
                .any(|(s, _)| s.inline.is_none() && s.digest == *d)
                && file_blobs.binary_search_by(|(f, _)| f.cmp(d)).is_err()
        });
        if let Some(m) = &e.traced {
            freed.extend(keep_manifest(&tx, &self.records, m, &entry.key)?);
        }
        // An entry recorded elsewhere (a remote tier) was no miss here.
        if e.recorded_at.is_none() {
            bump(&tx, &[(Counter::Misses, 1)])?;
        }
        tx.commit()?;
        self.remove_blob_files(&freed);
        if let Some(pending) = record {
            self.name_record(pending, &entry);
        }
        // Spools of runs killed before they could clean up: gone now, so
        // that they do not count against the limit.
        temp::sweep(&self.tmp_dir, false);
        self.enforce_limits();
        Ok(())
    }

    fn record_hit(&mut self, entry: &Entry) -> Result<()> {
        // Counted in the hit log, not the database: see `hitlog`.
        let saved = entry.duration.as_millis() as i64;
        let manifest = match self.looked_up {
            Some((key, m)) if key == entry.key => Some(m),
            _ => manifest_of(&self.conn, &entry.key)?,
        };
        if let Some(m) = manifest {
            self.publish_missing_record(entry, m);
        }
        let logged = hitlog::append(
            &self.hit_log(),
            &entry.key,
            &manifest.unwrap_or(Digest([0; 32])),
            now_ms(),
            saved,
        );
        match logged {
            Ok(size) if size >= hitlog::FOLD_AT => Ok(self.fold_hits()?),
            Ok(_) => Ok(()),
            Err(_) => {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "UPDATE entries SET hits = hits + 1, last_used = ?1 WHERE key = ?2",
                )?
                .execute(params![now_ms(), &entry.key.0[..]])?;
                if let Some(m) = manifest {
                    add_saved(&tx, &m, &entry.key, 1, saved)?;
                }
                bump(&tx, &[(Counter::Hits, 1), (Counter::SavedMs, saved)])?;
                tx.commit()?;
                Ok(())
            }
        }
    }

    fn discard_corrupt(&mut self, entry: &Entry) -> Result<bool> {
        Ok(self.remove_corrupt(&entry.key, Some(&entry.checksum()))?)
    }
}

impl History for SqliteStore {
    fn note_unrecorded(&mut self, command_in_dir: &Digest, why: &NotRecorded) -> Result<()> {
        let counters = [(Counter::Misses, 1), (why.counter(), 1)];
        SqliteStore::note_unrecorded(self, command_in_dir, why.reason(), &counters)
    }

    fn previous_duration(&self, argv_digest: &Digest) -> Result<Option<Duration>> {
        SqliteStore::previous_duration(self, argv_digest)
    }

    fn earlier_runs(&self, argv_digest: &Digest, except: &Digest) -> Result<Vec<EarlierRun>> {
        SqliteStore::earlier_runs(self, argv_digest, except)
    }
}

impl Counters for SqliteStore {
    fn count(&mut self, counters: &[(Counter, i64)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        bump(&tx, counters)?;
        tx.commit()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn with_stat_cache(&self, f: &mut dyn FnMut(&mut dyn super::statcache::StatCache)) {
        let mut cache = self.stat_cache();
        f(&mut cache);
        // Only a cache: failing to save it costs a re-hash next time.
        let _ = cache.flush();
    }

    fn take_notice(&self) -> Option<String> {
        SqliteStore::take_notice(self)
    }

    fn locks_dir(&self) -> PathBuf {
        SqliteStore::locks_dir(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{Component, Key};

    fn spooled(store: &SqliteStore, data: &[u8]) -> Spooled {
        let mut s = store.spool();
        s.write(data).unwrap();
        s.finish().unwrap()
    }

    #[test]
    fn insert_lookup_hit_remove() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let key = Key::new(vec![Component::argv(&["echo", "hi"])]);
        assert!(store.lookup(&key.digest).unwrap().is_none());
        let big = vec![7u8; 100_000];
        // Output files: one inline, and one in the same blob as stderr
        // (content-addressed: stored once, referenced twice).
        let file = |store: &SqliteStore, data: &[u8]| {
            let mut s = store.spool_file();
            s.write(data).unwrap();
            store.put_file(s.finish().unwrap()).unwrap()
        };
        let (small, _) = file(&store, b"obj");
        let (large, check) = file(&store, &big);
        assert!(small.inline.is_some() && large.inline.is_none());
        let item = |path: &[u8], content: StoredStream| crate::outputs::files::Item {
            path: path.to_vec(),
            node: crate::outputs::files::Node::File {
                mode: 0o644,
                content,
            },
        };
        let outputs = vec![crate::outputs::files::OutputRoot {
            kind: crate::outputs::files::RootKind::Path,
            declared: b"out".to_vec(),
            items: vec![
                crate::outputs::files::Item {
                    path: Vec::new(),
                    node: crate::outputs::files::Node::Dir { mode: 0o755 },
                },
                item(b"a.o", small),
                item(b"b\xff", large.clone()),
                item(b"c", large.clone()),
            ],
        }];
        let entry = NewEntry {
            key: &key,
            display: "echo hi".into(),
            cwd: b"/".to_vec(),
            duration: Duration::from_millis(1500),
            exit_code: 3,
            stdout: spooled(&store, b"hi\n"),
            stderr: spooled(&store, &big),
            order: spooled(&store, b""),
            outputs: outputs.clone(),
            file_checks: vec![(large.digest, check)],
            stdin_advance: 7,
            manifest: Digest([8; 32]),
            created: vec![b"out.o".to_vec()],
            traced: None,
            recorded_at: None,
        };
        store
            .note_unrecorded(&Digest([8; 32]), "exit code 1", &[])
            .unwrap();
        store.insert(entry).unwrap();
        assert_eq!(store.note(&Digest([8; 32])).unwrap(), None);
        assert_eq!(
            store.known_outputs(&Digest([8; 32])).unwrap(),
            [b"out.o".to_vec()]
        );
        let e = store.lookup(&key.digest).unwrap().unwrap();
        assert_eq!(e.exit_code, 3);
        assert_eq!(e.outputs, outputs);
        assert_eq!(e.duration, Duration::from_millis(1500));
        assert_eq!(e.stdout.inline.as_deref(), Some(&b"hi\n"[..]));
        assert!(e.stderr.inline.is_none());
        assert_eq!(e.stderr.len, 100_000);
        match store.open_stream(&e.stderr).unwrap() {
            Some(Source::File(_)) => {}
            other => panic!("expected a verified blob, got {other:?}"),
        }
        assert!(
            matches!(store.open_stream(&e.stdout).unwrap(), Some(Source::Bytes(b)) if b == b"hi\n")
        );
        store.record_hit(&e).unwrap();
        store.fold_hits().unwrap();
        let hits: i64 = store
            .conn
            .query_row("SELECT hits FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(hits, 1);
        // One reference from the stream, one from the entry's files.
        let refs: i64 = store
            .conn
            .query_row("SELECT refs FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(refs, 2);
        let blob = store.blobs.path(&e.stderr.digest);
        assert!(blob.exists());
        store.remove(&key.digest).unwrap();
        assert!(store.lookup(&key.digest).unwrap().is_none());
        assert!(
            !blob.exists(),
            "the last reference went but the blob stayed"
        );
    }

    fn record(store: &mut SqliteStore, key: &Key, exit_code: i32, stderr: &[u8]) {
        let entry = NewEntry {
            key,
            display: "cmd".into(),
            cwd: b"/".to_vec(),
            duration: Duration::from_millis(10),
            exit_code,
            stdout: spooled(store, b"out\n"),
            stderr: spooled(store, stderr),
            order: spooled(store, b""),
            outputs: Vec::new(),
            file_checks: Vec::new(),
            stdin_advance: 0,
            manifest: Digest([8; 32]),
            created: Vec::new(),
            traced: None,
            recorded_at: None,
        };
        store.insert(entry).unwrap();
    }

    /// Traced entries are found through their manifests; a base key keeps
    /// the most recently used MAX_MANIFESTS, and a manifest goes with its
    /// entry.
    #[test]
    fn manifests_are_bounded_per_base_key_and_go_with_their_entries() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let base = Digest([1; 32]);
        let mut keys = Vec::new();
        for i in 0..(super::super::MAX_MANIFESTS as u8 + 2) {
            let mut key = Key::new(vec![Component::argv(&["cc", "-c", "a.c"])]);
            key.digest = Digest([100 + i; 32]);
            let entry = NewEntry {
                key: &key,
                display: "cc".into(),
                cwd: b"/".to_vec(),
                duration: Duration::from_millis(5),
                exit_code: 0,
                stdout: spooled(&store, b""),
                stderr: spooled(&store, b""),
                order: spooled(&store, b""),
                outputs: Vec::new(),
                file_checks: Vec::new(),
                stdin_advance: 0,
                manifest: Digest([8; 32]),
                created: Vec::new(),
                traced: Some(super::super::NewManifest {
                    base,
                    digest: Digest([i; 32]),
                    inputs: 3,
                    paths: vec![i],
                }),
                recorded_at: None,
            };
            store.insert(entry).unwrap();
            // Distinct last-used times, in order.
            store
                .conn
                .execute(
                    "UPDATE entries SET last_used = ?1 WHERE key = ?2",
                    params![i64::from(i), &key.digest.0[..]],
                )
                .unwrap();
            keys.push(key.digest);
        }
        let m = store.manifests(&base, 100).unwrap();
        assert_eq!(m.len(), super::super::MAX_MANIFESTS);
        // Most recently used first; the two oldest went, entries and all.
        assert_eq!(m[0].entry_key, *keys.last().unwrap());
        assert_eq!(m[0].paths, vec![super::super::MAX_MANIFESTS as u8 + 1]);
        for gone in &keys[..2] {
            assert!(store.lookup(gone).unwrap().is_none());
        }
        assert!(store.manifests(&Digest([2; 32]), 100).unwrap().is_empty());
        store.remove(&keys[5]).unwrap();
        assert_eq!(
            store.manifests(&base, 100).unwrap().len(),
            super::super::MAX_MANIFESTS - 1
        );
        store.clear(&ClearFilter::default(), false).unwrap();
        assert!(store.manifests(&base, 100).unwrap().is_empty());
    }

    fn corrupt_count(store: &SqliteStore) -> i64 {
        store
            .conn
            .query_row(
                "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'corrupt'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn a_row_that_fails_its_checksum_or_decoding_is_removed_and_counted() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let key = Key::new(vec![Component::argv(&["false"])]);
        let damage = [
            "exit_code = 0",
            "created = created - 1",
            "out_len = -1",
            "out_digest = x'00'",
            "duration_ms = 'x'",
            "checksum = NULL",
        ];
        for (i, change) in damage.iter().enumerate() {
            record(&mut store, &key, 1, b"");
            assert!(store.lookup(&key.digest).unwrap().is_some());
            store
                .conn
                .execute(&format!("UPDATE entries SET {change}"), [])
                .unwrap();
            assert!(store.lookup(&key.digest).unwrap().is_none(), "{change}");
            assert_eq!(corrupt_count(&store), i as i64 + 1, "{change}");
            let left: i64 = store
                .conn
                .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
                .unwrap();
            assert_eq!(left, 0, "{change}: the row stayed");
        }
    }

    #[test]
    fn whole_store_reads_salvage_on_corruption_only() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let key = Key::new(vec![Component::argv(&["true"])]);
        record(&mut store, &key, 0, b"");
        let failure = |code| {
            Error::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        // As SQLite fails on a damaged row: salvaged, then run once more.
        let mut calls = 0;
        let out = store.or_salvage(|_| {
            calls += 1;
            match calls {
                1 => Err(failure(rusqlite::ffi::SQLITE_CORRUPT)),
                _ => Ok(calls),
            }
        });
        assert_eq!(out.unwrap(), 2);
        // Any other failure, no database at all included, is returned.
        for code in [rusqlite::ffi::SQLITE_NOTADB, rusqlite::ffi::SQLITE_FULL] {
            let mut calls = 0;
            let out: Result<()> = store.or_salvage(|_| {
                calls += 1;
                Err(failure(code))
            });
            assert!(out.is_err());
            assert_eq!(calls, 1, "{code}");
        }
        assert!(store.lookup(&key.digest).unwrap().is_some());
    }

    #[test]
    fn an_entry_cleared_since_its_lookup_is_not_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let key = Key::new(vec![Component::argv(&["big"])]);
        record(&mut store, &key, 0, &vec![7u8; 100_000]);
        let e = store.lookup(&key.digest).unwrap().unwrap();
        // A concurrent clear: the row and its blob go.
        store.clear(&ClearFilter::default(), false).unwrap();
        assert!(store.open_stream(&e.stderr).unwrap().is_none());
        assert!(!store.discard_corrupt(&e).unwrap());
        // Re-recorded since: another entry under the same key, kept.
        record(&mut store, &key, 0, &vec![8u8; 100_000]);
        assert!(!store.discard_corrupt(&e).unwrap());
        assert!(store.lookup(&key.digest).unwrap().is_some());
        assert_eq!(corrupt_count(&store), 0);
        // Still the same entry, its blob gone: that is corrupt.
        let e = store.lookup(&key.digest).unwrap().unwrap();
        std::fs::remove_file(store.blobs.path(&e.stderr.digest)).unwrap();
        assert!(store.discard_corrupt(&e).unwrap());
        assert_eq!(corrupt_count(&store), 1);
        assert!(store.lookup(&key.digest).unwrap().is_none());
    }

    #[test]
    fn altered_inline_stream_is_not_replayed() {
        let t = tempfile::tempdir().unwrap();
        let store = SqliteStore::in_memory(t.path()).unwrap();
        let s = StoredStream {
            len: 2,
            digest: Digest::from(blake3::hash(b"ok")),
            inline: Some(b"no".to_vec()),
        };
        assert!(store.open_stream(&s).unwrap().is_none());
    }

    #[test]
    fn previous_run_is_the_closest_of_the_recent_entries_newest_of_equals() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let argv = Component::argv(&["make"]);
        let input = |name: &[u8], b: u8| Component::input(name, Some(Digest([b; 32])));
        let key = |inputs: &[Component]| {
            let mut c = vec![argv.clone()];
            c.extend_from_slice(inputs);
            Key::new(c)
        };
        let closest = |store: &SqliteStore, k: &Key| {
            let found = crate::commands::diff::closest_run(store, k).unwrap();
            found.map(|p| p.key)
        };
        let close = key(&[input(b"a", 1), input(b"b", 1)]);
        let tied = key(&[input(b"a", 1), input(b"b", 2)]);
        let far = key(&[input(b"./a", 1), input(b"./b", 1), input(b"./c", 1)]);
        // Recorded in this order, one second apart: `far` is the latest.
        for (i, k) in [&close, &tied, &far].into_iter().enumerate() {
            record(&mut store, k, 0, b"");
            store
                .conn
                .execute(
                    "UPDATE entries SET created = ?1 WHERE key = ?2",
                    params![1000 * i as i64, &k.digest.0[..]],
                )
                .unwrap();
        }
        let now = key(&[input(b"a", 1), input(b"b", 3)]);
        // `close` and `tied` share as much with it: the newer wins.
        assert_eq!(closest(&store, &now), Some(tied.digest));
        assert_eq!(
            closest(
                &store,
                &key(&[input(b"a", 1), input(b"b", 1), input(b"c", 1)])
            ),
            Some(close.digest)
        );
        // The entry under the key itself is never its own previous run.
        assert_eq!(closest(&store, &close), Some(tied.digest));
        // Only the most recent entries are compared.
        for i in 0..CLOSEST_OF {
            let k = key(&[input(format!("x{i}").as_bytes(), 1)]);
            record(&mut store, &k, 0, b"");
            store
                .conn
                .execute(
                    "UPDATE entries SET created = ?1 WHERE key = ?2",
                    params![10_000 + i, &k.digest.0[..]],
                )
                .unwrap();
        }
        assert_ne!(closest(&store, &now), Some(tied.digest));
        assert!(closest(&store, &now).is_some());
    }

    #[test]
    fn hits_of_an_entry_gone_by_fold_time_count_toward_its_command() {
        let t = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::in_memory(t.path()).unwrap();
        let key = Key::new(vec![Component::argv(&["make"])]);
        record(&mut store, &key, 0, b"");
        let e = store.lookup(&key.digest).unwrap().unwrap();
        store.record_hit(&e).unwrap();
        store.record_hit(&e).unwrap();
        // Removed before the hits are folded (`remove` does not fold).
        store.remove(&key.digest).unwrap();
        store.fold_hits().unwrap();
        let manifest = super::super::manifest(&key.command, b"/");
        let row: (String, i64, i64) = store
            .conn
            .query_row(
                "SELECT display, hits, saved_ms FROM saved WHERE command_in_dir = ?1",
                params![&manifest.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("cmd".to_string(), 2, 20));
        let stats = store.stats(t.path()).unwrap();
        assert_eq!(stats.top.len(), 1);
        assert_eq!((stats.top[0].hits, stats.top[0].saved_ms), (2, 20));
    }

    #[test]
    fn schema_version_is_set() {
        let t = tempfile::tempdir().unwrap();
        let store = SqliteStore::in_memory(t.path()).unwrap();
        let v: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
