//! Typed views over record values: how an operator's `In` is read from bytes
//! and its `Out` written to bytes.
//!
//! Text and bytes are zero-copy (`&str`, `&[u8]`); anything serde can handle
//! travels as JSON through [`Json`], which is also what sinks write, so output
//! stays readable.

use crate::Error;

/// A type an operator can read its input records as.
pub trait Decode<'a>: Sized {
    /// Reads a value from a record's bytes.
    ///
    /// # Errors
    /// When the bytes are not a valid encoding of `Self`.
    fn decode(bytes: &'a [u8]) -> Result<Self, Error>;
}

/// A type an operator can emit as a record value.
pub trait Encode {
    /// Appends the encoded value to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The encoding itself, when the value is its own bytes (text, bytes):
    /// then a record is framed in one go, its length known up front.
    fn as_raw(&self) -> Option<&[u8]> {
        None
    }
}

/// A value carried as JSON, for any serde type: `type Out = Json<Count>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<'a> Decode<'a> for &'a [u8] {
    fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        Ok(bytes)
    }
}

impl<'a> Decode<'a> for &'a str {
    fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        core::str::from_utf8(bytes).map_err(|e| Error::msg(format!("record value is not UTF-8 text: {e}")))
    }
}

impl Decode<'_> for String {
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        <&str>::decode(bytes).map(str::to_owned)
    }
}

impl Decode<'_> for Vec<u8> {
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        Ok(bytes.to_vec())
    }
}

impl<T: serde::de::DeserializeOwned> Decode<'_> for Json<T> {
    fn decode(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| Error::msg(format!("record value is not the expected JSON: {e}")))
    }
}

impl Encode for str {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn as_raw(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl Encode for String {
    fn encode(&self, out: &mut Vec<u8>) {
        self.as_str().encode(out);
    }

    fn as_raw(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl Encode for [u8] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn as_raw(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl Encode for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn as_raw(&self) -> Option<&[u8]> {
        Some(self)
    }
}

/// A reference encodes as what it points to: a `Record<'_, &str>`'s value
/// is an `Encode` too.
impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }

    fn as_raw(&self) -> Option<&[u8]> {
        (**self).as_raw()
    }
}

impl<T: serde::Serialize> Encode for Json<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        // Serializing plain data into a Vec cannot fail; a Serialize impl
        // that errors on purpose is a bug in the operator.
        serde_json::to_writer(out, &self.0).expect("value failed to serialize as JSON");
    }
}
