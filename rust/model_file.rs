//! Reader of asyncsnn model files: the safetensors files written by `asyncsnn.save`
//! (`python/asyncsnn/model_file.py`), so that a Rust program can run a trained model
//! without Python.
//!
//! Layout (safetensors): an 8-byte little-endian header size `n`, `n` bytes of JSON
//! header, then the data section. The header maps each tensor name to
//! `{"dtype": "F32", "shape": [...], "data_offsets": [start, end]}` (byte offsets into the
//! data section, little-endian float32) and holds `"__metadata__"`, a map of strings:
//! `format` (`"asyncsnn"`), `format_version`, `spec_version` (of `docs/semantics.md`),
//! `asyncsnn_version`, `network` (the architecture as JSON, in the form of
//! `asyncsnn._dictform` with tensor names where the arrays would be: a population's
//! bias, written only when not 0, is the tensor `populations.<i>.bias`, its synaptic
//! decay, written only when not all 0, the tensor `populations.<i>.alpha`, R4.12) and
//! any extra metadata the caller saved. Files of every `spec_version` up to
//! [`SPEC_VERSION`] are read (a version-1 file is a version-2 network without biases,
//! resets or synaptic currents).
//!
//! The reader never panics on a file and never allocates more than the file itself
//! holds: the header size is checked against the file length (and
//! [`MAX_HEADER_BYTES`]) before anything else is read, every tensor must lie inside the
//! data section with exactly `4 * prod(shape)` bytes, each tensor may be used once, every
//! population's size is backed by its threshold and beta tensors, and the per-axis tables
//! of a convolution or pooling are capped at [`MAX_AXIS_ENTRIES`]. Every problem is an
//! [`EngineError::ModelFile`] (I/O, format, version, truncation, malformed JSON) or, for a
//! well-formed file describing an invalid network, the [`EngineError::Model`] of
//! [`Network::new`] with the file's path in front of its location.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use _engine::{model_file, run_batch, RunConfig, SampleInput, Scheduler, StopMode};
//!
//! let net = model_file::read_model_file("model.safetensors")?;
//! let frames = vec![1.0f32; 4 * net.input_size()]; // T = 4 frames of zeros and ones
//! let inputs = [SampleInput::Dense { frames: &frames, timesteps: 4 }];
//! let config = RunConfig {
//!     scheduler: Scheduler::Layered,
//!     forward_group_size: 1,
//!     stop: StopMode::Drain,
//!     max_steps: None,
//!     seed: 0,
//!     refractory_dropout: None,
//!     input_dropout: 0.0,
//!     spike_dropout: 0.0,
//!     prioritize_input: true,
//! };
//! let results = run_batch(&net, &inputs, None, &[0], &config, &AtomicBool::new(false))?;
//! println!("prediction: {}", results[0].prediction);
//! # Ok::<(), _engine::EngineError>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::dict_form::{json_kind, parse_network, Arrays};
use crate::error::{EngineError, Location};
use crate::network::{Network, NetworkSpec};
use crate::SPEC_VERSION;

/// The `format` metadata entry of an asyncsnn model file.
pub const FORMAT: &str = "asyncsnn";

/// The newest `format_version` this reader understands (`asyncsnn.model_file.FORMAT_VERSION`).
pub const FORMAT_VERSION: u32 = 1;

/// Largest accepted JSON header, as in `asyncsnn.model_file` (16 MiB).
pub const MAX_HEADER_BYTES: u64 = 16 * 1024 * 1024;

pub use crate::dict_form::MAX_AXIS_ENTRIES;

/// Location used for in-memory buffers.
const BYTES: &str = "<bytes>";

/// A parsed model file: the network description and the file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    /// The file (or `"<bytes>"`), used in error locations.
    pub path: String,
    /// The network description (not yet validated; see [`ModelFile::into_network`]).
    pub spec: NetworkSpec,
    /// Shape of the input population.
    pub input_shape: Vec<usize>,
    /// Shapes of the non-input populations `1..=P`.
    pub population_shapes: Vec<Vec<usize>>,
    /// Names of the non-input populations (`None` where the network had none).
    pub population_names: Vec<Option<String>>,
    /// Every `__metadata__` entry (`format`, `spec_version`, ..., and extra entries).
    pub metadata: BTreeMap<String, String>,
}

impl ModelFile {
    /// Validates the description ([`Network::new`]); an invalid network is an
    /// [`EngineError::Model`] whose location starts with the file's path.
    pub fn into_network(self) -> Result<Network, EngineError> {
        let path = self.path;
        Network::new(self.spec).map_err(|e| match e {
            EngineError::Model {
                location,
                field,
                value,
                reason,
            } => EngineError::Model {
                location: Location::File {
                    path,
                    inner: Box::new(location),
                },
                field,
                value,
                reason,
            },
            other => other,
        })
    }
}

/// Reads and validates the model file at `path`.
///
/// # Errors
/// [`EngineError::ModelFile`] when the file cannot be read or is not a valid asyncsnn
/// model file of a supported version; [`EngineError::Model`] / [`EngineError::Overflow`]
/// when it describes an invalid network.
pub fn read_model_file(path: impl AsRef<Path>) -> Result<Network, EngineError> {
    load_model_file(path)?.into_network()
}

/// Reads and validates a model file held in memory (errors name it `"<bytes>"`).
///
/// # Errors
/// As [`read_model_file`].
pub fn read_model_bytes(bytes: &[u8]) -> Result<Network, EngineError> {
    parse_model_file(bytes, BYTES)?.into_network()
}

/// Reads the model file at `path` into a [`ModelFile`] (without validating the network).
///
/// # Errors
/// [`EngineError::ModelFile`], as for [`read_model_file`].
pub fn load_model_file(path: impl AsRef<Path>) -> Result<ModelFile, EngineError> {
    let path = path.as_ref();
    let where_ = path.display().to_string();
    let bytes = read_bounded(path, &where_)?;
    parse_model_file(&bytes, &where_)
}

fn file_error(
    path: &str,
    field: impl Into<String>,
    value: impl Display,
    reason: impl Into<String>,
) -> EngineError {
    EngineError::ModelFile {
        path: path.to_owned(),
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks the header size `n` against the file length (before anything is allocated).
fn check_header_size(n: u64, len: u64, where_: &str) -> Result<(), EngineError> {
    if n > MAX_HEADER_BYTES || n > len.saturating_sub(8) {
        return Err(file_error(
            where_,
            "header size",
            n,
            format!(
                "does not fit the file ({len} bytes; at most {MAX_HEADER_BYTES} bytes of header)"
            ),
        ));
    }
    Ok(())
}

/// The header and as much of the data section as its tensors use, once the header size
/// has been checked against the file's length: a file with a long tail (or a tensor that
/// no entry names) costs no memory for it.
fn read_bounded(path: &Path, where_: &str) -> Result<Vec<u8>, EngineError> {
    let io = |e: std::io::Error| file_error(where_, "file", e.kind(), e.to_string());
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < 8 {
        return Err(file_error(
            where_,
            "file",
            format!("{len} bytes"),
            "too short to be a safetensors file",
        ));
    }
    let mut head = [0u8; 8];
    file.read_exact(&mut head).map_err(io)?;
    let n = u64::from_le_bytes(head);
    check_header_size(n, len, where_)?;
    let reserve = |bytes: &mut Vec<u8>, size: u64| {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        bytes
            .try_reserve_exact(size.saturating_sub(bytes.len()))
            .map_err(|_| {
                file_error(
                    where_,
                    "file",
                    format!("{size} of {len} bytes"),
                    "cannot allocate memory for it",
                )
            })
    };
    let mut bytes = Vec::new();
    reserve(&mut bytes, 8 + n)?;
    bytes.extend_from_slice(&head);
    (&mut file).take(n).read_to_end(&mut bytes).map_err(io)?;
    // The data the tensors use ends at their largest end offset; a malformed entry is
    // left to `parse_model_file`, which then finds the data too short (or the entry bad).
    let used = serde_json::from_slice::<Value>(&bytes[8..])
        .ok()
        .and_then(|h| {
            h.as_object().map(|h| {
                h.iter()
                    .filter(|(name, _)| name.as_str() != "__metadata__")
                    .filter_map(|(_, t)| t.get("data_offsets")?.as_array()?.get(1)?.as_u64())
                    .max()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let want = (8 + n).saturating_add(used).min(len);
    reserve(&mut bytes, want)?;
    file.take(want - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if (bytes.len() as u64) < want {
        return Err(file_error(
            where_,
            "file",
            format!("{} of {len} bytes", bytes.len()),
            "the file changed while it was read",
        ));
    }
    Ok(bytes)
}

/// A tensor entry of the header, checked against the data section.
struct TensorRef {
    start: usize,
    count: usize,
}

/// The tensors of a file; each may be taken once.
struct Tensors<'a> {
    data: &'a [u8],
    entries: BTreeMap<String, TensorRef>,
    taken: HashSet<String>,
    where_: &'a str,
}

impl<'a> Tensors<'a> {
    fn parse(
        header: &Map<String, Value>,
        data: &'a [u8],
        where_: &'a str,
    ) -> Result<Tensors<'a>, EngineError> {
        let mut entries = BTreeMap::new();
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let bad = |reason: &str| file_error(where_, "tensor", format!("{name:?}"), reason);
            let dtype = info.get("dtype").and_then(Value::as_str);
            if dtype != Some("F32") {
                return Err(bad(
                    "unsupported dtype or malformed entry (only F32 tensors)",
                ));
            }
            let shape = info
                .get("shape")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("malformed entry (no shape)"))?;
            let mut count: usize = 1;
            for dim in shape {
                let d = dim
                    .as_u64()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| {
                        bad("malformed entry (shape must hold non-negative integers)")
                    })?;
                count = count.checked_mul(d).ok_or_else(|| bad("shape too large"))?;
            }
            let offsets: Vec<usize> = info
                .get("data_offsets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
                        .collect()
                })
                .unwrap_or_default();
            let [start, end] = offsets[..] else {
                return Err(bad("malformed entry (data_offsets must be [start, end])"));
            };
            let fits =
                start <= end && end <= data.len() && count.checked_mul(4) == Some(end - start);
            if !fits {
                return Err(bad(
                    "data offsets do not match the file (truncated or corrupted)",
                ));
            }
            entries.insert(name.clone(), TensorRef { start, count });
        }
        Ok(Tensors {
            data,
            entries,
            taken: HashSet::new(),
            where_,
        })
    }
}

impl Arrays for Tensors<'_> {
    /// The float32 values of the tensor named by `name`, which must hold `expected` values.
    fn take(&mut self, name: &Value, expected: usize, what: &str) -> Result<Vec<f32>, EngineError> {
        let where_ = self.where_;
        let Some(name) = name.as_str() else {
            return Err(file_error(
                where_,
                "network",
                format!("{what} = {name}"),
                "must be the name of a tensor",
            ));
        };
        let Some(t) = self.entries.get(name) else {
            return Err(file_error(
                where_,
                "tensor",
                format!("{name:?}"),
                format!("{what} names a tensor the file does not have"),
            ));
        };
        if !self.taken.insert(name.to_owned()) {
            return Err(file_error(
                where_,
                "tensor",
                format!("{name:?}"),
                format!("{what} uses a tensor that is already used elsewhere"),
            ));
        }
        if t.count != expected {
            return Err(file_error(
                where_,
                "tensor",
                format!("{name:?}"),
                format!("{what} needs {expected} values, the tensor has {}", t.count),
            ));
        }
        let bytes = &self.data[t.start..t.start + 4 * t.count];
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Parses a model file held in memory; `where_` names it in errors.
///
/// # Errors
/// [`EngineError::ModelFile`], as for [`read_model_file`].
pub fn parse_model_file(bytes: &[u8], where_: &str) -> Result<ModelFile, EngineError> {
    let len = bytes.len() as u64;
    let Some((head, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(file_error(
            where_,
            "file",
            format!("{len} bytes"),
            "too short to be a safetensors file",
        ));
    };
    let n = u64::from_le_bytes(*head);
    check_header_size(n, len, where_)?;
    // n <= len - 8, so it fits usize and the slice below is in range.
    let (header_bytes, data) = rest.split_at(n as usize);
    let header: Value = serde_json::from_slice(header_bytes)
        .map_err(|e| file_error(where_, "header", "unreadable JSON", e.to_string()))?;
    let Value::Object(header) = header else {
        return Err(file_error(
            where_,
            "header",
            json_kind(&header),
            "must be a JSON object",
        ));
    };
    let meta = match header.get("__metadata__") {
        Some(Value::Object(meta)) if meta.get("format").and_then(Value::as_str) == Some(FORMAT) => {
            meta
        }
        Some(Value::Object(meta)) => {
            let found = meta
                .get("format")
                .map_or("None".to_owned(), Value::to_string);
            return Err(file_error(
                where_,
                "format",
                found,
                "not an asyncsnn model file",
            ));
        }
        _ => {
            return Err(file_error(
                where_,
                "format",
                "None",
                "not an asyncsnn model file (no __metadata__)",
            ))
        }
    };
    for (key, current) in [
        ("spec_version", SPEC_VERSION),
        ("format_version", FORMAT_VERSION),
    ] {
        let version = match meta.get(key) {
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(v) => v.as_i64(),
            None => None,
        };
        let Some(version) = version else {
            let found = meta.get(key).map_or("None".to_owned(), Value::to_string);
            return Err(file_error(where_, key, found, "must be an integer"));
        };
        if version > i64::from(current) {
            return Err(file_error(
                where_,
                key,
                version,
                format!("is newer than this engine supports ({current}); upgrade asyncsnn"),
            ));
        }
    }
    let metadata: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    let mut tensors = Tensors::parse(&header, data, where_)?;
    let arch_text = match meta.get("network") {
        Some(Value::String(s)) => s,
        other => {
            return Err(file_error(
                where_,
                "network",
                other.map_or("None".to_owned(), json_kind),
                "the architecture must be a JSON string",
            ))
        }
    };
    let arch: Value = serde_json::from_str(arch_text)
        .map_err(|e| file_error(where_, "network", "unreadable JSON", e.to_string()))?;
    let form = parse_network(&arch, &mut tensors, where_)?;
    Ok(ModelFile {
        path: where_.to_owned(),
        spec: form.spec,
        input_shape: form.input_shape,
        population_shapes: form.population_shapes,
        population_names: form.population_names,
        metadata,
    })
}
