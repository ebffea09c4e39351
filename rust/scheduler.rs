//! Schedulers (R5.1-R5.4) and the pending set (R3.2).
//!
//! The pending set holds, per neuron, its multiplicity `m >= 1` (0 = not pending); the
//! data structure that orders the pending neurons depends on the scheduler:
//! - `layered` (R5.1): one pending list per population; a group is the whole list of
//!   the lowest population present.
//! - `fifo` (R5.2): a queue in order of first enqueue (= sequence number); a neuron
//!   re-enqueued while pending only gets its multiplicity raised and keeps its place.
//! - `momentum` without jitter (R5.4): a 4-ary max-heap of `(v_pre bits, !id)`; the key
//!   is pushed again when a pending neuron fires again (refractory dropout) with a new
//!   `v_pre`, and stale entries are skipped lazily when popped.
//! - `random` (R5.3) and `momentum` with jitter (R5.4): the keys change at every forward
//!   step, so the pending list (in enqueue order) is scanned at each selection: one key
//!   per pending neuron (a plain loop that vectorises in the AVX2 build of the event
//!   loop), the `F`-th smallest key by partial selection (`select_nth_unstable`; for
//!   `random`, whose keys are uniform hashes, only over the few keys below a bar that
//!   about `2F` of them pass), then one pass that splits the list into the group (keys
//!   up to that one; keys are distinct) and the rest, both in list order. No sorting.

use std::collections::VecDeque;

use crate::error::EngineError;
use crate::rng::{hash_finish, hash_prefix, to_uniform, STREAM_JITTER, STREAM_RANDOM};

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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Layered,
    Fifo,
    Random,
    MomentumHeap,
    MomentumJitter(f32),
}

/// The `f`-th smallest of `keys` (`0 < f < keys.len()`); `scratch` is a work buffer.
///
/// With `uniform` (the upper 32 bits of the keys are uniformly distributed hashes,
/// R5.3), a branch-free pass first keeps only the keys below a bar that about `2 f` of
/// them pass (raised until at least `f` do), so the partial selection sees few keys.
#[inline(always)]
fn kth_smallest(keys: &[u64], f: usize, uniform: bool, scratch: &mut Vec<u64>) -> u64 {
    let n = keys.len();
    scratch.clear();
    if uniform {
        let mut bar = (((2 * f).max(16) as u64) << 32) / n as u64;
        scratch.resize(n, 0);
        loop {
            let lim = if bar >= 1 << 32 {
                u64::MAX
            } else {
                (bar << 32).saturating_sub(1)
            };
            let mut count = 0;
            for &k in keys {
                scratch[count] = k;
                count += (k <= lim) as usize;
            }
            if count >= f {
                scratch.truncate(count);
                break;
            }
            bar *= 4;
        }
    } else {
        scratch.extend_from_slice(keys);
    }
    let c = scratch.len();
    if c <= RANK_MAX {
        // Few keys (the usual case after the bar): the one with exactly `f - 1` smaller
        // keys, found by counting (branch-free inner loops) instead of a partition. (With
        // equal keys no key may have that count; the partial sort below then decides.)
        let s = &scratch[..c];
        for &x in s {
            let rank: usize = s.iter().map(|&y| (y < x) as usize).sum();
            if rank == f - 1 {
                return x;
            }
        }
    }
    *scratch.select_nth_unstable(f - 1).1
}

/// Most keys [`kth_smallest`] ranks by counting (`c^2 / 2` comparisons on average)
/// rather than by a partial sort.
const RANK_MAX: usize = 48;

/// A 4-ary max-heap of `u64` keys (the momentum scheduler's): half the depth of a
/// binary heap, and the four children of a node share a cache line. Equal keys are the
/// same neuron with the same `v_pre` (the key contains the id), so any max-heap pops
/// the same sequence.
#[derive(Debug, Default)]
struct Heap4 {
    v: Vec<u64>,
}

impl Heap4 {
    #[inline(always)]
    fn push(&mut self, x: u64) {
        let mut i = self.v.len();
        self.v.push(x);
        while i > 0 {
            let parent = (i - 1) / 4;
            let p = self.v[parent];
            if p >= x {
                break;
            }
            self.v[i] = p;
            i = parent;
        }
        self.v[i] = x;
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<u64> {
        let last = self.v.pop()?;
        let n = self.v.len();
        if n == 0 {
            return Some(last);
        }
        let top = self.v[0];
        // Sift `last` down from the root: move up the largest child while it is larger.
        let mut i = 0;
        loop {
            let c = 4 * i + 1;
            if c >= n {
                break;
            }
            let (mut m, mut mv) = (c, self.v[c]);
            for (j, &x) in self.v[c + 1..(c + 4).min(n)].iter().enumerate() {
                if x > mv {
                    (m, mv) = (c + 1 + j, x);
                }
            }
            if mv <= last {
                break;
            }
            self.v[i] = mv;
            i = m;
        }
        self.v[i] = last;
        Some(top)
    }

    fn iter(&self) -> std::slice::Iter<'_, u64> {
        self.v.iter()
    }

    fn clear(&mut self) {
        self.v.clear();
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

/// The pending set of one sample (R3.2), with the structure of its scheduler.
/// Allocated once per workspace and reused across timesteps and samples.
#[derive(Debug)]
pub(crate) struct PendingSet {
    mode: Mode,
    /// Multiplicity per neuron; 0 = not pending.
    mult: Vec<u32>,
    /// Number of distinct pending neurons.
    count: usize,
    /// Sum of the multiplicities of the pending neurons.
    total: u64,
    fifo: VecDeque<u32>,
    layers: Vec<Vec<u32>>,
    heap: Heap4,
    list: Vec<u32>,
    keys: Vec<u64>,
    scratch: Vec<u64>,
    /// The neurons picked by a `random`/jittered `momentum` selection, in list order.
    picked: Vec<u32>,
}

#[inline(always)]
fn momentum_key(v: f32, id: u32) -> u64 {
    // v > threshold > 0 (v_pre of a pending neuron), so the bit pattern orders like the
    // value; !id makes the smaller id win among equal keys in a max-order.
    ((v.to_bits() as u64) << 32) | (!id as u64)
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
            mode: Mode::Fifo,
            mult,
            count: 0,
            total: 0,
            fifo: VecDeque::new(),
            layers: vec![Vec::new(); n_pops],
            heap: Heap4::default(),
            list: Vec::new(),
            keys: Vec::new(),
            scratch: Vec::new(),
            picked: Vec::new(),
        }
    }

    /// Selects the scheduler for the next sample. The set must be empty.
    pub fn set_scheduler(&mut self, s: Scheduler) {
        debug_assert_eq!(self.count, 0);
        self.mode = match s {
            Scheduler::Layered => Mode::Layered,
            Scheduler::Fifo => Mode::Fifo,
            Scheduler::Random => Mode::Random,
            // jitter = 0 (or -0): the key is v_pre itself (R5.4), kept in a heap.
            Scheduler::Momentum { jitter } => {
                if jitter == 0.0 {
                    Mode::MomentumHeap
                } else {
                    Mode::MomentumJitter(jitter)
                }
            }
        };
    }

    /// Number of distinct pending neurons.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Counts a spike of neuron `q`: `Some(true)` if it was not pending (multiplicity
    /// 0 -> 1), `Some(false)` if it was (multiplicity + 1), `None` if the multiplicity
    /// overflows u32.
    #[inline(always)]
    fn bump(&mut self, q: u32) -> Option<bool> {
        let new = bump_mult(&mut self.mult, q)?;
        self.count += new as usize;
        self.total += 1;
        Some(new)
    }

    /// Enqueues a spike of neuron `q` of non-input population `pop` with membrane value
    /// at the spike `v_pre` (R4.3.2). Returns `false` if the multiplicity overflows u32.
    #[inline(always)]
    pub fn enqueue(&mut self, q: u32, pop: usize, v_pre: f32) -> bool {
        let Some(new) = self.bump(q) else {
            return false;
        };
        match self.mode {
            Mode::Fifo if new => self.fifo.push_back(q),
            Mode::Layered if new => self.layers[pop].push(q),
            Mode::Random | Mode::MomentumJitter(_) if new => self.list.push(q),
            // A new spike of a pending neuron changed v_pre: the new key supersedes the
            // old entry (R5.4 uses the latest v_pre).
            Mode::MomentumHeap => self.heap.push(momentum_key(v_pre, q)),
            _ => {}
        }
        true
    }

    /// [`enqueue`](Self::enqueue) of the spikes `qs` of population `pop`, in order, with
    /// `v_pre` read by neuron id: the scheduler's structure is matched once, not once
    /// per spike. Returns `false` if a multiplicity overflows u32.
    #[inline(always)]
    pub fn enqueue_all(&mut self, qs: &[u32], pop: usize, v_pre: &[f32]) -> bool {
        match self.mode {
            Mode::Layered => {
                // Counts kept in locals: the pushes may reallocate, and the fields would
                // otherwise be stored and reloaded at every spike.
                let (mult, layer) = (&mut self.mult, &mut self.layers[pop]);
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
                self.count += new;
                self.total += done;
                ok
            }
            _ => qs.iter().all(|&q| self.enqueue(q, pop, v_pre[q as usize])),
        }
    }

    #[inline(always)]
    fn take(&mut self, q: u32, group: &mut Vec<(u32, u32)>) {
        let m = std::mem::take(&mut self.mult[q as usize]);
        debug_assert!(m > 0);
        self.count -= 1;
        self.total -= m as u64;
        group.push((q, m));
    }

    /// Picks the group `G` (R4.3.4, R5) and removes it from the set: `group` receives
    /// `(neuron, multiplicity)` pairs. `f` is the forward group size, `v_pre` the
    /// per-neuron `v_pre` (R3.1).
    #[inline(always)]
    pub fn select(&mut self, f: usize, ctx: SelectCtx, v_pre: &[f32], group: &mut Vec<(u32, u32)>) {
        group.clear();
        match self.mode {
            Mode::Fifo => {
                let n = f.min(self.fifo.len());
                for _ in 0..n {
                    if let Some(q) = self.fifo.pop_front() {
                        self.take(q, group);
                    }
                }
            }
            Mode::Layered => {
                if let Some(p) = self.layers.iter().position(|l| !l.is_empty()) {
                    // `take` of every neuron of the layer, with the counts in locals.
                    let (mult, layer) = (&mut self.mult, &mut self.layers[p]);
                    let mut total = 0u64;
                    group.extend(layer.iter().map(|&q| {
                        let m = std::mem::take(&mut mult[q as usize]);
                        debug_assert!(m > 0);
                        total += m as u64;
                        (q, m)
                    }));
                    self.count -= layer.len();
                    self.total -= total;
                    layer.clear();
                }
            }
            Mode::MomentumHeap => {
                while group.len() < f {
                    let Some(e) = self.heap.pop() else { break };
                    let q = !(e as u32);
                    let bits = (e >> 32) as u32;
                    if self.mult[q as usize] > 0 && v_pre[q as usize].to_bits() == bits {
                        self.take(q, group);
                    }
                }
                if self.count == 0 {
                    // Only stale entries can be left: forget them.
                    self.heap.clear();
                }
            }
            Mode::Random | Mode::MomentumJitter(_) => {
                if self.list.len() <= f {
                    let list = std::mem::take(&mut self.list);
                    for &q in &list {
                        self.take(q, group);
                    }
                    self.list = list;
                    self.list.clear();
                    return;
                }
                // One key per pending neuron, smallest = first chosen; ties cannot
                // happen (the id is part of the key). A plain loop over the list, which
                // vectorises in the AVX2 build of the event loop.
                let prefix = hash_prefix(ctx.seed, ctx.sample, ctx.t, ctx.k);
                let mut keys = std::mem::take(&mut self.keys);
                keys.clear();
                keys.resize(self.list.len(), 0);
                if let Mode::MomentumJitter(jitter) = self.mode {
                    // Largest `v_pre + jitter * u` first, equal values to the smaller id
                    // (R5.4): the complement of the max-order key.
                    for (k, &q) in keys.iter_mut().zip(&self.list) {
                        let u = to_uniform(hash_finish(prefix, q, STREAM_JITTER));
                        let key = v_pre[q as usize] + jitter * u;
                        *k = !momentum_key(key, q);
                    }
                } else {
                    // Smallest hash first; equal hashes to the smaller id (R5.3).
                    for (k, &q) in keys.iter_mut().zip(&self.list) {
                        *k = ((hash_finish(prefix, q, STREAM_RANDOM) as u64) << 32) | q as u64;
                    }
                }
                // The keys are distinct (they contain the id): the group is exactly the
                // keys up to the f-th smallest. Split the list in one pass, keeping the
                // order of the rest (the group goes in list order).
                let mut scratch = std::mem::take(&mut self.scratch);
                let uniform = matches!(self.mode, Mode::Random);
                let kth = kth_smallest(&keys, f, uniform, &mut scratch);
                self.scratch = scratch;
                // Exactly `f` keys are <= kth. A branch-free pass (each neuron is written
                // to both outputs, and only the right cursor advances): the `f` rare
                // picks would otherwise be mispredicted branches.
                let mut list = std::mem::take(&mut self.list);
                let mut picked = std::mem::take(&mut self.picked);
                picked.resize(f + 1, 0); // (only the length matters: the pass writes what `take` reads)
                let (mut g, mut kept) = (0, 0);
                for i in 0..list.len() {
                    let q = list[i];
                    let sel = keys[i] <= kth;
                    picked[g] = q;
                    g += sel as usize;
                    list[kept] = q;
                    kept += !sel as usize;
                }
                debug_assert_eq!(g, f);
                list.truncate(kept);
                for &q in &picked[..g] {
                    self.take(q, group);
                }
                self.list = list;
                self.keys = keys;
                self.picked = picked;
            }
        }
    }

    /// Empties the set (R6.4) and returns the sum of the multiplicities dropped.
    pub fn drop_all(&mut self) -> u64 {
        let dropped = self.total;
        if self.count > 0 {
            let mult = &mut self.mult;
            for &q in self.fifo.iter().chain(self.list.iter()) {
                mult[q as usize] = 0;
            }
            for l in &self.layers {
                for &q in l {
                    mult[q as usize] = 0;
                }
            }
            for &e in self.heap.iter() {
                mult[!(e as u32) as usize] = 0;
            }
        }
        self.fifo.clear();
        self.list.clear();
        self.heap.clear();
        for l in &mut self.layers {
            l.clear();
        }
        self.count = 0;
        self.total = 0;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{hash, uniform};

    const CTX: SelectCtx = SelectCtx {
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

    /// The 4-ary heap pops what `std`'s binary heap pops, through interleaved pushes
    /// and pops with repeated keys.
    #[test]
    fn heap4_pops_like_a_binary_heap() {
        let mut next = crate::rng::test_stream(0x2545_f491_4f6c_dd1d);
        let (mut h, mut reference) = (Heap4::default(), std::collections::BinaryHeap::new());
        let mut popped = 0;
        for step in 0..20_000 {
            let r = next();
            if r % 3 != 0 || step < 50 {
                let key = r % 997; // many repeats
                h.push(key);
                reference.push(key);
            } else {
                assert_eq!(h.pop(), reference.pop(), "step {step}");
                popped += 1;
            }
            assert_eq!(h.v.len(), reference.len());
        }
        while let Some(x) = reference.pop() {
            assert_eq!(h.pop(), Some(x));
        }
        assert_eq!(h.pop(), None);
        assert!(popped > 5_000);
    }

    #[test]
    fn kth_smallest_matches_sorting() {
        let mut g = 0x9e37_79b9_u64;
        let mut next = || {
            g = g
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            g
        };
        let mut scratch = Vec::new();
        for n in [2usize, 3, 9, 17, 48, 49, 100, 1000] {
            // Uniform hashes in the upper bits, the position as the (distinct) lower bits;
            // then keys crowded at the top, where the first bar lets too few pass.
            for crowded in [false, true] {
                let keys: Vec<u64> = (0..n as u64)
                    .map(|i| {
                        let h = if crowded {
                            u32::MAX - (next() >> 60) as u32
                        } else {
                            (next() >> 32) as u32
                        };
                        ((h as u64) << 32) | i
                    })
                    .collect();
                let mut sorted = keys.clone();
                sorted.sort_unstable();
                for f in [1usize, 2, 8, 64] {
                    if f >= n {
                        continue;
                    }
                    for uniform in [false, true] {
                        assert_eq!(
                            kth_smallest(&keys, f, uniform, &mut scratch),
                            sorted[f - 1],
                            "n={n} f={f} uniform={uniform} crowded={crowded}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn random_group_in_list_order_rest_keeps_order() {
        let n = 30u32;
        let mut p = PendingSet::new(n as usize, 1);
        p.set_scheduler(Scheduler::Random);
        let v = vec![1.0f32; n as usize];
        let order: Vec<u32> = (0..n).map(|i| (i * 7) % n).collect();
        for &q in &order {
            p.enqueue(q, 0, 1.0);
        }
        let mut g = Vec::new();
        p.select(5, CTX, &v, &mut g);
        let pos = |q: u32| order.iter().position(|&x| x == q).unwrap();
        assert!(g.windows(2).all(|w| pos(w[0].0) < pos(w[1].0)));
        assert!(p.list.windows(2).all(|w| pos(w[0]) < pos(w[1])));
        assert_eq!(p.len(), 25);
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
}
