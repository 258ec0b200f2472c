//! Test guest: for each record `read:PATH`, `list:DIR`, `connect:ADDR` or
//! `env:NAME`, tries that and emits `<record> -> ok` or `<record> -> denied`.

use weir_sdk::{Emitter, Operator, Record, Result};

#[derive(Default)]
struct Probe;

impl Operator for Probe {
    type In<'a> = &'a str;

    fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
        let (what, arg) = rec.value.split_once(':').unwrap_or((rec.value, ""));
        let allowed = match what {
            "read" => std::fs::read(arg).is_ok(),
            "list" => std::fs::read_dir(arg).is_ok(),
            "connect" => std::net::TcpStream::connect(arg).is_ok(),
            "env" => std::env::var_os(arg).is_some(),
            _ => false,
        };
        out.emit(&format!("{} -> {}", rec.value, if allowed { "ok" } else { "denied" }));
        Ok(())
    }
}

weir_sdk::export!(Probe);
