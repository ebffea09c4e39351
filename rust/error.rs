//! Error type of the engine.
//!
//! Every invalid network description, input, label or run option is reported as an
//! [`EngineError`]; the engine never panics on user input. Where an error happened is a
//! structured [`Location`] (its `Display` is the text that messages show).

use std::fmt;

/// Where an error happened. `Display` gives the text of the messages ("population 2",
/// "projection 1 (conv2d)", "sample 3", ...); the binding hands that text to Python as
/// the exception's `location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `"network"`: the network as a whole (sizes, allocations).
    Network,
    /// `"batch"`: a batch as a whole (the binding's result arrays).
    Batch,
    /// `"population {0}"`: a non-input population, by its R1.5 index (`1..=P`).
    Population(usize),
    /// `"projection {index}"`, or `"projection {index} ({kind})"` once its kind is known.
    Projection {
        /// Index in the network's projection list.
        index: usize,
        /// Kind name ("dense", "conv2d", "avgpool2d", "sumpool2d").
        kind: Option<&'static str>,
    },
    /// `"sample {0}"`: a sample, by its position in the batch (or by its id, for
    /// [`crate::run_sample`]).
    Sample(u64),
    /// `"sample {sample}, timestep {timestep}, forward step {forward_step}, population
    /// {population}, neuron {neuron}"`: one neuron at one forward step (R8.3).
    Neuron {
        /// The sample, as in [`Location::Sample`].
        sample: u64,
        /// Timestep `t` (a u32 in R5.5).
        timestep: u32,
        /// Forward step `k` within the timestep.
        forward_step: u32,
        /// Population index (the input counted as 0, R1.1).
        population: u32,
        /// Neuron index within the population (neuron ids are u32).
        neuron: u32,
    },
    /// `"{path}: {inner}"`: a location inside a model file (or `"<bytes>"`).
    File {
        /// The file.
        path: String,
        /// Where inside the network it describes.
        inner: Box<Location>,
    },
}

impl Location {
    /// The same location with its sample index shifted by `offset` (a batch run in
    /// chunks names a sample by its position in the chunk; `offset` is the chunk's
    /// first sample in the whole batch). Other locations are returned unchanged.
    pub fn offset_sample(self, offset: usize) -> Location {
        let shift = |s: u64| s.saturating_add(offset as u64);
        match self {
            Location::Sample(s) => Location::Sample(shift(s)),
            Location::Neuron {
                sample,
                timestep,
                forward_step,
                population,
                neuron,
            } => Location::Neuron {
                sample: shift(sample),
                timestep,
                forward_step,
                population,
                neuron,
            },
            other => other,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Network => f.write_str("network"),
            Location::Batch => f.write_str("batch"),
            Location::Population(p) => write!(f, "population {p}"),
            Location::Projection { index, kind: None } => write!(f, "projection {index}"),
            Location::Projection {
                index,
                kind: Some(kind),
            } => write!(f, "projection {index} ({kind})"),
            Location::Sample(s) => write!(f, "sample {s}"),
            Location::Neuron {
                sample,
                timestep,
                forward_step,
                population,
                neuron,
            } => write!(
                f,
                "sample {sample}, timestep {timestep}, forward step {forward_step}, \
                 population {population}, neuron {neuron}"
            ),
            Location::File { path, inner } => write!(f, "{path}: {inner}"),
        }
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Location {
        location.clone()
    }
}

/// Compares the text of a location (`location == "sample 3"`), for tests.
impl PartialEq<str> for Location {
    fn eq(&self, other: &str) -> bool {
        self.to_string().as_str() == other
    }
}

impl PartialEq<&str> for Location {
    fn eq(&self, other: &&str) -> bool {
        self.to_string().as_str() == *other
    }
}

/// The class of `asyncsnn.exceptions` that an [`EngineError`] is raised as (the
/// binding maps each to its class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// `ModelError`: [`EngineError::Model`] and [`EngineError::ModelFile`].
    Model,
    /// `InputError`: [`EngineError::Input`].
    Input,
    /// `ParameterError`: [`EngineError::Parameter`].
    Parameter,
    /// `EngineError`: overflow, memory, cancelled and internal errors.
    Engine,
}

/// An error as the binding raises it ([`EngineError::parts`]): the class and the
/// exception's `field`, `value` and `location` attributes (`None` where it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorParts {
    /// The class of `asyncsnn.exceptions`.
    pub class: ErrorClass,
    /// The offending field (or what overflows / what could not be allocated).
    pub field: Option<String>,
    /// The offending value (or the bytes asked for).
    pub value: Option<String>,
    /// The text of the [`Location`] (or a model file's path).
    pub location: Option<String>,
}

/// Errors returned by [`crate::Network::new`], [`crate::run_sample`] and
/// [`crate::run_batch`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// Invalid network description (R1.*). `location` e.g. population 2 /
    /// projection 1 (conv2d).
    #[error("{location}: invalid {field} = {value}: {reason}")]
    Model {
        /// Where the problem is, e.g. population 2 or projection 1 (conv2d).
        location: Location,
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
        /// Where the problem is, e.g. sample 3.
        location: Location,
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
        /// Where it happened, e.g. sample 3 or the network.
        location: Location,
        /// What overflows.
        what: String,
    },
    /// A buffer sized by the network or the input could not be allocated (the
    /// allocation is fallible: never an abort).
    #[error("{location}: cannot allocate {bytes} bytes for {what}")]
    Memory {
        /// Where it was needed, e.g. the network or sample 3.
        location: Location,
        /// The buffer, e.g. "per-neuron state".
        what: String,
        /// The size asked for, in bytes.
        bytes: u128,
    },
    /// The run was cancelled through the cancel flag.
    #[error("cancelled")]
    Cancelled,
    /// An internal invariant does not hold (a bug, not bad input): e.g. a buffer that the
    /// binding expects contiguous is not. The message is `what` itself.
    #[error("{0}")]
    Internal(String),
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
    /// Where the error happened, if it names a place ([`EngineError::ModelFile`] names
    /// its file in `path` instead).
    pub fn location(&self) -> Option<&Location> {
        match self {
            EngineError::Model { location, .. }
            | EngineError::Input { location, .. }
            | EngineError::Overflow { location, .. }
            | EngineError::Memory { location, .. } => Some(location),
            _ => None,
        }
    }

    /// The same error with the sample it names shifted by `offset`
    /// ([`Location::offset_sample`]).
    pub fn offset_sample(mut self, offset: usize) -> EngineError {
        if let EngineError::Model { location, .. }
        | EngineError::Input { location, .. }
        | EngineError::Overflow { location, .. }
        | EngineError::Memory { location, .. } = &mut self
        {
            *location = std::mem::replace(location, Location::Network).offset_sample(offset);
        }
        self
    }

    /// The class of `asyncsnn.exceptions` that this error is raised as, with its
    /// `field`, `value` and `location` attributes (a model file's `location` is its path).
    pub fn parts(&self) -> ErrorParts {
        let text = |s: &String| Some(s.clone());
        let (class, field, value, location) = match self {
            EngineError::Model {
                location,
                field,
                value,
                ..
            } => (ErrorClass::Model, text(field), text(value), Some(location)),
            EngineError::Input {
                location,
                field,
                value,
                ..
            } => (ErrorClass::Input, text(field), text(value), Some(location)),
            EngineError::Parameter { field, value, .. } => {
                (ErrorClass::Parameter, text(field), text(value), None)
            }
            EngineError::Overflow { location, what } => {
                (ErrorClass::Engine, text(what), None, Some(location))
            }
            EngineError::Memory {
                location,
                what,
                bytes,
            } => (
                ErrorClass::Engine,
                text(what),
                Some(bytes.to_string()),
                Some(location),
            ),
            EngineError::Cancelled | EngineError::Internal(_) => {
                (ErrorClass::Engine, None, None, None)
            }
            EngineError::ModelFile {
                path, field, value, ..
            } => {
                return ErrorParts {
                    class: ErrorClass::Model,
                    field: text(field),
                    value: text(value),
                    location: text(path),
                }
            }
        };
        ErrorParts {
            class,
            field,
            value,
            location: location.map(Location::to_string),
        }
    }

    pub(crate) fn model(
        location: impl Into<Location>,
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
        location: impl Into<Location>,
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

    /// An [`EngineError::Parameter`].
    pub fn parameter(
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
        location: impl Into<Location>,
        what: impl Into<String>,
        bytes: u128,
    ) -> Self {
        EngineError::Memory {
            location: location.into(),
            what: what.into(),
            bytes,
        }
    }

    pub(crate) fn overflow(location: impl Into<Location>, what: impl Into<String>) -> Self {
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
        let at = Location::Projection {
            index: 1,
            kind: Some("conv2d"),
        };
        let e = EngineError::model(at, "kernel", "0", "must be >= 1");
        assert_eq!(
            e.to_string(),
            "projection 1 (conv2d): invalid kernel = 0: must be >= 1"
        );
        let e = EngineError::parameter("forward_group_size", 0, "must be >= 1");
        assert_eq!(
            e.to_string(),
            "invalid forward_group_size = 0: must be >= 1"
        );
        let e = EngineError::overflow(Location::Sample(0), "synops");
        assert_eq!(e.to_string(), "sample 0: synops overflows");
        assert_eq!(EngineError::Cancelled.to_string(), "cancelled");
        let e = EngineError::memory(Location::Network, "per-neuron state", 1 << 40);
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

    #[test]
    fn parts_give_the_class_and_attributes() {
        let parts = |e: EngineError| e.parts();
        let e = EngineError::model(Location::Population(2), "beta", 2, "must be in [0, 1]");
        let want =
            |class, field: Option<&str>, value: Option<&str>, location: Option<&str>| ErrorParts {
                class,
                field: field.map(String::from),
                value: value.map(String::from),
                location: location.map(String::from),
            };
        let population = Some("population 2");
        let model = want(ErrorClass::Model, Some("beta"), Some("2"), population);
        assert_eq!(parts(e), model);
        let e = EngineError::input(Location::Sample(3), "inputs", "nan", "must be finite");
        let input = want(
            ErrorClass::Input,
            Some("inputs"),
            Some("nan"),
            Some("sample 3"),
        );
        assert_eq!(parts(e), input);
        let e = EngineError::parameter("threads", 0, "must be >= 1");
        let param = want(ErrorClass::Parameter, Some("threads"), Some("0"), None);
        assert_eq!(parts(e), param);
        let e = EngineError::overflow(Location::Batch, "result arrays (memory)");
        let overflow = want(
            ErrorClass::Engine,
            Some("result arrays (memory)"),
            None,
            Some("batch"),
        );
        assert_eq!(parts(e), overflow);
        let e = EngineError::memory(Location::Network, "weights", 64);
        let memory = want(
            ErrorClass::Engine,
            Some("weights"),
            Some("64"),
            Some("network"),
        );
        assert_eq!(parts(e), memory);
        let engine = want(ErrorClass::Engine, None, None, None);
        assert_eq!(parts(EngineError::Cancelled), engine);
        assert_eq!(parts(EngineError::Internal("broken".into())), engine);
        let e = EngineError::ModelFile {
            path: "m.safetensors".into(),
            field: "format".into(),
            value: "x".into(),
            reason: "bad".into(),
        };
        let file = want(
            ErrorClass::Model,
            Some("format"),
            Some("x"),
            Some("m.safetensors"),
        );
        assert_eq!(parts(e), file);
    }

    #[test]
    fn locations_read_as_before_and_shift_their_sample() {
        let neuron = Location::Neuron {
            sample: 2,
            timestep: 4,
            forward_step: 1,
            population: 3,
            neuron: 7,
        };
        assert_eq!(
            neuron.to_string(),
            "sample 2, timestep 4, forward step 1, population 3, neuron 7"
        );
        assert_eq!(
            neuron.offset_sample(10).to_string(),
            "sample 12, timestep 4, forward step 1, population 3, neuron 7"
        );
        assert_eq!(Location::Sample(3).offset_sample(5), "sample 8");
        assert_eq!(Location::Network.offset_sample(5), "network");
        assert_eq!(Location::Population(2), "population 2");
        let file = Location::File {
            path: "<bytes>".into(),
            inner: Box::new(Location::Projection {
                index: 0,
                kind: None,
            }),
        };
        assert_eq!(file, "<bytes>: projection 0");
        let e = EngineError::input(Location::Sample(1), "inputs", -1, "bad").offset_sample(4);
        assert_eq!(e.to_string(), "sample 5: invalid inputs = -1: bad");
        assert_eq!(e.location(), Some(&Location::Sample(5)));
    }
}
