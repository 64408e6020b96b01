//! README.md's command blocks are run (issue 16): a README that drifts from the CLI fails here.
//!
//! What counts as a command block: every indented (4-space) code block, and every fenced block
//! whose language is empty or a shell (`sh`, `bash`, `shell`, `console`); `rust`, `toml`,
//! `python` and other fenced blocks are not commands. EVERY command block runs unless an HTML
//! comment right before it (only blank lines or other such comments between) says why not:
//!
//! - `<!-- readme-test: skip: REASON -->`: the block is not run; the test prints REASON.
//! - `<!-- readme-test: before: SHELL -->`: SHELL runs (and must succeed) before the block,
//!   to make inputs the README assumes the reader has (`app.wasm`, `filter.wasm`, ...). It may
//!   use `$ROOT` (the checkout), `$SRC` (tests/fixtures), `$FIXTURES` (fixtures this test
//!   builds: see [`build_fixtures`]) and `$GUEST_MODULES` (target/guest-modules).
//!
//! Where they run: one fresh temporary directory per `## ` section of README.md (subsections
//! share their section's), holding copies of the checkout's tracked `examples/` and `scripts/`,
//! `target/guest-modules` and `target/corpus` symlinked at the same relative paths, and
//! `home/` as `$HOME` (so `~/.config/wasmlink/key` and the default repository land there).
//! `wasmlink` on `PATH` is this build's binary. Blocks run in document order, each in its own
//! `bash` with `pipefail`; variables a block assigns (the tour's `CF`, `LIB`, `PIE`) carry over
//! to the later blocks of its section. Compiled code is cached in one directory shared by the
//! sections and runs (`$WASMLINK_CACHE_DIR`), only to keep the test fast.
//!
//! How a block is checked, `bash -e`-like: commands (a line, with its `\` continuations) run in
//! order and the block stops at the first one that fails, unless comment lines directly after it
//! give its expected output: `# TEXT` means the command's stdout+stderr contains TEXT, where
//! `...` in TEXT stands for anything (the pieces between must appear in order; hex digits right
//! before it, as in `93a4...`, and `/home/me` are placeholders too), and a trailing
//! `exit status N` (optionally followed by `(prose)`) is the exit status it must have (without
//! one, any status is accepted). A
//! trailing comment on a command line is prose and not checked, except `# prints TEXT` (TEXT up
//! to a ` (` or the end), which the output must contain. A line in a block that looks like
//! output shown as a command (`wasmlink: ...`) is an error: write it as a `# ...` comment.
//!
//! A failure names the block's README line, the command, its exit status and its output; all
//! blocks are run and every failing one is reported. Each block has a time limit of
//! [`BLOCK_TIMEOUT_SECS`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Link};

/// Seconds a block may run before it is killed (with its children) and reported.
const BLOCK_TIMEOUT_SECS: u32 = 600;

/// One command of a block and what its comments expect.
#[derive(Debug)]
struct Cmd {
    /// README line of the command's first line.
    line: usize,
    text: String,
    /// `# TEXT` lines right after it, `...` splitting each into pieces.
    expect: Vec<String>,
    /// `exit status N` in one of them.
    status: Option<i32>,
    /// `# prints TEXT` at the end of its line.
    prints: Option<String>,
}

#[derive(Debug)]
struct Block {
    /// README line of the block's first line.
    line: usize,
    section: String,
    skip: Option<String>,
    before: Vec<String>,
    cmds: Vec<Cmd>,
    /// Lines that look like output written as a command.
    bad: Vec<(usize, String)>,
}

/// Splits README.md into its command blocks.
fn parse(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut section = String::from("(top)");
    // HTML comments seen since the last non-blank, non-comment line.
    let mut pending: Vec<String> = Vec::new();
    let mut prev_blank = true;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let Some(fence) = l.strip_prefix("```") {
            let lang = fence.trim();
            let start = i + 1;
            let mut j = start;
            while j < lines.len() && !lines[j].starts_with("```") {
                j += 1;
            }
            if ["", "sh", "bash", "shell", "console"].contains(&lang) {
                let body: Vec<(usize, &str)> = (start..j).map(|k| (k + 1, lines[k])).collect();
                blocks.push(block(start + 1, &section, &pending, &body));
            }
            pending.clear();
            prev_blank = false;
            i = j + 1;
            continue;
        }
        if l.starts_with("    ") && prev_blank {
            let start = i;
            let mut j = i;
            while j < lines.len()
                && (lines[j].starts_with("    ")
                    || (lines[j].trim().is_empty()
                        && lines.get(j + 1).is_some_and(|n| n.starts_with("    "))))
            {
                j += 1;
            }
            let body: Vec<(usize, &str)> = (start..j)
                .map(|k| (k + 1, lines[k].get(4..).unwrap_or("")))
                .collect();
            blocks.push(block(start + 1, &section, &pending, &body));
            pending.clear();
            prev_blank = false;
            i = j;
            continue;
        }
        if let Some(h) = l.strip_prefix("## ") {
            section = h.trim().to_string();
        }
        if l.trim_start().starts_with("<!--") {
            let mut text = String::new();
            let mut j = i;
            loop {
                text.push_str(lines[j].trim());
                text.push(' ');
                if lines[j].contains("-->") || j + 1 == lines.len() {
                    break;
                }
                j += 1;
            }
            pending.push(text);
            i = j + 1;
            prev_blank = true; // an HTML block ends like a paragraph
            continue;
        }
        if !l.trim().is_empty() {
            pending.clear();
        }
        prev_blank = l.trim().is_empty();
        i += 1;
    }
    blocks
}

fn block(line: usize, section: &str, comments: &[String], body: &[(usize, &str)]) -> Block {
    let mut b = Block {
        line,
        section: section.to_string(),
        skip: None,
        before: Vec::new(),
        cmds: Vec::new(),
        bad: Vec::new(),
    };
    for c in comments {
        let Some(rest) = c
            .trim()
            .strip_prefix("<!--")
            .and_then(|c| c.trim().strip_suffix("-->"))
            .and_then(|c| c.trim().strip_prefix("readme-test:"))
        else {
            continue;
        };
        let rest = rest.trim();
        if let Some(why) = rest.strip_prefix("skip:") {
            b.skip = Some(why.trim().to_string());
        } else if let Some(sh) = rest.strip_prefix("before:") {
            b.before.push(sh.trim().to_string());
        } else {
            b.bad
                .push((line, format!("unknown readme-test comment: {rest}")));
        }
    }
    // Whether the previous line was a command or one of its expected-output comments.
    let mut after_cmd = false;
    let mut k = 0;
    while k < body.len() {
        let (n, l) = body[k];
        let t = l.trim();
        if t.is_empty() {
            after_cmd = false;
            k += 1;
            continue;
        }
        if let Some(c) = t.strip_prefix('#') {
            if after_cmd {
                let c = c.trim();
                let cmd = b.cmds.last_mut().unwrap();
                let (text, status) = split_status(c);
                if let Some(s) = status {
                    cmd.status = Some(s);
                }
                if !text.is_empty() {
                    cmd.expect.push(text.to_string());
                }
            }
            k += 1;
            continue;
        }
        if t.starts_with("wasmlink:") {
            b.bad.push((
                n,
                format!("output written as a command (make it a `# ...` comment): {t}"),
            ));
        }
        let mut text = l.to_string();
        while text.ends_with('\\') && k + 1 < body.len() {
            k += 1;
            text.push('\n');
            text.push_str(body[k].1);
        }
        let prints = text
            .rsplit_once("# prints ")
            .map(|(_, p)| p.split(" (").next().unwrap().trim().to_string());
        b.cmds.push(Cmd {
            line: n,
            text,
            expect: Vec::new(),
            status: None,
            prints,
        });
        after_cmd = true;
        k += 1;
    }
    b
}

/// `TEXT    exit status N (prose)` -> (TEXT, Some(N)); the prose is not checked.
fn split_status(c: &str) -> (&str, Option<i32>) {
    if let Some((text, rest)) = c.rsplit_once("exit status ") {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let after = rest[digits..].trim();
        if digits > 0 && (after.is_empty() || after.starts_with('(')) {
            return (text.trim(), rest[..digits].parse().ok());
        }
    }
    (c, None)
}

/// Whether `out` contains the pieces of `want` (split at `...`) in order. Placeholders:
/// `/home/me` is any home directory, and hex digits right before `...` (a hash's first digits,
/// `93a4...`) are any digits.
fn matches(out: &str, want: &str) -> bool {
    let want = want.replace("/home/me/", ".../");
    let pieces: Vec<&str> = want.split("...").collect();
    let last = pieces.len() - 1;
    let mut rest = out;
    for (i, piece) in pieces.into_iter().enumerate() {
        let piece = if i < last {
            without_hex_prefix(piece)
        } else {
            piece
        };
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// `piece` without a trailing word of hex digits (one digit at least: `93a4`, not `added`).
fn without_hex_prefix(piece: &str) -> &str {
    let head = piece.trim_end_matches(|c: char| c.is_ascii_hexdigit());
    let run = &piece[head.len()..];
    let word_start = !head.ends_with(|c: char| c.is_alphanumeric());
    if word_start && run.contains(|c: char| c.is_ascii_digit()) {
        head
    } else {
        piece
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Fixtures the `before:` steps copy, built into one directory (`$FIXTURES`) with the helpers
/// the other tests use: `app.wasm` (tests/fixtures/readme/app.wat), `cmd.wasm` (a
/// `wasi:cli/command` that succeeds, tests/fixtures/wat/comp_command.wat), `module1.wasm` /
/// `module2.wasm` / `A.wasm` / `B.wasm` / `flat_main.wasm` (the flat_env fixtures), the
/// run_limits program `rl_main.wasm` with `librl.so`, `client.wasm` (tests/fixtures/readme/
/// client.c, linked against the corpus's libc.so), and the C extension
/// `myext.cpython-314-wasm32-wasi.so`.
fn build_fixtures(dir: &Path) {
    let src = support::fixtures_src();
    let wat = |from: &Path, text: Option<&str>, out: &str| {
        let text = match text {
            Some(t) => t.to_string(),
            None => std::fs::read_to_string(from).unwrap(),
        };
        let bytes = wat::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        std::fs::write(dir.join(out), bytes).unwrap();
    };
    wat(&src.join("readme/app.wat"), None, "app.wasm");
    let command = src.join("wat/comp_command.wat");
    let text = std::fs::read_to_string(&command)
        .unwrap()
        .replace("STATUS", "0");
    wat(&command, Some(&text), "cmd.wasm");
    wat(&src.join("compose/main.wat"), None, "compose_main.wasm");
    wat(&src.join("compose/text.wat"), None, "compose_text.wasm");
    for (name, out) in [
        ("fe_module1", "module1.wasm"),
        ("fe_module2", "module2.wasm"),
        ("fe_module1", "A.wasm"),
        ("fe_override", "B.wasm"),
    ] {
        support::wat_fixture(name, dir, out);
    }
    let corpus = support::corpus();
    let copy = |built: PathBuf, out: &str| {
        std::fs::copy(&built, dir.join(out)).unwrap();
    };
    copy(
        support::c_fixture("librl.so", Link::Shared, &["rl_lib.c"], &[], &[]),
        "librl.so",
    );
    copy(
        support::c_fixture(
            "rl_main.wasm",
            Link::Pie,
            &["rl_main.c"],
            &["librl.so"],
            &[],
        ),
        "rl_main.wasm",
    );
    let lc = format!("-L{}", corpus.display());
    copy(
        support::c_fixture(
            "readme_client.wasm",
            Link::PieAnyMain,
            &["../readme/client.c"],
            &[],
            &[&lc, "-lc"],
        ),
        "client.wasm",
    );
    copy(
        support::c_fixture(
            "myext.cpython-314-wasm32-wasi.so",
            Link::Shared,
            &["py_myext.c"],
            &[],
            &[],
        ),
        "myext.cpython-314-wasm32-wasi.so",
    );
}

/// A fresh directory for one section: copies of `examples/` and `scripts/`, `target/`'s
/// guest modules and corpus, and a home.
fn section_dir(base: &Path, index: usize) -> PathBuf {
    let root = support::root();
    let dir = base.join(format!("section-{index}"));
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::create_dir_all(dir.join("target")).unwrap();
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--", "examples", "scripts"])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "git ls-files failed");
    for f in listed.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(f).unwrap());
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), &to)
            .unwrap_or_else(|e| panic!("copy {}: {e}", rel.display()));
    }
    for t in ["guest-modules", "corpus"] {
        std::os::unix::fs::symlink(root.join("target").join(t), dir.join("target").join(t))
            .unwrap();
    }
    dir
}

/// The script that runs one block; per command `n`, its output goes to `out/n` and its exit
/// status to `out/n.status`.
fn script(b: &Block, state: &Path, out: &Path) -> String {
    let mut s = String::from("set -o pipefail\nset -a\n");
    let _ = writeln!(
        s,
        "[ -f {0} ] && . {0}",
        sh_quote(&state.display().to_string())
    );
    for (i, before) in b.before.iter().enumerate() {
        let f = out.join(format!("before{i}"));
        let f = sh_quote(&f.display().to_string());
        let _ = writeln!(
            s,
            "{{\n{before}\n}} >{f} 2>&1; __s=$?; echo $__s >{f}.status; [ $__s -eq 0 ] || exit 0"
        );
    }
    for (n, c) in b.cmds.iter().enumerate() {
        let f = sh_quote(&out.join(n.to_string()).display().to_string());
        let may_fail = !c.expect.is_empty() || c.status.is_some();
        let _ = writeln!(
            s,
            "# README.md:{}\n{{\n{}\n}} >{f} 2>&1 </dev/null; __s=$?; echo $__s >{f}.status{}",
            c.line,
            c.text,
            if may_fail {
                ""
            } else {
                "; [ $__s -eq 0 ] || exit 0"
            }
        );
    }
    let _ = writeln!(
        s,
        "export -p | grep -v -e '^declare -x \\(PWD\\|OLDPWD\\|SHLVL\\|_\\)=' >{}",
        sh_quote(&state.display().to_string())
    );
    s
}

fn read(p: &Path) -> Option<String> {
    std::fs::read(p)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Runs one block in `dir`; returns what went wrong, if anything.
fn run_block(b: &Block, dir: &Path, env: &[(&str, String)], work: &Path) -> Option<String> {
    let out = work.join(format!("block-{}", b.line));
    std::fs::create_dir_all(&out).unwrap();
    let state = dir.parent().unwrap().join(format!(
        "{}.state",
        dir.file_name().unwrap().to_str().unwrap()
    ));
    let path = out.join("block.sh");
    std::fs::write(&path, script(b, &state, &out)).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", &BLOCK_TIMEOUT_SECS.to_string(), "bash"])
        .arg(&path)
        .current_dir(dir)
        .env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run timeout bash");
    let mut report = String::new();
    if o.status.code() == Some(124) || o.status.code() == Some(137) {
        let _ = writeln!(report, "the block ran past {BLOCK_TIMEOUT_SECS} s");
    } else if !o.status.success() {
        let _ = writeln!(
            report,
            "bash exited with {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for (i, before) in b.before.iter().enumerate() {
        let f = out.join(format!("before{i}"));
        let status = read(&f.with_extension("status")).map(|s| s.trim().to_string());
        if status.as_deref() != Some("0") {
            let _ = writeln!(
                report,
                "README.md:{}: before-step `{before}` failed (exit status {}):\n{}",
                b.line,
                status.as_deref().unwrap_or("none"),
                read(&f).unwrap_or_default()
            );
            return Some(report);
        }
    }
    for (n, c) in b.cmds.iter().enumerate() {
        let f = out.join(n.to_string());
        let Some(status) = read(&f.with_extension("status")) else {
            let _ = writeln!(
                report,
                "README.md:{}: `{}` did not run (an earlier command of the block failed)",
                c.line, c.text
            );
            break;
        };
        let status: i32 = status.trim().parse().unwrap();
        let output = read(&f).unwrap_or_default();
        let mut wrong = Vec::new();
        match c.status {
            Some(want) if want != status => wrong.push(format!("exit status {want} expected")),
            None if status != 0 && c.expect.is_empty() => wrong.push("it failed".to_string()),
            _ => {}
        }
        for e in &c.expect {
            if !matches(&output, e) {
                wrong.push(format!("output lacks `{e}`"));
            }
        }
        if let Some(p) = &c.prints
            && !output.contains(p.as_str())
        {
            wrong.push(format!("output lacks `{p}` (# prints)"));
        }
        if output.contains("panicked") {
            wrong.push("a panic".to_string());
        }
        if !wrong.is_empty() {
            let _ = writeln!(
                report,
                "README.md:{}: `{}`: {}\nexit status {status}, output:\n{}",
                c.line,
                c.text,
                wrong.join("; "),
                output
            );
        }
    }
    (!report.is_empty()).then_some(report)
}

#[test]
fn readme_command_blocks_run() {
    let root = support::root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = parse(&readme);
    assert!(
        blocks.len() > 10,
        "too few command blocks found: {blocks:?}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let fixtures = base.join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    build_fixtures(&fixtures);
    let guests = support::guest_modules();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wasmlink"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-cache");
    let work = base.join("work");

    let mut failures = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    for b in &blocks {
        let first = b.cmds.first().map_or("(no command)", |c| c.text.as_str());
        let first = first.lines().next().unwrap_or("");
        if !b.bad.is_empty() {
            for (line, what) in &b.bad {
                failures.push(format!("README.md:{line}: {what}"));
            }
        }
        if let Some(why) = &b.skip {
            println!("skipped README.md:{} `{first}`: {why}", b.line);
            continue;
        }
        if b.cmds.is_empty() {
            println!("README.md:{}: no commands", b.line);
            continue;
        }
        let index = match sections.iter().position(|s| *s == b.section) {
            Some(i) => i,
            None => {
                sections.push(b.section.clone());
                sections.len() - 1
            }
        };
        let dir = base.join(format!("section-{index}"));
        let dir = if dir.exists() {
            dir
        } else {
            section_dir(&base, index)
        };
        let home = dir.join("home");
        let env: Vec<(&str, String)> = vec![
            ("PATH", path.clone()),
            ("HOME", home.display().to_string()),
            ("LANG", "C.UTF-8".into()),
            ("TMPDIR", base.display().to_string()),
            ("WASMLINK_CACHE_DIR", cache.display().to_string()),
            ("ROOT", root.display().to_string()),
            ("SRC", support::fixtures_src().display().to_string()),
            ("FIXTURES", fixtures.display().to_string()),
            ("GUEST_MODULES", guests.display().to_string()),
        ];
        let t = std::time::Instant::now();
        let result = run_block(b, &dir, &env, &work);
        println!(
            "{} README.md:{} ({}, {} commands, {:.1} s) `{first}`",
            if result.is_some() { "FAILED" } else { "ran" },
            b.line,
            b.section,
            b.cmds.len(),
            t.elapsed().as_secs_f64()
        );
        if let Some(r) = result {
            failures.push(r);
        }
    }
    println!(
        "README.md: {} blocks in {:.1} s",
        blocks.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "README.md's commands drifted:\n\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_block_parser_reads_commands_expectations_and_comments() {
    let md = "## S\n\ntext\n\n<!-- readme-test: before: touch x -->\n\n    a \\\n      b   # prose\n    \
              c   # prints 5 (five)\n    # wasmlink: no ... here     exit status 3 (why)\n\n    d\n    wasmlink: oops\n\n\
              <!-- readme-test: skip: a template -->\n\n    e\n\n```rust\nfn f() {}\n```\n```\nf\n```\n";
    let b = parse(md);
    assert_eq!(b.len(), 3, "{b:?}");
    assert_eq!(b[0].before, ["touch x"]);
    assert_eq!(b[0].line, 7);
    assert_eq!(b[0].cmds.len(), 4);
    assert_eq!(b[0].cmds[0].text, "a \\\n  b   # prose");
    assert_eq!(b[0].cmds[1].prints.as_deref(), Some("5"));
    assert_eq!(b[0].cmds[1].expect, ["wasmlink: no ... here"]);
    assert_eq!(b[0].cmds[1].status, Some(3));
    assert_eq!(b[0].bad.len(), 1);
    assert_eq!(b[1].skip.as_deref(), Some("a template"));
    assert_eq!(b[2].cmds[0].text, "f");
    assert!(matches(
        "wasmlink: no such thing here\n",
        "wasmlink: no ... here"
    ));
    assert!(!matches("wasmlink: here no\n", "wasmlink: no ... here"));
    assert!(matches(
        "wasmlink: /tmp/x/home/.cache/ab12ff: the index says ab12ff, not 9c",
        "wasmlink: /home/me/.cache/93a4...: the index says 93a4..., not 9c"
    ));
    assert!(!matches("it was added\n", "it was readded..."));
    assert!(!matches(
        "wasmlink: /tmp/x/home/.cache/ab12ff: the index says ab12ff, not 9d",
        "wasmlink: /home/me/.cache/93a4...: the index says 93a4..., not 9c"
    ));
}
