//! Test guest: keeps 1 MiB more of memory on every loop iteration, forever.

use weir_sdk::{Emitter, Operator, Record, Result};

#[derive(Default)]
struct Hog {
    kept: Vec<Vec<u8>>,
}

impl Operator for Hog {
    type In<'a> = &'a [u8];

    fn process(&mut self, _rec: Record<'_, &[u8]>, _out: &mut Emitter<'_>) -> Result<()> {
        loop {
            self.kept.push(core::hint::black_box(vec![7u8; 1 << 20]));
        }
    }
}

weir_sdk::export!(Hog);
