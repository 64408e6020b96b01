//! The house's rules, checked on the code itself (ARCHITECTURE.md states them):
//! which crate may depend on which, no circle between the modules of the linker or the host,
//! and no warehouse-sized source file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::root;

/// The `[dependencies]` of a crate's manifest (names only; dev-dependencies are not counted).
fn dependencies(krate: &str) -> BTreeSet<String> {
    let path = root().join("crates").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut deps = BTreeSet::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap();
            deps.insert(name.to_string());
        }
    }
    assert!(
        !deps.is_empty() || krate == "dylink",
        "{}: no [dependencies] read",
        path.display()
    );
    deps
}

#[test]
fn crates_depend_only_downwards() {
    // (crate, what it must never depend on)
    let arrowish = [
        "arrow-array",
        "arrow-buffer",
        "arrow-ipc",
        "arrow-schema",
        "arrow-select",
    ];
    let pipelineish = [
        "arrow-json",
        "arrow-csv",
        "parquet",
        "crossbeam-channel",
        "globset",
    ];
    let rules: &[(&str, Vec<&str>)] = &[
        (
            "dylink",
            vec![
                "wasmtime",
                "wasmtime-wasi",
                "wasmlink-engine",
                "wasmlink-linker",
            ],
        ),
        (
            "engine",
            [
                &[
                    "wasmtime-wasi",
                    "wasmlink-dylink",
                    "wasmlink-repo",
                    "wasmlink-linker",
                    "toml",
                    "tokio",
                ][..],
                &arrowish[..],
            ]
            .concat(),
        ),
        (
            "repo",
            vec![
                "wasmtime",
                "wasmlink-linker",
                "wasmlink-host",
                "arrow-array",
                "parquet",
            ],
        ),
        (
            "linker",
            [
                &[
                    "wasmlink-host",
                    "wasmlink-pipeline",
                    "toml",
                    "tokio",
                    "schemars",
                    "bytes",
                ][..],
                &arrowish[..],
                &pipelineish[..],
            ]
            .concat(),
        ),
        (
            "host",
            [&["wasmlink-pipeline"][..], &pipelineish[..]].concat(),
        ),
        ("pipeline", vec!["wasmlink", "wasmlink-cli"]),
        (
            "component",
            [
                &[
                    "wasmlink-dylink",
                    "wasmlink-linker",
                    "wasmlink-host",
                    "wasmlink-pipeline",
                    "wasmlink-wasi",
                ][..],
                &arrowish[..],
            ]
            .concat(),
        ),
        (
            "wasi",
            [
                &[
                    "wasmlink-dylink",
                    "wasmlink-linker",
                    "wasmlink-host",
                    "wasmlink-pipeline",
                ][..],
                &arrowish[..],
            ]
            .concat(),
        ),
    ];
    for (krate, banned) in rules {
        let deps = dependencies(krate);
        for b in banned {
            assert!(
                !deps.contains(*b),
                "crates/{krate} depends on {b}, which ARCHITECTURE.md rules out"
            );
        }
    }
    // And the arrows that must exist, so the rules above are not vacuous.
    assert!(dependencies("linker").contains("wasmlink-dylink"));
    assert!(dependencies("host").contains("wasmlink-engine"));
    assert!(dependencies("pipeline").contains("wasmlink-host"));
    assert!(dependencies("linker").contains("wasmlink-wasi"));
}

/// The sibling modules a file of `src` names through `super::X` or `crate::X` (X a module of `src`).
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    // A module's name: its path under src without .rs, `/mod` and `lib` dropped.
    let name_of = |p: &PathBuf| -> String {
        let rel = p.strip_prefix(src).unwrap().with_extension("");
        let s = rel.to_string_lossy().replace('/', "::");
        s.trim_end_matches("::mod").to_string()
    };
    let names: BTreeSet<String> = files.iter().map(name_of).collect();
    let mut edges = BTreeMap::new();
    for f in &files {
        let me = name_of(f);
        let parent = me.rsplit_once("::").map(|(p, _)| p.to_string());
        let text = std::fs::read_to_string(f).unwrap();
        // Strip the test module: tests may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut out = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (prefix, base) in [("super::", parent.clone()), ("crate::", None)] {
                let mut rest = line;
                while let Some(i) = rest.find(prefix) {
                    rest = &rest[i + prefix.len()..];
                    let seg: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let target = match (&base, prefix) {
                        (Some(b), "super::") => format!("{b}::{seg}"),
                        (None, "super::") => seg.clone(),
                        _ => seg.clone(),
                    };
                    if names.contains(&target)
                        && target != me
                        && !me.starts_with(&format!("{target}::"))
                    {
                        out.insert(target);
                    }
                }
            }
        }
        edges.insert(me, out);
    }
    edges
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap();
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_circle_between_modules_of_the_linker_or_the_host() {
    for krate in ["linker", "host", "pipeline"] {
        let edges = module_edges(&root().join("crates").join(krate).join("src"));
        assert!(edges.len() > 2, "crates/{krate}: modules not found");
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "crates/{krate}: modules call each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
    // The checker itself finds a circle when there is one.
    let mut e = BTreeMap::new();
    e.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    e.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&e).is_some());
}

#[test]
fn loading_never_calls_up_into_libdl_or_the_process_api() {
    let edges = module_edges(&root().join("crates/linker/src"));
    for low in [
        "process::load",
        "process::instantiate",
        "process::bind",
        "process::wasi",
        "process::resources",
    ] {
        let up: Vec<_> = edges[low]
            .iter()
            .filter(|t| {
                ["process::libdl", "process::api", "process::builder"].contains(&t.as_str())
            })
            .collect();
        assert!(up.is_empty(), "{low} calls up into {up:?}");
    }
}

#[test]
fn no_source_file_is_a_warehouse() {
    let mut big = Vec::new();
    for top in ["crates", "src"] {
        let mut stack = vec![root().join(top)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let n = std::fs::read_to_string(&p).unwrap().lines().count();
                    if n > 1_100 {
                        big.push(format!("{} ({n} lines)", p.display()));
                    }
                }
            }
        }
    }
    assert!(
        big.is_empty(),
        "source files over 1,100 lines: split them along their seams: {big:?}"
    );
}
