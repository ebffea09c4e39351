//! Error type of the engine.
//!
//! Every invalid network description, input, label or run option is reported as an
//! [`EngineError`]; the engine never panics on user input.

/// Errors returned by [`crate::Network::new`], [`crate::run_sample`] and
/// [`crate::run_batch`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Invalid network description (R1.*). `location` e.g. "population 2" /
    /// "projection 1 (conv2d)".
    #[error("{location}: invalid {field} = {value}: {reason}")]
    Model {
        /// Where the problem is, e.g. "population 2" or "projection 1 (conv2d)".
        location: String,
        /// The offending field.
        field: String,
        /// The offending value, formatted.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Invalid input data or labels (R2.*). `location` e.g. "sample 3".
    #[error("{location}: invalid {field} = {value}: {reason}")]
    Input {
        /// Where the problem is, e.g. "sample 3".
        location: String,
        /// The offending field ("inputs", "timesteps", "labels", ...).
        field: String,
        /// The offending value, formatted (with its position where useful).
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Invalid run option (F = 0, max_steps = 0, jitter not finite, ...).
    #[error("invalid {field} = {value}: {reason}")]
    Parameter {
        /// The offending option.
        field: String,
        /// The offending value, formatted.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A counter would overflow i64 / u32 index spaces (R7.8).
    #[error("{location}: {what} overflows")]
    Overflow {
        /// Where it happened, e.g. "sample 3" or "network".
        location: String,
        /// What overflows.
        what: String,
    },
    /// A buffer sized by the network or the input could not be allocated (the
    /// allocation is fallible: never an abort).
    #[error("{location}: cannot allocate {bytes} bytes for {what}")]
    Memory {
        /// Where it was needed, e.g. "network" or "sample 3".
        location: String,
        /// The buffer, e.g. "per-neuron state".
        what: String,
        /// The size asked for, in bytes.
        bytes: u128,
    },
    /// The run was cancelled through the cancel flag.
    #[error("cancelled")]
    Cancelled,
    /// A model file (written by `asyncsnn.save`, read by [`crate::model_file`]) cannot be
    /// read: I/O error, not an asyncsnn model file, truncated or corrupted, or written for
    /// a newer `format_version` / `spec_version` (then `field` names the version).
    #[error("{path}: invalid {field} = {value}: {reason}")]
    ModelFile {
        /// The file (or `"<bytes>"` for an in-memory buffer).
        path: String,
        /// The offending part: "file", "header size", "header", "format", "spec_version",
        /// "tensor", "network", ...
        field: String,
        /// The offending value, formatted.
        value: String,
        /// Why it cannot be read.
        reason: String,
    },
}

impl EngineError {
    pub(crate) fn model(
        location: impl Into<String>,
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        EngineError::Model {
            location: location.into(),
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn input(
        location: impl Into<String>,
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        EngineError::Input {
            location: location.into(),
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn parameter(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        EngineError::Parameter {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn memory(
        location: impl Into<String>,
        what: impl Into<String>,
        bytes: u128,
    ) -> Self {
        EngineError::Memory {
            location: location.into(),
            what: what.into(),
            bytes,
        }
    }

    pub(crate) fn overflow(location: impl Into<String>, what: impl Into<String>) -> Self {
        EngineError::Overflow {
            location: location.into(),
            what: what.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let e = EngineError::model("projection 1 (conv2d)", "kernel", "0", "must be >= 1");
        assert_eq!(
            e.to_string(),
            "projection 1 (conv2d): invalid kernel = 0: must be >= 1"
        );
        let e = EngineError::parameter("forward_group_size", 0, "must be >= 1");
        assert_eq!(
            e.to_string(),
            "invalid forward_group_size = 0: must be >= 1"
        );
        let e = EngineError::overflow("sample 0", "synops");
        assert_eq!(e.to_string(), "sample 0: synops overflows");
        assert_eq!(EngineError::Cancelled.to_string(), "cancelled");
        let e = EngineError::memory("network", "per-neuron state", 1 << 40);
        assert_eq!(
            e.to_string(),
            "network: cannot allocate 1099511627776 bytes for per-neuron state"
        );
        let e = EngineError::ModelFile {
            path: "m.safetensors".into(),
            field: "format".into(),
            value: "\"onnx\"".into(),
            reason: "not an asyncsnn model file".into(),
        };
        assert_eq!(
            e.to_string(),
            "m.safetensors: invalid format = \"onnx\": not an asyncsnn model file"
        );
    }
}
