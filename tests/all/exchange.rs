//! Data exchange through the plugin API with guests built from source on the SDK
//! (guest/examples): every string convention, byte round trips from empty to 256 MiB, Arrow
//! batches with nested and dictionary columns, in-place transforms, docproc, the CLI, and no
//! growth of guest memory over a million calls.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StringDictionaryBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StructArray};
use wasmlink::plugin::{HostConfig, Plugin, PluginHost};
use wasmlink::policy::Policy;

use crate::guest_abi::{documents, modules_dir, sample_batch};
use crate::support::{stderr, wasmlink};

/// One host for the tests: the greeter is compiled once and shared (by sha256) by every load.
fn host() -> &'static PluginHost {
    static HOST: std::sync::OnceLock<PluginHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(HostConfig::default()).expect("host"))
}

fn greeter(policy: &str) -> Plugin {
    host()
        .load_file(
            &modules_dir().join("greeter.wasm"),
            Policy::from_toml(policy, "test policy").expect("policy"),
        )
        .expect("load greeter")
}

#[test]
fn greet_in_every_convention() {
    for (abi, function) in [
        ("wasmlink", "greet"),
        ("seed", "greet_seed"),
        ("cstring", "greet_c"),
        ("ptrlen", "greet_ptrlen"),
    ] {
        let plugin = greeter(&format!("abi = \"{abi}\"\n"));
        assert_eq!(
            plugin.call_str(function, "World").expect(abi),
            "Hello, World!",
            "{abi}"
        );
        assert_eq!(
            plugin.call_str(function, "").expect(abi),
            "Hello, !",
            "{abi}"
        );
    }
    let plugin = greeter("");
    let err = plugin.call_str("fail", "now").unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `greeter`: `fail` failed: you asked me to fail: now"
    );
    assert!(
        !err.is_call_failure(),
        "a guest error leaves the instance usable"
    );
    let err = plugin.call_bytes("greet", &[0xff, 0xfe]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `greeter`: `greet` failed: input is not valid UTF-8"
    );
    let cstr = greeter("abi = \"cstring\"\n");
    assert_eq!(
        cstr.call_bytes("greet_c", b"a\0b").unwrap_err().to_string(),
        "plugin `greeter`: `greet_c`: the input contains a NUL byte, which a C string cannot carry"
    );
}

#[test]
fn bytes_round_trip_from_empty_to_256_mib() {
    let plugin = greeter("[limits]\nmemory = \"1 GiB\"\noutput = \"300 MiB\"\n");
    let mut inst = plugin.instance().expect("instance");
    for size in [0usize, 1, 64 << 10, 16 << 20, 256 << 20] {
        let input: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let same = inst
            .call_bytes_with("echo", &input, |out| out == input.as_slice())
            .expect("echo");
        assert!(same, "echo of {size} bytes");
    }
    // Over the output cap: a clear error, and the plugin carries on.
    let small = greeter("[limits]\noutput = \"1 MiB\"\n");
    let err = small.call_bytes("echo", &vec![7u8; 2 << 20]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `greeter`: `echo` produced more than 1 MiB of returned data (limits.output)"
    );
    assert_eq!(small.call_bytes("echo", b"ok").expect("next"), b"ok");
}

fn nested_batch() -> RecordBatch {
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("a");
    tags.values().append_value("b");
    tags.append(true);
    tags.append(false);
    tags.values().append_value("c");
    tags.append(true);
    let mut dict = StringDictionaryBuilder::<Int32Type>::new();
    dict.append_value("red");
    dict.append_null();
    dict.append_value("red");
    let point = StructArray::from(vec![
        (
            Arc::new(arrow_schema::Field::new(
                "x",
                arrow_schema::DataType::Int64,
                false,
            )),
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
        (
            Arc::new(arrow_schema::Field::new(
                "y",
                arrow_schema::DataType::Int64,
                true,
            )),
            Arc::new(Int64Array::from(vec![Some(4), None, Some(6)])) as ArrayRef,
        ),
    ]);
    RecordBatch::try_from_iter([
        ("tags", Arc::new(tags.finish()) as ArrayRef),
        ("colour", Arc::new(dict.finish()) as ArrayRef),
        ("point", Arc::new(point) as ArrayRef),
    ])
    .expect("batch")
}

#[test]
fn arrow_batches_round_trip_with_nested_and_dictionary_columns() {
    let plugin = greeter("");
    let mut inst = plugin.instance().expect("instance");
    for batch in [sample_batch(), nested_batch(), documents()] {
        assert_eq!(inst.call_arrow("echo_arrow", &batch).expect("echo"), batch);
    }
    let two = inst
        .call_arrow_stream("echo_arrow", &[sample_batch(), sample_batch()])
        .expect("stream");
    assert_eq!(two, vec![sample_batch(), sample_batch()]);
    // An empty batch is still a batch.
    let empty = sample_batch().slice(0, 0);
    assert_eq!(inst.call_arrow("echo_arrow", &empty).expect("empty"), empty);
}

#[test]
fn new_batches_come_back_gathered_and_their_buffers_are_freed() {
    let plugin = greeter("");
    let mut inst = plugin.instance().expect("instance");
    // `echo_copy_arrow` returns new arrays over the input's buffers: a gathered result (status 3)
    // whose body segments lie in the input region; nested, dictionary and sliced columns too.
    for batch in [
        sample_batch(),
        nested_batch(),
        documents(),
        sample_batch().slice(1, 2),
    ] {
        let out = inst
            .call_arrow("echo_copy_arrow", &batch)
            .expect("echo_copy_arrow");
        assert_eq!(out, batch);
    }
    // Several batches in, one gathered stream out.
    let two = [sample_batch(), sample_batch().slice(0, 2)];
    let out = inst
        .call_arrow_stream("echo_copy_arrow", &two)
        .expect("stream");
    assert_eq!(out, two);
    // `double` returns a column the guest allocated: its buffers are kept until the host frees
    // the segment list, then freed. 8 MiB a call: memory does not grow after the first calls.
    let x: Vec<i64> = (0..1 << 20).collect();
    let batch =
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(x.clone())) as ArrayRef)])
            .expect("batch");
    let mem = inst.memory().expect("memory");
    for _ in 0..3 {
        inst.call_arrow("double", &batch).expect("double");
    }
    let before = mem.data_size(inst.store_mut());
    for _ in 0..30 {
        let out = inst.call_arrow("double", &batch).expect("double");
        assert_eq!(
            out.column(0).as_primitive::<Int64Type>().value(12345),
            24690
        );
    }
    assert_eq!(mem.data_size(inst.store_mut()), before, "guest memory grew");
}

#[test]
fn in_place_transforms_copy_back_only_what_changed() {
    let plugin = greeter("");
    let batch = sample_batch();
    let out = plugin
        .call_arrow("shout_in_place", &batch)
        .expect("in place");
    assert_eq!(
        out.column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some(-1), None, Some(3)]
    );
    assert_eq!(
        out.column(1).as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("ADA"), Some("GRACE"), None]
    );
    // Unchanged columns are the caller's own arrays: not copied at all.
    for i in [2, 3] {
        assert!(
            Arc::ptr_eq(out.column(i), batch.column(i)),
            "column {i} was copied"
        );
    }
    // The input batch itself is untouched.
    assert_eq!(batch, sample_batch());
}

#[test]
fn docproc_processes_documents() {
    let plugin = host()
        .load_file(&modules_dir().join("docproc.wasm"), Policy::default())
        .expect("docproc");
    let out = plugin.call_arrow("process", &documents()).expect("process");
    let names: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "title",
            "word_count",
            "content_length",
            "tag_count",
            "year"
        ]
    );
    assert_eq!(
        out.column(1).as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("Hello World"), Some("Second"), Some("Über")]
    );
    assert_eq!(
        out.column(4).as_primitive::<Int64Type>().values().to_vec(),
        vec![2, 0, 3]
    );
    let missing =
        RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
            .expect("batch");
    let err = plugin.call_arrow("process", &missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin `docproc`: `process` failed: "),
        "{err}"
    );
}

#[test]
fn a_million_calls_do_not_grow_guest_memory() {
    let plugin = greeter("");
    let mut inst = plugin.instance().expect("instance");
    let input = [42u8; 64];
    let mem = inst.memory().expect("memory");
    for _ in 0..1000 {
        inst.call_bytes_with("echo", &input, |o| o.len())
            .expect("warm-up");
    }
    let before = mem.data_size(inst.store_mut());
    for i in 0..1_000_000u32 {
        let n = inst
            .call_bytes_with("echo", &input, |o| o.len())
            .expect("echo");
        assert_eq!(n, 64, "call {i}");
    }
    assert_eq!(mem.data_size(inst.store_mut()), before, "guest memory grew");
}

#[test]
fn the_cli_calls_byte_and_arrow_functions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = modules_dir().join("greeter.wasm");
    let m = module.to_str().expect("utf-8");
    let name = dir.path().join("name.txt");
    std::fs::write(&name, "CLI").expect("write");
    let out = wasmlink(&["call", m, "greet", "--input", name.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"Hello, CLI!");
    let input = dir.path().join("in.arrow");
    std::fs::write(
        &input,
        wasmlink::exchange::encode_stream(&[sample_batch()]).expect("encode"),
    )
    .expect("write");
    let output = dir.path().join("out.arrow");
    let out = wasmlink(&[
        "call",
        m,
        "echo_arrow",
        "--arrow",
        input.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let back = wasmlink::exchange::read_ipc(&std::fs::read(&output).expect("read")).expect("ipc");
    assert_eq!(back, vec![sample_batch()]);
    let out = wasmlink(&[
        "call",
        m,
        "echo_arrow",
        "--arrow",
        name.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!("wasmlink: {}: ", name.display())),
        "{}",
        stderr(&out)
    );
}
