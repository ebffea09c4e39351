//! Run options: [`RunConfig`] (scheduler, `F`, stop mode, `max_steps`, seed, dropout
//! override), [`StopMode`] with its names, and [`validate_config`].

use crate::error::EngineError;
use crate::network::{Network, ResetMode, RECURRENT_DROPOUT};
use crate::scheduler::Scheduler;

/// Stop mode of a timestep (R6.1, R6.2). `max_steps` (R6.3) is given separately in
/// [`RunConfig::max_steps`] and may be combined with either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// R6.1: run until the pending set is empty.
    Drain,
    /// R6.2: end the timestep at the stop check of step `k` when the first output
    /// spike of the timestep happened at step `k0` and `k - k0 >= extra_steps`.
    FirstOutput {
        /// `M >= 0`.
        extra_steps: u32,
    },
}

impl StopMode {
    /// This stop mode with `M = extra_steps` if it is `first_output` (R6.2);
    /// unchanged otherwise.
    pub fn with_extra_steps(self, extra_steps: u32) -> StopMode {
        match self {
            StopMode::FirstOutput { .. } => StopMode::FirstOutput { extra_steps },
            other => other,
        }
    }
}

impl std::str::FromStr for StopMode {
    type Err = EngineError;

    /// Parses a stop mode name: "drain", "first_output" (with `M = 0`; see
    /// [`StopMode::with_extra_steps`]) or "max_steps" (the cap of R6.3 alone, which is
    /// `drain` plus `max_steps`). The one place where names are parsed.
    fn from_str(name: &str) -> Result<StopMode, EngineError> {
        match name {
            "drain" | "max_steps" => Ok(StopMode::Drain),
            "first_output" => Ok(StopMode::FirstOutput { extra_steps: 0 }),
            other => Err(EngineError::Parameter {
                field: "stop".to_string(),
                value: other.to_string(),
                reason: "must be drain, first_output or max_steps".to_string(),
            }),
        }
    }
}

/// Options of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// R5: the scheduler.
    pub scheduler: Scheduler,
    /// R5: forward group size `F >= 1` (ignored by `layered`, but validated).
    pub forward_group_size: usize,
    /// R6.1/R6.2.
    pub stop: StopMode,
    /// R6.3: cap on the forward steps of a timestep, `>= 1`.
    pub max_steps: Option<u32>,
    /// R5.5: seed of the shared random function.
    pub seed: u64,
    /// None: p = 0 everywhere (R4.6 inference default); Some(v): per non-input population p.
    pub refractory_dropout: Option<Vec<f64>>,
    /// R4.10: probability in [0, 1) that a non-zero input value is dropped (0: off, no draws).
    pub input_dropout: f64,
    /// R4.11: probability in [0, 1) that a spike is not enqueued (0: off, no draws).
    pub spike_dropout: f64,
    /// R2.3: `true` (the default of the API) delivers each input frame at once in
    /// forward step 0; `false` schedules its values with the spikes (R4.13; not with
    /// `momentum`).
    pub prioritize_input: bool,
}

/// Validates the run options against `net`: `F >= 1`, `max_steps >= 1`, momentum
/// `jitter` finite and `>= 0`, and a `refractory_dropout` override with one value in
/// [0, 1) per non-input population, 0 for a population whose reset is not `zero` or
/// that a recurrent projection targets (R4.6); `input_dropout` and `spike_dropout` in
/// [0, 1) (R4.10, R4.11); `prioritize_input = false` not with `momentum` (R4.13).
pub fn validate_config(net: &Network, config: &RunConfig) -> Result<(), EngineError> {
    if config.forward_group_size == 0 {
        return Err(EngineError::parameter(
            "forward_group_size",
            0,
            "must be >= 1 (R5)",
        ));
    }
    if config.max_steps == Some(0) {
        return Err(EngineError::parameter(
            "max_steps",
            0,
            "must be >= 1 (R6.3)",
        ));
    }
    if let Scheduler::Momentum { jitter } = config.scheduler {
        if !(jitter.is_finite() && jitter >= 0.0) {
            return Err(EngineError::parameter(
                "jitter",
                jitter,
                "must be finite and >= 0 (R5.4)",
            ));
        }
    }
    if !config.prioritize_input && matches!(config.scheduler, Scheduler::Momentum { .. }) {
        return Err(EngineError::parameter(
            "prioritize_input",
            false,
            "the momentum scheduler has no key for input entries (R4.13): use layered, fifo or random",
        ));
    }
    for (field, p, rule) in [
        ("input_dropout", config.input_dropout, "R4.10"),
        ("spike_dropout", config.spike_dropout, "R4.11"),
    ] {
        if !(p.is_finite() && (0.0..1.0).contains(&p)) {
            return Err(EngineError::parameter(
                field,
                p,
                format!("must be finite and in [0, 1) ({rule})"),
            ));
        }
    }
    if let Some(p) = &config.refractory_dropout {
        if p.len() != net.n_populations() {
            return Err(EngineError::parameter(
                "refractory_dropout",
                format!("<{} values>", p.len()),
                format!(
                    "must have one value per non-input population ({})",
                    net.n_populations()
                ),
            ));
        }
        for (i, &x) in p.iter().enumerate() {
            if !(x.is_finite() && (0.0..1.0).contains(&x)) {
                return Err(EngineError::parameter(
                    format!("refractory_dropout[{i}]"),
                    x,
                    "must be finite and in [0, 1) (R4.6)",
                ));
            }
            let reset = net.spec().populations[i].reset;
            if x > 0.0 && reset != ResetMode::Zero {
                return Err(EngineError::parameter(
                    format!("refractory_dropout[{i}]"),
                    x,
                    format!(
                        "refractory dropout needs reset 'zero' (R4.6), not '{}' (population {})",
                        reset.name(),
                        i + 1
                    ),
                ));
            }
            if x > 0.0 && net.recurrent_target[i] {
                return Err(EngineError::parameter(
                    format!("refractory_dropout[{i}]"),
                    x,
                    format!("{} (population {})", RECURRENT_DROPOUT, i + 1),
                ));
            }
        }
    }
    Ok(())
}
