//! The state of one sample and its reusable buffers ([`Workspace`]: membranes,
//! currents, refractory flags, `v_pre`, debts, carried currents and due populations,
//! the spikes of a forward step, the pending set), and the touch bookkeeping of a forward step ([`Touch`]): which populations and
//! pixels received current, and the dense row kept for the integrate pass
//! ([`Deferred`]).

use super::pending_inputs::PendingInputs;
use crate::alloc;
use crate::error::{EngineError, Location};
use crate::network::Network;
use crate::scheduler::PendingSet;

/// Touched-neuron bookkeeping of one forward step.
#[derive(Debug)]
pub(super) struct Touch {
    /// Per slot: already in its population's `lists` entry (only the slot of channel 0
    /// of a pixel is used: it stands for all channels of that pixel).
    pub(super) neuron: Vec<bool>,
    /// Per non-input population: channels of its storage layout (`Network::layout_channels`).
    pub(super) channels: Vec<usize>,
    /// Per non-input population: the number of touched pixels at which it is integrated
    /// whole instead ([`FULL_FRACTION`]).
    pub(super) full_at: Vec<usize>,
    /// Per non-input population: in `pops`.
    pub(super) pop_touched: Vec<bool>,
    /// Per non-input population: received a dense delivery (integrate it whole).
    pub(super) pop_full: Vec<bool>,
    /// Touched populations of this step.
    pub(super) pops: Vec<usize>,
    /// Per non-input population: pixels touched by conv/pool deliveries, as the slot of
    /// their channel-0 neuron. Integration visits every channel of a listed pixel: a
    /// superset of the touched neurons, which is exact because an untouched neuron has
    /// no current and cannot cross its threshold (its membrane only leaked towards 0).
    pub(super) lists: Vec<Vec<u32>>,
    /// Per non-input population: the latest dense rows delivered to it in this step
    /// (in delivery order), not yet added to `cur`: up to [`DEFERRED`] in a network
    /// whose projections are all dense (`Network::all_dense`), else one. A full list is
    /// added in one pass over the currents ([`crate::kernels::add_rows`]: each neuron
    /// sums the rows in order, the same float operations as adding them one by one); the
    /// rows kept at the end of a step are added by the integrate pass itself (`cur[q] +
    /// s_0 * w_0[q] + ...`; a settling population's pass takes the last, the others are
    /// added just before), which saves passes over the population. A conv or pool
    /// delivery into the population adds them first (`deliver::flush_deferred`).
    pub(super) deferred: Vec<DeferredRows>,
}

/// How many dense rows a population of an all-dense network keeps before adding them
/// (see `Touch::deferred`; `engine::fire::integrate_full` sums at most 4).
pub(super) const DEFERRED: usize = 4;

/// A dense row delivery kept for the integrate pass: `cur[q] += s * wt[local * n + q]`
/// of projection `proj`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Deferred {
    pub(super) proj: usize,
    pub(super) local: usize,
    pub(super) s: f32,
}

/// The dense rows kept for one population: `rows[..len]`, in delivery order.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DeferredRows {
    pub(super) rows: [Deferred; DEFERRED],
    pub(super) len: usize,
}

impl Touch {
    /// Marks population `p` touched; returns whether it is full already.
    #[inline(always)]
    pub(super) fn pop(&mut self, p: usize) -> bool {
        if !self.pop_touched[p] {
            self.pop_touched[p] = true;
            self.pops.push(p);
        }
        self.pop_full[p]
    }

    /// Marks the pixel whose channel-0 neuron is in slot `q0` touched; past `full_at`
    /// pixels the population is marked full (later deliveries skip this bookkeeping).
    #[inline(always)]
    pub(super) fn pixel(&mut self, p: usize, q0: usize) {
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

/// The currents `I` and, with `CARRY` (the network has recurrent projections), the
/// carried currents `C` of the workspace buffer `cur` of `n` slots (`Workspace::cur`);
/// an empty `C` without.
#[inline(always)]
pub(super) fn split_carry<const CARRY: bool>(
    cur: &mut [f32],
    n: usize,
) -> (&mut [f32], &mut [f32]) {
    if CARRY {
        cur.split_at_mut(n)
    } else {
        (cur, &mut [])
    }
}

/// [`split_carry`] for the integrate pass of a network with settling populations
/// (`SETTLING`): the currents `I`, the carried currents `C` (empty unless `CARRY`) and
/// the synaptic currents `S` of R4.12 (slots after `I` and, with recurrent projections,
/// `C`; empty unless the network has a synaptic population). Without `SETTLING`, as
/// [`split_carry`] without `CARRY`.
#[inline(always)]
pub(super) fn split_state<const SETTLING: bool, const CARRY: bool>(
    cur: &mut [f32],
    n: usize,
    recurrent: bool,
) -> (&mut [f32], &mut [f32], &mut [f32]) {
    if !SETTLING {
        return (cur, &mut [], &mut []);
    }
    let (cur, rest) = cur.split_at_mut(n);
    let (carry, syn) = rest.split_at_mut(if recurrent { n } else { 0 });
    (cur, if CARRY { carry } else { &mut [] }, syn)
}

/// The synaptic currents `S` of R4.12 in the workspace buffer `cur` of a network of `n`
/// neurons (empty unless the network has a synaptic population; see [`split_state`]).
#[inline(always)]
pub(super) fn synaptic_currents(cur: &[f32], n: usize, recurrent: bool) -> &[f32] {
    &cur[if recurrent { 2 * n } else { n }..]
}

/// A population with more than `1 / FULL_FRACTION` of its pixels touched in a forward
/// step is integrated whole: one vector pass over it is cheaper than visiting that many
/// pixels one by one (and the bookkeeping of further touches is skipped). The result is
/// the same (an untouched neuron has no current and cannot fire).
const FULL_FRACTION: usize = 8;

/// Reusable per-sample state (see the documentation of `crate::engine`).
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(super) v: Vec<f32>,
    /// Per slot the current `I` of the forward step; in a network with recurrent
    /// projections followed by (slots `n..2n`, [`split_carry`]) the carried
    /// current `C` of R3.1 and R4.9, which `layered` adds to when a recurrent
    /// projection delivers and a recurrent target takes when it settles; in a network
    /// with a synaptic population followed by the synaptic currents `S` of R3.1 and
    /// R4.12 ([`split_state`]). (One buffer, not fields of their own: a version-1
    /// workspace keeps its layout, which the event loop's code is sensitive to.)
    pub(super) cur: Vec<f32>,
    pub(super) v_pre: Vec<f32>,
    pub(super) refractory: Vec<bool>,
    /// R3.1, R4.8: per slot, the neuron owes its threshold (`subtract_delayed`). Empty
    /// unless the network has settling populations.
    pub(super) debt: Vec<bool>,
    /// R4.7: per non-input population, it is due (settles at its next delivery, or in a
    /// settle-only step). Always false for a population that is not settling.
    pub(super) due: Vec<bool>,
    /// The number of `due` populations.
    pub(super) n_due: usize,
    pub(super) touch: Touch,
    pub(super) fired: Vec<u32>,
    /// `(population, start, end)`: the range of `fired` of each population that fired.
    pub(super) fired_pops: Vec<(usize, usize, usize)>,
    /// One bit per neuron id, all clear between uses (see `fire::sort_ids`).
    pub(super) fired_bits: Vec<u64>,
    pub(super) group: Vec<(u32, u32)>,
    pub(super) pending: PendingSet,
    /// The non-zero inputs of the current dense frame, and their values.
    pub(super) nonzero: Vec<u32>,
    pub(super) nonzero_values: Vec<f32>,
    /// R8.3: the fast path saw a non-finite membrane (see `event_loop::run_prepared`).
    pub(super) non_finite: bool,
    /// R7.10: the events of the sample, recorded only when `Some` (see `trace.rs`).
    /// (With the membranes at the end of every timestep for the training tape,
    /// `tape.rs`.)
    pub(super) trace: Option<super::trace::TraceBuf>,
    /// R4.13: the pending input entries of non-prioritised input (unused otherwise).
    pub(super) inputs: PendingInputs,
}

impl Workspace {
    /// The buffers of one worker, sized by `net` (fallible: a network too large for
    /// memory is an [`EngineError::Memory`], not an abort). The input buffers grow at the
    /// first dense frame (see `nonzero`), so that a huge input population fed sparse
    /// events needs no buffer of its size.
    pub(crate) fn new(net: &Network) -> Result<Workspace, EngineError> {
        let n = net.n_neurons();
        let p = net.n_populations();
        let at = &Location::Network;
        let lists = (0..p)
            .map(|i| {
                let size = net.pop_offset[i + 1] - net.pop_offset[i];
                alloc::with_capacity(size, at, "touched-neuron lists")
            })
            .collect::<Result<_, _>>()?;
        Ok(Workspace {
            v: alloc::filled(n, 0.0, at, "membranes")?,
            cur: alloc::filled(
                n * (1 + usize::from(net.any_recurrent) + usize::from(net.any_synaptic)),
                0.0,
                at,
                "currents",
            )?,
            v_pre: alloc::filled(n, 0.0, at, "spike membranes (v_pre)")?,
            refractory: alloc::filled(n, false, at, "refractory flags")?,
            debt: alloc::filled(
                if net.any_settling { n } else { 0 },
                false,
                at,
                "reset debts",
            )?,
            due: vec![false; p],
            n_due: 0,
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
                deferred: vec![DeferredRows::default(); p],
            },
            fired: alloc::with_capacity(n, at, "spike list")?,
            fired_pops: Vec::with_capacity(p),
            fired_bits: alloc::filled(n.div_ceil(64), 0, at, "spike bitmap")?,
            group: Vec::new(),
            pending: PendingSet::with_mult(alloc::filled(n, 0, at, "pending set")?, p),
            nonzero: Vec::new(),
            nonzero_values: Vec::new(),
            non_finite: false,
            trace: None,
            inputs: PendingInputs::default(),
        })
    }

    /// Marks the sample for the checked re-run of R8.3 (see `event_loop::run_prepared`); the
    /// error returned with it is replaced by that run's.
    #[cold]
    pub(super) fn saw_non_finite(&mut self, loc: &Location) -> EngineError {
        self.non_finite = true;
        EngineError::overflow(loc, "membrane")
    }

    /// R3.3: the state at the start of a sample (also repairs a workspace left dirty by
    /// an error).
    pub(super) fn reset(&mut self) {
        self.v.fill(0.0);
        self.cur.fill(0.0);
        self.v_pre.fill(0.0);
        self.refractory.fill(false);
        self.debt.fill(false);
        self.due.fill(false);
        self.n_due = 0;
        self.touch.neuron.fill(false);
        self.touch.pop_touched.fill(false);
        self.touch.pop_full.fill(false);
        self.touch.pops.clear();
        for l in &mut self.touch.lists {
            l.clear();
        }
        self.touch.deferred.fill(DeferredRows::default());
        self.fired.clear();
        self.fired_pops.clear();
        self.fired_bits.fill(0);
        self.group.clear();
        self.pending.drop_all();
        self.inputs.drop_all();
    }
}
