//! The cache key: an unambiguous, versioned encoding of everything that can
//! change a command's result, hashed with BLAKE3.
//!
//! A key is built from [`Component`]s. Each component has its own digest,
//! computed over a length-prefixed encoding of its kind, its name and its
//! content, so that no two different component lists can encode to the same
//! bytes. The key is then the digest of [`KEY_VERSION`] followed by the
//! component digests in order. Keeping the per-component digests beside an
//! entry lets `memorun why` say exactly which component changed.
//!
//! Invariant: if you change how any component is encoded, or what goes into
//! one, bump [`KEY_VERSION`]. The golden test at the bottom of this file fails
//! when the encoding changes without a bump.

use serde::{Deserialize, Serialize};

pub use crate::base::Digest;

/// Version of the key encoding. If you change any of the inputs to the hash,
/// or how they are encoded, change this.
///
/// 2: a terminal stdin that is not read and an empty one key alike ("no
/// stdin data"); run options in the key as typed (`Kind::Option`:
/// `--trace-exclude`, `--no-default-trace-excludes`), and with them the
/// default `--trace` exclusions; inherited descriptors (`Kind::Descriptor`)
/// and the program's path and mode (`Kind::Program`).
pub(crate) const KEY_VERSION: u32 = 2;

/// Domain separation for the final key digest.
const KEY_CONTEXT: &[u8] = b"memorun key";

/// What a key component describes. The tag values are part of the encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The command line, as raw bytes.
    Argv,
    /// The working directory.
    Cwd,
    /// One environment variable chosen with `--env`.
    Env,
    /// The set of variable names a `--env` glob matched.
    EnvPattern,
    /// The content of an input file.
    Input,
    /// The listing of an `--input` directory or glob: what it contains.
    InputSet,
    /// The digest of stdin.
    Stdin,
    /// A literal `--key` text.
    Literal,
    /// The stdout and exit status of a `--key-cmd`.
    KeyCmd,
    /// A descriptor above 2 the command inherits: a regular file's content
    /// from its offset, or why it cannot be keyed.
    Descriptor,
    /// The program the command line runs, as `execvp` finds it: its path
    /// and mode (a program made non-executable fails with 126).
    Program,
    /// A run option that changes what the key stands for, as typed
    /// (`--trace-exclude 'target/**'`).
    Option,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Argv => 1,
            Kind::Cwd => 2,
            Kind::Env => 3,
            Kind::EnvPattern => 4,
            Kind::Input => 5,
            Kind::InputSet => 6,
            Kind::Stdin => 7,
            Kind::Literal => 8,
            Kind::KeyCmd => 9,
            Kind::Descriptor => 10,
            Kind::Program => 11,
            Kind::Option => 12,
        }
    }
}

/// The state of a component that may be missing, so that "unset", "empty" and
/// "absent" are different keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The thing is there (a set variable, an existing file).
    Present,
    /// The thing is not there (an unset variable, a missing file).
    Absent,
}

impl State {
    fn tag(self) -> u8 {
        match self {
            State::Present => 1,
            State::Absent => 0,
        }
    }
}

/// One part of the key, with its own digest.
///
/// `name` is for display and for matching components across runs in
/// `memorun why`; the raw bytes of the name are in the digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// What this component describes.
    pub kind: Kind,
    /// A display name: the variable name, the input path (lossy UTF-8).
    pub name: String,
    /// Present or absent.
    pub state: State,
    /// Digest over kind, raw name, state and content.
    pub digest: Digest,
}

/// Length-prefixed encoder feeding a BLAKE3 hasher.
struct Encoder(blake3::Hasher);

impl Encoder {
    fn new(kind: Kind, raw_name: &[u8], state: State) -> Encoder {
        let mut e = Encoder(blake3::Hasher::new());
        e.0.update(&[kind.tag(), state.tag()]);
        e.bytes(raw_name);
        e
    }

    fn u64(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }

    fn finish(self) -> Digest {
        self.0.finalize().into()
    }
}

impl Component {
    /// The argv component: the count of arguments, then each argument's
    /// length and raw bytes, so `"a b"` differs from `a` `b`.
    pub fn argv<A: AsRef<[u8]>>(args: &[A]) -> Component {
        let mut e = Encoder::new(Kind::Argv, b"", State::Present);
        e.u64(args.len() as u64);
        for a in args {
            e.bytes(a.as_ref());
        }
        Component {
            kind: Kind::Argv,
            name: String::new(),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// The working directory component.
    pub fn cwd(path: &[u8]) -> Component {
        let mut e = Encoder::new(Kind::Cwd, b"", State::Present);
        e.bytes(path);
        Component {
            kind: Kind::Cwd,
            name: display_name(path),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// One environment variable. `value_digest` is a keyed digest of the
    /// value (never the value itself), or `None` when the variable is unset.
    pub fn env(name: &[u8], value_digest: Option<Digest>) -> Component {
        Component::with_content(Kind::Env, name, value_digest)
    }

    /// The sorted set of variable names a glob pattern matched.
    pub(crate) fn env_pattern(pattern: &str, names: &[Vec<u8>]) -> Component {
        let mut e = Encoder::new(Kind::EnvPattern, pattern.as_bytes(), State::Present);
        e.u64(names.len() as u64);
        for n in names {
            e.bytes(n);
        }
        Component {
            kind: Kind::EnvPattern,
            name: pattern.to_string(),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// An input file by path: its content digest, or `None` when absent.
    pub fn input(path: &[u8], content: Option<Digest>) -> Component {
        Component::with_content(Kind::Input, path, content)
    }

    /// The listing of an `--input` directory or glob, named by the argument
    /// as given: each entry's relative path, type and (for a link that is
    /// not followed) target, in sorted order.
    pub(crate) fn input_set(arg: &[u8], entries: &[ListingEntry]) -> Component {
        let mut e = Encoder::new(Kind::InputSet, arg, State::Present);
        e.u64(entries.len() as u64);
        for entry in entries {
            e.bytes(&entry.path);
            e.0.update(&[entry.file_type as u8]);
            e.bytes(&entry.link_target);
        }
        Component {
            kind: Kind::InputSet,
            name: display_name(arg),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// stdin: a keyed digest of what was read, or `None` with a reason
    /// when nothing was hashed (`no data`: see `key::stdin::NO_DATA`).
    pub fn stdin(content: Result<Digest, &str>) -> Component {
        match content {
            Ok(d) => Component::with_content(Kind::Stdin, b"", Some(d)),
            Err(why) => Component::with_content(Kind::Stdin, why.as_bytes(), None),
        }
    }

    /// A run option in the key, as the user would type it (shell-quoted):
    /// `--trace-exclude 'target/**'`.
    pub(crate) fn option(typed: &str) -> Component {
        let mut e = Encoder::new(Kind::Option, typed.as_bytes(), State::Present);
        e.bytes(typed.as_bytes());
        Component {
            kind: Kind::Option,
            name: typed.to_string(),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// A literal `--key` text.
    pub fn literal(text: &str) -> Component {
        let mut e = Encoder::new(Kind::Literal, text.as_bytes(), State::Present);
        e.bytes(text.as_bytes());
        Component {
            kind: Kind::Literal,
            name: text.to_string(),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// A `--key-cmd`: the digest of its stdout and its exit status (`None`
    /// when killed by a signal).
    pub fn key_cmd(cmd: &str, stdout: Digest, status: Option<i32>) -> Component {
        let mut e = Encoder::new(Kind::KeyCmd, cmd.as_bytes(), State::Present);
        e.bytes(&stdout.0);
        match status {
            Some(code) => {
                e.0.update(&[1]);
                e.0.update(&code.to_le_bytes());
            }
            None => {
                e.0.update(&[0]);
            }
        }
        Component {
            kind: Kind::KeyCmd,
            name: cmd.to_string(),
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// An inherited descriptor `fd`: a keyed digest of a regular file's
    /// content from its offset, or `Err` with what it names when that
    /// cannot be keyed (a directory, a block device: such a run is never
    /// recorded).
    pub(crate) fn descriptor(fd: i32, content: Result<Digest, &str>) -> Component {
        let name = fd.to_string();
        let mut e = Encoder::new(Kind::Descriptor, name.as_bytes(), State::Present);
        match content {
            Ok(d) => {
                e.0.update(&[1]);
                e.bytes(&d.0);
            }
            Err(what) => {
                e.0.update(&[0]);
                e.bytes(what.as_bytes());
            }
        }
        Component {
            kind: Kind::Descriptor,
            name,
            state: State::Present,
            digest: e.finish(),
        }
    }

    /// The program `argv0` names, as found: its path (as keyed, see
    /// `base_dir`) and the bits of its mode that decide whether and how
    /// it runs, or `None` when nothing is found.
    pub(crate) fn program(argv0: &[u8], found: Option<(&[u8], u32)>) -> Component {
        let state = if found.is_some() {
            State::Present
        } else {
            State::Absent
        };
        let mut e = Encoder::new(Kind::Program, argv0, state);
        if let Some((path, mode)) = found {
            e.bytes(path);
            e.0.update(&mode.to_le_bytes());
        }
        Component {
            kind: Kind::Program,
            name: display_name(argv0),
            state,
            digest: e.finish(),
        }
    }

    fn with_content(kind: Kind, raw_name: &[u8], content: Option<Digest>) -> Component {
        let state = if content.is_some() {
            State::Present
        } else {
            State::Absent
        };
        let mut e = Encoder::new(kind, raw_name, state);
        if let Some(d) = content {
            e.bytes(&d.0);
        }
        Component {
            kind,
            name: display_name(raw_name),
            state,
            digest: e.finish(),
        }
    }
}

/// A component's raw name as shown: lossy UTF-8, with a path rebased
/// under `--base-dir` (see `base_dir`) shown as `{base}/...`.
fn display_name(raw: &[u8]) -> String {
    match raw.strip_prefix(&[super::base_dir::MARK]) {
        Some(b".") => "{base}".to_string(),
        Some(rel) => format!("{{base}}/{}", String::from_utf8_lossy(rel)),
        None => String::from_utf8_lossy(raw).into_owned(),
    }
}

/// The type of an entry in an `--input` listing. The values are part of the
/// encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FileType {
    /// A regular file, or a symlink to one (counted by the target's content).
    File = 1,
    /// A directory.
    Dir = 2,
    /// A symlink that is not followed: to a directory, or dangling.
    Link = 3,
    /// A FIFO, socket or device: listed, never opened.
    Special = 4,
}

/// One entry of an `--input` directory or glob listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListingEntry {
    /// Path relative to the directory (or as matched, for a glob).
    pub path: Vec<u8>,
    /// What it is.
    pub file_type: FileType,
    /// For a [`FileType::Link`], where it points; empty otherwise.
    pub link_target: Vec<u8>,
}

/// A finished key: the digest and the components it was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The key digest that names the entry.
    pub digest: Digest,
    /// Identifies "the same command" (argv only) across different inputs.
    pub command: Digest,
    /// The components, in key order.
    pub components: Vec<Component>,
}

impl Key {
    /// Compute the key over `components`, which must start with the argv
    /// component.
    pub fn new(components: Vec<Component>) -> Key {
        let mut h = blake3::Hasher::new();
        h.update(KEY_CONTEXT);
        h.update(&KEY_VERSION.to_le_bytes());
        h.update(&(components.len() as u64).to_le_bytes());
        for c in &components {
            h.update(&[c.kind.tag()]);
            h.update(&c.digest.0);
        }
        let command = components
            .iter()
            .find(|c| c.kind == Kind::Argv)
            .map(|c| c.digest)
            .unwrap_or(Digest([0; 32]));
        Key {
            digest: h.finalize().into(),
            command,
            components,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(components: Vec<Component>) -> Digest {
        Key::new(components).digest
    }

    #[test]
    fn argv_boundaries_matter() {
        assert_ne!(
            Component::argv(&["a b"]).digest,
            Component::argv(&["a", "b"]).digest
        );
        assert_ne!(
            Component::argv(&["ab", "c"]).digest,
            Component::argv(&["a", "bc"]).digest
        );
        assert_ne!(
            Component::argv(&[""]).digest,
            Component::argv::<&str>(&[]).digest
        );
    }

    #[test]
    fn argv_is_raw_bytes() {
        let a: &[&[u8]] = &[b"echo", b"\xff\xfe"];
        let b: &[&[u8]] = &[b"echo", b"\xef\xbf\xbd\xef\xbf\xbd"];
        assert_ne!(Component::argv(a).digest, Component::argv(b).digest);
    }

    #[test]
    fn env_unset_empty_and_set_differ() {
        let empty = Digest(*blake3::hash(b"").as_bytes());
        let x = Digest(*blake3::hash(b"x").as_bytes());
        let unset = Component::env(b"V", None);
        let set_empty = Component::env(b"V", Some(empty));
        let set_x = Component::env(b"V", Some(x));
        assert_ne!(unset.digest, set_empty.digest);
        assert_ne!(set_empty.digest, set_x.digest);
        assert_eq!(unset.state, State::Absent);
        assert_ne!(
            Component::env(b"V", None).digest,
            Component::env(b"W", None).digest
        );
    }

    #[test]
    fn kinds_do_not_collide() {
        let d = Digest([7; 32]);
        assert_ne!(
            Component::env(b"x", Some(d)).digest,
            Component::input(b"x", Some(d)).digest
        );
        let argv = Component::argv(&["true"]);
        assert_ne!(
            key(vec![argv.clone(), Component::cwd(b"/a")]),
            key(vec![argv.clone(), Component::cwd(b"/b")])
        );
        assert_ne!(
            key(vec![argv.clone()]),
            key(vec![argv, Component::cwd(b"/")])
        );
    }

    #[test]
    fn new_kinds_are_distinct_and_sensitive() {
        let d = Digest([3; 32]);
        assert_ne!(
            Component::stdin(Ok(d)).digest,
            Component::stdin(Err("no data")).digest
        );
        assert_ne!(
            Component::literal("a").digest,
            Component::literal("b").digest
        );
        assert_ne!(
            Component::key_cmd("c", d, Some(0)).digest,
            Component::key_cmd("c", d, Some(1)).digest
        );
        assert_ne!(
            Component::key_cmd("c", d, Some(0)).digest,
            Component::key_cmd("c", d, None).digest
        );
        let file = |p: &str| ListingEntry {
            path: p.as_bytes().to_vec(),
            file_type: FileType::File,
            link_target: vec![],
        };
        let a = Component::input_set(b"src", &[file("a"), file("b")]);
        let renamed = Component::input_set(b"src", &[file("a"), file("c")]);
        let added = Component::input_set(b"src", &[file("a"), file("b"), file("c")]);
        let as_dir = Component::input_set(
            b"src",
            &[
                file("a"),
                ListingEntry {
                    file_type: FileType::Dir,
                    ..file("b")
                },
            ],
        );
        assert_ne!(a.digest, renamed.digest);
        assert_ne!(a.digest, added.digest);
        assert_ne!(a.digest, as_dir.digest);
    }

    #[test]
    fn hex_round_trip() {
        let d = Digest(*blake3::hash(b"abc").as_bytes());
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
        assert_eq!(Digest::from_hex(&d.to_hex().to_uppercase()), Some(d));
        assert_eq!(
            d.to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(d.short().len(), 12);
    }

    mod distinct {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// A component described by its inputs, not its digest.
        #[derive(Debug, Clone, PartialEq)]
        enum Desc {
            Argv(Vec<Vec<u8>>),
            Cwd(Vec<u8>),
            Env(Vec<u8>, Option<u8>),
            Input(Vec<u8>, Option<u8>),
            Literal(String),
            Stdin(Result<u8, String>),
            KeyCmd(String, u8, Option<i32>),
            Program(Vec<u8>, Option<(Vec<u8>, u32)>),
            Descriptor(i32, Result<u8, String>),
        }

        fn build(d: &Desc) -> Component {
            let digest = |b: u8| Digest([b; 32]);
            match d {
                Desc::Argv(a) => Component::argv(a),
                Desc::Cwd(p) => Component::cwd(p),
                Desc::Env(n, v) => Component::env(n, v.map(digest)),
                Desc::Input(p, c) => Component::input(p, c.map(digest)),
                Desc::Literal(t) => Component::literal(t),
                Desc::Stdin(s) => {
                    Component::stdin(s.as_ref().map(|b| digest(*b)).map_err(|e| e.as_str()))
                }
                Desc::KeyCmd(c, out, status) => Component::key_cmd(c, digest(*out), *status),
                Desc::Program(a, found) => {
                    Component::program(a, found.as_ref().map(|(p, m)| (p.as_slice(), *m)))
                }
                Desc::Descriptor(fd, c) => Component::descriptor(
                    *fd,
                    c.as_ref().map(|b| digest(*b)).map_err(|e| e.as_str()),
                ),
            }
        }

        /// Small alphabets, so that near-collisions ("a" "b" vs "ab") are
        /// generated often.
        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xff)],
                0..3,
            )
        }

        fn desc() -> impl Strategy<Value = Desc> {
            prop_oneof![
                vec(bytes(), 0..3).prop_map(Desc::Argv),
                bytes().prop_map(Desc::Cwd),
                (bytes(), proptest::option::of(0u8..2)).prop_map(|(n, v)| Desc::Env(n, v)),
                (bytes(), proptest::option::of(0u8..2)).prop_map(|(n, v)| Desc::Input(n, v)),
                "[ab]{0,2}".prop_map(Desc::Literal),
                prop_oneof![(0u8..2).prop_map(Ok), "[ab]{0,2}".prop_map(Err)].prop_map(Desc::Stdin),
                ("[ab]{0,2}", 0u8..2, proptest::option::of(0i32..2))
                    .prop_map(|(c, o, s)| Desc::KeyCmd(c, o, s)),
                (bytes(), proptest::option::of((bytes(), 0u32..2)))
                    .prop_map(|(a, f)| Desc::Program(a, f)),
                (
                    3i32..5,
                    prop_oneof![(0u8..2).prop_map(Ok), "[ab]{0,2}".prop_map(Err)]
                )
                    .prop_map(|(fd, c)| Desc::Descriptor(fd, c)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn distinct_component_lists_give_distinct_keys(
                a in vec(desc(), 0..4),
                b in vec(desc(), 0..4),
            ) {
                prop_assume!(a != b);
                let ka = Key::new(a.iter().map(build).collect());
                let kb = Key::new(b.iter().map(build).collect());
                prop_assert_ne!(ka.digest, kb.digest);
            }
        }
    }

    /// Fails when the encoding changes. If you changed it on purpose, bump
    /// `KEY_VERSION` and update the expected digest.
    #[test]
    fn golden_key_digest() {
        assert_eq!(KEY_VERSION, 2, "update the golden digest with the version");
        let k = Key::new(vec![
            Component::argv(&["cc", "-o", "out.o", "in.c"]),
            Component::cwd(b"/src/project"),
            Component::env(b"CC", Some(Digest([1; 32]))),
            Component::env(b"CFLAGS", None),
            Component::env_pattern("AWS_*", &[b"AWS_REGION".to_vec()]),
            Component::input(b"in.c", Some(Digest([2; 32]))),
            Component::program(b"cc", Some((b"/usr/bin/cc", 0o555))),
            Component::descriptor(3, Ok(Digest([3; 32]))),
            Component::option("--trace-exclude 'target/**'"),
        ]);
        assert_eq!(
            k.digest.to_hex(),
            "f92feaa9f7b91eacded02bf670579d06130056300f41833902bace8f3fe1c131",
            "key encoding changed: bump KEY_VERSION and update this digest"
        );
    }
}
