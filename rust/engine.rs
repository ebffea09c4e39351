//! The event loop (R3-R7): [`run_sample`] runs one sample, [`run_batch`] runs many in
//! parallel with rayon.
//!
//! Data layout of one sample's state (the private `Workspace`, allocated once per
//! worker and reused; nothing is allocated inside the event loop once its buffers have
//! grown):
//! - `v`, `cur`, `refractory`: one entry per non-input neuron (R3.1), indexed by its
//!   storage slot (channel-last in conv/pool targets, see `crate::network`); `v_pre`,
//!   read by the scheduler, by neuron id. `cur` is the current buffer `I` of R4.2/R4.3,
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
//! - fire (R4.3.2): the integrate pass also resets the neurons that cross (`v_pre`,
//!   `V <- 0`, refractory flag), which touches only their own state; it leaves their
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
//! - the pending set and its scheduler structure: [`crate::scheduler`].
//!
//! A forward step therefore costs O(synapses delivered + neurons touched + scheduler),
//! independent of the network size; only the leak at the start of a timestep (R4.1) is
//! a pass over all neurons.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::alloc;
use crate::counters::SampleResult;
use crate::error::EngineError;
use crate::kernels::{add_row, add_short, has_avx2, prefetch};
use crate::network::{source_coords, Network, ProjKind, Projection, Taps};
use crate::rng::{uniform, STREAM_DROPOUT};
use crate::scheduler::{PendingSet, Scheduler, SelectCtx};

/// Stop mode of a timestep (R6.1, R6.2). `max_steps` (R6.3) is given separately in
/// [`RunConfig::max_steps`] and may be combined with either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// R6.1: run until the pending set is empty.
    Drain,
    /// R6.2: end the timestep at the stop check of step `k` when the first output
    /// spike of the timestep happened at step `k0` and `k - k0 >= extra_steps`.
    FirstOutput {
        /// `M >= 0`.
        extra_steps: u32,
    },
}

impl StopMode {
    /// This stop mode with `M = extra_steps` if it is `first_output` (R6.2);
    /// unchanged otherwise.
    pub fn with_extra_steps(self, extra_steps: u32) -> StopMode {
        match self {
            StopMode::FirstOutput { .. } => StopMode::FirstOutput { extra_steps },
            other => other,
        }
    }
}

impl std::str::FromStr for StopMode {
    type Err = EngineError;

    /// Parses a stop mode name: "drain", "first_output" (with `M = 0`; see
    /// [`StopMode::with_extra_steps`]) or "max_steps" (the cap of R6.3 alone, which is
    /// `drain` plus `max_steps`). The one place where names are parsed.
    fn from_str(name: &str) -> Result<StopMode, EngineError> {
        match name {
            "drain" | "max_steps" => Ok(StopMode::Drain),
            "first_output" => Ok(StopMode::FirstOutput { extra_steps: 0 }),
            other => Err(EngineError::Parameter {
                field: "stop".to_string(),
                value: other.to_string(),
                reason: "must be drain, first_output or max_steps".to_string(),
            }),
        }
    }
}

/// Options of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// R5: the scheduler.
    pub scheduler: Scheduler,
    /// R5: forward group size `F >= 1` (ignored by `layered`, but validated).
    pub forward_group_size: usize,
    /// R6.1/R6.2.
    pub stop: StopMode,
    /// R6.3: cap on the forward steps of a timestep, `>= 1`.
    pub max_steps: Option<u32>,
    /// R5.5: seed of the shared random function.
    pub seed: u64,
    /// None: p = 0 everywhere (R4.6 inference default); Some(v): per non-input population p.
    pub refractory_dropout: Option<Vec<f64>>,
}

/// The input of one sample (R2).
#[derive(Debug, Clone, Copy)]
pub enum SampleInput<'a> {
    /// frames: row-major [timesteps, input_size]
    Dense {
        /// Row-major `[timesteps, input_size]` values, finite and >= 0 (R2.1).
        frames: &'a [f32],
        /// `T >= 1`.
        timesteps: usize,
    },
    /// parallel arrays of events (t, flat input index, value); R2.2
    Sparse {
        /// Timestep of each event, `< timesteps`.
        t: &'a [u32],
        /// Flat input index of each event, `< input_size`.
        index: &'a [u32],
        /// Value of each event, finite and >= 0; repeated `(t, index)` are summed in
        /// float32 in list order (R2.2).
        value: &'a [f32],
        /// `T >= 1`.
        timesteps: usize,
    },
}

/// A validated sample input.
enum Prepared<'a> {
    Dense(&'a [f32]),
    /// Merged events sorted by `(t, index)`; only non-zero values.
    Sparse {
        t: Vec<u32>,
        index: Vec<u32>,
        value: Vec<f32>,
    },
}

struct PreparedSample<'a> {
    input: Prepared<'a>,
    timesteps: usize,
    label: Option<usize>,
    location: String,
}

fn check_timesteps(timesteps: usize, location: &str) -> Result<(), EngineError> {
    if timesteps == 0 {
        return Err(EngineError::input(
            location,
            "timesteps",
            0,
            "must be >= 1 (R2.1)",
        ));
    }
    if timesteps - 1 > u32::MAX as usize {
        return Err(EngineError::input(
            location,
            "timesteps",
            timesteps,
            "must be <= 2^32 (t is a u32 in R5.5)",
        ));
    }
    Ok(())
}

/// Checks that every value of dense frames (row-major, `n_in` values per timestep) is
/// finite and `>= 0` (R2.1); the error names the first bad value and its `(t, i)`.
///
/// `run_batch` does this for every sample; it is public so that a caller that runs a
/// batch in parts can check all of it before any part runs.
pub fn check_dense_values(frames: &[f32], n_in: usize, location: &str) -> Result<(), EngineError> {
    // Fast path: a branch-free test of all values (it vectorises); `0 <= x < inf` is
    // false exactly for NaN, infinities and negative values (-0.0 passes, as it
    // should). Only when it fails, the scalar search below finds the first bad value.
    let all_ok = frames.chunks(256).all(|c| {
        c.iter()
            .map(|&x| (0.0..f32::INFINITY).contains(&x) as u32)
            .sum::<u32>()
            == c.len() as u32
    });
    if all_ok {
        return Ok(());
    }
    match frames
        .iter()
        .enumerate()
        .find(|(_, x)| !(x.is_finite() && **x >= 0.0))
    {
        Some((pos, x)) => Err(EngineError::input(
            location,
            "inputs",
            format!("{x} at (t={}, i={})", pos / n_in.max(1), pos % n_in.max(1)),
            "input values must be finite and >= 0 (R2.1)",
        )),
        None => Ok(()),
    }
}

fn prepare<'a>(
    net: &Network,
    input: &SampleInput<'a>,
    label: Option<usize>,
    values_checked: bool,
    location: String,
) -> Result<PreparedSample<'a>, EngineError> {
    let n_in = net.input_size();
    if let Some(c) = label {
        if c >= net.n_outputs() {
            return Err(EngineError::input(
                &location,
                "labels",
                c,
                format!("must be < n_outputs = {}", net.n_outputs()),
            ));
        }
    }
    let (prepared, timesteps) = match *input {
        SampleInput::Dense { frames, timesteps } => {
            check_timesteps(timesteps, &location)?;
            let want = timesteps.checked_mul(n_in);
            if want != Some(frames.len()) {
                return Err(EngineError::input(
                    &location,
                    "inputs",
                    format!("<{} values>", frames.len()),
                    format!("dense frames must have timesteps * input_size = {timesteps} * {n_in} values"),
                ));
            }
            if !values_checked {
                check_dense_values(frames, n_in, &location)?;
            }
            (Prepared::Dense(frames), timesteps)
        }
        SampleInput::Sparse {
            t,
            index,
            value,
            timesteps,
        } => {
            check_timesteps(timesteps, &location)?;
            if t.len() != index.len() || t.len() != value.len() {
                return Err(EngineError::input(
                    &location,
                    "inputs",
                    format!(
                        "t/index/value lengths {}/{}/{}",
                        t.len(),
                        index.len(),
                        value.len()
                    ),
                    "sparse event arrays must have equal lengths",
                ));
            }
            for e in 0..t.len() {
                if t[e] as usize >= timesteps {
                    return Err(EngineError::input(
                        &location,
                        "inputs",
                        format!("t = {} at event {e}", t[e]),
                        format!("must be < timesteps = {timesteps}"),
                    ));
                }
                if index[e] as usize >= n_in {
                    return Err(EngineError::input(
                        &location,
                        "inputs",
                        format!("index = {} at event {e}", index[e]),
                        format!("must be < input_size = {n_in}"),
                    ));
                }
                let x = value[e];
                if !(x.is_finite() && x >= 0.0) {
                    return Err(EngineError::input(
                        &location,
                        "inputs",
                        format!("value = {x} at event {e}"),
                        "input values must be finite and >= 0 (R2.1)",
                    ));
                }
            }
            // Stable sort by (t, index): repeated (t, index) stay in list order (R2.2).
            let mut order: Vec<usize> = (0..t.len()).collect();
            order.sort_by_key(|&e| (t[e], index[e]));
            let mut mt = Vec::new();
            let mut mi = Vec::new();
            let mut mv = Vec::new();
            let mut pos = 0;
            while pos < order.len() {
                let key = (t[order[pos]], index[order[pos]]);
                let mut sum = 0.0f32;
                while pos < order.len() && (t[order[pos]], index[order[pos]]) == key {
                    sum += value[order[pos]];
                    pos += 1;
                }
                if !sum.is_finite() {
                    return Err(EngineError::input(
                        &location,
                        "inputs",
                        format!("sum {sum} at (t={}, i={})", key.0, key.1),
                        "summed input values must be finite (R2.1, R2.2)",
                    ));
                }
                if sum != 0.0 {
                    mt.push(key.0);
                    mi.push(key.1);
                    mv.push(sum);
                }
            }
            (
                Prepared::Sparse {
                    t: mt,
                    index: mi,
                    value: mv,
                },
                timesteps,
            )
        }
    };
    Ok(PreparedSample {
        input: prepared,
        timesteps,
        label,
        location,
    })
}

/// Validates the run options against `net`: `F >= 1`, `max_steps >= 1`, momentum
/// `jitter` finite and `>= 0`, and a `refractory_dropout` override with one value in
/// [0, 1) per non-input population.
pub fn validate_config(net: &Network, config: &RunConfig) -> Result<(), EngineError> {
    if config.forward_group_size == 0 {
        return Err(EngineError::parameter(
            "forward_group_size",
            0,
            "must be >= 1 (R5)",
        ));
    }
    if config.max_steps == Some(0) {
        return Err(EngineError::parameter(
            "max_steps",
            0,
            "must be >= 1 (R6.3)",
        ));
    }
    if let Scheduler::Momentum { jitter } = config.scheduler {
        if !(jitter.is_finite() && jitter >= 0.0) {
            return Err(EngineError::parameter(
                "jitter",
                jitter,
                "must be finite and >= 0 (R5.4)",
            ));
        }
    }
    if let Some(p) = &config.refractory_dropout {
        if p.len() != net.n_populations() {
            return Err(EngineError::parameter(
                "refractory_dropout",
                format!("<{} values>", p.len()),
                format!(
                    "must have one value per non-input population ({})",
                    net.n_populations()
                ),
            ));
        }
        for (i, &x) in p.iter().enumerate() {
            if !(x.is_finite() && (0.0..1.0).contains(&x)) {
                return Err(EngineError::parameter(
                    format!("refractory_dropout[{i}]"),
                    x,
                    "must be finite and in [0, 1) (R4.6)",
                ));
            }
        }
    }
    Ok(())
}

fn check_sample_id(id: u64) -> Result<u32, EngineError> {
    u32::try_from(id).map_err(|_| {
        EngineError::parameter("sample_ids", id, "must be < 2^32 (sample is a u32 in R5.5)")
    })
}

/// Touched-neuron bookkeeping of one forward step.
#[derive(Debug)]
struct Touch {
    /// Per slot: already in its population's `lists` entry (only the slot of channel 0
    /// of a pixel is used: it stands for all channels of that pixel).
    neuron: Vec<bool>,
    /// Per non-input population: channels of its storage layout (`Network::layout_channels`).
    channels: Vec<usize>,
    /// Per non-input population: the number of touched pixels at which it is integrated
    /// whole instead ([`FULL_FRACTION`]).
    full_at: Vec<usize>,
    /// Per non-input population: in `pops`.
    pop_touched: Vec<bool>,
    /// Per non-input population: received a dense delivery (integrate it whole).
    pop_full: Vec<bool>,
    /// Touched populations of this step.
    pops: Vec<usize>,
    /// Per non-input population: pixels touched by conv/pool deliveries, as the slot of
    /// their channel-0 neuron. Integration visits every channel of a listed pixel: a
    /// superset of the touched neurons, which is exact because an untouched neuron has
    /// no current and cannot cross its threshold (its membrane only leaked towards 0).
    lists: Vec<Vec<u32>>,
    /// Per non-input population: the latest dense row delivered to it in this step, not
    /// yet added to `cur`. It is added by the integrate pass itself (one pass that
    /// computes `cur[q] + s * w[q]`, the same float operations as adding the row first),
    /// which saves a pass over the population per forward step. A conv or pool delivery
    /// into the population adds it first (`flush_deferred`).
    deferred: Vec<Option<Deferred>>,
}

/// A dense row delivery kept for the integrate pass: `cur[q] += s * wt[local * n + q]`
/// of projection `proj`.
#[derive(Debug, Clone, Copy)]
struct Deferred {
    proj: usize,
    local: usize,
    s: f32,
}

impl Touch {
    /// Marks population `p` touched; returns whether it is full already.
    #[inline(always)]
    fn pop(&mut self, p: usize) -> bool {
        if !self.pop_touched[p] {
            self.pop_touched[p] = true;
            self.pops.push(p);
        }
        self.pop_full[p]
    }

    /// Marks the pixel whose channel-0 neuron is in slot `q0` touched; past `full_at`
    /// pixels the population is marked full (later deliveries skip this bookkeeping).
    #[inline(always)]
    fn pixel(&mut self, p: usize, q0: usize) {
        if !self.neuron[q0] {
            self.neuron[q0] = true;
            let list = &mut self.lists[p];
            list.push(q0 as u32);
            if list.len() >= self.full_at[p] {
                self.pop_full[p] = true;
            }
        }
    }
}

/// A population with more than `1 / FULL_FRACTION` of its pixels touched in a forward
/// step is integrated whole: one vector pass over it is cheaper than visiting that many
/// pixels one by one (and the bookkeeping of further touches is skipped). The result is
/// the same (an untouched neuron has no current and cannot fire).
const FULL_FRACTION: usize = 8;

/// Reusable per-sample state (see the module documentation).
#[derive(Debug)]
pub(crate) struct Workspace {
    v: Vec<f32>,
    cur: Vec<f32>,
    v_pre: Vec<f32>,
    refractory: Vec<bool>,
    touch: Touch,
    fired: Vec<u32>,
    /// `(population, start, end)`: the range of `fired` of each population that fired.
    fired_pops: Vec<(usize, usize, usize)>,
    /// One bit per neuron id, all clear between uses (see [`sort_ids`]).
    fired_bits: Vec<u64>,
    group: Vec<(u32, u32)>,
    pending: PendingSet,
    /// The non-zero inputs of the current dense frame, and their values.
    nonzero: Vec<u32>,
    nonzero_values: Vec<f32>,
    /// R8.3: the fast path saw a non-finite membrane (see [`run_prepared`]).
    non_finite: bool,
}

impl Workspace {
    /// The buffers of one worker, sized by `net` (fallible: a network too large for
    /// memory is an [`EngineError::Memory`], not an abort). The input buffers grow at the
    /// first dense frame (see `nonzero`), so that a huge input population fed sparse
    /// events needs no buffer of its size.
    pub(crate) fn new(net: &Network) -> Result<Workspace, EngineError> {
        let n = net.n_neurons();
        let p = net.n_populations();
        let at = "network";
        let lists = (0..p)
            .map(|i| {
                let size = net.pop_offset[i + 1] - net.pop_offset[i];
                alloc::with_capacity(size, at, "touched-neuron lists")
            })
            .collect::<Result<_, _>>()?;
        Ok(Workspace {
            v: alloc::filled(n, 0.0, at, "membranes")?,
            cur: alloc::filled(n, 0.0, at, "currents")?,
            v_pre: alloc::filled(n, 0.0, at, "spike membranes (v_pre)")?,
            refractory: alloc::filled(n, false, at, "refractory flags")?,
            touch: Touch {
                neuron: alloc::filled(n, false, at, "touched-neuron flags")?,
                channels: net.layout_channels.clone(),
                full_at: (0..p)
                    .map(|i| {
                        let pixels =
                            (net.pop_offset[i + 1] - net.pop_offset[i]) / net.layout_channels[i];
                        (pixels / FULL_FRACTION).max(1)
                    })
                    .collect(),
                pop_touched: vec![false; p],
                pop_full: vec![false; p],
                pops: Vec::with_capacity(p),
                lists,
                deferred: vec![None; p],
            },
            fired: alloc::with_capacity(n, at, "spike list")?,
            fired_pops: Vec::with_capacity(p),
            fired_bits: alloc::filled(n.div_ceil(64), 0, at, "spike bitmap")?,
            group: Vec::new(),
            pending: PendingSet::with_mult(alloc::filled(n, 0, at, "pending set")?, p),
            nonzero: Vec::new(),
            nonzero_values: Vec::new(),
            non_finite: false,
        })
    }

    /// Marks the sample for the checked re-run of R8.3 (see [`run_prepared`]); the
    /// error returned with it is replaced by that run's.
    #[cold]
    fn saw_non_finite(&mut self, loc: &str) -> EngineError {
        self.non_finite = true;
        EngineError::overflow(loc, "membrane")
    }

    /// R3.3: the state at the start of a sample (also repairs a workspace left dirty by
    /// an error).
    fn reset(&mut self) {
        self.v.fill(0.0);
        self.cur.fill(0.0);
        self.v_pre.fill(0.0);
        self.refractory.fill(false);
        self.touch.neuron.fill(false);
        self.touch.pop_touched.fill(false);
        self.touch.pop_full.fill(false);
        self.touch.pops.clear();
        for l in &mut self.touch.lists {
            l.clear();
        }
        self.touch.deferred.fill(None);
        self.fired.clear();
        self.fired_pops.clear();
        self.fired_bits.fill(0);
        self.group.clear();
        self.pending.drop_all();
    }
}

/// The dense weight row of source neuron `local` of projection `proj`.
#[inline(always)]
fn dense_row(proj: &Projection, local: usize) -> &[f32] {
    match &proj.kind {
        ProjKind::Dense { wt } => {
            let n = proj.target_size;
            &wt[local * n..(local + 1) * n]
        }
        _ => &[],
    }
}

/// The sources of a delivery run: `(local index in the source population, scale s)`
/// for `e` in `0..len()`. The scale is the input value x of R4.2 or the multiplicity m
/// of R4.3.4. (A trait, not a closure: the event loop is compiled a second time with
/// AVX2 and everything it calls must be inlined into it.)
trait Sources: Sized {
    fn len(&self) -> usize;
    fn get(&self, e: usize) -> (usize, f32);
    /// The sources `a..b`.
    fn part(&self, a: usize, b: usize) -> Self;
}

/// Input events of one timestep: input neuron `index[e]` with value `value[e]` (the
/// non-zero values of a dense frame, or a sparse input's events at that timestep).
struct InputEvents<'a> {
    index: &'a [u32],
    value: &'a [f32],
}

impl Sources for InputEvents<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.index.len()
    }
    #[inline(always)]
    fn get(&self, e: usize) -> (usize, f32) {
        (self.index[e] as usize, self.value[e])
    }
    #[inline(always)]
    fn part(&self, a: usize, b: usize) -> Self {
        InputEvents {
            index: &self.index[a..b],
            value: &self.value[a..b],
        }
    }
}

/// Members `(neuron id, multiplicity)` of a forward group, all of the population whose
/// first id is `offset`.
struct Members<'a> {
    run: &'a [(u32, u32)],
    offset: usize,
}

impl Sources for Members<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.run.len()
    }
    #[inline(always)]
    fn get(&self, e: usize) -> (usize, f32) {
        let (j, m) = self.run[e];
        (j as usize - self.offset, m as f32)
    }
    #[inline(always)]
    fn part(&self, a: usize, b: usize) -> Self {
        Members {
            run: &self.run[a..b],
            offset: self.offset,
        }
    }
}

/// Delivers the sources `src` of population `s` (0 = input) through all its outgoing
/// projections, counting the synops of each (R7.4); returns their sum. One projection
/// at a time over the whole run where that keeps the order of the additions into every
/// neuron (R4.3.4 delivers source by source): the projections of `s` reach distinct
/// populations; otherwise source by source.
#[inline(always)]
fn deliver_sources<S: Sources>(
    net: &Network,
    s: usize,
    src: &S,
    cur: &mut [f32],
    touch: &mut Touch,
    synops_per_projection: &mut [i64],
    loc: &str,
) -> Result<u64, EngineError> {
    let outs = &net.outgoing[s];
    let n = src.len();
    let chunk = if outs.len() <= 1 || net.distinct_targets[s] {
        n.max(1)
    } else {
        1
    };
    let mut total = 0u64;
    let mut a = 0;
    while a < n {
        let b = (a + chunk).min(n);
        let part = src.part(a, b);
        for &pi in outs {
            let fo = deliver_run(net, pi, &part, cur, touch);
            add(&mut synops_per_projection[pi], fo, loc, "synops")?;
            total = total.saturating_add(fo);
        }
        a = b;
    }
    Ok(total)
}

/// Source `e` of `src` in a conv/pool projection whose source is read as
/// `(channels, in_h, in_w)`: its scale, its channel, and the ranges of its row and
/// column taps (`Taps::range`).
#[inline(always)]
fn source_taps<S: Sources>(
    src: &S,
    e: usize,
    in_hw: usize,
    in_w: usize,
    rows: &Taps,
    cols: &Taps,
) -> (f32, usize, Range<usize>, Range<usize>) {
    let (local, s) = src.get(e);
    let (c, y, x) = source_coords(in_hw, in_w, local);
    (s, c, rows.range(y), cols.range(x))
}

/// Adds the dense row kept for population `p` (`Touch::deferred`, target slots
/// `base..base + n`), if any, before another delivery adds to the same currents: a
/// dense row that replaces it, or a conv or pool delivery, so that every neuron still
/// sums its terms in the order of the group (R4.3.4).
#[inline(always)]
fn flush_deferred(
    net: &Network,
    touch: &mut Touch,
    cur: &mut [f32],
    p: usize,
    base: usize,
    n: usize,
) {
    if let Some(d) = touch.deferred[p].take() {
        let row = dense_row(&net.projections[d.proj], d.local);
        add_row(&mut cur[base..base + n], row, d.s);
    }
}

/// Delivers the sources `src` (in order) through projection `pi`: `I[q] += s * w` for
/// every synapse of each. Returns the summed fan-out (R1.3, R7.4), saturating. The kind
/// of the projection is matched once per run, not once per source.
///
/// A dense row is kept in `touch.deferred` for the integrate pass (the previously kept
/// row of the same population is added now); the rows of the sources `AHEAD` places
/// later are prefetched.
#[inline(always)]
fn deliver_run<S: Sources>(
    net: &Network,
    pi: usize,
    src: &S,
    cur: &mut [f32],
    touch: &mut Touch,
) -> u64 {
    let proj = &net.projections[pi];
    let p = proj.target_pop;
    let base = proj.target_offset;
    let len = src.len();
    touch.pop(p);
    match &proj.kind {
        ProjKind::Dense { wt } => {
            let n = proj.target_size;
            touch.pop_full[p] = true;
            // The rows of the first sources now, then each one `AHEAD` deliveries ahead.
            for e in 0..AHEAD.min(len) {
                let a = src.get(e).0;
                prefetch(&wt[a * n..(a + 1) * n]);
            }
            for e in 0..len {
                if e + AHEAD < len {
                    let a = src.get(e + AHEAD).0;
                    prefetch(&wt[a * n..(a + 1) * n]);
                }
                let (local, s) = src.get(e);
                flush_deferred(net, touch, cur, p, base, n);
                touch.deferred[p] = Some(Deferred { proj: pi, local, s });
            }
            (n as u64).saturating_mul(len as u64)
        }
        ProjKind::Conv {
            k,
            c_out,
            kh,
            kw,
            plane,
            rows,
            cols,
            channel_last,
            in_hw,
            in_w,
            ..
        } => {
            let (c_out, plane) = (*c_out, *plane);
            let kc = kh * kw * c_out;
            flush_deferred(net, touch, cur, p, base, proj.target_size);
            let mut fan = 0u64;
            for e in 0..len {
                let (s, c, rr, cr) = source_taps(src, e, *in_hw, *in_w, rows, cols);
                // A pixel touch can make the population full within the run.
                let full = touch.pop_full[p];
                fan = fan.saturating_add((c_out * rr.len() * cr.len()) as u64);
                let cb = c * kc;
                for r in rr {
                    // Offsets of the output row and kernel row (`Taps::scale`).
                    let (ro, rk) = (base + rows.out_s[r], cb + rows.tap_s[r]);
                    for sidx in cr.clone() {
                        let q0 = ro + cols.out_s[sidx];
                        let kb = rk + cols.tap_s[sidx];
                        let ks = &k[kb..kb + c_out];
                        if *channel_last {
                            // The c_out channels of the pixel are contiguous slots.
                            add_short(&mut cur[q0..q0 + c_out], ks, s);
                            if !full {
                                touch.pixel(p, q0);
                            }
                        } else {
                            // slot = id, one "pixel" per neuron.
                            for (o, &w) in ks.iter().enumerate() {
                                let q = q0 + o * plane;
                                cur[q] += s * w;
                                if !full {
                                    touch.pixel(p, q);
                                }
                            }
                        }
                    }
                }
            }
            fan
        }
        ProjKind::Pool {
            weight,
            plane,
            rows,
            cols,
            channel_last,
            in_hw,
            in_w,
            ..
        } => {
            flush_deferred(net, touch, cur, p, base, proj.target_size);
            let mut fan = 0u64;
            for e in 0..len {
                let (s, c, rr, cr) = source_taps(src, e, *in_hw, *in_w, rows, cols);
                let full = touch.pop_full[p];
                fan = fan.saturating_add((rr.len() * cr.len()) as u64);
                let sw = s * *weight;
                // Channel-last: pixel `pix` of channel `c` is slot `pix * channels + c`;
                // otherwise slot = id = `c * plane + pix` (`Taps::scale` holds the pixel
                // part).
                let ch_off = if *channel_last { c } else { c * *plane };
                for r in rr {
                    let ro = base + rows.out_s[r] + ch_off;
                    for sidx in cr.clone() {
                        let q = ro + cols.out_s[sidx];
                        cur[q] += sw;
                        if !full {
                            // The pixel's channel-0 slot (the neuron itself if slot = id).
                            touch.pixel(p, if *channel_last { q - c } else { q });
                        }
                    }
                }
            }
            fan
        }
    }
}

#[inline(always)]
fn add(counter: &mut i64, x: u64, location: &str, what: &str) -> Result<(), EngineError> {
    *counter = i64::try_from(x)
        .ok()
        .and_then(|x| counter.checked_add(x))
        .ok_or_else(|| EngineError::overflow(location, what))?;
    Ok(())
}

/// What the fire phase (R4.3.2) needs besides the neurons' state: the refractory
/// dropout probability of each population and the arguments of its random function.
struct FireCtx<'a> {
    dropout: &'a [f64],
    seed: u64,
    sample: u32,
    t: u32,
    k: u32,
}

/// R4.3.1 (integrate), the threshold test of R4.3.2 and the reset of the neurons that
/// fire (`v_pre <- V`, `V <- 0`, refractory flag with its dropout draw). These touch
/// only each firing neuron's own state, so they are done population by population as
/// the spikes are found; the counters and the pending set, which depend on the order
/// of the spikes, are left to the caller.
///
/// Leaves the ids of the neurons that fired in `ws.fired`, in increasing id order, with
/// one `(population, start, end)` range of it per population in `ws.fired_pops`, and
/// clears the current buffer and the touch bookkeeping.
///
/// R8.3, with `CHECK`: if a membrane became non-finite, returns `Err((population, id))`
/// of the first such neuron (lowest id) at once; the workspace is then left dirty (the
/// caller ends the sample, and [`Workspace::reset`] repairs it). Without `CHECK` (the
/// fast path, see [`run_prepared`]) it never fails.
#[inline(always)]
fn integrate<const CHECK: bool>(
    net: &Network,
    ws: &mut Workspace,
    fc: &FireCtx,
) -> Result<(), (usize, u32)> {
    let touch = &mut ws.touch;
    touch.pops.sort_unstable();
    ws.fired.clear();
    ws.fired_pops.clear();
    for &p in &touch.pops {
        let lo = net.pop_offset[p];
        let hi = net.pop_offset[p + 1];
        let channels = touch.channels[p];
        let start = ws.fired.len();
        // The slots of the neurons that cross their threshold go to `ws.fired`.
        let sorted = if touch.pop_full[p] {
            for &q in &touch.lists[p] {
                touch.neuron[q as usize] = false;
            }
            touch.lists[p].clear();
            let v = &mut ws.v[lo..hi];
            let c = &mut ws.cur[lo..hi];
            let r = &ws.refractory[lo..hi];
            let th = &net.threshold[lo..hi];
            let row = touch.deferred[p]
                .take()
                .map(|d| (dense_row(&net.projections[d.proj], d.local), d.s));
            let finite = integrate_full::<CHECK>(v, c, r, th, row, lo, &mut ws.fired);
            if CHECK && !finite {
                return Err((p, first_non_finite(net, &ws.v, lo..hi)));
            }
            // In slot order, which is id order if slot = id.
            channels == 1
        } else {
            let mut finite = true;
            for &q0 in &touch.lists[p] {
                let q = q0 as usize;
                touch.neuron[q] = false;
                let span = q..q + channels;
                finite &= integrate_span::<CHECK>(
                    &mut ws.v[span.clone()],
                    &mut ws.cur[span.clone()],
                    &ws.refractory[span.clone()],
                    &net.threshold[span],
                    q,
                    &mut ws.fired,
                );
            }
            if CHECK && !finite {
                return Err((p, first_non_finite(net, &ws.v, lo..hi)));
            }
            touch.lists[p].clear();
            false // in touch order
        };
        touch.pop_touched[p] = false;
        touch.pop_full[p] = false;
        if ws.fired.len() == start {
            continue;
        }
        // R4.3.2 reset and refractory flag; slots to ids.
        let pd = fc.dropout[p];
        for f in &mut ws.fired[start..] {
            let sq = *f as usize;
            let id = net.id_of[sq];
            ws.v_pre[id as usize] = ws.v[sq];
            ws.v[sq] = 0.0;
            ws.refractory[sq] = !(pd > 0.0
                && (uniform(fc.seed, fc.sample, fc.t, fc.k, id, STREAM_DROPOUT) as f64) < pd);
            *f = id;
        }
        if !sorted {
            sort_ids(&mut ws.fired[start..], lo, hi, &mut ws.fired_bits);
        }
        ws.fired_pops.push((p, start, ws.fired.len()));
    }
    touch.pops.clear();
    Ok(())
}

/// Whether a float32 is finite, as a compare that vectorises (false for NaN).
#[inline(always)]
fn is_finite(x: f32) -> bool {
    x.abs() <= f32::MAX
}

/// R8.3: the id of the lowest-id neuron in the slots `slots` (one population) whose
/// membrane is not finite (there is one: the caller saw it).
#[cold]
fn first_non_finite(net: &Network, v: &[f32], slots: Range<usize>) -> u32 {
    slots
        .filter(|&sq| !is_finite(v[sq]))
        .map(|sq| net.id_of[sq])
        .min()
        .expect("a non-finite membrane was seen")
}

/// R4.3.1-2 over the contiguous slots `lo..lo + v.len()` (the channels of one pixel of a
/// channel-last population): `V += I` unless refractory, `I <- 0`, and the slots with
/// `V > threshold` pushed to `fired` in increasing order. Eight lanes at a time with a
/// bit mask of the crossings, so that a pixel of 8-32 channels is a few vector
/// operations. A refractory membrane is 0 (reset at its spike, leaked as 0), so adding
/// 0 instead of skipping it is the same.
#[inline(always)]
fn integrate_span<const CHECK: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    th: &[f32],
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    const L: usize = 8;
    let n = v.len();
    let (c, r, th) = (&mut c[..n], &r[..n], &th[..n]);
    let mut finite = true;
    let mut base = lo;
    let mut vc = v.chunks_exact_mut(L);
    let mut cc = c.chunks_exact_mut(L);
    let mut rc = r.chunks_exact(L);
    let mut tc = th.chunks_exact(L);
    for (((v8, c8), r8), t8) in (&mut vc).zip(&mut cc).zip(&mut rc).zip(&mut tc) {
        let mut mask = 0u32;
        for i in 0..L {
            let x = std::mem::take(&mut c8[i]);
            let nv = v8[i] + if r8[i] { 0.0 } else { x };
            v8[i] = nv;
            if CHECK {
                finite &= is_finite(nv);
            }
            mask |= ((nv > t8[i]) as u32) << i;
        }
        while mask != 0 {
            fired.push((base + mask.trailing_zeros() as usize) as u32);
            mask &= mask - 1;
        }
        base += L;
    }
    let rest = vc.into_remainder().iter_mut().zip(cc.into_remainder());
    for (i, ((v, c), (r, t))) in rest
        .zip(rc.remainder().iter().zip(tc.remainder()))
        .enumerate()
    {
        let x = std::mem::take(c);
        *v += if *r { 0.0 } else { x };
        if CHECK {
            finite &= is_finite(*v);
        }
        if *v > *t {
            fired.push((base + i) as u32);
        }
    }
    finite
}

/// Sorts distinct neuron ids in `lo..hi`. A long list goes through the bitmap `bits`
/// (one bit per id, all clear before and after): set a bit per id, then read the set
/// bits of the words that cover `lo..hi` in order; O(len + (hi - lo) / 64) instead of
/// O(len log len). A short list, or one that is sparse in a large range, is sorted.
#[inline(always)]
fn sort_ids(ids: &mut [u32], lo: usize, hi: usize, bits: &mut [u64]) {
    let n = ids.len();
    if n < 32 || (hi - lo) / 64 > 4 * n {
        ids.sort_unstable();
        return;
    }
    for &q in ids.iter() {
        bits[q as usize / 64] |= 1u64 << (q % 64);
    }
    let mut out = 0;
    let w0 = lo / 64;
    for (wi, word) in bits[w0..hi.div_ceil(64)].iter_mut().enumerate() {
        let wi = w0 + wi;
        let mut w = std::mem::take(word);
        while w != 0 {
            ids[out] = (wi * 64) as u32 + w.trailing_zeros();
            out += 1;
            w &= w - 1;
        }
    }
    debug_assert_eq!(out, n, "ids must be distinct and in lo..hi");
}

/// R4.3.1-2 over a whole population (`lo` is the slot of its first neuron): `V += I`
/// unless refractory, `I <- 0`, and the slots with `V > threshold` pushed to `fired`
/// in increasing order (the caller turns them into ids when they differ). With `row = Some((w, s))` the summed current of neuron `i` is
/// `cur[i] + s * w[i]` (the population's deferred row, see `Touch::deferred`: the same
/// float operations as adding the row to `cur` first).
///
/// Chunks of 16 neurons: the update, then a branch-free "any above threshold" test of
/// the chunk (it compiles to a vector compare and a move-mask); only a chunk that has a
/// spike is scanned. Refractory membranes are 0 < threshold: no refractory test needed.
#[inline(always)]
fn integrate_full<const CHECK: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    th: &[f32],
    row: Option<(&[f32], f32)>,
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    const CH: usize = 16;
    let n = v.len();
    let (c, r, th) = (&mut c[..n], &r[..n], &th[..n]);
    // Refractory: the current is discarded (R4.3.1, R4.6).
    match row {
        Some((w, s)) => {
            let w = &w[..n];
            for i in 0..n {
                let x = c[i] + s * w[i];
                c[i] = 0.0;
                v[i] += if r[i] { 0.0 } else { x };
            }
        }
        None => {
            for i in 0..n {
                let x = std::mem::take(&mut c[i]);
                v[i] += if r[i] { 0.0 } else { x };
            }
        }
    }
    let mut vc = v.chunks_exact(CH);
    let mut tc = th.chunks_exact(CH);
    let mut base = lo;
    // R8.3: every lane's finiteness, and-ed over the population.
    let mut finite = true;
    for (vs, ts) in (&mut vc).zip(&mut tc) {
        // Fixed-size arrays: the compare is vector compares and move-masks.
        let vs: &[f32; CH] = vs.try_into().expect("chunk");
        let ts: &[f32; CH] = ts.try_into().expect("chunk");
        let mut mask = 0u32;
        for i in 0..CH {
            mask |= ((vs[i] > ts[i]) as u32) << i;
        }
        if CHECK {
            finite &= vs.iter().all(|&x| is_finite(x));
        }
        if mask != 0 {
            // Branch-free compaction of the spiking neurons of the chunk.
            let mut ids = [0u32; CH];
            let mut count = 0;
            // (The compares again, not the mask's bits: reading the bits back was 10 %
            // slower for momentum in A/B.)
            for i in 0..CH {
                ids[count] = (base + i) as u32;
                count += (vs[i] > ts[i]) as usize;
            }
            fired.extend_from_slice(&ids[..count]);
        }
        base += CH;
    }
    for (i, (x, t)) in vc.remainder().iter().zip(tc.remainder()).enumerate() {
        if CHECK {
            finite &= is_finite(*x);
        }
        if *x > *t {
            fired.push((base + i) as u32);
        }
    }
    finite
}

/// How many deliveries ahead the event loop prefetches weight rows.
const AHEAD: usize = 4;

/// Runs one validated sample (R3-R7), with the event loop compiled for AVX2 when the
/// CPU has it (see `crate::kernels`: the same float operations, bit-identical results).
///
/// R8.3 in two passes: the fast path checks that every membrane is finite once per
/// timestep only (folded into the leak and the clearing of `v_pre`, passes over all
/// neurons that happen anyway); a non-finite membrane stays non-finite until then (NaN
/// and -inf never fire; +inf fires and is kept in `v_pre`). Only when it saw one is the
/// sample run again with the check at every integrate, which names the exact forward
/// step and neuron. (Checking at every integrate always cost up to 15 % for momentum.)
fn run_prepared(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    let fast = run_prepared_on_cpu::<false>(net, ps, sample, config, ws, stop);
    if !std::mem::take(&mut ws.non_finite) {
        return fast;
    }
    run_prepared_checked(net, ps, sample, config, ws, stop)
}

/// The checked re-run of [`run_prepared`], kept out of line (it runs only for a sample
/// whose membrane overflowed).
#[cold]
#[inline(never)]
fn run_prepared_checked(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    run_prepared_on_cpu::<true>(net, ps, sample, config, ws, stop)
}

#[inline(always)]
fn run_prepared_on_cpu<const CHECK: bool>(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked at run time just above).
            return unsafe { run_prepared_avx2::<CHECK>(net, ps, sample, config, ws, stop) };
        }
    }
    run_prepared_body::<CHECK>(net, ps, sample, config, ws, stop)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_prepared_avx2<const CHECK: bool>(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    run_prepared_body::<CHECK>(net, ps, sample, config, ws, stop)
}

/// How a run learns that it should stop early (Ctrl-C): `cancel` is read at every
/// timestep; `poll`, when given, is called from the running thread at most every
/// [`POLL_INTERVAL`] (the binding's poll checks Python's signals, which only the
/// thread that called into the engine may do) and sets `cancel` when it returns true.
pub struct Interrupt<'a> {
    /// Set (by anyone) to stop the run: it then returns [`EngineError::Cancelled`].
    pub cancel: &'a AtomicBool,
    /// Asked now and then, on the running thread, whether to stop.
    pub poll: Option<&'a (dyn Fn() -> bool + Sync)>,
}

/// The least time between two calls of [`Interrupt::poll`] within one sample.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

impl Interrupt<'_> {
    /// Whether the run should stop, at timestep `t`; `last` is the time of the latest
    /// poll (the clock is read every 16 timesteps only).
    #[inline(always)]
    fn stop(&self, t: usize, last: &mut std::time::Instant) -> bool {
        if self.cancel.load(Ordering::Relaxed) {
            return true;
        }
        match self.poll {
            Some(poll) if t % 16 == 0 && last.elapsed() >= POLL_INTERVAL => {
                *last = std::time::Instant::now();
                let stop = poll();
                if stop {
                    self.cancel.store(true, Ordering::Relaxed);
                }
                stop
            }
            _ => false,
        }
    }
}

#[inline(always)]
fn run_prepared_body<const CHECK: bool>(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    let loc = ps.location.as_str();
    let n_pops = net.n_populations();
    let n_out = net.n_outputs();
    let out_pop = n_pops - 1;
    let out_off = net.pop_offset[out_pop];
    let n_in = net.input_size();
    let mut res = SampleResult::new(ps.timesteps, n_out, n_pops, net.n_projections(), loc)?;
    let dropout: Vec<f64> = match &config.refractory_dropout {
        Some(p) => p.clone(),
        None => vec![0.0; n_pops],
    };
    let has_out: Vec<bool> = (0..n_pops)
        .map(|p| !net.outgoing[p + 1].is_empty())
        .collect();
    let f = config.forward_group_size;
    let label = ps.label;

    ws.reset();
    if let Prepared::Dense(_) = &ps.input {
        // Room for a whole frame's non-zero inputs (kept between samples).
        let nz = &mut ws.nonzero;
        alloc::reserve(nz, n_in.saturating_sub(nz.len()), loc, "input scan")?;
        let values = &mut ws.nonzero_values;
        alloc::reserve(values, n_in.saturating_sub(values.len()), loc, "input scan")?;
    }
    ws.pending.set_scheduler(config.scheduler);
    let mut sparse_cursor = 0usize;
    let mut synops: u64 = 0;
    let mut spikes_total: u64 = 0;

    let mut last_poll = std::time::Instant::now();
    for t in 0..ps.timesteps {
        // Ctrl-C inside one long sample, not only between samples.
        if stop.is_some_and(|s| s.stop(t, &mut last_poll)) {
            return Err(EngineError::Cancelled);
        }
        let t32 = t as u32; // timesteps <= 2^32 was validated
                            // R4.1: leak, clear refractory flags and v_pre (R8.3: the fast path checks
                            // that the membranes of the timestep before were finite on the way).
        let mut finite = true;
        for (v, b) in ws.v.iter_mut().zip(&net.beta) {
            if !CHECK {
                finite &= is_finite(*v);
            }
            *v *= *b;
        }
        ws.refractory.fill(false);
        for x in ws.v_pre.iter_mut() {
            if !CHECK {
                finite &= is_finite(*x);
            }
            *x = 0.0;
        }
        if !CHECK && !finite {
            return Err(ws.saw_non_finite(loc));
        }

        let mut ts_spikes: u64 = 0;
        let mut ts_synops: u64 = 0;
        let mut k: u32 = 0;
        let mut k0: Option<u32> = None;
        let mut correct_seen = false;

        // R4.2: forward step 0 delivers the input frame (R2.3), in input index order.
        {
            match &ps.input {
                Prepared::Dense(frames) => {
                    let frame = &frames[t * n_in..(t + 1) * n_in];
                    // The non-zero inputs, in index order: a bit mask per 8 values
                    // (one vector compare), then its set bits; sparse frames are
                    // mostly all-zero chunks.
                    // `nonzero` keeps `n_in` slots between timesteps (sized once, not
                    // zeroed again); the first `count` are this frame's.
                    let mut nz = std::mem::take(&mut ws.nonzero);
                    nz.resize(n_in, 0);
                    let mut count = 0;
                    let mut chunks = frame.chunks_exact(8);
                    let mut base = 0u32;
                    for ch in &mut chunks {
                        let ch: &[f32; 8] = ch.try_into().expect("chunk of 8");
                        let mut mask = 0u32;
                        for (l, &x) in ch.iter().enumerate() {
                            mask |= ((x != 0.0) as u32) << l;
                        }
                        while mask != 0 {
                            nz[count] = base + mask.trailing_zeros();
                            count += 1;
                            mask &= mask - 1;
                        }
                        base += 8;
                    }
                    for (l, &x) in chunks.remainder().iter().enumerate() {
                        nz[count] = base + l as u32;
                        count += (x != 0.0) as usize;
                    }
                    let idx = &nz[..count];
                    add(&mut res.input_events, count as u64, loc, "input_events")?;
                    let mut values = std::mem::take(&mut ws.nonzero_values);
                    values.clear();
                    values.extend(idx.iter().map(|&i| frame[i as usize]));
                    let src = InputEvents {
                        index: idx,
                        value: &values,
                    };
                    let spp = &mut res.synops_per_projection;
                    ts_synops +=
                        deliver_sources(net, 0, &src, &mut ws.cur, &mut ws.touch, spp, loc)?;
                    ws.nonzero = nz;
                    ws.nonzero_values = values;
                }
                Prepared::Sparse {
                    t: et,
                    index,
                    value,
                } => {
                    let a = sparse_cursor;
                    while sparse_cursor < et.len() && et[sparse_cursor] == t32 {
                        sparse_cursor += 1;
                    }
                    let b = sparse_cursor;
                    add(&mut res.input_events, (b - a) as u64, loc, "input_events")?;
                    let src = InputEvents {
                        index: &index[a..b],
                        value: &value[a..b],
                    };
                    let spp = &mut res.synops_per_projection;
                    ts_synops +=
                        deliver_sources(net, 0, &src, &mut ws.cur, &mut ws.touch, spp, loc)?;
                }
            }
        }

        loop {
            // R4.3.1 integrate, R4.3.2 threshold test and reset.
            let fc = FireCtx {
                dropout: &dropout,
                seed: config.seed,
                sample,
                t: t32,
                k,
            };
            if let Err((p, id)) = integrate::<CHECK>(net, ws, &fc) {
                // R8.3: a membrane overflowed float32.
                // `p` counts the non-input populations; the location names population
                // `p + 1` (0 = input, R1.1) and the neuron's index within it.
                let (pop, i) = (p + 1, id as usize - net.pop_offset[p]);
                return Err(EngineError::overflow(
                    format!("{loc}, timestep {t}, forward step {k}, population {pop}, neuron {i}"),
                    "membrane",
                ));
            }
            // R4.3.2 fire, in increasing id order: counters, readout, pending set.
            let mut out_class: Option<usize> = None;
            let mut label_hit = false;
            for &(p, a, b) in &ws.fired_pops {
                add(&mut res.spikes[p], (b - a) as u64, loc, "spikes")?;
                let fired = &ws.fired[a..b];
                if p == out_pop {
                    for &q in fired {
                        let c = q as usize - out_off;
                        add(&mut res.output_counts[c], 1, loc, "output_counts")?;
                        add(
                            &mut res.timestep_output_counts[t * n_out + c],
                            1,
                            loc,
                            "output_counts",
                        )?;
                        if out_class.is_none() {
                            out_class = Some(c);
                        }
                        if label == Some(c) {
                            label_hit = true;
                        }
                    }
                } else if has_out[p] && !ws.pending.enqueue_all(fired, p, &ws.v_pre) {
                    return Err(EngineError::overflow(loc, "pending multiplicity"));
                }
            }
            ts_spikes += ws.fired.len() as u64;
            spikes_total += ws.fired.len() as u64;
            // R7.7 latency records (spikes of steps 0..=k, synops integrated so far).
            if let Some(c) = out_class {
                if k0.is_none() {
                    k0 = Some(k);
                    res.first_output_step[t] = k as i64;
                    res.first_output_class[t] = c as i64;
                    res.first_output_spikes[t] = ts_spikes as i64;
                    res.first_output_synops[t] = ts_synops as i64;
                }
            }
            if label_hit && !correct_seen {
                correct_seen = true;
                res.first_correct_step[t] = k as i64;
                res.first_correct_spikes[t] = ts_spikes as i64;
                res.first_correct_synops[t] = ts_synops as i64;
            }
            // R7.6
            res.queue_peak = res.queue_peak.max(ws.pending.len() as i64);
            // R4.3.3 stop check (R6).
            let mut stop = match (config.stop, k0) {
                (StopMode::FirstOutput { extra_steps }, Some(k0)) => k - k0 >= extra_steps,
                _ => false,
            };
            if let Some(kmax) = config.max_steps {
                stop |= k as u64 + 1 >= kmax as u64;
            }
            if stop {
                // R6.4
                let dropped = ws.pending.drop_all();
                add(&mut res.dropped_spikes, dropped, loc, "dropped_spikes")?;
                break;
            }
            if ws.pending.is_empty() {
                break;
            }
            // R4.3.4 select and deliver.
            let ctx = SelectCtx {
                seed: config.seed,
                sample,
                t: t32,
                k,
            };
            let mut group = std::mem::take(&mut ws.group);
            ws.pending.select(f, ctx, &ws.v_pre, &mut group);
            debug_assert!(!group.is_empty(), "a non-empty pending set yields a group");
            // Runs of members of one population (a layered group is one run).
            let mut e = 0;
            while e < group.len() {
                let p = net.pop_of[group[e].0 as usize];
                let end = e + group[e..]
                    .iter()
                    .position(|&(j, _)| net.pop_of[j as usize] != p)
                    .unwrap_or(group.len() - e);
                let p = p as usize;
                let src = Members {
                    run: &group[e..end],
                    offset: net.pop_offset[p],
                };
                let spp = &mut res.synops_per_projection;
                ts_synops +=
                    deliver_sources(net, p + 1, &src, &mut ws.cur, &mut ws.touch, spp, loc)?;
                e = end;
            }
            ws.group = group;
            k = k
                .checked_add(1)
                .ok_or_else(|| EngineError::overflow(loc, "forward step index"))?;
        }
        // R7.5
        let steps = k as i64 + 1;
        res.timestep_forward_steps[t] = steps;
        add(&mut res.forward_steps, steps as u64, loc, "forward_steps")?;
        synops = synops
            .checked_add(ts_synops)
            .ok_or_else(|| EngineError::overflow(loc, "synops"))?;
    }
    if !CHECK && !(ws.v.iter().chain(&ws.v_pre).all(|&x| is_finite(x))) {
        return Err(ws.saw_non_finite(loc)); // in the last timestep
    }
    res.synops = i64::try_from(synops).map_err(|_| EngineError::overflow(loc, "synops"))?;
    res.spikes_total =
        i64::try_from(spikes_total).map_err(|_| EngineError::overflow(loc, "spikes_total"))?;
    res.compute_prediction();
    Ok(res)
}

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
    let ps = prepare(net, input, label, false, format!("sample {sample_id}"))?;
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
/// [`check_dense_values`] on every dense input (the binding checks a whole batch, in
/// parallel, before it runs it in parts), and it is not repeated.
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
        prepare(net, input, label, values_checked, format!("sample {i}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec};

    fn pop(size: usize, th: f32, beta: f32) -> PopulationSpec {
        PopulationSpec {
            size,
            threshold: vec![th],
            beta: vec![beta],
            refractory_dropout: 0.0,
        }
    }

    #[test]
    fn stop_names_parse() {
        assert_eq!("drain".parse::<StopMode>().unwrap(), StopMode::Drain);
        assert_eq!("max_steps".parse::<StopMode>().unwrap(), StopMode::Drain);
        let f: StopMode = "first_output".parse().unwrap();
        assert_eq!(f, StopMode::FirstOutput { extra_steps: 0 });
        assert_eq!(
            f.with_extra_steps(3),
            StopMode::FirstOutput { extra_steps: 3 }
        );
        assert_eq!(StopMode::Drain.with_extra_steps(3), StopMode::Drain);
        let e = "first-output".parse::<StopMode>().unwrap_err();
        assert!(matches!(&e, EngineError::Parameter { field, value, reason }
            if field == "stop" && value == "first-output"
                && reason == "must be drain, first_output or max_steps"));
    }

    fn dense(source: usize, target: usize, weight: Vec<f32>) -> ProjectionSpec {
        ProjectionSpec {
            source,
            target,
            kind: ProjectionKind::Dense { weight },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        source: usize,
        target: usize,
        weight: Vec<f32>,
        c_in: usize,
        (in_h, in_w): (usize, usize),
        c_out: usize,
        (kh, kw): (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> ProjectionSpec {
        ProjectionSpec {
            source,
            target,
            kind: ProjectionKind::Conv2d {
                weight,
                c_in,
                in_h,
                in_w,
                c_out,
                kh,
                kw,
                stride,
                padding,
            },
        }
    }

    fn cfg(scheduler: Scheduler, f: usize) -> RunConfig {
        RunConfig {
            scheduler,
            forward_group_size: f,
            stop: StopMode::Drain,
            max_steps: None,
            seed: 0,
            refractory_dropout: None,
        }
    }

    fn net(input_size: usize, pops: Vec<PopulationSpec>, projs: Vec<ProjectionSpec>) -> Network {
        Network::new(NetworkSpec {
            input_size,
            populations: pops,
            projections: projs,
        })
        .expect("valid network")
    }

    fn run_dense(
        net: &Network,
        frames: &[f32],
        timesteps: usize,
        label: Option<usize>,
        config: &RunConfig,
    ) -> SampleResult {
        run_sample(
            net,
            &SampleInput::Dense { frames, timesteps },
            label,
            0,
            config,
        )
        .expect("run")
    }

    const ALL: [Scheduler; 5] = [
        Scheduler::Layered,
        Scheduler::Fifo,
        Scheduler::Random,
        Scheduler::Momentum { jitter: 0.0 },
        Scheduler::Momentum { jitter: 0.5 },
    ];

    /// R4.3.2: the threshold test is strict.
    /// Two projections from one population into one population: the group is delivered
    /// member by member (each member through its projections in projection order), as
    /// before the run-wise delivery, so the float sums are unchanged. The weights make
    /// the two possible orders round differently: with `a` the first projection's and
    /// `b` the second's weights from members 0 and 1, the summed current is
    /// `((a0 + b0) + a1) + b1` member by member but `((a0 + a1) + b0) + b1` projection
    /// by projection; `2^-30` is lost when added to 1 and kept when added to 0.
    #[test]
    fn shared_target_projections_keep_member_order() {
        let tiny = 2f32.powi(-30);
        // (a, b, whether the output fires member by member)
        let cases = [
            (vec![1.0, -1.0], vec![tiny, 0.0], false), // by projection: tiny, fires
            (vec![1.0, tiny], vec![-1.0, 0.0], true),  // by projection: 0, silent
        ];
        for (a, b, fires) in cases {
            let n = net(
                1,
                vec![pop(2, 1.0, 0.5), pop(1, tiny / 2.0, 0.5)],
                vec![dense(0, 1, vec![2.0, 2.0]), dense(1, 2, a), dense(1, 2, b)],
            );
            assert!(!n.distinct_targets[1]);
            for s in ALL {
                let r = run_dense(&n, &[1.0], 1, None, &cfg(s, 64));
                assert_eq!(r.spikes[0], 2, "{s:?}: both hidden neurons fire");
                assert_eq!(r.output_counts[0] > 0, fires, "{s:?} fires = {fires}");
            }
        }
    }

    /// A population that receives dense rows and then a conv or pool delivery in one
    /// forward step sums them in group order: `(a + -a) + b` keeps `b` (the output
    /// fires), where `(a + b) + -a` would lose it.
    #[test]
    fn dense_then_conv_or_pool_into_one_population_keeps_group_order() {
        let tiny = 2f32.powi(-30);
        let big = 2f32.powi(30);
        let sum_pool = ProjectionSpec {
            source: 2,
            target: 3,
            kind: ProjectionKind::Pool {
                kind: PoolKind::Sum,
                channels: 1,
                in_h: 1,
                in_w: 1,
                kh: 1,
                kw: 1,
                stride: (1, 1),
            },
        };
        // (a, the last projection, b)
        let cases = [
            (
                1.0,
                conv2d(2, 3, vec![tiny], 1, (1, 1), 1, (1, 1), (1, 1), (0, 0)),
                tiny,
            ),
            (big, sum_pool, 1.0),
        ];
        for (a, last, b) in cases {
            let n = net(
                1,
                vec![pop(2, 1.0, 0.5), pop(1, 1.0, 0.5), pop(1, b / 2.0, 0.5)],
                vec![
                    dense(0, 1, vec![2.0, 2.0]),
                    dense(0, 2, vec![2.0]),
                    dense(1, 3, vec![a, -a]),
                    last,
                ],
            );
            for s in ALL.into_iter().filter(|s| *s != Scheduler::Layered) {
                let r = run_dense(&n, &[1.0], 1, None, &cfg(s, 64));
                assert_eq!(
                    r.spikes[..2],
                    [2, 1],
                    "{s:?}, b = {b}: the hidden neurons fire"
                );
                assert_eq!(r.output_counts[0], 1, "{s:?}, b = {b}: the output fires");
            }
        }
    }

    #[test]
    fn sort_ids_sorts_through_both_paths() {
        let mut next = crate::rng::test_stream(0x9e37_79b9_7f4a_7c15);
        let mut bits = vec![0u64; 20_000usize.div_ceil(64)];
        // (lo, hi, n): short lists, long lists (bitmap), long lists sparse in a large
        // range (sort), ranges that start and end inside a word.
        for &(lo, hi, n) in &[
            (0, 100, 5),
            (3, 200, 150),
            (70, 1000, 400),
            (0, 20_000, 40),
            (65, 129, 64),
            (1, 19_999, 5000),
        ] {
            let mut all: Vec<u32> = (lo as u32..hi as u32).collect();
            for i in (1..all.len()).rev() {
                all.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            let mut ids = all[..n].to_vec();
            let mut want = ids.clone();
            want.sort_unstable();
            sort_ids(&mut ids, lo, hi, &mut bits);
            assert_eq!(ids, want, "lo {lo} hi {hi} n {n}");
            assert!(bits.iter().all(|&w| w == 0), "the bitmap is left clear");
        }
    }

    #[test]
    fn exact_threshold_does_not_fire() {
        let n = net(1, vec![pop(1, 1.0, 1.0)], vec![dense(0, 1, vec![0.5])]);
        let r = run_dense(&n, &[2.0], 1, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.spikes, vec![0]);
        assert_eq!(r.input_events, 1);
        assert_eq!(r.synops, 1);
        assert_eq!(r.prediction, -1);
        let r = run_dense(&n, &[2.0078125], 1, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.spikes, vec![1]);
        assert_eq!(r.prediction, 0);
        // Membrane carries over (beta = 1): 1.0 at t=0, then 1.0 + 0.5 > 1 at t=1.
        let r = run_dense(&n, &[2.0, 1.0], 2, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.timestep_output_counts, vec![0, 1]);
    }

    /// R4.6 / R4.3.1: a refractory neuron discards the current reaching it.
    #[test]
    fn refractory_neuron_discards_current() {
        // pop1 = A (1 neuron), pop2 = H (1 neuron, output). Input 0 -> A and H;
        // input 1 -> H only. A -> H with weight 0.75.
        let n = net(
            2,
            vec![pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
            vec![
                dense(0, 1, vec![1.0, 0.0]),
                dense(0, 2, vec![2.0, 0.5]),
                dense(1, 2, vec![0.75]),
            ],
        );
        // t=0: H fires at step 0 (refractory), A's 0.75 at step 1 is discarded.
        // t=1: only 0.5 arrives: V = 0 + 0.5 <= 1: no spike. Had the 0.75 been
        // integrated, H would fire at t=1.
        let r = run_dense(&n, &[1.0, 0.0, 0.0, 1.0], 2, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.spikes, vec![1, 1]);
        assert_eq!(r.timestep_output_counts, vec![1, 0]);
        assert_eq!(r.timestep_forward_steps, vec![2, 1]);
        // Input 1 reaches A through a zero weight: still a synapse (R1.3).
        assert_eq!(r.synops_per_projection, vec![2, 2, 1]);
    }

    /// R8.3: a membrane that becomes non-finite ends the run with an Overflow error
    /// naming the sample, timestep, forward step, population and neuron; the current a
    /// refractory neuron discards never does.
    #[test]
    fn membrane_overflow_is_an_error() {
        let big = 3.0e38f32;
        let overflow = |n: &Network, frames: &[f32], timesteps: usize, s: Scheduler| {
            run_sample(
                n,
                &SampleInput::Dense { frames, timesteps },
                None,
                0,
                &cfg(s, 1),
            )
        };
        for s in ALL {
            // inf - inf: each product overflows, their sum is NaN in any order.
            let n = net(
                2,
                vec![pop(2, 1.0, 1.0), pop(1, 1.0, 1.0)],
                vec![
                    dense(0, 1, vec![0.0, 0.0, big, -big]),
                    dense(1, 2, vec![1.0, 1.0]),
                ],
            );
            let e = overflow(&n, &[0.0, 0.0, 2.0, 2.0], 2, s).unwrap_err();
            assert_eq!(
                e.to_string(),
                "sample 0, timestep 1, forward step 0, population 1, neuron 1: membrane overflows",
                "{s:?}"
            );
            // A single input product to +inf in the second population.
            let two = |w: f32| {
                net(
                    1,
                    vec![pop(1, 0.5, 1.0), pop(2, 1.0, 1.0)],
                    vec![
                        dense(0, 1, vec![1.0]),
                        dense(1, 2, vec![1.0, 1.0]),
                        dense(0, 2, vec![0.0, w]),
                    ],
                )
            };
            assert!(overflow(&two(1.0), &[2.0], 1, s).is_ok());
            let e = overflow(&two(big), &[2.0], 1, s).unwrap_err();
            assert!(matches!(&e, EngineError::Overflow { what, .. } if what == "membrane"));
            assert_eq!(
                e.to_string(),
                "sample 0, timestep 0, forward step 0, population 2, neuron 1: membrane overflows"
            );
            // (big + big = inf after the sum of two currents in one step.)
            let n = net(
                1,
                vec![pop(2, 0.5, 1.0), pop(1, 1.0, 1.0)],
                vec![dense(0, 1, vec![1.0, 1.0]), dense(1, 2, vec![big, big])],
            );
            let e = overflow(&n, &[1.0], 1, Scheduler::Layered).unwrap_err();
            assert_eq!(
                e.to_string(),
                "sample 0, timestep 0, forward step 1, population 2, neuron 0: membrane overflows"
            );
        }
        // Refractory: the output neuron fires at step 0, then the overflowing current of
        // step 1 is discarded (R4.6): no error.
        let n = net(
            2,
            vec![pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
            vec![
                dense(0, 1, vec![1.0, 0.0]),
                dense(0, 2, vec![2.0, 0.0]),
                dense(1, 2, vec![big]),
            ],
        );
        let r = overflow(&n, &[1.0, 0.0], 1, Scheduler::Fifo).unwrap();
        assert_eq!(r.spikes, vec![1, 1]);
        // A sparse conv target (the per-pixel integrate path).
        let n = net(
            4,
            vec![pop(4, 1.0, 1.0)],
            vec![conv2d(
                0,
                1,
                vec![big],
                1,
                (2, 2),
                1,
                (1, 1),
                (1, 1),
                (0, 0),
            )],
        );
        let mut frames = vec![0.0f32; 4 * 8];
        frames[3] = 2.0;
        let e = overflow(&n, &frames, 8, Scheduler::Fifo).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sample 0, timestep 0, forward step 0, population 1, neuron 3: membrane overflows"
        );
    }

    /// R4.3.1 / section 10.1: the last group of a timestep is integrated even when it
    /// is inhibitory, and the membrane carries into the next timestep.
    #[test]
    fn inhibitory_last_group_is_integrated() {
        let n = net(
            2,
            vec![pop(1, 0.5, 1.0), pop(1, 0.5, 1.0)],
            vec![
                dense(0, 1, vec![1.0, 0.0]),
                dense(0, 2, vec![0.0, 0.75]),
                dense(1, 2, vec![-0.5]),
            ],
        );
        for s in ALL {
            let r = run_dense(&n, &[1.0, 0.0, 0.0, 1.0], 2, None, &cfg(s, 4));
            // t=1: V = -0.5 + 0.75 = 0.25 <= 0.5: no output spike.
            assert_eq!(r.spikes, vec![1, 0], "{s:?}");
            assert_eq!(r.timestep_forward_steps, vec![2, 1]);
        }
        // Without the inhibition the output would fire at t=1.
        let n2 = net(
            2,
            vec![pop(1, 0.5, 1.0), pop(1, 0.5, 1.0)],
            vec![dense(0, 1, vec![1.0, 0.0]), dense(0, 2, vec![0.0, 0.75])],
        );
        let r = run_dense(
            &n2,
            &[1.0, 0.0, 0.0, 1.0],
            2,
            None,
            &cfg(Scheduler::Fifo, 4),
        );
        assert_eq!(r.spikes, vec![1, 1]);
    }

    /// R4.1: leak V <- beta * V at the start of each timestep.
    #[test]
    fn leak_is_applied() {
        let n = net(1, vec![pop(1, 1.0, 0.5)], vec![dense(0, 1, vec![0.75])]);
        // t0: 0.75; t1: 0.375 + 0.75 = 1.125 > 1 fires; t2: 0 + 0.75; t3: 1.125 fires.
        let r = run_dense(&n, &[1.0; 4], 4, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.timestep_output_counts, vec![0, 1, 0, 1]);
    }

    /// Empty input: one forward step per timestep, nothing else.
    #[test]
    fn empty_input() {
        let n = net(
            3,
            vec![pop(2, 1.0, 0.9), pop(2, 1.0, 0.9)],
            vec![dense(0, 1, vec![1.0; 6]), dense(1, 2, vec![1.0; 4])],
        );
        for s in ALL {
            let r = run_dense(&n, &[0.0; 9], 3, Some(1), &cfg(s, 2));
            assert_eq!(r.forward_steps, 3);
            assert_eq!(r.timestep_forward_steps, vec![1, 1, 1]);
            assert_eq!(r.spikes_total, 0);
            assert_eq!(r.synops, 0);
            assert_eq!(r.input_events, 0);
            assert_eq!(r.prediction, -1);
            assert_eq!(r.first_output_step, vec![-1; 3]);
            assert_eq!(r.first_correct_step, vec![-1; 3]);
            assert_eq!(r.queue_peak, 0);
            // Sparse form with no events.
            let r2 = run_sample(
                &n,
                &SampleInput::Sparse {
                    t: &[],
                    index: &[],
                    value: &[],
                    timesteps: 3,
                },
                Some(1),
                0,
                &cfg(s, 2),
            )
            .unwrap();
            assert_eq!(r, r2);
        }
    }

    /// Network for the order tests: input 0 -> h0 (v 1.25), input 1 -> h1 (v 2.5);
    /// h0 -> out0, h1 -> out1; h2 (fed by input 2) -> nothing useful.
    fn order_net() -> Network {
        net(
            3,
            vec![pop(3, 1.0, 1.0), pop(2, 0.5, 1.0)],
            vec![
                dense(0, 1, vec![1.25, 0.0, 0.0, 0.0, 2.5, 0.0, 0.0, 0.0, 1.5]),
                dense(1, 2, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            ],
        )
    }

    /// R5.2 vs R5.4 with F = 1 and R6.2 first_output stop with M = 0.
    #[test]
    fn scheduler_order_and_first_output_stop() {
        let n = order_net();
        let frames = [1.0, 1.0, 1.0];
        let mut c = cfg(Scheduler::Fifo, 1);
        c.stop = StopMode::FirstOutput { extra_steps: 0 };
        // fifo: h0 (smallest id, enqueued first) goes first -> out0 at step 1.
        let r = run_dense(&n, &frames, 1, Some(1), &c);
        assert_eq!(r.first_output_step, vec![1]);
        assert_eq!(r.first_output_class, vec![0]);
        assert_eq!(r.dropped_spikes, 2);
        assert_eq!(r.forward_steps, 2);
        assert_eq!(r.output_counts, vec![1, 0]);
        assert_eq!(r.first_correct_step, vec![-1]);
        assert_eq!(r.queue_peak, 3);
        // R7.7: spikes in steps 0..=1 = 3 hidden + 1 output; synops integrated in
        // steps 0..=1 = 3 input deliveries * 3 + one hidden delivery * 2.
        assert_eq!(r.first_output_spikes, vec![4]);
        assert_eq!(r.first_output_synops, vec![11]);
        // momentum: h1 (v_pre 2.5) first -> out1, then h2 (1.5) and h0 (1.25).
        c.scheduler = Scheduler::Momentum { jitter: 0.0 };
        let r = run_dense(&n, &frames, 1, Some(1), &c);
        assert_eq!(r.first_output_class, vec![1]);
        assert_eq!(r.first_correct_step, vec![1]);
        assert_eq!(r.first_correct_spikes, vec![4]);
        assert_eq!(r.first_correct_synops, vec![11]);
        assert_eq!(r.output_counts, vec![0, 1]);
        assert_eq!(r.prediction, 1);
        // M = 1: one more group (h2: nothing reaches the outputs), then stop.
        c.stop = StopMode::FirstOutput { extra_steps: 1 };
        let r = run_dense(&n, &frames, 1, Some(0), &c);
        assert_eq!(r.forward_steps, 3);
        assert_eq!(r.dropped_spikes, 1);
        assert_eq!(r.output_counts, vec![0, 1]);
        assert_eq!(r.first_correct_step, vec![-1]);
        // Drain: everything is delivered.
        c.stop = StopMode::Drain;
        let r = run_dense(&n, &frames, 1, Some(0), &c);
        assert_eq!(r.forward_steps, 4);
        assert_eq!(r.dropped_spikes, 0);
        assert_eq!(r.output_counts, vec![1, 1]);
        assert_eq!(r.first_correct_step, vec![3]);
        assert_eq!(r.first_correct_spikes, vec![5]);
        assert_eq!(r.first_correct_synops, vec![9 + 6]);
        // Prediction tie -> smallest index.
        assert_eq!(r.prediction, 0);
        // R6.3 max_steps = 2 with drain: steps 0 and 1, then the rest is dropped.
        c.max_steps = Some(2);
        let r = run_dense(&n, &frames, 1, None, &c);
        assert_eq!(r.forward_steps, 2);
        assert_eq!(r.dropped_spikes, 2);
        // max_steps = 1: only the input step.
        c.max_steps = Some(1);
        let r = run_dense(&n, &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0], 2, None, &c);
        assert_eq!(r.timestep_forward_steps, vec![1, 1]);
        // t=0: h0, h1, h2 dropped; t=1: h0 fires again and is dropped.
        assert_eq!(r.dropped_spikes, 4);
        assert_eq!(r.spikes, vec![4, 0]);
        // Layered delivers all of population 1 in one group.
        let r = run_dense(&n, &frames, 1, None, &cfg(Scheduler::Layered, 1));
        assert_eq!(r.forward_steps, 2);
        assert_eq!(r.output_counts, vec![1, 1]);
    }

    /// R5.3 random: reproducible for a seed, a function of (seed, sample).
    #[test]
    fn random_scheduler_reproducible() {
        let n = order_net();
        let frames = [1.0, 1.0, 1.0];
        let mut c = cfg(Scheduler::Random, 1);
        c.stop = StopMode::FirstOutput { extra_steps: 0 };
        let mut classes = std::collections::BTreeSet::new();
        for seed in 0..40u64 {
            c.seed = seed;
            let a = run_dense(&n, &frames, 1, None, &c);
            let b = run_dense(&n, &frames, 1, None, &c);
            assert_eq!(a, b);
            // Which of h0/h1/h2 is delivered first follows the smallest key at k = 0.
            let keys: Vec<u32> = (0..3u32)
                .map(|j| crate::rng::hash(seed, 0, 0, 0, j, 0))
                .collect();
            let first = (0..3).min_by_key(|&j| (keys[j], j)).unwrap();
            if first == 2 {
                assert_eq!(a.first_output_step, vec![2]);
            } else {
                assert_eq!(a.first_output_step, vec![1]);
                assert_eq!(a.first_output_class, vec![first as i64]);
            }
            classes.insert(a.first_output_class[0]);
        }
        assert_eq!(classes.len(), 2);
    }

    /// R4.6: with refractory dropout a neuron may fire again while pending; its
    /// multiplicity grows and its delivery carries m * w but counts its fan-out once.
    #[test]
    fn multiplicity_under_dropout() {
        // pop1 A (2 neurons), pop2 B (1), pop3 C (1, output).
        let n = net(
            1,
            vec![pop(2, 0.5, 1.0), pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
            vec![
                dense(0, 1, vec![1.0, 1.0]),
                dense(0, 2, vec![1.0]),
                dense(1, 2, vec![1.0, 1.0]),
                dense(2, 3, vec![0.375]),
            ],
        );
        let p = 0.9;
        // Find a seed for which B (id 2) stays non-refractory at steps 0 and 1 and A's
        // neurons become refractory (p = 0 there anyway).
        let seed = (0u64..)
            .find(|&s| (0..3).all(|k| (uniform(s, 0, 0, k, 2, STREAM_DROPOUT) as f64) < p))
            .unwrap();
        let mut c = cfg(Scheduler::Fifo, 1);
        c.seed = seed;
        c.refractory_dropout = Some(vec![0.0, p, 0.0]);
        let r = run_dense(&n, &[1.0], 1, None, &c);
        // B fires at steps 0, 1, 2 (m = 3), delivered at step 3: C gets 3 * 0.375.
        assert_eq!(r.spikes, vec![2, 3, 1]);
        assert_eq!(r.synops_per_projection, vec![2, 1, 2, 1]);
        assert_eq!(r.output_counts, vec![1]);
        assert_eq!(r.forward_steps, 4);
        assert_eq!(r.queue_peak, 3);
        // Without dropout: B fires once, C gets 0.375 only.
        c.refractory_dropout = None;
        let r = run_dense(&n, &[1.0], 1, None, &c);
        assert_eq!(r.spikes, vec![2, 1, 0]);
        // Dropout values of the network spec are not used unless passed (R4.6).
        let mut spec = n.spec().clone();
        spec.populations[1].refractory_dropout = p;
        let n2 = Network::new(spec).unwrap();
        let r2 = run_dense(&n2, &[1.0], 1, None, &c);
        assert_eq!(r, r2);
        // Dropped spikes count multiplicities (R6.4): stop after step 2 with B at m=3.
        c.refractory_dropout = Some(vec![0.0, p, 0.0]);
        c.max_steps = Some(3);
        let r = run_dense(&n, &[1.0], 1, None, &c);
        assert_eq!(r.dropped_spikes, 3);
        assert_eq!(r.spikes, vec![2, 3, 0]);
    }

    /// Brute-force synapse list of a conv projection straight from R1.2.
    #[allow(clippy::too_many_arguments)]
    fn conv_brute(
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        kh: usize,
        kw: usize,
        s: (usize, usize),
        pd: (usize, usize),
        src: usize,
    ) -> Vec<(usize, usize)> {
        let oh = (h + 2 * pd.0 - kh) / s.0 + 1;
        let ow = (w + 2 * pd.1 - kw) / s.1 + 1;
        let (c, y, x) = (src / (h * w), (src % (h * w)) / w, src % w);
        let mut out = Vec::new();
        for o in 0..c_out {
            for i in 0..oh {
                for j in 0..ow {
                    let ky = y as i64 + pd.0 as i64 - (i * s.0) as i64;
                    let kx = x as i64 + pd.1 as i64 - (j * s.1) as i64;
                    if (0..kh as i64).contains(&ky) && (0..kw as i64).contains(&kx) {
                        let widx = ((o * c_in + c) * kh + ky as usize) * kw + kx as usize;
                        out.push(((o * oh + i) * ow + j, widx));
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn conv_fan_out_and_synapses_match_definition() {
        let geoms: [(
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            (usize, usize),
            (usize, usize),
        ); 6] = [
            (1, 4, 4, 2, 3, 3, (1, 1), (1, 1)),
            (2, 5, 4, 3, 3, 2, (2, 1), (1, 0)),
            (1, 6, 6, 1, 2, 2, (2, 2), (0, 0)),
            (2, 3, 3, 2, 3, 3, (1, 1), (2, 2)),
            (1, 7, 5, 2, 3, 3, (3, 2), (1, 1)),
            (3, 1, 5, 2, 1, 3, (1, 1), (0, 1)),
        ];
        for (c_in, h, w, c_out, kh, kw, s, pd) in geoms {
            let oh = (h + 2 * pd.0 - kh) / s.0 + 1;
            let ow = (w + 2 * pd.1 - kw) / s.1 + 1;
            let weight: Vec<f32> = (0..c_out * c_in * kh * kw).map(|i| i as f32).collect();
            let n = net(
                c_in * h * w,
                vec![pop(c_out * oh * ow, 1.0, 1.0)],
                vec![ProjectionSpec {
                    source: 0,
                    target: 1,
                    kind: ProjectionKind::Conv2d {
                        weight: weight.clone(),
                        c_in,
                        in_h: h,
                        in_w: w,
                        c_out,
                        kh,
                        kw,
                        stride: s,
                        padding: pd,
                    },
                }],
            );
            for src in 0..c_in * h * w {
                let want = conv_brute(c_in, h, w, c_out, kh, kw, s, pd, src);
                let mut got: Vec<(usize, usize)> = n
                    .synapses(0, src)
                    .into_iter()
                    .map(|(q, wv)| (q, wv as usize))
                    .collect();
                got.sort_unstable();
                assert_eq!(
                    got,
                    want,
                    "geom {:?} src {src}",
                    (c_in, h, w, c_out, kh, kw, s, pd)
                );
                assert_eq!(n.fan_out(0, src), vec![want.len() as u64]);
            }
        }
        // Padding edges: 3x3 kernel, pad 1, 4x4 input, 2 output channels.
        let n = net(
            16,
            vec![pop(32, 1.0, 1.0)],
            vec![ProjectionSpec {
                source: 0,
                target: 1,
                kind: ProjectionKind::Conv2d {
                    weight: vec![0.0; 18],
                    c_in: 1,
                    in_h: 4,
                    in_w: 4,
                    c_out: 2,
                    kh: 3,
                    kw: 3,
                    stride: (1, 1),
                    padding: (1, 1),
                },
            }],
        );
        assert_eq!(n.fan_out(0, 0), vec![8]); // corner: 2x2 positions x 2 channels
        assert_eq!(n.fan_out(0, 1), vec![12]); // edge
        assert_eq!(n.fan_out(0, 5), vec![18]); // interior
                                               // Zero weights are synapses (R1.3): synops count them.
        let mut frames = vec![0.0; 16];
        frames[0] = 1.0;
        frames[5] = 2.0;
        let r = run_dense(&n, &frames, 1, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.synops, 26);
        assert_eq!(r.input_events, 2);
    }

    #[test]
    fn pool_fan_out_and_weights() {
        // 2 channels of 4x4, 2x2 average pool stride 2 -> 2 x 2x2.
        let mk = |kind, k: usize, s: usize, out: usize| {
            net(
                32,
                vec![pop(2 * out * out, 0.5, 1.0)],
                vec![ProjectionSpec {
                    source: 0,
                    target: 1,
                    kind: ProjectionKind::Pool {
                        kind,
                        channels: 2,
                        in_h: 4,
                        in_w: 4,
                        kh: k,
                        kw: k,
                        stride: (s, s),
                    },
                }],
            )
        };
        let n = mk(PoolKind::Avg, 2, 2, 2);
        for src in 0..32 {
            assert_eq!(n.fan_out(0, src), vec![1]);
            let syn = n.synapses(0, src);
            let (c, y, x) = (src / 16, (src % 16) / 4, src % 4);
            assert_eq!(syn, vec![(c * 4 + (y / 2) * 2 + x / 2, 0.25)]);
        }
        // Average of a 2x2 block: 4 inputs of 0.75 -> 0.75 > 0.5 fires; 0.25*... .
        let mut frames = vec![0.0f32; 32];
        for i in [0, 1, 4, 5] {
            frames[i] = 0.75;
        }
        frames[16 + 10] = 1.0; // channel 1, (2,2): 0.25 <= 0.5, no spike
        let r = run_dense(&n, &frames, 1, None, &cfg(Scheduler::Fifo, 1));
        assert_eq!(r.timestep_output_counts, vec![1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.synops, 5);
        // Stride 1, kernel 2: 4x4 -> 3x3, fan-outs 1 (corner), 2 (edge), 4 (inner).
        let n = mk(PoolKind::Sum, 2, 1, 3);
        assert_eq!(n.fan_out(0, 0), vec![1]);
        assert_eq!(n.fan_out(0, 1), vec![2]);
        assert_eq!(n.fan_out(0, 5), vec![4]);
        assert_eq!(n.synapses(0, 5).iter().map(|s| s.1).sum::<f32>(), 4.0);
        // Kernel 3 stride 2 on 4x4 -> 1x1: the last row/column is not covered.
        let n = mk(PoolKind::Sum, 3, 2, 1);
        assert_eq!(n.fan_out(0, 3), vec![0]);
        assert_eq!(n.fan_out(0, 0), vec![1]);
        // Avg weight computed in float32: 1/9.
        let n = mk(PoolKind::Avg, 3, 1, 2);
        assert_eq!(n.synapses(0, 0)[0].1, 1.0f32 / 9.0f32);
    }

    /// Skip connection (R1.2): input -> h -> out and input -> out; currents add.
    #[test]
    fn skip_connection() {
        let n = net(
            2,
            vec![pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
            vec![
                dense(0, 1, vec![1.0, 0.0]),
                dense(1, 2, vec![0.5]),
                dense(0, 2, vec![0.0, 0.75]),
            ],
        );
        // Step 0: out gets 0.75 (no spike), h fires; step 1: out gets 0.5: 1.25 > 1.
        for s in ALL {
            let r = run_dense(&n, &[1.0, 1.0], 1, None, &cfg(s, 1));
            assert_eq!(r.spikes, vec![1, 1], "{s:?}");
            assert_eq!(r.first_output_step, vec![1]);
            assert_eq!(r.synops_per_projection, vec![2, 1, 2]);
            r.fan_out_check();
        }
        assert_eq!(n.fan_out(0, 0), vec![1, 1]);
        assert_eq!(n.fan_out(1, 0), vec![1]);
        assert_eq!(n.fan_out(2, 0), Vec::<u64>::new());
        assert_eq!(n.fan_out(3, 0), Vec::<u64>::new());
    }

    impl SampleResult {
        fn fan_out_check(&self) {
            assert_eq!(self.synops, self.synops_per_projection.iter().sum::<i64>());
            assert_eq!(self.spikes_total, self.spikes.iter().sum::<i64>());
            assert_eq!(
                self.forward_steps,
                self.timestep_forward_steps.iter().sum::<i64>()
            );
            assert_eq!(
                self.output_counts.iter().sum::<i64>(),
                self.timestep_output_counts.iter().sum::<i64>()
            );
        }
    }

    /// Dense and sparse forms give identical results (R2.2), repeated events summed.
    #[test]
    fn sparse_equals_dense() {
        let n = net(
            3,
            vec![pop(2, 1.0, 0.75), pop(2, 0.5, 0.75)],
            vec![
                dense(0, 1, vec![0.25, 0.5, -0.125, 0.375, 0.25, 0.5]),
                dense(1, 2, vec![1.0, -0.5, 0.25, 0.75]),
            ],
        );
        let t = [0u32, 2, 0, 1, 2, 0, 2];
        let index = [1u32, 0, 1, 2, 0, 2, 1];
        let value = [1.0f32, 2.0, 2.0, 3.0, 0.5, 1.0, 0.0];
        let mut frames = vec![0.0f32; 9];
        for e in 0..t.len() {
            frames[t[e] as usize * 3 + index[e] as usize] += value[e];
        }
        for s in ALL {
            let c = cfg(s, 1);
            let a = run_dense(&n, &frames, 3, Some(0), &c);
            let b = run_sample(
                &n,
                &SampleInput::Sparse {
                    t: &t,
                    index: &index,
                    value: &value,
                    timesteps: 3,
                },
                Some(0),
                0,
                &c,
            )
            .unwrap();
            assert_eq!(a, b);
            assert_eq!(a.input_events, 4);
        }
    }

    /// Tiny deterministic generator for the tests.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: u32) -> u32 {
            self.next() % n
        }
    }

    /// The channel-last storage of conv/pool targets (and the switch to integrating a
    /// population whole) is invisible: a network of conv, pool and dense projections
    /// gives the same spikes, readout, steps and queue as its dense expansion (every
    /// projection written as the dense matrix of its synapses, so every population is
    /// stored by id and integrated whole), for every scheduler, F and refractory
    /// dropout. Grid weights k/256 and small counts make every sum exact, so the order
    /// of the additions cannot matter. Covered: a channel-last conv target with
    /// per-neuron thresholds and a dense skip into it (rows permuted to slots), a
    /// channel-last pool target, and a population whose two conv projections disagree
    /// on the plane (stored by id, strided deliveries).
    #[test]
    fn storage_layout_matches_dense_expansion() {
        let mut g = Lcg(777);
        let mut grid = |n: usize, lo: i32, hi: i32| -> Vec<f32> {
            (0..n)
                .map(|_| (lo + g.below((hi - lo) as u32) as i32) as f32 / 256.0)
                .collect()
        };
        let th1: Vec<f32> = grid(400, 200, 400);
        let pops = vec![
            PopulationSpec {
                size: 400, // 4 x 10 x 10, channel-last
                threshold: th1,
                beta: vec![0.75],
                refractory_dropout: 0.5,
            },
            PopulationSpec {
                size: 100, // 4 x 5 x 5 (sum pool), channel-last
                threshold: vec![1.5],
                beta: vec![0.5],
                refractory_dropout: 0.5,
            },
            PopulationSpec {
                size: 50, // 2 x 5 x 5 and 1 x 10 x 5: planes disagree, stored by id
                threshold: vec![2.0],
                beta: vec![1.0],
                refractory_dropout: 0.0,
            },
            pop(4, 2.0, 0.75),
        ];
        let projs = vec![
            conv2d(
                0,
                1,
                grid(4 * 2 * 9, -60, 160),
                2,
                (10, 10),
                4,
                (3, 3),
                (1, 1),
                (1, 1),
            ),
            ProjectionSpec {
                source: 1,
                target: 2,
                kind: ProjectionKind::Pool {
                    kind: PoolKind::Sum,
                    channels: 4,
                    in_h: 10,
                    in_w: 10,
                    kh: 2,
                    kw: 2,
                    stride: (2, 2),
                },
            },
            conv2d(
                2,
                3,
                grid(2 * 4 * 9, -120, 140),
                4,
                (5, 5),
                2,
                (3, 3),
                (1, 1),
                (1, 1),
            ),
            conv2d(
                0,
                3,
                grid(2 * 2, -40, 120),
                2,
                (10, 10),
                1,
                (1, 2),
                (1, 2),
                (0, 0),
            ),
            dense(0, 2, grid(100 * 200, -60, 100)),
            dense(3, 4, grid(4 * 50, -150, 160)),
        ];
        let spec = NetworkSpec {
            input_size: 200,
            populations: pops,
            projections: projs,
        };
        let conv_net = Network::new(spec.clone()).expect("valid network");
        // The dense expansion, built from the definition of each projection (R1.2,
        // `conv_brute`), not from the engine's tables; a sum pool is a conv whose kernel
        // is 1 from a channel to itself.
        let mut dense_spec = spec.clone();
        for (pi, proj) in spec.projections.iter().enumerate() {
            let n_s = if proj.source == 0 {
                spec.input_size
            } else {
                spec.populations[proj.source - 1].size
            };
            let n_d = spec.populations[proj.target - 1].size;
            let mut w = vec![0.0f32; n_d * n_s];
            for j in 0..n_s {
                let taps: Vec<(usize, f32)> = match &proj.kind {
                    ProjectionKind::Dense { weight } => {
                        (0..n_d).map(|q| (q, weight[q * n_s + j])).collect()
                    }
                    ProjectionKind::Conv2d {
                        weight,
                        c_in,
                        in_h,
                        in_w,
                        c_out,
                        kh,
                        kw,
                        stride,
                        padding,
                    } => conv_brute(*c_in, *in_h, *in_w, *c_out, *kh, *kw, *stride, *padding, j)
                        .into_iter()
                        .map(|(q, wi)| (q, weight[wi]))
                        .collect(),
                    ProjectionKind::Pool {
                        kind,
                        channels,
                        in_h,
                        in_w,
                        kh,
                        kw,
                        stride,
                    } => {
                        assert_eq!(*kind, PoolKind::Sum);
                        let c = *channels;
                        conv_brute(c, *in_h, *in_w, c, *kh, *kw, *stride, (0, 0), j)
                            .into_iter()
                            .filter(|&(_, wi)| (wi / (kh * kw)) % (c + 1) == 0)
                            .map(|(q, _)| (q, 1.0))
                            .collect()
                    }
                };
                for (q, x) in taps {
                    w[q * n_s + j] += x;
                }
            }
            dense_spec.projections[pi].kind = ProjectionKind::Dense { weight: w };
        }
        let dense_net = Network::new(dense_spec).expect("valid network");
        let timesteps = 4;
        for sample in 0..3 {
            // Sparse counts: about 3 % (sample 0), 15 % and 40 % of the inputs.
            let pct = [3, 15, 40][sample];
            let frames: Vec<f32> = (0..timesteps * 200)
                .map(|_| {
                    if g.below(100) < pct {
                        1.0 + g.below(2) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            for scheduler in ALL {
                for f in [1, 3, 64] {
                    for dropout in [None, Some(vec![0.5, 0.5, 0.0, 0.0])] {
                        let mut config = cfg(scheduler, f);
                        config.refractory_dropout = dropout.clone();
                        config.seed = 5;
                        let a = run_dense(&conv_net, &frames, timesteps, Some(1), &config);
                        let b = run_dense(&dense_net, &frames, timesteps, Some(1), &config);
                        let what = format!("sample {sample} {scheduler:?} F={f} {dropout:?}");
                        assert_eq!(a.spikes, b.spikes, "{what}");
                        assert_eq!(a.output_counts, b.output_counts, "{what}");
                        assert_eq!(a.timestep_output_counts, b.timestep_output_counts, "{what}");
                        assert_eq!(a.timestep_forward_steps, b.timestep_forward_steps, "{what}");
                        assert_eq!(a.queue_peak, b.queue_peak, "{what}");
                        assert_eq!(a.first_output_step, b.first_output_step, "{what}");
                        assert_eq!(a.first_correct_step, b.first_correct_step, "{what}");
                        assert_eq!(a.first_output_spikes, b.first_output_spikes, "{what}");
                        assert!(a.spikes_total > 0, "{what}: the network is active");
                    }
                }
            }
        }
    }

    /// Plain layer-synchronous LIF (R4.5): per timestep and layer,
    /// U = beta*V + W s; s = U > theta; V = U (1 - s). Returns spikes per layer and the
    /// output counts.
    fn layer_sync(
        sizes: &[usize],
        weights: &[Vec<f32>],
        th: &[f32],
        beta: &[f32],
        frames: &[f32],
        timesteps: usize,
    ) -> (Vec<i64>, Vec<i64>) {
        let nl = sizes.len() - 1;
        let mut v: Vec<Vec<f32>> = sizes[1..].iter().map(|&s| vec![0.0; s]).collect();
        let mut spikes = vec![0i64; nl];
        let mut out = vec![0i64; sizes[nl]];
        for t in 0..timesteps {
            let mut s_prev: Vec<f32> = frames[t * sizes[0]..(t + 1) * sizes[0]].to_vec();
            for l in 0..nl {
                let (n_s, n_d) = (sizes[l], sizes[l + 1]);
                let mut s_new = vec![0.0f32; n_d];
                for q in 0..n_d {
                    let mut i = 0.0f32;
                    for j in 0..n_s {
                        i += s_prev[j] * weights[l][q * n_s + j];
                    }
                    let u = beta[l] * v[l][q] + i;
                    if u > th[l] {
                        s_new[q] = 1.0;
                        v[l][q] = 0.0;
                        spikes[l] += 1;
                        if l == nl - 1 {
                            out[q] += 1;
                        }
                    } else {
                        v[l][q] = u;
                    }
                }
                s_prev = s_new;
            }
        }
        (spikes, out)
    }

    /// R4.5: layered (and any scheduler with F >= widest population, no skips, no
    /// dropout) equals the layer-synchronous network, on grid weights k/256.
    #[test]
    fn layered_equivalence_random_dense_networks() {
        let mut g = Lcg(12345);
        for case in 0..60 {
            let nl = 1 + g.below(3) as usize;
            let mut sizes = vec![1 + g.below(6) as usize];
            for _ in 0..nl {
                sizes.push(1 + g.below(7) as usize);
            }
            let weights: Vec<Vec<f32>> = (0..nl)
                .map(|l| {
                    (0..sizes[l] * sizes[l + 1])
                        .map(|_| (g.below(512) as i32 - 192) as f32 / 256.0)
                        .collect()
                })
                .collect();
            let th: Vec<f32> = (0..nl)
                .map(|_| (64 + g.below(256)) as f32 / 256.0)
                .collect();
            let beta: Vec<f32> = (0..nl)
                .map(|_| [1.0, 0.5, 0.75, 0.0][g.below(4) as usize])
                .collect();
            let timesteps = 1 + g.below(6) as usize;
            let frames: Vec<f32> = (0..timesteps * sizes[0])
                .map(|_| [0.0, 0.0, 1.0, 2.0, 3.0][g.below(5) as usize])
                .collect();
            let n = net(
                sizes[0],
                (0..nl).map(|l| pop(sizes[l + 1], th[l], beta[l])).collect(),
                (0..nl)
                    .map(|l| dense(l, l + 1, weights[l].clone()))
                    .collect(),
            );
            let (want_spikes, want_out) =
                layer_sync(&sizes, &weights, &th, &beta, &frames, timesteps);
            let widest = *sizes[1..].iter().max().unwrap();
            for s in ALL {
                let f = if s == Scheduler::Layered { 1 } else { widest };
                for seed in [0u64, 99] {
                    let mut c = cfg(s, f);
                    c.seed = seed;
                    let r = run_dense(&n, &frames, timesteps, None, &c);
                    assert_eq!(r.spikes, want_spikes, "case {case} {s:?}");
                    assert_eq!(r.output_counts, want_out, "case {case} {s:?}");
                    r.fan_out_check();
                    assert!(r
                        .timestep_forward_steps
                        .iter()
                        .all(|&k| k >= 1 && k <= nl as i64 + 1));
                }
            }
        }
    }

    fn expect_model(spec: NetworkSpec, field_part: &str) {
        match Network::new(spec) {
            Err(EngineError::Model {
                field, location, ..
            }) => {
                assert!(
                    field.contains(field_part),
                    "field {field} at {location}, want {field_part}"
                )
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted an invalid network, want {field_part}"),
        }
    }

    #[test]
    fn invalid_networks() {
        let good = NetworkSpec {
            input_size: 4,
            populations: vec![pop(2, 1.0, 0.9), pop(3, 1.0, 0.9)],
            projections: vec![dense(0, 1, vec![0.0; 8]), dense(1, 2, vec![0.0; 6])],
        };
        assert!(Network::new(good.clone()).is_ok());
        let mut s = good.clone();
        s.input_size = 0;
        expect_model(s, "size");
        let mut s = good.clone();
        s.populations.clear();
        s.projections.clear();
        expect_model(s, "populations");
        let mut s = good.clone();
        s.populations[0].size = 0;
        expect_model(s, "size");
        let mut s = good.clone();
        s.populations[1].threshold = vec![1.0, 1.0];
        expect_model(s, "threshold length");
        for th in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            let mut s = good.clone();
            s.populations[1].threshold = vec![1.0, th, 1.0];
            expect_model(s, "threshold[1]");
        }
        for b in [-0.1, 1.5, f32::NAN] {
            let mut s = good.clone();
            s.populations[0].beta = vec![b];
            expect_model(s, "beta[0]");
        }
        for p in [1.0, -0.5, f64::NAN] {
            let mut s = good.clone();
            s.populations[0].refractory_dropout = p;
            expect_model(s, "refractory_dropout");
        }
        let mut s = good.clone();
        s.projections[1] = dense(2, 1, vec![0.0; 6]);
        expect_model(s, "source");
        let mut s = good.clone();
        s.projections[1] = dense(1, 1, vec![0.0; 4]);
        expect_model(s, "source");
        let mut s = good.clone();
        s.projections[1] = dense(1, 3, vec![0.0; 6]);
        expect_model(s, "target");
        let mut s = good.clone();
        s.projections[1] = dense(0, 0, vec![]);
        expect_model(s, "target");
        let mut s = good.clone();
        s.projections[0] = dense(0, 1, vec![0.0; 7]);
        expect_model(s, "weight length");
        let mut s = good.clone();
        s.projections[0] = dense(0, 1, vec![0.0, 1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0]);
        expect_model(s, "weight[2]");
        let conv = |c_in, in_h, in_w, c_out, kh, kw, stride, padding, wl| {
            conv2d(
                0,
                1,
                vec![0.5; wl],
                c_in,
                (in_h, in_w),
                c_out,
                (kh, kw),
                stride,
                padding,
            )
        };
        let conv_net = |p: ProjectionSpec, size: usize| NetworkSpec {
            input_size: 16,
            populations: vec![pop(size, 1.0, 1.0)],
            projections: vec![p],
        };
        assert!(Network::new(conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 18), 8)).is_ok());
        expect_model(conv_net(conv(1, 4, 4, 2, 0, 3, (1, 1), (0, 0), 0), 8), "kh");
        expect_model(
            conv_net(conv(1, 4, 4, 2, 3, 3, (0, 1), (0, 0), 18), 8),
            "stride[0]",
        );
        expect_model(
            conv_net(conv(1, 4, 4, 2, 5, 3, (1, 1), (0, 0), 30), 8),
            "in_h",
        );
        expect_model(
            conv_net(conv(2, 4, 4, 2, 3, 3, (1, 1), (0, 0), 36), 8),
            "c_in * in_h * in_w",
        );
        expect_model(
            conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 18), 9),
            "c_out * oh * ow",
        );
        expect_model(
            conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 17), 8),
            "weight length",
        );
        expect_model(
            conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (usize::MAX, 0), 18), 8),
            "in_h",
        );
        expect_model(
            conv_net(
                conv(usize::MAX, usize::MAX, 4, 2, 3, 3, (1, 1), (0, 0), 18),
                8,
            ),
            "in_h * in_w",
        );
        let pool = |ch, h, w, k, s| ProjectionSpec {
            source: 0,
            target: 1,
            kind: ProjectionKind::Pool {
                kind: PoolKind::Avg,
                channels: ch,
                in_h: h,
                in_w: w,
                kh: k,
                kw: k,
                stride: (s, s),
            },
        };
        assert!(Network::new(conv_net(pool(1, 4, 4, 2, 2), 4)).is_ok());
        expect_model(conv_net(pool(1, 4, 4, 2, 2), 5), "channels * oh * ow");
        expect_model(conv_net(pool(1, 4, 4, 5, 1), 1), "in_h");
        expect_model(conv_net(pool(1, 4, 4, 0, 1), 1), "kh");
        expect_model(conv_net(pool(1, 4, 4, 2, 0), 4), "stride[0]");
        expect_model(conv_net(pool(2, 4, 4, 2, 2), 8), "channels * in_h * in_w");
        // Location strings.
        match Network::new(conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 17), 8)) {
            Err(EngineError::Model { location, .. }) => {
                assert_eq!(location, "projection 0 (conv2d)")
            }
            other => panic!("{other:?}"),
        }
        let mut s = good.clone();
        s.populations[1].beta = vec![2.0];
        match Network::new(s) {
            Err(EngineError::Model {
                location, value, ..
            }) => {
                assert_eq!(location, "population 2");
                assert_eq!(value, "2");
            }
            other => panic!("{other:?}"),
        }
        // Too many neurons for u32 ids.
        let s = NetworkSpec {
            input_size: 1,
            populations: vec![
                PopulationSpec {
                    size: u32::MAX as usize,
                    threshold: vec![1.0],
                    beta: vec![1.0],
                    refractory_dropout: 0.0,
                },
                pop(usize::MAX, 1.0, 1.0),
            ],
            projections: vec![],
        };
        assert!(matches!(Network::new(s), Err(EngineError::Overflow { .. })));
    }

    #[test]
    fn invalid_configs_and_inputs() {
        let n = net(
            2,
            vec![pop(2, 1.0, 1.0), pop(2, 1.0, 1.0)],
            vec![dense(0, 1, vec![1.0; 4]), dense(1, 2, vec![1.0; 4])],
        );
        let frames = [1.0f32, 0.0];
        let input = SampleInput::Dense {
            frames: &frames,
            timesteps: 1,
        };
        let ok = cfg(Scheduler::Fifo, 1);
        assert!(run_sample(&n, &input, None, 0, &ok).is_ok());
        let param = |c: &RunConfig, field: &str| match run_sample(&n, &input, None, 0, c) {
            Err(EngineError::Parameter { field: f, .. }) => assert!(f.contains(field), "{f}"),
            other => panic!("{other:?}"),
        };
        param(&cfg(Scheduler::Fifo, 0), "forward_group_size");
        param(&cfg(Scheduler::Layered, 0), "forward_group_size");
        let mut c = ok.clone();
        c.max_steps = Some(0);
        param(&c, "max_steps");
        for j in [-1.0, f32::NAN, f32::INFINITY] {
            param(&cfg(Scheduler::Momentum { jitter: j }, 1), "jitter");
        }
        let mut c = ok.clone();
        c.refractory_dropout = Some(vec![0.1]);
        param(&c, "refractory_dropout");
        c.refractory_dropout = Some(vec![0.1, 1.0]);
        param(&c, "refractory_dropout[1]");
        c.refractory_dropout = Some(vec![f64::NAN, 0.0]);
        param(&c, "refractory_dropout[0]");
        match run_sample(&n, &input, None, 1 << 32, &ok) {
            Err(EngineError::Parameter { field, .. }) => assert_eq!(field, "sample_ids"),
            other => panic!("{other:?}"),
        }
        let bad_input = |inp: SampleInput, label: Option<usize>, field: &str| match run_sample(
            &n, &inp, label, 5, &ok,
        ) {
            Err(EngineError::Input {
                location, field: f, ..
            }) => {
                assert_eq!(location, "sample 5");
                assert_eq!(f, field);
            }
            other => panic!("{other:?}"),
        };
        bad_input(input, Some(2), "labels");
        bad_input(
            SampleInput::Dense {
                frames: &frames,
                timesteps: 0,
            },
            None,
            "timesteps",
        );
        bad_input(
            SampleInput::Dense {
                frames: &frames,
                timesteps: 2,
            },
            None,
            "inputs",
        );
        for x in [-1.0, f32::NAN, f32::INFINITY] {
            bad_input(
                SampleInput::Dense {
                    frames: &[0.0, x],
                    timesteps: 1,
                },
                None,
                "inputs",
            );
        }
        let sp =
            |t: &'static [u32], i: &'static [u32], v: &'static [f32], ts| SampleInput::Sparse {
                t,
                index: i,
                value: v,
                timesteps: ts,
            };
        bad_input(sp(&[0], &[0], &[1.0], 0), None, "timesteps");
        bad_input(sp(&[1], &[0], &[1.0], 1), None, "inputs");
        bad_input(sp(&[0], &[2], &[1.0], 1), None, "inputs");
        bad_input(sp(&[0], &[0], &[-1.0], 1), None, "inputs");
        bad_input(sp(&[0], &[0], &[f32::NAN], 1), None, "inputs");
        bad_input(sp(&[0, 0], &[0], &[1.0], 1), None, "inputs");
        bad_input(
            sp(&[0, 0], &[1, 1], &[f32::MAX, f32::MAX], 1),
            None,
            "inputs",
        );
        bad_input(sp(&[], &[], &[], usize::MAX), None, "timesteps");
        // Batch validation.
        let cancel = AtomicBool::new(false);
        let inputs = [input, input];
        assert!(matches!(
            run_batch(&n, &inputs, None, &[0], &ok, &cancel),
            Err(EngineError::Parameter { .. })
        ));
        assert!(matches!(
            run_batch(&n, &inputs, Some(&[None]), &[0, 1], &ok, &cancel),
            Err(EngineError::Parameter { .. })
        ));
        assert!(matches!(
            run_batch(&n, &inputs, None, &[0, u64::MAX], &ok, &cancel),
            Err(EngineError::Parameter { .. })
        ));
        match run_batch(&n, &inputs, Some(&[None, Some(7)]), &[0, 1], &ok, &cancel) {
            Err(EngineError::Input { location, .. }) => assert_eq!(location, "sample 1"),
            other => panic!("{other:?}"),
        }
        let r = run_batch(&n, &inputs, Some(&[Some(0), None]), &[3, 4], &ok, &cancel).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], run_sample(&n, &input, Some(0), 3, &ok).unwrap());
        assert!(run_batch(&n, &[], None, &[], &ok, &cancel)
            .unwrap()
            .is_empty());
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(
            run_batch(&n, &inputs, None, &[0, 1], &ok, &cancel),
            Err(EngineError::Cancelled)
        );
    }

    /// The sample id enters the random function (R5.5): random and dropout results
    /// differ between ids and agree between run_sample and run_batch.
    #[test]
    fn sample_id_and_batch_agree() {
        let mut g = Lcg(7);
        let sizes = [6usize, 8, 8, 3];
        let projs: Vec<ProjectionSpec> = (0..3)
            .map(|l| {
                dense(
                    l,
                    l + 1,
                    (0..sizes[l] * sizes[l + 1])
                        .map(|_| (g.below(400) as f32 - 100.0) / 256.0)
                        .collect(),
                )
            })
            .collect();
        let n = net(
            6,
            (1..4).map(|l| pop(sizes[l], 0.5, 0.875)).collect(),
            projs,
        );
        let frames: Vec<Vec<f32>> = (0..6)
            .map(|_| (0..6 * 5).map(|_| g.below(3) as f32).collect())
            .collect();
        let inputs: Vec<SampleInput> = frames
            .iter()
            .map(|f| SampleInput::Dense {
                frames: f,
                timesteps: 5,
            })
            .collect();
        let ids: Vec<u64> = (0..6).map(|i| 1000 + i).collect();
        let cancel = AtomicBool::new(false);
        for s in ALL {
            let mut c = cfg(s, 2);
            c.seed = 5;
            c.refractory_dropout = Some(vec![0.25, 0.25, 0.0]);
            let batch = run_batch(&n, &inputs, None, &ids, &c, &cancel).unwrap();
            for (i, r) in batch.iter().enumerate() {
                assert_eq!(*r, run_sample(&n, &inputs[i], None, ids[i], &c).unwrap());
                r.fan_out_check();
            }
        }
    }
}
