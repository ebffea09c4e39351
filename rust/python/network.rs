//! `_engine.Network`: a validated network built from its flat description.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

use crate::error::{EngineError, Location};
use crate::network::{
    Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec,
};

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

/// `geo` with `expected` integers, or a model error of projection `index` (`kind`).
fn geometry<'g>(
    kind: &'static str,
    index: usize,
    geo: &'g [usize],
    expected: usize,
) -> Result<&'g [usize], EngineError> {
    if geo.len() == expected {
        return Ok(geo);
    }
    let at = Location::Projection {
        index,
        kind: Some(kind),
    };
    let reason = format!("expected {expected} integers");
    Err(EngineError::model(
        at,
        "geometry",
        format!("{geo:?}"),
        reason,
    ))
}

fn build_projection(index: usize, p: &ProjectionTuple<'_>) -> Result<ProjectionSpec, EngineError> {
    let (kind, source, target, weight, geo) = p;
    let weight = weight.as_array().iter().copied().collect::<Vec<f32>>();
    let kind = match kind.as_str() {
        "dense" => ProjectionKind::Dense { weight },
        "conv2d" => match *geometry("conv2d", index, geo, 10)? {
            [c_in, in_h, in_w, c_out, kh, kw, s0, s1, p0, p1] => ProjectionKind::Conv2d {
                weight,
                c_in,
                in_h,
                in_w,
                c_out,
                kh,
                kw,
                stride: (s0, s1),
                padding: (p0, p1),
            },
            _ => unreachable!("geometry checked the length"),
        },
        name @ ("avgpool2d" | "sumpool2d") => {
            let (pool, name) = match name {
                "avgpool2d" => (PoolKind::Avg, "avgpool2d"),
                _ => (PoolKind::Sum, "sumpool2d"),
            };
            match *geometry(name, index, geo, 7)? {
                [channels, in_h, in_w, kh, kw, s0, s1] => ProjectionKind::Pool {
                    kind: pool,
                    channels,
                    in_h,
                    in_w,
                    kh,
                    kw,
                    stride: (s0, s1),
                },
                _ => unreachable!("geometry checked the length"),
            }
        }
        other => {
            let at = Location::Projection { index, kind: None };
            let reason = "must be dense, conv2d, avgpool2d or sumpool2d";
            return Err(EngineError::model(at, "kind", other, reason));
        }
    };
    Ok(ProjectionSpec {
        source: *source,
        target: *target,
        kind,
    })
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
                threshold: th.as_array().iter().copied().collect(),
                beta: beta.as_array().iter().copied().collect(),
                refractory_dropout: *p,
            })
            .collect();
        let projections = projections
            .iter()
            .enumerate()
            .map(|(i, p)| build_projection(i, p))
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
        let n = &self.inner;
        format!(
            "_engine.Network(input_size={}, neurons={}, outputs={}, projections={})",
            n.input_size(),
            n.n_neurons(),
            n.n_outputs(),
            n.n_projections()
        )
    }
}
