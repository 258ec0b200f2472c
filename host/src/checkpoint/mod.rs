//! Checkpoints: asynchronous barrier snapshots of every subtask's state into
//! object storage, and finding the newest usable one on restore.
//!
//! - [`coordinator`] triggers checkpoints, collects acks, uploads state and
//!   writes manifests (one thread per job attempt).
//! - [`storage`] is the only code doing object-store I/O; [`paths`] the only
//!   code naming objects.
//! - [`state`] and [`manifest`] are the persisted formats (both versioned,
//!   both described in the README).
//! - [`listing`] describes a store for `weir checkpoints list`.
//! - [`restore`] picks what to resume from; [`restart`] decides whether and
//!   when a failed job restarts. Both are pure decisions over facts read.

pub mod coordinator;
pub mod listing;
pub mod manifest;
pub mod paths;
pub mod restart;
pub mod restore;
pub mod state;
pub mod storage;
