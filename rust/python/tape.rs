//! `_engine.tape_run` and `_engine.tape_grad`: the forward pass of an unlayered training
//! batch in the inference engine with its tape (`crate::engine::tape_batch`), and the
//! backward pass from that tape (`crate::train_kernels::tape_backward_batch`).

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::contiguous;
use super::network::PyNetwork;
use super::results::Collected;
use super::run::run_config;
use crate::counters::{AxisSizes, BatchLayout};
use crate::engine::{labels_from_i64, tape_batch, SampleInput, SampleTape};
use crate::train_kernels::{tape_backward_batch, SurrogateFn, TapeOptions};

/// The tapes of a batch's samples (events, settles, membranes and synaptic currents),
/// kept for the backward pass (opaque to Python).
#[pyclass(frozen, name = "Tape", module = "asyncsnn._engine")]
pub struct PyTape {
    tapes: Vec<SampleTape>,
    timesteps: usize,
    /// The run's input mode (R2.3, R4.13), seed and dropout (R4.6, R4.11), which the
    /// backward pass reads the tapes by.
    prioritized: bool,
    seed: u64,
    spike_dropout: f64,
    refractory_dropout: Vec<f64>,
}

#[pymethods]
impl PyTape {
    /// The number of samples.
    fn __len__(&self) -> usize {
        self.tapes.len()
    }

    /// The number of recorded events of every sample (input events, spikes and
    /// deliveries, R7.10).
    #[getter]
    fn events(&self) -> Vec<usize> {
        self.tapes.iter().map(|t| t.events.len()).collect()
    }

    /// The bytes the tapes hold (events, settles, membranes and synaptic currents).
    #[getter]
    fn nbytes(&self) -> usize {
        self.tapes.iter().map(SampleTape::nbytes).sum()
    }
}

/// Runs a dense batch `[B, T, n_in]` and returns its counters (the dict of
/// `_engine.run`) and its tape. The options are those of `_engine.run`.
#[pyfunction]
#[pyo3(signature = (network, dense, labels, sample_ids, scheduler, forward_group_size, stop, extra_steps,
                    max_steps, seed, jitter, refractory_dropout, input_dropout, spike_dropout,
                    prioritize_input, parallel))]
#[allow(clippy::too_many_arguments)]
pub(super) fn tape_run<'py>(
    py: Python<'py>,
    network: &Bound<'py, PyNetwork>,
    dense: PyReadonlyArray3<'py, f32>,
    labels: Option<PyReadonlyArray1<'py, i64>>,
    sample_ids: PyReadonlyArray1<'py, u64>,
    scheduler: &str,
    forward_group_size: usize,
    stop: &str,
    extra_steps: u32,
    max_steps: Option<u32>,
    seed: u64,
    jitter: f32,
    refractory_dropout: Option<Vec<f64>>,
    input_dropout: f64,
    spike_dropout: f64,
    prioritize_input: bool,
    parallel: bool,
) -> PyResult<(Bound<'py, PyDict>, PyTape)> {
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
    let dropout = (refractory_dropout.clone(), input_dropout, spike_dropout);
    let config = run_config(options, dropout, prioritize_input)?;
    let shape = [dense.shape()[0], dense.shape()[1], dense.shape()[2]];
    let timesteps = shape[1];
    let values = dense.as_slice().map_err(contiguous("dense"))?;
    let inputs = SampleInput::batch(Some((values, shape)), None, timesteps, net.input_size())?;
    let ids = sample_ids.as_slice().map_err(contiguous("sample_ids"))?;
    let labels = (labels.as_ref().map(|a| a.as_slice()).transpose())
        .map_err(contiguous("labels"))?
        .map(labels_from_i64);
    let sizes = AxisSizes::of_run(net, timesteps);
    let mut collected = Collected::new(py, BatchLayout::new(inputs.len(), &sizes)?)?;
    let runs = py.detach(|| tape_batch(net, &inputs, labels.as_deref(), ids, &config, parallel))?;
    let mut tapes = Vec::with_capacity(runs.len());
    for (res, tape) in runs {
        collected.push(&res)?;
        tapes.push(tape);
    }
    let tape = PyTape {
        tapes,
        timesteps,
        prioritized: prioritize_input,
        seed,
        spike_dropout,
        refractory_dropout: refractory_dropout.unwrap_or_default(),
    };
    Ok((collected.into_dict(py)?, tape))
}

/// The weight gradients of a taped batch given the gradient `g_counts` (`[B, T,
/// n_out]`, flat) of its per-timestep output counts, with the surrogate terms of
/// `surrogate_terms="fired"` or, with `every_step`, `"every_step"`: one flat float32
/// array per projection in the engine's transposed layout (`[n_source, n_target]`),
/// then the biases' gradient (`[N]`, by neuron id; 0 where a population does not
/// settle).
#[pyfunction]
#[pyo3(signature = (tape, network, g_counts, surrogate, p, q, every_step, parallel))]
#[allow(clippy::too_many_arguments)]
pub(super) fn tape_grad<'py>(
    py: Python<'py>,
    tape: &Bound<'py, PyTape>,
    network: &Bound<'py, PyNetwork>,
    g_counts: PyReadonlyArray1<'py, f32>,
    surrogate: &str,
    p: f32,
    q: f32,
    every_step: bool,
    parallel: bool,
) -> PyResult<Vec<Bound<'py, PyArray1<f32>>>> {
    let sur = SurrogateFn::from_name(surrogate, p, q)?;
    let net = &network.get().inner;
    let tape = tape.get();
    let g = g_counts.as_slice().map_err(contiguous("g_counts"))?;
    let refs: Vec<&SampleTape> = tape.tapes.iter().collect();
    let opts = TapeOptions {
        surrogate: sur,
        prioritized: tape.prioritized,
        every_step,
        seed: tape.seed,
        spike_dropout: tape.spike_dropout,
        refractory_dropout: tape.refractory_dropout.clone(),
    };
    let grads =
        py.detach(|| tape_backward_batch(net, &refs, tape.timesteps, g, &opts, parallel))?;
    Ok(grads.into_iter().map(|g| g.into_pyarray(py)).collect())
}
