//! Schedulers (R5.1-R5.4) and the pending set (R3.2).
//!
//! The pending set (`PendingSet`) is a table of multiplicities shared by every
//! scheduler (per neuron its multiplicity `m >= 1`, 0 = not pending) plus a queue that
//! orders the pending neurons, one variant per scheduler (`Queue`):
//! - `layered` (R5.1): one pending list per population; a group is the whole list of
//!   the lowest population present (here).
//! - `fifo` (R5.2): a queue in order of first enqueue (= sequence number); a neuron
//!   re-enqueued while pending only gets its multiplicity raised and keeps its place
//!   (here).
//! - `momentum` without jitter (R5.4): a 4-ary max-heap of `(v_pre bits, !id)`
//!   (`heap.rs`).
//! - `random` (R5.3) and `momentum` with jitter (R5.4): keys drawn afresh at every
//!   forward step over the pending list (`keyed.rs`).
//!
//! The queue is an enum matched once per call (no `dyn`), and its buffers are kept
//! across timesteps and samples: a workspace runs one batch, whose samples share one
//! scheduler, so the variant is built once per batch.

mod heap;
mod keyed;

use std::collections::VecDeque;

use crate::error::EngineError;
use heap::MomentumHeap;
pub(crate) use keyed::kth_smallest;
use keyed::{KeyOrder, Keyed};

/// Scheduler that picks which pending spikes are delivered at each forward step (R5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scheduler {
    /// R5.1: all pending neurons of the lowest population present; `F` is ignored.
    Layered,
    /// R5.2: the `F` pending neurons with the smallest sequence numbers.
    Fifo,
    /// R5.3: the `F` pending neurons with the smallest fresh random keys
    /// `h(seed, sample, t, k, j, 0)`, ties to the smaller id.
    Random,
    /// R5.4: the `F` pending neurons with the largest `v_pre[j] + jitter * u(.., j, 2)`
    /// (float32), ties to the smaller id. `jitter` must be finite and >= 0.
    Momentum {
        /// Jitter amplitude (0 = plain momentum).
        jitter: f32,
    },
}

impl Scheduler {
    /// Name of the scheduler: "layered", "fifo", "random" or "momentum".
    pub fn name(&self) -> &'static str {
        match self {
            Scheduler::Layered => "layered",
            Scheduler::Fifo => "fifo",
            Scheduler::Random => "random",
            Scheduler::Momentum { .. } => "momentum",
        }
    }

    /// This scheduler with jitter amplitude `jitter` if it is `momentum` (R5.4);
    /// unchanged otherwise.
    pub fn with_jitter(self, jitter: f32) -> Scheduler {
        match self {
            Scheduler::Momentum { .. } => Scheduler::Momentum { jitter },
            other => other,
        }
    }
}

impl std::str::FromStr for Scheduler {
    type Err = EngineError;

    /// Parses a scheduler name: "layered", "fifo", "random" or "momentum" (with jitter
    /// 0; see [`Scheduler::with_jitter`]). The one place where names are parsed.
    fn from_str(name: &str) -> Result<Scheduler, EngineError> {
        match name {
            "layered" => Ok(Scheduler::Layered),
            "fifo" => Ok(Scheduler::Fifo),
            "random" => Ok(Scheduler::Random),
            "momentum" => Ok(Scheduler::Momentum { jitter: 0.0 }),
            other => Err(EngineError::Parameter {
                field: "scheduler".to_string(),
                value: other.to_string(),
                reason: "must be layered, fifo, random or momentum".to_string(),
            }),
        }
    }
}

/// Where a selection happens: the arguments of the random function (R5.5) shared by all
/// pending neurons of one selection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelectCtx {
    pub seed: u64,
    pub sample: u32,
    pub t: u32,
    pub k: u32,
}

/// The multiplicities of the pending set (R3.2), shared by every scheduler's queue.
#[derive(Debug)]
struct Multiplicities {
    /// Multiplicity per neuron; 0 = not pending.
    mult: Vec<u32>,
    /// Number of distinct pending neurons.
    count: usize,
    /// Sum of the multiplicities of the pending neurons.
    total: u64,
}

impl Multiplicities {
    /// Counts a spike of neuron `q`: `Some(true)` if it was not pending (multiplicity
    /// 0 -> 1), `Some(false)` if it was (multiplicity + 1), `None` (unchanged) if the
    /// multiplicity would overflow u32.
    #[inline(always)]
    fn bump(&mut self, q: u32) -> Option<bool> {
        let new = bump_mult(&mut self.mult, q)?;
        self.count += new as usize;
        self.total += 1;
        Some(new)
    }

    /// Removes pending neuron `q` from the set and appends `(q, multiplicity)` to
    /// `group`.
    #[inline(always)]
    fn take(&mut self, q: u32, group: &mut Vec<(u32, u32)>) {
        let m = std::mem::take(&mut self.mult[q as usize]);
        debug_assert!(m > 0);
        self.count -= 1;
        self.total -= m as u64;
        group.push((q, m));
    }

    /// Sets the multiplicity of every neuron of `qs` to 0 (R6.4: the caller then
    /// resets the counts). Queues empty themselves into it.
    fn forget(&mut self, qs: impl IntoIterator<Item = u32>) {
        for q in qs {
            self.mult[q as usize] = 0;
        }
    }
}

/// Raises the multiplicity of neuron `q` by one: `Some(true)` if it was 0 (the neuron
/// was not pending), `Some(false)` if not, `None` (unchanged) if it would overflow u32.
#[inline(always)]
fn bump_mult(mult: &mut [u32], q: u32) -> Option<bool> {
    let m = &mut mult[q as usize];
    let new = *m == 0;
    *m = m.checked_add(1)?;
    Some(new)
}

/// R5.1 `layered`: the pending neurons of each non-input population, in enqueue order.
#[derive(Debug)]
struct Layers {
    lists: Vec<Vec<u32>>,
}

impl Layers {
    /// Enqueues the spikes `qs` of population `pop` (R4.3.2). Returns `false` if a
    /// multiplicity overflows u32.
    #[inline(always)]
    fn enqueue_all(&mut self, table: &mut Multiplicities, qs: &[u32], pop: usize) -> bool {
        // Counts kept in locals: the pushes may reallocate, and the fields would
        // otherwise be stored and reloaded at every spike.
        let (mult, layer) = (&mut table.mult, &mut self.lists[pop]);
        layer.reserve(qs.len());
        let (mut new, mut done) = (0usize, 0u64);
        let mut ok = true;
        for &q in qs {
            let Some(first) = bump_mult(mult, q) else {
                ok = false;
                break;
            };
            if first {
                new += 1;
                layer.push(q);
            }
            done += 1;
        }
        table.count += new;
        table.total += done;
        ok
    }

    /// The group: every pending neuron of the lowest population present (`F` is
    /// ignored).
    #[inline(always)]
    fn select(&mut self, table: &mut Multiplicities, group: &mut Vec<(u32, u32)>) {
        if let Some(p) = self.lists.iter().position(|l| !l.is_empty()) {
            // `take` of every neuron of the layer, with the counts in locals.
            let (mult, layer) = (&mut table.mult, &mut self.lists[p]);
            let mut total = 0u64;
            group.extend(layer.iter().map(|&q| {
                let m = std::mem::take(&mut mult[q as usize]);
                debug_assert!(m > 0);
                total += m as u64;
                (q, m)
            }));
            table.count -= layer.len();
            table.total -= total;
            layer.clear();
        }
    }

    fn drop_all(&mut self, table: &mut Multiplicities) {
        for l in &mut self.lists {
            table.forget(l.drain(..));
        }
    }
}

/// R5.2 `fifo`: the pending neurons in order of first enqueue.
#[derive(Debug, Default)]
struct Fifo {
    queue: VecDeque<u32>,
}

impl Fifo {
    /// The group: the `f` pending neurons enqueued first.
    #[inline(always)]
    fn select(&mut self, table: &mut Multiplicities, f: usize, group: &mut Vec<(u32, u32)>) {
        let n = f.min(self.queue.len());
        for _ in 0..n {
            if let Some(q) = self.queue.pop_front() {
                table.take(q, group);
            }
        }
    }

    fn drop_all(&mut self, table: &mut Multiplicities) {
        table.forget(self.queue.drain(..));
    }
}

/// The order of the pending neurons: the structure of one scheduler (R5).
#[derive(Debug)]
enum Queue {
    /// R5.1.
    Layered(Layers),
    /// R5.2.
    Fifo(Fifo),
    /// R5.4 without jitter: the key `v_pre` is fixed at the spike.
    Heap(MomentumHeap),
    /// R5.3, and R5.4 with jitter: keys drawn afresh at every forward step.
    Keyed(Keyed),
}

impl Queue {
    /// An empty queue for scheduler `s` in a network of `n_pops` non-input populations.
    fn new(s: Scheduler, n_pops: usize) -> Queue {
        match s {
            Scheduler::Layered => Queue::Layered(Layers {
                lists: vec![Vec::new(); n_pops],
            }),
            Scheduler::Fifo => Queue::Fifo(Fifo::default()),
            Scheduler::Random => Queue::Keyed(Keyed::new(KeyOrder::Random)),
            // jitter = 0 (or -0: a float pattern compares with ==): the key is v_pre
            // itself (R5.4), kept in a heap.
            Scheduler::Momentum { jitter: 0.0 } => Queue::Heap(MomentumHeap::default()),
            Scheduler::Momentum { jitter } => Queue::Keyed(Keyed::new(KeyOrder::Jitter(jitter))),
        }
    }
}

/// The pending set of one sample (R3.2): the multiplicity table and the queue of its
/// scheduler. Allocated once per workspace and reused across timesteps and samples.
#[derive(Debug)]
pub(crate) struct PendingSet {
    table: Multiplicities,
    queue: Queue,
    /// Non-input populations (the lists of `layered`).
    n_pops: usize,
}

impl PendingSet {
    /// An empty pending set for `n_neurons` neurons in `n_pops` non-input populations.
    #[cfg(test)]
    pub fn new(n_neurons: usize, n_pops: usize) -> PendingSet {
        PendingSet::with_mult(vec![0; n_neurons], n_pops)
    }

    /// [`PendingSet::new`] with its multiplicity table given (all zero, one entry per
    /// neuron), so that the caller can allocate it fallibly.
    pub(crate) fn with_mult(mult: Vec<u32>, n_pops: usize) -> PendingSet {
        debug_assert!(mult.iter().all(|&m| m == 0));
        PendingSet {
            table: Multiplicities {
                mult,
                count: 0,
                total: 0,
            },
            queue: Queue::Fifo(Fifo::default()),
            n_pops,
        }
    }

    /// Selects the scheduler for the next sample. The set must be empty. The queue is
    /// kept (with its buffers) when it already is the scheduler's, built otherwise.
    pub fn set_scheduler(&mut self, s: Scheduler) {
        debug_assert_eq!(self.table.count, 0);
        match (&mut self.queue, s) {
            (Queue::Layered(_), Scheduler::Layered)
            | (Queue::Fifo(_), Scheduler::Fifo)
            | (Queue::Heap(_), Scheduler::Momentum { jitter: 0.0 }) => {}
            (Queue::Keyed(k), Scheduler::Random) => k.order = KeyOrder::Random,
            (Queue::Keyed(k), Scheduler::Momentum { jitter }) if jitter != 0.0 => {
                k.order = KeyOrder::Jitter(jitter)
            }
            _ => self.queue = Queue::new(s, self.n_pops),
        }
    }

    /// Number of distinct pending neurons.
    #[inline]
    pub fn len(&self) -> usize {
        self.table.count
    }

    /// Whether nothing is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.table.count == 0
    }

    /// Enqueues the spikes `qs` of non-input population `pop`, in order (R4.3.2): the
    /// multiplicity of each rises by one, and a neuron that was not pending joins the
    /// queue; `v_pre` (R3.1, by neuron id) is the key of `momentum`. The queue is
    /// matched once, not once per spike. Returns `false` if a multiplicity overflows
    /// u32.
    #[inline(always)]
    pub fn enqueue_all(&mut self, qs: &[u32], pop: usize, v_pre: &[f32]) -> bool {
        self.enqueue_each(qs, pop, |q| v_pre[q as usize])
    }

    /// A spike of neuron `q` that did not enter the set (spike dropout, R4.11) still set
    /// its `v_pre` (R4.3.2): if `q` is pending, its `momentum` key follows the new value
    /// (R5.4 orders by the latest `v_pre`). The heap's old entry of `q` is stale from now
    /// on, so without the new one `q` would never be selected. The other queues read no
    /// key at enqueue (`momentum` with jitter reads `v_pre` when it selects).
    #[inline]
    pub fn refresh_key(&mut self, q: u32, v_pre: f32) {
        if let Queue::Heap(heap) = &mut self.queue {
            if self.table.mult[q as usize] > 0 {
                heap.push(q, v_pre);
            }
        }
    }

    /// Enqueues one spike of neuron `q` of population `pop` with membrane value at the
    /// spike `v_pre`.
    #[cfg(test)]
    pub fn enqueue(&mut self, q: u32, pop: usize, v_pre: f32) -> bool {
        self.enqueue_each(&[q], pop, |_| v_pre)
    }

    #[inline(always)]
    fn enqueue_each(&mut self, qs: &[u32], pop: usize, v_pre: impl Fn(u32) -> f32) -> bool {
        let table = &mut self.table;
        match &mut self.queue {
            Queue::Layered(layers) => layers.enqueue_all(table, qs, pop),
            Queue::Fifo(fifo) => qs.iter().all(|&q| match table.bump(q) {
                Some(new) => {
                    if new {
                        fifo.queue.push_back(q);
                    }
                    true
                }
                None => false,
            }),
            // A new spike of a pending neuron changed v_pre: the new key supersedes the
            // old entry (R5.4 uses the latest v_pre).
            Queue::Heap(heap) => qs.iter().all(|&q| match table.bump(q) {
                Some(_) => {
                    heap.push(q, v_pre(q));
                    true
                }
                None => false,
            }),
            Queue::Keyed(keyed) => qs.iter().all(|&q| match table.bump(q) {
                Some(new) => {
                    if new {
                        keyed.list.push(q);
                    }
                    true
                }
                None => false,
            }),
        }
    }

    /// Picks the group `G` (R4.3.4, R5) and removes it from the set: `group` receives
    /// `(neuron, multiplicity)` pairs. `f` is the forward group size, `v_pre` the
    /// per-neuron `v_pre` (R3.1).
    #[inline(always)]
    pub fn select(&mut self, f: usize, ctx: SelectCtx, v_pre: &[f32], group: &mut Vec<(u32, u32)>) {
        group.clear();
        let table = &mut self.table;
        match &mut self.queue {
            Queue::Layered(layers) => layers.select(table, group),
            Queue::Fifo(fifo) => fifo.select(table, f, group),
            Queue::Heap(heap) => heap.select(table, f, v_pre, group),
            Queue::Keyed(keyed) => keyed.select(table, f, ctx, v_pre, group),
        }
    }

    /// R4.13 under `random`: the pending neurons in list (enqueue) order; empty for
    /// the queues of the other schedulers.
    pub(crate) fn random_list(&self) -> &[u32] {
        match &self.queue {
            Queue::Keyed(keyed) => &keyed.list,
            _ => &[],
        }
    }

    /// R4.13 under `random`: removes the pending neurons at the positions `n` of the
    /// list for which `picked(n)` holds and appends them to `group` with their
    /// multiplicities, in list order (the rest keeps its order). Nothing for the queues
    /// of the other schedulers.
    pub(crate) fn take_listed(
        &mut self,
        picked: impl Fn(usize) -> bool,
        group: &mut Vec<(u32, u32)>,
    ) {
        let table = &mut self.table;
        if let Queue::Keyed(keyed) = &mut self.queue {
            let list = &mut keyed.list;
            let mut kept = 0;
            for n in 0..list.len() {
                let q = list[n];
                if picked(n) {
                    table.take(q, group);
                } else {
                    list[kept] = q;
                    kept += 1;
                }
            }
            list.truncate(kept);
        }
    }

    /// Empties the set (R6.4) and returns the sum of the multiplicities dropped.
    pub fn drop_all(&mut self) -> u64 {
        let dropped = self.table.total;
        let table = &mut self.table;
        match &mut self.queue {
            Queue::Layered(layers) => layers.drop_all(table),
            Queue::Fifo(fifo) => fifo.drop_all(table),
            Queue::Heap(heap) => heap.drop_all(table),
            Queue::Keyed(keyed) => keyed.drop_all(table),
        }
        self.table.count = 0;
        self.table.total = 0;
        dropped
    }
}

/// The max-order key of R5.4 for key value `v` of neuron `id`.
#[inline(always)]
fn momentum_key(v: f32, id: u32) -> u64 {
    // v > threshold > 0 (v_pre of a pending neuron), so the bit pattern orders like the
    // value; !id makes the smaller id win among equal keys in a max-order.
    ((v.to_bits() as u64) << 32) | (!id as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{hash, uniform};

    pub(super) const CTX: SelectCtx = SelectCtx {
        seed: 7,
        sample: 3,
        t: 2,
        k: 5,
    };

    fn ids(group: &[(u32, u32)]) -> Vec<u32> {
        let mut v: Vec<u32> = group.iter().map(|g| g.0).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn names_parse_and_round_trip() {
        for s in [
            Scheduler::Layered,
            Scheduler::Fifo,
            Scheduler::Random,
            Scheduler::Momentum { jitter: 0.0 },
        ] {
            assert_eq!(s.name().parse::<Scheduler>().unwrap(), s);
        }
        let m: Scheduler = "momentum".parse().unwrap();
        assert_eq!(m.with_jitter(0.5), Scheduler::Momentum { jitter: 0.5 });
        assert_eq!(Scheduler::Fifo.with_jitter(0.5), Scheduler::Fifo);
        let e = "Layered".parse::<Scheduler>().unwrap_err();
        assert!(matches!(&e, EngineError::Parameter { field, value, reason }
            if field == "scheduler" && value == "Layered"
                && reason == "must be layered, fifo, random or momentum"));
    }

    #[test]
    fn fifo_order_and_requeue_keeps_place() {
        let mut p = PendingSet::new(10, 2);
        p.set_scheduler(Scheduler::Fifo);
        let v = [1.0f32; 10];
        for q in [5, 2, 9, 1] {
            assert!(p.enqueue(q, 0, 1.0));
        }
        assert!(p.enqueue(2, 0, 1.0)); // re-enqueue: multiplicity 2, same place
        assert_eq!(p.len(), 4);
        let mut g = Vec::new();
        p.select(2, CTX, &v, &mut g);
        assert_eq!(g, vec![(5, 1), (2, 2)]);
        assert!(p.enqueue(5, 0, 1.0)); // new sequence number: goes last
        p.select(2, CTX, &v, &mut g);
        assert_eq!(g, vec![(9, 1), (1, 1)]);
        p.select(2, CTX, &v, &mut g);
        assert_eq!(g, vec![(5, 1)]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_dropped_spike_of_a_pending_neuron_moves_its_momentum_key() {
        // R4.11 with refractory dropout: neuron 3 is pending (v_pre 1.2), fires again and
        // the spike is dropped (v_pre 2.0, multiplicity still 1). Momentum orders by the
        // latest v_pre: 3 goes before 6 (1.5), once, and the timestep can end.
        for jitter in [0.0, 0.25] {
            let mut p = PendingSet::new(10, 2);
            p.set_scheduler(Scheduler::Momentum { jitter });
            let mut v = [0.0f32; 10];
            (v[3], v[6]) = (1.2, 1.5);
            assert!(p.enqueue_all(&[3, 6], 0, &v));
            v[3] = 2.0;
            p.refresh_key(3, v[3]);
            p.refresh_key(8, 3.0); // not pending: nothing to move
            let mut g = Vec::new();
            p.select(1, CTX, &v, &mut g);
            if jitter == 0.0 {
                assert_eq!(g, vec![(3, 1)]);
            }
            p.select(1, CTX, &v, &mut g);
            assert_eq!(g.len(), 1);
            assert!(p.is_empty());
            p.select(1, CTX, &v, &mut g);
            assert!(g.is_empty());
        }
    }

    #[test]
    fn layered_lowest_population_ignores_f() {
        let mut p = PendingSet::new(10, 3);
        p.set_scheduler(Scheduler::Layered);
        let v = [1.0f32; 10];
        p.enqueue(8, 2, 1.0);
        p.enqueue(4, 1, 1.0);
        p.enqueue(3, 1, 1.0);
        p.enqueue(5, 1, 1.0);
        p.enqueue(4, 1, 1.0);
        let mut g = Vec::new();
        p.select(1, CTX, &v, &mut g);
        assert_eq!(ids(&g), vec![3, 4, 5]);
        assert!(g.contains(&(4, 2)));
        p.select(1, CTX, &v, &mut g);
        assert_eq!(g, vec![(8, 1)]);
        assert!(p.is_empty());
    }

    #[test]
    fn momentum_largest_vpre_ties_to_smaller_id() {
        let mut p = PendingSet::new(10, 1);
        p.set_scheduler(Scheduler::Momentum { jitter: 0.0 });
        let mut v = [0.0f32; 10];
        for (q, val) in [(7u32, 2.0f32), (3, 2.0), (1, 1.5), (9, 3.0), (0, 1.0)] {
            v[q as usize] = val;
            p.enqueue(q, 0, val);
        }
        let mut g = Vec::new();
        p.select(2, CTX, &v, &mut g);
        assert_eq!(g, vec![(9, 1), (3, 1)]);
        // 0 fires again with a larger v_pre while pending: its key is updated.
        v[0] = 5.0;
        p.enqueue(0, 0, 5.0);
        p.select(2, CTX, &v, &mut g);
        assert_eq!(g, vec![(0, 2), (7, 1)]);
        p.select(2, CTX, &v, &mut g);
        assert_eq!(g, vec![(1, 1)]);
        assert!(p.is_empty());
        p.select(2, CTX, &v, &mut g);
        assert!(g.is_empty());
    }

    #[test]
    fn random_smallest_hash_keys() {
        let n = 50u32;
        let mut p = PendingSet::new(n as usize, 1);
        p.set_scheduler(Scheduler::Random);
        let v = vec![1.0f32; n as usize];
        for q in (0..n).rev() {
            p.enqueue(q, 0, 1.0);
        }
        let mut g = Vec::new();
        p.select(4, CTX, &v, &mut g);
        let mut expect: Vec<(u32, u32)> = (0..n)
            .map(|q| (hash(CTX.seed, CTX.sample, CTX.t, CTX.k, q, 0), q))
            .collect();
        expect.sort_unstable();
        let mut want: Vec<u32> = expect[..4].iter().map(|e| e.1).collect();
        want.sort_unstable();
        assert_eq!(ids(&g), want);
        assert_eq!(p.len(), 46);
        // Fresh keys at another step: the next selection uses k = 6.
        let ctx2 = SelectCtx { k: 6, ..CTX };
        p.select(4, ctx2, &v, &mut g);
        let mut rest: Vec<(u32, u32)> = (0..n)
            .filter(|q| !want.contains(q))
            .map(|q| (hash(CTX.seed, CTX.sample, CTX.t, 6, q, 0), q))
            .collect();
        rest.sort_unstable();
        let mut want2: Vec<u32> = rest[..4].iter().map(|e| e.1).collect();
        want2.sort_unstable();
        assert_eq!(ids(&g), want2);
        assert_eq!(p.drop_all(), 42);
        assert!(p.is_empty());
    }

    #[test]
    fn momentum_jitter_keys() {
        let n = 40u32;
        let mut p = PendingSet::new(n as usize, 1);
        let jitter = 0.75f32;
        p.set_scheduler(Scheduler::Momentum { jitter });
        let v: Vec<f32> = (0..n).map(|q| 1.0 + (q % 5) as f32 * 0.125).collect();
        for q in 0..n {
            p.enqueue(q, 0, v[q as usize]);
        }
        let mut g = Vec::new();
        p.select(5, CTX, &v, &mut g);
        let mut expect: Vec<(f32, u32)> = (0..n)
            .map(|q| {
                let u = uniform(CTX.seed, CTX.sample, CTX.t, CTX.k, q, 2);
                (v[q as usize] + jitter * u, q)
            })
            .collect();
        expect.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut want: Vec<u32> = expect[..5].iter().map(|e| e.1).collect();
        want.sort_unstable();
        assert_eq!(ids(&g), want);
    }

    #[test]
    fn tie_break_smaller_id_for_equal_keys_with_jitter_zero_u() {
        // Equal keys (no jitter): all v_pre equal, F = 3 -> ids 0, 1, 2.
        let mut p = PendingSet::new(8, 1);
        p.set_scheduler(Scheduler::Momentum { jitter: 0.0 });
        let v = [2.0f32; 8];
        for q in [6, 2, 7, 0, 4, 1] {
            p.enqueue(q, 0, 2.0);
        }
        let mut g = Vec::new();
        p.select(3, CTX, &v, &mut g);
        assert_eq!(g, vec![(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn drop_all_counts_multiplicities() {
        for s in [
            Scheduler::Fifo,
            Scheduler::Layered,
            Scheduler::Random,
            Scheduler::Momentum { jitter: 0.0 },
            Scheduler::Momentum { jitter: 1.0 },
        ] {
            let mut p = PendingSet::new(6, 2);
            p.set_scheduler(s);
            let v = [1.0f32; 6];
            p.enqueue(1, 0, 1.0);
            p.enqueue(1, 0, 1.0);
            p.enqueue(4, 1, 1.0);
            assert_eq!(p.len(), 2);
            assert_eq!(p.drop_all(), 3, "{s:?}");
            assert!(p.is_empty());
            let mut g = Vec::new();
            p.select(4, CTX, &v, &mut g);
            assert!(g.is_empty());
            // Reusable afterwards with fresh multiplicities.
            p.enqueue(1, 0, 1.0);
            p.select(4, CTX, &v, &mut g);
            assert_eq!(g, vec![(1, 1)], "{s:?}");
        }
    }
    /// A pending set reused across samples with other schedulers (a workspace that
    /// runs several batches) selects what a fresh one selects; momentum with jitter -0
    /// is the heap.
    #[test]
    fn set_scheduler_switches_queues() {
        let schedulers = [
            Scheduler::Random,
            Scheduler::Momentum { jitter: 0.5 },
            Scheduler::Momentum { jitter: -0.0 },
            Scheduler::Layered,
            Scheduler::Momentum { jitter: 0.25 },
            Scheduler::Fifo,
            Scheduler::Momentum { jitter: 0.0 },
            Scheduler::Random,
        ];
        let v: Vec<f32> = (0..12).map(|q| 1.0 + (q % 4) as f32 * 0.25).collect();
        let mut reused = PendingSet::new(12, 2);
        for s in schedulers {
            reused.set_scheduler(s);
            let mut fresh = PendingSet::new(12, 2);
            fresh.set_scheduler(s);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for p in [&mut reused, &mut fresh] {
                for q in [7u32, 3, 11, 0, 5, 3, 9] {
                    assert!(p.enqueue(q, (q / 6) as usize, v[q as usize]));
                }
            }
            while !fresh.is_empty() {
                reused.select(2, CTX, &v, &mut a);
                fresh.select(2, CTX, &v, &mut b);
                assert_eq!(a, b, "{s:?}");
            }
            assert!(reused.is_empty(), "{s:?}");
            if let Scheduler::Momentum { jitter } = s {
                assert_eq!(matches!(reused.queue, Queue::Heap(_)), jitter == 0.0);
            }
            // Something left pending is dropped before the next scheduler.
            assert!(reused.enqueue(4, 0, v[4]));
            assert_eq!(reused.drop_all(), 1);
        }
    }
}
