//! Non-prioritised input (R4.13): the input entries of the pending set and the
//! selection of a group over them and the pending neurons.
//!
//! With `prioritize_input = false` forward step 0 enqueues the kept non-zero values of
//! the frame as input entries `(0, i)` carrying `x_i(t)`, in increasing index order:
//! they take the first sequence numbers of the timestep (the pending set is empty at
//! its start), so here they are a list in index order, apart from the neurons'
//! [`PendingSet`]. Every scheduler takes them as R4.13 says:
//! - `layered`: population 0, the lowest: all of them form the group (no neuron is
//!   pending then: they are all selected at the end of step 0);
//! - `fifo`: their sequence numbers are smaller than every pending neuron's: the first
//!   `F` of them, then pending neurons for the slots left;
//! - `random`: keys `h(seed, sample, t, k, i, 5)` for them and the neurons' keys of
//!   R5.3, the `F` smallest; on equal keys an input entry first, then the smaller input
//!   index, then the smaller neuron id.
//!
//! `momentum` is refused with non-prioritised input (`validate_config`). None of this
//! runs with prioritised input (the default): the event loop is compiled without it.

use crate::rng::{hash_finish, hash_prefix, STREAM_RANDOM, STREAM_RANDOM_INPUT};
use crate::scheduler::{kth_smallest, PendingSet, Scheduler, SelectCtx};

/// The pending input entries of a timestep (R4.13) and the input entries of the group
/// of a forward step. Buffers are kept between timesteps and samples.
#[derive(Debug, Default)]
pub(crate) struct PendingInputs {
    /// Input indices of the entries, increasing; the pending ones are `start..`.
    index: Vec<u32>,
    /// Their values `x_i(t)`.
    value: Vec<f32>,
    /// The first pending entry (the entries before it were delivered).
    start: usize,
    /// The input entries of the group selected last, in index order, and their values.
    pub(super) group_index: Vec<u32>,
    pub(super) group_value: Vec<f32>,
    /// Work buffers of the `random` selection: one key per pending entry, and the
    /// buffer of `kth_smallest`.
    keys: Vec<u64>,
    scratch: Vec<u64>,
}

impl PendingInputs {
    /// Number of pending input entries.
    #[inline(always)]
    pub(super) fn len(&self) -> usize {
        self.index.len() - self.start
    }

    /// Whether no input entry is pending.
    #[inline(always)]
    pub(super) fn is_empty(&self) -> bool {
        self.start == self.index.len()
    }

    /// R6.4: drops the pending input entries (they are not spikes: nothing is counted).
    #[inline(always)]
    pub(super) fn drop_all(&mut self) {
        self.index.clear();
        self.value.clear();
        self.start = 0;
    }

    /// R4.13: the kept non-zero inputs of a frame (`index` increasing) enter the set,
    /// which is empty at the start of a timestep.
    pub(super) fn enqueue(&mut self, index: &[u32], value: &[f32]) {
        debug_assert!(
            self.is_empty(),
            "the pending set is empty at a timestep's start"
        );
        self.drop_all();
        self.index.extend_from_slice(index);
        self.value.extend_from_slice(value);
    }

    /// R4.13 with R5: picks the group of forward step `ctx.k` among the pending input
    /// entries and `pending` neurons, and removes it: its input entries go to
    /// `group_index` / `group_value` (index order), its neurons to `group`.
    pub(super) fn select(
        &mut self,
        pending: &mut PendingSet,
        scheduler: Scheduler,
        f: usize,
        ctx: SelectCtx,
        v_pre: &[f32],
        group: &mut Vec<(u32, u32)>,
    ) {
        self.group_index.clear();
        self.group_value.clear();
        if self.is_empty() {
            pending.select(f, ctx, v_pre, group);
            return;
        }
        group.clear();
        match scheduler {
            // Population 0 is the lowest present: the group is every input entry.
            Scheduler::Layered => self.take_first(self.len()),
            Scheduler::Random => self.select_random(pending, f, ctx, v_pre, group),
            // `fifo` (`momentum` is refused with non-prioritised input, and is never
            // asked here): the input entries have the smallest sequence numbers.
            _ => {
                let n = f.min(self.len());
                self.take_first(n);
                if f > n && !pending.is_empty() {
                    pending.select(f - n, ctx, v_pre, group);
                }
            }
        }
    }

    /// Moves the first `n` pending input entries to the group.
    fn take_first(&mut self, n: usize) {
        let (a, b) = (self.start, self.start + n);
        self.group_index.extend_from_slice(&self.index[a..b]);
        self.group_value.extend_from_slice(&self.value[a..b]);
        self.start = b;
        if self.is_empty() {
            self.drop_all();
        }
    }

    /// R4.13 `random`: the `f` smallest keys among the input entries (stream 5) and the
    /// pending neurons (stream 0, R5.3); equal keys: input entries first, then the
    /// smaller index or id.
    ///
    /// Each key is `(hash << 32) | position`, the input entries first (index order),
    /// then the pending neurons in list order: within one stream the hash is a bijection
    /// of the index (R5.5), so only an input entry and a neuron can share a hash, and the
    /// position puts the input entry first.
    fn select_random(
        &mut self,
        pending: &mut PendingSet,
        f: usize,
        ctx: SelectCtx,
        v_pre: &[f32],
        group: &mut Vec<(u32, u32)>,
    ) {
        let list = pending.random_list();
        let n_in = self.len();
        if n_in + list.len() <= f {
            self.take_first(n_in);
            pending.select(f, ctx, v_pre, group);
            return;
        }
        let prefix = hash_prefix(ctx.seed, ctx.sample, ctx.t, ctx.k);
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        let hashes = (self.index[self.start..].iter())
            .map(|&i| hash_finish(prefix, i, STREAM_RANDOM_INPUT))
            .chain(list.iter().map(|&q| hash_finish(prefix, q, STREAM_RANDOM)));
        keys.extend(
            hashes
                .enumerate()
                .map(|(n, h)| (u64::from(h) << 32) | n as u64),
        );
        let mut scratch = std::mem::take(&mut self.scratch);
        let kth = kth_smallest(&keys, f, true, &mut scratch);
        self.scratch = scratch;
        let mut kept = self.start;
        for (n, &key) in keys[..n_in].iter().enumerate() {
            let (i, x) = (self.index[self.start + n], self.value[self.start + n]);
            if key <= kth {
                self.group_index.push(i);
                self.group_value.push(x);
            } else {
                self.index[kept] = i;
                self.value[kept] = x;
                kept += 1;
            }
        }
        self.index.truncate(kept);
        self.value.truncate(kept);
        if self.is_empty() {
            self.drop_all();
        }
        pending.take_listed(|n| keys[n_in + n] <= kth, group);
        self.keys = keys;
    }
}
