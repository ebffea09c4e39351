//! The training tape of a batch: what the torch engine's unlayered backward pass needs
//! of a run (docs/semantics.md section 9), recorded by the event loop itself.
//!
//! A sample's tape is its event trace (R7.10: the input events with their values, the
//! spikes with their membranes before the reset, the deliveries with their
//! multiplicities, in the order of the semantics) and its membranes at the end of every
//! timestep. `asyncsnn.torch` runs the forward pass of a training batch here and walks
//! the tape backwards in `crate::train_kernels::tape`.

use rayon::prelude::*;

use super::config::{validate_config, RunConfig};
use super::input::SampleInput;
use super::trace::{run_recorded, TraceEvent};
use super::workspace::Workspace;
use crate::counters::SampleResult;
use crate::error::EngineError;
use crate::network::Network;

/// The tape of one sample.
#[derive(Debug, Clone, Default)]
pub struct SampleTape {
    /// The sample's events (R7.10), in the order of the semantics.
    pub events: Vec<TraceEvent>,
    /// `[T, N]`: the membrane of every neuron (by id) at the end of each timestep.
    pub membranes: Vec<f32>,
    /// The settles of R4.7, `[t, k, p]`: population `p` (1-based) settled in forward
    /// step `k` of timestep `t`; in step order (empty without settling populations).
    pub settles: Vec<[u32; 3]>,
    /// `[T, N]` with synaptic currents (R4.12; else empty): the synaptic current `S` of
    /// every neuron (by id) at the end of each timestep.
    pub syn: Vec<f32>,
    /// The sample's id of R5.5 (its random draws).
    pub sample: u32,
}

impl SampleTape {
    /// The bytes of its events and membranes.
    pub fn nbytes(&self) -> usize {
        self.events.len() * std::mem::size_of::<TraceEvent>()
            + self.membranes.len() * std::mem::size_of::<f32>()
            + self.settles.len() * std::mem::size_of::<[u32; 3]>()
            + self.syn.len() * std::mem::size_of::<f32>()
    }
}

/// Runs `inputs` (validated as [`run_batch`](super::run_batch) validates them) and
/// returns each sample's results with its tape, in input order; in parallel over the
/// samples with rayon when `parallel`. `sample_ids` are the ids of R5.5.
pub fn tape_batch(
    net: &Network,
    inputs: &[SampleInput],
    labels: Option<&[Option<usize>]>,
    sample_ids: &[u64],
    config: &RunConfig,
    parallel: bool,
) -> Result<Vec<(SampleResult, SampleTape)>, EngineError> {
    validate_config(net, config)?;
    if sample_ids.len() != inputs.len() || labels.is_some_and(|l| l.len() != inputs.len()) {
        return Err(EngineError::parameter(
            "sample_ids",
            format!("<{} ids>", sample_ids.len()),
            format!("must have one id (and label) per sample ({})", inputs.len()),
        ));
    }
    let one = |ws: &mut Result<Workspace, EngineError>, i: usize| {
        let ws = ws.as_mut().map_err(|e| e.clone())?;
        let label = labels.and_then(|l| l[i]);
        let rec = run_recorded(
            net,
            &inputs[i],
            label,
            sample_ids[i],
            i,
            false,
            config,
            ws,
            true,
        )?;
        let tape = SampleTape {
            events: rec.events,
            membranes: rec.membranes,
            settles: rec.settles,
            syn: rec.syn,
            sample: rec.sample,
        };
        Ok((rec.result, tape))
    };
    if parallel {
        (0..inputs.len())
            .into_par_iter()
            .map_init(|| Workspace::new(net), one)
            .collect()
    } else {
        let mut ws = Workspace::new(net);
        (0..inputs.len()).map(|i| one(&mut ws, i)).collect()
    }
}
