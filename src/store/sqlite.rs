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
//! partial blob; the schema version is `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::blobs::{Blobs, Spool, Spooled, SpooledData};
use super::hitlog;
use super::maintenance::{self, Limits};
use super::statcache::SqliteStatCache;
use super::temp;
use super::{Entry, NewEntry, Source, Store, StoredStream, dir, now_ms};
use crate::key::{Component, Digest};

pub use super::schema::SCHEMA_VERSION;

/// How long a statement waits for another process's lock before giving up
/// (and the call runs uncached).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A cache directory opened for use.
pub struct SqliteStore {
    pub(super) conn: Connection,
    pub(super) blobs: Blobs,
    root: PathBuf,
    tmp_dir: PathBuf,
    secret: [u8; 32],
    notice: std::cell::RefCell<Option<String>>,
    limits: Limits,
}

impl SqliteStore {
    /// Open (creating if needed) the store in `dir`. Any problem, from a
    /// foreign-owned directory to a file that is not a database, is an error
    /// the caller turns into "run uncached".
    pub fn open(cache_dir: &Path) -> Result<SqliteStore> {
        // From here on the directory is named by the path that was checked.
        let cache_dir = &dir::prepare(cache_dir)?;
        let tmp_dir = cache_dir.join("tmp");
        dir::ensure_subdir(&tmp_dir)?;
        let secret = dir::load_or_create_secret(cache_dir, &tmp_dir)?;
        let db_path = cache_dir.join("memorun.db");
        // Create the file 0600 ourselves: SQLite would use 0644 & ~umask, and
        // it gives the -wal and -shm files the main file's mode.
        dir::create_private_file(&db_path)
            .with_context(|| format!("cannot open '{}'", db_path.display()))?;
        configure_sqlite();
        let conn = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open '{}'", db_path.display()))?;
        let store = SqliteStore {
            conn,
            blobs: Blobs::new(cache_dir.join("blobs")),
            root: cache_dir.to_path_buf(),
            tmp_dir,
            secret,
            notice: Default::default(),
            limits: Limits::default(),
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
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    let jitter = u64::from(std::process::id() % 20);
                    std::thread::sleep(Duration::from_millis(10 + jitter));
                }
                Err(e) => {
                    return Err(e.context(format!("cannot use '{}'", db_path.display())));
                }
            }
        }
    }

    /// An in-memory store for unit tests, with blobs under `dir`.
    #[cfg(test)]
    pub fn in_memory(dir: &Path) -> Result<SqliteStore> {
        let store = SqliteStore {
            conn: Connection::open_in_memory()?,
            blobs: Blobs::new(dir.join("blobs")),
            root: dir.to_path_buf(),
            tmp_dir: dir.to_path_buf(),
            secret: [9; 32],
            notice: Default::default(),
            limits: Limits::default(),
        };
        store.init()?;
        Ok(store)
    }

    /// A one-line notice about opening the store (a schema upgrade), once.
    pub fn take_notice(&self) -> Option<String> {
        self.notice.borrow_mut().take()
    }

    /// The size limits to keep after each write.
    pub fn set_limits(&mut self, limits: Limits) {
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
        self.root.join("hits.log")
    }

    /// Fold the hit log into the entries and counters (see `hitlog`).
    pub fn fold_hits(&mut self) -> Result<()> {
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
            for (key, h) in &folding.hits {
                stmt.execute(params![h.count, h.last_ms, &key.0[..]])?;
                count += h.count;
                saved += h.saved_ms;
            }
        }
        maintenance::bump(
            &tx,
            &[(maintenance::HITS, count), (maintenance::SAVED_MS, saved)],
        )?;
        tx.commit()?;
        folding.done()?;
        Ok(())
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where per-key lock files live.
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Where temp files go (spools, stdin).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// A view of the stat cache for this invocation.
    pub fn stat_cache(&self) -> SqliteStatCache<'_> {
        SqliteStatCache::new(&self.conn)
    }

    /// The arguments earlier runs of `manifest` created: outputs, not inputs.
    pub fn known_outputs(&self, manifest: &Digest) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT path FROM outputs WHERE command = ?1 ORDER BY path")?;
        let rows = stmt.query_map(params![&manifest.0[..]], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remember why the latest run of `manifest` was not recorded, and
    /// count it, in one transaction. (A run that is recorded clears the
    /// note in `insert`.)
    pub fn note_unrecorded(
        &mut self,
        manifest: &Digest,
        note: &str,
        counters: &[(&str, i64)],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT OR REPLACE INTO notes (command, note, at) VALUES (?1, ?2, ?3)")?
            .execute(params![&manifest.0[..], note, now_ms()])?;
        maintenance::bump(&tx, counters)?;
        tx.commit()?;
        temp::sweep(&self.tmp_dir, false);
        Ok(())
    }

    /// Why the latest run of `manifest` was not recorded, and when.
    pub fn note(&self, manifest: &Digest) -> Result<Option<(String, i64)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT note, at FROM notes WHERE command = ?1")?
            .query_row(params![&manifest.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// How long the most recent recorded run of the same command took.
    pub fn previous_duration(&self, command: &Digest) -> Result<Option<Duration>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT duration_ms FROM entries WHERE command = ?1 ORDER BY created DESC LIMIT 1",
            )?
            .query_row(params![&command.0[..]], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|ms| Duration::from_millis(ms.max(0) as u64)))
    }

    /// The components of the most recent entry of the same command (same
    /// argv after `--ignore-arg`) other than `except`, with its creation time.
    pub fn previous_run(
        &self,
        command: &Digest,
        except: &Digest,
    ) -> Result<Option<(Vec<Component>, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT components, created FROM entries
             WHERE command = ?1 AND key != ?2 ORDER BY created DESC LIMIT 1",
        )?;
        let row = stmt
            .query_row(params![&command.0[..], &except.0[..]], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()?;
        match row {
            None => Ok(None),
            Some((json, created)) => Ok(Some((serde_json::from_str(&json)?, created))),
        }
    }

    fn init(&self) -> Result<()> {
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
            .pragma_update(None, "journal_size_limit", 0)
            .context("cannot configure the database")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The first statement to read the file is where "file is not a
        // database" shows up.
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == SCHEMA_VERSION {
            // Created by `migrate` below, in WAL mode, which the file keeps.
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
                bail!("cannot switch the database to WAL mode (got '{mode}')");
            }
        }
        if version > SCHEMA_VERSION {
            bail!(
                "the store has schema version {version}, newer than this memorun ({SCHEMA_VERSION})"
            );
        }
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        // Re-check under the write lock: another process may have won.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let upgraded = super::schema::migrate(&tx, version)?;
        tx.commit()?;
        if let Some(from) = upgraded {
            *self.notice.borrow_mut() = Some(format!(
                "upgraded the cache from schema version {from} to {SCHEMA_VERSION}"
            ));
        }
        Ok(())
    }

    /// Turn a spooled stream into its column values, installing its blob
    /// (a row only ever points at a blob that is complete and in place).
    fn put_stream(&self, s: Spooled) -> Result<Columns> {
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
        Ok(Columns {
            len: s.len as i64,
            digest: s.digest.0.to_vec(),
            inline,
            check: s.check,
        })
    }
}

/// One stream's column values in the entries table.
struct Columns {
    len: i64,
    digest: Vec<u8>,
    inline: Option<Vec<u8>>,
    check: [u8; 16],
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
    unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast(),
        );
    }
}

/// Whether an error is SQLite saying another connection holds a lock.
fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    })
}

fn stream_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StoredStream> {
    let len: i64 = row.get(first)?;
    let digest: Vec<u8> = row.get(first + 1)?;
    let inline: Option<Vec<u8>> = row.get(first + 2)?;
    let digest = Digest::from_slice(&digest).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            first + 1,
            rusqlite::types::Type::Blob,
            "digest is not 32 bytes".into(),
        )
    })?;
    Ok(StoredStream {
        len: len.max(0) as u64,
        digest,
        inline,
    })
}

impl Store for SqliteStore {
    fn lookup(&mut self, key: &Digest) -> Result<Option<Entry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT created, duration_ms, exit_code,
                    out_len, out_digest, out_inline,
                    err_len, err_digest, err_inline,
                    ord_len, ord_digest, ord_inline, outputs, stdin_advance
             FROM entries WHERE key = ?1",
        )?;
        let entry = stmt
            .query_row(params![&key.0[..]], |row| {
                Ok(Entry {
                    key: *key,
                    created_ms: row.get(0)?,
                    duration: Duration::from_millis(row.get::<_, i64>(1)?.max(0) as u64),
                    exit_code: row.get(2)?,
                    stdout: stream_from_row(row, 3)?,
                    stderr: stream_from_row(row, 6)?,
                    order: stream_from_row(row, 9)?,
                    // Malformed: treated as an output that no longer matches.
                    outputs: match row.get::<_, Option<Vec<u8>>>(12)? {
                        None => Vec::new(),
                        Some(b) => super::decode_outputs(&b)
                            .unwrap_or_else(|| vec![(b"?".to_vec(), Digest([0; 32]))]),
                    },
                    stdin_advance: row.get::<_, i64>(13)?.max(0) as u64,
                })
            })
            .optional()?;
        Ok(entry)
    }

    fn open_stream(&self, stream: &StoredStream) -> Result<Option<Source>> {
        if let Some(bytes) = &stream.inline {
            let ok = bytes.len() as u64 == stream.len
                && Digest::from(blake3::hash(bytes)) == stream.digest;
            return Ok(ok.then(|| Source::Bytes(bytes.clone())));
        }
        if stream.len == 0 {
            return Ok(None);
        }
        // Blobs recorded by schema 1 have no fast check: BLAKE3 then.
        let check: Option<[u8; 16]> = self
            .conn
            .prepare_cached("SELECT xxh3 FROM blobs WHERE digest = ?1")?
            .query_row(params![&stream.digest.0[..]], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })
            .optional()?
            .flatten()
            .and_then(|c| c.try_into().ok());
        let file = self
            .blobs
            .open_verified(&stream.digest, stream.len, check)
            .with_context(|| {
                format!(
                    "cannot read blob '{}'",
                    self.blobs.path(&stream.digest).display()
                )
            })?;
        Ok(file.map(Source::File))
    }

    fn spool(&self) -> Spool {
        Spool::new(self.tmp_dir.clone())
    }

    fn insert(&mut self, e: NewEntry<'_>) -> Result<()> {
        // Bookkeeping only: a failure to fold must not lose this result.
        let _ = self.fold_hits();
        let out = self.put_stream(e.stdout)?;
        let err = self.put_stream(e.stderr)?;
        let ord = self.put_stream(e.order)?;
        let components = serde_json::to_string(&e.key.components)?;
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The entry this one replaces, if any, gives up its blobs.
        let mut freed = maintenance::delete_entry(&tx, &e.key.digest)?;
        // This run is recorded: no note on why it was not, and the arguments
        // it created are outputs from now on.
        tx.prepare_cached("DELETE FROM notes WHERE command = ?1")?
            .execute(params![&e.manifest.0[..]])?;
        if !e.created.is_empty() {
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO outputs (command, path) VALUES (?1, ?2)")?;
            for p in &e.created {
                stmt.execute(params![&e.manifest.0[..], p])?;
            }
        }
        for c in [&out, &err, &ord] {
            if c.inline.is_none() && c.len > 0 {
                maintenance::reference_blob(&tx, &c.digest, c.len, &c.check)?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO entries
               (key, command, display, cwd, components, created, last_used,
                duration_ms, exit_code, hits,
                out_len, out_digest, out_inline,
                err_len, err_digest, err_inline,
                ord_len, ord_digest, ord_inline, outputs, stdin_advance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, 0,
                     ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        )?
        .execute(params![
            &e.key.digest.0[..],
            &e.key.command.0[..],
            e.display,
            e.cwd,
            components,
            now,
            e.duration.as_millis() as i64,
            e.exit_code,
            out.len,
            out.digest,
            out.inline,
            err.len,
            err.digest,
            err.inline,
            ord.len,
            ord.digest,
            ord.inline,
            super::encode_outputs(&e.outputs),
            e.stdin_advance as i64,
        ])?;
        // Re-referenced in this same transaction: not freed after all.
        freed.retain(|d| {
            ![&out, &err, &ord]
                .iter()
                .any(|c| c.inline.is_none() && c.digest.as_slice() == d.0)
        });
        maintenance::bump(&tx, &[(maintenance::MISSES, 1)])?;
        tx.commit()?;
        self.remove_blob_files(&freed);
        // Spools of runs killed before they could clean up: gone now, so
        // that they do not count against the limit.
        temp::sweep(&self.tmp_dir, false);
        self.enforce_limits();
        Ok(())
    }

    fn record_hit(&mut self, entry: &Entry) -> Result<()> {
        // Counted in the hit log, not the database: see `hitlog`.
        let saved = entry.duration.as_millis() as i64;
        match hitlog::append(&self.hit_log(), &entry.key, now_ms(), saved) {
            Ok(size) if size >= hitlog::FOLD_AT => self.fold_hits(),
            Ok(_) => Ok(()),
            Err(_) => {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "UPDATE entries SET hits = hits + 1, last_used = ?1 WHERE key = ?2",
                )?
                .execute(params![now_ms(), &entry.key.0[..]])?;
                maintenance::bump(
                    &tx,
                    &[(maintenance::HITS, 1), (maintenance::SAVED_MS, saved)],
                )?;
                tx.commit()?;
                Ok(())
            }
        }
    }

    fn remove(&mut self, key: &Digest) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let freed = maintenance::delete_entry(&tx, key)?;
        tx.commit()?;
        self.remove_blob_files(&freed);
        Ok(())
    }

    fn count(&mut self, counters: &[(&str, i64)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        maintenance::bump(&tx, counters)?;
        tx.commit()?;
        Ok(())
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
        let entry = NewEntry {
            key: &key,
            display: "echo hi".into(),
            cwd: b"/".to_vec(),
            duration: Duration::from_millis(1500),
            exit_code: 3,
            stdout: spooled(&store, b"hi\n"),
            stderr: spooled(&store, &big),
            order: spooled(&store, b""),
            outputs: vec![
                (b"out.o".to_vec(), Digest([5; 32])),
                (b"\xff".to_vec(), Digest([6; 32])),
            ],
            stdin_advance: 7,
            manifest: Digest([8; 32]),
            created: vec![b"out.o".to_vec()],
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
        assert_eq!(e.outputs.len(), 2);
        assert_eq!(e.outputs[1], (b"\xff".to_vec(), Digest([6; 32])));
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
        let refs: i64 = store
            .conn
            .query_row("SELECT refs FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(refs, 1);
        let blob = store.blobs.path(&e.stderr.digest);
        assert!(blob.exists());
        store.remove(&key.digest).unwrap();
        assert!(store.lookup(&key.digest).unwrap().is_none());
        assert!(
            !blob.exists(),
            "the last reference went but the blob stayed"
        );
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
