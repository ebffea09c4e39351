//! The one conversion of an [`EngineError`] into the matching class of
//! `asyncsnn.exceptions` (`field`, `value` and `location` passed on as attributes).

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::PyTypeInfo;

use crate::error::EngineError;

/// The classes of `asyncsnn.exceptions` that the engine's errors become.
mod exc {
    pyo3::import_exception!(asyncsnn.exceptions, ModelError);
    pyo3::import_exception!(asyncsnn.exceptions, InputError);
    pyo3::import_exception!(asyncsnn.exceptions, ParameterError);
    pyo3::import_exception!(asyncsnn.exceptions, EngineError);
}

impl From<EngineError> for PyErr {
    fn from(err: EngineError) -> PyErr {
        Python::attach(|py| {
            let (class, field, value, location) = match &err {
                EngineError::Model {
                    location,
                    field,
                    value,
                    ..
                } => (
                    exc::ModelError::type_object(py),
                    Some(field.clone()),
                    Some(value.clone()),
                    Some(location.to_string()),
                ),
                EngineError::Input {
                    location,
                    field,
                    value,
                    ..
                } => (
                    exc::InputError::type_object(py),
                    Some(field.clone()),
                    Some(value.clone()),
                    Some(location.to_string()),
                ),
                EngineError::Parameter { field, value, .. } => (
                    exc::ParameterError::type_object(py),
                    Some(field.clone()),
                    Some(value.clone()),
                    None,
                ),
                EngineError::Overflow { location, what } => (
                    exc::EngineError::type_object(py),
                    Some(what.clone()),
                    None,
                    Some(location.to_string()),
                ),
                EngineError::Memory {
                    location,
                    what,
                    bytes,
                } => (
                    exc::EngineError::type_object(py),
                    Some(what.clone()),
                    Some(bytes.to_string()),
                    Some(location.to_string()),
                ),
                EngineError::Cancelled | EngineError::Internal(_) => {
                    (exc::EngineError::type_object(py), None, None, None)
                }
                EngineError::ModelFile {
                    path, field, value, ..
                } => (
                    exc::ModelError::type_object(py),
                    Some(field.clone()),
                    Some(value.clone()),
                    Some(path.clone()),
                ),
            };
            let build = || -> PyResult<PyErr> {
                let kwargs = PyDict::new(py);
                kwargs.set_item("field", field)?;
                kwargs.set_item("value", value)?;
                kwargs.set_item("location", location)?;
                let obj = class.call((err.to_string(),), Some(&kwargs))?;
                Ok(PyErr::from_value(obj))
            };
            build().unwrap_or_else(|e| e)
        })
    }
}

/// A [`EngineError::Parameter`].
pub(super) fn param_err(field: &str, value: impl ToString, reason: &str) -> EngineError {
    EngineError::Parameter {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The error of a numpy buffer named `field` that is not C-contiguous.
pub(super) fn contiguous(field: &str) -> impl Fn(numpy::AsSliceError) -> PyErr + '_ {
    move |_| param_err(field, "non-contiguous", "must be C-contiguous").into()
}

/// The error of a buffer that the binding's own caller must have made contiguous
/// (`asyncsnn.engine` does): an internal error, not bad input.
pub(super) fn internal(what: &str) -> impl Fn(numpy::AsSliceError) -> PyErr + '_ {
    move |_| EngineError::Internal(what.to_string()).into()
}
