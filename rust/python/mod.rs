//! The PyO3 binding: convert, validate, detach, fan out with rayon, map errors.
//!
//! This is the only module that knows about Python. It crosses the boundary once
//! per call: the arrays come in as contiguous numpy buffers, the whole batch runs
//! with the interpreter released (`Python::detach`), in chunks so that Ctrl-C is
//! noticed between them, and the counters are written straight into the read-only
//! numpy arrays that leave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use numpy::{
    npyffi, Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArray3, PyUntypedArrayMethods, PY_ARRAY_API,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyString, PyTuple};

use crate::counters::{AxisSizes, SampleResult, COUNTERS, MAX_AXES};
use crate::engine::{
    check_dense_values, run_batch_checked, Interrupt, RunConfig, SampleInput, StopMode,
};
use crate::error::EngineError;
use crate::network::{
    Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec,
};
use crate::scheduler::Scheduler;

mod train_kernels;

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
        EngineError::Memory {
            location,
            what,
            bytes,
        } => (
            "EngineError",
            Some(what.clone()),
            Some(bytes.to_string()),
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
    // "sample {i}" or "sample {i}, timestep ..." (R8.3 names the step after the sample).
    let shift = |location: String| -> String {
        let Some(rest) = location.strip_prefix("sample ") else {
            return location;
        };
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        match rest[..digits].parse::<usize>() {
            Ok(i) => format!("sample {}{}", i.saturating_add(offset), &rest[digits..]),
            Err(_) => location,
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
        EngineError::Memory {
            location,
            what,
            bytes,
        } => EngineError::Memory {
            location: shift(location),
            what,
            bytes,
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
    let scheduler = scheduler.parse::<Scheduler>()?.with_jitter(jitter);
    let stop = stop.parse::<StopMode>()?.with_extra_steps(extra_steps);
    Ok(RunConfig {
        scheduler,
        forward_group_size,
        stop,
        max_steps,
        seed,
        refractory_dropout,
    })
}

/// The results of a batch, collected in input order straight into one numpy array per
/// field (`[batch, *per-sample shape]`, C order): sample `b`'s values of field `f` are
/// elements `b * per_sample[f]..(b + 1) * per_sample[f]` of `arrays[f]`.
struct Collected<'py> {
    arrays: Vec<Bound<'py, PyArrayDyn<i64>>>,
    per_sample: [usize; COUNTERS.len()],
    batch: usize,
    filled: usize,
}

impl<'py> Collected<'py> {
    /// Allocates the arrays for `batch` samples of `timesteps` timesteps up front, so that
    /// a result too large for memory is a typed error (R7.8) before anything runs, instead
    /// of an abort in the allocator while the counters are collected.
    fn with_capacity(
        py: Python<'py>,
        batch: usize,
        timesteps: usize,
        n_out: usize,
        n_pop: usize,
        n_proj: usize,
    ) -> Result<Collected<'py>, EngineError> {
        let oom = || EngineError::overflow("batch", "result arrays (memory)");
        let dtype = i64::get_dtype(py);
        let mut per_sample = [0usize; COUNTERS.len()];
        let mut arrays = Vec::with_capacity(COUNTERS.len());
        let sizes = AxisSizes {
            timesteps,
            outputs: n_out,
            populations: n_pop,
            projections: n_proj,
        };
        for (f, counter) in COUNTERS.iter().enumerate() {
            let mut dims = [batch; 1 + MAX_AXES];
            for (d, &axis) in dims[1..].iter_mut().zip(counter.axes) {
                *d = sizes.of(axis);
            }
            let dims = &dims[..1 + counter.axes.len()];
            let k = counter.len_per_sample(&sizes).ok_or_else(oom)?;
            k.checked_mul(batch)
                .and_then(|n| n.checked_mul(std::mem::size_of::<i64>()))
                .filter(|&bytes| isize::try_from(bytes).is_ok())
                .ok_or_else(oom)?;
            per_sample[f] = k;
            let mut shape = [0 as npyffi::npy_intp; 1 + MAX_AXES];
            for (s, &d) in shape.iter_mut().zip(dims) {
                *s = npyffi::npy_intp::try_from(d).map_err(|_| oom())?;
            }
            // SAFETY: a new C-ordered array of `dims` that numpy allocates (data and
            // strides null); `PyArray_NewFromDescr` steals the dtype reference. Its values
            // are uninitialised until `push` writes them; `into_dict` checks that every
            // sample was pushed before the arrays leave.
            let ptr = unsafe {
                PY_ARRAY_API.PyArray_NewFromDescr(
                    py,
                    npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
                    dtype.clone().into_dtype_ptr(),
                    dims.len() as std::os::raw::c_int,
                    shape.as_mut_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                )
            };
            if ptr.is_null() {
                drop(PyErr::take(py)); // numpy's MemoryError: replaced by the typed error
                return Err(oom());
            }
            // SAFETY: `ptr` is a new, owned reference to an int64 ndarray.
            let array = unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked() };
            arrays.push(array);
        }
        Ok(Collected {
            arrays,
            per_sample,
            batch,
            filled: 0,
        })
    }

    /// Appends the next sample's results.
    fn push(&mut self, r: &SampleResult) -> PyResult<()> {
        let b = self.filled;
        if b >= self.batch {
            return Err(PyRuntimeError::new_err(
                "internal: more results than samples",
            ));
        }
        for ((array, counter), &k) in self.arrays.iter().zip(&COUNTERS).zip(&self.per_sample) {
            let values = counter.values(r);
            if values.len() != k {
                return Err(PyRuntimeError::new_err(format!(
                    "internal: a result field has {} values per sample, expected {k}",
                    values.len()
                )));
            }
            // SAFETY: the array was created by `with_capacity` and nothing else refers to
            // it until `into_dict` hands it out.
            let data = unsafe { array.as_slice_mut() }
                .map_err(|e| PyRuntimeError::new_err(format!("internal: {e}")))?;
            data[b * k..(b + 1) * k].copy_from_slice(values);
        }
        self.filled += 1;
        Ok(())
    }

    /// The fields as a dict of read-only arrays, in the order of [`COUNTERS`].
    fn into_dict(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        static NAMES: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
        if self.filled != self.batch {
            return Err(PyRuntimeError::new_err(
                "internal: fewer results than samples",
            ));
        }
        let names = NAMES.get_or_init(py, || {
            COUNTERS
                .iter()
                .map(|c| PyString::intern(py, c.name).unbind())
                .collect()
        });
        let dict = PyDict::new(py);
        for (array, name) in self.arrays.into_iter().zip(names) {
            // SAFETY: nothing else refers to the array yet; clearing the flag is what
            // numpy's `PyArray_CLEARFLAGS` (and rust-numpy's `make_nonwriteable`) does.
            unsafe {
                (*npyffi::_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags &=
                    !npyffi::NPY_ARRAY_WRITEABLE;
            }
            dict.set_item(name.bind(py), array)?;
        }
        Ok(dict)
    }
}

/// Runs `job` inside `pool` when `parallel` (a requested thread count has its own
/// pool; without one, rayon's global pool), otherwise on this thread.
/// Runs `job` on a scoped thread while this thread asks `poll` every 20 ms whether to
/// stop; when it says so, sets `cancel` (the engine stops at its next timestep).
fn watched<R: Send>(
    job: impl FnOnce() -> R + Send,
    cancel: &AtomicBool,
    poll: &(dyn Fn() -> bool + Sync),
) -> R {
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

/// Run a batch through the engine; returns a dict of read-only int64 numpy arrays, one
/// per counter of [`COUNTERS`] (`asyncsnn.result.COUNTER_FIELDS`), in that order.
///
/// Arguments are validated by `asyncsnn._prepare` first; the engine validates again
/// and raises the matching `asyncsnn.exceptions` class. `sample_ids` None means the
/// positions in the batch.
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
    let default_ids: Vec<u64>;
    let ids = match &sample_ids {
        Some(ids) => ids
            .as_slice()
            .map_err(|_| PyRuntimeError::new_err("sample_ids not contiguous"))?,
        None => {
            default_ids = (0..batch as u64).collect();
            &default_ids
        }
    };
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
    // Every dense value is checked before any sample runs, so that a bad value anywhere
    // in the batch is an error before anything runs (`asyncsnn.infer` leaves the values
    // of float32 inputs to this check); the engine is told not to check them again.
    // The check runs on the workers with the interpreter released (a serial pass over a
    // large batch cost a few % of a 2-thread run), and names the first bad sample.
    let check = |(b, input): (usize, &SampleInput<'_>)| match input {
        SampleInput::Dense { frames, .. } => {
            check_dense_values(frames, n_in, &format!("sample {b}")).err()
        }
        SampleInput::Sparse { .. } => None,
    };
    let parallel = workers > 1 && batch > 1;
    let bad = py.detach(|| {
        on_pool(pool.as_deref(), parallel, || {
            if parallel {
                inputs.par_iter().enumerate().find_map_first(check)
            } else {
                inputs.iter().enumerate().find_map(check)
            }
        })
    });
    if let Some(e) = bad {
        return Err(err(e));
    }
    let mut start = 0;
    let mut collected = Collected::with_capacity(
        py,
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
        // Ctrl-C inside a chunk (one long sample): Python's signal handlers run only on
        // this thread, so this thread checks them while the chunk runs: from inside the
        // event loop (`poll`, at most every POLL_INTERVAL) when it runs the chunk itself,
        // or from a wait loop while the pool runs it.
        let signal: Mutex<Option<PyErr>> = Mutex::new(None);
        let poll = || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    *signal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    true
                }
            })
        };
        let result = py.detach(|| {
            let run = |stop: &Interrupt| {
                run_batch_checked(
                    net,
                    part,
                    part_labels,
                    part_ids,
                    &config,
                    stop,
                    parallel,
                    true,
                )
            };
            if parallel {
                let stop = Interrupt {
                    cancel: &cancel,
                    poll: None,
                };
                watched(
                    || on_pool(pool.as_deref(), true, || run(&stop)),
                    &cancel,
                    &poll,
                )
            } else {
                run(&Interrupt {
                    cancel: &cancel,
                    poll: Some(&poll),
                })
            }
        });
        if let Some(e) = signal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let results = result.map_err(|e| err(shift_sample(e, start)))?;
        for r in &results {
            collected.push(r)?;
        }
        py.check_signals()?;
        // Aim for chunks of about 0.1 s so that an interrupt is seen promptly, growing
        // at most 16x from one chunk to the next (which bounds how much longer than
        // planned a chunk runs after unusually fast samples). Each chunk ends with a
        // barrier where a worker waits for the others' last samples, so few chunks are
        // better: growing 4x, a 2-thread batch of 256 conv samples ran 5 chunks and took
        // about 6 % longer than with 3.
        let secs = tic.elapsed().as_secs_f64().max(1e-6);
        let ideal = ((end - start) as f64 * 0.1 / secs) as usize;
        chunk = ideal.clamp(workers, chunk.saturating_mul(16).max(workers));
        start = end;
    }

    collected.into_dict(py)
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
