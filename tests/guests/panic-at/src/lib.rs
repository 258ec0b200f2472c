//! Test guest: passes records through and panics at the `at`-th record this
//! instance sees (1-based). With `error = true` it returns an error instead.

use weir_sdk::{Context, Emitter, Error, Operator, Record, Result};

#[derive(serde::Deserialize)]
struct Config {
    at: u64,
    #[serde(default)]
    error: bool,
}

#[derive(Default)]
struct PanicAt {
    at: u64,
    error: bool,
    seen: u64,
}

impl Operator for PanicAt {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config: Config = ctx.config()?;
        (self.at, self.error) = (config.at, config.error);
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        self.seen += 1;
        if self.seen == self.at {
            if self.error {
                return Err(Error::msg(format!("refusing record {}", self.seen)));
            }
            panic!("boom at record {}", self.seen);
        }
        out.emit(rec.value);
        Ok(())
    }
}

weir_sdk::export!(PanicAt);
