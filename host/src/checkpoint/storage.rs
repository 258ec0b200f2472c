//! Checkpoint storage: the only code that talks to the object store. Wraps
//! `object_store` (local disk, memory, S3) behind a small blocking API for
//! the coordinator and restore path, plus [`Storage::spawn_put`] for uploads
//! that run on a private tokio runtime while records keep flowing.
//!
//! State objects and manifests are written create-only (`PutMode::Create`),
//! so two runs of one job can never both write checkpoint *n*.
//!
//! Any store can be wrapped in the test-only fault injector
//! ([`super::faulty`]) by prefixing its URL with `faulty+`. Reads that fail
//! for a reason other than "not found" are retried with backoff
//! ([`Storage::get`]): a flaky store must not look like a damaged checkpoint.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use super::manifest::Manifest;
use super::paths::Paths;
use crate::Error;

/// A job's checkpoint storage.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    paths: Paths,
    /// The path inside the store everything lives under (`s3://bucket/PREFIX`).
    prefix: Path,
    url: String,
    /// For `file://` stores: the directory, so emptied checkpoint
    /// directories can be removed (object stores have no directories).
    local_dir: Option<std::path::PathBuf>,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("url", &self.url).finish()
    }
}

/// How long a store call may take before the log says it is waiting.
pub const SLOW_CALL: Duration = Duration::from_secs(5);

/// How many times a read is tried before its error counts.
pub const READ_ATTEMPTS: u32 = 4;

/// What [`Storage::list_job`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobListing {
    /// Checkpoint directories, ascending by id.
    pub checkpoints: Vec<Listed>,
    /// Ids of savepoints taken (markers), ascending.
    pub savepoints: Vec<u64>,
    /// Epochs of ownership records, ascending.
    pub owners: Vec<u64>,
}

impl JobListing {
    /// The first id after every checkpoint and savepoint listed.
    pub fn next_id(&self) -> u64 {
        let last = self.checkpoints.last().map(|l| l.id).max(self.savepoints.last().copied());
        last.map_or(1, |id| id.saturating_add(1))
    }
}

/// A checkpoint directory found in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Checkpoint id.
    pub id: u64,
    /// Whether its manifest exists (the checkpoint is complete).
    pub has_manifest: bool,
    /// Total size of its objects.
    pub bytes: u64,
    /// When its newest object was written.
    pub modified: std::time::SystemTime,
}

fn storage_error(context: String) -> impl FnOnce(object_store::Error) -> Error {
    move |source| Error::Storage { context, source: Box::new(source) }
}

/// Whether retrying may help: not for answers ("not found") or for
/// refusals (403, bad credentials), which come back the same every time.
fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
    )
}

/// Writes `bytes` at `path` unless something is there, then checks that the
/// store holds as many bytes as were sent: a store that acknowledges a torn
/// write must not make a checkpoint look complete. (One HEAD per object;
/// what was written is never read back whole.)
async fn put_verified(store: &dyn ObjectStore, path: &Path, bytes: Vec<u8>, url: &str) -> Result<(), Error> {
    let size = bytes.len() as u64;
    let bytes = Bytes::from(bytes);
    let context = || format!("writing {path} to {url}");
    match store.put_opts(path, PutPayload::from(bytes.clone()), PutMode::Create.into()).await {
        Ok(_) => {}
        // "Already there" may be our own write, retried by a lower layer
        // after its acknowledgement was lost: the same bytes are ours.
        Err(e @ (object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. })) => {
            let held = async { store.get(path).await?.bytes().await }.await;
            if held.is_ok_and(|held| held == bytes) {
                return Ok(());
            }
            return Err(storage_error(context())(e));
        }
        Err(e) => return Err(storage_error(context())(e)),
    }
    let held = store.head(path).await.map_err(storage_error(context()))?.size;
    if held != size {
        return Err(Error::Corrupt(format!("{}: the store holds {held} bytes of {size} written", context())));
    }
    Ok(())
}

/// TLS for S3 uses rustls with the `ring` provider; it must be chosen once per process.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider is already installed, which is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Storage {
    /// Opens `url` for job `job`: `file://DIR` (relative to `base_dir`),
    /// `memory://`, or `s3://bucket/prefix` (configured from `AWS_*`
    /// variables; an `http://` `AWS_ENDPOINT` is allowed).
    ///
    /// # Errors
    /// [`Error::InvalidJob`] for an unsupported URL; [`Error::Storage`] if the
    /// store cannot be set up.
    pub fn open(url: &str, base_dir: &FsPath, job: &str) -> Result<Self, Error> {
        install_crypto_provider();
        if let Some(rest) = url.strip_prefix("faulty+") {
            let (inner_url, query) = rest.split_once('?').unwrap_or((rest, ""));
            let faults = super::faulty::Faults::parse(query)?;
            let mut storage = Self::open(inner_url, base_dir, job)?;
            storage.store = Arc::new(super::faulty::FaultyStore::new(storage.store, faults));
            storage.url = url.to_owned();
            return Ok(storage);
        }
        let mut local_dir = None;
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = if let Some(dir) = url.strip_prefix("file://") {
            let dir = base_dir.join(dir);
            local_dir = Some(dir.clone());
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("cannot create checkpoint directory {}", dir.display()), e))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(storage_error(format!("checkpoint store {url}")))?;
            (Arc::new(local), Path::default())
        } else if url == "memory://" || url == "memory:" {
            (Arc::new(InMemory::new()), Path::default())
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::InvalidJob(format!(
                    "checkpoint store {url}: name a bucket, as in s3://bucket/prefix"
                )));
            }
            let credential_vars = [
                "AWS_ACCESS_KEY_ID",
                "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ];
            if credential_vars.iter().all(|v| std::env::var_os(v).is_none()) {
                tracing::warn!(
                    "checkpoint store {url}: no credentials in the environment (AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY); trying EC2/ECS instance credentials, which exist only there"
                );
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if std::env::var("AWS_ENDPOINT")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .is_ok_and(|e| e.starts_with("http://"))
            {
                builder = builder.with_allow_http(true);
            }
            let s3 = builder
                .build()
                .map_err(storage_error(format!("checkpoint store {url} (check the AWS_* variables)")))?;
            (Arc::new(s3), Path::from(prefix))
        } else {
            return Err(Error::InvalidJob(format!(
                "checkpoint store `{url}` is not supported; use file://DIR, memory:// or s3://bucket/prefix"
            )));
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-storage")
            .enable_all()
            .build()
            .map_err(|e| Error::io("cannot start the storage runtime", e))?;
        Ok(Self { store, paths: Paths::new(&prefix, job), prefix, url: url.to_owned(), local_dir, rt })
    }

    /// The store URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path layout.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Every checkpoint directory of the job, ascending by id.
    ///
    /// # Errors
    /// [`Error::Storage`] when listing fails.
    pub fn list(&self) -> Result<Vec<Listed>, Error> {
        Ok(self.list_job()?.checkpoints)
    }

    /// Every object under the job's directory with a name Weir knows:
    /// checkpoints (as [`Self::list`]), savepoint markers and ownership records.
    ///
    /// # Errors
    /// [`Error::Storage`] when listing fails.
    pub fn list_job(&self) -> Result<JobListing, Error> {
        let objects: Vec<_> = self
            .with_retry(|| self.store.list(Some(self.paths.root())).try_collect::<Vec<_>>(), "listing")
            .map_err(storage_error(format!("listing checkpoints in {}", self.url)))?;
        let mut by_id = std::collections::BTreeMap::<u64, Listed>::new();
        let mut listing = JobListing::default();
        for meta in objects {
            if let Some((id, is_manifest)) = self.paths.parse(&meta.location) {
                let modified = meta.last_modified.into();
                let entry = by_id.entry(id).or_insert(Listed { id, has_manifest: false, bytes: 0, modified });
                entry.has_manifest |= is_manifest;
                entry.bytes += meta.size;
                entry.modified = entry.modified.max(modified);
            } else if let Some(id) = self.paths.parse_marker(&meta.location) {
                listing.savepoints.push(id);
            } else if let Some(epoch) = self.paths.parse_owner(&meta.location) {
                listing.owners.push(epoch);
            }
        }
        // On local disk, a run killed mid-upload leaves only a staged file
        // (`name#N`), which listings do not show: find such directories too,
        // so they are cleaned up as incomplete checkpoints.
        if let Some(local) = &self.local_dir {
            let job_dir = local.join(self.paths.root().as_ref());
            for entry in std::fs::read_dir(&job_dir).into_iter().flatten().flatten() {
                let location = Paths::object_in(self.paths.root(), &entry.file_name().to_string_lossy());
                if let Some((id, _)) = self.paths.parse(&location.clone().join("x")) {
                    let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    by_id.entry(id).or_insert(Listed { id, has_manifest: false, bytes: 0, modified });
                }
            }
        }
        listing.checkpoints = by_id.into_values().collect();
        listing.savepoints.sort_unstable();
        listing.owners.sort_unstable();
        Ok(listing)
    }

    /// Reads checkpoint `id`'s manifest.
    ///
    /// # Errors
    /// [`Error::Storage`] if unreadable, [`Error::Corrupt`] if not a manifest.
    pub fn read_manifest(&self, id: u64) -> Result<Manifest, Error> {
        self.read_manifest_in(&self.paths.checkpoint(id))
    }

    /// Reads the manifest of the checkpoint or savepoint directory `dir`.
    ///
    /// # Errors
    /// [`Error::Storage`] if unreadable, [`Error::Corrupt`] if not a manifest.
    pub fn read_manifest_in(&self, dir: &Path) -> Result<Manifest, Error> {
        let bytes = self.get(&Paths::manifest_in(dir))?;
        Manifest::from_json(&bytes).map_err(|e| match Manifest::format_of(&bytes) {
            Some(format) if format > super::manifest::FORMAT => Error::InvalidJob(format!(
                "{}: manifest format {format}, written by a newer Weir (this one reads {}): run that version",
                self.location(dir),
                super::manifest::FORMAT
            )),
            _ => Error::Corrupt(format!("{}: {e}", self.location(dir))),
        })
    }

    /// The store's root (where a savepoint opened as its own store keeps its manifest).
    pub fn root_dir(&self) -> Path {
        self.prefix.clone()
    }

    /// Reads an object, retrying transient failures (every error but "not
    /// found") a few times with backoff.
    ///
    /// # Errors
    /// [`Error::Storage`] (including "not found": see [`Error::is_not_found`]).
    pub fn get(&self, path: &Path) -> Result<Bytes, Error> {
        self.with_retry(|| async { self.store.get(path).await?.bytes().await }, "reading")
            .map_err(storage_error(format!("reading {path} from {}", self.url)))
    }

    /// Whether `path` exists.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot say.
    pub fn exists(&self, path: &Path) -> Result<bool, Error> {
        match self.with_retry(|| self.store.head(path), "checking") {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(storage_error(format!("checking {path} in {}", self.url))(e)),
        }
    }

    /// Runs `call` until it succeeds, fails with "not found" (an answer,
    /// not a fault), or failed [`READ_ATTEMPTS`] times.
    fn with_retry<T, F, Fut>(&self, call: F, what: &str) -> object_store::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut delay = Duration::from_millis(50);
        for attempt in 1.. {
            match self.patiently(what, call()) {
                Err(e) if attempt < READ_ATTEMPTS && is_transient(&e) => {
                    tracing::debug!("{what} {} failed ({e}); retrying in {delay:?}", self.url);
                    std::thread::sleep(delay);
                    delay *= 4;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns by its last attempt")
    }

    /// Writes `bytes` at `path` unless something is already there.
    ///
    /// # Errors
    /// [`Error::Storage`]; an existing object is an error too.
    pub fn put_new(&self, path: &Path, bytes: Vec<u8>) -> Result<(), Error> {
        self.patiently("writing", put_verified(self.store.as_ref(), path, bytes, &self.url))
    }

    /// Runs `call` to the end, saying so in the log if the store takes
    /// longer than [`SLOW_CALL`] to answer (a stalled server must not be silent).
    fn patiently<T>(&self, what: &str, call: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(async {
            let mut call = std::pin::pin!(call);
            match tokio::time::timeout(SLOW_CALL, &mut call).await {
                Ok(done) => done,
                Err(_) => {
                    tracing::warn!("{what} {}: no answer after {SLOW_CALL:?}; still waiting", self.url);
                    call.await
                }
            }
        })
    }

    /// Uploads `bytes` to `path` (create-only) in the background; `done` gets the outcome.
    pub fn spawn_put(&self, path: Path, bytes: Vec<u8>, done: impl FnOnce(Result<(), Error>) + Send + 'static) {
        let store = self.store.clone();
        let url = self.url.clone();
        self.rt.spawn(async move { done(put_verified(store.as_ref(), &path, bytes, &url).await) });
    }

    /// Deletes everything of checkpoint `id`, manifest first (so a
    /// half-deleted checkpoint never looks complete).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn delete_checkpoint(&self, id: u64) -> Result<(), Error> {
        self.delete_dir(&self.paths.checkpoint(id))
    }

    /// Deletes the checkpoint or savepoint directory `dir`, manifest first.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn delete_dir(&self, dir: &Path) -> Result<(), Error> {
        let manifest = Paths::manifest_in(dir);
        self.rt
            .block_on(async {
                match self.store.delete(&manifest).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                let objects: Vec<_> = self.store.list(Some(dir)).try_collect().await?;
                for meta in objects {
                    match self.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .map_err(storage_error(format!("deleting {dir} from {}", self.url)))?;
        if let Some(local) = &self.local_dir {
            // Only empty directories are left; a failure here leaves clutter, not state.
            let _ = std::fs::remove_dir_all(local.join(dir.as_ref()));
        }
        Ok(())
    }

    /// Deletes exactly `objects` (inside `dir`), and for `file://` stores the
    /// directories they leave empty — never anything else.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn delete_objects(&self, dir: &Path, objects: &[Path]) -> Result<(), Error> {
        self.rt
            .block_on(async {
                for path in objects {
                    match self.store.delete(path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .map_err(storage_error(format!("deleting in {dir} from {}", self.url)))?;
        if let Some(local) = &self.local_dir {
            // A put cut short leaves its staged file `<object>#<n>`: ours too.
            for path in objects {
                let file = local.join(path.as_ref());
                let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else { continue };
                let staged = format!("{}#", name.to_string_lossy());
                for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&staged) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            // `remove_dir` removes only empty directories: deepest first.
            let mut dirs: Vec<std::path::PathBuf> = objects
                .iter()
                .flat_map(|p| {
                    let file = local.join(p.as_ref());
                    file.ancestors()
                        .skip(1)
                        .take_while(|a| a.starts_with(local.join(dir.as_ref())))
                        .map(|a| a.to_path_buf())
                        .collect::<Vec<_>>()
                })
                .collect();
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            dirs.dedup();
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
        Ok(())
    }

    /// A person-readable location of `dir`: a local path for `file://`
    /// stores, else the store URL joined with the path.
    pub fn location(&self, dir: &Path) -> String {
        match &self.local_dir {
            Some(local) => local.join(dir.as_ref()).display().to_string(),
            None => format!(
                "{}/{}",
                self.url.trim_end_matches('/'),
                dir.as_ref().trim_start_matches(self.prefix.as_ref()).trim_start_matches('/')
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect 12 of issue 10: refusals and "not found" are answers, not
    /// faults — retrying them only delays the error.
    #[test]
    fn refusals_are_not_retried() {
        let refused = |source: &str| -> Box<dyn std::error::Error + Send + Sync> { source.to_owned().into() };
        let path = String::from("p");
        assert!(!is_transient(&object_store::Error::NotFound { path: path.clone(), source: refused("404") }));
        assert!(!is_transient(&object_store::Error::PermissionDenied { path: path.clone(), source: refused("403") }));
        assert!(!is_transient(&object_store::Error::Unauthenticated { path, source: refused("401") }));
        assert!(is_transient(&object_store::Error::Generic { store: "S3", source: refused("503 Slow Down") }));
    }
}
