//! The `file` source: one record per line of a text file, or of every
//! visible file in a directory (sorted by name). With parallelism `p`,
//! subtask `i` reads files `i, i+p, …`. Lines lose their `\n` / `\r\n`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use weir_sdk::frame;

use super::{Source, SourceStatus};
use crate::Error;

/// Reads lines of this subtask's files.
pub struct FileSource {
    files: Vec<PathBuf>,
    next_file: usize,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
}

impl FileSource {
    /// The share of `path` for `subtask` of `parallelism`.
    ///
    /// # Errors
    /// When `path` cannot be listed.
    pub fn new(path: &Path, subtask: u32, parallelism: u32) -> Result<Self, Error> {
        let files = list_files(path)?
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % parallelism == subtask)
            .map(|(_, f)| f)
            .collect();
        Ok(Self { files, next_file: 0, reader: None, line: Vec::new() })
    }

    fn open_next(&mut self) -> Result<bool, Error> {
        let Some(path) = self.files.get(self.next_file) else { return Ok(false) };
        let file =
            File::open(path).map_err(|e| Error::io(format!("file source: cannot open {}", path.display()), e))?;
        self.reader = Some(BufReader::with_capacity(256 * 1024, file));
        self.next_file += 1;
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
        let mut produced = 0;
        while produced < max_records {
            if self.reader.is_none() && !self.open_next()? {
                return Ok(SourceStatus::Exhausted);
            }
            let reader = self.reader.as_mut().expect("opened above");
            self.line.clear();
            let n = reader.read_until(b'\n', &mut self.line).map_err(|e| {
                Error::io(format!("file source: cannot read {}", self.files[self.next_file - 1].display()), e)
            })?;
            if n == 0 {
                self.reader = None;
                continue;
            }
            let mut line = self.line.as_slice();
            line = line.strip_suffix(b"\n").unwrap_or(line);
            line = line.strip_suffix(b"\r").unwrap_or(line);
            frame::write(out, None, None, line);
            produced += 1;
        }
        Ok(SourceStatus::More)
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
        let all = read_all(&mut FileSource::new(dir.path(), 0, 1).unwrap());
        assert_eq!(all, ["one", "two", "", "three", "four"]);
        let first = read_all(&mut FileSource::new(dir.path(), 0, 2).unwrap());
        let second = read_all(&mut FileSource::new(dir.path(), 1, 2).unwrap());
        assert_eq!((first.len(), second,), (4, vec!["four".to_string()]));
    }
}
