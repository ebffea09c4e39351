//! The batch policy of the binding without Python ([`BatchRunner`]): chunks give the
//! results of `run_batch`, errors name samples by their position in the whole batch,
//! the poll cancels, and the checks come in the binding's order.

#[path = "support/nets.rs"]
mod nets;

use std::sync::atomic::{AtomicUsize, Ordering};

use _engine::{
    run_batch, BatchRunner, EngineError, Location, Network, SampleInput, SampleResult, Scheduler,
};
use nets::*;

fn small_net() -> Network {
    net(
        2,
        vec![pop(3, 0.5, 0.9), pop(2, 0.5, 0.9)],
        vec![
            dense(0, 1, vec![0.6, 0.2, 0.1, 0.7, 0.4, 0.4]),
            dense(1, 2, vec![0.5, 0.5, 0.2, 0.3, 0.9, 0.1]),
        ],
    )
}

/// Every chunk of `runner` until it is done (or the first error).
fn run_all(runner: &mut BatchRunner<'_>) -> Result<Vec<SampleResult>, EngineError> {
    let mut out = Vec::new();
    while let Some(chunk) = runner.next_chunk(&|| false) {
        out.extend(chunk?);
    }
    Ok(out)
}

#[test]
fn chunks_give_the_results_of_run_batch() {
    let net = small_net();
    let frames: Vec<Vec<f32>> = (0..37)
        .map(|b| (0..8).map(|i| ((b * 7 + i * 3) % 5) as f32 * 0.4).collect())
        .collect();
    let inputs: Vec<SampleInput> = (frames.iter())
        .map(|f| SampleInput::Dense {
            frames: f,
            timesteps: 4,
        })
        .collect();
    let labels: Vec<Option<usize>> = (0..37).map(|b| Some(b % 2)).collect();
    let ids: Vec<u64> = (100..137).collect();
    for s in ALL {
        let config = cfg(s, 2);
        let cancel = Default::default();
        let want = run_batch(&net, &inputs, Some(&labels), &ids, &config, &cancel).unwrap();
        for threads in [None, Some(1), Some(2)] {
            let mut runner = BatchRunner::new(
                &net,
                &inputs,
                Some(&labels),
                Some(&ids),
                config.clone(),
                threads,
            )
            .unwrap();
            runner.check_values().unwrap();
            assert_eq!(run_all(&mut runner).unwrap(), want, "{s:?} {threads:?}");
        }
    }
}

#[test]
fn errors_name_the_sample_in_the_whole_batch() {
    let net = small_net();
    let good = [1.0f32; 8];
    let mut bad = [1.0f32; 8];
    bad[5] = -1.0;
    let mut inputs = vec![
        SampleInput::Dense {
            frames: &good,
            timesteps: 4
        };
        9
    ];
    inputs[6] = SampleInput::Dense {
        frames: &bad,
        timesteps: 4,
    };
    let config = cfg(Scheduler::Fifo, 1);
    // The value check before anything runs.
    let mut runner = BatchRunner::new(&net, &inputs, None, None, config.clone(), Some(1)).unwrap();
    let e = runner.check_values().unwrap_err();
    assert_eq!(e.location(), Some(&Location::Sample(6)));
    assert_eq!(
        e.to_string(),
        "sample 6: invalid inputs = -1 at (t=2, i=1): input values must be finite and >= 0 (R2.1)"
    );
    // Found by the engine inside a later chunk (one thread: the first chunks are small).
    let (t, i, v) = ([0u32, 9], [0u32, 1], [1.0f32, 1.0]);
    let mut sparse = vec![
        SampleInput::Sparse {
            t: &t[..1],
            index: &i[..1],
            value: &v[..1],
            timesteps: 4
        };
        9
    ];
    sparse[7] = SampleInput::Sparse {
        t: &t,
        index: &i,
        value: &v,
        timesteps: 4,
    };
    let mut runner = BatchRunner::new(&net, &sparse, None, None, config, Some(1)).unwrap();
    runner.check_values().unwrap();
    let e = run_all(&mut runner).unwrap_err();
    assert!(
        matches!(&e, EngineError::Input { field, .. } if field == "inputs"),
        "{e}"
    );
    assert_eq!(e.location(), Some(&Location::Sample(7)));
}

#[test]
fn the_poll_cancels_the_run() {
    let net = small_net();
    // Samples long enough (seconds) that the poll is asked while they run: from the
    // event loop on one thread, from the wait loop while a pool of two runs them.
    let timesteps = 10_000_000;
    let frames = vec![1.0f32; 2 * timesteps];
    let inputs = vec![
        SampleInput::Dense {
            frames: &frames,
            timesteps
        };
        4
    ];
    for threads in [Some(1), Some(2)] {
        let asked = AtomicUsize::new(0);
        let poll = || asked.fetch_add(1, Ordering::Relaxed) >= 1; // stop when asked again
        let config = cfg(Scheduler::Fifo, 1);
        let mut runner = BatchRunner::new(&net, &inputs, None, None, config, threads).unwrap();
        let first = runner.next_chunk(&poll).unwrap();
        assert!(matches!(first, Err(EngineError::Cancelled)), "{threads:?}");
        assert_eq!(asked.load(Ordering::Relaxed), 2, "{threads:?}");
    }
}

#[test]
fn arguments_are_checked_in_the_binding_order() {
    let net = small_net();
    let frames = [1.0f32; 8];
    let inputs = vec![
        SampleInput::Dense {
            frames: &frames,
            timesteps: 4
        };
        3
    ];
    let config = cfg(Scheduler::Layered, 1);
    let err = |labels: Option<&[Option<usize>]>, ids: Option<&[u64]>, threads| {
        BatchRunner::new(&net, &inputs, labels, ids, config.clone(), threads)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        err(Some(&[None]), Some(&[1, 2]), Some(0)).unwrap(),
        "invalid sample_ids = 2: must give one id per sample"
    );
    assert_eq!(
        err(Some(&[None]), None, Some(0)).unwrap(),
        "invalid labels = 1: must give one label per sample"
    );
    assert_eq!(
        err(None, None, Some(0)).unwrap(),
        "invalid threads = 0: must be >= 1"
    );
    assert_eq!(err(None, None, Some(3)), None);
}
