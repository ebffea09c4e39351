//! Validation of a [`NetworkSpec`] that needs no lowering: the input size, the LIF
//! populations (R1.1, R1.4, R1.5) and the endpoints of each projection (R1.2), plus
//! the small checks the lowering shares (positive sizes, checked products, finite
//! weights).

use super::{NetworkSpec, PopulationSpec, ProjectionSpec, ResetMode};
use crate::error::{EngineError, Location};

/// `a * b`, or a model error naming `field` at `location`.
pub(super) fn mul(
    a: usize,
    b: usize,
    location: &Location,
    field: &str,
) -> Result<usize, EngineError> {
    a.checked_mul(b)
        .ok_or_else(|| EngineError::model(location, field, format!("{a} * {b}"), "too large"))
}

/// `v >= 1`, or a model error naming `field` at `location`.
pub(super) fn check_pos(v: usize, location: &Location, field: &str) -> Result<(), EngineError> {
    if v == 0 {
        Err(EngineError::model(location, field, v, "must be >= 1"))
    } else {
        Ok(())
    }
}

/// Every weight finite, or a model error naming the first one that is not.
pub(super) fn check_weights(w: &[f32], location: &Location) -> Result<(), EngineError> {
    if let Some((i, x)) = w.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(EngineError::model(
            location,
            format!("weight[{i}]"),
            x,
            "weights must be finite",
        ));
    }
    Ok(())
}

/// Size of population `p` (0 = input). `p` must be in `0..=P`.
pub(super) fn pop_size(spec: &NetworkSpec, p: usize) -> usize {
    if p == 0 {
        spec.input_size
    } else {
        spec.populations[p - 1].size
    }
}

/// Checks the input population and every LIF population, in order, and returns
/// `pop_offset` (R1.5): `pop_offset[p]` is the id of the first neuron of population
/// `p + 1`, `pop_offset[P]` the number of non-input neurons, which fits the u32 id
/// space.
pub(super) fn populations(spec: &NetworkSpec) -> Result<Vec<usize>, EngineError> {
    let n_pops = spec.populations.len();
    if spec.input_size == 0 {
        return Err(EngineError::model(
            Location::Population(0),
            "size",
            0,
            "the input population must have >= 1 neuron",
        ));
    }
    if spec.input_size > u32::MAX as usize {
        return Err(EngineError::overflow(
            Location::Population(0),
            "input size (u32 index)",
        ));
    }
    if n_pops == 0 {
        return Err(EngineError::model(
            Location::Network,
            "populations",
            "[]",
            "there must be at least one non-input population",
        ));
    }
    let mut pop_offset = Vec::with_capacity(n_pops + 1);
    let mut total: usize = 0;
    pop_offset.push(0);
    for (p, pop) in spec.populations.iter().enumerate() {
        population(pop, &Location::Population(p + 1))?;
        total = total
            .checked_add(pop.size)
            .ok_or_else(|| EngineError::overflow(Location::Network, "neuron count"))?;
        pop_offset.push(total);
    }
    if total >= u32::MAX as usize {
        return Err(EngineError::overflow(
            Location::Network,
            "neuron count (u32 neuron ids)",
        ));
    }
    Ok(pop_offset)
}

/// One LIF population (R1.4): size, the lengths and values of `threshold`, `beta` and
/// `bias` and `alpha` (R4.12), and `refractory_dropout` (0 unless the reset is `zero`,
/// R4.6).
fn population(pop: &PopulationSpec, loc: &Location) -> Result<(), EngineError> {
    check_pos(pop.size, loc, "size")?;
    for (field, vals) in [
        ("threshold", &pop.threshold),
        ("beta", &pop.beta),
        ("bias", &pop.bias),
        ("alpha", &pop.alpha),
    ] {
        if vals.len() != 1 && vals.len() != pop.size {
            return Err(EngineError::model(
                loc,
                format!("{field} length"),
                vals.len(),
                format!("must be 1 or the population size {}", pop.size),
            ));
        }
    }
    for (i, &th) in pop.threshold.iter().enumerate() {
        if !(th.is_finite() && th > 0.0) {
            return Err(EngineError::model(
                loc,
                format!("threshold[{i}]"),
                th,
                "must be finite and > 0",
            ));
        }
    }
    for (i, &b) in pop.beta.iter().enumerate() {
        if !(b.is_finite() && (0.0..=1.0).contains(&b)) {
            return Err(EngineError::model(
                loc,
                format!("beta[{i}]"),
                b,
                "must be finite and in [0, 1]",
            ));
        }
    }
    for (i, &a) in pop.alpha.iter().enumerate() {
        if !(a.is_finite() && (0.0..=1.0).contains(&a)) {
            return Err(EngineError::model(
                loc,
                format!("alpha[{i}]"),
                a,
                "must be finite and in [0, 1]",
            ));
        }
    }
    let p_drop = pop.refractory_dropout;
    if !(p_drop.is_finite() && (0.0..1.0).contains(&p_drop)) {
        return Err(EngineError::model(
            loc,
            "refractory_dropout",
            p_drop,
            "must be finite and in [0, 1)",
        ));
    }
    if let Some((i, b)) = pop.bias.iter().enumerate().find(|(_, b)| !b.is_finite()) {
        return Err(EngineError::model(
            loc,
            format!("bias[{i}]"),
            b,
            "must be finite",
        ));
    }
    if p_drop > 0.0 && pop.reset != ResetMode::Zero {
        return Err(EngineError::model(
            loc,
            "refractory_dropout",
            p_drop,
            format!(
                "refractory dropout needs reset 'zero' (R4.6), not '{}'",
                pop.reset.name()
            ),
        ));
    }
    Ok(())
}

/// The endpoints of a projection (R1.2): a non-input target in `1..=n_pops` and a
/// source in `0..=n_pops` (forward when below the target, recurrent otherwise; the
/// input is never a target, so a projection from it is always forward).
pub(super) fn endpoints(
    proj: &ProjectionSpec,
    n_pops: usize,
    loc: &Location,
) -> Result<(), EngineError> {
    if proj.target > n_pops || proj.target == 0 {
        return Err(EngineError::model(
            loc,
            "target",
            proj.target,
            format!("must be a non-input population index in 1..={n_pops}"),
        ));
    }
    if proj.source > n_pops {
        return Err(EngineError::model(
            loc,
            "source",
            proj.source,
            format!("must be a population index in 0..={n_pops}"),
        ));
    }
    Ok(())
}

/// R4.6: refractory dropout is refused on a population that a recurrent projection
/// targets (`recurrent_target`, per non-input population): the first such population
/// with `refractory_dropout > 0` is a model error (the message of the Python
/// `Network`).
pub(super) fn recurrent_dropout(
    spec: &NetworkSpec,
    recurrent_target: &[bool],
) -> Result<(), EngineError> {
    let refused = spec
        .populations
        .iter()
        .zip(recurrent_target)
        .position(|(pop, &rec)| rec && pop.refractory_dropout > 0.0);
    match refused {
        Some(p) => Err(EngineError::model(
            Location::Population(p + 1),
            "refractory_dropout",
            spec.populations[p].refractory_dropout,
            RECURRENT_DROPOUT,
        )),
        None => Ok(()),
    }
}

/// The reason of the R4.6 errors for refractory dropout on a recurrent target (model
/// error here, parameter error in `engine::config`), as Python words it.
pub(crate) const RECURRENT_DROPOUT: &str =
    "refractory dropout is refused on the target of a recurrent projection (R4.6)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ProjectionKind;

    fn pop(size: usize) -> PopulationSpec {
        PopulationSpec {
            size,
            threshold: vec![1.0],
            beta: vec![0.5],
            refractory_dropout: 0.0,
            bias: vec![0.0],
            reset: crate::network::ResetMode::Zero,
            alpha: vec![0.0],
        }
    }

    fn reason(e: EngineError) -> (String, String) {
        match e {
            EngineError::Model { field, reason, .. } => (field, reason),
            other => panic!("not a model error: {other:?}"),
        }
    }

    #[test]
    fn offsets_are_r1_5_ids() {
        let spec = NetworkSpec {
            input_size: 4,
            populations: vec![pop(3), pop(5), pop(2)],
            projections: vec![],
        };
        assert_eq!(populations(&spec).unwrap(), vec![0, 3, 8, 10]);
        assert_eq!((pop_size(&spec, 0), pop_size(&spec, 2)), (4, 5));
    }

    #[test]
    fn the_first_bad_population_field_is_named() {
        let mut p = pop(3);
        p.threshold = vec![1.0, 0.0, -1.0];
        p.beta = vec![2.0];
        let e = population(&p, &Location::Population(1)).unwrap_err();
        assert_eq!(
            reason(e),
            ("threshold[1]".into(), "must be finite and > 0".into())
        );
        p.threshold = vec![1.0, 1.0];
        let e = population(&p, &Location::Population(1)).unwrap_err();
        assert_eq!(
            reason(e),
            (
                "threshold length".into(),
                "must be 1 or the population size 3".into()
            )
        );
    }

    #[test]
    fn endpoints_are_in_range_in_either_direction() {
        let proj = |source, target| ProjectionSpec {
            source,
            target,
            kind: ProjectionKind::Dense { weight: vec![] },
        };
        assert!(endpoints(&proj(0, 2), 2, &Location::Network).is_ok());
        assert_eq!(
            reason(endpoints(&proj(0, 3), 2, &Location::Network).unwrap_err()).0,
            "target"
        );
        assert_eq!(
            reason(endpoints(&proj(0, 0), 2, &Location::Network).unwrap_err()).0,
            "target"
        );
        // Recurrent (R1.2): self and backward projections, also from the output.
        assert!(endpoints(&proj(2, 2), 2, &Location::Network).is_ok());
        assert!(endpoints(&proj(2, 1), 2, &Location::Network).is_ok());
        assert_eq!(
            reason(endpoints(&proj(3, 1), 2, &Location::Network).unwrap_err()),
            (
                "source".into(),
                "must be a population index in 0..=2".into()
            )
        );
    }

    #[test]
    fn dropout_is_refused_on_recurrent_targets_only() {
        let mut spec = NetworkSpec {
            input_size: 2,
            populations: vec![pop(3), pop(2)],
            projections: vec![],
        };
        spec.populations[0].refractory_dropout = 0.25;
        assert!(recurrent_dropout(&spec, &[false, true]).is_ok());
        match recurrent_dropout(&spec, &[true, true]).unwrap_err() {
            EngineError::Model {
                location,
                field,
                value,
                reason,
            } => {
                assert_eq!(location.to_string(), "population 1");
                assert_eq!(
                    (field.as_str(), value.as_str()),
                    ("refractory_dropout", "0.25")
                );
                assert_eq!(
                    reason,
                    "refractory dropout is refused on the target of a recurrent projection (R4.6)"
                );
            }
            other => panic!("not a model error: {other:?}"),
        }
    }

    #[test]
    fn products_and_weights() {
        assert_eq!(mul(3, 4, &Location::Network, "f").unwrap(), 12);
        assert_eq!(
            reason(mul(usize::MAX, 2, &Location::Network, "f").unwrap_err()).1,
            "too large"
        );
        assert!(check_pos(1, &Location::Network, "f").is_ok());
        assert_eq!(
            reason(check_pos(0, &Location::Network, "f").unwrap_err()).1,
            "must be >= 1"
        );
        let e = check_weights(&[0.0, f32::NAN], &Location::Network).unwrap_err();
        assert_eq!(
            reason(e),
            ("weight[1]".into(), "weights must be finite".into())
        );
    }
}
