//! `filter`: keeps the records whose value passes a test.
//!
//! Config: exactly one of `contains = "text"` or `regex = "pattern"`, and
//! optionally `invert = true` to keep the records that do *not* pass.
//! Values are tested as bytes (UTF-8 text matches as text would; the regex
//! is Unicode-aware), so values need not be valid UTF-8 and are not
//! validated first.

use weir_sdk::{Context, Emitter, Error, Operator, Record, Result};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    contains: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    invert: bool,
}

enum Test {
    /// A substring searcher built once (not per record, as `str::contains` would).
    Contains(Box<memchr::memmem::Finder<'static>>),
    Regex(regex::bytes::Regex),
}

#[derive(Default)]
struct Filter {
    test: Option<Test>,
    invert: bool,
}

impl Operator for Filter {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config: Config = ctx.config()?;
        self.invert = config.invert;
        self.test = Some(match (config.contains, config.regex) {
            (Some(text), None) => Test::Contains(Box::new(memchr::memmem::Finder::new(text.as_bytes()).into_owned())),
            (None, Some(pattern)) => Test::Regex(regex::bytes::Regex::new(&pattern)?),
            _ => return Err(Error::msg("filter: set exactly one of `contains` or `regex` in its config")),
        });
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let pass = match self.test.as_ref().expect("init ran") {
            Test::Contains(finder) => finder.find(rec.value).is_some(),
            Test::Regex(re) => re.is_match(rec.value),
        };
        if pass != self.invert {
            out.emit(rec.value);
        }
        Ok(())
    }
}

weir_sdk::export!(Filter);
