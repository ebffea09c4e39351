//! The inference engine (R3-R7): [`run_sample`] runs one sample, [`run_batch`] runs many
//! in parallel with rayon.
//!
//! One file per concern:
//! - `config.rs`: the run options ([`RunConfig`], [`StopMode`]) and [`validate_config`];
//! - `input.rs`: the input of a sample (R2): [`SampleInput`], its validation and the
//!   merge of sparse events, [`check_dense_values`];
//! - `workspace.rs`: the state of one sample and its reusable buffers, touch tracking;
//! - `deliver.rs`: deliveries (R4.2, R4.3.4) through dense, conv and pool projections;
//! - `fire.rs`: integrate and fire (R4.3.1-2), the finiteness checks of R8.3;
//! - `event_loop.rs`: the per-sample driver, one function per phase of a timestep, and
//!   its baseline/AVX2 builds;
//! - `pending_inputs.rs`: non-prioritised input (R4.13), its input entries of the
//!   pending set and the selection over them and the pending neurons;
//! - `interrupt.rs`: cancellation ([`Interrupt`], Ctrl-C);
//! - `batch.rs`: [`run_sample`], [`run_batch`] and its variants, the validation order;
//! - `tape.rs`: the training tape of a batch (events and membranes), [`tape_batch`];
//! - `trace.rs`: the event trace of a sample (R7.10), [`trace_batch`];
//! - `runner.rs`: [`BatchRunner`], a batch run in chunks with a cancel flag and a poll
//!   (Ctrl-C), on a cached thread pool, its dense values checked first (the binding's
//!   batch policy, without Python).
//!
//! Data layout of one sample's state (the private `Workspace`, allocated once per
//! worker and reused; nothing is allocated inside the event loop once its buffers have
//! grown):
//! - `v`, `cur`, `refractory`, `debt`: one entry per non-input neuron (R3.1; `debt`
//!   only for a network with settling populations), indexed by its storage slot
//!   (channel-last in conv/pool targets, see `crate::network`); `v_pre`, read by the
//!   scheduler, by neuron id. `cur` is the current buffer `I` of R4.2/R4.3,
//!   always all-zero between forward steps.
//! - touch tracking: a dense delivery marks its whole target population "full"; a
//!   conv/pool delivery appends the pixels it reaches to the population's touched list
//!   (deduplicated with a per-pixel flag), and marks the population full once more
//!   than 1/8 of its pixels are listed. The integrate/fire pass (R4.3.1-2) visits only
//!   touched populations: the whole range of a full one, the touched pixels (all their
//!   channels, contiguous slots) of a sparse one. A neuron that received no current
//!   cannot cross its threshold (after every fire phase all non-refractory membranes
//!   are `<= threshold`, the leak keeps them there and refractory membranes are 0), so
//!   this is exactly R4.3.
//! - settling populations (R1.6, R4.7; only when the network has some,
//!   `Network::any_settling`, otherwise none of this runs): `due` flags per population
//!   and sample, set at the start of a timestep. A due population that a step touches
//!   settles: it is integrated whole (bias added to its current, debts paid; in a
//!   synaptic population, R4.12, the synaptic currents `S` decay and take the step's
//!   current, and the membranes integrate `S`) and is no longer due. Later deliveries
//!   in the timestep charge `S` as well as `V` (also of a refractory neuron). Deliveries touch their targets; forward step 0 also touches the due
//!   targets of the input (a silent frame still settles them), and a settle-only step
//!   touches the lowest due population. A due population's neurons are never checked
//!   before it settles, and the resets that leave a membrane above its threshold also
//!   leave it refractory, so in a settling population the threshold test excludes
//!   refractory neurons; for every other neuron the invariant above holds unchanged.
//! - fire (R4.3.2): the integrate pass also resets the neurons that cross (`v_pre`,
//!   the reset of R4.8, refractory flag), which touches only their own state; it leaves their
//!   ids in increasing order (a bitmap for long lists), and the event loop then does
//!   what depends on that order: counters, readout, the pending set.
//! - deferred rows: the latest dense row delivered to a population in a forward step is
//!   not added to `cur` at once; the integrate pass adds it (`cur[q] + s * w[q]`, then
//!   `V += ` that) in the same pass that integrates the population, which saves one
//!   pass over the population per forward step and performs the same float operations.
//!   A conv or pool delivery into the population adds the kept row first, so that the
//!   terms of every neuron keep the order of the group.
//! - delivery by runs: the input events of a timestep are one run, and a forward group
//!   is cut into runs of members of one population (a `layered` group is one run). Each
//!   run goes through each outgoing projection in one call, which matches the
//!   projection's kind and loads its tables once per run instead of once per source.
//!   Where two projections of the population reach the same population, the run is
//!   delivered source by source instead, so the float sum into every neuron keeps the
//!   order of R4.2/R4.3.4 exactly (R8.2 leaves it open; keeping it keeps the results
//!   bit-identical for any weights).
//! - the pending set and its scheduler's queue: [`crate::scheduler`].
//!
//! A forward step therefore costs O(synapses delivered + neurons touched + scheduler),
//! independent of the network size; only the leak at the start of a timestep (R4.1) is
//! a pass over all neurons.

mod batch;
mod config;
mod deliver;
mod event_loop;
mod fire;
mod input;
mod interrupt;
mod pending_inputs;
mod runner;
mod tape;
mod trace;
mod workspace;

pub use batch::{run_batch, run_batch_with, run_sample};
pub use config::{validate_config, RunConfig, StopMode};
pub use input::{check_dense_values, labels_from_i64, SampleInput, SparseEvents};
pub use interrupt::{Interrupt, POLL_INTERVAL};
pub use runner::{BatchRunner, Poll};
pub use tape::{tape_batch, SampleTape};
pub use trace::{trace_batch, EventKind, TraceColumns, TraceEvent};

use crate::error::{EngineError, Location};

/// Adds `x` to a counter of R7, or fails with [`EngineError::Overflow`] naming `what`
/// (R7.8).
#[inline(always)]
fn add(counter: &mut i64, x: u64, location: &Location, what: &str) -> Result<(), EngineError> {
    *counter = i64::try_from(x)
        .ok()
        .and_then(|x| counter.checked_add(x))
        .ok_or_else(|| EngineError::overflow(location, what))?;
    Ok(())
}
