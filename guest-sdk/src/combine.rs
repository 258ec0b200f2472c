//! Local pre-aggregation (Flink's local–global aggregation): the
//! [`Combine`] trait an associative aggregate implements, and the two
//! phases the runtime runs for it.
//!
//! With `pre_aggregate = true` on a keyed operator in the job file, the host
//! runs a second, *local* instance of the same component upstream of the
//! keyed exchange, in each upstream subtask. It folds records into one
//! partial per key ([`Combine::combine`]) and sends the partials on (Flink's
//! mini-batch): at every processing-time tick (100 ms), before every
//! watermark, checkpoint barrier and idle marker, at the end of input, and
//! after a batch that leaves it holding [`MAX_PARTIALS`] keys or more. The keyed, *global* instance merges them
//! ([`Combine::merge`]). A hot key then crosses the exchange about once per
//! tick and upstream subtask instead of once per record.
//!
//! The local phase is empty whenever a barrier passes it (the host asks it
//! to send what it holds first, with an empty batch), so it has no state to
//! checkpoint, and exactly-once is the global instance's, as without it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::operator::Services;
use crate::runtime::preview;
use crate::state::KeyedState;
use crate::value::Decode;
use crate::{Emitter, Error, Operator, Record, frame};

/// The most keys the local phase holds before it sends their partials.
pub const MAX_PARTIALS: usize = 1 << 16;

/// The config key the host sets on both instances of a pre-aggregated
/// operator: `"local"` or `"global"`. The runtime removes it before the
/// operator reads its config.
pub(crate) const ROLE: &str = "weir.pre_aggregate";

/// An aggregate that can be pre-aggregated: its partial results can be
/// merged in any grouping, as a sum, a count, a min or a max can.
/// Export the operator with `weir_sdk::export!(Op, combine)`.
///
/// ```
/// use weir_sdk::{Combine, Emitter, KeyedState, Operator, Record, Result};
///
/// #[derive(Default)]
/// struct Sum { totals: KeyedState<i64> }
///
/// impl Operator for Sum {
///     type In<'a> = &'a str;
///     fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<()> {
///         let n: i64 = rec.value.trim().parse().map_err(|_| weir_sdk::Error::msg("not a number"))?;
///         self.merge(rec.key.unwrap_or_default(), n, out)
///     }
/// }
///
/// impl Combine for Sum {
///     type Partial = i64;
///     fn combine(&self, partial: &mut i64, rec: Record<'_, &str>) -> Result<()> {
///         *partial += rec.value.trim().parse::<i64>().map_err(|_| weir_sdk::Error::msg("not a number"))?;
///         Ok(())
///     }
///     fn merge(&mut self, key: &[u8], partial: i64, out: &mut Emitter<'_>) -> Result<()> {
///         let total = self.totals.get_or_default(key);
///         *total += partial;
///         out.emit(total.to_string().as_str());
///         Ok(())
///     }
/// }
/// # fn main() {}
/// ```
pub trait Combine: Operator {
    /// A key's partial aggregate: what crosses the exchange, as JSON.
    /// `Default` is the aggregate of no records.
    type Partial: Default + Serialize + DeserializeOwned;

    /// Local phase: folds one record into its key's partial. `self` is
    /// the local instance's operator, started with the same config (so a
    /// partial may depend on it) but never handed state, and never called
    /// but here. The record's key is
    /// the one it is grouped and routed by (its value, if it had none), as
    /// `process` would see it behind the keyed edge.
    ///
    /// # Errors
    /// A record it cannot aggregate; fails the job as `process` would.
    fn combine(&self, partial: &mut Self::Partial, record: Record<'_, Self::In<'_>>) -> Result<(), Error>;

    /// Global phase: applies one upstream partial for `key` (in place of
    /// `process` for each of the records it stands for) and emits what
    /// `process` would emit for an update. The partial's timestamp (the
    /// emitter's) is the latest of its records': a record that was late
    /// inside an on-time partial is no longer told apart, so keep
    /// pre-aggregation for aggregates that do not look at lateness.
    ///
    /// # Errors
    /// As `process`.
    fn merge(&mut self, key: &[u8], partial: Self::Partial, out: &mut Emitter<'_>) -> Result<(), Error>;
}

/// Which instance of a pre-aggregated operator this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Upstream of the exchange: folds each batch into partials.
    Local,
    /// The keyed operator: merges partials.
    Global,
}

impl Role {
    /// Takes the role out of a config's JSON, if the host set one; returns
    /// the config the operator sees.
    pub(crate) fn take(config: String) -> Result<(Option<Self>, String), Error> {
        if !config.contains(ROLE) {
            return Ok((None, config));
        }
        let invalid = |e: &dyn core::fmt::Display| Error::msg(format!("invalid operator config: {e}"));
        let mut table: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&config).map_err(|e| invalid(&e))?;
        let role = match table.remove(ROLE) {
            None => None,
            Some(v) if v == "local" => Some(Self::Local),
            Some(v) if v == "global" => Some(Self::Global),
            Some(v) => return Err(invalid(&format!("{ROLE} = {v} is neither \"local\" nor \"global\""))),
        };
        Ok((role, serde_json::Value::Object(table).to_string()))
    }
}

/// The two phases of a [`Combine`] operator, behind a trait object so the
/// runtime of an operator without one needs no `Combine` bound.
pub(crate) trait Phases<O> {
    /// Local phase: every record of `batch` folded into its key's partial;
    /// appends the partials to `out` when there are [`MAX_PARTIALS`] of
    /// them, or when `batch` is empty (the host's request to send them).
    fn local(&mut self, op: &O, batch: &[u8], out: &mut Vec<u8>) -> Result<(), String>;

    /// Appends one record per key held to `out` (its latest timestamp, the
    /// partial as JSON) and forgets them.
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), String>;

    /// How many keys' partials it holds.
    fn held(&self) -> usize;

    /// Global phase: every partial of `batch` merged into `op`.
    fn global(&self, op: &mut O, batch: &[u8], out: &mut Vec<u8>, services: &mut Services) -> Result<(), String>;
}

/// [`Phases`] of a `Combine` operator `O`.
pub(crate) struct Combiner<O: Combine> {
    /// The partials and latest timestamps held; emptied by each flush
    /// (keeping its table, so a steady stream allocates nothing).
    partials: KeyedState<(O::Partial, Option<i64>)>,
    json: Vec<u8>,
}

impl<O: Combine> Default for Combiner<O> {
    fn default() -> Self {
        Self { partials: KeyedState::default(), json: Vec::new() }
    }
}

impl<O: Combine> Phases<O> for Combiner<O> {
    fn local(&mut self, op: &O, batch: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if batch.is_empty() {
            return self.flush(out);
        }
        for rec in frame::read(batch) {
            let rec = rec.map_err(|e| e.to_string())?;
            let value = O::In::decode(rec.value)
                .map_err(|e| format!("{} (in the record {})", e.into_message(), preview(rec.key, rec.value)))?;
            // A keyless record is routed (and keyed) by its value: group it so.
            let key = rec.key.unwrap_or(rec.value);
            let (partial, latest) = self.partials.get_or_default(key);
            op.combine(partial, Record { key: Some(key), timestamp: rec.timestamp, value })
                .map_err(Error::into_message)?;
            *latest = (*latest).max(rec.timestamp);
        }
        if self.partials.len() >= MAX_PARTIALS {
            self.flush(out)?;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        for (key, (partial, latest)) in self.partials.iter() {
            self.json.clear();
            serde_json::to_writer(&mut self.json, partial).map_err(|e| format!("a partial aggregate: {e}"))?;
            frame::write(out, Some(key), *latest, &self.json);
        }
        self.partials.clear();
        Ok(())
    }

    fn held(&self) -> usize {
        self.partials.len()
    }

    fn global(&self, op: &mut O, batch: &[u8], out: &mut Vec<u8>, services: &mut Services) -> Result<(), String> {
        for rec in frame::read(batch) {
            let rec = rec.map_err(|e| e.to_string())?;
            let partial: O::Partial = serde_json::from_slice(rec.value).map_err(|e| {
                format!(
                    "a pre-aggregated record is not this operator's partial ({e}); was the upstream instance \
                     built from the same .wasm?"
                )
            })?;
            let key = rec.key.unwrap_or_default();
            let mut emitter = Emitter::new(out, rec.key, rec.timestamp, services);
            op.merge(key, partial, &mut emitter).map_err(Error::into_message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;
    use crate::runtime::testing::{batch, shown, subtask};

    /// A keyed sum of the values; emits each key's new total.
    #[derive(Default)]
    struct Sum {
        totals: KeyedState<i64>,
    }

    impl Operator for Sum {
        type In<'a> = &'a str;
        fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let n = rec.value.parse().map_err(|_| Error::msg("not a number"))?;
            self.merge(rec.key.unwrap_or_default(), n, out)
        }
    }

    impl Combine for Sum {
        type Partial = i64;
        fn combine(&self, partial: &mut i64, rec: Record<'_, &str>) -> Result<(), Error> {
            *partial += rec.value.parse::<i64>().map_err(|_| Error::msg("not a number"))?;
            Ok(())
        }
        fn merge(&mut self, key: &[u8], partial: i64, out: &mut Emitter<'_>) -> Result<(), Error> {
            let total = self.totals.get_or_default(key);
            *total += partial;
            out.emit(format!("{}={total}", String::from_utf8_lossy(key)).as_str());
            Ok(())
        }
    }

    fn runtime(role: &str) -> Runtime<Sum> {
        let mut rt = Runtime::<Sum>::combining();
        let config = if role.is_empty() { "{}".to_owned() } else { format!("{{\"{ROLE}\":\"{role}\"}}") };
        rt.init(subtask(0, 1), config, None).unwrap();
        rt
    }

    /// The local phase holds partials across batches and sends one per key
    /// (with its latest timestamp) when asked, on a watermark, a tick or at
    /// the end; the global phase merges them into the totals the plain
    /// operator reaches record by record.
    #[test]
    fn partials_merged_downstream_reach_the_plain_totals() {
        let input = [("a", 5, "1"), ("b", 3, "10"), ("a", 9, "2"), ("a", 7, "4")];
        let mut plain = runtime("");
        let plain_out = shown(&plain.process(&batch(&input)).unwrap());
        assert_eq!(plain_out.last().unwrap(), "a=7@7");

        let mut local = runtime("local");
        assert!(local.process(&batch(&input[..2])).unwrap().is_empty(), "partials wait for a flush");
        assert!(local.process(&batch(&input[2..])).unwrap().is_empty());
        let err = local.snapshot(1).unwrap_err();
        assert!(err.contains("still holds the partials of 2 keys"), "a barrier must find it empty: {err}");
        let partials = local.process(&[]).unwrap();
        let mut sent = shown(&partials);
        sent.sort();
        assert_eq!(sent, ["10@3", "7@9"]);
        assert!(local.process(&[]).unwrap().is_empty(), "a flush forgets what it sent");
        assert!(local.snapshot(1).unwrap().keyed.is_empty(), "the local phase saves no state");

        let mut global = runtime("global");
        let mut merged = shown(&global.process(&partials).unwrap());
        merged.sort();
        assert_eq!(merged, ["a=7@9", "b=10@3"]);

        for flush in [
            |rt: &mut Runtime<Sum>| rt.on_watermark(100).unwrap(),
            |rt: &mut Runtime<Sum>| rt.on_processing_time(100).unwrap(),
            |rt: &mut Runtime<Sum>| rt.finish().unwrap(),
        ] {
            let mut local = runtime("local");
            local.process(&batch(&input)).unwrap();
            assert_eq!(shown(&flush(&mut local)).len(), 2, "watermarks, ticks and the end send the partials");
        }
    }

    /// The local phase saves nothing, so a restore hands it nothing, not
    /// even state its operator would refuse (as `Sum` refuses any).
    #[test]
    fn the_local_phase_restores_nothing() {
        use crate::bindings::weir::operator::types::{KeyGroupState, State};
        let state = || State {
            version: 0,
            operator_state: vec![b"not this operator's".to_vec()],
            keyed: vec![KeyGroupState { key_group: 0, bytes: b"\x09junk".to_vec() }],
        };
        let local = format!("{{\"{ROLE}\":\"local\"}}");
        Runtime::<Sum>::combining().init(subtask(0, 1), local, Some(state())).unwrap();
        let global = format!("{{\"{ROLE}\":\"global\"}}");
        assert!(Runtime::<Sum>::combining().init(subtask(0, 1), global, Some(state())).is_err());
    }

    /// An operator exported without `combine` refuses a role instead of
    /// running every record through `process` on both sides of the exchange.
    #[test]
    fn an_operator_without_combine_refuses_a_role() {
        let mut rt = Runtime::<Sum>::default();
        let err = rt.init(subtask(0, 1), format!("{{\"{ROLE}\":\"local\"}}"), None).unwrap_err();
        assert!(err.contains("cannot be pre-aggregated") && err.contains("remove `pre_aggregate`"), "{err}");
        let mut rt = Runtime::<Sum>::combining();
        let err = rt.init(subtask(0, 1), format!("{{\"{ROLE}\":\"both\"}}"), None).unwrap_err();
        assert!(err.contains("neither"), "{err}");
    }
}
