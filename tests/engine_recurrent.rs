//! Recurrent projections (SPEC_VERSION 2, R1.2, R4.9) through the public API: the
//! carried current of `layered` against the immediate delivery of the other
//! schedulers, the settle that a recurrent delivery triggers, a carry kept over an
//! early stop, the synops of carried deliveries (R7.4), the trace (R7.10), recurrent
//! projections from the output, conv recurrence against its dense equivalent, and the
//! refusal of refractory dropout on recurrent targets (R4.6).

#[path = "support/nets.rs"]
mod nets;

use _engine::engine::EventKind;
use _engine::{
    run_sample, EngineError, Network, NetworkSpec, PoolKind, ProjectionKind, ProjectionSpec,
    RunConfig, SampleInput, Scheduler, StopMode,
};
use nets::*;

const NON_LAYERED: [Scheduler; 4] = [
    Scheduler::Fifo,
    Scheduler::Random,
    Scheduler::Momentum { jitter: 0.0 },
    Scheduler::Momentum { jitter: 0.5 },
];

/// input -> H (h0, h1) -> out, and H -> H with the one synapse h0 -> h1 (weight 1).
/// Thresholds 0.5, beta 0 (no membrane carries over a timestep), input 1 then 0.
fn lateral() -> Network {
    net(
        1,
        vec![pop(2, 0.5, 0.0), pop(1, 0.5, 0.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            // W[q, j]: W[1, 0] = 1 is h0 -> h1.
            dense(1, 1, vec![0.0, 0.0, 1.0, 0.0]),
            dense(1, 2, vec![1.0, 1.0]),
        ],
    )
}

/// R4.9: under `layered` the lateral current of h0 is carried: h1 fires at the next
/// timestep, when H settles; under every other scheduler it arrives in the same
/// timestep and h1 fires then. The synops of the carried delivery count when it is
/// delivered (R7.4), and the trace records it as a delivery (R7.10).
#[test]
fn layered_carries_and_the_other_schedulers_deliver_at_once() {
    let n = lateral();
    assert!(n.is_recurrent() && n.is_settling());
    let frames = [1.0, 0.0];
    let (r, trace) = traced(&n, &frames, 2, &cfg(Scheduler::Layered, 8));
    r.fan_out_check();
    assert_eq!(r.spikes, vec![2, 2]);
    assert_eq!(r.timestep_output_counts, vec![1, 1]);
    assert_eq!(r.timestep_forward_steps, vec![2, 2]);
    // t=0: the input (fan-out 2) and h0 (2 lateral + 1 forward); t=1: h1.
    assert_eq!(r.timestep_synops, vec![5, 3]);
    assert_eq!(r.synops_per_projection, vec![2, 4, 2]);
    assert_eq!(
        events(&trace, EventKind::Spike),
        vec![
            (0, 0, 1, 0, 1.0),
            (0, 1, 2, 0, 1.0),
            (1, 0, 1, 1, 1.0), // the carried current, at H's settle in step 0
            (1, 1, 2, 0, 1.0),
        ]
    );
    assert_eq!(
        events(&trace, EventKind::Delivery),
        vec![(0, 0, 1, 0, 1.0), (1, 0, 1, 1, 1.0)]
    );
    for s in NON_LAYERED {
        for f in [1, 64] {
            let (r, trace) = traced(&n, &frames, 2, &cfg(s, f));
            r.fan_out_check();
            assert_eq!(r.spikes, vec![2, 1], "{s:?} F{f}");
            assert_eq!(r.timestep_output_counts, vec![1, 0], "{s:?} F{f}");
            assert_eq!(r.timestep_forward_steps, vec![3, 1], "{s:?} F{f}");
            assert_eq!(r.timestep_synops, vec![8, 0], "{s:?} F{f}");
            assert_eq!(r.synops_per_projection, vec![2, 4, 2], "{s:?} F{f}");
            assert_eq!(
                events(&trace, EventKind::Spike),
                vec![(0, 0, 1, 0, 1.0), (0, 1, 1, 1, 1.0), (0, 1, 2, 0, 1.0)],
                "{s:?} F{f}: h1 fires in the step after h0's delivery"
            );
        }
    }
}

/// input -> A -> out, out -> B (backward, weight `w`); B has no forward source. B is
/// due every timestep (R1.6) and settles only through the recurrent delivery (or a
/// settle-only step).
fn backward(w: f32) -> Network {
    net(
        1,
        vec![pop(1, 0.5, 0.0), pop(1, 0.5, 0.0), pop(1, 0.5, 0.0)],
        vec![
            dense(0, 1, vec![1.0]),
            dense(1, 3, vec![1.0]),
            dense(3, 2, vec![w]),
        ],
    )
}

/// R4.7, R4.9: under a scheduler other than `layered` a recurrent delivery into a due
/// population settles it in the next forward step (no settle-only step follows); a
/// population that no delivery reaches settles in a settle-only step.
#[test]
fn a_recurrent_delivery_settles_a_due_target_at_once() {
    let n = backward(1.0);
    for s in NON_LAYERED {
        let (r, trace) = traced(&n, &[1.0], 1, &cfg(s, 8));
        assert_eq!(r.spikes, vec![1, 1, 1], "{s:?}");
        // Steps: 0 A fires, 1 out fires, 2 B settles with out's delivery and fires.
        assert_eq!(r.timestep_forward_steps, vec![3], "{s:?}");
        assert_eq!(
            events(&trace, EventKind::Spike),
            vec![(0, 0, 1, 0, 1.0), (0, 1, 3, 0, 1.0), (0, 2, 2, 0, 1.0)],
            "{s:?}"
        );
        // No input: A is silent, B settles in the settle-only step 1.
        let r = run_dense(&n, &[0.0], 1, None, &cfg(s, 8));
        assert_eq!((r.spikes_total, r.forward_steps), (0, 2), "{s:?}");
    }
    // `layered` carries: out's delivery does not settle B; the settle-only step that
    // follows (the pending set is empty, B is due) settles it, and it takes the carry.
    let (r, trace) = traced(&n, &[1.0], 1, &cfg(Scheduler::Layered, 8));
    assert_eq!(r.spikes, vec![1, 1, 1]);
    assert_eq!(r.timestep_forward_steps, vec![4]);
    assert_eq!(
        events(&trace, EventKind::Spike),
        vec![(0, 0, 1, 0, 1.0), (0, 1, 3, 0, 1.0), (0, 3, 2, 0, 1.0)]
    );
    // A weight below the threshold: nothing fires in B either way.
    let n = backward(0.5);
    for s in ALL {
        let r = run_dense(&n, &[1.0], 1, None, &cfg(s, 8));
        assert_eq!(r.spikes, vec![1, 0, 1], "{s:?}");
    }
}

/// R4.9, R6.4: a carried current that its target does not settle to take (an early
/// stop ends the timestep first) is kept until the target's next settle.
#[test]
fn an_early_stop_keeps_the_carry_for_the_next_settle() {
    // input (i0, i1); A <- i0; B <- A (weight 1) and B -> B (0.75, recurrent);
    // out <- i1 only.
    let n = net(
        2,
        vec![pop(1, 0.5, 0.0), pop(1, 0.5, 0.0), pop(1, 0.5, 0.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            dense(1, 2, vec![1.0]),
            dense(2, 2, vec![0.75]),
            dense(0, 3, vec![0.0, 1.0]),
        ],
    );
    let config = RunConfig {
        stop: StopMode::FirstOutput { extra_steps: 0 },
        ..cfg(Scheduler::Layered, 8)
    };
    // t=0: B fires and carries 0.75; t=1: the output fires in step 0 and stops the
    // timestep before B settles; t=2: B settles with A's 1 and the kept 0.75.
    let frames = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    let (r, trace) = traced(&n, &frames, 3, &config);
    assert_eq!(r.timestep_forward_steps, vec![3, 1, 3]);
    assert_eq!(r.timestep_output_counts, vec![0, 1, 0]);
    assert_eq!(
        events(&trace, EventKind::Spike)
            .into_iter()
            .filter(|e| e.2 == 2)
            .collect::<Vec<_>>(),
        vec![(0, 1, 2, 0, 1.0), (2, 1, 2, 0, 1.75)]
    );
    // Each of B's spikes delivers its one recurrent synapse, also the last one, whose
    // carry the sample's end loses.
    assert_eq!(r.synops_per_projection, vec![3, 2, 2, 3]);
    assert_eq!(r.timestep_synops, vec![4, 2, 4]);
    // Without the stop, B takes the carry at t=1 (settle-only step): 0.75 fires.
    let (r, trace) = traced(&n, &frames, 3, &cfg(Scheduler::Layered, 8));
    assert_eq!(r.timestep_output_counts, vec![0, 1, 0]);
    assert_eq!(
        events(&trace, EventKind::Spike)
            .into_iter()
            .filter(|e| e.2 == 2)
            .collect::<Vec<_>>(),
        vec![(0, 1, 2, 0, 1.0), (1, 1, 2, 0, 0.75), (2, 1, 2, 0, 1.75)]
    );
}

/// R4.3.2 with a recurrent projection from the output population: its spikes are
/// counted and enqueued. `layered` carries the self-excitation to the next timestep;
/// the other schedulers deliver it to the refractory neuron, which discards it.
#[test]
fn the_output_may_project_back() {
    let n = net(
        1,
        vec![pop(1, 0.5, 0.0)],
        vec![dense(0, 1, vec![1.0]), dense(1, 1, vec![1.0])],
    );
    let r = run_dense(
        &n,
        &[1.0, 0.0, 0.0],
        3,
        Some(0),
        &cfg(Scheduler::Layered, 1),
    );
    assert_eq!(r.timestep_output_counts, vec![1, 1, 1]);
    assert_eq!(r.timestep_forward_steps, vec![2, 2, 2]);
    assert_eq!(r.synops_per_projection, vec![1, 3]);
    for s in NON_LAYERED {
        let r = run_dense(&n, &[1.0, 0.0, 0.0], 3, Some(0), &cfg(s, 1));
        assert_eq!(r.timestep_output_counts, vec![1, 0, 0], "{s:?}");
        assert_eq!(r.timestep_forward_steps, vec![2, 1, 1], "{s:?}");
        assert_eq!(r.synops_per_projection, vec![1, 1], "{s:?}");
    }
}

/// A conv or pool recurrent projection (into a channel-last population) gives the
/// same results as the dense projection with its synapses, under every scheduler and
/// stop mode: the carry and the immediate delivery address the same neurons.
#[test]
fn conv_and_pool_recurrence_match_their_dense_equivalent() {
    let mut g = Lcg(7);
    let grid = |g: &mut Lcg| (g.below(49) as f32 - 20.0) / 64.0;
    let (c, h, w) = (2usize, 4usize, 4usize);
    let n_h = c * h * w;
    let n_in = 6;
    let w_in: Vec<f32> = (0..n_h * n_in).map(|_| grid(&mut g)).collect();
    let w_out: Vec<f32> = (0..3 * n_h).map(|_| grid(&mut g)).collect();
    let kernel: Vec<f32> = (0..c * c * 9).map(|_| grid(&mut g)).collect();
    let recurrent = [
        conv2d(1, 1, kernel, c, (h, w), c, (3, 3), (1, 1), (1, 1)),
        ProjectionSpec {
            source: 1,
            target: 1,
            kind: ProjectionKind::Pool {
                kind: PoolKind::Sum,
                channels: c,
                in_h: h,
                in_w: w,
                kh: 1,
                kw: 1,
                stride: (1, 1),
            },
        },
    ];
    for rec in recurrent {
        let spec = NetworkSpec {
            input_size: n_in,
            populations: vec![pop(n_h, 0.5, 0.75), pop(3, 0.5, 0.75)],
            projections: vec![dense(0, 1, w_in.clone()), rec, dense(1, 2, w_out.clone())],
        };
        let conv = Network::new(spec.clone()).expect("valid");
        let mut wd = vec![0.0f32; n_h * n_h];
        for j in 0..n_h {
            for (q, x) in conv.synapses(1, j) {
                wd[q * n_h + j] = x;
            }
        }
        let mut dspec = spec;
        dspec.projections[1] = dense(1, 1, wd);
        let dense_net = Network::new(dspec).expect("valid");
        let timesteps = 6;
        for sample in 0..4 {
            let frames: Vec<f32> = (0..timesteps * n_in)
                .map(|_| (g.below(3) as f32) * 0.5)
                .collect();
            for s in ALL {
                for (f, stop) in [
                    (1, StopMode::Drain),
                    (8, StopMode::Drain),
                    (4, StopMode::FirstOutput { extra_steps: 1 }),
                ] {
                    let config = RunConfig { stop, ..cfg(s, f) };
                    let input = SampleInput::Dense {
                        frames: &frames,
                        timesteps,
                    };
                    let a = run_sample(&conv, &input, None, sample, &config).unwrap();
                    let b = run_sample(&dense_net, &input, None, sample, &config).unwrap();
                    assert_eq!(a.spikes, b.spikes, "{s:?} F{f} {stop:?}");
                    assert_eq!(a.timestep_output_counts, b.timestep_output_counts);
                    assert_eq!(a.timestep_forward_steps, b.timestep_forward_steps);
                    // The conv has fewer synapses than its dense matrix (a zero
                    // weight is still a synapse, R1.3): compare the other projections.
                    assert_eq!(a.synops_per_projection[0], b.synops_per_projection[0]);
                    assert_eq!(a.synops_per_projection[2], b.synops_per_projection[2]);
                    assert!(a.spikes[0] > 0, "the hidden population fires");
                }
            }
        }
    }
}

/// R4.6: refractory dropout on a recurrent target is a model error in the network and
/// a parameter error in a run; on another population of the network it is allowed.
#[test]
fn refractory_dropout_is_refused_on_recurrent_targets() {
    let reason = "refractory dropout is refused on the target of a recurrent projection (R4.6)";
    let mut pops = vec![pop(2, 0.5, 0.5), pop(1, 0.5, 0.5)];
    pops[0].refractory_dropout = 0.25;
    let projections = vec![
        dense(0, 1, vec![1.0, 1.0]),
        dense(1, 2, vec![1.0, 1.0]),
        dense(2, 2, vec![0.5]),
    ];
    // Population 1 takes no recurrent current: its dropout is fine.
    let n = Network::new(NetworkSpec {
        input_size: 1,
        populations: pops.clone(),
        projections: projections.clone(),
    })
    .expect("dropout on a population without recurrent input");
    // Population 2 does.
    pops[1].refractory_dropout = 0.5;
    match Network::new(NetworkSpec {
        input_size: 1,
        populations: pops,
        projections,
    }) {
        Err(EngineError::Model {
            location,
            field,
            value,
            reason: r,
        }) => {
            assert_eq!(location.to_string(), "population 2");
            assert_eq!(
                (field.as_str(), value.as_str()),
                ("refractory_dropout", "0.5")
            );
            assert_eq!(r, reason);
        }
        other => panic!("expected a model error, got {other:?}"),
    }
    let frames = [1.0];
    let input = SampleInput::Dense {
        frames: &frames,
        timesteps: 1,
    };
    let mut config = cfg(Scheduler::Fifo, 1);
    config.refractory_dropout = Some(vec![0.5, 0.0]);
    assert!(run_sample(&n, &input, None, 0, &config).is_ok());
    config.refractory_dropout = Some(vec![0.0, 0.1]);
    match run_sample(&n, &input, None, 0, &config) {
        Err(EngineError::Parameter {
            field,
            value,
            reason: r,
        }) => {
            assert_eq!(
                (field.as_str(), value.as_str()),
                ("refractory_dropout[1]", "0.1")
            );
            assert_eq!(r, format!("{reason} (population 2)"));
        }
        other => panic!("expected a parameter error, got {other:?}"),
    }
}

/// R1.2: a source beyond the last population is a model error naming the source; a
/// projection from a population to itself or an earlier one is not.
#[test]
fn recurrent_endpoints_are_accepted_and_checked() {
    let build = |source: usize, target: usize| {
        Network::new(NetworkSpec {
            input_size: 1,
            populations: vec![pop(1, 0.5, 0.5), pop(1, 0.5, 0.5)],
            projections: vec![dense(0, 1, vec![1.0]), dense(source, target, vec![1.0])],
        })
    };
    for (s, t) in [(1, 1), (2, 1), (2, 2), (1, 2)] {
        let n = build(s, t).expect("valid");
        assert_eq!(n.is_recurrent(), s >= t, "({s}, {t})");
        assert_eq!(n.is_settling(), s >= t, "({s}, {t})");
    }
    match build(3, 1) {
        Err(EngineError::Model { field, .. }) => assert_eq!(field, "source"),
        other => panic!("expected a model error, got {other:?}"),
    }
}
