//! Take-and-deliver of a group through the weight table (R4.3.4) and its backward.

use crate::error::EngineError;

/// Take the entries `flat` out of the pending values `q` (`[rows, N]`, set to 0 there)
/// and add their weight-table rows into the currents (R4.3.4): for each entry `s`,
/// `mult[s] = q[flat[s]]` and `cur[rows[s], col0 ..] += mult[s] * table[local[s]]`
/// (`cur`: `[rows, N]`, zero outside the entries' rows and columns), in entry order.
/// The arguments must satisfy [`check_deliver_forward`] and `flat[s] = rows[s] * N +
/// neuron`, distinct.
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

impl DeliverLayout {
    /// The layout of [`deliver_forward`]: the currents `[rows, n_neu]`, the table's
    /// columns from `col0` on (the table is its own "gradient" for [`check_deliver`]).
    pub fn forward(n_neu: usize, col0: usize, width: usize) -> DeliverLayout {
        DeliverLayout {
            g_stride: n_neu,
            g_col0: col0,
            width,
            grad_stride: width,
            grad_row0: 0,
            grad_col0: 0,
        }
    }
}

/// The error of an argument of the torch engine's kernels: a [`EngineError::Parameter`].
pub(crate) fn bad(field: &str, value: impl ToString, reason: &str) -> EngineError {
    EngineError::parameter(field, value, reason)
}

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
) -> Result<(), EngineError> {
    let n = rows.len();
    if local.len() != n || mult_len != n {
        let reason = "rows, local and mult must have the same length";
        return Err(bad("local", local.len(), reason));
    }
    if lay.width == 0 || table_len % lay.width != 0 {
        let reason = "must be > 0 and divide the table's size";
        return Err(bad("width", lay.width, reason));
    }
    if lay.g_stride == 0 || g_len % lay.g_stride != 0 || lay.g_col0 + lay.width > lay.g_stride {
        let reason = "the table's columns do not fit in g_cur";
        return Err(bad("g_col0", lay.g_col0, reason));
    }
    if lay.grad_col0 + lay.width > lay.grad_stride {
        let reason = "the table's columns do not fit in grad";
        return Err(bad("grad_col0", lay.grad_col0, reason));
    }
    let table_rows = table_len / lay.width;
    let g_rows = g_len / lay.g_stride;
    let grad_rows = grad_len.checked_div(lay.grad_stride).unwrap_or(0);
    if lay.grad_row0 + table_rows > grad_rows {
        let reason = "the table's rows do not fit in grad";
        return Err(bad("grad_row0", lay.grad_row0, reason));
    }
    if let Some(r) = rows.iter().find(|&&r| r < 0 || r as usize >= g_rows) {
        return Err(bad("rows", r, "row index out of range"));
    }
    if let Some(l) = local.iter().find(|&&l| l < 0 || l as usize >= table_rows) {
        return Err(bad("local", l, "table row index out of range"));
    }
    Ok(())
}

/// Checks the arguments of [`deliver_forward`] (layout [`DeliverLayout::forward`]):
/// [`check_deliver`] with the pending values `q` in the place of the current gradient,
/// and every position of `flat` in `q`.
pub fn check_deliver_forward(
    lay: &DeliverLayout,
    q_len: usize,
    flat: &[i64],
    rows: &[i64],
    local: &[i64],
    table_len: usize,
) -> Result<(), EngineError> {
    check_deliver(lay, q_len, rows, local, flat.len(), table_len, table_len)?;
    match flat.iter().find(|&&x| x < 0 || x as usize >= q_len) {
        Some(bad_pos) => Err(bad("flat", bad_pos, "position out of range")),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_kernels::tests::field;

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
        assert_eq!(field(check_deliver(&lay, 8, &[2], &[0], 1, 8, 8)), "rows");
        assert_eq!(field(check_deliver(&lay, 8, &[1], &[-1], 1, 8, 8)), "local");
        assert_eq!(
            field(check_deliver(&lay, 8, &[1], &[0, 1], 1, 8, 8)),
            "local"
        );
        assert_eq!(
            field(check_deliver(&lay, 8, &[1], &[1], 1, 8, 4)),
            "grad_row0"
        );
        let wide = DeliverLayout { g_col0: 1, ..lay };
        assert_eq!(
            field(check_deliver(&wide, 8, &[1], &[1], 1, 8, 8)),
            "g_col0"
        );
        assert!(check_deliver(&lay, 8, &[1, 0], &[1, 1], 2, 8, 8).is_ok());
    }

    #[test]
    fn deliver_forward_checks_its_positions() {
        // 2 rows of 4 neurons; a table of 2 rows of 2 columns delivered at column 1.
        let lay = DeliverLayout::forward(4, 1, 2);
        let check = |flat: &[i64], rows: &[i64], local: &[i64]| {
            check_deliver_forward(&lay, 8, flat, rows, local, 4)
        };
        assert!(check(&[0, 7], &[0, 1], &[1, 0]).is_ok());
        assert_eq!(field(check(&[0, 8], &[0, 1], &[1, 0])), "flat");
        assert_eq!(field(check(&[-1], &[0], &[1])), "flat");
        assert_eq!(field(check(&[0], &[0, 1], &[1, 0])), "local");
        assert_eq!(field(check(&[0], &[0], &[2])), "local");
        let wide = DeliverLayout::forward(4, 3, 2);
        let e = check_deliver_forward(&wide, 8, &[0], &[0], &[0], 4);
        assert_eq!(field(e), "g_col0");
    }
}
