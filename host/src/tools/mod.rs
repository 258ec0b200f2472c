//! Developer tooling behind `weir new operator` and `weir build`: scaffolding
//! an operator crate and compiling it to a component with cargo. The only
//! place that runs external programs.

mod build;
mod new_operator;

pub use build::build_operator;
pub use new_operator::{default_sdk_path, new_operator};
