//! A plugin's Arrow function as a DataFusion scalar function.
//!
//! DataFusion hands the function its argument columns, one batch at a time; they go to the
//! module as one record batch (columns named after the arguments: `double(x)` sends a column
//! `x`, an expression `arg1`, ...), through the plugin host's one-copy exchange and under the
//! plugin's policy. The module must return a batch of exactly one column and as many rows; its
//! type is the SQL function's type, learnt by calling the module once on an empty batch of the
//! argument types when the query is planned.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Field, FieldRef, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use wasmlink_host::plugin::Plugin;

use crate::bridge;

/// `NAME(args...)` calling `function` of `plugin`.
pub struct WasmUdf {
    name: String,
    function: String,
    plugin: Plugin,
    signature: Signature,
    /// Where the module comes from, for a plan serialised to other processes (crates/cluster).
    origin: Option<String>,
    /// Argument types -> the result field, learnt from an empty call.
    fields: Mutex<HashMap<Vec<(String, String)>, FieldRef>>,
}

impl std::fmt::Debug for WasmUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmUdf")
            .field("name", &self.name)
            .field("plugin", &self.plugin.name())
            .field("function", &self.function)
            .finish()
    }
}

impl PartialEq for WasmUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.function == other.function
            && self.plugin.sha256() == other.plugin.sha256()
    }
}

impl Eq for WasmUdf {}

impl Hash for WasmUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.function.hash(state);
    }
}

impl WasmUdf {
    pub fn new(name: &str, plugin: Plugin, function: &str) -> WasmUdf {
        WasmUdf {
            name: name.to_string(),
            function: function.to_string(),
            plugin,
            // Volatile: a module may read a clock or randomness its policy grants, so DataFusion
            // must not fold a call on constants into one value at planning time.
            signature: Signature::variadic_any(Volatility::Volatile),
            origin: None,
            fields: Mutex::new(HashMap::new()),
        }
    }

    /// This function with `origin`: an opaque description of where its module comes from.
    pub fn with_origin(mut self, origin: String) -> WasmUdf {
        self.origin = Some(origin);
        self
    }

    /// See [`WasmUdf::with_origin`].
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    fn err(&self, message: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "function `{}` (module `{}`, `{}`): {message}",
            self.name,
            self.plugin.name(),
            self.function
        ))
    }

    /// The argument batch's schema: the fields' names made unique (`x`, `x_2`), or `argN`.
    fn arg_schema(arg_fields: &[FieldRef]) -> Arc<Schema> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let fields: Vec<Field> = arg_fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let base = if f.name().is_empty() || f.name().contains('(') {
                    format!("arg{}", i + 1)
                } else {
                    f.name().clone()
                };
                let n = seen.entry(base.clone()).or_insert(0);
                *n += 1;
                let name = if *n == 1 { base } else { format!("{base}_{n}") };
                Field::new(name, f.data_type().clone(), true)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Calls the module on `batch` and returns its one output column (as arrow 59).
    fn call(&self, batch: &RecordBatch) -> Result<(FieldRef, ArrayRef)> {
        let input = bridge::from_df(batch).map_err(|e| self.err(e))?;
        let out = self
            .plugin
            .call_arrow(&self.function, &input)
            .map_err(|e| self.err(e))?;
        let out = bridge::to_df(&out).map_err(|e| self.err(e))?;
        if out.num_columns() != 1 {
            return Err(self.err(format!(
                "returned {} columns; a SQL function's module must return exactly one",
                out.num_columns()
            )));
        }
        if out.num_rows() != batch.num_rows() {
            return Err(self.err(format!(
                "returned {} rows for {}; a SQL function returns one value per row",
                out.num_rows(),
                batch.num_rows()
            )));
        }
        let field = out.schema().field(0).clone();
        Ok((
            Arc::new(field.with_name(self.name.clone())),
            out.column(0).clone(),
        ))
    }

    fn result_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        let schema = Self::arg_schema(arg_fields);
        let key: Vec<(String, String)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect();
        if let Some(f) = self
            .fields
            .lock()
            .map_err(|_| self.err("poisoned"))?
            .get(&key)
        {
            return Ok(f.clone());
        }
        let (field, _) = self.call(&RecordBatch::new_empty(schema))?;
        self.fields
            .lock()
            .map_err(|_| self.err("poisoned"))?
            .insert(key, field.clone());
        Ok(field)
    }
}

impl ScalarUDFImpl for WasmUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(
        &self,
        arg_types: &[datafusion::arrow::datatypes::DataType],
    ) -> Result<datafusion::arrow::datatypes::DataType> {
        let fields: Vec<FieldRef> = arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| Arc::new(Field::new(format!("arg{}", i + 1), t.clone(), true)))
            .collect();
        Ok(self.result_field(&fields)?.data_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.result_field(args.arg_fields)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let schema = Self::arg_schema(&args.arg_fields);
        let batch = RecordBatch::try_new_with_options(
            schema,
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(args.number_rows)),
        )?;
        let (field, column) = self.call(&batch)?;
        if field.data_type() != args.return_field.data_type() {
            return Err(self.err(format!(
                "returned {} where it returned {} when the query was planned",
                field.data_type(),
                args.return_field.data_type()
            )));
        }
        Ok(ColumnarValue::Array(column))
    }
}
