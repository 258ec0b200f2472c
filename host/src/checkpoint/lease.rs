//! One owner at a time: the run that writes a job's checkpoints and sink
//! output holds the job's highest *epoch*, taken in the store itself.
//!
//! At start, a run lists `<job>/_owners/`, reads the newest record, and
//! refuses to start ([`Error::Conflict`], exit 2) while that run is alive —
//! unless told to take over. It then writes record `epoch + 1`
//! create-only: of two runs racing for the same epoch, exactly one wins.
//! Before anything that publishes or deletes (a manifest, a commit, a
//! delete), the owner checks that no record `epoch + 1` exists
//! ([`Lease::check`]); a run that finds one has been *fenced*: it stops
//! without writing, committing or deleting anything more.
//!
//! Whether the previous owner is alive: on the same host, its process id
//! must exist with the same start time (so a SIGKILLed run is known dead at
//! once and a rerun just works); on another host Weir cannot tell, and
//! assumes it is alive — take over with `--takeover` once you know it is
//! gone. The `memory://` store has no lease: nothing outside the process
//! can see it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::paths::MAX_ID;
use super::storage::Storage;
use crate::Error;

/// What an ownership record says (`<job>/_owners/<epoch>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The epoch this record holds.
    pub epoch: u64,
    /// Host name of the run.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Its process start time (clock ticks since boot, `/proc/PID/stat`), to
    /// tell a live run from a reused pid.
    #[serde(default)]
    pub process_start: Option<u64>,
    /// When it took the job (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// The kernel's boot id: a pid means something only within one boot.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The inode of the pid namespace: containers sharing a host name (a
    /// rescheduled pod) have pids of their own.
    #[serde(default)]
    pub pid_ns: Option<u64>,
}

impl Owner {
    fn this_process(epoch: u64) -> Self {
        let pid = std::process::id();
        Self {
            epoch,
            host: host_name(),
            pid,
            process_start: process_start(pid),
            boot_id: boot_id(),
            pid_ns: pid_namespace(),
            started_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// Whether the run may still be alive (see the module doc).
    pub fn may_be_alive(&self) -> bool {
        if !self.is_local() {
            return true;
        }
        match (process_start(self.pid), self.process_start) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether its pid can be checked here: same host name, same boot, same
    /// pid namespace.
    fn is_local(&self) -> bool {
        self.host == host_name() && self.boot_id == boot_id() && self.pid_ns == pid_namespace()
    }

    fn describe(&self) -> String {
        let started = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.started_at_ms),
        );
        format!("pid {} on host {}, started {started} (epoch {})", self.pid, self.host, self.epoch)
    }
}

/// This run's ownership of a job's store.
#[derive(Debug)]
pub struct Lease {
    storage: Arc<Storage>,
    epoch: u64,
    fenced: AtomicBool,
}

impl Lease {
    /// Takes the job in `storage` for this run. With `takeover`, a live
    /// owner is fenced instead of refused.
    ///
    /// # Errors
    /// [`Error::Conflict`] naming the live owner (or a run that took the
    /// same epoch at the same moment); [`Error::Storage`] if the store fails.
    pub fn acquire(storage: Arc<Storage>, takeover: bool) -> Result<Arc<Self>, Error> {
        let owners = storage.list_job()?.owners;
        let newest = owners.last().copied();
        let mut fenced: Option<Owner> = None;
        if let Some(epoch) = newest {
            let path = storage.paths().owner(epoch);
            let owner = match storage.get(&path) {
                Ok(bytes) => serde_json::from_slice::<Owner>(&bytes).ok(),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            match owner {
                Some(owner) if owner.may_be_alive() && owner.pid != std::process::id() => {
                    if !takeover {
                        return Err(Error::Conflict(format!(
                            "job `{}` is already running in {}: {}. Two runs of one job would corrupt its \
                             checkpoints and output. Stop it first (`weir cancel`, or `weir stop --savepoint`), \
                             or, if you know it is gone (or want it fenced), run again with --takeover",
                            storage.paths().job(),
                            storage.url(),
                            owner.describe()
                        )));
                    }
                    tracing::warn!(
                        "taking job `{}` over from {}: it is fenced",
                        storage.paths().job(),
                        owner.describe()
                    );
                    fenced = Some(owner);
                }
                Some(_) => {}
                None => tracing::warn!("ownership record {} is unreadable; taking the job", storage.location(&path)),
            }
        }
        let epoch = newest.map_or(1, |e| e + 1);
        if epoch >= MAX_ID {
            return Err(Error::Corrupt(format!(
                "ownership record {} has epoch {}, the highest Weir uses: it was not written by Weir; remove it",
                storage.location(&storage.paths().owner(epoch - 1)),
                epoch - 1
            )));
        }
        let record = serde_json::to_vec_pretty(&Owner::this_process(epoch))
            .map_err(|e| Error::Internal(format!("ownership record: {e}")))?;
        let path = storage.paths().owner(epoch);
        match put_patiently(&storage, &path, &record) {
            Ok(()) => {}
            Err(Error::Storage { source, .. })
                if matches!(
                    *source,
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
                ) =>
            {
                return Err(Error::Conflict(format!(
                    "another run of job `{}` took epoch {epoch} in {} at the same moment; run again to see which",
                    storage.paths().job(),
                    storage.url()
                )));
            }
            Err(e) => return Err(e),
        }
        // Records before the one just fenced are of no use to anyone.
        let stale: Vec<_> = owners.iter().filter(|&&e| Some(e) != newest).map(|&e| storage.paths().owner(e)).collect();
        if !stale.is_empty() {
            let _ = storage.delete_objects(&storage.paths().owners(), &stale);
        }
        tracing::debug!("job `{}`: this run owns epoch {epoch}", storage.paths().job());
        if let Some(old) = fenced {
            wait_until_gone(&old);
        }
        Ok(Arc::new(Self { storage, epoch, fenced: AtomicBool::new(false) }))
    }

    /// This run's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fails once another run has taken the job over.
    ///
    /// # Errors
    /// [`Error::Conflict`] when fenced; [`Error::Storage`] when the store
    /// cannot say (then nothing may be published either).
    pub fn check(&self) -> Result<(), Error> {
        let next = self.storage.paths().owner(self.epoch + 1);
        // Fenced if a newer epoch exists — or if our own record is gone:
        // later owners delete records two epochs back, so after two more
        // takeovers `epoch + 1` may have vanished too.
        if !self.fenced.load(Ordering::Relaxed)
            && !self.storage.exists(&next)?
            && self.storage.exists(&self.storage.paths().owner(self.epoch))?
        {
            return Ok(());
        }
        self.fenced.store(true, Ordering::Relaxed);
        let by = self
            .storage
            .get(&next)
            .ok()
            .and_then(|b| serde_json::from_slice::<Owner>(&b).ok())
            .map_or_else(|| "another run".to_owned(), |o| o.describe());
        Err(Error::Conflict(format!(
            "job `{}` was taken over by {by} (--takeover): this run stops without writing, committing or \
             deleting anything more",
            self.storage.paths().job()
        )))
    }
}

/// A tag unique to this process (six hex digits of a hash of its pid,
/// start time and clock): it names the savepoint directories and sink
/// in-progress files this run writes, so that no two runs ever write — or
/// clean up — the same one.
pub fn run_tag() -> String {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        let seed = format!("{pid}-{:?}-{:?}", process_start(pid), std::time::SystemTime::now());
        format!("{:06x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) & 0xff_ffff)
    })
    .clone()
}

/// How often a running owner checks that it has not been taken over, at
/// least (it also checks before every manifest, commit and delete).
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a takeover waits for the fenced run to stop before going on.
const FENCED_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// After a takeover: the fenced run notices within [`CHECK_EVERY`] (plus
/// whatever a guest call or upload in flight takes) and stops. Until it has,
/// it may still be uploading state or writing in-progress files, so the new
/// owner waits — for its process to end when it is on this host, else for
/// a few check intervals.
fn wait_until_gone(old: &Owner) {
    let started = std::time::Instant::now();
    let local = old.is_local();
    tracing::info!("waiting for the fenced run ({}) to stop", old.describe());
    while started.elapsed() < FENCED_GRACE {
        if local && !old.may_be_alive() {
            return;
        }
        if !local && started.elapsed() >= 3 * CHECK_EVERY {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::warn!("the fenced run ({}) has not stopped after {FENCED_GRACE:?}; going on", old.describe());
}

/// Writes the ownership record, retrying a put that failed: a record that
/// is there and ours after all (a lost acknowledgement) counts as written.
fn put_patiently(storage: &Storage, path: &object_store::path::Path, record: &[u8]) -> Result<(), Error> {
    let mut last = None;
    for attempt in 0..3 {
        match storage.put_new(path, record.to_vec()) {
            Ok(()) => return Ok(()),
            Err(_) if storage.get(path).is_ok_and(|b| b == record) => return Ok(()),
            Err(e @ Error::Corrupt(_)) => {
                // A torn write of our own record: remove it, then try again.
                let _ = storage.delete_objects(&storage.paths().owners(), std::slice::from_ref(path));
                last = Some(e);
            }
            Err(Error::Storage { source, .. })
                if matches!(
                    *source,
                    object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
                ) =>
            {
                return Err(Error::Storage { context: format!("writing {path}"), source });
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
    }
    Err(last.unwrap_or_else(|| Error::Internal("writing the ownership record: no attempt made".into())))
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|b| b.trim().to_owned())
}

fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot);
/// `None` when there is no such process (or no `/proc`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = Owner::this_process(1);
        assert!(me.process_start.is_some());
        assert!(me.may_be_alive());
        let reused = Owner { process_start: me.process_start.map(|s| s + 1), ..me.clone() };
        assert!(!reused.may_be_alive(), "same pid, other start time: another process");
        let elsewhere = Owner { host: "elsewhere".into(), pid: u32::MAX, ..me.clone() };
        assert!(elsewhere.may_be_alive(), "another host cannot be checked");
        let other_pod = Owner { pid_ns: me.pid_ns.map(|n| n + 1), pid: u32::MAX, ..me };
        assert!(other_pod.may_be_alive(), "another pid namespace (a container of the same name) cannot be checked");
    }

    #[test]
    fn a_second_owner_fences_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open("file://c", dir.path(), "job").unwrap());
        let first = Lease::acquire(storage.clone(), false).unwrap();
        first.check().unwrap();
        // The same process counts as dead to itself only through takeover.
        let second = Lease::acquire(storage.clone(), true).unwrap();
        assert_eq!(second.epoch(), first.epoch() + 1);
        assert!(matches!(first.check(), Err(Error::Conflict(_))));
        second.check().unwrap();
        // Two more owners later, epoch 1 and 2's records are gone: the first
        // run still knows it is fenced (found in review).
        let third = Lease::acquire(storage.clone(), true).unwrap();
        let fourth = Lease::acquire(storage.clone(), true).unwrap();
        let stale = Lease { storage, epoch: first.epoch(), fenced: AtomicBool::new(false) };
        assert!(matches!(stale.check(), Err(Error::Conflict(_))));
        assert!(matches!(third.check(), Err(Error::Conflict(_))));
        fourth.check().unwrap();
    }
}
