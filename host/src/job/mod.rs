//! Jobs: the job file's schema ([`spec`]), reading it with `--set` overrides
//! ([`load`]), the range of every value ([`ranges`]), and validating it into
//! a runnable [`plan::JobPlan`] ([`plan`]).
//! No Wasm and no threads here; loading modules is [`crate::wasm`]'s job.

pub mod load;
pub mod plan;
pub mod ranges;
pub mod spec;

pub use load::{Override, load};
pub use plan::{BuiltinDirs, JobPlan, Node, NodeKind, plan};
