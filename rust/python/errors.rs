//! The one conversion of an [`EngineError`] into the matching class of
//! `asyncsnn.exceptions` (`field`, `value` and `location` passed on as attributes,
//! as [`EngineError::parts`] gives them).

use pyo3::prelude::*;
use pyo3::types::IntoPyDict;
use pyo3::PyTypeInfo;

use crate::error::{EngineError, ErrorClass};

/// The classes of `asyncsnn.exceptions` that the engine's errors become.
mod exc {
    pyo3::import_exception!(asyncsnn.exceptions, ModelError);
    pyo3::import_exception!(asyncsnn.exceptions, InputError);
    pyo3::import_exception!(asyncsnn.exceptions, ParameterError);
    pyo3::import_exception!(asyncsnn.exceptions, EngineError);
}

impl From<EngineError> for PyErr {
    fn from(err: EngineError) -> PyErr {
        let parts = err.parts();
        Python::attach(|py| {
            let class = match parts.class {
                ErrorClass::Model => exc::ModelError::type_object(py),
                ErrorClass::Input => exc::InputError::type_object(py),
                ErrorClass::Parameter => exc::ParameterError::type_object(py),
                ErrorClass::Engine => exc::EngineError::type_object(py),
            };
            let attributes = [
                ("field", parts.field),
                ("value", parts.value),
                ("location", parts.location),
            ];
            let obj = (attributes.into_py_dict(py))
                .and_then(|kwargs| class.call((err.to_string(),), Some(&kwargs)));
            obj.map_or_else(|e| e, PyErr::from_value)
        })
    }
}

/// The error of a numpy buffer named `field` that is not C-contiguous.
pub(super) fn contiguous(field: &str) -> impl Fn(numpy::AsSliceError) -> PyErr + '_ {
    move |_| EngineError::parameter(field, "non-contiguous", "must be C-contiguous").into()
}

/// The error of a buffer that the binding's own caller must have made contiguous
/// (`asyncsnn.engine` does): an internal error, not bad input.
pub(super) fn internal(what: &str) -> impl Fn(numpy::AsSliceError) -> PyErr + '_ {
    move |_| EngineError::Internal(what.to_string()).into()
}
