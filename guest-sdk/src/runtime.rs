//! The glue between the generated Wasm exports and an [`Operator`]. Used only
//! by [`export!`](crate::export); operator authors never touch it.
//!
//! One `Runtime` lives in each instance (a guest is single-threaded). It owns
//! the operator, the output buffer and the timers; decodes each framed input
//! batch; fires due timers as the watermark and processing time advance; adds
//! the timers to snapshots and takes them back on restore; and turns operator
//! errors into the `result` strings of the WIT world.
//!
//! Processing time reaches it two ways: `on-processing-time(now)` hands it
//! in, and any other call reads the host's `now` import the first time the
//! operator asks (natively, in tests, a clock set with
//! [`Runtime::set_clock`]).

use crate::bindings::weir::operator::types;
use crate::combine::{Combine, Combiner, Phases, Role};
use crate::operator::{Context, Emitter, InstanceInfo, Operator, Record, Services};
use crate::state::{StateReader, StateWriter};
use crate::timer::{TimeDomain, Timer};
use crate::value::Decode;
use crate::{Error, frame};

/// Holds one instance's operator between calls.
#[doc(hidden)]
pub struct Runtime<O> {
    op: Option<O>,
    info: InstanceInfo,
    /// The output being built. It is handed to the host (and freed after
    /// the call), so each call starts a new one, sized by `out_hint`.
    out: Vec<u8>,
    /// The previous output's length: growing a buffer from empty by
    /// doubling would copy a batch's output many times over.
    out_hint: usize,
    /// Time and timers, lent to the operator's emitters.
    services: Services,
    /// The pre-aggregation phases, for an operator exported with `combine`.
    phases: Option<Box<dyn Phases<O>>>,
    /// This instance's pre-aggregation role, if the job asked for one.
    role: Option<Role>,
}

impl<O: Operator> Default for Runtime<O> {
    fn default() -> Self {
        Self {
            op: None,
            info: InstanceInfo::default(),
            out: Vec::new(),
            out_hint: 0,
            services: Services::default(),
            phases: None,
            role: None,
        }
    }
}

impl<O: Combine + 'static> Runtime<O> {
    /// The runtime of an operator that can be pre-aggregated
    /// (`weir_sdk::export!(Op, combine)`).
    pub fn combining() -> Self {
        Self { phases: Some(Box::new(Combiner::<O>::default())), ..Self::default() }
    }
}

impl<O: Operator> Runtime<O> {
    /// The operator's descriptor.
    pub fn describe(name: &str, version: &str) -> types::Descriptor {
        types::Descriptor {
            name: name.to_owned(),
            version: version.to_owned(),
            state_version: O::STATE_VERSION,
            sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Reads processing time from `clock` instead of the host: for tests,
    /// which run natively, where there is no host to ask.
    pub fn set_clock(&mut self, clock: fn() -> i64) {
        self.services.clock = clock;
    }

    /// Creates the operator, restoring `restored` if given.
    pub fn init(
        &mut self,
        info: types::InstanceInfo,
        config: String,
        restored: Option<types::State>,
    ) -> Result<(), String> {
        self.info = InstanceInfo {
            operator_id: info.operator_id,
            subtask: info.subtask,
            parallelism: info.parallelism,
            max_parallelism: info.max_parallelism,
            key_groups: info.key_group_start..info.key_group_end,
            attempt: info.attempt,
        };
        let (role, config) = Role::take(config).map_err(Error::into_message)?;
        if role.is_some() && self.phases.is_none() {
            return Err("this operator cannot be pre-aggregated: it does not implement weir_sdk::Combine (and export \
                        itself with `weir_sdk::export!(Op, combine)`); remove `pre_aggregate` from its job table"
                .to_owned());
        }
        self.role = role;
        let mut op = O::default();
        op.init(&Context { info: &self.info, config: &config }).map_err(Error::into_message)?;
        // The local phase saves nothing, so there is nothing to give back to it.
        let restored = restored.filter(|_| role != Some(Role::Local));
        if let Some(state) = restored {
            if state.version > O::STATE_VERSION {
                return Err(format!(
                    "cannot restore state version {}: this operator reads state versions up to {} \
                     (its STATE_VERSION); the state was written by a newer version of it",
                    state.version,
                    O::STATE_VERSION
                ));
            }
            let version = state.version;
            let reader = StateReader::new(
                state.version,
                state.operator_state,
                state.keyed.into_iter().map(|g| g.bytes).collect(),
            );
            self.services
                .timers
                .restore_from(&reader)
                .and_then(|()| op.restore(&reader))
                .and_then(|()| all_keyed_state_read(&reader))
                .map_err(|e| {
                    format!(
                        "cannot restore state version {version} (this operator's STATE_VERSION is {}): {}",
                        O::STATE_VERSION,
                        e.into_message()
                    )
                })?;
        }
        self.op = Some(op);
        Ok(())
    }

    /// The output so far, for the host; remembers its size for the next call.
    fn take_output(&mut self) -> Vec<u8> {
        let out = core::mem::take(&mut self.out);
        self.out_hint = out.len();
        out
    }

    fn op(&mut self) -> Result<&mut O, String> {
        self.op.as_mut().ok_or_else(|| "operator called before init".to_owned())
    }

    /// Runs `process` over every record of `batch`; returns the framed output.
    pub fn process(&mut self, batch: &[u8]) -> Result<Vec<u8>, String> {
        self.out.reserve(self.out_hint + self.out_hint / 8);
        let op = self.op.as_mut().ok_or("operator called before init")?;
        self.services.start_call(None);
        match (self.role, &mut self.phases) {
            (Some(Role::Local), Some(phases)) => phases.local(op, batch, &mut self.out)?,
            (Some(Role::Global), Some(phases)) => phases.global(op, batch, &mut self.out, &mut self.services)?,
            _ => self.process_records(batch)?,
        }
        self.services.end_call().map_err(Error::into_message)?;
        Ok(self.take_output())
    }

    /// `process` over every record of `batch`, into the output.
    fn process_records(&mut self, batch: &[u8]) -> Result<(), String> {
        let op = self.op.as_mut().ok_or("operator called before init")?;
        for rec in frame::read(batch) {
            let rec = rec.map_err(|e| e.to_string())?;
            let value = O::In::decode(rec.value)
                .map_err(|e| format!("{} (in the record {})", e.into_message(), preview(rec.key, rec.value)))?;
            let mut out = Emitter::new(&mut self.out, rec.key, rec.timestamp, &mut self.services);
            op.process(Record { key: rec.key, timestamp: rec.timestamp, value }, &mut out)
                .map_err(Error::into_message)?;
        }
        Ok(())
    }

    /// Whether this is the local phase of a pre-aggregated operator: it
    /// only combines records, and sends its partials on whenever time
    /// passes (a watermark, a tick) or the input ends; it is never asked
    /// for state while it holds any.
    fn local(&self) -> bool {
        self.role == Some(Role::Local)
    }

    /// The local phase's partials, framed.
    fn flush(&mut self) -> Result<Vec<u8>, String> {
        if let Some(phases) = &mut self.phases {
            phases.flush(&mut self.out)?;
        }
        Ok(self.take_output())
    }

    /// Advances event time to `watermark`: fires the event-time timers it
    /// reaches, then runs `on_watermark`; returns the framed output.
    pub fn on_watermark(&mut self, watermark: i64) -> Result<Vec<u8>, String> {
        if self.local() {
            return self.flush();
        }
        self.services.start_call(None);
        self.advance_watermark(watermark).and_then(|()| self.services.end_call()).map_err(Error::into_message)?;
        Ok(core::mem::take(&mut self.out))
    }

    /// Processing time is `now`: fires the processing-time timers it
    /// reaches; returns the framed output.
    pub fn on_processing_time(&mut self, now: i64) -> Result<Vec<u8>, String> {
        if self.local() {
            return self.flush();
        }
        let op = self.op.as_mut().ok_or("operator called before init")?;
        self.services.start_call(Some(now));
        fire(op, &mut self.out, &mut self.services, TimeDomain::ProcessingTime, now)
            .and_then(|()| self.services.end_call())
            .map_err(Error::into_message)?;
        Ok(core::mem::take(&mut self.out))
    }

    /// Event time ends (unless it has), then runs `finish`; returns the
    /// framed output.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        if self.local() {
            return self.flush();
        }
        self.services.start_call(None);
        if self.services.watermark < i64::MAX {
            self.advance_watermark(i64::MAX).map_err(Error::into_message)?;
        }
        let op = self.op.as_mut().ok_or("operator called before init")?;
        let mut out = Emitter::new(&mut self.out, None, None, &mut self.services);
        op.finish(&mut out).and_then(|()| self.services.end_call()).map_err(Error::into_message)?;
        Ok(core::mem::take(&mut self.out))
    }

    /// Fires the event-time timers `watermark` reaches, in order (also
    /// those their callbacks register within it), then `on_watermark`.
    fn advance_watermark(&mut self, watermark: i64) -> Result<(), Error> {
        let op = self.op.as_mut().ok_or_else(|| Error::msg("operator called before init"))?;
        // Event time never goes back, whatever a call says.
        let watermark = watermark.max(self.services.watermark);
        self.services.watermark = watermark;
        fire(op, &mut self.out, &mut self.services, TimeDomain::EventTime, watermark)?;
        op.on_watermark(watermark, &mut Emitter::new(&mut self.out, None, Some(watermark), &mut self.services))
    }

    /// Runs `snapshot`, adds the timers, and packages the state for the host.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<types::State, String> {
        if self.local() {
            let held = self.phases.as_ref().map_or(0, |p| p.held());
            if held > 0 {
                // The host sends an empty batch first; partials left here would be lost.
                return Err(format!(
                    "pre-aggregation: the local instance still holds the partials of {held} keys at checkpoint \
                     {checkpoint_id}; they were not sent before the barrier (a Weir bug: please report it)"
                ));
            }
            return Ok(types::State { version: O::STATE_VERSION, operator_state: vec![Vec::new()], keyed: Vec::new() });
        }
        let mut writer = StateWriter::new(self.info.max_parallelism);
        self.op()?.snapshot(&mut writer).map_err(Error::into_message)?;
        self.services.timers.snapshot_into(&mut writer).map_err(Error::into_message)?;
        Ok(types::State {
            version: O::STATE_VERSION,
            operator_state: vec![writer.operator],
            keyed: writer
                .keyed
                .into_iter()
                .enumerate()
                .filter(|(_, bytes)| !bytes.is_empty())
                .map(|(key_group, bytes)| types::KeyGroupState { key_group: key_group as u32, bytes })
                .collect(),
        })
    }

    /// Runs `on_checkpoint_complete`.
    pub fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), String> {
        if self.local() {
            // Its operator only combines: the keyed instance hears completions.
            return Ok(());
        }
        self.op()?.on_checkpoint_complete(checkpoint_id).map_err(Error::into_message)
    }
}

/// Fires every timer of `domain` due at `until`, earliest first (then by
/// key), including those the callbacks register at or before `until`.
fn fire<O: Operator>(
    op: &mut O,
    out: &mut Vec<u8>,
    services: &mut Services,
    domain: TimeDomain,
    until: i64,
) -> Result<(), Error> {
    while let Some((time, key)) = services.timers.pop_due(domain, until) {
        let mut emitter = Emitter::new(out, Some(&key), Some(time), services);
        op.on_timer(Timer { key: &key, time, domain }, &mut emitter)?;
    }
    Ok(())
}

/// Fails a restore that left keyed state unread: state written under a name
/// that no [`KeyedState`](crate::KeyedState) of this version restored would
/// otherwise be dropped without a word (and with the next checkpoint, lost).
fn all_keyed_state_read(reader: &StateReader) -> Result<(), Error> {
    let unread = reader.unread();
    let Some(first) = unread.first() else { return Ok(()) };
    let names: Vec<String> =
        unread.iter().map(|n| if n.is_empty() { "unnamed".to_owned() } else { format!("{n:?}") }).collect();
    Err(Error::msg(format!(
        "the state holds keyed state that `restore` did not read (names: {}); restore each with a KeyedState \
         of that name (KeyedState::named({first:?}), or ::default() for unnamed) or an `alias` of it, or drop it on \
         purpose with StateReader::discard_keyed({first:?})",
        names.join(", ")
    )))
}

/// A short, escaped look at a record for an error message: its key and the
/// start of its value, so a user can find it in the input.
pub(crate) fn preview(key: Option<&[u8]>, value: &[u8]) -> String {
    const SHOWN: usize = 60;
    let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(SHOWN)]).escape_debug().to_string();
    let more = if value.len() > SHOWN { format!("… ({} bytes)", value.len()) } else { String::new() };
    match key {
        Some(k) => format!("with key \"{}\" and value \"{}\"{more}", text(k), text(value)),
        None => format!("\"{}\"{more}", text(value)),
    }
}

/// Where an operator's unit tests run it natively: the only subtask
/// (`attempt` 0) of `operator_id`, over 128 key groups.
pub fn only_subtask(operator_id: &str) -> types::InstanceInfo {
    types::InstanceInfo {
        operator_id: operator_id.into(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: 128,
        key_group_start: 0,
        key_group_end: 128,
        attempt: 0,
    }
}

/// Driving a [`Runtime`] natively, as the host would: shared by the unit
/// tests of the SDK's modules.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Subtask `subtask` of `parallelism`, over 128 key groups.
    pub(crate) fn subtask(subtask: u32, parallelism: u32) -> types::InstanceInfo {
        let groups = crate::keygroup::key_group_range(subtask, parallelism, 128);
        types::InstanceInfo {
            operator_id: "op".into(),
            subtask,
            parallelism,
            max_parallelism: 128,
            key_group_start: groups.start,
            key_group_end: groups.end,
            attempt: 0,
        }
    }

    impl<O: Operator> Runtime<O> {
        /// The operator, started.
        pub(crate) fn operator(&self) -> &O {
            self.op.as_ref().expect("the runtime was started")
        }
    }

    /// A started runtime of `O` (the only subtask), restored from `state`.
    pub(crate) fn started<O: Operator>(state: Option<types::State>) -> Runtime<O> {
        let mut rt = Runtime::default();
        rt.init(subtask(0, 1), "{}".into(), state).unwrap();
        rt
    }

    /// Records of `(key, timestamp, value)`, framed.
    pub(crate) fn batch(records: &[(&str, i64, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, ts, value) in records {
            frame::write(&mut out, Some(key.as_bytes()), Some(*ts), value.as_bytes());
        }
        out
    }

    /// Each output record's value, prefixed by `<output>:` if it went to a
    /// side output and suffixed by `@<timestamp>`.
    pub(crate) fn shown(batch: &[u8]) -> Vec<String> {
        frame::read(batch)
            .map(|r| {
                let r = r.unwrap();
                let to = r.output.map(|o| format!("{}:", String::from_utf8_lossy(o))).unwrap_or_default();
                let at = r.timestamp.map(|t| format!("@{t}")).unwrap_or_default();
                format!("{to}{}{at}", String::from_utf8_lossy(r.value))
            })
            .collect()
    }

    /// The `keyed` part of `state`, only the groups of `subtask` of `parallelism`.
    pub(crate) fn split(state: &types::State, subtask: u32, parallelism: u32) -> types::State {
        let mine = crate::keygroup::key_group_range(subtask, parallelism, 128);
        types::State {
            version: state.version,
            operator_state: state.operator_state.clone(),
            keyed: state
                .keyed
                .iter()
                .filter(|g| mine.contains(&g.key_group))
                .map(|g| types::KeyGroupState { key_group: g.key_group, bytes: g.bytes.clone() })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{batch as records, shown, split, started, subtask};
    use super::*;
    use crate::KeyedState;

    /// Counts each key twice over, in two keyed states; emits `a b`.
    struct Two {
        a: KeyedState<u64>,
        b: KeyedState<u64>,
    }

    impl Default for Two {
        fn default() -> Self {
            Self { a: KeyedState::named("a"), b: KeyedState::named("b") }
        }
    }

    impl Operator for Two {
        type In<'a> = &'a [u8];

        fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let key = rec.key.unwrap_or_default();
            *self.a.get_or_default(key) += 1;
            *self.b.get_or_default(key) += 10;
            out.emit(&format!("{} {}", self.a.get(key).unwrap_or(&0), self.b.get(key).unwrap_or(&0)));
            Ok(())
        }

        fn snapshot(&mut self, state: &mut StateWriter) -> Result<(), Error> {
            self.a.snapshot_into(state)?;
            self.b.snapshot_into(state)
        }

        fn restore(&mut self, state: &StateReader) -> Result<(), Error> {
            self.a.restore_from(state)?;
            self.b.restore_from(state)
        }
    }

    /// Restores only `a` of [`Two`]'s state.
    #[derive(Default)]
    struct OnlyA(Two);

    impl Operator for OnlyA {
        type In<'a> = &'a [u8];

        fn process(&mut self, rec: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<(), Error> {
            self.0.process(rec, out)
        }

        fn restore(&mut self, state: &StateReader) -> Result<(), Error> {
            self.0.a.restore_from(state)
        }
    }

    fn info() -> types::InstanceInfo {
        only_subtask("two")
    }

    fn batch(keys: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for k in keys {
            frame::write(&mut out, Some(k.as_bytes()), None, b"");
        }
        out
    }

    fn values(batch: &[u8]) -> Vec<String> {
        frame::read(batch).map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()).collect()
    }

    /// Both keyed states of an operator come back from a checkpoint whole.
    #[test]
    fn an_operator_with_two_keyed_states_resumes_both() {
        let mut first = Runtime::<Two>::default();
        first.init(info(), "{}".into(), None).unwrap();
        first.process(&batch(&["x", "y", "x"])).unwrap();
        let state = first.snapshot(1).unwrap();
        let mut second = Runtime::<Two>::default();
        second.init(info(), "{}".into(), Some(state)).unwrap();
        assert_eq!(values(&second.process(&batch(&["x", "y"])).unwrap()), ["3 30", "2 20"]);
    }

    /// A restore that leaves a keyed state unread fails, naming it.
    #[test]
    fn a_keyed_state_left_unread_fails_the_restore() {
        let mut first = Runtime::<Two>::default();
        first.init(info(), "{}".into(), None).unwrap();
        first.process(&batch(&["x"])).unwrap();
        let state = first.snapshot(1).unwrap();
        let err = Runtime::<OnlyA>::default().init(info(), "{}".into(), Some(state)).unwrap_err();
        for needle in ["did not read", "\"b\"", "discard_keyed(\"b\")"] {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
    }

    /// Registers, per record, an event-time timer at the time its value
    /// names (`p<t>`: a processing-time one; `-<t>`: deletes the event-time
    /// one); counts firings per key in keyed state. A timer at an odd time
    /// registers one at the next even time from its callback.
    struct Alarm {
        fired: KeyedState<u64>,
    }

    impl Default for Alarm {
        fn default() -> Self {
            Self { fired: KeyedState::named("fired") }
        }
    }

    impl Operator for Alarm {
        type In<'a> = &'a str;

        fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let mut timers = out.timers();
            match (rec.value.strip_prefix('p'), rec.value.strip_prefix('-')) {
                (Some(t), _) => timers.register_processing_time(t.parse()?),
                (_, Some(t)) => timers.delete_event_time(t.parse()?),
                _ => timers.register_event_time(rec.value.parse()?),
            }
            Ok(())
        }

        fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let n = self.fired.get_or_default(timer.key);
            *n += 1;
            let domain = if timer.domain == TimeDomain::EventTime { "e" } else { "p" };
            out.emit(&format!("{}{domain}{}#{n}", String::from_utf8_lossy(timer.key), timer.time));
            if timer.time % 2 != 0 {
                out.timers().register_event_time(timer.time + 1);
            }
            Ok(())
        }

        fn on_watermark(&mut self, watermark: i64, out: &mut Emitter<'_>) -> Result<(), Error> {
            out.emit(&format!("wm{}", if watermark == i64::MAX { "MAX".into() } else { watermark.to_string() }));
            Ok(())
        }

        fn snapshot(&mut self, state: &mut StateWriter) -> Result<(), Error> {
            self.fired.snapshot_into(state)
        }

        fn restore(&mut self, state: &StateReader) -> Result<(), Error> {
            self.fired.restore_from(state)
        }
    }

    /// A watermark fires the timers it reaches in order of time, then key,
    /// each (key, time) once however often registered, deleted ones never,
    /// timers their callbacks register within it too, and then
    /// `on_watermark`; the output carries each timer's key and time.
    #[test]
    fn a_watermark_fires_due_timers_in_order_then_on_watermark() {
        let mut rt = started::<Alarm>(None);
        let input = [("b", 0, "20"), ("a", 0, "20"), ("b", 0, "20"), ("c", 0, "9"), ("a", 0, "30"), ("d", 0, "15")];
        assert_eq!(shown(&rt.process(&records(&input)).unwrap()), Vec::<String>::new());
        rt.process(&records(&[("d", 0, "-15")])).unwrap();
        let out = rt.on_watermark(20).unwrap();
        assert_eq!(shown(&out), ["ce9#1@9", "ce10#2@10", "ae20#1@20", "be20#1@20", "wm20@20"]);
        let keys: Vec<_> = frame::read(&out).map(|r| r.unwrap().key).collect();
        assert_eq!(keys, [Some(&b"c"[..]), Some(b"c"), Some(b"a"), Some(b"b"), None]);
        assert_eq!(shown(&rt.on_watermark(29).unwrap()), ["wm29@29"]);
        assert_eq!(shown(&rt.on_watermark(10).unwrap()), ["wm29@29"], "event time never goes back");
    }

    /// Processing-time timers fire on `on_processing_time`, not on
    /// watermarks, and see the time handed in; elsewhere processing time
    /// comes from the clock.
    #[test]
    fn processing_time_timers_fire_as_the_clock_advances() {
        let mut rt = started::<Alarm>(None);
        rt.process(&records(&[("k", 0, "p100"), ("j", 0, "p50"), ("k", 0, "7")])).unwrap();
        assert_eq!(shown(&rt.on_watermark(1000).unwrap()), ["ke7#1@7", "ke8#2@8", "wm1000@1000"]);
        assert_eq!(shown(&rt.on_processing_time(60).unwrap()), ["jp50#1@50"]);
        assert_eq!(shown(&rt.on_processing_time(100).unwrap()), ["kp100#3@100"]);
        assert!(rt.on_processing_time(1_000_000).unwrap().is_empty());
    }

    /// Reads processing time in `process` and sets a timer a second later.
    #[derive(Default)]
    struct InASecond;

    impl Operator for InASecond {
        type In<'a> = &'a [u8];

        fn process(&mut self, _: Record<'_, &[u8]>, out: &mut Emitter<'_>) -> Result<(), Error> {
            let now = out.processing_time();
            out.timers().register_processing_time(now + 1000);
            out.emit(&now.to_string());
            Ok(())
        }

        fn on_timer(&mut self, timer: Timer<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
            out.emit(&format!("now {}", out.processing_time()));
            let _ = timer;
            Ok(())
        }
    }

    /// Processing time in `process` comes from the runtime's clock (the
    /// host's `now`; here a test's), in a processing-time timer from the
    /// time the host handed in.
    #[test]
    fn processing_time_comes_from_the_clock() {
        let mut rt = started::<InASecond>(None);
        rt.set_clock(|| 5_000);
        assert_eq!(shown(&rt.process(&records(&[("k", 1, "")])).unwrap()), ["5000@1"]);
        assert!(rt.on_processing_time(5_999).unwrap().is_empty());
        assert_eq!(shown(&rt.on_processing_time(6_500).unwrap()), ["now 6500@6000"]);
    }

    /// Timers are checkpointed with the keyed state, by their key's group:
    /// each subtask of a rescaled job gets exactly its keys' timers, a timer
    /// that fired before the checkpoint is not in it, and the SDK's own
    /// state does not trip the unread-state check.
    #[test]
    fn timers_survive_a_restore_and_follow_their_keys() {
        let mut first = started::<Alarm>(None);
        let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
        let input: Vec<(&str, i64, &str)> =
            keys.iter().flat_map(|k| [(k.as_str(), 0, "10"), (k.as_str(), 0, "20")]).collect();
        first.process(&records(&input)).unwrap();
        first.process(&records(&[("p", 0, "p5")])).unwrap();
        assert_eq!(shown(&first.on_watermark(10).unwrap()).len(), 41);
        let state = first.snapshot(1).unwrap();
        let mut fired = Vec::new();
        for s in 0..2 {
            let mut rt = Runtime::<Alarm>::default();
            rt.init(subtask(s, 2), "{}".into(), Some(split(&state, s, 2))).unwrap();
            let out = shown(&rt.on_watermark(100).unwrap());
            assert!(out.len() < 41, "subtask {s} fired {out:?}");
            fired.extend(out.into_iter().filter(|o| !o.starts_with("wm")));
            fired.extend(shown(&rt.on_processing_time(5).unwrap()));
        }
        fired.sort();
        let mut expected: Vec<String> = keys.iter().map(|k| format!("{k}e20#2@20")).collect();
        expected.push("pp5#1@5".into());
        expected.sort();
        assert_eq!(fired, expected);
    }

    /// An operator without timers snapshots exactly what it did before
    /// timers: no entry under the reserved name.
    #[test]
    fn an_operator_without_timers_writes_no_timer_state() {
        let mut rt = started::<Two>(None);
        rt.process(&batch(&["x", "y"])).unwrap();
        let state = rt.snapshot(1).unwrap();
        let mut writer = StateWriter::new(128);
        let mut expected = Two::default();
        *expected.a.get_or_default(b"x") = 1;
        *expected.a.get_or_default(b"y") = 1;
        *expected.b.get_or_default(b"x") = 10;
        *expected.b.get_or_default(b"y") = 10;
        expected.snapshot(&mut writer).unwrap();
        let groups: Vec<(u32, Vec<u8>)> =
            writer.keyed.into_iter().enumerate().filter(|(_, b)| !b.is_empty()).map(|(g, b)| (g as u32, b)).collect();
        assert_eq!(state.keyed.into_iter().map(|g| (g.key_group, g.bytes)).collect::<Vec<_>>(), groups);
    }

    /// The end of input is the end of event time: `finish` fires every
    /// event-time timer left and calls `on_watermark` first — once, if the
    /// host already sent the last watermark.
    #[test]
    fn finish_fires_every_event_time_timer() {
        let mut rt = started::<Alarm>(None);
        rt.process(&records(&[("k", 0, "1000"), ("k", 0, "p10")])).unwrap();
        assert_eq!(shown(&rt.finish().unwrap()), ["ke1000#1@1000", "wmMAX@9223372036854775807"]);
        let mut rt = started::<Alarm>(None);
        rt.on_watermark(i64::MAX).unwrap();
        assert!(rt.finish().unwrap().is_empty());
    }

    /// Sends every record to the side output its value names.
    #[derive(Default)]
    struct Route;

    impl Operator for Route {
        type In<'a> = &'a str;

        fn process(&mut self, rec: Record<'_, &str>, out: &mut Emitter<'_>) -> Result<(), Error> {
            out.emit_to(rec.value, rec.value);
            out.emit_record_to("json", None, Some(1), &crate::Json([1, 2]));
            Ok(())
        }
    }

    /// Side-output records name their output; a name that is empty or
    /// longer than 255 bytes fails the call, saying so.
    #[test]
    fn side_outputs_are_named_and_names_are_checked() {
        let mut rt = started::<Route>(None);
        let out = rt.process(&records(&[("k", 7, "late")])).unwrap();
        assert_eq!(shown(&out), ["late:late@7", "json:[1,2]@1"]);
        assert_eq!(frame::read(&out).next().unwrap().unwrap().key, Some(&b"k"[..]));
        let err = rt.process(&records(&[("k", 7, "")])).unwrap_err();
        assert!(err.contains("1 to 255 bytes"), "{err}");
        let long = "x".repeat(256);
        let err = started::<Route>(None).process(&records(&[("k", 7, &long)])).unwrap_err();
        assert!(err.contains("not 256"), "{err}");
    }

    /// A state of the operator's own may not take the SDK's reserved names.
    #[test]
    fn reserved_state_names_are_refused() {
        #[derive(Default)]
        struct Squatter;
        impl Operator for Squatter {
            type In<'a> = &'a [u8];
            fn process(&mut self, _: Record<'_, &[u8]>, _: &mut Emitter<'_>) -> Result<(), Error> {
                Ok(())
            }
            fn snapshot(&mut self, state: &mut StateWriter) -> Result<(), Error> {
                KeyedState::<u64>::named("weir.timers").snapshot_into(state)
            }
        }
        let err = started::<Squatter>(None).snapshot(1).unwrap_err();
        assert!(err.contains("reserved") && err.contains("weir.timers"), "{err}");
    }
}
