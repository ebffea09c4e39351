//! Network description ([`NetworkSpec`]) and its validated, preprocessed form
//! ([`Network`]) (R1.*).
//!
//! Population indices follow the semantics: population `0` is the input, populations
//! `1..=P` are the LIF populations `spec.populations[0..P]`. Error locations use these
//! indices ("population 1" is `spec.populations[0]`) and the 0-based index of a
//! projection in `spec.projections` ("projection 0 (dense)").
//!
//! Preprocessing lays weights out by *source* neuron so that delivering a spike
//! (R4.2, R4.3.4) touches contiguous memory:
//! - dense weights are transposed to `[n_source][n_target]`, so one delivery is one
//!   contiguous axpy into the target population's current buffer;
//! - conv kernels are re-laid out as `[c_in][kh][kw][c_out]`, and the fan-out of a
//!   source neuron is computed from the geometry through per-axis tap tables (no dense
//!   expansion of the kernel), combined into one table of (target, kernel) offsets per
//!   source pixel where that table is small (`PixelTaps`, at most `PIXEL_TAPS_MAX`
//!   entries; otherwise the delivery walks the two axes);
//! - pooling uses the same tap tables and one scalar weight.
//!
//! The engine stores the state of a population whose conv/pool projections agree on an
//! output plane (`h * w`) channel-last: the neuron with id `lo + o * plane + pix`
//! (channel `o`, pixel `pix`, R1.5 ids are channel-major) is kept in *slot*
//! `lo + pix * channels + o`. One kernel tap of a conv delivery is then one contiguous
//! row addition of `c_out` floats. Slots are internal: every id the engine exposes,
//! orders or hashes is the R1.5 id (the table `id_of` converts);
//! other populations have slot = id. The storage order changes no float operation.
//!
//! Submodules: `validate` (populations, projection endpoints, shared checks), `lower`
//! (per-kind lowering; one geometry check for conv and pool), `taps` (per-axis and
//! per-pixel tap tables), `layout` (slots, `id_of`, per-slot parameters, scaled tap
//! tables and the per-pixel ones), `flat`
//! (a projection from the binding's flat description).

mod flat;
mod layout;
mod lower;
mod taps;
mod validate;

pub(crate) use taps::{pixel_taps, source_coords, source_pixel, PixelTaps, Taps, PIXEL_TAPS_MAX};
pub(crate) use validate::RECURRENT_DROPOUT;

use crate::error::{EngineError, Location};

/// Kind of a pooling projection (R1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// `AvgPool2d`: weight `1/(kh*kw)` computed in float32.
    Avg,
    /// `SumPool2d`: weight `1`.
    Sum,
}

impl PoolKind {
    /// The projection kind's name in the dict form and the flat description:
    /// `avgpool2d` or `sumpool2d`.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Avg => "avgpool2d",
            PoolKind::Sum => "sumpool2d",
        }
    }

    /// The pool kind named `name` ([`PoolKind::name`]), if it is one.
    pub fn from_name(name: &str) -> Option<PoolKind> {
        [PoolKind::Avg, PoolKind::Sum]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// Kind and weights of a projection (R1.2).
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectionKind {
    /// weight: row-major [n_target, n_source] (as numpy W[q, j]).
    Dense {
        /// Row-major `[n_target, n_source]`.
        weight: Vec<f32>,
    },
    /// weight: row-major [c_out, c_in, kh, kw]. Source read as (c_in, in_h, in_w).
    Conv2d {
        /// Row-major `[c_out, c_in, kh, kw]`.
        weight: Vec<f32>,
        /// Input channels.
        c_in: usize,
        /// Input height.
        in_h: usize,
        /// Input width.
        in_w: usize,
        /// Output channels.
        c_out: usize,
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// Stride `(sh, sw)`.
        stride: (usize, usize),
        /// Zero padding `(ph, pw)`.
        padding: (usize, usize),
    },
    /// Source read as (channels, in_h, in_w); no padding.
    Pool {
        /// Average or sum pooling.
        kind: PoolKind,
        /// Channels (source and target).
        channels: usize,
        /// Input height.
        in_h: usize,
        /// Input width.
        in_w: usize,
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// Stride `(sh, sw)`.
        stride: (usize, usize),
    },
}

impl ProjectionKind {
    /// Short name used in error locations: "dense", "conv2d", "avgpool2d", "sumpool2d".
    pub fn name(&self) -> &'static str {
        match self {
            ProjectionKind::Dense { .. } => "dense",
            ProjectionKind::Conv2d { .. } => "conv2d",
            ProjectionKind::Pool {
                kind: PoolKind::Avg,
                ..
            } => "avgpool2d",
            ProjectionKind::Pool {
                kind: PoolKind::Sum,
                ..
            } => "sumpool2d",
        }
    }
}

/// A projection from population `source` to population `target` (R1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionSpec {
    /// Source population index (0 = input).
    pub source: usize,
    /// Target population index (`>= 1`). The projection is recurrent when
    /// `source >= target` (R1.2).
    pub target: usize,
    /// Kind and weights.
    pub kind: ProjectionKind,
}

/// Reset mode of a population (R4.8), applied by the fire phase to a neuron that spikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ResetMode {
    /// `V <- 0` (version 1).
    #[default]
    Zero,
    /// `V <- V - threshold`, immediately.
    Subtract,
    /// `V` is left as it is and the neuron owes the threshold (`debt`), subtracted when
    /// its population next settles, after that step's current and bias (R4.3.1).
    SubtractDelayed,
    /// `V` is left as it is.
    None,
}

impl ResetMode {
    /// Every mode, in the order of [`ResetMode::code`].
    pub const ALL: [ResetMode; 4] = [
        ResetMode::Zero,
        ResetMode::Subtract,
        ResetMode::SubtractDelayed,
        ResetMode::None,
    ];

    /// The mode's name in the dict form and in Python (`asyncsnn.network.RESET_MODES`):
    /// `zero`, `subtract`, `subtract_delayed`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            ResetMode::Zero => "zero",
            ResetMode::Subtract => "subtract",
            ResetMode::SubtractDelayed => "subtract_delayed",
            ResetMode::None => "none",
        }
    }

    /// The mode's code, its index in `asyncsnn.network.RESET_MODES` (0 = `zero`).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The mode with code `code` ([`ResetMode::code`]), if it is one.
    pub fn from_code(code: u8) -> Option<ResetMode> {
        ResetMode::ALL.get(usize::from(code)).copied()
    }

    /// The mode named `name` ([`ResetMode::name`]), if it is one.
    pub fn from_name(name: &str) -> Option<ResetMode> {
        ResetMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// A LIF population (R1.1, R1.4).
#[derive(Debug, Clone, PartialEq)]
pub struct PopulationSpec {
    /// Number of neurons (flat, C order of the population's shape).
    pub size: usize,
    /// Threshold θ, len 1 (broadcast) or `size`; finite and > 0.
    pub threshold: Vec<f32>,
    /// Leak factor β, len 1 (broadcast) or `size`; in [0, 1].
    pub beta: Vec<f32>,
    /// The network's refractory dropout p in [0, 1) (R4.6); used only when the caller
    /// passes it in [`crate::RunConfig::refractory_dropout`]. `p > 0` needs
    /// `reset = Zero`.
    pub refractory_dropout: f64,
    /// Bias b (R1.4), len 1 (broadcast) or `size`; finite. Added once per timestep when
    /// the population settles (R4.7).
    pub bias: Vec<f32>,
    /// Reset mode (R4.8).
    pub reset: ResetMode,
    /// Decay α of the synaptic current (R4.12), len 1 (broadcast) or `size`; finite
    /// in [0, 1]. Some `alpha != 0` gives every neuron of the population a synaptic
    /// current `S`; all 0 (the default) is the LIF neuron.
    pub alpha: Vec<f32>,
}

impl PopulationSpec {
    /// A version-1 population of `size` neurons: scalar `threshold` and `beta`, no
    /// dropout, bias 0, reset `zero`, alpha 0.
    pub fn new(size: usize, threshold: f32, beta: f32) -> PopulationSpec {
        PopulationSpec {
            size,
            threshold: vec![threshold],
            beta: vec![beta],
            refractory_dropout: 0.0,
            bias: vec![0.0],
            reset: ResetMode::Zero,
            alpha: vec![0.0],
        }
    }

    /// Whether the population settles every timestep by itself (R1.6): a non-zero bias,
    /// a synaptic current or a reset other than `zero`. (A population that a recurrent
    /// projection targets settles too; that is a property of the network, `Network`
    /// adds it.)
    pub fn is_settling(&self) -> bool {
        self.reset != ResetMode::Zero || self.bias.iter().any(|&b| b != 0.0) || self.is_synaptic()
    }

    /// Whether its neurons have a synaptic current (R4.12): `alpha != 0` for any.
    pub fn is_synaptic(&self) -> bool {
        self.alpha.iter().any(|&a| a != 0.0)
    }
}

/// Description of a whole network (R1.*).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    /// Number of input neurons (population 0).
    pub input_size: usize,
    /// Non-input populations 1..=P, in order.
    pub populations: Vec<PopulationSpec>,
    /// Projections, in projection order (R7.4 `synops_per_projection`).
    pub projections: Vec<ProjectionSpec>,
}

/// Preprocessed projection kind.
#[derive(Debug, Clone)]
pub(crate) enum ProjKind {
    /// `wt[j * n_target + q] = W[q, j]`.
    Dense { wt: Vec<f32> },
    /// `k[((c*kh + ky)*kw + kx)*c_out + o] = K[o, c, ky, kx]`.
    Conv {
        k: Vec<f32>,
        c_out: usize,
        kh: usize,
        kw: usize,
        in_hw: usize,
        in_w: usize,
        plane: usize,
        ow: usize,
        rows: Taps,
        cols: Taps,
        /// The taps of each source pixel in one table (built by the layout; `None` past
        /// [`PIXEL_TAPS_MAX`] entries or with offsets past 32 bits: the delivery then
        /// walks `rows` and `cols`).
        pixels: Option<PixelTaps>,
        /// The target is stored channel-last with this projection's plane (see the
        /// module documentation); otherwise its slots are its ids.
        channel_last: bool,
    },
    Pool {
        weight: f32,
        in_hw: usize,
        in_w: usize,
        plane: usize,
        ow: usize,
        rows: Taps,
        cols: Taps,
        /// As for `Conv`.
        pixels: Option<PixelTaps>,
        /// As for `Conv`.
        channel_last: bool,
    },
}

/// Preprocessed projection.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    /// Global id of the first neuron of the target population (R1.5).
    pub target_offset: usize,
    /// Size of the target population.
    pub target_size: usize,
    /// Non-input index (0-based, = population index - 1) of the target population.
    pub target_pop: usize,
    /// A recurrent projection (`source >= target`, R1.2): under `layered` its current
    /// is carried to the target's next settle (R4.9).
    pub recurrent: bool,
    pub kind: ProjKind,
}

impl Projection {
    /// Fan-out (R1.3) of source neuron `local` in this projection.
    #[inline]
    pub fn fan_out(&self, local: usize) -> u64 {
        match &self.kind {
            ProjKind::Dense { .. } => self.target_size as u64,
            ProjKind::Conv {
                c_out,
                in_hw,
                in_w,
                rows,
                cols,
                ..
            } => {
                let (_, y, x) = source_coords(*in_hw, *in_w, local);
                (*c_out * rows.count(y) * cols.count(x)) as u64
            }
            ProjKind::Pool {
                in_hw,
                in_w,
                rows,
                cols,
                ..
            } => {
                let (_, y, x) = source_coords(*in_hw, *in_w, local);
                (rows.count(y) * cols.count(x)) as u64
            }
        }
    }
}

/// Validated, preprocessed network (weights laid out by source neuron for fast fan-out).
///
/// Built by [`Network::new`], which checks every rule of R1 and never panics on user
/// input. Immutable afterwards and shared by all threads of a batch.
#[derive(Debug, Clone)]
pub struct Network {
    spec: NetworkSpec,
    /// `pop_offset[p]`: global id of the first neuron of non-input population `p + 1`;
    /// `pop_offset[P] = n_neurons` (R1.5).
    pub(crate) pop_offset: Vec<usize>,
    /// Per neuron: its non-input population index (0-based).
    pub(crate) pop_of: Vec<u32>,
    /// Per slot threshold θ (R1.4), broadcast.
    pub(crate) threshold: Vec<f32>,
    /// Per slot leak β (R1.4), broadcast.
    pub(crate) beta: Vec<f32>,
    /// Per slot bias b (R1.4), broadcast.
    pub(crate) bias: Vec<f32>,
    /// Per slot synaptic decay α (R4.12), broadcast; empty unless `any_synaptic`.
    pub(crate) alpha: Vec<f32>,
    /// Per non-input population: its neurons have a synaptic current (R4.12; such a
    /// population is settling, R1.6).
    pub(crate) synaptic: Vec<bool>,
    /// Some population is synaptic: the workspace holds the synaptic currents `S`.
    pub(crate) any_synaptic: bool,
    /// Per non-input population: its reset mode (R4.8).
    pub(crate) reset: Vec<ResetMode>,
    /// Per non-input population: it is settling (R1.6; a recurrent projection's target
    /// is).
    pub(crate) settling: Vec<bool>,
    /// Per non-input population: a recurrent projection targets it (R1.2, R4.9).
    pub(crate) recurrent_target: Vec<bool>,
    /// Some projection is recurrent: under `layered` the event loop carries their
    /// currents (R4.9). Without, it runs no recurrence code.
    pub(crate) any_recurrent: bool,
    /// Every projection is dense: the event loop sums several dense rows per pass
    /// (`engine::workspace::Touch::deferred`). With conv or pool projections it is
    /// compiled without that code, which slowed their tap loops (and so is the loop that
    /// carries recurrent currents under `layered`, to keep its instantiations few).
    pub(crate) all_dense: bool,
    /// Some population is settling: the event loop tracks `due` populations (R4.7).
    /// Without, it runs exactly the version-1 loop.
    pub(crate) any_settling: bool,
    /// The settling populations that a projection from the input targets (they settle
    /// in forward step 0 of every timestep, R4.7), in increasing order.
    pub(crate) input_settling_targets: Vec<usize>,
    /// Per non-input population: channels of its storage layout (`size / plane`, with
    /// `plane` the one its conv/pool projections agree on; 1 otherwise).
    pub(crate) layout_channels: Vec<usize>,
    /// Storage slot -> neuron id (R1.5).
    pub(crate) id_of: Vec<u32>,
    pub(crate) projections: Vec<Projection>,
    /// `outgoing[s]`: indices of the projections whose source is population `s`
    /// (0 = input), in projection order.
    pub(crate) outgoing: Vec<Vec<usize>>,
    /// `distinct_targets[s]`: the projections from population `s` (0 = input) have
    /// distinct target populations, so a run of sources of `s` can be delivered one
    /// projection at a time without changing the order of the additions into any
    /// neuron (see `engine/deliver.rs`).
    pub(crate) distinct_targets: Vec<bool>,
}

/// `Network(input_size=.., neurons=.., outputs=.., projections=..)`, the sizes of the
/// network (the binding's `repr`).
impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Network(input_size={}, neurons={}, outputs={}, projections={})",
            self.input_size(),
            self.n_neurons(),
            self.n_outputs(),
            self.n_projections()
        )
    }
}

impl Network {
    /// Validates `spec` (R1.1-R1.5) and preprocesses it.
    ///
    /// Checks: input size and population sizes > 0; at least one non-input population;
    /// `threshold`/`beta`/`bias`/`alpha` of length 1 or `size`, threshold finite and
    /// positive, beta and alpha finite in [0, 1], bias finite; `refractory_dropout` finite in [0, 1), and 0 unless
    /// the reset is `zero` (R4.6); projections with `source <= P` and
    /// `1 <= target <= P` (forward when `source < target`, recurrent otherwise, R1.2),
    /// weights finite and of the right length, conv/pool geometry
    /// valid (kernel, stride >= 1, output size >= 1, source and target sizes equal to
    /// what the geometry reads and produces). The number of non-input neurons must fit
    /// the u32 neuron-id space ([`EngineError::Overflow`]).
    ///
    /// `refractory_dropout` is also 0 for a population that a recurrent projection
    /// targets (R4.6).
    ///
    /// Errors come in this order: the populations (`validate.rs`), then each projection
    /// in order, its endpoints and then its kind (`lower.rs`), then the dropout of the
    /// recurrent targets (R4.6), then the allocations of the storage layout
    /// (`layout.rs`).
    pub fn new(spec: NetworkSpec) -> Result<Network, EngineError> {
        let pop_offset = validate::populations(&spec)?;
        let n_pops = spec.populations.len();
        let mut projections = Vec::with_capacity(spec.projections.len());
        let mut outgoing = vec![Vec::new(); n_pops + 1];
        for (pi, proj) in spec.projections.iter().enumerate() {
            let loc = Location::Projection {
                index: pi,
                kind: Some(proj.kind.name()),
            };
            validate::endpoints(proj, n_pops, &loc)?;
            let n_s = validate::pop_size(&spec, proj.source);
            let n_d = validate::pop_size(&spec, proj.target);
            let kind = lower::lower(&proj.kind, n_s, n_d, &loc)?;
            outgoing[proj.source].push(pi);
            projections.push(Projection {
                target_offset: pop_offset[proj.target - 1],
                target_size: n_d,
                target_pop: proj.target - 1,
                recurrent: proj.source >= proj.target,
                kind,
            });
        }
        let mut recurrent_target = vec![false; n_pops];
        for pr in projections.iter().filter(|pr| pr.recurrent) {
            recurrent_target[pr.target_pop] = true;
        }
        validate::recurrent_dropout(&spec, &recurrent_target)?;

        let layout_plane = layout::planes(&pop_offset, &projections);
        let layout_channels = layout::channels(&pop_offset, &layout_plane);
        let per_neuron = layout::per_neuron(&spec, &pop_offset, &layout_plane, &layout_channels)?;
        layout::apply(
            &mut projections,
            &layout_plane,
            &layout_channels,
            &per_neuron.id_of,
        )?;
        let distinct_targets = distinct_targets(&outgoing, &projections);
        // R1.6: a recurrent projection's target settles too.
        let settling: Vec<bool> = spec
            .populations
            .iter()
            .zip(&recurrent_target)
            .map(|(p, &rec)| p.is_settling() || rec)
            .collect();
        let mut input_settling_targets: Vec<usize> = outgoing[0]
            .iter()
            .map(|&pi| projections[pi].target_pop)
            .filter(|&p| settling[p])
            .collect();
        input_settling_targets.sort_unstable();
        input_settling_targets.dedup();
        let synaptic: Vec<bool> = spec.populations.iter().map(|p| p.is_synaptic()).collect();
        Ok(Network {
            all_dense: projections
                .iter()
                .all(|p| matches!(p.kind, ProjKind::Dense { .. })),
            distinct_targets,
            reset: spec.populations.iter().map(|p| p.reset).collect(),
            any_settling: settling.iter().any(|&s| s),
            settling,
            any_recurrent: recurrent_target.iter().any(|&r| r),
            recurrent_target,
            input_settling_targets,
            spec,
            pop_offset,
            pop_of: per_neuron.pop_of,
            threshold: per_neuron.threshold,
            beta: per_neuron.beta,
            bias: per_neuron.bias,
            alpha: per_neuron.alpha,
            any_synaptic: synaptic.iter().any(|&s| s),
            synaptic,
            layout_channels,
            id_of: per_neuron.id_of,
            projections,
            outgoing,
        })
    }

    /// The validated description this network was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// Number of input neurons (population 0).
    pub fn input_size(&self) -> usize {
        self.spec.input_size
    }

    /// Number of non-input neurons (R1.5 neuron ids are `0..n_neurons()`).
    pub fn n_neurons(&self) -> usize {
        self.pop_offset[self.pop_offset.len() - 1]
    }

    /// Number of non-input populations `P`.
    pub fn n_populations(&self) -> usize {
        self.spec.populations.len()
    }

    /// Number of output neurons (size of the last population, R1.1).
    pub fn n_outputs(&self) -> usize {
        self.spec.populations[self.spec.populations.len() - 1].size
    }

    /// Number of projections.
    pub fn n_projections(&self) -> usize {
        self.spec.projections.len()
    }

    /// Whether some population is settling (R1.6): the network needs `SPEC_VERSION` 2.
    pub fn is_settling(&self) -> bool {
        self.any_settling
    }

    /// Whether some projection is recurrent (R1.2, `source >= target`): the network
    /// needs `SPEC_VERSION` 2.
    pub fn is_recurrent(&self) -> bool {
        self.any_recurrent
    }

    /// Whether some population has a synaptic current (R4.12, `alpha != 0`): the
    /// network needs `SPEC_VERSION` 2.
    pub fn is_synaptic(&self) -> bool {
        self.any_synaptic
    }

    /// Global id (R1.5) of the first neuron of population `population` (1..=P).
    /// Returns `None` for the input population or an out-of-range index.
    pub fn population_offset(&self, population: usize) -> Option<usize> {
        if population == 0 || population > self.n_populations() {
            None
        } else {
            Some(self.pop_offset[population - 1])
        }
    }

    /// Fan-out (R1.3) of neuron `local_index` of population `population` (0 = input)
    /// in each projection whose source is that population, in projection order.
    /// Returns an empty vector for an out-of-range population or index.
    pub fn fan_out(&self, population: usize, local_index: usize) -> Vec<u64> {
        let size = if population == 0 {
            self.spec.input_size
        } else if population <= self.n_populations() {
            self.spec.populations[population - 1].size
        } else {
            return Vec::new();
        };
        if local_index >= size {
            return Vec::new();
        }
        self.outgoing[population]
            .iter()
            .map(|&pi| self.projections[pi].fan_out(local_index))
            .collect()
    }

    /// Synapses (R1.3) of source neuron `local_index` of population `population` in
    /// projection `projection`, as `(global target id, weight)` pairs, in no particular
    /// order. Returns an empty vector if the projection does not start at that neuron's
    /// population or an index is out of range. Slow; meant for tests and tools.
    pub fn synapses(&self, projection: usize, local_index: usize) -> Vec<(usize, f32)> {
        let mut out = Vec::new();
        self.for_each_synapse(projection, local_index, |id, w, _| out.push((id, w)));
        out
    }

    /// Calls `f(global target id, weight, index of the weight)` for every synapse of
    /// source neuron `local_index` in `projection` (as [`Network::synapses`]); the index
    /// is the weight's position in the projection's stored weights (dense
    /// `wt[j * n_target + q]`, conv `k[((c kh + ky) kw + kx) c_out + o]`), `None` for a
    /// pool. Nothing for a projection or index out of range.
    pub(crate) fn for_each_synapse(
        &self,
        projection: usize,
        local_index: usize,
        mut f: impl FnMut(usize, f32, Option<usize>),
    ) {
        let Some(spec) = self.spec.projections.get(projection) else {
            return;
        };
        let n_s = if spec.source == 0 {
            self.spec.input_size
        } else {
            self.spec.populations[spec.source - 1].size
        };
        if local_index >= n_s {
            return;
        }
        let proj = &self.projections[projection];
        let base = proj.target_offset;
        match &proj.kind {
            ProjKind::Dense { wt } => {
                // Rows are in slot order.
                let n_d = proj.target_size;
                for q in 0..n_d {
                    let at = local_index * n_d + q;
                    f(self.id_of[base + q] as usize, wt[at], Some(at));
                }
            }
            ProjKind::Conv {
                k,
                c_out,
                kh,
                kw,
                in_hw,
                in_w,
                plane,
                ow,
                rows,
                cols,
                ..
            } => {
                let (c, y, x) = source_coords(*in_hw, *in_w, local_index);
                for r in rows.range(y) {
                    for s in cols.range(x) {
                        let kb = ((c * kh + rows.tap[r]) * kw + cols.tap[s]) * c_out;
                        for o in 0..*c_out {
                            let id = base + o * plane + rows.out[r] * ow + cols.out[s];
                            f(id, k[kb + o], Some(kb + o));
                        }
                    }
                }
            }
            ProjKind::Pool {
                weight,
                in_hw,
                in_w,
                plane,
                ow,
                rows,
                cols,
                ..
            } => {
                let (c, y, x) = source_coords(*in_hw, *in_w, local_index);
                for r in rows.range(y) {
                    for s in cols.range(x) {
                        f(
                            base + c * plane + rows.out[r] * ow + cols.out[s],
                            *weight,
                            None,
                        );
                    }
                }
            }
        }
    }
}

/// Per source population: whether its projections have distinct target populations
/// (the field `Network::distinct_targets`).
fn distinct_targets(outgoing: &[Vec<usize>], projections: &[Projection]) -> Vec<bool> {
    outgoing
        .iter()
        .map(|o| {
            let mut t: Vec<usize> = o.iter().map(|&pi| projections[pi].target_pop).collect();
            t.sort_unstable();
            t.windows(2).all(|w| w[0] != w[1])
        })
        .collect()
}
