//! The numeric aggregates of the `window` operator (count, sum, min, max,
//! avg), and reading the aggregated number out of a record's JSON.

use serde::{Deserialize, Serialize};
use weir_sdk::window::Aggregate;

/// Which aggregate the config asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl Function {
    /// Its name in the config.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Avg => "avg",
        }
    }
}

/// One record's number, and whether JSON wrote it as an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number {
    pub(crate) value: f64,
    pub(crate) integer: bool,
}

impl Number {
    /// What a record contributes to `count`, which reads no field.
    pub(crate) const RECORD: Self = Self { value: 0.0, integer: true };
}

/// A window's running state; the same for every function, so a window
/// never needs to know which one it is. Checkpointed as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Acc {
    /// Records added.
    n: u64,
    /// Their sum, kept finite (it saturates) so that JSON can hold it.
    #[serde(default, skip_serializing_if = "is_zero")]
    sum: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    /// Some input was not an integer: results print as floats.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    fractional: bool,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// A result: counts and integer-valued results of integer inputs print
/// without a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Value {
    Integer(i64),
    Float(f64),
    /// Min or max of no record (cannot fire, but has a JSON form).
    Null,
}

/// The configured aggregate over [`Number`]s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Numeric(pub(crate) Function);

impl Aggregate for Numeric {
    type Input = Number;
    type Acc = Acc;
    type Output = Value;

    fn add(&self, acc: &mut Acc, input: &Number) {
        acc.n += 1;
        if self.0 == Function::Count {
            return;
        }
        let x = input.value;
        acc.sum = (acc.sum + x).clamp(f64::MIN, f64::MAX);
        acc.min = Some(acc.min.map_or(x, |m| m.min(x)));
        acc.max = Some(acc.max.map_or(x, |m| m.max(x)));
        acc.fractional |= !input.integer;
    }

    fn merge(&self, acc: &mut Acc, other: Acc) {
        acc.n += other.n;
        acc.sum = (acc.sum + other.sum).clamp(f64::MIN, f64::MAX);
        acc.min = [acc.min, other.min].into_iter().flatten().reduce(f64::min);
        acc.max = [acc.max, other.max].into_iter().flatten().reduce(f64::max);
        acc.fractional |= other.fractional;
    }

    fn result(&self, acc: &Acc) -> Value {
        let number = |x: Option<f64>| match x {
            None => Value::Null,
            Some(x) if !acc.fractional => as_integer(x).map_or(Value::Float(x), Value::Integer),
            Some(x) => Value::Float(x),
        };
        match self.0 {
            Function::Count => Value::Integer(i64::try_from(acc.n).unwrap_or(i64::MAX)),
            Function::Sum => number(Some(acc.sum)),
            Function::Min => number(acc.min),
            Function::Max => number(acc.max),
            Function::Avg => Value::Float(acc.sum / acc.n.max(1) as f64),
        }
    }
}

/// `x` as an integer, if it is one that an f64 holds exactly.
fn as_integer(x: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (x.fract() == 0.0 && x.abs() <= EXACT).then_some(x as i64)
}

/// The number at `path` (a JSON field, split at dots) of a record's value,
/// or why there is none.
pub(crate) fn number_at(value: &[u8], path: &[String]) -> Result<Number, String> {
    let json: serde_json::Value = serde_json::from_slice(value).map_err(|e| format!("the value is not JSON ({e})"))?;
    let dotted = path.join(".");
    let mut at = &json;
    for part in path {
        at = at.get(part).ok_or_else(|| format!("the field {dotted:?} is missing"))?;
    }
    match at {
        serde_json::Value::Number(n) => {
            let value = n.as_f64().ok_or_else(|| format!("the field {dotted:?} is not a finite number ({n})"))?;
            Ok(Number { value, integer: n.is_i64() || n.is_u64() })
        }
        other => Err(format!("the field {dotted:?} is not a number: it is {}", shorten(&other.to_string()))),
    }
}

/// At most 60 characters of `text`, with an ellipsis if cut.
pub(crate) fn shorten(text: &str) -> String {
    const SHOWN: usize = 60;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(function: Function, inputs: &[Number]) -> Value {
        let agg = Numeric(function);
        let mut acc = Acc::default();
        inputs.iter().for_each(|x| agg.add(&mut acc, x));
        agg.result(&acc)
    }

    fn int(value: f64) -> Number {
        Number { value, integer: true }
    }

    /// Each function's result, integers printed as integers when every
    /// input was one; merging two accumulators is adding both.
    #[test]
    fn functions_aggregate_and_merge() {
        let xs = [int(3.0), int(-1.0), int(10.0)];
        assert_eq!(fold(Function::Count, &xs), Value::Integer(3));
        assert_eq!(fold(Function::Sum, &xs), Value::Integer(12));
        assert_eq!(fold(Function::Min, &xs), Value::Integer(-1));
        assert_eq!(fold(Function::Max, &xs), Value::Integer(10));
        assert_eq!(fold(Function::Avg, &xs), Value::Float(4.0));
        let mixed = [int(1.0), Number { value: 1.5, integer: false }];
        assert_eq!(fold(Function::Sum, &mixed), Value::Float(2.5));
        assert_eq!(fold(Function::Min, &mixed), Value::Float(1.0));
        let agg = Numeric(Function::Sum);
        let (mut a, mut b) = (Acc::default(), Acc::default());
        agg.add(&mut a, &int(2.0));
        agg.add(&mut b, &Number { value: 0.5, integer: false });
        agg.merge(&mut a, b);
        assert_eq!((agg.result(&a), a.n, a.min, a.max), (Value::Float(2.5), 2, Some(0.5), Some(2.0)));
        assert_eq!(serde_json::to_string(&Acc { n: 4, ..Acc::default() }).unwrap(), r#"{"n":4}"#);
    }

    /// A sum that would overflow saturates, so its state stays valid JSON.
    #[test]
    fn sums_stay_finite() {
        let huge = [int(f64::MAX), int(f64::MAX)];
        assert_eq!(fold(Function::Sum, &huge), Value::Float(f64::MAX));
    }

    /// Numbers are read at dotted paths; what is not a number says why.
    #[test]
    fn numbers_are_read_at_dotted_paths() {
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(number_at(br#"{"a":{"b":2}}"#, &path("a.b")), Ok(int(2.0)));
        assert_eq!(number_at(br#"{"a":2.5}"#, &path("a")), Ok(Number { value: 2.5, integer: false }));
        assert_eq!(number_at(br#"{"a":{}}"#, &path("a.b")).unwrap_err(), r#"the field "a.b" is missing"#);
        assert_eq!(number_at(br#"{"a":"7"}"#, &path("a")).unwrap_err(), r#"the field "a" is not a number: it is "7""#);
        assert!(number_at(b"plain text", &path("a")).unwrap_err().starts_with("the value is not JSON"));
    }
}
