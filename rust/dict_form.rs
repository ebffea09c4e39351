//! The JSON dict form of a network: the one Rust reader of `asyncsnn._dictform`.
//!
//! The form (written by `asyncsnn._dictform.network_to_dict`)::
//!
//! ```text
//! {"input_shape": [int, ...],
//!  "populations": [{"shape": [int, ...], "threshold": ARRAY, "beta": ARRAY,
//!                   "refractory_dropout": float (default 0), "name": str | null,
//!                   "bias": ARRAY (default all 0),
//!                   "reset": "zero" | "subtract" | "subtract_delayed" | "none"
//!                            (default "zero"),
//!                   "alpha": ARRAY (default all 0: no synaptic current, R4.12)}, ...],
//!  "projections": [{"source": int, "target": int,
//!                   "kind": "dense" | "conv2d" | "avgpool2d" | "sumpool2d",
//!                   dense / conv2d: "weight": ARRAY, "weight_shape": [int, ...],
//!                   conv2d: "stride": [sh, sw], "padding": [ph, pw],
//!                   pools:  "kernel_size": [kh, kw], "stride": [sh, sw]}, ...]}
//! ```
//!
//! An `ARRAY` (flat, C order) is where the two carriers differ: the golden vectors of
//! `tests/golden/` hold the float32 values inline as a JSON list ([`InlineArrays`]), a
//! model file ([`crate::model_file`]) names one of its tensors. [`parse_network`] reads
//! the form once for both, through an [`Arrays`] source; every problem is an
//! [`EngineError::ModelFile`] whose `field` is `"network"` and whose value names the
//! entry (`populations[0].shape = [2, 0]`), or the [`Arrays`] source's own error.
//!
//! The description is not validated here beyond what reading it needs (shapes, indices,
//! the kind, a cap on conv/pool tap tables); [`Network::new`](crate::Network::new)
//! validates the network (R1).

use std::fmt::Display;

use serde_json::Value;

use crate::error::EngineError;
use crate::network::{
    NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec, ResetMode,
};

/// Cap on the per-axis tap table of a convolution or pooling projection (input positions
/// plus (position, output) pairs along one axis). Real networks need a few thousand; the
/// cap keeps a small hostile file from making [`Network::new`](crate::Network::new)
/// allocate gigabytes.
pub const MAX_AXIS_ENTRIES: u64 = 1 << 22;

/// Where the float32 arrays of the dict form come from.
pub trait Arrays {
    /// The values of the array entry `entry` (named `what`, e.g.
    /// `populations[0].threshold`), which must hold exactly `expected` values.
    ///
    /// # Errors
    /// An [`EngineError`] naming `what` when the entry cannot give them.
    fn take(&mut self, entry: &Value, expected: usize, what: &str)
        -> Result<Vec<f32>, EngineError>;
}

/// Arrays held inline as JSON lists of numbers, each exactly a float32 value (the
/// golden vectors: `asyncsnn._dictform` writes the float32 values as float64 reprs).
#[derive(Debug, Clone, Copy)]
pub struct InlineArrays<'a> {
    /// Names the document in errors (a path or `"<json>"`).
    pub where_: &'a str,
}

impl Arrays for InlineArrays<'_> {
    fn take(
        &mut self,
        entry: &Value,
        expected: usize,
        what: &str,
    ) -> Result<Vec<f32>, EngineError> {
        let bad =
            |value: &dyn Display, reason: String| network_error(self.where_, what, value, reason);
        let Some(items) = entry.as_array() else {
            return Err(bad(&json_kind(entry), "must be a list of numbers".into()));
        };
        if items.len() != expected {
            return Err(bad(
                &format!("{} values", items.len()),
                format!("needs {expected} values"),
            ));
        }
        items
            .iter()
            .map(|x| match x.as_f64() {
                Some(f) if f64::from(f as f32) == f => Ok(f as f32),
                _ => Err(bad(x, "must hold float32 values (numbers)".into())),
            })
            .collect()
    }
}

/// A network read from its dict form: the description and what the form says beyond it.
#[derive(Debug, Clone, PartialEq)]
pub struct DictForm {
    /// The network description (not yet validated).
    pub spec: NetworkSpec,
    /// Shape of the input population.
    pub input_shape: Vec<usize>,
    /// Shapes of the non-input populations `1..=P`.
    pub population_shapes: Vec<Vec<usize>>,
    /// Names of the non-input populations (`None` where the network had none).
    pub population_names: Vec<Option<String>>,
}

/// Reads the dict form `form`, taking its arrays from `arrays`; `where_` names the
/// document (a file path) in errors.
///
/// # Errors
/// [`EngineError::ModelFile`] (field `"network"`) for a missing entry, an entry of the
/// wrong JSON type, a shape that is empty, zero or too large, a population index out of
/// range, an unknown kind, a dense `weight_shape` that is not `[n_target, n_source]`, a
/// conv/pool geometry past [`MAX_AXIS_ENTRIES`]; the error of `arrays` for an array.
///
/// ```
/// use _engine::dict_form::{parse_network, InlineArrays};
///
/// let form = serde_json::json!({
///     "input_shape": [2],
///     "populations": [{"shape": [1], "threshold": [1.0], "beta": [0.5], "name": "out"}],
///     "projections": [{"source": 0, "target": 1, "kind": "dense",
///                      "weight": [0.5, -0.25], "weight_shape": [1, 2]}],
/// });
/// let net = parse_network(&form, &mut InlineArrays { where_: "<json>" }, "<json>")?;
/// assert_eq!(net.spec.input_size, 2);
/// assert_eq!(net.population_names, [Some("out".to_owned())]);
/// # Ok::<(), _engine::EngineError>(())
/// ```
pub fn parse_network(
    form: &Value,
    arrays: &mut dyn Arrays,
    where_: &str,
) -> Result<DictForm, EngineError> {
    Reader { where_ }.network(form, arrays)
}

/// The error of entry `what` of the form (field `"network"`, value `what = value`).
fn network_error(
    where_: &str,
    what: &str,
    value: impl Display,
    reason: impl Into<String>,
) -> EngineError {
    EngineError::ModelFile {
        path: where_.to_owned(),
        field: "network".to_owned(),
        value: format!("{what} = {value}"),
        reason: reason.into(),
    }
}

/// The JSON type of `v`, in words (for errors).
pub(crate) fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
    .to_owned()
}

/// Reads the entries of the form; each error names the entry.
struct Reader<'a> {
    where_: &'a str,
}

impl Reader<'_> {
    fn bad(&self, what: &str, value: impl Display, reason: impl Into<String>) -> EngineError {
        network_error(self.where_, what, value, reason)
    }

    fn get<'v>(&self, v: &'v Value, key: &str, what: &str) -> Result<&'v Value, EngineError> {
        v.get(key)
            .ok_or_else(|| self.bad(what, "missing", format!("the entry needs {key:?}")))
    }

    fn usize(&self, v: &Value, what: &str) -> Result<usize, EngineError> {
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| self.bad(what, v, "must be a non-negative integer"))
    }

    fn usizes(&self, v: &Value, what: &str) -> Result<Vec<usize>, EngineError> {
        v.as_array()
            .ok_or_else(|| self.bad(what, v, "must be a list of integers"))?
            .iter()
            .map(|x| self.usize(x, what))
            .collect()
    }

    fn shape(&self, v: &Value, what: &str) -> Result<(Vec<usize>, usize), EngineError> {
        let shape = self.usizes(v, what)?;
        if shape.is_empty() || shape.contains(&0) {
            return Err(self.bad(what, v, "must be a non-empty list of positive integers"));
        }
        let size = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.bad(what, v, "too large"))?;
        Ok((shape, size))
    }

    fn pair(&self, v: &Value, what: &str) -> Result<(usize, usize), EngineError> {
        match self.usizes(v, what)?[..] {
            [a, b] => Ok((a, b)),
            _ => Err(self.bad(what, v, "must be a pair of integers")),
        }
    }

    /// The list at `key` of `v` (named `key`).
    fn list<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Vec<Value>, EngineError> {
        let list = self.get(v, key, key)?;
        list.as_array()
            .ok_or_else(|| self.bad(key, json_kind(list), "must be a list"))
    }

    /// Rejects conv/pool geometry whose per-axis tap table would exceed
    /// [`MAX_AXIS_ENTRIES`] (see the tap tables of `network/taps.rs`).
    fn check_axis(
        &self,
        what: &str,
        n_in: usize,
        pad: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<(), EngineError> {
        let n_in64 = n_in as u64;
        let padded = (pad as u64)
            .checked_mul(2)
            .and_then(|p| p.checked_add(n_in64));
        let per_position = match padded {
            Some(padded) if kernel > 0 && stride > 0 && padded >= kernel as u64 => {
                let n_out = (padded - kernel as u64) / stride as u64 + 1;
                (kernel as u64).div_ceil(stride as u64).min(n_out)
            }
            Some(_) => 0, // invalid geometry: Network::new rejects it before building tables
            None => u64::MAX,
        };
        let entries = per_position
            .checked_mul(n_in64)
            .and_then(|e| e.checked_add(n_in64));
        match entries {
            Some(e) if e <= MAX_AXIS_ENTRIES => Ok(()),
            _ => Err(self.bad(
                what,
                format!("input {n_in}, kernel {kernel}, stride {stride}, padding {pad}"),
                format!("the geometry needs more than {MAX_AXIS_ENTRIES} tap-table entries along one axis"),
            )),
        }
    }

    fn network(&self, form: &Value, arrays: &mut dyn Arrays) -> Result<DictForm, EngineError> {
        let (input_shape, input_size) =
            self.shape(self.get(form, "input_shape", "input_shape")?, "input_shape")?;
        let pops_json = self.list(form, "populations")?;
        let mut shapes = vec![input_shape.clone()];
        let mut sizes = vec![input_size];
        let mut populations = Vec::with_capacity(pops_json.len());
        let mut names = Vec::with_capacity(pops_json.len());
        for (i, p) in pops_json.iter().enumerate() {
            let (population, shape, name) = self.population(i, p, arrays)?;
            sizes.push(population.size);
            populations.push(population);
            shapes.push(shape);
            names.push(name);
        }
        let projs_json = self.list(form, "projections")?;
        let mut projections = Vec::with_capacity(projs_json.len());
        for (n, e) in projs_json.iter().enumerate() {
            projections.push(self.projection(n, e, &shapes, &sizes, arrays)?);
        }
        Ok(DictForm {
            spec: NetworkSpec {
                input_size,
                populations,
                projections,
            },
            input_shape,
            population_shapes: shapes.split_off(1),
            population_names: names,
        })
    }

    /// Population `i + 1`: its description, shape and name.
    fn population(
        &self,
        i: usize,
        p: &Value,
        arrays: &mut dyn Arrays,
    ) -> Result<(PopulationSpec, Vec<usize>, Option<String>), EngineError> {
        let what = |f: &str| format!("populations[{i}].{f}");
        let (shape, size) = self.shape(self.get(p, "shape", &what("shape"))?, &what("shape"))?;
        let threshold = arrays.take(
            self.get(p, "threshold", &what("threshold"))?,
            size,
            &what("threshold"),
        )?;
        let beta = arrays.take(self.get(p, "beta", &what("beta"))?, size, &what("beta"))?;
        let refractory_dropout = match p.get("refractory_dropout") {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.bad(&what("refractory_dropout"), v, "must be a number"))?,
        };
        let name = p.get("name").and_then(Value::as_str).map(str::to_owned);
        let bias = match p.get("bias") {
            None => vec![0.0],
            Some(v) => arrays.take(v, size, &what("bias"))?,
        };
        let alpha = match p.get("alpha") {
            None => vec![0.0],
            Some(v) => arrays.take(v, size, &what("alpha"))?,
        };
        let reset = match p.get("reset") {
            None => ResetMode::Zero,
            Some(v) => v.as_str().and_then(ResetMode::from_name).ok_or_else(|| {
                self.bad(
                    &what("reset"),
                    v,
                    r#"must be "zero", "subtract", "subtract_delayed" or "none""#,
                )
            })?,
        };
        let population = PopulationSpec {
            size,
            threshold,
            beta,
            refractory_dropout,
            bias,
            reset,
            alpha,
        };
        Ok((population, shape, name))
    }

    /// Projection `n`, between populations of `shapes` (sizes `sizes`), input first.
    fn projection(
        &self,
        n: usize,
        e: &Value,
        shapes: &[Vec<usize>],
        sizes: &[usize],
        arrays: &mut dyn Arrays,
    ) -> Result<ProjectionSpec, EngineError> {
        let what = |f: &str| format!("projections[{n}].{f}");
        let source = self.usize(self.get(e, "source", &what("source"))?, &what("source"))?;
        let target = self.usize(self.get(e, "target", &what("target"))?, &what("target"))?;
        for (f, idx) in [("source", source), ("target", target)] {
            if idx >= shapes.len() {
                return Err(self.bad(
                    &what(f),
                    idx,
                    format!("population index out of range (0..={})", shapes.len() - 1),
                ));
            }
        }
        let kind_v = self.get(e, "kind", &what("kind"))?;
        let kind = kind_v.as_str().unwrap_or_default();
        let source_chw = || -> Result<(usize, usize, usize), EngineError> {
            match shapes[source][..] {
                [c, h, w] => Ok((c, h, w)),
                _ => Err(self.bad(
                    &what("source"),
                    source,
                    format!(
                        "a {kind} reads a (c, h, w) population, not {:?}",
                        shapes[source]
                    ),
                )),
            }
        };
        let weight_shape = || {
            self.usizes(
                self.get(e, "weight_shape", &what("weight_shape"))?,
                &what("weight_shape"),
            )
        };
        let weight = |arrays: &mut dyn Arrays, count| {
            arrays.take(
                self.get(e, "weight", &what("weight"))?,
                count,
                &what("weight"),
            )
        };
        let kind = match kind {
            "dense" => {
                let ws = weight_shape()?;
                if ws != [sizes[target], sizes[source]] {
                    return Err(self.bad(
                        &what("weight_shape"),
                        format!("{ws:?}"),
                        format!(
                            "must be [n_target, n_source] = [{}, {}]",
                            sizes[target], sizes[source]
                        ),
                    ));
                }
                let count = sizes[target].checked_mul(sizes[source]).ok_or_else(|| {
                    self.bad(&what("weight_shape"), format!("{ws:?}"), "too large")
                })?;
                ProjectionKind::Dense {
                    weight: weight(arrays, count)?,
                }
            }
            "conv2d" => {
                let ws = weight_shape()?;
                let [c_out, c_in, kh, kw] = ws[..] else {
                    return Err(self.bad(
                        &what("weight_shape"),
                        format!("{ws:?}"),
                        "must be [c_out, c_in, kh, kw]",
                    ));
                };
                let count = ws
                    .iter()
                    .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(|| {
                        self.bad(&what("weight_shape"), format!("{ws:?}"), "too large")
                    })?;
                let (_, in_h, in_w) = source_chw()?;
                let stride = self.pair(self.get(e, "stride", &what("stride"))?, &what("stride"))?;
                let padding =
                    self.pair(self.get(e, "padding", &what("padding"))?, &what("padding"))?;
                self.check_axis(&what("kind"), in_h, padding.0, kh, stride.0)?;
                self.check_axis(&what("kind"), in_w, padding.1, kw, stride.1)?;
                ProjectionKind::Conv2d {
                    weight: weight(arrays, count)?,
                    c_in,
                    in_h,
                    in_w,
                    c_out,
                    kh,
                    kw,
                    stride,
                    padding,
                }
            }
            "avgpool2d" | "sumpool2d" => {
                let (channels, in_h, in_w) = source_chw()?;
                let (kh, kw) = self.pair(
                    self.get(e, "kernel_size", &what("kernel_size"))?,
                    &what("kernel_size"),
                )?;
                let stride = self.pair(self.get(e, "stride", &what("stride"))?, &what("stride"))?;
                self.check_axis(&what("kind"), in_h, 0, kh, stride.0)?;
                self.check_axis(&what("kind"), in_w, 0, kw, stride.1)?;
                ProjectionKind::Pool {
                    kind: PoolKind::from_name(kind).expect("matched by this arm"),
                    channels,
                    in_h,
                    in_w,
                    kh,
                    kw,
                    stride,
                }
            }
            _ => {
                return Err(self.bad(
                    &what("kind"),
                    kind_v,
                    r#"must be "dense", "conv2d", "avgpool2d" or "sumpool2d""#,
                ))
            }
        };
        Ok(ProjectionSpec {
            source,
            target,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(form: &Value) -> Result<DictForm, EngineError> {
        parse_network(form, &mut InlineArrays { where_: "case" }, "case")
    }

    fn conv_pool() -> Value {
        json!({
            "input_shape": [1, 4, 4],
            "populations": [
                {"shape": [2, 4, 4], "threshold": vec![1.0; 32], "beta": vec![0.5; 32],
                 "refractory_dropout": 0.25, "name": null},
                {"shape": [2, 2, 2], "threshold": vec![1.0; 8], "beta": vec![1.0; 8]},
            ],
            "projections": [
                {"source": 0, "target": 1, "kind": "conv2d", "weight": vec![0.125; 18],
                 "weight_shape": [2, 1, 3, 3], "stride": [1, 1], "padding": [1, 1]},
                {"source": 1, "target": 2, "kind": "avgpool2d", "kernel_size": [2, 2],
                 "stride": [2, 2]},
            ],
        })
    }

    /// The `value` of a `ModelFile` error (panics on anything else).
    fn error_value(form: &Value) -> String {
        match parse(form) {
            Err(EngineError::ModelFile { field, value, .. }) => {
                assert_eq!(field, "network");
                value
            }
            other => panic!("expected a ModelFile error, got {other:?}"),
        }
    }

    #[test]
    fn reads_conv_and_pool_geometry_from_the_source_shape() {
        let d = parse(&conv_pool()).unwrap();
        assert_eq!(d.input_shape, [1, 4, 4]);
        assert_eq!(d.population_shapes, [vec![2, 4, 4], vec![2, 2, 2]]);
        assert_eq!(d.population_names, [None, None]);
        assert_eq!(d.spec.populations[0].refractory_dropout, 0.25);
        assert_eq!(d.spec.populations[1].refractory_dropout, 0.0);
        match &d.spec.projections[1].kind {
            ProjectionKind::Pool {
                kind,
                channels,
                in_h,
                kh,
                stride,
                ..
            } => {
                assert_eq!(*kind, PoolKind::Avg);
                assert_eq!((*channels, *in_h, *kh, *stride), (2, 4, 2, (2, 2)));
            }
            other => panic!("{other:?}"),
        }
        assert!(crate::Network::new(d.spec).is_ok());
    }

    /// Recurrent projections (R1.2): a conv from population 1 to itself reads its
    /// geometry from population 1, a dense one from population 2 back to 1 its weight
    /// shape `[n_target, n_source]`; the network built from them is recurrent.
    #[test]
    fn reads_recurrent_projections() {
        let mut f = conv_pool();
        let projections = f["projections"].as_array_mut().unwrap();
        projections.push(json!({"source": 1, "target": 1, "kind": "conv2d",
            "weight": vec![0.125; 36], "weight_shape": [2, 2, 3, 3], "stride": [1, 1],
            "padding": [1, 1]}));
        projections.push(json!({"source": 2, "target": 1, "kind": "dense",
            "weight": vec![0.25; 256], "weight_shape": [32, 8]}));
        // Refractory dropout is refused on a recurrent target (R4.6).
        f["populations"][0]["refractory_dropout"] = json!(0.0);
        let d = parse(&f).unwrap();
        match &d.spec.projections[2].kind {
            ProjectionKind::Conv2d {
                c_in, in_h, in_w, ..
            } => assert_eq!((*c_in, *in_h, *in_w), (2, 4, 4)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (d.spec.projections[3].source, d.spec.projections[3].target),
            (2, 1)
        );
        assert!(crate::Network::new(d.spec).unwrap().is_recurrent());
        // With the dropout, the network refuses it.
        f["populations"][0]["refractory_dropout"] = json!(0.25);
        let d = parse(&f).unwrap();
        match crate::Network::new(d.spec) {
            Err(EngineError::Model { field, .. }) => assert_eq!(field, "refractory_dropout"),
            other => panic!("expected a model error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_entry() {
        let mut f = conv_pool();
        f["populations"][1]["shape"] = json!([2, 0, 2]);
        assert_eq!(error_value(&f), "populations[1].shape = [2,0,2]");
        let mut f = conv_pool();
        f["projections"][1]["kind"] = json!("lstm");
        assert_eq!(error_value(&f), "projections[1].kind = \"lstm\"");
        let mut f = conv_pool();
        f["projections"][0]["target"] = json!(3);
        assert_eq!(error_value(&f), "projections[0].target = 3");
        let mut f = conv_pool();
        f.as_object_mut().unwrap().remove("projections");
        assert_eq!(error_value(&f), "projections = missing");
        let mut f = conv_pool();
        f["populations"][0]["threshold"] = json!([1.0]);
        assert_eq!(error_value(&f), "populations[0].threshold = 1 values");
        let mut f = conv_pool();
        f["projections"][0]["weight"][3] = json!(0.1); // not a float32 value
        assert_eq!(error_value(&f), "projections[0].weight = 0.1");
        let mut f = conv_pool();
        f["input_shape"] = json!([1, 5_000_000, 1]); // 3 taps per row: past the cap
        f["projections"][0]["weight_shape"] = json!([2, 1, 3, 1]);
        let v = error_value(&f);
        assert!(v.starts_with("projections[0].kind = input 5000000"), "{v}");
    }
}
