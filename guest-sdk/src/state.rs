//! Operator state: the typed keyed-state helper [`KeyedState`] and the
//! [`StateWriter`]/[`StateReader`] an operator's `snapshot`/`restore` use.
//!
//! Keyed state is written per key group (each group's bytes are framed
//! `(key, value)` records, values as JSON), so the host can hand each group
//! to whichever subtask owns it after a rescale. Operator (non-keyed) state
//! is opaque bytes, one blob per subtask; after a rescale every new subtask
//! sees all old blobs (Flink's "union" redistribution) and picks what it needs.

use crate::{Error, frame, keygroup};

/// A map from record key to `V`, partitioned by key group for checkpoints.
///
/// ```
/// let mut counts = weir_sdk::KeyedState::<u64>::default();
/// *counts.get_or_default(b"word") += 1;
/// assert_eq!(counts.get(b"word"), Some(&1));
/// ```
#[derive(Debug, Clone)]
pub struct KeyedState<V> {
    /// hashbrown with foldhash: one hash per lookup, fast on short keys
    /// (the record path's hottest map). Short keys live in the table itself.
    map: hashbrown::HashMap<StoredKey, V>,
}

impl<V> Default for KeyedState<V> {
    fn default() -> Self {
        Self { map: hashbrown::HashMap::default() }
    }
}

impl<V> KeyedState<V> {
    /// The value for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.map.get(&KeyRef(key))
    }

    /// The value for `key`, if any, mutably.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.map.get_mut(&KeyRef(key))
    }

    /// The value for `key`, inserting `V::default()` first if absent.
    pub fn get_or_default(&mut self, key: &[u8]) -> &mut V
    where
        V: Default,
    {
        // One hash and probe; the key is copied only when it is new.
        match self.map.entry_ref(&KeyRef(key)) {
            hashbrown::hash_map::EntryRef::Occupied(e) => e.into_mut(),
            hashbrown::hash_map::EntryRef::Vacant(e) => e.insert_with_key(key.into(), V::default()),
        }
    }

    /// Sets the value for `key`, returning the old one.
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        self.map.insert(key.into(), value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        self.map.remove(&KeyRef(key))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.map.iter().map(|(k, v)| (k.as_bytes(), v))
    }
}

impl<V: serde::Serialize + serde::de::DeserializeOwned> KeyedState<V> {
    /// Writes every entry into `state`, under its key's group.
    ///
    /// # Errors
    /// When a value fails to serialize.
    pub fn snapshot_into(&self, state: &mut StateWriter) -> Result<(), Error> {
        let mut json = Vec::new();
        for (key, value) in &self.map {
            json.clear();
            serde_json::to_writer(&mut json, value).map_err(|e| Error::msg(format!("keyed state: {e}")))?;
            state.put_keyed(key.as_bytes(), &json);
        }
        Ok(())
    }

    /// Replaces the contents with the keyed entries of `state`.
    ///
    /// # Errors
    /// When an entry is not a valid `V`.
    pub fn restore_from(&mut self, state: &StateReader) -> Result<(), Error> {
        self.map.clear();
        for entry in state.keyed() {
            let (key, bytes) = entry?;
            let value = serde_json::from_slice(bytes).map_err(|e| Error::msg(format!("keyed state: {e}")))?;
            self.map.insert(key.into(), value);
        }
        Ok(())
    }

    /// Replaces the contents with the keyed entries of `state`, written as
    /// `Old` by an earlier version of the operator and converted by `migrate`.
    ///
    /// Added fields (with `#[serde(default)]`) and renamed ones (with
    /// `#[serde(alias = "old_name")]`) need no migration: values are stored
    /// as JSON, so [`restore_from`](Self::restore_from) reads them as they are.
    /// Use this when the shape really changes:
    ///
    /// ```
    /// # use weir_sdk::{KeyedState, StateReader, Result};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Stats { count: u64, longest: usize }
    /// fn restore(stats: &mut KeyedState<Stats>, state: &StateReader) -> Result<()> {
    ///     match state.version() {
    ///         1 => stats.restore_migrated(state, |count: u64| Stats { count, longest: 0 }),
    ///         _ => stats.restore_from(state),
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// When an entry is not a valid `Old`.
    pub fn restore_migrated<Old: serde::de::DeserializeOwned>(
        &mut self,
        state: &StateReader,
        migrate: impl Fn(Old) -> V,
    ) -> Result<(), Error> {
        self.map.clear();
        for entry in state.keyed() {
            let (key, bytes) = entry?;
            let old: Old = serde_json::from_slice(bytes)
                .map_err(|e| Error::msg(format!("keyed state of version {}: {e}", state.version())))?;
            self.map.insert(key.into(), migrate(old));
        }
        Ok(())
    }
}

/// Longest key stored inline.
const INLINE: usize = 14;

/// A key as the map stores it: up to [`INLINE`] bytes inside the table
/// slot, so a lookup compares bytes it has already loaded instead of
/// chasing a pointer to a heap copy (a cache miss per probe on big state);
/// longer keys on the heap.
#[derive(Debug, Clone)]
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl StoredKey {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl From<&[u8]> for StoredKey {
    fn from(key: &[u8]) -> Self {
        if key.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..key.len()].copy_from_slice(key);
            Self::Inline { len: key.len() as u8, bytes }
        } else {
            Self::Heap(key.into())
        }
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &Self) -> bool {
        same_bytes(self.as_bytes(), other.as_bytes())
    }
}

impl Eq for StoredKey {}

impl core::hash::Hash for StoredKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// A borrowed key for lookups that compares 8 bytes at a time: on wasm32
/// `[u8] == [u8]` is a byte-by-byte `memcmp`, the hottest loop of a keyed
/// operator. Hashes exactly as [`StoredKey`] does.
#[derive(Debug, Clone, Copy)]
struct KeyRef<'a>(&'a [u8]);

impl core::hash::Hash for KeyRef<'_> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl hashbrown::Equivalent<StoredKey> for KeyRef<'_> {
    fn equivalent(&self, key: &StoredKey) -> bool {
        same_bytes(self.0, key.as_bytes())
    }
}

/// `a == b`, a word at a time.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let words_equal = x.by_ref().zip(y.by_ref()).all(|(p, q)| {
        u64::from_le_bytes(p.try_into().expect("8 bytes")) == u64::from_le_bytes(q.try_into().expect("8 bytes"))
    });
    words_equal && x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// Collects an instance's state during [`Operator::snapshot`](crate::Operator::snapshot).
#[derive(Debug, Default)]
pub struct StateWriter {
    pub(crate) max_parallelism: u32,
    pub(crate) operator: Vec<u8>,
    /// Entries by key group (indexed by group: one slot per key group).
    pub(crate) keyed: Vec<Vec<u8>>,
}

impl StateWriter {
    /// Stores `value` under `key` in the key's group.
    pub fn put_keyed(&mut self, key: &[u8], value: &[u8]) {
        let group = keygroup::key_group(key, self.max_parallelism) as usize;
        if self.keyed.len() <= group {
            self.keyed.resize_with(self.max_parallelism.max(1) as usize, Vec::new);
        }
        frame::write(&mut self.keyed[group], Some(key), None, value);
    }

    /// The instance's non-keyed state bytes, to fill in.
    pub fn operator_state(&mut self) -> &mut Vec<u8> {
        &mut self.operator
    }
}

/// State handed to [`Operator::restore`](crate::Operator::restore).
#[derive(Debug, Default)]
pub struct StateReader {
    pub(crate) version: u32,
    pub(crate) operator: Vec<Vec<u8>>,
    pub(crate) keyed: Vec<Vec<u8>>,
}

impl StateReader {
    /// The `STATE_VERSION` of the operator that wrote this state.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Non-keyed state, one blob per subtask that wrote it.
    pub fn operator_states(&self) -> &[Vec<u8>] {
        &self.operator
    }

    /// Every `(key, value)` entry of the key groups this instance owns.
    pub fn keyed(&self) -> impl Iterator<Item = Result<(&[u8], &[u8]), Error>> {
        self.keyed.iter().flat_map(|group| frame::read(group)).map(|r| {
            let rec = r.map_err(|e| Error::msg(format!("keyed state: {e}")))?;
            Ok((rec.key.unwrap_or_default(), rec.value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_at_a_time_comparison_agrees_with_slices() {
        let keys: [&[u8]; 6] = [b"", b"a", b"abcdefgh", b"abcdefgi", b"abcdefghijk", b"abcdefghijl"];
        for a in keys {
            for b in keys {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
        let mut state = KeyedState::<u64>::default();
        *state.get_or_default(b"abcdefghijk") += 2;
        *state.get_or_default(b"abcdefghijk") += 1;
        assert_eq!((state.get(b"abcdefghijk"), state.get(b"abcdefghijl"), state.len()), (Some(&3), None, 1));
        // Inline and heap keys, around the boundary.
        let long: Vec<Vec<u8>> = (0..40).map(|n| vec![b'k'; n]).collect();
        for (i, k) in long.iter().enumerate() {
            state.insert(k, i as u64);
        }
        for (i, k) in long.iter().enumerate() {
            assert_eq!(state.get(k), Some(&(i as u64)), "{} bytes", k.len());
            assert_eq!(state.remove(k), Some(i as u64));
        }
    }
}
