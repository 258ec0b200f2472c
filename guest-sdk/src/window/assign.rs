//! Which windows a record's timestamp falls in: [`Window`], and the
//! assigner behind [`Windows`](super::Windows)' constructors. Pure
//! arithmetic, no state.

use crate::Error;

/// The event times `[start, end)`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First time in the window.
    pub start: i64,
    /// First time after it.
    pub end: i64,
}

impl Window {
    /// Its last time, `end - 1`: it fires once the watermark reaches it.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }
}

/// How records are put into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Assigner {
    /// Windows of `size` starting every `slide` (tumbling: `slide == size`),
    /// shifted by `offset`.
    Fixed { size: i64, slide: i64, offset: i64 },
    /// `[ts, ts + gap)` per record, merged while they overlap or touch (records at most `gap` apart are one session).
    Session { gap: i64 },
}

impl Assigner {
    /// Why these windows cannot work, if they cannot.
    pub(super) fn check(&self) -> Result<(), Error> {
        let (what, ms) = match *self {
            Self::Fixed { size, .. } if size <= 0 => ("size", size),
            Self::Fixed { slide, .. } if slide <= 0 => ("slide", slide),
            Self::Session { gap } if gap <= 0 => ("gap", gap),
            _ => return Ok(()),
        };
        Err(Error::msg(format!("a window {what} must be positive (ms), not {ms}")))
    }

    /// The fixed windows containing `ts`, earliest first (empty for sessions).
    pub(super) fn fixed(&self, ts: i64) -> impl Iterator<Item = Window> + use<> {
        let (size, slide, offset) = match *self {
            Self::Fixed { size, slide, offset } => (i128::from(size), i128::from(slide), i128::from(offset)),
            Self::Session { .. } => (0, 1, 0),
        };
        // In i128: a window near either end of time does not overflow.
        let ts = i128::from(ts);
        let last = ts - (ts - offset).rem_euclid(slide);
        // Starts `last - k * slide` while the window still reaches `ts`.
        let count = if size > 0 { (size - 1) / slide + 1 } else { 0 };
        let clamp = |t: i128| t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        (0..count)
            .rev()
            .map(move |k| last - k * slide)
            .filter(move |start| start + size > ts)
            .map(move |start| Window { start: clamp(start), end: clamp(start + size) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(assigner: Assigner, ts: i64) -> Vec<(i64, i64)> {
        assigner.fixed(ts).map(|w| (w.start, w.end)).collect()
    }

    /// Tumbling windows tile time from 0 (or the offset), negative times
    /// included; sliding ones are every window of the size starting at a
    /// multiple of the slide that contains the time; neither overflows at
    /// the ends of time.
    #[test]
    fn fixed_windows_contain_their_timestamp() {
        let tumbling = |size, offset| Assigner::Fixed { size, slide: size, offset };
        assert_eq!(fixed(tumbling(10, 0), 0), [(0, 10)]);
        assert_eq!(fixed(tumbling(10, 0), 9), [(0, 10)]);
        assert_eq!(fixed(tumbling(10, 0), -1), [(-10, 0)]);
        assert_eq!(fixed(tumbling(10, 0), -10), [(-10, 0)]);
        assert_eq!(fixed(tumbling(10, 0), -11), [(-20, -10)]);
        assert_eq!(fixed(tumbling(10, 3), 2), [(-7, 3)]);
        assert_eq!(fixed(tumbling(10, 3), 3), [(3, 13)]);
        assert_eq!(fixed(tumbling(10, -7), 3), [(3, 13)]);
        let sliding = |size, slide| Assigner::Fixed { size, slide, offset: 0 };
        assert_eq!(fixed(sliding(10, 5), 7), [(0, 10), (5, 15)]);
        assert_eq!(fixed(sliding(10, 5), 5), [(0, 10), (5, 15)]);
        assert_eq!(fixed(sliding(10, 5), -1), [(-10, 0), (-5, 5)]);
        assert_eq!(fixed(sliding(10, 3), 0), [(-9, 1), (-6, 4), (-3, 7), (0, 10)]);
        assert_eq!(fixed(sliding(5, 10), 7), [], "a gap between windows holds no window");
        assert_eq!(fixed(sliding(5, 10), 4), [(0, 5)]);
        assert_eq!(fixed(tumbling(10, 0), i64::MAX), [(i64::MAX - 7, i64::MAX)]);
        assert_eq!(fixed(tumbling(10, 0), i64::MIN), [(i64::MIN, i64::MIN + 8)]);
        assert_eq!(fixed(Assigner::Session { gap: 5 }, 3), []);
    }
}
