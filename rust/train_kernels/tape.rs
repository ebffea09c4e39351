//! The backward pass of a whole unlayered training run from its tape (docs/semantics.md
//! section 9): the gradient of the per-timestep output counts with respect to every
//! weight, walking each sample's events backwards.
//!
//! The forward pass is the inference engine's event loop, which records the tape
//! (`crate::engine::tape_batch`): the input events, the spikes with their membranes
//! before the reset, the deliveries with their multiplicities, and the membranes at the
//! end of every timestep. The torch engine's forward step (`V' = U - U s` at the
//! spikes, `Q' = Q + s`), its take-and-deliver of a group (`I = sum m W_j`, `Q_j <- 0`)
//! and its silent spikes (one zero-valued spike per non-refractory neuron and timestep,
//! emitted when its population is settled) have the backward passes of
//! [`super::step_backward`], [`super::deliver_backward`] and [`super::silent_grad`];
//! here they run sample by sample, touching what the events touch:
//!
//! * a spike of neuron `i` at membrane `U` (surrogate derivative `d`):
//!   `gV[i] <- gV[i] + ((gQ[i] - gV[i] U) d - gV[i])`;
//! * a delivery of `j` with multiplicity `m` into the currents integrated at the next
//!   step: with `gI = gV live` over the targets, `gQ[j] <- sum_q W[q, j] gI[q]` and
//!   `gW[q, j] += m gI[q]` (the input events of step 0 likewise, with their values);
//! * the silent spikes of population `p` at its final membrane `V` (`d` as above, live
//!   neurons only): `gV <- gV + (gC - gV V) d`, `gC[i] = sum_q W[q, i] gI[q]` (the
//!   output population's `gC` is the gradient of its counts);
//! * the leak between timesteps: `gV <- beta gV`.
//!
//! Settling populations (R1.6: a bias, a reset other than `"zero"`, a synaptic current
//! or a recurrent projection into it): the tape records the step in which each
//! population settled (R4.7). There the bias joins the current, so its gradient is the
//! current's; the spikes and the silent spikes take the gradient of their population's
//! reset (`"subtract"`: `V - theta s`; `"none"` and `"subtract_delayed"`: `V`, the debt
//! a constant, section 9); a due population holds back the silent spikes of the
//! populations from it on. A synaptic current `S` (R4.12) keeps its own gradient `gS`:
//! a current into it has the gradient `gS + gV live`, its settle `S <- alpha S + I`
//! makes `gS <- alpha (gS + gV)`, and a silent current into a population that has not
//! settled yet takes the gradient of that settle's current (it waited for it). A
//! recurrent projection (R4.9) delivers like a forward one; the silent spikes of a
//! population wait for every pending or due population that can still reach it
//! (`low(s)`, section 9), and a recurrent output delivers its `Q` apart from its counts.
//!
//! The scope is what the torch engine's fast path sends here (`asyncsnn.torch.engine.tape`):
//! every network the engine runs (dense, conv and pooling projections, recurrent or
//! not, any bias, reset mode and synaptic current), any dropout, input mode and stop
//! mode, and both surrogate terms; the schedulers other than `layered`.

use super::deliver::bad;
use super::silent::SurrogateFn;
use crate::engine::{EventKind, SampleTape, TraceEvent};
use crate::error::EngineError;
use crate::network::{Network, ProjKind, ResetMode};
use crate::rng::{uniform, STREAM_DROPOUT, STREAM_SPIKE_DROPOUT};

/// Samples whose gradients are summed together before the chunks are summed in order:
/// the result does not depend on the number of threads.
pub const TAPE_CHUNK: usize = 8;

/// What the backward pass needs to know of the run that recorded the tapes.
#[derive(Clone, Debug, PartialEq)]
pub struct TapeOptions {
    /// The surrogate derivative of the spike.
    pub surrogate: SurrogateFn,
    /// Prioritised input (R2.3): the input events are integrated at step 0. Without
    /// (R4.13), they are pending entries, integrated after their delivery event, and
    /// no population settles while one is pending.
    pub prioritized: bool,
    /// `surrogate_terms="every_step"` (section 9): a non-refractory neuron also takes a
    /// term at every integration with a non-zero current that leaves a membrane which
    /// an earlier integration of the timestep made (see `replay_terms`).
    pub every_step: bool,
    /// The seed of R5.5: the backward pass redraws the dropout decisions of the spikes.
    pub seed: u64,
    /// R4.11: the spike dropout `p` (0: off); a dropped spike did not reach `Q`.
    pub spike_dropout: f64,
    /// R4.6: the refractory dropout `p` of each non-input population (empty: off); a
    /// spike after which the neuron stayed non-refractory.
    pub refractory_dropout: Vec<f64>,
}

/// A projection's synapses as the backward pass reads them.
enum Rows<'a> {
    /// Dense: `wt[j * n_target + q]` is the weight from source `j` to target slot `q`.
    Dense(&'a [f32]),
    /// Conv or pool: per source neuron (local id), its synapses `(target slot, weight,
    /// index of the weight in the projection's gradient or [`NO_WEIGHT`])`.
    Sparse(Vec<Vec<(u32, f32, u32)>>),
}

/// A pool's synapse: a fixed weight, no gradient.
const NO_WEIGHT: u32 = u32::MAX;

/// The network as the backward pass reads it.
struct Geometry<'a> {
    net: &'a Network,
    /// Per population (0 = input): the lowest population it reaches through one or
    /// more projections (a recurrent one reaches a population at or below it).
    low: Vec<usize>,
    /// Per projection: its target population has synaptic currents (R4.12).
    syn_target: Vec<bool>,
    /// Per population (0 = input): `(projection, its synapses)` of each projection
    /// leaving it.
    outgoing: Vec<Vec<(usize, Rows<'a>)>>,
    /// Neuron id -> storage slot (the walk's state is kept by slot, as the network's
    /// parameters and weight rows are; ids and slots differ in populations stored
    /// channel-last, `network/layout.rs`).
    slot_of: Vec<u32>,
    surrogate: SurrogateFn,
    opts: TapeOptions,
}

impl<'a> Geometry<'a> {
    fn new(net: &'a Network, opts: &TapeOptions) -> Result<Geometry<'a>, EngineError> {
        let n_pop = net.n_populations();
        let mut slot_of = vec![0u32; net.n_neurons()];
        for (slot, &id) in net.id_of.iter().enumerate().take(net.n_neurons()) {
            slot_of[id as usize] = slot as u32;
        }
        let mut outgoing: Vec<Vec<(usize, Rows<'a>)>> = (0..=n_pop).map(|_| Vec::new()).collect();
        for (s, list) in net.outgoing.iter().enumerate() {
            for &pr in list {
                let rows = match &net.projections[pr].kind {
                    ProjKind::Dense { wt } => Rows::Dense(wt.as_slice()),
                    _ => Rows::Sparse(sparse_rows(net, pr, &slot_of)),
                };
                outgoing[s].push((pr, rows));
            }
        }
        let pd = &opts.refractory_dropout;
        if !pd.is_empty() && pd.len() != n_pop {
            return Err(bad("refractory_dropout", pd.len(), "one p per population"));
        }
        // low(p): the lowest population that p reaches through one or more projections
        // (n_pop + 1: none), by a transitive closure over the projections.
        let mut reach = vec![vec![false; n_pop + 1]; n_pop + 1];
        for (s, list) in net.outgoing.iter().enumerate() {
            for &pr in list {
                reach[s][net.spec().projections[pr].target] = true;
            }
        }
        for mid in 0..=n_pop {
            for s in 0..=n_pop {
                if reach[s][mid] {
                    let via = reach[mid].clone();
                    for (r, v) in reach[s].iter_mut().zip(via) {
                        *r |= v;
                    }
                }
            }
        }
        let low: Vec<usize> = (reach.iter())
            .map(|r| r.iter().position(|&x| x).unwrap_or(n_pop + 1))
            .collect();
        let syn_target = (net.spec().projections.iter())
            .map(|pr| net.synaptic[pr.target - 1])
            .collect();
        Ok(Geometry {
            net,
            low,
            syn_target,
            outgoing,
            slot_of,
            surrogate: opts.surrogate,
            opts: opts.clone(),
        })
    }

    /// `(first id, size)` of non-input population `p` (1-based): its ids, and its slots.
    fn span(&self, p: usize) -> (usize, usize) {
        let o = self.net.pop_offset[p - 1];
        (o, self.net.pop_offset[p] - o)
    }

    /// The reset mode (R4.8) of non-input population `p` (1-based).
    fn reset(&self, p: usize) -> ResetMode {
        self.net.reset[p - 1]
    }

    /// Whether non-input population `p` (1-based) has synaptic currents (R4.12).
    fn synaptic(&self, p: usize) -> bool {
        self.net.synaptic[p - 1]
    }
}

/// The gradient of the membrane `u` (threshold `th`) through a spike `s = H(u - th)`
/// and the reset of `mode` (section 9), given the gradients `g_v` of the membrane
/// after it and `g_q` of `Q + s`, and the surrogate derivative `d`: `"zero"`
/// (`u - u s`) `(g_q - g_v u) d` when the spike fired (`fired`) and `g_v + (g_q - g_v
/// u) d` for a zero-valued spike; `"subtract"` (`u - th s`) `g_v + (g_q - g_v th) d`;
/// otherwise (`u`; the delayed debt is a constant) `g_v + g_q d`.
#[inline(always)]
fn through_spike(mode: ResetMode, fired: bool, g_v: f32, g_q: f32, u: f32, th: f32, d: f32) -> f32 {
    match mode {
        ResetMode::Zero if fired => g_v + ((g_q - g_v * u) * d - g_v),
        ResetMode::Zero => g_v + (g_q - g_v * u) * d,
        ResetMode::Subtract => g_v + (g_q - g_v * th) * d,
        ResetMode::SubtractDelayed | ResetMode::None => g_v + g_q * d,
    }
}

/// The synapses of every source neuron of conv or pool projection `pr` (see
/// [`Rows::Sparse`]), from `Network::for_each_synapse`, target ids as slots.
fn sparse_rows(net: &Network, pr: usize, slot_of: &[u32]) -> Vec<Vec<(u32, f32, u32)>> {
    let spec = &net.spec().projections[pr];
    let n_s = if spec.source == 0 {
        net.input_size()
    } else {
        net.spec().populations[spec.source - 1].size
    };
    (0..n_s)
        .map(|j| {
            let mut out = Vec::new();
            net.for_each_synapse(pr, j, |id, w, at| {
                out.push((slot_of[id], w, at.map_or(NO_WEIGHT, |a| a as u32)));
            });
            out
        })
        .collect()
}

/// The length of projection `pr`'s gradient buffer (its weights; 0 for a pool); `pr`
/// = the number of projections: the biases' buffer (one per neuron).
fn grad_len(net: &Network, pr: usize) -> usize {
    if pr == net.n_projections() {
        return net.n_neurons();
    }
    match &net.projections[pr].kind {
        ProjKind::Dense { wt } => wt.len(),
        ProjKind::Conv { k, .. } => k.len(),
        ProjKind::Pool { .. } => 0,
    }
}

/// The gradient state of one sample: `gV`, `gQ` and the non-refractory mask, by slot.
struct State {
    g_v: Vec<f32>,
    g_q: Vec<f32>,
    live: Vec<f32>,
    /// Scratch: `gI = gV live` over a projection's targets.
    g_i: Vec<f32>,
    /// R4.12: the gradient of the synaptic current `S` (0 off synaptic populations); a
    /// current delivered into a neuron has the gradient `gS + gV live`.
    g_s: Vec<f32>,
    /// R4.12: the gradient of the current of the neuron's settle in this timestep (0
    /// when it did not settle), which a silent current that waited for it takes.
    g_wait: Vec<f32>,
    /// `every_step`: the terms of the timestep, `(step, id, membrane)` in step order,
    /// and the replay's membranes, currents, non-refractory and open-term flags.
    terms: Vec<(u32, u32, f32)>,
    replay: Replay,
    /// Per neuron: `k + 1` when its spike at step `k` was dropped (R4.11; 0: none seen).
    dropped_at: Vec<u32>,
    /// Scratch: the delivered neurons of a group with their multiplicities' gradients.
    taken: Vec<(usize, f32)>,
    /// The gradient of the timestep's output counts by slot (0 off the output): a
    /// spike of the output counts whether or not it reaches `Q` (a recurrent output,
    /// R1.2, delivers its `Q` and counts its spikes apart).
    g_count: Vec<f32>,
}

/// The forward replay of a timestep's membranes for the terms of `every_step`.
#[derive(Default)]
struct Replay {
    v: Vec<f32>,
    cur: Vec<f32>,
    live: Vec<bool>,
    open: Vec<bool>,
    /// R4.8: owes its threshold (`"subtract_delayed"`).
    debt: Vec<bool>,
}

/// Checks the arguments of [`tape_backward`]: `g_counts` holds `[samples, T, n_out]`
/// values, every tape has `T` timesteps of membranes, and `grads` one buffer per
/// projection as long as its weights.
pub fn check_tape(
    net: &Network,
    tapes: &[&SampleTape],
    timesteps: usize,
    g_counts: &[f32],
    grads: &[Vec<f32>],
) -> Result<(), EngineError> {
    let n_out = net.n_outputs();
    if g_counts.len() != tapes.len() * timesteps * n_out {
        return Err(bad(
            "g_counts",
            g_counts.len(),
            "must be [samples, T, n_out]",
        ));
    }
    let n = net.n_neurons();
    if let Some(t) = tapes.iter().find(|t| t.membranes.len() != timesteps * n) {
        return Err(bad("tape", t.membranes.len(), "membranes must be [T, N]"));
    }
    if grads.len() != net.n_projections() + 1 {
        return Err(bad(
            "grads",
            grads.len(),
            "one buffer per projection and one for the biases",
        ));
    }
    for (pr, g) in grads.iter().enumerate() {
        if g.len() != grad_len(net, pr) {
            return Err(bad("grads", g.len(), "as long as the projection's weights"));
        }
    }
    Ok(())
}

/// Adds the weight gradients of the samples `tapes` (their output counts' gradients
/// `g_counts`, `[samples, T, n_out]`) into `grads`, one buffer per projection in the
/// engine's transposed layout (`wt[j * n_target + q]` holds `W[q, j]`), then one for
/// the biases (R1.4) by neuron id (zero for a population that does not settle). The
/// arguments are checked by [`check_tape`] first.
pub fn tape_backward(
    net: &Network,
    tapes: &[&SampleTape],
    timesteps: usize,
    g_counts: &[f32],
    opts: &TapeOptions,
    grads: &mut [Vec<f32>],
) -> Result<(), EngineError> {
    let geo = Geometry::new(net, opts)?;
    check_tape(net, tapes, timesteps, g_counts, grads)?;
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx2() {
            // SAFETY: AVX2 is present (checked at run time).
            unsafe { tape_backward_avx2(&geo, tapes, timesteps, g_counts, grads) };
            return Ok(());
        }
    }
    tape_backward_impl(&geo, tapes, timesteps, g_counts, grads);
    Ok(())
}

/// [`tape_backward`] compiled for AVX2: the same operations in the same lanes
/// ([`LANES`]), so the same values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tape_backward_avx2(
    geo: &Geometry<'_>,
    tapes: &[&SampleTape],
    timesteps: usize,
    g_counts: &[f32],
    grads: &mut [Vec<f32>],
) {
    tape_backward_impl(geo, tapes, timesteps, g_counts, grads);
}

#[inline(always)]
fn tape_backward_impl(
    geo: &Geometry<'_>,
    tapes: &[&SampleTape],
    timesteps: usize,
    g_counts: &[f32],
    grads: &mut [Vec<f32>],
) {
    let net = geo.net;
    let n = net.n_neurons();
    let n_out = net.n_outputs();
    let mut st = State {
        g_v: vec![0.0; n],
        g_q: vec![0.0; n],
        live: vec![1.0; n],
        g_i: vec![0.0; n],
        g_s: vec![0.0; n],
        g_wait: vec![0.0; n],
        terms: Vec::new(),
        replay: Replay::default(),
        dropped_at: vec![0; n],
        taken: Vec::new(),
        g_count: vec![0.0; n],
    };
    for (b, tape) in tapes.iter().enumerate() {
        st.g_v.fill(0.0);
        st.g_s.fill(0.0);
        let per_sample = &g_counts[b * timesteps * n_out..(b + 1) * timesteps * n_out];
        let debts = if geo.opts.every_step {
            debts_at_start(geo, tape, timesteps)
        } else {
            Vec::new()
        };
        let mut end = tape.events.len();
        let mut s_end = tape.settles.len();
        for t in (0..timesteps).rev() {
            let start = first_of_timestep(&tape.events[..end], t);
            let s_start = tape.settles[..s_end].partition_point(|x| (x[0] as usize) < t);
            let g_out = &per_sample[t * n_out..(t + 1) * n_out];
            let v_end = &tape.membranes[t * n..(t + 1) * n];
            let ts = TimestepEvents::new(&tape.events[start..end], &tape.settles[s_start..s_end]);
            if geo.opts.every_step {
                let v_prev = (t > 0).then(|| &tape.membranes[(t - 1) * n..t * n]);
                let debt = debts.get(t).map_or(&[][..], Vec::as_slice);
                let s_prev = (t > 0 && !tape.syn.is_empty()).then(|| &tape.syn[(t - 1) * n..t * n]);
                replay_terms(geo, &ts, (v_prev, s_prev), debt, tape.sample, &mut st);
            }
            timestep_backward(geo, &ts, g_out, v_end, tape.sample, &mut st, grads);
            end = start;
            s_end = s_start;
            // The leak V <- beta V at the start of timestep t (R4.1).
            for (g, &beta) in st.g_v.iter_mut().zip(&net.beta) {
                *g *= beta;
            }
        }
    }
}

/// The index of the first event of timestep `t` among `events` (all of timestep <= t).
fn first_of_timestep(events: &[TraceEvent], t: usize) -> usize {
    events.partition_point(|e| (e.timestep as usize) < t)
}

/// The events of one forward step: `[spikes, deliveries)` ranges into the timestep's
/// events.
struct StepEvents {
    spikes: (usize, usize),
    deliveries: (usize, usize),
}

/// One timestep's events: its input events first, then its forward steps, and the
/// settles of its settling populations (R4.7).
struct TimestepEvents<'e> {
    events: &'e [TraceEvent],
    n_inputs: usize,
    steps: Vec<StepEvents>,
    /// `(k, p)`: population `p` (1-based) settled in forward step `k`, in step order.
    settles: Vec<(usize, usize)>,
}

impl<'e> TimestepEvents<'e> {
    fn new(events: &'e [TraceEvent], settles: &[[u32; 3]]) -> TimestepEvents<'e> {
        let n_inputs = (events.iter())
            .take_while(|e| e.kind == EventKind::Input)
            .count();
        let mut steps = split_steps(events, n_inputs);
        let settles: Vec<(usize, usize)> = (settles.iter())
            .map(|x| (x[1] as usize, x[2] as usize))
            .collect();
        // A settle-only step in which nothing fired (R4.3.4) has no event of its own.
        if let Some(&(k, _)) = settles.last() {
            let i = events.len();
            while steps.len() <= k {
                steps.push(StepEvents {
                    spikes: (i, i),
                    deliveries: (i, i),
                });
            }
        }
        TimestepEvents {
            events,
            n_inputs,
            steps,
            settles,
        }
    }

    /// The step in which population `p` (1-based) settled, if it did.
    fn settled(&self, p: usize) -> Option<usize> {
        self.settles.iter().find(|x| x.1 == p).map(|x| x.0)
    }
}

/// `every_step` with the reset `"subtract_delayed"` (R4.8): per timestep, the slots of
/// the neurons that owe their threshold at its start. A neuron of a settling population
/// fires only after its population settled in the timestep, so a timestep's debts at
/// its end are those of its start that no settle paid, and its spikes'.
fn debts_at_start(geo: &Geometry<'_>, tape: &SampleTape, timesteps: usize) -> Vec<Vec<u32>> {
    let net = geo.net;
    let delayed = |p: usize| geo.reset(p) == ResetMode::SubtractDelayed;
    if !(1..=net.n_populations()).any(delayed) {
        return Vec::new();
    }
    let mut owes = vec![false; net.n_neurons()];
    let mut out = Vec::with_capacity(timesteps);
    let (mut e, mut s) = (0usize, 0usize);
    for t in 0..timesteps {
        out.push(
            (0..owes.len())
                .filter(|&q| owes[q])
                .map(|q| q as u32)
                .collect(),
        );
        while s < tape.settles.len() && tape.settles[s][0] as usize == t {
            let (o, n_p) = geo.span(tape.settles[s][2] as usize);
            owes[o..o + n_p].fill(false);
            s += 1;
        }
        while e < tape.events.len() && tape.events[e].timestep as usize == t {
            let ev = &tape.events[e];
            if ev.kind == EventKind::Spike && delayed(ev.population as usize) {
                owes[slot(geo, ev)] = true;
            }
            e += 1;
        }
    }
    out
}

/// The backward pass of one timestep's events `ts` (inputs, then per forward step its
/// spikes and its delivered group), with `g_out` the gradient of its output counts
/// and `v_end` the membranes at its end.
#[inline(always)]
fn timestep_backward(
    geo: &Geometry<'_>,
    ts: &TimestepEvents<'_>,
    g_out: &[f32],
    v_end: &[f32],
    sample: u32,
    st: &mut State,
    grads: &mut [Vec<f32>],
) {
    let net = geo.net;
    let n_pop = net.n_populations();
    let (events, n_inputs, steps) = (ts.events, ts.n_inputs, &ts.steps);
    // Refractory at the end of the timestep: the neurons whose last spike made them so.
    st.live.fill(1.0);
    st.dropped_at.fill(0);
    for e in &events[n_inputs..] {
        if e.kind == EventKind::Spike {
            st.live[slot(geo, e)] = if stays(geo, sample, e) { 1.0 } else { 0.0 };
        }
    }
    // Q at the end: only the output population's (its counts) is left.
    st.g_q.fill(0.0);
    let (out0, n_out) = geo.span(n_pop);
    for i in 0..n_out {
        // g_out is by output index (id order), the state by slot.
        st.g_q[out0 + i] = g_out[net.id_of[out0 + i] as usize - out0];
        st.g_count[out0 + i] = st.g_q[out0 + i];
    }
    let settle_at = settle_steps(geo, ts, sample);
    st.g_wait.fill(0.0);
    // The silent spikes at the end of the timestep: the output, then the populations
    // not settled before, the highest first (the reverse of their emission order).
    let mut emitting: Vec<usize> = (1..n_pop)
        .rev()
        .filter(|&p| settle_at[p].is_none() && !geo.outgoing[p].is_empty())
        .collect();
    emitting.insert(0, n_pop);
    emit_backward(geo, ts, &emitting, Some(g_out), v_end, usize::MAX, st);
    for (k, step) in steps.iter().enumerate().rev() {
        // The group's currents are integrated at step k + 1 (gI from gV there), with the
        // biases of the populations that settle there; its multiplicities' gradients
        // replace gQ of its neurons only after the terms (every_step) taken at step
        // k + 1, which saw Q after the take.
        bias_backward(geo, ts, k + 1, st, grads);
        let mut taken = std::mem::take(&mut st.taken);
        for e in &events[step.deliveries.0..step.deliveries.1] {
            let g_m = deliver_backward(geo, e.population as usize, e.neuron, e.value, st, grads);
            if e.population > 0 {
                taken.push((slot(geo, e), g_m));
            } // an input entry (R4.13): its value has no gradient
        }
        decay_backward(geo, ts, k + 1, st);
        terms_backward(geo, k + 1, st);
        for (id, g_m) in taken.drain(..) {
            st.g_q[id] = g_m + st.g_count[id];
        }
        st.taken = taken;
        let emitting: Vec<usize> = (1..n_pop)
            .rev()
            .filter(|&p| settle_at[p] == Some(k))
            .collect();
        if !emitting.is_empty() {
            emit_backward(geo, ts, &emitting, None, v_end, k, st);
        }
        for e in &events[step.spikes.0..step.spikes.1] {
            let id = slot(geo, e);
            let u = e.value as f32;
            let th = net.threshold[id];
            let d = geo.surrogate.derivative(u - th);
            // R4.11: a dropped spike did not reach Q.
            let g_q = if dropped(geo, sample, e) {
                st.dropped_at[id] = e.step + 1;
                st.g_count[id]
            } else {
                st.g_q[id]
            };
            let mode = geo.reset(e.population as usize);
            st.g_v[id] = through_spike(mode, true, st.g_v[id], g_q, u, th, d);
            st.live[id] = 1.0; // it fired: it was not refractory
        }
    }
    bias_backward(geo, ts, 0, st, grads); // R4.7: the input's targets settle at step 0
    if geo.opts.prioritized {
        // R4.2: the input events are integrated at step 0 (else at their deliveries).
        for e in &events[..n_inputs] {
            deliver_backward(geo, 0, e.neuron, e.value, st, grads);
        }
    }
    decay_backward(geo, ts, 0, st);
}

/// The biases of the populations that settle in forward step `k` (R4.3.1, R4.7): the
/// bias joins the summed current, so its gradient is the current's, `gV live` after
/// the integration (plus `gS` with a synaptic current, R4.12: `S <- alpha S + I`,
/// `V <- V + S`), into the biases' buffer (the last of `grads`) by neuron id. With a
/// synaptic current it is also the gradient of the silent currents that waited for
/// this settle (`st.g_wait`).
#[inline(always)]
fn bias_backward(
    geo: &Geometry<'_>,
    ts: &TimestepEvents<'_>,
    k: usize,
    st: &mut State,
    grads: &mut [Vec<f32>],
) {
    let Some(g_bias) = grads.last_mut() else {
        return;
    };
    for &(_, p) in ts.settles.iter().filter(|x| x.0 == k) {
        let (o, n_p) = geo.span(p);
        let syn = geo.synaptic(p);
        for q in o..o + n_p {
            let g_cur = if syn {
                st.g_wait[q] = st.g_v[q] * st.live[q] + st.g_s[q];
                st.g_wait[q]
            } else {
                st.g_v[q] * st.live[q]
            };
            g_bias[geo.net.id_of[q] as usize] += g_cur;
        }
    }
}

/// R4.12: the decay of the synaptic currents of the populations that settle in forward
/// step `k`, `S <- alpha S + I`: `gS <- alpha (gS + gV)` (the current's gradient,
/// after the currents integrated at the settle took theirs).
#[inline(always)]
fn decay_backward(geo: &Geometry<'_>, ts: &TimestepEvents<'_>, k: usize, st: &mut State) {
    for &(_, p) in ts.settles.iter().filter(|x| x.0 == k) {
        if geo.synaptic(p) {
            let (o, n_p) = geo.span(p);
            for q in o..o + n_p {
                st.g_s[q] = geo.net.alpha[q] * st.g_wait[q];
            }
        }
    }
}

/// `every_step` (section 9): the terms of one timestep, into `st.terms` in step order.
///
/// Replays the timestep's membranes from the previous timestep's end (`v_prev`, leaked;
/// zero at the first): at each forward step `k`, the currents of the group delivered at
/// the end of step `k - 1` (or of the input at step 0) are summed in the group's order,
/// and each non-refractory neuron with a non-zero current whose membrane was made by an
/// earlier integration of the timestep (and has not fired since) takes a term at that
/// membrane, before the integration. A population that settles in the step (R4.7) is
/// integrated whole, with its bias, and its debtors (`debt`: the slots that owe their
/// threshold at the start of the timestep, R4.8) pay; a synaptic current (R4.12)
/// decays from the previous timestep's end (`s_prev`) and takes the settle's current;
/// a spike resets by its population's mode. The membranes are the float32 operations of the forward pass
/// (R8.2), so the terms are where the engine took them; a current that is exactly zero
/// in one summation order and not in another would differ.
#[inline(always)]
fn replay_terms(
    geo: &Geometry<'_>,
    ts: &TimestepEvents<'_>,
    (v_prev, s_prev): (Option<&[f32]>, Option<&[f32]>),
    debt: &[u32],
    sample: u32,
    st: &mut State,
) {
    let net = geo.net;
    let n = net.n_neurons();
    let (events, n_inputs, steps) = (ts.events, ts.n_inputs, &ts.steps);
    let r = &mut st.replay;
    r.v.clear();
    match v_prev {
        // The membranes are recorded by id; the replay runs by slot.
        Some(v) => {
            r.v.extend((0..n).map(|s| v[net.id_of[s] as usize] * net.beta[s]))
        }
        None => r.v.resize(n, 0.0),
    }
    r.cur.clear();
    r.cur.resize(n, 0.0);
    r.live.clear();
    r.live.resize(n, true);
    r.open.clear();
    r.open.resize(n, false);
    r.debt.clear();
    r.debt.resize(n, false);
    for &q in debt {
        r.debt[q as usize] = true;
    }
    st.terms.clear();
    if geo.opts.prioritized {
        for e in &events[..n_inputs] {
            add_rows(geo, r, 0, e.neuron, e.value as f32);
        }
    }
    for (k, step) in steps.iter().enumerate() {
        for p in 1..=net.n_populations() {
            let (o, n_p) = geo.span(p);
            if ts.settles.contains(&(k, p)) {
                let syn = geo.synaptic(p);
                for q in o..o + n_p {
                    // R4.7: not refractory before it settles.
                    if r.open[q] {
                        st.terms.push((k as u32, q as u32, r.v[q]));
                    }
                    let x = r.cur[q] + net.bias[q];
                    // R4.12: S <- alpha S + I (S unchanged since the timestep before).
                    r.v[q] += match (syn, s_prev) {
                        (true, Some(s)) => net.alpha[q] * s[net.id_of[q] as usize] + x,
                        _ => x,
                    };
                    if std::mem::take(&mut r.debt[q]) {
                        r.v[q] -= net.threshold[q];
                    }
                    r.open[q] = true;
                }
                continue;
            }
            for q in o..o + n_p {
                let c = r.cur[q];
                if c != 0.0 && r.live[q] {
                    if r.open[q] {
                        st.terms.push((k as u32, q as u32, r.v[q]));
                    }
                    r.v[q] += c;
                    r.open[q] = true;
                }
            }
        }
        for e in &events[step.spikes.0..step.spikes.1] {
            let id = slot(geo, e);
            match geo.reset(e.population as usize) {
                ResetMode::Zero => r.v[id] = 0.0,
                ResetMode::Subtract => r.v[id] -= net.threshold[id],
                ResetMode::SubtractDelayed => r.debt[id] = true,
                ResetMode::None => {}
            }
            r.live[id] = stays(geo, sample, e);
            r.open[id] = false;
        }
        r.cur.fill(0.0);
        for e in &events[step.deliveries.0..step.deliveries.1] {
            add_rows(geo, r, e.population as usize, e.neuron, e.value as f32);
        }
    }
}

/// The replay's currents: `m` times the weight rows of neuron `neuron` of population
/// `p` (0: the input).
#[inline(always)]
fn add_rows(geo: &Geometry<'_>, r: &mut Replay, p: usize, neuron: u32, m: f32) {
    let j = neuron as usize;
    for (pr, rows) in &geo.outgoing[p] {
        match rows {
            Rows::Dense(wt) => {
                let proj = &geo.net.projections[*pr];
                let (o, n_t) = (proj.target_offset, proj.target_size);
                for (c, &w) in r.cur[o..o + n_t]
                    .iter_mut()
                    .zip(&wt[j * n_t..(j + 1) * n_t])
                {
                    *c += m * w;
                }
            }
            Rows::Sparse(list) => {
                for &(q, w, _) in &list[j] {
                    r.cur[q as usize] += m * w;
                }
            }
        }
    }
}

/// `every_step`: the backward pass of the terms taken before the integration of step
/// `k` (the last ones of `st.terms`), each `gV <- gV + (gQ - gV V) d`. A term of a
/// neuron whose spike of the same step was dropped (R4.11) does not reach `Q` either:
/// the step-by-step engine puts `Q` back to its value before the step.
#[inline(always)]
fn terms_backward(geo: &Geometry<'_>, k: usize, st: &mut State) {
    while let Some(&(tk, id, v)) = st.terms.last() {
        if tk as usize != k {
            break;
        }
        st.terms.pop();
        let id = id as usize;
        let th = geo.net.threshold[id];
        let d = geo.surrogate.derivative(v - th);
        let g_q = if st.dropped_at[id] as usize == k + 1 {
            st.g_count[id]
        } else {
            st.g_q[id]
        };
        let mode = geo.reset(geo.net.pop_of[id] as usize + 1);
        st.g_v[id] = through_spike(mode, false, st.g_v[id], g_q, v, th, d);
    }
}

/// The global id of the neuron of a spike or delivery event.
#[inline(always)]
fn neuron_id(geo: &Geometry<'_>, e: &TraceEvent) -> usize {
    geo.net.pop_offset[e.population as usize - 1] + e.neuron as usize
}

/// The storage slot of the neuron of a spike or delivery event (the walk's index).
#[inline(always)]
fn slot(geo: &Geometry<'_>, e: &TraceEvent) -> usize {
    geo.slot_of[neuron_id(geo, e)] as usize
}

/// The forward steps of a timestep's events after its `n_inputs` input events (a step
/// without events at the end when the last one delivered a group).
#[inline(always)]
fn split_steps(events: &[TraceEvent], n_inputs: usize) -> Vec<StepEvents> {
    let mut steps: Vec<StepEvents> = Vec::new();
    let mut i = n_inputs;
    while i < events.len() {
        let k = events[i].step as usize;
        while steps.len() <= k {
            steps.push(StepEvents {
                spikes: (i, i),
                deliveries: (i, i),
            });
        }
        let a = i;
        while i < events.len() && events[i].step as usize == k && events[i].kind == EventKind::Spike
        {
            i += 1;
        }
        let b = i;
        while i < events.len()
            && events[i].step as usize == k
            && events[i].kind == EventKind::Delivery
        {
            i += 1;
        }
        steps[k] = StepEvents {
            spikes: (a, b),
            deliveries: (b, i),
        };
    }
    // A group delivered at the last recorded step is integrated in one more step, in
    // which nothing fired (no event).
    if let Some(last) = steps.last() {
        let (a, b) = last.deliveries;
        if a < b {
            steps.push(StepEvents {
                spikes: (b, b),
                deliveries: (b, b),
            });
        }
    }
    steps
}

/// Per population (1-based; index 0 unused): the forward step after whose fire phase
/// its silent spikes left (section 9: no neuron of a lower population pending, no due
/// population at or below it (R4.7) and no input entry pending (R4.13), while the
/// timestep goes on), or `None`: at the end of the timestep (also after the step at
/// which an early stop ended it, as the torch engine emits them).
#[inline(always)]
fn settle_steps(geo: &Geometry<'_>, ts: &TimestepEvents<'_>, sample: u32) -> Vec<Option<usize>> {
    let (events, n_inputs, steps) = (ts.events, ts.n_inputs, &ts.steps);
    let net = geo.net;
    let n_pop = net.n_populations();
    // R4.3.2: a spike that is not dropped (R4.11) enters the pending set, unless its
    // neuron is pending already (refractory dropout: its multiplicity grows).
    let mut is_pending = vec![false; net.n_neurons()];
    let mut pending = vec![0usize; n_pop + 1];
    let mut total = 0usize;
    let mut inputs = if geo.opts.prioritized { 0 } else { n_inputs };
    // R4.1 (3): every settling population is due until it settles; an early stop can
    // leave one due (R6.4).
    let settles_at: Vec<Option<usize>> = (0..=n_pop)
        .map(|p| (p > 0 && net.settling[p - 1]).then(|| ts.settled(p).unwrap_or(usize::MAX)))
        .collect();
    let mut settle_at = vec![None; n_pop + 1];
    let mut settled_below = 1usize; // populations < settled_below have emitted
    for (k, step) in steps.iter().enumerate() {
        for e in &events[step.spikes.0..step.spikes.1] {
            let (p, id) = (e.population as usize, slot(geo, e));
            if !geo.outgoing[p].is_empty() && !is_pending[id] && !dropped(geo, sample, e) {
                is_pending[id] = true;
                pending[p] += 1;
                total += 1;
            }
        }
        // A pending neuron of s can still change the populations from min(s + 1,
        // low(s)) on, a due population d those from min(d, low(d)) on.
        let due = |p: usize| settles_at[p].is_some_and(|s| s > k);
        let blocked = (1..=n_pop)
            .filter_map(|p| match (pending[p] > 0, due(p)) {
                (_, true) => Some(p.min(geo.low[p])),
                (true, false) => Some((p + 1).min(geo.low[p])),
                _ => None,
            })
            .min();
        // The last step of a timestep that still had something pending or due is the
        // one an early stop ended (R6.4): its silent spikes leave at the end.
        let goes_on = k + 1 < steps.len();
        if goes_on && (total > 0 || (1..=n_pop).any(due)) && inputs == 0 {
            let bound = blocked.map_or(n_pop, |b| b - 1);
            while settled_below <= bound.min(n_pop - 1) {
                if !geo.outgoing[settled_below].is_empty() {
                    settle_at[settled_below] = Some(k);
                }
                settled_below += 1;
            }
        }
        for e in &events[step.deliveries.0..step.deliveries.1] {
            match e.population as usize {
                0 => inputs -= 1,
                p => {
                    is_pending[slot(geo, e)] = false;
                    pending[p] -= 1;
                    total -= 1;
                }
            }
        }
    }
    settle_at
}

/// R4.11: whether the spike `e` (of a neuron with outgoing projections) was dropped,
/// `u(seed, sample, t, k, q, 4) < p`, redrawn as the engine drew it.
#[inline(always)]
fn dropped(geo: &Geometry<'_>, sample: u32, e: &TraceEvent) -> bool {
    let p = geo.opts.spike_dropout;
    p > 0.0
        && !geo.outgoing[e.population as usize].is_empty()
        && draw(geo, sample, e, STREAM_SPIKE_DROPOUT) < p
}

/// R4.6: whether the neuron of the spike `e` stayed non-refractory after it (refractory
/// dropout, `u(seed, sample, t, k, q, 1) < p` of its population).
#[inline(always)]
fn stays(geo: &Geometry<'_>, sample: u32, e: &TraceEvent) -> bool {
    match geo.opts.refractory_dropout.get(e.population as usize - 1) {
        Some(&p) if p > 0.0 => draw(geo, sample, e, STREAM_DROPOUT) < p,
        _ => false,
    }
}

/// `u(seed, sample, t, k, q, stream)` of R5.5 for the neuron of the spike `e`.
#[inline(always)]
fn draw(geo: &Geometry<'_>, sample: u32, e: &TraceEvent, stream: u32) -> f64 {
    let id = neuron_id(geo, e) as u32; // the engine draws by neuron id
    f64::from(uniform(
        geo.opts.seed,
        sample,
        e.timestep,
        e.step,
        id,
        stream,
    ))
}

/// The backward pass of a delivery of neuron `neuron` of population `p` (0: the
/// input) with multiplicity (or input value) `m` into the currents integrated next:
/// adds `m gI` to its weight gradients and returns the gradient of `m`.
#[inline(always)]
fn deliver_backward(
    geo: &Geometry<'_>,
    p: usize,
    neuron: u32,
    m: f64,
    st: &State,
    grads: &mut [Vec<f32>],
) -> f32 {
    let m = m as f32;
    let j = neuron as usize;
    let mut g_m = 0.0f32;
    for (pr, rows) in &geo.outgoing[p] {
        let pr = *pr;
        let syn = geo.syn_target[pr];
        match rows {
            Rows::Dense(wt) => {
                let proj = &geo.net.projections[pr];
                let (o, n_t) = (proj.target_offset, proj.target_size);
                let row = &wt[j * n_t..(j + 1) * n_t];
                let g_row = &mut grads[pr][j * n_t..(j + 1) * n_t];
                let (g_v, live) = (&st.g_v[o..o + n_t], &st.live[o..o + n_t]);
                let g_s = &st.g_s[o..o + n_t];
                // An input value has no gradient.
                match (p == 0, syn) {
                    (true, false) => add_scaled::<false>(g_row, m, g_v, live, g_v),
                    (true, true) => add_scaled::<true>(g_row, m, g_v, live, g_s),
                    (false, false) => g_m += dot_add::<false>(row, g_v, live, g_v, g_row, m),
                    (false, true) => g_m += dot_add::<true>(row, g_v, live, g_s, g_row, m),
                }
            }
            Rows::Sparse(list) => {
                let g = &mut grads[pr];
                for &(q, w, at) in &list[j] {
                    let q = q as usize;
                    let g_i = st.g_v[q] * st.live[q] + if syn { st.g_s[q] } else { 0.0 };
                    g_m += w * g_i;
                    if at != NO_WEIGHT {
                        g[at as usize] += m * g_i;
                    }
                }
            }
        }
    }
    g_m
}

/// The lanes of the dot products: each lane sums every `LANES`-th product, and the
/// lanes are summed in a fixed order, so the values do not depend on the vector width.
const LANES: usize = 8;

/// The lanes of a dot product summed in a fixed order.
#[inline(always)]
fn lane_sum(acc: [f32; LANES], tail: f32) -> f32 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + tail
}

/// `sum_q row[q] gI[q]`, and `g_row[q] += m gI[q]`, with the currents' gradient `gI =
/// gV live`, plus `gS` with `SYN` (a synaptic target, R4.12; else `g_s` is unread).
#[inline(always)]
fn dot_add<const SYN: bool>(
    row: &[f32],
    g_v: &[f32],
    live: &[f32],
    g_s: &[f32],
    g_row: &mut [f32],
    m: f32,
) -> f32 {
    let n = row
        .len()
        .min(g_v.len())
        .min(live.len())
        .min(g_row.len())
        .min(g_s.len());
    let body = n - n % LANES;
    let mut acc = [0.0f32; LANES];
    for ((((r, g), l), s), out) in (row[..body].chunks_exact(LANES))
        .zip(g_v[..body].chunks_exact(LANES))
        .zip(live[..body].chunks_exact(LANES))
        .zip(g_s[..body].chunks_exact(LANES))
        .zip(g_row[..body].chunks_exact_mut(LANES))
    {
        for i in 0..LANES {
            let g_i = if SYN { g[i] * l[i] + s[i] } else { g[i] * l[i] };
            acc[i] += r[i] * g_i;
            out[i] += m * g_i;
        }
    }
    let mut tail = 0.0f32;
    for q in body..n {
        let g_i = if SYN {
            g_v[q] * live[q] + g_s[q]
        } else {
            g_v[q] * live[q]
        };
        tail += row[q] * g_i;
        g_row[q] += m * g_i;
    }
    lane_sum(acc, tail)
}

/// `g_row[q] += m gI[q]` (`gI` as in [`dot_add`]).
#[inline(always)]
fn add_scaled<const SYN: bool>(g_row: &mut [f32], m: f32, g_v: &[f32], live: &[f32], g_s: &[f32]) {
    for (((out, &g), &l), &s) in g_row.iter_mut().zip(g_v).zip(live).zip(g_s) {
        *out += m * if SYN { g * l + s } else { g * l };
    }
}

/// `sum_q row[q] g_i[q]`.
#[inline(always)]
fn dot(row: &[f32], g_i: &[f32]) -> f32 {
    let n = row.len().min(g_i.len());
    let body = n - n % LANES;
    let mut acc = [0.0f32; LANES];
    for (r, g) in row[..body]
        .chunks_exact(LANES)
        .zip(g_i[..body].chunks_exact(LANES))
    {
        for i in 0..LANES {
            acc[i] += r[i] * g[i];
        }
    }
    let tail = (body..n).fold(0.0f32, |a, q| a + row[q] * g_i[q]);
    lane_sum(acc, tail)
}

/// The backward pass of the silent spikes that the populations `pops` (1-based, in the
/// reverse of their emission order) emit together after forward step `k` (`usize::MAX`:
/// at the end of the timestep, the output first, with `g_out` the gradient of its
/// counts), at the membranes `v_end`. As the torch engine computes them: first each
/// spike with its reset and its currents into populations without a synaptic current,
/// then (R4.12) its currents into synaptic currents, whose gradient is `gS + gV live`,
/// or `gWait` in a population that has not settled yet (the current waits for its
/// settle; not at the end of the timestep).
#[inline(always)]
fn emit_backward(
    geo: &Geometry<'_>,
    ts: &TimestepEvents<'_>,
    pops: &[usize],
    g_out: Option<&[f32]>,
    v_end: &[f32],
    k: usize,
    st: &mut State,
) {
    let n_pop = geo.net.n_populations();
    for &p in pops {
        let g = if p == n_pop { g_out } else { None };
        silent_backward(geo, p, g, v_end, None, st);
    }
    if geo.net.any_synaptic {
        // At the end of a timestep nothing waits: an early stop (R6.4) clears the due
        // flags, and the silent currents reach S and V as a later delivery would.
        let waiting: Vec<bool> = (0..=n_pop)
            .map(|d| {
                d > 0
                    && k != usize::MAX
                    && geo.net.settling[d - 1]
                    && ts.settled(d).is_none_or(|s| s > k)
            })
            .collect();
        for &p in pops {
            silent_backward(geo, p, None, v_end, Some(&waiting), st);
        }
    }
}

/// One pass of [`emit_backward`] for population `p`: without `waiting`, the spikes with
/// their resets and their currents into populations without a synaptic current (plus
/// `g_out`); with it (per population: it has not settled yet), their currents into
/// synaptic currents.
#[inline(always)]
fn silent_backward(
    geo: &Geometry<'_>,
    p: usize,
    g_out: Option<&[f32]>,
    v_end: &[f32],
    waiting: Option<&[bool]>,
    st: &mut State,
) {
    let net = geo.net;
    let (o, n_p) = geo.span(p);
    let syn = waiting.is_some();
    if syn && !geo.outgoing[p].iter().any(|(pr, _)| geo.syn_target[*pr]) {
        return;
    }
    let mut g_c: Vec<f32> = match g_out {
        Some(g) => (0..n_p).map(|i| g[net.id_of[o + i] as usize - o]).collect(),
        None => vec![0.0; n_p],
    };
    for (pr, rows) in &geo.outgoing[p] {
        if geo.syn_target[*pr] != syn {
            continue;
        }
        let wait = waiting.is_some_and(|w| w[net.spec().projections[*pr].target]);
        // The gradient of a current into target slot q.
        let g_in = |st: &State, q: usize| -> f32 {
            if !syn {
                st.g_v[q] * st.live[q]
            } else if wait {
                st.g_wait[q]
            } else {
                st.g_v[q] * st.live[q] + st.g_s[q]
            }
        };
        match rows {
            Rows::Dense(wt) => {
                let proj = &net.projections[*pr];
                let (to, n_t) = (proj.target_offset, proj.target_size);
                let mut g_i = std::mem::take(&mut st.g_i);
                for (q, x) in g_i[..n_t].iter_mut().enumerate() {
                    *x = g_in(st, to + q);
                }
                for (i, c) in g_c.iter_mut().enumerate() {
                    if st.live[o + i] != 0.0 {
                        let j = net.id_of[o + i] as usize - o; // the row of the source's local id
                        *c += dot(&wt[j * n_t..(j + 1) * n_t], &g_i[..n_t]);
                    }
                }
                st.g_i = g_i;
            }
            Rows::Sparse(list) => {
                for (i, c) in g_c.iter_mut().enumerate() {
                    let id = net.id_of[o + i] as usize - o; // the source's local id
                    if st.live[o + i] != 0.0 {
                        for &(q, w, _) in &list[id] {
                            *c += w * g_in(st, q as usize);
                        }
                    }
                }
            }
        }
    }
    let mode = geo.reset(p);
    for (i, &c) in g_c.iter().enumerate() {
        let id = o + i;
        if st.live[id] == 0.0 {
            continue;
        }
        let v = v_end[net.id_of[id] as usize]; // the membranes are recorded by id
        let th = net.threshold[id];
        let d = geo.surrogate.derivative(v - th);
        st.g_v[id] = if syn {
            st.g_v[id] + c * d
        } else {
            through_spike(mode, false, st.g_v[id], c, v, th, d)
        };
    }
}

/// [`tape_backward`] of a batch: the weight gradients of all `tapes` (one buffer per
/// projection: dense `[n_source, n_target]` in id order, conv in the engine's kernel
/// layout, pool empty; then the biases by neuron id), summed over chunks of [`TAPE_CHUNK`] samples in
/// order, the chunks in parallel with rayon when `parallel` (the same values either
/// way).
pub fn tape_backward_batch(
    net: &Network,
    tapes: &[&SampleTape],
    timesteps: usize,
    g_counts: &[f32],
    opts: &TapeOptions,
    parallel: bool,
) -> Result<Vec<Vec<f32>>, EngineError> {
    use rayon::prelude::*;
    let zeros = || -> Vec<Vec<f32>> {
        (0..=net.n_projections())
            .map(|pr| vec![0.0; grad_len(net, pr)])
            .collect()
    };
    let mut total = zeros();
    check_tape(net, tapes, timesteps, g_counts, &total)?;
    let per = timesteps * net.n_outputs();
    let chunk = |c: usize| -> Result<Vec<Vec<f32>>, EngineError> {
        let a = c * TAPE_CHUNK;
        let b = (a + TAPE_CHUNK).min(tapes.len());
        let mut grads = zeros();
        let g = &g_counts[a * per..b * per];
        tape_backward(net, &tapes[a..b], timesteps, g, opts, &mut grads)?;
        Ok(grads)
    };
    let n_chunks = tapes.len().div_ceil(TAPE_CHUNK);
    let parts: Vec<Vec<Vec<f32>>> = if parallel {
        (0..n_chunks)
            .into_par_iter()
            .map(chunk)
            .collect::<Result<_, _>>()?
    } else {
        (0..n_chunks).map(chunk).collect::<Result<_, _>>()?
    };
    for part in parts {
        for (t, g) in total.iter_mut().zip(part) {
            for (x, y) in t.iter_mut().zip(g) {
                *x += y;
            }
        }
    }
    for (pr, g) in total.iter_mut().enumerate().take(net.n_projections()) {
        dense_rows_by_id(net, pr, g);
    }
    Ok(total)
}

/// A dense projection's gradient rows put in the targets' id order (the weight rows,
/// and so the walk's gradient, are in their storage slot order, which differs for a
/// target population stored channel-last).
fn dense_rows_by_id(net: &Network, pr: usize, g: &mut [f32]) {
    let proj = &net.projections[pr];
    let (o, n_t) = (proj.target_offset, proj.target_size);
    if !matches!(proj.kind, ProjKind::Dense { .. })
        || (o..o + n_t).all(|s| net.id_of[s] as usize == s)
    {
        return;
    }
    let mut row = vec![0.0f32; n_t];
    for chunk in g.chunks_exact_mut(n_t) {
        for (q, &x) in chunk.iter().enumerate() {
            row[net.id_of[o + q] as usize - o] = x;
        }
        chunk.copy_from_slice(&row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{tape_batch, RunConfig, SampleInput, StopMode};
    use crate::network::{NetworkSpec, PopulationSpec, ProjectionKind, ProjectionSpec};
    use crate::scheduler::Scheduler;
    use crate::train_kernels::tests::field;

    const ATAN: SurrogateFn = SurrogateFn::ATan {
        a: std::f32::consts::PI,
        c: 1.0,
    };
    const OPTS: TapeOptions = TapeOptions {
        surrogate: ATAN,
        prioritized: true,
        every_step: false,
        seed: 3,
        spike_dropout: 0.0,
        refractory_dropout: Vec::new(),
    };

    fn dense(source: usize, target: usize, weight: Vec<f32>) -> ProjectionSpec {
        ProjectionSpec {
            source,
            target,
            kind: ProjectionKind::Dense { weight },
        }
    }

    fn network(input: usize, sizes: &[usize], projections: Vec<ProjectionSpec>) -> Network {
        let populations = sizes
            .iter()
            .map(|&n| PopulationSpec::new(n, 1.0, 0.5))
            .collect();
        Network::new(NetworkSpec {
            input_size: input,
            populations,
            projections,
        })
        .unwrap()
    }

    fn config(scheduler: Scheduler, f: usize) -> RunConfig {
        RunConfig {
            scheduler,
            forward_group_size: f,
            stop: StopMode::Drain,
            max_steps: None,
            seed: 3,
            refractory_dropout: None,
            input_dropout: 0.0,
            spike_dropout: 0.0,
            prioritize_input: true,
        }
    }

    fn event(t: u32, k: u32, kind: EventKind, population: u32, neuron: u32) -> TraceEvent {
        TraceEvent {
            timestep: t,
            step: k,
            kind,
            population,
            neuron,
            value: 1.0,
        }
    }

    /// input -> A -> B (one neuron each, theta 1, beta 0.5), w = 2 and 0.5, x = (1, 0):
    /// A fires at step 0 of timestep 0 (U = 2), B reaches 0.5 and then leaks to 0.25;
    /// the counts' gradients are 1 and 2.
    #[test]
    fn a_chain_has_the_hand_computed_gradients() {
        let net = network(
            1,
            &[1, 1],
            vec![dense(0, 1, vec![2.0]), dense(1, 2, vec![0.5])],
        );
        let frames = [1.0f32, 0.0];
        let input = SampleInput::Dense {
            frames: &frames,
            timesteps: 2,
        };
        let cfg = config(Scheduler::Momentum { jitter: 0.0 }, 1);
        let runs = tape_batch(&net, &[input], None, &[0], &cfg, false).unwrap();
        let tape = &runs[0].1;
        assert_eq!(tape.membranes, vec![0.0, 0.5, 0.0, 0.25]);
        let g = [1.0f32, 2.0];
        let grads = tape_backward_batch(&net, &[tape], 2, &g, &OPTS, false).unwrap();
        let d = |x: f32| ATAN.derivative(x);
        // Timestep 1: B's silent spike at 0.25, then A's at 0 (A is not refractory any
        // more), then the leak into timestep 0.
        let gv_b1 = 2.0 * d(0.25 - 1.0);
        let gv_a1 = (0.5 * gv_b1) * d(0.0 - 1.0);
        let (gv_b, gv_a) = (0.5 * gv_b1, 0.5 * gv_a1);
        // Timestep 0: B's silent spike at 0.5 (with its reset term -gV V), A's delivery
        // into B, A's spike at U = 2 (A fired: no silent spike).
        let gv_b = gv_b + (1.0 - gv_b * 0.5) * d(0.5 - 1.0);
        let g_m = 0.5 * gv_b;
        let gv_a = gv_a + ((g_m - gv_a * 2.0) * d(2.0 - 1.0) - gv_a);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1e-3);
        assert!(close(grads[1][0], gv_b), "{} vs {gv_b}", grads[1][0]);
        assert!(close(grads[0][0], gv_a), "{} vs {gv_a}", grads[0][0]);
    }

    /// input -> A (2 neurons) -> B (1 neuron), F = 1: B is integrated at steps 1 and 2,
    /// so `every_step` gives it a term at its membrane after step 1 (one fewer term in
    /// the chain above, where B is integrated once: the same gradients).
    #[test]
    fn every_step_adds_the_terms_of_membranes_left_by_an_integration() {
        let every = TapeOptions {
            every_step: true,
            ..OPTS
        };
        let frames = [1.0f32];
        let input = SampleInput::Dense {
            frames: &frames,
            timesteps: 1,
        };
        let cfg = config(Scheduler::Fifo, 1);
        let chain = network(
            1,
            &[1, 1],
            vec![dense(0, 1, vec![2.0]), dense(1, 2, vec![0.5])],
        );
        let tape = &tape_batch(
            &chain,
            std::slice::from_ref(&input),
            None,
            &[0],
            &cfg,
            false,
        )
        .unwrap()[0]
            .1;
        let fired = tape_backward_batch(&chain, &[tape], 1, &[1.0], &OPTS, false).unwrap();
        assert_eq!(
            tape_backward_batch(&chain, &[tape], 1, &[1.0], &every, false).unwrap(),
            fired
        );
        let wide = network(
            1,
            &[2, 1],
            vec![dense(0, 1, vec![2.0, 3.0]), dense(1, 2, vec![0.25, 0.5])],
        );
        let tape = &tape_batch(&wide, &[input], None, &[0], &cfg, false).unwrap()[0].1;
        let fired = tape_backward_batch(&wide, &[tape], 1, &[1.0], &OPTS, false).unwrap();
        let terms = tape_backward_batch(&wide, &[tape], 1, &[1.0], &every, false).unwrap();
        // B's membrane after step 1 is 0.25 (A0's delivery); its term at step 2 adds
        // (gQ - gV V) d = (1 - gV 0.25) d(0.25 - 1) to gV before step 2.
        let d = |x: f32| ATAN.derivative(x);
        let g_end = (1.0 - 0.0 * 0.75) * d(0.75 - 1.0); // B's silent spike at 0.75
        let g_1 = g_end + (1.0 - g_end * 0.25) * d(0.25 - 1.0);
        assert_eq!(fired[1], vec![g_end, g_end]);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b.abs().max(1e-3);
        assert!(
            close(terms[1][0], g_1) && close(terms[1][1], g_end),
            "{:?}",
            terms[1]
        );
    }

    #[test]
    fn settle_steps_follow_the_lowest_pending_population() {
        let net = network(
            2,
            &[2, 2, 1],
            vec![
                dense(0, 1, vec![1.0; 4]),
                dense(1, 2, vec![1.0; 4]),
                dense(2, 3, vec![1.0; 2]),
            ],
        );
        let geo = Geometry::new(&net, &OPTS).unwrap();
        use EventKind::{Delivery as D, Spike as S};
        let events = vec![
            event(0, 0, S, 1, 0),
            event(0, 0, S, 1, 1),
            event(0, 0, D, 1, 0),
            event(0, 1, S, 2, 0),
            event(0, 1, D, 1, 1),
            event(0, 2, S, 2, 1),
            event(0, 2, D, 2, 0),
            event(0, 2, D, 2, 1),
            event(0, 3, S, 3, 0),
        ];
        let ts = TimestepEvents::new(&events, &[]);
        let ranges: Vec<_> = (ts.steps.iter())
            .map(|s| (s.spikes, s.deliveries))
            .collect();
        assert_eq!(
            ranges,
            vec![
                ((0, 2), (2, 3)),
                ((3, 4), (4, 5)),
                ((5, 6), (6, 8)),
                ((8, 9), (9, 9)),
            ]
        );
        // Population 1 settles once its spikes are all that is pending (step 0),
        // population 2 when population 1 has nothing pending (step 2); the output
        // population emits at the end.
        assert_eq!(
            settle_steps(&geo, &ts, 0),
            vec![None, Some(0), Some(2), None]
        );
    }

    fn batch_tapes(net: &Network, n: usize, timesteps: usize) -> Vec<SampleTape> {
        let n_in = net.input_size();
        let frames: Vec<Vec<f32>> = (0..n)
            .map(|b| {
                (0..timesteps * n_in)
                    .map(|i| {
                        if (i * 7 + b * 3) % (2 + b % 5) == 0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let inputs: Vec<_> = frames
            .iter()
            .map(|f| SampleInput::Dense {
                frames: f,
                timesteps,
            })
            .collect();
        let ids: Vec<u64> = (0..n as u64).collect();
        let cfg = config(Scheduler::Random, 2);
        let runs = tape_batch(net, &inputs, None, &ids, &cfg, true).unwrap();
        runs.into_iter().map(|(_, t)| t).collect()
    }

    fn weights(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + seed * 11) % 17) as f32 / 16.0 - 0.1)
            .collect()
    }

    /// The tape of one sample of `frames` (one input neuron, one value per timestep) under
    /// fifo, F = 1.
    fn fifo_tape(net: &Network, frames: &[f32]) -> SampleTape {
        let input = SampleInput::Dense {
            frames,
            timesteps: frames.len(),
        };
        let cfg = config(Scheduler::Fifo, 1);
        let runs = tape_batch(net, &[input], None, &[0], &cfg, false);
        runs.unwrap().remove(0).1
    }

    #[test]
    fn settles_are_taped_and_give_the_bias_gradient() {
        // 1 -> 1 -> 1, the output settling (bias 0.25). Timestep 0: the input makes
        // population 1 fire, whose delivery settles the output at step 1 (V = 0.5 +
        // 0.25); timestep 1: nothing is delivered, so the output settles in the
        // settle-only step 1 (V = 0.375 + 0.25).
        let mut out = PopulationSpec::new(1, 1.0, 0.5);
        out.bias = vec![0.25];
        let net = Network::new(NetworkSpec {
            input_size: 1,
            populations: vec![PopulationSpec::new(1, 1.0, 0.5), out],
            projections: vec![dense(0, 1, vec![2.0]), dense(1, 2, vec![0.5])],
        })
        .unwrap();
        let tape = fifo_tape(&net, &[1.0, 0.0]);
        assert_eq!(tape.settles, vec![[0, 1, 2], [1, 1, 2]]);
        assert_eq!(tape.membranes, vec![0.0, 0.75, 0.0, 0.625]);
        let (g0, g1) = (0.7f32, -1.3f32);
        let grads = tape_backward_batch(&net, &[&tape], 2, &[g0, g1], &OPTS, false).unwrap();
        let d = |v: f32| ATAN.derivative(v - 1.0);
        // The output's silent spike at the end of timestep 1, then its settle there.
        let settle_1 = g1 * d(0.625);
        // Leaked into timestep 0, the silent spike at its end, then its settle.
        let settle_0 = 0.5 * settle_1 + (g0 - 0.5 * settle_1 * 0.75) * d(0.75);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * (1.0 + b.abs());
        assert!(close(grads[2][1], settle_1 + settle_0), "{:?}", grads[2]);
        assert_eq!(grads[2][0], 0.0); // population 1 does not settle
        assert!(close(grads[1][0], settle_0), "{:?}", grads[1]); // the delivery at step 0
    }

    #[test]
    fn synaptic_currents_are_taped_and_carry_the_gradient_across_timesteps() {
        // One neuron with a synaptic current (alpha 0.5) that never fires: S = 1 after
        // timestep 0, 0.5 after timestep 1 (S <- alpha S + I at each settle), V = 1 both
        // times. The gradient of the input weight: the settle of timestep 0 takes
        // gV + gS, gS = alpha (gV + gS) of the settle of timestep 1.
        let mut pop = PopulationSpec::new(1, 10.0, 0.5);
        pop.alpha = vec![0.5];
        let net = Network::new(NetworkSpec {
            input_size: 1,
            populations: vec![pop],
            projections: vec![dense(0, 1, vec![1.0])],
        })
        .unwrap();
        let tape = fifo_tape(&net, &[1.0, 0.0]);
        assert_eq!(tape.syn, vec![1.0, 0.5]);
        assert_eq!(tape.membranes, vec![1.0, 1.0]);
        assert_eq!(tape.settles, vec![[0, 0, 1], [1, 0, 1]]);
        let (g0, g1) = (0.7f32, -1.3f32);
        let grads = tape_backward_batch(&net, &[&tape], 2, &[g0, g1], &OPTS, false).unwrap();
        let d = ATAN.derivative(1.0 - 10.0);
        let g_v1 = g1 * d; // the silent spike at the end of timestep 1
        let g_s = 0.5 * g_v1; // its settle: gS <- alpha (gV + 0)
        let g_v0 = 0.5 * g_v1; // the leak
        let g_v0 = g_v0 + (g0 - g_v0 * 1.0) * d; // the silent spike of timestep 0
        let want = g_v0 + g_s; // the input's current at the settle of timestep 0
        assert!(
            (grads[0][0] - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{:?}",
            grads[0]
        );
    }

    #[test]
    fn chunks_sum_the_samples_whatever_the_threads() {
        let net = network(
            6,
            &[8, 5, 3],
            vec![
                dense(0, 1, weights(48, 1)),
                dense(1, 2, weights(40, 2)),
                dense(2, 3, weights(15, 3)),
                dense(0, 2, weights(30, 4)),
            ],
        );
        let tapes = batch_tapes(&net, 21, 3);
        let refs: Vec<&SampleTape> = tapes.iter().collect();
        let g: Vec<f32> = (0..21 * 3 * 3).map(|i| (i % 5) as f32 - 2.0).collect();
        let par = tape_backward_batch(&net, &refs, 3, &g, &OPTS, true).unwrap();
        let seq = tape_backward_batch(&net, &refs, 3, &g, &OPTS, false).unwrap();
        assert_eq!(par, seq);
        assert!(par.iter().flatten().any(|&x| x != 0.0));
        // The sum over samples, one at a time, up to the summation order.
        let mut one_by_one: Vec<Vec<f32>> = par.iter().map(|g| vec![0.0; g.len()]).collect();
        for (b, tape) in refs.iter().enumerate() {
            tape_backward(
                &net,
                &[tape],
                3,
                &g[b * 9..(b + 1) * 9],
                &OPTS,
                &mut one_by_one,
            )
            .unwrap();
        }
        for (a, b) in par.iter().flatten().zip(one_by_one.iter().flatten()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn the_avx2_build_gives_the_same_values() {
        let net = network(
            20,
            &[37, 19, 3],
            vec![
                dense(0, 1, weights(740, 5)),
                dense(1, 2, weights(703, 6)),
                dense(2, 3, weights(57, 7)),
            ],
        );
        let tapes = batch_tapes(&net, 5, 4);
        let refs: Vec<&SampleTape> = tapes.iter().collect();
        let g: Vec<f32> = (0..5 * 4 * 3).map(|i| (i % 7) as f32 * 0.3 - 1.0).collect();
        let geo = Geometry::new(&net, &OPTS).unwrap();
        let zeros = || {
            vec![
                vec![0.0f32; 740],
                vec![0.0; 703],
                vec![0.0; 57],
                vec![0.0; 59],
            ]
        };
        let mut plain = zeros();
        tape_backward_impl(&geo, &refs, 4, &g, &mut plain);
        assert!(plain.iter().flatten().any(|&x| x != 0.0));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut avx2 = zeros();
            // SAFETY: AVX2 is present.
            unsafe { tape_backward_avx2(&geo, &refs, 4, &g, &mut avx2) };
            assert_eq!(plain, avx2);
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        let net = network(
            2,
            &[2, 1],
            vec![dense(0, 1, vec![1.0; 4]), dense(1, 2, vec![1.0; 2])],
        );
        let tapes = batch_tapes(&net, 2, 2);
        let refs: Vec<&SampleTape> = tapes.iter().collect();
        let g = vec![0.0f32; 4];
        let run = |g: &[f32], t: usize| tape_backward_batch(&net, &refs, t, g, &OPTS, false);
        assert_eq!(field(run(&g[..3], 2)), "g_counts");
        assert_eq!(field(run(&[0.0; 6], 3)), "tape");
        let mut grads = vec![vec![0.0f32; 4]];
        assert_eq!(field(check_tape(&net, &refs, 2, &g, &grads)), "grads");
        grads.push(vec![0.0; 3]);
        assert_eq!(field(check_tape(&net, &refs, 2, &g, &grads)), "grads");
        let opts = TapeOptions {
            refractory_dropout: vec![0.5; 3],
            ..OPTS
        };
        let named = Geometry::new(&net, &opts).map(|_| ());
        assert_eq!(field(named), "refractory_dropout");
    }
}
