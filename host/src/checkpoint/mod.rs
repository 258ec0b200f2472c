//! Checkpoints: asynchronous barrier snapshots of every subtask's state into
//! object storage, and finding the newest usable one on restore.
//!
//! - [`protocol`] decides: a pure state machine (facts in, actions out) for
//!   triggers, completion, abandonment, retention and savepoints;
//!   [`coordinator`] is its driver, doing the I/O (one thread per attempt).
//! - [`lease`] makes one run at a time the owner of a job's store (fencing).
//! - [`storage`] is the only code doing object-store I/O; [`paths`] the only
//!   code naming objects; [`faulty`] injects storage faults for tests.
//! - [`state`] and [`manifest`] are the persisted formats (both versioned,
//!   both described in the README).
//! - [`listing`] describes a store for `weir checkpoints list`.
//! - [`restore`] picks what to resume from; [`restart`] decides whether and
//!   when a failed job restarts. Both are pure decisions over facts read.

pub mod coordinator;
pub mod faulty;
pub mod lease;
pub mod listing;
pub mod manifest;
pub mod paths;
pub mod protocol;
pub mod restart;
pub mod restore;
pub mod state;
pub mod storage;
