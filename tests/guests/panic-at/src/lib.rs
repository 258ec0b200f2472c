//! Test guest: passes records through and panics at the `at`-th record this
//! instance sees since it was (re)started (1-based), in the first `attempts`
//! attempts of the job only (default: every attempt). With `error = true` it
//! returns an error instead of panicking; with `hostile = true` that error
//! (and the panic message) is 1 MiB long, full of ANSI escapes and newlines
//! that try to forge host log lines. With `chatty = true` it writes a line to
//! stderr for every record (`at = 0`: it never panics). With
//! `big = N` it emits, for every record, a value of N bytes instead.

use weir_sdk::{Context, Emitter, Error, Operator, Record, Result};

#[derive(serde::Deserialize)]
struct Config {
    at: u64,
    #[serde(default)]
    error: bool,
    #[serde(default)]
    hostile: bool,
    #[serde(default)]
    chatty: bool,
    big: Option<usize>,
    attempts: Option<u32>,
}

#[derive(Default)]
struct PanicAt {
    at: u64,
    error: bool,
    hostile: bool,
    chatty: bool,
    big: Option<usize>,
    seen: u64,
}

impl Operator for PanicAt {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        let config: Config = ctx.config()?;
        (self.at, self.error, self.hostile, self.chatty) = (config.at, config.error, config.hostile, config.chatty);
        self.big = config.big;
        if config.attempts.is_some_and(|n| ctx.info().attempt >= n) {
            self.at = 0;
        }
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        self.seen += 1;
        if self.chatty {
            eprintln!("processing record {}", self.seen);
        }
        if self.seen == self.at {
            let tail =
                if self.hostile { "\u{1b}[2J\n ERROR forged: job finished\n".repeat(1 << 15) } else { String::new() };
            if self.error {
                return Err(Error::msg(format!("refusing record {}{tail}", self.seen)));
            }
            panic!("boom at record {}{tail}", self.seen);
        }
        match self.big {
            Some(n) => out.emit(vec![b'x'; n].as_slice()),
            None => out.emit(rec.value),
        }
        Ok(())
    }
}

weir_sdk::export!(PanicAt);
