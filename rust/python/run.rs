//! `_engine.run`: numpy buffers in, [`BatchRunner`] with the interpreter released,
//! numpy arrays out.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::internal;
use super::network::PyNetwork;
use super::results::Collected;
use crate::counters::{AxisSizes, BatchLayout};
use crate::engine::{
    labels_from_i64, trace_batch, BatchRunner, RunConfig, SampleInput, StopMode, TraceColumns,
};
use crate::scheduler::Scheduler;

type SparseSample<'py> = (
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, f32>,
);

/// The run options of `_engine.run` (and `_engine.tape_run`) as they come from Python:
/// `(scheduler, forward_group_size, stop, extra_steps, max_steps, seed, jitter)`.
pub(super) type RunOptions<'a> = (&'a str, usize, &'a str, u32, Option<u32>, u64, f32);

/// The [`RunConfig`] of the run options, the dropout `(refractory, input, spike)` and
/// the input mode; an unknown scheduler or stop mode is a parameter error.
pub(super) fn run_config(
    options: RunOptions<'_>,
    dropout: (Option<Vec<f64>>, f64, f64),
    prioritize_input: bool,
) -> PyResult<RunConfig> {
    let (scheduler, forward_group_size, stop, extra_steps, max_steps, seed, jitter) = options;
    let (refractory_dropout, input_dropout, spike_dropout) = dropout;
    Ok(RunConfig {
        scheduler: scheduler.parse::<Scheduler>()?.with_jitter(jitter),
        forward_group_size,
        stop: stop.parse::<StopMode>()?.with_extra_steps(extra_steps),
        max_steps,
        seed,
        refractory_dropout,
        input_dropout,
        spike_dropout,
        prioritize_input,
    })
}

/// Run a batch through the engine; returns a dict of read-only int64 numpy arrays, one
/// per counter of `COUNTERS` (`asyncsnn.result.COUNTER_FIELDS`), in that order.
///
/// With `trace`, the dict also holds the events of every sample as `trace_<column>`
/// arrays (R7.10, [`TraceColumns`]).
///
/// Arguments are validated by `asyncsnn._prepare` first; the engine validates again
/// and raises the matching `asyncsnn.exceptions` class. `sample_ids` None means the
/// positions in the batch.
#[pyfunction]
#[pyo3(signature = (network, dense, sparse, timesteps, labels, sample_ids, scheduler, forward_group_size,
                    stop, extra_steps, max_steps, seed, jitter, refractory_dropout, threads, trace=false,
                    input_dropout=0.0, spike_dropout=0.0, prioritize_input=true))]
#[allow(clippy::too_many_arguments)]
pub(super) fn run<'py>(
    py: Python<'py>,
    network: &Bound<'py, PyNetwork>,
    dense: Option<PyReadonlyArray3<'py, f32>>,
    sparse: Option<Vec<SparseSample<'py>>>,
    timesteps: usize,
    labels: Option<PyReadonlyArray1<'py, i64>>,
    sample_ids: Option<PyReadonlyArray1<'py, u64>>,
    scheduler: &str,
    forward_group_size: usize,
    stop: &str,
    extra_steps: u32,
    max_steps: Option<u32>,
    seed: u64,
    jitter: f32,
    refractory_dropout: Option<Vec<f64>>,
    threads: Option<usize>,
    trace: bool,
    input_dropout: f64,
    spike_dropout: f64,
    prioritize_input: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let net = &network.get().inner;
    let options = (
        scheduler,
        forward_group_size,
        stop,
        extra_steps,
        max_steps,
        seed,
        jitter,
    );
    let dropout = (refractory_dropout, input_dropout, spike_dropout);
    let config = run_config(options, dropout, prioritize_input)?;
    let dense = (dense.as_ref())
        .map(|a| Ok((a.as_slice()?, [a.shape()[0], a.shape()[1], a.shape()[2]])))
        .transpose()
        .map_err(internal("inputs are not contiguous"))?;
    let sparse = (sparse.as_ref())
        .map(|list| {
            (list.iter())
                .map(|(t, index, value)| Ok((t.as_slice()?, index.as_slice()?, value.as_slice()?)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(internal("sparse events not contiguous"))?;
    let inputs = SampleInput::batch(dense, sparse, timesteps, net.input_size())?;
    let ids = (sample_ids.as_ref().map(|a| a.as_slice()).transpose())
        .map_err(internal("sample_ids not contiguous"))?;
    let labels = (labels.as_ref().map(|a| a.as_slice()).transpose())
        .map_err(internal("labels not contiguous"))?
        .map(labels_from_i64);
    let sizes = AxisSizes::of_run(net, timesteps);
    let mut collected = Collected::new(py, BatchLayout::new(inputs.len(), &sizes)?)?;
    if trace {
        // R7.10, for a few samples: one call, not in chunks (no Ctrl-C inside it).
        let cancel = AtomicBool::new(false);
        let (results, traces) =
            py.detach(|| trace_batch(net, &inputs, labels.as_deref(), ids, &config, &cancel))?;
        for r in &results {
            collected.push(r)?;
        }
        let dict = collected.into_dict(py)?;
        let columns = TraceColumns::new(&traces);
        for (name, column) in TraceColumns::INT_NAMES.into_iter().zip(columns.ints) {
            dict.set_item(format!("trace_{name}"), column.into_pyarray(py))?;
        }
        dict.set_item("trace_value", columns.value.into_pyarray(py))?;
        return Ok(dict);
    }
    let mut runner = BatchRunner::new(net, &inputs, labels.as_deref(), ids, config, threads)?;
    py.detach(|| runner.check_values())?;
    // Ctrl-C: Python's signal handlers run only on this thread, so the runner asks this
    // thread (`poll`) while a chunk runs; a signal's exception is kept and raised here.
    let signal: Mutex<Option<PyErr>> = Mutex::new(None);
    let poll = || {
        Python::attach(|py| py.check_signals()).is_err_and(|e| {
            *signal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            true
        })
    };
    while let Some(chunk) = py.detach(|| runner.next_chunk(&poll)) {
        if let Some(e) = signal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        for r in &chunk? {
            collected.push(r)?;
        }
        py.check_signals()?;
    }
    collected.into_dict(py)
}
