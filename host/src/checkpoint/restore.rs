//! Choosing what to restore: the newest complete checkpoint whose every
//! state object is present with the recorded size and checksum. A damaged
//! checkpoint is skipped with a warning naming what is wrong, and the one
//! before it is tried. A checkpoint of a different job graph is an error
//! (not a reason to fall back): restoring it would silently drop state.

use std::collections::HashMap;

use super::manifest::{Manifest, checksum};
use super::state::{self, TaskState};
use super::storage::Storage;
use crate::Error;
use crate::job::JobPlan;

/// A checkpoint loaded and verified, ready to hand out per-subtask state.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint's manifest.
    pub manifest: Manifest,
    states: HashMap<(String, u32), TaskState>,
}

impl Restored {
    /// The checkpoint id.
    pub fn id(&self) -> u64 {
        self.manifest.checkpoint_id
    }

    /// The state of `node`'s `subtask`, if the checkpoint has it.
    pub fn state(&self, node: &str, subtask: u32) -> Option<&TaskState> {
        self.states.get(&(node.to_owned(), subtask))
    }
}

/// What [`find_latest`] found.
#[derive(Debug)]
pub struct Found {
    /// The checkpoint to restore, if any is usable.
    pub restored: Option<Restored>,
    /// Complete checkpoints skipped as damaged, newest first, with why.
    pub skipped: Vec<(u64, String)>,
    /// The first id free for new checkpoints.
    pub next_id: u64,
}

/// Finds and loads the newest usable complete checkpoint of `plan`'s job
/// among those numbered `since` or later (a `--fresh` run ignores older ones).
///
/// # Errors
/// [`Error::Storage`] when the store cannot be listed; [`Error::InvalidJob`]
/// when the newest usable checkpoint belongs to a different job graph;
/// [`Error::Corrupt`] when complete checkpoints exist but none is usable.
pub fn find_latest(storage: &Storage, plan: &JobPlan, since: u64) -> Result<Found, Error> {
    let listed = storage.list()?;
    let next_id = listed.last().map_or(1, |l| l.id + 1);
    let mut skipped = Vec::new();
    for id in listed.iter().rev().filter(|l| l.has_manifest && l.id >= since).map(|l| l.id) {
        match load(storage, id, plan) {
            Ok(restored) => return Ok(Found { restored: Some(restored), skipped, next_id }),
            Err(Error::InvalidJob(msg)) => return Err(Error::InvalidJob(msg)),
            Err(e) => {
                tracing::warn!("checkpoint {id} is unusable ({e}); falling back to the previous complete checkpoint");
                skipped.push((id, e.to_string()));
            }
        }
    }
    if let Some((newest, why)) = skipped.first() {
        return Err(Error::Corrupt(format!(
            "no usable checkpoint in {}: the newest, {newest}, is unusable ({why}), and so is every older one; \
             repair or remove them, or start over with --fresh",
            storage.url()
        )));
    }
    Ok(Found { restored: None, skipped, next_id })
}

/// Loads and verifies checkpoint `id`.
fn load(storage: &Storage, id: u64, plan: &JobPlan) -> Result<Restored, Error> {
    let manifest = storage.read_manifest(id)?;
    check_graph(&manifest, plan)?;
    let mut states = HashMap::new();
    for node in &manifest.nodes {
        for sub in &node.subtasks {
            let bytes = storage.get(&storage.paths().state(id, &sub.object))?;
            if bytes.len() as u64 != sub.size || checksum(&bytes) != sub.checksum {
                return Err(Error::Corrupt(format!(
                    "state object {} has {} bytes with checksum {}, the manifest says {} bytes with {}",
                    sub.object,
                    bytes.len(),
                    checksum(&bytes),
                    sub.size,
                    sub.checksum
                )));
            }
            let state =
                state::decode(&bytes).map_err(|e| Error::Corrupt(format!("state object {}: {e}", sub.object)))?;
            states.insert((node.id.clone(), sub.subtask), state);
        }
    }
    Ok(Restored { manifest, states })
}

/// The checkpoint must describe the same nodes with the same parallelism.
fn check_graph(manifest: &Manifest, plan: &JobPlan) -> Result<(), Error> {
    let mismatch = |what: String| {
        Error::InvalidJob(format!(
            "checkpoint {} of job `{}` does not fit this job file: {what}. Start over with --fresh \
             (changing operators or parallelism needs a savepoint)",
            manifest.checkpoint_id, manifest.job
        ))
    };
    if manifest.max_parallelism != plan.max_parallelism {
        return Err(mismatch(format!(
            "max_parallelism was {}, is now {}",
            manifest.max_parallelism, plan.max_parallelism
        )));
    }
    for node in &plan.nodes {
        let Some(saved) = manifest.nodes.iter().find(|n| n.id == node.id) else {
            return Err(mismatch(format!("it has no state for `{}`", node.id)));
        };
        if saved.parallelism != node.parallelism {
            return Err(mismatch(format!(
                "`{}` had parallelism {}, now {}",
                node.id, saved.parallelism, node.parallelism
            )));
        }
    }
    if let Some(extra) = manifest.nodes.iter().find(|n| !plan.nodes.iter().any(|p| p.id == n.id)) {
        return Err(mismatch(format!("it has state for `{}`, which is not in the job", extra.id)));
    }
    Ok(())
}
