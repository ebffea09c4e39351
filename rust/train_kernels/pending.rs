//! The unlayered schedulers' bookkeeping of the pending set of every row: the merge of
//! a step's spikes into the sorted pending keys (R3.2, R4.3.2) and the selection of
//! each row's group (R4.3.4, R5.2-R5.4).

use super::deliver::bad;
use crate::error::EngineError;
use crate::scheduler::Scheduler;

/// The pending set of every row after a fire phase (R4.3.2), as sorted keys
/// `row * N + neuron`.
#[derive(Debug, Default, PartialEq)]
pub struct Pending {
    /// Sorted, distinct keys `row * N + neuron`.
    pub keys: Vec<i64>,
    /// Number of pending neurons of each row.
    pub counts: Vec<i64>,
    /// The first (lowest) pending neuron of each row, `-1` when none.
    pub first: Vec<i64>,
}

/// Adds the spikes `fired` (sorted flat positions `row * N + neuron`) of the neurons
/// with outgoing projections (`is_source[neuron]`) to the pending keys `pend` (sorted,
/// distinct): a neuron already pending (refractory dropout) keeps its one entry.
/// `fired` and `pend` must lie in `[0, n_rows * N)` ([`check_keys`]).
pub fn merge_pending(pend: &[i64], fired: &[i64], is_source: &[bool], n_rows: usize) -> Pending {
    let n = is_source.len() as i64;
    let mut keys = Vec::with_capacity(pend.len() + fired.len());
    let mut new = fired
        .iter()
        .copied()
        .filter(|&f| is_source[(f % n) as usize])
        .peekable();
    let mut old = pend.iter().copied().peekable();
    loop {
        let next = match (old.peek(), new.peek()) {
            (Some(&a), Some(&b)) if a < b => old.next(),
            (Some(&a), Some(&b)) if a > b => new.next(),
            (Some(_), Some(_)) => {
                new.next();
                old.next()
            }
            (Some(_), None) => old.next(),
            (None, Some(_)) => new.next(),
            (None, None) => break,
        };
        keys.extend(next);
    }
    let mut counts = vec![0i64; n_rows];
    let mut first = vec![-1i64; n_rows];
    for &key in &keys {
        let r = (key / n) as usize;
        if counts[r] == 0 {
            first[r] = key % n;
        }
        counts[r] += 1;
    }
    Pending {
        keys,
        counts,
        first,
    }
}

/// Checks that `keys` are flat positions in `[0, n_rows * n_neu)`.
pub fn check_keys(keys: &[i64], n_rows: usize, n_neu: usize) -> Result<(), i64> {
    let end = (n_rows * n_neu) as i64;
    match keys.iter().find(|&&k| k < 0 || k >= end) {
        Some(&bad) => Err(bad),
        None => Ok(()),
    }
}

/// Checks the arguments of [`merge_pending`]: the keys of `pend` and of `fired` in
/// `[0, n_rows * n_neu)` ([`check_keys`]), each sorted and distinct.
pub fn check_merge(
    pend: &[i64],
    fired: &[i64],
    n_rows: usize,
    n_neu: usize,
) -> Result<(), EngineError> {
    for (name, keys) in [("pend", pend), ("fired", fired)] {
        check_keys(keys, n_rows, n_neu).map_err(|k| bad(name, k, "key out of range"))?;
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(name, "unsorted", "keys must be sorted and distinct"));
        }
    }
    Ok(())
}

/// Checks the arguments of [`select_pending`] that do not depend on the scheduler:
/// `f >= 1`, `counts >= 0` summing to `pend.len()`, every row's keys its own, sorted
/// and distinct.
pub fn check_pending(
    pend: &[i64],
    counts: &[i64],
    f: usize,
    n_neu: usize,
) -> Result<(), EngineError> {
    if f == 0 {
        return Err(bad("f", f, "must be >= 1"));
    }
    if counts.iter().any(|&x| x < 0) || counts.iter().sum::<i64>() != pend.len() as i64 {
        let reason = "must be >= 0 and sum to len(pend)";
        return Err(bad("counts", format!("{counts:?}"), reason));
    }
    check_keys(pend, counts.len(), n_neu).map_err(|k| bad("pend", k, "key out of range"))?;
    let mut start = 0usize;
    for (r, &n) in counts.iter().enumerate() {
        let row = &pend[start..start + n as usize];
        start += n as usize;
        let (lo, hi) = ((r * n_neu) as i64, ((r + 1) * n_neu) as i64);
        if row.iter().any(|&k| k < lo || k >= hi) || row.windows(2).any(|w| w[0] >= w[1]) {
            let reason = "keys must be sorted, distinct and in their row";
            return Err(bad("pend", format!("row {r}"), reason));
        }
    }
    Ok(())
}

/// The priority of the pending neurons of one row in [`select_pending`].
#[derive(Clone, Copy, Debug)]
pub enum SelectKeys<'a> {
    /// R5.2: smallest sequence number first; `seq` is `[rows, N]`.
    Fifo {
        /// Sequence numbers of every neuron of every row.
        seq: &'a [i64],
    },
    /// R5.3: smallest `h(seed, sample, t, k, neuron, 0)` first; `state` is the hash
    /// state after `(seed, sample, t, k)` of each row.
    Random {
        /// Hash state of each row.
        state: &'a [i64],
    },
    /// R5.4: largest `v_pre + jitter * u(.., neuron, 2)` first (float32); `vpre` is
    /// `[rows, N]`, `state` as for `Random` (needed when `jitter > 0`).
    Momentum {
        /// Membranes at the latest spike.
        vpre: &'a [f32],
        /// Hash state of each row (jitter only).
        state: Option<&'a [i64]>,
        /// Jitter amplitude.
        jitter: f32,
    },
}

impl<'a> SelectKeys<'a> {
    /// The keys of `scheduler` (`"fifo"` with `seq`, `"random"` with `state`,
    /// `"momentum"` with `vpre`, and `state` when `jitter > 0`) for `n_rows` rows of
    /// `n_neu` neurons, each array checked to have one value per row (`state`) or per
    /// neuron of every row (`seq`, `vpre`); arrays that the scheduler does not use are
    /// ignored.
    pub fn new(
        scheduler: &str,
        seq: Option<&'a [i64]>,
        state: Option<&'a [i64]>,
        vpre: Option<&'a [f32]>,
        jitter: f32,
        n_rows: usize,
        n_neu: usize,
    ) -> Result<SelectKeys<'a>, EngineError> {
        let grid = n_rows * n_neu;
        let sized = |field: &str, len: usize, want: usize| match len == want {
            true => Ok(()),
            false => Err(bad(field, len, "has the wrong number of elements")),
        };
        match (scheduler.parse::<Scheduler>().ok(), seq, state, vpre) {
            (Some(Scheduler::Fifo), Some(seq), _, _) => {
                sized("seq", seq.len(), grid)?;
                Ok(SelectKeys::Fifo { seq })
            }
            (Some(Scheduler::Random), _, Some(state), _) => {
                sized("state", state.len(), n_rows)?;
                Ok(SelectKeys::Random { state })
            }
            (Some(Scheduler::Momentum { .. }), _, state, Some(vpre)) => {
                sized("vpre", vpre.len(), grid)?;
                match state {
                    Some(s) => sized("state", s.len(), n_rows)?,
                    None if jitter > 0.0 => {
                        let reason = "momentum with jitter > 0 needs the hash states";
                        return Err(bad("state", "None", reason));
                    }
                    None => {}
                }
                Ok(SelectKeys::Momentum {
                    vpre,
                    state,
                    jitter,
                })
            }
            _ => {
                let reason = "must be fifo (with seq), random (with state) or momentum (with vpre)";
                Err(bad("scheduler", scheduler, reason))
            }
        }
    }

    /// Smaller is delivered first; equal keys go to the smaller neuron id.
    #[inline]
    fn key(&self, row: usize, neuron: usize, n_neu: usize) -> i64 {
        match *self {
            SelectKeys::Fifo { seq } => seq[row * n_neu + neuron],
            SelectKeys::Random { state } => i64::from(crate::rng::hash_finish(
                state[row] as u32,
                neuron as u32,
                crate::rng::STREAM_RANDOM,
            )),
            SelectKeys::Momentum {
                vpre,
                state,
                jitter,
            } => {
                let mut k = vpre[row * n_neu + neuron];
                if jitter > 0.0 {
                    if let Some(st) = state {
                        let h = crate::rng::hash_finish(
                            st[row] as u32,
                            neuron as u32,
                            crate::rng::STREAM_JITTER,
                        );
                        k += jitter * crate::rng::to_uniform(h);
                    }
                }
                // Larger float first: the keys are positive, whose bit patterns grow with them.
                (1i64 << 31) - i64::from(k.to_bits() as i32)
            }
        }
    }
}

/// The group of every row (R4.3.4): all its pending neurons when there are at most
/// `f`, otherwise the `f` with the smallest keys.
#[derive(Debug, Default, PartialEq)]
pub struct Selection {
    /// Row of each selected entry, ascending (within a row: ascending neuron id).
    pub rows: Vec<i64>,
    /// Neuron of each selected entry.
    pub neurons: Vec<i64>,
    /// Its key `row * N + neuron`.
    pub flat: Vec<i64>,
    /// Index of the first selected entry of each row.
    pub offsets: Vec<i64>,
    /// The pending keys left after the selection (sorted).
    pub left: Vec<i64>,
}

/// Selects the group of every row from the pending keys `pend` (sorted, distinct,
/// counted per row in `counts`; [`merge_pending`]), with forward group size `f >= 1`.
/// The key arrays of `keys` must cover `counts.len()` rows of `n_neu` neurons.
pub fn select_pending(
    pend: &[i64],
    counts: &[i64],
    f: usize,
    n_neu: usize,
    keys: SelectKeys<'_>,
) -> Selection {
    let mut sel = Selection {
        offsets: Vec::with_capacity(counts.len()),
        ..Selection::default()
    };
    let mut scratch: Vec<(i64, usize)> = Vec::new();
    let mut start = 0usize;
    for (r, &c) in counts.iter().enumerate() {
        let c = c as usize;
        sel.offsets.push(sel.flat.len() as i64);
        let entries = &pend[start..start + c];
        start += c;
        if c <= f {
            for &key in entries {
                sel.rows.push(r as i64);
                sel.neurons.push(key - (r * n_neu) as i64);
                sel.flat.push(key);
            }
            continue;
        }
        scratch.clear();
        scratch.extend(
            entries
                .iter()
                .enumerate()
                .map(|(slot, &key)| (keys.key(r, key as usize - r * n_neu, n_neu), slot)),
        );
        scratch.select_nth_unstable(f - 1);
        let chosen = &mut scratch[..f];
        chosen.sort_unstable_by_key(|&(_, slot)| slot);
        let mut next = 0usize;
        for (slot, &key) in entries.iter().enumerate() {
            if next < f && chosen[next].1 == slot {
                next += 1;
                sel.rows.push(r as i64);
                sel.neurons.push(key - (r * n_neu) as i64);
                sel.flat.push(key);
            } else {
                sel.left.push(key);
            }
        }
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_kernels::tests::field;

    #[test]
    fn merge_and_select_pending() {
        // 2 rows of 5 neurons; neuron 4 has no outgoing projection.
        let is_source = [true, true, true, true, false];
        let p = merge_pending(&[1, 7], &[1, 3, 4, 5, 9], &is_source, 3);
        assert_eq!(p.keys, vec![1, 3, 5, 7]);
        assert_eq!(p.counts, vec![2, 2, 0]);
        assert_eq!(p.first, vec![1, 0, -1]);
        // fifo: sequence numbers decide; ties cannot happen, so check the ordering.
        let seq = [0, 5, 0, 1, 0, 9, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        let s = select_pending(&p.keys, &p.counts, 1, 5, SelectKeys::Fifo { seq: &seq });
        assert_eq!(s.flat, vec![3, 7]);
        assert_eq!(s.rows, vec![0, 1]);
        assert_eq!(s.neurons, vec![3, 2]);
        assert_eq!(s.offsets, vec![0, 1, 2]);
        assert_eq!(s.left, vec![1, 5]);
        // momentum: the largest v_pre first, ties to the smaller id, output in id order.
        let vpre = [
            0.0, 1.5, 0.0, 1.5, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0f32,
        ];
        let keys = SelectKeys::Momentum {
            vpre: &vpre,
            state: None,
            jitter: 0.0,
        };
        let s = select_pending(&p.keys, &p.counts, 1, 5, keys);
        assert_eq!(s.flat, vec![1, 5]);
        let s = select_pending(&p.keys, &p.counts, 2, 5, keys);
        assert_eq!(s.flat, vec![1, 3, 5, 7]);
        assert!(s.left.is_empty());
        // random: the smallest hash of (state, neuron, stream 0).
        let state = [11i64, 12, 13];
        let s = select_pending(
            &p.keys,
            &p.counts,
            1,
            5,
            SelectKeys::Random { state: &state },
        );
        let h = |st: u32, n: u32| crate::rng::hash_finish(st, n, crate::rng::STREAM_RANDOM);
        let best0 = if h(11, 1) < h(11, 3) { 1 } else { 3 };
        let best1 = if h(12, 0) < h(12, 2) { 5 } else { 7 };
        assert_eq!(s.flat, vec![best0, best1]);
        assert_eq!(check_keys(&[0, 14], 3, 5), Ok(()));
        assert_eq!(check_keys(&[15], 3, 5), Err(15));
    }

    #[test]
    fn checks_name_the_bad_argument() {
        assert!(check_merge(&[1, 7], &[1, 3, 9], 2, 5).is_ok());
        assert_eq!(field(check_merge(&[1, 10], &[], 2, 5)), "pend");
        assert_eq!(field(check_merge(&[7, 1], &[], 2, 5)), "pend");
        assert_eq!(field(check_merge(&[], &[3, 3], 2, 5)), "fired");
        assert_eq!(field(check_merge(&[], &[-1], 2, 5)), "fired");
        assert!(check_pending(&[1, 7], &[1, 1], 1, 5).is_ok());
        assert_eq!(field(check_pending(&[1, 7], &[1, 1], 0, 5)), "f");
        assert_eq!(field(check_pending(&[1, 7], &[2, 1], 1, 5)), "counts");
        assert_eq!(field(check_pending(&[1, 7], &[0, 2], 1, 5)), "pend");
    }

    #[test]
    fn select_keys_take_the_arrays_of_their_scheduler() {
        let (seq, state, vpre) = ([0i64; 10], [0i64; 2], [0.0f32; 10]);
        let keys =
            |name, seq, state, vpre, jitter| SelectKeys::new(name, seq, state, vpre, jitter, 2, 5);
        let fifo = keys("fifo", Some(&seq[..]), None, None, 0.0).unwrap();
        assert!(matches!(fifo, SelectKeys::Fifo { .. }));
        let random = keys("random", Some(&seq[..]), Some(&state[..]), None, 0.0).unwrap();
        assert!(matches!(random, SelectKeys::Random { .. }));
        let momentum = keys("momentum", None, None, Some(&vpre[..]), 0.0).unwrap();
        assert!(matches!(momentum, SelectKeys::Momentum { state: None, .. }));
        let jitter = keys("momentum", None, Some(&state[..]), Some(&vpre[..]), 0.5).unwrap();
        assert!(matches!(
            jitter,
            SelectKeys::Momentum { state: Some(_), .. }
        ));
        assert_eq!(
            field(keys("momentum", None, None, Some(&vpre[..]), 0.5)),
            "state"
        );
        assert_eq!(field(keys("fifo", Some(&seq[..5]), None, None, 0.0)), "seq");
        assert_eq!(
            field(keys("random", None, Some(&state[..1]), None, 0.0)),
            "state"
        );
        assert_eq!(
            field(keys("momentum", None, None, Some(&vpre[..9]), 0.0)),
            "vpre"
        );
        assert_eq!(
            field(keys("fifo", None, Some(&state[..]), None, 0.0)),
            "scheduler"
        );
        assert_eq!(
            field(keys("layered", Some(&seq[..]), None, None, 0.0)),
            "scheduler"
        );
    }
}
