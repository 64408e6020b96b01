//! The TOML form of a pipeline (docs/pipeline.md): parsed with `deny_unknown_fields`, then
//! checked field by field; every error is one line starting `FILE:LINE:COL:`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::{
    DEFAULT_BATCH_ROWS, DEFAULT_EXTENSIONS, DEFAULT_QUEUE_DEPTH, DEFAULT_ROW_GROUP_ROWS,
    MAX_BATCH_ROWS, MAX_QUEUE_DEPTH, MAX_ROW_GROUP_ROWS, MAX_WORKERS, PipelineError, PipelineSpec,
    Recycle, Schedule, Sink, Source, Stage, StageModule, check_bound, workers_in_total,
};
use wasmlink_host::plugin::PluginHost;
use wasmlink_host::policy::Policy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPipeline {
    source: RawSource,
    #[serde(default)]
    stage: Vec<RawStage>,
    sink: RawSink,
    dead_letter: Option<Spanned<PathBuf>>,
    queue_depth: Option<Spanned<usize>>,
    /// Chain schedule with this many threads (see [`Schedule::Chain`]).
    workers: Option<Spanned<usize>>,
    /// The module repository for stages whose `module` is `NAME@REQ`.
    repository: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    Jsonl,
    Csv,
    Arrow,
    Parquet,
    Dir,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ContentKind {
    Utf8,
    Binary,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    kind: Spanned<SourceKind>,
    path: Spanned<PathBuf>,
    batch_rows: Option<Spanned<usize>>,
    extensions: Option<Spanned<Vec<String>>>,
    content: Option<Spanned<ContentKind>>,
    include: Option<Spanned<Vec<String>>>,
    exclude: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStage {
    name: Spanned<String>,
    module: Spanned<PathBuf>,
    function: Spanned<String>,
    policy: Option<Spanned<PolicyRef>>,
    workers: Option<Spanned<usize>>,
    /// `"256MiB"`, a number of bytes, or `"none"` (see [`Recycle`]).
    recycle_above: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SinkKind {
    Arrow,
    Jsonl,
    Csv,
    Parquet,
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSink {
    kind: Spanned<SinkKind>,
    path: Option<Spanned<PathBuf>>,
    row_group_rows: Option<Spanned<usize>>,
}

/// `policy = "file.toml"` or an inline `[stage.policy]` table.
enum PolicyRef {
    File(PathBuf),
    Inline(Box<Policy>),
}

impl<'de> Deserialize<'de> for PolicyRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PolicyRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path to a policy file, or an inline policy table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PolicyRef, E> {
                Ok(PolicyRef::File(PathBuf::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PolicyRef, A::Error> {
                Policy::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|p| PolicyRef::Inline(Box::new(p)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The 1-based (line, column) of a byte offset.
fn at(text: &str, span: Range<usize>) -> (usize, usize) {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// A [`PipelineError::Config`] at `span`; a message `FIELD: TEXT` (a field name of lowercase
/// letters, `.` and `-`) names its field.
fn config_err(
    text: &str,
    origin: &str,
    span: Range<usize>,
    stage: Option<&str>,
    message: String,
) -> PipelineError {
    let (line, col) = at(text, span);
    let (field, message) = match message.split_once(": ") {
        Some((f, m))
            if stage.is_none()
                && !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'-') =>
        {
            (Some(f.to_string()), m.to_string())
        }
        _ => (None, message),
    };
    PipelineError::Config {
        file: origin.to_string(),
        line,
        col,
        stage: stage.map(str::to_string),
        field,
        message,
    }
}

pub(crate) fn from_file(path: &Path, host: &PluginHost) -> Result<PipelineSpec, PipelineError> {
    // A pipeline file is small text: `/dev/zero` or a huge file is an error, never read whole.
    let text = wasmlink_host::policy::read_bounded(path, wasmlink_host::policy::MAX_POLICY_FILE)
        .map_err(|e| PipelineError::io(path, format!("cannot read pipeline: {e}")))?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    from_toml(&text, &path.display().to_string(), &base, host)
}

pub(crate) fn from_toml(
    text: &str,
    origin: &str,
    base: &Path,
    host: &PluginHost,
) -> Result<PipelineSpec, PipelineError> {
    let raw: RawPipeline = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| at(text, s));
        PipelineError::Config {
            file: origin.to_string(),
            line,
            col,
            stage: None,
            field: None,
            message: e.message().trim().replace('\n', " "),
        }
    })?;
    let err = |span: Range<usize>, msg: String| config_err(text, origin, span, None, msg);
    let resolve = |p: &Path| {
        if p.is_relative() {
            base.join(p)
        } else {
            p.to_path_buf()
        }
    };

    // Source.
    let s = &raw.source;
    let src_path = resolve(s.path.get_ref());
    let kind = *s.kind.get_ref();
    let metadata = std::fs::metadata(&src_path).map_err(|e| {
        err(
            s.path.span(),
            format!(
                "source.path: cannot open `{}`: {}",
                src_path.display(),
                io_msg(&e)
            ),
        )
    })?;
    if kind == SourceKind::Dir && !metadata.is_dir() {
        return Err(err(
            s.path.span(),
            format!(
                "source.path: `{}` is not a directory (kind = \"dir\")",
                src_path.display()
            ),
        ));
    }
    if kind != SourceKind::Dir && metadata.is_dir() {
        return Err(err(
            s.path.span(),
            format!(
                "source.path: `{}` is a directory; use kind = \"dir\"",
                src_path.display()
            ),
        ));
    }
    if kind != SourceKind::Dir {
        if let Some(x) = &s.extensions {
            return Err(err(
                x.span(),
                "source.extensions: only for kind = \"dir\"".into(),
            ));
        }
        if let Some(x) = &s.content {
            return Err(err(
                x.span(),
                "source.content: only for kind = \"dir\"".into(),
            ));
        }
        for (name, x) in [("include", &s.include), ("exclude", &s.exclude)] {
            if let Some(x) = x {
                return Err(err(
                    x.span(),
                    format!("source.{name}: only for kind = \"dir\""),
                ));
            }
        }
    }
    for (name, x) in [("include", &s.include), ("exclude", &s.exclude)] {
        if let Some(x) = x {
            super::source::globs(&format!("source.{name}"), x.get_ref())
                .map_err(|e| err(x.span(), e.to_string()))?;
        }
    }
    let patterns = |x: &Option<Spanned<Vec<String>>>| {
        x.as_ref().map_or_else(Vec::new, |x| x.get_ref().clone())
    };
    let source = match kind {
        SourceKind::Jsonl => Source::JsonLines { path: src_path },
        SourceKind::Csv => Source::Csv { path: src_path },
        SourceKind::Arrow => Source::Arrow { path: src_path },
        SourceKind::Parquet => Source::Parquet { path: src_path },
        SourceKind::Dir => Source::Dir {
            path: src_path,
            // With `include` patterns and no `extensions`, the patterns alone choose.
            extensions: s.extensions.as_ref().map_or_else(
                || match &s.include {
                    Some(x) if !x.get_ref().is_empty() => Vec::new(),
                    _ => DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
                },
                |x| {
                    x.get_ref()
                        .iter()
                        .map(|e| e.trim_start_matches('.').to_string())
                        .collect()
                },
            ),
            binary: s
                .content
                .as_ref()
                .is_some_and(|c| *c.get_ref() == ContentKind::Binary),
            include: patterns(&s.include),
            exclude: patterns(&s.exclude),
        },
    };
    // Every number has a bound, checked before anything is allocated for it.
    let bounded = |x: &Option<Spanned<usize>>, field: &str, max: usize, default: usize| match x {
        Some(v) => check_bound(*v.get_ref(), max)
            .map(|()| *v.get_ref())
            .map_err(|m| err(v.span(), format!("{field}: {m}"))),
        None => Ok(default),
    };
    let batch_rows = bounded(
        &s.batch_rows,
        "source.batch-rows",
        MAX_BATCH_ROWS,
        DEFAULT_BATCH_ROWS,
    )?;
    let queue_depth = bounded(
        &raw.queue_depth,
        "queue-depth",
        MAX_QUEUE_DEPTH,
        DEFAULT_QUEUE_DEPTH,
    )?;

    // Sink.
    let sink_kind = *raw.sink.kind.get_ref();
    let row_group_rows = match &raw.sink.row_group_rows {
        Some(r) if sink_kind != SinkKind::Parquet => {
            return Err(err(
                r.span(),
                "sink.row-group-rows: only for kind = \"parquet\"".into(),
            ));
        }
        r => bounded(
            r,
            "sink.row-group-rows",
            MAX_ROW_GROUP_ROWS,
            DEFAULT_ROW_GROUP_ROWS,
        )?,
    };
    let sink = match (sink_kind, &raw.sink.path) {
        (SinkKind::None, None) => Sink::None,
        (SinkKind::None, Some(p)) => {
            return Err(err(
                p.span(),
                "sink.path: not used with kind = \"none\"".into(),
            ));
        }
        (k, None) => {
            let name = match k {
                SinkKind::Arrow => "arrow",
                SinkKind::Jsonl => "jsonl",
                SinkKind::Parquet => "parquet",
                _ => "csv",
            };
            return Err(err(
                raw.sink.kind.span(),
                format!("sink.path: required with kind = \"{name}\""),
            ));
        }
        (k, Some(p)) => {
            let path = resolve(p.get_ref());
            if path.is_dir() {
                return Err(err(
                    p.span(),
                    format!("sink.path: `{}` is a directory", path.display()),
                ));
            }
            match k {
                SinkKind::Arrow => Sink::Arrow(path),
                SinkKind::Jsonl => Sink::JsonLines(path),
                SinkKind::Parquet => Sink::Parquet {
                    path,
                    row_group_rows,
                },
                _ => Sink::Csv(path),
            }
        }
    };
    if let Some(out) = sink.path()
        && out == resolve(raw.source.path.get_ref())
    {
        return Err(err(
            raw.sink.path.as_ref().map_or(0..0, |p| p.span()),
            "sink.path: the same file as source.path".into(),
        ));
    }
    let dead_letter = raw.dead_letter.as_ref().map(|d| resolve(d.get_ref()));
    if let (Some(out), Some(d)) = (sink.path(), &raw.dead_letter)
        && Some(out) == dead_letter.as_deref()
    {
        return Err(err(
            d.span(),
            "dead-letter: the same file as sink.path".into(),
        ));
    }

    let schedule = match &raw.workers {
        Some(_) => Schedule::Chain {
            workers: bounded(&raw.workers, "workers", MAX_WORKERS, 1)?,
        },
        None => Schedule::Stages,
    };
    let mut threads = 0usize;
    // Opened on first use, so a pipeline of files needs no repository.
    let mut repository: Option<wasmlink_repo::Repository> = None;

    // Stages.
    let mut stages: Vec<Stage> = Vec::new();
    for st in &raw.stage {
        let name = st.name.get_ref().clone();
        let serr = |span: Range<usize>, field: &str, msg: String| {
            let mut e = config_err(text, origin, span, Some(&name), msg);
            if let PipelineError::Config { field: f, .. } = &mut e {
                *f = Some(field.to_string());
            }
            e
        };
        if name.is_empty() {
            return Err(err(st.name.span(), "stage.name: must not be empty".into()));
        }
        if stages.iter().any(|s| s.name == name) {
            return Err(serr(
                st.name.span(),
                "name",
                "used by an earlier stage".into(),
            ));
        }
        let workers = match (&st.workers, &raw.workers) {
            (Some(w), Some(_)) => {
                return Err(serr(
                    w.span(),
                    "workers",
                    "not allowed with the pipeline-level `workers` (the chain schedule runs \
                     every stage on each of those threads)"
                        .into(),
                ));
            }
            (Some(w), None) => check_bound(*w.get_ref(), MAX_WORKERS)
                .map(|()| *w.get_ref())
                .map_err(|m| serr(w.span(), "workers", m))?,
            (None, _) => 1,
        };
        if raw.workers.is_none() {
            threads = threads.saturating_add(workers);
            workers_in_total(threads).map_err(|m| {
                let span = st.workers.as_ref().map_or(st.name.span(), |w| w.span());
                serr(span, "workers", m)
            })?;
        }
        let module = resolve(st.module.get_ref());
        let reference = (!module.is_file())
            .then(|| st.module.get_ref().to_str())
            .flatten()
            .filter(|m| is_reference(m));
        if !module.is_file() && reference.is_none() {
            return Err(serr(
                st.module.span(),
                "module",
                format!("`{}` does not exist or is not a file", module.display()),
            ));
        }
        let policy = match &st.policy {
            None => Policy::default(),
            Some(p) => match p.get_ref() {
                PolicyRef::File(f) => Policy::from_file(&resolve(f))
                    .map_err(|e| serr(p.span(), "policy", e.to_string()))?,
                PolicyRef::Inline(pol) => {
                    let mut pol = (**pol).clone();
                    pol.validate(&format!("stage `{name}` policy"))
                        .map_err(|e| err(p.span(), e.to_string()))?;
                    pol.base_dir = Some(base.to_path_buf());
                    pol
                }
            },
        };
        let module_err = |e: String| serr(st.module.span(), "module", e);
        let plugin: StageModule = match reference {
            // A stage component (wit/pipeline/stage.wit): the same policy, its own runtime.
            None if is_component_file(&module) => StageModule::Component(std::sync::Arc::new(
                super::ComponentStage::load(&module, policy)
                    .map_err(|e| module_err(e.to_string()))?,
            )),
            None => host
                .load_file(&module, policy)
                .map_err(|e| module_err(e.to_string()))?
                .into(),
            Some(r) => {
                if repository.is_none() {
                    repository = Some(match &raw.repository {
                        Some(dir) => wasmlink_repo::Repository::open(resolve(dir.get_ref())),
                        None => wasmlink_repo::Repository::open_default()
                            .map_err(|e| module_err(e.to_string()))?,
                    });
                }
                let repo = repository
                    .as_ref()
                    .ok_or_else(|| module_err("no repository".into()))?;
                if references_component(repo, r) {
                    // A stage component stored in the repository: its bytes are loaded only
                    // once their sha256 (and, with the policy's trusted keys, signature) hold,
                    // exactly as for a core module.
                    StageModule::Component(std::sync::Arc::new(
                        load_component_ref(repo, r, policy).map_err(module_err)?,
                    ))
                } else {
                    host.load_ref(repo, r, policy)
                        .map_err(|e| module_err(e.to_string()))?
                        .into()
                }
            }
        };
        plugin
            .check_function(st.function.get_ref())
            .map_err(|m| serr(st.function.span(), "function", m))?;
        let recycle = match &st.recycle_above {
            None => Recycle::Auto,
            Some(v) => {
                parse_recycle(v.get_ref()).map_err(|m| serr(v.span(), "recycle-above", m))?
            }
        };
        stages.push(Stage {
            name,
            plugin,
            function: st.function.get_ref().clone(),
            workers,
            recycle,
            pooled: Default::default(),
        });
    }
    Ok(PipelineSpec {
        source,
        batch_rows,
        stages,
        sink,
        dead_letter,
        queue_depth,
        schedule,
    })
}

/// Whether a stage's `module` that is not a file reads as a repository reference (`NAME` or
/// `NAME@REQ`): no path separator and no `.wasm`/`.wat` extension.
fn is_reference(module: &str) -> bool {
    !module.contains('/')
        && !module.contains('\\')
        && !module.ends_with(".wasm")
        && !module.ends_with(".wat")
        && wasmlink_repo::ModuleRef::parse(module).is_ok()
}

/// Whether the repository entry `reference` resolves to, going by its object's first bytes,
/// is a component. Only picks the loader: the bytes loaded are checked in full either way, and
/// a reference that does not resolve goes to the core loader, which reports why.
fn references_component(repo: &wasmlink_repo::Repository, reference: &str) -> bool {
    use std::io::Read;
    let Ok(listed) = repo.resolve(reference) else {
        return false;
    };
    let Ok(meta) = std::fs::symlink_metadata(&listed.path) else {
        return false;
    };
    let mut head = [0u8; 8];
    meta.is_file()
        && std::fs::File::open(&listed.path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && wasmlink_component::is_component(&head)
}

/// Loads the component stage `reference` from `repo`: hash and, with the policy's trusted keys
/// (relative to its directory), signature checked as `PluginHost::load_ref` checks a core
/// module's. Errors are one line naming the reference and the policy field.
fn load_component_ref(
    repo: &wasmlink_repo::Repository,
    reference: &str,
    policy: Policy,
) -> Result<super::ComponentStage, String> {
    let keys = policy.trusted_key_paths();
    let integrity = |m: String| format!("component `{reference}`: {m} (integrity)");
    let trust = wasmlink_repo::Trust::load(&keys).map_err(|e| integrity(e.to_string()))?;
    let loaded = repo
        .load(reference, &trust)
        .map_err(|e| integrity(e.to_string()))?;
    if !wasmlink_component::is_component(&loaded.bytes) {
        return Err(format!(
            "component `{reference}`: the object is no longer a component"
        ));
    }
    let label = format!("{}@{}", loaded.module.name, loaded.module.version);
    super::ComponentStage::from_bytes(&label, &loaded.bytes, policy).map_err(|e| e.to_string())
}

/// Whether the regular file at `path` starts like a component (the caller checked that it is
/// a regular file, so opening it cannot block).
fn is_component_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && wasmlink_component::is_component(&head)
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `recycle-above`: a size (`"256MiB"`, or bytes as an integer) of at least [`Recycle::MIN`],
/// or `"none"`.
fn parse_recycle(v: &toml::Value) -> Result<Recycle, String> {
    match v {
        toml::Value::String(t) => Recycle::parse(t),
        toml::Value::Integer(n) => match u64::try_from(*n) {
            Ok(bytes) => Recycle::at_least_min(bytes),
            Err(_) => Err(format!("{n} is negative; {}", Recycle::EXPECTED)),
        },
        other => Err(format!("`{other}` is not a size; {}", Recycle::EXPECTED)),
    }
}
