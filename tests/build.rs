//! Builds every guest — the built-in operators, the test guests and the
//! upgrade example's operators — to
//! `.wasm` before the tests compile, so no test can run against a missing or
//! stale component. Output goes to the shared `target/wasm32-wasip2/release`,
//! where `weir` also finds built-ins; its path is exported to the tests as
//! `WEIR_GUESTS_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &[
    "weir-op-tokenize",
    "weir-op-count",
    "weir-op-filter",
    "weir-op-map",
    "weir-op-dedup",
    "weir-op-window",
    "weir-test-panic-at",
    "weir-test-spin",
    "weir-test-hog",
    "weir-test-not-weir",
    "weir-test-probe",
    "weir-test-stamp",
    "weir-test-alarm",
    "word-stats-v1",
    "word-stats-v2",
];

fn main() {
    let tests_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = tests_dir.parent().expect("tests/ is inside the workspace").to_path_buf();
    for watched in ["guest-sdk", "operators", "tests/guests", "examples/upgrade", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    build_guests(&root, &target_dir);
    let guests = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=WEIR_GUESTS_DIR={}", guests.display());
    println!("cargo:rustc-env=WEIR_TARGET_DIR={}", target_dir.display());
}

fn build_guests(root: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for this (native) build must not leak into the guests'.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    for guest in GUESTS {
        cmd.args(["-p", guest]);
    }
    let status = cmd.status().expect("running cargo to build the guests");
    assert!(
        status.success(),
        "building the guest .wasm files failed ({status}); is the wasm32-wasip2 target installed? (`rustup target add wasm32-wasip2`)"
    );
}
