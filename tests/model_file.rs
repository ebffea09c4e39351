//! The Rust model-file reader reads what `asyncsnn.save` writes, runs it exactly like the
//! Python package, and refuses damaged or hostile files with an error, never a panic.
//!
//! The fixture `tests/fixtures/model.safetensors` and its companion
//! `tests/fixtures/model_expected.json` (inputs, run options and the counters
//! `asyncsnn.infer` returned) are written by `scripts/make_fixtures.py`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use _engine::model_file::{
    load_model_file, parse_model_file, read_model_bytes, read_model_file, MAX_HEADER_BYTES,
};
use _engine::{
    run_batch, EngineError, Network, ResetMode, RunConfig, SampleInput, Scheduler, StopMode,
    SPEC_VERSION,
};
use proptest::prelude::*;
use serde_json::{json, Value};

mod support;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn model_bytes() -> Vec<u8> {
    fs::read(fixture("model.safetensors")).expect("fixture model.safetensors")
}

fn expected() -> Value {
    let text = fs::read_to_string(fixture("model_expected.json")).expect("fixture JSON");
    serde_json::from_str(&text).expect("valid fixture JSON")
}

fn usize_of(v: &Value) -> usize {
    usize::try_from(v.as_u64().expect("an integer")).expect("fits usize")
}

/// Runs `net` on the fixture's inputs under every stored configuration and returns the
/// mismatches with the counters `asyncsnn.infer` produced.
fn mismatches(net: &Network, dropout: &[f64]) -> Vec<String> {
    let doc = expected();
    let timesteps = usize_of(&doc["timesteps"]);
    let frames: Vec<Vec<f32>> = doc["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|s| {
            s.as_array()
                .expect("sample")
                .iter()
                .map(|v| v.as_f64().expect("value") as f32)
                .collect()
        })
        .collect();
    let samples: Vec<SampleInput<'_>> = frames
        .iter()
        .map(|f| SampleInput::Dense {
            frames: f,
            timesteps,
        })
        .collect();
    let labels: Vec<Option<usize>> = doc["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| Some(usize_of(l)))
        .collect();
    let ids: Vec<u64> = (0..samples.len() as u64).collect();
    let mut out = Vec::new();
    for run in doc["runs"].as_array().expect("runs") {
        let config = support::run_config(&run["options"], dropout).expect("run options");
        let results = run_batch(
            net,
            &samples,
            Some(&labels),
            &ids,
            &config,
            &AtomicBool::new(false),
        )
        .expect("run_batch");
        let scheduler = &run["options"]["scheduler"];
        out.extend(
            support::counter_mismatches(&run["expected"], &results)
                .expect("expected counters")
                .into_iter()
                .map(|m| format!("{scheduler}: {m}")),
        );
    }
    out
}

#[test]
fn fixture_runs_like_asyncsnn_infer() {
    let model = load_model_file(fixture("model.safetensors")).expect("the fixture loads");
    let doc = expected();
    assert!((1..=SPEC_VERSION as usize).contains(&usize_of(&doc["spec_version"])));
    let shapes: Vec<Vec<usize>> = doc["population_shapes"]
        .as_array()
        .expect("shapes")
        .iter()
        .map(|s| s.as_array().expect("shape").iter().map(usize_of).collect())
        .collect();
    assert_eq!(model.population_shapes, shapes);
    let input_shape: Vec<usize> = doc["input_shape"]
        .as_array()
        .expect("input shape")
        .iter()
        .map(usize_of)
        .collect();
    assert_eq!(model.input_shape, input_shape);
    let dropout: Vec<f64> = doc["refractory_dropout"]
        .as_array()
        .expect("dropout")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let read: Vec<f64> = model
        .spec
        .populations
        .iter()
        .map(|p| p.refractory_dropout)
        .collect();
    assert_eq!(read, dropout);
    assert_eq!(model.metadata["format"], "asyncsnn");
    assert_eq!(model.metadata["fixture"], "scripts/make_fixtures.py");
    assert_eq!(model.population_names[0].as_deref(), Some("conv"));

    let net = model.into_network().expect("a valid network");
    let bad = mismatches(&net, &dropout);
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );

    // The path and the in-memory readers agree.
    let from_path = read_model_file(fixture("model.safetensors")).expect("reads");
    let from_bytes = read_model_bytes(&model_bytes()).expect("reads");
    assert_eq!(from_path.spec(), net.spec());
    assert_eq!(from_bytes.spec(), net.spec());
}

// ----------------------------------------------------------------------------- bad files

/// The fixture with its header JSON replaced by `edit(header)`, re-encoded like
/// `asyncsnn.model_file._encode` (8-byte aligned header).
fn with_header(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let bytes = model_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    edit(&mut header);
    let mut raw = serde_json::to_vec(&header).expect("encode");
    raw.resize(raw.len().div_ceil(8) * 8, b' ');
    let mut out = (raw.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&raw);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn with_network(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    with_header(|h| {
        let text = h["__metadata__"]["network"]
            .as_str()
            .expect("network")
            .to_owned();
        let mut arch: Value = serde_json::from_str(&text).expect("arch");
        edit(&mut arch);
        h["__metadata__"]["network"] = Value::String(arch.to_string());
    })
}

/// The field of a `ModelFile` error (panics on any other outcome).
fn file_error_field(bytes: &[u8]) -> String {
    match read_model_bytes(bytes) {
        Err(EngineError::ModelFile { path, field, .. }) => {
            assert_eq!(path, "<bytes>");
            field
        }
        other => panic!("expected a ModelFile error, got {other:?}"),
    }
}

#[test]
fn the_unmodified_re_encoding_still_reads() {
    let net = read_model_bytes(&with_header(|_| {})).expect("reads");
    assert_eq!(net.n_populations(), 4);
}

#[test]
fn short_and_truncated_files_are_refused() {
    let bytes = model_bytes();
    assert_eq!(file_error_field(&[]), "file");
    assert_eq!(file_error_field(&bytes[..7]), "file");
    assert_eq!(file_error_field(&bytes[..100]), "header size");
    // Header intact, data section cut: a tensor no longer fits.
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    assert_eq!(file_error_field(&bytes[..8 + n + 10]), "tensor");
    assert_eq!(file_error_field(&bytes[..bytes.len() - 1]), "tensor");
}

#[test]
fn a_huge_header_size_is_refused_before_anything_is_allocated() {
    for n in [u64::MAX, MAX_HEADER_BYTES + 1, 1 << 40] {
        let mut bytes = model_bytes();
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        match read_model_bytes(&bytes) {
            Err(EngineError::ModelFile { field, value, .. }) => {
                assert_eq!(field, "header size");
                assert_eq!(value, n.to_string());
            }
            other => panic!("expected a header size error, got {other:?}"),
        }
    }
}

#[test]
fn malformed_json_is_refused() {
    let mut bytes = model_bytes();
    bytes[8] = b'[';
    assert_eq!(file_error_field(&bytes), "header");
    let not_object = with_header(|h| *h = json!([1, 2]));
    assert_eq!(file_error_field(&not_object), "header");
    let bad_arch = with_header(|h| h["__metadata__"]["network"] = json!("{not json"));
    assert_eq!(file_error_field(&bad_arch), "network");
}

#[test]
fn other_formats_are_refused() {
    let onnx = with_header(|h| h["__metadata__"]["format"] = json!("onnx"));
    assert_eq!(file_error_field(&onnx), "format");
    let plain = with_header(|h| {
        h.as_object_mut().expect("object").remove("__metadata__");
    });
    assert_eq!(file_error_field(&plain), "format");
}

#[test]
fn newer_versions_are_refused() {
    for key in ["spec_version", "format_version"] {
        let newer = with_header(|h| h["__metadata__"][key] = json!("99"));
        match read_model_bytes(&newer) {
            Err(EngineError::ModelFile {
                field,
                value,
                reason,
                ..
            }) => {
                assert_eq!(field, key);
                assert_eq!(value, "99");
                assert!(reason.contains("newer"), "{reason}");
            }
            other => panic!("expected a version error, got {other:?}"),
        }
        let garbled = with_header(|h| h["__metadata__"][key] = json!("one"));
        assert_eq!(file_error_field(&garbled), key);
    }
}

#[test]
fn bad_tensors_are_refused() {
    let f64_tensor = with_header(|h| h["projections.0.weight"]["dtype"] = json!("F64"));
    assert_eq!(file_error_field(&f64_tensor), "tensor");
    let outside =
        with_header(|h| h["projections.0.weight"]["data_offsets"] = json!([0, 1u64 << 40]));
    assert_eq!(file_error_field(&outside), "tensor");
    let wrong_shape = with_header(|h| h["projections.0.weight"]["shape"] = json!([2, 1, 3, 4]));
    assert_eq!(file_error_field(&wrong_shape), "tensor");
    let overflow = with_header(|h| {
        h["projections.0.weight"]["shape"] = json!([u64::MAX, u64::MAX]);
    });
    assert_eq!(file_error_field(&overflow), "tensor");
    let missing = with_network(|a| a["populations"][0]["beta"] = json!("no such tensor"));
    assert_eq!(file_error_field(&missing), "tensor");
    let reused = with_network(|a| {
        a["populations"][0]["beta"] = json!("populations.1.threshold");
    });
    assert_eq!(file_error_field(&reused), "tensor");
    // The synaptic decay (R4.12) is read like the bias: a tensor name.
    let alpha = with_network(|a| a["populations"][0]["alpha"] = json!("no such tensor"));
    assert_eq!(file_error_field(&alpha), "tensor");
    let inline = with_network(|a| a["populations"][0]["alpha"] = json!([0.5]));
    assert_eq!(file_error_field(&inline), "network");
}

#[test]
fn bad_architectures_are_refused() {
    let cases: Vec<Vec<u8>> = vec![
        with_network(|a| a["input_shape"] = json!([])),
        with_network(|a| a["input_shape"] = json!([1, -6, 6])),
        with_network(|a| a["populations"][0]["shape"] = json!([2, 6, 7])), // tensor size mismatch
        with_network(|a| a["projections"][0]["kind"] = json!("lstm")),
        with_network(|a| a["projections"][0]["target"] = json!(9)),
        with_network(|a| a["projections"][3]["weight_shape"] = json!([8, 3])),
        with_network(|a| {
            a.as_object_mut().expect("object").remove("projections");
        }),
        with_network(|a| a["populations"][1]["refractory_dropout"] = json!("high")),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        match read_model_bytes(bytes) {
            Err(EngineError::ModelFile { .. } | EngineError::Model { .. }) => {}
            other => panic!("case {i}: expected an error, got {other:?}"),
        }
    }
    // A well-formed file describing an invalid network: Network::new's error, located in the file.
    let invalid = with_network(|a| a["projections"][0]["source"] = json!(1));
    match read_model_bytes(&invalid) {
        Err(EngineError::Model { location, .. }) => {
            assert!(
                location.to_string().starts_with("<bytes>: projection 0"),
                "{location}"
            )
        }
        other => panic!("expected a Model error, got {other:?}"),
    }
}

#[test]
fn hostile_pool_geometry_is_refused_without_allocating() {
    // A 2^16-row input pooled with a 2^15-row kernel: tiny target, but per-axis tap tables
    // of about 2^31 entries if Network::new were allowed to build them.
    let bytes = with_network(|a| {
        a["input_shape"] = json!([1, 65536, 1]);
        a["projections"][0] = json!({"source": 0, "target": 1, "kind": "sumpool2d",
                                     "kernel_size": [32768, 1], "stride": [1, 1]});
    });
    match read_model_bytes(&bytes) {
        Err(EngineError::ModelFile { field, reason, .. }) => {
            assert_eq!(field, "network");
            assert!(reason.contains("tap-table"), "{reason}");
        }
        other => panic!("expected a geometry error, got {other:?}"),
    }
}

#[test]
fn missing_file_is_an_error() {
    match read_model_file(fixture("does-not-exist.safetensors")) {
        Err(EngineError::ModelFile { field, path, .. }) => {
            assert_eq!(field, "file");
            assert!(path.ends_with("does-not-exist.safetensors"));
        }
        other => panic!("expected a file error, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------- fuzzing

fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize
}

/// Reads `bytes`; when they make a valid network of modest size, also runs it once.
fn read_and_maybe_run(bytes: &[u8]) {
    if let Ok(model) = parse_model_file(bytes, "<fuzz>") {
        if let Ok(net) = model.into_network() {
            if net.input_size() <= 4096 && net.n_neurons() <= 4096 {
                let frames = vec![1.0f32; 2 * net.input_size()];
                let samples = [SampleInput::Dense {
                    frames: &frames,
                    timesteps: 2,
                }];
                let config = RunConfig {
                    scheduler: Scheduler::Fifo,
                    forward_group_size: 2,
                    stop: StopMode::Drain,
                    max_steps: Some(64),
                    seed: 1,
                    refractory_dropout: None,
                    input_dropout: 0.0,
                    spike_dropout: 0.0,
                    prioritize_input: true,
                };
                let _ = run_batch(&net, &samples, None, &[0], &config, &AtomicBool::new(false));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_byte_mutations_never_panic(
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), any::<bool>()), 1..8)
    ) {
        let mut bytes = model_bytes();
        let n = header_len(&bytes);
        for (index, byte, in_header) in edits {
            // Half of the edits hit the JSON header, where they matter most.
            let i = if in_header { 8 + index.index(n) } else { index.index(bytes.len()) };
            bytes[i] = byte;
        }
        read_and_maybe_run(&bytes);
    }

    #[test]
    fn header_digit_changes_never_panic(
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..10), 1..6)
    ) {
        // Swapping digits keeps the JSON valid but changes shapes, offsets, indices, strides.
        let mut bytes = model_bytes();
        let n = header_len(&bytes);
        let digits: Vec<usize> = (8..8 + n).filter(|&i| bytes[i].is_ascii_digit()).collect();
        for (index, d) in edits {
            bytes[digits[index.index(digits.len())]] = b'0' + d;
        }
        read_and_maybe_run(&bytes);
    }

    #[test]
    fn truncations_never_panic(cut in any::<proptest::sample::Index>()) {
        let bytes = model_bytes();
        let cut = cut.index(bytes.len());
        prop_assert!(read_model_bytes(&bytes[..cut]).is_err());
    }
}

/// A valid model followed by a 1 TiB sparse tail (no disk used): only the header and the
/// tensors are read, so it loads (reading the whole file could not even be reserved).
#[test]
fn a_long_tail_after_the_tensors_is_not_read() {
    let path =
        std::env::temp_dir().join(format!("asyncsnn-tail-{}.safetensors", std::process::id()));
    let bytes = model_bytes();
    std::fs::write(&path, &bytes).expect("write");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    let extended = file.set_len(bytes.len() as u64 + (1u64 << 40));
    drop(file);
    let read = read_model_file(&path);
    std::fs::remove_file(&path).expect("remove");
    extended.expect("a sparse 1 TiB file (ext4, xfs, btrfs and tmpfs hold one)");
    let net = read.expect("the model loads");
    assert_eq!(
        net.n_outputs(),
        read_model_bytes(&bytes).expect("model").n_outputs()
    );
}

// ----------------------------------------------------------------------------- SPEC_VERSION 2

/// The fixture with a bias for population 1 (the tensor `populations.1.bias`, the data of
/// `populations.1.threshold` under a second name) and reset `reset`, written as
/// `asyncsnn.save` writes a version-2 network (`spec_version` 2).
fn with_bias_and_reset(reset: Value) -> Vec<u8> {
    let bytes = with_header(|h| {
        let threshold = h["populations.1.threshold"].clone();
        h["populations.1.bias"] = threshold;
        h["__metadata__"]["spec_version"] = json!("2");
    });
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    let text = header["__metadata__"]["network"]
        .as_str()
        .expect("network")
        .to_owned();
    let mut arch: Value = serde_json::from_str(&text).expect("arch");
    arch["populations"][0]["bias"] = json!("populations.1.bias");
    arch["populations"][0]["reset"] = reset;
    header["__metadata__"]["network"] = Value::String(arch.to_string());
    let mut raw = serde_json::to_vec(&header).expect("encode");
    raw.resize(raw.len().div_ceil(8) * 8, b' ');
    let mut out = (raw.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&raw);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn a_version_2_file_reads_its_bias_tensor_and_reset() {
    let fixture = parse_model_file(&model_bytes(), "<bytes>").expect("reads");
    // The fixture is a version-1 network: no bias, reset zero, not settling.
    let p0 = &fixture.spec.populations[0];
    assert_eq!(p0.bias, vec![0.0f32]);
    assert_eq!(p0.reset, ResetMode::Zero);
    assert!(!Network::new(fixture.spec.clone()).unwrap().is_settling());
    for (name, mode) in [
        ("subtract", ResetMode::Subtract),
        ("subtract_delayed", ResetMode::SubtractDelayed),
        ("none", ResetMode::None),
        ("zero", ResetMode::Zero),
    ] {
        let file = parse_model_file(&with_bias_and_reset(json!(name)), "<bytes>").expect("reads");
        assert_eq!(file.metadata["spec_version"], "2");
        let p = &file.spec.populations[0];
        assert_eq!(
            p.bias, p.threshold,
            "the bias tensor holds the threshold's data"
        );
        assert_eq!(p.reset, mode);
        assert_eq!(file.spec.populations[1].reset, ResetMode::Zero);
        let net = file.into_network().expect("valid");
        assert!(net.is_settling());
        let mut config = RunConfig {
            scheduler: Scheduler::Layered,
            forward_group_size: 1,
            stop: StopMode::Drain,
            max_steps: None,
            seed: 0,
            refractory_dropout: None,
            input_dropout: 0.0,
            spike_dropout: 0.0,
            prioritize_input: true,
        };
        let frames = vec![1.0f32; net.input_size() * 3];
        let input = [SampleInput::Dense {
            frames: &frames,
            timesteps: 3,
        }];
        run_batch(&net, &input, None, &[0], &config, &AtomicBool::new(false)).expect("runs");
        // R4.6: the run's refractory dropout needs reset zero.
        config.refractory_dropout = Some(vec![0.25; net.n_populations()]);
        let dropout = run_batch(&net, &input, None, &[0], &config, &AtomicBool::new(false));
        match (mode, dropout) {
            (ResetMode::Zero, Ok(_)) => {}
            (_, Err(EngineError::Parameter { field, .. })) => {
                assert_eq!(field, "refractory_dropout[0]")
            }
            (_, other) => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn bad_bias_and_reset_entries_are_refused() {
    let bogus = with_bias_and_reset(json!("soft"));
    assert_eq!(file_error_field(&bogus), "network");
    match read_model_bytes(&with_bias_and_reset(json!(3))) {
        Err(EngineError::ModelFile { value, .. }) => {
            assert_eq!(value, "populations[0].reset = 3")
        }
        other => panic!("expected a ModelFile error, got {other:?}"),
    }
    let missing = with_network(|a| a["populations"][0]["bias"] = json!("no such tensor"));
    assert_eq!(file_error_field(&missing), "tensor");
    let reused = with_network(|a| a["populations"][0]["bias"] = json!("populations.1.threshold"));
    assert_eq!(file_error_field(&reused), "tensor");
    // Refractory dropout with a reset other than zero: the network is invalid (R4.6).
    let dropout = with_network(|a| {
        a["populations"][0]["reset"] = json!("none");
        a["populations"][0]["refractory_dropout"] = json!(0.5);
    });
    match read_model_bytes(&dropout) {
        Err(EngineError::Model { field, .. }) => assert_eq!(field, "refractory_dropout"),
        other => panic!("expected a Model error, got {other:?}"),
    }
    // A version-1 file and a version-2 file load; a version-3 file is refused.
    for (version, ok) in [("1", true), ("2", true), ("3", false)] {
        let bytes = with_header(|h| h["__metadata__"]["spec_version"] = json!(version));
        assert_eq!(
            read_model_bytes(&bytes).is_ok(),
            ok,
            "spec_version {version}"
        );
    }
}
