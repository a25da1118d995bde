//! Micro-benchmarks for key encoding: building the ~20 components of a
//! typical key (argv, cwd, env vars, inputs, stdin, `--key`, `--key-cmd`)
//! and hashing them into a [`Key`].
//!
//! Run with `cargo bench --bench key`.

use divan::{Bencher, black_box};
use memorun::key::{Component, Digest, Key};

fn main() {
    divan::main();
}

/// The argv of a plausible wrapped command (8 arguments).
const ARGV: [&str; 8] = [
    "./slow-report.sh",
    "--month",
    "2026-10",
    "--format=csv",
    "--region",
    "eu-west-1",
    "data/sales.csv",
    "data/returns.csv",
];

/// Env vars chosen with `--env`: some set, one unset.
const ENV: [(&str, Option<u8>); 5] = [
    ("HOME", Some(1)),
    ("LANG", Some(2)),
    ("AWS_PROFILE", Some(3)),
    ("AWS_REGION", Some(4)),
    ("CC", None),
];

/// Input files (as given), with or without content.
const INPUTS: [(&str, Option<u8>); 10] = [
    ("data/sales.csv", Some(10)),
    ("data/returns.csv", Some(11)),
    ("src/report.py", Some(12)),
    ("src/lib/format.py", Some(13)),
    ("src/lib/db.py", Some(14)),
    ("src/lib/util.py", Some(15)),
    ("templates/report.html", Some(16)),
    ("templates/base.html", Some(17)),
    ("config/report.toml", Some(18)),
    ("config/local.toml", None),
];

/// Build the 20 components: argv, cwd, 5 env vars, 10 inputs, stdin, a
/// literal and a key command.
fn components() -> Vec<Component> {
    let mut c = Vec::with_capacity(20);
    c.push(Component::argv(&ARGV));
    c.push(Component::cwd(b"/home/user/projects/reports"));
    for (name, v) in ENV {
        c.push(Component::env(name.as_bytes(), v.map(|b| Digest([b; 32]))));
    }
    for (path, v) in INPUTS {
        c.push(Component::input(
            path.as_bytes(),
            v.map(|b| Digest([b; 32])),
        ));
    }
    c.push(Component::stdin(Err("terminal")));
    c.push(Component::literal("v2.3.1"));
    c.push(Component::key_cmd(
        "git rev-parse HEAD",
        Digest([0x5a; 32]),
        Some(0),
    ));
    c
}

/// Components and key together: what the hit path pays once the input
/// digests are known.
#[divan::bench]
fn encode_20_components_and_key() -> Key {
    Key::new(black_box(components()))
}

/// The component digests alone.
#[divan::bench]
fn encode_20_components() -> Vec<Component> {
    black_box(components())
}

/// The final key digest over 20 already-encoded components.
#[divan::bench]
fn key_over_20_components(bencher: Bencher) {
    let comps = components();
    assert_eq!(comps.len(), 20);
    bencher
        .with_inputs(|| comps.clone())
        .bench_values(|c| Key::new(black_box(c)));
}

/// One argv component with long arguments (a 200-argument compiler line).
#[divan::bench]
fn argv_200_args(bencher: Bencher) {
    let args: Vec<String> = (0..200)
        .map(|i| format!("-Isrc/some/include/dir/number/{i}"))
        .collect();
    bencher.bench(|| Component::argv(black_box(&args)));
}
