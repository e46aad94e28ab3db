//! Helpers the detectors' unit tests share, so that every detector's tests build, feed and
//! check it the same way (and a change to the `Detector` contract is made here once).

use std::fmt::Debug;

use crate::detector::{Detection, Detector};
use crate::harness::{self, XorShift64};
use crate::{Error, Result};

/// A detector from parameters the test knows to be valid; panics with the error otherwise.
pub(crate) fn build<P, D>(new: impl FnOnce(P) -> Result<D>, p: P) -> D {
    match new(p) {
        Ok(d) => d,
        Err(e) => panic!("valid params rejected: {e}"),
    }
}

/// Feed `values` one by one at the harness' timestamps; the detection of every point.
pub(crate) fn feed<D: Detector + ?Sized>(d: &mut D, values: &[f64]) -> Vec<Detection> {
    values.iter().enumerate().map(|(i, &v)| d.update(harness::timestamp_at(i), v)).collect()
}

/// The parameter name and message of a validation that must fail with `InvalidParam`.
pub(crate) fn invalid_param<P: Debug>(p: &P, validated: Result<()>) -> (&'static str, String) {
    match validated {
        Err(Error::InvalidParam { name, message }) => (name, message),
        Err(other) => panic!("unexpected error {other}"),
        Ok(()) => panic!("accepted invalid params {p:?}"),
    }
}

/// A factory for the compliance harness: a fresh detector from a copy of `p` on every call.
pub(crate) fn make_for<P: Clone, D: Detector + 'static>(
    new: fn(P) -> Result<D>,
    p: P,
) -> impl Fn() -> Box<dyn Detector> {
    move || -> Box<dyn Detector> { Box::new(build(new, p.clone())) }
}

/// A standard normal draw (Box-Muller).
pub(crate) fn gaussian(rng: &mut XorShift64) -> f64 {
    let u1 = rng.next_f64().max(1e-300);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
