//! `tokenize`: splits each text line into words and emits every word keyed by
//! itself, ready for a keyed aggregation.
//!
//! Config (optional): `lowercase = true` (the default) folds case so "The" and
//! "the" count as one word. A word is a maximal run of alphanumeric
//! characters and apostrophes; everything else separates words.

use weir_sdk::{Context, Emitter, Error, Operator, Record, Result};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    lowercase: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self { lowercase: true }
    }
}

#[derive(Default)]
struct Tokenize {
    lowercase: bool,
    /// The lowercased ASCII word, reused.
    word: Vec<u8>,
}

impl Operator for Tokenize {
    /// Bytes in: an ASCII line (the common case) is checked once, by
    /// `is_ascii`, and split without any UTF-8 decoding.
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        self.lowercase = ctx.config::<Config>()?.lowercase;
        Ok(())
    }

    fn process(&mut self, line: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        if line.value.is_ascii() {
            // The common case, byte by byte: same words as the Unicode path below.
            let is_sep = |b: &u8| !(b.is_ascii_alphanumeric() || *b == b'\'');
            for word in line.value.split(is_sep).filter(|w| !w.is_empty()) {
                if self.lowercase && word.iter().any(u8::is_ascii_uppercase) {
                    self.word.clear();
                    self.word.extend_from_slice(word);
                    self.word.make_ascii_lowercase();
                    out.emit_keyed(&self.word, self.word.as_slice());
                } else {
                    out.emit_keyed(word, word);
                }
            }
            return Ok(());
        }
        let text = core::str::from_utf8(line.value).map_err(|e| {
            // Say which line: its start (escaped) and where the bad byte is, so
            // it can be found in the input.
            let start = &line.value[..line.value.len().min(40)];
            Error::msg(format!(
                "tokenize: a line is not UTF-8 text (bad byte at {} of {}): \"{}\"",
                e.valid_up_to(),
                line.value.len(),
                start.escape_ascii()
            ))
        })?;
        let is_sep = |c: char| !(c.is_alphanumeric() || c == '\'');
        for word in text.split(is_sep).filter(|w| !w.is_empty()) {
            if self.lowercase {
                let mut lower = String::with_capacity(word.len());
                lower.extend(word.chars().flat_map(char::to_lowercase));
                out.emit_keyed(&lower, lower.as_str());
            } else {
                out.emit_keyed(word, word);
            }
        }
        Ok(())
    }
}

weir_sdk::export!(Tokenize);
