//! The forward step of the torch engine's CPU path and its backward (R4.3.1-R4.3.2,
//! section 9): integrate, fire, reset and enqueue in one pass over `[rows, N]`.

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
