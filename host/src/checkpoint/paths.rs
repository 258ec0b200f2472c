//! Every object-store path Weir writes, built here and nowhere else.
//!
//! ```text
//! <store prefix>/<job name>/
//!     chk-0000000042/
//!         _manifest.json                 written last: the checkpoint exists iff this does
//!         <node id>/<subtask>.state      one state object per subtask
//!     _owners/0000000007.json            the run that owns the job (highest epoch wins)
//!     _savepoints/0000000043             a savepoint was taken with this id (its location)
//! ```
//! Checkpoint ids are zero-padded so listings sort numerically. Ids (and
//! ownership epochs) from [`MAX_ID`] up are not Weir's and are ignored, so
//! no arithmetic on an id found in a store can overflow.
//!
//! A savepoint is the same set of objects in its own directory,
//! `<target>/savepoint-<job name>-<id>-<run nonce>/`, with object paths in
//! its manifest relative to that directory — so it can be moved or copied as
//! a whole. The nonce makes the directory unique to the run that wrote it.

use object_store::path::{Path, PathPart};

const MANIFEST: &str = "_manifest.json";
const OWNERS: &str = "_owners";
const SAVEPOINTS: &str = "_savepoints";

/// Checkpoint ids and epochs Weir uses or accepts from a store are below this.
pub const MAX_ID: u64 = 1 << 48;

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

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
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

    /// Directory of savepoint `id` written by the run tagged `nonce` (under
    /// the store's prefix, not the job's directory).
    pub fn savepoint(&self, id: u64, nonce: &str) -> Path {
        self.prefix.clone().join(PathPart::from(format!("savepoint-{}-{id:010}-{nonce}", self.job).as_str()))
    }

    /// The marker recording that savepoint `id` was taken (ids continue after it).
    pub fn savepoint_marker(&self, id: u64) -> Path {
        self.root.clone().join(SAVEPOINTS).join(format!("{id:010}"))
    }

    /// Where the job's ownership records live.
    pub fn owners(&self) -> Path {
        self.root.clone().join(OWNERS)
    }

    /// The ownership record of `epoch`.
    pub fn owner(&self, epoch: u64) -> Path {
        self.owners().join(format!("{epoch:010}.json"))
    }

    /// If `location` is an ownership record, its epoch.
    pub fn parse_owner(&self, location: &Path) -> Option<u64> {
        let mut rest = location.prefix_match(&self.owners())?;
        let name = rest.next()?;
        parse_id(name.as_ref().strip_suffix(".json")?).filter(|_| rest.next().is_none())
    }

    /// If `location` is a savepoint marker, its id.
    pub fn parse_marker(&self, location: &Path) -> Option<u64> {
        let mut rest = location.prefix_match(&self.root.clone().join(SAVEPOINTS))?;
        parse_id(rest.next()?.as_ref()).filter(|_| rest.next().is_none())
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
        let id = parse_id(dir.as_ref().strip_prefix("chk-")?)?;
        let file = rest.next();
        let is_manifest = file.is_some_and(|f| f.as_ref() == MANIFEST) && rest.next().is_none();
        Some((id, is_manifest))
    }
}

/// Digits only, at most [`MAX_ID`]: anything else in a store is not ours.
fn parse_id(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id < MAX_ID)
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
        assert_eq!(p.parse_owner(&p.owner(7)), Some(7));
        assert_eq!(p.parse_marker(&p.savepoint_marker(43)), Some(43));
    }

    /// Regression (issue 10 #9): hostile directory names are ignored, not overflowed on.
    #[test]
    fn hostile_ids_are_not_ours() {
        let p = Paths::new(&Path::from(""), "job");
        for name in ["chk-18446744073709551615", "chk-99999999999999999999999", "chk-+1", "chk--1", "chk-"] {
            assert_eq!(p.parse(&Path::from(format!("job/{name}/_manifest.json"))), None, "{name}");
        }
    }
}
