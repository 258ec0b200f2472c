//! The `file` source: one record per line of a text file, or of every
//! visible file in a directory (sorted by name). With parallelism `p`,
//! subtask `i` reads files `i, i+p, …`. Lines lose their `\n` / `\r\n`.
//! Its checkpointed position is (file index, byte offset), so a restore
//! seeks straight back to the first unread line.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use weir_sdk::frame;

use super::pacer::Pacer;
use super::{Source, SourceStatus};
use crate::Error;
use crate::checkpoint::state::SourcePosition;

/// Reads lines of this subtask's files.
pub struct FileSource {
    files: Vec<PathBuf>,
    /// Index of the file `reader` reads (or the next to open).
    file: usize,
    /// Bytes of that file consumed.
    offset: u64,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
    pacer: Pacer,
}

impl FileSource {
    /// The share of `path` for `subtask` of `parallelism`.
    ///
    /// # Errors
    /// When `path` cannot be listed.
    pub fn new(path: &Path, subtask: u32, parallelism: u32, rate: Option<f64>) -> Result<Self, Error> {
        let files = list_files(path)?
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % parallelism == subtask)
            .map(|(_, f)| f)
            .collect();
        Ok(Self { files, file: 0, offset: 0, reader: None, line: Vec::new(), pacer: Pacer::new(rate, parallelism) })
    }

    /// Opens file `self.file` at `self.offset`; false when there is none left.
    fn open(&mut self) -> Result<bool, Error> {
        let Some(path) = self.files.get(self.file) else { return Ok(false) };
        let context = |what: &str| format!("file source: cannot {what} {}", path.display());
        let mut file = File::open(path).map_err(|e| Error::io(context("open"), e))?;
        if self.offset > 0 {
            let len = file.metadata().map_err(|e| Error::io(context("stat"), e))?.len();
            if len < self.offset {
                return Err(Error::Corrupt(format!(
                    "file source: {} has {len} bytes, but the checkpoint resumes it at byte {}; \
                     the input changed since the checkpoint (start over with --fresh)",
                    path.display(),
                    self.offset
                )));
            }
            file.seek(SeekFrom::Start(self.offset)).map_err(|e| Error::io(context("seek in"), e))?;
        }
        self.reader = Some(BufReader::with_capacity(256 * 1024, file));
        Ok(true)
    }
}

/// The files a `file` source reads: `path` itself, or the visible regular
/// files directly inside it, sorted by name.
fn list_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let context = || format!("file source: cannot list {}", path.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(context(), e))? {
        let entry = entry.map_err(|e| Error::io(context(), e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

impl Source for FileSource {
    fn next_batch(&mut self, out: &mut Vec<u8>, max_records: usize) -> Result<SourceStatus, Error> {
        let allowed = self.pacer.allowance(max_records);
        let mut produced = 0;
        while produced < allowed {
            if self.reader.is_none() && !self.open()? {
                self.pacer.emitted(produced);
                return Ok(SourceStatus::Exhausted);
            }
            let reader = self.reader.as_mut().expect("opened above");
            self.line.clear();
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(format!("file source: cannot read {}", self.files[self.file].display()), e))?;
            if n == 0 {
                self.reader = None;
                self.file += 1;
                self.offset = 0;
                continue;
            }
            self.offset += n as u64;
            let mut line = self.line.as_slice();
            line = line.strip_suffix(b"\n").unwrap_or(line);
            line = line.strip_suffix(b"\r").unwrap_or(line);
            frame::write(out, None, None, line);
            produced += 1;
        }
        self.pacer.emitted(produced);
        Ok(SourceStatus::More)
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::File { file: self.file as u64, offset: self.offset }
    }

    fn restore(&mut self, position: SourcePosition) -> Result<(), Error> {
        let SourcePosition::File { file, offset } = position else {
            return Err(Error::Corrupt(format!("file source: cannot resume from {position:?}")));
        };
        self.reader = None;
        (self.file, self.offset) = (file as usize, offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(src: &mut FileSource) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let status = src.next_batch(&mut buf, 2).unwrap();
            out.extend(frame::read(&buf).map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()));
            if status == SourceStatus::Exhausted {
                return out;
            }
        }
    }

    #[test]
    fn reads_lines_of_a_directory_split_between_subtasks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\r\ntwo\n\nthree").unwrap();
        std::fs::write(dir.path().join("b.txt"), "four\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "never\n").unwrap();
        let all = read_all(&mut FileSource::new(dir.path(), 0, 1, None).unwrap());
        assert_eq!(all, ["one", "two", "", "three", "four"]);
        let first = read_all(&mut FileSource::new(dir.path(), 0, 2, None).unwrap());
        let second = read_all(&mut FileSource::new(dir.path(), 1, 2, None).unwrap());
        assert_eq!((first.len(), second,), (4, vec!["four".to_string()]));
    }

    #[test]
    fn restore_resumes_at_the_first_unread_line_and_checks_the_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), "four\nfive\n").unwrap();
        let mut first = FileSource::new(dir.path(), 0, 1, None).unwrap();
        let mut buf = Vec::new();
        first.next_batch(&mut buf, 4).unwrap();
        let position = first.position();
        assert_eq!(position, SourcePosition::File { file: 1, offset: 5 });
        let mut resumed = FileSource::new(dir.path(), 0, 1, None).unwrap();
        resumed.restore(position).unwrap();
        assert_eq!(read_all(&mut resumed), ["five"]);
        // A file shorter than the checkpointed offset is an error, not silent data loss.
        std::fs::write(dir.path().join("b.txt"), "4\n").unwrap();
        let mut shrunk = FileSource::new(dir.path(), 0, 1, None).unwrap();
        shrunk.restore(position).unwrap();
        let err = shrunk.next_batch(&mut Vec::new(), 4).unwrap_err();
        assert!(err.to_string().contains("input changed since the checkpoint"), "{err}");
    }
}
