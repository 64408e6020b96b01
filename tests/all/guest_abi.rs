//! The guest side of the data-exchange ABI (docs/abi.md), driven by hand with plain wasmtime:
//! the contract between the guest SDK (guest/) and the host. The modules are built from source
//! by scripts/build-guests.sh.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::builder::{MapBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::support;

const OK: u32 = 0;
const ERROR: u32 = 1;
const IN_PLACE: u32 = 2;
const GATHERED: u32 = 3;

pub(crate) fn modules_dir() -> PathBuf {
    support::guest_modules()
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// Each module compiled once per process.
fn module(name: &str) -> Module {
    static MODULES: OnceLock<Mutex<Vec<(String, Module)>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap();
    if let Some((_, m)) = modules.iter().find(|(n, _)| n == name) {
        return m.clone();
    }
    let path = modules_dir().join(format!("{name}.wasm"));
    let m =
        Module::from_file(engine(), &path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    modules.push((name.to_string(), m.clone()));
    m
}

/// One instance of a guest module, called through its raw exports.
struct Guest {
    store: Store<WasiP1Ctx>,
    instance: Instance,
    memory: Memory,
}

impl Guest {
    fn new(name: &str) -> Guest {
        let mut linker = Linker::new(engine());
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c).unwrap();
        let mut store = Store::new(engine(), WasiCtxBuilder::new().build_p1());
        let instance = linker.instantiate(&mut store, &module(name)).unwrap();
        let memory = instance
            .get_memory(&mut store, "memory")
            .expect("exports memory");
        Guest {
            store,
            instance,
            memory,
        }
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    fn call1(&mut self, name: &str, a: i32) -> i32 {
        let f = self
            .instance
            .get_typed_func::<i32, i32>(&mut self.store, name)
            .unwrap();
        f.call(&mut self.store, a).unwrap()
    }

    fn call2(&mut self, name: &str, a: i32, b: i32) -> i32 {
        let f = self
            .instance
            .get_typed_func::<(i32, i32), i32>(&mut self.store, name)
            .unwrap();
        f.call(&mut self.store, (a, b)).unwrap()
    }

    fn call3(&mut self, name: &str, a: u32, b: u32, c: u32) {
        let f = self
            .instance
            .get_typed_func::<(i32, i32, i32), ()>(&mut self.store, name)
            .unwrap();
        f.call(&mut self.store, (a as i32, b as i32, c as i32))
            .unwrap()
    }

    /// `[ptr, ptr+len)`, bounds-checked the way the host must (no overflow, inside memory).
    fn read(&self, ptr: u32, len: u32) -> Vec<u8> {
        let data = self.memory.data(&self.store);
        let end = (ptr as usize)
            .checked_add(len as usize)
            .expect("ptr + len overflows");
        assert!(
            end <= data.len(),
            "[{ptr}, {end}) is outside memory of {} bytes",
            data.len()
        );
        data[ptr as usize..end].to_vec()
    }

    fn read_u32s<const N: usize>(&self, ptr: u32) -> [u32; N] {
        let bytes = self.read(ptr, 4 * N as u32);
        std::array::from_fn(|i| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()))
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) {
        self.memory
            .write(&mut self.store, ptr as usize, bytes)
            .unwrap();
    }

    fn abi_alloc(&mut self, size: u32, align: u32) -> u32 {
        self.call2("wasmlink_alloc", size as i32, align as i32) as u32
    }

    /// ABI v1: alloc(len, 64), write, call; read the output (gathering a status-3 list of
    /// segments), then free the input and the output.
    /// Returns (status, output bytes, the input region as the function left it).
    fn call_abi_full(&mut self, func: &str, input: &[u8]) -> (u32, Vec<u8>, Vec<u8>) {
        let len = input.len() as u32;
        let in_ptr = self.abi_alloc(len, 64);
        assert_ne!(in_ptr, 0, "wasmlink_alloc({len}, 64) failed");
        assert_eq!(
            in_ptr % 64,
            0,
            "wasmlink_alloc({len}, 64) = {in_ptr} is not 64-aligned"
        );
        self.write(in_ptr, input);
        let record = self.call2(func, in_ptr as i32, len as i32) as u32;
        assert_eq!(record % 4, 0, "result record at {record} is not 4-aligned");
        let [status, ptr, out_len, cap] = self.read_u32s::<4>(record);
        assert!(cap == 0 || cap >= out_len, "cap {cap} < len {out_len}");
        let mut out = self.read(ptr, out_len);
        if status == GATHERED {
            assert_eq!(out_len % 8, 0, "a gathered list of {out_len} bytes");
            out = out
                .chunks_exact(8)
                .flat_map(|e| {
                    let w = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
                    self.read(w(0), w(4))
                })
                .collect();
        }
        let input_after = self.read(in_ptr, len);
        self.call3("wasmlink_free", in_ptr, len, 64);
        self.call3("wasmlink_free", ptr, cap, 1);
        (status, out, input_after)
    }

    fn call_abi(&mut self, func: &str, input: &[u8]) -> (u32, Vec<u8>) {
        let (status, out, _) = self.call_abi_full(func, input);
        (status, out)
    }

    /// "seed": allocate(len), call -> &(ptr, len), deallocate both.
    fn call_seed(&mut self, func: &str, input: &[u8]) -> Vec<u8> {
        let len = input.len() as i32;
        let in_ptr = self.call1("allocate", len);
        self.write(in_ptr as u32, input);
        let record = self.call2(func, in_ptr, len) as u32;
        let [ptr, out_len] = self.read_u32s::<2>(record);
        let out = self.read(ptr, out_len);
        self.call2_void("deallocate", in_ptr, len);
        self.call2_void("deallocate", ptr as i32, out_len as i32);
        out
    }

    fn call2_void(&mut self, name: &str, a: i32, b: i32) {
        let f = self
            .instance
            .get_typed_func::<(i32, i32), ()>(&mut self.store, name)
            .unwrap();
        f.call(&mut self.store, (a, b)).unwrap()
    }

    /// "cstring": allocate(len + 1) with a NUL, call -> NUL-terminated output.
    fn call_cstring(&mut self, func: &str, input: &str) -> String {
        let len = input.len() as i32;
        let in_ptr = self.call1("allocate", len + 1);
        let mut bytes = input.as_bytes().to_vec();
        bytes.push(0);
        self.write(in_ptr as u32, &bytes);
        let out_ptr = self.call1(func, in_ptr) as u32;
        let data = self.memory.data(&self.store);
        let n = data[out_ptr as usize..]
            .iter()
            .position(|&b| b == 0)
            .expect("NUL terminator");
        let out = String::from_utf8(data[out_ptr as usize..out_ptr as usize + n].to_vec()).unwrap();
        self.call2_void("deallocate", in_ptr, len + 1);
        self.call2_void("deallocate", out_ptr as i32, n as i32 + 1);
        out
    }

    /// "ptrlen": allocate(len), call -> (ptr << 32) | len.
    fn call_ptrlen(&mut self, func: &str, input: &[u8]) -> Vec<u8> {
        let len = input.len() as i32;
        let in_ptr = self.call1("allocate", len);
        self.write(in_ptr as u32, input);
        let f = self
            .instance
            .get_typed_func::<(i32, i32), i64>(&mut self.store, func)
            .unwrap();
        let packed = f.call(&mut self.store, (in_ptr, len)).unwrap() as u64;
        let (ptr, out_len) = ((packed >> 32) as u32, packed as u32);
        let out = self.read(ptr, out_len);
        self.call2_void("deallocate", in_ptr, len);
        self.call2_void("deallocate", ptr as i32, out_len as i32);
        out
    }
}

fn ipc(batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.into_inner().unwrap()
}

fn batches(bytes: &[u8]) -> Vec<RecordBatch> {
    StreamReader::try_new(bytes, None)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

#[test]
fn abi_version_and_allocator() {
    for name in ["greeter", "docproc", "c-upper"] {
        let mut g = Guest::new(name);
        let f = g
            .instance
            .get_typed_func::<(), i32>(&mut g.store, "wasmlink_abi_version")
            .unwrap();
        assert_eq!(f.call(&mut g.store, ()).unwrap(), 1, "{name}");
        // Size 0 returns the alignment (dangling, non-null); freeing it is a no-op.
        assert_eq!(g.abi_alloc(0, 64), 64, "{name}");
        g.call3("wasmlink_free", 64, 0, 64);
        // A bad alignment or an impossible size is 0, not a trap.
        assert_eq!(g.abi_alloc(16, 3), 0, "{name}");
        assert_eq!(g.abi_alloc(u32::MAX, 8), 0, "{name}");
        for align in [1, 8, 64, 4096] {
            let p = g.abi_alloc(100, align);
            assert!(
                p != 0 && p.is_multiple_of(align),
                "{name}: alloc(100, {align}) = {p}"
            );
            g.call3("wasmlink_free", p, 100, align);
        }
    }
}

#[test]
fn greet_in_every_convention() {
    let mut g = Guest::new("greeter");
    assert_eq!(
        g.call_abi("greet", b"World"),
        (OK, b"Hello, World!".to_vec())
    );
    assert_eq!(g.call_abi("greet", b""), (OK, b"Hello, !".to_vec()));
    assert_eq!(g.call_seed("greet_seed", b"Seed"), b"Hello, Seed!");
    assert_eq!(g.call_cstring("greet_c", "C"), "Hello, C!");
    assert_eq!(
        g.call_ptrlen("greet_ptrlen", "Rust".as_bytes()),
        b"Hello, Rust!"
    );
    assert_eq!(
        g.call_ptrlen("greet_ptrlen", "wörld".as_bytes()),
        "Hello, wörld!".as_bytes()
    );
    // Invalid UTF-8 for a &str parameter is status 1 with the documented message.
    let (status, out) = g.call_abi("greet", &[0xff, 0xfe]);
    assert_eq!(
        (status, text(out)),
        (ERROR, "input is not valid UTF-8".to_string())
    );
}

#[test]
fn fail_is_status_1_with_the_message() {
    let mut g = Guest::new("greeter");
    let (status, out) = g.call_abi("fail", b"now");
    assert_eq!(
        (status, text(out)),
        (ERROR, "you asked me to fail: now".to_string())
    );
    // The instance is healthy afterwards.
    assert_eq!(
        g.call_abi("greet", b"again"),
        (OK, b"Hello, again!".to_vec())
    );
}

#[test]
fn echo_bytes() {
    let mut g = Guest::new("greeter");
    for len in [0usize, 1, 65536] {
        let input: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        assert_eq!(
            g.call_abi("echo", &input),
            (OK, input.clone()),
            "echo of {len} bytes"
        );
    }
}

#[test]
fn echo_releases_memory() {
    let mut g = Guest::new("greeter");
    let input = vec![7u8; 65536];
    for _ in 0..20 {
        g.call_abi("echo", &input);
    }
    let settled = g.memory.data_size(&g.store);
    for _ in 0..2000 {
        assert_eq!(g.call_abi("echo", &input).0, OK);
    }
    assert_eq!(
        g.memory.data_size(&g.store),
        settled,
        "memory grew over 2000 echo calls"
    );
}

pub(crate) fn sample_batch() -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)]));
    let names: ArrayRef = Arc::new(StringArray::from(vec![Some("ada"), Some("grace"), None]));
    let score: ArrayRef = Arc::new(Float64Array::from(vec![1.5, 2.5, -0.0]));
    let flag: ArrayRef = Arc::new(BooleanArray::from(vec![true, false, true]));
    RecordBatch::try_from_iter([
        ("id", ids),
        ("name", names),
        ("score", score),
        ("flag", flag),
    ])
    .unwrap()
}

#[test]
fn echo_arrow_round_trip() {
    let mut g = Guest::new("greeter");
    let batch = sample_batch();
    // A single batch passed through unchanged is answered in place with no column: the host
    // reuses its own batch (status 2, empty list), and the input region is left as written.
    let input = ipc(std::slice::from_ref(&batch));
    let (status, out, input_after) = g.call_abi_full("echo_arrow", &input);
    assert_eq!(status, IN_PLACE, "{}", String::from_utf8_lossy(&out));
    assert_eq!(out, Vec::<u8>::new());
    assert_eq!(input_after, input);
    // A stream of several batches comes back as a stream of the same batches, its segments
    // gathered (status 3).
    let two = [batch.clone(), batch.slice(1, 2)];
    let (status, out) = g.call_abi("echo_arrow", &ipc(&two));
    assert_eq!(status, GATHERED);
    assert_eq!(batches(&out), two.to_vec());
}

#[test]
fn arrow_input_errors() {
    let mut g = Guest::new("greeter");
    let (status, out) = g.call_abi("echo_arrow", b"");
    assert_eq!(
        (status, text(out)),
        (ERROR, "input is empty: expected an Arrow IPC stream".into())
    );
    let (status, out) = g.call_abi("echo_arrow", b"definitely not arrow");
    let message = text(out);
    assert_eq!(status, ERROR);
    assert!(
        message.starts_with("cannot decode the input Arrow IPC stream: "),
        "{message}"
    );
    // A truncated stream is refused, not read past its end.
    let stream = ipc(&[sample_batch()]);
    let (status, out) = g.call_abi("echo_arrow", &stream[..stream.len() - 20]);
    assert_eq!(status, ERROR, "{}", String::from_utf8_lossy(&out));
    assert_eq!(g.call_abi("greet", b"ok"), (OK, b"Hello, ok!".to_vec()));
}

#[test]
fn in_place_rewrites_only_the_columns_it_reports() {
    let mut g = Guest::new("greeter");
    let batch = sample_batch();
    let (status, out, input_after) =
        g.call_abi_full("shout_in_place", &ipc(std::slice::from_ref(&batch)));
    assert_eq!(status, IN_PLACE, "{}", String::from_utf8_lossy(&out));
    let indices: Vec<u32> = out
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(indices, vec![0, 1]);
    let after = batches(&input_after).remove(0);
    assert_eq!(
        after
            .column(0)
            .as_primitive::<Int64Type>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some(-1), None, Some(3)]
    );
    assert_eq!(
        after
            .column(1)
            .as_string::<i32>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some("ADA"), Some("GRACE"), None]
    );
    assert_eq!(after.column(2), batch.column(2));
    assert_eq!(after.column(3), batch.column(3));
}

pub(crate) fn documents() -> RecordBatch {
    let mut metadata = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for entries in [
        &[("a", "1"), ("b", "2")][..],
        &[],
        &[("x", "1"), ("y", "2"), ("z", "3")],
    ] {
        for (k, v) in entries {
            metadata.keys().append_value(k);
            metadata.values().append_value(v);
        }
        metadata.append(true).unwrap();
    }
    let columns: [(&str, ArrayRef); 5] = [
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
        (
            "title",
            Arc::new(StringArray::from(vec![
                "  Hello World  ",
                "Second",
                "\tÜber\n",
            ])),
        ),
        (
            "content",
            Arc::new(StringArray::from(vec![
                "The quick brown fox",
                "  multiple   spaces\there\n",
                "héllo wörld",
            ])),
        ),
        (
            "timestamp",
            Arc::new(TimestampMillisecondArray::from(vec![
                1_700_000_000_000,
                0,
                -86_400_000,
            ])),
        ),
        ("metadata", Arc::new(metadata.finish())),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

#[test]
fn docproc_processes_documents() {
    let mut g = Guest::new("docproc");
    let (status, out) = g.call_abi("process", &ipc(&[documents()]));
    assert_eq!(status, GATHERED, "{}", String::from_utf8_lossy(&out));
    let out = batches(&out).remove(0);
    let schema = out.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
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
    let int64 = |name: &str| -> Vec<i64> {
        out.column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    };
    assert_eq!(int64("id"), [1, 2, 3]);
    let titles: Vec<&str> = out
        .column(1)
        .as_string::<i32>()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(titles, ["Hello World", "Second", "Über"]);
    assert_eq!(int64("word_count"), [4, 3, 2]);
    assert_eq!(int64("content_length"), [19, 25, 13]);
    assert_eq!(int64("tag_count"), [2, 0, 3]);
    let years = out
        .column_by_name("year")
        .unwrap()
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    assert_eq!(years, [2023, 1970, 1969]);
}

#[test]
fn docproc_names_a_missing_column() {
    let mut g = Guest::new("docproc");
    let docs = documents();
    let without = docs.project(&[0, 1, 2, 3]).unwrap();
    let (status, out) = g.call_abi("process", &ipc(&[without]));
    assert_eq!(
        (status, text(out)),
        (ERROR, "input batch has no `metadata` column".to_string())
    );
}

#[test]
fn c_guest_upper() {
    let mut g = Guest::new("c-upper");
    assert!(
        !g.has_export("_initialize"),
        "C guests need no initialisation call"
    );
    assert_eq!(
        g.call_abi("upper", b"Hello, wasm! 123"),
        (OK, b"HELLO, WASM! 123".to_vec())
    );
    assert_eq!(g.call_abi("upper", b""), (OK, Vec::new()));
    let big = vec![b'q'; 65536];
    assert_eq!(g.call_abi("upper", &big), (OK, vec![b'Q'; 65536]));
}

#[test]
fn readme_guest_doubles() {
    let mut g = Guest::new("greeter");
    let x: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(-21)]));
    let batch = RecordBatch::try_from_iter([("x", x)]).unwrap();
    let (status, out) = g.call_abi("double", &ipc(&[batch]));
    assert_eq!(status, GATHERED, "{}", String::from_utf8_lossy(&out));
    let out = batches(&out).remove(0);
    let values: Vec<Option<i64>> = out.column(0).as_primitive::<Int64Type>().iter().collect();
    assert_eq!(values, [Some(2), None, Some(-42)]);
    let (status, out) = g.call_abi("double", &ipc(&[sample_batch()]));
    assert_eq!((status, text(out)), (ERROR, "no column `x`".to_string()));
}
