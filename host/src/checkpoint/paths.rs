//! Every object-store path Weir writes, built here and nowhere else.
//!
//! ```text
//! <store prefix>/<job name>/
//!     chk-0000000042/
//!         _manifest.json                 written last: the checkpoint exists iff this does
//!         <node id>/<subtask>.state      one state object per subtask
//! ```
//! Checkpoint ids are zero-padded so listings sort numerically.
//!
//! A savepoint is the same set of objects in its own directory,
//! `<target>/savepoint-<job name>-<id>/`, with object paths in its manifest
//! relative to that directory — so it can be moved or copied as a whole.

use object_store::path::{Path, PathPart};

const MANIFEST: &str = "_manifest.json";

/// Paths of one job's checkpoints.
#[derive(Debug, Clone)]
pub struct Paths {
    prefix: Path,
    job: String,
    root: Path,
}

impl Paths {
    /// Paths under `prefix` for job `job`.
    pub fn new(prefix: &Path, job: &str) -> Self {
        Self { prefix: prefix.clone(), job: job.to_owned(), root: prefix.clone().join(PathPart::from(job)) }
    }

    /// The job's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of checkpoint `id`.
    pub fn checkpoint(&self, id: u64) -> Path {
        self.root.clone().join(format!("chk-{id:010}"))
    }

    /// The manifest of checkpoint `id`.
    pub fn manifest(&self, id: u64) -> Path {
        Self::manifest_in(&self.checkpoint(id))
    }

    /// Directory of savepoint `id` (under the store's prefix, not the job's directory).
    pub fn savepoint(&self, id: u64) -> Path {
        self.prefix.clone().join(PathPart::from(format!("savepoint-{}-{id:010}", self.job).as_str()))
    }

    /// The manifest in checkpoint or savepoint directory `dir`.
    pub fn manifest_in(dir: &Path) -> Path {
        dir.clone().join(MANIFEST)
    }

    /// The object `name` (from [`Self::state_name`]) in checkpoint or savepoint directory `dir`.
    pub fn object_in(dir: &Path, name: &str) -> Path {
        name.split('/').fold(dir.clone(), |path, part| path.join(part))
    }

    /// The state object of `node`'s `subtask`, relative to its checkpoint directory.
    pub fn state_name(node: &str, subtask: u32) -> String {
        format!("{}/{subtask}.state", PathPart::from(node).as_ref())
    }

    /// The state object `name` (from [`Self::state_name`]) of checkpoint `id`.
    pub fn state(&self, id: u64, name: &str) -> Path {
        Self::object_in(&self.checkpoint(id), name)
    }

    /// If `location` is inside a checkpoint directory, that checkpoint's id and
    /// whether `location` is its manifest.
    pub fn parse(&self, location: &Path) -> Option<(u64, bool)> {
        let mut rest = location.prefix_match(&self.root)?;
        let dir = rest.next()?;
        let id = dir.as_ref().strip_prefix("chk-")?.parse().ok()?;
        let file = rest.next();
        let is_manifest = file.is_some_and(|f| f.as_ref() == MANIFEST) && rest.next().is_none();
        Some((id, is_manifest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_parsing_agree() {
        let p = Paths::new(&Path::from("base/dir"), "word count");
        assert_eq!(p.manifest(42).as_ref(), "base/dir/word count/chk-0000000042/_manifest.json");
        let name = Paths::state_name("count", 3);
        assert_eq!(p.state(7, &name).as_ref(), "base/dir/word count/chk-0000000007/count/3.state");
        assert_eq!(p.parse(&p.manifest(42)), Some((42, true)));
        assert_eq!(p.parse(&p.state(7, &name)), Some((7, false)));
        assert_eq!(p.parse(&Path::from("base/dir/other/chk-0000000001/_manifest.json")), None);
    }
}
