//! The `file` sink: one line per record value in part files under a
//! directory. Records go to a hidden in-progress file
//! (`.part-<subtask>-<n>.inprogress`), which becomes `part-<subtask>-<n>`
//! only when committed, so a reader of the directory sees committed output
//! only. Without checkpoints, commit happens when the input ends; on failure
//! the in-progress file is removed. Part numbers continue after the highest
//! number already in the directory, so runs never overwrite each other.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use weir_sdk::frame;

use super::Sink;
use crate::Error;

/// One subtask's part files.
pub struct FileSink {
    dir: PathBuf,
    subtask: u32,
    next_part: u64,
    pending: Option<(PathBuf, BufWriter<File>)>,
}

impl FileSink {
    /// A sink writing into `dir` (created if missing) for `subtask`.
    ///
    /// # Errors
    /// When `dir` cannot be created or listed.
    pub fn new(dir: &Path, subtask: u32) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("file sink: cannot create {}", dir.display()), e))?;
        let next_part = highest_part(dir, subtask)?.map_or(0, |n| n + 1);
        Ok(Self { dir: dir.to_path_buf(), subtask, next_part, pending: None })
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, Error> {
        if self.pending.is_none() {
            let path = self.dir.join(format!(".part-{}-{}.inprogress", self.subtask, self.next_part));
            let file = File::create(&path)
                .map_err(|e| Error::io(format!("file sink: cannot create {}", path.display()), e))?;
            self.pending = Some((path, BufWriter::with_capacity(256 * 1024, file)));
        }
        Ok(&mut self.pending.as_mut().expect("set above").1)
    }
}

/// The highest part number of `subtask` in `dir`, committed or not.
fn highest_part(dir: &Path, subtask: u32) -> Result<Option<u64>, Error> {
    let context = || format!("file sink: cannot list {}", dir.display());
    let committed = format!("part-{subtask}-");
    let pending = format!(".part-{subtask}-");
    let mut highest = None;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
        let name = entry.map_err(|e| Error::io(context(), e))?.file_name();
        let name = name.to_string_lossy();
        let rest = name.strip_prefix(&committed).or_else(|| name.strip_prefix(&pending));
        let number = rest.map(|r| r.trim_end_matches(".inprogress")).and_then(|n| n.parse::<u64>().ok());
        highest = highest.max(number);
    }
    Ok(highest)
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

    fn finish(&mut self) -> Result<(), Error> {
        let Some((path, writer)) = self.pending.take() else { return Ok(()) };
        let fail = |e| Error::io(format!("file sink: cannot commit {}", path.display()), e);
        let file = writer.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)?;
        let final_path = self.dir.join(format!("part-{}-{}", self.subtask, self.next_part));
        std::fs::rename(&path, &final_path).map_err(fail)?;
        self.next_part += 1;
        Ok(())
    }

    fn abort(&mut self) {
        if let Some((path, _)) = self.pending.take() {
            let _ = std::fs::remove_file(path);
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

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<_> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        n.sort();
        n
    }

    #[test]
    fn output_is_hidden_until_finish_and_runs_do_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 3).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        assert_eq!(names(dir.path()), [".part-3-0.inprogress"]);
        sink.finish().unwrap();
        assert_eq!(names(dir.path()), ["part-3-0"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("part-3-0")).unwrap(), "a\nb\n");
        let mut again = FileSink::new(dir.path(), 3).unwrap();
        again.write(&batch(&["c"])).unwrap();
        again.finish().unwrap();
        assert_eq!(names(dir.path()), ["part-3-0", "part-3-1"]);
    }

    #[test]
    fn abort_removes_pending_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 0).unwrap();
        sink.write(&batch(&["a"])).unwrap();
        sink.abort();
        assert!(names(dir.path()).is_empty());
    }
}
