//! `_engine.Network`: a validated network built from its flat description.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

use crate::network::{Network, NetworkSpec, PopulationSpec, ProjectionSpec};

/// A validated network held by the engine (built once per `asyncsnn.Network`).
#[pyclass(frozen, name = "Network", module = "asyncsnn._engine")]
pub struct PyNetwork {
    pub(super) inner: Network,
}

type PopulationTuple<'py> = (
    usize,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, f32>,
    f64,
);
type ProjectionTuple<'py> = (String, usize, usize, PyReadonlyArray1<'py, f32>, Vec<usize>);

/// The values of a float32 array, whatever its strides.
fn values(a: &PyReadonlyArray1<'_, f32>) -> Vec<f32> {
    a.as_array().iter().copied().collect()
}

#[pymethods]
impl PyNetwork {
    /// Build and validate a network from its flat description (see `asyncsnn._binding`).
    #[new]
    fn new(
        input_size: usize,
        populations: Vec<PopulationTuple<'_>>,
        projections: Vec<ProjectionTuple<'_>>,
    ) -> PyResult<Self> {
        let populations = populations
            .iter()
            .map(|(size, th, beta, p)| PopulationSpec {
                size: *size,
                threshold: values(th),
                beta: values(beta),
                refractory_dropout: *p,
            })
            .collect();
        let projections = projections
            .iter()
            .enumerate()
            .map(|(i, (kind, source, target, weight, geo))| {
                ProjectionSpec::from_flat(i, kind, *source, *target, values(weight), geo)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let spec = NetworkSpec {
            input_size,
            populations,
            projections,
        };
        Ok(Self {
            inner: Network::new(spec)?,
        })
    }

    /// Number of non-input neurons.
    #[getter]
    fn n_neurons(&self) -> usize {
        self.inner.n_neurons()
    }

    /// Number of output neurons.
    #[getter]
    fn n_outputs(&self) -> usize {
        self.inner.n_outputs()
    }

    /// Number of input neurons.
    #[getter]
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }

    fn __repr__(&self) -> String {
        format!("_engine.{}", self.inner)
    }
}
