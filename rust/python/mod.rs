//! The PyO3 binding: the only module that knows about Python. It converts numpy
//! buffers and Python values, calls the Rust core and converts its results and errors;
//! the policy of a batch run (chunks, Ctrl-C, thread pools) is
//! [`crate::engine::BatchRunner`]'s.
//!
//! - `errors.rs`: `EngineError` -> `asyncsnn.exceptions` (the one conversion);
//! - `network.rs`: `_engine.Network`;
//! - `run.rs`: `_engine.run` (a batch through [`crate::engine::BatchRunner`]);
//! - `trace.rs`: the event trace columns of `_engine.run(..., trace=True)`;
//! - `results.rs`: the counters written straight into read-only numpy arrays;
//! - `train_kernels.rs`: the torch engine's CPU kernels.

use std::time::Instant;

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyTuple};

use crate::counters::COUNTERS;
use errors::param_err;

mod errors;
mod network;
mod results;
mod run;
mod trace;
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

/// Roofline reference of `benches/compare.py` (see `crate::kernels::axpy_rows`):
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
    let bad =
        |field: &str, value: String, reason: &str| PyErr::from(param_err(field, value, reason));
    let contiguous = |field| bad(field, "non-contiguous".into(), "must be contiguous");
    let w = weights.as_slice().map_err(|_| contiguous("weights"))?;
    let r = rows.as_slice().map_err(|_| contiguous("rows"))?;
    if row_len == 0 || w.len() % row_len != 0 {
        return Err(bad(
            "row_len",
            row_len.to_string(),
            "must be > 0 and divide the length of weights",
        ));
    }
    let n_rows = w.len() / row_len;
    if let Some(bad_row) = r.iter().find(|&&x| x as usize >= n_rows) {
        return Err(bad("rows", bad_row.to_string(), "row index out of range"));
    }
    let (w, r) = (w.to_vec(), r.to_vec());
    let (secs, adds, sink) = py.detach(move || {
        let mut acc = vec![0.0f32; row_len];
        let start = Instant::now();
        let mut adds = 0u64;
        for _ in 0..repeats {
            acc.fill(0.0);
            adds += crate::kernels::axpy_rows(&w, &r, &mut acc);
            std::hint::black_box(&mut acc);
        }
        (start.elapsed().as_secs_f64(), adds, acc.iter().sum::<f32>())
    });
    std::hint::black_box(sink);
    Ok((secs, adds, crate::kernels::row_kernel_name()))
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<network::PyNetwork>()?;
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
