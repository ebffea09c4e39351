//! The input of a sample (R2): [`SampleInput`] (dense frames or sparse events), its
//! validation and the merge of sparse events into the form the event loop reads
//! ([`prepare`]), the scan of a dense frame for its non-zero inputs, and the check of
//! sample ids (R5.5).

use crate::error::{EngineError, Location};
use crate::network::Network;

/// The input of one sample (R2).
#[derive(Debug, Clone, Copy)]
pub enum SampleInput<'a> {
    /// frames: row-major [timesteps, input_size]
    Dense {
        /// Row-major `[timesteps, input_size]` values, finite and >= 0 (R2.1).
        frames: &'a [f32],
        /// `T >= 1`.
        timesteps: usize,
    },
    /// parallel arrays of events (t, flat input index, value); R2.2
    Sparse {
        /// Timestep of each event, `< timesteps`.
        t: &'a [u32],
        /// Flat input index of each event, `< input_size`.
        index: &'a [u32],
        /// Value of each event, finite and >= 0; repeated `(t, index)` are summed in
        /// float32 in list order (R2.2).
        value: &'a [f32],
        /// `T >= 1`.
        timesteps: usize,
    },
}

/// The events of one sparse sample, `(t, index, value)` ([`SampleInput::Sparse`]).
pub type SparseEvents<'a> = (&'a [u32], &'a [u32], &'a [f32]);

impl<'a> SampleInput<'a> {
    /// The samples of a batch of `timesteps` timesteps, given as exactly one of: one
    /// dense array (`frames`, row-major `[batch, timesteps, n_in]` as `shape` says) or
    /// one [`SparseEvents`] per sample. A parameter error if both or neither is given or
    /// the dense shape does not match `timesteps` and `n_in`; the samples themselves are
    /// validated by the engine.
    pub fn batch(
        dense: Option<(&'a [f32], [usize; 3])>,
        sparse: Option<Vec<SparseEvents<'a>>>,
        timesteps: usize,
        n_in: usize,
    ) -> Result<Vec<SampleInput<'a>>, EngineError> {
        match (dense, sparse) {
            (Some((frames, shape)), None) => {
                if shape[1] != timesteps || shape[2] != n_in {
                    let reason = "shape does not match the network";
                    return Err(EngineError::parameter(
                        "inputs",
                        format!("{shape:?}"),
                        reason,
                    ));
                }
                if shape[0] == 0 {
                    return Ok(Vec::new());
                }
                let stride = timesteps.saturating_mul(n_in);
                if Some(frames.len()) != shape[0].checked_mul(stride) {
                    let what = "internal: inputs do not have the values of their shape";
                    return Err(EngineError::Internal(what.into()));
                }
                let sample = |b: usize| SampleInput::Dense {
                    frames: &frames[b * stride..(b + 1) * stride],
                    timesteps,
                };
                Ok((0..shape[0]).map(sample).collect())
            }
            (None, Some(events)) => Ok(events
                .into_iter()
                .map(|(t, index, value)| SampleInput::Sparse {
                    t,
                    index,
                    value,
                    timesteps,
                })
                .collect()),
            _ => {
                let reason = "give exactly one of dense or sparse";
                Err(EngineError::parameter("inputs", "both/none", reason))
            }
        }
    }
}

/// Class labels as the binding passes them (int64, one per sample): a negative label
/// is "no label".
pub fn labels_from_i64(labels: &[i64]) -> Vec<Option<usize>> {
    labels.iter().map(|&c| usize::try_from(c).ok()).collect()
}

/// A validated sample input.
pub(super) enum Prepared<'a> {
    Dense(&'a [f32]),
    /// Merged events sorted by `(t, index)`; only non-zero values.
    Sparse {
        t: Vec<u32>,
        index: Vec<u32>,
        value: Vec<f32>,
    },
}

/// A validated sample: its input, `T`, label and the location that its errors name
/// (`"sample {i}"`).
pub(super) struct PreparedSample<'a> {
    pub(super) input: Prepared<'a>,
    pub(super) timesteps: usize,
    pub(super) label: Option<usize>,
    pub(super) location: Location,
}

fn check_timesteps(timesteps: usize, location: &Location) -> Result<(), EngineError> {
    if timesteps == 0 {
        return Err(EngineError::input(
            location,
            "timesteps",
            0,
            "must be >= 1 (R2.1)",
        ));
    }
    if timesteps - 1 > u32::MAX as usize {
        return Err(EngineError::input(
            location,
            "timesteps",
            timesteps,
            "must be <= 2^32 (t is a u32 in R5.5)",
        ));
    }
    Ok(())
}

/// Checks that every value of dense frames (row-major, `n_in` values per timestep) is
/// finite and `>= 0` (R2.1); the error names the first bad value and its `(t, i)`.
///
/// `run_batch` does this for every sample; it is public so that a caller that runs a
/// batch in parts can check all of it before any part runs.
pub fn check_dense_values(
    frames: &[f32],
    n_in: usize,
    location: &Location,
) -> Result<(), EngineError> {
    // Fast path: a branch-free test of all values (it vectorises); `0 <= x < inf` is
    // false exactly for NaN, infinities and negative values (-0.0 passes, as it
    // should). Only when it fails, the scalar search below finds the first bad value.
    let all_ok = frames.chunks(256).all(|c| {
        c.iter()
            .map(|&x| (0.0..f32::INFINITY).contains(&x) as u32)
            .sum::<u32>()
            == c.len() as u32
    });
    if all_ok {
        return Ok(());
    }
    match frames
        .iter()
        .enumerate()
        .find(|(_, x)| !(x.is_finite() && **x >= 0.0))
    {
        Some((pos, x)) => Err(EngineError::input(
            location,
            "inputs",
            format!("{x} at (t={}, i={})", pos / n_in.max(1), pos % n_in.max(1)),
            "input values must be finite and >= 0 (R2.1)",
        )),
        None => Ok(()),
    }
}

/// Validates one sample (label, `T`, values; R2) and brings its input into the form
/// the event loop reads: dense frames as they are, sparse events merged (R2.2). With
/// `values_checked` the dense values were checked already ([`check_dense_values`]).
pub(super) fn prepare<'a>(
    net: &Network,
    input: &SampleInput<'a>,
    label: Option<usize>,
    values_checked: bool,
    location: Location,
) -> Result<PreparedSample<'a>, EngineError> {
    if let Some(c) = label {
        if c >= net.n_outputs() {
            return Err(EngineError::input(
                &location,
                "labels",
                c,
                format!("must be < n_outputs = {}", net.n_outputs()),
            ));
        }
    }
    let (prepared, timesteps) = match *input {
        SampleInput::Dense { frames, timesteps } => {
            check_dense(
                net.input_size(),
                frames,
                timesteps,
                values_checked,
                &location,
            )?;
            (Prepared::Dense(frames), timesteps)
        }
        SampleInput::Sparse {
            t,
            index,
            value,
            timesteps,
        } => {
            check_sparse(net.input_size(), t, index, value, timesteps, &location)?;
            (merge_events(t, index, value, &location)?, timesteps)
        }
    };
    Ok(PreparedSample {
        input: prepared,
        timesteps,
        label,
        location,
    })
}

/// Dense frames: `T` valid, `T * n_in` values, each finite and `>= 0` (unless
/// `values_checked`).
fn check_dense(
    n_in: usize,
    frames: &[f32],
    timesteps: usize,
    values_checked: bool,
    location: &Location,
) -> Result<(), EngineError> {
    check_timesteps(timesteps, location)?;
    let want = timesteps.checked_mul(n_in);
    if want != Some(frames.len()) {
        return Err(EngineError::input(
            location,
            "inputs",
            format!("<{} values>", frames.len()),
            format!("dense frames must have timesteps * input_size = {timesteps} * {n_in} values"),
        ));
    }
    if !values_checked {
        check_dense_values(frames, n_in, location)?;
    }
    Ok(())
}

/// Sparse events: `T` valid, equal lengths, and per event (in list order) `t < T`,
/// `index < n_in` and a finite value `>= 0`.
fn check_sparse(
    n_in: usize,
    t: &[u32],
    index: &[u32],
    value: &[f32],
    timesteps: usize,
    location: &Location,
) -> Result<(), EngineError> {
    check_timesteps(timesteps, location)?;
    if t.len() != index.len() || t.len() != value.len() {
        return Err(EngineError::input(
            location,
            "inputs",
            format!(
                "t/index/value lengths {}/{}/{}",
                t.len(),
                index.len(),
                value.len()
            ),
            "sparse event arrays must have equal lengths",
        ));
    }
    for e in 0..t.len() {
        if t[e] as usize >= timesteps {
            return Err(EngineError::input(
                location,
                "inputs",
                format!("t = {} at event {e}", t[e]),
                format!("must be < timesteps = {timesteps}"),
            ));
        }
        if index[e] as usize >= n_in {
            return Err(EngineError::input(
                location,
                "inputs",
                format!("index = {} at event {e}", index[e]),
                format!("must be < input_size = {n_in}"),
            ));
        }
        let x = value[e];
        if !(x.is_finite() && x >= 0.0) {
            return Err(EngineError::input(
                location,
                "inputs",
                format!("value = {x} at event {e}"),
                "input values must be finite and >= 0 (R2.1)",
            ));
        }
    }
    Ok(())
}

/// R2.2: the valid events `(t, index, value)` sorted by `(t, index)`, the values of
/// repeated `(t, index)` summed in float32 in list order (a sum that is not finite is an
/// error), and the sums of 0 left out.
fn merge_events<'a>(
    t: &[u32],
    index: &[u32],
    value: &[f32],
    location: &Location,
) -> Result<Prepared<'a>, EngineError> {
    // Stable sort by (t, index): repeated (t, index) stay in list order (R2.2).
    let mut order: Vec<usize> = (0..t.len()).collect();
    order.sort_by_key(|&e| (t[e], index[e]));
    let mut mt = Vec::new();
    let mut mi = Vec::new();
    let mut mv = Vec::new();
    let mut pos = 0;
    while pos < order.len() {
        let key = (t[order[pos]], index[order[pos]]);
        let mut sum = 0.0f32;
        while pos < order.len() && (t[order[pos]], index[order[pos]]) == key {
            sum += value[order[pos]];
            pos += 1;
        }
        if !sum.is_finite() {
            return Err(EngineError::input(
                location,
                "inputs",
                format!("sum {sum} at (t={}, i={})", key.0, key.1),
                "summed input values must be finite (R2.1, R2.2)",
            ));
        }
        if sum != 0.0 {
            mt.push(key.0);
            mi.push(key.1);
            mv.push(sum);
        }
    }
    Ok(Prepared::Sparse {
        t: mt,
        index: mi,
        value: mv,
    })
}

/// The ids of the non-zero inputs of dense frame `frame`, in index order, written to
/// the start of `nz` (`nz.len() >= frame.len()`); returns their number. A bit mask per
/// 8 values (one vector compare), then its set bits: sparse frames are mostly all-zero
/// chunks.
#[inline(always)]
pub(super) fn nonzero_inputs(frame: &[f32], nz: &mut [u32]) -> usize {
    let mut count = 0;
    let mut chunks = frame.chunks_exact(8);
    let mut base = 0u32;
    for ch in &mut chunks {
        let ch: &[f32; 8] = ch.try_into().expect("chunk of 8");
        let mut mask = 0u32;
        for (l, &x) in ch.iter().enumerate() {
            mask |= ((x != 0.0) as u32) << l;
        }
        while mask != 0 {
            nz[count] = base + mask.trailing_zeros();
            count += 1;
            mask &= mask - 1;
        }
        base += 8;
    }
    for (l, &x) in chunks.remainder().iter().enumerate() {
        nz[count] = base + l as u32;
        count += (x != 0.0) as usize;
    }
    count
}

/// The `sample` argument of R5.5 for sample id `id` (`< 2^32`).
pub(super) fn check_sample_id(id: u64) -> Result<u32, EngineError> {
    u32::try_from(id).map_err(|_| {
        EngineError::parameter("sample_ids", id, "must be < 2^32 (sample is a u32 in R5.5)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_dense_or_sparse_and_the_dense_shape_fits_the_network() {
        let frames = [0.0f32; 12];
        let samples = SampleInput::batch(Some((&frames, [2, 3, 2])), None, 3, 2).unwrap();
        assert_eq!(samples.len(), 2);
        assert!(
            matches!(samples[1], SampleInput::Dense { frames, timesteps: 3 } if frames.len() == 6)
        );
        let e = SampleInput::batch(Some((&frames, [2, 2, 3])), None, 3, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid inputs = [2, 2, 3]: shape does not match the network"
        );
        let e = SampleInput::batch(Some((&frames[..6], [2, 3, 2])), None, 3, 2).unwrap_err();
        assert!(matches!(e, EngineError::Internal(_)));
        let empty = SampleInput::batch(Some((&[], [4, 0, 2])), None, 0, 2).unwrap();
        assert_eq!(empty.len(), 4);
        let events: Vec<SparseEvents<'_>> = vec![(&[0], &[1], &[0.5]), (&[], &[], &[])];
        let sparse = SampleInput::batch(None, Some(events.clone()), 3, 2).unwrap();
        assert!(matches!(
            sparse[0],
            SampleInput::Sparse {
                t: [0],
                timesteps: 3,
                ..
            }
        ));
        for (dense, sparse) in [(Some((&frames[..], [2, 3, 2])), Some(events)), (None, None)] {
            let e = SampleInput::batch(dense, sparse, 3, 2).unwrap_err();
            assert_eq!(
                e.to_string(),
                "invalid inputs = both/none: give exactly one of dense or sparse"
            );
        }
    }

    #[test]
    fn negative_labels_are_none() {
        assert_eq!(labels_from_i64(&[2, -1, 0]), vec![Some(2), None, Some(0)]);
    }
}
