//! Test guest: for each record, registers a processing-time timer `after`
//! ms (config, default 1000) from the host's clock for the record's key,
//! and emits `seen <key> at <now>`; a timer that fires emits `fired <key>
//! <time> at <now>`. A test moves the host's clock (`WEIR_CLOCK_FILE`) and
//! watches the timers fire — or not.

use weir_sdk::{Context, Emitter, Operator, Record, Result, Timer};

#[derive(Default)]
struct Alarm {
    after: i64,
}

#[derive(serde::Deserialize)]
struct Config {
    after: Option<i64>,
}

impl Operator for Alarm {
    type In<'a> = &'a [u8];

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {
        self.after = ctx.config::<Config>()?.after.unwrap_or(1000);
        Ok(())
    }

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let now = out.processing_time();
        let key = String::from_utf8_lossy(rec.key.unwrap_or_default()).into_owned();
        out.timers().register_processing_time(now + self.after);
        out.emit(&format!("seen {key} at {now}"));
        Ok(())
    }

    fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<()> {
        let now = out.processing_time();
        out.emit(&format!("fired {} {} at {now}", String::from_utf8_lossy(timer.key), timer.time));
        Ok(())
    }
}

weir_sdk::export!(Alarm);
