//! Pipelines served over Arrow Flight (`wasmlink serve`).
//!
//! Each pipeline file is a flight under the descriptor path `[STEM]` (its file stem), and each
//! of its stages alone under `[STEM, STAGE]`. The file's source and sink are not used: a
//! client's `DoExchange` stream is the source, and the exchange's response stream is the sink.
//!
//! - **ListFlights / GetFlightInfo / GetSchema** describe the flights: the output schema (in
//!   `FlightInfo.schema`, when known) and, in `FlightInfo.app_metadata`, a JSON object with the
//!   input schema (when known), the stages and the queue depth. The input schema is known when the
//!   pipeline file's source has a fixed or stored one (a directory, an Arrow IPC or a Parquet
//!   file that exists); the output schema is known when the stages accept an empty batch of the
//!   input schema (the ABI's way to ask a function for its output schema, docs/abi.md).
//! - **DoExchange**: the first message names the flight (a path descriptor) and carries the
//!   client's schema. The server calls the stages once on an empty batch of that schema; a stage
//!   that refuses it ends the call with `InvalidArgument` and one line naming the flight and the
//!   stage. Then every batch goes through the stages in turn and the results come back **in
//!   input order**. A batch whose call fails (trap, timeout, limit, guest error, host panic)
//!   comes back as a message with no data and `app_metadata` holding a JSON dead letter
//!   (`{"dead_letter": {"batch": N, "rows": R, "stage": "NAME", "error": "..."}}`): the stream
//!   goes on.
//! - **Bounded memory.** An exchange holds at most the pipeline's `queue-depth` batches in the
//!   server at a time (being called, or waiting to be sent in order); it reads the client's next
//!   batch only when one of them is done; one message (a client's batch) is at most
//!   [`MAX_MESSAGE_BYTES`] (64 MiB). Exchanges run at once, each on its own instances (from
//!   the plugins' pools), under the plugins' policies and limits, as in `pipeline run`.
//! - **Security.** [`serve`] binds a loopback address without a token; any other address needs
//!   a bearer token, checked on every call (`authorization: Bearer TOKEN`), else
//!   `Unauthenticated`. With a [`TlsIdentity`] (a PEM certificate chain and its private key,
//!   [`read_tls`]) the server speaks only TLS (`grpc+tls://`, rustls on ring), so the token and
//!   the batches do not travel in clear; a client that connects without TLS gets no answer.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use wasmlink_host::plugin::PluginHost;
use wasmlink_pipeline::{PipelineSpec, Source, Stage};

/// The largest message a client may send (one batch, as Flight data), 64 MiB: larger ones end
/// the exchange with `OutOfRange` ("decoded message length too large"). It bounds an
/// exchange's memory together with the queue depth. Results sent back have no such limit.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// An error setting up or running the server. Each prints as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A pipeline file cannot be read or loaded.
    #[error("{0}")]
    Pipeline(#[from] wasmlink_pipeline::PipelineError),
    /// Two pipeline files have the same stem (the descriptor path).
    #[error("{}: its flight name `{name}` is also the stem of {}", second.display(), first.display())]
    DuplicateName {
        /// The name.
        name: String,
        /// The file that took it first.
        first: PathBuf,
        /// The file that wanted it again.
        second: PathBuf,
    },
    /// A pipeline file has no usable stem.
    #[error("{}: no file stem to name its flight", path.display())]
    NoName {
        /// The file.
        path: PathBuf,
    },
    /// A non-loopback address without a token.
    #[error("{addr}: binding an address other than loopback needs a bearer token (--token-file)")]
    TokenRequired {
        /// The address.
        addr: SocketAddr,
    },
    /// The token is empty or not one line of visible ASCII.
    #[error("{}: {message}", path.display())]
    BadToken {
        /// The token file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A TLS certificate or key file cannot be read or holds no usable PEM item.
    #[error("{}: {message}", path.display())]
    BadTls {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refuses the certificate and key together (the key is not the certificate's).
    #[error("TLS certificate and key: {message}")]
    Tls {
        /// rustls's reason.
        message: String,
    },
    /// The address cannot be bound or the server failed.
    #[error("{addr}: {message}")]
    Transport {
        /// The address.
        addr: SocketAddr,
        /// The system's reason.
        message: String,
    },
}

/// One served flight: a whole pipeline, or one of its stages.
#[derive(Debug, Clone)]
pub struct Flight {
    /// The descriptor path: `[stem]` or `[stem, stage]`.
    pub path: Vec<String>,
    /// The stages run, in order.
    pub stages: Vec<Stage>,
    /// Batches an exchange holds at most (the pipeline's `queue-depth`).
    pub queue_depth: usize,
    /// The schema the first stage is fed, when known.
    pub input_schema: Option<SchemaRef>,
    /// The schema of the results, when known.
    pub output_schema: Option<SchemaRef>,
}

/// The flights of some pipeline files.
#[derive(Debug, Clone, Default)]
pub struct Flights {
    flights: Vec<Flight>,
}

impl Flights {
    /// Loads pipeline files on `host`: each becomes a flight named by its stem, and each of its
    /// stages one named `[stem, stage]`.
    ///
    /// # Errors
    ///
    /// A file that does not load ([`ServeError::Pipeline`]), two files with one stem.
    pub fn load(files: &[PathBuf], host: &PluginHost) -> Result<Flights, ServeError> {
        let mut flights = Vec::new();
        let mut seen: Vec<(String, PathBuf)> = Vec::new();
        for file in files {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ServeError::NoName { path: file.clone() })?
                .to_string();
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                return Err(ServeError::DuplicateName {
                    name,
                    first: first.clone(),
                    second: file.clone(),
                });
            }
            seen.push((name.clone(), file.clone()));
            let spec = PipelineSpec::from_file(file, host)?;
            // The same checks as `pipeline run` (bounds, functions, names).
            let spec = wasmlink_pipeline::Pipeline::new(spec)?.spec().clone();
            flights.extend(flights_of(&name, &spec));
        }
        Ok(Flights { flights })
    }

    /// The flights, pipelines first, each followed by its stages.
    pub fn flights(&self) -> &[Flight] {
        &self.flights
    }

    fn find(&self, descriptor: &FlightDescriptor) -> Result<&Flight, Status> {
        if descriptor.r#type != DescriptorType::Path as i32 {
            return Err(Status::invalid_argument(
                "the descriptor must be a path ([pipeline] or [pipeline, stage]), not a command",
            ));
        }
        self.flights
            .iter()
            .find(|f| f.path == descriptor.path)
            .ok_or_else(|| {
                let names: Vec<String> = self.flights.iter().map(|f| f.path.join("/")).collect();
                Status::not_found(format!(
                    "no flight `{}` (served: {})",
                    descriptor.path.join("/"),
                    names.join(", ")
                ))
            })
    }
}

/// The flights of one pipeline: the whole, then each stage, with the schemas that are known.
fn flights_of(name: &str, spec: &PipelineSpec) -> Vec<Flight> {
    let input = source_schema(&spec.source);
    // Each stage's input schema is the previous one's output, probed with an empty batch.
    let mut schemas = vec![input.clone()];
    for stage in &spec.stages {
        let next = schemas
            .last()
            .cloned()
            .flatten()
            .and_then(|s| probe(std::slice::from_ref(stage), &s).ok());
        schemas.push(next);
    }
    let mut flights = vec![Flight {
        path: vec![name.to_string()],
        stages: spec.stages.clone(),
        queue_depth: spec.queue_depth,
        input_schema: input,
        output_schema: schemas.last().cloned().flatten(),
    }];
    for (i, stage) in spec.stages.iter().enumerate() {
        flights.push(Flight {
            path: vec![name.to_string(), stage.name.clone()],
            stages: vec![stage.clone()],
            queue_depth: spec.queue_depth,
            input_schema: schemas[i].clone(),
            output_schema: schemas[i + 1].clone(),
        });
    }
    flights
}

/// The schema a source yields, when it is fixed or stored in the file (no inference).
fn source_schema(source: &Source) -> Option<SchemaRef> {
    match source {
        Source::Dir { binary, .. } => Some(Arc::new(Schema::new(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new(
                "content",
                if *binary {
                    DataType::Binary
                } else {
                    DataType::Utf8
                },
                false,
            ),
            Field::new("size", DataType::UInt64, false),
        ]))),
        Source::Arrow { path } => arrow_file_schema(path),
        Source::Parquet { path } => {
            let file = std::fs::File::open(path).ok()?;
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .ok()
                .map(|b| b.schema().clone())
        }
        Source::Batches(b) => b.first().map(|b| b.schema()),
        _ => None,
    }
}

fn arrow_file_schema(path: &Path) -> Option<SchemaRef> {
    let file = std::fs::File::open(path).ok()?;
    if let Ok(r) = arrow_ipc::reader::FileReader::try_new(file, None) {
        return Some(r.schema());
    }
    let file = std::fs::File::open(path).ok()?;
    arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)
        .ok()
        .map(|r| r.schema())
}

/// Why a batch failed: the stage and the one-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stage whose call failed.
    pub stage: String,
    /// What went wrong (one line).
    pub error: String,
}

/// Runs `batch` through `stages` in turn on this thread. A failed call (or a panic in the host
/// while handling it) is a [`Failure`] naming the stage.
pub fn run_stages(stages: &[Stage], batch: RecordBatch) -> Result<RecordBatch, Failure> {
    let mut batch = batch;
    for stage in stages {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.call_once(&batch)));
        batch = match result {
            Ok(Ok(called)) => called.batch,
            Ok(Err(e)) => {
                return Err(Failure {
                    stage: stage.name.clone(),
                    error: e.to_string().replace('\n', " "),
                });
            }
            Err(p) => {
                let m = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                return Err(Failure {
                    stage: stage.name.clone(),
                    error: format!(
                        "the host panicked handling the call: {}",
                        m.replace('\n', " ")
                    ),
                });
            }
        };
    }
    Ok(batch)
}

/// The output schema of `stages` for input `schema`: the stages called on an empty batch.
pub fn probe(stages: &[Stage], schema: &SchemaRef) -> Result<SchemaRef, Failure> {
    run_stages(stages, RecordBatch::new_empty(schema.clone())).map(|b| b.schema())
}

fn schema_line(schema: &Schema) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    format!("({})", fields.join(", "))
}

fn flight_info(flight: &Flight) -> Result<FlightInfo, Status> {
    let descriptor = FlightDescriptor::new_path(flight.path.clone());
    let meta = serde_json::json!({
        "input_schema": flight.input_schema.as_deref().map(schema_line),
        "output_schema": flight.output_schema.as_deref().map(schema_line),
        "stages": flight.stages.iter().map(|s| serde_json::json!({
            "name": s.name, "module": s.plugin.name(), "function": s.function,
            "sha256": s.plugin.sha256(),
        })).collect::<Vec<_>>(),
        "queue_depth": flight.queue_depth,
    });
    let mut info = FlightInfo::new()
        .with_descriptor(descriptor)
        .with_ordered(true)
        .with_app_metadata(meta.to_string())
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(flight.path.join("/"))));
    if let Some(s) = &flight.output_schema {
        info = info
            .try_with_schema(s)
            .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
    }
    Ok(info)
}

/// The Flight service over some [`Flights`].
#[derive(Debug, Clone)]
pub struct Service {
    flights: Arc<Flights>,
}

impl Service {
    /// A service for `flights`.
    pub fn new(flights: Flights) -> Service {
        Service {
            flights: Arc::new(flights),
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not served: use DoExchange with a path descriptor"
    ))
}

/// Encodes results as Flight messages: the schema once, then dictionaries and batches.
struct Encoder {
    schema: SchemaRef,
    generator: IpcDataGenerator,
    tracker: DictionaryTracker,
    options: IpcWriteOptions,
    context: IpcWriteContext,
}

impl Encoder {
    fn new(schema: SchemaRef) -> Encoder {
        Encoder {
            schema,
            generator: IpcDataGenerator::default(),
            tracker: DictionaryTracker::new(false),
            options: IpcWriteOptions::default(),
            context: IpcWriteContext::default(),
        }
    }

    fn schema_message(&self) -> FlightData {
        SchemaAsIpc::new(&self.schema, &self.options).into()
    }

    fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<FlightData>, String> {
        let (dicts, data) = self
            .generator
            .encode(batch, &mut self.tracker, &self.options, &mut self.context)
            .map_err(|e| format!("cannot encode the result: {e}"))?;
        let mut out: Vec<FlightData> = dicts.into_iter().map(Into::into).collect();
        out.push(data.into());
        Ok(out)
    }
}

fn dead_letter(seq: u64, rows: usize, failure: &Failure) -> FlightData {
    let meta = serde_json::json!({"dead_letter": {
        "batch": seq, "rows": rows, "stage": failure.stage, "error": failure.error,
    }});
    FlightData::new().with_app_metadata(meta.to_string())
}

#[tonic::async_trait]
impl FlightService for Service {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        // The token (if any) was checked by the interceptor: nothing more to agree on.
        let out = futures::stream::once(async { Ok(HandshakeResponse::default()) });
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos: Vec<Result<FlightInfo, Status>> =
            self.flights.flights.iter().map(flight_info).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(infos))))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let flight = self.flights.find(request.get_ref())?;
        Ok(Response::new(flight_info(flight)?))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(unsupported("PollFlightInfo"))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let flight = self.flights.find(request.get_ref())?;
        let Some(schema) = &flight.output_schema else {
            return Err(Status::not_found(format!(
                "flight `{}`: its output schema is not known before a client sends its schema",
                flight.path.join("/")
            )));
        };
        let result = SchemaResult::try_from(SchemaAsIpc::new(schema, &IpcWriteOptions::default()))
            .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(unsupported("DoGet"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(unsupported("DoPut"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(unsupported("DoAction"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::empty())))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let mut input = request.into_inner();
        // The first message names the flight.
        let first = input.message().await?.ok_or_else(|| {
            Status::invalid_argument("the exchange ended before its first message")
        })?;
        let descriptor = first.flight_descriptor.clone().ok_or_else(|| {
            Status::invalid_argument("the first message of an exchange has no flight descriptor")
        })?;
        let flight = self.flights.find(&descriptor)?.clone();
        let name = flight.path.join("/");
        // Messages with neither header nor body (a descriptor alone, metadata) carry no data.
        let rest = futures::stream::once(async move { Ok(first) })
            .chain(input)
            .try_filter(|m| futures::future::ready(!m.data_header.is_empty()))
            .map_err(arrow_flight::error::FlightError::from);
        let mut decoder = FlightDataDecoder::new(rest);
        // Then the schema, before any batch.
        let schema = loop {
            match decoder.next().await {
                None => {
                    return Err(Status::invalid_argument(format!(
                        "flight `{name}`: the exchange ended before the client sent a schema"
                    )));
                }
                Some(Err(e)) => return Err(input_error(&name, e)),
                Some(Ok(d)) => match d.payload {
                    DecodedPayload::Schema(s) => break s,
                    DecodedPayload::None => continue,
                    DecodedPayload::RecordBatch(_) => {
                        return Err(Status::invalid_argument(format!(
                            "flight `{name}`: a batch came before the schema"
                        )));
                    }
                },
            }
        };
        let stages = Arc::new(flight.stages.clone());
        let probe_stages = stages.clone();
        let probe_schema = schema.clone();
        let output_schema =
            tokio::task::spawn_blocking(move || probe(&probe_stages, &probe_schema))
                .await
                .map_err(|e| Status::internal(format!("the schema check failed: {e}")))?
                .map_err(|f| {
                    Status::invalid_argument(format!(
                        "flight `{name}`: stage `{}` does not accept the schema {}: {}",
                        f.stage,
                        schema_line(&schema),
                        f.error
                    ))
                })?;
        tracing::debug!(target: "wasmlink::flight", "exchange on `{name}`: {} -> {}",
            schema_line(&schema), schema_line(&output_schema));

        // Batches in, numbered; each is called on a blocking thread; `buffered` keeps at most
        // `queue_depth` of them in flight and yields the results in input order.
        let batches = decoder.filter_map(|d| {
            futures::future::ready(match d {
                Ok(d) => match d.payload {
                    DecodedPayload::RecordBatch(b) => Some(Ok(b)),
                    _ => None,
                },
                Err(e) => Some(Err(e)),
            })
        });
        let depth = flight.queue_depth.max(1);
        let exchange_name = name.clone();
        let results = batches
            .enumerate()
            .map(move |(seq, item)| {
                let stages = stages.clone();
                async move {
                    let batch = item?;
                    let rows = batch.num_rows();
                    let r = tokio::task::spawn_blocking(move || run_stages(&stages, batch))
                        .await
                        .map_err(|e| {
                            arrow_flight::error::FlightError::ExternalError(Box::new(e))
                        })?;
                    Ok::<_, arrow_flight::error::FlightError>((seq as u64, rows, r))
                }
            })
            .buffered(depth);
        let mut encoder = Encoder::new(output_schema.clone());
        let head = futures::stream::once({
            let m = encoder.schema_message();
            async move { Ok(m) }
        });
        let body = results
            .map(move |r| -> Vec<Result<FlightData, Status>> {
                match r {
                    Err(e) => vec![Err(input_error(&exchange_name, e))],
                    Ok((seq, rows, Err(f))) => vec![Ok(dead_letter(seq, rows, &f))],
                    Ok((seq, rows, Ok(out))) => {
                        if out.schema() != encoder.schema {
                            let f = Failure {
                                stage: "(output)".into(),
                                error: format!(
                                    "the result's schema {} differs from the exchange's {}",
                                    schema_line(&out.schema()),
                                    schema_line(&encoder.schema)
                                ),
                            };
                            return vec![Ok(dead_letter(seq, rows, &f))];
                        }
                        match encoder.batch(&out) {
                            Ok(msgs) => msgs.into_iter().map(Ok).collect(),
                            Err(error) => vec![Ok(dead_letter(
                                seq,
                                rows,
                                &Failure {
                                    stage: "(output)".into(),
                                    error,
                                },
                            ))],
                        }
                    }
                }
            })
            .flat_map(futures::stream::iter);
        Ok(Response::new(Box::pin(head.chain(body))))
    }
}

/// A bad message from the client: `InvalidArgument` naming the flight, or the client's own
/// status passed on.
fn input_error(name: &str, e: arrow_flight::error::FlightError) -> Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        e => Status::invalid_argument(format!(
            "flight `{name}`: bad input: {}",
            e.to_string().replace('\n', " ")
        )),
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// Reads a bearer token file: one line of visible ASCII (a trailing newline is dropped).
///
/// # Errors
///
/// [`ServeError::BadToken`] naming the file.
pub fn read_token(path: &Path) -> Result<String, ServeError> {
    let bad = |message: String| ServeError::BadToken {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        return Err(bad("the token is empty".into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "the token must be one line of visible ASCII (no spaces or control characters)".into(),
        ));
    }
    Ok(token.to_string())
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A server's TLS identity: its certificate chain and private key, PEM, as read and checked by
/// [`read_tls`].
#[derive(Clone)]
pub struct TlsIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

/// Reads a TLS certificate chain (`cert`, PEM `CERTIFICATE` items, the server's first) and its
/// private key (`key`, PEM PKCS#8, PKCS#1 or SEC1), checking each file on its own so an error
/// names the file at fault. Whether the key belongs to the certificate is checked when the
/// server starts ([`serve`]).
///
/// # Errors
///
/// [`ServeError::BadTls`] naming the file: unreadable, no certificate, a malformed PEM item, or
/// no private key.
pub fn read_tls(cert: &Path, key: &Path) -> Result<TlsIdentity, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, message: String| ServeError::BadTls {
        path: path.to_path_buf(),
        message,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| bad(cert, e.to_string()))?;
    let mut certs = 0;
    for item in CertificateDer::pem_slice_iter(&cert_pem) {
        item.map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
        certs += 1;
    }
    if certs == 0 {
        return Err(bad(
            cert,
            "no certificate in it (a PEM file with -----BEGIN CERTIFICATE----- is expected)".into(),
        ));
    }
    let key_pem = std::fs::read(key).map_err(|e| bad(key, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            key,
            format!("no private key in it (PEM PKCS#8, PKCS#1 or SEC1 is expected): {e}"),
        )
    })?;
    Ok(TlsIdentity { cert_pem, key_pem })
}

/// How [`serve`] guards its calls: a bearer token every call must carry, and TLS.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// The bearer token (`authorization: Bearer TOKEN`); required off loopback.
    pub token: Option<String>,
    /// The server's certificate and key: the server then speaks only TLS.
    pub tls: Option<TlsIdentity>,
}

/// Serves `flights` on `addr` until the process ends, on a runtime of its own. `on_bound` is
/// called with the bound address (useful with port 0) once the server accepts connections.
///
/// # Errors
///
/// [`ServeError::TokenRequired`] for an address other than loopback without a token;
/// [`ServeError::Tls`] if rustls refuses the pair (a key that is not the certificate's);
/// [`ServeError::Transport`] if the address cannot be bound or the server fails.
pub fn serve(
    addr: SocketAddr,
    flights: Flights,
    security: Security,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let Security { token, tls } = security;
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ServeError::TokenRequired { addr });
    }
    let transport = |message: String| ServeError::Transport { addr, message };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let identity = tonic::transport::Identity::from_pem(tls.cert_pem, tls.key_pem);
        server = server
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServeError::Tls {
                message: error_chain(&e),
            })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wasmlink-flight")
        .build()
        .map_err(|e| transport(e.to_string()))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let bound = listener
            .local_addr()
            .map_err(|e| transport(e.to_string()))?;
        on_bound(bound);
        let expected = token.map(|t| format!("Bearer {t}"));
        let check = move |request: Request<()>| -> Result<Request<()>, Status> {
            if let Some(expected) = &expected {
                let given = request
                    .metadata()
                    .get("authorization")
                    .map(|v| v.as_bytes())
                    .unwrap_or_default();
                if !same(given, expected.as_bytes()) {
                    return Err(Status::unauthenticated(
                        "missing or wrong bearer token (authorization: Bearer TOKEN)",
                    ));
                }
            }
            Ok(request)
        };
        // tonic's default limit on a received message is 4 MiB: a client batch above it (64
        // documents of a few hundred KB, or 64 Ki rows of text) failed the whole exchange.
        let service = tonic::service::interceptor::InterceptedService::new(
            FlightServiceServer::new(Service::new(flights))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            check,
        );
        server
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .map_err(|e| ServeError::Transport {
                addr: bound,
                message: e.to_string(),
            })
    })
}
