//! Operator state: the typed keyed-state helper [`KeyedState`] and the
//! [`StateWriter`]/[`StateReader`] an operator's `snapshot`/`restore` use.
//!
//! Keyed state is written per key group, so the host can hand each group to
//! whichever subtask owns it after a rescale. Operator (non-keyed) state is
//! opaque bytes, one blob per subtask; after a rescale every new subtask
//! sees all old blobs (Flink's "union" redistribution) and picks what it needs.
//!
//! **Names.** Each [`KeyedState`] has a name (like a Flink state
//! descriptor's), so one operator can keep several: a snapshot refuses two
//! states of one name, a restore hands each state only its own entries, and
//! the runtime fails a restore that leaves some name's entries unread. The
//! unnamed state ([`KeyedState::default`]) is the namespace state written
//! before names existed lives in, so it still restores. Names starting
//! with `weir.` are the SDK's own: the runtime keeps timers under
//! `weir.timers`, written and read without the operator's help.
//!
//! **Layout of a key group's bytes** (framed records, see [`frame`]): a
//! record with a key is an entry — key, and the value as JSON — of the
//! namespace opened last; a record without a key opens the namespace its
//! value names. A group starts in the unnamed namespace, so state written
//! before names (entries only) reads as unnamed, and unnamed state is still
//! written byte for byte as before. The name lives inside each group's
//! bytes: it never changes which group an entry belongs to.

use core::cell::RefCell;

use crate::{Error, frame, keygroup};

/// Keyed-state names starting with this belong to the SDK (e.g. its timers,
/// `weir.timers`): an operator's own [`KeyedState`] may not use them.
const RESERVED: &str = "weir.";

/// A map from record key to `V`, partitioned by key group for checkpoints
/// and stored under its name.
///
/// ```
/// let mut counts = weir_sdk::KeyedState::<u64>::named("counts");
/// *counts.get_or_default(b"word") += 1;
/// assert_eq!(counts.get(b"word"), Some(&1));
/// assert_eq!(counts.name(), "counts");
/// ```
///
/// An operator with one keyed state may leave it unnamed
/// ([`Default`]); one with several must name each, or its first snapshot
/// fails (their entries would overwrite each other on restore).
#[derive(Debug, Clone)]
pub struct KeyedState<V> {
    /// hashbrown with foldhash: one hash per lookup, fast on short keys
    /// (the record path's hottest map). Short keys live in the table itself.
    map: hashbrown::HashMap<StoredKey, V>,
    /// The namespace of its entries in a snapshot (`""`: unnamed).
    name: String,
    /// Earlier names whose entries a restore reads too.
    aliases: Vec<String>,
}

impl<V> Default for KeyedState<V> {
    /// The unnamed keyed state: what every `KeyedState` was before names.
    fn default() -> Self {
        Self::named("")
    }
}

impl<V> KeyedState<V> {
    /// An empty keyed state whose entries are stored under `name`. Names
    /// are the operator's own: they only have to differ between the
    /// operator's keyed states and stay the same across its versions, and
    /// not start with `weir.` (the SDK's; a snapshot refuses them).
    pub fn named(name: impl Into<String>) -> Self {
        Self { map: hashbrown::HashMap::default(), name: name.into(), aliases: Vec::new() }
    }

    /// Also restores the entries stored under `old_name`: for a state that
    /// was renamed, or `""` for one that was unnamed (as every keyed state
    /// was before names), like serde's `#[serde(alias)]`.
    ///
    /// ```
    /// let counts = weir_sdk::KeyedState::<u64>::named("counts").alias("");
    /// # let _ = counts;
    /// ```
    #[must_use]
    pub fn alias(mut self, old_name: impl Into<String>) -> Self {
        self.aliases.push(old_name.into());
        self
    }

    /// The name its entries are stored under (`""` when unnamed).
    pub fn name(&self) -> &str {
        &self.name
    }

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

    /// Removes every key, keeping the table's memory for new ones.
    pub fn clear(&mut self) {
        self.map.clear();
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

    /// Its name and aliases: the namespaces a restore reads.
    fn names(&self) -> Vec<String> {
        core::iter::once(&self.name).chain(&self.aliases).cloned().collect()
    }

    /// `keyed state "name"` (or `unnamed keyed state`), for messages.
    fn label(&self) -> String {
        describe(&self.name)
    }
}

impl<V: serde::Serialize + serde::de::DeserializeOwned> KeyedState<V> {
    /// Writes every entry into `state`, under its key's group and this
    /// state's name.
    ///
    /// # Errors
    /// When a value fails to serialize, or another keyed state of the same
    /// name was written into this snapshot already.
    pub fn snapshot_into(&self, state: &mut StateWriter) -> Result<(), Error> {
        let namespace = state.claim(&self.name)?;
        let mut json = Vec::new();
        for (key, value) in &self.map {
            json.clear();
            serde_json::to_writer(&mut json, value).map_err(|e| Error::msg(format!("{}: {e}", self.label())))?;
            state.put(namespace, key.as_bytes(), &json);
        }
        Ok(())
    }

    /// Replaces the contents with the entries of `state` stored under this
    /// state's name (or one of its aliases).
    ///
    /// # Errors
    /// When an entry is not a valid `V`.
    pub fn restore_from(&mut self, state: &StateReader) -> Result<(), Error> {
        self.map.clear();
        for entry in state.entries_named(self.names()) {
            let (key, bytes) = entry?;
            let value = serde_json::from_slice(bytes).map_err(|e| Error::msg(format!("{}: {e}", self.label())))?;
            self.map.insert(key.into(), value);
        }
        Ok(())
    }

    /// Replaces the contents with the entries of `state` stored under this
    /// state's name (or one of its aliases), written as `Old` by an earlier
    /// version of the operator and converted by `migrate`.
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
        for entry in state.entries_named(self.names()) {
            let (key, bytes) = entry?;
            let old: Old = serde_json::from_slice(bytes)
                .map_err(|e| Error::msg(format!("{} of version {}: {e}", self.label(), state.version())))?;
            self.map.insert(key.into(), migrate(old));
        }
        Ok(())
    }
}

/// `keyed state "name"`, or `unnamed keyed state` for `""`.
fn describe(name: &str) -> String {
    if name.is_empty() { "unnamed keyed state".to_owned() } else { format!("keyed state {name:?}") }
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
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.as_bytes(), state);
    }
}

/// A borrowed key for lookups that compares 8 bytes at a time: on wasm32
/// `[u8] == [u8]` is a byte-by-byte `memcmp`, the hottest loop of a keyed
/// operator. Hashes exactly as [`StoredKey`] does.
#[derive(Debug, Clone, Copy)]
struct KeyRef<'a>(&'a [u8]);

impl core::hash::Hash for KeyRef<'_> {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        hash_key(self.0, state);
    }
}

/// Hashes a key as [`StoredKey`] and [`KeyRef`] both do: a key of up to 16
/// bytes (most keys) is read as two words, by loads of fixed size that may
/// overlap (as wyhash reads short input), and handed to the hasher with its
/// length as one 128-bit write; a longer one is written whole. No byte
/// loop and no out-of-line slice hashing on the record path.
#[inline]
fn hash_key<H: core::hash::Hasher>(key: &[u8], state: &mut H) {
    let n = key.len();
    let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u64::from(u32::from_le_bytes(key[at..at + 4].try_into().expect("4 bytes")));
    let (a, b) = match n {
        0 => (0, 0),
        1..=3 => (u64::from(key[0]) | u64::from(key[n / 2]) << 8 | u64::from(key[n - 1]) << 16, 0),
        4..=7 => (half(0), half(n - 4)),
        8..=16 => (word(0), word(n - 8)),
        _ => {
            state.write(key);
            return;
        }
    };
    // The length goes into the top byte: keys of different lengths whose
    // overlapping words agree still differ.
    state.write_u128(u128::from(a) | u128::from(b) << 64 ^ (n as u128) << 120);
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
#[derive(Debug)]
pub struct StateWriter {
    pub(crate) max_parallelism: u32,
    pub(crate) operator: Vec<u8>,
    /// Entries by key group (indexed by group: one slot per key group).
    pub(crate) keyed: Vec<Vec<u8>>,
    /// Namespace names by index; index 0 is the unnamed one.
    names: Vec<String>,
    /// Whether a [`KeyedState`] wrote namespace `i` into this snapshot.
    claimed: Vec<bool>,
    /// The namespace each group's bytes have open (index into `names`).
    open: Vec<usize>,
}

impl Default for StateWriter {
    fn default() -> Self {
        Self::new(0)
    }
}

impl StateWriter {
    /// An empty snapshot for an operator with `max_parallelism` key groups.
    pub(crate) fn new(max_parallelism: u32) -> Self {
        Self {
            max_parallelism,
            operator: Vec::new(),
            keyed: Vec::new(),
            names: vec![String::new()],
            claimed: vec![false],
            open: Vec::new(),
        }
    }

    /// Stores `value` under `key` in the key's group, in the unnamed
    /// namespace (read back by [`StateReader::keyed`]).
    pub fn put_keyed(&mut self, key: &[u8], value: &[u8]) {
        self.put(0, key, value);
    }

    /// The operator's non-keyed state bytes, to fill in.
    pub fn operator_state(&mut self) -> &mut Vec<u8> {
        &mut self.operator
    }

    /// The index of namespace `name`, which an operator's keyed state is
    /// about to write. Names starting with `weir.` are the SDK's own.
    fn claim(&mut self, name: &str) -> Result<usize, Error> {
        if name.starts_with(RESERVED) {
            return Err(Error::msg(format!(
                "{} has a reserved name: names starting with {RESERVED:?} are weir-sdk's own (its timers); \
                 rename it and keep the old name as an `alias`",
                describe(name)
            )));
        }
        self.claim_reserved(name)
    }

    /// [`claim`](Self::claim) for the SDK's own state, which may use
    /// reserved names.
    pub(crate) fn claim_reserved(&mut self, name: &str) -> Result<usize, Error> {
        let index = self.names.iter().position(|n| n == name).unwrap_or_else(|| {
            self.names.push(name.to_owned());
            self.claimed.push(false);
            self.names.len() - 1
        });
        if core::mem::replace(&mut self.claimed[index], true) {
            return Err(Error::msg(format!(
                "two keyed states share one name ({}): their entries would overwrite each other on restore; \
                 give each its own with KeyedState::named",
                describe(name)
            )));
        }
        Ok(index)
    }

    /// Stores an entry of namespace `namespace` in `key`'s group, opening
    /// the namespace there first if another one is open.
    pub(crate) fn put(&mut self, namespace: usize, key: &[u8], value: &[u8]) {
        let group = keygroup::key_group(key, self.max_parallelism) as usize;
        if self.keyed.len() <= group {
            let groups = (self.max_parallelism.max(1) as usize).max(group + 1);
            self.keyed.resize_with(groups, Vec::new);
            self.open.resize(groups, 0);
        }
        let bytes = &mut self.keyed[group];
        if self.open[group] != namespace {
            frame::write(bytes, None, None, self.names[namespace].as_bytes());
            self.open[group] = namespace;
        }
        frame::write(bytes, Some(key), None, value);
    }
}

/// State handed to [`Operator::restore`](crate::Operator::restore).
#[derive(Debug, Default)]
pub struct StateReader {
    pub(crate) version: u32,
    pub(crate) operator: Vec<Vec<u8>>,
    pub(crate) keyed: Vec<Vec<u8>>,
    /// Namespaces that `restore` read or discarded (it takes `&self`, hence
    /// the cell); the runtime checks afterwards that nothing was left unread.
    read: RefCell<Vec<String>>,
}

/// One keyed entry: namespace, key, value.
type Entry<'a> = (&'a [u8], &'a [u8], &'a [u8]);

impl StateReader {
    /// State of `version`: operator blobs, and keyed bytes by key group.
    pub(crate) fn new(version: u32, operator: Vec<Vec<u8>>, keyed: Vec<Vec<u8>>) -> Self {
        Self { version, operator, keyed, read: RefCell::default() }
    }

    /// The `STATE_VERSION` of the operator that wrote this state.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Non-keyed state, one blob per subtask that wrote it.
    pub fn operator_states(&self) -> &[Vec<u8>] {
        &self.operator
    }

    /// Every `(key, value)` entry of the unnamed namespace (what
    /// [`StateWriter::put_keyed`] and an unnamed [`KeyedState`] write) in the
    /// key groups this instance owns.
    pub fn keyed(&self) -> impl Iterator<Item = Result<(&[u8], &[u8]), Error>> {
        self.entries_named(vec![String::new()])
    }

    /// Drops the keyed state stored under `name` (`""`: unnamed): for an
    /// operator version that no longer keeps it. Without this, a restore
    /// that leaves a name's entries unread fails, so that state is never
    /// lost by mistake.
    pub fn discard_keyed(&self, name: &str) {
        self.read.borrow_mut().push(name.to_owned());
    }

    /// The entries stored under any of `names`; marks them read.
    pub(crate) fn entries_named(&self, names: Vec<String>) -> impl Iterator<Item = Result<(&[u8], &[u8]), Error>> {
        self.read.borrow_mut().extend(names.iter().cloned());
        self.entries().filter_map(move |entry| match entry {
            Ok((namespace, key, value)) => names.iter().any(|n| n.as_bytes() == namespace).then_some(Ok((key, value))),
            Err(e) => Some(Err(e)),
        })
    }

    /// Every keyed entry with its namespace, group by group.
    fn entries(&self) -> impl Iterator<Item = Result<Entry<'_>, Error>> {
        self.keyed.iter().flat_map(|group| {
            let mut namespace: &[u8] = b"";
            frame::read(group).filter_map(move |rec| match rec {
                Err(e) => Some(Err(Error::msg(format!("keyed state: {e}")))),
                Ok(frame::RecordRef { key: None, value, .. }) => {
                    namespace = value;
                    None
                }
                Ok(frame::RecordRef { key: Some(key), value, .. }) => Some(Ok((namespace, key, value))),
            })
        })
    }

    /// Names of the namespaces that have entries but that `restore`
    /// neither read nor discarded (`""`: unnamed), in order of appearance.
    pub(crate) fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        let mut unread: Vec<String> = Vec::new();
        for (namespace, _, _) in self.entries().filter_map(Result::ok) {
            let name = String::from_utf8_lossy(namespace);
            if !read.iter().any(|r| *r == name) && !unread.iter().any(|u| *u == name) {
                unread.push(name.into_owned());
            }
        }
        unread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over what `writer` collected, as the host hands it back.
    fn reader_of(writer: StateWriter, version: u32) -> StateReader {
        StateReader::new(version, vec![writer.operator], writer.keyed)
    }

    fn keys(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("key-{i}").into_bytes()).collect()
    }

    /// The issue's case: two keyed states in one operator, with the same
    /// keys, survive a snapshot and restore each with its own entries.
    #[test]
    fn two_keyed_states_round_trip_without_overwriting_each_other() {
        let (mut counts, mut labels) = (KeyedState::<u64>::named("counts"), KeyedState::<String>::named("labels"));
        for (i, key) in keys(300).iter().enumerate() {
            counts.insert(key, i as u64);
            if i % 3 == 0 {
                labels.insert(key, format!("label {i}"));
            }
        }
        let mut writer = StateWriter::new(128);
        counts.snapshot_into(&mut writer).unwrap();
        labels.snapshot_into(&mut writer).unwrap();
        let reader = reader_of(writer, 1);
        let (mut counts2, mut labels2) = (KeyedState::<u64>::named("counts"), KeyedState::<String>::named("labels"));
        counts2.restore_from(&reader).unwrap();
        labels2.restore_from(&reader).unwrap();
        assert_eq!((counts2.len(), labels2.len()), (300, 100));
        for (i, key) in keys(300).iter().enumerate() {
            assert_eq!(counts2.get(key), Some(&(i as u64)));
            assert_eq!(labels2.get(key), labels.get(key));
        }
        assert!(reader.unread().is_empty(), "{:?}", reader.unread());
    }

    /// Each key group's bytes stand alone (they open their own namespaces),
    /// so the groups a rescaled subtask gets restore exactly its keys.
    #[test]
    fn each_key_group_restores_on_its_own() {
        let (mut a, mut b) = (KeyedState::<u64>::named("a"), KeyedState::<u64>::default());
        for (i, key) in keys(200).iter().enumerate() {
            a.insert(key, i as u64);
            b.insert(key, 1000 + i as u64);
        }
        let mut writer = StateWriter::new(8);
        a.snapshot_into(&mut writer).unwrap();
        b.snapshot_into(&mut writer).unwrap();
        let mine = 2..5;
        let groups = writer
            .keyed
            .iter()
            .enumerate()
            .map(|(g, bytes)| if mine.contains(&g) { bytes.clone() } else { Vec::new() });
        let reader = StateReader::new(1, Vec::new(), groups.collect());
        let (mut a2, mut b2) = (KeyedState::<u64>::named("a"), KeyedState::<u64>::default());
        a2.restore_from(&reader).unwrap();
        b2.restore_from(&reader).unwrap();
        let owned: Vec<Vec<u8>> =
            keys(200).into_iter().filter(|k| mine.contains(&(keygroup::key_group(k, 8) as usize))).collect();
        assert!(!owned.is_empty());
        assert_eq!((a2.len(), b2.len()), (owned.len(), owned.len()));
        for key in &owned {
            assert_eq!((a2.get(key), b2.get(key)), (a.get(key), b.get(key)));
        }
    }

    /// State written before names (entries only, no namespace records) is
    /// the unnamed namespace: an unnamed state reads it, and so does a named
    /// one with the alias `""`; unnamed state is still written the same way.
    #[test]
    fn state_written_before_names_restores_as_unnamed() {
        let mut old = StateWriter::new(4);
        for key in keys(20) {
            let group = keygroup::key_group(&key, 4) as usize;
            old.keyed.resize_with(4, Vec::new);
            frame::write(&mut old.keyed[group], Some(&key), None, b"7");
        }
        let mut unnamed = KeyedState::<u64>::default();
        for key in keys(20) {
            unnamed.insert(&key, 7);
        }
        let mut now = StateWriter::new(4);
        unnamed.snapshot_into(&mut now).unwrap();
        let sorted = |groups: &[Vec<u8>]| {
            groups
                .iter()
                .map(|g| {
                    let mut entries: Vec<_> = frame::read(g).map(Result::unwrap).collect();
                    entries.sort_by_key(|r| r.key);
                    entries.iter().map(|r| (r.key.map(<[u8]>::to_vec), r.value.to_vec())).collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sorted(&now.keyed), sorted(&old.keyed), "unnamed state changed its layout");
        let reader = reader_of(old, 1);
        let mut renamed = KeyedState::<u64>::named("counts").alias("");
        renamed.restore_from(&reader).unwrap();
        assert_eq!(renamed.len(), 20);
        assert!(reader.unread().is_empty());
        let mut plain = KeyedState::<u64>::default();
        plain.restore_from(&reader).unwrap();
        assert_eq!(plain.get(b"key-3"), Some(&7));
    }

    /// Two states of one name fail the snapshot, saying why: that is how
    /// two unnamed fields used to lose each other's entries.
    #[test]
    fn two_states_of_one_name_fail_the_snapshot() {
        let (mut x, mut y) = (KeyedState::<u64>::default(), KeyedState::<u64>::default());
        x.insert(b"k", 1);
        y.insert(b"k", 2);
        let mut writer = StateWriter::new(128);
        x.snapshot_into(&mut writer).unwrap();
        let err = y.snapshot_into(&mut writer).unwrap_err().to_string();
        assert!(err.contains("unnamed keyed state") && err.contains("KeyedState::named"), "{err}");
        let mut writer = StateWriter::new(128);
        KeyedState::<u64>::named("n").snapshot_into(&mut writer).unwrap();
        let err = KeyedState::<u64>::named("n").snapshot_into(&mut writer).unwrap_err().to_string();
        assert!(err.contains("keyed state \"n\""), "{err}");
    }

    /// Entries of a name no state restored are reported (so a restore
    /// cannot drop state silently) unless discarded on purpose.
    #[test]
    fn entries_of_a_name_nobody_restored_are_reported() {
        let mut totals = KeyedState::<u64>::named("totals");
        totals.insert(b"k", 1);
        let mut writer = StateWriter::new(128);
        totals.snapshot_into(&mut writer).unwrap();
        KeyedState::<u64>::default().snapshot_into(&mut writer).unwrap();
        let reader = reader_of(writer, 1);
        let mut other = KeyedState::<u64>::named("counts");
        other.restore_from(&reader).unwrap();
        assert!(other.is_empty());
        assert_eq!(reader.unread(), ["totals"]);
        reader.discard_keyed("totals");
        assert!(reader.unread().is_empty());
    }

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
