//! Fuzz targets: every parser of data from outside — job files with `--set`
//! overrides (through planning), record frames, state objects, manifests —
//! as a function over bytes that must return, whatever the bytes, and never
//! panic or abort. Two drivers run them: the bounded, seeded mutation tests
//! in `cargo test` (`no_panic`), and libFuzzer through `cargo fuzz` (the
//! `fuzz/` crate), which `.ci/run` runs briefly when `cargo fuzz` is there.

use crate::checkpoint::manifest::Manifest;
use crate::checkpoint::state;
use crate::job::{BuiltinDirs, Override};

/// Separates a job file from its `--set` lines in a [`job_file`] input.
pub const SET_SEPARATOR: &str = "\n#--set\n";

/// A job file, then [`SET_SEPARATOR`] and one `KEY=VALUE` override per line:
/// parsed, overridden and planned (built-ins looked up in `builtins`).
pub fn job_file(bytes: &[u8], builtins: &BuiltinDirs) {
    let input = String::from_utf8_lossy(bytes);
    let (text, sets) = input.rsplit_once(SET_SEPARATOR).unwrap_or((&input, ""));
    let overrides: Vec<Override> = sets.lines().filter_map(|l| l.parse().ok()).collect();
    if let Ok(spec) = crate::job::load::parse(text, &overrides) {
        let _ = crate::job::plan(&spec, "fuzz", std::path::Path::new("."), builtins);
    }
}

/// A framed batch of records, read to its end or its first error.
pub fn frame(bytes: &[u8]) {
    for record in weir_sdk::frame::read(bytes) {
        if record.is_err() {
            break;
        }
    }
}

/// A state object.
pub fn state_object(bytes: &[u8]) {
    let _ = state::decode_versioned(bytes);
}

/// A checkpoint manifest.
pub fn manifest(bytes: &[u8]) {
    let _ = Manifest::from_json(bytes);
    let _ = Manifest::format_of(bytes);
}
