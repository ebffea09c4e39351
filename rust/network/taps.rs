//! Tap tables of conv/pool projections (R1.2): per axis, which target coordinates and
//! kernel indices a source coordinate reaches, computed from the geometry; per source
//! pixel, the two axes combined into target and kernel offsets (when small enough).

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

/// The taps of every source pixel of a conv/pool projection in one table: the entries
/// `offsets[pix]..offsets[pix + 1]` of `pairs`, for pixel `pix = y * in_w + x`, are
/// `(rows.out_s[r] + cols.out_s[c], rows.tap_s[r] + cols.tap_s[c])` for the row taps `r`
/// of `y` (outer) and the column taps `c` of `x` (inner): the order of the nested loops
/// over the two [`Taps`]. A delivery reads one range per source instead of walking two
/// tables and splitting its pixel into a row and a column.
#[derive(Debug, Clone)]
pub(crate) struct PixelTaps {
    pub offsets: Vec<u32>,
    pub pairs: Vec<(u32, u32)>,
}

/// Most entries (pixels plus taps) a [`PixelTaps`] table holds: 2^21, at most 16 MiB.
/// Larger geometries walk the per-axis tables.
pub(crate) const PIXEL_TAPS_MAX: usize = 1 << 21;

impl PixelTaps {
    /// The table of two scaled ([`Taps::scale`]) axes, or `None` when it would hold
    /// more than `max` entries, an offset does not fit in 32 bits, or its memory cannot
    /// be reserved (the caller then walks the axes: same taps, same order).
    pub(crate) fn new(rows: &Taps, cols: &Taps, max: usize) -> Option<PixelTaps> {
        let (n_h, n_w) = (rows.offsets.len() - 1, cols.offsets.len() - 1);
        let pixels = n_h.checked_mul(n_w)?;
        let total = rows.out.len().checked_mul(cols.out.len())?;
        let fits = |a: &[usize], b: &[usize]| {
            let top = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
            top(a)
                .checked_add(top(b))
                .is_some_and(|m| m <= u32::MAX as usize)
        };
        if pixels.checked_add(total)? > max
            || !fits(&rows.out_s, &cols.out_s)
            || !fits(&rows.tap_s, &cols.tap_s)
        {
            return None;
        }
        let mut offsets = Vec::new();
        offsets.try_reserve_exact(pixels + 1).ok()?;
        let mut pairs = Vec::new();
        pairs.try_reserve_exact(total).ok()?;
        offsets.push(0);
        for y in 0..n_h {
            for x in 0..n_w {
                for r in rows.range(y) {
                    for c in cols.range(x) {
                        let out = rows.out_s[r] + cols.out_s[c];
                        let tap = rows.tap_s[r] + cols.tap_s[c];
                        pairs.push((out as u32, tap as u32));
                    }
                }
                offsets.push(pairs.len() as u32);
            }
        }
        Some(PixelTaps { offsets, pairs })
    }
}

/// `(c, pix)` of source neuron `local` of a conv/pool projection (source read as
/// `(channels, in_h, in_w)`, `pix = y * in_w + x`, R1.2), by a 32-bit division (source
/// ids are 32-bit, R1.5).
#[inline(always)]
pub(crate) fn source_pixel(in_hw: usize, local: usize) -> (usize, usize) {
    let (l, n) = (local as u32, in_hw as u32);
    ((l / n) as usize, (l % n) as usize)
}

/// The taps of source pixel `pix` (of [`source_pixel`]) of a conv/pool projection,
/// rows outer and columns inner (R1.2), as `(out, tap)`: the target and kernel offsets
/// of [`Taps::scale`], summed over the two axes. Read from `pixels` when the projection
/// has the table, else walked on the two axes. Also returns the number of taps.
#[inline(always)]
pub(crate) fn pixel_taps<'a>(
    rows: &'a Taps,
    cols: &'a Taps,
    pixels: Option<&'a PixelTaps>,
    in_w: usize,
    pix: usize,
) -> (TapIter<'a>, usize) {
    match pixels {
        Some(px) => {
            let range = px.offsets[pix] as usize..px.offsets[pix + 1] as usize;
            let n = range.len();
            (TapIter::Table(px.pairs[range].iter()), n)
        }
        None => {
            let (r, c) = (rows.range(pix / in_w), cols.range(pix % in_w));
            let n = r.len() * c.len();
            let walk = TapIter::Axes {
                rows,
                cols,
                r,
                c: c.clone(),
                c0: c,
            };
            (walk, n)
        }
    }
}

/// The iterator of [`pixel_taps`]: one loop body in the delivery for both sources of
/// the taps (a closure called from two loops was not inlined).
pub(crate) enum TapIter<'a> {
    Table(std::slice::Iter<'a, (u32, u32)>),
    Axes {
        rows: &'a Taps,
        cols: &'a Taps,
        /// The row taps left (the first is the current one).
        r: std::ops::Range<usize>,
        /// The column taps left in the current row.
        c: std::ops::Range<usize>,
        /// All column taps.
        c0: std::ops::Range<usize>,
    },
}

impl Iterator for TapIter<'_> {
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        match self {
            TapIter::Table(it) => it.next().map(|&(out, tap)| (out as usize, tap as usize)),
            TapIter::Axes {
                rows,
                cols,
                r,
                c,
                c0,
            } => loop {
                if r.start >= r.end {
                    return None;
                }
                if let Some(j) = c.next() {
                    let i = r.start;
                    return Some((rows.out_s[i] + cols.out_s[j], rows.tap_s[i] + cols.tap_s[j]));
                }
                r.start += 1;
                *c = c0.clone();
            },
        }
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

    /// Every pixel's table entries are the per-axis walk's taps, in its order, over
    /// strides, paddings and kernels larger than the input (pixels without taps).
    #[test]
    fn pixel_taps_follow_the_axes() {
        // (n_in, kernel, stride, pad) per axis
        let geometries = [
            ((5, 3, 1, 1), (7, 3, 2, 1)),
            ((6, 2, 2, 0), (4, 5, 1, 2)),
            ((7, 1, 3, 0), (3, 3, 3, 0)),
            ((2, 4, 1, 1), (9, 3, 2, 0)),
        ];
        for ((h, kh, sh, ph), (w, kw, sw, pw)) in geometries {
            let axis = |n: usize, k: usize, s: usize, p: usize, out_mul, tap_mul| {
                let n_out = (n + 2 * p - k) / s + 1;
                let mut t = Taps::new(n, n_out, k, s, p, &Location::Network).unwrap();
                t.scale(out_mul, tap_mul, &Location::Network).unwrap();
                (t, n_out)
            };
            let (cols, ow) = axis(w, kw, sw, pw, 3, 5);
            let (rows, _) = axis(h, kh, sh, ph, ow * 3, kw * 5);
            let px = PixelTaps::new(&rows, &cols, PIXEL_TAPS_MAX).expect("small");
            assert_eq!(px.offsets.len(), h * w + 1);
            let mut empty = 0;
            for pix in 0..h * w {
                let (walk, n) = pixel_taps(&rows, &cols, None, w, pix);
                let walked: Vec<(usize, usize)> = walk.collect();
                let (read, m) = pixel_taps(&rows, &cols, Some(&px), w, pix);
                let read: Vec<(usize, usize)> = read.collect();
                assert_eq!((m, &read), (n, &walked), "pixel {pix} of {h}x{w}");
                assert_eq!(walked.len(), n);
                // The walk against the per-axis tables read directly.
                let (y, x) = (pix / w, pix % w);
                let (rows, cols) = (&rows, &cols);
                let direct: Vec<(usize, usize)> = rows
                    .range(y)
                    .flat_map(|i| {
                        cols.range(x).map(move |j| {
                            (rows.out_s[i] + cols.out_s[j], rows.tap_s[i] + cols.tap_s[j])
                        })
                    })
                    .collect();
                assert_eq!(walked, direct);
                assert_eq!(n, rows.count(pix / w) * cols.count(pix % w));
                empty += (n == 0) as usize;
            }
            assert_eq!(px.pairs.len(), rows.out.len() * cols.out.len());
            if (h, w) == (7, 3) {
                assert!(empty > 0, "stride 3, kernel 1: pixels without taps");
            }
        }
    }

    /// Past `max` entries, or with an offset beyond 32 bits, there is no table.
    #[test]
    fn pixel_taps_have_limits() {
        let axis = |out_mul| {
            let mut t = Taps::new(8, 8, 3, 1, 1, &Location::Network).unwrap();
            t.scale(out_mul, 1, &Location::Network).unwrap();
            t
        };
        let (rows, cols) = (axis(8), axis(1));
        // 64 pixels + 22 * 22 taps
        let need = 64 + rows.out.len() * cols.out.len();
        assert!(PixelTaps::new(&rows, &cols, need).is_some());
        assert!(PixelTaps::new(&rows, &cols, need - 1).is_none());
        let far = axis(1 << 30);
        assert!(PixelTaps::new(&far, &cols, PIXEL_TAPS_MAX).is_none());
        assert!(PixelTaps::new(&axis(1 << 28), &cols, PIXEL_TAPS_MAX).is_some());
    }
}
