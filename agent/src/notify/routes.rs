//! Which channels hear about an incident, and in which groups: `notify.routes`, a tree
//! matched Alertmanager's way.
//!
//! Each route has matchers (the silence syntax, [`crate::incident::silence::Matcher`], over
//! the same labels: the incident's own, `watch`, `severity`, `source`, `namespace`,
//! `deployment`; no matchers match every incident), receivers (configured channel names;
//! absent: the parent's) and child `routes`. Matching starts at an implicit root whose
//! receivers are every configured channel: a route that matches hands the incident to the
//! first of its children that matches (and to the next ones while they say `continue`);
//! when none of them matches, the route itself decides. So an incident no top-level route
//! matches goes to every configured channel, as without routes, and a route with
//! `receivers: []` drops what it matches. A channel named by several matching routes gets
//! each message once (the first route's grouping applies). Messages about no single
//! incident (digests, dead-letter notices) go to every channel.
//!
//! **Grouping.** A route with `group_by`, `group_wait` or `group_interval` (or under one)
//! batches the incidents it matches per group (the route and the values of the `group_by`
//! labels): the outbox holds a group's messages until `group_wait` after the first, and
//! afterwards sends at most one message per `group_interval`
//! ([`outbox`](super::outbox)). Only the channels people read as a feed are grouped
//! ([`GROUPED`]) and only the events that report ([`GROUPED_EVENTS`]); actions and approval
//! requests are never held, and one waiting behind a held message of its incident sends
//! the group at once.

use std::sync::Arc;
use std::time::Duration;

use crate::config::RouteConfig;
use crate::incident::silence::{incident_labels, Matcher};
use crate::store::{Incident, NewNotification, NotifyGroup};

/// Channels whose messages a route's grouping batches: people read them as a feed, and a
/// group message with one line per incident says the same. Slack app mode keeps one message
/// per incident, PagerDuty and Opsgenie one alert per incident (they group on their side),
/// and the file and the signed webhook are for machines: they get every message at once.
pub const GROUPED: &[&str] = &["slack", "email", "teams"];

/// The events a group may hold back: what an incident is and how it ended. What Warden
/// does about it (actions, approval requests, run notices) is never held: people should
/// know at once, and a run may be waiting for an answer.
pub const GROUPED_EVENTS: &[&str] = &["opened", "analysis", "acknowledged", "resolved"];

/// Alertmanager's defaults.
const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq)]
enum GroupBy {
    /// These labels' values (none: one group for the route).
    Labels(Vec<String>),
    /// Every label (`['...']`): one group per distinct label set.
    Every,
}

#[derive(Debug, Clone, PartialEq)]
struct GroupSpec {
    by: GroupBy,
    wait: Duration,
    interval: Duration,
}

#[derive(Debug, Clone)]
struct Route {
    /// `notify.routes[0].routes[1]`; the root is `notify`.
    path: String,
    matchers: Vec<Matcher>,
    /// Its own or inherited.
    receivers: Vec<&'static str>,
    continue_matching: bool,
    /// Its own or inherited; `None`: messages go at once.
    grouping: Option<GroupSpec>,
    children: Vec<Route>,
}

impl Route {
    fn build(path: String, c: &RouteConfig, all: &[&'static str], parent: &Route) -> Option<Route> {
        // A matcher that does not parse was refused when the configuration was checked;
        // should one reach here, the route is left out: it matches nothing.
        let matchers = c.matchers.iter().map(|m| Matcher::parse(m)).collect::<Result<_, _>>().ok()?;
        let receivers = match &c.receivers {
            Some(names) => names.iter().filter_map(|n| all.iter().find(|a| **a == n).copied()).collect(),
            None => parent.receivers.clone(),
        };
        let own = c.group_by.is_some() || c.group_wait.is_some() || c.group_interval.is_some();
        let grouping = match (&parent.grouping, own) {
            (None, false) => None,
            (inherited, _) => Some(GroupSpec {
                by: match (&c.group_by, inherited) {
                    (Some(by), _) if by.iter().any(|l| l == "...") => GroupBy::Every,
                    (Some(by), _) => GroupBy::Labels(by.clone()),
                    (None, Some(g)) => g.by.clone(),
                    (None, None) => GroupBy::Labels(Vec::new()),
                },
                wait: c
                    .group_wait
                    .map(|d| d.get())
                    .or(inherited.as_ref().map(|g| g.wait))
                    .unwrap_or(DEFAULT_GROUP_WAIT),
                interval: c
                    .group_interval
                    .map(|d| d.get())
                    .or(inherited.as_ref().map(|g| g.interval))
                    .unwrap_or(DEFAULT_GROUP_INTERVAL),
            }),
        };
        let mut route =
            Route { path, matchers, receivers, continue_matching: c.continue_matching, grouping, children: Vec::new() };
        route.children = c
            .routes
            .iter()
            .enumerate()
            .filter_map(|(k, child)| Route::build(format!("{}.routes[{k}]", route.path), child, all, &route))
            .collect();
        Some(route)
    }

    /// Alertmanager's `Route.Match`: the routes that decide for `labels` under this one.
    fn matching<'a>(&'a self, labels: &std::collections::BTreeMap<String, String>, out: &mut Vec<&'a Route>) -> bool {
        if !self.matchers.iter().all(|m| m.matches(labels)) {
            return false;
        }
        let before = out.len();
        for child in &self.children {
            if child.matching(labels, out) && !child.continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(self);
        }
        true
    }
}

/// The configured channels and the routes over them; cheap to clone.
#[derive(Debug, Clone)]
pub struct Routes {
    all: Arc<Vec<&'static str>>,
    root: Arc<Route>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::to_all(Vec::new())
    }
}

impl Routes {
    /// Every incident to every channel in `all`, at once.
    pub fn to_all(all: Vec<&'static str>) -> Self {
        Self::new(all, &[])
    }

    /// `all` with the routes of `notify.routes`. Matchers that do not parse and receivers
    /// that are not in `all` were refused when the configuration was checked; should one
    /// reach here, the matcher matches nothing and the receiver is skipped.
    pub fn new(all: Vec<&'static str>, config: &[RouteConfig]) -> Self {
        let mut root = Route {
            path: "notify".into(),
            matchers: Vec::new(),
            receivers: all.clone(),
            continue_matching: false,
            grouping: None,
            children: Vec::new(),
        };
        root.children = config
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Route::build(format!("notify.routes[{i}]"), c, &all, &root))
            .collect();
        Self { all: Arc::new(all), root: Arc::new(root) }
    }

    /// Every configured channel.
    pub fn all(&self) -> &[&'static str] {
        &self.all
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn deciding(&self, incident: &Incident) -> Vec<&Route> {
        let mut out = Vec::new();
        self.root.matching(&incident_labels(incident), &mut out);
        out
    }

    /// The channels that get `incident`'s messages, in the order of [`Self::all`].
    pub fn for_incident(&self, incident: &Incident) -> Vec<&'static str> {
        let routes = self.deciding(incident);
        self.all.iter().copied().filter(|c| routes.iter().any(|r| r.receivers.contains(c))).collect()
    }

    /// The group `incident`'s messages on `channel` belong to, if its route groups and the
    /// channel is one that is grouped.
    pub fn group_for(&self, incident: &Incident, channel: &str) -> Option<NotifyGroup> {
        if !GROUPED.contains(&channel) {
            return None;
        }
        let route = self.deciding(incident).into_iter().find(|r| r.receivers.contains(&channel))?;
        let spec = route.grouping.as_ref()?;
        let labels = incident_labels(incident);
        let values: Vec<String> = match &spec.by {
            GroupBy::Every => labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect(),
            GroupBy::Labels(names) => {
                let mut names = names.clone();
                names.sort();
                names.dedup();
                names.iter().map(|k| format!("{k}={:?}", labels.get(k).map(String::as_str).unwrap_or(""))).collect()
            }
        };
        Some(NotifyGroup {
            key: format!("{}{{{}}}", route.path, values.join(",")),
            wait: spec.wait,
            interval: spec.interval,
        })
    }

    /// `notes` (rendered for `incident`) with the group of each that a route groups.
    pub fn grouped(&self, incident: &Incident, mut notes: Vec<NewNotification>) -> Vec<NewNotification> {
        for n in &mut notes {
            if GROUPED_EVENTS.contains(&n.event.as_str()) {
                n.group = self.group_for(incident, &n.channel);
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn incident(namespace: &str, severity: &str) -> Incident {
        Incident {
            id: 1,
            fingerprint: "fp".into(),
            watch: "w".into(),
            source: "watch".into(),
            status: "open".into(),
            severity: severity.into(),
            title: "t".into(),
            labels: BTreeMap::from([("namespace".into(), namespace.into())]),
            target: None,
            observed: None,
            expected: None,
            lower: None,
            upper: None,
            score: None,
            detector: None,
            opened_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            resolved_at: None,
            quiet_evaluations: 0,
        }
    }

    fn route(matchers: &[&str], receivers: &[&str], continue_matching: bool) -> RouteConfig {
        RouteConfig {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            receivers: Some(receivers.iter().map(|r| r.to_string()).collect()),
            continue_matching,
            ..RouteConfig::default()
        }
    }

    #[test]
    fn the_first_matching_route_decides_unless_it_continues() {
        let all = vec!["slack", "email", "pagerduty"];
        let routes = Routes::new(
            all.clone(),
            &[
                route(&["namespace=payments", "severity=critical"], &["pagerduty"], true),
                route(&["namespace=payments"], &["slack"], false),
                route(&["namespace=~dev-.*"], &[], false),
                route(&["namespace=payments"], &["email"], false),
            ],
        );
        assert_eq!(routes.for_incident(&incident("payments", "critical")), ["slack", "pagerduty"]);
        assert_eq!(routes.for_incident(&incident("payments", "warning")), ["slack"], "stops at the first match");
        assert!(routes.for_incident(&incident("dev-42", "critical")).is_empty(), "an empty route drops");
        assert_eq!(routes.for_incident(&incident("shop", "warning")), all, "no route matched: every channel");
        assert_eq!(Routes::to_all(all.clone()).for_incident(&incident("dev-1", "info")), all);
    }

    #[test]
    fn a_catch_all_route_and_unknown_receivers() {
        let routes = Routes::new(vec!["slack", "email"], &[route(&[], &["email", "teams"], false)]);
        assert_eq!(routes.for_incident(&incident("shop", "warning")), ["email"]);
    }

    #[test]
    fn nested_routes_decide_below_their_parent_and_inherit_receivers() {
        let all = vec!["slack", "email", "pagerduty"];
        let mut payments = route(&["namespace=payments"], &["email"], false);
        payments.routes = vec![
            route(&["severity=critical"], &["pagerduty"], true),
            // No receivers of its own: the parent's (email).
            RouteConfig { matchers: vec!["severity=~critical|warning".into()], ..RouteConfig::default() },
        ];
        let mut shop = RouteConfig { matchers: vec!["namespace=shop".into()], ..RouteConfig::default() };
        shop.routes = vec![route(&["severity=info"], &[], false)];
        let routes = Routes::new(all.clone(), &[payments, shop, route(&[], &["slack"], false)]);
        let got = |ns: &str, sev: &str| routes.for_incident(&incident(ns, sev));
        assert_eq!(got("payments", "critical"), ["email", "pagerduty"], "the child continued to its sibling");
        assert_eq!(got("payments", "warning"), ["email"], "the inheriting child");
        assert_eq!(got("payments", "info"), ["email"], "no child matched: the parent decides");
        assert_eq!(got("shop", "warning"), all, "a top-level route without receivers: every channel");
        assert!(got("shop", "info").is_empty(), "its child drops");
        assert_eq!(got("cart", "info"), ["slack"], "the catch-all");
    }

    #[test]
    fn nested_routes_and_windows_are_read_and_checked_with_their_paths() {
        let path = std::path::Path::new("w.yaml");
        let good = "notify:\n  file: { path: /tmp/n.jsonl }\n  slack: { webhook_url: { env: X } }\n  routes:\n    - match: ['namespace=payments']\n      group_by: [namespace, team]\n      group_wait: 10s\n      routes:\n        - match: ['severity=critical']\n          receivers: [slack]\n          group_interval: 1m\n";
        let cfg = crate::config::parse_str(good, path).expect("config");
        let r = &cfg.notify.routes[0];
        assert!(r.receivers.is_none(), "receivers may be left to the parent");
        assert_eq!(r.routes[0].group_interval.map(|d| d.get()), Some(Duration::from_secs(60)));

        let bad = "notify:\n  file: { path: /tmp/n.jsonl }\n  routes:\n    - group_by: ['...', team]\n      group_wait: 2h\n      routes:\n        - match: ['team']\n          receivers: [pager]\n          group_by: ['1team']\n          group_interval: 0s\n";
        let errors = crate::config::parse_str(bad, path).expect_err("invalid").0;
        let got: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "notify.routes[0].group_by[0]",
                "notify.routes[0].group_wait",
                "notify.routes[0].routes[0].match[0]",
                "notify.routes[0].routes[0].receivers[0]",
                "notify.routes[0].routes[0].group_by[0]",
                "notify.routes[0].routes[0].group_interval",
            ],
            "{errors:?}"
        );
        assert!(errors[0].message.contains("must be the only entry"), "{errors:?}");
        assert!(errors[4].message.contains("not a label name"), "{errors:?}");
        let unknown = crate::config::parse_str(
            "notify:\n  routes:\n    - routes:\n        - receivers: []\n          group_window: 1m\n",
            path,
        )
        .expect_err("unknown key")
        .0;
        assert_eq!(unknown[0].path, "notify.routes[0].routes[0].group_window", "{unknown:?}");
    }

    #[test]
    fn groups_are_per_route_and_label_values_and_inherited() {
        let all = vec!["slack", "email", "pagerduty"];
        let mut team = route(&["team=~.+"], &["slack", "pagerduty"], false);
        team.group_by = Some(vec!["team".into(), "namespace".into()]);
        team.group_wait = Some(crate::config::HumanDuration(Duration::from_secs(10)));
        let mut child = route(&["severity=critical"], &["slack", "email"], false);
        child.group_interval = Some(crate::config::HumanDuration(Duration::from_secs(60)));
        team.routes = vec![child];
        let mut every = route(&["namespace=shop"], &["slack"], false);
        every.group_by = Some(vec!["...".into()]);
        let routes = Routes::new(all, &[team, every, route(&[], &["slack"], false)]);
        let with = |ns: &str, sev: &str, team: Option<&str>| {
            let mut i = incident(ns, sev);
            if let Some(t) = team {
                i.labels.insert("team".into(), t.into());
            }
            i
        };
        let g = routes.group_for(&with("payments", "warning", Some("pay")), "slack").expect("grouped");
        assert_eq!(g.key, r#"notify.routes[0]{namespace="payments",team="pay"}"#);
        assert_eq!((g.wait, g.interval), (Duration::from_secs(10), DEFAULT_GROUP_INTERVAL));
        let c = routes.group_for(&with("payments", "critical", Some("pay")), "email").expect("child groups");
        assert_eq!(c.key, r#"notify.routes[0].routes[0]{namespace="payments",team="pay"}"#);
        assert_eq!((c.wait, c.interval), (Duration::from_secs(10), Duration::from_secs(60)), "inherited wait");
        assert!(routes.group_for(&with("payments", "warning", Some("pay")), "pagerduty").is_none(), "alerting");
        assert!(routes.group_for(&with("cart", "warning", None), "slack").is_none(), "the catch-all sends at once");
        let e = routes.group_for(&with("shop", "warning", None), "slack").expect("every label");
        assert_eq!(e.key, r#"notify.routes[1]{namespace="shop",severity="warning",source="watch",watch="w"}"#);

        // Only the reporting events are grouped; an action (or approval request) goes at once.
        let note = |event: &str| NewNotification {
            channel: "slack".into(),
            event: event.into(),
            payload: serde_json::json!({}),
            group: None,
        };
        let notes = routes.grouped(&with("shop", "warning", None), vec![note("opened"), note("action")]);
        assert!(notes[0].group.is_some() && notes[1].group.is_none(), "{notes:?}");
    }
}
