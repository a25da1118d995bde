//! Micro-benchmarks for input hashing: [`hash_file`] on a 1 MiB and a
//! 64 MiB file (page cache warm), and the input [`Collector`] over a
//! directory of 1,000 small files, with no stat cache (every file hashed)
//! and with a warm in-memory stat cache (every file only stat'ed).
//!
//! Run with `cargo bench --bench hashing`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};
use memorun::key::hashing::hash_file;
use memorun::key::inputs::{CachedStat, Collected, Collector, NoCache, StatCache};

fn main() {
    divan::main();
}

/// Deterministic pseudo-random bytes (xorshift), so BLAKE3 sees no
/// special pattern and no time goes to the OS random source.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A temp file of `len` bytes, read once so that it is in the page cache.
fn temp_file(len: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(&pseudo_random(len, len as u64))
        .expect("write temp file");
    f.flush().expect("flush temp file");
    let _ = fs::read(f.path()).expect("read temp file back");
    f
}

/// `hash_file` over a whole file of `len` bytes, opened afresh each time.
fn bench_hash_file(bencher: Bencher, len: usize) {
    let file = temp_file(len);
    let path = file.path().to_path_buf();
    bencher
        .counter(BytesCount::new(len))
        .with_inputs(|| File::open(&path).expect("open temp file"))
        .bench_local_refs(|f| {
            let (digest, n) = hash_file(f, len as u64).expect("hash");
            assert_eq!(n, len as u64);
            digest
        });
}

/// 1 MiB: above the parallel threshold for one read.
#[divan::bench]
fn hash_file_1mib(bencher: Bencher) {
    bench_hash_file(bencher, 1 << 20);
}

/// 64 MiB: 64 reads of 1 MiB, each hashed on all cores.
#[divan::bench(sample_count = 20)]
fn hash_file_64mib(bencher: Bencher) {
    bench_hash_file(bencher, 64 << 20);
}

const SMALL_FILES: usize = 1_000;

/// A temp dir holding `inputs/` with 1,000 files of 1-4 KiB in 10
/// subdirectories.
fn small_files_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..SMALL_FILES {
        let sub = dir.path().join("inputs").join(format!("d{}", i % 10));
        fs::create_dir_all(&sub).expect("mkdir");
        let len = 1024 + (i * 37) % 3072;
        fs::write(
            sub.join(format!("f{i:04}")),
            pseudo_random(len, i as u64 + 1),
        )
        .expect("write");
    }
    dir
}

/// One `--input inputs` resolution with `cache`.
fn collect(cwd: &Path, cache: &mut dyn StatCache) -> Collected {
    let none = memorun::key::exclude::Exclusions::default();
    let mut c = Collector::new(cwd, cache, &none);
    c.explicit(OsStr::new("inputs")).expect("collect inputs");
    let out = c.finish().expect("finish");
    assert_eq!(out.components.len(), SMALL_FILES + 1);
    out
}

/// Walk and hash all 1,000 files: a first run.
#[divan::bench(sample_count = 30)]
fn collector_1000_files_no_stat_cache(bencher: Bencher) {
    let dir = small_files_dir();
    bencher
        .counter(ItemsCount::new(SMALL_FILES))
        .bench(|| collect(black_box(dir.path()), &mut NoCache));
}

/// An in-memory stat cache that files entries as hashed long after their
/// last change, so that no freshly written bench file counts as racy.
#[derive(Default)]
struct MemStatCache(HashMap<PathBuf, CachedStat>);

impl StatCache for MemStatCache {
    fn get(&mut self, abs: &Path) -> Option<CachedStat> {
        self.0.get(abs).copied()
    }
    fn put(&mut self, abs: &Path, mut entry: CachedStat) {
        entry.hashed_at_ns = i64::MAX;
        self.0.insert(abs.to_path_buf(), entry);
    }
}

/// Walk and stat all 1,000 files, every digest from the stat cache: the
/// warm hit path without SQLite.
#[divan::bench(sample_count = 30)]
fn collector_1000_files_warm_stat_cache(bencher: Bencher) {
    let dir = small_files_dir();
    let mut cache = MemStatCache::default();
    let first = collect(dir.path(), &mut cache);
    bencher
        .counter(ItemsCount::new(SMALL_FILES))
        .bench_local(|| {
            let out = collect(black_box(dir.path()), &mut cache);
            debug_assert_eq!(out.components, first.components);
            out
        });
}
