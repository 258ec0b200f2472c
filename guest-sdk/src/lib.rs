#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod frame;
pub mod keygroup;

#[cfg(feature = "guest")]
mod combine;
#[cfg(feature = "guest")]
mod operator;
#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod runtime;
#[cfg(feature = "guest")]
mod state;
#[cfg(feature = "guest")]
mod timer;
#[cfg(feature = "guest")]
mod value;
#[cfg(feature = "guest")]
pub mod window;

#[cfg(feature = "guest")]
pub use combine::Combine;
#[cfg(feature = "guest")]
pub use operator::{Context, Emitter, InstanceInfo, Operator, Record};
#[cfg(feature = "guest")]
pub use state::{KeyedState, StateReader, StateWriter};
#[cfg(feature = "guest")]
pub use timer::{TimeDomain, Timer, Timers};
#[cfg(feature = "guest")]
pub use value::{Decode, Encode, Json};

/// Generated bindings of the WIT world (`wit/operator.wit`). Not a stable API.
#[cfg(feature = "guest")]
#[doc(hidden)]
#[allow(clippy::too_many_arguments, reason = "generated code")]
pub mod bindings {
    wit_bindgen::generate!({
        world: "operator",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_operator_world",
        default_bindings_module: "weir_sdk::bindings",
    });
}

/// An operator error: fails the job with this message, naming the operator.
#[cfg(feature = "guest")]
#[derive(Debug)]
pub struct Error {
    message: String,
}

#[cfg(feature = "guest")]
impl Error {
    /// An error with the given message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    fn into_message(self) -> String {
        self.message
    }
}

#[cfg(feature = "guest")]
impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(feature = "guest")]
impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Self::msg(e.to_string())
    }
}

/// `Result` with the SDK's [`Error`].
#[cfg(feature = "guest")]
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Turns a missing value or a failed result into an [`Error`] with a
/// message: `rec.key.or_fail("the record has no key")?`. (A plain `&str`
/// cannot convert with `?`: any `std::error::Error` already does.)
#[cfg(feature = "guest")]
pub trait OrFail<T> {
    /// The value, or an error saying `message` (and, for a `Result`, its error).
    ///
    /// # Errors
    /// When the value is missing or the result failed.
    fn or_fail(self, message: impl core::fmt::Display) -> Result<T>;
}

#[cfg(feature = "guest")]
impl<T> OrFail<T> for Option<T> {
    fn or_fail(self, message: impl core::fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error::msg(message.to_string()))
    }
}

#[cfg(feature = "guest")]
impl<T, E: core::fmt::Display> OrFail<T> for core::result::Result<T, E> {
    fn or_fail(self, message: impl core::fmt::Display) -> Result<T> {
        self.map_err(|e| Error::msg(format!("{message}: {e}")))
    }
}

/// Returns an [`Error`] with a formatted message: `bail!("bad record {}", n)`.
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! bail {
    ($($message:tt)+) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($message)+)))
    };
}

/// Returns an [`Error`] unless `condition` holds: `ensure!(n > 0, "n is {}", n)`.
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            $crate::bail!($($message)+);
        }
    };
}

/// Writes to the host's log, tagged with the operator id.
#[cfg(feature = "guest")]
pub mod log {
    use crate::bindings::weir::operator::{host, types::Level};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}

/// Exports `$op` (a type implementing [`Operator`]) as this component's operator.
/// `export!(Op, combine)` also lets the job pre-aggregate it
/// (`pre_aggregate = true`); `Op` must implement [`Combine`].
///
/// Use it once per crate, at the crate root.
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! export {
    ($op:ty) => {
        $crate::export!(@with $op, ::core::default::Default::default());
    };
    ($op:ty, combine) => {
        $crate::export!(@with $op, $crate::runtime::Runtime::<$op>::combining());
    };
    (@with $op:ty, $runtime:expr) => {
        #[doc(hidden)]
        struct __WeirExport;

        ::std::thread_local! {
            static __WEIR_RUNTIME: ::core::cell::RefCell<$crate::runtime::Runtime<$op>> =
                ::core::cell::RefCell::new($runtime);
        }

        impl $crate::bindings::Guest for __WeirExport {
            fn describe() -> $crate::bindings::weir::operator::types::Descriptor {
                $crate::runtime::Runtime::<$op>::describe(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            }
            fn init(
                info: $crate::bindings::weir::operator::types::InstanceInfo,
                config: ::std::string::String,
                restored: ::core::option::Option<$crate::bindings::weir::operator::types::State>,
            ) -> ::core::result::Result<(), ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.init(info, config, restored))
            }
            fn process(batch: ::std::vec::Vec<u8>) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.process(&batch))
            }
            fn on_watermark(watermark: i64) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.on_watermark(watermark))
            }
            fn on_processing_time(now: i64) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.on_processing_time(now))
            }
            fn snapshot(
                checkpoint_id: u64,
            ) -> ::core::result::Result<$crate::bindings::weir::operator::types::State, ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.snapshot(checkpoint_id))
            }
            fn checkpoint_complete(checkpoint_id: u64) -> ::core::result::Result<(), ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.checkpoint_complete(checkpoint_id))
            }
            fn finish() -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                __WEIR_RUNTIME.with_borrow_mut(|rt| rt.finish())
            }
        }

        $crate::bindings::__export_operator_world!(__WeirExport with_types_in $crate::bindings);
    };
}
