//! `_engine.Network`: a validated network built from its flat description.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

use crate::error::{EngineError, Location};
use crate::network::{Network, NetworkSpec, PopulationSpec, ProjectionSpec, ResetMode};

/// A validated network held by the engine (built once per `asyncsnn.Network`).
#[pyclass(frozen, name = "Network", module = "asyncsnn._engine")]
pub struct PyNetwork {
    pub(super) inner: Network,
}

/// A population of the flat description: `(size, threshold, beta, refractory_dropout,
/// bias, reset code, alpha)`, the reset code being the index of the mode in
/// `asyncsnn.network.RESET_MODES` ([`ResetMode::code`]); the forms without alpha
/// (alpha 0, R4.12) and the version-1 form without the last three (bias 0, reset
/// `zero`, alpha 0) are accepted too.
#[derive(FromPyObject)]
enum PopulationTuple<'py> {
    V2Synaptic(V2SynapticTuple<'py>),
    V2(V2Tuple<'py>),
    V1(V1Tuple<'py>),
}

/// A flat float32 parameter array of a population.
type F32s<'py> = PyReadonlyArray1<'py, f32>;
/// `(size, threshold, beta, refractory_dropout, bias, reset code, alpha)`.
type V2SynapticTuple<'py> = (usize, F32s<'py>, F32s<'py>, f64, F32s<'py>, u8, F32s<'py>);
/// `(size, threshold, beta, refractory_dropout, bias, reset code)`.
type V2Tuple<'py> = (usize, F32s<'py>, F32s<'py>, f64, F32s<'py>, u8);
/// `(size, threshold, beta, refractory_dropout)`.
type V1Tuple<'py> = (usize, F32s<'py>, F32s<'py>, f64);

impl PopulationTuple<'_> {
    /// Population `index` (1-based, as in errors) as a [`PopulationSpec`].
    fn spec(&self, index: usize) -> Result<PopulationSpec, EngineError> {
        let (size, th, beta, p, bias, code, alpha) = match self {
            PopulationTuple::V2Synaptic((size, th, beta, p, bias, code, alpha)) => {
                (*size, th, beta, *p, values(bias), *code, values(alpha))
            }
            PopulationTuple::V2((size, th, beta, p, bias, code)) => {
                (*size, th, beta, *p, values(bias), *code, vec![0.0])
            }
            PopulationTuple::V1((size, th, beta, p)) => {
                (*size, th, beta, *p, vec![0.0], 0, vec![0.0])
            }
        };
        let reset = ResetMode::from_code(code).ok_or_else(|| {
            EngineError::model(
                Location::Population(index),
                "reset",
                code,
                "must be a reset code 0..=3 (zero, subtract, subtract_delayed, none)",
            )
        })?;
        Ok(PopulationSpec {
            size,
            threshold: values(th),
            beta: values(beta),
            refractory_dropout: p,
            bias,
            reset,
            alpha,
        })
    }
}
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
            .enumerate()
            .map(|(i, p)| p.spec(i + 1))
            .collect::<Result<Vec<_>, _>>()?;
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
