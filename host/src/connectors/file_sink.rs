//! The `file` sink: one line per record value in part files under a
//! directory, two-phase so that output is exactly-once.
//!
//! Records go to a hidden in-progress file
//! `.part-<subtask>-<n>.<run>.inprogress`; only a committed file is named
//! `part-<subtask>-<n>`, so a reader of the directory sees committed output
//! only (as with Flink's file sink). `<run>` is a tag unique to the process:
//! a run that is being taken over (and does not know it yet) never writes
//! into, or removes, a file of the run that took over.
//!
//! - At a checkpoint barrier ([`Sink::pre_commit`]) the current file is
//!   flushed, synced, closed and recorded as pending for that checkpoint.
//! - When the checkpoint completes ([`Sink::commit`]) its pending files are
//!   renamed to their final names.
//! - On restore ([`Sink::restore`]) the pending files named in the state are
//!   committed (the checkpoint completed, the rename may not have happened),
//!   and every other uncommitted file of this subtask — written after the
//!   checkpoint — is deleted; so are committed parts numbered at or after the
//!   state's `next_part` (only possible when falling back past a damaged
//!   checkpoint), since their records will be produced again.
//! - Without checkpoints, everything is committed at the end of input and
//!   the current file removed on failure.
//!
//! Part numbers continue after the highest one present, so runs never
//! overwrite each other.
//!
//! The state records the directory (canonical). A job resumed from a
//! savepoint with the sink pointed elsewhere starts the new directory
//! afresh ([`fresh_state`], chosen when the savepoint is fitted to the job);
//! the old directory is left as the savepoint's run left it. A checkpoint,
//! by contrast, always belongs to the sink's directory, however it is
//! reached (a symlink, a moved job directory).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use weir_sdk::frame;

use super::Sink;
use crate::Error;
use crate::checkpoint::state::{SinkState, TaskState};

/// One subtask's part files.
pub struct FileSink {
    dir: PathBuf,
    subtask: u32,
    /// This process's tag in in-progress names.
    tag: String,
    /// Part number of the next file to open.
    next_part: u64,
    /// The file being written: (part number, writer).
    current: Option<(u64, BufWriter<File>)>,
    /// Sealed files waiting for their checkpoint: (checkpoint, part number).
    pending: Vec<(u64, u64)>,
    /// This process's hold on the directory, shared by its subtasks.
    _lock: DirLock,
}

/// An exclusive `flock` on an output directory, held by one process at a
/// time and shared by that process's sink subtasks (flock conflicts between
/// two descriptors even within one process, hence the registry). It keeps
/// two `weir` processes from writing one directory — also for jobs whose
/// `memory://` store has no ownership record. Advisory, and local to the
/// host: network file systems may not honour it.
struct DirLock {
    dir: PathBuf,
}

/// Directory → (the locked descriptor, sinks of this process using it).
type LockRegistry = std::collections::HashMap<PathBuf, (File, usize)>;

fn locks() -> &'static std::sync::Mutex<LockRegistry> {
    static LOCKS: std::sync::OnceLock<std::sync::Mutex<LockRegistry>> = std::sync::OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

impl DirLock {
    fn take(dir: &Path) -> Result<Self, Error> {
        let mut held = locks().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, users)) = held.get_mut(dir) {
            *users += 1;
            return Ok(Self { dir: dir.to_path_buf() });
        }
        let fd = File::open(dir).map_err(|e| Error::io(format!("file sink: cannot open {}", dir.display()), e))?;
        match fd.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Conflict(format!(
                    "file sink: {} is being written by another weir process; two jobs (or two runs of one \
                     job) must not share an output directory — stop the other one, or choose another path",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!("file sink: cannot lock {} ({e}); another process could write it too", dir.display());
            }
        }
        held.insert(dir.to_path_buf(), (fd, 1));
        Ok(Self { dir: dir.to_path_buf() })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let mut held = locks().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, users)) = held.get_mut(&self.dir) {
            *users -= 1;
            if *users == 0 {
                // Closing the descriptor releases the flock.
                held.remove(&self.dir);
            }
        }
    }
}

impl FileSink {
    /// A sink writing into `dir` (created if missing) for `subtask`.
    ///
    /// # Errors
    /// When `dir` cannot be created or listed.
    pub fn new(dir: &Path, subtask: u32) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("file sink: cannot create {}", dir.display()), e))?;
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| Error::io(format!("file sink: cannot resolve {}", dir.display()), e))?;
        let lock = DirLock::take(&dir)?;
        let next_part = parts(&dir, subtask)?.iter().map(|p| p.number + 1).max().unwrap_or(0);
        let tag = crate::checkpoint::lease::run_tag();
        Ok(Self { dir, subtask, tag, next_part, current: None, pending: Vec::new(), _lock: lock })
    }

    fn pending_name(&self, part: u64) -> String {
        format!(".part-{}-{part}.{}.inprogress", self.subtask, self.tag)
    }

    fn final_name(&self, part: u64) -> String {
        final_name(self.subtask, part)
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, Error> {
        if self.current.is_none() {
            let part = self.next_part;
            let path = self.dir.join(self.pending_name(part));
            let file = File::create(&path)
                .map_err(|e| Error::io(format!("file sink: cannot create {}", path.display()), e))?;
            self.next_part += 1;
            self.current = Some((part, BufWriter::with_capacity(256 * 1024, file)));
        }
        Ok(&mut self.current.as_mut().expect("set above").1)
    }

    /// Flushes, syncs and closes the current file; returns its part number.
    fn seal(&mut self) -> Result<Option<u64>, Error> {
        let Some((part, writer)) = self.current.take() else { return Ok(None) };
        let path = self.dir.join(self.pending_name(part));
        let fail = |e| Error::io(format!("file sink: cannot write {}", path.display()), e);
        let file = writer.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)?;
        Ok(Some(part))
    }

    /// Renames part `part` to its final name (idempotent).
    fn publish(&self, part: u64) -> Result<(), Error> {
        publish(&self.dir, &self.pending_name(part), &self.final_name(part))
    }
}

/// Renames `dir/pending` to `dir/committed` (idempotent: done if `committed` exists).
fn publish(dir: &Path, pending: &str, committed: &str) -> Result<(), Error> {
    let from = dir.join(pending);
    let to = dir.join(committed);
    match std::fs::rename(&from, &to) {
        Ok(()) => Ok(()),
        Err(_) if to.exists() => Ok(()),
        Err(e) => Err(Error::io(format!("file sink: cannot commit {}", from.display()), e)),
    }
}

/// A part file of one subtask found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    number: u64,
    committed: bool,
    name: String,
}

/// Whether `a` and `b` name the same directory (through symlinks too).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The state of `subtask` of a file sink starting afresh in `dir` (after a
/// savepoint taken writing elsewhere): nothing pending, part numbers after
/// those already in `dir`.
///
/// # Errors
/// When `dir` exists but cannot be listed.
pub fn fresh_state(dir: &Path, subtask: u32, finished: bool) -> Result<SinkState, Error> {
    let next_part = if dir.is_dir() { parts(dir, subtask)?.iter().map(|p| p.number + 1).max().unwrap_or(0) } else { 0 };
    let dir = std::fs::canonicalize(dir).ok().map(|d| d.display().to_string());
    Ok(SinkState { finished, pending: Vec::new(), next_part, dir })
}

/// The pending files `state` names that are neither in progress nor
/// committed in `dir` any more (a rollback removed them).
pub fn missing_pending(dir: &Path, subtask: u32, state: &SinkState) -> Vec<String> {
    state
        .pending
        .iter()
        .filter(|name| {
            let committed = pending_part(name, subtask).is_some_and(|n| dir.join(final_name(subtask, n)).exists());
            !dir.join(name).exists() && !committed
        })
        .cloned()
        .collect()
}

/// The part number of `subtask`'s in-progress file `name`
/// (`.part-<subtask>-<n>[.<run tag>].inprogress`).
fn pending_part(name: &str, subtask: u32) -> Option<u64> {
    let middle = name.strip_prefix(&format!(".part-{subtask}-"))?.strip_suffix(".inprogress")?;
    middle.split('.').next()?.parse().ok()
}

/// The committed name of `subtask`'s part `part`.
fn final_name(subtask: u32, part: u64) -> String {
    format!("part-{subtask}-{part}")
}

/// The part files of `subtask` in `dir`, committed or not.
fn parts(dir: &Path, subtask: u32) -> Result<Vec<Part>, Error> {
    let context = || format!("file sink: cannot list {}", dir.display());
    let committed = format!("part-{subtask}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
        let name = entry.map_err(|e| Error::io(context(), e))?.file_name().to_string_lossy().into_owned();
        let parsed = if let Some(rest) = name.strip_prefix(&committed) {
            rest.parse().ok().map(|n| (n, true))
        } else {
            pending_part(&name, subtask).map(|n| (n, false))
        };
        if let Some((number, committed)) = parsed {
            found.push(Part { number, committed, name });
        }
    }
    Ok(found)
}

impl Sink for FileSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), Error> {
        let dir = self.dir.clone();
        let w = self.writer()?;
        let fail = |e| Error::io(format!("file sink: cannot write into {}", dir.display()), e);
        for rec in frame::read(batch) {
            let rec = rec.map_err(|e| Error::Internal(format!("file sink got a malformed batch: {e}")))?;
            w.write_all(rec.value).map_err(fail)?;
            w.write_all(b"\n").map_err(fail)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64, finished: bool) -> Result<TaskState, Error> {
        if let Some(part) = self.seal()? {
            self.pending.push((checkpoint, part));
        }
        let pending = self.pending.iter().map(|&(_, part)| self.pending_name(part)).collect();
        Ok(TaskState::Sink(SinkState {
            finished,
            pending,
            next_part: self.next_part,
            dir: Some(self.dir.display().to_string()),
        }))
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), Error> {
        let (ready, later): (Vec<_>, Vec<_>) = self.pending.iter().partition(|(c, _)| *c <= checkpoint);
        for (_, part) in &ready {
            self.publish(*part)?;
        }
        self.pending = later;
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), Error> {
        if let Some(part) = self.seal()? {
            self.pending.push((u64::MAX, part));
        }
        self.commit(u64::MAX)
    }

    fn restore(&mut self, state: &TaskState) -> Result<(), Error> {
        let TaskState::Sink(state) = state else {
            return Err(Error::InvalidJob(format!(
                "file sink: the saved state is a {} sink's, not a file sink's; resume into the same kind of sink",
                "kafka"
            )));
        };
        let named = |name: &String| {
            pending_part(name, self.subtask)
                .ok_or_else(|| Error::Corrupt(format!("file sink: the checkpoint names an unexpected file {name:?}")))
        };
        let mut keep = Vec::new();
        for name in &state.pending {
            let part = named(name)?;
            publish(&self.dir, name, &self.final_name(part)).map_err(|e| {
                Error::Corrupt(format!(
                    "file sink: cannot commit {name} named in the checkpoint (was it deleted?): {e}"
                ))
            })?;
            keep.push(part);
        }
        for part in parts(&self.dir, self.subtask)? {
            let stale = part.number >= state.next_part || (!part.committed && !keep.contains(&part.number));
            if stale {
                if part.committed {
                    tracing::warn!(
                        "file sink: removing {} in {}: it was committed after the checkpoint being restored, and its records will be written again",
                        part.name,
                        self.dir.display()
                    );
                }
                let path = self.dir.join(&part.name);
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("file sink: cannot remove {}", path.display()), e))?;
            }
        }
        self.next_part = state.next_part;
        self.pending.clear();
        self.current = None;
        Ok(())
    }

    fn clean_start(&mut self) -> Result<(), Error> {
        for part in parts(&self.dir, self.subtask)?.into_iter().filter(|p| !p.committed) {
            let path = self.dir.join(&part.name);
            tracing::info!("file sink: removing {}, left uncommitted by an earlier run", path.display());
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("file sink: cannot remove {}", path.display()), e))?;
        }
        Ok(())
    }

    fn abort(&mut self) {
        if let Some((part, _)) = self.current.take() {
            let _ = std::fs::remove_file(self.dir.join(self.pending_name(part)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in values {
            frame::write(&mut b, None, None, v.as_bytes());
        }
        b
    }

    /// The files in `dir`, this run's tag in in-progress names left out.
    fn names(dir: &Path) -> Vec<String> {
        let tag = format!(".{}.inprogress", crate::checkpoint::lease::run_tag());
        let mut n: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap().replace(&tag, ".inprogress"))
            .collect();
        n.sort();
        n
    }

    #[test]
    fn output_is_hidden_until_committed_and_runs_do_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 3).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        assert_eq!(names(dir.path()), [".part-3-0.inprogress"]);
        sink.commit_all().unwrap();
        assert_eq!(names(dir.path()), ["part-3-0"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-3-0")).unwrap(), "a\nb\n");
        let mut again = FileSink::new(dir.path(), 3).unwrap();
        again.write(&batch(&["c"])).unwrap();
        again.commit_all().unwrap();
        assert_eq!(names(dir.path()), ["part-3-0", "part-3-1"]);
    }

    #[test]
    fn checkpoints_commit_only_what_they_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 0).unwrap();
        sink.write(&batch(&["a"])).unwrap();
        let TaskState::Sink(s1) = sink.pre_commit(1, false).unwrap() else { panic!("a file sink's state") };
        let tag = crate::checkpoint::lease::run_tag();
        assert_eq!(s1.pending, [format!(".part-0-0.{tag}.inprogress")]);
        assert_eq!((s1.next_part, s1.dir), (1, Some(std::fs::canonicalize(dir.path()).unwrap().display().to_string())));
        sink.write(&batch(&["b"])).unwrap();
        sink.pre_commit(2, false).unwrap();
        sink.commit(1).unwrap();
        assert_eq!(names(dir.path()), [".part-0-1.inprogress", "part-0-0"]);
        sink.commit(2).unwrap();
        assert_eq!(names(dir.path()), ["part-0-0", "part-0-1"]);
    }

    #[test]
    fn restore_commits_named_pending_files_and_drops_later_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 0).unwrap();
        sink.write(&batch(&["before"])).unwrap();
        let state = sink.pre_commit(7, false).unwrap();
        sink.write(&batch(&["after"])).unwrap();
        sink.pre_commit(8, false).unwrap();
        sink.write(&batch(&["unsealed"])).unwrap();
        drop(sink); // the process dies before checkpoint 7's commit
        let mut resumed = FileSink::new(dir.path(), 0).unwrap();
        resumed.restore(&state).unwrap();
        assert_eq!(names(dir.path()), ["part-0-0"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0-0")).unwrap(), "before\n");
        resumed.write(&batch(&["again"])).unwrap();
        resumed.commit_all().unwrap();
        assert_eq!(names(dir.path()), ["part-0-0", "part-0-1"]);
        resumed.restore(&state).unwrap();
        assert_eq!(names(dir.path()), ["part-0-0"], "restoring again rolls back what came after");
    }

    /// Defect 10 of issue 10: a savepoint's sink state, fitted to another
    /// directory, starts it afresh — after the parts already there, and
    /// without touching the old directory.
    #[test]
    fn a_fresh_state_for_another_directory_keeps_both_whole() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(new.path().join("part-0-0"), "mine\n").unwrap();
        let mut sink = FileSink::new(old.path(), 0).unwrap();
        sink.write(&batch(&["saved"])).unwrap();
        let TaskState::Sink(saved) = sink.pre_commit(3, false).unwrap() else { panic!("a file sink's state") };
        sink.commit(3).unwrap();
        assert!(!same_dir(Path::new(saved.dir.as_deref().unwrap()), new.path()));
        let fresh = fresh_state(new.path(), 0, false).unwrap();
        assert_eq!((fresh.pending.len(), fresh.next_part), (0, 1));
        let mut resumed = FileSink::new(new.path(), 0).unwrap();
        resumed.restore(&TaskState::Sink(fresh)).unwrap();
        resumed.write(&batch(&["next"])).unwrap();
        resumed.commit_all().unwrap();
        assert_eq!(names(new.path()), ["part-0-0", "part-0-1"]);
        assert_eq!(std::fs::read_to_string(new.path().join("part-0-0")).unwrap(), "mine\n");
        assert_eq!(names(old.path()), ["part-0-0"]);
    }

    /// A checkpoint belongs to the sink's directory however it is reached:
    /// through a symlink, restore retracts and commits as usual.
    #[test]
    fn restore_through_a_symlink_is_the_same_directory() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, root.path().join("link")).unwrap();
        let mut sink = FileSink::new(&real, 0).unwrap();
        sink.write(&batch(&["a"])).unwrap();
        let state = sink.pre_commit(1, false).unwrap();
        sink.commit(1).unwrap();
        sink.write(&batch(&["after"])).unwrap();
        sink.commit_all().unwrap();
        let mut resumed = FileSink::new(&root.path().join("link"), 0).unwrap();
        resumed.restore(&state).unwrap();
        assert_eq!(names(&real), ["part-0-0"], "the part committed after the checkpoint is retracted");
    }

    /// Two processes never write one directory; the subtasks of one share it.
    #[test]
    fn a_directory_is_held_by_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let first = FileSink::new(dir.path(), 0).unwrap();
        let second = FileSink::new(dir.path(), 1).unwrap();
        // Another process: a descriptor of its own, outside the registry.
        let other = File::open(dir.path()).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        drop((first, second));
        other.try_lock().unwrap();
        other.unlock().unwrap();
        drop(other);
        FileSink::new(dir.path(), 0).unwrap();
    }

    #[test]
    fn abort_removes_unsealed_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 0).unwrap();
        sink.write(&batch(&["a"])).unwrap();
        sink.abort();
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn clean_start_removes_uncommitted_leftovers_of_this_subtask_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["part-0-0", ".part-0-1.inprogress", ".part-1-0.inprogress"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let mut sink = FileSink::new(dir.path(), 0).unwrap();
        sink.clean_start().unwrap();
        assert_eq!(names(dir.path()), [".part-1-0.inprogress", "part-0-0"]);
    }
}
