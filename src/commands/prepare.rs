//! Getting ready to look up: open the store, capture stdin, resolve the key.
//!
//! Shared by a normal run and by `memorun why`. Every failure here comes
//! back as [`NotPrepared`], carrying how the command must still get its
//! stdin, so the caller can run it uncached without losing a byte.

use crate::config::{CacheLocation, Config};
use crate::key::inputs::InputError;
use crate::key::resolve::{self, Base, Context, Resolved};
use crate::key::stdin::{self, Feed, StdinFile};
use crate::key::traced;
use crate::key::{Component, Digest};
use crate::store::db::SqliteStore;
use crate::store::statcache::{CachedStat, StatCache};
use crate::store::{CacheDir, Store};

/// A store opened and a key resolved, ready to look up.
pub struct Prepared {
    /// The open store.
    pub store: SqliteStore,
    /// The key and what the run must remember.
    pub resolved: Resolved,
    /// How the command gets its stdin.
    pub feed: Feed,
}

/// Why preparing failed, and how the command must still get its stdin.
pub enum NotPrepared {
    /// No cache, on purpose: run plainly and say nothing.
    Disabled,
    /// The cache is unusable: warn, then run plainly.
    Uncached(anyhow::Error, Feed),
    /// A usage error (an input that is refused): exit 125.
    Refused(anyhow::Error),
}

/// How many files, and bytes in all, a key resolved without the database
/// hashes in full where the stat cache would have remembered them: about
/// what opening the database costs. Beyond it the key waits for the stat
/// cache ([`Early::finish`]).
const DIRECT_BUDGET: (usize, u64) = (32, 256 * 1024);

/// A stat cache that is not there: files are hashed, within a budget.
struct Direct;

impl StatCache for Direct {
    fn budget(&self) -> Option<(usize, u64)> {
        Some(DIRECT_BUDGET)
    }
    fn get(&mut self, _abs: &std::path::Path) -> Option<CachedStat> {
        None
    }
    fn put(&mut self, _abs: &std::path::Path, _entry: CachedStat) {}
}

/// The first half of [`prepare`], which never opens the database: the
/// cache directory checked, stdin captured, and the key when it can be
/// resolved without the database, so that a hit record can be looked for.
pub struct Early {
    /// The cache directory.
    pub dir: CacheDir,
    /// The key, if resolved without the database: the command has no
    /// known outputs in play and its inputs are within [`DIRECT_BUDGET`].
    /// The database path checks the first and resolves again if needed.
    pub resolved: Option<Resolved>,
    /// How the command gets its stdin.
    pub feed: Feed,
    base: Base,
    secret: [u8; 32],
    /// The `--key-cmd` components, run once whether or not the key is
    /// resolved twice.
    key_cmds: Vec<Component>,
    stdin: Option<Component>,
    stdin_file: Option<StdinFile>,
}

/// Open the store, capture stdin and resolve the key. `spool_stdin` is off
/// for `why`, which hashes stdin but never runs anything.
pub fn prepare(config: &Config, spool_stdin: bool) -> Result<Prepared, NotPrepared> {
    begin(config, spool_stdin, false)?.finish(config, None)
}

/// Check the cache directory, capture stdin and, with `early_key`, try to
/// resolve the key without the database (see [`Early`]).
pub fn begin(config: &Config, spool_stdin: bool, early_key: bool) -> Result<Early, NotPrepared> {
    let dir = match &config.cache {
        CacheLocation::Dir(dir) => dir,
        CacheLocation::Disabled => return Err(NotPrepared::Disabled),
        CacheLocation::Unavailable(why) => {
            return Err(NotPrepared::Uncached(
                anyhow::anyhow!("{why}"),
                Feed::Inherit,
            ));
        }
    };
    let uncached = |e: anyhow::Error, feed| NotPrepared::Uncached(e, feed);
    let dir = CacheDir::open(dir).map_err(|e| uncached(e, Feed::Inherit))?;
    let base = Base::new(&config.key).map_err(|e| uncached(e, Feed::Inherit))?;
    // With a remote, the team's secret keys env values and stdin, so that
    // every machine computes the same key.
    let secret = match &config.remote {
        Some(r) => r.shared.key_secret,
        None => dir.secret,
    };
    let spool_dir = spool_stdin.then(|| dir.tmp_dir.clone());
    let captured =
        stdin::capture(config.key.stdin, &secret, spool_dir.as_deref()).map_err(|f| {
            uncached(
                anyhow::anyhow!(
                    "cannot spool stdin: {}",
                    crate::term::format::io_reason(&f.error)
                ),
                f.feed,
            )
        })?;
    let key_cmds = match resolve::key_cmds(&config.key, &base.cwd) {
        Ok(k) => k,
        Err(e) => return Err(uncached(e, captured.feed)),
    };
    let mut early = Early {
        dir,
        resolved: None,
        feed: captured.feed,
        base,
        secret,
        key_cmds,
        stdin: captured.component,
        stdin_file: captured.file,
    };
    if early_key {
        let ctx = Context {
            secret: &early.secret,
            stat_cache: &mut Direct,
            known_outputs: &[],
            show_progress: false,
            skip: std::slice::from_ref(&early.dir.root),
        };
        match early.resolve(config, ctx) {
            Ok(r) => early.resolved = Some(r),
            Err(InputError::Refused(why)) => {
                return Err(NotPrepared::Refused(anyhow::anyhow!(why)));
            }
            // The database path resolves it (and reports what is wrong).
            Err(InputError::NeedsStatCache | InputError::Unreadable(_)) => {}
        }
    }
    Ok(early)
}

impl Early {
    fn resolve(&self, config: &Config, ctx: Context<'_>) -> Result<Resolved, InputError> {
        resolve::resolve(
            &config.key,
            self.base.clone(),
            ctx,
            &self.key_cmds,
            // Read (and copied) only when some variable is in the key.
            (!config.key.env.is_empty())
                .then(std::env::vars_os)
                .into_iter()
                .flatten(),
            self.stdin.clone(),
            self.stdin_file,
        )
    }

    /// Open the store (or use `db`, opened already), and resolve the key
    /// with the stat cache and the command's known outputs, unless the
    /// early key stands (it has no known outputs).
    pub fn finish(self, config: &Config, db: Option<SqliteStore>) -> Result<Prepared, NotPrepared> {
        let uncached = |e: anyhow::Error, feed| NotPrepared::Uncached(e, feed);
        let store = match db {
            Some(store) => Ok(store),
            None => SqliteStore::open_in(self.dir.clone()),
        };
        let mut store = match store {
            Ok(store) => store,
            Err(e) => return Err(uncached(e, self.feed)),
        };
        store.set_limits(config.limits);
        let known_outputs = match store.known_outputs(&self.base.manifest) {
            Ok(o) => o,
            Err(e) => return Err(uncached(e.context("cannot read the cache"), self.feed)),
        };
        let resolved = match self.resolved.as_ref() {
            Some(_) if known_outputs.is_empty() => Ok(None),
            _ => {
                let mut stat_cache = store.stat_cache();
                let ctx = Context {
                    secret: &self.secret,
                    stat_cache: &mut stat_cache,
                    known_outputs: &known_outputs,
                    show_progress: crate::term::progress::allowed_here(
                        config.verbosity == crate::term::ui::Verbosity::Quiet,
                    ),
                    skip: std::slice::from_ref(&self.dir.root),
                };
                let r = self.resolve(config, ctx);
                // Only a cache: failing to update it costs a re-hash next time.
                let _ = stat_cache.flush();
                r.map(Some)
            }
        };
        match resolved {
            Ok(resolved) => Ok(Prepared {
                store,
                resolved: resolved
                    .or(self.resolved)
                    .expect("resolved early or just now"),
                feed: self.feed,
            }),
            Err(InputError::Refused(why)) => Err(NotPrepared::Refused(anyhow::anyhow!(why))),
            Err(InputError::Unreadable(e)) => Err(uncached(e, self.feed)),
            Err(InputError::NeedsStatCache) => Err(uncached(
                anyhow::anyhow!("the stat cache is unavailable"),
                self.feed,
            )),
        }
    }
}

/// Where the entry to replay is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKey {
    /// Under the key (an untraced run).
    Plain(Digest),
    /// A traced run: under the entry key of the most recently used trace
    /// manifest whose every input still matches, with that manifest.
    Traced(Digest, traced::Manifest),
    /// A traced run with no manifest that matches: why, and the most
    /// recently used manifest (`None`: there is none).
    NoMatch(Option<(String, traced::Manifest)>),
}

/// Find the entry key for `resolved` (see `key::traced`): the key itself,
/// or for a traced run the one its matching manifest names.
pub fn entry_key(
    config: &Config,
    store: &dyn Store,
    resolved: &Resolved,
) -> anyhow::Result<EntryKey> {
    if config.trace.is_none() {
        return Ok(EntryKey::Plain(resolved.key.digest));
    }
    let manifests = store.manifests(&resolved.key.digest, crate::store::MAX_MANIFESTS)?;
    let base = manifest_base(config, resolved);
    let mut found = None;
    let mut first_mismatch = None;
    store.with_stat_cache(&mut |cache| {
        for stored in &manifests {
            // One that does not decode is passed over (its entry ages out).
            let Some(m) = traced::Manifest::decode(&stored.paths, base.as_deref()) else {
                continue;
            };
            match traced::check(&m, cache) {
                None => {
                    found = Some(EntryKey::Traced(stored.entry_key, m));
                    return;
                }
                Some(mismatch) => {
                    if first_mismatch.is_none() {
                        first_mismatch = Some((mismatch.message(&resolved.base.cwd), m));
                    }
                }
            }
        }
    });
    Ok(found.unwrap_or(EntryKey::NoMatch(first_mismatch)))
}

/// What a trace manifest's paths are relative to (`key::traced`): the
/// `--base-dir`, or the working directory when it is not in the key
/// (`--no-cwd`); else none, and they are absolute. The same base key in
/// two places then checks the files of the place it runs in.
pub fn manifest_base(config: &Config, resolved: &Resolved) -> Option<std::path::PathBuf> {
    config
        .key
        .base_dir
        .clone()
        .or_else(|| (!config.key.include_cwd).then(|| resolved.base.cwd.clone()))
}
