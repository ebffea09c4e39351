//! The results of a batch: one read-only int64 numpy array per counter of [`COUNTERS`],
//! written in place as the chunks of the batch finish.

use numpy::{
    npyffi, Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods,
    PY_ARRAY_API,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use crate::counters::{AxisSizes, SampleResult, COUNTERS, MAX_AXES};
use crate::error::{EngineError, Location};

/// An internal error (a broken invariant of this module, not bad input).
fn broken(what: &str) -> PyErr {
    EngineError::Internal(what.to_string()).into()
}

/// The results of a batch, collected in input order straight into one numpy array per
/// field (`[batch, *per-sample shape]`, C order): sample `b`'s values of field `f` are
/// elements `b * per_sample[f]..(b + 1) * per_sample[f]` of `arrays[f]`.
pub(super) struct Collected<'py> {
    arrays: Vec<Bound<'py, PyArrayDyn<i64>>>,
    per_sample: [usize; COUNTERS.len()],
    batch: usize,
    filled: usize,
}

impl<'py> Collected<'py> {
    /// Allocates the arrays for `batch` samples of `timesteps` timesteps up front, so that
    /// a result too large for memory is a typed error (R7.8) before anything runs, instead
    /// of an abort in the allocator while the counters are collected.
    pub(super) fn with_capacity(
        py: Python<'py>,
        batch: usize,
        timesteps: usize,
        n_out: usize,
        n_pop: usize,
        n_proj: usize,
    ) -> Result<Collected<'py>, EngineError> {
        let oom = || EngineError::overflow(Location::Batch, "result arrays (memory)");
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
    pub(super) fn push(&mut self, r: &SampleResult) -> PyResult<()> {
        let b = self.filled;
        if b >= self.batch {
            return Err(broken("internal: more results than samples"));
        }
        for ((array, counter), &k) in self.arrays.iter().zip(&COUNTERS).zip(&self.per_sample) {
            let values = counter.values(r);
            if values.len() != k {
                let n = values.len();
                let what =
                    format!("internal: a result field has {n} values per sample, expected {k}");
                return Err(broken(&what));
            }
            // SAFETY: the array was created by `with_capacity` and nothing else refers to
            // it until `into_dict` hands it out.
            let data =
                unsafe { array.as_slice_mut() }.map_err(|e| broken(&format!("internal: {e}")))?;
            data[b * k..(b + 1) * k].copy_from_slice(values);
        }
        self.filled += 1;
        Ok(())
    }

    /// The fields as a dict of read-only arrays, in the order of [`COUNTERS`].
    pub(super) fn into_dict(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        static NAMES: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
        if self.filled != self.batch {
            return Err(broken("internal: fewer results than samples"));
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
