//! A fault-injecting object store, for tests: wraps any store and, seeded,
//! fails calls, loses acknowledgements, tears writes and slows everything
//! down — so exactly-once can be tested against the faults real storage has
//! (object_store's `ThrottledStore` is the model).
//!
//! **Test-only.** It is reachable from the real binary through the store URL
//! `faulty+<url>?<options>`, e.g.
//! `faulty+file://checkpoints?seed=7&put=0.2&lost=0.5&only=_manifest`:
//!
//! | option | meaning |
//! |---|---|
//! | `seed` | seeds every decision (default 0): the same seed, the same faults |
//! | `put`, `get`, `list`, `delete` | probability (0–1) that such a call fails |
//! | `lost` | of the failed puts, the share that were written anyway (a lost acknowledgement) |
//! | `torn` | probability that a put writes only half its bytes and reports success |
//! | `slow_ms` | delay added to every call |
//! | `after` | inject nothing during the first N calls |
//! | `only` | inject only on paths containing this text |
//!
//! Every injected failure is an `object_store::Error::Generic` from store
//! `faulty`, which Weir treats as a transient storage error.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::Error;

/// What to inject (see the module doc for the URL options).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Seeds every decision.
    pub seed: u64,
    /// Probability that a put fails.
    pub put: f64,
    /// Probability that a get fails.
    pub get: f64,
    /// Probability that a list fails.
    pub list: f64,
    /// Probability that a delete fails.
    pub delete: f64,
    /// Share of failed puts that were written anyway.
    pub lost: f64,
    /// Probability that a put is torn (half written, reported written).
    pub torn: f64,
    /// Delay added to every call.
    pub slow: Duration,
    /// Calls left alone before injecting.
    pub after: u64,
    /// Inject only on paths containing this.
    pub only: Option<String>,
}

impl Faults {
    /// Parses the `?`-part of a `faulty+` URL.
    ///
    /// # Errors
    /// [`Error::InvalidJob`] naming the bad option.
    pub fn parse(query: &str) -> Result<Self, Error> {
        let mut f = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || Error::InvalidJob(format!("faulty store option `{pair}`: expected {key}=<number>"));
            let prob = || value.parse::<f64>().ok().filter(|p| (0.0..=1.0).contains(p)).ok_or_else(bad);
            match key {
                "seed" => f.seed = value.parse().map_err(|_| bad())?,
                "put" => f.put = prob()?,
                "get" => f.get = prob()?,
                "list" => f.list = prob()?,
                "delete" => f.delete = prob()?,
                "lost" => f.lost = prob()?,
                "torn" => f.torn = prob()?,
                "slow_ms" => f.slow = Duration::from_millis(value.parse().map_err(|_| bad())?),
                "after" => f.after = value.parse().map_err(|_| bad())?,
                "only" => f.only = Some(value.to_owned()),
                _ => {
                    return Err(Error::InvalidJob(format!(
                        "faulty store: unknown option `{key}` (seed, put, get, list, delete, lost, torn, slow_ms, after, only)"
                    )));
                }
            }
        }
        Ok(f)
    }
}

#[derive(Debug)]
struct Dice {
    faults: Faults,
    rng: Mutex<fastrand::Rng>,
    calls: AtomicU64,
}

impl Dice {
    /// Whether to inject on this call (counted whether or not it applies).
    fn roll(&self, probability: f64, path: Option<&Path>) -> bool {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if n < self.faults.after || probability <= 0.0 {
            return false;
        }
        if let (Some(only), Some(path)) = (&self.faults.only, path)
            && !path.as_ref().contains(only.as_str())
        {
            return false;
        }
        self.chance(probability)
    }

    fn chance(&self, probability: f64) -> bool {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64() < probability
    }

    async fn delay(&self) {
        if !self.faults.slow.is_zero() {
            tokio::time::sleep(self.faults.slow).await;
        }
    }

    fn error(&self, what: &str, path: &Path) -> object_store::Error {
        object_store::Error::Generic {
            store: "faulty",
            source: format!("injected fault: {what} {path} (seed {})", self.faults.seed).into(),
        }
    }
}

/// A store that injects [`Faults`] into the calls it passes to `inner`.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    dice: Arc<Dice>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults) -> Self {
        let rng = Mutex::new(fastrand::Rng::with_seed(faults.seed));
        Self { inner, dice: Arc::new(Dice { faults, rng, calls: AtomicU64::new(0) }) }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.dice.delay().await;
        if self.dice.roll(self.dice.faults.put, Some(location)) {
            if self.dice.chance(self.dice.faults.lost) {
                let _ = self.inner.put_opts(location, payload, opts).await;
            }
            return Err(self.dice.error("put", location));
        }
        if self.dice.roll(self.dice.faults.torn, Some(location)) {
            let bytes = Bytes::from(payload);
            let half = PutPayload::from(bytes.slice(..bytes.len() / 2));
            return self.inner.put_opts(location, half, opts).await;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.dice.delay().await;
        if self.dice.roll(self.dice.faults.get, Some(location)) {
            return Err(self.dice.error("get", location));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.dice.delay().await;
        if self.dice.roll(self.dice.faults.get, Some(location)) {
            return Err(self.dice.error("get", location));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (inner, dice) = (self.inner.clone(), self.dice.clone());
        locations
            .then(move |location| {
                let (inner, dice) = (inner.clone(), dice.clone());
                async move {
                    let location = location?;
                    dice.delay().await;
                    if dice.roll(dice.faults.delete, Some(&location)) {
                        return Err(dice.error("delete", &location));
                    }
                    inner.delete(&location).await.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.dice.roll(self.dice.faults.list, prefix) {
            let e = self.dice.error("list", prefix.unwrap_or(&Path::default()));
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.dice.delay().await;
        if self.dice.roll(self.dice.faults.list, prefix) {
            return Err(self.dice.error("list", prefix.unwrap_or(&Path::default())));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn options_parse_and_reject_nonsense() {
        let f = Faults::parse("seed=7&put=0.5&lost=1&only=_manifest&slow_ms=3").unwrap();
        assert_eq!((f.seed, f.put, f.lost, f.slow.as_millis()), (7, 0.5, 1.0, 3));
        assert_eq!(f.only.as_deref(), Some("_manifest"));
        for bad in ["put=2", "seed=x", "bogus=1"] {
            assert!(matches!(Faults::parse(bad), Err(Error::InvalidJob(_))), "{bad}");
        }
    }

    #[test]
    fn the_same_seed_injects_the_same_faults_and_lost_acks_write() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcomes = |seed| async move {
            let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let faults = Faults { seed, put: 0.5, lost: 1.0, ..Faults::default() };
            let store = FaultyStore::new(inner.clone(), faults);
            let mut seen = Vec::new();
            for i in 0..32 {
                let path = Path::from(format!("o{i}"));
                let failed = store.put(&path, PutPayload::from_static(b"x")).await.is_err();
                // Lost acknowledgements: a failed put still wrote.
                assert!(inner.get(&path).await.is_ok());
                seen.push(failed);
            }
            seen
        };
        let a = rt.block_on(outcomes(3));
        assert_eq!(a, rt.block_on(outcomes(3)));
        assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    }
}
