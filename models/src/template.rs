//! The deterministic template summary.

use serde::Serialize;

use crate::{Error, Result};

/// The facts a summary may state. Nothing else appears in the text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentFacts {
    pub watch: String,
    pub severity: String,
    /// `namespace/name` of the affected workload, when known.
    pub target: Option<String>,
    pub observed: Option<f64>,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Robust z-score or similar strength of the anomaly, when the detector gives one.
    pub strength: Option<f64>,
    pub detector: Option<String>,
    /// RFC 3339 time the incident opened.
    pub opened_at: String,
    /// Actions taken so far, already in words.
    pub actions: Vec<String>,
}

/// Format a metric value compactly and without noise digits.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" { "0".into() } else { s.to_string() }
    }
}

/// One short paragraph built only from `facts`.
pub fn template_summary(facts: &IncidentFacts) -> Result<String> {
    if facts.watch.trim().is_empty() {
        return Err(Error::InvalidFacts("watch name is empty".into()));
    }
    let mut s = format!("Watch {} reported a {} anomaly", facts.watch, facts.severity);
    if let Some(t) = &facts.target {
        s.push_str(&format!(" on {t}"));
    }
    s.push_str(&format!(" since {}.", facts.opened_at));
    match (facts.observed, facts.expected) {
        (Some(o), Some(e)) => {
            s.push_str(&format!(" Observed {}, expected {}", format_value(o), format_value(e)));
            if let (Some(l), Some(u)) = (facts.lower, facts.upper) {
                s.push_str(&format!(" (normal band {} to {})", format_value(l), format_value(u)));
            }
            s.push('.');
        }
        (Some(o), None) => s.push_str(&format!(" Observed {}.", format_value(o))),
        _ => {}
    }
    if let (Some(z), Some(d)) = (facts.strength, &facts.detector) {
        s.push_str(&format!(" Detector {d} scored a deviation of {z:.1} robust standard deviations."));
    }
    if facts.actions.is_empty() {
        s.push_str(" No action was taken.");
    } else {
        s.push_str(&format!(" Actions: {}.", facts.actions.join("; ")));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> IncidentFacts {
        IncidentFacts {
            watch: "checkout-latency".into(),
            severity: "warning".into(),
            target: Some("shop/checkout".into()),
            observed: Some(0.5),
            expected: Some(0.1002),
            lower: Some(0.08),
            upper: Some(0.12),
            strength: Some(12.34),
            detector: Some("robust_baseline".into()),
            opened_at: "2026-11-22T10:00:00Z".into(),
            actions: vec!["scaled shop/checkout from 2 to 3 replicas".into()],
        }
    }

    #[test]
    fn states_the_facts() {
        let s = template_summary(&facts()).expect("summary");
        assert_eq!(
            s,
            "Watch checkout-latency reported a warning anomaly on shop/checkout since 2026-11-22T10:00:00Z. \
             Observed 0.5, expected 0.1002 (normal band 0.08 to 0.12). Detector robust_baseline scored a \
             deviation of 12.3 robust standard deviations. Actions: scaled shop/checkout from 2 to 3 replicas."
        );
    }

    #[test]
    fn says_when_nothing_was_done_and_omits_unknowns() {
        let f = IncidentFacts { target: None, expected: None, strength: None, actions: vec![], ..facts() };
        let s = template_summary(&f).expect("summary");
        assert!(s.contains("Observed 0.5."), "{s}");
        assert!(s.ends_with("No action was taken."), "{s}");
        assert!(!s.contains(" on "), "{s}");
    }

    #[test]
    fn rejects_empty_watch() {
        let f = IncidentFacts { watch: " ".into(), ..facts() };
        assert!(template_summary(&f).is_err());
    }

    #[test]
    fn formats_values() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(-0.25), "-0.25");
        assert_eq!(format_value(1234567.0), "1.235e6");
        assert_eq!(format_value(0.00001), "1.000e-5");
        assert_eq!(format_value(f64::NAN), "NaN");
    }
}
