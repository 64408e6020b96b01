//! Guests that break the data-exchange ABI (docs/abi.md): every pointer and length they hand
//! back is checked before a byte is read, each violation is one exact error, and the plugin
//! answers the next call on a fresh instance.

use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;

use crate::support::{stderr, wasmlink};

/// An ABI v1 guest with a bump allocator; `$ret` sets the record `(status, ptr, len, cap)`
/// at address 16 and returns 16.
fn guest(functions: &str, alloc_body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 1024))
  (func $alloc (export "wasmlink_alloc") (param $size i32) (param $align i32) (result i32)
    (local $p i32)
    {alloc_body}
    (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (global.set $bump (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.const 1)
        (i32.div_u (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)))))))
    (local.get $p))
  (func (export "wasmlink_free") (param i32 i32 i32))
  (func $ret (param $status i32) (param $ptr i32) (param $len i32) (param $cap i32) (result i32)
    (i32.store (i32.const 16) (local.get $status))
    (i32.store (i32.const 20) (local.get $ptr))
    (i32.store (i32.const 24) (local.get $len))
    (i32.store (i32.const 28) (local.get $cap))
    (i32.const 16))
  (func (export "echo") (param $p i32) (param $n i32) (result i32)
    (local $o i32)
    (local.set $o (call $alloc (local.get $n) (i32.const 1)))
    (memory.copy (local.get $o) (local.get $p) (local.get $n))
    (call $ret (i32.const 0) (local.get $o) (local.get $n) (local.get $n)))
  {functions}
)"#
    );
    wat::parse_str(text).expect("wat")
}

const BAD: &str = r#"
  (data (i32.const 512) "no such user")
  (func (export "oob") (param i32 i32) (result i32)
    (call $ret (i32.const 0) (i32.const 0xffff0000) (i32.const 100) (i32.const 0)))
  (func (export "overflow") (param i32 i32) (result i32)
    (call $ret (i32.const 0) (i32.const 0xfffffff0) (i32.const 0x20) (i32.const 0)))
  (func (export "bad_record") (param i32 i32) (result i32) (i32.const 0xfffffff8))
  (func (export "bad_status") (param i32 i32) (result i32)
    (call $ret (i32.const 7) (i32.const 0) (i32.const 0) (i32.const 0)))
  (func (export "small_cap") (param i32 i32) (result i32)
    (call $ret (i32.const 0) (i32.const 1024) (i32.const 64) (i32.const 8)))
  (func (export "big") (param i32 i32) (result i32)
    (drop (memory.grow (i32.const 40)))
    (call $ret (i32.const 0) (i32.const 0) (i32.const 0x200000) (i32.const 0)))
  (func (export "refuse") (param i32 i32) (result i32)
    (call $ret (i32.const 1) (i32.const 512) (i32.const 12) (i32.const 0)))
  (func (export "junk") (param i32 i32) (result i32)
    (call $ret (i32.const 0) (i32.const 512) (i32.const 12) (i32.const 0)))
  (func (export "wrong_type") (param i32) (result i32) (i32.const 0))
  ;; Gathered results (status 3): lists of (u32 address, u32 length) segments.
  (data (i32.const 700) "World")
  (data (i32.const 720) "Hello, ")
  (data (i32.const 800) "\d0\02\00\00\07\00\00\00\bc\02\00\00\05\00\00\00")
  (data (i32.const 816) "\00\00\ff\ff\64\00\00\00")
  (data (i32.const 864) "{twenty_64k}")
  (func (export "gather_ok") (param i32 i32) (result i32)
    (call $ret (i32.const 3) (i32.const 800) (i32.const 16) (i32.const 0)))
  (func (export "gather_ragged") (param i32 i32) (result i32)
    (call $ret (i32.const 3) (i32.const 800) (i32.const 12) (i32.const 0)))
  (func (export "gather_oob") (param i32 i32) (result i32)
    (call $ret (i32.const 3) (i32.const 800) (i32.const 24) (i32.const 0)))
  (func (export "gather_big") (param i32 i32) (result i32)
    (call $ret (i32.const 3) (i32.const 864) (i32.const 160) (i32.const 0)))
"#;

/// [`BAD`] with its `{twenty_64k}`: twenty segments of the first 64 KiB (1.25 MiB gathered).
fn bad() -> String {
    BAD.replace(
        "{twenty_64k}",
        &"\\00\\00\\00\\00\\00\\00\\01\\00".repeat(20),
    )
}

fn load(name: &str, bytes: &[u8], policy: &str) -> wasmlink::plugin::Plugin {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    host.load(
        name,
        bytes,
        Policy::from_toml(policy, name).expect("policy"),
    )
    .expect("load")
}

#[test]
fn the_host_checks_everything_a_guest_hands_back() {
    let plugin = load("evil", &guest(&bad(), ""), "[limits]\noutput = \"1 MiB\"\n");
    let cases: &[(&str, &str)] = &[
        (
            "oob",
            "plugin `evil`: `oob`: the output 0xffff0000+100 is outside the guest's 131072-byte memory",
        ),
        (
            "overflow",
            "plugin `evil`: `overflow`: the output 0xfffffff0+32 overflows 32 bits",
        ),
        (
            "bad_record",
            "plugin `evil`: `bad_record`: the result record at 0xfffffff8+16 overflows 32 bits",
        ),
        (
            "bad_status",
            "plugin `evil`: `bad_status`: unknown result status 7 (docs/abi.md knows 0, 1, 2 and 3)",
        ),
        (
            "small_cap",
            "plugin `evil`: `small_cap`: the result record's capacity 8 is less than its length 64",
        ),
        (
            "big",
            "plugin `evil`: `big` produced more than 1 MiB of returned data (limits.output)",
        ),
        ("refuse", "plugin `evil`: `refuse` failed: no such user"),
        (
            "gather_ragged",
            "plugin `evil`: `gather_ragged`: a gathered result of 12 bytes is not a list of (u32 address, u32 length) segments",
        ),
        (
            "gather_oob",
            "plugin `evil`: `gather_oob`: segment 2 of the gathered output 0xffff0000+100 is outside the guest's 131072-byte memory",
        ),
        (
            "gather_big",
            "plugin `evil`: `gather_big` produced more than 1 MiB of returned data (limits.output)",
        ),
        (
            "wrong_type",
            "plugin `evil`: `wrong_type`: `wrong_type` is not an ABI function `(i32, i32) -> i32` (docs/abi.md)",
        ),
    ];
    for (function, want) in cases {
        let err = plugin.call_bytes(function, b"hello").unwrap_err();
        assert_eq!(err.to_string(), *want);
        // A guest error (status 1) is an answer, not a broken instance; the rest poison it.
        assert_eq!(err.is_call_failure(), *function != "refuse", "{function}");
        assert_eq!(
            plugin.call_bytes("echo", b"still here").expect("echo"),
            b"still here"
        );
    }
    // Segments are gathered in the order listed, wherever they lie.
    assert_eq!(
        plugin.call_bytes("gather_ok", b"x").expect("gather_ok"),
        b"Hello, World"
    );
    let err = plugin
        .call_arrow(
            "junk",
            &arrow_array::RecordBatch::try_from_iter([(
                "x",
                std::sync::Arc::new(arrow_array::Int32Array::from(vec![1, 2, 3]))
                    as arrow_array::ArrayRef,
            )])
            .expect("batch"),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `evil`: `junk`: returned a truncated Arrow IPC stream: Ipc error: Unexpected End of Stream"
    );
}

#[test]
fn a_broken_allocator_is_refused_before_any_byte_is_written() {
    let null = load(
        "nullalloc",
        &guest("", "(if (local.get $size) (then (return (i32.const 0))))"),
        "",
    );
    assert_eq!(
        null.call_bytes("echo", b"hello").unwrap_err().to_string(),
        "plugin `nullalloc`: `echo`: the guest allocator returned NULL for 5 bytes of input"
    );
    let wild = load(
        "wildalloc",
        &guest("", "(return (i32.const 0x7ffffff0))"),
        "",
    );
    assert_eq!(
        wild.call_bytes("echo", b"hello").unwrap_err().to_string(),
        "plugin `wildalloc`: `echo`: the input buffer the guest allocated at 0x7ffffff0+5 is outside the guest's 131072-byte memory"
    );
    let trap = load(
        "trapalloc",
        &guest(
            "",
            "(if (i32.gt_u (local.get $size) (i32.const 3)) (then unreachable))",
        ),
        "",
    );
    assert_eq!(
        trap.call_bytes("echo", b"hello").unwrap_err().to_string(),
        "plugin `trapalloc`: `echo` trapped: wasm `unreachable` instruction executed"
    );
    assert_eq!(trap.call_bytes("echo", b"hi").expect("small"), b"hi");
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plain = host
        .load(
            "plain",
            &wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "f") (param i32 i32) (result i32) i32.const 0))"#)
                .expect("wat"),
            Policy::default(),
        )
        .expect("load");
    assert_eq!(
        plain.call_bytes("f", b"x").unwrap_err().to_string(),
        "plugin `plain`: `f`: does not export `wasmlink_alloc(size: i32, align: i32) -> i32` (docs/abi.md); for modules of another convention set `abi` in the policy"
    );
}

#[test]
fn bytes_round_trip_through_a_wat_guest() {
    let plugin = load("echo", &guest("", ""), "[limits]\nmemory = \"64 MiB\"\n");
    let mut inst = plugin.instance().expect("instance");
    for size in [0usize, 1, 65536, 1 << 20] {
        let input: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(
            inst.call_bytes("echo", &input).expect("echo"),
            input,
            "{size}"
        );
    }
    let n = inst
        .call_bytes_with("echo", b"zero copy", |out| out.len())
        .expect("in place");
    assert_eq!(n, 9);
}

#[test]
fn the_cli_reports_abi_violations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("evil.wasm");
    std::fs::write(&module, guest(&bad(), "")).expect("write");
    let input = dir.path().join("in.bin");
    std::fs::write(&input, b"hello").expect("write");
    let out = wasmlink(&[
        "call",
        module.to_str().expect("utf-8"),
        "oob",
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "wasmlink: plugin `evil`: `oob`: the output 0xffff0000+100 is outside the guest's 131072-byte memory"
    );
    let out = wasmlink(&[
        "call",
        module.to_str().expect("utf-8"),
        "echo",
        "--input",
        input.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello");
}

/// A compressed Arrow IPC stream (lz4 frames; written by pyarrow), which wasmlink refuses
/// rather than decompress (no decompression bombs).
fn compressed_ipc() -> Vec<u8> {
    std::fs::read(crate::support::root().join("tests/fixtures/compressed-lz4.arrows"))
        .expect("fixture")
}

#[test]
fn compressed_arrow_ipc_is_refused_both_ways() {
    // From the guest: a function returning the compressed stream from a data segment.
    let bytes = compressed_ipc();
    let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    let functions = format!(
        r#"(data (i32.const 8192) "{escaped}")
  (func (export "zipped") (param i32 i32) (result i32)
    (call $ret (i32.const 0) (i32.const 8192) (i32.const {len}) (i32.const 0)))"#,
        len = bytes.len()
    );
    let plugin = load("zipper", &guest(&functions, ""), "");
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "x",
        std::sync::Arc::new(arrow_array::Int64Array::from(vec![1])) as arrow_array::ArrayRef,
    )])
    .expect("batch");
    let err = plugin.call_arrow("zipped", &batch).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "plugin `zipper`: `zipped`: returned compressed Arrow IPC, which wasmlink refuses: "
        ),
        "{err}"
    );
    // From a file given to the CLI.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("zipped.arrows");
    std::fs::write(&input, &bytes).expect("write");
    let module = dir.path().join("zipper.wasm");
    std::fs::write(&module, guest("", "")).expect("write");
    let out = wasmlink(&[
        "call",
        module.to_str().expect("utf-8"),
        "echo",
        "--arrow",
        input.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "wasmlink: {}: compressed Arrow IPC, which wasmlink refuses: ",
            input.display()
        )),
        "{}",
        stderr(&out)
    );
}

/// `ipc` with the offset of buffer `which` of its first record batch message set to `offset`,
/// so that the buffer lies past the message's body. The messages start at `start` (0 for a
/// stream, after the magic for a file).
fn with_buffer_offset(ipc: &[u8], start: usize, which: usize, offset: i64) -> Vec<u8> {
    patch_batch(ipc, start, offset, |rb| {
        std::ptr::from_ref(rb.buffers().expect("buffers").get(which)) as usize
    })
}

/// `ipc` with the 8 bytes at the address `at` picks in its first record batch message set to
/// `value` (`at` returns a pointer into `ipc`).
fn patch_batch(
    ipc: &[u8],
    start: usize,
    value: i64,
    at: impl Fn(&arrow_ipc::RecordBatch<'_>) -> usize,
) -> Vec<u8> {
    let mut out = ipc.to_vec();
    let mut next = start;
    let word = |o: usize| u32::from_le_bytes(ipc[o..o + 4].try_into().expect("4 bytes"));
    // A file pads its magic to the writer's alignment.
    while word(next) == 0 {
        next += 4;
    }
    loop {
        assert_eq!(word(next), 0xFFFF_FFFF, "a continuation marker at {next}");
        let len = word(next + 4) as usize;
        let message = arrow_ipc::root_as_message(&ipc[next + 8..next + 8 + len]).expect("message");
        if let Some(rb) = message.header_as_record_batch() {
            let pos = at(&rb) - ipc.as_ptr() as usize;
            out[pos..pos + 8].copy_from_slice(&value.to_le_bytes());
            return out;
        }
        next += 8 + len + usize::try_from(message.bodyLength()).expect("body length");
    }
}

fn int_batch() -> arrow_array::RecordBatch {
    arrow_array::RecordBatch::try_from_iter([(
        "x",
        std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as arrow_array::ArrayRef,
    )])
    .expect("batch")
}

/// A WAT data segment at `at` holding `bytes`.
fn data_segment(at: u32, bytes: &[u8]) -> String {
    let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    format!(r#"(data (i32.const {at}) "{escaped}")"#)
}

#[test]
fn a_guest_output_with_a_buffer_past_its_body_is_an_abi_error() {
    let crafted = with_buffer_offset(
        &wasmlink::exchange::encode_stream(&[int_batch()]).expect("encode"),
        0,
        1,
        1 << 20,
    );
    let functions = format!(
        r#"{}
  (func (export "crafted") (param i32 i32) (result i32)
    (call $ret (i32.const 0) (i32.const 8192) (i32.const {len}) (i32.const 0)))"#,
        data_segment(8192, &crafted),
        len = crafted.len()
    );
    let module = guest(&functions, "");
    let plugin = load("crafty", &module, "");
    let expected = "plugin `crafty`: `crafted`: returned malformed Arrow IPC: buffer 1 (offset \
                    1048576, length 24) lies outside its message's 64-byte body";
    let mut inst = plugin.instance().expect("instance");
    let err = inst.call_arrow("crafted", &int_batch()).unwrap_err();
    assert_eq!(err.to_string(), expected);
    assert!(inst.is_poisoned(), "the instance is thrown away");
    drop(inst);
    let err = plugin
        .instance()
        .expect("instance")
        .call_arrow_stream("crafted", &[int_batch(), int_batch()])
        .unwrap_err();
    assert_eq!(err.to_string(), expected);
    // The next call gets a fresh instance and works.
    let back = plugin.call_arrow("echo", &int_batch()).expect("echo");
    assert_eq!(back, int_batch());

    // `call --arrow` on the same function: exit 1 and the same one line, no panic.
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("crafty.wasm");
    std::fs::write(&wasm, &module).expect("write");
    let input = dir.path().join("in.arrows");
    std::fs::write(
        &input,
        wasmlink::exchange::encode_stream(&[int_batch()]).expect("encode"),
    )
    .expect("write");
    let out = wasmlink(&[
        "call",
        wasm.to_str().expect("utf-8"),
        "crafted",
        "--arrow",
        input.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("wasmlink: {expected}\n"));
}

#[test]
fn an_arrow_input_file_with_a_buffer_past_its_body_is_a_usage_error() {
    use wasmlink::plugin::IpcError;
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("echo.wasm");
    std::fs::write(&wasm, guest("", "")).expect("write");
    // The stream format, and the file format (messages after the 8-byte magic, then a footer).
    let stream = with_buffer_offset(
        &wasmlink::exchange::encode_stream(&[int_batch()]).expect("encode"),
        0,
        1,
        1 << 20,
    );
    let mut file = Vec::new();
    {
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut file, &int_batch().schema())
            .expect("writer");
        w.write(&int_batch()).expect("write");
        w.finish().expect("finish");
    }
    let file = with_buffer_offset(&file, 8, 1, 1 << 20);
    assert!(matches!(
        wasmlink::exchange::read_ipc(&stream),
        Err(IpcError::Malformed(_))
    ));
    assert!(matches!(
        wasmlink::exchange::read_ipc(&file),
        Err(IpcError::File(_))
    ));
    for (name, bytes, kind) in [
        ("crafted.arrows", &stream, "malformed Arrow IPC"),
        ("crafted.arrow", &file, "not a valid Arrow IPC file"),
    ] {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).expect("write");
        let out = wasmlink(&[
            "call",
            wasm.to_str().expect("utf-8"),
            "echo",
            "--arrow",
            input.to_str().expect("utf-8"),
        ]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "wasmlink: {}: {kind}: buffer 1 (offset 1048576, length 24) lies outside its \
                 message's 64-byte body\n",
                input.display()
            )
        );
    }
}

#[test]
fn an_in_place_result_over_rewritten_metadata_is_an_abi_error() {
    // A column type whose buffers the host does not map, so the whole body is read back.
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "s",
        std::sync::Arc::new(arrow_array::StringViewArray::from(vec!["a", "bc", "def"]))
            as arrow_array::ArrayRef,
    )])
    .expect("batch");
    let crafted = with_buffer_offset(
        &wasmlink::exchange::encode_stream(std::slice::from_ref(&batch)).expect("encode"),
        0,
        1,
        1 << 20,
    );
    // The guest writes the crafted stream over its input and reports column 0 as rewritten.
    let functions = format!(
        r#"{}
  (func (export "inplace") (param $p i32) (param $n i32) (result i32)
    (memory.copy (local.get $p) (i32.const 32768) (i32.const {len}))
    (i32.store (i32.const 512) (i32.const 0))
    (call $ret (i32.const 2) (i32.const 512) (i32.const 4) (i32.const 0)))"#,
        data_segment(32768, &crafted),
        len = crafted.len()
    );
    let plugin = load("inplace", &guest(&functions, ""), "");
    let mut inst = plugin.instance().expect("instance");
    let err = inst.call_arrow("inplace", &batch).unwrap_err();
    assert!(
        matches!(err, wasmlink::plugin::PluginError::Abi { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "plugin `inplace`: `inplace`: after an in-place call, the input stream is no longer \
             valid: malformed Arrow IPC: buffer 1 (offset 1048576, "
        ),
        "{text}"
    );
    assert!(inst.is_poisoned());
}

#[test]
fn short_union_buffers_and_negative_lengths_are_malformed_ipc() {
    use arrow_array::{ArrayRef, Int32Array, RecordBatch, UnionArray};
    use arrow_schema::{DataType, Field, UnionFields};
    use std::sync::Arc;
    let fields =
        UnionFields::try_new([0], [Field::new("i", DataType::Int32, false)]).expect("fields");
    let union = UnionArray::try_new(
        fields,
        vec![0i8; 4].into(),
        None,
        vec![Arc::new(Int32Array::from(vec![1, 2, 3, 4])) as ArrayRef],
    )
    .expect("union");
    let batch = RecordBatch::try_from_iter([("u", Arc::new(union) as ArrayRef)]).expect("batch");
    let ipc = wasmlink::exchange::encode_stream(&[batch]).expect("encode");
    assert!(wasmlink::exchange::read_ipc(&ipc).is_ok());
    // The type ids (buffer 0 of a V5 union) shortened to 1 byte for 4 rows.
    let short = patch_batch(&ipc, 0, 1, |rb| {
        std::ptr::from_ref(rb.buffers().expect("buffers").get(0)) as usize + 8
    });
    assert_eq!(
        wasmlink::exchange::read_ipc(&short)
            .unwrap_err()
            .to_string(),
        "malformed Arrow IPC: the union column `u` of length 4 has shorter type-id or offset \
         buffers"
    );
    // A node of negative length.
    let negative = patch_batch(&ipc, 0, -5, |rb| {
        std::ptr::from_ref(rb.nodes().expect("nodes").get(0)) as usize
    });
    assert_eq!(
        wasmlink::exchange::read_ipc(&negative)
            .unwrap_err()
            .to_string(),
        "malformed Arrow IPC: field node 0 has length -5 and null count 0"
    );
}

#[test]
fn the_streaming_reader_checks_every_message_too() {
    use wasmlink::exchange::IpcReader;
    use wasmlink::plugin::IpcError;
    let stream = wasmlink::exchange::encode_stream(&[int_batch(), int_batch()]).expect("encode");
    let mut file = Vec::new();
    {
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut file, &int_batch().schema())
            .expect("writer");
        w.write(&int_batch()).expect("write");
        w.write(&int_batch()).expect("write");
        w.finish().expect("finish");
    }
    let read = |r: IpcReader<std::io::Cursor<&[u8]>>| r.collect::<Result<Vec<_>, _>>();
    let batches = read(IpcReader::stream(std::io::Cursor::new(&stream[..])).expect("stream"))
        .expect("batches");
    assert_eq!(batches, vec![int_batch(), int_batch()]);
    let batches =
        read(IpcReader::file(std::io::Cursor::new(&file[..])).expect("file")).expect("batches");
    assert_eq!(batches, vec![int_batch(), int_batch()]);

    let expected = "buffer 1 (offset 1048576, length 24) lies outside its message's 64-byte body";
    let crafted = with_buffer_offset(&stream, 0, 1, 1 << 20);
    let mut reader = IpcReader::stream(std::io::Cursor::new(&crafted[..])).expect("schema");
    assert_eq!(reader.schema(), int_batch().schema());
    match reader.next() {
        Some(Err(IpcError::Malformed(m))) => assert_eq!(m, expected),
        other => panic!("{other:?}"),
    }
    assert!(reader.next().is_none(), "the reader ends after an error");
    let crafted = with_buffer_offset(&file, 8, 1, 1 << 20);
    let mut reader = IpcReader::file(std::io::Cursor::new(&crafted[..])).expect("footer");
    match reader.next() {
        Some(Err(IpcError::File(m))) => assert_eq!(m, expected),
        other => panic!("{other:?}"),
    }
    // Truncated anywhere: an error or the batches before the cut (a stream may end without
    // its end marker), never a panic or a batch made up.
    for cut in 0..stream.len() {
        let r = IpcReader::stream(std::io::Cursor::new(&stream[..cut]))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>());
        assert!(
            r.as_ref()
                .map_or(true, |b| b.len() < 2 || cut >= stream.len() - 8),
            "cut {cut}: {r:?}"
        );
    }
    for cut in 0..stream.len() {
        let r = wasmlink::exchange::read_ipc(&stream[..cut]);
        assert!(
            r.as_ref()
                .map_or(true, |b| b.len() < 2 || cut >= stream.len() - 8),
            "read_ipc, cut {cut}: {r:?}"
        );
    }
    for cut in 0..file.len() {
        let r = wasmlink::exchange::read_ipc(&file[..cut]);
        assert!(r.map_or(true, |b| b.is_empty()), "read_ipc, cut {cut}");
        let r = IpcReader::file(std::io::Cursor::new(&file[..cut]))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>());
        assert!(r.is_err(), "cut {cut}");
    }
}

/// Every truncation and every single-bit flip of a valid two-batch stream (an Int32 column with
/// nulls and a Utf8 column) decodes or is an error, never a panic: the host's IPC checks come
/// before arrow builds an array. (The fuzz target `arrow_stream` found a flip that made a
/// buffer misaligned and panicked arrow.)
#[test]
fn no_truncation_or_bit_flip_of_an_arrow_stream_panics_the_host() {
    use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter([
        (
            "n",
            Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec!["a", "bc", ""])) as ArrayRef,
        ),
    ])
    .unwrap();
    let good = wasmlink::exchange::encode_stream(&[batch.clone(), batch]).unwrap();
    assert_eq!(
        wasmlink::exchange::decode_stream(arrow_buffer::Buffer::from(good.as_slice()))
            .unwrap()
            .len(),
        2
    );
    let try_one = |bytes: &[u8]| {
        std::panic::catch_unwind(|| {
            let _ = wasmlink::exchange::decode_stream(arrow_buffer::Buffer::from(bytes));
            let _ = wasmlink::exchange::read_ipc(bytes);
        })
        .is_ok()
    };
    let mut panics = Vec::new();
    for n in 0..good.len() {
        if !try_one(&good[..n]) {
            panics.push(format!("truncated to {n}"));
        }
    }
    for i in 0..good.len() * 8 {
        let mut bad = good.clone();
        bad[i / 8] ^= 1 << (i % 8);
        if !try_one(&bad) {
            panics.push(format!("byte {} bit {}", i / 8, i % 8));
        }
    }
    assert!(
        panics.is_empty(),
        "the decoder panicked on {} inputs: {:?}",
        panics.len(),
        &panics[..panics.len().min(10)]
    );
}
