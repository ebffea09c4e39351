//! [`BatchRunner`]: the policy of running a large batch for an interactive caller (the
//! Python binding): the dense values of the whole batch checked first, then the batch
//! run in chunks of about 0.1 s on a cached thread pool, a cancel flag read by the
//! engine at every timestep, and a caller's `poll` (Ctrl-C) asked while a chunk runs.
//!
//! The runner knows nothing about Python: `poll` is a plain closure (the binding's
//! checks Python's signals), and the caller converts the results of each chunk.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::batch::run_batch_checked;
use super::config::RunConfig;
use super::input::{check_dense_values, SampleInput};
use super::interrupt::Interrupt;
use crate::counters::SampleResult;
use crate::error::{EngineError, Location};
use crate::network::Network;

/// A caller's question "should the run stop?", asked from the thread that called the
/// runner (the only one where Python runs its signal handlers).
pub type Poll<'a> = &'a (dyn Fn() -> bool + Sync);

/// Runs one batch in chunks; see the module documentation. Call [`check_values`]
/// (optional), then [`next_chunk`] until it returns `None`; the chunks' results
/// concatenated are the batch's results in input order, identical to [`run_batch`]'s
/// for any thread count.
///
/// [`check_values`]: BatchRunner::check_values
/// [`next_chunk`]: BatchRunner::next_chunk
/// [`run_batch`]: super::run_batch
pub struct BatchRunner<'a> {
    net: &'a Network,
    inputs: &'a [SampleInput<'a>],
    labels: Option<&'a [Option<usize>]>,
    ids: Cow<'a, [u64]>,
    config: RunConfig,
    pool: Option<Arc<rayon::ThreadPool>>,
    workers: usize,
    /// The size of the next chunk and its first sample.
    chunk: usize,
    next: usize,
    /// Whether [`BatchRunner::check_values`] ran (the engine then skips that check).
    values_checked: bool,
    cancel: AtomicBool,
}

impl<'a> BatchRunner<'a> {
    /// A runner of `inputs` (with `labels`, one per sample, and `sample_ids`: `None`
    /// means the positions in the batch) on `threads` threads (`None`: rayon's global
    /// pool; a requested count gets a pool of its own, cached for later calls).
    ///
    /// Checks, in this order, one id per sample, one label per sample and `threads >=
    /// 1`; everything else is checked by [`BatchRunner::check_values`] and the engine.
    pub fn new(
        net: &'a Network,
        inputs: &'a [SampleInput<'a>],
        labels: Option<&'a [Option<usize>]>,
        sample_ids: Option<&'a [u64]>,
        config: RunConfig,
        threads: Option<usize>,
    ) -> Result<BatchRunner<'a>, EngineError> {
        let batch = inputs.len();
        let ids = match sample_ids {
            Some(ids) => Cow::Borrowed(ids),
            None => Cow::Owned((0..batch as u64).collect()),
        };
        if ids.len() != batch {
            let reason = "must give one id per sample";
            return Err(EngineError::parameter("sample_ids", ids.len(), reason));
        }
        if let Some(l) = labels.filter(|l| l.len() != batch) {
            let reason = "must give one label per sample";
            return Err(EngineError::parameter("labels", l.len(), reason));
        }
        let pool = match threads {
            Some(0) => return Err(EngineError::parameter("threads", 0, "must be >= 1")),
            Some(n) => Some(thread_pool(n)?),
            None => None,
        };
        let workers = pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
            .max(1);
        Ok(BatchRunner {
            net,
            inputs,
            labels,
            ids,
            config,
            pool,
            workers,
            chunk: workers,
            next: 0,
            values_checked: false,
            cancel: AtomicBool::new(false),
        })
    }

    /// Checks every dense value of the batch before any sample runs, so that a bad
    /// value anywhere is an error before anything runs; the error names the first bad
    /// sample by its position. The check runs on the workers (a serial pass over a large
    /// batch cost a few % of a 2-thread run), and the engine does not repeat it.
    pub fn check_values(&mut self) -> Result<(), EngineError> {
        let n_in = self.net.input_size();
        let check = |(b, input): (usize, &SampleInput<'_>)| match input {
            SampleInput::Dense { frames, .. } => {
                check_dense_values(frames, n_in, &Location::Sample(b as u64)).err()
            }
            SampleInput::Sparse { .. } => None,
        };
        let inputs = self.inputs;
        let parallel = self.workers > 1 && inputs.len() > 1;
        let bad = on_pool(self.pool.as_deref(), parallel, || {
            if parallel {
                inputs.par_iter().enumerate().find_map_first(check)
            } else {
                inputs.iter().enumerate().find_map(check)
            }
        });
        self.values_checked = true;
        bad.map_or(Ok(()), Err)
    }

    /// Runs the next chunk and returns its results (`None` once the batch is done).
    /// `poll` is asked at most every 50 ms while the chunk runs: from inside the event
    /// loop when this thread runs the chunk itself (one sample or one thread), from a
    /// wait loop while the pool runs it; when it says stop, the engine stops at its next
    /// timestep with [`EngineError::Cancelled`]. Errors name samples by their position
    /// in the whole batch.
    pub fn next_chunk(&mut self, poll: Poll<'_>) -> Option<Result<Vec<SampleResult>, EngineError>> {
        let (start, batch) = (self.next, self.inputs.len());
        if start >= batch {
            return None;
        }
        let end = (start + self.chunk).min(batch);
        let tic = Instant::now();
        let labels = self.labels.map(|l| &l[start..end]);
        let (ids, cancel) = (&self.ids[start..end], &self.cancel);
        // One sample or one thread: run on this thread, without handing work to the
        // pool and back (the cost that dominates small calls).
        let parallel = self.workers > 1 && end - start > 1;
        let run = |stop: &Interrupt| {
            let part = &self.inputs[start..end];
            let checked = self.values_checked;
            run_batch_checked(
                self.net,
                part,
                labels,
                ids,
                &self.config,
                stop,
                parallel,
                checked,
            )
        };
        let result = if parallel {
            let stop = Interrupt { cancel, poll: None };
            let pool = self.pool.as_deref();
            watched(|| on_pool(pool, true, || run(&stop)), cancel, poll)
        } else {
            run(&Interrupt {
                cancel,
                poll: Some(poll),
            })
        };
        // Aim for chunks of about 0.1 s so that an interrupt is seen promptly, growing
        // at most 16x from one chunk to the next (which bounds how much longer than
        // planned a chunk runs after unusually fast samples). Each chunk ends with a
        // barrier where a worker waits for the others' last samples, so few chunks are
        // better: growing 4x, a 2-thread batch of 256 conv samples ran 5 chunks and took
        // about 6 % longer than with 3.
        let secs = tic.elapsed().as_secs_f64().max(1e-6);
        let ideal = ((end - start) as f64 * 0.1 / secs) as usize;
        let most = self.chunk.saturating_mul(16).max(self.workers);
        self.chunk = ideal.clamp(self.workers, most);
        self.next = end;
        Some(result.map_err(|e| e.offset_sample(start)))
    }
}

/// The thread pool of `threads` threads, built once and cached for later calls.
fn thread_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, EngineError> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = map.get(&threads) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("asyncsnn-{i}"))
        .build()
        .map_err(|e| {
            let reason = format!("cannot start the thread pool: {e}");
            EngineError::parameter("threads", threads, reason)
        })?;
    let pool = Arc::new(pool);
    map.insert(threads, pool.clone());
    Ok(pool)
}

/// Runs `job` on a scoped thread while this thread asks `poll` every 20 ms whether to
/// stop; when it says so, sets `cancel` (the engine stops at its next timestep).
fn watched<R: Send>(job: impl FnOnce() -> R + Send, cancel: &AtomicBool, poll: Poll<'_>) -> R {
    let waiter = std::thread::current();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            let r = job();
            done.store(true, Ordering::Release);
            waiter.unpark();
            r
        });
        while !done.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(20));
            if !done.load(Ordering::Acquire) && !cancel.load(Ordering::Relaxed) && poll() {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `job` inside `pool` when `parallel` (a requested thread count has its own
/// pool; without one, rayon's global pool), otherwise on this thread.
fn on_pool<R: Send>(
    pool: Option<&rayon::ThreadPool>,
    parallel: bool,
    job: impl FnOnce() -> R + Send,
) -> R {
    match (pool, parallel) {
        (Some(p), true) => p.install(job),
        _ => job(),
    }
}
