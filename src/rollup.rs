//! Rollups as a value: the aggregates a rollup keeps ([`Agg`]) and a downsampling rule
//! ([`Downsample`], `EVERY:AGGS` plus an age), parsed from a `meridian-compact` flag or a
//! `[[retention]]` entry of the config. Pure: no I/O.

use crate::model::{FieldType, parse_duration};

/// A `EVERY:AGGS` spec that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("downsample {spec:?}: {reason}")]
pub struct DownsampleError {
    pub spec: String,
    pub reason: String,
}

/// An aggregate of a rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Agg {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    First,
    Last,
}

impl Agg {
    pub const ALL: [Agg; 7] = [
        Agg::Count,
        Agg::Sum,
        Agg::Mean,
        Agg::Min,
        Agg::Max,
        Agg::First,
        Agg::Last,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::First => "first",
            Agg::Last => "last",
        }
    }

    pub fn parse(s: &str) -> Option<Agg> {
        Agg::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The type of this aggregate over a field of type `t`: count is an integer, mean a
    /// float, the others keep the field's type.
    pub fn output_type(self, t: FieldType) -> FieldType {
        match self {
            Agg::Count => FieldType::Integer,
            Agg::Mean => FieldType::Float,
            _ => t,
        }
    }
}

/// Whether rollups aggregate a field of this type (numeric fields only).
pub fn is_numeric(t: FieldType) -> bool {
    matches!(
        t,
        FieldType::Float | FieldType::Integer | FieldType::UInteger
    )
}

/// The name of the rollup column of `field` for `agg`: `usage_user_mean`.
pub fn rollup_column(field: &str, agg: Agg) -> String {
    format!("{field}_{}", agg.name())
}

/// `--downsample EVERY:AGGS --older-than D`.
#[derive(Debug, Clone, PartialEq)]
pub struct Downsample {
    pub every_ns: i64,
    /// `EVERY` as written (`1m`): the rollup measurement is `<measurement>_<suffix>`.
    pub suffix: String,
    /// Distinct, in the order given.
    pub aggs: Vec<Agg>,
    pub older_than_ns: i64,
}

impl Downsample {
    /// Parses `EVERY:AGG[,AGG...]`, e.g. `1m:mean,max`.
    pub fn parse(spec: &str, older_than_ns: i64) -> Result<Downsample, DownsampleError> {
        let err = |reason: String| DownsampleError {
            spec: spec.to_string(),
            reason,
        };
        let (every, aggs) = spec
            .split_once(':')
            .ok_or_else(|| err("expected EVERY:AGGS, e.g. 1m:mean,max".into()))?;
        let every = every.trim();
        if every.is_empty() || !every.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err(format!(
                "EVERY {every:?} must be a duration of letters and digits, e.g. 1m"
            )));
        }
        let every_ns = parse_duration(every).map_err(err)?;
        if every_ns <= 0 {
            return Err(err("EVERY must be positive".into()));
        }
        let mut list = Vec::new();
        for a in aggs.split(',').map(str::trim) {
            let agg = Agg::parse(a).ok_or_else(|| {
                err(format!(
                    "unknown aggregate {a:?}: use count, sum, mean, min, max, first, last"
                ))
            })?;
            if !list.contains(&agg) {
                list.push(agg);
            }
        }
        if older_than_ns < 0 {
            return Err(err("the age (--older-than) must not be negative".into()));
        }
        Ok(Downsample {
            every_ns,
            suffix: every.to_string(),
            aggs: list,
            older_than_ns,
        })
    }

    /// The rollup measurement of `measurement`.
    pub fn target(&self, measurement: &str) -> String {
        format!("{measurement}_{}", self.suffix)
    }

    /// The aggregation window for partitions of `duration`: the larger of the two, which
    /// the smaller must divide so a bucket never straddles a window.
    pub fn window(&self, duration: i64) -> Result<i64, DownsampleError> {
        if duration % self.every_ns == 0 {
            Ok(duration)
        } else if self.every_ns % duration == 0 {
            Ok(self.every_ns)
        } else {
            Err(DownsampleError {
                spec: self.suffix.clone(),
                reason: format!(
                    "EVERY ({} ns) must divide the partition duration ({duration} ns) or be a \
                     multiple of it",
                    self.every_ns
                ),
            })
        }
    }
}
