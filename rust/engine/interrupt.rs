//! Cancellation of a run (Ctrl-C): [`Interrupt`], read by the event loop at every
//! timestep and by the batch between samples.

use std::sync::atomic::{AtomicBool, Ordering};

/// How a run learns that it should stop early (Ctrl-C): `cancel` is read at every
/// timestep; `poll`, when given, is called from the running thread at most every
/// [`POLL_INTERVAL`] (the binding's poll checks Python's signals, which only the
/// thread that called into the engine may do) and sets `cancel` when it returns true.
pub struct Interrupt<'a> {
    /// Set (by anyone) to stop the run: it then returns [`EngineError::Cancelled`](crate::EngineError::Cancelled).
    pub cancel: &'a AtomicBool,
    /// Asked now and then, on the running thread, whether to stop.
    pub poll: Option<&'a (dyn Fn() -> bool + Sync)>,
}

/// The least time between two calls of [`Interrupt::poll`] within one sample.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

impl Interrupt<'_> {
    /// Whether the run should stop, at timestep `t`; `last` is the time of the latest
    /// poll (the clock is read every 16 timesteps only).
    #[inline(always)]
    pub(super) fn stop(&self, t: usize, last: &mut std::time::Instant) -> bool {
        if self.cancel.load(Ordering::Relaxed) {
            return true;
        }
        match self.poll {
            Some(poll) if t % 16 == 0 && last.elapsed() >= POLL_INTERVAL => {
                *last = std::time::Instant::now();
                let stop = poll();
                if stop {
                    self.cancel.store(true, Ordering::Relaxed);
                }
                stop
            }
            _ => false,
        }
    }
}
