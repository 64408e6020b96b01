//! `--json` on nm, ldd, `repo resolve`, `repo verify`, `policy check` and `index` (one JSON
//! document on stdout, `format_version` 1, the fields docs/cli-json.md lists, agreeing with the
//! text output), and `wasmlink completions` / `wasmlink man`.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{self, stderr, stdout, wasmlink, wasmlink_in};

/// Parses stdout as exactly one JSON document with `format_version` 1.
fn json(o: &Output, what: &str) -> Value {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    });
    assert_eq!(v["format_version"], 1, "{what}: {v}");
    v
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// Writes a minimal dylink.0 library (or, with `dynamic` false, a plain module) needing `needed`.
fn dylib(path: &Path, needed: &[&str], imports: &str) {
    let needed: Vec<String> = needed.iter().map(|s| format!("{s:?}")).collect();
    let needed = if needed.is_empty() {
        String::new()
    } else {
        format!(" (needed {})", needed.join(" "))
    };
    let wat = format!(
        r#"(module (@dylink.0 (mem-info (memory 0 0)){needed}) (import "env" "memory" (memory 0)) {imports})"#
    );
    std::fs::write(path, wat::parse_str(&wat).unwrap()).unwrap();
}

#[test]
fn nm_json_agrees_with_the_text_lines() {
    support::base_set();
    let dir = support::fixtures_out();
    for filter in [&[][..], &["--defined-only"], &["-u"]] {
        let mut args = vec!["nm"];
        args.extend_from_slice(filter);
        args.push("libbase.so");
        let text = wasmlink_in(&args, Some(&dir), &[]);
        args.insert(1, "--json");
        let o = wasmlink_in(&args, Some(&dir), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v = json(&o, "nm --json");
        assert_eq!(keys(&v), ["file", "format_version", "symbols"]);
        assert_eq!(v["file"], "libbase.so");
        let lines: Vec<String> = stdout(&text).lines().map(str::to_string).collect();
        let symbols = v["symbols"].as_array().unwrap();
        assert_eq!(symbols.len(), lines.len(), "{filter:?}");
        assert!(!symbols.is_empty());
        for (s, line) in symbols.iter().zip(&lines) {
            assert_eq!(
                keys(s),
                ["class", "flags", "name", "signature", "type", "value"]
            );
            let value = match s["value"].as_i64() {
                Some(n) => format!("{n:08x}"),
                None => " ".repeat(8),
            };
            let start = format!(
                "{value} {} {:<8} {}",
                s["type"].as_str().unwrap(),
                s["class"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            );
            assert!(line.starts_with(&start), "{line:?} vs {s}");
            assert!(s["flags"].is_array());
            // A function's core type follows its name, as in the text.
            if let Some(sig) = s["signature"].as_str() {
                assert!(
                    line[start.len()..].starts_with(&format!(" {sig}")),
                    "{line:?} vs {s}"
                );
            }
        }
    }
}

#[test]
fn ldd_json_lists_found_and_missing_libraries() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    dylib(&d.join("liba.so"), &["libb.so", "libgone.so"], "");
    dylib(&d.join("libb.so"), &[], "");
    let o = wasmlink_in(
        &["ldd", "--json", "--no-default-dirs", "-L", ".", "liba.so"],
        Some(d),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("libgone.so"), "{}", stderr(&o));
    let v = json(&o, "ldd --json");
    assert_eq!(
        keys(&v),
        [
            "dynamic",
            "file",
            "format_version",
            "libraries",
            "undefined"
        ]
    );
    assert_eq!(v["dynamic"], true);
    assert_eq!(v["undefined"], Value::Null);
    let libs = v["libraries"].as_array().unwrap();
    assert_eq!(libs.len(), 2, "{v}");
    assert_eq!(libs[0]["name"], "libb.so");
    assert_eq!(libs[0]["path"], "./libb.so");
    assert_eq!(libs[0]["needed_by"], "liba.so");
    assert!(libs[0].get("searched").is_none());
    assert_eq!(libs[1]["name"], "libgone.so");
    assert_eq!(libs[1]["path"], Value::Null);
    assert_eq!(libs[1]["searched"][0], "./libgone.so");

    // All found, with -r: an undefined strong symbol is listed, and exit 1.
    dylib(
        &d.join("libc.so"),
        &["libb.so"],
        r#"(import "env" "nothere" (func))"#,
    );
    let o = wasmlink_in(
        &[
            "ldd",
            "--json",
            "-r",
            "--no-default-dirs",
            "-L",
            ".",
            "libc.so",
        ],
        Some(d),
        &[],
    );
    let v = json(&o, "ldd -r --json");
    assert_eq!(o.status.code(), Some(1), "{v}");
    assert_eq!(v["libraries"][0]["path"], "./libb.so");
    assert_eq!(v["undefined"][0]["symbol"], "nothere", "{v}");
    assert_eq!(v["undefined"][0]["library"], "libc.so", "{v}");

    // A plain module: dynamic false, exit 1, as in text.
    std::fs::write(d.join("plain.wasm"), wat::parse_str("(module)").unwrap()).unwrap();
    let o = wasmlink_in(&["ldd", "--json", "plain.wasm"], Some(d), &[]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o, "ldd plain");
    assert_eq!(v["dynamic"], false);
    assert_eq!(v["libraries"], serde_json::json!([]));

    // A missing file: nothing on stdout, exit 2.
    let o = wasmlink_in(&["ldd", "--json", "nope.so"], Some(d), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn repo_resolve_and_verify_json() {
    let (_t, repo) = crate::repo::fresh();
    let dir = tempfile::tempdir().unwrap();
    let file = crate::repo::module_file(dir.path(), 7);
    let r = |args: &[&str]| crate::repo::cli_repo(&repo, args);
    crate::repo::assert_ok(&r(&[
        "add",
        file.to_str().unwrap(),
        "--name",
        "m",
        "--version",
        "1.2.0",
    ]));
    let o = r(&["resolve", "--json", "m@^1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o, "repo resolve --json");
    assert_eq!(
        keys(&v),
        [
            "format_version",
            "key_id",
            "name",
            "path",
            "sha256",
            "size",
            "version"
        ]
    );
    let bytes = crate::repo::module_bytes(7);
    assert_eq!(v["name"], "m");
    assert_eq!(v["version"], "1.2.0");
    assert_eq!(v["sha256"], crate::repo::sha(&bytes));
    assert_eq!(v["size"], bytes.len() as u64);
    assert_eq!(v["key_id"], Value::Null);
    let path = v["path"].as_str().unwrap().to_string();
    assert!(Path::new(&path).is_file(), "{path}");
    // No match: nothing on stdout, exit 1.
    let o = r(&["resolve", "--json", "m@^2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());

    let v = json(&r(&["verify", "--json"]), "verify");
    assert_eq!(keys(&v), ["format_version", "modules", "ok", "problems"]);
    assert_eq!(
        (v["ok"].as_u64(), v["problems"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(v["modules"][0]["status"], "ok");
    assert_eq!(v["modules"][0]["message"], Value::Null);

    crate::repo::make_object_writable(Path::new(&path));
    std::fs::write(&path, crate::repo::module_bytes(8)).unwrap();
    let o = r(&["verify", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o, "verify tampered");
    assert_eq!(
        (v["ok"].as_u64(), v["problems"].as_u64()),
        (Some(0), Some(1))
    );
    let m = &v["modules"][0];
    assert_eq!(keys(m), ["message", "name", "path", "status", "version"]);
    assert_eq!(m["status"], "tampered");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains(&crate::repo::sha(&crate::repo::module_bytes(8))),
        "{m}"
    );
}

#[test]
fn policy_check_json_is_the_toml_spelling_with_limits_filled_in() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("data")).unwrap();
    let file = t.path().join("p.toml");
    std::fs::write(
        &file,
        "[[dirs]]\nhost = \"data\"\nguest = \"/data\"\nmode = \"read-write\"\n\
         [stdio]\nstdout = \"capture\"\n[limits]\nmemory = \"8MiB\"\ntimeout = \"250ms\"\n",
    )
    .unwrap();
    let o = wasmlink(&["policy", "check", "--json", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o, "policy check --json");
    assert_eq!(keys(&v), ["file", "format_version", "limits", "policy"]);
    assert_eq!(
        v["policy"]["dirs"][0]["host"],
        t.path().join("data").display().to_string()
    );
    assert_eq!(v["policy"]["dirs"][0]["mode"], "read-write");
    assert_eq!(v["policy"]["stdio"]["stdout"], "capture", "{v}");
    assert_eq!(v["limits"]["memory"], 8 << 20);
    assert_eq!(v["limits"]["timeout_ms"], 250);
    assert_eq!(v["limits"]["fuel"], Value::Null);
    assert_eq!(
        keys(&v["limits"]),
        [
            "fuel",
            "instances",
            "memory",
            "output",
            "stack",
            "table_elements",
            "timeout_ms"
        ]
    );
    // An invalid policy: nothing on stdout, exit 2.
    std::fs::write(&file, "bogus = 1\n").unwrap();
    let o = wasmlink(&["policy", "check", "--json", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn index_json_reports_on_stdout_instead_of_the_table() {
    let modules = support::guest_modules();
    let t = tempfile::tempdir().unwrap();
    let corpus = t.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    for (i, words) in ["crab rust", "heap stack rust", "trait vec"]
        .iter()
        .enumerate()
    {
        std::fs::write(
            corpus.join(format!("{i}.md")),
            format!("# T{i}\n\n{words}\n"),
        )
        .unwrap();
    }
    let out = t.path().join("idx");
    let o = wasmlink(&[
        "index",
        "--json",
        "--no-progress",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--modules",
        modules.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("indexed "), "{}", stderr(&o));
    let v = json(&o, "index --json");
    assert_eq!(v["documents"], 3, "{v}");
    assert_eq!(v["files_read"], 3, "{v}");
    assert_eq!(v["failed_batches"], 0);
    assert_eq!(v["dead_letter"], Value::Null);
    assert_eq!(v["native"], Value::Null);
    assert!(v["terms"].as_u64().unwrap() > 0, "{v}");
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["extract", "analyze", "index"]);
}

#[test]
fn json_flags_are_documented_in_help_and_docs() {
    let doc = std::fs::read_to_string(support::root().join("docs/cli-json.md")).unwrap();
    for cmd in [
        &["nm"][..],
        &["ldd"],
        &["repo", "resolve"],
        &["repo", "verify"],
        &["policy", "check"],
        &["index"],
        &["call"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = wasmlink(&args);
        let help = stdout(&o);
        assert!(help.contains("--json"), "{cmd:?}:\n{help}");
        assert!(help.contains("format_version"), "{cmd:?}:\n{help}");
        let name = format!("`{} --json", cmd.join(" "));
        assert!(doc.contains(&name), "docs/cli-json.md lacks {name}");
    }
}

/// The subcommands listed under `Commands:` in `wasmlink --help`.
fn subcommands() -> Vec<String> {
    let help = stdout(&wasmlink(&["--help"]));
    let start = help.find("Commands:\n").expect("Commands:") + "Commands:\n".len();
    help[start..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_cover_every_subcommand_in_every_shell() {
    let cmds = subcommands();
    assert!(cmds.len() >= 15, "{cmds:?}");
    for must in ["nm", "ldd", "completions", "man"] {
        assert!(cmds.iter().any(|c| c == must), "{must}: {cmds:?}");
    }
    let bash = wasmlink(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0), "{}", stderr(&bash));
    let bash = stdout(&bash);
    assert!(bash.contains("complete -F _wasmlink"), "{bash}");
    for c in &cmds {
        // clap_complete has a `wasmlink,SUB)` case and a `wasmlink__subcmd__SUB)` function
        // branch for each subcommand.
        assert!(bash.contains(&format!("wasmlink,{c})")), "bash lacks {c}");
        assert!(
            bash.contains(&format!("wasmlink__subcmd__{c})")),
            "bash lacks {c}"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = wasmlink(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        for c in &cmds {
            assert!(text.contains(c.as_str()), "{shell} lacks {c}");
        }
    }
    let o = wasmlink(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn man_page_renders() {
    let o = wasmlink(&["man"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH wasmlink 1"), "{page}");
    assert!(
        page.contains("Exit status"),
        "the page lacks the exit-status table"
    );
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    let o = wasmlink(&["man", "-o", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for c in subcommands() {
        let p = dir.join(format!("wasmlink-{c}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.contains(&format!(".TH wasmlink-{c} 1")),
            "{}",
            p.display()
        );
    }
    assert!(dir.join("wasmlink.1").is_file());
    assert!(dir.join("wasmlink-repo-verify.1").is_file());
    // Rendered by man(1) when it is installed.
    let rendered = std::process::Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.join("wasmlink-nm.1"))
        .env("MANWIDTH", "80")
        .output();
    if let Ok(r) = rendered
        && r.status.success()
    {
        let text = stdout(&r);
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("--defined-only"), "{text}");
        assert!(flat.contains("Exit status: 0 success"), "{text}");
    }
    // An unwritable directory: one error line, exit 2.
    let file = t.path().join("file");
    std::fs::write(&file, "").unwrap();
    let o = wasmlink(&["man", "-o", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn call_json_gives_typed_results() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m.wasm");
    let wat = r#"(module
        (func (export "pair") (param i32) (result i32 i64) local.get 0 i64.const -3)
        (func (export "floats") (result f32 f64) f32.const 1.5 f64.const nan))"#;
    std::fs::write(&m, wat::parse_str(wat).unwrap()).unwrap();
    let m = m.to_str().unwrap();
    let o = wasmlink(&["call", "--json", m, "pair", "41"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o, "call --json");
    assert_eq!(keys(&v), ["format_version", "function", "results"]);
    assert_eq!(v["function"], "pair");
    assert_eq!(
        v["results"],
        serde_json::json!([{"type": "i32", "value": 41}, {"type": "i64", "value": -3}])
    );
    let v = json(&wasmlink(&["call", "--json", m, "floats"]), "floats");
    assert_eq!(
        v["results"],
        serde_json::json!([{"type": "f32", "value": 1.5}, {"type": "f64", "value": "NaN"}])
    );
    // Byte and Arrow calls write data, not JSON: a usage error.
    let o = wasmlink(&["call", "--json", m, "pair", "--input", "-"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}
