//! Silences: label matchers over incidents for a time window, made by a person (CLI, API).
//!
//! A silenced incident is still opened, updated, analysed and resolved, and its history
//! says it was silenced; what a silence stops is what reaches people and the cluster: the
//! outbox marks the incident's messages `silenced` instead of sending them, and no playbook
//! starts for it. Matchers are Alertmanager's: `name=value`, `name!=value`, `name=~regex`,
//! `name!~regex` (regexes anchored at both ends; a label the incident does not have matches
//! as the empty string). The labels matched are the incident's own plus `watch`, `severity`,
//! `source` and, when the incident has a target, `namespace` and `deployment` (an incident
//! label of the same name wins).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Serialize;

use crate::store::{Incident, Store};

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    NotEq,
    Re,
    NotRe,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl Matcher {
    /// Parses `name=value`, `name!=value`, `name=~regex` or `name!~regex`; the value may be
    /// in double quotes (`team="a b"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let at = text.find(['=', '!']).ok_or_else(|| {
            format!("matcher `{text}`: expected `name=value`, `name!=value`, `name=~regex` or `name!~regex`")
        })?;
        let (name, rest) = text.split_at(at);
        let name = name.trim();
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEq, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            return Err(format!("matcher `{text}`: `!` must be followed by `=` or `~`"));
        };
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!("matcher `{text}`: `{name}` is not a label name (letters, digits, `_`)"));
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(inner) => inner
                .strip_suffix('"')
                .ok_or_else(|| format!("matcher `{text}`: the quoted value has no closing `\"`"))?
                .to_string(),
            None => value.to_string(),
        };
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("matcher `{text}`: the regex does not parse: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self { name: name.to_string(), op, value, regex })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let got = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => got == self.value,
            (MatchOp::NotEq, _) => got != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(got),
            (MatchOp::NotRe, Some(re)) => !re.is_match(got),
            // Regex matchers always have their regex (`parse`).
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }
}

/// Parses the matchers of a new silence: at least one, and at least one that does not
/// match the empty string (a silence of everything is refused, as in Alertmanager).
pub fn parse_matchers(texts: &[String]) -> Result<Vec<Matcher>, String> {
    if texts.is_empty() {
        return Err("a silence needs at least one matcher (`name=value`)".into());
    }
    let matchers = texts.iter().map(|t| Matcher::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let empty = BTreeMap::new();
    if matchers.iter().all(|m| m.matches(&empty)) {
        return Err("every matcher also matches incidents without the label: this would silence everything".into());
    }
    Ok(matchers)
}

/// The longest a silence may last: a forgotten silence hides real incidents.
pub const MAX_SILENCE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// What a person asks for (CLI, API), before it is checked.
#[derive(Debug, Clone, Default)]
pub struct SilenceRequest {
    pub matchers: Vec<String>,
    /// Default: now.
    pub starts_at: Option<DateTime<Utc>>,
    /// Exactly one of `ends_at` and `duration`.
    pub ends_at: Option<DateTime<Utc>>,
    pub duration: Option<std::time::Duration>,
    pub created_by: String,
    pub comment: String,
}

/// Checks a request (matchers, a window that ends in the future and lasts at most
/// [`MAX_SILENCE`], a comment) and gives the silence to store; the error says what to fix.
pub fn check_request(r: SilenceRequest, now: DateTime<Utc>) -> Result<crate::store::silences::NewSilence, String> {
    let matchers = parse_matchers(&r.matchers)?;
    if r.comment.trim().is_empty() {
        return Err("a silence needs a comment (why, and for whom)".into());
    }
    let starts_at = r.starts_at.unwrap_or(now);
    let ends_at = match (r.ends_at, r.duration) {
        (Some(end), None) => end,
        (None, Some(d)) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| starts_at.checked_add_signed(d))
            .ok_or_else(|| "the duration is too long".to_string())?,
        (Some(_), Some(_)) => return Err("give the end or the duration, not both".into()),
        (None, None) => return Err("a silence needs an end or a duration (for example 2h)".into()),
    };
    if ends_at <= starts_at {
        return Err(format!("the silence ends ({ends_at}) before it starts ({starts_at})"));
    }
    if ends_at <= now {
        return Err(format!("the silence ends in the past ({ends_at})"));
    }
    let longest = chrono::Duration::from_std(MAX_SILENCE).unwrap_or(chrono::Duration::days(90));
    if ends_at - starts_at > longest {
        return Err(format!("a silence lasts at most {} days", longest.num_days()));
    }
    Ok(crate::store::silences::NewSilence {
        matchers: matchers.iter().map(Matcher::to_string).collect(),
        starts_at,
        ends_at,
        created_by: r.created_by,
        comment: r.comment,
    })
}

/// A silence as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    /// The matchers as written (`watch="checkout-latency"`).
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// Set when a person ended it early.
    pub expired_at: Option<DateTime<Utc>>,
    pub expired_by: Option<String>,
}

impl Silence {
    /// `active`, `pending` (starts later) or `expired`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        let end = self.expired_at.map_or(self.ends_at, |e| e.min(self.ends_at));
        if now >= end {
            "expired"
        } else if now < self.starts_at {
            "pending"
        } else {
            "active"
        }
    }

    /// Whether it is active at `now` and every matcher matches `incident`. A stored
    /// matcher that no longer parses matches nothing (it was checked when made).
    pub fn silences(&self, incident: &Incident, now: DateTime<Utc>) -> bool {
        if self.state(now) != "active" {
            return false;
        }
        let labels = incident_labels(incident);
        self.matchers.iter().all(|m| Matcher::parse(m).is_ok_and(|m| m.matches(&labels)))
    }
}

/// The labels silences match: the incident's own and its identity.
pub fn incident_labels(i: &Incident) -> BTreeMap<String, String> {
    let mut labels = i.labels.clone();
    let mut add = |k: &str, v: &str| {
        labels.entry(k.to_string()).or_insert_with(|| v.to_string());
    };
    add("watch", &i.watch);
    add("severity", &i.severity);
    add("source", &i.source);
    if let Some(t) = &i.target {
        add("namespace", &t.namespace);
        add("deployment", &t.deployment);
    }
    labels
}

/// The silence that holds `incident` at `now`, if any, recorded once per silence in the
/// incident's history (a `silenced` event with the silence's matchers, author and end). A
/// store that cannot be read holds nothing back (logged): a playbook's own guards still
/// apply, and a message too many beats one lost.
pub fn check(store: &Store, incident: &Incident, now: DateTime<Utc>) -> Option<i64> {
    let silences = match store.list_silences(false, now) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(incident = incident.id, error = %e, "reading silences");
            return None;
        }
    };
    let silence = silenced_by(&silences, incident, now)?;
    let seen = store
        .incident_events(incident.id)
        .is_ok_and(|events| events.iter().any(|e| e.kind == "silenced" && e.detail["silence"] == silence.id));
    if !seen {
        let detail = serde_json::json!({
            "silence": silence.id, "matchers": silence.matchers, "by": silence.created_by,
            "comment": silence.comment, "ends_at": silence.ends_at,
        });
        if let Err(e) = store.add_event(incident.id, now, "silenced", &detail, &[]) {
            tracing::error!(incident = incident.id, error = %e, "recording a silence");
        }
    }
    Some(silence.id)
}

/// The first of `silences` that silences `incident` at `now`.
pub fn silenced_by<'a>(silences: &'a [Silence], incident: &Incident, now: DateTime<Utc>) -> Option<&'a Silence> {
    silences.iter().find(|s| s.silences(incident, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TargetRef;

    fn incident() -> Incident {
        Incident {
            id: 1,
            fingerprint: "fp".into(),
            watch: "checkout-latency".into(),
            source: "watch".into(),
            status: "open".into(),
            severity: "warning".into(),
            title: "t".into(),
            labels: BTreeMap::from([("team".into(), "payments".into())]),
            target: Some(TargetRef { namespace: "shop".into(), deployment: "checkout".into() }),
            observed: None,
            expected: None,
            lower: None,
            upper: None,
            score: None,
            detector: None,
            opened_at: t(0),
            updated_at: t(0),
            resolved_at: None,
            quiet_evaluations: 0,
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    fn silence(matchers: &[&str], from: i64, to: i64) -> Silence {
        Silence {
            id: 7,
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: t(from),
            ends_at: t(to),
            created_by: "user/a".into(),
            comment: "maintenance".into(),
            created_at: t(from),
            expired_at: None,
            expired_by: None,
        }
    }

    #[test]
    fn matchers_parse_in_alertmanager_syntax() {
        let m = Matcher::parse(r#"team="pay ments""#).expect("quoted");
        assert_eq!((m.name.as_str(), m.op, m.value.as_str()), ("team", MatchOp::Eq, "pay ments"));
        assert_eq!(Matcher::parse("watch!=a").expect("ne").op, MatchOp::NotEq);
        assert_eq!(Matcher::parse("watch=~check.*").expect("re").op, MatchOp::Re);
        assert_eq!(Matcher::parse("watch!~x|y").expect("nre").op, MatchOp::NotRe);
        for (bad, says) in [
            ("watch", "expected `name=value`"),
            ("=x", "is not a label name"),
            ("9a=x", "is not a label name"),
            ("a!x", "must be followed by"),
            ("a=~(", "does not parse"),
            ("a=\"x", "no closing"),
        ] {
            let e = Matcher::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_silence_matches_the_incidents_labels_and_identity_while_active() {
        let i = incident();
        assert!(silence(&["watch=checkout-latency"], 0, 60).silences(&i, t(10)));
        assert!(silence(&["namespace=shop", "team=~pay.*"], 0, 60).silences(&i, t(10)));
        assert!(!silence(&["namespace=shop", "team=search"], 0, 60).silences(&i, t(10)), "all must match");
        assert!(!silence(&["watch=check"], 0, 60).silences(&i, t(10)), "regexes and values match whole");
        assert!(silence(&["missing!=x"], 0, 60).silences(&i, t(10)), "an absent label is empty");
        assert!(!silence(&["watch=checkout-latency"], 20, 60).silences(&i, t(10)), "pending");
        assert!(!silence(&["watch=checkout-latency"], 0, 60).silences(&i, t(60)), "ended");
        let mut ended = silence(&["watch=checkout-latency"], 0, 60);
        ended.expired_at = Some(t(5));
        assert_eq!(ended.state(t(10)), "expired");
        assert!(!ended.silences(&i, t(10)));
    }

    #[test]
    fn requests_are_checked_with_a_reason() {
        let ok = SilenceRequest {
            matchers: vec!["watch = \"a b\"".into()],
            duration: Some(std::time::Duration::from_secs(3600)),
            created_by: "user/a".into(),
            comment: "deploy".into(),
            ..SilenceRequest::default()
        };
        let s = check_request(ok.clone(), t(0)).expect("valid");
        assert_eq!(
            (s.matchers.as_slice(), s.starts_at, s.ends_at),
            (&["watch=\"a b\"".to_string()][..], t(0), t(3600))
        );
        let cases = [
            (SilenceRequest { comment: " ".into(), ..ok.clone() }, "needs a comment"),
            (SilenceRequest { duration: None, ..ok.clone() }, "needs an end or a duration"),
            (SilenceRequest { ends_at: Some(t(10)), ..ok.clone() }, "not both"),
            (SilenceRequest { duration: None, ends_at: Some(t(-5)), ..ok.clone() }, "before it starts"),
            (
                SilenceRequest { duration: None, starts_at: Some(t(-20)), ends_at: Some(t(-5)), ..ok.clone() },
                "in the past",
            ),
            (SilenceRequest { duration: Some(std::time::Duration::from_secs(91 * 86400)), ..ok.clone() }, "at most 90"),
            (SilenceRequest { matchers: vec!["nope".into()], ..ok.clone() }, "expected `name=value`"),
        ];
        for (req, says) in cases {
            let e = check_request(req, t(0)).expect_err(says);
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn a_silence_of_everything_is_refused() {
        assert!(parse_matchers(&[]).is_err());
        let e = parse_matchers(&["team!=x".into(), "a=~.*".into()]).expect_err("matches everything");
        assert!(e.contains("silence everything"), "{e}");
        assert_eq!(parse_matchers(&["team=x".into()]).expect("ok").len(), 1);
    }
}
