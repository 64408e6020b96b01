//! Stages as WebAssembly components: the world `wasmlink:pipeline/stage-component`
//! (wit/pipeline/stage.wit, docs/pipeline.md). The host converts each Arrow batch to the WIT
//! `batch` value (one copy), calls `process` on the worker's own instance, and converts the
//! `batch` it returns back to Arrow (one copy). A trap, a limit, an `err(...)` or a returned
//! batch that is not a table (columns of different lengths, a column whose type changed since
//! the stage's earlier batches) fails the call: the batch becomes a dead letter.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Float64Type, Int32Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array,
    OffsetSizeTrait, RecordBatch, RecordBatchOptions, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use wasmlink_component::{
    ComponentError, ComponentLimits, ComponentPool, ComponentPre, ComponentProcess, Val,
};
use wasmlink_host::policy::{CapturePipe, OutputMode, Policy};

/// The function a stage component exports (`stage#process` names it too).
pub const STAGE_FUNCTION: &str = "wasmlink:pipeline/stage#process";

/// The Arrow types a `batch` carries (wit/pipeline/stage.wit's `column-data`).
pub const SUPPORTED_TYPES: &str =
    "Int64, Int32, UInt64, Float64, Utf8, LargeUtf8, Boolean, Binary, LargeBinary";

/// Bytes of a stage's stderr kept to explain a failed call (a Python traceback).
const STDERR_CAP: usize = 64 << 10;

/// Why a component stage could not be loaded or called. Each is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentStageError {
    /// The component cannot be compiled, linked or instantiated, or its policy refuses it.
    #[error("{0}")]
    Load(String),
    /// The stage's `function` is not a stage function of the component.
    #[error("{0}")]
    Function(String),
    /// The input batch has a column the WIT `batch` cannot carry.
    #[error("{0}")]
    Input(String),
    /// The call failed inside the guest (a trap, a Python exception, a limit); `stderr` is the
    /// end of what the guest wrote to stderr during the call (a traceback's last line).
    #[error("{message}{}", stderr.as_ref().map(|s| format!(" (stderr: {s})")).unwrap_or_default())]
    Call {
        /// What failed.
        message: String,
        /// The last line the guest wrote to stderr, if any.
        stderr: Option<String>,
    },
    /// The stage returned `err(message)`.
    #[error("the stage returned an error: {0}")]
    Guest(String),
    /// The stage returned a batch that is not a table of the supported types.
    #[error("the stage returned a bad batch: {0}")]
    Output(String),
}

/// A component loaded as a pipeline stage, with its policy's grants and limits.
pub struct ComponentStage {
    name: String,
    sha256: String,
    policy: Policy,
    pre: Arc<ComponentPre>,
    /// The columns of the first batch the stage returned: later batches must match.
    schema: Mutex<Option<SchemaRef>>,
    /// Instances for one-off calls ([`ComponentStage::call_arrow`]), made on first use.
    pool: OnceLock<Result<ComponentPool, ComponentStageError>>,
    /// [`ComponentStage::lists_as_text`].
    lists_as_text: bool,
}

impl std::fmt::Debug for ComponentStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentStage")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl ComponentStage {
    /// Compiles the component `bytes` (read from `path`) under `policy`: its `integrity.sha256`
    /// is checked, its limits (memory, table elements, instances, fuel, timeout) become the
    /// instances' limits, and its directories, environment and stdio their WASI 0.2 context.
    ///
    /// # Errors
    /// [`ComponentStageError::Load`], one line naming the file.
    pub fn new(path: &Path, bytes: &[u8], policy: Policy) -> Result<Self, ComponentStageError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::build(path, name, bytes, policy)
    }

    /// Compiles the component `bytes` that did not come from a file of their own (a repository
    /// entry): `label` (`name@version`) names it in messages and is its name. Otherwise as
    /// [`ComponentStage::new`].
    ///
    /// # Errors
    /// [`ComponentStageError::Load`], one line naming `label`.
    pub fn from_bytes(
        label: &str,
        bytes: &[u8],
        policy: Policy,
    ) -> Result<Self, ComponentStageError> {
        Self::build(Path::new(label), label.to_string(), bytes, policy)
    }

    fn build(
        path: &Path,
        name: String,
        bytes: &[u8],
        policy: Policy,
    ) -> Result<Self, ComponentStageError> {
        let what = path.display().to_string();
        let load = |m: String| ComponentStageError::Load(m);
        policy
            .check_sha256(&what, bytes)
            .map_err(|e| load(e.to_string()))?;
        let effective = policy.effective_limits();
        let limits = ComponentLimits {
            memory: Some(effective.memory as usize),
            table_elements: Some(effective.table_elements as usize),
            instances: policy.limits.instances.map(|n| n as usize),
            fuel: effective.fuel,
            timeout: (effective.timeout != Duration::MAX).then_some(effective.timeout),
            output: None,
        };
        let metering = wasmlink_engine::Metering {
            fuel: limits.fuel.is_some(),
            epoch: limits.timeout.is_some(),
        };
        let engine = wasmlink_engine::shared_engine_with(
            wasmlink_engine::default_cache_dir().as_deref(),
            metering,
        )
        .map_err(|e| load(format!("{what}: {e}")))?;
        let pre =
            ComponentPre::new(&engine, path, bytes, limits).map_err(|e| load(e.to_string()))?;
        Ok(ComponentStage {
            name,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            policy,
            pre: Arc::new(pre),
            schema: Mutex::new(None),
            pool: OnceLock::new(),
            lists_as_text: false,
        })
    }

    /// Reads and loads the component at `path` ([`ComponentStage::new`]).
    ///
    /// # Errors
    /// [`ComponentStageError::Load`].
    pub fn load(path: &Path, policy: Policy) -> Result<Self, ComponentStageError> {
        let bytes = std::fs::read(path).map_err(|e| {
            ComponentStageError::Load(format!(
                "{}: {}",
                path.display(),
                e.to_string().to_lowercase()
            ))
        })?;
        Self::new(path, &bytes, policy)
    }

    /// Lets the stage see `List<Utf8>` columns, which the WIT `batch` has no case for (the
    /// search pipeline's `tokens` and `terms`): each goes in as a `utf8` column of the same
    /// name, a row's items joined by single spaces (a null list stays null), and a `utf8`
    /// column of that name in the returned batch comes back as `List<Utf8>`, split on
    /// whitespace. For items without whitespace (words, terms), as `wasmlink index --stage`
    /// uses it.
    pub fn lists_as_text(mut self) -> Self {
        self.lists_as_text = true;
        self
    }

    /// The component's name (its file name without the extension).
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The component's sha256, in hex.
    pub fn sha256(&self) -> String {
        self.sha256.clone()
    }

    /// Checks that `function` names a stage function: one parameter of the WIT type `batch`.
    ///
    /// # Errors
    /// [`ComponentStageError::Function`] saying what the component exports instead.
    pub fn check_function(&self, function: &str) -> Result<(), ComponentStageError> {
        let exported = || {
            let names: Vec<String> = self
                .pre
                .functions()
                .map(|(n, p)| {
                    let params: Vec<String> = p.iter().map(|(n, t)| format!("{n}: {t}")).collect();
                    format!("{n}({})", params.join(", "))
                })
                .collect();
            if names.is_empty() {
                "no functions".to_string()
            } else {
                names.join(", ")
            }
        };
        match self.pre.function(function) {
            None => Err(ComponentStageError::Function(format!(
                "`{function}` is not exported by component `{}` (it exports: {}); a stage \
                 component exports {STAGE_FUNCTION} (wit/pipeline/stage.wit)",
                self.name,
                exported()
            ))),
            Some((full, params)) if params.len() != 1 || params[0].1 != "batch" => {
                Err(ComponentStageError::Function(format!(
                    "`{full}` of component `{}` does not take one `batch` (it exports: {}); a \
                     stage component exports {STAGE_FUNCTION} (wit/pipeline/stage.wit)",
                    self.name,
                    exported()
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// A new instance of the stage, for one worker thread.
    ///
    /// # Errors
    /// [`ComponentStageError::Load`] if it cannot be instantiated.
    pub(crate) fn instance(&self) -> Result<ComponentInstance, ComponentStageError> {
        // The guest's stderr explains a failed call (an uncaught Python exception prints its
        // traceback there): when the policy discards it, it is kept, bounded, for the dead
        // letter instead. An inherited or captured stderr is left as the policy says.
        let keep = self.policy.stdio.stderr == OutputMode::Closed;
        let pipe = CapturePipe::new(STDERR_CAP);
        let mut policy_view = self.policy.clone();
        if keep {
            policy_view.stdio.stderr = OutputMode::Capture;
        }
        let wasi = policy_view
            .wasi_builder(&self.pre.path().display().to_string(), None, Some(&pipe))
            .map_err(|e| ComponentStageError::Load(e.to_string()))?;
        let process = self
            .pre
            .instantiate(wasi)
            .map_err(|e| ComponentStageError::Load(e.to_string()))?;
        Ok(ComponentInstance {
            process,
            stderr: keep.then_some(pipe),
        })
    }

    /// Calls the stage on `batch` with an instance from a small pool (made on first use): for
    /// one-off calls outside a pipeline run (Arrow Flight's exchanges, schema probes).
    ///
    /// # Errors
    /// As `ComponentInstance::call`.
    pub fn call_arrow(
        &self,
        function: &str,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, ComponentStageError> {
        self.call_arrow_then(function, batch, |_| false)
            .map(|(out, _, _)| out)
    }

    /// [`call_arrow`](Self::call_arrow), then `discard(memory_bytes)` decides whether the
    /// pooled instance is dropped rather than kept for the next call. Returns the result, the
    /// instance's linear memory after the call and whether it was dropped.
    ///
    /// # Errors
    /// As `ComponentInstance::call`.
    pub(crate) fn call_arrow_then(
        &self,
        function: &str,
        batch: &RecordBatch,
        discard: impl FnOnce(u64) -> bool,
    ) -> Result<(RecordBatch, u64, bool), ComponentStageError> {
        let pool = self.pool.get_or_init(|| {
            let policy = self.policy.clone();
            let what = self.pre.path().display().to_string();
            policy
                .wasi_builder(&what, None, None)
                .map_err(|e| ComponentStageError::Load(e.to_string()))?;
            ComponentPool::new(Arc::clone(&self.pre), 1, move || {
                policy
                    .wasi_builder(&what, None, None)
                    .unwrap_or_else(|_| wasmtime_wasi_builder())
            })
            .map_err(|e| ComponentStageError::Load(e.to_string()))
        });
        let pool = pool.as_ref().map_err(Clone::clone)?;
        let mut process = pool
            .checkout()
            .map_err(|e| ComponentStageError::Load(e.to_string()))?;
        let out = call(self, &mut process, None, function, batch)?;
        let memory = process.memory_bytes();
        let dropped = discard(memory);
        if dropped {
            process.discard();
        }
        Ok((out, memory, dropped))
    }
}

/// An empty WASI context (never used: the policy's builder was checked to work first).
fn wasmtime_wasi_builder() -> wasmtime_wasi::WasiCtxBuilder {
    wasmtime_wasi::WasiCtxBuilder::new()
}

/// One worker's instance of a component stage.
pub(crate) struct ComponentInstance {
    process: ComponentProcess,
    /// The guest's stderr, when kept for error messages.
    stderr: Option<CapturePipe>,
}

impl ComponentInstance {
    /// Bytes of linear memory the instance holds (see `ComponentProcess::memory_bytes`).
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.process.memory_bytes()
    }

    /// Calls `function` on `batch`.
    ///
    /// # Errors
    /// [`ComponentStageError::Input`], [`ComponentStageError::Call`],
    /// [`ComponentStageError::Guest`] or [`ComponentStageError::Output`].
    pub(crate) fn call(
        &mut self,
        stage: &ComponentStage,
        function: &str,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, ComponentStageError> {
        call(
            stage,
            &mut self.process,
            self.stderr.as_ref(),
            function,
            batch,
        )
    }
}

fn call(
    stage: &ComponentStage,
    process: &mut ComponentProcess,
    stderr: Option<&CapturePipe>,
    function: &str,
    batch: &RecordBatch,
) -> Result<RecordBatch, ComponentStageError> {
    let joined;
    let (batch, lists) = if stage.lists_as_text {
        let (b, names) = join_lists(batch).map_err(ComponentStageError::Input)?;
        joined = b;
        (&joined, names)
    } else {
        (batch, Vec::new())
    };
    let input = batch_to_val(batch).map_err(ComponentStageError::Input)?;
    let before = stderr.map_or(0, CapturePipe::len);
    let results = process
        .call_vals(function, &[input])
        .map_err(|e| ComponentStageError::Call {
            message: call_message(&e),
            stderr: stderr.and_then(|p| last_line(&p.contents()[before.min(p.len())..])),
        })?;
    let out = match results.into_iter().next() {
        Some(Val::Result(Ok(Some(b)))) => *b,
        Some(Val::Result(Err(Some(m)))) => {
            return Err(ComponentStageError::Guest(match *m {
                Val::String(s) => one_line(&s),
                other => format!("{other:?}"),
            }));
        }
        other => {
            return Err(ComponentStageError::Output(format!(
                "expected result<batch, string>, got {}",
                other.map_or_else(|| "nothing".to_string(), |v| kind(&v).to_string())
            )));
        }
    };
    let mut out = val_to_batch(out).map_err(ComponentStageError::Output)?;
    if !lists.is_empty() {
        out = split_lists(&out, &lists).map_err(ComponentStageError::Output)?;
    }
    let mut first = stage.schema.lock().unwrap_or_else(PoisonError::into_inner);
    match &*first {
        None => *first = Some(out.schema()),
        Some(s) if s.as_ref() == out.schema().as_ref() => {}
        Some(s) => {
            return Err(ComponentStageError::Output(format!(
                "its columns ({}) differ from those of the stage's earlier batches ({})",
                columns_line(&out.schema()),
                columns_line(s)
            )));
        }
    }
    Ok(out)
}

/// A component failure in one line: a trap's wasm backtrace is left out.
fn call_message(e: &ComponentError) -> String {
    let text = e.to_string();
    match (
        text.find(": error while executing at wasm backtrace:"),
        text.rfind("wasm trap: "),
    ) {
        (Some(head), Some(trap)) => format!("{}: {}", &text[..head], &text[trap..]),
        _ => text,
    }
}

/// The line of a guest's stderr that says why it failed, at most 1000 characters: a Python
/// traceback's exception line (`ValueError: ...`, the first unindented line after the last
/// `Traceback (most recent call last):`), else the last non-empty line that is not a Rust
/// panic's `note: ...`.
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = match text.rfind("Traceback (most recent call last):") {
        Some(at) => text[at..]
            .lines()
            .skip(1)
            .find(|l| !l.is_empty() && !l.starts_with(char::is_whitespace))
            .map(str::trim),
        None => None,
    }
    .or_else(|| {
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("note: "))
    })?;
    Some(line.chars().take(1000).collect())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn columns_line(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `batch` with each `List<Utf8>` column as a `utf8` column of space-joined items
/// ([`ComponentStage::lists_as_text`]); the names of the columns so joined.
fn join_lists(batch: &RecordBatch) -> Result<(RecordBatch, Vec<String>), String> {
    let schema = batch.schema();
    let mut names = Vec::new();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::List(item) if *item.data_type() == DataType::Utf8 => {
                let list = array.as_list::<i32>();
                let words = list.values().as_string::<i32>();
                let offsets = list.value_offsets();
                let mut joined: Vec<Option<String>> = Vec::with_capacity(list.len());
                for row in 0..list.len() {
                    if list.is_null(row) {
                        joined.push(None);
                        continue;
                    }
                    let mut line = String::new();
                    for i in offsets[row] as usize..offsets[row + 1] as usize {
                        if words.is_null(i) {
                            return Err(format!(
                                "column `{}`: row {row} has a null item",
                                field.name()
                            ));
                        }
                        if !line.is_empty() {
                            line.push(' ');
                        }
                        line.push_str(words.value(i));
                    }
                    joined.push(Some(line));
                }
                names.push(field.name().clone());
                fields.push(Field::new(field.name(), DataType::Utf8, true));
                columns.push(Arc::new(StringArray::from(joined)));
            }
            _ => {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(array));
            }
        }
    }
    let out = RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| e.to_string())?;
    Ok((out, names))
}

/// `batch` with each `utf8` column named in `lists` split on whitespace into `List<Utf8>`.
fn split_lists(batch: &RecordBatch, lists: &[String]) -> Result<RecordBatch, String> {
    use arrow_array::builder::{ListBuilder, StringBuilder};
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        if lists.contains(field.name()) && *field.data_type() == DataType::Utf8 {
            let text = array.as_string::<i32>();
            let mut out = ListBuilder::new(StringBuilder::new());
            for v in text.iter() {
                match v {
                    None => out.append(false),
                    Some(line) => {
                        for word in line.split_whitespace() {
                            out.values().append_value(word);
                        }
                        out.append(true);
                    }
                }
            }
            let list: ArrayRef = Arc::new(out.finish());
            fields.push(Field::new(field.name(), list.data_type().clone(), true));
            columns.push(list);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(array));
        }
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| e.to_string())
}

fn opt(v: Option<Val>) -> Val {
    Val::Option(v.map(Box::new))
}

/// An Arrow batch as the WIT `batch` value.
pub(crate) fn batch_to_val(batch: &RecordBatch) -> Result<Val, String> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        let (case, values): (&str, Vec<Val>) = match array.data_type() {
            DataType::Int64 => ("int64", primitives::<Int64Type>(array, Val::S64)),
            DataType::Int32 => ("int32", primitives::<Int32Type>(array, Val::S32)),
            DataType::UInt64 => ("uint64", primitives::<UInt64Type>(array, Val::U64)),
            DataType::Float64 => ("float64", primitives::<Float64Type>(array, Val::Float64)),
            DataType::Boolean => (
                "boolean",
                array
                    .as_boolean()
                    .iter()
                    .map(|v| opt(v.map(Val::Bool)))
                    .collect(),
            ),
            DataType::Utf8 => ("utf8", strings::<i32>(array)),
            DataType::LargeUtf8 => ("utf8", strings::<i64>(array)),
            DataType::Binary => ("binary", binaries::<i32>(array)),
            DataType::LargeBinary => ("binary", binaries::<i64>(array)),
            other => {
                return Err(format!(
                    "column `{name}` has Arrow type {other}, which a component stage's batch \
                     cannot carry (supported: {SUPPORTED_TYPES})"
                ));
            }
        };
        columns.push(Val::Record(vec![
            ("name".into(), Val::String(name.clone())),
            (
                "data".into(),
                Val::Variant(case.into(), Some(Box::new(Val::List(values)))),
            ),
        ]));
    }
    Ok(Val::Record(vec![("columns".into(), Val::List(columns))]))
}

/// A primitive column's values, each as `option<T>`.
fn primitives<T: ArrowPrimitiveType>(array: &ArrayRef, val: fn(T::Native) -> Val) -> Vec<Val> {
    array
        .as_primitive::<T>()
        .iter()
        .map(|v| opt(v.map(val)))
        .collect()
}

/// A (large) string column's values as `option<string>`.
fn strings<O: OffsetSizeTrait>(array: &ArrayRef) -> Vec<Val> {
    array
        .as_string::<O>()
        .iter()
        .map(|v| opt(v.map(|s| Val::String(s.to_string()))))
        .collect()
}

/// A (large) binary column's values as `option<list<u8>>`.
fn binaries<O: OffsetSizeTrait>(array: &ArrayRef) -> Vec<Val> {
    array
        .as_binary::<O>()
        .iter()
        .map(|v| opt(v.map(bytes_val)))
        .collect()
}

fn bytes_val(b: &[u8]) -> Val {
    Val::List(b.iter().map(|&x| Val::U8(x)).collect())
}

/// What kind of value `v` is, for messages.
fn kind(v: &Val) -> &'static str {
    match v {
        Val::Bool(_) => "a bool",
        Val::String(_) => "a string",
        Val::List(_) => "a list",
        Val::Record(_) => "a record",
        Val::Variant(..) => "a variant",
        Val::Option(_) => "an option",
        Val::Result(_) => "a result",
        _ => "another value",
    }
}

/// The WIT `batch` value as an Arrow batch. Every field is nullable.
pub(crate) fn val_to_batch(v: Val) -> Result<RecordBatch, String> {
    let Val::Record(fields) = v else {
        return Err(format!("expected a batch record, got {}", kind(&v)));
    };
    let Some((_, Val::List(columns))) = fields.into_iter().find(|(n, _)| n == "columns") else {
        return Err("the batch has no `columns` list".into());
    };
    let mut out_fields: Vec<Field> = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for column in columns {
        let Val::Record(parts) = column else {
            return Err(format!("expected a column record, got {}", kind(&column)));
        };
        let (mut name, mut data) = (None, None);
        for (k, v) in parts {
            match (k.as_str(), v) {
                ("name", Val::String(s)) => name = Some(s),
                ("data", d) => data = Some(d),
                _ => {}
            }
        }
        let (Some(name), Some(data)) = (name, data) else {
            return Err("a column has no `name` or `data`".into());
        };
        if out_fields.iter().any(|f| f.name() == &name) {
            return Err(format!("column `{name}` appears twice"));
        }
        let array = column_array(&name, data)?;
        if let Some(first) = arrays.first()
            && first.len() != array.len()
        {
            return Err(format!(
                "column `{name}` has {} row(s) but column `{}` has {}",
                array.len(),
                out_fields[0].name(),
                first.len()
            ));
        }
        out_fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let rows = arrays.first().map_or(0, |a| a.len());
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(out_fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| e.to_string())
}

/// The values of one `column-data` case.
fn items<T>(
    name: &str,
    case: &str,
    list: Vec<Val>,
    f: impl Fn(Val) -> Option<T>,
) -> Result<Vec<Option<T>>, String> {
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Val::Option(None) => Ok(None),
            Val::Option(Some(x)) => f(*x).map(Some).ok_or_else(|| {
                format!("column `{name}` ({case}): row {i} has a value of another type")
            }),
            _ => Err(format!(
                "column `{name}` ({case}): row {i} is not an option"
            )),
        })
        .collect()
}

fn column_array(name: &str, data: Val) -> Result<ArrayRef, String> {
    let Val::Variant(case, Some(payload)) = data else {
        return Err(format!("column `{name}`: `data` is not a column-data case"));
    };
    let Val::List(list) = *payload else {
        return Err(format!(
            "column `{name}` ({case}): its values are not a list"
        ));
    };
    let c = case.as_str();
    Ok(match c {
        "int64" => Arc::new(Int64Array::from(items(name, c, list, |v| match v {
            Val::S64(x) => Some(x),
            _ => None,
        })?)),
        "int32" => Arc::new(Int32Array::from(items(name, c, list, |v| match v {
            Val::S32(x) => Some(x),
            _ => None,
        })?)),
        "uint64" => Arc::new(UInt64Array::from(items(name, c, list, |v| match v {
            Val::U64(x) => Some(x),
            _ => None,
        })?)),
        "float64" => Arc::new(Float64Array::from(items(name, c, list, |v| match v {
            Val::Float64(x) => Some(x),
            _ => None,
        })?)),
        "boolean" => Arc::new(BooleanArray::from(items(name, c, list, |v| match v {
            Val::Bool(x) => Some(x),
            _ => None,
        })?)),
        "utf8" => Arc::new(StringArray::from(items(name, c, list, |v| match v {
            Val::String(s) => Some(s),
            _ => None,
        })?)),
        "binary" => {
            let values = items(name, c, list, |v| match v {
                Val::List(bytes) => bytes
                    .into_iter()
                    .map(|b| match b {
                        Val::U8(x) => Some(x),
                        _ => None,
                    })
                    .collect::<Option<Vec<u8>>>(),
                _ => None,
            })?;
            Arc::new(BinaryArray::from_iter(values))
        }
        other => {
            return Err(format!(
                "column `{name}` has the case `{other}`, which this host does not know"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
            ),
            (
                "c",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])) as ArrayRef,
            ),
            (
                "d",
                Arc::new(Float64Array::from(vec![Some(0.5), None])) as ArrayRef,
            ),
            (
                "e",
                Arc::new(UInt64Array::from(vec![Some(7), None])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Int32Array::from(vec![None, Some(-3)])) as ArrayRef,
            ),
            (
                "g",
                Arc::new(BinaryArray::from_iter(vec![
                    Some(b"\x00\xff".to_vec()),
                    None,
                ])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn a_batch_goes_there_and_back() {
        let b = batch();
        let back = val_to_batch(batch_to_val(&b).unwrap()).unwrap();
        assert_eq!(back.columns(), b.columns());
        assert_eq!(back.schema().fields().len(), 7);
        assert!(back.schema().fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn an_unsupported_type_is_one_line_naming_the_column() {
        let b = RecordBatch::try_from_iter([(
            "when",
            Arc::new(arrow_array::Date32Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        let e = batch_to_val(&b).unwrap_err();
        assert!(
            e.starts_with("column `when` has Arrow type Date32, which"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    fn col(name: &str, case: &str, items: Vec<Val>) -> Val {
        Val::Record(vec![
            ("name".into(), Val::String(name.into())),
            (
                "data".into(),
                Val::Variant(case.into(), Some(Box::new(Val::List(items)))),
            ),
        ])
    }

    fn some(v: Val) -> Val {
        Val::Option(Some(Box::new(v)))
    }

    #[test]
    fn columns_of_different_lengths_are_refused() {
        let v = Val::Record(vec![(
            "columns".into(),
            Val::List(vec![
                col("a", "int64", vec![some(Val::S64(1)), some(Val::S64(2))]),
                col("b", "utf8", vec![some(Val::String("x".into()))]),
            ]),
        )]);
        assert_eq!(
            val_to_batch(v).unwrap_err(),
            "column `b` has 1 row(s) but column `a` has 2"
        );
    }

    #[test]
    fn a_value_of_the_wrong_case_or_a_repeated_column_is_refused() {
        let v = Val::Record(vec![(
            "columns".into(),
            Val::List(vec![col("a", "int64", vec![some(Val::String("x".into()))])]),
        )]);
        assert_eq!(
            val_to_batch(v).unwrap_err(),
            "column `a` (int64): row 0 has a value of another type"
        );
        let v = Val::Record(vec![(
            "columns".into(),
            Val::List(vec![col("a", "int64", vec![]), col("a", "int64", vec![])]),
        )]);
        assert_eq!(val_to_batch(v).unwrap_err(), "column `a` appears twice");
    }

    #[test]
    fn a_python_traceback_gives_its_exception_line() {
        let err =
            b"Traceback (most recent call last):\n  File \"/0/app.py\", line 41, in process\n\
ValueError: asked to raise\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\n\
Python function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(last_line(err).unwrap(), "ValueError: asked to raise");
        assert_eq!(last_line(b"boom\nnote: x\n").unwrap(), "boom");
        assert_eq!(last_line(b"\n \n"), None);
    }

    #[test]
    fn string_lists_go_as_text_and_come_back_as_lists() {
        use arrow_array::builder::{ListBuilder, StringBuilder};
        let mut b = ListBuilder::new(StringBuilder::new());
        b.values().append_value("rust");
        b.values().append_value("wasm");
        b.append(true);
        b.append(true);
        b.append(false);
        let terms: ArrayRef = Arc::new(b.finish());
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("terms", terms.clone()),
        ])
        .unwrap();
        let (joined, names) = join_lists(&batch).unwrap();
        assert_eq!(names, ["terms"]);
        let text = joined.column(1).as_string::<i32>();
        assert_eq!(
            text.iter().collect::<Vec<_>>(),
            [Some("rust wasm"), Some(""), None]
        );
        let back = split_lists(&joined, &names).unwrap();
        assert_eq!(back.column(0), batch.column(0));
        assert_eq!(back.column(1).as_ref(), terms.as_ref());
    }

    #[test]
    fn a_batch_without_columns_has_no_rows() {
        let v = Val::Record(vec![("columns".into(), Val::List(vec![]))]);
        assert_eq!(val_to_batch(v).unwrap().num_rows(), 0);
    }
}
