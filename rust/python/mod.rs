//! The PyO3 binding: the only module that knows about Python. It converts numpy
//! buffers and Python values, calls the Rust core and converts its results and errors;
//! the policy of a batch run (chunks, Ctrl-C, thread pools) is
//! [`crate::engine::BatchRunner`]'s.
//!
//! - `errors.rs`: `EngineError` -> `asyncsnn.exceptions` (the one conversion);
//! - `network.rs`: `_engine.Network`;
//! - `run.rs`: `_engine.run` (a batch through [`crate::engine::BatchRunner`]);
//! - `results.rs`: the counters written straight into read-only numpy arrays;
//! - `train_kernels.rs`: the torch engine's CPU kernels;
//! - `tape.rs`: the taped forward pass of an unlayered training batch and its backward.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};

use crate::counters::COUNTERS;
use crate::kernels;
use errors::contiguous;

mod errors;
mod network;
mod results;
mod run;
mod tape;
mod train_kernels;

/// The shared counter-based random function of docs/semantics.md R5.5 (for tests).
#[pyfunction]
fn hash32(seed: u64, sample: u32, t: u32, k: u32, neuron: u32, stream: u32) -> u32 {
    crate::rng::hash(seed, sample, t, k, neuron, stream)
}

/// Number of threads of the default pool (the number of CPUs unless configured).
#[pyfunction]
fn default_threads() -> usize {
    rayon::current_num_threads()
}

/// Roofline reference of `benches/compare.py` (see `crate::kernels::axpy_roofline`):
/// adds the rows of `weights` (`[n_rows, row_len]`, row-major) listed in `rows` into a
/// zeroed accumulator of `row_len` floats, `repeats` times, with the interpreter
/// released. Returns `(seconds, float additions, kernel name)`.
#[pyfunction]
fn axpy_roofline(
    py: Python<'_>,
    weights: PyReadonlyArray1<'_, f32>,
    row_len: usize,
    rows: PyReadonlyArray1<'_, u32>,
    repeats: usize,
) -> PyResult<(f64, u64, &'static str)> {
    let w = weights.as_slice().map_err(contiguous("weights"))?;
    let r = rows.as_slice().map_err(contiguous("rows"))?;
    let (secs, adds) = py.detach(|| kernels::axpy_roofline(w, row_len, r, repeats))?;
    Ok((secs, adds, kernels::row_kernel_name()))
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<network::PyNetwork>()?;
    m.add_class::<tape::PyTape>()?;
    m.add_function(wrap_pyfunction!(tape::tape_run, m)?)?;
    m.add_function(wrap_pyfunction!(tape::tape_grad, m)?)?;
    m.add_function(wrap_pyfunction!(run::run, m)?)?;
    m.add_function(wrap_pyfunction!(hash32, m)?)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(axpy_roofline, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::deliver_backward, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::deliver_forward, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::step_forward, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::step_backward, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::merge_pending, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::select_pending, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::record_outputs, m)?)?;
    m.add_function(wrap_pyfunction!(train_kernels::silent_grad, m)?)?;
    m.add("SPEC_VERSION", crate::SPEC_VERSION)?;
    // The counters of R7 with their per-sample axes, a tuple of (name, axes) tuples:
    // asyncsnn.result.COUNTER_FIELDS is built from it.
    let py = m.py();
    let counters = COUNTERS
        .iter()
        .map(|c| Ok((c.name, PyTuple::new(py, c.axes.iter().map(|a| a.name()))?)))
        .collect::<PyResult<Vec<_>>>()?;
    m.add("COUNTERS", PyTuple::new(py, counters)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
