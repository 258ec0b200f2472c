//! `weir build [PATH]`: compiles an operator crate to a `.wasm` component
//! with `cargo build --target wasm32-wasip2`, and finds the file(s) it made
//! from cargo's JSON messages (so custom target dirs and workspaces work).
//!
//! Operator crates share one cargo target directory (see [`shared_target`]),
//! so a second operator does not compile weir-sdk, serde and wit-bindgen
//! again; each built `.wasm` is then copied into the crate's own
//! `target/wasm32-wasip2/<profile>/`, where `cargo build` would have put
//! it. `CARGO_TARGET_DIR` set by the user wins, and nothing is copied.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;

/// Builds the crate (or workspace) at `dir`; returns the `.wasm` files built.
///
/// # Errors
/// [`Error::Build`] when cargo fails or builds no component.
pub fn build_operator(dir: &Path, release: bool) -> Result<Vec<PathBuf>, Error> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::Build(format!("{} not found: point `weir build` at an operator crate", manifest.display())));
    }
    // Absolute: cargo runs in the crate's directory.
    let dir = &std::fs::canonicalize(dir).map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), e))?;
    let manifest = dir.join("Cargo.toml");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        // The crate's own .cargo/config.toml (SIMD for guests) applies.
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let shared = std::env::var_os("CARGO_TARGET_DIR").is_none().then(shared_target).flatten();
    if let Some(shared) = &shared {
        cmd.env("CARGO_TARGET_DIR", shared);
    }
    if release {
        cmd.arg("--release");
    }
    let mut child = cmd.spawn().map_err(|e| Error::Build(format!("cannot run cargo: {e}; is Rust installed?")))?;
    let mut wasm = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let line = line.map_err(|e| Error::io("reading cargo's output", e))?;
        wasm.extend(wasm_artifacts(&line));
    }
    let status = child.wait().map_err(|e| Error::io("waiting for cargo", e))?;
    if !status.success() {
        return Err(Error::Build(format!(
            "cargo build failed ({status}); see its messages above. If it cannot find `core` for wasm32-wasip2, run `rustup target add wasm32-wasip2`"
        )));
    }
    if wasm.is_empty() {
        return Err(Error::Build(format!(
            "{} built no .wasm; an operator crate needs `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        )));
    }
    if shared.is_none() {
        return Ok(wasm);
    }
    // Out of the shared directory (where a same-named crate would overwrite
    // it) into the crate's own.
    let own = dir.join("target/wasm32-wasip2").join(if release { "release" } else { "debug" });
    std::fs::create_dir_all(&own).map_err(|e| Error::io(format!("cannot create {}", own.display()), e))?;
    wasm.into_iter()
        .map(|built| {
            let to = own.join(built.file_name().unwrap_or_default());
            std::fs::copy(&built, &to)
                .map_err(|e| Error::io(format!("cannot copy {} to {}", built.display(), to.display()), e))?;
            Ok(to)
        })
        .collect()
}

/// The target directory operator crates share: `$WEIR_BUILD_DIR`, else
/// `$XDG_CACHE_HOME/weir/build`, else `~/.cache/weir/build` (`None` when
/// there is no home: each crate then builds in its own `target/`).
pub fn shared_target() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_BUILD_DIR") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("weir/build"))
}

/// The `.wasm` files named by one cargo JSON message.
fn wasm_artifacts(line: &str) -> Vec<PathBuf> {
    let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { return vec![] };
    if msg["reason"] != "compiler-artifact" {
        return vec![];
    }
    msg["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .filter(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::wasm_artifacts;

    #[test]
    fn picks_wasm_files_from_artifact_messages_only() {
        let artifact = r#"{"reason":"compiler-artifact","filenames":["/t/x.wasm","/t/libx.rlib"]}"#;
        assert_eq!(wasm_artifacts(artifact), [std::path::PathBuf::from("/t/x.wasm")]);
        assert!(wasm_artifacts(r#"{"reason":"build-finished","success":true}"#).is_empty());
        assert!(wasm_artifacts("not json").is_empty());
    }
}
