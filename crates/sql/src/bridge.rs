//! The one place where the workspace's arrow (60) meets DataFusion's (59).
//!
//! A batch crosses as an Arrow IPC stream: written by one version, read by the other. That is
//! one copy of the batch's buffers each way, safe code only, and exact for every type both
//! versions know. Nothing else in the workspace sees arrow 59 types.

use std::sync::Arc;

use datafusion::arrow as arrow59;

use crate::SqlError;

/// A workspace batch (arrow 60) as a DataFusion batch (arrow 59).
pub fn to_df(
    batch: &arrow_array::RecordBatch,
) -> Result<arrow59::record_batch::RecordBatch, SqlError> {
    let mut bytes = Vec::new();
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, batch.schema_ref())
            .map_err(bridge_err)?;
        w.write(batch).map_err(bridge_err)?;
        w.finish().map_err(bridge_err)?;
    }
    let mut r = arrow59::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(bridge_err)?;
    match r.next() {
        Some(b) => b.map_err(bridge_err),
        None => Err(SqlError::Bridge("an empty IPC stream".into())),
    }
}

/// A DataFusion batch (arrow 59) as a workspace batch (arrow 60).
pub fn from_df(
    batch: &arrow59::record_batch::RecordBatch,
) -> Result<arrow_array::RecordBatch, SqlError> {
    let mut bytes = Vec::new();
    {
        let mut w = arrow59::ipc::writer::StreamWriter::try_new(&mut bytes, batch.schema_ref())
            .map_err(bridge_err)?;
        w.write(batch).map_err(bridge_err)?;
        w.finish().map_err(bridge_err)?;
    }
    let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(bridge_err)?;
    match r.next() {
        Some(b) => b.map_err(bridge_err),
        None => Err(SqlError::Bridge("an empty IPC stream".into())),
    }
}

/// A DataFusion schema as an empty workspace batch of it.
pub fn empty_from_df_schema(
    schema: Arc<arrow59::datatypes::Schema>,
) -> Result<arrow_array::RecordBatch, SqlError> {
    from_df(&arrow59::record_batch::RecordBatch::new_empty(schema))
}

fn bridge_err(e: impl std::fmt::Display) -> SqlError {
    SqlError::Bridge(e.to_string())
}
