#![cfg(test)]
//! The shape of the source tree, checked: the module graph has no cycle, no source file holds
//! more than ~800 lines of code outside its tests, `unsafe` lives in `src/sys/` only, and the
//! lints are declared once (Cargo.toml `[lints]`), not per file.
//!
//! The module graph is read from the text: every path a file names (`use` trees included)
//! that starts with `crate::`, `super::`, `self::` or a child module it declares is an edge to
//! the deepest module the path reaches. A child naming its parent (`super::Supervisor`) and
//! the parent naming the child's items is a cycle like any other; `mod x;` is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_CODE_LINES: usize = 800;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/worker/session/mod.rs` → `["worker", "session"]`; `src/lib.rs` → `[]`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src_dir()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    match file.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => {}
        f => parts.push(f.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The text without comments and string literals (they may mention paths).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // raw strings are rare in src and hold no paths that matter; plain ones skip escapes
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // a char literal such as '"' or '\n' (lifetimes have no closing quote)
            let end = b[i + 1..]
                .iter()
                .position(|&c| c == b'\'')
                .map_or(b.len(), |p| i + 2 + p);
            i = end;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The part of a file before its `#[cfg(test)]` module.
fn non_test(text: &str) -> &str {
    let Some(m) = text.find("\nmod tests {") else {
        return text;
    };
    match text[..m].rfind("\n#[cfg(") {
        Some(a) if text[a..m].contains("test") => &text[..a + 1],
        _ => text,
    }
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        match t.find('{') {
            None => out.push(format!("{prefix}{t}")),
            Some(open) => {
                let head = &t[..open];
                let inner = &t[open + 1..t.rfind('}').unwrap()];
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            go(&format!("{prefix}{head}"), &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                if start < inner.len() {
                    go(&format!("{prefix}{head}"), &inner[start..], out);
                }
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

struct Tree {
    modules: BTreeSet<Vec<String>>,
    /// Each module's file text (comments and strings removed).
    code: BTreeMap<Vec<String>, String>,
}

fn tree() -> Tree {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut modules = BTreeSet::new();
    let mut code = BTreeMap::new();
    for f in files {
        if f.ends_with("main.rs") {
            continue; // the binary: a separate crate
        }
        let m = module_of(&f);
        let text = std::fs::read_to_string(&f).unwrap();
        modules.insert(m.clone());
        code.insert(m, code_only(non_test(&text)));
    }
    Tree { modules, code }
}

/// Every path a module's code names, resolved to absolute segments.
fn references(module: &[String], code: &str, tree: &Tree) -> Vec<Vec<String>> {
    let children: BTreeSet<String> = tree
        .modules
        .iter()
        .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        .map(|m| m.last().unwrap().clone())
        .collect();
    let mut paths: Vec<String> = Vec::new();
    // use trees, which may span lines
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let tail = &rest[i + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        if before_ok {
            paths.extend(expand_use(&tail[..end]));
        }
        rest = &tail[end.min(tail.len())..];
    }
    // inline paths: ident(::ident)+
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if (c.is_ascii_alphabetic() || c == b'_') && (i == 0 || !is_ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && (is_ident(bytes[i]) || bytes[i..].starts_with(b"::")) {
                i += if bytes[i] == b':' { 2 } else { 1 };
            }
            let p = &code[start..i];
            if p.contains("::") {
                paths.push(p.trim_end_matches(':').to_string());
            }
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segs.first() else { continue };
        let (mut base, rest): (Vec<String>, &[&str]) = match *first {
            "crate" => (Vec::new(), &segs[1..]),
            "self" => (module.to_vec(), &segs[1..]),
            "super" => {
                let mut b = module.to_vec();
                let mut k = 0;
                while segs.get(k) == Some(&"super") {
                    b.pop();
                    k += 1;
                }
                (b, &segs[k..])
            }
            c if children.contains(c) => (module.to_vec(), &segs[..]),
            _ => continue,
        };
        for s in rest {
            let mut next = base.clone();
            next.push(s.to_string());
            if tree.modules.contains(&next) {
                base = next;
            } else {
                break;
            }
        }
        if base != module {
            out.push(base);
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let t = tree();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, code) in &t.code {
        let refs = references(m, code, &t);
        edges.entry(m.clone()).or_default().extend(refs);
    }
    // the crate root only declares modules: leave it out (every module is below it)
    edges.remove(&Vec::new());
    for targets in edges.values_mut() {
        targets.remove(&Vec::new());
    }
    // Tarjan's strongly connected components
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on: BTreeSet<Vec<String>>,
        next: usize,
        sccs: Vec<Vec<Vec<String>>>,
    }
    fn visit(s: &mut State<'_>, v: &Vec<String>) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        let targets: Vec<Vec<String>> = s.edges.get(v).into_iter().flatten().cloned().collect();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(&w);
                let done = &w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                s.sccs.push(scc);
            }
        }
    }
    let mut s = State {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        sccs: Vec::new(),
    };
    let nodes: Vec<Vec<String>> = edges.keys().cloned().collect();
    for v in &nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    let mut report = String::new();
    for scc in &s.sccs {
        let set: BTreeSet<&Vec<String>> = scc.iter().collect();
        report.push_str("cycle among:");
        for m in scc {
            let to: Vec<String> = edges[m]
                .iter()
                .filter(|t| set.contains(t))
                .map(|t| name(t))
                .collect();
            report.push_str(&format!("\n  {} -> {}", name(m), to.join(", ")));
        }
        report.push('\n');
    }
    assert!(s.sccs.is_empty(), "{report}");
}

#[test]
fn no_source_file_is_over_800_lines_of_code() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut over = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let code = code_only(non_test(&text));
        let n = code.lines().filter(|l| !l.trim().is_empty()).count();
        if n > MAX_CODE_LINES {
            over.push(format!("{}: {n}", f.display()));
        }
    }
    assert!(
        over.is_empty(),
        "over {MAX_CODE_LINES} lines of code: {over:?}"
    );
}

#[test]
fn unsafe_lives_in_sys_only() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let sys = src_dir().join("sys");
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&sys)) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = code_only(&text);
        for (i, l) in code.lines().enumerate() {
            if l.split(|c: char| !is_ident(c as u8)).any(|w| w == "unsafe") {
                found.push(format!("{}:{}", f.display(), i + 1));
            }
        }
    }
    assert!(found.is_empty(), "unsafe outside src/sys: {found:?}");
}

#[test]
fn lints_are_declared_once() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("#![deny(clippy") || text.contains("#![warn(clippy") {
            found.push(f.display().to_string());
        }
    }
    assert!(found.is_empty(), "per-file lint blocks: {found:?}");
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    for lint in ["unwrap_used", "expect_used", "indexing_slicing", "panic"] {
        assert!(manifest.contains(&format!("{lint} = \"deny\"")), "{lint}");
    }
}
