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
//! **Positions name files.** The checkpointed position
//! ([`FilePosition`]) is the name of the file being read and the byte
//! offset of its next unread line, plus what it takes to check that a
//! restore reads the same input: a fingerprint of the listing (number of
//! files and a hash of their names — and, for byte ranges, their lengths,
//! which the ranges depend on) and a hash of the file's first bytes up to
//! the offset (at most 4 KiB). A restore seeks straight back to the offset.
//!
//! **The input is fixed when the job starts.** A restore whose directory has
//! other files than the checkpoint's — one added, removed or renamed — is
//! refused before anything runs, naming the files when the listing is short
//! enough to have been kept; so is a file shorter than its offset or whose
//! first bytes changed. A new file is not read in part or in full: a job
//! that had already finished would never read it either (its sources are
//! done), so one rule holds for both — new files are input for another job
//! (or `--fresh`). Positions written before names (index-based
//! [`SourcePosition::File`] / [`SourcePosition::FileRange`]) still restore,
//! by index, checked only against the file's length.
//!
//! All I/O is on the subtask's own thread: listing and `stat` in
//! [`FileSource::new`], reads in `next_batch`, one open and a 4 KiB read
//! per file (and on restore, to check it).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use weir_sdk::frame;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::pacer::Pacer;
use super::{Source, SourceStatus};
use crate::Error;
use crate::checkpoint::state::{FilePosition, InputListing, SourcePosition};

/// Bytes at the start of a file that a position's `head` hash covers.
const HEAD: usize = 4096;

/// Longest listing (names in bytes) kept in positions for messages.
const NAMES_KEPT: usize = 4096;

/// A byte range of one file: the lines whose first byte lies in `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Split {
    path: PathBuf,
    /// The file's name in the input (what positions record).
    name: String,
    start: u64,
    end: u64,
}

/// Reads lines of this subtask's splits.
pub struct FileSource {
    /// The source's `path` (for messages).
    root: PathBuf,
    splits: Vec<Split>,
    /// Whether the splits are byte ranges (else whole files).
    ranged: bool,
    /// The whole input (every subtask's files), as positions record it.
    input: InputListing,
    /// Index of the split `reader` reads (or the next to open).
    split: usize,
    /// Offset in that split's file of the next unread line.
    offset: u64,
    reader: Option<BufReader<File>>,
    /// The first bytes (at most [`HEAD`]) of the file `reader` reads.
    head: Vec<u8>,
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
        let mut all = Vec::with_capacity(files.len());
        for path in files {
            let name = path.file_name().map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy()).into_owned();
            let len = if ranged {
                std::fs::metadata(&path)
                    .map_err(|e| Error::io(format!("file source: cannot stat {}", path.display()), e))?
                    .len()
            } else {
                0
            };
            all.push((Split { path, name, start: 0, end: u64::MAX }, len));
        }
        let input = listing(&all, ranged);
        let splits: Vec<Split> = if ranged {
            let (i, p) = (u64::from(subtask), u64::from(parallelism));
            all.into_iter()
                .map(|(split, len)| {
                    // u128: no overflow for any file size times any parallelism.
                    let cut = |k: u64| (u128::from(len) * u128::from(k) / u128::from(p)) as u64;
                    Split { start: cut(i), end: cut(i + 1), ..split }
                })
                .collect()
        } else {
            all.into_iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % parallelism == subtask)
                .map(|(_, (split, _))| split)
                .collect()
        };
        let offset = splits.first().map_or(0, |s| s.start);
        Ok(Self {
            root: path.to_path_buf(),
            splits,
            ranged,
            input,
            split: 0,
            offset,
            reader: None,
            head: Vec::new(),
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
                return Err(Error::InvalidJob(format!(
                    "file source: {} has {len} bytes, but the checkpoint resumes it at byte {}; \
                     the input changed since the checkpoint (start over with --fresh)",
                    path.display(),
                    self.offset
                )));
            }
        }
        self.head.clear();
        (&mut file).take(HEAD as u64).read_to_end(&mut self.head).map_err(|e| Error::io(context("read"), e))?;
        // A range that starts mid-file skips the line that began before it
        // (read from the byte before: a `\n` there means no partial line).
        let skip = self.offset == split.start && split.start > 0;
        let at = if skip { self.offset - 1 } else { self.offset };
        file.seek(SeekFrom::Start(at)).map_err(|e| Error::io(context("seek in"), e))?;
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

    /// The hash of the open file's bytes before `offset` (at most [`HEAD`]).
    fn head_hash(&self) -> Option<u64> {
        self.reader.as_ref()?;
        let n = usize::try_from(self.offset).unwrap_or(usize::MAX).min(self.head.len());
        Some(xxh3_64(&self.head[..n]))
    }

    /// Restores a position that names its file.
    fn restore_named(&mut self, position: FilePosition) -> Result<(), Error> {
        self.check_mode(position.ranged)?;
        if position.input != self.input {
            return Err(self.input_changed(&position.input));
        }
        let split = match &position.file {
            None => self.splits.len(),
            Some(name) => self.splits.iter().position(|s| s.name == *name).ok_or_else(|| {
                Error::InvalidJob(format!(
                    "file source: the checkpoint was reading {name}, which is not in this subtask's share of {}; \
                     restore with the parallelism it was taken with",
                    self.root.display()
                ))
            })?,
        };
        self.resume(split, position.offset)?;
        let Some(expected) = position.head else { return Ok(()) };
        if self.head_hash() != Some(expected) {
            return Err(Error::InvalidJob(format!(
                "file source: {} is not the file the checkpoint read: its first bytes changed since; \
                 the input must stay as it was while a job reads it (start over with --fresh)",
                self.splits[split].path.display()
            )));
        }
        Ok(())
    }

    /// Restores a position written before positions named files: by index.
    fn restore_indexed(&mut self, ranged: bool, split: u64, offset: u64) -> Result<(), Error> {
        self.check_mode(ranged)?;
        self.resume(usize::try_from(split).unwrap_or(usize::MAX), offset)
    }

    /// Refuses a position taken while the input was read the other way.
    fn check_mode(&self, ranged: bool) -> Result<(), Error> {
        if ranged == self.ranged {
            return Ok(());
        }
        Err(Error::InvalidJob(format!(
            "file source: the checkpoint read its input as {}, but with this parallelism and these \
             files it is read as {}; restore with the parallelism and input it was taken with",
            if self.ranged { "whole files" } else { "byte ranges of files" },
            if self.ranged { "byte ranges" } else { "whole files" },
        )))
    }

    /// Seeks to `offset` in split `split` (opening it now, so a file that
    /// no longer fits fails the start, not a read later).
    fn resume(&mut self, split: usize, offset: u64) -> Result<(), Error> {
        if split > self.splits.len() || self.splits.get(split).is_some_and(|s| offset < s.start) {
            return Err(Error::InvalidJob(format!(
                "file source: the checkpoint's position (split {split}, byte {offset}) is not in this subtask's \
                 share of the input; restore with the parallelism and input it was taken with"
            )));
        }
        self.reader = None;
        (self.split, self.offset) = (split, offset);
        self.open()?;
        Ok(())
    }

    /// The error for a restore onto other files than the checkpoint's.
    fn input_changed(&self, then: &InputListing) -> Error {
        let (was, now) = (&then.names, &self.input.names);
        let diff = if was.is_empty() || now.is_empty() {
            String::new()
        } else {
            let added: Vec<&str> = now.iter().filter(|n| !was.contains(n)).map(String::as_str).collect();
            let removed: Vec<&str> = was.iter().filter(|n| !now.contains(n)).map(String::as_str).collect();
            let list = |what: &str, names: &[&str]| {
                if names.is_empty() { String::new() } else { format!("; {what}: {}", names.join(", ")) }
            };
            let resized = if added.is_empty() && removed.is_empty() { "; a file's length changed" } else { "" };
            format!("{}{}{resized}", list("added", &added), list("removed", &removed))
        };
        Error::InvalidJob(format!(
            "file source: the input {} changed since the checkpoint ({} file(s) then, {} now{diff}). A job reads the \
             files it started with: a restore does not pick up added files nor skip removed ones. Put the input \
             back as it was (run new files as a job of their own), or start over with --fresh",
            self.root.display(),
            then.files,
            self.input.files,
        ))
    }
}

/// The listing fingerprint of `files` (sorted, with their lengths when
/// `ranged`).
fn listing(files: &[(Split, u64)], ranged: bool) -> InputListing {
    let mut hash = Xxh3::new();
    for (split, len) in files {
        hash.update(split.name.as_bytes());
        hash.update(&[0]);
        if ranged {
            hash.update(&len.to_le_bytes());
        }
    }
    let short = files.iter().map(|(s, _)| s.name.len()).sum::<usize>() <= NAMES_KEPT;
    InputListing {
        files: files.len() as u64,
        hash: hash.digest(),
        names: if short { files.iter().map(|(s, _)| s.name.clone()).collect() } else { Vec::new() },
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

/// `line` without a trailing `\r` (a CRLF file's lines).
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
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
            let split = &self.splits[self.split];
            let cannot_read = |e| Error::io(format!("file source: cannot read {}", split.path.display()), e);
            let reader = self.reader.as_mut().expect("opened above");
            // The whole lines already in the reader's buffer, framed straight
            // from it (one copy per line, no per-line read call).
            let buf = reader.fill_buf().map_err(cannot_read)?;
            if buf.is_empty() {
                self.next_split();
                continue;
            }
            let (mut used, mut offset) = (0, self.offset);
            while produced < allowed && offset < split.end {
                let Some(i) = memchr::memchr(b'\n', &buf[used..]) else { break };
                frame::write(out, None, None, without_cr(&buf[used..used + i]));
                used += i + 1;
                offset += (i + 1) as u64;
                produced += 1;
            }
            reader.consume(used);
            self.offset = offset;
            if used > 0 {
                continue;
            }
            if offset >= split.end {
                continue;
            }
            // A line the buffer does not hold whole (or the last one, without a newline).
            self.line.clear();
            let n = reader.read_until(b'\n', &mut self.line).map_err(cannot_read)?;
            if n == 0 {
                self.next_split();
                continue;
            }
            self.offset += n as u64;
            let line = self.line.as_slice();
            frame::write(out, None, None, without_cr(line.strip_suffix(b"\n").unwrap_or(line)));
            produced += 1;
        }
        self.pacer.emitted(produced);
        Ok(SourceStatus::More)
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::FileAt(FilePosition {
            ranged: self.ranged,
            input: self.input.clone(),
            file: self.splits.get(self.split).map(|s| s.name.clone()),
            offset: self.offset,
            head: self.head_hash(),
        })
    }

    fn restore(&mut self, position: SourcePosition) -> Result<(), Error> {
        match position {
            SourcePosition::FileAt(position) => self.restore_named(position),
            SourcePosition::File { file, offset } => self.restore_indexed(false, file, offset),
            SourcePosition::FileRange { split, offset } => self.restore_indexed(true, split, offset),
            other => Err(Error::Corrupt(format!("file source: cannot resume from {other:?}"))),
        }
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
        let SourcePosition::FileAt(at) = &position else { panic!("{position:?}") };
        assert_eq!((at.ranged, at.file.as_deref()), (true, Some("in.txt")));
        let mut resumed = FileSource::new(&path, 1, 2, None).unwrap();
        resumed.restore(position.clone()).unwrap();
        assert_eq!(read_all(&mut resumed), all[3..]);
        // The index-based position of earlier versions still restores.
        let SourcePosition::FileAt(FilePosition { offset, .. }) = position else { unreachable!() };
        let mut legacy = FileSource::new(&path, 1, 2, None).unwrap();
        legacy.restore(SourcePosition::FileRange { split: 0, offset }).unwrap();
        assert_eq!(read_all(&mut legacy), all[3..]);
        let mut ranged = FileSource::new(&path, 0, 2, None).unwrap();
        let err = ranged.restore(SourcePosition::File { file: 0, offset: 0 }).unwrap_err();
        assert!(err.to_string().contains("read its input as whole files"), "{err}");
        // Byte ranges depend on the file's length: a longer file is other input.
        std::fs::write(&path, format!("{text}more\n")).unwrap();
        let mut grown = FileSource::new(&path, 1, 2, None).unwrap();
        let err = grown.restore(second.position()).unwrap_err();
        assert!(err.to_string().contains("a file's length changed"), "{err}");
    }

    /// Reads `n` lines (in batches of at most 4) and returns the position after them.
    fn position_after(src: &mut FileSource, n: usize) -> SourcePosition {
        let mut buf = Vec::new();
        let mut read = 0;
        while read < n {
            src.next_batch(&mut buf, (n - read).min(4)).unwrap();
            read = frame::read(&buf).count();
        }
        src.position()
    }

    #[test]
    fn restore_resumes_at_the_first_unread_line_and_checks_the_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\nthree\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), "four\nfive\n").unwrap();
        let position = position_after(&mut FileSource::new(dir.path(), 0, 1, None).unwrap(), 4);
        let SourcePosition::FileAt(at) = &position else { panic!("{position:?}") };
        assert_eq!((at.file.as_deref(), at.offset, at.input.files), (Some("b.txt"), 5, 2));
        let mut resumed = FileSource::new(dir.path(), 0, 1, None).unwrap();
        resumed.restore(position.clone()).unwrap();
        assert_eq!(read_all(&mut resumed), ["five"]);
        // An index-based position (earlier versions) restores while the files are the same.
        let mut legacy = FileSource::new(dir.path(), 0, 1, None).unwrap();
        legacy.restore(SourcePosition::File { file: 1, offset: 5 }).unwrap();
        assert_eq!(read_all(&mut legacy), ["five"]);
        // A file shorter than the checkpointed offset fails the restore, not a read later.
        std::fs::write(dir.path().join("b.txt"), "4\n").unwrap();
        let err = FileSource::new(dir.path(), 0, 1, None).unwrap().restore(position.clone()).unwrap_err();
        assert!(err.to_string().contains("input changed since the checkpoint"), "{err}");
        // Another file of the same name and length: its first bytes tell.
        std::fs::write(dir.path().join("b.txt"), "FOUR\nfive\n").unwrap();
        let err = FileSource::new(dir.path(), 0, 1, None).unwrap().restore(position).unwrap_err();
        assert!(err.to_string().contains("is not the file the checkpoint read"), "{err}");
        assert!(matches!(err, Error::InvalidJob(_)), "a changed input is the user's to fix (exit 2): {err:?}");
    }

    /// The issue's case: a position in `b.txt`, then `a.txt` (sorting
    /// first) is added. The restore is refused, naming the new file; with
    /// it gone again the lines read are exactly the rest of `b.txt` and `c.txt`.
    #[test]
    fn a_file_added_before_the_position_is_refused_then_the_rest_is_read_exactly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "b1\nb2\nb3\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "c1\nc2\n").unwrap();
        let position = position_after(&mut FileSource::new(dir.path(), 0, 1, None).unwrap(), 2);
        std::fs::write(dir.path().join("a.txt"), "a1\na2\na3\na4\na5\n").unwrap();
        let err = FileSource::new(dir.path(), 0, 1, None).unwrap().restore(position.clone()).unwrap_err();
        let message = err.to_string();
        for needle in ["changed since the checkpoint", "2 file(s) then, 3 now", "added: a.txt", "--fresh"] {
            assert!(message.contains(needle), "{needle:?} missing from: {message}");
        }
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        let mut resumed = FileSource::new(dir.path(), 0, 1, None).unwrap();
        resumed.restore(position.clone()).unwrap();
        assert_eq!(read_all(&mut resumed), ["b3", "c1", "c2"]);
        // Renamed or removed files are refused the same way.
        std::fs::rename(dir.path().join("c.txt"), dir.path().join("d.txt")).unwrap();
        let err = FileSource::new(dir.path(), 0, 1, None).unwrap().restore(position).unwrap_err();
        assert!(err.to_string().contains("added: d.txt; removed: c.txt"), "{err}");
    }

    /// With several subtasks each position names a file of its own share;
    /// a position of another share (another parallelism) is refused.
    #[test]
    fn whole_file_positions_restore_per_subtask_and_refuse_another_share() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c", "d"] {
            std::fs::write(dir.path().join(format!("{name}.txt")), format!("{name}1\n{name}2\n")).unwrap();
        }
        let mut second = FileSource::new(dir.path(), 1, 2, None).unwrap();
        let position = position_after(&mut second, 3);
        let SourcePosition::FileAt(at) = &position else { panic!("{position:?}") };
        assert_eq!(at.file.as_deref(), Some("d.txt"));
        let mut resumed = FileSource::new(dir.path(), 1, 2, None).unwrap();
        resumed.restore(position.clone()).unwrap();
        assert_eq!(read_all(&mut resumed), ["d2"]);
        let err = FileSource::new(dir.path(), 0, 2, None).unwrap().restore(position).unwrap_err();
        assert!(err.to_string().contains("not in this subtask's share"), "{err}");
        // Past the last file: nothing left, and that restores too.
        let mut first = FileSource::new(dir.path(), 0, 2, None).unwrap();
        assert_eq!(read_all(&mut first), ["a1", "a2", "c1", "c2"]);
        let done = first.position();
        assert!(matches!(&done, SourcePosition::FileAt(FilePosition { file: None, .. })), "{done:?}");
        let mut finished = FileSource::new(dir.path(), 0, 2, None).unwrap();
        finished.restore(done).unwrap();
        assert!(read_all(&mut finished).is_empty());
    }
}
