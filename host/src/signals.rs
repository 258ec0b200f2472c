//! SIGTERM and SIGINT for `weir run`: the first asks for an orderly cancel
//! (the same as `weir cancel`: tasks stop, unsealed output is discarded,
//! exit 3); a second one exits at once. Runs on a thread of its own with a
//! small tokio runtime, the one place signals are handled.

use std::sync::Arc;

use crate::api::JobControl;

/// Watches for SIGTERM and SIGINT on behalf of the job behind `control`.
/// Failing to install the handlers leaves the default behaviour (and says so).
pub fn watch(control: Arc<JobControl>) {
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::warn!("cannot watch for signals ({e}); SIGTERM kills weir at once"),
        };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return tracing::warn!("cannot watch for signals; SIGTERM kills weir at once");
            };
            let first = next(&mut term, &mut int).await;
            tracing::warn!("{first}: cancelling the job in an orderly way (send it again to exit at once)");
            control.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            let second = next(&mut term, &mut int).await;
            eprintln!("error: {second} again: exiting at once; the next run resumes from the last checkpoint");
            std::process::exit(if second == "SIGINT" { 130 } else { 143 });
        });
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for signals ({e}); SIGTERM kills weir at once");
    }
}

/// The name of the next of the two signals to arrive.
async fn next(term: &mut tokio::signal::unix::Signal, int: &mut tokio::signal::unix::Signal) -> &'static str {
    match futures::future::select(Box::pin(term.recv()), Box::pin(int.recv())).await {
        futures::future::Either::Left(_) => "SIGTERM",
        futures::future::Either::Right(_) => "SIGINT",
    }
}
