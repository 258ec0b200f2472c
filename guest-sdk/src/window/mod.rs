//! Event-time windows on a keyed stream: tumbling, sliding and session
//! windows, each folding its records into an [`Aggregate`]'s accumulator,
//! fired as the watermark passes them.
//!
//! [`Windows`] is a field of an operator. The operator hands it every
//! record ([`Windows::add`]) and every timer ([`Windows::on_timer`]), and
//! checkpoints it like a [`KeyedState`] ([`Windows::snapshot_into`],
//! [`Windows::restore_from`]): a restore that forgets it fails, naming its
//! state. Windows are `[start, end)` in ms, per record key.
//!
//! **Firing.** A window fires — emits its result, keyed by its key, at
//! timestamp `end - 1` — once the watermark reaches `end - 1`, through an
//! event-time timer (see [`Timers`](crate::Timers)); its state is dropped at
//! `end - 1 + allowed lateness`. A record that arrives after its window fired
//! but before that is added, and the window fires again with the updated
//! result at once. A record every window of which is past that point is
//! *late*: it goes unchanged (key, timestamp, value) to the side output
//! [`LATE`]. Windows never delete timers (a timer may be the operator's own
//! too); one left behind by a merged session fires and does nothing.
//!
//! **State.** Per key, its open windows and their accumulators, as JSON, in
//! a keyed state named `windows` unless [`named`](Windows::named)
//! otherwise; the timers are the runtime's and checkpoint themselves.
//!
//! ```
//! use weir_sdk::window::{Count, Windows};
//! use weir_sdk::{Emitter, Operator, Record, Result, StateReader, StateWriter, Timer};
//!
//! /// Clicks per user per minute: `{"key":"ada","start":0,"end":60000,"value":3}`.
//! struct ClicksPerMinute {
//!     windows: Windows<Count>,
//! }
//!
//! impl Default for ClicksPerMinute {
//!     fn default() -> Self {
//!         Self { windows: Windows::tumbling(60_000, Count).allowed_lateness(5_000) }
//!     }
//! }
//!
//! impl Operator for ClicksPerMinute {
//!     type In<'a> = &'a [u8];
//!
//!     fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<()> {
//!         self.windows.add(&rec, &(), out)
//!     }
//!
//!     fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<()> {
//!         self.windows.on_timer(&timer, out)
//!     }
//!
//!     fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
//!         self.windows.snapshot_into(state)
//!     }
//!
//!     fn restore(&mut self, state: &StateReader) -> Result<()> {
//!         self.windows.restore_from(state)
//!     }
//! }
//!
//! weir_sdk::export!(ClicksPerMinute);
//! # fn main() {}
//! ```

mod aggregate;
mod assign;

use std::borrow::Cow;

use serde::Serialize;

pub use self::aggregate::{Aggregate, Count, Fired};
use self::assign::Assigner;
pub use self::assign::Window;
use crate::timer::{TimeDomain, Timer};
use crate::value::Encode;
use crate::{Emitter, Error, Json, KeyedState, OrFail, Record, StateReader, StateWriter};

/// The side output late records go to.
pub const LATE: &str = "late";

/// Per key, its open windows sorted by start: `[start, end, acc]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Slot<Acc>(i64, i64, Acc);

impl<Acc> Slot<Acc> {
    fn window(&self) -> Window {
        Window { start: self.0, end: self.1 }
    }
}

/// Event-time windows of one kind, per key, aggregated by `A`. See the
/// [module](self) for how they fire, and an operator using them.
pub struct Windows<A: Aggregate> {
    assigner: Assigner,
    /// How long after a window fires it still takes records (ms).
    lateness: i64,
    aggregate: A,
    state: KeyedState<Vec<Slot<A::Acc>>>,
    emit: fn(Fired<'_, A::Output>, &mut Emitter<'_>),
}

impl<A: Aggregate> Windows<A> {
    fn new(assigner: Assigner, aggregate: A) -> Self {
        Self { assigner, lateness: 0, aggregate, state: KeyedState::named("windows"), emit: emit_json::<A::Output> }
    }

    /// Back-to-back windows of `size` ms: `[0, size)`, `[size, 2 size)`, …
    /// A size that is not positive fails [`add`](Self::add).
    pub fn tumbling(size: i64, aggregate: A) -> Self {
        Self::new(Assigner::Fixed { size, slide: size, offset: 0 }, aggregate)
    }

    /// Windows of `size` ms starting every `slide` ms: a record is in each
    /// one that contains its time. Sizes that are not positive fail
    /// [`add`](Self::add).
    pub fn sliding(size: i64, slide: i64, aggregate: A) -> Self {
        Self::new(Assigner::Fixed { size, slide, offset: 0 }, aggregate)
    }

    /// Session windows: each record opens `[ts, ts + gap)`, and a key's
    /// windows that overlap merge (their accumulators with
    /// [`Aggregate::merge`]); a session ends after `gap` ms without a
    /// record. Records exactly `gap` apart are two sessions. A gap that is
    /// not positive fails [`add`](Self::add).
    pub fn session(gap: i64, aggregate: A) -> Self {
        Self::new(Assigner::Session { gap }, aggregate)
    }

    /// Shifts tumbling and sliding windows by `offset` ms (e.g. hours
    /// starting at :30); sessions ignore it.
    #[must_use]
    pub fn offset(mut self, offset: i64) -> Self {
        if let Assigner::Fixed { offset: o, .. } = &mut self.assigner {
            *o = offset;
        }
        self
    }

    /// Keeps a window `lateness` ms of event time after it fires (0 by
    /// default): a record for it that comes in that time updates it, and it
    /// fires again. A negative lateness counts as 0.
    #[must_use]
    pub fn allowed_lateness(mut self, lateness: i64) -> Self {
        self.lateness = lateness.max(0);
        self
    }

    /// Stores the windows under keyed-state name `name` instead of
    /// `windows` (as [`KeyedState::named`]): for an operator with two
    /// `Windows`, or another state named `windows`.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.state = KeyedState::named(name);
        self
    }

    /// Emits fired windows with `emit` instead of the default JSON line
    /// `{"key":"<key>","start":<ms>,"end":<ms>,"value":<result>}` (the key
    /// as UTF-8, invalid bytes replaced). The emitter's key and timestamp
    /// are the window's key and `end - 1`.
    #[must_use]
    pub fn emit_with(mut self, emit: fn(Fired<'_, A::Output>, &mut Emitter<'_>)) -> Self {
        self.emit = emit;
        self
    }

    /// The aggregate.
    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    /// Adds `input` (what `record` contributes) to every window of the
    /// record's key that contains its timestamp; a record without a key is
    /// the empty key's. Fires a window at once if the watermark has passed
    /// its end (within the allowed lateness); sends the record to [`LATE`]
    /// if every window is past that — as the operator read it: byte for
    /// byte from `&[u8]` or `&str`, re-encoded from a `Json<T>` (which then
    /// needs `T: Serialize`).
    ///
    /// # Errors
    /// When the record has no timestamp, or the windows' sizes are not
    /// positive.
    pub fn add<V: Encode>(
        &mut self,
        record: &Record<'_, V>,
        input: &A::Input,
        out: &mut Emitter<'_>,
    ) -> Result<(), Error> {
        self.assigner.check()?;
        let ts = record.timestamp.or_fail(
            "windows need event time, and a record has no timestamp: have the source read one \
             (its `timestamp` setting)",
        )?;
        let key = record.key.unwrap_or_default();
        let added = match self.assigner {
            Assigner::Session { gap } => self.add_to_session(key, ts, gap, input, out),
            Assigner::Fixed { .. } => self.add_to_fixed(key, ts, input, out),
        };
        if !added {
            out.emit_record_to(LATE, record.key, record.timestamp, &record.value);
        }
        Ok(())
    }

    /// [`add`](Self::add) for tumbling and sliding windows; false if late.
    fn add_to_fixed(&mut self, key: &[u8], ts: i64, input: &A::Input, out: &mut Emitter<'_>) -> bool {
        let watermark = out.watermark();
        let slots = self.state.get_or_default(key);
        let mut added = false;
        for window in self.assigner.fixed(ts) {
            if cleanup_time(window, self.lateness) <= watermark {
                continue;
            }
            added = true;
            let at = match slots.binary_search_by_key(&window, Slot::window) {
                Ok(at) => at,
                Err(at) => {
                    slots.insert(at, Slot(window.start, window.end, A::Acc::default()));
                    schedule(out, key, window, self.lateness);
                    at
                }
            };
            self.aggregate.add(&mut slots[at].2, input);
            if window.max_timestamp() <= watermark {
                fire(&self.aggregate, self.emit, key, &slots[at], out);
            }
        }
        if slots.is_empty() {
            self.state.remove(key);
        }
        added
    }

    /// [`add`](Self::add) for sessions: merges `[ts, ts + gap)` with the
    /// key's windows it overlaps; false if late.
    fn add_to_session(&mut self, key: &[u8], ts: i64, gap: i64, input: &A::Input, out: &mut Emitter<'_>) -> bool {
        let watermark = out.watermark();
        let proto = Window { start: ts, end: ts.saturating_add(gap) };
        let existing = self.state.get(key).map_or(&[][..], Vec::as_slice);
        // Sorted and disjoint, so the windows it overlaps or touches are a
        // run (as in Flink, `[a, a + gap)` and `[a + gap, …)` merge: records
        // at most `gap` apart are one session).
        let first = existing.partition_point(|s| s.1 < proto.start);
        let last = existing.partition_point(|s| s.0 <= proto.end);
        let merged =
            existing[first..last].iter().fold(proto, |m, s| Window { start: m.start.min(s.0), end: m.end.max(s.1) });
        if cleanup_time(merged, self.lateness) <= watermark {
            // Nothing open overlaps it (an open window is not late), so
            // there is nothing to merge.
            return false;
        }
        let unchanged = last - first == 1 && existing[first].window() == merged;
        let slots = self.state.get_or_default(key);
        let mut acc = {
            let mut merging = slots.drain(first..last).map(|s| s.2);
            let mut acc = merging.next().unwrap_or_default();
            merging.for_each(|other| self.aggregate.merge(&mut acc, other));
            acc
        };
        self.aggregate.add(&mut acc, input);
        slots.insert(first, Slot(merged.start, merged.end, acc));
        if !unchanged {
            schedule(out, key, merged, self.lateness);
        }
        if merged.max_timestamp() <= watermark {
            fire(&self.aggregate, self.emit, key, &slots[first], out);
        }
        true
    }

    /// Fires the windows of `timer.key` that end at `timer.time`, and drops
    /// those past their allowed lateness. Call it from
    /// [`Operator::on_timer`](crate::Operator::on_timer) with every timer:
    /// it ignores those that are not its own.
    ///
    /// # Errors
    /// None yet; the `Result` leaves room.
    pub fn on_timer(&mut self, timer: &Timer<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        if timer.domain != TimeDomain::EventTime {
            return Ok(());
        }
        let Some(slots) = self.state.get_mut(timer.key) else { return Ok(()) };
        for slot in slots.iter().filter(|s| s.window().max_timestamp() == timer.time) {
            fire(&self.aggregate, self.emit, timer.key, slot, out);
        }
        slots.retain(|s| cleanup_time(s.window(), self.lateness) > timer.time);
        if slots.is_empty() {
            self.state.remove(timer.key);
        }
        Ok(())
    }

    /// Number of open windows, over all keys.
    pub fn len(&self) -> usize {
        self.state.iter().map(|(_, slots)| slots.len()).sum()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Writes every open window into `state`, as
    /// [`KeyedState::snapshot_into`] does.
    ///
    /// # Errors
    /// As [`KeyedState::snapshot_into`].
    pub fn snapshot_into(&self, state: &mut StateWriter) -> Result<(), Error> {
        self.state.snapshot_into(state)
    }

    /// Replaces the open windows with those in `state`, as
    /// [`KeyedState::restore_from`] does.
    ///
    /// # Errors
    /// As [`KeyedState::restore_from`].
    pub fn restore_from(&mut self, state: &StateReader) -> Result<(), Error> {
        self.state.restore_from(state)
    }
}

/// When a window's state goes: `lateness` after it fires.
fn cleanup_time(window: Window, lateness: i64) -> i64 {
    window.max_timestamp().saturating_add(lateness)
}

/// Sets the timers a new (or grown) window of `key` needs: one to fire it,
/// unless the watermark has passed that, and one to drop it.
fn schedule(out: &mut Emitter<'_>, key: &[u8], window: Window, lateness: i64) {
    let watermark = out.watermark();
    let timers = out.timer_service();
    if window.max_timestamp() > watermark {
        timers.register(TimeDomain::EventTime, key, window.max_timestamp());
    }
    if lateness > 0 {
        timers.register(TimeDomain::EventTime, key, cleanup_time(window, lateness));
    }
}

/// Emits `slot`'s result with `emit`, keyed by `key` at `end - 1`.
fn fire<A: Aggregate>(
    aggregate: &A,
    emit: fn(Fired<'_, A::Output>, &mut Emitter<'_>),
    key: &[u8],
    slot: &Slot<A::Acc>,
    out: &mut Emitter<'_>,
) {
    let window = slot.window();
    let fired = Fired { key, window, result: aggregate.result(&slot.2) };
    emit(fired, &mut out.scoped(Some(key), Some(window.max_timestamp())));
}

/// The default output: `{"key":…,"start":…,"end":…,"value":…}`.
fn emit_json<T: Serialize>(fired: Fired<'_, T>, out: &mut Emitter<'_>) {
    #[derive(Serialize)]
    struct Line<'a, T> {
        key: Cow<'a, str>,
        start: i64,
        end: i64,
        value: &'a T,
    }
    let Fired { key, window, result } = &fired;
    out.emit(&Json(Line { key: String::from_utf8_lossy(key), start: window.start, end: window.end, value: result }));
}

#[cfg(test)]
mod tests {
    use core::marker::PhantomData;

    use super::*;
    use crate::runtime::Runtime;
    use crate::runtime::testing::{batch, shown, split, started, subtask};
    use crate::{Operator, frame};

    /// Lists a window's values, sorted: shows exactly what is in it.
    struct Collect;

    impl Aggregate for Collect {
        type Input = str;
        type Acc = Vec<String>;
        type Output = String;

        fn add(&self, acc: &mut Vec<String>, input: &str) {
            acc.push(input.to_owned());
        }

        fn merge(&self, acc: &mut Vec<String>, other: Vec<String>) {
            acc.extend(other);
        }

        fn result(&self, acc: &Vec<String>) -> String {
            let mut values = acc.clone();
            values.sort();
            values.join(",")
        }
    }

    /// Which windows a test operator keeps.
    trait Spec: 'static {
        fn windows() -> Windows<Collect>;
    }

    /// Windows of `S` over each record's value, emitted as `key[start,end):values`.
    struct Win<S>(Windows<Collect>, PhantomData<S>);

    impl<S: Spec> Default for Win<S> {
        fn default() -> Self {
            Self(S::windows().emit_with(compact), PhantomData)
        }
    }

    fn compact(fired: Fired<'_, String>, out: &mut Emitter<'_>) {
        let Fired { key, window: Window { start, end }, result } = fired;
        out.emit(&format!("{}[{start},{end}):{result}", String::from_utf8_lossy(key)));
    }

    impl<S: Spec> Operator for Win<S> {
        type In<'a> = &'a str;

        fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<(), Error> {
            self.0.add(&rec, rec.value, out)
        }

        fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
            self.0.on_timer(&timer, out)
        }

        fn snapshot(&mut self, state: &mut StateWriter) -> Result<(), Error> {
            self.0.snapshot_into(state)
        }

        fn restore(&mut self, state: &StateReader) -> Result<(), Error> {
            self.0.restore_from(state)
        }
    }

    struct Tumbling10;
    impl Spec for Tumbling10 {
        fn windows() -> Windows<Collect> {
            Windows::tumbling(10, Collect)
        }
    }

    struct Sliding10By5;
    impl Spec for Sliding10By5 {
        fn windows() -> Windows<Collect> {
            Windows::sliding(10, 5, Collect)
        }
    }

    struct Session10;
    impl Spec for Session10 {
        fn windows() -> Windows<Collect> {
            Windows::session(10, Collect)
        }
    }

    struct Tumbling10Late5;
    impl Spec for Tumbling10Late5 {
        fn windows() -> Windows<Collect> {
            Windows::tumbling(10, Collect).allowed_lateness(5)
        }
    }

    /// A watermark fires each window it passes (at `end - 1`, keyed by the
    /// window's key), in order of time then key; its state goes with it.
    #[test]
    fn tumbling_windows_fire_as_the_watermark_passes_them() {
        let mut rt = started::<Win<Tumbling10>>(None);
        let input = [("k", -15, "a"), ("k", -5, "b"), ("k", 3, "c"), ("j", 9, "d"), ("k", 9, "e"), ("k", 10, "f")];
        assert!(rt.process(&batch(&input)).unwrap().is_empty());
        assert_eq!(shown(&rt.on_watermark(-2).unwrap()), ["k[-20,-10):a@-11"]);
        assert_eq!(shown(&rt.on_watermark(9).unwrap()), ["k[-10,0):b@-1", "j[0,10):d@9", "k[0,10):c,e@9"]);
        let out = rt.on_watermark(100).unwrap();
        assert_eq!(shown(&out), ["k[10,20):f@19"]);
        assert_eq!(frame::read(&out).next().unwrap().unwrap().key, Some(&b"k"[..]));
        assert!(rt.operator().0.is_empty());
    }

    /// A record goes into every sliding window that holds it; only the
    /// windows already past are skipped, and it is late only if all are.
    #[test]
    fn sliding_windows_share_records_and_skip_only_past_windows() {
        let mut rt = started::<Win<Sliding10By5>>(None);
        rt.process(&batch(&[("k", 7, "a"), ("k", 12, "b")])).unwrap();
        assert_eq!(shown(&rt.on_watermark(9).unwrap()), ["k[0,10):a@9"]);
        assert!(rt.process(&batch(&[("k", 8, "c")])).unwrap().is_empty(), "[5,15) is open");
        assert_eq!(shown(&rt.process(&batch(&[("k", 4, "d")])).unwrap()), ["late:d@4"]);
        assert_eq!(shown(&rt.on_watermark(19).unwrap()), ["k[5,15):a,b,c@14", "k[10,20):b@19"]);
    }

    /// Sessions merge while `[ts, ts + gap)` overlap or touch — a record
    /// can join two into one — per key; records exactly `gap` apart are
    /// one session (as in Flink), further apart two.
    #[test]
    fn session_windows_merge_overlapping_records() {
        let mut rt = started::<Win<Session10>>(None);
        let input = [("k", 0, "a"), ("k", 5, "b"), ("k", 30, "c"), ("j", 5, "x"), ("k", 12, "d"), ("k", 25, "e")];
        rt.process(&batch(&input)).unwrap();
        assert_eq!(rt.operator().0.len(), 3, "k: [0,22) and [25,40); j: [5,15)");
        assert_eq!(shown(&rt.on_watermark(20).unwrap()), ["j[5,15):x@14"]);
        rt.process(&batch(&[("k", 21, "f")])).unwrap();
        assert!(rt.on_watermark(38).unwrap().is_empty(), "the merged session ends at 40");
        assert_eq!(shown(&rt.on_watermark(39).unwrap()), ["k[0,40):a,b,c,d,e,f@39"]);
        rt.process(&batch(&[("k", 50, "g"), ("k", 60, "h"), ("k", 71, "i")])).unwrap();
        assert_eq!(shown(&rt.on_watermark(100).unwrap()), ["k[50,70):g,h@69", "k[71,81):i@80"]);
    }

    /// A record whose own session is past still joins an open one it
    /// overlaps; alone, it is late.
    #[test]
    fn a_session_record_is_late_only_if_its_merged_window_is() {
        let mut rt = started::<Win<Session10>>(None);
        rt.process(&batch(&[("k", 0, "a")])).unwrap();
        rt.on_watermark(5).unwrap();
        assert_eq!(shown(&rt.process(&batch(&[("k", -20, "late one")])).unwrap()), ["late:late one@-20"]);
        assert!(rt.process(&batch(&[("k", -5, "b")])).unwrap().is_empty());
        assert_eq!(shown(&rt.on_watermark(9).unwrap()), ["k[-5,10):a,b@9"]);
    }

    /// Without allowed lateness a record for a fired window is late: it
    /// goes to `late` with its key, timestamp and value unchanged.
    #[test]
    fn late_records_go_to_the_late_output_unchanged() {
        let mut rt = started::<Win<Tumbling10>>(None);
        rt.process(&batch(&[("k", 3, "a")])).unwrap();
        rt.on_watermark(9).unwrap();
        let out = rt.process(&batch(&[("k", 9, "{\"v\":1}"), ("k", 10, "b")])).unwrap();
        assert_eq!(shown(&out), ["late:{\"v\":1}@9"]);
        let late = frame::read(&out).next().unwrap().unwrap();
        assert_eq!((late.key, late.output), (Some(&b"k"[..]), Some(&b"late"[..])));
        assert_eq!(shown(&rt.on_watermark(19).unwrap()), ["k[10,20):b@19"]);
    }

    /// With allowed lateness a fired window stays open that long: a record
    /// for it fires it again at once with the updated result (and not again
    /// at the next watermark); after that, records for it are late.
    #[test]
    fn allowed_lateness_refires_updated_windows() {
        let mut rt = started::<Win<Tumbling10Late5>>(None);
        rt.process(&batch(&[("k", 3, "a")])).unwrap();
        assert_eq!(shown(&rt.on_watermark(9).unwrap()), ["k[0,10):a@9"]);
        assert_eq!(shown(&rt.process(&batch(&[("k", 4, "b")])).unwrap()), ["k[0,10):a,b@9"]);
        assert_eq!(shown(&rt.process(&batch(&[("j", 1, "c")])).unwrap()), ["j[0,10):c@9"], "new, already due");
        assert!(rt.on_watermark(13).unwrap().is_empty());
        assert_eq!(shown(&rt.process(&batch(&[("k", 5, "d")])).unwrap()), ["k[0,10):a,b,d@9"]);
        rt.on_watermark(14).unwrap();
        assert!(rt.operator().0.is_empty(), "dropped at end - 1 + lateness");
        assert_eq!(shown(&rt.process(&batch(&[("k", 6, "e")])).unwrap()), ["late:e@6"]);
    }

    /// Open windows and their timers come back from a checkpoint, split by
    /// key group over a rescaled job, and fire there.
    #[test]
    fn windows_survive_a_restore_across_a_rescale() {
        let mut first = started::<Win<Session10>>(None);
        let keys: Vec<String> = (0..30).map(|i| format!("key{i}")).collect();
        let input: Vec<(&str, i64, &str)> = keys.iter().map(|k| (k.as_str(), 0, "v")).collect();
        first.process(&batch(&input)).unwrap();
        let state = first.snapshot(1).unwrap();
        let mut fired = Vec::new();
        for s in 0..2 {
            let mut rt = Runtime::<Win<Session10>>::default();
            rt.init(subtask(s, 2), "{}".into(), Some(split(&state, s, 2))).unwrap();
            rt.process(&batch(&[])).unwrap();
            let out = shown(&rt.on_watermark(9).unwrap());
            assert!(!out.is_empty() && out.len() < keys.len(), "subtask {s}: {out:?}");
            fired.extend(out);
        }
        fired.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| format!("{k}[0,10):v@9")).collect();
        expected.sort();
        assert_eq!(fired, expected);
    }

    /// Counts per tumbling window, in the default output format.
    #[derive(Default)]
    struct Counting(Option<Windows<Count>>);

    impl Operator for Counting {
        type In<'a> = &'a [u8];

        fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<(), Error> {
            self.0.get_or_insert_with(|| Windows::tumbling(1000, Count)).add(&rec, &(), out)
        }

        fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
            self.0.as_mut().map_or(Ok(()), |w| w.on_timer(&timer, out))
        }
    }

    /// The default output is one JSON line per window: key, start, end, value.
    #[test]
    fn the_default_output_is_a_json_line() {
        let mut rt = started::<Counting>(None);
        rt.process(&batch(&[("ada", 5, ""), ("ada", 999, ""), ("\u{e9}", 1000, "")])).unwrap();
        let lines = shown(&rt.finish().unwrap());
        assert_eq!(
            lines,
            [
                r#"{"key":"ada","start":0,"end":1000,"value":2}@999"#,
                r#"{"key":"é","start":1000,"end":2000,"value":1}@1999"#
            ]
        );
    }

    /// A record without a timestamp, and windows without a positive size,
    /// fail `add` with a message that says what to do.
    #[test]
    fn records_without_time_and_bad_sizes_fail() {
        let mut out = Vec::new();
        let mut services = crate::operator::Services::default();
        let mut emitter = Emitter::new(&mut out, None, None, &mut services);
        let rec = Record { key: None, timestamp: None, value: "v" };
        let err = Windows::tumbling(10, Count).add(&rec, &(), &mut emitter).unwrap_err().to_string();
        assert!(err.contains("no timestamp"), "{err}");
        let rec = Record { timestamp: Some(1), ..rec };
        for (windows, what) in [
            (Windows::tumbling(0, Count), "size must be positive (ms), not 0"),
            (Windows::sliding(10, -1, Count), "slide must be positive (ms), not -1"),
            (Windows::session(0, Count), "gap must be positive"),
        ] {
            let err = windows.add_error(&rec, &mut emitter);
            assert!(err.contains(what), "{err}");
        }
    }

    impl Windows<Count> {
        fn add_error(mut self, rec: &Record<'_, &str>, out: &mut Emitter<'_>) -> String {
            self.add(rec, &(), out).unwrap_err().to_string()
        }
    }
}
