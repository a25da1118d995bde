//! Large outputs stream to and from storage: byte-identical, with bounded
//! memory on a miss and on a hit.

use std::fs::{self, File};
use std::io::Read;
use std::process::Stdio;

use crate::util::Dir;

const SIZE: u64 = 256 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 32 * 1024;

/// Run memorun with stdout to `out`; return its exit code and peak RSS.
fn run_to_file(d: &Dir, script: &str, out: &std::path::Path) -> (i32, u64) {
    let f = File::create(out).unwrap();
    let mut child = d
        .memorun_std()
        .arg("--")
        .args(d.counted(script))
        .stdout(Stdio::from(f))
        .spawn()
        .unwrap();
    let (status, peak) = crate::util::wait_with_peak_rss(&mut child);
    (status.code().expect("memorun died"), peak)
}

/// The digest of the 256 MiB the script prints, computed independently.
fn expected_digest() -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let line = b"memorun big output line\n";
    let mut remaining = SIZE;
    while remaining > 0 {
        let take = remaining.min(line.len() as u64) as usize;
        h.update(&line[..take]);
        remaining -= take as u64;
    }
    h.finalize()
}

fn file_digest(p: &std::path::Path) -> (u64, blake3::Hash) {
    let mut f = File::open(p).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    (n, h.finalize())
}

#[test]
fn quarter_gigabyte_output_miss_and_hit_with_bounded_memory() {
    let d = Dir::new();
    let script = format!("yes 'memorun big output line' | head -c {SIZE}");
    let expected = expected_digest();
    let out = d.join("out");

    let (code, rss) = run_to_file(&d, &script, &out);
    assert_eq!(code, 0);
    assert_eq!(file_digest(&out), (SIZE, expected), "miss output differs");
    eprintln!("miss peak RSS {rss} KiB");
    assert!(rss < RSS_LIMIT_KIB, "miss peak RSS {rss} KiB");

    let (code, rss) = run_to_file(&d, &script, &out);
    assert_eq!(code, 0);
    assert_eq!(d.count(), 1, "second run was not a hit");
    assert_eq!(
        file_digest(&out),
        (SIZE, expected),
        "replayed output differs"
    );
    eprintln!("hit peak RSS {rss} KiB");
    assert!(rss < RSS_LIMIT_KIB, "hit peak RSS {rss} KiB");
    fs::remove_file(&out).unwrap();
}
