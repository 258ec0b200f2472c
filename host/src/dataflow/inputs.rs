//! A subtask's input side: every channel into it, read fairly. A channel is
//! done when it delivers [`Message::End`]; one that disconnects first means
//! its sender failed, so this subtask stops too.

use crossbeam_channel::{Receiver, Select, TryRecvError};

use super::Cancelled;
use super::message::{Batch, Message};

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
    /// Every channel delivered `End`.
    AllEnded,
}

/// The input channels of one subtask.
pub struct Inputs {
    /// Receivers, one per upstream subtask per incoming edge. Dropping them
    /// (when the task exits) makes upstream sends fail: that is how a
    /// failure propagates upstream.
    channels: Vec<Receiver<Message>>,
    open: Vec<bool>,
    open_count: usize,
}

impl Inputs {
    /// Reads from `channels`.
    pub fn new(channels: Vec<Receiver<Message>>) -> Self {
        let open = vec![true; channels.len()];
        let open_count = channels.len();
        Self { channels, open, open_count }
    }

    /// The next batch from any channel that has one. Calls `on_idle` (to
    /// flush outputs) before blocking.
    ///
    /// # Errors
    /// [`Cancelled`] if an upstream task failed, or `on_idle` did.
    pub fn next(&mut self, mut on_idle: impl FnMut() -> Result<(), Cancelled>) -> Result<Next, Cancelled> {
        loop {
            if self.open_count == 0 {
                return Ok(Next::AllEnded);
            }
            let (channel, message) = match self.try_next()? {
                Some(found) => found,
                None => {
                    on_idle()?;
                    self.blocking_next()?
                }
            };
            match message {
                Message::Batch(batch) => return Ok(Next::Batch { channel, batch }),
                Message::End => {
                    self.open[channel] = false;
                    self.open_count -= 1;
                }
            }
        }
    }

    fn select(&self) -> (Select<'_>, Vec<usize>) {
        let mut sel = Select::new();
        let mut index = Vec::with_capacity(self.open_count);
        for (i, rx) in self.channels.iter().enumerate().filter(|(i, _)| self.open[*i]) {
            sel.recv(rx);
            index.push(i);
        }
        (sel, index)
    }

    fn try_next(&self) -> Result<Option<(usize, Message)>, Cancelled> {
        if self.open_count == 1 {
            let i = self.open.iter().position(|&o| o).expect("one is open");
            return match self.channels[i].try_recv() {
                Ok(m) => Ok(Some((i, m))),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Disconnected) => Err(Cancelled),
            };
        }
        let (mut sel, index) = self.select();
        match sel.try_select() {
            Ok(op) => {
                let i = index[op.index()];
                op.recv(&self.channels[i]).map(|m| Some((i, m))).map_err(|_| Cancelled)
            }
            Err(_) => Ok(None),
        }
    }

    fn blocking_next(&self) -> Result<(usize, Message), Cancelled> {
        let (mut sel, index) = self.select();
        let op = sel.select();
        let i = index[op.index()];
        op.recv(&self.channels[i]).map(|m| (i, m)).map_err(|_| Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_only_when_every_channel_ended() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded();
        let (b_tx, b_rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![a_rx, b_rx]);
        a_tx.send(Message::End).unwrap();
        b_tx.send(Message::Batch(Batch { bytes: vec![], records: 1 })).unwrap();
        b_tx.send(Message::End).unwrap();
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::Batch { channel: 1, .. }));
        assert!(matches!(inputs.next(|| Ok(())).unwrap(), Next::AllEnded));
    }

    #[test]
    fn disconnect_without_end_is_cancellation() {
        let (a_tx, a_rx) = crossbeam_channel::unbounded::<Message>();
        let mut inputs = Inputs::new(vec![a_rx]);
        drop(a_tx);
        assert!(inputs.next(|| Ok(())).is_err());
    }

    #[test]
    fn idle_hook_runs_before_blocking() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut inputs = Inputs::new(vec![rx]);
        let mut idled = 0;
        let sender = std::thread::spawn(move || tx.send(Message::End).unwrap());
        let next = inputs.next(|| {
            idled += 1;
            Ok(())
        });
        sender.join().unwrap();
        assert!(matches!(next, Ok(Next::AllEnded)));
        assert!(idled <= 1);
    }
}
