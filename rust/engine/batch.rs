//! Running samples: [`run_sample`] (one), [`run_batch`] (many, in parallel with rayon,
//! results in input order) and its variants; the order in which a batch's parameters
//! and inputs are validated.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::config::{validate_config, RunConfig};
use super::event_loop::run_prepared;
use super::input::{check_sample_id, prepare, PreparedSample, SampleInput};
use super::interrupt::Interrupt;
use super::workspace::Workspace;
use crate::counters::SampleResult;
use crate::error::{EngineError, Location};
use crate::network::Network;

/// Runs one sample (R3-R7) and returns its readout and counters.
///
/// Validates `config` ([`validate_config`]), `sample_id < 2^32` (the `sample` argument
/// of R5.5 is `sample_id as u32`), the input (R2: `timesteps >= 1`, dense frames of
/// `timesteps * input_size` finite values `>= 0`, sparse events with `t < timesteps`,
/// `index < input_size`, finite values `>= 0`) and `label < n_outputs`. Errors name the
/// sample as `"sample {sample_id}"`.
pub fn run_sample(
    net: &Network,
    input: &SampleInput,
    label: Option<usize>,
    sample_id: u64,
    config: &RunConfig,
) -> Result<SampleResult, EngineError> {
    validate_config(net, config)?;
    let sample = check_sample_id(sample_id)?;
    let ps = prepare(net, input, label, false, Location::Sample(sample_id))?;
    let mut ws = Workspace::new(net)?;
    run_prepared(net, &ps, sample, config, &mut ws, None)
}

/// Runs samples in parallel with rayon (current pool), results in input order,
/// identical for any thread count. Validates config and inputs before running anything.
/// `labels`: None or one per sample (each None or Some(class)); `sample_ids`: one per sample.
/// Checks `cancel` between samples and returns Err(Cancelled) if set.
///
/// Validation order: the config ([`validate_config`]), the lengths of `labels` and
/// `sample_ids`, every sample id `< 2^32`, then every input and label in sample order
/// (errors name the sample by its position: `"sample {index}"`). If several samples
/// fail while running (counter overflow, R7.8), the error of the first one in input
/// order is returned.
pub fn run_batch(
    net: &Network,
    inputs: &[SampleInput],
    labels: Option<&[Option<usize>]>,
    sample_ids: &[u64],
    config: &RunConfig,
    cancel: &AtomicBool,
) -> Result<Vec<SampleResult>, EngineError> {
    run_batch_with(net, inputs, labels, sample_ids, config, cancel, true)
}

/// [`run_batch`], on the calling thread only when `parallel` is false (no rayon job,
/// no thread hand-over: the cheapest path for one sample or one thread). Results do
/// not depend on `parallel`.
pub fn run_batch_with<'a>(
    net: &'a Network,
    inputs: &'a [SampleInput<'a>],
    labels: Option<&[Option<usize>]>,
    sample_ids: &[u64],
    config: &RunConfig,
    cancel: &AtomicBool,
    parallel: bool,
) -> Result<Vec<SampleResult>, EngineError> {
    let stop = Interrupt { cancel, poll: None };
    run_batch_checked(
        net, inputs, labels, sample_ids, config, &stop, parallel, false,
    )
}

/// [`run_batch_with`]; with `values_checked`, the caller has already run
/// [`check_dense_values`](super::check_dense_values) on every dense input ([`BatchRunner`](super::BatchRunner) checks a whole
/// batch, in parallel, before it runs it in parts), and it is not repeated.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_batch_checked<'a>(
    net: &'a Network,
    inputs: &'a [SampleInput<'a>],
    labels: Option<&[Option<usize>]>,
    sample_ids: &[u64],
    config: &RunConfig,
    stop: &Interrupt,
    parallel: bool,
    values_checked: bool,
) -> Result<Vec<SampleResult>, EngineError> {
    validate_config(net, config)?;
    let n = inputs.len();
    if let Some(l) = labels {
        if l.len() != n {
            return Err(EngineError::parameter(
                "labels",
                format!("<{} labels>", l.len()),
                format!("must have one label per sample ({n})"),
            ));
        }
    }
    if sample_ids.len() != n {
        return Err(EngineError::parameter(
            "sample_ids",
            format!("<{} ids>", sample_ids.len()),
            format!("must have one id per sample ({n})"),
        ));
    }
    let ids: Vec<u32> = sample_ids
        .iter()
        .map(|&id| check_sample_id(id))
        .collect::<Result<_, _>>()?;
    let prep = |(i, input): (usize, &SampleInput<'a>)| {
        let label = labels.and_then(|l| l[i]);
        prepare(
            net,
            input,
            label,
            values_checked,
            Location::Sample(i as u64),
        )
    };
    let prepared: Vec<Result<PreparedSample, EngineError>> = if parallel {
        inputs.par_iter().enumerate().map(prep).collect()
    } else {
        inputs.iter().enumerate().map(prep).collect()
    };
    let prepared: Vec<PreparedSample> = prepared.into_iter().collect::<Result<_, _>>()?;
    let cancel = stop.cancel;
    if cancel.load(Ordering::Relaxed) {
        return Err(EngineError::Cancelled);
    }
    let one = |ws: &mut Result<Workspace, EngineError>, (ps, &sample): (&PreparedSample, &u32)| {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        let ws = ws.as_mut().map_err(|e| e.clone())?;
        run_prepared(net, ps, sample, config, ws, Some(stop))
    };
    let results: Vec<Result<SampleResult, EngineError>> = if parallel {
        prepared
            .par_iter()
            .zip(ids.par_iter())
            .map_init(|| Workspace::new(net), one)
            .collect()
    } else {
        let mut ws = Workspace::new(net);
        prepared
            .iter()
            .zip(ids.iter())
            .map(|x| one(&mut ws, x))
            .collect()
    };
    if results
        .iter()
        .any(|r| matches!(r, Err(EngineError::Cancelled)))
    {
        return Err(EngineError::Cancelled);
    }
    results.into_iter().collect()
}
