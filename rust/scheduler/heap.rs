//! R5.4 `momentum` without jitter: the pending neurons in a 4-ary max-heap of
//! `(v_pre bits, !id)`. The key is pushed again when a pending neuron fires again
//! (refractory dropout) with a new `v_pre`, and stale entries are skipped lazily when
//! popped.

use super::{momentum_key, Multiplicities};

/// The queue of `momentum` without jitter.
#[derive(Debug, Default)]
pub(super) struct MomentumHeap {
    heap: Heap4,
}

impl MomentumHeap {
    /// Records a spike of neuron `q` with membrane value `v_pre` (its multiplicity is
    /// already counted).
    #[inline(always)]
    pub(super) fn push(&mut self, q: u32, v_pre: f32) {
        self.heap.push(momentum_key(v_pre, q));
    }

    /// The group: the `f` pending neurons with the largest `v_pre` (the latest one of
    /// each: an entry whose key is not the neuron's current `v_pre` is stale), ties to
    /// the smaller id.
    #[inline(always)]
    pub(super) fn select(
        &mut self,
        table: &mut Multiplicities,
        f: usize,
        v_pre: &[f32],
        group: &mut Vec<(u32, u32)>,
    ) {
        while group.len() < f {
            let Some(e) = self.heap.pop() else { break };
            let q = !(e as u32);
            let bits = (e >> 32) as u32;
            if table.mult[q as usize] > 0 && v_pre[q as usize].to_bits() == bits {
                table.take(q, group);
            }
        }
        if table.count == 0 {
            // Only stale entries can be left: forget them.
            self.heap.clear();
        }
    }

    pub(super) fn drop_all(&mut self, table: &mut Multiplicities) {
        table.forget(self.heap.iter().map(|&e| !(e as u32)));
        self.heap.clear();
    }
}

/// A 4-ary max-heap of `u64` keys: half the depth of a binary heap, and the four
/// children of a node share a cache line. Equal keys are the same neuron with the same
/// `v_pre` (the key contains the id), so any max-heap pops the same sequence.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
