//! Errors of the engine through the public API: invalid networks, run options and
//! inputs (with the fields and locations they name), stop mode names, and the membrane
//! overflow of R8.3.

#[path = "support/nets.rs"]
mod nets;

use std::sync::atomic::{AtomicBool, Ordering};

use _engine::{
    run_batch, run_sample, EngineError, Network, NetworkSpec, PoolKind, PopulationSpec,
    ProjectionKind, ProjectionSpec, RunConfig, SampleInput, Scheduler, StopMode,
};
use nets::*;

#[test]
fn stop_names_parse() {
    assert_eq!("drain".parse::<StopMode>().unwrap(), StopMode::Drain);
    assert_eq!("max_steps".parse::<StopMode>().unwrap(), StopMode::Drain);
    let f: StopMode = "first_output".parse().unwrap();
    assert_eq!(f, StopMode::FirstOutput { extra_steps: 0 });
    assert_eq!(
        f.with_extra_steps(3),
        StopMode::FirstOutput { extra_steps: 3 }
    );
    assert_eq!(StopMode::Drain.with_extra_steps(3), StopMode::Drain);
    let e = "first-output".parse::<StopMode>().unwrap_err();
    assert!(matches!(&e, EngineError::Parameter { field, value, reason }
        if field == "stop" && value == "first-output"
            && reason == "must be drain, first_output or max_steps"));
}

/// R8.3: a membrane that becomes non-finite ends the run with an Overflow error
/// naming the sample, timestep, forward step, population and neuron; the current a
/// refractory neuron discards never does.
#[test]
fn membrane_overflow_is_an_error() {
    let big = 3.0e38f32;
    let overflow = |n: &Network, frames: &[f32], timesteps: usize, s: Scheduler| {
        run_sample(
            n,
            &SampleInput::Dense { frames, timesteps },
            None,
            0,
            &cfg(s, 1),
        )
    };
    for s in ALL {
        // inf - inf: each product overflows, their sum is NaN in any order.
        let n = net(
            2,
            vec![pop(2, 1.0, 1.0), pop(1, 1.0, 1.0)],
            vec![
                dense(0, 1, vec![0.0, 0.0, big, -big]),
                dense(1, 2, vec![1.0, 1.0]),
            ],
        );
        let e = overflow(&n, &[0.0, 0.0, 2.0, 2.0], 2, s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sample 0, timestep 1, forward step 0, population 1, neuron 1: membrane overflows",
            "{s:?}"
        );
        // A single input product to +inf in the second population.
        let two = |w: f32| {
            net(
                1,
                vec![pop(1, 0.5, 1.0), pop(2, 1.0, 1.0)],
                vec![
                    dense(0, 1, vec![1.0]),
                    dense(1, 2, vec![1.0, 1.0]),
                    dense(0, 2, vec![0.0, w]),
                ],
            )
        };
        assert!(overflow(&two(1.0), &[2.0], 1, s).is_ok());
        let e = overflow(&two(big), &[2.0], 1, s).unwrap_err();
        assert!(matches!(&e, EngineError::Overflow { what, .. } if what == "membrane"));
        assert_eq!(
            e.to_string(),
            "sample 0, timestep 0, forward step 0, population 2, neuron 1: membrane overflows"
        );
        // (big + big = inf after the sum of two currents in one step.)
        let n = net(
            1,
            vec![pop(2, 0.5, 1.0), pop(1, 1.0, 1.0)],
            vec![dense(0, 1, vec![1.0, 1.0]), dense(1, 2, vec![big, big])],
        );
        let e = overflow(&n, &[1.0], 1, Scheduler::Layered).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sample 0, timestep 0, forward step 1, population 2, neuron 0: membrane overflows"
        );
    }
    // Refractory: the output neuron fires at step 0, then the overflowing current of
    // step 1 is discarded (R4.6): no error.
    let n = net(
        2,
        vec![pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            dense(0, 2, vec![2.0, 0.0]),
            dense(1, 2, vec![big]),
        ],
    );
    let r = overflow(&n, &[1.0, 0.0], 1, Scheduler::Fifo).unwrap();
    assert_eq!(r.spikes, vec![1, 1]);
    // A sparse conv target (the per-pixel integrate path).
    let n = net(
        4,
        vec![pop(4, 1.0, 1.0)],
        vec![conv2d(
            0,
            1,
            vec![big],
            1,
            (2, 2),
            1,
            (1, 1),
            (1, 1),
            (0, 0),
        )],
    );
    let mut frames = vec![0.0f32; 4 * 8];
    frames[3] = 2.0;
    let e = overflow(&n, &frames, 8, Scheduler::Fifo).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sample 0, timestep 0, forward step 0, population 1, neuron 3: membrane overflows"
    );
}

fn expect_model(spec: NetworkSpec, field_part: &str) {
    match Network::new(spec) {
        Err(EngineError::Model {
            field, location, ..
        }) => {
            assert!(
                field.contains(field_part),
                "field {field} at {location}, want {field_part}"
            )
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted an invalid network, want {field_part}"),
    }
}

#[test]
fn invalid_networks() {
    let good = NetworkSpec {
        input_size: 4,
        populations: vec![pop(2, 1.0, 0.9), pop(3, 1.0, 0.9)],
        projections: vec![dense(0, 1, vec![0.0; 8]), dense(1, 2, vec![0.0; 6])],
    };
    assert!(Network::new(good.clone()).is_ok());
    let mut s = good.clone();
    s.input_size = 0;
    expect_model(s, "size");
    let mut s = good.clone();
    s.populations.clear();
    s.projections.clear();
    expect_model(s, "populations");
    let mut s = good.clone();
    s.populations[0].size = 0;
    expect_model(s, "size");
    let mut s = good.clone();
    s.populations[1].threshold = vec![1.0, 1.0];
    expect_model(s, "threshold length");
    for th in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let mut s = good.clone();
        s.populations[1].threshold = vec![1.0, th, 1.0];
        expect_model(s, "threshold[1]");
    }
    for b in [-0.1, 1.5, f32::NAN] {
        let mut s = good.clone();
        s.populations[0].beta = vec![b];
        expect_model(s, "beta[0]");
    }
    for p in [1.0, -0.5, f64::NAN] {
        let mut s = good.clone();
        s.populations[0].refractory_dropout = p;
        expect_model(s, "refractory_dropout");
    }
    // Recurrent projections (R1.2) are valid; a source beyond the last population is not.
    for (source, target, n) in [(2, 1, 6), (1, 1, 4)] {
        let mut s = good.clone();
        s.projections[1] = dense(source, target, vec![0.0; n]);
        assert!(Network::new(s).is_ok(), "({source}, {target})");
    }
    let mut s = good.clone();
    s.projections[1] = dense(3, 1, vec![0.0; 6]);
    expect_model(s, "source");
    let mut s = good.clone();
    s.projections[1] = dense(1, 3, vec![0.0; 6]);
    expect_model(s, "target");
    let mut s = good.clone();
    s.projections[1] = dense(0, 0, vec![]);
    expect_model(s, "target");
    let mut s = good.clone();
    s.projections[0] = dense(0, 1, vec![0.0; 7]);
    expect_model(s, "weight length");
    let mut s = good.clone();
    s.projections[0] = dense(0, 1, vec![0.0, 1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0]);
    expect_model(s, "weight[2]");
    let conv = |c_in, in_h, in_w, c_out, kh, kw, stride, padding, wl| {
        conv2d(
            0,
            1,
            vec![0.5; wl],
            c_in,
            (in_h, in_w),
            c_out,
            (kh, kw),
            stride,
            padding,
        )
    };
    let conv_net = |p: ProjectionSpec, size: usize| NetworkSpec {
        input_size: 16,
        populations: vec![pop(size, 1.0, 1.0)],
        projections: vec![p],
    };
    assert!(Network::new(conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 18), 8)).is_ok());
    expect_model(conv_net(conv(1, 4, 4, 2, 0, 3, (1, 1), (0, 0), 0), 8), "kh");
    expect_model(
        conv_net(conv(1, 4, 4, 2, 3, 3, (0, 1), (0, 0), 18), 8),
        "stride[0]",
    );
    expect_model(
        conv_net(conv(1, 4, 4, 2, 5, 3, (1, 1), (0, 0), 30), 8),
        "in_h",
    );
    expect_model(
        conv_net(conv(2, 4, 4, 2, 3, 3, (1, 1), (0, 0), 36), 8),
        "c_in * in_h * in_w",
    );
    expect_model(
        conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 18), 9),
        "c_out * oh * ow",
    );
    expect_model(
        conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 17), 8),
        "weight length",
    );
    expect_model(
        conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (usize::MAX, 0), 18), 8),
        "in_h",
    );
    expect_model(
        conv_net(
            conv(usize::MAX, usize::MAX, 4, 2, 3, 3, (1, 1), (0, 0), 18),
            8,
        ),
        "in_h * in_w",
    );
    let pool = |ch, h, w, k, s| ProjectionSpec {
        source: 0,
        target: 1,
        kind: ProjectionKind::Pool {
            kind: PoolKind::Avg,
            channels: ch,
            in_h: h,
            in_w: w,
            kh: k,
            kw: k,
            stride: (s, s),
        },
    };
    assert!(Network::new(conv_net(pool(1, 4, 4, 2, 2), 4)).is_ok());
    expect_model(conv_net(pool(1, 4, 4, 2, 2), 5), "channels * oh * ow");
    expect_model(conv_net(pool(1, 4, 4, 5, 1), 1), "in_h");
    expect_model(conv_net(pool(1, 4, 4, 0, 1), 1), "kh");
    expect_model(conv_net(pool(1, 4, 4, 2, 0), 4), "stride[0]");
    expect_model(conv_net(pool(2, 4, 4, 2, 2), 8), "channels * in_h * in_w");
    // Location strings.
    match Network::new(conv_net(conv(1, 4, 4, 2, 3, 3, (1, 1), (0, 0), 17), 8)) {
        Err(EngineError::Model { location, .. }) => {
            assert_eq!(location, "projection 0 (conv2d)")
        }
        other => panic!("{other:?}"),
    }
    let mut s = good.clone();
    s.populations[1].beta = vec![2.0];
    match Network::new(s) {
        Err(EngineError::Model {
            location, value, ..
        }) => {
            assert_eq!(location, "population 2");
            assert_eq!(value, "2");
        }
        other => panic!("{other:?}"),
    }
    // Too many neurons for u32 ids.
    let s = NetworkSpec {
        input_size: 1,
        populations: vec![
            PopulationSpec {
                size: u32::MAX as usize,
                threshold: vec![1.0],
                beta: vec![1.0],
                refractory_dropout: 0.0,
                bias: vec![0.0],
                reset: _engine::ResetMode::Zero,
                alpha: vec![0.0],
            },
            pop(usize::MAX, 1.0, 1.0),
        ],
        projections: vec![],
    };
    assert!(matches!(Network::new(s), Err(EngineError::Overflow { .. })));
}

#[test]
fn invalid_configs_and_inputs() {
    let n = net(
        2,
        vec![pop(2, 1.0, 1.0), pop(2, 1.0, 1.0)],
        vec![dense(0, 1, vec![1.0; 4]), dense(1, 2, vec![1.0; 4])],
    );
    let frames = [1.0f32, 0.0];
    let input = SampleInput::Dense {
        frames: &frames,
        timesteps: 1,
    };
    let ok = cfg(Scheduler::Fifo, 1);
    assert!(run_sample(&n, &input, None, 0, &ok).is_ok());
    let param = |c: &RunConfig, field: &str| match run_sample(&n, &input, None, 0, c) {
        Err(EngineError::Parameter { field: f, .. }) => assert!(f.contains(field), "{f}"),
        other => panic!("{other:?}"),
    };
    param(&cfg(Scheduler::Fifo, 0), "forward_group_size");
    param(&cfg(Scheduler::Layered, 0), "forward_group_size");
    let mut c = ok.clone();
    c.max_steps = Some(0);
    param(&c, "max_steps");
    for j in [-1.0, f32::NAN, f32::INFINITY] {
        param(&cfg(Scheduler::Momentum { jitter: j }, 1), "jitter");
    }
    let mut c = ok.clone();
    c.refractory_dropout = Some(vec![0.1]);
    param(&c, "refractory_dropout");
    c.refractory_dropout = Some(vec![0.1, 1.0]);
    param(&c, "refractory_dropout[1]");
    c.refractory_dropout = Some(vec![f64::NAN, 0.0]);
    param(&c, "refractory_dropout[0]");
    match run_sample(&n, &input, None, 1 << 32, &ok) {
        Err(EngineError::Parameter { field, .. }) => assert_eq!(field, "sample_ids"),
        other => panic!("{other:?}"),
    }
    let bad_input = |inp: SampleInput, label: Option<usize>, field: &str| match run_sample(
        &n, &inp, label, 5, &ok,
    ) {
        Err(EngineError::Input {
            location, field: f, ..
        }) => {
            assert_eq!(location, "sample 5");
            assert_eq!(f, field);
        }
        other => panic!("{other:?}"),
    };
    bad_input(input, Some(2), "labels");
    bad_input(
        SampleInput::Dense {
            frames: &frames,
            timesteps: 0,
        },
        None,
        "timesteps",
    );
    bad_input(
        SampleInput::Dense {
            frames: &frames,
            timesteps: 2,
        },
        None,
        "inputs",
    );
    for x in [-1.0, f32::NAN, f32::INFINITY] {
        bad_input(
            SampleInput::Dense {
                frames: &[0.0, x],
                timesteps: 1,
            },
            None,
            "inputs",
        );
    }
    let sp = |t: &'static [u32], i: &'static [u32], v: &'static [f32], ts| SampleInput::Sparse {
        t,
        index: i,
        value: v,
        timesteps: ts,
    };
    bad_input(sp(&[0], &[0], &[1.0], 0), None, "timesteps");
    bad_input(sp(&[1], &[0], &[1.0], 1), None, "inputs");
    bad_input(sp(&[0], &[2], &[1.0], 1), None, "inputs");
    bad_input(sp(&[0], &[0], &[-1.0], 1), None, "inputs");
    bad_input(sp(&[0], &[0], &[f32::NAN], 1), None, "inputs");
    bad_input(sp(&[0, 0], &[0], &[1.0], 1), None, "inputs");
    bad_input(
        sp(&[0, 0], &[1, 1], &[f32::MAX, f32::MAX], 1),
        None,
        "inputs",
    );
    bad_input(sp(&[], &[], &[], usize::MAX), None, "timesteps");
    // Batch validation.
    let cancel = AtomicBool::new(false);
    let inputs = [input, input];
    assert!(matches!(
        run_batch(&n, &inputs, None, &[0], &ok, &cancel),
        Err(EngineError::Parameter { .. })
    ));
    assert!(matches!(
        run_batch(&n, &inputs, Some(&[None]), &[0, 1], &ok, &cancel),
        Err(EngineError::Parameter { .. })
    ));
    assert!(matches!(
        run_batch(&n, &inputs, None, &[0, u64::MAX], &ok, &cancel),
        Err(EngineError::Parameter { .. })
    ));
    match run_batch(&n, &inputs, Some(&[None, Some(7)]), &[0, 1], &ok, &cancel) {
        Err(EngineError::Input { location, .. }) => assert_eq!(location, "sample 1"),
        other => panic!("{other:?}"),
    }
    let r = run_batch(&n, &inputs, Some(&[Some(0), None]), &[3, 4], &ok, &cancel).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], run_sample(&n, &input, Some(0), 3, &ok).unwrap());
    assert!(run_batch(&n, &[], None, &[], &ok, &cancel)
        .unwrap()
        .is_empty());
    cancel.store(true, Ordering::Relaxed);
    assert_eq!(
        run_batch(&n, &inputs, None, &[0, 1], &ok, &cancel),
        Err(EngineError::Cancelled)
    );
}
