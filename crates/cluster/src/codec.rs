//! Ballista's plan codecs, with wasm functions carried by their [`UdfSpec`](crate::UdfSpec).
//!
//! Everything but scalar functions goes to Ballista's own codecs. A `WasmUdf` with an origin
//! (registered through `register_cluster_udf`) is written as its spec; reading one loads the
//! module through this process's [`ModuleResolver`]. Other functions are written as DataFusion
//! writes them (by name, resolved from the built-in registry).

use std::any::Any;
use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::ModuleResolver;

fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<bool> {
    let any: &dyn Any = node.inner().as_ref();
    let Some(udf) = any.downcast_ref::<wasmlink_sql::WasmUdf>() else {
        return Ok(false);
    };
    match udf.origin() {
        Some(origin) => {
            buf.extend_from_slice(origin.as_bytes());
            Ok(true)
        }
        None => Err(DataFusionError::Plan(format!(
            "function `{}`: a wasm function without a module origin cannot run on a cluster",
            node.name()
        ))),
    }
}

fn decode_udf(resolver: &ModuleResolver, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
    resolver.udf(name, buf).map_err(DataFusionError::Execution)
}

/// Ballista's logical codec, plus wasm functions.
#[derive(Debug)]
pub struct WasmLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
    resolver: Arc<ModuleResolver>,
}

impl WasmLogicalCodec {
    pub fn new(resolver: Arc<ModuleResolver>) -> WasmLogicalCodec {
        WasmLogicalCodec {
            inner: BallistaLogicalExtensionCodec::default(),
            resolver,
        }
    }
}

impl LogicalExtensionCodec for WasmLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: datafusion::arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn datafusion::catalog::TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if buf.is_empty() {
            return self.inner.try_decode_udf(name, buf);
        }
        decode_udf(&self.resolver, name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf)? {
            return Ok(());
        }
        self.inner.try_encode_udf(node, buf)
    }
}

/// Ballista's physical codec, plus wasm functions.
#[derive(Debug)]
pub struct WasmPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    resolver: Arc<ModuleResolver>,
}

impl WasmPhysicalCodec {
    pub fn new(resolver: Arc<ModuleResolver>) -> WasmPhysicalCodec {
        WasmPhysicalCodec {
            inner: BallistaPhysicalExtensionCodec::default(),
            resolver,
        }
    }
}

impl PhysicalExtensionCodec for WasmPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if buf.is_empty() {
            return self.inner.try_decode_udf(name, buf);
        }
        decode_udf(&self.resolver, name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf)? {
            return Ok(());
        }
        self.inner.try_encode_udf(node, buf)
    }
}
