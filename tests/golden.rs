//! The Rust engine reproduces every golden vector of `tests/golden/` exactly.
//!
//! The golden vectors are generated from the pure-Python reference engine by
//! `tests/golden/generate.py` (the only writer of those files); each one pins one or more
//! rules of `docs/semantics.md`. This test needs no Python: it reads each JSON file,
//! builds the network (`_engine::dict_form`, the reader of model files too), the inputs
//! and the `RunConfig`, runs `run_batch` and compares every counter of
//! `_engine::counters::COUNTERS` with the expected value.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use _engine::dict_form::{parse_network, InlineArrays};
use _engine::{run_batch, Network, SampleInput, SPEC_VERSION};
use serde_json::Value;

mod support;

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

// ----------------------------------------------------------------------------- JSON helpers

fn get<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing key {key:?}"))
}

fn as_usize(v: &Value) -> Result<usize, String> {
    v.as_u64()
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| format!("expected a non-negative integer, got {v}"))
}

fn as_f64(v: &Value) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("expected a number, got {v}"))
}

fn as_array(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("expected an array, got {v}"))
}

/// A list of float32 values stored as JSON numbers (the repr of the float32 value as a
/// float64, so the conversion is exact).
fn f32s(v: &Value) -> Result<Vec<f32>, String> {
    as_array(v)?
        .iter()
        .map(|x| as_f64(x).map(|f| f as f32))
        .collect()
}

// ----------------------------------------------------------------------------- case parts

/// Owned input data of all samples.
enum Inputs {
    Dense {
        frames: Vec<Vec<f32>>,
        timesteps: usize,
    },
    Sparse {
        events: Vec<(Vec<u32>, Vec<u32>, Vec<f32>)>,
        timesteps: usize,
    },
}

impl Inputs {
    fn parse(v: &Value) -> Result<Inputs, String> {
        if let Some(dense) = v.get("dense") {
            let mut frames = Vec::new();
            let mut timesteps = 0;
            for sample in as_array(dense)? {
                let rows = as_array(sample)?;
                timesteps = rows.len();
                let mut flat = Vec::new();
                for row in rows {
                    flat.extend(f32s(row)?);
                }
                frames.push(flat);
            }
            return Ok(Inputs::Dense { frames, timesteps });
        }
        let timesteps = as_usize(get(v, "timesteps")?)?;
        let mut events = Vec::new();
        for sample in as_array(get(v, "sparse")?)? {
            let (mut t, mut index, mut value) = (Vec::new(), Vec::new(), Vec::new());
            for ev in as_array(sample)? {
                let ev = as_array(ev)?;
                let [tt, ii, vv] = &ev[..] else {
                    return Err(format!("sparse event {ev:?} is not (t, i, v)"));
                };
                let to_u32 =
                    |x: &Value| u32::try_from(as_usize(x)?).map_err(|e| format!("{x}: {e}"));
                t.push(to_u32(tt)?);
                index.push(to_u32(ii)?);
                value.push(as_f64(vv)? as f32);
            }
            events.push((t, index, value));
        }
        Ok(Inputs::Sparse { events, timesteps })
    }

    fn samples(&self) -> Vec<SampleInput<'_>> {
        match self {
            Inputs::Dense { frames, timesteps } => frames
                .iter()
                .map(|f| SampleInput::Dense {
                    frames: f,
                    timesteps: *timesteps,
                })
                .collect(),
            Inputs::Sparse { events, timesteps } => events
                .iter()
                .map(|(t, index, value)| SampleInput::Sparse {
                    t,
                    index,
                    value,
                    timesteps: *timesteps,
                })
                .collect(),
        }
    }
}

/// Runs one golden case; returns the list of mismatches (empty when it passes).
fn check_case(path: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let case: Value = serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
    let spec_version = as_usize(get(&case, "spec_version")?)?;
    // Version 2 runs every version-1 network as version 1 did (docs/semantics.md), so
    // the vectors of both versions must pass.
    if !(1..=SPEC_VERSION as usize).contains(&spec_version) {
        return Err(format!(
            "spec_version {spec_version} is not in 1..={SPEC_VERSION} (engine SPEC_VERSION)"
        ));
    }
    let where_ = path.display().to_string();
    let form = parse_network(
        get(&case, "network")?,
        &mut InlineArrays { where_: &where_ },
        &where_,
    )
    .map_err(|e| e.to_string())?;
    let dropout: Vec<f64> = form
        .spec
        .populations
        .iter()
        .map(|p| p.refractory_dropout)
        .collect();
    let config = support::run_config(get(&case, "options")?, &dropout)?;
    let net = Network::new(form.spec).map_err(|e| format!("Network::new failed: {e}"))?;
    let inputs = Inputs::parse(get(&case, "inputs")?)?;
    let samples = inputs.samples();
    let labels: Option<Vec<Option<usize>>> = match get(&case, "labels")? {
        Value::Null => None,
        v => Some(
            as_array(v)?
                .iter()
                .map(|l| as_usize(l).map(Some))
                .collect::<Result<_, _>>()?,
        ),
    };
    let sample_ids: Vec<u64> = match get(&case, "sample_ids")? {
        Value::Null => (0..samples.len() as u64).collect(),
        v => as_array(v)?
            .iter()
            .map(|x| x.as_u64().ok_or(format!("bad sample id {x}")))
            .collect::<Result<_, _>>()?,
    };
    let cancel = AtomicBool::new(false);
    let results = run_batch(
        &net,
        &samples,
        labels.as_deref(),
        &sample_ids,
        &config,
        &cancel,
    )
    .map_err(|e| format!("run_batch failed: {e}"))?;
    if results.len() != samples.len() {
        return Err(format!(
            "{} results for {} samples",
            results.len(),
            samples.len()
        ));
    }
    support::counter_mismatches(get(&case, "expected")?, &results)
}

#[test]
fn rust_engine_reproduces_every_golden_vector() {
    let files = golden_files();
    assert!(
        files.len() >= 20,
        "expected at least 20 golden vectors in tests/golden/, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        match check_case(path) {
            Ok(mismatches) => failures.extend(
                mismatches
                    .into_iter()
                    .map(|m| format!("golden case {name}: {m}")),
            ),
            Err(e) => failures.push(format!("golden case {name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatch(es) against the golden vectors:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
