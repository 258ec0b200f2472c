//! Event time across channels: what a task's watermark is, given the
//! watermarks and idleness of each of its input channels (Flink's
//! "status watermark valve"), and how a source makes watermarks from the
//! timestamps it reads (bounded out-of-orderness, idleness). Pure logic:
//! facts in, decisions out, no clock or channel in sight.
//!
//! A task's watermark is the minimum over its *active, aligned* input
//! channels, and never goes back:
//! - a channel that ended no longer holds event time back;
//! - a channel that said [`Idle`](super::message::Message::Idle) is left
//!   out until it sends a watermark again; if every open channel is idle,
//!   so is the task (and it says so downstream), after advancing to the
//!   largest watermark of its channels (as Flink's valve does: nothing is
//!   coming from any of them, so nothing holds the others back);
//! - a channel that comes back from idleness behind the task's watermark
//!   is left out until it catches up (its records meanwhile are late).

/// What a change on one channel means for the task's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Event time advanced to this: tell the operators, then downstream.
    To(i64),
    /// Every open input is idle: tell downstream.
    Idle,
    /// Event time advanced to this, and then every open input is idle.
    ToThenIdle(i64),
}

#[derive(Debug, Clone, Copy)]
struct Channel {
    watermark: i64,
    idle: bool,
    /// Its watermark has reached the task's (it counts for the minimum).
    aligned: bool,
    ended: bool,
}

/// The watermark of a task with several input channels.
#[derive(Debug, Clone)]
pub struct Valve {
    channels: Vec<Channel>,
    /// The last watermark this task reported.
    current: i64,
    /// The task last said it is idle.
    idle: bool,
}

impl Valve {
    /// A valve over `channels` inputs, each at the start of time.
    pub fn new(channels: usize) -> Self {
        let start = Channel { watermark: i64::MIN, idle: false, aligned: true, ended: false };
        Self { channels: vec![start; channels], current: i64::MIN, idle: false }
    }

    /// The task's watermark (`i64::MIN` before the first).
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Resumes at a checkpoint's watermark: it never reports less.
    pub fn resume_at(&mut self, watermark: i64) {
        self.current = self.current.max(watermark);
    }

    /// Channel `channel` delivered watermark `watermark`.
    pub fn watermark(&mut self, channel: usize, watermark: i64) -> Option<Advance> {
        let ch = &mut self.channels[channel];
        ch.watermark = ch.watermark.max(watermark);
        ch.idle = false;
        if ch.watermark >= self.current {
            ch.aligned = true;
        }
        self.recompute()
    }

    /// Channel `channel` went idle.
    pub fn idle(&mut self, channel: usize) -> Option<Advance> {
        let ch = &mut self.channels[channel];
        ch.idle = true;
        ch.aligned = false;
        self.recompute()
    }

    /// Channel `channel` ended.
    pub fn ended(&mut self, channel: usize) -> Option<Advance> {
        self.channels[channel].ended = true;
        self.recompute()
    }

    fn recompute(&mut self) -> Option<Advance> {
        let open = || self.channels.iter().filter(|c| !c.ended);
        open().next()?;
        let Some(min) = open().filter(|c| !c.idle && c.aligned).map(|c| c.watermark).min() else {
            if self.idle {
                return None;
            }
            self.idle = true;
            let max = open().map(|c| c.watermark).max().unwrap_or(i64::MIN);
            if max > self.current {
                self.current = max;
                return Some(Advance::ToThenIdle(max));
            }
            return Some(Advance::Idle);
        };
        let was_idle = std::mem::replace(&mut self.idle, false);
        if min > self.current {
            self.current = min;
            // Channels that were behind may now be aligned.
            for c in &mut self.channels {
                if !c.idle && c.watermark >= min {
                    c.aligned = true;
                }
            }
            return Some(Advance::To(min));
        }
        // Active again at the same time: say so, so downstream counts us again.
        was_idle.then_some(Advance::To(self.current))
    }
}

/// A source subtask's watermarks, per split (a Kafka partition; other
/// sources have one): each split's largest timestamp read, less the
/// allowed out-of-orderness, less 1 ms (Flink's bounded-out-of-orderness
/// strategy: a record exactly `bound` behind the largest is still on time);
/// the subtask's watermark is the minimum over its active splits. A split
/// that reads nothing for `idle_after` ms of processing time is left out
/// until it reads again; when every split is, the subtask is idle.
#[derive(Debug, Clone)]
pub struct Generator {
    bound: i64,
    idle_after: Option<i64>,
    /// Least processing time between two watermarks sent (0: after every batch).
    interval: i64,
    /// Processing time the last watermark was sent.
    sent_at: Option<i64>,
    /// Where a split's largest timestamp starts (a restored watermark's).
    initial: i64,
    splits: Vec<Split>,
    /// The last watermark sent.
    sent: i64,
    /// The subtask last said it is idle.
    idle: bool,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    max: i64,
    /// Processing time of its last record (or of when it was first seen).
    last: i64,
    idle: bool,
}

impl Generator {
    /// Watermarks `bound` ms behind the largest timestamp; a split is idle
    /// after `idle_after` ms without records, if set.
    pub fn new(bound: i64, idle_after: Option<i64>) -> Self {
        Self {
            bound,
            idle_after,
            interval: 0,
            sent_at: None,
            initial: i64::MIN,
            splits: Vec::new(),
            sent: i64::MIN,
            idle: false,
        }
    }

    /// Sends a watermark at most every `interval` ms of processing time
    /// (Flink's auto-watermark interval), instead of after every batch that
    /// moves it: fewer watermarks, less work downstream, but which records
    /// turn out late then depends on timing too.
    #[must_use]
    pub fn every(mut self, interval: i64) -> Self {
        self.interval = interval.max(0);
        self
    }

    /// Resumes from a checkpoint's [`max_timestamp`](Self::max_timestamp).
    pub fn restore(&mut self, max_timestamp: i64) {
        self.initial = max_timestamp;
        for split in &mut self.splits {
            split.max = split.max.max(max_timestamp);
        }
    }

    /// What the checkpoint keeps: the timestamp the last watermark sent
    /// follows from, so a restore resumes exactly at that watermark.
    pub fn max_timestamp(&self) -> i64 {
        if self.sent == i64::MIN {
            return self.initial;
        }
        self.sent.saturating_add(self.bound).saturating_add(1).max(self.initial)
    }

    fn watermark_of(&self, max: i64) -> i64 {
        if max == i64::MIN {
            return i64::MIN;
        }
        max.saturating_sub(self.bound).saturating_sub(1)
    }

    fn split(&mut self, split: usize, now: i64) -> &mut Split {
        while self.splits.len() <= split {
            self.splits.push(Split { max: self.initial, last: now, idle: false });
        }
        &mut self.splits[split]
    }

    /// A batch was read at processing time `now` from a source of `splits`
    /// splits: `records` holds each record's split and timestamp. Returns
    /// what to send downstream.
    pub fn read(
        &mut self,
        records: impl IntoIterator<Item = (usize, Option<i64>)>,
        splits: usize,
        now: i64,
    ) -> Option<Advance> {
        if splits > 0 {
            self.split(splits - 1, now);
        }
        let mut any = false;
        for (split, timestamp) in records {
            let s = self.split(split, now);
            s.last = now;
            s.idle = false;
            if let Some(t) = timestamp {
                s.max = s.max.max(t);
            }
            any = true;
        }
        if let Some(after) = self.idle_after {
            for s in &mut self.splits {
                s.idle |= now.saturating_sub(s.last) >= after;
            }
        }
        let Some(min) = self.splits.iter().filter(|s| !s.idle).map(|s| s.max).min() else {
            if self.idle || self.splits.is_empty() {
                return None;
            }
            self.idle = true;
            return Some(Advance::Idle);
        };
        let watermark = self.watermark_of(min);
        let due = self.sent_at.is_none_or(|at| now.saturating_sub(at) >= self.interval);
        if (watermark > self.sent && due) || (self.idle && any) {
            self.idle = false;
            self.sent = self.sent.max(watermark);
            self.sent_at = Some(now);
            return Some(Advance::To(self.sent));
        }
        None
    }

    /// What to send first after a restore: the checkpoint's watermark, so
    /// downstream event time resumes where it was.
    pub fn resume(&mut self) -> Option<Advance> {
        let watermark = self.watermark_of(self.initial);
        (watermark > self.sent).then(|| {
            self.sent = watermark;
            Advance::To(watermark)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_the_minimum_over_channels_and_never_goes_back() {
        let mut v = Valve::new(2);
        assert_eq!(v.watermark(0, 10), None, "channel 1 still holds it at the start of time");
        assert_eq!(v.watermark(1, 5), Some(Advance::To(5)));
        assert_eq!(v.watermark(1, 20), Some(Advance::To(10)));
        assert_eq!(v.watermark(0, 8), None, "a channel's watermark never goes back");
        assert_eq!(v.watermark(0, 30), Some(Advance::To(20)));
        assert_eq!(v.current(), 20);
    }

    #[test]
    fn an_ended_channel_stops_holding_time_back() {
        let mut v = Valve::new(2);
        v.watermark(0, 100);
        assert_eq!(v.ended(1), Some(Advance::To(100)));
        assert_eq!(v.ended(0), None);
    }

    #[test]
    fn idle_channels_are_left_out_and_all_idle_is_idle() {
        let mut v = Valve::new(3);
        v.watermark(0, 50);
        v.watermark(1, 40);
        assert_eq!(v.idle(2), Some(Advance::To(40)));
        assert_eq!(v.idle(1), Some(Advance::To(50)));
        assert_eq!(v.idle(0), Some(Advance::Idle));
        assert_eq!(v.idle(0), None, "said once");
        // Back from idleness at the task's watermark: active again.
        assert_eq!(v.watermark(0, 50), Some(Advance::To(50)));
    }

    /// The last active channel going idle while another idle one is ahead:
    /// event time moves to the largest watermark (Flink does the same).
    #[test]
    fn when_all_go_idle_time_moves_to_the_largest_watermark() {
        let mut v = Valve::new(2);
        v.watermark(0, 28_999);
        v.watermark(1, -1_001);
        assert_eq!(v.idle(0), None, "channel 1 still holds it at -1001");
        assert_eq!(v.idle(1), Some(Advance::ToThenIdle(28_999)));
        assert_eq!(v.watermark(1, 0), None, "back, but behind: not counted, no step back");
        assert_eq!(v.current(), 28_999);
    }

    #[test]
    fn a_resumed_valve_never_reports_less_than_the_checkpoint() {
        let mut v = Valve::new(1);
        v.resume_at(500);
        assert_eq!(v.watermark(0, 100), None);
        assert_eq!(v.watermark(0, 600), Some(Advance::To(600)));
    }

    #[test]
    fn a_channel_back_from_idleness_behind_is_ignored_until_it_catches_up() {
        let mut v = Valve::new(2);
        v.watermark(0, 100);
        v.watermark(1, 10);
        assert_eq!(v.idle(1), Some(Advance::To(100)));
        assert_eq!(v.watermark(1, 60), None, "behind the task: not counted");
        assert_eq!(v.watermark(0, 200), Some(Advance::To(200)), "channel 1 does not hold it back");
        assert_eq!(v.watermark(1, 150), None);
        assert_eq!(v.watermark(1, 250), None, "aligned again at 200 … now counted");
        assert_eq!(v.watermark(0, 300), Some(Advance::To(250)));
    }

    fn one(ts: i64) -> Vec<(usize, Option<i64>)> {
        vec![(0, Some(ts))]
    }

    #[test]
    fn the_generator_trails_the_largest_timestamp_by_the_bound() {
        let mut g = Generator::new(5, Some(1000));
        assert_eq!(g.read(one(100), 1, 0), Some(Advance::To(94)));
        assert_eq!(g.read(one(90), 1, 10), None, "out of order: no progress");
        assert_eq!(g.read(one(110), 1, 20), Some(Advance::To(104)));
        assert_eq!(g.read([], 1, 500), None);
        assert_eq!(g.read([], 1, 1020), Some(Advance::Idle), "idle after 1000 ms without records");
        assert_eq!(g.read([], 1, 2000), None, "said once");
        assert_eq!(g.read(one(105), 1, 2100), Some(Advance::To(104)), "a record makes it active again");
    }

    #[test]
    fn a_restored_generator_resumes_at_its_watermark() {
        let mut g = Generator::new(0, None);
        g.read(one(1000), 1, 0);
        let kept = g.max_timestamp();
        let mut restored = Generator::new(0, None);
        restored.restore(kept);
        assert_eq!(restored.resume(), Some(Advance::To(999)));
        assert_eq!(restored.read(one(500), 1, 0), None, "older records do not move it back");
        let mut fresh = Generator::new(0, None);
        assert_eq!(fresh.resume(), None);
    }

    #[test]
    fn with_an_interval_watermarks_wait_for_it() {
        let mut g = Generator::new(0, None).every(200);
        assert_eq!(g.read(one(100), 1, 0), Some(Advance::To(99)), "the first goes at once");
        assert_eq!(g.read(one(200), 1, 150), None, "150 ms later: not yet");
        assert_eq!(g.read(one(300), 1, 199), None);
        assert_eq!(g.read([], 1, 200), Some(Advance::To(299)), "due, with all read so far");
    }

    /// Kafka partitions read unevenly: the watermark follows the slowest
    /// one, and an empty partition holds it back until it is idle.
    #[test]
    fn the_watermark_is_the_minimum_over_splits_and_empty_ones_go_idle() {
        let mut g = Generator::new(0, Some(1000));
        assert_eq!(g.read([(0, Some(500)), (1, Some(100))], 3, 0), None, "split 2 has read nothing yet");
        assert_eq!(g.read([(0, Some(600))], 3, 999), None);
        assert_eq!(g.read([(0, Some(700)), (1, Some(300))], 3, 1000), Some(Advance::To(299)), "split 2 idle");
        assert_eq!(g.read([(0, Some(800))], 3, 1500), None, "split 1 still at 300");
        assert_eq!(g.read([(0, Some(900))], 3, 2000), Some(Advance::To(899)), "split 1 idle too");
        assert_eq!(g.read([(2, Some(50))], 3, 2100), None, "a late split does not move it back");
        assert_eq!(g.read([], 3, 5000), Some(Advance::Idle));
    }
}
