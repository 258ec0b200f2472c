//! A guest's stdout and stderr: streamed into the host log line by line,
//! tagged with the operator and subtask, escaped, and rate-limited — and
//! never a reason for the guest to trap (a fixed-size pipe made an operator
//! that logged a line per record trap after ~4,500 lines). The last
//! [`TAIL`] bytes of stderr are kept to recover a panic's message.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::text::{MAX_MESSAGE, untrusted};

/// Bytes of stderr kept for panic messages.
pub const TAIL: usize = 64 * 1024;

/// Lines per second an instance may put in the log; the rest are counted
/// and reported as dropped.
pub const LINES_PER_SECOND: u32 = 100;

/// One stream (stdout or stderr) of one guest instance. Cloned into WASI;
/// all clones share the state.
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    operator: Arc<str>,
    subtask: u32,
    stream: &'static str,
    /// The line being written.
    line: Vec<u8>,
    /// The last [`TAIL`] bytes written.
    tail: VecDeque<u8>,
    window: Instant,
    lines: u32,
    dropped: u64,
}

impl GuestOutput {
    /// The `stream` ("stdout" or "stderr") of `operator`'s `subtask`.
    pub fn new(operator: Arc<str>, subtask: u32, stream: &'static str) -> Self {
        let inner = Inner {
            operator,
            subtask,
            stream,
            line: Vec::new(),
            tail: VecDeque::new(),
            window: Instant::now(),
            lines: 0,
            dropped: 0,
        };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// The last [`TAIL`] bytes written.
    pub fn tail(&self) -> Vec<u8> {
        self.lock().tail.iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_bytes(&self, bytes: &[u8]) {
        self.lock().write(bytes);
    }
}

impl Inner {
    fn write(&mut self, bytes: &[u8]) {
        self.tail.extend(bytes.iter().copied().skip(bytes.len().saturating_sub(TAIL)));
        let excess = self.tail.len().saturating_sub(TAIL);
        self.tail.drain(..excess);
        for &b in bytes {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_MESSAGE {
                    self.emit();
                }
            }
        }
    }

    fn report_dropped(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                operator = &*self.operator,
                subtask = self.subtask,
                "{}: {} line(s) not logged (more than {LINES_PER_SECOND} a second)",
                self.stream,
                self.dropped
            );
            self.dropped = 0;
        }
    }

    fn emit(&mut self) {
        let line = std::mem::take(&mut self.line);
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.report_dropped();
            (self.window, self.lines) = (Instant::now(), 0);
        }
        if self.lines >= LINES_PER_SECOND {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        let text = untrusted(&String::from_utf8_lossy(&line), MAX_MESSAGE);
        tracing::info!(operator = &*self.operator, subtask = self.subtask, "{}: {text}", self.stream);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
        self.report_dropped();
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always room: what does not fit the log is counted, not refused.
        Ok(TAIL)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 #5: however much a guest writes, it is accepted (never a
    /// trap), and the tail keeps the last bytes for panic messages.
    #[test]
    fn output_is_always_accepted_and_the_tail_kept() {
        let mut out = GuestOutput::new("op".into(), 0, "stderr");
        for i in 0..20_000 {
            assert_eq!(out.check_write().unwrap(), TAIL);
            out.write(Bytes::from(format!("line {i}\n"))).unwrap();
        }
        out.write(Bytes::from_static(b"thread panicked at x.rs:1:1:\nboom\n")).unwrap();
        let tail = out.tail();
        assert!(tail.len() <= TAIL);
        assert!(String::from_utf8_lossy(&tail).ends_with("boom\n"));
        assert!(out.lock().dropped > 0, "more than {LINES_PER_SECOND} lines a second are dropped from the log");
    }
}
