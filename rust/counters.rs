//! Per-sample readout and counters (R7).

use crate::error::EngineError;

/// Readout and counters of one sample (R7). All counters are i64 (R7.8); per-timestep
/// vectors have one entry per timestep, `-1` marking "none" in the latency records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SampleResult {
    /// Number of timesteps `T`.
    pub timesteps: usize,
    /// Number of output neurons `n_out`.
    pub n_outputs: usize,
    /// R7.1: output spikes summed over all timesteps, `[n_out]`.
    pub output_counts: Vec<i64>,
    /// R7.1: output spikes per timestep, `[T * n_out]` row-major.
    pub timestep_output_counts: Vec<i64>,
    /// R7.1: argmax of `output_counts`, ties to the smallest index, -1 if no output spike.
    pub prediction: i64,
    /// R7.2: spikes per non-input population, `[P]`.
    pub spikes: Vec<i64>,
    /// R7.2: sum of `spikes`.
    pub spikes_total: i64,
    /// R7.3: number of non-zero input values over all frames.
    pub input_events: i64,
    /// R7.4: synapses used by deliveries.
    pub synops: i64,
    /// R7.4: `synops` split by projection, `[n_proj]`.
    pub synops_per_projection: Vec<i64>,
    /// R7.5: forward steps of the sample.
    pub forward_steps: i64,
    /// R7.5: forward steps per timestep, `[T]` (each >= 1).
    pub timestep_forward_steps: Vec<i64>,
    /// R6.4: pending spikes dropped by early stops (sum of multiplicities).
    pub dropped_spikes: i64,
    /// R7.6: the largest number of distinct pending neurons after a fire phase.
    pub queue_peak: i64,
    /// R7.7: forward step of the first output spike per timestep, -1 = none.
    pub first_output_step: Vec<i64>,
    /// R7.7: smallest output index spiking in that step, -1 = none.
    pub first_output_class: Vec<i64>,
    /// R7.7: spikes (all populations) in steps `0..=k0`, -1 = none.
    pub first_output_spikes: Vec<i64>,
    /// R7.7: synops of the deliveries integrated in steps `0..=k0`, -1 = none.
    pub first_output_synops: Vec<i64>,
    /// R7.7: first step in which the label's output neuron spikes, -1 = none / no label.
    pub first_correct_step: Vec<i64>,
    /// R7.7: spikes in steps `0..=first_correct_step`, -1 = none / no label.
    pub first_correct_spikes: Vec<i64>,
    /// R7.7: synops integrated in steps `0..=first_correct_step`, -1 = none / no label.
    pub first_correct_synops: Vec<i64>,
}

/// A vector of `n` copies of `fill`, or an Overflow error instead of an allocation
/// failure (huge `timesteps`).
pub(crate) fn try_vec(
    n: usize,
    fill: i64,
    location: &str,
    what: &str,
) -> Result<Vec<i64>, EngineError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| EngineError::overflow(location, what))?;
    v.resize(n, fill);
    Ok(v)
}

impl SampleResult {
    /// A zeroed result for `timesteps` timesteps (latency records at -1).
    pub(crate) fn new(
        timesteps: usize,
        n_outputs: usize,
        n_pops: usize,
        n_proj: usize,
        location: &str,
    ) -> Result<SampleResult, EngineError> {
        let tn = timesteps
            .checked_mul(n_outputs)
            .ok_or_else(|| EngineError::overflow(location, "timesteps * n_outputs"))?;
        let per_t = |fill| try_vec(timesteps, fill, location, "per-timestep counters");
        Ok(SampleResult {
            timesteps,
            n_outputs,
            output_counts: vec![0; n_outputs],
            timestep_output_counts: try_vec(tn, 0, location, "timestep_output_counts")?,
            prediction: -1,
            spikes: vec![0; n_pops],
            spikes_total: 0,
            input_events: 0,
            synops: 0,
            synops_per_projection: vec![0; n_proj],
            forward_steps: 0,
            timestep_forward_steps: per_t(0)?,
            dropped_spikes: 0,
            queue_peak: 0,
            first_output_step: per_t(-1)?,
            first_output_class: per_t(-1)?,
            first_output_spikes: per_t(-1)?,
            first_output_synops: per_t(-1)?,
            first_correct_step: per_t(-1)?,
            first_correct_spikes: per_t(-1)?,
            first_correct_synops: per_t(-1)?,
        })
    }

    /// R7.1: argmax of `output_counts`, ties to the smallest index, -1 if all zero.
    pub(crate) fn compute_prediction(&mut self) {
        let mut best = -1i64;
        let mut best_count = 0i64;
        for (i, &c) in self.output_counts.iter().enumerate() {
            if c > best_count {
                best_count = c;
                best = i as i64;
            }
        }
        self.prediction = best;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_ties_and_none() {
        let mut r = SampleResult::new(2, 4, 1, 1, "sample 0").unwrap();
        r.compute_prediction();
        assert_eq!(r.prediction, -1);
        r.output_counts = vec![0, 3, 1, 3];
        r.compute_prediction();
        assert_eq!(r.prediction, 1);
        assert_eq!(r.first_output_step, vec![-1, -1]);
        assert_eq!(r.timestep_output_counts.len(), 8);
    }

    #[test]
    fn huge_timesteps_is_an_error_not_an_abort() {
        let e = SampleResult::new(usize::MAX / 2, 4, 1, 1, "sample 0").unwrap_err();
        assert!(matches!(e, EngineError::Overflow { .. }));
    }
}
