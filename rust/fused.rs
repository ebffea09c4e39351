//! Fused kernels of the torch engine's CPU path (float32).
//!
//! The torch engine (`python/asyncsnn/torch/`) runs the semantics of
//! docs/semantics.md vectorised over a batch, under autograd (section 9). One forward
//! step is a handful of element-wise operations on `[rows, N]` tensors and a few
//! gathers and scatters over the delivered entries; on the CPU, the launches of those
//! torch kernels cost more than their arithmetic. The functions here do the same
//! float32 operations, element by element in the same order, in one pass each:
//!
//! * [`step_forward`]: integrate, fire, reset and enqueue (R4.3.1-R4.3.2), with the
//!   refractory mask, the momentum keys and the positions of the spikes;
//! * [`deliver_forward`]: take the selected entries out of the pending values and add
//!   their weight-table rows into the currents (R4.3.4);
//! * [`step_backward`]: the gradient of a step whose surrogate terms are kept for the
//!   neurons that fired only;
//! * [`deliver_backward`]: the gradient of that delivery;
//! * [`merge_pending`] and [`select_pending`]: the unlayered schedulers' bookkeeping of
//!   the pending set of every row (R3.2, R4.3.2, R4.3.4, R5.2-R5.4).
//!
//! They are not the Rust engine: `engine.rs` runs one sample as an event loop; these
//! are the torch engine's batch operations, and the torch engine's equivalence tests
//! run with and without them.

/// Outputs of [`step_forward`], each `[rows * N]` (row-major), written in full.
pub struct StepOutputs<'a> {
    /// Membrane after the reset `U - U s`.
    pub v: &'a mut [f32],
    /// Pending values `Q + s`.
    pub q: &'a mut [f32],
    /// Spikes `s` (0.0 or 1.0).
    pub s: &'a mut [f32],
    /// Membrane before the reset `U` (not written when `None`).
    pub u: Option<&'a mut [f32]>,
    /// Non-refractory mask after the step, `live - s`.
    pub live: &'a mut [f32],
}

/// Positions of the spikes of a [`step_forward`] call, with their membranes and thresholds.
#[derive(Debug, Default, PartialEq)]
pub struct Fired {
    /// Flat positions `row * N + neuron`, ascending.
    pub pos: Vec<i64>,
    /// `U` at those positions.
    pub u: Vec<f32>,
    /// `threshold[neuron]` at those positions.
    pub theta: Vec<f32>,
}

/// Integrate, fire, reset and enqueue (R4.3.1-R4.3.2) for `rows` rows of `N =
/// theta.len()` neurons, with the torch engine's float operations:
/// `U = V + I * live`, `s = [U > theta]`, `V' = U - U s`, `Q' = Q + s`,
/// `live' = live - s`. When `vpre` is given, the momentum keys (R5.4) of the neurons
/// that fire are set to `U` in place (`v_pre + U s` and `v_pre (1 - s) + U s` of the
/// torch code are exactly that, with or without refractory dropout). Returns the
/// spikes' positions and whether every `U` is finite (when it is not, the torch engine
/// redoes the step with selects: `inf * 0` is NaN).
///
/// Every slice must have `rows * N` elements (`theta`: `N`).
pub fn step_forward(
    v: &[f32],
    cur: &[f32],
    live: &[f32],
    q: &[f32],
    theta: &[f32],
    out: StepOutputs<'_>,
    vpre: Option<&mut [f32]>,
) -> (Fired, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx2() {
            // SAFETY: AVX2 is present (checked at run time).
            return unsafe { step_forward_avx2(v, cur, live, q, theta, out, vpre) };
        }
    }
    step_forward_impl(v, cur, live, q, theta, out, vpre)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn step_forward_avx2(
    v: &[f32],
    cur: &[f32],
    live: &[f32],
    q: &[f32],
    theta: &[f32],
    out: StepOutputs<'_>,
    vpre: Option<&mut [f32]>,
) -> (Fired, bool) {
    step_forward_impl(v, cur, live, q, theta, out, vpre)
}

#[inline(always)]
fn step_forward_impl(
    v: &[f32],
    cur: &[f32],
    live: &[f32],
    q: &[f32],
    theta: &[f32],
    mut out: StepOutputs<'_>,
    mut vpre: Option<&mut [f32]>,
) -> (Fired, bool) {
    let n = theta.len();
    let mut fired = Fired::default();
    if n == 0 {
        return (fired, true);
    }
    let rows = v.len() / n;
    let mut bad = 0u32;
    for r in 0..rows {
        let o = r * n;
        let (vr, cr, lr, qr) = (&v[o..o + n], &cur[o..o + n], &live[o..o + n], &q[o..o + n]);
        let so = &mut out.s[o..o + n];
        let (vo, qo, lo) = (
            &mut out.v[o..o + n],
            &mut out.q[o..o + n],
            &mut out.live[o..o + n],
        );
        // One branch-free pass (vectorised); integer reductions for the spike count and
        // the finiteness check (an exponent of all ones is an infinity or a NaN).
        let mut count = 0u32;
        macro_rules! pass {
            ($store_u:expr) => {
                for j in 0..n {
                    let u = vr[j] + cr[j] * lr[j];
                    let hit = u > theta[j];
                    let s = f32::from(u8::from(hit));
                    $store_u(j, u);
                    so[j] = s;
                    vo[j] = u - u * s;
                    qo[j] = qr[j] + s;
                    lo[j] = lr[j] - s;
                    count += u32::from(hit);
                    bad |= u32::from(u.to_bits() & 0x7f80_0000 == 0x7f80_0000);
                }
            };
        }
        match out.u.as_deref_mut() {
            Some(u_all) => {
                let uo = &mut u_all[o..o + n];
                pass!(|j: usize, u: f32| uo[j] = u);
            }
            None => pass!(|_: usize, _: f32| ()),
        }
        if count > 0 {
            for j in 0..n {
                if so[j] > 0.0 {
                    let u = vr[j] + cr[j] * lr[j]; // the same operations as above
                    fired.pos.push((o + j) as i64);
                    fired.u.push(u);
                    fired.theta.push(theta[j]);
                    if let Some(p) = vpre.as_deref_mut() {
                        p[o + j] = u;
                    }
                }
            }
        }
    }
    (fired, bad == 0)
}

/// Backward of [`step_forward`] when the surrogate terms are kept for the spikes only
/// (`U' = V + I live`, `s = H(U - theta)`, `V' = U - U s`, `Q' = Q + s`): with `d` the
/// surrogate derivative at each spike `p = fired[i]`,
/// `gU[p] = gV[p] + ((gQ[p] - gV[p] U[p]) d[i] - gV[p])` and `gU = gV` elsewhere;
/// returns `gU` in `g_u` and `gI = gU live` in `g_cur`. All `[rows * N]` except
/// `fired`, `u_f`, `d_f` (`[F]`, `fired` in range).
#[allow(clippy::too_many_arguments)]
pub fn step_backward(
    g_v: &[f32],
    g_q: &[f32],
    live: &[f32],
    fired: &[i64],
    u_f: &[f32],
    d_f: &[f32],
    g_u: &mut [f32],
    g_cur: &mut [f32],
) {
    g_u.copy_from_slice(g_v);
    for ((&p, &u), &d) in fired.iter().zip(u_f).zip(d_f) {
        let p = p as usize;
        let (gv, gq) = (g_v[p], g_q[p]);
        let t = (gq - gv * u) * d - gv;
        g_u[p] = gv + t;
    }
    for ((c, &g), &l) in g_cur.iter_mut().zip(g_u.iter()).zip(live) {
        *c = g * l;
    }
}

/// Take the entries `flat` out of the pending values `q` (`[rows, N]`, set to 0 there)
/// and add their weight-table rows into the currents (R4.3.4): for each entry `s`,
/// `mult[s] = q[flat[s]]` and `cur[rows[s], col0 ..] += mult[s] * table[local[s]]`
/// (`cur`: `[rows, N]`, zero outside the entries' rows and columns), in entry order.
/// The arguments must satisfy [`check_deliver`] (with `g_stride = N`, `g_col0 = col0`)
/// and `flat[s] = rows[s] * N + neuron`, distinct, in range.
#[allow(clippy::too_many_arguments)]
pub fn deliver_forward(
    lay: &DeliverLayout,
    q: &mut [f32],
    flat: &[i64],
    rows: &[i64],
    local: &[i64],
    table: &[f32],
    cur: &mut [f32],
    mult: &mut [f32],
) {
    for (s, &f) in flat.iter().enumerate() {
        let m = q[f as usize];
        q[f as usize] = 0.0;
        mult[s] = m;
    }
    let w = lay.width;
    let kernel = crate::kernels::row_kernel();
    for s in 0..rows.len() {
        let c0 = rows[s] as usize * lay.g_stride + lay.g_col0;
        let l = local[s] as usize;
        kernel(&mut cur[c0..c0 + w], &table[l * w..(l + 1) * w], mult[s]);
    }
}

/// Where the delivery's current gradient, weight table and table gradient lie in
/// their (row-major) buffers.
#[derive(Clone, Copy, Debug)]
pub struct DeliverLayout {
    /// Row length of the current gradient `g_cur` (the number of neurons).
    pub g_stride: usize,
    /// Column of `g_cur` that the first table column corresponds to.
    pub g_col0: usize,
    /// Columns of the table (and of the block of the table gradient).
    pub width: usize,
    /// Row length of the table-gradient buffer.
    pub grad_stride: usize,
    /// Row of the table-gradient buffer that table row 0 corresponds to.
    pub grad_row0: usize,
    /// Column of the table-gradient buffer that table column 0 corresponds to.
    pub grad_col0: usize,
}

/// Why the arguments of [`deliver_backward`] do not fit together: `(field, value, reason)`.
pub type LayoutError = (&'static str, String, &'static str);

/// Checks every index that [`deliver_backward`] will use, so that it cannot go out of
/// bounds.
#[allow(clippy::too_many_arguments)]
pub fn check_deliver(
    lay: &DeliverLayout,
    g_len: usize,
    rows: &[i64],
    local: &[i64],
    mult_len: usize,
    table_len: usize,
    grad_len: usize,
) -> Result<(), LayoutError> {
    let n = rows.len();
    if local.len() != n || mult_len != n {
        return Err((
            "local",
            local.len().to_string(),
            "rows, local and mult must have the same length",
        ));
    }
    if lay.width == 0 || table_len % lay.width != 0 {
        return Err((
            "width",
            lay.width.to_string(),
            "must be > 0 and divide the table's size",
        ));
    }
    if lay.g_stride == 0 || g_len % lay.g_stride != 0 || lay.g_col0 + lay.width > lay.g_stride {
        return Err((
            "g_col0",
            lay.g_col0.to_string(),
            "the table's columns do not fit in g_cur",
        ));
    }
    if lay.grad_col0 + lay.width > lay.grad_stride {
        return Err((
            "grad_col0",
            lay.grad_col0.to_string(),
            "the table's columns do not fit in grad",
        ));
    }
    let table_rows = table_len / lay.width;
    let g_rows = g_len / lay.g_stride;
    let grad_rows = grad_len.checked_div(lay.grad_stride).unwrap_or(0);
    if lay.grad_row0 + table_rows > grad_rows {
        return Err((
            "grad_row0",
            lay.grad_row0.to_string(),
            "the table's rows do not fit in grad",
        ));
    }
    if let Some(r) = rows.iter().find(|&&r| r < 0 || r as usize >= g_rows) {
        return Err(("rows", r.to_string(), "row index out of range"));
    }
    if let Some(l) = local.iter().find(|&&l| l < 0 || l as usize >= table_rows) {
        return Err(("local", l.to_string(), "table row index out of range"));
    }
    Ok(())
}

/// Backward of a delivery `cur[rows[s], g_col0 + j] += mult[s] * table[local[s], j]`.
///
/// For every entry `s`, with `g = g_cur[rows[s], g_col0 .. g_col0 + width]`:
/// `g_mult[s] = <table[local[s]], g>` and `grad[grad_row0 + local[s], grad_col0 ..] +=
/// mult[s] * g`. Entries are processed in order, so the accumulation into `grad` is
/// deterministic. The dot products are summed in eight lanes (element `j` in lane
/// `j % 8`), then the lanes pairwise: the same order whichever CPU kernel runs.
///
/// The arguments must satisfy [`check_deliver`].
#[allow(clippy::too_many_arguments)]
pub fn deliver_backward(
    lay: &DeliverLayout,
    g_cur: &[f32],
    rows: &[i64],
    local: &[i64],
    mult: &[f32],
    table: &[f32],
    grad: &mut [f32],
    g_mult: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx2() {
            // SAFETY: AVX2 is present (checked at run time).
            unsafe { deliver_backward_avx2(lay, g_cur, rows, local, mult, table, grad, g_mult) };
            return;
        }
    }
    deliver_backward_impl(lay, g_cur, rows, local, mult, table, grad, g_mult)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn deliver_backward_avx2(
    lay: &DeliverLayout,
    g_cur: &[f32],
    rows: &[i64],
    local: &[i64],
    mult: &[f32],
    table: &[f32],
    grad: &mut [f32],
    g_mult: &mut [f32],
) {
    deliver_backward_impl(lay, g_cur, rows, local, mult, table, grad, g_mult)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn deliver_backward_impl(
    lay: &DeliverLayout,
    g_cur: &[f32],
    rows: &[i64],
    local: &[i64],
    mult: &[f32],
    table: &[f32],
    grad: &mut [f32],
    g_mult: &mut [f32],
) {
    let w = lay.width;
    for s in 0..rows.len() {
        let g0 = rows[s] as usize * lay.g_stride + lay.g_col0;
        let g = &g_cur[g0..g0 + w];
        let l = local[s] as usize;
        let t = &table[l * w..(l + 1) * w];
        g_mult[s] = dot8(t, g);
        let r0 = (lay.grad_row0 + l) * lay.grad_stride + lay.grad_col0;
        let m = mult[s];
        for (d, gi) in grad[r0..r0 + w].iter_mut().zip(g) {
            *d += m * *gi;
        }
    }
}

/// `<a, b>` summed in eight lanes, then `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`.
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        lanes[i] += x * y;
    }
    ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6]))
        + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
}

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

impl SelectKeys<'_> {
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

    fn lcg(seed: u64) -> impl FnMut() -> f32 {
        let mut g = seed;
        move || {
            g = g
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((g >> 40) as f32) / (1u64 << 24) as f32 - 0.5
        }
    }

    #[test]
    fn matches_the_plain_formula() {
        let mut next = lcg(7);
        let (n_rows, n_neu, width, t_rows) = (5usize, 23usize, 13usize, 9usize);
        let lay = DeliverLayout {
            g_stride: n_neu,
            g_col0: 6,
            width,
            grad_stride: 17,
            grad_row0: 2,
            grad_col0: 3,
        };
        let g_cur: Vec<f32> = (0..n_rows * n_neu).map(|_| next()).collect();
        let table: Vec<f32> = (0..t_rows * width).map(|_| next()).collect();
        let rows = [0i64, 0, 2, 3, 3, 4];
        let local = [1i64, 8, 1, 0, 5, 1];
        let mult = [1.0f32, 2.0, 0.5, 1.0, 3.0, 1.0];
        let mut grad = vec![0.25f32; 12 * 17];
        let mut g_mult = [0.0f32; 6];
        check_deliver(&lay, g_cur.len(), &rows, &local, 6, table.len(), grad.len()).unwrap();
        let mut expect = grad.clone();
        deliver_backward(
            &lay,
            &g_cur,
            &rows,
            &local,
            &mult,
            &table,
            &mut grad,
            &mut g_mult,
        );
        for s in 0..rows.len() {
            let (r, l) = (rows[s] as usize, local[s] as usize);
            let dot: f64 = (0..width)
                .map(|j| table[l * width + j] as f64 * g_cur[r * n_neu + 6 + j] as f64)
                .sum();
            assert!((g_mult[s] as f64 - dot).abs() < 1e-5, "entry {s}");
            for j in 0..width {
                expect[(2 + l) * 17 + 3 + j] += mult[s] * g_cur[r * n_neu + 6 + j];
            }
        }
        assert_eq!(grad, expect);
        // The portable build gives the same bits as the dispatched one.
        let mut grad2 = vec![0.25f32; 12 * 17];
        let mut g_mult2 = [0.0f32; 6];
        deliver_backward_impl(
            &lay,
            &g_cur,
            &rows,
            &local,
            &mult,
            &table,
            &mut grad2,
            &mut g_mult2,
        );
        assert_eq!(grad2, grad);
        assert_eq!(g_mult2.map(f32::to_bits), g_mult.map(f32::to_bits));
    }

    #[test]
    fn rejects_out_of_range_indices() {
        let lay = DeliverLayout {
            g_stride: 4,
            g_col0: 0,
            width: 4,
            grad_stride: 4,
            grad_row0: 0,
            grad_col0: 0,
        };
        assert_eq!(
            check_deliver(&lay, 8, &[2], &[0], 1, 8, 8).unwrap_err().0,
            "rows"
        );
        assert_eq!(
            check_deliver(&lay, 8, &[1], &[-1], 1, 8, 8).unwrap_err().0,
            "local"
        );
        assert_eq!(
            check_deliver(&lay, 8, &[1], &[0, 1], 1, 8, 8)
                .unwrap_err()
                .0,
            "local"
        );
        assert_eq!(
            check_deliver(&lay, 8, &[1], &[1], 1, 8, 4).unwrap_err().0,
            "grad_row0"
        );
        let wide = DeliverLayout { g_col0: 1, ..lay };
        assert_eq!(
            check_deliver(&wide, 8, &[1], &[1], 1, 8, 8).unwrap_err().0,
            "g_col0"
        );
        assert!(check_deliver(&lay, 8, &[1, 0], &[1, 1], 2, 8, 8).is_ok());
    }

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
}
