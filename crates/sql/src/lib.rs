//! SQL over Arrow tables, with WebAssembly plugins as scalar functions: `wasmlink sql`.
//!
//! Built on Apache DataFusion: tables come from Parquet, CSV, JSON Lines and Arrow IPC files;
//! a plugin's Arrow function becomes a scalar UDF (udf.rs) that runs under the plugin's policy
//! through the host's one-copy exchange; `search(INDEX, QUERY[, K])` is a table function over
//! the search engine's index, answered by whatever [`SearchIndex`] the caller registers (the CLI
//! runs the sandboxed query module).
//!
//! DataFusion 55 is built on arrow 59 and the rest of the workspace on arrow 60: the two meet
//! only in bridge.rs (an IPC stream between the versions: one copy per batch each way). The
//! public API speaks arrow 60 and strings; no arrow 59 type is public.

mod bridge;
mod udf;

pub use udf::WasmUdf;

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow as arrow59;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, ScalarUDF};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};

/// What can go wrong; each message is one line naming the table, function or file.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// A `--table` that cannot be registered.
    #[error("table `{table}` ({path}): {message}")]
    Table {
        table: String,
        path: String,
        message: String,
    },
    /// A bad table or function name.
    #[error("`{name}`: {message}")]
    Name { name: String, message: String },
    /// Planning or running the query failed (DataFusion's message, or a function's error).
    #[error("{0}")]
    Query(String),
    /// Moving a batch between the arrow versions failed.
    #[error("arrow 59/60 bridge: {0}")]
    Bridge(String),
    /// The runtime could not start.
    #[error("cannot start the query runtime: {0}")]
    Runtime(String),
    /// Writing the result failed.
    #[error("cannot encode the result as {format}: {message}")]
    Output {
        format: &'static str,
        message: String,
    },
}

/// A table file's format, from its extension (`.parquet`, `.csv`, `.jsonl`/`.ndjson`/`.json`,
/// `.arrow`/`.arrows`/`.ipc`) or a Parquet/Arrow file's magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Parquet,
    Csv,
    JsonLines,
    ArrowIpc,
}

impl TableFormat {
    /// The format of `path`.
    pub fn of(path: &Path) -> Option<TableFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("parquet") => return Some(TableFormat::Parquet),
            Some("csv") => return Some(TableFormat::Csv),
            Some("jsonl" | "ndjson" | "json") => return Some(TableFormat::JsonLines),
            Some("arrow" | "arrows" | "ipc" | "feather") => return Some(TableFormat::ArrowIpc),
            _ => {}
        }
        let mut head = [0u8; 6];
        let n = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .ok()?;
        match &head[..n] {
            [b'P', b'A', b'R', b'1', ..] => Some(TableFormat::Parquet),
            [b'A', b'R', b'R', b'O', b'W', b'1'] | [0xff, 0xff, 0xff, 0xff, ..] => {
                Some(TableFormat::ArrowIpc)
            }
            _ => None,
        }
    }
}

/// One result of `search(...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub rank: u32,
    pub score: f64,
    pub title: String,
    pub path: String,
}

/// Answers `search(INDEX, QUERY[, K])`.
pub trait SearchIndex: Send + Sync {
    /// The best `k` hits for `query` in the index at `index`, best first.
    fn search(
        &self,
        index: &str,
        query: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Box<dyn std::error::Error + Send + Sync>>;
}

/// How to write a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table (for a terminal).
    Table,
    Csv,
    /// JSON Lines, one object per row.
    Json,
    /// An Arrow IPC stream.
    Arrow,
    Parquet,
}

impl OutputFormat {
    fn name(self) -> &'static str {
        match self {
            OutputFormat::Table => "a table",
            OutputFormat::Csv => "CSV",
            OutputFormat::Json => "JSON Lines",
            OutputFormat::Arrow => "Arrow IPC",
            OutputFormat::Parquet => "Parquet",
        }
    }
}

/// A query's result.
pub struct QueryResult {
    batches: Vec<arrow59::record_batch::RecordBatch>,
    schema: Arc<arrow59::datatypes::Schema>,
}

impl QueryResult {
    /// The number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The column names.
    pub fn columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The rows as workspace (arrow 60) batches.
    pub fn batches(&self) -> Result<Vec<arrow_array::RecordBatch>, SqlError> {
        if self.batches.is_empty() {
            return Ok(vec![bridge::empty_from_df_schema(self.schema.clone())?]);
        }
        self.batches.iter().map(bridge::from_df).collect()
    }

    /// The result encoded as `format`.
    pub fn encode(&self, format: OutputFormat) -> Result<Vec<u8>, SqlError> {
        let err = |e: &dyn std::fmt::Display| SqlError::Output {
            format: format.name(),
            message: e.to_string(),
        };
        let mut out = Vec::new();
        match format {
            OutputFormat::Table => {
                let t = arrow59::util::pretty::pretty_format_batches(&self.batches)
                    .map_err(|e| err(&e))?;
                out.extend_from_slice(t.to_string().as_bytes());
                out.push(b'\n');
            }
            OutputFormat::Csv => {
                let mut w = arrow59::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in &self.batches {
                    w.write(b).map_err(|e| err(&e))?;
                }
                if self.batches.is_empty() {
                    let names = self.columns().join(",");
                    drop(w);
                    out.extend_from_slice(names.as_bytes());
                    out.push(b'\n');
                }
            }
            OutputFormat::Json => {
                let mut w = arrow59::json::LineDelimitedWriter::new(&mut out);
                let refs: Vec<&arrow59::record_batch::RecordBatch> = self.batches.iter().collect();
                w.write_batches(&refs).map_err(|e| err(&e))?;
                w.finish().map_err(|e| err(&e))?;
            }
            OutputFormat::Arrow => {
                let mut w = arrow59::ipc::writer::StreamWriter::try_new(&mut out, &self.schema)
                    .map_err(|e| err(&e))?;
                for b in &self.batches {
                    w.write(b).map_err(|e| err(&e))?;
                }
                w.finish().map_err(|e| err(&e))?;
            }
            OutputFormat::Parquet => {
                let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                    &mut out,
                    self.schema.clone(),
                    None,
                )
                .map_err(|e| err(&e))?;
                for b in &self.batches {
                    w.write(b).map_err(|e| err(&e))?;
                }
                w.close().map_err(|e| err(&e))?;
            }
        }
        Ok(out)
    }
}

/// A SQL session: tables, functions, and a runtime to run queries on.
pub struct SqlSession {
    ctx: SessionContext,
    rt: tokio::runtime::Runtime,
}

/// Table and function names: a letter or `_`, then letters, digits and `_` (no quoting needed).
fn check_name(name: &str) -> Result<(), SqlError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SqlError::Name {
            name: name.to_string(),
            message: "a name is a letter or `_` followed by letters, digits or `_`".into(),
        })
    }
}

impl SqlSession {
    /// A session whose queries run on `threads` threads (at least 1).
    pub fn new(threads: usize) -> Result<SqlSession, SqlError> {
        let threads = threads.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wasmlink-sql")
            .build()
            .map_err(|e| SqlError::Runtime(e.to_string()))?;
        let config = datafusion::prelude::SessionConfig::new().with_target_partitions(threads);
        Ok(SqlSession {
            ctx: SessionContext::new_with_config(config),
            rt,
        })
    }

    /// Registers the file at `path` as table `name` (its format from [`TableFormat::of`]).
    pub fn register_table(&self, name: &str, path: &Path) -> Result<(), SqlError> {
        check_name(name)?;
        let err = |message: String| SqlError::Table {
            table: name.to_string(),
            path: path.display().to_string(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(io_message(&e)))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        let format = TableFormat::of(path).ok_or_else(|| {
            err("unknown format: name it .parquet, .csv, .jsonl or .arrow".into())
        })?;
        let location = path.to_string_lossy().into_owned();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let result = match format {
            TableFormat::Parquet => self.rt.block_on(self.ctx.register_parquet(
                name,
                &location,
                ParquetReadOptions::default().file_extension(&ext),
            )),
            TableFormat::Csv => self.rt.block_on(self.ctx.register_csv(
                name,
                &location,
                CsvReadOptions::new().file_extension(&ext),
            )),
            TableFormat::JsonLines => self.rt.block_on(self.ctx.register_json(
                name,
                &location,
                JsonReadOptions::default().file_extension(&ext),
            )),
            TableFormat::ArrowIpc => {
                // Read with the host's checked reader (a crafted file is an error, not a
                // crash), then moved across the bridge.
                let bytes = std::fs::read(path).map_err(|e| err(io_message(&e)))?;
                let batches =
                    wasmlink_host::exchange::read_ipc(&bytes).map_err(|e| err(e.to_string()))?;
                let batches = batches
                    .iter()
                    .map(bridge::to_df)
                    .collect::<Result<Vec<_>, _>>()?;
                let Some(first) = batches.first() else {
                    return Err(err("the Arrow file holds no record batch".into()));
                };
                let table = MemTable::try_new(first.schema(), vec![batches])
                    .map_err(|e| err(one_line(&e)))?;
                self.ctx.register_table(name, Arc::new(table)).map(|_| ())
            }
        };
        result.map_err(|e| err(one_line(&e)))
    }

    /// A session on a context built elsewhere (a Ballista client's: crates/cluster) and the
    /// runtime its queries run on (with I/O and timers enabled when the context talks to a
    /// cluster).
    pub fn from_context(ctx: SessionContext, rt: tokio::runtime::Runtime) -> SqlSession {
        SqlSession { ctx, rt }
    }

    /// Registers `function` of `plugin` (an Arrow function) as the scalar function `name`.
    pub fn register_udf(
        &self,
        name: &str,
        plugin: wasmlink_host::plugin::Plugin,
        function: &str,
    ) -> Result<(), SqlError> {
        self.register_udf_with_origin(name, plugin, function, None)
    }

    /// [`SqlSession::register_udf`], the function carrying `origin`: where its module comes from,
    /// opaque here (crates/cluster serialises it into plans so executors load the same bytes).
    pub fn register_udf_with_origin(
        &self,
        name: &str,
        plugin: wasmlink_host::plugin::Plugin,
        function: &str,
        origin: Option<String>,
    ) -> Result<(), SqlError> {
        check_udf(name, &plugin, function)?;
        let mut udf = udf::WasmUdf::new(name, plugin, function);
        if let Some(o) = origin {
            udf = udf.with_origin(o);
        }
        self.ctx.register_udf(ScalarUDF::new_from_impl(udf));
        Ok(())
    }

    /// Registers `search(INDEX, QUERY[, K])`, answered by `index`.
    pub fn register_search(&self, index: Arc<dyn SearchIndex>) {
        self.ctx
            .register_udtf("search", Arc::new(SearchFunction { index }));
    }

    /// Plans and runs `sql`.
    pub fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        self.rt.block_on(async {
            let df = self
                .ctx
                .sql(sql)
                .await
                .map_err(|e| SqlError::Query(one_line(&e)))?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df
                .collect()
                .await
                .map_err(|e| SqlError::Query(one_line(&e)))?;
            Ok(QueryResult { batches, schema })
        })
    }
}

/// Checks that `function` of `plugin` can be the SQL function `name`: a good name, an exported
/// function taking an Arrow batch.
pub fn check_udf(
    name: &str,
    plugin: &wasmlink_host::plugin::Plugin,
    function: &str,
) -> Result<(), SqlError> {
    check_name(name)?;
    let exists = plugin.exports().iter().any(|(n, _)| *n == function);
    if !exists {
        return Err(SqlError::Name {
            name: name.to_string(),
            message: format!(
                "module `{}` exports no function `{function}`",
                plugin.name()
            ),
        });
    }
    if let Some(k) = plugin.manifest().get(function)
        && !k.input.is_arrow()
    {
        return Err(SqlError::Name {
            name: name.to_string(),
            message: format!(
                "`{function}` of module `{}` takes {k}, not an Arrow batch (docs/abi.md)",
                plugin.name()
            ),
        });
    }
    Ok(())
}

/// `search(INDEX, QUERY[, K])`: rank, score, title, path.
#[derive(Clone)]
struct SearchFunction {
    index: Arc<dyn SearchIndex>,
}

impl std::fmt::Debug for SearchFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SearchFunction")
    }
}

fn string_arg(e: &Expr, what: &str) -> datafusion::common::Result<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)), _) => {
            Ok(s.clone())
        }
        _ => Err(datafusion::common::DataFusionError::Plan(format!(
            "search(INDEX, QUERY[, K]): {what} must be a string literal, not {e}"
        ))),
    }
}

impl TableFunctionImpl for SearchFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        use arrow59::array::{Float64Array, StringArray, UInt32Array};
        use arrow59::datatypes::{DataType, Field, Schema};
        let exprs = args.exprs();
        if !(2..=3).contains(&exprs.len()) {
            return Err(datafusion::common::DataFusionError::Plan(format!(
                "search(INDEX, QUERY[, K]) takes 2 or 3 arguments, {} given",
                exprs.len()
            )));
        }
        let index = string_arg(&exprs[0], "INDEX")?;
        let query = string_arg(&exprs[1], "QUERY")?;
        let k = match exprs.get(2) {
            None => 10,
            Some(Expr::Literal(v, _)) => match v {
                ScalarValue::Int64(Some(k)) if (1..=100_000).contains(k) => *k as usize,
                _ => {
                    return Err(datafusion::common::DataFusionError::Plan(format!(
                        "search(INDEX, QUERY, K): K must be an integer from 1 to 100000, not {v}"
                    )));
                }
            },
            Some(e) => {
                return Err(datafusion::common::DataFusionError::Plan(format!(
                    "search(INDEX, QUERY, K): K must be an integer literal, not {e}"
                )));
            }
        };
        // On a thread of its own: the index's implementation may drive a runtime of its own
        // (the plugin host's WASI does), which cannot start inside DataFusion's.
        let hits = std::thread::scope(|s| {
            s.spawn(|| self.index.search(&index, &query, k))
                .join()
                .unwrap_or_else(|_| Err("the search panicked".into()))
        })
        .map_err(|e| {
            datafusion::common::DataFusionError::Execution(format!("search(`{index}`): {e}"))
        })?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("rank", DataType::UInt32, false),
            Field::new("score", DataType::Float64, false),
            Field::new("title", DataType::Utf8, false),
            Field::new("path", DataType::Utf8, false),
        ]));
        let batch = arrow59::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(UInt32Array::from_iter_values(hits.iter().map(|h| h.rank))),
                Arc::new(Float64Array::from_iter_values(hits.iter().map(|h| h.score))),
                Arc::new(StringArray::from_iter_values(
                    hits.iter().map(|h| h.title.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    hits.iter().map(|h| h.path.as_str()),
                )),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// An error's text on one line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}
