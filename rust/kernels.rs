//! Vector kernels of the event loop, with run-time CPU dispatch.
//!
//! The crate is compiled for the baseline of its target (SSE2 on x86-64) so that one
//! wheel runs everywhere. The row additions that dominate the event loop (R4.3.4:
//! `I[q] += s * w` over a fan-out row) are also compiled with AVX2 and picked at run
//! time when the CPU has it (the whole event loop, `engine/event_loop.rs`, is compiled
//! twice that way). Both versions perform the same IEEE-754 operations
//! element by element (one multiply, then one add; never a fused multiply-add, which
//! would round differently), so results are bit-identical whichever is used.
//!
//! [`axpy_rows`] is the roofline reference of `benches/compare.py`: the same number of
//! row additions as an inference run, with nothing else around them.

use std::sync::OnceLock;
use std::time::Instant;

use crate::error::EngineError;

/// `c[i] += w[i]` (`s == 1`) or `c[i] += s * w[i]` for every `i`.
pub type RowKernel = fn(&mut [f32], &[f32], f32);

/// `c[i] += w[i]` (`s == 1`) or `c[i] += s * w[i]`: inlined into the event loop, which
/// is itself compiled for the baseline and for AVX2 (`engine/event_loop.rs`).
#[inline(always)]
pub fn add_row(c: &mut [f32], w: &[f32], s: f32) {
    if s == 1.0 {
        for (ci, wi) in c.iter_mut().zip(w) {
            *ci += *wi;
        }
    } else {
        for (ci, wi) in c.iter_mut().zip(w) {
            *ci += s * *wi;
        }
    }
}

/// `c[i] += s_0 * w_0[i]`, then `+= s_1 * w_1[i]`, ... for the rows `(w_k, s_k)` in
/// order (each as long as `c`): the float operations of [`add_row`] row after row, in
/// one pass over `c` for up to 4 rows (each element is loaded and stored once, the
/// rows' terms summed in a register).
#[inline(always)]
pub fn add_rows(c: &mut [f32], rows: &[(&[f32], f32)]) {
    match *rows {
        [] => {}
        [(w, s)] => add_row(c, w, s),
        [a, b] => add_k(c, [a, b]),
        [a, b, d] => add_k(c, [a, b, d]),
        [a, b, d, e] => add_k(c, [a, b, d, e]),
        _ => {
            for &(w, s) in rows {
                add_row(c, w, s);
            }
        }
    }
}

/// [`add_rows`] of exactly `K` rows; without multiplies when every scale is 1 (`1 * w`
/// is exact, so both loops give the same bits).
#[inline(always)]
fn add_k<const K: usize>(c: &mut [f32], rows: [(&[f32], f32); K]) {
    let n = c.len();
    let w: [&[f32]; K] = rows.map(|(w, _)| &w[..n]);
    let s: [f32; K] = rows.map(|(_, s)| s);
    if s.iter().all(|&x| x == 1.0) {
        for i in 0..n {
            let mut x = c[i];
            for wk in &w {
                x += wk[i];
            }
            c[i] = x;
        }
    } else {
        for i in 0..n {
            let mut x = c[i];
            for k in 0..K {
                x += s[k] * w[k][i];
            }
            c[i] = x;
        }
    }
}

/// `c[i] += s * w[i]` for a short row (a conv kernel tap: `c_out` channels), 8 lanes at
/// a time: a row of 8-32 floats is 1-4 vector operations, where [`add_row`]'s loop,
/// unrolled for long rows, would run its narrow tail loop. `s * w[i]` is exact for
/// `s == 1`, so this gives the same bits as [`add_row`].
#[inline(always)]
pub fn add_short(c: &mut [f32], w: &[f32], s: f32) {
    let mut cc = c.chunks_exact_mut(8);
    let mut wc = w.chunks_exact(8);
    for (c8, w8) in (&mut cc).zip(&mut wc) {
        // Fixed-size arrays: the compiler makes the 8 lanes one vector operation.
        let c8: &mut [f32; 8] = c8.try_into().expect("chunk of 8");
        let w8: &[f32; 8] = w8.try_into().expect("chunk of 8");
        let mut x = *c8;
        for i in 0..8 {
            x[i] += s * w8[i];
        }
        *c8 = x;
    }
    for (ci, wi) in cc.into_remainder().iter_mut().zip(wc.remainder()) {
        *ci += s * *wi;
    }
}

fn add_row_portable(c: &mut [f32], w: &[f32], s: f32) {
    add_row(c, w, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_row_avx2_inner(c: &mut [f32], w: &[f32], s: f32) {
    // The same loops; the attribute lets the compiler use 256-bit vectors.
    add_row(c, w, s)
}

#[cfg(target_arch = "x86_64")]
fn add_row_avx2(c: &mut [f32], w: &[f32], s: f32) {
    // SAFETY: only selected by `row_kernel` after `is_x86_feature_detected!("avx2")`.
    unsafe { add_row_avx2_inner(c, w, s) }
}

/// Whether the AVX2 versions are used: the CPU has AVX2 and the environment variable
/// `ASYNCSNN_NO_SIMD_DISPATCH` is not set (detected once).
pub fn has_avx2() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("ASYNCSNN_NO_SIMD_DISPATCH").is_none()
                && std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The fastest row kernel this CPU supports (detected once).
pub fn row_kernel() -> RowKernel {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return add_row_avx2 as RowKernel;
        }
    }
    add_row_portable as RowKernel
}

/// Name of the kernel [`row_kernel`] picked (`"avx2"` or `"portable"`), for reports.
pub fn row_kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if row_kernel() as usize == add_row_avx2 as RowKernel as usize {
            return "avx2";
        }
    }
    "portable"
}

/// Number of floats at the head of a row that [`prefetch`] asks for: 8 cache lines.
/// (Measured on the dense workload: prefetching whole 2 KB rows was slower than none at
/// all; 4-8 lines, a few rows ahead, were as fast as none or a little faster.)
pub const PREFETCH_HEAD: usize = 128;

/// Asks the CPU to start loading `w` into the cache (a hint; no effect on results).
/// Used for the head of the weight rows that the event loop adds a few rows later
/// ([`PREFETCH_HEAD`]), so that their cache misses overlap instead of being paid one
/// row at a time; the hardware prefetcher follows the rest of a row.
#[inline(always)]
pub fn prefetch(w: &[f32]) {
    let w = &w[..w.len().min(PREFETCH_HEAD)];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // One hint per 64-byte line.
        for line in w.chunks(16) {
            // SAFETY: prefetch is a hint that never faults; the pointer is in bounds.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = w;
    }
}

/// Roofline reference: for each entry `r` of `rows`, `acc += weights[r * n .. (r + 1) * n]`
/// where `n = acc.len()`, with the kernel of the event loop. Returns the number of
/// float additions (`rows.len() * n`). Rows out of range are skipped.
pub fn axpy_rows(weights: &[f32], rows: &[u32], acc: &mut [f32]) -> u64 {
    let n = acc.len();
    if n == 0 {
        return 0;
    }
    let n_rows = weights.len() / n;
    let kernel = row_kernel();
    let mut done = 0u64;
    for &r in rows {
        let r = r as usize;
        if r < n_rows {
            kernel(acc, &weights[r * n..(r + 1) * n], 1.0);
            done += n as u64;
        }
    }
    done
}

/// The roofline measurement of `benches/compare.py` (`_engine.axpy_roofline`): adds
/// the rows of `weights` (`[n_rows, row_len]`, row-major) listed in `rows` into a
/// zeroed accumulator of `row_len` floats, `repeats` times. Returns `(seconds, float
/// additions)`; `row_len` must divide the length of `weights` and every row be in range.
pub fn axpy_roofline(
    weights: &[f32],
    row_len: usize,
    rows: &[u32],
    repeats: usize,
) -> Result<(f64, u64), EngineError> {
    if row_len == 0 || weights.len() % row_len != 0 {
        let reason = "must be > 0 and divide the length of weights";
        return Err(EngineError::parameter("row_len", row_len, reason));
    }
    let n_rows = weights.len() / row_len;
    if let Some(bad) = rows.iter().find(|&&x| x as usize >= n_rows) {
        return Err(EngineError::parameter(
            "rows",
            bad,
            "row index out of range",
        ));
    }
    let mut acc = vec![0.0f32; row_len];
    let start = Instant::now();
    let mut adds = 0u64;
    for _ in 0..repeats {
        acc.fill(0.0);
        adds += axpy_rows(weights, rows, &mut acc);
        std::hint::black_box(&mut acc);
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(acc.iter().sum::<f32>());
    Ok((secs, adds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of floats `k / div - offset` (`k` a 24-bit LCG draw).
    fn floats(seed: u64, div: f32, offset: f32) -> impl FnMut() -> f32 {
        let mut g = seed;
        move || {
            g = g.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((g >> 40) as f32) / div - offset
        }
    }

    #[test]
    fn kernels_agree_bit_for_bit() {
        let mut next = floats(0x1234_5678, (1u64 << 24) as f32, 0.5);
        for &n in &[0usize, 1, 7, 8, 16, 31, 32, 512, 1000] {
            let w: Vec<f32> = (0..n).map(|_| next()).collect();
            let c0: Vec<f32> = (0..n).map(|_| next() * 3.0).collect();
            for &s in &[1.0f32, 2.0, 0.3, -1.5] {
                let mut a = c0.clone();
                let mut b = c0.clone();
                let mut d = c0.clone();
                add_row_portable(&mut a, &w, s);
                row_kernel()(&mut b, &w, s);
                add_short(&mut d, &w, s);
                let expected: Vec<u32> = c0
                    .iter()
                    .zip(&w)
                    .map(|(c, w)| if s == 1.0 { c + w } else { c + s * w }.to_bits())
                    .collect();
                assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), expected);
                assert_eq!(b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), expected);
                assert_eq!(d.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), expected);
            }
        }
    }

    #[test]
    fn several_rows_in_one_pass_give_the_bits_of_one_row_at_a_time() {
        let mut next = floats(0x9e37_79b9, (1u64 << 20) as f32, 8.0);
        for &n in &[0usize, 1, 7, 8, 10, 17, 64, 512, 515] {
            let w: Vec<Vec<f32>> = (0..6).map(|_| (0..n).map(|_| next()).collect()).collect();
            let c0: Vec<f32> = (0..n).map(|_| next() * 1e3).collect();
            for k in 0..=6 {
                for scales in [[1.0f32; 6], [1.0, 0.3, 1.0, -2.5, 7.0, 1.0]] {
                    let rows: Vec<(&[f32], f32)> =
                        (0..k).map(|j| (w[j].as_slice(), scales[j])).collect();
                    let mut one = c0.clone();
                    for &(wj, s) in &rows {
                        add_row(&mut one, wj, s);
                    }
                    let mut all = c0.clone();
                    add_rows(&mut all, &rows);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&all), bits(&one), "n = {n}, {k} rows");
                }
            }
        }
    }

    #[test]
    fn axpy_rows_sums_the_listed_rows() {
        let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut acc = vec![0.0f32; 4];
        assert_eq!(axpy_rows(&w, &[0, 2, 2, 9], &mut acc), 12);
        assert_eq!(acc, vec![16.0, 19.0, 22.0, 25.0]);
        assert!(["avx2", "portable"].contains(&row_kernel_name()));
        let (_, adds) = axpy_roofline(&w, 4, &[0, 2], 3).unwrap();
        assert_eq!(adds, 24);
        let field = |e: EngineError| match e {
            EngineError::Parameter { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(axpy_roofline(&w, 5, &[0], 1).unwrap_err()), "row_len");
        assert_eq!(field(axpy_roofline(&w, 0, &[0], 1).unwrap_err()), "row_len");
        assert_eq!(field(axpy_roofline(&w, 4, &[3], 1).unwrap_err()), "rows");
    }
}
