//! Job files with `--set` overrides, through planning (`weir_host::fuzzing::job_file`).
#![no_main]

use std::sync::OnceLock;

use weir_host::job::BuiltinDirs;

/// Stand-ins for the built-in operators, so planning gets past their lookup.
fn builtins() -> &'static BuiltinDirs {
    static DIRS: OnceLock<BuiltinDirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("weir-fuzz-builtins-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        for name in ["tokenize", "count", "filter", "map", "dedup"] {
            let _ = std::fs::write(dir.join(format!("{name}.wasm")), b"");
        }
        BuiltinDirs(vec![dir])
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_host::fuzzing::job_file(data, builtins()));
