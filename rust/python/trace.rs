//! The trace columns of `_engine.run(..., trace=True)` (R7.10): one numpy array per
//! column, one entry per event of every sample, samples in input order.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::engine::{EventKind, TraceEvent};

/// Adds `trace_sample`, `trace_timestep`, `trace_step`, `trace_kind` (0 input, 1 spike,
/// 2 delivery), `trace_population`, `trace_neuron` (int64) and `trace_value` (float64)
/// to `dict`.
pub(super) fn add_trace_columns(
    py: Python<'_>,
    dict: &Bound<'_, PyDict>,
    traces: &[Vec<TraceEvent>],
) -> PyResult<()> {
    let n: usize = traces.iter().map(Vec::len).sum();
    let mut ints: [Vec<i64>; 6] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut value = Vec::with_capacity(n);
    for (b, events) in traces.iter().enumerate() {
        for e in events {
            let kind = match e.kind {
                EventKind::Input => 0,
                EventKind::Spike => 1,
                EventKind::Delivery => 2,
            };
            let row = [
                b as i64,
                e.timestep.into(),
                e.step.into(),
                kind,
                e.population.into(),
                e.neuron.into(),
            ];
            for (column, x) in ints.iter_mut().zip(row) {
                column.push(x);
            }
            value.push(e.value);
        }
    }
    let names = ["sample", "timestep", "step", "kind", "population", "neuron"];
    for (name, column) in names.into_iter().zip(ints) {
        let array: Bound<'_, PyArray1<i64>> = column.into_pyarray(py);
        dict.set_item(format!("trace_{name}"), array)?;
    }
    dict.set_item("trace_value", value.into_pyarray(py))?;
    Ok(())
}
