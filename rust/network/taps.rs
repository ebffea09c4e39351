//! Per-axis tap tables of conv/pool projections (R1.2): which target coordinates and
//! kernel indices a source coordinate reaches, computed from the geometry.

use crate::alloc;
use crate::error::{EngineError, Location};

/// Per-axis tap table of a conv/pool projection: for source coordinate `y`, the entries
/// `offsets[y]..offsets[y+1]` of `out` / `tap` are the output coordinates `i` and kernel
/// indices `ky` with `ky = y + pad - i*stride` in `[0, kernel)` (R1.2).
#[derive(Debug, Clone)]
pub(crate) struct Taps {
    pub offsets: Vec<usize>,
    pub out: Vec<usize>,
    pub tap: Vec<usize>,
    /// `out` and `tap` times the strides of the target slots and of the re-laid kernel
    /// along this axis (set by [`Taps::scale`]), so that a delivery adds offsets.
    pub out_s: Vec<usize>,
    pub tap_s: Vec<usize>,
}

impl Taps {
    /// The taps of an axis of `n_in` source positions and `n_out` target positions.
    /// Counted first, so that the tables are allocated once and fallibly (a kernel and
    /// padding of tens of thousands make billions of taps: an error, not an abort).
    pub(super) fn new(
        n_in: usize,
        n_out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        location: &Location,
    ) -> Result<Taps, EngineError> {
        // i <= yp / stride and i*stride > yp - kernel, with yp = y + pad.
        let span = |y: usize| {
            let yp = y + pad;
            let i_hi = (yp / stride).min(n_out.saturating_sub(1));
            let i_lo = if yp + 1 > kernel {
                (yp + 1 - kernel).div_ceil(stride)
            } else {
                0
            };
            (yp, i_lo, i_hi)
        };
        let total = (0..n_in)
            .map(|y| match span(y) {
                (_, lo, hi) if n_out > 0 && lo <= hi => (hi - lo + 1) as u128,
                _ => 0,
            })
            .sum::<u128>();
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        let mut offsets = alloc::with_capacity(n_in + 1, location, "conv/pool tap offsets")?;
        let mut out = alloc::with_capacity(total, location, "conv/pool taps")?;
        let mut tap = alloc::with_capacity(total, location, "conv/pool taps")?;
        offsets.push(0);
        for y in 0..n_in {
            let (yp, i_lo, i_hi) = span(y);
            if n_out > 0 && i_lo <= i_hi {
                for i in i_lo..=i_hi {
                    out.push(i);
                    tap.push(yp - i * stride); // ky in [0, kernel)
                }
            }
            offsets.push(out.len());
        }
        Ok(Taps {
            offsets,
            out,
            tap,
            out_s: Vec::new(),
            tap_s: Vec::new(),
        })
    }

    /// Sets `out_s = out * out_mul` and `tap_s = tap * tap_mul`.
    pub(super) fn scale(
        &mut self,
        out_mul: usize,
        tap_mul: usize,
        location: &Location,
    ) -> Result<(), EngineError> {
        let n = self.out.len();
        self.out_s = alloc::with_capacity(n, location, "conv/pool taps")?;
        self.tap_s = alloc::with_capacity(n, location, "conv/pool taps")?;
        self.out_s.extend(self.out.iter().map(|&i| i * out_mul));
        self.tap_s.extend(self.tap.iter().map(|&k| k * tap_mul));
        Ok(())
    }

    #[inline(always)]
    pub fn range(&self, y: usize) -> std::ops::Range<usize> {
        self.offsets[y]..self.offsets[y + 1]
    }

    #[inline(always)]
    pub fn count(&self, y: usize) -> usize {
        self.offsets[y + 1] - self.offsets[y]
    }
}

/// `(c, y, x)` of source neuron `local` of a conv/pool projection (source read as
/// `(channels, in_h, in_w)`, R1.2).
#[inline(always)]
pub(crate) fn source_coords(in_hw: usize, in_w: usize, local: usize) -> (usize, usize, usize) {
    let (c, rem) = (local / in_hw, local % in_hw);
    (c, rem / in_w, rem % in_w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &Taps, y: usize) -> Vec<(usize, usize)> {
        t.range(y).map(|r| (t.out[r], t.tap[r])).collect()
    }

    #[test]
    fn taps_follow_the_formula_of_r1_2() {
        // n = 5, kernel 3, stride 1, padding 1 -> 5 outputs; ky = y + 1 - i.
        let t = Taps::new(5, 5, 3, 1, 1, &Location::Network).unwrap();
        assert_eq!(rows(&t, 0), vec![(0, 1), (1, 0)]);
        assert_eq!(rows(&t, 2), vec![(1, 2), (2, 1), (3, 0)]);
        assert_eq!(rows(&t, 4), vec![(3, 2), (4, 1)]);
        assert_eq!(
            (0..5).map(|y| t.count(y)).collect::<Vec<_>>(),
            [2, 3, 3, 3, 2]
        );
        // Brute force over every (y, i) for a strided, padded axis.
        let (n, k, s, p) = (7, 3, 2, 1);
        let n_out = (n + 2 * p - k) / s + 1;
        let t = Taps::new(n, n_out, k, s, p, &Location::Network).unwrap();
        for y in 0..n {
            let want: Vec<(usize, usize)> = (0..n_out)
                .filter_map(|i| {
                    (y + p)
                        .checked_sub(i * s)
                        .filter(|&ky| ky < k)
                        .map(|ky| (i, ky))
                })
                .collect();
            assert_eq!(rows(&t, y), want, "y = {y}");
        }
    }

    #[test]
    fn scale_multiplies_outputs_and_taps() {
        let mut t = Taps::new(4, 2, 2, 2, 0, &Location::Network).unwrap();
        t.scale(10, 3, &Location::Network).unwrap();
        let out_s: Vec<usize> = t.out.iter().map(|&i| i * 10).collect();
        let tap_s: Vec<usize> = t.tap.iter().map(|&k| k * 3).collect();
        assert_eq!((t.out_s, t.tap_s), (out_s, tap_s));
    }

    #[test]
    fn source_coords_are_channel_major() {
        // (c, h, w) = (2, 3, 4): local = (c * 3 + y) * 4 + x.
        assert_eq!(source_coords(12, 4, 0), (0, 0, 0));
        assert_eq!(source_coords(12, 4, 13), (1, 0, 1));
        assert_eq!(source_coords(12, 4, 23), (1, 2, 3));
    }
}
