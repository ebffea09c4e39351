//! The event trace of a sample (R7.10): every input event, spike and delivery, in the
//! order of the semantics, for rasters and for checking one engine against another.
//!
//! Tracing is off in the ordinary run (`Workspace::trace` is `None`; each phase of the
//! event loop tests it once per forward step, a predicted branch). [`trace_batch`] runs
//! the batch as [`run_batch`](super::run_batch) does (same validation, same errors,
//! same results) and then runs each sample again with a trace buffer.

use std::sync::atomic::AtomicBool;

use rayon::prelude::*;

use super::batch::run_batch_with;
use super::config::RunConfig;
use super::event_loop::run_prepared;
use super::input::{check_sample_id, prepare, SampleInput};
use super::workspace::Workspace;
use crate::counters::SampleResult;
use crate::error::{EngineError, Location};
use crate::network::Network;

/// What an event of R7.10 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A non-zero input `x_i(t)` delivered in forward step 0 (R4.2); the value is
    /// `x_i(t)`.
    Input,
    /// A spike of a non-input neuron in the fire phase of a forward step (R4.3.2); the
    /// value is its membrane before the reset (`v_pre`).
    Spike,
    /// A pending neuron delivered at the end of a forward step (R4.3.4); the value is
    /// its multiplicity (for an input entry of non-prioritised input, R4.13: population
    /// 0, the value `x_i(t)`).
    Delivery,
}

impl EventKind {
    /// The name used in Python and in files: `input`, `spike`, `delivery`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Input => "input",
            EventKind::Spike => "spike",
            EventKind::Delivery => "delivery",
        }
    }

    /// The code of the `kind` column of [`TraceColumns`]: 0, 1, 2 in the order above.
    pub fn code(self) -> i64 {
        match self {
            EventKind::Input => 0,
            EventKind::Spike => 1,
            EventKind::Delivery => 2,
        }
    }
}

/// The traces of a batch as columns, one entry per event, samples in input order (the
/// form `asyncsnn.trace.Trace` reads: `trace_<name>` arrays).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceColumns {
    /// `sample` (position in the batch), `timestep`, `step`, `kind` ([`EventKind::code`]),
    /// `population`, `neuron`, named by [`TraceColumns::INT_NAMES`].
    pub ints: [Vec<i64>; 6],
    pub value: Vec<f64>,
}

impl TraceColumns {
    /// The names of [`TraceColumns::ints`], in order.
    pub const INT_NAMES: [&'static str; 6] =
        ["sample", "timestep", "step", "kind", "population", "neuron"];

    /// The events of `traces` (one list per sample), flattened.
    pub fn new(traces: &[Vec<TraceEvent>]) -> TraceColumns {
        let n: usize = traces.iter().map(Vec::len).sum();
        let mut ints: [Vec<i64>; 6] = std::array::from_fn(|_| Vec::with_capacity(n));
        let mut value = Vec::with_capacity(n);
        for (b, events) in traces.iter().enumerate() {
            for e in events {
                let row = [
                    b as i64,
                    e.timestep.into(),
                    e.step.into(),
                    e.kind.code(),
                    e.population.into(),
                    e.neuron.into(),
                ];
                for (column, x) in ints.iter_mut().zip(row) {
                    column.push(x);
                }
                value.push(e.value);
            }
        }
        TraceColumns { ints, value }
    }
}

/// One event of a sample's trace (R7.10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEvent {
    /// The timestep `t`.
    pub timestep: u32,
    /// The forward step `k` within the timestep.
    pub step: u32,
    pub kind: EventKind,
    /// The population, counted with the input as 0 (R1.1).
    pub population: u32,
    /// The neuron's index within its population.
    pub neuron: u32,
    /// The input value, the membrane before the reset, or the multiplicity (see
    /// [`EventKind`]); float32 values are exact in float64.
    pub value: f64,
}

/// The events of a sample being recorded (`Workspace::trace`), and for the training
/// tape its membranes at the end of every timestep. Recording is fallible: when the
/// buffers cannot grow, the recording stops and [`TraceBuf::finish`] reports an
/// [`EngineError::Memory`] (never an abort, never a partial trace).
#[derive(Debug, Default)]
pub(crate) struct TraceBuf {
    pub(super) events: Vec<TraceEvent>,
    /// `Some` for the training tape (`tape.rs`): `[T, N]` membranes by neuron id.
    pub(super) membranes: Option<Vec<f32>>,
    /// With the membranes: the settles of R4.7, `[t, k, population]` (1-based), in the
    /// order of the forward steps.
    pub(super) settles: Vec<[u32; 3]>,
    /// With the membranes, in a network with synaptic currents (R4.12): `[T, N]`, the
    /// synaptic current `S` of every neuron (by id) at the end of each timestep.
    pub(super) syn: Vec<f32>,
    /// What could not grow, and to how many bytes.
    failed: Option<(&'static str, u128)>,
}

impl TraceBuf {
    /// An empty buffer; `membranes`: record the membranes too.
    pub(super) fn new(membranes: bool) -> TraceBuf {
        TraceBuf {
            events: Vec::new(),
            membranes: membranes.then(Vec::new),
            settles: Vec::new(),
            syn: Vec::new(),
            failed: None,
        }
    }

    /// Room for `n` more events; false (and nothing recorded from then on) when there is
    /// none.
    fn room(&mut self, n: usize) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.events.try_reserve(n).is_err() {
            let bytes = (self.events.len() + n) as u128 * std::mem::size_of::<TraceEvent>() as u128;
            self.fail("event trace", bytes);
            return false;
        }
        true
    }

    fn fail(&mut self, what: &'static str, bytes: u128) {
        self.failed = Some((what, bytes));
        self.events = Vec::new();
        self.membranes = self.membranes.as_ref().map(|_| Vec::new());
        self.settles = Vec::new();
        self.syn = Vec::new();
    }

    /// The events, membranes and settles, or the [`EngineError::Memory`] of a buffer
    /// that could not grow.
    pub(super) fn finish(self, location: &Location) -> Result<Recording, EngineError> {
        match self.failed {
            Some((what, bytes)) => Err(EngineError::memory(location, what, bytes)),
            None => Ok((
                self.events,
                self.membranes.unwrap_or_default(),
                self.settles,
                self.syn,
            )),
        }
    }
}

/// What a [`TraceBuf`] recorded: events, membranes, settles and synaptic currents.
pub(super) type Recording = (Vec<TraceEvent>, Vec<f32>, Vec<[u32; 3]>, Vec<f32>);

/// The training tape: the due populations among `touched` (0-based, as the event loop
/// numbers them) that settle in forward step `k` of timestep `t` (R4.7), recorded
/// before the integrate phase (nothing without a membrane buffer).
#[cold]
#[inline(never)]
pub(super) fn record_settles(
    trace: &mut TraceBuf,
    net: &Network,
    t: usize,
    k: u32,
    touched: &[usize],
    due: &[bool],
) {
    if trace.membranes.is_none() || trace.failed.is_some() {
        return;
    }
    let start = trace.settles.len();
    for &p in touched {
        if net.settling[p] && due[p] {
            if trace.settles.try_reserve(1).is_err() {
                let bytes = (start + touched.len()) as u128 * 12;
                trace.fail("training tape settles", bytes);
                return;
            }
            trace.settles.push([t as u32, k, p as u32 + 1]);
        }
    }
    trace.settles[start..].sort_unstable();
}

/// The training tape: appends the membranes `v` (by slot) at the end of a timestep, by
/// neuron id, and the synaptic currents `syn` (by slot) if given (nothing without a
/// membrane buffer).
#[cold]
#[inline(never)]
pub(super) fn record_membranes(
    trace: &mut TraceBuf,
    net: &Network,
    v: &[f32],
    syn: Option<&[f32]>,
) {
    let Some(out) = trace.membranes.as_mut() else {
        return;
    };
    if trace.failed.is_some() {
        return;
    }
    if !append_by_id(out, net, v) {
        let bytes = (out.len() + net.n_neurons()) as u128 * 4;
        trace.fail("training tape membranes", bytes);
        return;
    }
    if let Some(s) = syn {
        if !append_by_id(&mut trace.syn, net, s) {
            let bytes = (trace.syn.len() + net.n_neurons()) as u128 * 4;
            trace.fail("training tape synaptic currents", bytes);
        }
    }
}

/// Appends the values `x` (by slot) by neuron id; false when `out` cannot grow.
fn append_by_id(out: &mut Vec<f32>, net: &Network, x: &[f32]) -> bool {
    let n = net.n_neurons();
    if out.try_reserve(n).is_err() {
        return false;
    }
    let start = out.len();
    out.resize(start + n, 0.0);
    for (slot, &v) in x.iter().enumerate().take(n) {
        out[start + net.id_of[slot] as usize] = v;
    }
    true
}

/// Runs `inputs` as [`run_batch`](super::run_batch) does (the same validation, errors
/// and results, in input order) and returns, with the results, the trace of every
/// sample (R7.10). `sample_ids` None means the positions in the batch. A trace holds one
/// event per input event, spike and delivery, so it is as long as `input_events +
/// spikes_total + deliveries` of the sample.
pub fn trace_batch(
    net: &Network,
    inputs: &[SampleInput],
    labels: Option<&[Option<usize>]>,
    sample_ids: Option<&[u64]>,
    config: &RunConfig,
    cancel: &AtomicBool,
) -> Result<(Vec<SampleResult>, Vec<Vec<TraceEvent>>), EngineError> {
    let positions: Vec<u64>;
    let sample_ids = match sample_ids {
        Some(ids) => ids,
        None => {
            positions = (0..inputs.len() as u64).collect();
            &positions
        }
    };
    let results = run_batch_with(net, inputs, labels, sample_ids, config, cancel, true)?;
    let one = |ws: &mut Result<Workspace, EngineError>, i: usize| {
        let ws = ws.as_mut().map_err(|e| e.clone())?;
        let label = labels.and_then(|l| l[i]);
        let rec = run_recorded(
            net,
            &inputs[i],
            label,
            sample_ids[i],
            i,
            true,
            config,
            ws,
            false,
        )?;
        if rec.result != results[i] {
            // The traced run is the same run: anything else is a bug of the engine.
            return Err(EngineError::Internal(format!(
                "the traced run of sample {i} differs from the untraced one"
            )));
        }
        Ok(rec.events)
    };
    let traces = (0..inputs.len())
        .into_par_iter()
        .map_init(|| Workspace::new(net), one)
        .collect::<Result<Vec<_>, EngineError>>()?;
    Ok((results, traces))
}

/// The results of sample `i` (`input`, `label`, `sample_id` of R5.5) run with a
/// recording buffer, its events and (with `membranes`, the training tape) its membranes
/// at the end of every timestep; `values_checked`: the input values were checked with
/// the batch's.
pub(super) struct Recorded {
    pub(super) result: SampleResult,
    pub(super) events: Vec<TraceEvent>,
    pub(super) membranes: Vec<f32>,
    pub(super) settles: Vec<[u32; 3]>,
    pub(super) syn: Vec<f32>,
    pub(super) sample: u32,
}

/// Runs sample `i` with a recording buffer ([`Recorded`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_recorded(
    net: &Network,
    input: &SampleInput,
    label: Option<usize>,
    sample_id: u64,
    i: usize,
    values_checked: bool,
    config: &RunConfig,
    ws: &mut Workspace,
    membranes: bool,
) -> Result<Recorded, EngineError> {
    let at = Location::Sample(i as u64);
    let ps = prepare(net, input, label, values_checked, at.clone())?;
    let sample = check_sample_id(sample_id)?;
    ws.trace = Some(TraceBuf::new(membranes));
    let ran = run_prepared(net, &ps, sample, config, ws, None);
    let buf = ws.trace.take().unwrap_or_default();
    let result = ran?;
    let (events, membranes, settles, syn) = buf.finish(&at)?;
    Ok(Recorded {
        result,
        events,
        membranes,
        settles,
        syn,
        sample,
    })
}

/// R7.10: the input events of forward step 0 of timestep `t` (`index`, in index order,
/// with their values).
pub(super) fn record_inputs(trace: &mut TraceBuf, t: usize, index: &[u32], value: &[f32]) {
    record_input_values(trace, t, 0, EventKind::Input, index, value);
}

/// R7.10 with R4.13: the input entries of the group delivered at the end of forward
/// step `k` (`index` increasing, with their values): population 0, value `x_i(t)`.
pub(super) fn record_input_deliveries(
    trace: &mut TraceBuf,
    t: usize,
    k: u32,
    index: &[u32],
    value: &[f32],
) {
    record_input_values(trace, t, k, EventKind::Delivery, index, value);
}

/// Events `kind` of the inputs `index` (population 0) with their values `x_i(t)`.
#[cold]
#[inline(never)]
fn record_input_values(
    trace: &mut TraceBuf,
    t: usize,
    k: u32,
    kind: EventKind,
    index: &[u32],
    value: &[f32],
) {
    if !trace.room(index.len()) {
        return;
    }
    trace
        .events
        .extend(index.iter().zip(value).map(|(&i, &x)| TraceEvent {
            timestep: t as u32,
            step: k,
            kind,
            population: 0,
            neuron: i,
            value: f64::from(x),
        }));
}

/// R7.10: the spikes of forward step `k` (`fired`, neuron ids in increasing order, by
/// population ranges `fired_pops`), with their membranes before the reset.
#[cold]
#[inline(never)]
pub(super) fn record_spikes(trace: &mut TraceBuf, net: &Network, ws_fired: Fired<'_>) {
    let Fired {
        t,
        k,
        ids,
        pops,
        v_pre,
    } = ws_fired;
    if !trace.room(ids.len()) {
        return;
    }
    for &(p, a, b) in pops {
        let offset = net.pop_offset[p];
        trace.events.extend(ids[a..b].iter().map(|&id| TraceEvent {
            timestep: t as u32,
            step: k,
            kind: EventKind::Spike,
            population: p as u32 + 1,
            neuron: (id as usize - offset) as u32,
            value: f64::from(v_pre[id as usize]),
        }));
    }
}

/// What [`record_spikes`] reads of a fire phase.
pub(super) struct Fired<'a> {
    pub(super) t: usize,
    pub(super) k: u32,
    pub(super) ids: &'a [u32],
    pub(super) pops: &'a [(usize, usize, usize)],
    pub(super) v_pre: &'a [f32],
}

/// R7.10: the group delivered at the end of forward step `k` (`(neuron id,
/// multiplicity)` pairs in any order), recorded by population and neuron.
#[cold]
#[inline(never)]
pub(super) fn record_group(
    trace: &mut TraceBuf,
    net: &Network,
    t: usize,
    k: u32,
    group: &[(u32, u32)],
) {
    if !trace.room(group.len()) {
        return;
    }
    let start = trace.events.len();
    trace.events.extend(group.iter().map(|&(id, m)| {
        let p = net.pop_of[id as usize] as usize;
        TraceEvent {
            timestep: t as u32,
            step: k,
            kind: EventKind::Delivery,
            population: p as u32 + 1,
            neuron: (id as usize - net.pop_offset[p]) as u32,
            value: f64::from(m),
        }
    }));
    trace.events[start..].sort_by_key(|e| (e.population, e.neuron));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_that_cannot_grow_is_a_memory_error_not_a_partial_trace() {
        let mut buf = TraceBuf::new(true);
        record_inputs(&mut buf, 0, &[1, 2], &[1.0, 2.0]);
        assert_eq!(buf.events.len(), 2);
        assert!(!buf.room(usize::MAX / 64));
        // Nothing more is recorded after the failure, and nothing half-recorded leaves.
        record_inputs(&mut buf, 1, &[3], &[1.0]);
        assert!(buf.events.is_empty());
        match buf.finish(&Location::Sample(4)) {
            Err(EngineError::Memory {
                location,
                what,
                bytes,
            }) => {
                assert_eq!(location, Location::Sample(4));
                assert_eq!(what, "event trace");
                assert!(bytes > (usize::MAX / 64) as u128);
            }
            other => panic!("not a memory error: {other:?}"),
        }
        let ok = TraceBuf::new(false);
        assert_eq!(
            ok.finish(&Location::Batch).unwrap(),
            (Vec::new(), Vec::new(), Vec::new(), Vec::new())
        );
    }
}
