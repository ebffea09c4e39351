//! Storage layout of the non-input populations (module documentation of `network`):
//! the plane a population's conv/pool projections agree on, channel-last slots,
//! the `id_of` table, the per-slot LIF parameters, and what the layout changes in
//! the lowered projections (scaled tap tables, dense rows in slot order).

use super::{NetworkSpec, PixelTaps, ProjKind, Projection, PIXEL_TAPS_MAX};
use crate::alloc;
use crate::error::{EngineError, Location};

/// Slot of the neuron with id `lo + l` of a population whose first id is `lo`,
/// stored with `plane` pixels of `channels` channels (`l = o * plane + pix`):
/// `lo + pix * channels + o`. With `plane = size` (`channels = 1`) slot = id.
#[inline]
pub(super) fn slot(lo: usize, l: usize, plane: usize, channels: usize) -> usize {
    lo + (l % plane) * channels + l / plane
}

/// Per non-input population: the plane that all conv/pool projections into it agree
/// on; otherwise (or if none) one "pixel" per neuron (its size), and slot = id.
pub(super) fn planes(pop_offset: &[usize], projections: &[Projection]) -> Vec<usize> {
    (0..pop_offset.len() - 1)
        .map(|p| {
            let size = pop_offset[p + 1] - pop_offset[p];
            let mut planes = projections
                .iter()
                .filter(|pr| pr.target_pop == p)
                .filter_map(|pr| match &pr.kind {
                    ProjKind::Conv { plane, .. } | ProjKind::Pool { plane, .. } => Some(*plane),
                    ProjKind::Dense { .. } => None,
                });
            match planes.next() {
                Some(first) if planes.all(|x| x == first) => first,
                _ => size.max(1),
            }
        })
        .collect()
}

/// Per non-input population: the channels of its layout, `size / plane`.
pub(super) fn channels(pop_offset: &[usize], planes: &[usize]) -> Vec<usize> {
    (0..planes.len())
        .map(|p| (pop_offset[p + 1] - pop_offset[p]) / planes[p])
        .collect()
}

/// The per-neuron and per-slot arrays of the network.
pub(super) struct PerNeuron {
    /// Per neuron id: its non-input population index (0-based).
    pub pop_of: Vec<u32>,
    /// Slot -> neuron id (R1.5).
    pub id_of: Vec<u32>,
    /// Per slot θ, broadcast.
    pub threshold: Vec<f32>,
    /// Per slot β, broadcast.
    pub beta: Vec<f32>,
    /// Per slot bias, broadcast.
    pub bias: Vec<f32>,
    /// Per slot synaptic decay α (R4.12), broadcast; empty when no population is
    /// synaptic.
    pub alpha: Vec<f32>,
}

/// Builds [`PerNeuron`] for the layout `planes` / `channels`. Allocated fallibly:
/// a huge population size is an error, not an abort.
pub(super) fn per_neuron(
    spec: &NetworkSpec,
    pop_offset: &[usize],
    planes: &[usize],
    channels: &[usize],
) -> Result<PerNeuron, EngineError> {
    let total = pop_offset[pop_offset.len() - 1];
    let mut pop_of: Vec<u32> = Vec::new();
    let mut threshold: Vec<f32> = Vec::new();
    let mut beta: Vec<f32> = Vec::new();
    let mut bias: Vec<f32> = Vec::new();
    let mut alpha: Vec<f32> = Vec::new();
    let mut id_of: Vec<u32> = vec![];
    let what = "per-neuron arrays";
    alloc::reserve(&mut pop_of, total, &Location::Network, what)?;
    alloc::reserve(&mut id_of, total, &Location::Network, what)?;
    id_of.resize(total, 0);
    alloc::reserve(&mut threshold, total, &Location::Network, what)?;
    alloc::reserve(&mut beta, total, &Location::Network, what)?;
    alloc::reserve(&mut bias, total, &Location::Network, what)?;
    let any_synaptic = spec.populations.iter().any(|p| p.is_synaptic());
    if any_synaptic {
        alloc::reserve(&mut alpha, total, &Location::Network, what)?;
    }
    for (p, pop) in spec.populations.iter().enumerate() {
        let lo = pop_offset[p];
        pop_of.extend(std::iter::repeat_n(p as u32, pop.size));
        for l in 0..pop.size {
            id_of[slot(lo, l, planes[p], channels[p])] = (lo + l) as u32;
        }
        let mut arrays = vec![
            (&mut threshold, &pop.threshold),
            (&mut beta, &pop.beta),
            (&mut bias, &pop.bias),
        ];
        if any_synaptic {
            arrays.push((&mut alpha, &pop.alpha));
        }
        for (dst, src) in arrays {
            if src.len() == 1 {
                dst.extend(std::iter::repeat_n(src[0], pop.size));
            } else {
                dst.extend(
                    id_of[lo..lo + pop.size]
                        .iter()
                        .map(|&q| src[q as usize - lo]),
                );
            }
        }
    }
    Ok(PerNeuron {
        pop_of,
        id_of,
        threshold,
        beta,
        bias,
        alpha,
    })
}

/// Applies the layout to the lowered projections: marks the conv/pool projections
/// whose plane is their target's layout plane as channel-last, scales their tap
/// tables to slot and kernel offsets, and puts each dense row (one source neuron) in
/// the slot order of a channel-last target.
pub(super) fn apply(
    projections: &mut [Projection],
    planes: &[usize],
    channels: &[usize],
    id_of: &[u32],
) -> Result<(), EngineError> {
    for proj in projections {
        let p = proj.target_pop;
        match &mut proj.kind {
            ProjKind::Conv {
                plane,
                channel_last,
                c_out,
                kw,
                ow,
                rows,
                cols,
                pixels,
                ..
            } => {
                *channel_last = *plane == planes[p];
                // Slot of pixel (i, j) of channel 0: (i * ow + j) * c_out if
                // channel-last, else i * ow + j; kernel tap (ky, kx) of input channel
                // c at (c * kh + ky) * kw + kx) * c_out.
                let pix_stride = if *channel_last { *c_out } else { 1 };
                rows.scale(*ow * pix_stride, *kw * *c_out, &Location::Network)?;
                cols.scale(pix_stride, *c_out, &Location::Network)?;
                *pixels = PixelTaps::new(rows, cols, PIXEL_TAPS_MAX);
            }
            ProjKind::Pool {
                plane,
                channel_last,
                ow,
                rows,
                cols,
                pixels,
                ..
            } => {
                *channel_last = *plane == planes[p];
                let pix_stride = if *channel_last { channels[p] } else { 1 };
                rows.scale(*ow * pix_stride, 0, &Location::Network)?;
                cols.scale(pix_stride, 0, &Location::Network)?;
                *pixels = PixelTaps::new(rows, cols, PIXEL_TAPS_MAX);
            }
            ProjKind::Dense { wt } if channels[p] > 1 => {
                // Each row (one source neuron) in slot order.
                let (lo, n) = (proj.target_offset, proj.target_size);
                let mut row = alloc::filled(n, 0.0f32, &Location::Network, "dense weights")?;
                for r in wt.chunks_exact_mut(n) {
                    for (dst, &id) in row.iter_mut().zip(&id_of[lo..lo + n]) {
                        *dst = r[id as usize - lo];
                    }
                    r.copy_from_slice(&row);
                }
            }
            ProjKind::Dense { .. } => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::PopulationSpec;

    #[test]
    fn slots_are_channel_last() {
        // 2 channels x 3 pixels at ids 10..16: id 10 + o*3 + pix -> slot 10 + pix*2 + o.
        let slots: Vec<usize> = (0..6).map(|l| slot(10, l, 3, 2)).collect();
        assert_eq!(slots, [10, 12, 14, 11, 13, 15]);
        // plane = size: slot = id.
        assert!((0..6).all(|l| slot(10, l, 6, 1) == 10 + l));
    }

    #[test]
    fn id_of_inverts_the_slots_and_parameters_follow() {
        let pop = |size: usize, threshold: Vec<f32>| PopulationSpec {
            size,
            threshold,
            beta: vec![0.5],
            refractory_dropout: 0.0,
            bias: vec![0.0],
            reset: crate::network::ResetMode::Zero,
            alpha: vec![0.0],
        };
        let spec = NetworkSpec {
            input_size: 1,
            populations: vec![
                pop(2, vec![1.0]),
                pop(6, (1..=6).map(|i| i as f32).collect()),
            ],
            projections: vec![],
        };
        let pop_offset = [0, 2, 8];
        let (planes, channels) = ([2, 3], [1, 2]);
        assert_eq!(super::channels(&pop_offset, &planes), channels);
        let n = per_neuron(&spec, &pop_offset, &planes, &channels).unwrap();
        assert_eq!(n.pop_of, [0, 0, 1, 1, 1, 1, 1, 1]);
        assert_eq!(n.id_of, [0, 1, 2, 5, 3, 6, 4, 7]);
        // threshold[slot] = threshold of the neuron id_of[slot].
        assert_eq!(n.threshold, [1.0, 1.0, 1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(n.beta, [0.5; 8]);
    }

    #[test]
    fn a_plane_needs_every_conv_pool_projection_to_agree() {
        let proj = |target_pop: usize, plane: Option<usize>| Projection {
            target_offset: 0,
            target_size: 0,
            target_pop,
            recurrent: false,
            kind: match plane {
                Some(plane) => ProjKind::Pool {
                    weight: 1.0,
                    in_hw: 1,
                    in_w: 1,
                    plane,
                    ow: 1,
                    rows: crate::network::Taps::new(1, 1, 1, 1, 0, &Location::Network).unwrap(),
                    cols: crate::network::Taps::new(1, 1, 1, 1, 0, &Location::Network).unwrap(),
                    pixels: None,
                    channel_last: false,
                },
                None => ProjKind::Dense { wt: vec![] },
            },
        };
        let pop_offset = [0, 8, 16, 24, 32];
        let projections = [
            proj(0, Some(4)),
            proj(0, None),
            proj(1, Some(4)),
            proj(1, Some(2)),
            proj(2, None),
        ];
        assert_eq!(planes(&pop_offset, &projections), [4, 8, 8, 8]);
    }
}
