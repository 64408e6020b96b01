//! `wasmlink sql` (crates/sql, feature `sql`): DataFusion over data files, plugins' Arrow
//! functions as scalar functions, the search index as a table function; real files made by the
//! example pipelines, the real greeter module and the real query module.

use std::path::Path;

use crate::support::{guest_modules, root, stderr, stdout, wasmlink, wasmlink_in};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// x.jsonl, x.parquet and batch.arrow (x = 1, 2, 3) and a CSV, in a fresh directory.
fn tables() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for f in ["x.jsonl", "to-arrow.toml", "to-parquet.toml"] {
        std::fs::copy(root().join("examples/exchange").join(f), t.path().join(f)).unwrap();
    }
    for p in ["to-arrow.toml", "to-parquet.toml"] {
        let o = wasmlink_in(&["pipeline", "run", p], Some(t.path()), &[]);
        assert_eq!(o.status.code(), Some(0), "{p}: {}", stderr(&o));
    }
    std::fs::write(t.path().join("y.csv"), "x,name\n1,one\n2,two\n3,three\n").unwrap();
    t
}

#[test]
fn every_table_format_is_queried_and_joined() {
    let t = tables();
    let d = t.path();
    let o = wasmlink_in(
        &[
            "sql",
            "--table",
            "j=x.jsonl",
            "--table",
            "p=x.parquet",
            "--table",
            "a=batch.arrow",
            "--table",
            "c=y.csv",
            "--format",
            "csv",
            "SELECT c.name, j.x + p.x + a.x AS total FROM j JOIN p ON j.x = p.x \
             JOIN a ON a.x = j.x JOIN c ON c.x = j.x ORDER BY total",
        ],
        Some(d),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "name,total\none,3\ntwo,6\nthree,9\n");
    // The default output is an aligned table.
    let o = wasmlink_in(
        &["sql", "--table", "t=x.jsonl", "SELECT sum(x) AS s FROM t"],
        Some(d),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("| s |") && stdout(&o).contains("| 6 |"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_plugin_function_is_a_sql_function_under_its_policy() {
    let t = tables();
    let d = t.path();
    let greeter = guest_modules().join("greeter.wasm");
    let udf = format!("double={}:double", s(&greeter));
    let o = wasmlink_in(
        &[
            "sql",
            "--table",
            "t=x.parquet",
            "--udf",
            &udf,
            "--format",
            "json",
            "SELECT x, double(x) AS d FROM t ORDER BY x",
        ],
        Some(d),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"x\":1,\"d\":2}\n{\"x\":2,\"d\":4}\n{\"x\":3,\"d\":6}\n"
    );
    // The module's own error (its input has no column `x`) fails the query in one line that
    // names the SQL function, the module and its function.
    let o = wasmlink_in(
        &[
            "sql",
            "--table",
            "c=y.csv",
            "--udf",
            &udf,
            "SELECT double(name) FROM c",
        ],
        Some(d),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("function `double` (module `greeter`, `double`)")
            && err.contains("no column `x`"),
        "{err}"
    );
    // A string function is refused as a SQL function, from the module's manifest.
    let o = wasmlink(&[
        "sql",
        "--udf",
        &format!("g={}:greet", s(&greeter)),
        "SELECT 1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`greet` of module `greeter` takes string, not an Arrow batch"),
        "{}",
        stderr(&o)
    );
    // A missing function, a malformed spec.
    let o = wasmlink(&[
        "sql",
        "--udf",
        &format!("n={}:nope", s(&greeter)),
        "SELECT 1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("exports no function `nope`"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&["sql", "--udf", "double", "SELECT 1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--udf `double`: no `=` (expected NAME=MODULE:FUNCTION[:POLICY])"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn results_are_written_in_every_format_and_read_back() {
    let t = tables();
    let d = t.path();
    for (file, fmt) in [
        ("out.parquet", None),
        ("out.arrow", None),
        ("out.jsonl", None),
        ("out.csv", None),
        ("out.data", Some("parquet")),
    ] {
        let mut args = vec!["sql", "--table", "t=x.jsonl", "-o", file];
        if let Some(f) = fmt {
            args.extend(["--format", f]);
        }
        args.push("SELECT x * 10 AS y FROM t");
        let o = wasmlink_in(&args, Some(d), &[]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        let back = if fmt.is_some() {
            "b=out.data".to_string()
        } else {
            format!("b={file}")
        };
        let o = wasmlink_in(
            &[
                "sql",
                "--table",
                &back,
                "--format",
                "csv",
                "SELECT sum(y) AS s FROM b",
            ],
            Some(d),
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
        assert_eq!(stdout(&o), "s\n60\n", "{file}");
    }
    let o = wasmlink_in(&["sql", "-o", "out.xyz", "SELECT 1"], Some(d), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot tell the format from the extension"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn search_is_a_table_function_over_an_index() {
    let t = tempfile::tempdir().unwrap();
    let corpus = t.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(
        corpus.join("borrow.md"),
        "# Borrowing\n\nA reference borrows a value.\n",
    )
    .unwrap();
    std::fs::write(
        corpus.join("traits.md"),
        "# Traits\n\nA trait defines behaviour.\n",
    )
    .unwrap();
    let idx = t.path().join("idx");
    let modules = guest_modules();
    let o = wasmlink(&[
        "index",
        "--corpus",
        s(&corpus),
        "--out",
        s(&idx),
        "--modules",
        s(&modules),
        "--no-progress",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let q = format!(
        "SELECT rank, title FROM search('{}', 'borrowing references', 5) WHERE rank = 1",
        s(&idx)
    );
    let o = wasmlink(&["sql", "--modules", s(&modules), "--format", "csv", &q]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "rank,title\n1,Borrowing\n");
    // A missing index, and a bad K, are one line each.
    let o = wasmlink(&["sql", "SELECT * FROM search('/nonexistent/idx', 'x')"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no such index directory"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&["sql", "SELECT * FROM search('idx', 'x', 0)"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("K must be an integer from 1 to 100000"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn hostile_tables_and_names_are_one_line_errors() {
    let t = tables();
    let d = t.path();
    std::fs::write(d.join("junk.parquet"), b"PAR1 not really parquet").unwrap();
    std::fs::write(d.join("x.toml"), "a = 1\n").unwrap();
    std::fs::write(
        d.join("junk.arrow"),
        [0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    )
    .unwrap();
    for (spec, want) in [
        ("t=/dev/zero", "not a regular file"),
        ("t=missing.csv", "no such file"),
        ("t=x.toml", "unknown format"),
        ("1t=x.jsonl", "a name is a letter or `_`"),
        ("t=junk.arrow", "table `t`"),
        ("t", "expected NAME=PATH"),
    ] {
        let o = wasmlink_in(&["sql", "--table", spec, "SELECT 1"], Some(d), &[]);
        assert_eq!(o.status.code(), Some(2), "{spec}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{spec}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{spec}: {}", stderr(&o));
    }
    // A corrupt Parquet file fails the query (found when it is read), in one line.
    let o = wasmlink_in(
        &["sql", "--table", "t=junk.parquet", "SELECT * FROM t"],
        Some(d),
        &[],
    );
    assert!(matches!(o.status.code(), Some(1 | 2)), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // A SQL error: exit 1, one line.
    let o = wasmlink_in(
        &["sql", "--table", "t=x.jsonl", "SELECT nope FROM t"],
        Some(d),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
