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

/// A word byte that is not an uppercase letter (`CLASS`).
const WORD: u8 = 1;
/// An uppercase ASCII letter (`CLASS`).
const UPPER: u8 = 2;

/// Each ASCII byte's class: 0 separates words; [`WORD`] and [`UPPER`] are
/// in them (alphanumerics and `'`, as the Unicode path's rule).
static CLASS: [u8; 256] = {
    let mut class = [0; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        class[b] = if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_alphanumeric() || c == b'\'' {
            WORD
        } else {
            0
        };
        b += 1;
    }
    class
};

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
            // The common case, byte by byte with one table load per byte:
            // same words as the Unicode path below.
            let bytes = line.value;
            let mut at = 0;
            while at < bytes.len() {
                while at < bytes.len() && CLASS[usize::from(bytes[at])] == 0 {
                    at += 1;
                }
                let start = at;
                let mut upper = false;
                while at < bytes.len() && CLASS[usize::from(bytes[at])] != 0 {
                    upper |= CLASS[usize::from(bytes[at])] == UPPER;
                    at += 1;
                }
                let word = &bytes[start..at];
                if word.is_empty() {
                    break;
                }
                if self.lowercase && upper {
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

#[cfg(test)]
mod tests {
    use weir_sdk::frame;
    use weir_sdk::runtime::{Runtime, only_subtask};

    use super::*;

    fn words(config: &str, line: &str) -> Vec<String> {
        let mut rt = Runtime::<Tokenize>::default();
        rt.init(only_subtask("tokenize"), config.into(), None).unwrap();
        let mut batch = Vec::new();
        frame::write(&mut batch, None, None, line.as_bytes());
        let out = rt.process(&batch).unwrap();
        frame::read(&out)
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(r.key, Some(r.value), "each word is keyed by itself");
                String::from_utf8(r.value.to_vec()).unwrap()
            })
            .collect()
    }

    /// The ASCII fast path splits and folds exactly as the Unicode rule
    /// (alphanumerics and `'`, lowercased), on the edge cases of both.
    #[test]
    fn the_ascii_path_finds_the_unicode_rules_words() {
        let lines = [
            "",
            " ",
            "a",
            "The quick, brown FOX's 2nd jump!",
            "  lead and trail  ",
            "x--y__z",
            "ÄBC déf",
            "tab\tsep\r\nend",
            "'quoted' O'Neil",
            "w1 w22 w333,W4444",
        ];
        for line in lines {
            let expected: Vec<String> = line
                .split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            assert_eq!(words("{}", line), expected, "{line:?}");
            let kept: Vec<String> = line
                .split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect();
            assert_eq!(words(r#"{"lowercase":false}"#, line), kept, "{line:?}");
        }
    }
}
