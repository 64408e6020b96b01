//! One error prefix and one exit-status table for every command: `wasmlink: ` on every error
//! line, 127 for a program that cannot be linked (an undefined `--invoke` function, no `main`),
//! and `WASMLINK_DEBUG=help` listing the trace topics as `LD_DEBUG=help` does.

use crate::support::{stderr, stdout, wasmlink, wasmlink_in};

/// A dylink.0 library exporting `seven` and a plain module exporting `seven`, in a temporary
/// directory; neither has `main`.
fn modules() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let lib = r#"(module (@dylink.0 (mem-info (memory 0 0)))
        (import "env" "memory" (memory 0))
        (func (export "seven") (result i32) i32.const 7))"#;
    std::fs::write(t.path().join("lib.so"), wat::parse_str(lib).unwrap()).unwrap();
    let plain = r#"(module (memory (export "memory") 1)
        (func (export "seven") (result i32) i32.const 7))"#;
    std::fs::write(t.path().join("plain.wasm"), wat::parse_str(plain).unwrap()).unwrap();
    t
}

#[test]
fn run_of_a_missing_function_or_main_is_a_link_failure_127() {
    let t = modules();
    for file in ["lib.so", "plain.wasm"] {
        let ok = wasmlink_in(&["run", file, "--invoke", "seven"], Some(t.path()), &[]);
        assert_eq!(
            (ok.status.code(), stdout(&ok).as_str()),
            (Some(0), "7\n"),
            "{file}: {}",
            stderr(&ok)
        );

        let o = wasmlink_in(&["run", file, "--invoke", "nope"], Some(t.path()), &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(127), "{file}: {err}");
        assert!(err.contains("undefined symbol: nope"), "{err}");
        assert!(
            !err.contains("--invoke FUNC"),
            "no main hint for --invoke: {err}"
        );
        assert!(err.lines().all(|l| l.starts_with("wasmlink: ")), "{err}");

        let o = wasmlink_in(&["run", file], Some(t.path()), &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(127), "{file}: {err}");
        assert!(err.contains("undefined symbol: main"), "{err}");
        assert!(
            err.contains(&format!("{file} has no `main`")) && err.contains("--invoke FUNC"),
            "{file}: no hint: {err}"
        );
        assert_eq!(err.lines().count(), 2, "{err}");
        assert!(err.lines().all(|l| l.starts_with("wasmlink: ")), "{err}");
    }
}

#[test]
fn every_command_s_errors_start_with_the_same_prefix() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(d.join("bad.toml"), "bogus = 1\n").unwrap();
    let cases: &[&[&str]] = &[
        &["inspect", "missing.wasm"],
        &["nm", "missing.wasm"],
        &["ldd", "missing.wasm"],
        &["stub", "missing.so"],
        &["run", "missing.wasm"],
        &["call", "missing.wasm", "f"],
        &["policy", "check", "bad.toml"],
        &["repo", "--repo", "r", "resolve", "Not A Name"],
        &["keygen", "no/such/dir/key"],
        &["pipeline", "run", "missing.toml"],
        &["search", "--modules", "no-modules", "no-index", "q"],
        &[
            "index",
            "--corpus",
            "no-corpus",
            "--out",
            "idx",
            "--no-progress",
        ],
        &["man", "-o", "bad.toml"],
        // Usage errors (clap's words, the same prefix).
        &["nm", "--bogus", "x"],
        &["frobnicate"],
        &["completions", "tcsh"],
    ];
    for (i, args) in cases.iter().enumerate() {
        // clap's usage errors go on with a usage line; only their first line is the error.
        let usage = i >= cases.len() - 3;
        let o = wasmlink_in(args, Some(d), &[]);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        assert!(!err.is_empty(), "{args:?}: no error");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for line in err.lines().take(if usage { 1 } else { usize::MAX }) {
            assert!(
                line.starts_with("wasmlink: "),
                "{args:?}: {line:?} does not start with `wasmlink: `"
            );
        }
    }
}

#[test]
fn wasmlink_debug_help_lists_the_topics_and_unknown_ones_warn() {
    let o = wasmlink_in(&["nm", "missing.wasm"], None, &[("WASMLINK_DEBUG", "help")]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "help exits 0 without running the command"
    );
    let out = stdout(&o);
    for topic in ["libs", "bindings", "symbols", "pipeline", "all"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(topic)),
            "{topic} not listed:\n{out}"
        );
    }
    assert_eq!(stderr(&o), "");

    let o = wasmlink_in(
        &["nm", "missing.wasm"],
        None,
        &[("WASMLINK_DEBUG", "libz,symbols")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "the command still runs");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("wasmlink: warning: WASMLINK_DEBUG: unknown option `libz`")
            && lines[0].contains("WASMLINK_DEBUG=help"),
        "{err}"
    );
    assert!(lines[1].starts_with("wasmlink: missing.wasm: "), "{err}");
}

#[test]
fn top_level_help_has_the_whole_exit_table() {
    let help = stdout(&wasmlink(&["--help"]));
    for code in ["0 ", "1 ", "2 ", "127 ", "130 ", "134 ", "137 "] {
        assert!(
            help.lines().any(|l| l.starts_with(&format!("  {code}"))),
            "--help lacks exit status {code}:\n{help}"
        );
    }
    // The README's table names the same statuses.
    let readme = std::fs::read_to_string(crate::support::root().join("README.md")).unwrap();
    let start = readme
        .find("## Exit status")
        .expect("README: ## Exit status");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    for code in ["0", "1", "2", "127", "130", "134", "137"] {
        assert!(
            section.contains(&format!("| {code} |")),
            "README's exit table lacks {code}:\n{section}"
        );
    }
}

/// Every `examples/...` and `scripts/...` path README.md and the example sources name exists
/// (the files a command makes are made by the README's own commands, below), and the pipeline
/// examples name a pipeline file, not a policy.
#[test]
fn readme_names_files_that_exist() {
    let root = crate::support::root();
    let mut texts = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(root.join("README.md")).unwrap(),
    )];
    for e in std::fs::read_dir(root.join("examples/c")).unwrap() {
        let p = e.unwrap().path();
        texts.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    let made = [
        "examples/exchange/batch.arrow",
        "examples/exchange/x.parquet",
        "examples/search/index",
    ];
    for (name, text) in &texts {
        for prefix in ["examples/", "scripts/"] {
            for (i, _) in text.match_indices(prefix) {
                if text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '/' || c == '.') {
                    continue;
                }
                let path: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || "/._-".contains(*c))
                    .collect();
                let path = path.trim_end_matches('.');
                if path.ends_with('/') || made.contains(&path) {
                    continue;
                }
                assert!(
                    root.join(path).exists(),
                    "{name} names {path}, which does not exist"
                );
            }
        }
    }
    let readme = &texts[0].1;
    assert!(
        !readme.contains("pipeline run index.toml"),
        "index.toml is a policy"
    );
    assert!(
        !readme.contains("--arrow batch.arrow"),
        "batch.arrow is never made"
    );
}

/// README's Arrow and Parquet `call` examples, on files its pipeline commands make.
#[test]
fn readme_arrow_and_parquet_inputs_are_made_by_the_example_pipelines() {
    let root = crate::support::root();
    let greeter = crate::support::guest_modules().join("greeter.wasm");
    let t = tempfile::tempdir().unwrap();
    for f in ["x.jsonl", "to-arrow.toml", "to-parquet.toml"] {
        std::fs::copy(root.join("examples/exchange").join(f), t.path().join(f)).unwrap();
    }
    for (pipeline, made, function) in [
        ("to-arrow.toml", "batch.arrow", "echo_arrow"),
        ("to-parquet.toml", "x.parquet", "double"),
    ] {
        let o = wasmlink_in(&["pipeline", "run", pipeline], Some(t.path()), &[]);
        assert_eq!(o.status.code(), Some(0), "{pipeline}: {}", stderr(&o));
        let out = format!("out-{made}");
        let o = wasmlink_in(
            &[
                "call",
                greeter.to_str().unwrap(),
                function,
                "--arrow",
                made,
                "-o",
                &out,
            ],
            Some(t.path()),
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{function}: {}", stderr(&o));
        assert!(std::fs::metadata(t.path().join(&out)).unwrap().len() > 0);
    }
}

/// Without the `sql` feature, `wasmlink sql` says how to get it instead of "unrecognized
/// subcommand".
#[cfg(not(feature = "sql"))]
#[test]
fn sql_without_the_feature_says_how_to_build_it() {
    let out = wasmlink(&["sql", "--table", "t=x.parquet", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("wasmlink: sql: this wasmlink was built without the `sql` feature")
            && err.contains("--features sql"),
        "{err}"
    );
}
