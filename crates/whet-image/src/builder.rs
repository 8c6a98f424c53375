//! Helpers for the config builders (`new(..)` and `with_*` setters): plain numbers are checked
//! into the range types the configs hold, and a value out of range is a programmer error.

use whet_core::spec::{NonNegative, Positive, Probability};

/// `v` as a [`Probability`].
///
/// # Panics
/// When `v` is not in `[0, 1]`, naming `what`.
#[track_caller]
pub(crate) fn probability(v: f64, what: &str) -> Probability {
    Probability::new(v).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Gives each listed op config (a struct with a `p: Probability` field) its `with_p` setter: one
/// definition instead of one copy per op.
macro_rules! with_p {
    ($($t:ty),+ $(,)?) => {$(
        impl $t {
            /// Sets the probability of applying the op.
            ///
            /// # Panics
            /// When `p` is not in `[0, 1]`.
            #[track_caller]
            pub fn with_p(mut self, p: f64) -> Self {
                self.p = $crate::builder::probability(p, "p");
                self
            }
        }
    )+};
}
pub(crate) use with_p;

/// `v` as a [`NonNegative`].
///
/// # Panics
/// When `v` is negative or not finite, naming `what`.
#[track_caller]
pub(crate) fn non_negative(v: f64, what: &str) -> NonNegative {
    NonNegative::new(v).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `v` as a [`Positive`].
///
/// # Panics
/// When `v` is not a finite number above 0, naming `what`.
#[track_caller]
pub(crate) fn positive(v: f64, what: &str) -> Positive {
    Positive::new(v).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Asserts that `built` serialises to the same JSON as `json` parsed into `T`: a config built in
/// Rust equals the one serde gives for that YAML/JSON, so the builders' defaults cannot drift
/// from the serde defaults.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_same_as_json<T>(built: &T, json: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let parsed: T = serde_json::from_str(json).expect("valid config JSON");
    assert_eq!(
        serde_json::to_value(built).expect("serialises"),
        serde_json::to_value(&parsed).expect("serialises"),
        "built config differs from {json}"
    );
}
