//! Fuzzing the engine's input decoding and validation: never a panic.
//!
//! Random dense and sparse inputs (NaN, infinities, negative values, subnormals, any
//! float32 bit pattern, out-of-range times and indices, wrong lengths, huge and zero
//! `T`), random run configurations (F = 0, max_steps = 0, bad jitter, bad dropout
//! vectors), bad labels and bad sample ids go through `run_batch` and `run_sample`.
//! The engine must return `Ok` exactly when the request is valid by
//! docs/semantics.md (R2, R4.6, R5, R6, R7) -- with counters that obey the invariants
//! of section 7 -- and otherwise a typed `Input` or `Parameter` error; a panic fails
//! the test. The networks themselves are fuzzed too (`Network::new` on junk specs).

use std::sync::atomic::AtomicBool;

use _engine::{
    run_batch, run_sample, EngineError, Network, NetworkSpec, PoolKind, PopulationSpec,
    ProjectionKind, ProjectionSpec, RunConfig, SampleInput, SampleResult, Scheduler, StopMode,
};
use proptest::prelude::*;

/// Three small valid networks: dense with a skip, conv + pool + dense, pool on the input.
fn network(arch: u8) -> Network {
    let pop = |size: usize, th: f32| PopulationSpec {
        size,
        threshold: vec![th],
        beta: vec![0.75],
        refractory_dropout: 0.25,
        bias: vec![0.0],
        reset: _engine::ResetMode::Zero,
        alpha: vec![0.0],
    };
    let dense = |source, target, n: usize| ProjectionSpec {
        source,
        target,
        kind: ProjectionKind::Dense {
            weight: (0..n).map(|i| ((i * 37 % 11) as f32 - 3.0) / 8.0).collect(),
        },
    };
    let spec = match arch {
        0 => NetworkSpec {
            input_size: 5,
            populations: vec![pop(4, 0.5), pop(3, 0.75)],
            projections: vec![dense(0, 1, 20), dense(1, 2, 12), dense(0, 2, 15)],
        },
        1 => NetworkSpec {
            input_size: 2 * 4 * 4,
            populations: vec![pop(3 * 4 * 4, 0.5), pop(3 * 2 * 2, 0.5), pop(2, 1.0)],
            projections: vec![
                ProjectionSpec {
                    source: 0,
                    target: 1,
                    kind: ProjectionKind::Conv2d {
                        weight: (0..3 * 2 * 3 * 3)
                            .map(|i| (i % 5) as f32 / 4.0 - 0.25)
                            .collect(),
                        c_in: 2,
                        in_h: 4,
                        in_w: 4,
                        c_out: 3,
                        kh: 3,
                        kw: 3,
                        stride: (1, 1),
                        padding: (1, 1),
                    },
                },
                ProjectionSpec {
                    source: 1,
                    target: 2,
                    kind: ProjectionKind::Pool {
                        kind: PoolKind::Avg,
                        channels: 3,
                        in_h: 4,
                        in_w: 4,
                        kh: 2,
                        kw: 2,
                        stride: (2, 2),
                    },
                },
                dense(2, 3, 24),
            ],
        },
        _ => NetworkSpec {
            input_size: 9,
            populations: vec![pop(4, 0.5), pop(2, 0.5)],
            projections: vec![
                ProjectionSpec {
                    source: 0,
                    target: 1,
                    kind: ProjectionKind::Pool {
                        kind: PoolKind::Sum,
                        channels: 1,
                        in_h: 3,
                        in_w: 3,
                        kh: 2,
                        kw: 2,
                        stride: (1, 1),
                    },
                },
                dense(1, 2, 8),
            ],
        },
    };
    Network::new(spec).expect("the fixed networks are valid")
}

/// float32 values biased toward the awkward ones, plus any bit pattern.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => prop::sample::select(vec![0.0f32, 1.0, 2.0, 3.0, 0.5, 7.0]),
        2 => prop::sample::select(vec![
            -0.0f32,
            f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            3e38,
            1e30,
            -1.0,
            -1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ]),
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

fn timesteps() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..6,
        1 => Just(0usize),
        // Beyond 2^32 (R2.2): refused before anything is allocated.
        1 => prop::sample::select(vec![(1usize << 32) + 1, usize::MAX / 2, usize::MAX]),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Dense {
        frames: Vec<f32>,
        timesteps: usize,
    },
    Sparse {
        t: Vec<u32>,
        index: Vec<u32>,
        value: Vec<f32>,
        timesteps: usize,
    },
}

impl Input {
    fn as_sample(&self) -> SampleInput<'_> {
        match self {
            Input::Dense { frames, timesteps } => SampleInput::Dense {
                frames,
                timesteps: *timesteps,
            },
            Input::Sparse {
                t,
                index,
                value,
                timesteps,
            } => SampleInput::Sparse {
                t,
                index,
                value,
                timesteps: *timesteps,
            },
        }
    }

    fn timesteps(&self) -> usize {
        match self {
            Input::Dense { timesteps, .. } | Input::Sparse { timesteps, .. } => *timesteps,
        }
    }

    /// R2: is this a valid input for a network with `n_in` inputs?
    fn valid(&self, n_in: usize) -> bool {
        let t_ok = |t: usize| t >= 1 && t - 1 <= u32::MAX as usize;
        let v_ok = |x: f32| x.is_finite() && x >= 0.0;
        match self {
            Input::Dense { frames, timesteps } => {
                t_ok(*timesteps)
                    && timesteps.checked_mul(n_in) == Some(frames.len())
                    && frames.iter().all(|&x| v_ok(x))
            }
            Input::Sparse {
                t,
                index,
                value,
                timesteps,
            } => {
                if !(t_ok(*timesteps) && t.len() == index.len() && t.len() == value.len()) {
                    return false;
                }
                if !(0..t.len()).all(|e| {
                    (t[e] as usize) < *timesteps && (index[e] as usize) < n_in && v_ok(value[e])
                }) {
                    return false;
                }
                // Repeated (t, i) are summed in float32 in list order (R2.2); the sum must be finite.
                let mut sums: Vec<((u32, u32), f32)> = Vec::new();
                for e in 0..t.len() {
                    match sums.iter_mut().find(|(k, _)| *k == (t[e], index[e])) {
                        Some((_, s)) => *s += value[e],
                        None => sums.push(((t[e], index[e]), value[e])),
                    }
                }
                sums.iter().all(|(_, s)| s.is_finite())
            }
        }
    }
}

fn input(n_in: usize) -> impl Strategy<Value = Input> {
    let dense = (
        timesteps(),
        any::<bool>(),
        0usize..3,
        prop::collection::vec(value(), 0..64),
    )
        .prop_map(move |(timesteps, exact, extra, pool)| {
            // Usually exactly T * n_in values; sometimes a few more or fewer.
            let want = if timesteps <= 8 { timesteps * n_in } else { 3 };
            let len = if exact {
                want
            } else {
                (want + extra).saturating_sub(1)
            };
            let frames = (0..len)
                .map(|i| {
                    if pool.is_empty() {
                        1.0
                    } else {
                        pool[i % pool.len()]
                    }
                })
                .collect();
            Input::Dense { frames, timesteps }
        });
    let event = (
        prop_oneof![6 => 0u32..7, 1 => Just(u32::MAX), 1 => Just(u32::MAX - 1)],
        prop_oneof![6 => 0u32..(n_in as u32 + 2), 1 => Just(u32::MAX)],
        value(),
    );
    let sparse = (
        // Never a valid huge T here: a valid T = 2^32 would really be allocated and run.
        prop_oneof![6 => 1usize..8, 1 => Just(0usize), 1 => Just((1usize << 32) + 1), 1 => Just(usize::MAX)],
        prop::collection::vec(event, 0..8),
        0u8..8,
    )
        .prop_map(|(timesteps, events, mangle)| {
            let mut t: Vec<u32> = events.iter().map(|e| e.0).collect();
            let index: Vec<u32> = events.iter().map(|e| e.1).collect();
            let value: Vec<f32> = events.iter().map(|e| e.2).collect();
            if mangle == 0 {
                t.push(0); // arrays of different lengths
            }
            Input::Sparse {
                t,
                index,
                value,
                timesteps,
            }
        });
    prop_oneof![dense, sparse]
}

fn scheduler() -> impl Strategy<Value = Scheduler> {
    prop_oneof![
        Just(Scheduler::Layered),
        Just(Scheduler::Fifo),
        Just(Scheduler::Random),
        value().prop_map(|jitter| Scheduler::Momentum { jitter }),
    ]
}

fn config(n_pops: usize) -> impl Strategy<Value = RunConfig> {
    (
        scheduler(),
        prop_oneof![6 => 1usize..4, 1 => Just(0usize), 1 => Just(usize::MAX)],
        prop_oneof![Just(None), (0u32..3).prop_map(Some), Just(Some(u32::MAX))],
        prop_oneof![3 => Just(None), 1 => Just(Some(0u32)), 2 => (1u32..4).prop_map(Some), 1 => Just(Some(u32::MAX))],
        any::<u64>(),
        prop_oneof![
            3 => Just(None),
            2 => prop::collection::vec(prop::sample::select(vec![0.0f64, 0.5, 0.9]), n_pops..=n_pops).prop_map(Some),
            1 => prop::collection::vec(
                prop::sample::select(vec![0.5f64, 1.0, -0.1, f64::NAN, f64::INFINITY]),
                0..n_pops + 2
            )
            .prop_map(Some),
        ],
    )
        .prop_map(|(scheduler, forward_group_size, extra, max_steps, seed, refractory_dropout)| RunConfig {
            scheduler,
            forward_group_size,
            stop: match extra {
                None => StopMode::Drain,
                Some(extra_steps) => StopMode::FirstOutput { extra_steps },
            },
            max_steps,
            seed,
            refractory_dropout,
            input_dropout: 0.0,
            spike_dropout: 0.0,
            prioritize_input: true,
        })
}

/// Validity of a configuration (R4.6, R5, R6).
fn config_valid(c: &RunConfig, n_pops: usize) -> bool {
    let jitter_ok = match c.scheduler {
        Scheduler::Momentum { jitter } => jitter.is_finite() && jitter >= 0.0,
        _ => true,
    };
    let dropout_ok = match &c.refractory_dropout {
        None => true,
        Some(p) => p.len() == n_pops && p.iter().all(|x| x.is_finite() && (0.0..1.0).contains(x)),
    };
    c.forward_group_size >= 1 && c.max_steps != Some(0) && jitter_ok && dropout_ok
}

fn has_dropout(c: &RunConfig) -> bool {
    c.refractory_dropout
        .as_ref()
        .is_some_and(|p| p.iter().any(|&x| x > 0.0))
}

/// Counter invariants of docs/semantics.md section 7.
fn check(
    net: &Network,
    r: &SampleResult,
    timesteps: usize,
    dropout: bool,
    labelled: bool,
) -> Result<(), TestCaseError> {
    let n_out = net.n_outputs();
    prop_assert_eq!(r.timesteps, timesteps);
    prop_assert_eq!(r.timestep_forward_steps.len(), timesteps);
    prop_assert_eq!(r.timestep_output_counts.len(), timesteps * n_out);
    prop_assert!(r.timestep_forward_steps.iter().all(|&k| k >= 1));
    prop_assert_eq!(
        r.forward_steps,
        r.timestep_forward_steps.iter().sum::<i64>()
    );
    prop_assert!(r.forward_steps >= timesteps as i64);
    for c in 0..n_out {
        let per_t: i64 = (0..timesteps)
            .map(|t| r.timestep_output_counts[t * n_out + c])
            .sum();
        prop_assert_eq!(r.output_counts[c], per_t);
    }
    prop_assert_eq!(r.spikes_total, r.spikes.iter().sum::<i64>());
    prop_assert_eq!(
        *r.spikes.last().unwrap(),
        r.output_counts.iter().sum::<i64>()
    );
    prop_assert!(r.spikes.iter().all(|&s| s >= 0));
    if !dropout {
        for (p, &s) in r.spikes.iter().enumerate() {
            let size = net.population_offset(p + 2).unwrap_or(net.n_neurons())
                - net.population_offset(p + 1).unwrap();
            prop_assert!(
                s <= (size * timesteps) as i64,
                "population {} spiked {} times",
                p + 1,
                s
            );
        }
    }
    prop_assert_eq!(r.synops, r.synops_per_projection.iter().sum::<i64>());
    prop_assert!(r.synops_per_projection.iter().all(|&s| s >= 0));
    prop_assert!(r.input_events >= 0 && r.input_events <= (net.input_size() * timesteps) as i64);
    prop_assert!(r.dropped_spikes >= 0);
    prop_assert!(r.queue_peak >= 0 && r.queue_peak <= net.n_neurons() as i64);
    prop_assert!(r.prediction >= -1 && r.prediction < n_out as i64);
    for t in 0..timesteps {
        prop_assert!(r.first_output_step[t] < r.timestep_forward_steps[t]);
        prop_assert_eq!(r.first_output_step[t] >= 0, r.first_output_class[t] >= 0);
        if !labelled {
            prop_assert_eq!(r.first_correct_step[t], -1);
        }
    }
    Ok(())
}

fn is_request_error(e: &EngineError) -> bool {
    matches!(e, EngineError::Input { .. } | EngineError::Parameter { .. })
}

/// R8.3: a valid request whose membrane overflows float32 (inputs near `f32::MAX`).
fn is_membrane_overflow(e: &EngineError) -> bool {
    matches!(e, EngineError::Overflow { what, .. } if what == "membrane")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    /// One sample: Ok exactly when valid, never a panic.
    #[test]
    fn run_sample_accepts_exactly_the_valid_requests(
        (arch, inp, cfg, label, id) in (0u8..3).prop_flat_map(|arch| {
            let net = network(arch);
            (
                Just(arch),
                input(net.input_size()),
                config(net.n_populations()),
                prop_oneof![2 => Just(None), 3 => (0usize..4).prop_map(Some), 1 => Just(Some(usize::MAX))],
                prop_oneof![4 => 0u64..1000, 1 => Just(u32::MAX as u64), 1 => Just(1u64 << 32), 1 => Just(u64::MAX)],
            )
        }),
    ) {
        let net = network(arch);
        let valid = inp.valid(net.input_size())
            && config_valid(&cfg, net.n_populations())
            && label.is_none_or(|c| c < net.n_outputs())
            && id <= u32::MAX as u64;
        match run_sample(&net, &inp.as_sample(), label, id, &cfg) {
            Ok(r) => {
                prop_assert!(valid, "accepted an invalid request: {:?} {:?} {:?} {}", inp, cfg, label, id);
                check(&net, &r, inp.timesteps(), has_dropout(&cfg), label.is_some())?;
                // Deterministic: the same request gives the same result.
                prop_assert_eq!(r, run_sample(&net, &inp.as_sample(), label, id, &cfg).unwrap());
            }
            Err(e) if valid && is_membrane_overflow(&e) => {
                // Deterministic too: the same request fails the same way.
                prop_assert_eq!(e, run_sample(&net, &inp.as_sample(), label, id, &cfg).unwrap_err());
            }
            Err(e) => {
                prop_assert!(!valid, "refused a valid request: {} ({:?} {:?})", e, inp, cfg);
                prop_assert!(is_request_error(&e), "wrong error kind: {:?}", e);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// A batch: Ok exactly when every sample, label, id and the config are valid; the
    /// results equal one run_sample per sample.
    #[test]
    fn run_batch_accepts_exactly_the_valid_requests(
        (arch, inputs, cfg, labels, ids) in (0u8..3).prop_flat_map(|arch| {
            let net = network(arch);
            let n_in = net.input_size();
            (1usize..5).prop_flat_map(move |n| {
                (
                    Just(arch),
                    prop::collection::vec(input(n_in), n..=n),
                    config(network(arch).n_populations()),
                    prop_oneof![
                        2 => Just(None),
                        3 => prop::collection::vec(prop::option::of(0usize..3), n..=n).prop_map(Some),
                        1 => prop::collection::vec(prop::option::of(0usize..3), 0..n + 2).prop_map(Some),
                    ],
                    prop_oneof![
                        4 => prop::collection::vec(0u64..50, n..=n),
                        1 => prop::collection::vec(prop_oneof![Just(0u64), Just(1u64 << 32), Just(u64::MAX)], n..=n),
                        1 => prop::collection::vec(0u64..50, 0..n + 2),
                    ],
                )
            })
        }),
    ) {
        let owned = network(arch);
        let net = &owned;
        let n = inputs.len();
        let samples: Vec<SampleInput> = inputs.iter().map(Input::as_sample).collect();
        let cancel = AtomicBool::new(false);
        let valid = inputs.iter().all(|i| i.valid(net.input_size()))
            && config_valid(&cfg, net.n_populations())
            && labels.as_ref().is_none_or(|l| {
                l.len() == n && l.iter().all(|c| c.is_none_or(|c| c < net.n_outputs()))
            })
            && ids.len() == n
            && ids.iter().all(|&id| id <= u32::MAX as u64);
        match run_batch(net, &samples, labels.as_deref(), &ids, &cfg, &cancel) {
            Ok(results) => {
                prop_assert!(valid, "accepted an invalid batch");
                prop_assert_eq!(results.len(), n);
                for (b, r) in results.iter().enumerate() {
                    let label = labels.as_ref().and_then(|l| l[b]);
                    check(net, r, inputs[b].timesteps(), has_dropout(&cfg), label.is_some())?;
                    let alone = run_sample(net, &samples[b], label, ids[b], &cfg).unwrap();
                    prop_assert_eq!(r, &alone);
                }
            }
            Err(e) if valid && is_membrane_overflow(&e) => {
                // The first sample that overflows alone is the one the batch names.
                let first = (0..n).find(|&b| {
                    let label = labels.as_ref().and_then(|l| l[b]);
                    run_sample(net, &samples[b], label, ids[b], &cfg).is_err()
                });
                let Some(b) = first else {
                    return Err(TestCaseError::fail(format!("no sample overflows alone: {e}")));
                };
                let at = format!("sample {b}, ");
                prop_assert!(e.to_string().starts_with(&at), "{} does not name sample {}", e, b);
            }
            Err(e) => {
                prop_assert!(!valid, "refused a valid batch: {}", e);
                prop_assert!(is_request_error(&e), "wrong error kind: {:?}", e);
            }
        }
    }

    /// Network::new on junk specs: Ok or a Model / Overflow error, never a panic; a
    /// network it accepts runs.
    #[test]
    fn network_new_never_panics(
        input_size in prop_oneof![4 => 1usize..6, 1 => Just(0usize), 1 => Just(usize::MAX)],
        sizes in prop::collection::vec(prop_oneof![6 => 1usize..6, 1 => Just(0usize), 1 => Just(usize::MAX / 2)], 0..4),
        th in value(),
        beta in value(),
        p in prop::sample::select(vec![0.0f64, 0.5, 1.0, -1.0, f64::NAN]),
        // Finite biases too small to overflow a membrane in two timesteps, and
        // non-finite ones (refused).
        bias in prop::sample::select(vec![0.0f32, -0.0, 0.5, -1.0, 7.0, 1e-45, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]),
        reset in 0u8..4,
        kinds in prop::collection::vec((0u8..4, 0usize..5, 0usize..5, 0usize..40, prop::collection::vec(0usize..5, 0..11)), 0..4),
    ) {
        let reset = _engine::ResetMode::from_code(reset).unwrap();
        let populations: Vec<PopulationSpec> = sizes
            .iter()
            .map(|&size| PopulationSpec { size, threshold: vec![th], beta: vec![beta], refractory_dropout: p, bias: vec![bias], reset, alpha: vec![0.0] })
            .collect();
        let projections: Vec<ProjectionSpec> = kinds
            .iter()
            .map(|(k, source, target, nw, geo)| {
                let g = |i: usize| geo.get(i).copied().unwrap_or(1);
                let kind = match k {
                    0 => ProjectionKind::Dense { weight: vec![0.5; *nw] },
                    1 => ProjectionKind::Conv2d {
                        weight: vec![0.25; *nw],
                        c_in: g(0), in_h: g(1), in_w: g(2), c_out: g(3), kh: g(4), kw: g(5),
                        stride: (g(6), g(7)), padding: (g(8), g(9)),
                    },
                    _ => ProjectionKind::Pool {
                        kind: if *k == 2 { PoolKind::Avg } else { PoolKind::Sum },
                        channels: g(0), in_h: g(1), in_w: g(2), kh: g(3), kw: g(4), stride: (g(5), g(6)),
                    },
                };
                ProjectionSpec { source: *source, target: *target, kind }
            })
            .collect();
        let spec = NetworkSpec { input_size, populations, projections };
        match Network::new(spec) {
            Ok(net) => {
                let frames = vec![1.0f32; net.input_size() * 2];
                let cfg = RunConfig {
                    scheduler: Scheduler::Fifo,
                    forward_group_size: 2,
                    stop: StopMode::Drain,
                    max_steps: None,
                    seed: 0,
                    refractory_dropout: None,
                    input_dropout: 0.0,
                    spike_dropout: 0.0,
                    prioritize_input: true,
                };
                let r = run_sample(&net, &SampleInput::Dense { frames: &frames, timesteps: 2 }, None, 0, &cfg)
                    .expect("a valid network runs");
                check(&net, &r, 2, false, false)?;
            }
            Err(e) => prop_assert!(
                matches!(e, EngineError::Model { .. } | EngineError::Overflow { .. }),
                "wrong error kind: {:?}",
                e
            ),
        }
    }
}

#[test]
fn counters_stay_exact_over_many_timesteps() {
    // T = 2^20 with events at both ends: every count is an exact 64-bit value.
    let net = network(0);
    let big_t = 1usize << 20;
    let t = vec![0u32, (big_t - 1) as u32, (big_t - 1) as u32];
    let index = vec![0u32, 4, 4];
    let value = vec![3.0f32, 1.0, 2.0];
    let cfg = RunConfig {
        scheduler: Scheduler::Random,
        forward_group_size: 1,
        stop: StopMode::Drain,
        max_steps: None,
        seed: 7,
        refractory_dropout: None,
        input_dropout: 0.0,
        spike_dropout: 0.0,
        prioritize_input: true,
    };
    let input = SampleInput::Sparse {
        t: &t,
        index: &index,
        value: &value,
        timesteps: big_t,
    };
    let r = run_sample(&net, &input, Some(1), u32::MAX as u64, &cfg).unwrap();
    assert_eq!(r.input_events, 2); // the two events at (T-1, 4) sum to one (R2.2)
    assert_eq!(r.timestep_forward_steps.len(), big_t);
    assert!(r.forward_steps >= big_t as i64);
    assert_eq!(
        r.forward_steps,
        r.timestep_forward_steps.iter().sum::<i64>()
    );
    assert_eq!(r.synops, r.synops_per_projection.iter().sum::<i64>());
}
