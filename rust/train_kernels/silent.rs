//! The backward pass of the silent spikes (docs/semantics.md section 9) on the rows and
//! columns of one emitting population.
//!
//! A neuron that does not fire in a timestep emits `c = H(V - theta)` (exactly 0) at its
//! final membrane, with the reset `V' = V (1 - c)` (`"zero"`), `V' = V - theta c`
//! (`"subtract"`) or `V' = V`, and sends the (zero) currents `c W` to its targets. Given
//! the gradient `gV` of `V'` and the gradient `gC` of `c` (the targets' current
//! gradients through the transposed projections, computed by the caller), the gradient
//! of `V` is
//!
//! ```text
//! dV = gV + (gC - gV R) d,   d = sigma'(V - theta) * live,   R = V, theta or 0.
//! ```
//!
//! [`silent_grad`] computes it with the float32 operations of the torch code it replaces
//! (`asyncsnn.torch._kernels._silent_grad`): the surrogate derivative one rounded
//! operation at a time, and each `addcmul` as torch's CPU kernel evaluates it, a fused
//! multiply-add `fma(value * t1, t2, self)`. The values are bit for bit those of the
//! torch code (a test compares them).

use super::deliver::bad;
use crate::error::EngineError;

/// A surrogate derivative `sigma'(x)` with its constants rounded to float32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SurrogateFn {
    /// `c / (1 + (a x)^2)`: `ATan` with `a = pi alpha / 2`, `c = scale alpha / 2`.
    ATan {
        /// `pi alpha / 2`.
        a: f32,
        /// `scale alpha / 2`.
        c: f32,
    },
    /// `scale / (1 + slope |x|)^2`: `FastSigmoid`.
    FastSigmoid {
        /// The slope.
        slope: f32,
        /// The scale.
        scale: f32,
    },
}

impl SurrogateFn {
    /// The surrogate named `name` (`"atan"`: `a = p`, `c = q`; `"fast_sigmoid"`: slope
    /// `p`, scale `q`), the names of `asyncsnn.torch.surrogate`'s `_kernel_params`.
    pub fn from_name(name: &str, p: f32, q: f32) -> Result<SurrogateFn, EngineError> {
        match name {
            "atan" => Ok(SurrogateFn::ATan { a: p, c: q }),
            "fast_sigmoid" => Ok(SurrogateFn::FastSigmoid { slope: p, scale: q }),
            other => Err(EngineError::parameter(
                "surrogate",
                other,
                "must be 'atan' or 'fast_sigmoid'",
            )),
        }
    }

    /// `sigma'(x)`, as torch evaluates the Python code (one rounding per operation; an
    /// infinite intermediate gives 0).
    #[inline(always)]
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            SurrogateFn::ATan { a, c } => atan_derivative(x, a, c),
            SurrogateFn::FastSigmoid { slope, scale } => fast_sigmoid_derivative(x, slope, scale),
        }
    }
}

#[inline(always)]
fn atan_derivative(x: f32, a: f32, c: f32) -> f32 {
    let y = x * a;
    (1.0 / (y * y + 1.0)) * c
}

#[inline(always)]
fn fast_sigmoid_derivative(x: f32, slope: f32, scale: f32) -> f32 {
    let y = x.abs() * slope + 1.0;
    (1.0 / (y * y)) * scale
}

/// The reset of the silent spike (R4.8): `R = dV'/dc` is `-V`, `-theta` or 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SilentReset {
    /// `V' = V (1 - c)`.
    Zero,
    /// `V' = V - theta c`.
    Subtract,
    /// `V' = V` (no reset, or the delayed debt, which is a constant).
    Keep,
}

/// The emitting population: where it lies in the `[rows, N]` state, its rows, surrogate
/// and reset.
#[derive(Clone, Copy, Debug)]
pub struct SilentBlock<'a> {
    /// Columns per row (`N`).
    pub stride: usize,
    /// The population's first column.
    pub col0: usize,
    /// The population's width (columns of `g_c`).
    pub width: usize,
    /// The emitting rows (positions in the state, each at most once); `None`: every row.
    pub rows: Option<&'a [i64]>,
    /// The surrogate derivative.
    pub surrogate: SurrogateFn,
    /// The reset of the population.
    pub reset: SilentReset,
}

impl SilentBlock<'_> {
    /// The number of emitting rows for a state of `n_rows` rows.
    fn len(&self, n_rows: usize) -> usize {
        self.rows.map_or(n_rows, <[i64]>::len)
    }
}

/// Checks every index that [`silent_grad`] will use: `g`, `v` and `live` of one length
/// (whole rows of `stride`), `theta` of `width` values (the population's), the block
/// inside a row, the rows in range and `g_c` of one row of `width` per emitting row.
pub fn check_silent(
    g_len: usize,
    v_len: usize,
    live_len: usize,
    theta_len: usize,
    g_c_len: usize,
    block: &SilentBlock<'_>,
) -> Result<(), EngineError> {
    let stride = block.stride;
    if stride == 0 || g_len % stride != 0 {
        return Err(bad(
            "g",
            g_len,
            &format!("must hold whole rows of {stride}"),
        ));
    }
    for (name, len) in [("v", v_len), ("live", live_len)] {
        if len != g_len {
            return Err(bad(name, len, &format!("expected {g_len} values, as g")));
        }
    }
    if theta_len != block.width {
        let want = block.width;
        return Err(bad("theta", theta_len, &format!("expected {want} values")));
    }
    if block.col0 + block.width > stride {
        return Err(bad(
            "col0",
            block.col0,
            "the population must lie inside a row",
        ));
    }
    let n_rows = g_len / stride;
    if let Some(&r) = block
        .rows
        .and_then(|rows| rows.iter().find(|&&r| r < 0 || r as usize >= n_rows))
    {
        return Err(bad("rows", r, &format!("must lie in [0, {n_rows})")));
    }
    let want = block.len(n_rows) * block.width;
    if g_c_len != want {
        return Err(bad("g_c", g_c_len, &format!("expected {want} values")));
    }
    Ok(())
}

/// `g[r, col0 + j] = dV` (module documentation) for every emitting row `r` (the `i`-th)
/// and column `j < width`, with `gV = g[r, col0 + j]`, `gC = g_c[i, j]`,
/// `V = v[r, col0 + j]`, `live` at the same place and `theta[j]`. [`check_silent`] must
/// pass first.
pub fn silent_grad(
    g: &mut [f32],
    v: &[f32],
    live: &[f32],
    theta: &[f32],
    g_c: &[f32],
    block: &SilentBlock<'_>,
) {
    let a = Arrays {
        v,
        live,
        theta,
        g_c,
    };
    #[cfg(target_arch = "x86_64")]
    {
        if crate::kernels::has_avx2() && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present (checked at run time).
            return unsafe { silent_grad_fma(g, &a, block) };
        }
    }
    silent_grad_impl(g, &a, block)
}

/// [`silent_grad`] with AVX2 and hardware FMA: the same values (`mul_add` is one
/// rounding either way), vectorised.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silent_grad_fma(g: &mut [f32], a: &Arrays<'_>, block: &SilentBlock<'_>) {
    silent_grad_impl(g, a, block)
}

/// The surrogate and the reset resolved once, outside the loops over the elements.
#[inline(always)]
fn silent_grad_impl(g: &mut [f32], a: &Arrays<'_>, block: &SilentBlock<'_>) {
    match block.surrogate {
        SurrogateFn::ATan { a: k, c } => by_reset(g, a, block, |x| atan_derivative(x, k, c)),
        SurrogateFn::FastSigmoid { slope, scale } => {
            by_reset(g, a, block, |x| fast_sigmoid_derivative(x, slope, scale))
        }
    }
}

/// The read-only arguments of [`silent_grad`].
struct Arrays<'a> {
    v: &'a [f32],
    live: &'a [f32],
    theta: &'a [f32],
    g_c: &'a [f32],
}

#[inline(always)]
fn by_reset(g: &mut [f32], a: &Arrays<'_>, block: &SilentBlock<'_>, d: impl Fn(f32) -> f32 + Copy) {
    // torch.addcmul(s, t1, t2, value) = fma(value * t1, t2, s): the inner term of each reset.
    match block.reset {
        SilentReset::Zero => each_row(g, a, block, d, |gv, v, gc, _| (-gv).mul_add(v, gc)),
        SilentReset::Subtract => each_row(g, a, block, d, |gv, _, gc, th| gc - gv * th),
        SilentReset::Keep => each_row(g, a, block, d, |_, _, gc, _| gc),
    }
}

#[inline(always)]
fn each_row(
    g: &mut [f32],
    a: &Arrays<'_>,
    block: &SilentBlock<'_>,
    d: impl Fn(f32) -> f32,
    inner: impl Fn(f32, f32, f32, f32) -> f32,
) {
    let (stride, c0, w) = (block.stride, block.col0, block.width);
    let n_rows = g.len() / stride;
    for i in 0..block.len(n_rows) {
        let r = block.rows.map_or(i, |rows| rows[i] as usize);
        let cols = r * stride + c0..r * stride + c0 + w;
        let g_row = &mut g[cols.clone()];
        let (v_row, live_row) = (&a.v[cols.clone()], &a.live[cols]);
        let (gc_row, th) = (&a.g_c[i * w..(i + 1) * w], &a.theta[..w]);
        for j in 0..w {
            let gv = g_row[j];
            let dj = d(v_row[j] - th[j]) * live_row[j];
            g_row[j] = inner(gv, v_row[j], gc_row[j], th[j]).mul_add(dj, gv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_kernels::tests::field;

    const ATAN: SurrogateFn = SurrogateFn::ATan {
        a: std::f32::consts::PI,
        c: 1.0,
    };

    #[test]
    fn the_gradient_follows_the_reset_on_the_emitting_rows_only() {
        // 3 rows of 4 neurons; the population is columns 1..3; rows 2 and 0 emit.
        let v = [0.5f32; 12];
        let mut live = [1.0f32; 12];
        live[2 * 4 + 2] = 0.0; // refractory: no surrogate term
        let theta = [1.0f32; 2];
        let g_c = [1.0f32, 2.0, 3.0, 4.0]; // rows 2, 0 in that order
        let mut block = SilentBlock {
            stride: 4,
            col0: 1,
            width: 2,
            rows: Some(&[2, 0]),
            surrogate: ATAN,
            reset: SilentReset::Zero,
        };
        check_silent(12, 12, 12, 2, 4, &block).unwrap();
        let d = ATAN.derivative(-0.5);
        assert_eq!(d, 1.0 / ((-0.5 * std::f32::consts::PI).powi(2) + 1.0));
        for (reset, r) in [
            (SilentReset::Zero, 0.5),
            (SilentReset::Subtract, 1.0),
            (SilentReset::Keep, 0.0),
        ] {
            let mut g = [2.0f32; 12];
            block.reset = reset;
            silent_grad(&mut g, &v, &live, &theta, &g_c, &block);
            let want = |gc: f32| 2.0 + (gc - 2.0 * r) * d;
            assert!((g[2 * 4 + 1] - want(1.0)).abs() < 1e-6);
            assert_eq!(g[2 * 4 + 2], 2.0); // refractory
            assert!((g[1] - want(3.0)).abs() < 1e-6);
            assert!((g[2] - want(4.0)).abs() < 1e-6);
            // Row 1 and the columns outside the population are untouched.
            let untouched = [0, 3, 4, 5, 6, 7, 8, 11];
            assert!(untouched.iter().all(|&k| g[k] == 2.0));
        }
    }

    #[test]
    fn the_fast_sigmoid_derivative_is_its_formula() {
        let fs = SurrogateFn::FastSigmoid {
            slope: 25.0,
            scale: 1.0,
        };
        assert_eq!(fs.derivative(0.04), 0.25);
        assert_eq!(fs.derivative(-0.04), 0.25);
        assert_eq!(fs.derivative(f32::INFINITY), 0.0);
        assert_eq!(ATAN.derivative(f32::MAX), 0.0);
    }

    #[test]
    fn checks_name_the_bad_argument() {
        let block = |rows| SilentBlock {
            stride: 4,
            col0: 1,
            width: 2,
            rows,
            surrogate: ATAN,
            reset: SilentReset::Keep,
        };
        assert_eq!(field(check_silent(10, 10, 10, 2, 4, &block(None))), "g");
        assert_eq!(field(check_silent(8, 4, 8, 2, 4, &block(None))), "v");
        assert_eq!(field(check_silent(8, 8, 8, 4, 4, &block(None))), "theta");
        assert_eq!(field(check_silent(8, 8, 8, 2, 2, &block(None))), "g_c");
        let one_row = block(Some(&[2]));
        assert_eq!(field(check_silent(8, 8, 8, 2, 2, &one_row)), "rows");
        let wide = SilentBlock {
            width: 4,
            ..block(None)
        };
        assert_eq!(field(check_silent(8, 8, 8, 4, 8, &wide)), "col0");
        assert!(check_silent(8, 8, 8, 2, 2, &block(Some(&[1]))).is_ok());
    }
}
