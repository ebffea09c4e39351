//! Per-sample readout and counters (R7), and [`COUNTERS`]: the one list of their names
//! and shapes, which the binding (`_engine.COUNTERS`, hence
//! `asyncsnn.result.COUNTER_FIELDS`) and the Rust tests read; [`BatchLayout`]: the
//! shapes of a batch's arrays of them, which the binding allocates and fills.

use crate::error::{EngineError, Location};

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
    /// R7.9: spikes (all populations) per timestep, `[T]` (sum: `spikes_total`).
    pub timestep_spikes: Vec<i64>,
    /// R7.9: synops per timestep, `[T]` (sum: `synops`).
    pub timestep_synops: Vec<i64>,
    /// R7.9: global forward step (counted across timesteps from 0) after which the
    /// running prediction last changed, -1 = no output spike.
    pub decision_step: i64,
    /// R7.9: the timestep of `decision_step`, -1 = none.
    pub decision_timestep: i64,
    /// R7.9: spikes of the sample in steps `0..=decision_step`, -1 = none.
    pub decision_spikes: i64,
    /// R7.9: synops integrated in steps `0..=decision_step`, -1 = none.
    pub decision_synops: i64,
}

/// An axis of a counter's per-sample shape (the batch axis comes before them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Axis {
    /// One entry per timestep, `T`.
    Timesteps,
    /// One entry per output neuron, `n_out`.
    Outputs,
    /// One entry per non-input population, `P`.
    Populations,
    /// One entry per projection, in projection order, `n_proj`.
    Projections,
}

impl Axis {
    /// The axis as `asyncsnn.result.COUNTER_FIELDS` names it: `"T"`, `"n_out"`, `"P"`,
    /// `"n_proj"`.
    pub const fn name(self) -> &'static str {
        match self {
            Axis::Timesteps => "T",
            Axis::Outputs => "n_out",
            Axis::Populations => "P",
            Axis::Projections => "n_proj",
        }
    }
}

/// The lengths of the [`Axis`] kinds for one run (one network, one `T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisSizes {
    /// `T`.
    pub timesteps: usize,
    /// `n_out`.
    pub outputs: usize,
    /// `P`.
    pub populations: usize,
    /// `n_proj`.
    pub projections: usize,
}

impl AxisSizes {
    /// The sizes for a run of `net` with `timesteps` timesteps.
    pub fn of_run(net: &crate::network::Network, timesteps: usize) -> AxisSizes {
        AxisSizes {
            timesteps,
            outputs: net.n_outputs(),
            populations: net.n_populations(),
            projections: net.n_projections(),
        }
    }

    /// The length of `axis`.
    pub const fn of(&self, axis: Axis) -> usize {
        match axis {
            Axis::Timesteps => self.timesteps,
            Axis::Outputs => self.outputs,
            Axis::Populations => self.populations,
            Axis::Projections => self.projections,
        }
    }
}

/// One counter of R7: its name, its per-sample shape and where [`SampleResult`] holds it.
#[derive(Clone, Copy)]
pub struct Counter {
    /// The name every engine and `InferenceResult` use (`"predictions"`, `"synops"`, ...).
    pub name: &'static str,
    /// The per-sample axes, outermost first (empty: one value per sample).
    pub axes: &'static [Axis],
    /// The rule of `docs/semantics.md` that defines it.
    pub rule: &'static str,
    values: fn(&SampleResult) -> &[i64],
}

impl Counter {
    /// The values of this counter in `r`, flattened row-major (`prod(axes)` values).
    pub fn values<'r>(&self, r: &'r SampleResult) -> &'r [i64] {
        (self.values)(r)
    }

    /// The number of values per sample for `sizes` (`None` if it overflows `usize`).
    pub fn len_per_sample(&self, sizes: &AxisSizes) -> Option<usize> {
        self.axes
            .iter()
            .try_fold(1usize, |acc, &a| acc.checked_mul(sizes.of(a)))
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("name", &self.name)
            .field("axes", &self.axes)
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

/// The most axes a counter has (`timestep_output_counts`: `[T, n_out]`).
pub const MAX_AXES: usize = 2;

const NONE: &[Axis] = &[];
const T: &[Axis] = &[Axis::Timesteps];

/// Every counter of R7, in the order of the result dict of the binding (and of
/// `asyncsnn.result.COUNTER_FIELDS`, built from it).
pub const COUNTERS: [Counter; 25] = [
    Counter {
        name: "predictions",
        axes: NONE,
        rule: "R7.1",
        values: |r| std::slice::from_ref(&r.prediction),
    },
    Counter {
        name: "output_counts",
        axes: &[Axis::Outputs],
        rule: "R7.1",
        values: |r| &r.output_counts,
    },
    Counter {
        name: "timestep_output_counts",
        axes: &[Axis::Timesteps, Axis::Outputs],
        rule: "R7.1",
        values: |r| &r.timestep_output_counts,
    },
    Counter {
        name: "spikes",
        axes: &[Axis::Populations],
        rule: "R7.2",
        values: |r| &r.spikes,
    },
    Counter {
        name: "spikes_total",
        axes: NONE,
        rule: "R7.2",
        values: |r| std::slice::from_ref(&r.spikes_total),
    },
    Counter {
        name: "input_events",
        axes: NONE,
        rule: "R7.3",
        values: |r| std::slice::from_ref(&r.input_events),
    },
    Counter {
        name: "synops",
        axes: NONE,
        rule: "R7.4",
        values: |r| std::slice::from_ref(&r.synops),
    },
    Counter {
        name: "synops_per_projection",
        axes: &[Axis::Projections],
        rule: "R7.4",
        values: |r| &r.synops_per_projection,
    },
    Counter {
        name: "forward_steps",
        axes: NONE,
        rule: "R7.5",
        values: |r| std::slice::from_ref(&r.forward_steps),
    },
    Counter {
        name: "timestep_forward_steps",
        axes: T,
        rule: "R7.5",
        values: |r| &r.timestep_forward_steps,
    },
    Counter {
        name: "dropped_spikes",
        axes: NONE,
        rule: "R7.6",
        values: |r| std::slice::from_ref(&r.dropped_spikes),
    },
    Counter {
        name: "queue_peak",
        axes: NONE,
        rule: "R7.6",
        values: |r| std::slice::from_ref(&r.queue_peak),
    },
    Counter {
        name: "first_output_step",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_output_step,
    },
    Counter {
        name: "first_output_class",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_output_class,
    },
    Counter {
        name: "first_output_spikes",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_output_spikes,
    },
    Counter {
        name: "first_output_synops",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_output_synops,
    },
    Counter {
        name: "first_correct_step",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_correct_step,
    },
    Counter {
        name: "first_correct_spikes",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_correct_spikes,
    },
    Counter {
        name: "first_correct_synops",
        axes: T,
        rule: "R7.7",
        values: |r| &r.first_correct_synops,
    },
    Counter {
        name: "timestep_spikes",
        axes: T,
        rule: "R7.9",
        values: |r| &r.timestep_spikes,
    },
    Counter {
        name: "timestep_synops",
        axes: T,
        rule: "R7.9",
        values: |r| &r.timestep_synops,
    },
    Counter {
        name: "decision_step",
        axes: NONE,
        rule: "R7.9",
        values: |r| std::slice::from_ref(&r.decision_step),
    },
    Counter {
        name: "decision_timestep",
        axes: NONE,
        rule: "R7.9",
        values: |r| std::slice::from_ref(&r.decision_timestep),
    },
    Counter {
        name: "decision_spikes",
        axes: NONE,
        rule: "R7.9",
        values: |r| std::slice::from_ref(&r.decision_spikes),
    },
    Counter {
        name: "decision_synops",
        axes: NONE,
        rule: "R7.9",
        values: |r| std::slice::from_ref(&r.decision_synops),
    },
];

/// The counter named `name` (one of [`COUNTERS`]).
pub fn counter(name: &str) -> Option<&'static Counter> {
    COUNTERS.iter().find(|c| c.name == name)
}

/// The arrays of a batch's counters: one C-ordered `[batch, *axes]` int64 array per
/// counter of [`COUNTERS`], in that order (the binding's result dict). Sample `b`'s
/// values of counter `f` are elements `b * k..(b + 1) * k` of array `f`, `k` its
/// values per sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLayout {
    batch: usize,
    /// Per counter: the array's dimensions (the first `1 + axes` of them are used).
    dims: [[usize; 1 + MAX_AXES]; COUNTERS.len()],
    per_sample: [usize; COUNTERS.len()],
}

impl BatchLayout {
    /// The layout for `batch` samples with axes of `sizes`, or an [`EngineError::Overflow`]
    /// of the batch when an array's size in bytes does not fit an `isize` (R7.8: a typed
    /// error before anything runs, not an abort in the allocator).
    pub fn new(batch: usize, sizes: &AxisSizes) -> Result<BatchLayout, EngineError> {
        let oom = || EngineError::overflow(Location::Batch, "result arrays (memory)");
        let mut layout = BatchLayout {
            batch,
            dims: [[batch; 1 + MAX_AXES]; COUNTERS.len()],
            per_sample: [0; COUNTERS.len()],
        };
        for (f, counter) in COUNTERS.iter().enumerate() {
            for (d, &axis) in layout.dims[f][1..].iter_mut().zip(counter.axes) {
                *d = sizes.of(axis);
            }
            let k = counter.len_per_sample(sizes).ok_or_else(oom)?;
            k.checked_mul(batch)
                .and_then(|n| n.checked_mul(std::mem::size_of::<i64>()))
                .filter(|&bytes| isize::try_from(bytes).is_ok())
                .ok_or_else(oom)?;
            layout.per_sample[f] = k;
        }
        Ok(layout)
    }

    /// The number of samples.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The dimensions of counter `f`'s array, `[batch, *axes]`.
    pub fn shape(&self, f: usize) -> &[usize] {
        &self.dims[f][..1 + COUNTERS[f].axes.len()]
    }

    /// Writes sample `b`'s values of counter `f` from `r` into `out`, the data of
    /// counter `f`'s array. An internal error if `b`, `out` or `r` do not fit the layout.
    pub fn write(
        &self,
        f: usize,
        b: usize,
        r: &SampleResult,
        out: &mut [i64],
    ) -> Result<(), EngineError> {
        let (k, values) = (self.per_sample[f], COUNTERS[f].values(r));
        if b >= self.batch {
            return Err(EngineError::Internal(
                "internal: more results than samples".into(),
            ));
        }
        if values.len() != k || out.len() != k * self.batch {
            let n = values.len();
            let what = format!("internal: a result field has {n} values per sample, expected {k}");
            return Err(EngineError::Internal(what));
        }
        out[b * k..(b + 1) * k].copy_from_slice(values);
        Ok(())
    }
}

/// A vector of `n` copies of `fill`, or an Overflow error instead of an allocation
/// failure (huge `timesteps`).
pub(crate) fn try_vec(
    n: usize,
    fill: i64,
    location: &Location,
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
        location: &Location,
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
            timestep_spikes: per_t(0)?,
            timestep_synops: per_t(0)?,
            decision_step: -1,
            decision_timestep: -1,
            decision_spikes: -1,
            decision_synops: -1,
        })
    }

    /// The sizes of the axes of this result's counters.
    pub fn axis_sizes(&self) -> AxisSizes {
        AxisSizes {
            timesteps: self.timesteps,
            outputs: self.n_outputs,
            populations: self.spikes.len(),
            projections: self.synops_per_projection.len(),
        }
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
        let mut r = SampleResult::new(2, 4, 1, 1, &Location::Sample(0)).unwrap();
        r.compute_prediction();
        assert_eq!(r.prediction, -1);
        r.output_counts = vec![0, 3, 1, 3];
        r.compute_prediction();
        assert_eq!(r.prediction, 1);
        assert_eq!(r.first_output_step, vec![-1, -1]);
        assert_eq!(r.timestep_output_counts.len(), 8);
    }

    #[test]
    fn counters_cover_every_field_with_its_shape() {
        let sizes = AxisSizes {
            timesteps: 3,
            outputs: 4,
            populations: 2,
            projections: 5,
        };
        let r = SampleResult::new(3, 4, 2, 5, &Location::Sample(0)).unwrap();
        assert_eq!(r.axis_sizes(), sizes);
        let mut names = std::collections::HashSet::new();
        for c in &COUNTERS {
            assert!(names.insert(c.name), "{} listed twice", c.name);
            assert!(c.axes.len() <= MAX_AXES, "{}", c.name);
            assert_eq!(
                Some(c.values(&r).len()),
                c.len_per_sample(&sizes),
                "{}",
                c.name
            );
            assert!(c.rule.starts_with("R7.") || c.rule == "R6.4", "{}", c.rule);
            assert_eq!(counter(c.name).map(|k| k.name), Some(c.name));
        }
        assert!(counter("prediction").is_none());
        // Every field of SampleResult but the two sizes is one counter: this pattern
        // has no `..`, so a new field fails to compile here until it is listed in
        // COUNTERS (and the count below is raised).
        let SampleResult {
            timesteps: _,
            n_outputs: _,
            output_counts: _,
            timestep_output_counts: _,
            prediction: _,
            spikes: _,
            spikes_total: _,
            input_events: _,
            synops: _,
            synops_per_projection: _,
            forward_steps: _,
            timestep_forward_steps: _,
            dropped_spikes: _,
            queue_peak: _,
            first_output_step: _,
            first_output_class: _,
            first_output_spikes: _,
            first_output_synops: _,
            first_correct_step: _,
            first_correct_spikes: _,
            first_correct_synops: _,
            timestep_spikes: _,
            timestep_synops: _,
            decision_step: _,
            decision_timestep: _,
            decision_spikes: _,
            decision_synops: _,
        } = r;
        assert_eq!(COUNTERS.len(), 25);
    }

    #[test]
    fn counter_values_are_the_fields() {
        let mut r = SampleResult::new(2, 1, 1, 1, &Location::Sample(0)).unwrap();
        r.synops = 7;
        r.first_correct_synops = vec![3, 4];
        r.prediction = 0;
        assert_eq!(counter("synops").unwrap().values(&r), &[7]);
        assert_eq!(counter("first_correct_synops").unwrap().values(&r), &[3, 4]);
        assert_eq!(counter("predictions").unwrap().values(&r), &[0]);
    }

    #[test]
    fn batch_layout_shapes_and_writes_each_counter() {
        let sizes = AxisSizes {
            timesteps: 3,
            outputs: 4,
            populations: 2,
            projections: 5,
        };
        let layout = BatchLayout::new(2, &sizes).unwrap();
        assert_eq!(layout.batch(), 2);
        let f = |name| COUNTERS.iter().position(|c| c.name == name).unwrap();
        assert_eq!(layout.shape(f("predictions")), &[2]);
        assert_eq!(layout.shape(f("timestep_output_counts")), &[2, 3, 4]);
        assert_eq!(layout.shape(f("synops_per_projection")), &[2, 5]);
        assert_eq!(layout.shape(f("first_correct_step")), &[2, 3]);
        let mut r = SampleResult::new(3, 4, 2, 5, &Location::Sample(0)).unwrap();
        r.timestep_synops = vec![1, 2, 3];
        let mut out = vec![0i64; 6];
        layout.write(f("timestep_synops"), 1, &r, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 1, 2, 3]);
        let internal = |e| matches!(e, EngineError::Internal(_));
        assert!(internal(
            layout
                .write(f("timestep_synops"), 2, &r, &mut out)
                .unwrap_err()
        ));
        assert!(internal(
            layout.write(f("synops"), 0, &r, &mut out).unwrap_err()
        ));
        let short = SampleResult::new(2, 4, 2, 5, &Location::Sample(0)).unwrap();
        let e = layout.write(f("timestep_synops"), 0, &short, &mut out);
        assert!(internal(e.unwrap_err()));
    }

    #[test]
    fn a_batch_too_large_for_memory_is_an_overflow_of_the_batch() {
        let sizes = AxisSizes {
            timesteps: usize::MAX / 4,
            outputs: 1,
            populations: 1,
            projections: 1,
        };
        let e = BatchLayout::new(1, &sizes).unwrap_err();
        assert_eq!(e.to_string(), "batch: result arrays (memory) overflows");
        let sizes = AxisSizes {
            timesteps: 1 << 20,
            ..sizes
        };
        assert!(BatchLayout::new(1 << 20, &sizes).is_ok());
        assert!(BatchLayout::new(usize::MAX / 2, &sizes).is_err());
    }

    #[test]
    fn huge_timesteps_is_an_error_not_an_abort() {
        let e = SampleResult::new(usize::MAX / 2, 4, 1, 1, &Location::Sample(0)).unwrap_err();
        assert!(matches!(e, EngineError::Overflow { .. }));
    }
}
