//! The Rust engine reproduces every golden vector of `tests/golden/` exactly.
//!
//! The golden vectors are generated from the pure-Python reference engine by
//! `scripts/regen_golden.py` (the only writer of those files); each one pins one or more
//! rules of `docs/semantics.md`. This test needs no Python: it reads each JSON file,
//! builds the `NetworkSpec`, the inputs and the `RunConfig`, runs `run_batch` and
//! compares every counter with the expected value.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use _engine::{
    run_batch, Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec,
    RunConfig, SampleInput, SampleResult, Scheduler, StopMode, SPEC_VERSION,
};
use serde_json::Value;

/// The counter fields of `python/asyncsnn/result.py::COUNTER_FIELDS`, in its order.
const FIELDS: [&str; 19] = [
    "predictions",
    "output_counts",
    "timestep_output_counts",
    "spikes",
    "spikes_total",
    "input_events",
    "synops",
    "synops_per_projection",
    "forward_steps",
    "timestep_forward_steps",
    "dropped_spikes",
    "queue_peak",
    "first_output_step",
    "first_output_class",
    "first_output_spikes",
    "first_output_synops",
    "first_correct_step",
    "first_correct_spikes",
    "first_correct_synops",
];

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

fn usizes(v: &Value) -> Result<Vec<usize>, String> {
    as_array(v)?.iter().map(as_usize).collect()
}

/// A list of float32 values stored as JSON numbers (the repr of the float32 value as a
/// float64, so the conversion is exact).
fn f32s(v: &Value) -> Result<Vec<f32>, String> {
    as_array(v)?
        .iter()
        .map(|x| as_f64(x).map(|f| f as f32))
        .collect()
}

fn pair(v: &Value) -> Result<(usize, usize), String> {
    match usizes(v)?.as_slice() {
        [a, b] => Ok((*a, *b)),
        other => Err(format!("expected a pair, got {other:?}")),
    }
}

/// All integers of a nested list, in row-major order.
fn flatten_i64(v: &Value, out: &mut Vec<i64>) -> Result<(), String> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| flatten_i64(x, out)),
        other => {
            out.push(
                other
                    .as_i64()
                    .ok_or_else(|| format!("expected an integer, got {other}"))?,
            );
            Ok(())
        }
    }
}

// ----------------------------------------------------------------------------- case parts

/// The network of `asyncsnn._dictform.network_to_dict`.
fn network_spec(d: &Value) -> Result<NetworkSpec, String> {
    let input_shape = usizes(get(d, "input_shape")?)?;
    let mut shapes = vec![input_shape.clone()];
    let mut populations = Vec::new();
    for (n, p) in as_array(get(d, "populations")?)?.iter().enumerate() {
        let where_ = format!("population {}", n + 1);
        let shape = usizes(get(p, "shape")?).map_err(|e| format!("{where_}: {e}"))?;
        populations.push(PopulationSpec {
            size: shape.iter().product(),
            threshold: f32s(get(p, "threshold")?)?,
            beta: f32s(get(p, "beta")?)?,
            refractory_dropout: as_f64(get(p, "refractory_dropout")?)?,
        });
        shapes.push(shape);
    }
    let mut projections = Vec::new();
    for (n, e) in as_array(get(d, "projections")?)?.iter().enumerate() {
        let source = as_usize(get(e, "source")?)?;
        let target = as_usize(get(e, "target")?)?;
        let kind_name = get(e, "kind")?
            .as_str()
            .ok_or_else(|| format!("projection {n}: kind is not a string"))?;
        let source_chw = || -> Result<(usize, usize, usize), String> {
            match shapes.get(source).map(Vec::as_slice) {
                Some([c, h, w]) => Ok((*c, *h, *w)),
                other => Err(format!(
                    "projection {n} ({kind_name}): source shape {other:?} is not (c, h, w)"
                )),
            }
        };
        let kind = match kind_name {
            "dense" => ProjectionKind::Dense {
                weight: f32s(get(e, "weight")?)?,
            },
            "conv2d" => {
                let ws = usizes(get(e, "weight_shape")?)?;
                let [c_out, c_in, kh, kw] = ws[..] else {
                    return Err(format!("projection {n}: conv weight_shape {ws:?}"));
                };
                let (_, in_h, in_w) = source_chw()?;
                ProjectionKind::Conv2d {
                    weight: f32s(get(e, "weight")?)?,
                    c_in,
                    in_h,
                    in_w,
                    c_out,
                    kh,
                    kw,
                    stride: pair(get(e, "stride")?)?,
                    padding: pair(get(e, "padding")?)?,
                }
            }
            "avgpool2d" | "sumpool2d" => {
                let (channels, in_h, in_w) = source_chw()?;
                let (kh, kw) = pair(get(e, "kernel_size")?)?;
                ProjectionKind::Pool {
                    kind: if kind_name == "avgpool2d" {
                        PoolKind::Avg
                    } else {
                        PoolKind::Sum
                    },
                    channels,
                    in_h,
                    in_w,
                    kh,
                    kw,
                    stride: pair(get(e, "stride")?)?,
                }
            }
            other => return Err(format!("projection {n}: unknown kind {other:?}")),
        };
        projections.push(ProjectionSpec {
            source,
            target,
            kind,
        });
    }
    Ok(NetworkSpec {
        input_size: input_shape.iter().product(),
        populations,
        projections,
    })
}

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

fn run_config(opts: &Value, spec: &NetworkSpec) -> Result<RunConfig, String> {
    let text = |key: &str| -> Result<String, String> {
        get(opts, key)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("option {key} is not a string"))
    };
    // Names are parsed by the engine (FromStr); "max_steps" as a stop mode is the cap
    // alone (R6.3): drain + max_steps.
    let scheduler = text("scheduler")?
        .parse::<Scheduler>()
        .map_err(|e| e.to_string())?;
    let scheduler = match scheduler {
        Scheduler::Momentum { .. } => scheduler.with_jitter(as_f64(get(opts, "jitter")?)? as f32),
        other => other,
    };
    let extra_steps = u32::try_from(as_usize(get(opts, "extra_steps")?)?)
        .map_err(|e| format!("extra_steps: {e}"))?;
    let stop = text("stop")?
        .parse::<StopMode>()
        .map_err(|e| e.to_string())?
        .with_extra_steps(extra_steps);
    let max_steps = match get(opts, "max_steps")? {
        Value::Null => None,
        v => Some(u32::try_from(as_usize(v)?).map_err(|e| format!("max_steps: {e}"))?),
    };
    let seed = get(opts, "seed")?
        .as_u64()
        .ok_or("seed is not a u64".to_owned())?;
    let refractory_dropout = match get(opts, "refractory_dropout")? {
        Value::String(s) if s == "off" => None,
        Value::String(s) if s == "network" => Some(
            spec.populations
                .iter()
                .map(|p| p.refractory_dropout)
                .collect(),
        ),
        v => Some(vec![as_f64(v)?; spec.populations.len()]),
    };
    Ok(RunConfig {
        scheduler,
        forward_group_size: as_usize(get(opts, "forward_group_size")?)?,
        stop,
        max_steps,
        seed,
        refractory_dropout,
    })
}

/// The counters of one sample under the `COUNTER_FIELDS` names, flattened row-major.
fn field(r: &SampleResult, name: &str) -> Vec<i64> {
    match name {
        "predictions" => vec![r.prediction],
        "output_counts" => r.output_counts.clone(),
        "timestep_output_counts" => r.timestep_output_counts.clone(),
        "spikes" => r.spikes.clone(),
        "spikes_total" => vec![r.spikes_total],
        "input_events" => vec![r.input_events],
        "synops" => vec![r.synops],
        "synops_per_projection" => r.synops_per_projection.clone(),
        "forward_steps" => vec![r.forward_steps],
        "timestep_forward_steps" => r.timestep_forward_steps.clone(),
        "dropped_spikes" => vec![r.dropped_spikes],
        "queue_peak" => vec![r.queue_peak],
        "first_output_step" => r.first_output_step.clone(),
        "first_output_class" => r.first_output_class.clone(),
        "first_output_spikes" => r.first_output_spikes.clone(),
        "first_output_synops" => r.first_output_synops.clone(),
        "first_correct_step" => r.first_correct_step.clone(),
        "first_correct_spikes" => r.first_correct_spikes.clone(),
        "first_correct_synops" => r.first_correct_synops.clone(),
        other => panic!("unknown field {other}"),
    }
}

/// Runs one golden case; returns the list of mismatches (empty when it passes).
fn check_case(path: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let case: Value = serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
    let spec_version = as_usize(get(&case, "spec_version")?)?;
    if spec_version != SPEC_VERSION as usize {
        return Err(format!(
            "spec_version {spec_version} != engine SPEC_VERSION {SPEC_VERSION}"
        ));
    }
    let spec = network_spec(get(&case, "network")?)?;
    let config = run_config(get(&case, "options")?, &spec)?;
    let net = Network::new(spec).map_err(|e| format!("Network::new failed: {e}"))?;
    let inputs = Inputs::parse(get(&case, "inputs")?)?;
    let samples = inputs.samples();
    let labels: Option<Vec<Option<usize>>> = match get(&case, "labels")? {
        Value::Null => None,
        v => Some(usizes(v)?.into_iter().map(Some).collect()),
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
    let expected = get(&case, "expected")?;
    let mut mismatches = Vec::new();
    for name in FIELDS {
        let per_sample = as_array(get(expected, name)?)?;
        if per_sample.len() != results.len() {
            mismatches.push(format!(
                "{name}: {} expected samples, {} results",
                per_sample.len(),
                results.len()
            ));
            continue;
        }
        for (b, (exp, res)) in per_sample.iter().zip(&results).enumerate() {
            let mut want = Vec::new();
            flatten_i64(exp, &mut want)?;
            let got = field(res, name);
            if got != want {
                mismatches.push(format!(
                    "sample {b}: {name}: expected {want:?}, got {got:?}"
                ));
            }
        }
    }
    Ok(mismatches)
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
