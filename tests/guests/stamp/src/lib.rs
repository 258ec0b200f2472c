//! Test guest: emits each record as `key|timestamp|value` (`-` for a
//! missing key or timestamp), so a test can see what its source set.

use weir_sdk::{Emitter, Operator, Record, Result};

#[derive(Default)]
struct Stamp;

impl Operator for Stamp {
    type In<'a> = &'a [u8];

    fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
        let key = rec.key.map_or_else(|| "-".to_owned(), |k| String::from_utf8_lossy(k).into_owned());
        let ts = rec.timestamp.map_or_else(|| "-".to_owned(), |t| t.to_string());
        out.emit(&format!("{key}|{ts}|{}", String::from_utf8_lossy(rec.value)));
        Ok(())
    }
}

weir_sdk::export!(Stamp);
