//! R5.3 `random` and R5.4 `momentum` with jitter: the keys change at every forward
//! step, so the pending list (in enqueue order) is scanned at each selection: one key
//! per pending neuron (a plain loop that vectorises in the AVX2 build of the event
//! loop), the `F`-th smallest key by partial selection (`select_nth_unstable`; for
//! `random`, whose keys are uniform hashes, only over the few keys below a bar that
//! about `2F` of them pass), then one pass that splits the list into the group (keys up
//! to that one; keys are distinct) and the rest, both in list order. No sorting.

use super::{momentum_key, Multiplicities, SelectCtx};
use crate::rng::{hash_finish, hash_prefix, to_uniform, STREAM_JITTER, STREAM_RANDOM};

/// Which keys a [`Keyed`] selection draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum KeyOrder {
    /// R5.3: smallest `h(seed, sample, t, k, j, 0)` first.
    Random,
    /// R5.4 with jitter `> 0`: largest `v_pre[j] + jitter * u(seed, sample, t, k, j, 2)`
    /// first.
    Jitter(f32),
}

/// The queue of `random` and of jittered `momentum`: the pending list and the buffers
/// of a selection (kept between selections).
#[derive(Debug)]
pub(super) struct Keyed {
    pub(super) order: KeyOrder,
    /// The pending neurons in enqueue order.
    pub(super) list: Vec<u32>,
    /// One key per entry of `list` (at a selection).
    keys: Vec<u64>,
    /// Work buffer of [`kth_smallest`].
    scratch: Vec<u64>,
    /// The neurons picked by a selection, in list order.
    picked: Vec<u32>,
}

impl Keyed {
    pub(super) fn new(order: KeyOrder) -> Keyed {
        Keyed {
            order,
            list: Vec::new(),
            keys: Vec::new(),
            scratch: Vec::new(),
            picked: Vec::new(),
        }
    }

    /// The group: the `f` pending neurons with the first keys of `order` at `ctx`, in
    /// list order.
    #[inline(always)]
    pub(super) fn select(
        &mut self,
        table: &mut Multiplicities,
        f: usize,
        ctx: SelectCtx,
        v_pre: &[f32],
        group: &mut Vec<(u32, u32)>,
    ) {
        if self.list.len() <= f {
            for &q in &self.list {
                table.take(q, group);
            }
            self.list.clear();
            return;
        }
        // One key per pending neuron, smallest = first chosen; ties cannot happen (the
        // id is part of the key). A plain loop over the list, which vectorises in the
        // AVX2 build of the event loop.
        let prefix = hash_prefix(ctx.seed, ctx.sample, ctx.t, ctx.k);
        // The buffers are taken out of `self` for the selection (locals, not fields, in
        // the loops below) and put back at the end.
        let mut keys = std::mem::take(&mut self.keys);
        keys.clear();
        keys.resize(self.list.len(), 0);
        match self.order {
            KeyOrder::Jitter(jitter) => {
                // Largest `v_pre + jitter * u` first, equal values to the smaller id
                // (R5.4): the complement of the max-order key.
                for (k, &q) in keys.iter_mut().zip(&self.list) {
                    let u = to_uniform(hash_finish(prefix, q, STREAM_JITTER));
                    let key = v_pre[q as usize] + jitter * u;
                    *k = !momentum_key(key, q);
                }
            }
            KeyOrder::Random => {
                // Smallest hash first; equal hashes to the smaller id (R5.3).
                for (k, &q) in keys.iter_mut().zip(&self.list) {
                    *k = ((hash_finish(prefix, q, STREAM_RANDOM) as u64) << 32) | q as u64;
                }
            }
        }
        // The keys are distinct (they contain the id): the group is exactly the keys up
        // to the f-th smallest. Split the list in one pass, keeping the order of the
        // rest (the group goes in list order).
        let mut scratch = std::mem::take(&mut self.scratch);
        let uniform = self.order == KeyOrder::Random;
        let kth = kth_smallest(&keys, f, uniform, &mut scratch);
        self.scratch = scratch;
        // Exactly `f` keys are <= kth. A branch-free pass (each neuron is written to
        // both outputs, and only the right cursor advances): the `f` rare picks would
        // otherwise be mispredicted branches.
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
            table.take(q, group);
        }
        self.list = list;
        self.keys = keys;
        self.picked = picked;
    }

    pub(super) fn drop_all(&mut self, table: &mut Multiplicities) {
        table.forget(self.list.drain(..));
    }
}

/// The `f`-th smallest of `keys` (`0 < f < keys.len()`); `scratch` is a work buffer.
///
/// With `uniform` (the upper 32 bits of the keys are uniformly distributed hashes,
/// R5.3), a branch-free pass first keeps only the keys below a bar that about `2 f` of
/// them pass (raised until at least `f` do), so the partial selection sees few keys.
#[inline(always)]
pub(crate) fn kth_smallest(keys: &[u64], f: usize, uniform: bool, scratch: &mut Vec<u64>) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::CTX;
    use crate::scheduler::{PendingSet, Queue, Scheduler};

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
        let Queue::Keyed(keyed) = &p.queue else {
            panic!("random keeps a keyed queue")
        };
        assert!(keyed.list.windows(2).all(|w| pos(w[0]) < pos(w[1])));
        assert_eq!(p.len(), 25);
    }
}
