//! The forward step of the torch engine's CPU path and its backward (R4.3.1-R4.3.2,
//! section 9): integrate, fire, reset and enqueue in one pass over `[rows, N]`.

use super::deliver::bad;
use super::pending::check_keys;
use crate::error::EngineError;

/// Inputs of [`step_forward`]: `theta` is `[N]`, the others `[rows * N]` (row-major).
#[derive(Clone, Copy, Debug)]
pub struct StepInputs<'a> {
    /// Membranes `V`.
    pub v: &'a [f32],
    /// Currents `I`.
    pub cur: &'a [f32],
    /// Non-refractory mask (1.0 or 0.0).
    pub live: &'a [f32],
    /// Pending values `Q`.
    pub q: &'a [f32],
    /// Thresholds, one per neuron.
    pub theta: &'a [f32],
}

impl StepInputs<'_> {
    /// Checks the arguments of [`step_forward`]: `theta` has `n_cols` values (the columns
    /// of `v`), and every other input, every output and `vpre` as many as `v`.
    pub fn check(
        &self,
        n_cols: usize,
        out: &StepOutputs<'_>,
        vpre: Option<&[f32]>,
    ) -> Result<(), EngineError> {
        if n_cols != self.theta.len() {
            let reason = "must have one value per column of v";
            return Err(bad("theta", self.theta.len(), reason));
        }
        let sizes = [
            ("cur", Some(self.cur.len())),
            ("live", Some(self.live.len())),
            ("q", Some(self.q.len())),
            ("v_out", Some(out.v.len())),
            ("q_out", Some(out.q.len())),
            ("s_out", Some(out.s.len())),
            ("live_out", Some(out.live.len())),
            ("u_out", out.u.as_deref().map(<[f32]>::len)),
            ("vpre", vpre.map(<[f32]>::len)),
        ];
        same_len(self.v.len(), &sizes)
    }
}

/// `Ok` when every given length of `sizes` is `n`; else an error naming the first other.
fn same_len(n: usize, sizes: &[(&str, Option<usize>)]) -> Result<(), EngineError> {
    match sizes
        .iter()
        .find(|(_, len)| len.is_some_and(|len| len != n))
    {
        Some(&(field, Some(len))) => Err(bad(field, len, "must have as many elements as v")),
        _ => Ok(()),
    }
}

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
/// The arguments must satisfy [`StepInputs::check`].
pub fn step_forward(
    inputs: StepInputs<'_>,
    out: StepOutputs<'_>,
    vpre: Option<&mut [f32]>,
) -> (Fired, bool) {
    let StepInputs {
        v,
        cur,
        live,
        q,
        theta,
    } = inputs;
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

/// Arguments of [`step_backward`]: the gradients of `V'` and `Q'` and the mask `live`,
/// `[rows * N]`; the spikes' flat positions `fired`, their `U` and the surrogate
/// derivative there, `[F]`.
#[derive(Clone, Copy, Debug)]
pub struct StepGrads<'a> {
    /// Gradient of the membranes after the step.
    pub g_v: &'a [f32],
    /// Gradient of the pending values after the step.
    pub g_q: &'a [f32],
    /// Non-refractory mask of the step.
    pub live: &'a [f32],
    /// Flat positions of the spikes.
    pub fired: &'a [i64],
    /// `U` at the spikes.
    pub u_f: &'a [f32],
    /// Surrogate derivative at the spikes.
    pub d_f: &'a [f32],
}

impl StepGrads<'_> {
    /// Checks the arguments of [`step_backward`]: `g_q` and `live` as long as `g_v`,
    /// `fired`, `u_f` and `d_f` of one length, every position of `fired` in `g_v`.
    pub fn check(&self) -> Result<(), EngineError> {
        let n = self.g_v.len();
        same_len(
            n,
            &[
                ("g_q", Some(self.g_q.len())),
                ("live", Some(self.live.len())),
            ],
        )?;
        let f = self.fired.len();
        if self.u_f.len() != f || self.d_f.len() != f {
            let reason = "fired, u_f and d_f must have the same length";
            return Err(bad("u_f", self.u_f.len(), reason));
        }
        check_keys(self.fired, 1, n).map_err(|p| bad("fired", p, "position out of range"))
    }
}

/// Backward of [`step_forward`] when the surrogate terms are kept for the spikes only
/// (`U' = V + I live`, `s = H(U - theta)`, `V' = U - U s`, `Q' = Q + s`): with `d` the
/// surrogate derivative at each spike `p = fired[i]`,
/// `gU[p] = gV[p] + ((gQ[p] - gV[p] U[p]) d[i] - gV[p])` and `gU = gV` elsewhere;
/// returns `(gU, gI = gU live)` (both `[rows * N]`). The arguments must satisfy
/// [`StepGrads::check`].
pub fn step_backward(grads: &StepGrads<'_>) -> (Vec<f32>, Vec<f32>) {
    let StepGrads {
        g_v,
        g_q,
        live,
        fired,
        u_f,
        d_f,
    } = *grads;
    let mut g_u = g_v.to_vec();
    let mut g_cur = vec![0.0f32; g_v.len()];
    for ((&p, &u), &d) in fired.iter().zip(u_f).zip(d_f) {
        let p = p as usize;
        let (gv, gq) = (g_v[p], g_q[p]);
        let t = (gq - gv * u) * d - gv;
        g_u[p] = gv + t;
    }
    for ((c, &g), &l) in g_cur.iter_mut().zip(g_u.iter()).zip(live) {
        *c = g * l;
    }
    (g_u, g_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_kernels::tests::field;

    #[test]
    fn a_step_fires_resets_and_enqueues() {
        // 2 rows of 2 neurons, thresholds 1.0 and 2.0.
        let (v, cur, live, q) = (
            [0.5f32, 1.0, 0.0, 0.0],
            [1.0f32, 1.0, 3.0, 1.0],
            [1.0f32; 4],
            [0.0f32; 4],
        );
        let inputs = StepInputs {
            v: &v,
            cur: &cur,
            live: &live,
            q: &q,
            theta: &[1.0, 2.0],
        };
        let (mut vo, mut qo, mut so, mut lo, mut uo) =
            ([0.0f32; 4], [0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4]);
        let mut vpre = [9.0f32; 4];
        let out = StepOutputs {
            v: &mut vo,
            q: &mut qo,
            s: &mut so,
            u: Some(&mut uo),
            live: &mut lo,
        };
        inputs.check(2, &out, Some(&vpre)).unwrap();
        let (fired, finite) = step_forward(inputs, out, Some(&mut vpre));
        assert!(finite);
        assert_eq!(fired.pos, vec![0, 2]);
        assert_eq!(fired.u, vec![1.5, 3.0]);
        assert_eq!(fired.theta, vec![1.0, 1.0]);
        assert_eq!(so, [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(vo, [0.0, 2.0, 0.0, 1.0]);
        assert_eq!(qo, [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(lo, [0.0, 1.0, 0.0, 1.0]);
        assert_eq!(uo, [1.5, 2.0, 3.0, 1.0]);
        assert_eq!(vpre, [1.5, 9.0, 3.0, 9.0]);
    }

    #[test]
    fn step_checks_name_the_bad_argument() {
        let (a4, a3) = ([0.0f32; 4], [0.0f32; 3]);
        let inputs = StepInputs {
            v: &a4,
            cur: &a4,
            live: &a4,
            q: &a4,
            theta: &a4[..2],
        };
        let (mut v, mut q, mut s, mut l) = ([0.0f32; 4], [0.0f32; 4], [0.0f32; 3], [0.0f32; 4]);
        let out = StepOutputs {
            v: &mut v,
            q: &mut q,
            s: &mut s,
            u: None,
            live: &mut l,
        };
        assert_eq!(field(inputs.check(4, &out, None)), "theta");
        assert_eq!(field(inputs.check(2, &out, None)), "s_out");
        let short = StepInputs {
            live: &a3,
            ..inputs
        };
        assert_eq!(field(short.check(2, &out, None)), "live");
        let (mut v, mut q, mut s, mut l) = ([0.0f32; 4], [0.0f32; 4], [0.0f32; 4], [0.0f32; 4]);
        let out = StepOutputs {
            v: &mut v,
            q: &mut q,
            s: &mut s,
            u: None,
            live: &mut l,
        };
        assert!(inputs.check(2, &out, None).is_ok());
        assert_eq!(field(inputs.check(2, &out, Some(&a3))), "vpre");
        let grads = StepGrads {
            g_v: &a4,
            g_q: &a4,
            live: &a4,
            fired: &[3],
            u_f: &[1.0],
            d_f: &[1.0],
        };
        assert!(grads.check().is_ok());
        assert_eq!(field(StepGrads { g_q: &a3, ..grads }.check()), "g_q");
        assert_eq!(field(StepGrads { d_f: &[], ..grads }.check()), "u_f");
        assert_eq!(
            field(
                StepGrads {
                    fired: &[4],
                    ..grads
                }
                .check()
            ),
            "fired"
        );
    }

    #[test]
    fn the_backward_keeps_the_surrogate_terms_of_the_spikes() {
        let (g_v, g_q, live) = ([1.0f32, 2.0], [0.5f32, 0.5], [1.0f32, 0.0]);
        let grads = StepGrads {
            g_v: &g_v,
            g_q: &g_q,
            live: &live,
            fired: &[0],
            u_f: &[2.0],
            d_f: &[0.25],
        };
        let (g_u, g_cur) = step_backward(&grads);
        // gU[0] = 1 + ((0.5 - 1 * 2) * 0.25 - 1) = -0.375; gU[1] = gV[1].
        assert_eq!(g_u, [-0.375, 2.0]);
        assert_eq!(g_cur, [-0.375, 0.0]);
    }
}
