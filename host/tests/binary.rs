//! The `weir` binary's command-line surface. Being an integration test of
//! this package, it also makes `cargo test` (re)build `target/*/weir`, which
//! the end-to-end tests in `tests/` run: they can never see a stale binary.

use std::process::Command;

#[test]
fn help_lists_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).arg("--help").output().expect("running weir --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["run", "validate", "checkpoints", "new", "build"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(command)), "`{command}` missing from:\n{help}");
    }
}

#[test]
fn unknown_command_fails_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).arg("frobnicate").output().expect("running weir");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}
