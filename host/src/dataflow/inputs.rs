//! A subtask's input side: every channel into it, read fairly, with
//! checkpoint barrier alignment and the coordinator's control messages.
//!
//! **Alignment.** When barrier *n* arrives on a channel, that channel is
//! blocked (not read) until barrier *n* has arrived on every other open
//! channel; then [`Next::Aligned`] is returned and all channels open again.
//! So the task's snapshot covers exactly the records before barrier *n* on
//! every input — the heart of exactly-once. A channel that ends counts as
//! aligned. With one input, alignment is immediate.
//!
//! A channel is done when it delivers [`Message::End`]; one that disconnects
//! first means its sender failed, so this subtask stops too.
//!
//! **Event time.** Watermarks and idleness marks go through a
//! [`Valve`]: [`Next::Watermark`] reports the task's watermark (the minimum
//! over its active inputs) only when it advances. A blocked channel's
//! watermarks wait with its records, so they keep their place between
//! records and barriers.
//!
//! **Ticks.** With [`Inputs::tick_every`], [`Next::Tick`] comes at least
//! that often, also when nothing arrives: processing-time timers fire on it.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};

use super::Cancelled;
use super::message::{Barrier, Batch, Message};
use super::metrics::Meter;
use super::watermarks::{Advance, Valve};
use crate::checkpoint::coordinator::Control;

/// What [`Inputs::next`] found.
#[derive(Debug)]
pub enum Next {
    /// A batch from input channel `channel`.
    Batch {
        /// Index of the channel it came from.
        channel: usize,
        /// The records.
        batch: Batch,
    },
    /// Barrier `checkpoint` arrived on every open channel: snapshot now.
    Aligned {
        /// Checkpoint id.
        checkpoint: u64,
        /// Stop after this snapshot (stop-with-savepoint).
        stop: bool,
        /// From the first barrier to the last.
        alignment: Duration,
    },
    /// A message from the checkpoint coordinator.
    Control(Control),
    /// The task's event time advanced to this watermark.
    Watermark(i64),
    /// Every open input is idle.
    Idle,
    /// Time to look at the processing-time clock (see [`Inputs::tick_every`]).
    Tick,
    /// Every channel delivered `End`.
    AllEnded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Blocked,
    Ended,
}

/// The input channels of one subtask.
pub struct Inputs {
    /// Receivers, one per upstream subtask per incoming edge. Dropping them
    /// (when the task exits) makes upstream sends fail: that is how a
    /// failure propagates upstream.
    channels: Vec<Receiver<Message>>,
    state: Vec<State>,
    /// The coordinator's messages; `None` once the coordinator went away.
    control: Option<Receiver<Control>>,
    /// The checkpoint being aligned, and when its first barrier came.
    aligning: Option<(Barrier, Instant)>,
    /// Event time over the channels.
    valve: Valve,
    /// How often to report [`Next::Tick`], and when it is next due.
    tick: Option<(Duration, Instant)>,
    /// What to report next, before reading on.
    pending: Option<Next>,
    /// Where time blocked waiting for input goes.
    meter: Meter,
}

enum Got {
    Data(usize, Message),
    Control(Control),
}

impl Inputs {
    /// Reads from `channels`, and from `control`.
    pub fn new(channels: Vec<Receiver<Message>>, control: Receiver<Control>) -> Self {
        let state = vec![State::Open; channels.len()];
        let valve = Valve::new(channels.len());
        Self {
            channels,
            state,
            control: Some(control),
            aligning: None,
            valve,
            tick: None,
            pending: None,
            meter: Meter::default(),
        }
    }

    /// Measures time blocked waiting for input into `meter`.
    pub fn set_meter(&mut self, meter: Meter) {
        self.meter = meter;
    }

    /// Reports [`Next::Tick`] at least every `period`.
    pub fn tick_every(&mut self, period: Duration) {
        self.tick = Some((period, Instant::now() + period));
    }

    /// The task's watermark (`i64::MIN` before the first).
    pub fn watermark(&self) -> i64 {
        self.valve.current()
    }

    /// Resumes event time at a checkpoint's watermark: never less is reported.
    pub fn resume_at(&mut self, watermark: i64) {
        self.valve.resume_at(watermark);
    }

    /// A due tick, rescheduled.
    fn tick_due(&mut self) -> bool {
        match &mut self.tick {
            Some((period, due)) if Instant::now() >= *due => {
                *due = Instant::now() + *period;
                true
            }
            _ => false,
        }
    }

    fn advanced(&mut self, advance: Option<Advance>) -> Option<Next> {
        match advance? {
            Advance::To(w) => Some(Next::Watermark(w)),
            Advance::Idle => Some(Next::Idle),
            Advance::ToThenIdle(w) => {
                self.pending = Some(Next::Idle);
                Some(Next::Watermark(w))
            }
        }
    }

    /// The next event. Calls `on_idle` (to flush outputs) before blocking.
    ///
    /// # Errors
    /// [`Cancelled`] if an upstream task failed, or `on_idle` did.
    pub fn next(&mut self, mut on_idle: impl FnMut() -> Result<(), Cancelled>) -> Result<Next, Cancelled> {
        if let Some(next) = self.pending.take() {
            return Ok(next);
        }
        loop {
            if let Some((barrier, started)) = self.aligning
                && !self.state.contains(&State::Open)
            {
                self.aligning = None;
                self.state.iter_mut().filter(|s| **s == State::Blocked).for_each(|s| *s = State::Open);
                return Ok(Next::Aligned { checkpoint: barrier.id, stop: barrier.stop, alignment: started.elapsed() });
            }
            if self.state.iter().all(|s| *s == State::Ended) {
                return Ok(Next::AllEnded);
            }
            if self.tick_due() {
                return Ok(Next::Tick);
            }
            let got = match self.poll(None)? {
                Some(got) => got,
                None => {
                    on_idle()?;
                    let wait = self.tick.map(|(_, due)| due.saturating_duration_since(Instant::now()));
                    let blocked = Instant::now();
                    let got = self.poll(Some(wait))?;
                    self.meter.idle(blocked.elapsed());
                    match got {
                        Some(got) => got,
                        None => continue,
                    }
                }
            };
            match got {
                Got::Control(c) => return Ok(Next::Control(c)),
                Got::Data(channel, Message::Batch(batch)) => return Ok(Next::Batch { channel, batch }),
                Got::Data(channel, Message::Watermark(w)) => {
                    if let Some(next) = {
                        let a = self.valve.watermark(channel, w);
                        self.advanced(a)
                    } {
                        return Ok(next);
                    }
                }
                Got::Data(channel, Message::Idle) => {
                    if let Some(next) = {
                        let a = self.valve.idle(channel);
                        self.advanced(a)
                    } {
                        return Ok(next);
                    }
                }
                Got::Data(channel, Message::End) => {
                    self.state[channel] = State::Ended;
                    if let Some(next) = {
                        let a = self.valve.ended(channel);
                        self.advanced(a)
                    } {
                        return Ok(next);
                    }
                }
                Got::Data(channel, Message::Barrier(barrier)) => {
                    match &mut self.aligning {
                        None => self.aligning = Some((barrier, Instant::now())),
                        Some((current, _)) if current.id != barrier.id => {
                            // Cannot happen with one coordinator (barriers travel in order on
                            // every channel); merge rather than deadlock if it ever does.
                            tracing::warn!(
                                "barrier {} arrived while aligning {}; merging them",
                                barrier.id,
                                current.id
                            );
                            current.stop |= barrier.stop;
                        }
                        Some(_) => {}
                    }
                    self.state[channel] = State::Blocked;
                }
            }
        }
    }

    /// Waits for the coordinator's next message (used by a finished sink).
    /// `None` when the coordinator is gone.
    pub fn next_control(&mut self) -> Option<Control> {
        self.control.as_ref()?.recv().ok()
    }

    /// One message from an open channel or the control channel: `None`
    /// (`wait`) does not block, `Some(None)` blocks until one comes,
    /// `Some(Some(d))` for at most `d`.
    fn poll(&mut self, wait: Option<Option<Duration>>) -> Result<Option<Got>, Cancelled> {
        let mut sel = Select::new();
        let mut index = Vec::with_capacity(self.channels.len());
        for (i, rx) in self.channels.iter().enumerate().filter(|(i, _)| self.state[*i] == State::Open) {
            sel.recv(rx);
            index.push(i);
        }
        let control_index = self.control.as_ref().map(|rx| sel.recv(rx));
        let op = match wait {
            Some(None) => sel.select(),
            Some(Some(timeout)) => match sel.select_timeout(timeout) {
                Ok(op) => op,
                Err(_) => return Ok(None),
            },
            None => match sel.try_select() {
                Ok(op) => op,
                Err(_) => return Ok(None),
            },
        };
        if Some(op.index()) == control_index {
            let rx = self.control.as_ref().expect("control was selected");
            return match op.recv(rx) {
                Ok(c) => Ok(Some(Got::Control(c))),
                Err(_) => {
                    // The coordinator is gone; data channels tell the rest.
                    self.control = None;
                    if wait.is_some() { self.poll(wait) } else { Ok(None) }
                }
            };
        }
        let i = index[op.index()];
        op.recv(&self.channels[i]).map(|m| Some(Got::Data(i, m))).map_err(|_| Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Message {
        Message::Batch(Batch { bytes: vec![], records: 1 })
    }

    #[test]
    fn ends_only_when_every_channel_ended() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded();
        let (b_tx, b_rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![a_rx, b_rx], crossbeam_channel::never());
        a_tx.send(Message::End).unwrap();
        b_tx.send(batch()).unwrap();
        b_tx.send(Message::End).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Batch { channel: 1, .. }));
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::AllEnded));
    }

    #[test]
    fn disconnect_without_end_is_cancellation() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded::<Message>();
        let mut inputs = Inputs::new(vec![a_rx], crossbeam_channel::never());
        drop(a_tx);
        assert!(inputs.next(|| Ok(())).is_err());
    }

    #[test]
    fn a_blocked_channel_is_not_read_until_every_barrier_arrived() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded();
        let (b_tx, b_rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![a_rx, b_rx], crossbeam_channel::never());
        // a: barrier 1, then a record that belongs after the checkpoint.
        a_tx.send(Message::Barrier(Barrier::new(1))).unwrap();
        a_tx.send(batch()).unwrap();
        // b: two records before its barrier.
        b_tx.send(batch()).unwrap();
        b_tx.send(batch()).unwrap();
        b_tx.send(Message::Barrier(Barrier::new(1))).unwrap();
        let mut seen = Vec::new();
        loop {
            match inputs.next(|| Ok(())).unwrap() {
                Next::Batch { channel, .. } => seen.push(channel),
                Next::Aligned { checkpoint, .. } => {
                    assert_eq!(checkpoint, 1);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, [1, 1], "only b's records may come before the snapshot");
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Batch { channel: 0, .. }));
    }

    #[test]
    fn an_ended_channel_counts_as_aligned() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded();
        let (b_tx, b_rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![a_rx, b_rx], crossbeam_channel::never());
        a_tx.send(Message::Barrier(Barrier::new(4))).unwrap();
        b_tx.send(batch()).unwrap();
        b_tx.send(Message::End).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Batch { channel: 1, .. }));
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Aligned { checkpoint: 4, .. }));
    }

    /// Watermarks come out as the minimum over the channels, in their place
    /// between records; a tick comes even when nothing arrives.
    #[test]
    fn watermarks_are_the_minimum_over_channels_in_order_with_records() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded();
        let (b_tx, b_rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![a_rx, b_rx], crossbeam_channel::never());
        a_tx.send(Message::Watermark(10)).unwrap();
        b_tx.send(Message::Watermark(7)).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Watermark(7)), "the minimum, once both spoke");
        a_tx.send(batch()).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Batch { channel: 0, .. }));
        b_tx.send(Message::Idle).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Watermark(10)), "the idle channel is left out");
        assert_eq!(inputs.watermark(), 10);
        a_tx.send(Message::End).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Idle), "only the idle channel is left open");
        inputs.tick_every(Duration::from_millis(5));
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Tick));
        drop(b_tx);
    }

    #[test]
    fn control_messages_are_delivered() {
        let (_a_tx, a_rx) = crossbeam_channel::unbounded::<Message>();
        let (c_tx, c_rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![a_rx], c_rx);
        c_tx.send(Control::Complete { checkpoint: 3, node: 0, includes_final: false }).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Control(Control::Complete { checkpoint: 3, .. })));
    }
}
