//! The storage one invocation talks to: the local store, then the remote
//! tier behind it, as one object (sccache's `MultiLevelStorage`, ccache's
//! `storage.hpp`, turborepo's `CacheMultiplexer`).
//!
//! `commands::run` asks a [`Tiered`] for a hit (the [`Entries`] role),
//! tells it when a look missed ([`Tiered::missed`]) and hands it the
//! result ([`Entries::insert`], then [`Tiered::finish`]). Which tier
//! answered it learns only from what the tiered store reports
//! ([`Entries::answered`]: a hit from the remote says what it downloaded).
//!
//! Invariants, as before the seam:
//! - Single flight: the first invocation of a key to miss holds the key's
//!   run lock while it asks the remote and runs; the others sleep on the
//!   lock, then look again and replay what it recorded. A holder whose
//!   run was not recorded says so, and its waiters then run side by side.
//!   A holder that dies releases the lock with it.
//! - The remote is asked at most once per invocation, only under the run
//!   lock, and only after a local look under the lock missed: concurrent
//!   runs of a key download it once and then replay it locally.
//! - The upload of a recorded run happens after the locks are released:
//!   waiters replay the local entry meanwhile.
//! - Every failure of either tier costs a miss or a duplicate run, never
//!   the command.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::{Deadline, Fetched, Local, Tier, Uploaded};
use crate::base::stat::StatCache;
use crate::key::resolve::Resolved;
use crate::key::{self, Digest, Key};
use crate::store::counters::{Counter, NotRecorded};
use crate::store::locks::{self, Lock, Waited};
use crate::store::{
    Answered, Counters, EarlierRun, Entries, Entry, History, NewEntry, NewManifest, Source, Spool,
    Spooled, Store, StoredManifest, StoredStream,
};
use crate::term::format::{human_duration, human_size};
use crate::term::ui::Ui;

/// What the remote tier needs to know about the invocation.
pub(crate) struct Invocation<'r> {
    /// The key and what the run remembers (display, working directory).
    pub(crate) resolved: &'r Resolved,
    /// For a traced command: what its trace manifests' paths are relative
    /// to (see `commands::prepare::manifest_base`). `None` when untraced.
    pub(crate) traced: Option<Option<PathBuf>>,
    /// `--force`: never replay, so never download; upload what it records.
    pub(crate) force: bool,
}

/// What to do after a look missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Look again (the lock is ours now, a run waited for ended, or the
    /// remote installed an entry).
    LookAgain,
    /// Run the command.
    Run,
}

/// The local store and the remote tier, with the locks of one invocation.
pub(crate) struct Tiered<'s, 'r> {
    local: &'s mut dyn Store,
    remote: Option<Tier>,
    invocation: Invocation<'r>,
    /// The key's run lock, once held.
    held: Option<Lock>,
    /// The background refresh's lock, when this is one.
    refresh: Option<Lock>,
    /// The run waited for ended unrecorded: run without the lock.
    unlocked: bool,
    /// The remote was asked (it is asked once).
    asked: bool,
    /// Where the entry of the next look comes from.
    answered: Answered,
    /// The remote answered that it has no entry.
    remote_missed: bool,
    /// What this invocation recorded: the entry's key, and its trace
    /// manifest for a traced run.
    inserted: Option<(Digest, Option<NewManifest>)>,
}

impl<'s, 'r> Tiered<'s, 'r> {
    /// The local store, with the remote tier behind it when there is one.
    pub(crate) fn new(
        local: &'s mut dyn Store,
        remote: Option<Tier>,
        invocation: Invocation<'r>,
    ) -> Tiered<'s, 'r> {
        Tiered {
            local,
            remote,
            invocation,
            held: None,
            refresh: None,
            unlocked: false,
            asked: false,
            answered: Answered::Local,
            remote_missed: false,
            inserted: None,
        }
    }

    /// For a background refresh: hold its key's refresh lock. `false`
    /// when another refresh holds it (or it cannot be taken): then this
    /// one has nothing to do.
    pub(crate) fn take_refresh_lock(&mut self, name: &str) -> bool {
        match locks::try_lock(&self.local.locks_dir(), name) {
            Ok(Some(l)) => {
                self.refresh = Some(l);
                true
            }
            _ => false,
        }
    }

    /// A look missed: take the key's run lock (waiting for a concurrent
    /// run of the key, `before_wait` called first), and under it ask the
    /// remote once. Says whether to look again or to run.
    pub(crate) fn missed(&mut self, ui: &Ui, before_wait: &mut dyn FnMut()) -> Next {
        // The remote was asked already: what it installed missed too.
        if self.asked {
            return Next::Run;
        }
        if self.held.is_some() || self.unlocked {
            return self.ask_remote(ui);
        }
        let locks = self.local.locks_dir();
        let name = format!("run-{}", self.invocation.resolved.key.digest.to_hex());
        match locks::try_lock(&locks, &name) {
            Ok(Some(l)) => self.held = Some(l),
            Ok(None) => {
                before_wait();
                match locks::wait(&locks, &name) {
                    Ok(Waited::Locked(l)) => self.held = Some(l),
                    // Look again, without the lock: a hit replays side by
                    // side with other waiters; a miss takes the lock.
                    Ok(Waited::Released) => return Next::LookAgain,
                    // A failure, most likely, that this run would repeat:
                    // look again, then run without queueing for the lock.
                    Ok(Waited::Unrecorded) => {
                        self.unlocked = true;
                        return Next::LookAgain;
                    }
                    // Without the lock we still run: a duplicate run, never
                    // a failed one.
                    Err(_) => return self.ask_remote(ui),
                }
            }
            Err(_) => return self.ask_remote(ui),
        }
        match self.invocation.force {
            true => self.ask_remote(ui),
            // Look again under the lock: a concurrent run may have recorded it.
            false => Next::LookAgain,
        }
    }

    /// The local looks missed: ask the remote, once; on a hit it installs
    /// the entry locally, and the next look replays it from there.
    fn ask_remote(&mut self, ui: &Ui) -> Next {
        if self.asked || self.invocation.force {
            return Next::Run;
        }
        self.asked = true;
        let Some(tier) = self.remote.as_mut() else {
            return Next::Run;
        };
        let fetched = match &self.invocation.traced {
            None => {
                let r = self.invocation.resolved;
                tier.fetch(self.local, ui, local_of(r, &r.key, None))
            }
            Some(base_dir) => fetch_traced(
                tier,
                self.local,
                ui,
                self.invocation.resolved,
                base_dir.as_deref(),
            ),
        };
        match fetched {
            Fetched::Installed { bytes, took } => {
                self.answered = Answered::Remote { bytes, took };
                Next::LookAgain
            }
            Fetched::Miss => {
                self.remote_missed = true;
                Next::Run
            }
            Fetched::Off => Next::Run,
        }
    }

    /// Whether the remote was asked and has no entry either.
    pub(crate) fn remote_missed(&self) -> bool {
        self.remote_missed
    }

    /// An entry was replayed: one the remote installed leaves no lock
    /// behind (the others are released as the process ends).
    pub(crate) fn replayed(self) {
        if let Answered::Remote { .. } = self.answered {
            for l in [self.held, self.refresh].into_iter().flatten() {
                l.release_and_remove();
            }
        }
    }

    /// The run ended (`recorded`: its result is in the local store): tell
    /// the waiters, release the locks, then upload what it recorded.
    pub(crate) fn finish(mut self, ui: &Ui, recorded: bool) {
        if let Some(l) = &self.held
            && !recorded
        {
            // Tell those waiting that there is nothing to replay, so that
            // they run at once, side by side, rather than one after another.
            l.note_unrecorded();
        }
        for l in [self.held.take(), self.refresh.take()]
            .into_iter()
            .flatten()
        {
            l.release_and_remove();
        }
        if recorded && let Some((key, traced)) = self.inserted.take() {
            self.upload(ui, &key, traced.as_ref());
        }
    }

    /// Upload the entry just recorded: blobs first, the entry last, never
    /// over a valid entry (see `Tier::upload`); for a traced run, then its
    /// trace manifest.
    fn upload(&mut self, ui: &Ui, key: &Digest, traced: Option<&NewManifest>) {
        let Some(tier) = self.remote.as_mut().filter(|t| t.writable()) else {
            return;
        };
        let Ok(Some(entry)) = self.local.lookup(key) else {
            return;
        };
        let uploaded = tier.upload(self.local, ui, &entry);
        let base = self.invocation.traced.clone().flatten();
        if let Some(m) = traced
            && let Some(local) = key::traced::Manifest::decode(&m.paths, base.as_deref())
        {
            let portable = local.portable(base.as_deref());
            tier.upload_manifest(self.local, ui, &m.base, &m.digest, &portable);
        }
        if let Uploaded::Stored { bytes, took } = uploaded {
            ui.status(format_args!(
                "uploaded {} to {} in {}",
                human_size(bytes),
                tier.display(),
                human_duration(took)
            ));
        }
    }
}

/// A traced command's entry is found through the remote's trace
/// manifests: the first that matches the files here names it, and is
/// installed with it.
fn fetch_traced(
    tier: &mut Tier,
    store: &mut dyn Store,
    ui: &Ui,
    resolved: &Resolved,
    base_dir: Option<&Path>,
) -> Fetched {
    let base = resolved.key.digest;
    // Those checked already (they did not match).
    let known: Vec<Digest> = store
        .manifests(&base, crate::store::MAX_MANIFESTS)
        .map(|v| v.into_iter().map(|m| m.digest).collect())
        .unwrap_or_default();
    // Each checked against the files here as it arrives (only once its MAC
    // verified: see `Tier::find_manifest`); the first that matches names
    // the entry. The work all of them may cost is bounded, and ends by the
    // lookup's deadline.
    let mut found = None;
    let mut budget = CheckBudget::default();
    let mut checked = |digest: &Digest, bytes: &[u8], deadline: &Deadline| -> bool {
        let Some(m) = key::traced::Manifest::decode(bytes, base_dir) else {
            return false;
        };
        // Named by its digest here too, or not what it claims.
        if m.digest(base_dir) != *digest {
            return false;
        }
        let matched = matches_within(&m, deadline, &mut budget);
        if matched {
            found = Some(m);
        }
        matched
    };
    let Some(digest) = tier.find_manifest(store, ui, &base, &known, &mut checked) else {
        return Fetched::Off;
    };
    let Some(m) = found else {
        return Fetched::Off;
    };
    let key = Key {
        digest: key::traced::entry_key(&base, &digest),
        command: resolved.key.command,
        components: resolved.key.components.clone(),
    };
    let manifest = NewManifest {
        base,
        digest,
        inputs: m.items.len() as u64,
        paths: m.encode(base_dir),
    };
    tier.fetch(store, ui, local_of(resolved, &key, Some(manifest)))
}

/// What checking the remote's trace manifests against the files here may
/// cost in one lookup, besides its deadline: a manifest a teammate
/// recorded after reading a 40 GB file is better rerun than matched.
#[derive(Debug)]
struct CheckBudget {
    /// Paths looked at.
    paths: u64,
    /// Bytes of files hashed.
    bytes: u64,
}

/// Paths one remote lookup may look at, in all its manifests.
const CHECK_PATHS: u64 = 100_000;

/// Bytes one remote lookup may hash, in all its manifests.
const CHECK_BYTES: u64 = 256 * 1024 * 1024;

impl Default for CheckBudget {
    fn default() -> CheckBudget {
        CheckBudget {
            paths: CHECK_PATHS,
            bytes: CHECK_BYTES,
        }
    }
}

/// Whether every path of `m` matches the files here, checked within
/// `deadline` and `budget`: past either, it does not (a miss). Files are
/// hashed here, not through the stat cache (the store is busy with the
/// remote): a remote lookup is rare. The sizes of the files to hash are
/// looked at first, so a file too large for what is left is never read.
fn matches_within(
    m: &key::traced::Manifest,
    deadline: &Deadline,
    budget: &mut CheckBudget,
) -> bool {
    let n = m.items.len() as u64;
    if n > budget.paths {
        return false;
    }
    budget.paths -= n;
    let mut bytes = 0u64;
    for (path, state) in &m.items {
        if matches!(state, key::traced::State::Content(_))
            && let Ok(meta) = std::fs::metadata(path)
            && meta.is_file()
        {
            bytes = bytes.saturating_add(meta.len());
        }
        if deadline.remaining(0).is_none() {
            return false;
        }
    }
    if bytes > budget.bytes {
        return false;
    }
    budget.bytes -= bytes;
    // One path at a time, so that the deadline is checked between them.
    for (i, item) in m.items.iter().enumerate() {
        if deadline.remaining(0).is_none() {
            return false;
        }
        let one = key::traced::Manifest {
            items: vec![item.clone()],
            stats: vec![m.stats.get(i).copied().flatten()],
        };
        if key::traced::check(&one, &mut key::traced::NoCache).is_some() {
            return false;
        }
    }
    true
}

/// What the remote tier needs to install an entry for this invocation.
fn local_of<'a>(resolved: &Resolved, key: &'a Key, traced: Option<NewManifest>) -> Local<'a> {
    Local {
        key,
        display: resolved.base.display.clone(),
        cwd: resolved.base.cwd.as_os_str().as_bytes().to_vec(),
        manifest: resolved.base.manifest,
        traced,
    }
}

impl Entries for Tiered<'_, '_> {
    fn lookup(&mut self, key: &Digest) -> Result<Option<Entry>> {
        self.local.lookup(key)
    }

    fn answered(&self) -> Answered {
        self.answered
    }

    fn open_stream(&self, stream: &StoredStream) -> Result<Option<Source>> {
        self.local.open_stream(stream)
    }

    fn prefetch_checks(&self, digests: &[Digest]) {
        self.local.prefetch_checks(digests)
    }

    fn blob_check(&self, digest: &Digest) -> Option<[u8; 16]> {
        self.local.blob_check(digest)
    }

    fn local_blobs(&self) -> Option<&crate::store::Blobs> {
        self.local.local_blobs()
    }

    fn spool(&self) -> Spool {
        self.local.spool()
    }

    fn spool_file(&self) -> Spool {
        self.local.spool_file()
    }

    fn put_file(&self, content: Spooled) -> Result<(StoredStream, [u8; 16])> {
        self.local.put_file(content)
    }

    /// Recorded locally now; uploaded by [`Tiered::finish`], once the
    /// locks are released.
    fn insert(&mut self, entry: NewEntry<'_>) -> Result<()> {
        let key = entry.key.digest;
        let traced = entry.traced.clone();
        self.local.insert(entry)?;
        let key = match &traced {
            Some(m) => key::traced::entry_key(&m.base, &m.digest),
            None => key,
        };
        self.inserted = Some((key, traced));
        Ok(())
    }

    fn manifests(&self, base: &Digest, limit: usize) -> Result<Vec<StoredManifest>> {
        self.local.manifests(base, limit)
    }

    fn record_hit(&mut self, entry: &Entry) -> Result<()> {
        self.local.record_hit(entry)
    }

    fn discard_corrupt(&mut self, entry: &Entry) -> Result<bool> {
        self.local.discard_corrupt(entry)
    }
}

impl History for Tiered<'_, '_> {
    fn note_unrecorded(&mut self, command_in_dir: &Digest, why: &NotRecorded) -> Result<()> {
        self.local.note_unrecorded(command_in_dir, why)
    }

    fn previous_duration(&self, argv_digest: &Digest) -> Result<Option<Duration>> {
        self.local.previous_duration(argv_digest)
    }

    fn earlier_runs(&self, argv_digest: &Digest, except: &Digest) -> Result<Vec<EarlierRun>> {
        self.local.earlier_runs(argv_digest, except)
    }
}

impl Counters for Tiered<'_, '_> {
    fn count(&mut self, counters: &[(Counter, i64)]) -> Result<()> {
        self.local.count(counters)
    }
}

impl Store for Tiered<'_, '_> {
    fn take_notice(&self) -> Option<String> {
        self.local.take_notice()
    }

    fn locks_dir(&self) -> PathBuf {
        self.local.locks_dir()
    }

    fn with_stat_cache(&self, f: &mut dyn FnMut(&mut dyn StatCache)) {
        self.local.with_stat_cache(f)
    }
}
