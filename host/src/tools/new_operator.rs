//! `weir new operator NAME`: a ready-to-build operator crate.

use std::path::{Path, PathBuf};

use crate::Error;

/// Where weir-sdk is, for the scaffold's path dependency: `$WEIR_SDK_PATH`,
/// else the SDK of the source tree this `weir` was built from, if present.
pub fn default_sdk_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_SDK_PATH") {
        return Some(p.into());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    built_from.join("Cargo.toml").is_file().then(|| built_from.canonicalize().unwrap_or(built_from))
}

/// Creates the crate `name` in `dir` (which must not exist yet), depending on
/// the SDK at `sdk`. Returns the crate directory.
///
/// # Errors
/// [`Error::InvalidJob`] for a bad name or an existing directory; I/O errors.
pub fn new_operator(name: &str, dir: &Path, sdk: &Path) -> Result<PathBuf, Error> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Error::InvalidJob(format!(
            "`{name}` is not a valid operator name: use letters, digits, `-` and `_`, starting with a letter"
        )));
    }
    if dir.exists() {
        return Err(Error::InvalidJob(format!("{} already exists; pick another name or --dir", dir.display())));
    }
    let sdk = sdk.canonicalize().map_err(|e| Error::io(format!("weir-sdk not found at {}", sdk.display()), e))?;
    let write = |rel: &str, text: String| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("relative file path has a parent"))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    };
    write("Cargo.toml", cargo_toml(name, &sdk))?;
    write("src/lib.rs", lib_rs(name))?;
    write(".gitignore", "/target\n".into())?;
    // WebAssembly SIMD lets byte loops vectorize (as the built-ins do).
    write(".cargo/config.toml", "[target.wasm32-wasip2]\nrustflags = [\"-C\", \"target-feature=+simd128\"]\n".into())?;
    Ok(dir.to_path_buf())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    let sdk = sdk.display().to_string().replace('\\', "/");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

# A standalone crate, not part of any enclosing workspace.
[workspace]

[profile.release]
debug = false
"#
    )
}

fn lib_rs(name: &str) -> String {
    let type_name: String =
        name.split(['-', '_']).filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect();
    format!(
        r#"//! `{name}`: a Weir stream operator.
//!
//! Build it with `weir build` (or `cargo build --target wasm32-wasip2 --release`)
//! and use the printed `.wasm` in a job file:
//!
//! ```toml
//! [operators.{name}]
//! wasm = "path/to/{file}.wasm"
//! input = "lines"
//! config = {{ prefix = "> " }}
//! ```

use weir_sdk::{{Context, Emitter, Operator, Record, Result}};

/// The `config` table from the job file.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {{
    prefix: String,
}}

/// Prefixes every text record. Replace with your logic.
#[derive(Default)]
struct {type_name} {{
    prefix: String,
}}

impl Operator for {type_name} {{
    type In<'a> = &'a str;

    fn init(&mut self, ctx: &Context<'_>) -> Result<()> {{
        self.prefix = ctx.config::<Config>()?.prefix;
        Ok(())
    }}

    fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {{
        out.emit(&format!("{{}}{{}}", self.prefix, rec.value));
        Ok(())
    }}
}}

weir_sdk::export!({type_name});
"#,
        file = name.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_and_existing_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = tmp.path();
        assert!(new_operator("9lives", &tmp.path().join("a"), sdk).is_err());
        assert!(new_operator("has space", &tmp.path().join("b"), sdk).is_err());
        assert!(new_operator("ok-name", tmp.path(), sdk).unwrap_err().to_string().contains("already exists"));
    }

    #[test]
    fn writes_a_crate_named_after_the_operator() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = new_operator("my-op", &tmp.path().join("my-op"), tmp.path()).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("struct MyOp"), "{lib}");
        assert!(lib.contains("weir_sdk::export!(MyOp);"));
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(toml.contains("name = \"my-op\"") && toml.contains("cdylib"), "{toml}");
    }
}
