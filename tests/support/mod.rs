//! Helpers shared by the Rust tests that read JSON cases written by Python: the run
//! options of a case (`asyncsnn.result.InferenceResult.options`, as
//! `tests/golden/generate.py` and `scripts/make_fixtures.py` store them) and the
//! comparison of counters with their expected values, counter by counter of
//! `_engine::counters::COUNTERS`.

use _engine::counters::COUNTERS;
use _engine::{RunConfig, SampleResult, Scheduler, StopMode};
use serde_json::Value;

fn get<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing key {key:?}"))
}

fn u32_of(v: &Value, key: &str) -> Result<u32, String> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| format!("{key} = {v} is not a u32"))
}

fn f64_of(v: &Value, key: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("{key} = {v} is not a number"))
}

/// The [`RunConfig`] of the options `opts` of a case; `network_dropout` holds the
/// populations' own `refractory_dropout` (for `"network"`).
///
/// Names are parsed by the engine (`FromStr`); `"max_steps"` as a stop mode is the cap
/// alone (R6.3): drain + `max_steps`.
pub fn run_config(opts: &Value, network_dropout: &[f64]) -> Result<RunConfig, String> {
    let text = |key: &str| -> Result<&str, String> {
        get(opts, key)?
            .as_str()
            .ok_or_else(|| format!("option {key} is not a string"))
    };
    let scheduler = text("scheduler")?
        .parse::<Scheduler>()
        .map_err(|e| e.to_string())?
        .with_jitter(f64_of(get(opts, "jitter")?, "jitter")? as f32);
    let stop = text("stop")?
        .parse::<StopMode>()
        .map_err(|e| e.to_string())?
        .with_extra_steps(u32_of(get(opts, "extra_steps")?, "extra_steps")?);
    let max_steps = match get(opts, "max_steps")? {
        Value::Null => None,
        v => Some(u32_of(v, "max_steps")?),
    };
    let seed = get(opts, "seed")?
        .as_u64()
        .ok_or("seed is not a u64".to_owned())?;
    let refractory_dropout = match get(opts, "refractory_dropout")? {
        Value::String(s) if s == "off" => None,
        Value::String(s) if s == "network" => Some(network_dropout.to_vec()),
        v => Some(vec![
            f64_of(v, "refractory_dropout")?;
            network_dropout.len()
        ]),
    };
    let forward_group_size = get(opts, "forward_group_size")?
        .as_u64()
        .and_then(|f| usize::try_from(f).ok())
        .ok_or("forward_group_size is not a usize".to_owned())?;
    Ok(RunConfig {
        scheduler,
        forward_group_size,
        stop,
        max_steps,
        seed,
        refractory_dropout,
        input_dropout: optional_p(opts, "input_dropout")?,
        spike_dropout: optional_p(opts, "spike_dropout")?,
        // R4.13: true (R2.3) when the case does not name it.
        prioritize_input: match opts.get("prioritize_input") {
            None => true,
            Some(v) => v.as_bool().ok_or("prioritize_input is not a bool")?,
        },
    })
}

/// An optional probability option (R4.10, R4.11): 0 when the case does not name it
/// (the vectors written before these options).
fn optional_p(opts: &Value, key: &str) -> Result<f64, String> {
    match opts.get(key) {
        None => Ok(0.0),
        Some(v) => f64_of(v, key),
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

/// The differences between `results` and `expected`, a map from every counter name of
/// [`COUNTERS`] (and no other key) to its nested per-sample lists.
///
/// # Errors
/// When `expected` lacks a counter, has an unknown key or holds a non-integer.
pub fn counter_mismatches(
    expected: &Value,
    results: &[SampleResult],
) -> Result<Vec<String>, String> {
    let map = expected
        .as_object()
        .ok_or("expected counters are not an object")?;
    if let Some(unknown) = map
        .keys()
        .find(|k| !COUNTERS.iter().any(|c| c.name == k.as_str()))
    {
        return Err(format!("unknown counter {unknown:?}"));
    }
    let mut mismatches = Vec::new();
    for counter in &COUNTERS {
        let name = counter.name;
        let per_sample = get(expected, name)?
            .as_array()
            .ok_or_else(|| format!("{name} is not a list"))?;
        if per_sample.len() != results.len() {
            mismatches.push(format!(
                "{name}: {} expected samples, {} results",
                per_sample.len(),
                results.len()
            ));
            continue;
        }
        for (b, (exp, res)) in per_sample.iter().zip(results).enumerate() {
            let mut want = Vec::new();
            flatten_i64(exp, &mut want)?;
            let got = counter.values(res);
            if got != want {
                mismatches.push(format!(
                    "sample {b}: {name}: expected {want:?}, got {got:?}"
                ));
            }
        }
    }
    Ok(mismatches)
}
