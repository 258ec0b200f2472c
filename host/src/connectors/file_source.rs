//! The `file` source: one record per line of a text file, or of every
//! visible file in a directory (sorted by name). Lines lose their `\n` /
//! `\r\n`.
//!
//! **Splits.** With parallelism `p` and at least `p` files, subtask `i` reads
//! whole files `i, i+p, …`. With fewer files than subtasks, every file is
//! cut into `p` byte ranges and subtask `i` reads range `i` of each file, so
//! one big file is read by every subtask: a line belongs to the range
//! holding its first byte (a range skips the partial line it starts in).
//!
//! Its checkpointed position is (split index, byte offset of the next
//! unread line), so a restore seeks straight back to it; whole-file and
//! range positions are distinct, so one is never read as the other.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use weir_sdk::frame;

use super::pacer::Pacer;
use super::{Source, SourceStatus};
use crate::Error;
use crate::checkpoint::state::SourcePosition;

/// A byte range of one file: the lines whose first byte lies in `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Split {
    path: PathBuf,
    start: u64,
    end: u64,
}

/// Reads lines of this subtask's splits.
pub struct FileSource {
    splits: Vec<Split>,
    /// Whether the splits are byte ranges (else whole files).
    ranged: bool,
    /// Index of the split `reader` reads (or the next to open).
    split: usize,
    /// Offset in that split's file of the next unread line.
    offset: u64,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
    pacer: Pacer,
}

impl FileSource {
    /// The share of `path` for `subtask` of `parallelism`.
    ///
    /// # Errors
    /// When `path` cannot be listed, or a file's size read.
    pub fn new(path: &Path, subtask: u32, parallelism: u32, rate: Option<f64>) -> Result<Self, Error> {
        let files = list_files(path)?;
        let ranged = files.len() < parallelism as usize;
        let splits = if ranged {
            let (i, p) = (u64::from(subtask), u64::from(parallelism));
            files
                .into_iter()
                .map(|path| {
                    let len = std::fs::metadata(&path)
                        .map_err(|e| Error::io(format!("file source: cannot stat {}", path.display()), e))?
                        .len();
                    // u128: no overflow for any file size times any parallelism.
                    let cut = |k: u64| (u128::from(len) * u128::from(k) / u128::from(p)) as u64;
                    Ok(Split { path, start: cut(i), end: cut(i + 1) })
                })
                .collect::<Result<Vec<_>, Error>>()?
        } else {
            files
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % parallelism == subtask)
                .map(|(_, path)| Split { path, start: 0, end: u64::MAX })
                .collect()
        };
        let offset = splits.first().map_or(0, |s| s.start);
        Ok(Self {
            splits,
            ranged,
            split: 0,
            offset,
            reader: None,
            line: Vec::new(),
            pacer: Pacer::new(rate, parallelism),
        })
    }

    /// Opens split `self.split` at `self.offset`; false when there is none left.
    fn open(&mut self) -> Result<bool, Error> {
        let Some(split) = self.splits.get(self.split) else { return Ok(false) };
        let path = &split.path;
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
        }
        // A range that starts mid-file skips the line that began before it
        // (read from the byte before: a `\n` there means no partial line).
        let skip = self.offset == split.start && split.start > 0;
        let at = if skip { self.offset - 1 } else { self.offset };
        if at > 0 {
            file.seek(SeekFrom::Start(at)).map_err(|e| Error::io(context("seek in"), e))?;
        }
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        if skip {
            let n = reader.skip_until(b'\n').map_err(|e| Error::io(context("read"), e))?;
            self.offset = at + n as u64;
        }
        self.reader = Some(reader);
        Ok(true)
    }

    /// Moves on to the next split.
    fn next_split(&mut self) {
        self.reader = None;
        self.split += 1;
        self.offset = self.splits.get(self.split).map_or(0, |s| s.start);
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
            if self.offset >= self.splits[self.split].end {
                self.next_split();
                continue;
            }
            let reader = self.reader.as_mut().expect("opened above");
            self.line.clear();
            let n = reader.read_until(b'\n', &mut self.line).map_err(|e| {
                Error::io(format!("file source: cannot read {}", self.splits[self.split].path.display()), e)
            })?;
            if n == 0 {
                self.next_split();
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
        let (split, offset) = (self.split as u64, self.offset);
        if self.ranged {
            SourcePosition::FileRange { split, offset }
        } else {
            SourcePosition::File { file: split, offset }
        }
    }

    fn restore(&mut self, position: SourcePosition) -> Result<(), Error> {
        let (split, offset) = match position {
            SourcePosition::File { file, offset } if !self.ranged => (file, offset),
            SourcePosition::FileRange { split, offset } if self.ranged => (split, offset),
            SourcePosition::File { .. } | SourcePosition::FileRange { .. } => {
                return Err(Error::Corrupt(format!(
                    "file source: the checkpoint read its input as {}, but with this parallelism and these \
                     files it is read as {}; restore with the parallelism and input it was taken with",
                    if self.ranged { "whole files" } else { "byte ranges of files" },
                    if self.ranged { "byte ranges" } else { "whole files" },
                )));
            }
            other => return Err(Error::Corrupt(format!("file source: cannot resume from {other:?}"))),
        };
        let split = usize::try_from(split).unwrap_or(usize::MAX);
        if split > self.splits.len() || self.splits.get(split).is_some_and(|s| offset < s.start) {
            return Err(Error::Corrupt(format!(
                "file source: the checkpoint's position (split {split}, byte {offset}) is not in this subtask's \
                 share of the input; restore with the parallelism and input it was taken with"
            )));
        }
        self.reader = None;
        (self.split, self.offset) = (split, offset);
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
        // More subtasks than files: byte ranges, still every line once.
        let mut thirds: Vec<String> =
            (0..3).flat_map(|i| read_all(&mut FileSource::new(dir.path(), i, 3, None).unwrap())).collect();
        thirds.sort();
        assert_eq!(thirds, ["", "four", "one", "three", "two"]);
    }

    /// Every line exactly once across subtasks, for line lengths that put
    /// range boundaries everywhere: at line starts, mid-line, on `\n`s.
    #[test]
    fn byte_ranges_of_one_file_cover_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        for lines in [0usize, 1, 2, 5, 17, 100] {
            let numbered: String = (0..lines).map(|i| format!("{}\n", "x".repeat(i % 7) + &i.to_string())).collect();
            for (text, tail) in [(&numbered, ""), (&numbered, "last-without-newline"), (&"\n".repeat(lines), "")] {
                std::fs::write(&path, format!("{text}{tail}")).unwrap();
                let mut expected: Vec<String> = text.lines().map(String::from).collect();
                if !tail.is_empty() {
                    expected.push(tail.into());
                }
                for p in 2..=7 {
                    let mut got: Vec<String> =
                        (0..p).flat_map(|i| read_all(&mut FileSource::new(&path, i, p, None).unwrap())).collect();
                    assert_eq!(got.len(), expected.len(), "{lines} lines, p = {p}");
                    got.sort();
                    let mut want = expected.clone();
                    want.sort();
                    assert_eq!(got, want, "{lines} lines, p = {p}");
                }
            }
        }
    }

    #[test]
    fn a_range_restores_mid_range_and_refuses_whole_file_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let text: String = (0..40).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let all = read_all(&mut FileSource::new(&path, 1, 2, None).unwrap());
        let mut second = FileSource::new(&path, 1, 2, None).unwrap();
        let mut buf = Vec::new();
        second.next_batch(&mut buf, 3).unwrap();
        let position = second.position();
        assert!(matches!(position, SourcePosition::FileRange { split: 0, .. }), "{position:?}");
        let mut resumed = FileSource::new(&path, 1, 2, None).unwrap();
        resumed.restore(position).unwrap();
        assert_eq!(read_all(&mut resumed), all[3..]);
        let mut ranged = FileSource::new(&path, 0, 2, None).unwrap();
        let err = ranged.restore(SourcePosition::File { file: 0, offset: 0 }).unwrap_err();
        assert!(err.to_string().contains("read its input as whole files"), "{err}");
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
