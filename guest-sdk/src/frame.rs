//! The byte layout of a batch of records: the one format both the host and
//! guests read and write, so it lives here and nowhere else.
//!
//! A batch is a plain concatenation of records (no header, so batches can be
//! appended to each other). Each record is:
//!
//! ```text
//! u8        flags        bit 0: key present, bit 1: timestamp present,
//!                        bit 2: side output named
//! [u8       name length  (if a side output is named: the record goes to
//!  bytes    name]         that output, not the main one; only in a guest's output)
//! [u32 LE   key length   (if key present)
//!  bytes    key]
//! [i64 LE   timestamp]   (if timestamp present; event time in ms)
//! u32 LE    value length
//! bytes     value
//! ```
//!
//! Encoding writes straight into a reusable `Vec<u8>`; decoding borrows from
//! the batch, so neither side allocates per record.

use core::fmt;

const HAS_KEY: u8 = 1;
const HAS_TIMESTAMP: u8 = 2;
const TO_OUTPUT: u8 = 4;

/// A record borrowed from a framed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's key, if it has one. Keyed edges route by it.
    pub key: Option<&'a [u8]>,
    /// Event time in milliseconds since the Unix epoch, if known.
    pub timestamp: Option<i64>,
    /// The payload. The host never looks inside it.
    pub value: &'a [u8],
    /// The side output the record is for (`late`, `errors`, …); `None` for
    /// the main output. Only an operator's output names one; the host
    /// strips the name when it routes the record.
    pub output: Option<&'a [u8]>,
}

/// A batch that ends in the middle of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Byte offset of the record that could not be read.
    pub offset: usize,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed record batch: record at byte {} is truncated", self.offset)
    }
}

impl std::error::Error for FrameError {}

/// Appends one record to `out` (one capacity check, no length to patch).
#[inline]
pub fn write(out: &mut Vec<u8>, key: Option<&[u8]>, timestamp: Option<i64>, value: &[u8]) {
    out.reserve(1 + key.map_or(0, |k| 4 + k.len()) + if timestamp.is_some() { 8 } else { 0 } + 4 + value.len());
    head(out, key, timestamp);
    out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    out.extend_from_slice(value);
}

/// Appends one record for the side output `output` (at most 255 bytes of name).
pub fn write_to(out: &mut Vec<u8>, output: &[u8], key: Option<&[u8]>, timestamp: Option<i64>, value: &[u8]) {
    let name_len = u8::try_from(output.len()).expect("side output names are at most 255 bytes");
    out.push(TO_OUTPUT);
    out.push(name_len);
    out.extend_from_slice(output);
    let at = out.len();
    write(out, key, timestamp, value);
    // One flags byte: the record's own follows the name; fold it into the first.
    let flags = out.remove(at);
    out[at - output.len() - 2] |= flags;
}

/// Starts a record whose value the caller appends to `out` directly; returns
/// the position that [`end`] needs to fill in the value's length.
pub fn begin(out: &mut Vec<u8>, key: Option<&[u8]>, timestamp: Option<i64>) -> usize {
    head(out, key, timestamp);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

/// Flags, key and timestamp: everything before the value's length.
#[inline]
fn head(out: &mut Vec<u8>, key: Option<&[u8]>, timestamp: Option<i64>) {
    let flags = if key.is_some() { HAS_KEY } else { 0 } | if timestamp.is_some() { HAS_TIMESTAMP } else { 0 };
    out.push(flags);
    if let Some(key) = key {
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(key);
    }
    if let Some(ts) = timestamp {
        out.extend_from_slice(&ts.to_le_bytes());
    }
}

/// Finishes a record started with [`begin`]: everything appended since is its value.
pub fn end(out: &mut [u8], at: usize) {
    let len = len_u32(out.len() - at - 4);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

#[inline]
fn len_u32(len: usize) -> u32 {
    // Guest memories are 32-bit, so no single field can reach 4 GiB.
    u32::try_from(len).expect("record field larger than 4 GiB")
}

/// Iterates over the records of a framed batch.
///
/// Yields `Err` once, and then stops, if the batch is truncated.
pub fn read(batch: &[u8]) -> Reader<'_> {
    Reader { batch, pos: 0 }
}

/// Iterator returned by [`read`].
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    batch: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Byte offset of the next record: the bytes between two offsets are
    /// exactly the records read in between, ready to copy into another batch.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.batch.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn take_u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn record(&mut self) -> Option<RecordRef<'a>> {
        let flags = self.take(1)?[0];
        if flags & !(HAS_KEY | HAS_TIMESTAMP | TO_OUTPUT) != 0 {
            return None;
        }
        let output = if flags & TO_OUTPUT != 0 {
            let n = usize::from(self.take(1)?[0]);
            Some(self.take(n)?)
        } else {
            None
        };
        let key = if flags & HAS_KEY != 0 {
            let n = self.take_u32()?;
            Some(self.take(n)?)
        } else {
            None
        };
        let timestamp = if flags & HAS_TIMESTAMP != 0 {
            let b = self.take(8)?;
            Some(i64::from_le_bytes(b.try_into().ok()?))
        } else {
            None
        };
        let n = self.take_u32()?;
        let value = self.take(n)?;
        Some(RecordRef { key, timestamp, value, output })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<RecordRef<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.batch.len() {
            return None;
        }
        let offset = self.pos;
        match self.record() {
            Some(record) => Some(Ok(record)),
            None => {
                self.pos = self.batch.len();
                Some(Err(FrameError { offset }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_combination() {
        let mut buf = Vec::new();
        write(&mut buf, None, None, b"plain");
        write(&mut buf, Some(b"k"), None, b"");
        write(&mut buf, None, Some(-5), b"ts");
        write(&mut buf, Some(b""), Some(i64::MAX), b"both");
        let got: Vec<_> = read(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], RecordRef { key: None, timestamp: None, value: b"plain", output: None });
        assert_eq!(got[1], RecordRef { key: Some(b"k"), timestamp: None, value: b"", output: None });
        assert_eq!(got[2], RecordRef { key: None, timestamp: Some(-5), value: b"ts", output: None });
        assert_eq!(got[3], RecordRef { key: Some(b""), timestamp: Some(i64::MAX), value: b"both", output: None });
    }

    #[test]
    fn side_output_records_name_their_output() {
        let mut buf = Vec::new();
        write(&mut buf, Some(b"k"), Some(7), b"main");
        write_to(&mut buf, b"late", Some(b"k"), Some(3), b"side");
        write_to(&mut buf, b"x", None, None, b"");
        let got: Vec<_> = read(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got[0].output, None);
        assert_eq!(got[1], RecordRef { key: Some(b"k"), timestamp: Some(3), value: b"side", output: Some(b"late") });
        assert_eq!(got[2], RecordRef { key: None, timestamp: None, value: b"", output: Some(b"x") });
    }

    #[test]
    fn unknown_flags_are_a_framing_error() {
        let mut buf = Vec::new();
        write(&mut buf, None, None, b"v");
        buf[0] |= 0x80;
        assert_eq!(read(&buf).next(), Some(Err(FrameError { offset: 0 })));
    }

    #[test]
    fn begin_end_writes_value_in_place() {
        let mut buf = Vec::new();
        let at = begin(&mut buf, Some(b"key"), None);
        buf.extend_from_slice(b"hello ");
        buf.extend_from_slice(b"world");
        end(&mut buf, at);
        let rec = read(&buf).next().unwrap().unwrap();
        assert_eq!(rec.value, b"hello world");
        assert_eq!(rec.key, Some(&b"key"[..]));
    }

    #[test]
    fn truncated_batch_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        write(&mut buf, Some(b"key"), Some(1), b"value");
        let good = buf.len();
        write(&mut buf, Some(b"key"), Some(1), b"value");
        for cut in good + 1..buf.len() {
            let results: Vec<_> = read(&buf[..cut]).collect();
            assert_eq!(results.len(), 2, "cut at {cut}");
            assert!(results[0].is_ok());
            assert_eq!(results[1], Err(FrameError { offset: good }));
        }
    }
}
