//! What a window computes: the [`Aggregate`] trait, the ready-made
//! [`Count`], and what a fired window hands its output function
//! ([`Fired`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Window;

/// An incremental aggregate: what a window keeps of its records
/// (`Acc`), and what it reports when it fires (`Output`).
///
/// ```
/// /// The largest value per window.
/// struct Max;
///
/// impl weir_sdk::window::Aggregate for Max {
///     type Input = f64;
///     type Acc = Option<f64>;
///     type Output = Option<f64>;
///
///     fn add(&self, acc: &mut Option<f64>, input: &f64) {
///         *acc = Some(acc.map_or(*input, |m| m.max(*input)));
///     }
///     fn merge(&self, acc: &mut Option<f64>, other: Option<f64>) {
///         if let Some(other) = other {
///             self.add(acc, &other);
///         }
///     }
///     fn result(&self, acc: &Option<f64>) -> Option<f64> {
///         *acc
///     }
/// }
/// ```
pub trait Aggregate {
    /// What each record contributes (e.g. a number; `()` to count).
    type Input: ?Sized;
    /// A window's running state: starts as `Default`, checkpointed as JSON.
    type Acc: Default + Serialize + DeserializeOwned;
    /// What a fired window reports.
    type Output: Serialize;

    /// Folds one record's `input` into `acc`.
    fn add(&self, acc: &mut Self::Acc, input: &Self::Input);

    /// Folds `other` into `acc`: two session windows became one.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);

    /// The window's result so far.
    fn result(&self, acc: &Self::Acc) -> Self::Output;
}

/// Counts a window's records (input `()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl Aggregate for Count {
    type Input = ();
    type Acc = u64;
    type Output = u64;

    fn add(&self, acc: &mut u64, (): &()) {
        *acc += 1;
    }

    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }

    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// A fired window, handed to the function set with [`Windows::emit_with`](super::Windows::emit_with).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fired<'a, T> {
    /// The key whose window it is.
    pub key: &'a [u8],
    /// The window.
    pub window: Window,
    /// The aggregate's result.
    pub result: T,
}
