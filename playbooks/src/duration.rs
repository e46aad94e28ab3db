//! Durations written as `30s`, `5m`, `1h30m`, `500ms`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ValueKind};

/// A duration parsed from its human form; serialises back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

/// The longest duration any setting accepts. Every duration is bounded so that adding one to
/// a timestamp, or multiplying one by a count Warden bounds as well, can never overflow: a
/// file `check-config` accepts must start and run without a panic.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

impl std::str::FromStr for HumanDuration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        // The text is quoted shortened: it may be a whole line of digits.
        let shown: String = s.trim().chars().take(40).collect();
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            Error::value(
                ValueKind::Duration,
                format!("invalid duration `{shown}`: {e} (examples: 500ms, 30s, 5m, 1h30m)"),
            )
        })?;
        if d > MAX_DURATION {
            return Err(Error::value(
                ValueKind::Duration,
                format!("duration `{shown}` is longer than the maximum of 366d"),
            ));
        }
        Ok(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "invalid duration `{n}`: a unit is required (examples: 500ms, 30s, 5m, 1h30m)"
            ))),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        for (s, secs) in [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5)] {
            let d: HumanDuration = s.parse().expect(s);
            assert_eq!(d.0.as_secs_f64(), secs, "{s}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        for s in ["10000000000000000000s", "1000000000d", "367d", "99999999999999999999999d", "18446744073709551615s"] {
            let e = s.parse::<HumanDuration>().expect_err(s).to_string();
            assert!(e.contains("366d") || e.contains("invalid duration"), "{s}: {e}");
        }
        assert_eq!("366d".parse::<HumanDuration>().ok().map(HumanDuration::get), Some(MAX_DURATION));
        assert!("1y".parse::<HumanDuration>().is_ok());
        let e = serde_yaml::from_str::<HumanDuration>("1000000000d").unwrap_err().to_string();
        assert!(e.contains("366d"), "{e}");
    }

    #[test]
    fn rejects_bare_numbers_and_garbage() {
        let e = "5 parsecs".parse::<HumanDuration>().unwrap_err();
        assert!(
            matches!(e, Error::Value { kind: ValueKind::Duration, .. }) && e.to_string().contains("5 parsecs"),
            "{e}"
        );
        let e = serde_yaml::from_str::<HumanDuration>("30").unwrap_err().to_string();
        assert!(e.contains("unit is required"), "{e}");
    }
}
