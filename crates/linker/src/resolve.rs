//! Finding needed libraries, the way ld.so does.
//!
//! A needed name that contains a `/` is a path and is used as it is. Any other name is looked
//! up, in this order, in:
//!
//! 1. the directories given by the user (`-L DIR`, [`SearchPath::add_dir`]);
//! 2. `WASMLINK_LIBRARY_PATH` (colon-separated, like `LD_LIBRARY_PATH`);
//! 3. the RUNPATH of the module that needs it, with `$ORIGIN` (or `${ORIGIN}`) replaced by the
//!    directory that module was loaded from. A module's RUNPATH applies to its own needed
//!    libraries only: it is not inherited by their dependencies (as with ELF `DT_RUNPATH`);
//! 4. the default directories ([`DEFAULT_DIRS`]).
//!
//! A file that exists but is not a wasm32 shared library (unreadable, not wasm, no dylink.0
//! section, wasm64) is skipped, and the search goes on, as ld.so skips an ELF file of the wrong
//! class. When nothing is found the error lists every place searched.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmlink_dylink::{AddressWidth, ModuleInfo};

/// The environment variable holding extra library directories.
pub const LIBRARY_PATH_ENV: &str = "WASMLINK_LIBRARY_PATH";

/// Directories searched last.
pub const DEFAULT_DIRS: [&str; 3] = [
    "/usr/local/lib/wasmlink",
    "/usr/local/lib/wasm32-wasi",
    "/usr/lib/wasm32-wasi",
];

/// Where to look for needed libraries.
#[derive(Debug, Clone)]
pub struct SearchPath {
    user_dirs: Vec<PathBuf>,
    env_dirs: Vec<PathBuf>,
    default_dirs: Vec<PathBuf>,
    repos: Vec<(wasmlink_repo::Repository, wasmlink_repo::Trust)>,
}

impl Default for SearchPath {
    fn default() -> Self {
        SearchPath {
            user_dirs: Vec::new(),
            env_dirs: Vec::new(),
            default_dirs: DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
            repos: Vec::new(),
        }
    }
}

/// A library that was looked for and not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: cannot open shared object file: No such file or directory (searched {}{})", display_list(.searched), display_skipped(.skipped))]
pub struct NotFound {
    /// The needed name.
    pub name: String,
    /// Every candidate path tried, in order, with why a candidate that existed was skipped.
    pub searched: Vec<PathBuf>,
    /// Candidates that existed but were skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

fn display_skipped(skipped: &[(PathBuf, String)]) -> String {
    skipped
        .iter()
        .map(|(p, why)| format!("; skipped {}: {why}", p.display()))
        .collect()
}

fn display_list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing: the search path is empty".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A library that was found: where, and what it declares.
#[derive(Debug, Clone)]
pub struct Found {
    /// The path it was found at.
    pub path: PathBuf,
    /// Its model, parsed once.
    pub info: Arc<ModuleInfo>,
    /// Its bytes, when they were read: the loader compiles these and never reads the file
    /// again. `None` for the root entry of a [`DependencyTree`] (which the caller read) and
    /// for a stamped file, whose model was parsed without its code section: the loader reads
    /// such a file only if its compiled code is not cached, and then checks that it still has
    /// [`Found::stamp`].
    pub bytes: Option<Arc<[u8]>>,
    /// The file's stamp as it was read, if stable and old enough (see
    /// [`FileStamp`](wasmlink_engine::cache::FileStamp)): lets the code cache skip hashing.
    pub stamp: Option<wasmlink_engine::cache::FileStamp>,
}

impl SearchPath {
    /// The default directories only.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default directories plus `WASMLINK_LIBRARY_PATH` from the process environment.
    pub fn from_env() -> Self {
        let mut sp = Self::default();
        if let Some(v) = std::env::var_os(LIBRARY_PATH_ENV) {
            sp.env_dirs = std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
        }
        sp
    }

    /// Adds a user directory (`-L DIR`), searched before everything else.
    pub fn add_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.user_dirs.push(dir.into());
        self
    }

    /// Searches a module repository after every directory: a needed `libfoo.so` is the
    /// repository's latest `libfoo.so`, taken only after its sha256 (and, when `trust` holds
    /// keys, its signature) is checked.
    pub fn add_repository(
        &mut self,
        repo: wasmlink_repo::Repository,
        trust: wasmlink_repo::Trust,
    ) -> &mut Self {
        self.repos.push((repo, trust));
        self
    }

    /// Replaces the default directories (an empty list disables them).
    pub fn set_default_dirs(&mut self, dirs: Vec<PathBuf>) -> &mut Self {
        self.default_dirs = dirs;
        self
    }

    /// The directories searched for a library needed by a module at `requester` with RUNPATH
    /// `runpath`, in order.
    pub fn dirs_for(&self, requester: Option<&Path>, runpath: &[String]) -> Vec<PathBuf> {
        let origin = requester.and_then(Path::parent).map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        });
        let mut dirs: Vec<PathBuf> = self
            .user_dirs
            .iter()
            .chain(&self.env_dirs)
            .cloned()
            .collect();
        for entry in runpath {
            match origin {
                Some(o) => {
                    let o = o.to_string_lossy();
                    dirs.push(PathBuf::from(
                        entry.replace("${ORIGIN}", &o).replace("$ORIGIN", &o),
                    ))
                }
                // Without a known origin, an entry using $ORIGIN cannot be expanded.
                None if entry.contains("ORIGIN") => {}
                None => dirs.push(PathBuf::from(entry)),
            }
        }
        dirs.extend(self.default_dirs.iter().cloned());
        dirs
    }

    /// Finds `name`, needed by the module at `requester` whose RUNPATH is `runpath`.
    ///
    /// # Errors
    /// [`NotFound`] listing every path tried and every candidate skipped.
    pub fn find(
        &self,
        name: &str,
        requester: Option<&Path>,
        runpath: &[String],
    ) -> Result<Found, NotFound> {
        self.find_in(name, requester, runpath, None)
    }

    /// [`SearchPath::find`], reading and parsing each file at most once per `cache`: a
    /// candidate already read under another name (another spelling of its path, another
    /// directory holding a link to it) is taken from the cache, with its verdict.
    ///
    /// # Errors
    /// [`NotFound`] listing every path tried and every candidate skipped.
    pub fn find_cached(
        &self,
        name: &str,
        requester: Option<&Path>,
        runpath: &[String],
        cache: &mut LibraryCache,
    ) -> Result<Found, NotFound> {
        self.find_in(name, requester, runpath, Some(cache))
    }

    /// [`find`](Self::find) with or without a [`LibraryCache`]: each candidate is opened once
    /// (no `stat` before it); without a cache (a `dlopen`, which reads one library) no
    /// canonical path (a `realpath`) is made to key a cache that would be thrown away.
    fn find_in(
        &self,
        name: &str,
        requester: Option<&Path>,
        runpath: &[String],
        mut cache: Option<&mut LibraryCache>,
    ) -> Result<Found, NotFound> {
        let candidates: Vec<PathBuf> = if name.contains('/') {
            vec![PathBuf::from(name)]
        } else {
            self.dirs_for(requester, runpath)
                .into_iter()
                .map(|d| d.join(name))
                .collect()
        };
        let mut skipped = Vec::new();
        for path in &candidates {
            let loaded = match open_candidate(path) {
                None => continue,
                Some(Err(why)) => Err(why),
                Some(Ok((file, meta))) => match cache.as_deref_mut() {
                    Some(cache) => cache.load(path, file, &meta),
                    None => load_library(path, file, &meta),
                },
            };
            match loaded {
                Ok((info, bytes, stamp)) => {
                    return Ok(Found {
                        path: path.clone(),
                        info,
                        bytes,
                        stamp,
                    });
                }
                Err(why) => {
                    tracing::debug!(target: "wasmlink::libs", "skipping {}: {why}", path.display());
                    skipped.push((path.clone(), why));
                }
            }
        }
        let mut searched = candidates;
        if !name.contains('/') {
            for (repo, trust) in &self.repos {
                searched.push(repo.root().join(format!("index.json ({name})")));
                match repo.load(name, trust) {
                    Ok(loaded) => {
                        let path = loaded.module.path.clone();
                        match ModuleInfo::parse(&loaded.bytes) {
                            Ok(info) if info.is_dynamic() => {
                                return Ok(Found {
                                    path,
                                    info: Arc::new(info),
                                    bytes: Some(loaded.bytes.into()),
                                    stamp: None,
                                });
                            }
                            Ok(_) => skipped.push((
                                path,
                                "no dylink.0 section: not a shared library".to_string(),
                            )),
                            Err(e) => skipped.push((path, e.to_string())),
                        }
                    }
                    Err(wasmlink_repo::RepoError::UnknownModule { .. }) => {}
                    Err(e) => skipped.push((repo.root().join("index.json"), e.to_string())),
                }
            }
        }
        Err(NotFound {
            name: name.to_string(),
            searched,
            skipped,
        })
    }
}

/// What [`SearchPath::find_cached`] has read, by canonical path: each file is read and parsed
/// once, so a module that names one library under many spellings costs one read, not one per
/// NEEDED entry.
#[derive(Debug, Default)]
pub struct LibraryCache {
    loaded: HashMap<PathBuf, Result<Library, String>>,
}

/// A library's model and bytes (when read: see [`Found::bytes`]), shared by every name that
/// reaches it.
type Library = (
    Arc<ModuleInfo>,
    Option<Arc<[u8]>>,
    Option<wasmlink_engine::cache::FileStamp>,
);

impl LibraryCache {
    /// The library at `path` (open as `file`, with `meta`), read from `file` unless the same
    /// file was read under another name.
    fn load(
        &mut self,
        path: &Path,
        file: std::fs::File,
        meta: &std::fs::Metadata,
    ) -> Result<Library, String> {
        let Ok(key) = path.canonicalize() else {
            return load_library(path, file, meta);
        };
        self.loaded
            .entry(key)
            .or_insert_with(|| load_library(path, file, meta))
            .clone()
    }
}

/// A candidate opened (without blocking: `wasmlink_repo::open_nonblocking`) with its
/// metadata; `None` when there is no regular file at `path` (nothing there, a directory, a
/// FIFO); `Some(Err(why))` for a file that cannot be opened or examined, which is skipped and
/// said why.
fn open_candidate(path: &Path) -> Option<Result<(std::fs::File, std::fs::Metadata), String>> {
    let opened = wasmlink_repo::open_nonblocking(path).and_then(|f| {
        let meta = f.metadata()?;
        Ok((f, meta))
    });
    match opened {
        Ok((_, meta)) if !meta.is_file() => None,
        Ok(found) => Some(Ok(found)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            None
        }
        Err(e) => Some(Err(e.to_string())),
    }
}

/// Reads and checks a candidate library: a wasm32 module with a dylink section.
///
/// A file old enough to have a stamp (see [`FileStamp`](wasmlink_engine::cache::FileStamp))
/// is parsed without its code section ([`ModuleInfo::parse_reader`]), and its bytes are left
/// unread: with its compiled code cached, the loader never needs them (most of
/// `libpython3.14.so` is code). The stamp is taken before and after the parse, and the loader
/// that reads the bytes later checks the file still has it. A younger file is read whole.
/// `file` is open on `path` and `meta` is its metadata ([`open_candidate`]).
fn load_library(
    path: &Path,
    file: std::fs::File,
    meta: &std::fs::Metadata,
) -> Result<Library, String> {
    let (info, bytes, stamp) = match read_model(file, meta).map_err(|e| e.to_string())? {
        Model::Parsed(info, stamp) => (info, None, Some(stamp)),
        Model::Read(bytes) => {
            let info = ModuleInfo::parse(&bytes).map_err(|e| e.to_string())?;
            (info, Some(Arc::<[u8]>::from(bytes)), None)
        }
        Model::Changed => {
            let (bytes, stamp) =
                wasmlink_engine::cache::read_stamped(path).map_err(|e| e.to_string())?;
            let info = ModuleInfo::parse(&bytes).map_err(|e| e.to_string())?;
            (info, Some(Arc::<[u8]>::from(bytes)), stamp)
        }
    };
    if !info.is_dynamic() {
        return Err("no dylink.0 section: not a shared library".to_string());
    }
    if info.address_width != AddressWidth::Wasm32 {
        return Err("wasm64 library, wasmlink loads wasm32".to_string());
    }
    Ok((Arc::new(info), bytes, stamp))
}

/// What [`read_model`] made of an open file.
#[allow(
    clippy::large_enum_variant,
    reason = "one per load, its model moved straight into an Arc"
)]
enum Model {
    /// A stamped file, parsed without its code section, its stamp unchanged by the parse.
    Parsed(ModuleInfo, wasmlink_engine::cache::FileStamp),
    /// A file without a stamp (small or young), read whole from the same descriptor: such a
    /// file's bytes are hashed anyway, and the stamp it lacks cannot be checked later.
    Read(Vec<u8>),
    /// A stamped file that changed during the parse: to be read again, whole.
    Changed,
}

/// Reads an open file's model: a stamped file (`meta` taken on `file`) parsed without its code
/// section, any other file read whole.
fn read_model(
    file: std::fs::File,
    meta: &std::fs::Metadata,
) -> Result<Model, Box<dyn std::error::Error>> {
    let Some(before) = wasmlink_engine::cache::stamp_of_metadata(meta) else {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        (&file).read_to_end(&mut bytes)?;
        return Ok(Model::Read(bytes));
    };
    let info = ModuleInfo::parse_reader(&file)?;
    let after = wasmlink_engine::cache::stamp_file(&file)?;
    Ok(if after == Some(before) {
        Model::Parsed(info, before)
    } else {
        Model::Changed
    })
}

/// One entry of a resolved dependency tree.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The needed name as written in the NEEDED list.
    pub name: String,
    /// Index (into [`DependencyTree::entries`]) of the first module that needed it; `None` for
    /// the root.
    pub needed_by: Option<usize>,
    /// Where it was found, or why not.
    pub result: Result<Found, NotFound>,
    /// Whether this entry's file was already reached under another name.
    pub duplicate_of: Option<usize>,
}

/// The transitive closure of a module's needed libraries, breadth first like ld.so's load order,
/// each name once (duplicate NEEDED entries and cycles end there).
///
/// Resolving is linear in the number of NEEDED entries: names and files are tracked in sets
/// and maps, and each file is read and parsed once ([`LibraryCache`]) however many names
/// reach it.
#[derive(Debug, Clone)]
pub struct DependencyTree {
    /// The root first, then each needed library in load order.
    pub entries: Vec<Resolved>,
}

impl DependencyTree {
    /// Resolves everything `root` (already parsed as `info`) needs.
    pub fn resolve(root: &Path, info: Arc<ModuleInfo>, search: &SearchPath) -> DependencyTree {
        let mut entries = vec![Resolved {
            name: root.display().to_string(),
            needed_by: None,
            result: Ok(Found {
                path: root.to_path_buf(),
                info,
                bytes: None,
                stamp: None,
            }),
            duplicate_of: None,
        }];
        let mut by_name: HashSet<String> = HashSet::new();
        // The root itself, when a dependency needs it back (a cycle), is not listed again.
        if let Some(base) = root.file_name() {
            by_name.insert(base.to_string_lossy().into_owned());
        }
        let mut by_file: HashMap<PathBuf, usize> = HashMap::new();
        if let Ok(c) = root.canonicalize() {
            by_file.insert(c, 0);
        }
        let mut cache = LibraryCache::default();
        let mut queue = VecDeque::from([0usize]);
        while let Some(i) = queue.pop_front() {
            let Ok(found) = &entries[i].result else {
                continue;
            };
            let (path, info) = (found.path.clone(), found.info.clone());
            for name in info
                .dylink
                .as_ref()
                .map(|d| d.needed_unique())
                .unwrap_or_default()
            {
                if !by_name.insert(name.to_string()) {
                    continue;
                }
                let result = search.find_cached(name, Some(&path), info.runtime_path(), &mut cache);
                let mut duplicate_of = None;
                if let Ok(f) = &result {
                    let key = f.path.canonicalize().unwrap_or_else(|_| f.path.clone());
                    match by_file.get(&key) {
                        Some(&j) => duplicate_of = Some(j),
                        None => {
                            by_file.insert(key, entries.len());
                        }
                    }
                }
                if duplicate_of.is_none() && result.is_ok() {
                    queue.push_back(entries.len());
                }
                entries.push(Resolved {
                    name: name.to_string(),
                    needed_by: Some(i),
                    result,
                    duplicate_of,
                });
            }
        }
        DependencyTree { entries }
    }

    /// The libraries that were not found.
    pub fn missing(&self) -> impl Iterator<Item = &NotFound> {
        self.entries.iter().filter_map(|e| e.result.as_ref().err())
    }
}
