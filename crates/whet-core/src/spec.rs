//! Building blocks for configuration types (the typed model of the YAML run file).
//!
//! Conventions every config type in whet follows:
//! - `#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]` and
//!   `#[serde(deny_unknown_fields)]` on every struct; ops and steps are externally tagged enums
//!   with `rename_all = "snake_case"`, written in YAML as one-key maps (`- rotate: { degrees: 12 }`).
//! - Range checks that need only one value are done by the value's type ([`Probability`],
//!   [`NonNegative`], [`Positive`]) while deserializing, so they carry the YAML line and column.
//! - Checks across fields or against the data go in a `validate(&self) -> Issues` method, whose
//!   [`Issue`]s carry a key path relative to the config type (`ops[2].rotate.degrees`); the caller
//!   prefixes its own path with [`Issues::nest`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem found while validating a config, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// Key path from the config root being validated, e.g. `ops[2].rotate.degrees`.
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A list of [`Issue`]s; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Issues(pub Vec<Issue>);

impl Issues {
    /// No issues.
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// Records an issue at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }
    /// Records an issue at `path` when `ok` is false.
    pub fn check(&mut self, ok: bool, path: impl Into<String>, message: impl FnOnce() -> String) {
        if !ok {
            self.push(path, message());
        }
    }
    /// Adds `inner`'s issues with `prefix` put before their paths (`prefix.path`, or
    /// `prefix[i]`-style when `inner` paths start with `[`).
    pub fn nest(&mut self, prefix: &str, inner: Issues) {
        for mut i in inner.0 {
            i.path = join_path(prefix, &i.path);
            self.0.push(i);
        }
    }
    /// True when there are no issues.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of issues.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Iterates over the issues.
    pub fn iter(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter()
    }
}

/// Joins two key-path fragments: `join_path("augment", "ops[1]")` is `augment.ops[1]`.
pub fn join_path(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => prefix.to_string(),
        _ if rest.starts_with('[') => format!("{prefix}{rest}"),
        _ => format!("{prefix}.{rest}"),
    }
}

/// A number for a message: as written for everyday magnitudes (`0.25`, `1200`), in exponent
/// form outside them (`1e300`, `2.5e-9`), where Rust's `{}` would print hundreds of digits.
///
/// ```
/// use whet_core::spec::fmt_number;
/// assert_eq!(fmt_number(0.25), "0.25");
/// assert_eq!(fmt_number(1e300), "1e300");
/// assert_eq!(fmt_number(-2.5e-9), "-2.5e-9");
/// assert_eq!(fmt_number(f64::NAN), "NaN");
/// ```
pub fn fmt_number(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() || (1e-4..1e9).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $check:expr, $expect:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
        #[serde(try_from = "f64", into = "f64")]
        pub struct $name(f64);

        impl $name {
            /// Wraps `v`, or returns the reason it is out of range.
            ///
            /// # Errors
            /// When `v` is NaN or out of range.
            pub fn new(v: f64) -> Result<Self, String> {
                let ok: fn(f64) -> bool = $check;
                if ok(v) {
                    Ok(Self(v))
                } else {
                    Err(format!("expected {}, found {}", $expect, fmt_number(v)))
                }
            }
            /// The value.
            pub fn get(self) -> f64 {
                self.0
            }
        }
        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(v: f64) -> Result<Self, String> {
                Self::new(v)
            }
        }
        impl From<$name> for f64 {
            fn from(v: $name) -> f64 {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&fmt_number(self.0))
            }
        }
        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let mut s = schemars::json_schema!({ "type": "number", "description": $expect });
                let min: Option<f64> = $min;
                let max: Option<f64> = $max;
                if let Some(m) = min {
                    s.insert("minimum".into(), m.into());
                }
                if let Some(m) = max {
                    s.insert("maximum".into(), m.into());
                }
                s
            }
        }
    };
}

bounded!(
    /// A probability: a number in `[0, 1]`.
    Probability, |v| (0.0..=1.0).contains(&v), "a probability in [0, 1]", Some(0.0), Some(1.0)
);
bounded!(
    /// A finite number `>= 0`.
    NonNegative, |v| v.is_finite() && v >= 0.0, "a finite number >= 0", Some(0.0), None
);
bounded!(
    /// A finite number `> 0`.
    Positive, |v| v.is_finite() && v > 0.0, "a finite number > 0", None, None
);

impl Probability {
    /// Probability 1 (always).
    pub const ONE: Probability = Probability(1.0);
    /// Probability 0.5.
    pub const HALF: Probability = Probability(0.5);
}

impl NonNegative {
    /// Zero.
    pub const ZERO: NonNegative = NonNegative(0.0);
}

/// The candidate closest to `found` by edit distance, if within a typo's reach.
pub fn closest<'a>(found: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::damerau_levenshtein(&found.to_lowercase(), &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (found.chars().count().max(c.chars().count()) / 3).max(1);
    (d <= limit || c.starts_with(found) || found.starts_with(c)).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_range() {
        assert!(Probability::new(0.0).is_ok());
        assert!(Probability::new(1.0).is_ok());
        assert!(Probability::new(1.5).unwrap_err().contains("[0, 1]"));
        assert!(Probability::new(f64::NAN).is_err());
        assert!(NonNegative::new(-0.1).is_err());
        assert!(NonNegative::new(f64::INFINITY).is_err());
        assert!(Positive::new(0.0).is_err());
    }

    #[test]
    fn nested_paths() {
        let mut inner = Issues::new();
        inner.push("[2].rotate.p", "bad");
        inner.push("", "whole");
        let mut outer = Issues::new();
        outer.nest("augment.ops", inner);
        assert_eq!(outer.0[0].path, "augment.ops[2].rotate.p");
        assert_eq!(outer.0[1].path, "augment.ops");
    }

    #[test]
    fn closest_handles_prefixes_and_distance() {
        let c = ["strategy", "columns", "numeric"];
        assert_eq!(closest("stratgy", c.iter().copied()), Some("strategy"));
        assert_eq!(closest("col", c.iter().copied()), Some("columns"));
        assert_eq!(closest("xyz", c.iter().copied()), None);
    }
}
