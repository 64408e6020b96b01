//! A scalar function over 10 million rows (issue 19): the greeter's wasm `double` (through the
//! plugin host, its policy and the arrow 59/60 bridge) against the same function as a native
//! DataFusion UDF (arrow's own `mul` kernel), in the same run, on the same in-memory table.
//!
//! `bash scripts/build-guests.sh && cargo run --release -p wasmlink-sql --example udf10m`
//! (ROWS=... to change the size; the greeter is taken from target/guest-modules).
//!
//! An example, not a criterion bench: one figure per side, both sums checked equal first. Run
//! it in the release profile: the dev profile compiles DataFusion and its arrow without
//! optimisation (Cargo.toml, to keep the test build short), which would slow the native side,
//! and wasmlink's own glue (the host's call path, the arrow 59 <-> 60 bridge) at opt-level 0,
//! which would slow the wasm side.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, Scalar};
use datafusion::arrow::compute::kernels::numeric::mul;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};
use wasmlink_host::plugin::{HostConfig, PluginHost};
use wasmlink_host::policy::Policy;

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10_000_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let greeter = root.join("target/guest-modules/greeter.wasm");
    let host = PluginHost::new(HostConfig {
        pool_slots: threads as u32 * 2,
        ..HostConfig::default()
    })
    .unwrap();
    let plugin = host
        .load_file(&greeter, Policy::default())
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-guests.sh)", greeter.display()));

    // The table: x = 0..rows in batches of 8192 rows, one partition per thread.
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); threads];
    let mut start = 0i64;
    let mut i = 0;
    while (start as usize) < rows {
        let end = (start + 8192).min(rows as i64);
        let col: ArrayRef = Arc::new(Int64Array::from_iter_values(start..end));
        parts[i % threads].push(RecordBatch::try_new(schema.clone(), vec![col]).unwrap());
        start = end;
        i += 1;
    }
    let table = Arc::new(MemTable::try_new(schema, parts).unwrap());
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(threads));
    ctx.register_table("t", table).unwrap();
    ctx.register_udf(ScalarUDF::new_from_impl(wasmlink_sql::WasmUdf::new(
        "wasm_double",
        plugin,
        "double",
    )));
    ctx.register_udf(create_udf(
        "native_double",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let two = Scalar::new(Int64Array::from(vec![2i64]));
            Ok(ColumnarValue::Array(mul(&arrays[0], &two)?))
        }),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()
        .unwrap();
    let run = |f: &str| -> (f64, String) {
        let sql = format!("SELECT sum({f}(x)) AS s FROM t");
        let t0 = Instant::now();
        let batches = rt
            .block_on(async { ctx.sql(&sql).await?.collect().await })
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let s = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (secs, s)
    };
    // Warm up both (compiles the module, fills the instance pool), then alternate 5 runs each.
    let (_, a) = run("wasm_double");
    let (_, b) = run("native_double");
    assert_eq!(a, b, "the wasm and native functions disagree");
    let (mut wasm, mut native) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        wasm.push(run("wasm_double").0);
        native.push(run("native_double").0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (w, n) = (median(&mut wasm), median(&mut native));
    println!("rows {rows}, threads {threads}, median of 5 (sum(f(x)) over an in-memory table)");
    println!(
        "native DataFusion UDF: {:.3} s ({:.0} Mrows/s)",
        n,
        rows as f64 / n / 1e6
    );
    println!(
        "wasm UDF (greeter):    {:.3} s ({:.0} Mrows/s)",
        w,
        rows as f64 / w / 1e6
    );
    println!("wasm / native: {:.2}x", w / n);
}
