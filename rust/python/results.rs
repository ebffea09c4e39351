//! The results of a batch: one read-only int64 numpy array per counter of [`COUNTERS`],
//! shaped by [`BatchLayout`] and written in place as the chunks of the batch finish.

use numpy::{
    npyffi, Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods,
    PY_ARRAY_API,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use crate::counters::{BatchLayout, SampleResult, COUNTERS, MAX_AXES};
use crate::error::{EngineError, Location};

/// The results of a batch, collected in input order straight into one numpy array per
/// counter ([`BatchLayout`]).
pub(super) struct Collected<'py> {
    arrays: Vec<Bound<'py, PyArrayDyn<i64>>>,
    layout: BatchLayout,
    filled: usize,
}

/// A new C-ordered int64 array of `dims` with uninitialised values, or `None` when
/// numpy cannot allocate it.
fn uninit_array<'py>(py: Python<'py>, dims: &[usize]) -> Option<Bound<'py, PyArrayDyn<i64>>> {
    let mut shape = [0 as npyffi::npy_intp; 1 + MAX_AXES];
    for (s, &d) in shape.iter_mut().zip(dims) {
        *s = npyffi::npy_intp::try_from(d).ok()?;
    }
    // SAFETY: a new C-ordered array of `dims` that numpy allocates (data and strides
    // null); `PyArray_NewFromDescr` steals the dtype reference. Its values are
    // uninitialised until `push` writes them; `into_dict` checks that every sample was
    // pushed before the arrays leave.
    let ptr = unsafe {
        PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            npyffi::get_type_object(py, npyffi::NpyTypes::PyArray_Type),
            i64::get_dtype(py).into_dtype_ptr(),
            dims.len() as std::os::raw::c_int,
            shape.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        )
    };
    if ptr.is_null() {
        drop(PyErr::take(py)); // numpy's MemoryError: the caller raises the typed error
        return None;
    }
    // SAFETY: `ptr` is a new, owned reference to an int64 ndarray.
    Some(unsafe { Bound::from_owned_ptr(py, ptr).cast_into_unchecked() })
}

impl<'py> Collected<'py> {
    /// Allocates the arrays of `layout` up front, so that a result too large for memory
    /// is a typed error (R7.8) before anything runs, instead of an abort in the
    /// allocator while the counters are collected.
    pub(super) fn new(py: Python<'py>, layout: BatchLayout) -> Result<Self, EngineError> {
        let oom = || EngineError::overflow(Location::Batch, "result arrays (memory)");
        let arrays = (0..COUNTERS.len())
            .map(|f| uninit_array(py, layout.shape(f)).ok_or_else(oom))
            .collect::<Result<_, _>>()?;
        Ok(Collected {
            arrays,
            layout,
            filled: 0,
        })
    }

    /// Appends the next sample's results.
    pub(super) fn push(&mut self, r: &SampleResult) -> PyResult<()> {
        for (f, array) in self.arrays.iter().enumerate() {
            // SAFETY: the array was created by `new` and nothing else refers to it until
            // `into_dict` hands it out.
            let data = unsafe { array.as_slice_mut() }
                .map_err(|e| EngineError::Internal(format!("internal: {e}")))?;
            self.layout.write(f, self.filled, r, data)?;
        }
        self.filled += 1;
        Ok(())
    }

    /// The fields as a dict of read-only arrays, in the order of [`COUNTERS`].
    pub(super) fn into_dict(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        static NAMES: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
        if self.filled != self.layout.batch() {
            let what = "internal: fewer results than samples";
            return Err(EngineError::Internal(what.into()).into());
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
