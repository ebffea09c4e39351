//! asyncsnn engine: event-driven, asynchronous execution of spiking neural networks.
//!
//! The execution semantics are specified in `docs/semantics.md` (rules `R<n>.<m>`);
//! this crate implements them for one sample at a time ([`engine::run_sample`]) and
//! for batches in parallel ([`engine::run_batch`]). The crate has no Python
//! dependency unless the `python` feature is enabled (the binding lives in
//! `rust/python/`).

mod alloc;
pub mod counters;
pub mod dict_form;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod model_file;
pub mod network;
pub mod rng;
pub mod scheduler;
pub mod train_kernels;

#[cfg(feature = "python")]
mod python;

pub use counters::SampleResult;
pub use engine::{run_batch, run_sample, BatchRunner, RunConfig, SampleInput, StopMode};
pub use error::{EngineError, ErrorClass, ErrorParts, Location};
pub use model_file::{read_model_bytes, read_model_file};
pub use network::{
    Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec, ResetMode,
};
pub use scheduler::Scheduler;

/// Version of `docs/semantics.md` that this engine implements.
pub const SPEC_VERSION: u32 = 2;
