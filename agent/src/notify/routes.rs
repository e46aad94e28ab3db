//! Which channels hear about an incident: `notify.routes`, in order, Alertmanager's way.
//!
//! Each route has matchers (the silence syntax, [`crate::incident::silence::Matcher`], over
//! the same labels: the incident's own, `watch`, `severity`, `source`, `namespace`,
//! `deployment`; no matchers match every incident) and the receivers (configured channel
//! names) that get the incident's messages. The first route that matches decides, unless it
//! says `continue: true`, in which case the next matching routes add their receivers too.
//! An incident no route matches goes to every configured channel, as without routes; a
//! route with `receivers: []` drops what it matches. Messages about no single incident
//! (digests, dead-letter notices) go to every channel.

use std::sync::Arc;

use crate::config::RouteConfig;
use crate::incident::silence::{incident_labels, Matcher};
use crate::store::Incident;

#[derive(Debug, Clone)]
struct Route {
    matchers: Vec<Matcher>,
    receivers: Vec<&'static str>,
    continue_matching: bool,
}

/// The configured channels and the routes over them; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    all: Arc<Vec<&'static str>>,
    routes: Arc<Vec<Route>>,
}

impl Routes {
    /// Every incident to every channel in `all`.
    pub fn to_all(all: Vec<&'static str>) -> Self {
        Self { all: Arc::new(all), routes: Arc::default() }
    }

    /// `all` with the routes of `notify.routes`. Matchers that do not parse and receivers
    /// that are not in `all` were refused when the configuration was checked; should one
    /// reach here, the matcher matches nothing and the receiver is skipped.
    pub fn new(all: Vec<&'static str>, config: &[RouteConfig]) -> Self {
        // A route with a matcher that does not parse is left out: it matches nothing.
        let routes = config
            .iter()
            .filter_map(|r| {
                Some(Route {
                    matchers: r.matchers.iter().map(|m| Matcher::parse(m)).collect::<Result<_, _>>().ok()?,
                    receivers: r
                        .receivers
                        .iter()
                        .filter_map(|name| all.iter().find(|a| **a == name).copied())
                        .collect(),
                    continue_matching: r.continue_matching,
                })
            })
            .collect();
        Self { all: Arc::new(all), routes: Arc::new(routes) }
    }

    /// Every configured channel.
    pub fn all(&self) -> &[&'static str] {
        &self.all
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The channels that get `incident`'s messages, in the order of [`Self::all`].
    pub fn for_incident(&self, incident: &Incident) -> Vec<&'static str> {
        if self.routes.is_empty() {
            return self.all.to_vec();
        }
        let labels = incident_labels(incident);
        let mut chosen: Vec<&'static str> = Vec::new();
        let mut matched = false;
        for route in self.routes.iter() {
            if !route.matchers.iter().all(|m| m.matches(&labels)) {
                continue;
            }
            matched = true;
            chosen.extend(&route.receivers);
            if !route.continue_matching {
                break;
            }
        }
        if !matched {
            return self.all.to_vec();
        }
        self.all.iter().copied().filter(|c| chosen.contains(c)).collect()
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
            receivers: receivers.iter().map(|r| r.to_string()).collect(),
            continue_matching,
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
}
