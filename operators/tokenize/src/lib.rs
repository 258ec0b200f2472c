//! `tokenize`: splits each text line into words and emits every word keyed by
//! itself, ready for a keyed aggregation.
//!
//! Config (optional): `lowercase = true` (the default) folds case so "The" and
//! "the" count as one word. A word is a maximal run of alphanumeric
//! characters and apostrophes; everything else separates words.

use weir_sdk::{Context, Emitter, Operator, Record, Result};

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
    word: String,
}

impl Operator for Tokenize {
    type In<'a> = &'a str;

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        self.lowercase = ctx.config::<Config>()?.lowercase;
        Ok(())
    }

    fn process(&mut self, line: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
        if line.value.is_ascii() {
            // The common case, byte by byte: same words as the Unicode path below.
            let is_sep = |b: &u8| !(b.is_ascii_alphanumeric() || *b == b'\'');
            for word in line.value.as_bytes().split(is_sep).filter(|w| !w.is_empty()) {
                // ASCII in, ASCII out: each word is valid UTF-8.
                let word = core::str::from_utf8(word).expect("a slice of ASCII");
                if self.lowercase && word.bytes().any(|b| b.is_ascii_uppercase()) {
                    self.word.clear();
                    self.word.push_str(word);
                    self.word.make_ascii_lowercase();
                    out.emit_keyed(&self.word, self.word.as_str());
                } else {
                    out.emit_keyed(word, word);
                }
            }
            return Ok(());
        }
        let is_sep = |c: char| !(c.is_alphanumeric() || c == '\'');
        for word in line.value.split(is_sep).filter(|w| !w.is_empty()) {
            if self.lowercase {
                self.word.clear();
                self.word.extend(word.chars().flat_map(char::to_lowercase));
                out.emit_keyed(&self.word, self.word.as_str());
            } else {
                out.emit_keyed(word, word);
            }
        }
        Ok(())
    }
}

weir_sdk::export!(Tokenize);
