//! `--module NAME=PATH`, repeated: one flat namespace assembled from the exports of several
//! plain modules, a later export replacing an earlier one (`Object.assign`).

use std::path::Path;

use crate::support::{stderr, stdout, wasmlink_in, wat_fixture};

fn run(d: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    wasmlink_in(&all, Some(d), &[])
}

fn fixtures(d: &Path) {
    for name in [
        "fe_module1",
        "fe_module2",
        "fe_override",
        "fe_only_f",
        "fe_named",
    ] {
        wat_fixture(name, d, &format!("{name}.wasm"));
    }
}

/// module1 exports `f` (and `print`); module2 imports `env.f` and `env.print`.
#[test]
fn env_from_one_module_resolves_env_imports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    let out = run(d, &["--module", "env=fe_module1.wasm", "fe_module2.wasm"]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert_eq!(stdout(&out), "printed 42\n");
}

#[test]
fn a_later_module_of_the_namespace_replaces_an_earlier_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    // fe_override's `f` (40 + 10, calling module1's through the namespace) replaces module1's.
    let out = run(
        d,
        &[
            "--module",
            "env=fe_module1.wasm",
            "--module",
            "env=fe_override.wasm",
            "fe_module2.wasm",
        ],
    );
    assert_eq!(out.status.code(), Some(52), "{}", stderr(&out));
    assert_eq!(stdout(&out), "printed 52\n");
    // Any module name works the same way; one file may serve two namespaces.
    let out = run(
        d,
        &[
            "--module",
            "lib=fe_module1.wasm",
            "--module",
            "env=fe_module1.wasm",
            "--module",
            "lib=fe_override.wasm",
            "fe_named.wasm",
        ],
    );
    assert_eq!(out.status.code(), Some(52), "{}", stderr(&out));
    assert_eq!(stdout(&out), "printed 52\n");
}

/// An import nothing provides: exit 127 and one line naming the importer, module and field.
#[test]
fn an_import_nothing_provides_is_one_line_naming_module_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    // The namespace is given but none of its modules exports `print`.
    let out = run(d, &["--module", "env=fe_only_f.wasm", "fe_module2.wasm"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "fe_module2.wasm: unknown import: `env::print` is exported by none of fe_only_f.wasm"
        ),
        "{err}"
    );
    // A module of the namespace sees only what the modules before it export: given first,
    // fe_override's own `env.f` import is provided by nothing.
    let out = run(
        d,
        &[
            "--module",
            "env=fe_override.wasm",
            "--module",
            "env=fe_module1.wasm",
            "fe_module2.wasm",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("fe_override.wasm: unknown import: `env::f` has not been defined"),
        "{err}"
    );
    // A module name nothing was given for.
    let out = run(d, &["--module", "lib=fe_module1.wasm", "fe_module2.wasm"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(
        err.contains("unknown import: `env::f` has not been defined")
            && err.contains("--module env=FILE"),
        "{err}"
    );
}
