//! The flat description of a projection that the binding receives from
//! `asyncsnn._binding`: a kind name and its geometry as a list of integers.

use super::{PoolKind, ProjectionKind, ProjectionSpec};
use crate::error::{EngineError, Location};

/// `geo` with `expected` integers, or a model error of projection `index` (`kind`).
fn geometry<'g>(
    kind: &'static str,
    index: usize,
    geo: &'g [usize],
    expected: usize,
) -> Result<&'g [usize], EngineError> {
    if geo.len() == expected {
        return Ok(geo);
    }
    let at = Location::Projection {
        index,
        kind: Some(kind),
    };
    let reason = format!("expected {expected} integers");
    Err(EngineError::model(
        at,
        "geometry",
        format!("{geo:?}"),
        reason,
    ))
}

impl ProjectionSpec {
    /// Projection `index` of the network from its flat description: `kind` is
    /// `"dense"` (`geometry` ignored), `"conv2d"` (`geometry` = `[c_in, in_h, in_w,
    /// c_out, kh, kw, sh, sw, ph, pw]`) or `"avgpool2d"` / `"sumpool2d"` (`[channels,
    /// in_h, in_w, kh, kw, sh, sw]`). Only the kind and the number of integers are
    /// checked here; [`crate::Network::new`] validates the rest.
    pub fn from_flat(
        index: usize,
        kind: &str,
        source: usize,
        target: usize,
        weight: Vec<f32>,
        geo: &[usize],
    ) -> Result<ProjectionSpec, EngineError> {
        let kind = match kind {
            "dense" => ProjectionKind::Dense { weight },
            "conv2d" => match *geometry("conv2d", index, geo, 10)? {
                [c_in, in_h, in_w, c_out, kh, kw, s0, s1, p0, p1] => ProjectionKind::Conv2d {
                    weight,
                    c_in,
                    in_h,
                    in_w,
                    c_out,
                    kh,
                    kw,
                    stride: (s0, s1),
                    padding: (p0, p1),
                },
                _ => unreachable!("geometry checked the length"),
            },
            other => match PoolKind::from_name(other) {
                Some(pool) => match *geometry(pool.name(), index, geo, 7)? {
                    [channels, in_h, in_w, kh, kw, s0, s1] => ProjectionKind::Pool {
                        kind: pool,
                        channels,
                        in_h,
                        in_w,
                        kh,
                        kw,
                        stride: (s0, s1),
                    },
                    _ => unreachable!("geometry checked the length"),
                },
                None => {
                    let at = Location::Projection { index, kind: None };
                    let reason = "must be dense, conv2d, avgpool2d or sumpool2d";
                    return Err(EngineError::model(at, "kind", other, reason));
                }
            },
        };
        Ok(ProjectionSpec {
            source,
            target,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(kind: &str, geo: &[usize]) -> Result<ProjectionSpec, EngineError> {
        ProjectionSpec::from_flat(3, kind, 1, 2, vec![0.5; 4], geo)
    }

    #[test]
    fn reads_each_kind_from_its_integers() {
        let dense = flat("dense", &[]).unwrap();
        assert_eq!((dense.source, dense.target), (1, 2));
        assert_eq!(
            dense.kind,
            ProjectionKind::Dense {
                weight: vec![0.5; 4]
            }
        );
        let conv = flat("conv2d", &[1, 4, 5, 2, 3, 2, 1, 2, 0, 1]).unwrap();
        let ProjectionKind::Conv2d {
            c_in,
            in_h,
            in_w,
            c_out,
            kh,
            kw,
            stride,
            padding,
            ..
        } = conv.kind
        else {
            panic!("{:?}", conv.kind)
        };
        assert_eq!((c_in, in_h, in_w, c_out, kh, kw), (1, 4, 5, 2, 3, 2));
        assert_eq!((stride, padding), ((1, 2), (0, 1)));
        for (name, pool) in [("avgpool2d", PoolKind::Avg), ("sumpool2d", PoolKind::Sum)] {
            let spec = flat(name, &[2, 4, 6, 2, 3, 2, 1]).unwrap();
            assert_eq!(spec.kind.name(), name);
            let ProjectionKind::Pool {
                kind,
                channels,
                in_h,
                in_w,
                kh,
                kw,
                stride,
            } = spec.kind
            else {
                panic!("{:?}", spec.kind)
            };
            assert_eq!((kind, channels, in_h, in_w, kh, kw), (pool, 2, 4, 6, 2, 3));
            assert_eq!(stride, (2, 1));
        }
    }

    #[test]
    fn a_network_from_flat_projections_shows_its_sizes() {
        let population = |size| crate::network::PopulationSpec {
            size,
            threshold: vec![1.0],
            beta: vec![1.0],
            refractory_dropout: 0.0,
            bias: vec![0.0],
            reset: crate::network::ResetMode::Zero,
            alpha: vec![0.0],
        };
        // A 1x4x4 input, a 2x3x3 conv output, a 2x1x1 sum pool of it.
        let conv = ProjectionSpec::from_flat(
            0,
            "conv2d",
            0,
            1,
            vec![0.5; 8],
            &[1, 4, 4, 2, 2, 2, 1, 1, 0, 0],
        );
        let pool = ProjectionSpec::from_flat(1, "sumpool2d", 1, 2, vec![], &[2, 3, 3, 3, 3, 3, 3]);
        let spec = crate::network::NetworkSpec {
            input_size: 16,
            populations: vec![population(18), population(2)],
            projections: vec![conv.unwrap(), pool.unwrap()],
        };
        let net = crate::network::Network::new(spec).unwrap();
        assert_eq!(
            net.to_string(),
            "Network(input_size=16, neurons=20, outputs=2, projections=2)"
        );
    }

    #[test]
    fn a_bad_kind_or_geometry_is_a_model_error_of_the_projection() {
        let e = flat("conv3d", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "projection 3: invalid kind = conv3d: must be dense, conv2d, avgpool2d or sumpool2d"
        );
        let e = flat("conv2d", &[1, 2, 3]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "projection 3 (conv2d): invalid geometry = [1, 2, 3]: expected 10 integers"
        );
        let e = flat("sumpool2d", &[1; 10]).unwrap_err();
        assert_eq!(
            e.location(),
            Some(&Location::Projection {
                index: 3,
                kind: Some("sumpool2d")
            })
        );
    }
}
