//! The PyO3 binding: convert, validate, detach, fan out with rayon, map errors.
//!
//! This is the only module that knows about Python. It crosses the boundary once
//! per call: the arrays come in as contiguous numpy buffers, the whole batch runs
//! with the interpreter released (`Python::detach`), in chunks so that Ctrl-C is
//! noticed between them, and the counters leave as numpy arrays without copies.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use crate::counters::SampleResult;
use crate::engine::{run_batch_with, RunConfig, SampleInput, StopMode};
use crate::error::EngineError;
use crate::network::{
    Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec,
};
use crate::scheduler::Scheduler;

mod fused;

/// Maps an engine error to the matching class of `asyncsnn.exceptions`
/// (the one place where Rust errors become Python exceptions).
fn to_pyerr(py: Python<'_>, err: EngineError) -> PyErr {
    let (class, field, value, location) = match &err {
        EngineError::Model {
            location,
            field,
            value,
            ..
        } => (
            "ModelError",
            Some(field.clone()),
            Some(value.clone()),
            Some(location.clone()),
        ),
        EngineError::Input {
            location,
            field,
            value,
            ..
        } => (
            "InputError",
            Some(field.clone()),
            Some(value.clone()),
            Some(location.clone()),
        ),
        EngineError::Parameter { field, value, .. } => (
            "ParameterError",
            Some(field.clone()),
            Some(value.clone()),
            None,
        ),
        EngineError::Overflow { location, what } => (
            "EngineError",
            Some(what.clone()),
            None,
            Some(location.clone()),
        ),
        EngineError::Cancelled => ("EngineError", None, None, None),
        EngineError::ModelFile {
            path, field, value, ..
        } => (
            "ModelError",
            Some(field.clone()),
            Some(value.clone()),
            Some(path.clone()),
        ),
    };
    let build = || -> PyResult<PyErr> {
        let module = PyModule::import(py, "asyncsnn.exceptions")?;
        let cls = module.getattr(class)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("field", field)?;
        kwargs.set_item("value", value)?;
        kwargs.set_item("location", location)?;
        let obj = cls.call((err.to_string(),), Some(&kwargs))?;
        Ok(PyErr::from_value(obj))
    };
    build().unwrap_or_else(|e| e)
}

/// `run_batch` names a failing sample by its position in the chunk it was given;
/// shift that to its position in the whole batch (`offset` = the chunk's first sample).
fn shift_sample(err: EngineError, offset: usize) -> EngineError {
    let shift = |location: String| -> String {
        match location
            .strip_prefix("sample ")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => format!("sample {}", i.saturating_add(offset)),
            None => location,
        }
    };
    match err {
        EngineError::Input {
            location,
            field,
            value,
            reason,
        } => EngineError::Input {
            location: shift(location),
            field,
            value,
            reason,
        },
        EngineError::Overflow { location, what } => EngineError::Overflow {
            location: shift(location),
            what,
        },
        other => other,
    }
}

fn param_err(field: &str, value: impl std::fmt::Display, reason: &str) -> EngineError {
    EngineError::Parameter {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A validated network held by the engine (built once per `asyncsnn.Network`).
#[pyclass(frozen, name = "Network", module = "asyncsnn._engine")]
pub struct PyNetwork {
    inner: Network,
}

type PopulationTuple<'py> = (
    usize,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, f32>,
    f64,
);
type SparseSample<'py> = (
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, f32>,
);
type ProjectionTuple<'py> = (String, usize, usize, PyReadonlyArray1<'py, f32>, Vec<usize>);

fn geometry(kind: &str, index: usize, geo: &[usize], expected: usize) -> Result<(), EngineError> {
    if geo.len() == expected {
        Ok(())
    } else {
        Err(EngineError::Model {
            location: format!("projection {index} ({kind})"),
            field: "geometry".into(),
            value: format!("{geo:?}"),
            reason: format!("expected {expected} integers"),
        })
    }
}

fn build_projection(index: usize, p: &ProjectionTuple<'_>) -> Result<ProjectionSpec, EngineError> {
    let (kind, source, target, weight, geo) = p;
    let weight = weight.as_array().iter().copied().collect::<Vec<f32>>();
    let kind = match kind.as_str() {
        "dense" => ProjectionKind::Dense { weight },
        "conv2d" => {
            geometry(kind, index, geo, 10)?;
            ProjectionKind::Conv2d {
                weight,
                c_in: geo[0],
                in_h: geo[1],
                in_w: geo[2],
                c_out: geo[3],
                kh: geo[4],
                kw: geo[5],
                stride: (geo[6], geo[7]),
                padding: (geo[8], geo[9]),
            }
        }
        "avgpool2d" | "sumpool2d" => {
            geometry(kind, index, geo, 7)?;
            ProjectionKind::Pool {
                kind: if kind == "avgpool2d" {
                    PoolKind::Avg
                } else {
                    PoolKind::Sum
                },
                channels: geo[0],
                in_h: geo[1],
                in_w: geo[2],
                kh: geo[3],
                kw: geo[4],
                stride: (geo[5], geo[6]),
            }
        }
        other => {
            return Err(EngineError::Model {
                location: format!("projection {index}"),
                field: "kind".into(),
                value: other.to_string(),
                reason: "must be dense, conv2d, avgpool2d or sumpool2d".into(),
            })
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
        py: Python<'_>,
        input_size: usize,
        populations: Vec<PopulationTuple<'_>>,
        projections: Vec<ProjectionTuple<'_>>,
    ) -> PyResult<Self> {
        let pops = populations
            .iter()
            .map(|(size, th, beta, p)| PopulationSpec {
                size: *size,
                threshold: th.as_array().iter().copied().collect(),
                beta: beta.as_array().iter().copied().collect(),
                refractory_dropout: *p,
            })
            .collect();
        let projs = projections
            .iter()
            .enumerate()
            .map(|(i, p)| build_projection(i, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| to_pyerr(py, e))?;
        let spec = NetworkSpec {
            input_size,
            populations: pops,
            projections: projs,
        };
        let inner = Network::new(spec).map_err(|e| to_pyerr(py, e))?;
        Ok(Self { inner })
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
        format!(
            "_engine.Network(input_size={}, neurons={}, outputs={}, projections={})",
            self.inner.input_size(),
            self.inner.n_neurons(),
            self.inner.n_outputs(),
            self.inner.n_projections()
        )
    }
}

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
            param_err(
                "threads",
                threads,
                &format!("cannot start the thread pool: {e}"),
            )
        })?;
    let pool = Arc::new(pool);
    map.insert(threads, pool.clone());
    Ok(pool)
}

#[allow(clippy::too_many_arguments)]
fn parse_config(
    scheduler: &str,
    forward_group_size: usize,
    stop: &str,
    extra_steps: u32,
    max_steps: Option<u32>,
    seed: u64,
    jitter: f32,
    refractory_dropout: Option<Vec<f64>>,
) -> Result<RunConfig, EngineError> {
    let scheduler = match scheduler {
        "layered" => Scheduler::Layered,
        "fifo" => Scheduler::Fifo,
        "random" => Scheduler::Random,
        "momentum" => Scheduler::Momentum { jitter },
        other => {
            return Err(param_err(
                "scheduler",
                other,
                "must be layered, fifo, random or momentum",
            ))
        }
    };
    let stop = match stop {
        "drain" | "max_steps" => StopMode::Drain,
        "first_output" => StopMode::FirstOutput { extra_steps },
        other => {
            return Err(param_err(
                "stop",
                other,
                "must be drain, first_output or max_steps",
            ))
        }
    };
    Ok(RunConfig {
        scheduler,
        forward_group_size,
        stop,
        max_steps,
        seed,
        refractory_dropout,
    })
}

/// Per-field flat buffers of a batch's results, in input order.
#[derive(Default)]
struct Collected {
    fields: Vec<(&'static str, Vec<i64>)>,
}

impl Collected {
    /// Reserves the exact room for `batch` samples of `timesteps` timesteps up front, so
    /// that a result too large for memory is a typed error (R7.8) instead of an abort in
    /// the allocator while the counters are collected.
    fn with_capacity(
        batch: usize,
        timesteps: usize,
        n_out: usize,
        n_pop: usize,
        n_proj: usize,
    ) -> Result<Collected, EngineError> {
        let oom = || EngineError::overflow("batch", "result arrays (memory)");
        let mut probe = Collected::default();
        probe.push(&SampleResult::default());
        let mut fields = Vec::with_capacity(probe.fields.len());
        for (name, _) in probe.fields {
            let per_sample = match name {
                "output_counts" => Some(n_out),
                "timestep_output_counts" => timesteps.checked_mul(n_out),
                "spikes" => Some(n_pop),
                "synops_per_projection" => Some(n_proj),
                "timestep_forward_steps"
                | "first_output_step"
                | "first_output_class"
                | "first_output_spikes"
                | "first_output_synops"
                | "first_correct_step"
                | "first_correct_spikes"
                | "first_correct_synops" => Some(timesteps),
                _ => Some(1),
            };
            let n = per_sample
                .and_then(|k| k.checked_mul(batch))
                .ok_or_else(oom)?;
            let mut buf: Vec<i64> = Vec::new();
            buf.try_reserve_exact(n).map_err(|_| oom())?;
            fields.push((name, buf));
        }
        Ok(Collected { fields })
    }

    fn push(&mut self, r: &SampleResult) {
        let scalars: [(&'static str, &[i64]); 19] = [
            ("predictions", std::slice::from_ref(&r.prediction)),
            ("output_counts", &r.output_counts),
            ("timestep_output_counts", &r.timestep_output_counts),
            ("spikes", &r.spikes),
            ("spikes_total", std::slice::from_ref(&r.spikes_total)),
            ("input_events", std::slice::from_ref(&r.input_events)),
            ("synops", std::slice::from_ref(&r.synops)),
            ("synops_per_projection", &r.synops_per_projection),
            ("forward_steps", std::slice::from_ref(&r.forward_steps)),
            ("timestep_forward_steps", &r.timestep_forward_steps),
            ("dropped_spikes", std::slice::from_ref(&r.dropped_spikes)),
            ("queue_peak", std::slice::from_ref(&r.queue_peak)),
            ("first_output_step", &r.first_output_step),
            ("first_output_class", &r.first_output_class),
            ("first_output_spikes", &r.first_output_spikes),
            ("first_output_synops", &r.first_output_synops),
            ("first_correct_step", &r.first_correct_step),
            ("first_correct_spikes", &r.first_correct_spikes),
            ("first_correct_synops", &r.first_correct_synops),
        ];
        if self.fields.is_empty() {
            self.fields = scalars.iter().map(|(n, _)| (*n, Vec::new())).collect();
        }
        for ((_, buf), (_, values)) in self.fields.iter_mut().zip(scalars.iter()) {
            buf.extend_from_slice(values);
        }
    }
}

/// Run a batch through the engine; returns a dict of int64 numpy arrays.
///
/// Arguments are validated by `asyncsnn._prepare` first; the engine validates again
/// and raises the matching `asyncsnn.exceptions` class.
#[pyfunction]
#[pyo3(signature = (network, dense, sparse, timesteps, labels, sample_ids, scheduler, forward_group_size,
                    stop, extra_steps, max_steps, seed, jitter, refractory_dropout, threads))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    network: &Bound<'py, PyNetwork>,
    dense: Option<PyReadonlyArray3<'py, f32>>,
    sparse: Option<Vec<SparseSample<'py>>>,
    timesteps: usize,
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
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let net = &network.get().inner;
    let err = |e: EngineError| to_pyerr(py, e);
    let config = parse_config(
        scheduler,
        forward_group_size,
        stop,
        extra_steps,
        max_steps,
        seed,
        jitter,
        refractory_dropout,
    )
    .map_err(err)?;
    let n_in = net.input_size();

    // Borrow the numpy buffers as slices (contiguous, checked here).
    let dense_slice = match &dense {
        Some(arr) => {
            let shape = arr.shape();
            if shape[1] != timesteps || shape[2] != n_in {
                return Err(err(param_err(
                    "inputs",
                    format!("{shape:?}"),
                    "shape does not match the network",
                )));
            }
            Some((
                arr.as_slice()
                    .map_err(|_| PyRuntimeError::new_err("inputs are not contiguous"))?,
                shape[0],
            ))
        }
        None => None,
    };
    let sparse_slices = match &sparse {
        Some(list) => {
            let mut v = Vec::with_capacity(list.len());
            for (t, i, x) in list {
                let t = t
                    .as_slice()
                    .map_err(|_| PyRuntimeError::new_err("sparse t not contiguous"))?;
                let i = i
                    .as_slice()
                    .map_err(|_| PyRuntimeError::new_err("sparse index not contiguous"))?;
                let x = x
                    .as_slice()
                    .map_err(|_| PyRuntimeError::new_err("sparse values not contiguous"))?;
                v.push((t, i, x));
            }
            Some(v)
        }
        None => None,
    };
    let inputs: Vec<SampleInput<'_>> = match (dense_slice, &sparse_slices) {
        (Some((frames, batch)), None) => {
            let stride = timesteps * n_in;
            (0..batch)
                .map(|b| SampleInput::Dense {
                    frames: &frames[b * stride..(b + 1) * stride],
                    timesteps,
                })
                .collect()
        }
        (None, Some(list)) => list
            .iter()
            .map(|(t, index, value)| SampleInput::Sparse {
                t,
                index,
                value,
                timesteps,
            })
            .collect(),
        _ => {
            return Err(err(param_err(
                "inputs",
                "both/none",
                "give exactly one of dense or sparse",
            )))
        }
    };
    let batch = inputs.len();
    let ids = sample_ids
        .as_slice()
        .map_err(|_| PyRuntimeError::new_err("sample_ids not contiguous"))?;
    if ids.len() != batch {
        return Err(err(param_err(
            "sample_ids",
            ids.len(),
            "must give one id per sample",
        )));
    }
    let label_vec: Option<Vec<Option<usize>>> = match &labels {
        Some(l) => {
            let l = l
                .as_slice()
                .map_err(|_| PyRuntimeError::new_err("labels not contiguous"))?;
            if l.len() != batch {
                return Err(err(param_err(
                    "labels",
                    l.len(),
                    "must give one label per sample",
                )));
            }
            Some(l.iter().map(|&c| usize::try_from(c).ok()).collect())
        }
        None => None,
    };
    let pool = match threads {
        Some(0) => return Err(err(param_err("threads", 0, "must be >= 1"))),
        Some(n) => Some(thread_pool(n).map_err(err)?),
        None => None,
    };

    // Run in chunks with the interpreter released; check Ctrl-C between chunks.
    let cancel = AtomicBool::new(false);
    let workers = pool
        .as_ref()
        .map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
    let mut chunk = workers.max(1);
    let mut start = 0;
    let mut collected = Collected::with_capacity(
        batch,
        timesteps,
        net.n_outputs(),
        net.n_populations(),
        net.n_projections(),
    )
    .map_err(err)?;
    while start < batch {
        let end = (start + chunk).min(batch);
        let tic = Instant::now();
        let part = &inputs[start..end];
        let part_labels = label_vec.as_ref().map(|l| &l[start..end]);
        let part_ids = &ids[start..end];
        // One sample or one thread: run on this thread, without handing work to the
        // pool and back (the cost that dominates small calls).
        let parallel = workers > 1 && end - start > 1;
        let result = py.detach(|| {
            let job =
                || run_batch_with(net, part, part_labels, part_ids, &config, &cancel, parallel);
            match (&pool, parallel) {
                (Some(p), true) => p.install(job),
                _ => job(),
            }
        });
        let results = result.map_err(|e| err(shift_sample(e, start)))?;
        for r in &results {
            collected.push(r);
        }
        py.check_signals()?;
        // Aim for chunks of about 0.1 s so that an interrupt is seen promptly.
        let secs = tic.elapsed().as_secs_f64().max(1e-6);
        let ideal = ((end - start) as f64 * 0.1 / secs) as usize;
        chunk = ideal.clamp(workers, chunk.saturating_mul(4).max(workers));
        start = end;
    }

    let dict = PyDict::new(py);
    let t = timesteps;
    let n_out = net.n_outputs();
    let n_pop = net.n_populations();
    let n_proj = net.n_projections();
    for (name, values) in collected.fields {
        let arr = PyArray1::from_vec(py, values);
        let shaped = match name {
            "output_counts" => arr.reshape([batch, n_out])?.into_any(),
            "timestep_output_counts" => arr.reshape([batch, t, n_out])?.into_any(),
            "spikes" => arr.reshape([batch, n_pop])?.into_any(),
            "synops_per_projection" => arr.reshape([batch, n_proj])?.into_any(),
            "timestep_forward_steps"
            | "first_output_step"
            | "first_output_class"
            | "first_output_spikes"
            | "first_output_synops"
            | "first_correct_step"
            | "first_correct_spikes"
            | "first_correct_synops" => arr.reshape([batch, t])?.into_any(),
            _ => arr.into_any(),
        };
        dict.set_item(name, shaped)?;
    }
    Ok(dict)
}

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
        |field: &str, value: String, reason: &str| to_pyerr(py, param_err(field, value, reason));
    let w = weights
        .as_slice()
        .map_err(|_| bad("weights", "non-contiguous".into(), "must be contiguous"))?;
    let r = rows
        .as_slice()
        .map_err(|_| bad("rows", "non-contiguous".into(), "must be contiguous"))?;
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
    m.add_class::<PyNetwork>()?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(hash32, m)?)?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(axpy_roofline, m)?)?;
    m.add_function(wrap_pyfunction!(fused::deliver_backward, m)?)?;
    m.add_function(wrap_pyfunction!(fused::deliver_forward, m)?)?;
    m.add_function(wrap_pyfunction!(fused::step_forward, m)?)?;
    m.add_function(wrap_pyfunction!(fused::step_backward, m)?)?;
    m.add_function(wrap_pyfunction!(fused::merge_pending, m)?)?;
    m.add_function(wrap_pyfunction!(fused::select_pending, m)?)?;
    m.add("SPEC_VERSION", crate::SPEC_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
