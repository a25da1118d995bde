//! The source's layering, checked: no import cycles between modules nor
//! between the top-level folders of `src/`, and
//! no import that goes against the flow of data (docs/ARCHITECTURE.md,
//! "Layering"). A small reader of `use crate::` and `super::` paths, not a
//! Rust parser: it reads every `src/**/*.rs` outside its
//! `#[cfg(test)] mod tests` and comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`key::inputs`, `crate` for lib.rs) to its source.
fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut name = rel.to_str().unwrap().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name == "lib" || name == "main" {
                name = "crate".to_string();
            }
            out.insert(name, code_of(&fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

/// `src` without its unit tests and comments.
fn code_of(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The longest known module that `path` (`a::b::C`) names or is inside.
fn module_of(path: &[&str], known: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// Module → the modules it uses (itself and its ancestors left out).
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in mods {
        let mut targets = BTreeSet::new();
        let bytes = code.as_bytes();
        for prefix in ["crate::", "super::"] {
            let mut from = 0;
            while let Some(i) = code[from..].find(prefix) {
                let start = from + i;
                from = start + prefix.len();
                if start > 0
                    && (bytes[start - 1].is_ascii_alphanumeric()
                        || bytes[start - 1] == b'_'
                        || bytes[start - 1] == b':')
                {
                    continue;
                }
                let rest: String = code[from..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut path: Vec<&str> = rest.split("::").filter(|p| !p.is_empty()).collect();
                let base: Vec<&str> = if prefix == "super::" {
                    let parent: Vec<&str> = name.split("::").collect();
                    parent[..parent.len().saturating_sub(1)].to_vec()
                } else {
                    Vec::new()
                };
                let mut full = base;
                full.append(&mut path);
                if let Some(m) = module_of(&full, mods)
                    && m != *name
                    && !name.starts_with(&format!("{m}::"))
                    && m != "crate"
                {
                    targets.insert(m);
                }
            }
        }
        out.insert(name.clone(), targets);
    }
    out
}

/// Every cycle's modules (strongly connected components of more than one).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, recursive: the graph has a few dozen nodes.
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let graph = edges(&modules());
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between modules (break each, see docs/ARCHITECTURE.md): {found:?}"
    );
}

/// Top-level folder (or file) → the others it imports: `key::inputs ->
/// store::statcache` is `key -> store`.
fn folders(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph {
        let targets = out.entry(top(from).to_string()).or_default();
        targets.extend(
            tos.iter()
                .map(|to| top(to).to_string())
                .filter(|t| t != top(from)),
        );
    }
    out
}

#[test]
fn no_folder_imports_another_that_imports_it_back() {
    let files = edges(&modules());
    let found = cycles(&folders(&files));
    // The file imports that make each folder cycle, to say what to cut.
    let mut why = Vec::new();
    for cycle in &found {
        for (from, tos) in &files {
            for to in tos {
                let (f, t) = (top(from), top(to));
                if f != t && cycle.iter().any(|c| c == f) && cycle.iter().any(|c| c == t) {
                    why.push(format!("{from} -> {to}"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between top-level folders of src/ (a folder imports only those \
         below it, see docs/ARCHITECTURE.md): {found:?}\n{}",
        why.join("\n")
    );
}

#[test]
fn imports_follow_the_flow_of_data() {
    let graph = edges(&modules());
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            let (f, t) = (top(from), top(to));
            let why = if f == "base" && t != "base" {
                Some("base is the leaf every layer uses: it imports nothing from the crate")
            } else if t == "commands" && f != "commands" {
                Some("nothing below the commands imports them")
            } else if t == "cli" && !matches!(f, "config" | "commands" | "crate") {
                Some("only config (and the commands) read the clap types")
            } else if t == "config"
                && matches!(f, "key" | "store" | "replay" | "exec" | "term" | "remote")
            {
                Some("the layers below config are given what they need, not the Config")
            } else if f == "store" && t == "key" && !matches!(to.as_str(), "key" | "key::encoding")
            {
                Some("the store imports key types and digests, never key logic")
            } else if t == "remote" && matches!(f, "key" | "store" | "replay" | "exec" | "outputs")
            {
                Some("the remote tier sits on the store; only config and the commands use it")
            } else if f == "term" && !matches!(t, "term" | "exit_codes") {
                Some("term is a leaf: it writes and speaks, it imports no domain module")
            } else {
                None
            };
            if let Some(why) = why {
                wrong.push(format!("{from} -> {to}: {why}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the flow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_imports_and_cycles() {
    // The checks above would pass on a reader that finds nothing.
    let graph = edges(&modules());
    assert!(graph["commands::run"].contains("key::resolve"));
    assert!(graph["key::inputs"].contains("term::format"));
    assert!(graph["store::blobs"].contains("base::hashing"));
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(cycles(&g), [["a", "b", "c"]]);
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    m.insert("a::x".into(), ["b::y".to_string()].into());
    m.insert("b::z".into(), ["a::w".to_string()].into());
    m.insert("b::y".into(), BTreeSet::new());
    m.insert("a::w".into(), BTreeSet::new());
    assert!(cycles(&m).is_empty(), "no cycle between files");
    assert_eq!(
        cycles(&folders(&m)),
        [["a", "b"]],
        "a cycle between folders"
    );
}
