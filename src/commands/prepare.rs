//! Getting ready to look up: open the store, capture stdin, resolve the key.
//!
//! Shared by a normal run and by `memorun why`. Every failure here comes
//! back as [`NotPrepared`], carrying how the command must still get its
//! stdin, so the caller can run it uncached without losing a byte.

use crate::config::{CacheLocation, Config};
use crate::key::Digest;
use crate::key::inputs::InputError;
use crate::key::resolve::{self, Base, Context, Resolved};
use crate::key::stdin::{self, Feed};
use crate::key::traced;
use crate::store::Store;
use crate::store::db::SqliteStore;

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

/// Open the store, capture stdin and resolve the key. `spool_stdin` is off
/// for `why`, which hashes stdin but never runs anything.
pub fn prepare(config: &Config, spool_stdin: bool) -> Result<Prepared, NotPrepared> {
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
    let mut store = SqliteStore::open(dir).map_err(|e| uncached(e, Feed::Inherit))?;
    store.set_limits(config.limits);
    let base = Base::new(&config.key).map_err(|e| uncached(e, Feed::Inherit))?;
    // With a remote, the team's secret keys env values and stdin, so that
    // every machine computes the same key.
    let secret = match &config.remote {
        Some(r) => r.shared.key_secret,
        None => *store.secret(),
    };
    let spool_dir = spool_stdin.then(|| store.tmp_dir().to_path_buf());
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
    let known_outputs = match store.known_outputs(&base.manifest) {
        Ok(o) => o,
        Err(e) => return Err(uncached(e.context("cannot read the cache"), captured.feed)),
    };
    let resolved = {
        let mut stat_cache = store.stat_cache();
        let ctx = Context {
            secret: &secret,
            stat_cache: &mut stat_cache,
            known_outputs: &known_outputs,
            show_progress: crate::term::progress::allowed_here(
                config.verbosity == crate::term::ui::Verbosity::Quiet,
            ),
        };
        let r = resolve::resolve(
            &config.key,
            base,
            ctx,
            std::env::vars_os(),
            captured.component,
            captured.file,
        );
        // Only a cache: failing to update it costs a re-hash next time.
        let _ = stat_cache.flush();
        r
    };
    match resolved {
        Ok(resolved) => Ok(Prepared {
            store,
            resolved,
            feed: captured.feed,
        }),
        Err(InputError::Refused(why)) => Err(NotPrepared::Refused(anyhow::anyhow!(why))),
        Err(InputError::Unreadable(e)) => Err(uncached(e, captured.feed)),
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
    let manifests = store.manifests(&resolved.key.digest, traced::MAX_MANIFESTS)?;
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
