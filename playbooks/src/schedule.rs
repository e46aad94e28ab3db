//! Cron triggers: when a scheduled playbook is due.
//!
//! Schedules use the `cron` crate's syntax, which starts with seconds (`sec min hour
//! day-of-month month day-of-week [year]`, e.g. `0 0 3 * * *` for 03:00 every day), and are
//! evaluated in an IANA time zone (`Europe/Berlin`; UTC when none is given). The crate
//! iterates in the zone's local time, so "03:00" stays 03:00 local across daylight-saving
//! changes. Two cases need a rule:
//!
//! * a local time that does not exist (clocks jump from 02:00 to 03:00) does not fire that
//!   day — schedule daily work outside 02:00–03:00 where the zone has such a jump;
//! * a local time that exists twice (clocks go back from 03:00 to 02:00) fires once, at its
//!   first occurrence: a playbook acts on a cluster, and running it twice because of a
//!   clock change is worse than one gap for sub-hourly schedules during that hour.
//!
//! Warden may be down when a fire time passes. [`CronSchedule::due`] therefore answers with
//! the latest fire time in `(last, now]`: missed fires collapse into one run, never a burst of
//! catch-up runs (cooldowns and rate caps would refuse most of them anyway).

use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::{Error, ValueKind};

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    tz: Tz,
}

/// Parse an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, Error> {
    Tz::from_str(name.trim()).map_err(|_| {
        Error::value(
            ValueKind::TimeZone,
            format!(
                "unknown time zone `{name}`: use an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`"
            ),
        )
    })
}

/// Upper bound on fire times stepped through in one call (a safety net only; see `due`).
const MAX_STEPS: usize = 100_000;

impl CronSchedule {
    /// Parse `schedule` (6 or 7 fields, seconds first; or `@daily`, `@hourly`, ...) in
    /// `timezone` (UTC when `None`).
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Self, Error> {
        let bad = |message: String| Error::value(ValueKind::Schedule, message);
        let tz = match timezone {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        let text = schedule.trim();
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && fields == 5 {
            return Err(bad(format!(
                "`{schedule}` has 5 fields; Warden's cron syntax starts with seconds (6 or 7 fields): did you mean `0 {text}`?"
            )));
        }
        if !text.starts_with('@') && !(6..=7).contains(&fields) {
            return Err(bad(format!(
                "`{schedule}` has {fields} fields; expected 6 or 7: `sec min hour day-of-month month day-of-week [year]`, e.g. `0 0 3 * * *`"
            )));
        }
        let parsed =
            cron::Schedule::from_str(text).map_err(|e| bad(format!("invalid cron schedule `{schedule}`: {e}")))?;
        let out = Self { schedule: parsed, tz };
        if out.next_after(Utc::now()).is_none() {
            return Err(bad(format!("cron schedule `{schedule}` never fires from now on")));
        }
        Ok(out)
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    pub fn source(&self) -> &str {
        self.schedule.source()
    }

    /// Whether `t` is the second occurrence of a local time that exists twice.
    fn is_repeat(&self, t: &DateTime<Tz>) -> bool {
        match self.tz.from_local_datetime(&t.naive_local()) {
            LocalResult::Ambiguous(first, _) => first != *t,
            _ => false,
        }
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.schedule
            .after(&local)
            .take(MAX_STEPS)
            .filter(|t| !self.is_repeat(t))
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t > after)
    }

    /// The latest fire time in `(last, now]`, if any: what a scheduler that last ran the
    /// playbook for `last` should run now. Several missed fire times give one answer.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if now <= last {
            return None;
        }
        // The first fire after `last`; none up to `now` means nothing is due.
        let first = self.next_after(last).filter(|t| *t <= now)?;
        // Jump close to `now` by searching backwards in local time, then walk forwards: the
        // backward search alone can miss fire times when `now` is inside a repeated hour
        // (their local time is later than now's), and the forward walk catches those.
        let near = self.latest_local_before(now).filter(|t| *t > first).unwrap_or(first);
        let mut latest = near;
        for _ in 0..MAX_STEPS {
            match self.next_after(latest) {
                Some(t) if t <= now => latest = t,
                _ => break,
            }
        }
        Some(latest)
    }

    /// A fire time at or before `now` found by iterating backwards in local time.
    fn latest_local_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // `prev_from` is exclusive of whole seconds; a nanosecond later includes `now`.
        let from = now.checked_add_signed(chrono::Duration::nanoseconds(1))?.with_timezone(&self.tz);
        self.schedule
            .after(&from)
            .rev()
            .take(MAX_STEPS)
            .filter(|t| !self.is_repeat(t))
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn s(spec: &str, tz: Option<&str>) -> CronSchedule {
        CronSchedule::parse(spec, tz).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn parse_errors_explain_the_syntax() {
        let e = CronSchedule::parse("0 3 * * *", None).unwrap_err();
        assert!(matches!(e, Error::Value { kind: ValueKind::Schedule, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("did you mean `0 0 3 * * *`"), "{e}");
        let e = CronSchedule::parse("0 0 3 * * * * *", None).unwrap_err().to_string();
        assert!(e.contains("expected 6 or 7"), "{e}");
        let e = CronSchedule::parse("0 0 25 * * *", None).unwrap_err().to_string();
        assert!(e.contains("invalid cron schedule"), "{e}");
        let e = CronSchedule::parse("0 0 3 * * *", Some("Europe/Berlinn")).unwrap_err().to_string();
        assert!(e.contains("Europe/Berlin`"), "{e}");
        let e = CronSchedule::parse("0 0 0 1 1 * 2001", None).unwrap_err().to_string();
        assert!(e.contains("never fires"), "{e}");
        assert!(CronSchedule::parse("@daily", Some("UTC")).is_ok());
    }

    #[test]
    fn next_after_is_strictly_after_and_uses_the_zone() {
        let daily = s("0 0 3 * * *", None);
        assert_eq!(daily.next_after(utc("2024-05-01T02:59:59Z")), Some(utc("2024-05-01T03:00:00Z")));
        assert_eq!(daily.next_after(utc("2024-05-01T03:00:00Z")), Some(utc("2024-05-02T03:00:00Z")));
        // 03:00 in Berlin in summer (CEST, UTC+2) is 01:00 UTC.
        let berlin = s("0 0 3 * * *", Some("Europe/Berlin"));
        assert_eq!(berlin.next_after(utc("2024-05-01T00:00:00Z")), Some(utc("2024-05-01T01:00:00Z")));
        // In winter (CET, UTC+1) it is 02:00 UTC.
        assert_eq!(berlin.next_after(utc("2024-01-10T00:00:00Z")), Some(utc("2024-01-10T02:00:00Z")));
    }

    #[test]
    fn berlin_spring_forward_keeps_local_time_and_skips_the_missing_hour() {
        // 2024-03-31: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let at_four = s("0 0 4 * * *", Some("Europe/Berlin"));
        assert_eq!(at_four.next_after(utc("2024-03-30T12:00:00Z")), Some(utc("2024-03-31T02:00:00Z")));
        assert_eq!(at_four.next_after(utc("2024-03-29T12:00:00Z")), Some(utc("2024-03-30T03:00:00Z")));
        // 02:30 does not exist on that day: the next fire is the day after.
        let at_half_two = s("0 30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(at_half_two.next_after(utc("2024-03-30T12:00:00Z")), Some(utc("2024-04-01T00:30:00Z")));
    }

    #[test]
    fn berlin_fall_back_fires_a_repeated_time_once() {
        // 2024-10-27: 03:00 CEST goes back to 02:00 CET (01:00 UTC); 02:30 happens at 00:30
        // and at 01:30 UTC.
        let at_half_two = s("0 30 2 * * *", Some("Europe/Berlin"));
        let first = at_half_two.next_after(utc("2024-10-26T12:00:00Z"));
        assert_eq!(first, Some(utc("2024-10-27T00:30:00Z")));
        assert_eq!(at_half_two.next_after(utc("2024-10-27T00:30:00Z")), Some(utc("2024-10-28T01:30:00Z")));
        // Asked from inside the repeated hour, the second 02:30 is not a fire time either.
        assert_eq!(at_half_two.next_after(utc("2024-10-27T01:15:00Z")), Some(utc("2024-10-28T01:30:00Z")));
        // Every 20 minutes: the repeated hour is not run twice.
        let every = s("0 */20 * * * *", Some("Europe/Berlin"));
        let mut t = utc("2024-10-26T23:50:00Z");
        let mut fires = Vec::new();
        while let Some(n) = every.next_after(t).filter(|n| *n <= utc("2024-10-27T02:10:00Z")) {
            fires.push(n.format("%H:%M").to_string());
            t = n;
        }
        assert_eq!(fires, ["00:00", "00:20", "00:40", "02:00"]);
    }

    #[test]
    fn due_collapses_missed_fires_into_the_latest() {
        let hourly = s("0 0 * * * *", None);
        assert_eq!(hourly.due(utc("2024-05-01T10:00:00Z"), utc("2024-05-01T10:59:59Z")), None);
        assert_eq!(
            hourly.due(utc("2024-05-01T10:00:00Z"), utc("2024-05-01T11:00:00Z")),
            Some(utc("2024-05-01T11:00:00Z"))
        );
        // Down for three days: one run, for the latest fire time.
        assert_eq!(
            hourly.due(utc("2024-05-01T10:00:00Z"), utc("2024-05-04T13:30:00Z")),
            Some(utc("2024-05-04T13:00:00Z"))
        );
        assert_eq!(hourly.due(utc("2024-05-01T10:00:00Z"), utc("2024-05-01T09:00:00Z")), None);
        let yearly = s("0 0 0 1 1 *", None);
        assert_eq!(
            yearly.due(utc("2020-01-01T00:00:00Z"), utc("2024-06-01T00:00:00Z")),
            Some(utc("2024-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn due_inside_a_repeated_hour() {
        // Last ran at 00:00 UTC (02:00 CEST); now is 01:15 UTC (02:15 CET, second pass).
        // 02:30 CEST (00:30 UTC) was missed and is due, although its local time is after now's.
        let at_half_two = s("0 30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(
            at_half_two.due(utc("2024-10-27T00:00:00Z"), utc("2024-10-27T01:15:00Z")),
            Some(utc("2024-10-27T00:30:00Z"))
        );
        assert_eq!(at_half_two.due(utc("2024-10-27T00:30:00Z"), utc("2024-10-27T01:45:00Z")), None);
        let every = s("0 */20 * * * *", Some("Europe/Berlin"));
        assert_eq!(
            every.due(utc("2024-10-27T00:00:00Z"), utc("2024-10-27T01:30:00Z")),
            Some(utc("2024-10-27T00:40:00Z"))
        );
        assert_eq!(
            every.due(utc("2024-10-27T00:00:00Z"), utc("2024-10-27T02:05:00Z")),
            Some(utc("2024-10-27T02:00:00Z"))
        );
    }
}
