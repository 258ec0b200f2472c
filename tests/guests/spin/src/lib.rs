//! Test guest: never returns from its first `process` call.

use weir_sdk::{Emitter, Operator, Record, Result};

#[derive(Default)]
struct Spin;

impl Operator for Spin {
    type In<'a> = &'a [u8];

    fn process(&mut self, rec: Record<'_, &[u8]>, _out: &mut Emitter<'_>) -> Result<()> {
        let mut x = rec.value.len() as u64;
        loop {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

weir_sdk::export!(Spin);
