//! Integrate and fire (R4.3.1-2): `V += I` over the touched populations (whole, or the
//! touched pixels of a sparse conv/pool target), the strict threshold test, and the
//! reset of the neurons that fire (`v_pre`, the reset mode of R4.8, refractory flag with
//! its dropout draw, R4.6); their ids are left in increasing order. A settling
//! population (R1.6) that settles in the step is integrated whole, with its bias,
//! debts and carried current (R4.7, R4.9), and its synaptic currents decay and take the
//! step's current (R4.12). The finiteness checks of R8.3.

use std::ops::Range;

use super::deliver::kept_rows;
use super::workspace::{split_state, Workspace};
use super::workspace::{DeferredRows, DEFERRED};
use crate::kernels::add_rows;
use crate::network::{Network, ResetMode};
use crate::rng::{uniform, STREAM_DROPOUT};

/// What the fire phase (R4.3.2) needs besides the neurons' state: the refractory
/// dropout probability of each population and the arguments of its random function.
pub(super) struct FireCtx<'a> {
    pub(super) dropout: &'a [f64],
    pub(super) seed: u64,
    pub(super) sample: u32,
    pub(super) t: u32,
    pub(super) k: u32,
}

/// R4.3.1 (integrate), the threshold test of R4.3.2 and the reset of the neurons that
/// fire (`v_pre <- V`, the reset of R4.8, refractory flag with its dropout draw). These
/// touch only each firing neuron's own state, so they are done population by population
/// as the spikes are found; the counters and the pending set, which depend on the order
/// of the spikes, are left to the caller. A due population that is touched settles
/// (R4.7): it is integrated whole with its bias and debts, and is no longer due.
///
/// Leaves the ids of the neurons that fired in `ws.fired`, in increasing id order, with
/// one `(population, start, end)` range of it per population in `ws.fired_pops`, and
/// clears the current buffer and the touch bookkeeping.
///
/// R8.3, with `CHECK`: if a membrane or a synaptic current (R4.12) became non-finite,
/// returns `Err((population, id))`
/// of the first such neuron (lowest id) at once; the workspace is then left dirty (the
/// caller ends the sample, and [`Workspace::reset`] repairs it). Without `CHECK` (the
/// fast path, see `event_loop::run_prepared`) it never fails.
///
/// `SETTLING` is `net.any_settling`: without it the settling code is compiled out, and a
/// version-1 network runs exactly the version-1 pass. `CARRY` (implies `SETTLING`): the
/// carried currents are in use (scheduler `layered` and a recurrent projection, R4.9),
/// and a recurrent target that settles adds its `C`. A synaptic population (R4.12) is a
/// settling one: its code is under `SETTLING` too. `MULTI`: a population may keep
/// several dense rows (`Touch::deferred`), added in the pass; without, at most one.
#[inline(always)]
pub(super) fn integrate<
    const CHECK: bool,
    const SETTLING: bool,
    const CARRY: bool,
    const MULTI: bool,
>(
    net: &Network,
    ws: &mut Workspace,
    fc: &FireCtx,
) -> Result<(), (usize, u32)> {
    let (cur, carry, syn) =
        split_state::<SETTLING, CARRY>(&mut ws.cur, ws.v.len(), net.any_recurrent);
    let touch = &mut ws.touch;
    touch.pops.sort_unstable();
    ws.fired.clear();
    ws.fired_pops.clear();
    for &p in &touch.pops {
        let lo = net.pop_offset[p];
        let hi = net.pop_offset[p + 1];
        let channels = touch.channels[p];
        let start = ws.fired.len();
        // R1.6, R4.7: a settling population settles in the first step of the timestep
        // that delivers into it (the event loop also touches it in step 0 when the
        // input projects into it, and in a settle-only step); then it is integrated
        // whole, bias and debts included.
        let settling = SETTLING && net.settling[p];
        let settles = settling && ws.due[p];
        let synaptic = SETTLING && net.synaptic[p];
        if settles {
            ws.due[p] = false;
            ws.n_due -= 1;
        }
        // The slots of the neurons that cross their threshold go to `ws.fired`.
        let sorted = if touch.pop_full[p] || settles {
            for &q in &touch.lists[p] {
                touch.neuron[q as usize] = false;
            }
            touch.lists[p].clear();
            let v = &mut ws.v[lo..hi];
            let c = &mut cur[lo..hi];
            let r = &ws.refractory[lo..hi];
            let th = &net.threshold[lo..hi];
            let mut buf = [(&[][..], 0.0f32); DEFERRED];
            let rows = take_kept::<MULTI>(net, &mut touch.deferred[p], &mut buf);
            let finite = if settling {
                let row = all_but_last::<MULTI>(rows, c);
                let settle = settles.then(|| Settle {
                    bias: &net.bias[lo..hi],
                    debt: (net.reset[p] == ResetMode::SubtractDelayed)
                        .then(|| &mut ws.debt[lo..hi]),
                    carry: (CARRY && net.recurrent_target[p]).then(|| &mut carry[lo..hi]),
                });
                let fired = &mut ws.fired;
                if synaptic {
                    let sy = Synaptic {
                        s: &mut syn[lo..hi],
                        alpha: &net.alpha[lo..hi],
                    };
                    integrate_synaptic::<CHECK>(v, c, r, th, row, settle, sy, lo, fired)
                } else {
                    integrate_settling::<CHECK, false>(
                        v,
                        c,
                        r,
                        th,
                        row,
                        settle,
                        &mut [],
                        &[],
                        lo,
                        fired,
                    )
                }
            } else {
                integrate_full::<CHECK, MULTI>(v, c, r, th, rows, lo, &mut ws.fired)
            };
            if CHECK && !finite {
                return Err((p, first_non_finite(net, &ws.v, syn, lo..hi)));
            }
            // In slot order, which is id order if slot = id.
            channels == 1
        } else {
            let mut finite = true;
            for &q0 in &touch.lists[p] {
                let q = q0 as usize;
                touch.neuron[q] = false;
                let span = q..q + channels;
                let (v, c) = (&mut ws.v[span.clone()], &mut cur[span.clone()]);
                let (r, th) = (&ws.refractory[span.clone()], &net.threshold[span.clone()]);
                finite &= if synaptic {
                    // R4.12: not the settle (that is whole): the current charges `S`.
                    let s = &mut syn[span.clone()];
                    integrate_span_synaptic::<CHECK>(v, c, s, r, th, q, &mut ws.fired)
                } else if settling {
                    integrate_span::<CHECK, true>(v, c, r, th, q, &mut ws.fired)
                } else {
                    integrate_span::<CHECK, false>(v, c, r, th, q, &mut ws.fired)
                };
            }
            if CHECK && !finite {
                return Err((p, first_non_finite(net, &ws.v, syn, lo..hi)));
            }
            touch.lists[p].clear();
            false // in touch order
        };
        touch.pop_touched[p] = false;
        touch.pop_full[p] = false;
        if ws.fired.len() == start {
            continue;
        }
        // R4.3.2 reset (R4.8) and refractory flag (R4.6); slots to ids.
        let pd = fc.dropout[p];
        let mode = if SETTLING {
            net.reset[p]
        } else {
            ResetMode::Zero
        };
        if mode == ResetMode::Zero {
            for f in &mut ws.fired[start..] {
                let sq = *f as usize;
                let id = net.id_of[sq];
                ws.v_pre[id as usize] = ws.v[sq];
                ws.v[sq] = 0.0;
                ws.refractory[sq] = !(pd > 0.0
                    && (uniform(fc.seed, fc.sample, fc.t, fc.k, id, STREAM_DROPOUT) as f64) < pd);
                *f = id;
            }
        } else {
            // Refractory dropout needs reset zero (R4.6, validated): refractory.
            for f in &mut ws.fired[start..] {
                let sq = *f as usize;
                let id = net.id_of[sq];
                ws.v_pre[id as usize] = ws.v[sq];
                match mode {
                    ResetMode::Subtract => ws.v[sq] -= net.threshold[sq],
                    ResetMode::SubtractDelayed => ws.debt[sq] = true,
                    ResetMode::Zero | ResetMode::None => {}
                }
                ws.refractory[sq] = true;
                *f = id;
            }
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
pub(super) fn is_finite(x: f32) -> bool {
    x.abs() <= f32::MAX
}

/// R8.3: the id of the lowest-id neuron in the slots `slots` (one population) whose
/// membrane or synaptic current (`syn`, R4.12; empty when the network has none) is not
/// finite (there is one: the caller saw it).
#[cold]
fn first_non_finite(net: &Network, v: &[f32], syn: &[f32], slots: Range<usize>) -> u32 {
    slots
        .filter(|&sq| !is_finite(v[sq]) || syn.get(sq).is_some_and(|&s| !is_finite(s)))
        .map(|sq| net.id_of[sq])
        .min()
        .expect("a non-finite membrane was seen")
}

/// R4.3.1-2 over the contiguous slots `lo..lo + v.len()` (the channels of one pixel of a
/// channel-last population): `V += I` unless refractory, `I <- 0`, and the slots with
/// `V > threshold` pushed to `fired` in increasing order. Eight lanes at a time with a
/// bit mask of the crossings, so that a pixel of 8-32 channels is a few vector
/// operations. In a population that is not `SETTLING` a refractory membrane is 0 (reset
/// at its spike, leaked as 0) and cannot fire; in a settling one (R1.6) it may be left
/// above its threshold by its reset (R4.8), and the test excludes refractory neurons.
#[inline(always)]
fn integrate_span<const CHECK: bool, const SETTLING: bool>(
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
            mask |= (((nv > t8[i]) & !(SETTLING & r8[i])) as u32) << i;
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
        if *v > *t && !(SETTLING && *r) {
            fired.push((base + i) as u32);
        }
    }
    finite
}

/// [`integrate_span`] of a synaptic population (R4.12) outside its settle: the step's
/// current `c` first charges the synaptic currents `s` (`S <- S + I`, also of a
/// refractory neuron, whose membrane discards it). With `CHECK`, also whether every `S`
/// is finite (R8.3). Out of line (see [`integrate_synaptic`]).
#[cold]
#[inline(never)]
fn integrate_span_synaptic<const CHECK: bool>(
    v: &mut [f32],
    c: &mut [f32],
    s: &mut [f32],
    r: &[bool],
    th: &[f32],
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    let c0 = &c[..s.len()];
    for i in 0..s.len() {
        s[i] += c0[i];
    }
    let finite = !CHECK || s.iter().all(|&x| is_finite(x));
    integrate_span::<CHECK, true>(v, c, r, th, lo, fired) & finite
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

/// Takes the dense rows `kept` of a population (`Touch::deferred`; at most one without
/// `MULTI`): their weight rows and scales, written to `buf`.
#[inline(always)]
fn take_kept<'a, 'n, const MULTI: bool>(
    net: &'n Network,
    kept: &mut DeferredRows,
    buf: &'a mut [(&'n [f32], f32); DEFERRED],
) -> &'a [(&'n [f32], f32)] {
    let n = std::mem::take(&mut kept.len);
    let n = if MULTI { n } else { n.min(1) };
    kept_rows(net, &kept.rows[..n], buf)
}

/// For the settling passes, which take one row: adds all kept rows but the last to `c`
/// and returns the last.
#[inline(always)]
fn all_but_last<'n, const MULTI: bool>(
    rows: &[(&'n [f32], f32)],
    c: &mut [f32],
) -> Option<(&'n [f32], f32)> {
    rows.split_last().map(|(&last, first)| {
        if MULTI {
            add_rows(c, first);
        }
        last
    })
}

/// R4.3.1-2 over a whole population (`lo` is the slot of its first neuron): `V += I`
/// unless refractory, `I <- 0`, and the slots with `V > threshold` pushed to `fired`
/// in increasing order (the caller turns them into ids when they differ). The summed
/// current of neuron `i` is `cur[i] + s_0 * w_0[i] + s_1 * w_1[i] + ...` over the kept
/// rows `rows = [(w_k, s_k)]` (the population's deferred rows, see `Touch::deferred`:
/// the same float operations as adding the rows to `cur` first; at most one without
/// `MULTI`).
///
/// Chunks of 16 neurons: the update, then a branch-free "any above threshold" test of
/// the chunk (it compiles to a vector compare and a move-mask); only a chunk that has a
/// spike is scanned. Refractory membranes are 0 < threshold: no refractory test needed.
#[inline(always)]
fn integrate_full<const CHECK: bool, const MULTI: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    th: &[f32],
    rows: &[(&[f32], f32)],
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    const CH: usize = 16;
    let n = v.len();
    let (c, r, th) = (&mut c[..n], &r[..n], &th[..n]);
    // Refractory: the current is discarded (R4.3.1, R4.6).
    match (MULTI, rows) {
        (_, []) => {
            for i in 0..n {
                let x = std::mem::take(&mut c[i]);
                v[i] += if r[i] { 0.0 } else { x };
            }
        }
        (false, &[(w, s), ..]) => update_rows(v, c, r, [(w, s)]),
        (true, &[a]) => update_rows(v, c, r, [a]),
        (true, &[a, b]) => update_rows(v, c, r, [a, b]),
        (true, &[a, b, d]) => update_rows(v, c, r, [a, b, d]),
        // No more than 4 rows are kept (checked at compile time below).
        (true, &[a, b, d, e, ..]) => update_rows(v, c, r, [a, b, d, e]),
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

// `integrate_full` sums at most 4 kept rows: a larger `DEFERRED` would drop rows there.
const _: () = assert!(DEFERRED <= 4);

/// The update of [`integrate_full`] with `K` kept rows: `x = cur[i] + s_0 * w_0[i] +
/// ...` (in row order), `cur[i] <- 0`, `V[i] += x` unless refractory.
#[inline(always)]
fn update_rows<const K: usize>(v: &mut [f32], c: &mut [f32], r: &[bool], rows: [(&[f32], f32); K]) {
    let n = v.len();
    let (c, r) = (&mut c[..n], &r[..n]);
    let w: [&[f32]; K] = rows.map(|(w, _)| &w[..n]);
    let s: [f32; K] = rows.map(|(_, s)| s);
    for i in 0..n {
        let mut x = c[i];
        for k in 0..K {
            x += s[k] * w[k][i];
        }
        c[i] = 0.0;
        v[i] += if r[i] { 0.0 } else { x };
    }
}

/// The synaptic currents `s` of a synaptic population (R4.12) and their decays `alpha`.
pub(super) struct Synaptic<'a> {
    pub(super) s: &'a mut [f32],
    pub(super) alpha: &'a [f32],
}

/// What a population that settles in this step (R4.7) adds to R4.3.1: its bias, the
/// debts of its neurons when its reset is `subtract_delayed` (R4.8), and its carried
/// currents when it is a recurrent target under `layered` (R4.9; cleared as added).
pub(super) struct Settle<'a> {
    pub(super) bias: &'a [f32],
    pub(super) debt: Option<&'a mut [bool]>,
    pub(super) carry: Option<&'a mut [f32]>,
}

/// [`integrate_settling`] of a synaptic population (R4.12). Out of line, with its own
/// AVX2 dispatch (the same float operations, see `crate::kernels`): inlined into the
/// event loop, the synaptic passes made the loop of networks without them 1 % slower
/// (callgrind).
#[allow(clippy::too_many_arguments)]
#[cold]
#[inline(never)]
fn integrate_synaptic<const CHECK: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    th: &[f32],
    row: Option<(&[f32], f32)>,
    settle: Option<Settle>,
    syn: Synaptic,
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked at run time just above).
            return unsafe {
                integrate_synaptic_avx2::<CHECK>(v, c, r, th, row, settle, syn, lo, fired)
            };
        }
    }
    integrate_settling::<CHECK, true>(v, c, r, th, row, settle, syn.s, syn.alpha, lo, fired)
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn integrate_synaptic_avx2<const CHECK: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    th: &[f32],
    row: Option<(&[f32], f32)>,
    settle: Option<Settle>,
    syn: Synaptic,
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    integrate_settling::<CHECK, true>(v, c, r, th, row, settle, syn.s, syn.alpha, lo, fired)
}

/// R4.3.1-2 over a whole settling population (R1.6), `lo` the slot of its first neuron.
/// As [`integrate_full`], and with `settle` (the population settles in this step,
/// R4.7) the current of neuron `i` is the summed deliveries plus `bias[i]`, and a
/// neuron that owes its threshold pays it after `V += I` (`V <- V - threshold`, R4.8).
/// A refractory membrane may be above its threshold here (its reset left it there), so
/// the threshold test excludes refractory neurons. With `SYN` (a synaptic population,
/// R4.12) the current passes through its synaptic currents `syn` of decays `alpha`
/// (see [`add_current`]; both empty without). R8.3, with `CHECK`: the membranes after
/// the debts are checked (a non-finite `V + I` stays non-finite), and the synaptic
/// currents.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn integrate_settling<const CHECK: bool, const SYN: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    th: &[f32],
    row: Option<(&[f32], f32)>,
    settle: Option<Settle>,
    syn: &mut [f32],
    alpha: &[f32],
    lo: usize,
    fired: &mut Vec<u32>,
) -> bool {
    const CH: usize = 16;
    let n = v.len();
    let (c, r, th) = (&mut c[..n], &r[..n], &th[..n]);
    match settle {
        Some(Settle { bias, debt, carry }) => {
            let b = &bias[..n];
            match carry {
                Some(cc) => add_current::<true, true, SYN>(v, c, r, row, b, cc, syn, alpha),
                None => add_current::<true, false, SYN>(v, c, r, row, b, &mut [], syn, alpha),
            }
            if let Some(d) = debt {
                let d = &mut d[..n];
                for i in 0..n {
                    let pay = d[i] & !r[i];
                    v[i] = if pay { v[i] - th[i] } else { v[i] };
                    d[i] &= r[i];
                }
            }
        }
        None => add_current::<false, false, SYN>(v, c, r, row, &[], &mut [], syn, &[]),
    }
    let mut finite = !(CHECK && SYN) || syn.iter().all(|&x| is_finite(x));
    let mut vc = v.chunks_exact(CH);
    let mut tc = th.chunks_exact(CH);
    let mut base = 0;
    for (vs, ts) in (&mut vc).zip(&mut tc) {
        // As in `integrate_full`: a branch-free "any above threshold" test of the chunk
        // (only tested against 0, the compares become vector compares), then, in a
        // chunk that has one, the compaction with the refractory flags.
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
            let rs: &[bool; CH] = r[base..base + CH].try_into().expect("chunk");
            let mut ids = [0u32; CH];
            let mut count = 0;
            for i in 0..CH {
                ids[count] = (lo + base + i) as u32;
                count += ((vs[i] > ts[i]) & !rs[i]) as usize;
            }
            fired.extend_from_slice(&ids[..count]);
        }
        base += CH;
    }
    let rest = vc.remainder().iter().zip(tc.remainder());
    for (i, (x, t)) in rest.enumerate() {
        if CHECK {
            finite &= is_finite(*x);
        }
        if *x > *t && !r[base + i] {
            fired.push((lo + base + i) as u32);
        }
    }
    finite
}

/// R4.3.1 for a whole population: `V += I` (the current `cur[i]`, plus `s * w[i]` of
/// the deferred row `row`, plus `bias[i]` when `SETTLE`, plus the carried current
/// `carry[i]` when `CARRY`, which is then cleared), unless refractory; `I <- 0`.
///
/// With `SYN` (a synaptic population, R4.12) the current passes through the synaptic
/// currents `syn`: at the settle (`SETTLE`) `S <- alpha * S + I` (a float32 multiply,
/// then a float32 addition, never fused) and `V += S`; in any other step `S <- S + I`,
/// also for a refractory neuron, and `V += I`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn add_current<const SETTLE: bool, const CARRY: bool, const SYN: bool>(
    v: &mut [f32],
    c: &mut [f32],
    r: &[bool],
    row: Option<(&[f32], f32)>,
    bias: &[f32],
    carry: &mut [f32],
    syn: &mut [f32],
    alpha: &[f32],
) {
    let n = v.len();
    let (c, r) = (&mut c[..n], &r[..n]);
    let b = if SETTLE { &bias[..n] } else { bias };
    let cc = if CARRY { &mut carry[..n] } else { carry };
    let sy = if SYN { &mut syn[..n] } else { syn };
    let al = if SYN && SETTLE { &alpha[..n] } else { alpha };
    // The step's current of neuron `i` (deliveries, bias, carried current) through its
    // synaptic current: what its membrane integrates.
    let mut through = |i: usize, mut x: f32| -> f32 {
        if SETTLE {
            x += b[i];
        }
        if CARRY {
            x += std::mem::take(&mut cc[i]);
        }
        if SYN {
            if SETTLE {
                let decayed = al[i] * sy[i];
                sy[i] = decayed + x;
                x = sy[i];
            } else {
                sy[i] += x;
            }
        }
        x
    };
    match row {
        Some((w, s)) => {
            let w = &w[..n];
            for i in 0..n {
                let x = through(i, c[i] + s * w[i]);
                c[i] = 0.0;
                v[i] += if r[i] { 0.0 } else { x };
            }
        }
        None => {
            for i in 0..n {
                let x = through(i, std::mem::take(&mut c[i]));
                v[i] += if r[i] { 0.0 } else { x };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
