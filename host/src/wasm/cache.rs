//! The on-disk cache of compiled components, and why it can be trusted.
//!
//! Compiling a guest takes ~1 s; loading a compiled one a few ms. But a
//! compiled component is native code, and loading it runs it — wasmtime
//! marks that `unsafe`, because it cannot verify machine code. So the cache
//! is exactly as trusted as the user running `weir`, and no more:
//!
//! - **Only this user can write it.** The directory is created `0700` and
//!   entries `0600`, whatever the umask. A directory, or an entry, that is
//!   not owned by this user or is writable by group or others is not used:
//!   `weir` says so and compiles in memory instead.
//! - **Each entry is bound to its input.** An entry is named
//!   `<sha256 of the .wasm>-<engine hash>.cwasm` and starts with a header
//!   repeating both, plus an XXH3 checksum of the compiled bytes. A swapped
//!   entry (another component's, or another engine's), a damaged or patched
//!   one is detected and compiled again — never run. (The checksum guards
//!   against mistakes and damage; against a hostile writer the ownership
//!   check is the defence, as nobody else can write here.)
//! - Entries are written to a temporary file and renamed, so a crash never
//!   leaves half an entry; the bytes checked are the bytes loaded (no
//!   re-read between check and use).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 10] = b"WEIRCWASM1";
const HEADER: usize = MAGIC.len() + 32 + 8 + 8;

/// What identifies an entry: the `.wasm`'s SHA-256 and the engine's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// SHA-256 of the component's bytes.
    pub wasm: [u8; 32],
    /// Hash of the engine's configuration and version.
    pub engine: u64,
}

impl Key {
    fn file_name(&self) -> String {
        format!("{}-{:016x}.cwasm", hex::encode(self.wasm), self.engine)
    }
}

/// A cache directory this user alone can write.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating, `0700`) the cache at `dir`; `None`, with a warning,
    /// when it cannot be created or is not safe to use.
    pub fn open(dir: &Path) -> Option<Self> {
        if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            tracing::warn!("compile cache {}: cannot create it ({e}); compiling every run", dir.display());
            return None;
        }
        match std::fs::metadata(dir) {
            Ok(meta) => match unsafe_because(&meta) {
                None => Some(Self { dir: dir.to_path_buf() }),
                Some(why) => {
                    tracing::warn!(
                        "compile cache {} {why}: not using it, since loading a compiled component runs its code \
                         (make it yours and `chmod 700` it, or set WEIR_CACHE_DIR); compiling every run",
                        dir.display()
                    );
                    None
                }
            },
            Err(e) => {
                tracing::warn!("compile cache {}: {e}; compiling every run", dir.display());
                None
            }
        }
    }

    /// The component cached under `key`, if there is a sound entry; a
    /// damaged, swapped or unsafe one is reported and ignored.
    pub fn load(&self, engine: &Engine, key: &Key) -> Option<Component> {
        let path = self.dir.join(key.file_name());
        let bytes = match read_owned(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!("ignoring compile cache entry {}: {why}; compiling again", path.display());
                return None;
            }
        };
        let artifact = match check(&bytes, key) {
            Ok(artifact) => artifact,
            Err(why) => {
                tracing::warn!("ignoring compile cache entry {}: {why}; compiling again", path.display());
                return None;
            }
        };
        // SAFETY: the bytes come from a file only this user can write (checked
        // on the open descriptor), under a header binding them to this .wasm
        // and this engine, with a matching checksum: bytes this engine
        // produced by `Component::serialize`. See the module docs.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!("ignoring compile cache entry {}: {e:#}; compiling again", path.display());
                None
            }
        }
    }

    /// Stores `component` under `key` (`0600`, via a temporary file).
    ///
    /// # Errors
    /// When it cannot be serialized or written; the cache is an
    /// optimisation, so callers only log this.
    pub fn store(&self, key: &Key, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let path = self.dir.join(key.file_name());
        let tmp = self.dir.join(format!(".tmp-{}-{}", std::process::id(), key.file_name()));
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&key.wasm)?;
        file.write_all(&key.engine.to_le_bytes())?;
        file.write_all(&xxhash_rust::xxh3::xxh3_64(&artifact).to_le_bytes())?;
        file.write_all(&artifact)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

/// Why metadata `meta` makes a file or directory unsafe to trust, if it does.
fn unsafe_because(meta: &std::fs::Metadata) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Some(format!("is owned by uid {}, not by this user (uid {me})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!("is writable by others (mode {:o})", meta.mode() & 0o777));
    }
    None
}

/// The file's bytes if it exists and is safe (checked on the open file).
fn read_owned(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if let Some(why) = unsafe_because(&meta) {
        return Err(format!("it {why}"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

/// The artifact in `bytes`, if its header names `key` and its checksum holds.
fn check<'a>(bytes: &'a [u8], key: &Key) -> Result<&'a [u8], String> {
    if bytes.len() < HEADER || !bytes.starts_with(MAGIC) {
        return Err("not a Weir cache entry (an old format, or damaged)".into());
    }
    let (header, artifact) = bytes.split_at(HEADER);
    let wasm = &header[MAGIC.len()..MAGIC.len() + 32];
    let engine = u64::from_le_bytes(header[MAGIC.len() + 32..MAGIC.len() + 40].try_into().expect("8 bytes"));
    let checksum = u64::from_le_bytes(header[MAGIC.len() + 40..].try_into().expect("8 bytes"));
    if wasm != key.wasm || engine != key.engine {
        return Err("it was compiled from another .wasm or by another engine (a swapped entry)".into());
    }
    if xxhash_rust::xxh3::xxh3_64(artifact) != checksum {
        return Err("its checksum does not match (damaged or modified)".into());
    }
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &Key, artifact: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&key.wasm);
        bytes.extend_from_slice(&key.engine.to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(artifact).to_le_bytes());
        bytes.extend_from_slice(artifact);
        bytes
    }

    /// Issue 11 #2: a patched, swapped or foreign entry is never loaded.
    #[test]
    fn only_a_sound_entry_for_this_key_passes() {
        let key = Key { wasm: [1; 32], engine: 7 };
        let good = entry(&key, b"machine code");
        assert_eq!(check(&good, &key).unwrap(), b"machine code");
        let mut patched = good.clone();
        *patched.last_mut().unwrap() ^= 1;
        assert!(check(&patched, &key).unwrap_err().contains("checksum"));
        let other = Key { wasm: [2; 32], engine: 7 };
        assert!(check(&entry(&other, b"machine code"), &key).unwrap_err().contains("swapped"));
        assert!(check(&entry(&Key { engine: 8, ..key }, b"x"), &key).unwrap_err().contains("swapped"));
        assert!(check(b"\x7fELF raw wasmtime artifact", &key).unwrap_err().contains("not a Weir cache entry"));
    }

    /// The directory is private whatever the umask, and one writable by
    /// others is refused.
    #[test]
    fn the_directory_is_private_and_a_shared_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        assert!(Cache::open(&dir).is_some());
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(Cache::open(&dir).is_none());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(Cache::open(&dir).is_some(), "readable by others is fine: only writing is a risk");
    }
}
