//! Per-key timers, as Flink's `TimerService`: what [`Operator::on_timer`]
//! is handed ([`Timer`]), the handle that registers and deletes timers
//! ([`Timers`], from [`Emitter::timers`]), and the runtime's queue of them.
//!
//! A timer is `(key, time, domain)`; registering one twice keeps one. An
//! event-time timer fires once the watermark reaches its time (`time <=
//! watermark`), a processing-time one once the host's clock does (`time <=
//! now`), in order of time, then key bytes. Firing happens in the runtime,
//! before the operator's own [`on_watermark`](Operator::on_watermark) — a
//! timer registered for a time already passed fires at the next watermark
//! (or processing-time tick), not at once.
//!
//! **Checkpoints.** Timers are keyed state the runtime writes itself, after
//! the operator's own, under the reserved name `weir.timers` (no entry at
//! all when there are no timers, so an operator without timers writes what
//! it always did), and reads back before [`Operator::restore`]. Each is
//! stored in its key's group, so a rescale moves it with its key; one that
//! fired before a checkpoint is not in it, so it fires once. The layout of
//! an entry: key = the timer's key; value = 9 bytes, the domain (`0` event
//! time, `1` processing time) then the time as i64 little-endian. Another
//! layout would take another name.
//!
//! No I/O: processing time reaches this module as a number.
//!
//! [`Operator::on_timer`]: crate::Operator::on_timer
//! [`Operator::restore`]: crate::Operator::restore
//! [`Emitter::timers`]: crate::Emitter::timers
//! [`on_watermark`]: crate::Operator::on_watermark

use std::collections::{BTreeMap, BTreeSet, btree_map};

use crate::Error;
use crate::state::{StateReader, StateWriter};

/// The keyed-state name timers are checkpointed under.
pub(crate) const TIMERS: &str = "weir.timers";

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Event time: fires once the watermark reaches the timer's time.
    EventTime,
    /// Processing time: fires once the host's clock reaches the timer's time.
    ProcessingTime,
}

/// A timer that fired, handed to [`Operator::on_timer`](crate::Operator::on_timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer<'a> {
    /// The key it was registered for: read and write that key's
    /// [`KeyedState`](crate::KeyedState) with it.
    pub key: &'a [u8],
    /// The time it was registered for, in ms.
    pub time: i64,
    /// Which clock it followed.
    pub domain: TimeDomain,
}

/// The timers of one key: registers and deletes them. Get it from
/// [`Emitter::timers`](crate::Emitter::timers).
///
/// ```
/// # use weir_sdk::{Emitter, Record};
/// # fn f(rec: Record<'_, &str>, out: &mut Emitter<'_>) {
/// // Fire 10 minutes of event time after this record, for its key.
/// if let Some(ts) = rec.timestamp {
///     out.timers().register_event_time(ts + 600_000);
/// }
/// // And 10 minutes of processing time from now.
/// let now = out.processing_time();
/// out.timers().register_processing_time(now + 600_000);
/// # }
/// ```
#[derive(Debug)]
pub struct Timers<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) service: &'a mut TimerService,
}

impl Timers<'_> {
    /// The key these timers belong to.
    pub fn key(&self) -> &[u8] {
        self.key
    }

    /// Fires [`on_timer`](crate::Operator::on_timer) once the watermark
    /// reaches `time` (ms). Registering it again changes nothing.
    pub fn register_event_time(&mut self, time: i64) {
        self.service.register(TimeDomain::EventTime, self.key, time);
    }

    /// Cancels the event-time timer at `time`, if there is one.
    pub fn delete_event_time(&mut self, time: i64) {
        self.service.delete(TimeDomain::EventTime, self.key, time);
    }

    /// Fires [`on_timer`](crate::Operator::on_timer) once processing time
    /// (the host's clock, ms since the Unix epoch) reaches `time`.
    /// Registering it again changes nothing.
    pub fn register_processing_time(&mut self, time: i64) {
        self.service.register(TimeDomain::ProcessingTime, self.key, time);
    }

    /// Cancels the processing-time timer at `time`, if there is one.
    pub fn delete_processing_time(&mut self, time: i64) {
        self.service.delete(TimeDomain::ProcessingTime, self.key, time);
    }
}

/// One domain's timers: time → keys, so the next due is the first entry
/// and ties go by key bytes. Keys are looked up borrowed: registering a
/// timer that exists allocates nothing.
#[derive(Debug, Default)]
struct Queue(BTreeMap<i64, BTreeSet<Box<[u8]>>>);

impl Queue {
    fn register(&mut self, key: &[u8], time: i64) {
        let keys = self.0.entry(time).or_default();
        if !keys.contains(key) {
            keys.insert(key.into());
        }
    }

    fn delete(&mut self, key: &[u8], time: i64) {
        if let btree_map::Entry::Occupied(mut at) = self.0.entry(time) {
            at.get_mut().remove(key);
            if at.get().is_empty() {
                at.remove();
            }
        }
    }

    /// Removes and returns the earliest timer at or before `until`.
    fn pop_due(&mut self, until: i64) -> Option<(i64, Box<[u8]>)> {
        let mut first = self.0.first_entry()?;
        let time = *first.key();
        if time > until {
            return None;
        }
        let key = first.get_mut().pop_first();
        if first.get().is_empty() {
            first.remove();
        }
        key.map(|key| (time, key))
    }

    fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.0.iter().flat_map(|(time, keys)| keys.iter().map(move |key| (*time, &**key)))
    }
}

/// Every timer of an instance. Owned by the runtime.
#[derive(Debug, Default)]
pub(crate) struct TimerService {
    event: Queue,
    processing: Queue,
}

impl TimerService {
    fn queue(&mut self, domain: TimeDomain) -> &mut Queue {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    pub(crate) fn register(&mut self, domain: TimeDomain, key: &[u8], time: i64) {
        self.queue(domain).register(key, time);
    }

    pub(crate) fn delete(&mut self, domain: TimeDomain, key: &[u8], time: i64) {
        self.queue(domain).delete(key, time);
    }

    /// Removes and returns the next timer of `domain` due at `until`.
    pub(crate) fn pop_due(&mut self, domain: TimeDomain, until: i64) -> Option<(i64, Box<[u8]>)> {
        self.queue(domain).pop_due(until)
    }

    /// Every timer, as `(domain, time, key)`, each domain in firing order.
    fn iter(&self) -> impl Iterator<Item = (TimeDomain, i64, &[u8])> {
        let event = self.event.iter().map(|(time, key)| (TimeDomain::EventTime, time, key));
        event.chain(self.processing.iter().map(|(time, key)| (TimeDomain::ProcessingTime, time, key)))
    }

    /// Writes every timer into `state` under [`TIMERS`]; nothing at all
    /// when there are none.
    pub(crate) fn snapshot_into(&self, state: &mut StateWriter) -> Result<(), Error> {
        if self.event.0.is_empty() && self.processing.0.is_empty() {
            return Ok(());
        }
        let namespace = state.claim_reserved(TIMERS)?;
        for (domain, time, key) in self.iter() {
            state.put(namespace, key, &encode(domain, time));
        }
        Ok(())
    }

    /// Replaces every timer with those stored in `state`.
    pub(crate) fn restore_from(&mut self, state: &StateReader) -> Result<(), Error> {
        *self = Self::default();
        for entry in state.entries_named(vec![TIMERS.to_owned()]) {
            let (key, value) = entry?;
            let (domain, time) = decode(value).ok_or_else(|| {
                Error::msg(format!(
                    "keyed state {TIMERS:?}: a timer of key \"{}\" is not 9 bytes of domain and time ({} bytes)",
                    String::from_utf8_lossy(key).escape_debug(),
                    value.len()
                ))
            })?;
            self.register(domain, key, time);
        }
        Ok(())
    }
}

/// A timer's checkpointed value: domain byte, then the time (i64 LE).
fn encode(domain: TimeDomain, time: i64) -> [u8; 9] {
    let mut value = [0; 9];
    value[0] = match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    };
    value[1..].copy_from_slice(&time.to_le_bytes());
    value
}

fn decode(value: &[u8]) -> Option<(TimeDomain, i64)> {
    let (&tag, time) = value.split_first()?;
    let domain = match tag {
        0 => TimeDomain::EventTime,
        1 => TimeDomain::ProcessingTime,
        _ => return None,
    };
    Some((domain, i64::from_le_bytes(time.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygroup;

    fn drain(service: &mut TimerService, domain: TimeDomain, until: i64) -> Vec<(i64, String)> {
        core::iter::from_fn(|| service.pop_due(domain, until))
            .map(|(time, key)| (time, String::from_utf8(key.into()).unwrap()))
            .collect()
    }

    /// Timers come out by time, then key bytes; a duplicate is one timer;
    /// a deleted one never comes; the domains do not mix.
    #[test]
    fn timers_fire_in_order_once_and_by_domain() {
        let mut service = TimerService::default();
        for (key, time) in [("b", 20), ("a", 20), ("c", 10), ("a", 20), ("z", 5), ("d", 30), ("e", 15)] {
            service.register(TimeDomain::EventTime, key.as_bytes(), time);
        }
        service.register(TimeDomain::ProcessingTime, b"p", 1);
        service.delete(TimeDomain::EventTime, b"e", 15);
        service.delete(TimeDomain::EventTime, b"nobody", 15);
        let due = drain(&mut service, TimeDomain::EventTime, 20);
        assert_eq!(due, [(5, "z".into()), (10, "c".into()), (20, "a".into()), (20, "b".into())]);
        assert_eq!(drain(&mut service, TimeDomain::EventTime, 29), []);
        assert_eq!(drain(&mut service, TimeDomain::ProcessingTime, 0), []);
        assert_eq!(drain(&mut service, TimeDomain::ProcessingTime, i64::MAX), [(1, "p".into())]);
        assert_eq!(drain(&mut service, TimeDomain::EventTime, i64::MAX), [(30, "d".into())]);
    }

    /// Timers round-trip through keyed state in their key's group, so the
    /// groups a rescaled subtask gets bring exactly their keys' timers.
    #[test]
    fn timers_restore_by_key_group() {
        let mut service = TimerService::default();
        let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            service.register(TimeDomain::EventTime, key.as_bytes(), i as i64);
            service.register(TimeDomain::ProcessingTime, key.as_bytes(), -(i as i64));
        }
        let mut writer = StateWriter::new(8);
        service.snapshot_into(&mut writer).unwrap();
        let mine = 0..3;
        let groups = writer.keyed.iter().enumerate().map(|(g, b)| if mine.contains(&g) { b.clone() } else { vec![] });
        let reader = StateReader::new(1, Vec::new(), groups.collect());
        let mut restored = TimerService::default();
        restored.restore_from(&reader).unwrap();
        assert!(reader.unread().is_empty());
        let owned: Vec<(i64, String)> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| mine.contains(&(keygroup::key_group(k.as_bytes(), 8) as usize)))
            .map(|(i, k)| (i as i64, k.clone()))
            .collect();
        assert!(!owned.is_empty() && owned.len() < keys.len());
        assert_eq!(drain(&mut restored, TimeDomain::EventTime, i64::MAX), owned);
        assert_eq!(drain(&mut restored, TimeDomain::ProcessingTime, i64::MAX).len(), owned.len());
    }

    /// No timers, no reserved entry: the snapshot is what it was before timers.
    #[test]
    fn no_timers_write_nothing() {
        let mut writer = StateWriter::new(8);
        TimerService::default().snapshot_into(&mut writer).unwrap();
        assert!(writer.keyed.iter().all(Vec::is_empty));
    }

    #[test]
    fn a_corrupt_timer_fails_the_restore() {
        let mut writer = StateWriter::new(1);
        let namespace = writer.claim_reserved(TIMERS).unwrap();
        writer.put(namespace, b"k", &[7; 9]);
        let reader = StateReader::new(1, Vec::new(), writer.keyed);
        let err = TimerService::default().restore_from(&reader).unwrap_err().to_string();
        assert!(err.contains("weir.timers") && err.contains("\"k\""), "{err}");
    }
}
