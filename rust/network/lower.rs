//! Per-kind lowering of a projection (R1.2): checks what the kind needs and lays its
//! weights out by source neuron. Conv and pool share one geometry check
//! ([`Geometry::check`]). The storage layout of the targets is applied afterwards
//! (`layout.rs`); until then every target is addressed as slot = id.

use super::taps::Taps;
use super::validate::{check_pos, check_weights, mul};
use super::{PoolKind, ProjKind, ProjectionKind};
use crate::alloc;
use crate::error::{EngineError, Location};

/// Lowers a projection of kind `kind` from a population of `n_s` neurons to one of
/// `n_d` neurons; `loc` names it in errors.
pub(super) fn lower(
    kind: &ProjectionKind,
    n_s: usize,
    n_d: usize,
    loc: &Location,
) -> Result<ProjKind, EngineError> {
    match kind {
        ProjectionKind::Dense { weight } => dense(weight, n_s, n_d, loc),
        ProjectionKind::Conv2d {
            weight,
            c_in,
            in_h,
            in_w,
            c_out,
            kh,
            kw,
            stride,
            padding,
        } => {
            let geometry = Geometry {
                c_in: ("c_in", *c_in),
                c_out: ("c_out", *c_out),
                in_h: *in_h,
                in_w: *in_w,
                kh: *kh,
                kw: *kw,
                stride: *stride,
                padding: *padding,
            };
            conv(weight, &geometry, n_s, n_d, loc)
        }
        ProjectionKind::Pool {
            kind,
            channels,
            in_h,
            in_w,
            kh,
            kw,
            stride,
        } => {
            let geometry = Geometry {
                c_in: ("channels", *channels),
                c_out: ("channels", *channels),
                in_h: *in_h,
                in_w: *in_w,
                kh: *kh,
                kw: *kw,
                stride: *stride,
                padding: (0, 0),
            };
            pool(*kind, &geometry, n_s, n_d, loc)
        }
    }
}

/// Dense: `W[q, j]` transposed to `wt[j * n_d + q]`.
fn dense(weight: &[f32], n_s: usize, n_d: usize, loc: &Location) -> Result<ProjKind, EngineError> {
    let want = mul(n_d, n_s, loc, "weight length")?;
    if weight.len() != want {
        return Err(EngineError::model(
            loc,
            "weight length",
            weight.len(),
            format!("must be n_target * n_source = {n_d} * {n_s} = {want}"),
        ));
    }
    check_weights(weight, loc)?;
    let mut wt = alloc::filled(want, 0.0f32, loc, "dense weights")?;
    for (q, row) in weight.chunks_exact(n_s).enumerate() {
        for (j, &w) in row.iter().enumerate() {
            wt[j * n_d + q] = w;
        }
    }
    Ok(ProjKind::Dense { wt })
}

/// Conv2d: kernel `K[o, c, ky, kx]` re-laid out as `k[((c*kh + ky)*kw + kx)*c_out + o]`.
fn conv(
    weight: &[f32],
    g: &Geometry,
    n_s: usize,
    n_d: usize,
    loc: &Location,
) -> Result<ProjKind, EngineError> {
    let s = g.check(n_s, n_d, loc)?;
    let (c_in, c_out, kh, kw) = (g.c_in.1, g.c_out.1, g.kh, g.kw);
    let want = mul(
        mul(c_out, c_in, loc, "c_out * c_in")?,
        s.khw,
        loc,
        "weight length",
    )?;
    if weight.len() != want {
        return Err(EngineError::model(
            loc,
            "weight length",
            weight.len(),
            format!("must be c_out*c_in*kh*kw = {want}"),
        ));
    }
    check_weights(weight, loc)?;
    let mut k = alloc::filled(want, 0.0f32, loc, "conv kernel")?;
    for o in 0..c_out {
        for c in 0..c_in {
            for ky in 0..kh {
                for kx in 0..kw {
                    k[((c * kh + ky) * kw + kx) * c_out + o] =
                        weight[((o * c_in + c) * kh + ky) * kw + kx];
                }
            }
        }
    }
    let (rows, cols) = g.taps(&s, loc)?;
    Ok(ProjKind::Conv {
        k,
        c_out,
        kh,
        kw,
        in_hw: s.in_hw,
        in_w: g.in_w,
        plane: s.plane,
        ow: s.ow,
        rows,
        cols,
        pixels: None,        // built by the layout, from the scaled tap tables
        channel_last: false, // set by the layout, once all projections are known
    })
}

/// Avg/sum pooling: one scalar weight, `1/(kh*kw)` in float32 or `1`.
fn pool(
    kind: PoolKind,
    g: &Geometry,
    n_s: usize,
    n_d: usize,
    loc: &Location,
) -> Result<ProjKind, EngineError> {
    let s = g.check(n_s, n_d, loc)?;
    let weight = match kind {
        PoolKind::Avg => 1.0f32 / (s.khw as f32),
        PoolKind::Sum => 1.0f32,
    };
    let (rows, cols) = g.taps(&s, loc)?;
    Ok(ProjKind::Pool {
        weight,
        in_hw: s.in_hw,
        in_w: g.in_w,
        plane: s.plane,
        ow: s.ow,
        rows,
        cols,
        pixels: None,        // built by the layout
        channel_last: false, // set by the layout
    })
}

/// Geometry of a conv/pool projection (R1.2). The channel counts carry the names
/// that errors use: `c_in` / `c_out` for a conv, `channels` (both) for a pool.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub c_in: (&'static str, usize),
    pub c_out: (&'static str, usize),
    pub in_h: usize,
    pub in_w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

/// What [`Geometry::check`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// `in_h * in_w`.
    pub in_hw: usize,
    pub oh: usize,
    pub ow: usize,
    /// `oh * ow`.
    pub plane: usize,
    /// `kh * kw`.
    pub khw: usize,
}

impl Geometry {
    /// Checks the geometry against a source of `n_s` and a target of `n_d` neurons:
    /// every size and stride >= 1, `c_in * in_h * in_w = n_s`, output size >= 1 on
    /// both axes, `c_out * oh * ow = n_d`, and no product overflows.
    pub(super) fn check(
        &self,
        n_s: usize,
        n_d: usize,
        loc: &Location,
    ) -> Result<Shape, EngineError> {
        let ((ci_name, c_in), (co_name, c_out)) = (self.c_in, self.c_out);
        for (f, v) in [
            (ci_name, c_in),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            (co_name, c_out),
            ("kh", self.kh),
            ("kw", self.kw),
            ("stride[0]", self.stride.0),
            ("stride[1]", self.stride.1),
        ] {
            check_pos(v, loc, f)?;
        }
        let in_hw = mul(self.in_h, self.in_w, loc, "in_h * in_w")?;
        let src_field = format!("{ci_name} * in_h * in_w");
        let src = mul(c_in, in_hw, loc, &src_field)?;
        if src != n_s {
            return Err(EngineError::model(
                loc,
                src_field,
                src,
                format!("must equal the source population size {n_s}"),
            ));
        }
        let oh = out_size(
            self.in_h,
            self.padding.0,
            self.kh,
            self.stride.0,
            loc,
            "in_h",
        )?;
        let ow = out_size(
            self.in_w,
            self.padding.1,
            self.kw,
            self.stride.1,
            loc,
            "in_w",
        )?;
        let plane = mul(oh, ow, loc, "oh * ow")?;
        let dst_field = format!("{co_name} * oh * ow");
        let produced = mul(c_out, plane, loc, &dst_field)?;
        if produced != n_d {
            return Err(EngineError::model(
                loc,
                dst_field,
                format!("{c_out} * {oh} * {ow} = {produced}"),
                format!("must equal the target population size {n_d}"),
            ));
        }
        let khw = mul(self.kh, self.kw, loc, "kh * kw")?;
        Ok(Shape {
            in_hw,
            oh,
            ow,
            plane,
            khw,
        })
    }

    /// The row and column tap tables of a checked geometry.
    fn taps(&self, s: &Shape, loc: &Location) -> Result<(Taps, Taps), EngineError> {
        let rows = Taps::new(self.in_h, s.oh, self.kh, self.stride.0, self.padding.0, loc)?;
        let cols = Taps::new(self.in_w, s.ow, self.kw, self.stride.1, self.padding.1, loc)?;
        Ok((rows, cols))
    }
}

/// Output size of a conv/pool axis: `(n + 2 pad - k) // s + 1`, or an error.
fn out_size(
    n: usize,
    pad: usize,
    k: usize,
    s: usize,
    location: &Location,
    field: &str,
) -> Result<usize, EngineError> {
    let padded = pad
        .checked_mul(2)
        .and_then(|p2| n.checked_add(p2))
        .ok_or_else(|| EngineError::model(location, field, n, "too large"))?;
    if padded < k {
        return Err(EngineError::model(
            location,
            field,
            format!("input {n} + 2*padding {pad} < kernel {k}"),
            "output size must be >= 1",
        ));
    }
    Ok((padded - k) / s + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv_geometry() -> Geometry {
        // 2 x 5 x 5 -> 3 x 3 x 2 with a 3x3 kernel, stride (2, 2), padding (1, 0).
        Geometry {
            c_in: ("c_in", 2),
            c_out: ("c_out", 3),
            in_h: 5,
            in_w: 5,
            kh: 3,
            kw: 3,
            stride: (2, 2),
            padding: (1, 0),
        }
    }

    fn pool_geometry(channels: usize) -> Geometry {
        Geometry {
            c_in: ("channels", channels),
            c_out: ("channels", channels),
            in_h: 4,
            in_w: 6,
            kh: 2,
            kw: 3,
            stride: (2, 3),
            padding: (0, 0),
        }
    }

    fn model_err(e: EngineError) -> (String, String, String) {
        match e {
            EngineError::Model {
                field,
                value,
                reason,
                ..
            } => (field, value, reason),
            other => panic!("not a model error: {other:?}"),
        }
    }

    #[test]
    fn geometry_computes_the_output_plane() {
        let s = conv_geometry().check(50, 18, &Location::Network).unwrap();
        let want = Shape {
            in_hw: 25,
            oh: 3,
            ow: 2,
            plane: 6,
            khw: 9,
        };
        assert_eq!(s, want);
        let s = pool_geometry(2).check(48, 8, &Location::Network).unwrap();
        assert_eq!((s.oh, s.ow, s.plane, s.khw), (2, 2, 4, 6));
    }

    #[test]
    fn geometry_errors_name_the_kind_fields() {
        let e = conv_geometry()
            .check(51, 18, &Location::Network)
            .unwrap_err();
        let want = (
            "c_in * in_h * in_w",
            "50",
            "must equal the source population size 51",
        );
        assert_eq!(model_err(e), (want.0.into(), want.1.into(), want.2.into()));
        let e = pool_geometry(2)
            .check(48, 9, &Location::Network)
            .unwrap_err();
        let want = (
            "channels * oh * ow",
            "2 * 2 * 2 = 8",
            "must equal the target population size 9",
        );
        assert_eq!(model_err(e), (want.0.into(), want.1.into(), want.2.into()));
        let e = pool_geometry(0)
            .check(48, 8, &Location::Network)
            .unwrap_err();
        assert_eq!(model_err(e).0, "channels");
        let mut g = conv_geometry();
        g.kw = 7;
        let e = g.check(50, 18, &Location::Network).unwrap_err();
        let want = (
            "in_w",
            "input 5 + 2*padding 0 < kernel 7",
            "output size must be >= 1",
        );
        assert_eq!(model_err(e), (want.0.into(), want.1.into(), want.2.into()));
        g.kw = 3;
        g.stride.1 = 0;
        assert_eq!(
            model_err(g.check(50, 18, &Location::Network).unwrap_err()).0,
            "stride[1]"
        );
    }

    #[test]
    fn conv_kernel_is_laid_out_by_input_channel_and_tap() {
        let g = conv_geometry();
        let weight: Vec<f32> = (0..3 * 2 * 9).map(|i| i as f32).collect();
        let ProjKind::Conv { k, .. } = conv(&weight, &g, 50, 18, &Location::Network).unwrap()
        else {
            panic!("not a conv");
        };
        // K[o=2, c=1, ky=0, kx=2] at ((c*kh + ky)*kw + kx)*c_out + o.
        assert_eq!(k[((3) * 3 + 2) * 3 + 2], weight[((2 * 2 + 1) * 3) * 3 + 2]);
    }

    #[test]
    fn pool_weight_and_dense_transpose() {
        let g = pool_geometry(2);
        let ProjKind::Pool { weight, .. } =
            pool(PoolKind::Avg, &g, 48, 8, &Location::Network).unwrap()
        else {
            panic!("not a pool");
        };
        assert_eq!(weight, 1.0f32 / 6.0);
        let ProjKind::Dense { wt } =
            dense(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2, &Location::Network).unwrap()
        else {
            panic!("not dense");
        };
        assert_eq!(wt, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
