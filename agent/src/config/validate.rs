//! Semantic checks on a parsed config; each finding carries the YAML path it concerns.

use std::collections::HashSet;
use std::time::Duration;

use super::{AuthSection, Config, HumanDuration, SecretRef, TlsSection, WatchConfig};
use crate::ingest::watch_kind::WatchKind;

/// Prometheus returns at most 11,000 points per series for one range query.
const MAX_POINTS_PER_QUERY: u128 = 11_000;

pub(super) fn validate(cfg: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut err = |path: String, msg: String| out.push((path, msg));

    if let Some(p) = &cfg.prometheus {
        endpoint(&mut err, "prometheus", &p.url, p.timeout, p.auth.as_ref(), &p.tls);
    } else if !cfg.watches.is_empty() {
        err("prometheus".into(), "watches are configured but the `prometheus` section is missing".into());
    }

    if let Err(errors) = playbook_catalog(cfg) {
        for e in errors.0 {
            err("playbooks.dir".into(), e.to_string());
        }
    }
    // The global guards are checked by the same rules as a playbook's own.
    let probe = warden_playbooks::spec::Playbook {
        name: "global-guards".into(),
        description: String::new(),
        target: warden_playbooks::spec::TargetKind::None,
        params: Default::default(),
        triggers: Vec::new(),
        guards: cfg.playbooks.guards.clone(),
        steps: vec![warden_playbooks::spec::Step {
            notify: Some(warden_playbooks::spec::NotifyStep { message: "probe".into() }),
            ..Default::default()
        }],
        revert: None,
    };
    for (path, msg) in warden_playbooks::load::validate(&probe) {
        if let Some(rest) = path.strip_prefix("guards") {
            err(format!("playbooks.guards{rest}"), msg);
        }
    }
    leader_election(&mut err, cfg);
    match (&cfg.store.sqlite, &cfg.store.postgres) {
        (Some(_), Some(_)) => {
            err("store".into(), "give `sqlite` (one replica) or `postgres` (a store replicas share), not both".into())
        }
        (None, Some(pg)) => secret(&mut err, "store.postgres.url_from", &pg.url_from),
        _ => {}
    }
    if let Some(t) = &cfg.server.viewer_token {
        secret(&mut err, "server.viewer_token", t);
    }

    if cfg.analysis.lookback.0.is_zero() {
        err("analysis.lookback".into(), "must be more than 0s".into());
    } else {
        within(&mut err, "analysis.lookback", cfg.analysis.lookback, MS, 30 * DAY);
    }
    if let Some(m) = &cfg.analysis.model {
        if !m.path.is_file() {
            err(
                "analysis.model.path".into(),
                format!("no model file at {} (`warden model pull REPO FILE` downloads one)", m.path.display()),
            );
        }
        if let Some(t) = &m.tokenizer {
            if !t.is_file() {
                err("analysis.model.tokenizer".into(), format!("no tokenizer file at {}", t.display()));
            }
        }
        if let Some(t) = &m.chat_template {
            if !["chatml", "llama3", "llama2", "gemma"].contains(&t.as_str()) {
                err(
                    "analysis.model.chat_template".into(),
                    format!("`{t}` is not one of chatml, llama3, llama2, gemma"),
                );
            }
        }
        let cuda_index = m.device.strip_prefix("cuda:").map(|n| n.parse::<usize>().is_ok());
        if m.device != "cpu" && m.device != "cuda" && cuda_index != Some(true) {
            err("analysis.model.device".into(), format!("`{}` is not `cpu`, `cuda` or `cuda:N`", m.device));
        }
        if !(1..=2048).contains(&m.max_tokens) {
            err("analysis.model.max_tokens".into(), format!("{} is not between 1 and 2048", m.max_tokens));
        }
        if m.time_budget.0.is_zero() {
            err("analysis.model.time_budget".into(), "must be more than 0s".into());
        } else {
            within(&mut err, "analysis.model.time_budget", m.time_budget, MS, HOUR);
        }
        if let Some(h) = &m.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                err("analysis.model.sha256".into(), "must be 64 hexadecimal digits".into());
            }
        }
    }

    if let Some(k) = &cfg.kubernetes {
        if k.in_cluster && (k.kubeconfig.is_some() || k.context.is_some()) {
            err("kubernetes".into(), "in_cluster: true excludes kubeconfig and context".into());
        }
    }

    if let Some(t) = &cfg.server.api_token {
        secret(&mut err, "server.api_token", t);
    }

    if let Some(s) = &cfg.notify.slack {
        secret(&mut err, "notify.slack.webhook_url", &s.webhook_url);
        within(&mut err, "notify.slack.timeout", s.timeout, MS, HOUR);
    }
    if let Some(e) = &cfg.notify.email {
        if e.host.trim().is_empty() {
            err("notify.email.host".into(), "must not be empty".into());
        }
        if e.port == 0 {
            err("notify.email.port".into(), "must be between 1 and 65535".into());
        }
        within(&mut err, "notify.email.timeout", e.timeout, MS, HOUR);
        if e.to.is_empty() {
            err("notify.email.to".into(), "needs at least one recipient".into());
        }
        if let Some(msg) = mailbox_error(&e.from) {
            err("notify.email.from".into(), msg);
        }
        for (i, to) in e.to.iter().enumerate() {
            if let Some(msg) = mailbox_error(to) {
                err(format!("notify.email.to[{i}]"), msg);
            }
        }
        if let Some(p) = &e.password {
            secret(&mut err, "notify.email.password", p);
            if e.username.is_none() {
                err("notify.email".into(), "password is set but username is missing".into());
            }
        }
    }
    receivers(&mut err, &cfg.notify);
    let channels = cfg.notify.channel_names();
    for (i, route) in cfg.notify.routes.iter().enumerate() {
        check_route(&mut err, &format!("notify.routes[{i}]"), route, &channels, 1);
    }
    let r = &cfg.notify.retry;
    if r.initial_backoff.get().is_zero() {
        err("notify.retry.initial_backoff".into(), "must be greater than 0".into());
    }
    if r.max_backoff < r.initial_backoff {
        err("notify.retry.max_backoff".into(), "must be at least initial_backoff".into());
    } else {
        within(&mut err, "notify.retry.max_backoff", r.max_backoff, MS, DAY);
    }
    if !(1..=1000).contains(&r.max_attempts) {
        err("notify.retry.max_attempts".into(), format!("must be between 1 and 1000, not {}", r.max_attempts));
    }
    if r.max_age.get() < Duration::from_secs(60) || r.max_age.get() > Duration::from_secs(90 * 86_400) {
        err("notify.retry.max_age".into(), "must be between 1m and 90d".into());
    }
    let d = &cfg.notify.digest;
    if !(2..=1_000_000).contains(&d.threshold) {
        err("notify.digest.threshold".into(), format!("must be between 2 and 1000000, not {}", d.threshold));
    }
    if !(1..=500).contains(&d.max_items) {
        err("notify.digest.max_items".into(), format!("must be between 1 and 500, not {}", d.max_items));
    }

    let s = &cfg.actions.scale;
    scale_bounds(&mut err, "actions.scale", s.min_replicas, s.max_replicas, s.step);

    for (i, p) in cfg.server.trusted_proxies.iter().enumerate() {
        if let Err(e) = super::parse_net(p) {
            err(format!("server.trusted_proxies[{i}]"), e);
        }
    }
    let l = &cfg.server.limits;
    within(&mut err, "server.limits.header_read_timeout", l.header_read_timeout, SECOND, Duration::from_secs(300));
    within(&mut err, "server.limits.body_read_timeout", l.body_read_timeout, SECOND, Duration::from_secs(600));
    count(&mut err, "server.limits.max_connections", l.max_connections, 2, 100_000);
    if l.reserved_connections >= l.max_connections {
        err(
            "server.limits.reserved_connections".into(),
            format!("{} must be below max_connections ({})", l.reserved_connections, l.max_connections),
        );
    }

    let mut names = HashSet::new();
    for (i, w) in cfg.watches.iter().enumerate() {
        let at = format!("watches[{i}]");
        if w.name.trim().is_empty() {
            err(format!("{at}.name"), "must not be empty".into());
        } else if !names.insert(w.name.clone()) {
            err(format!("{at}.name"), format!("duplicate watch name `{}`", w.name));
        }
        watch(&mut err, &at, w, cfg);
    }
    if let Some(l) = &cfg.loki {
        endpoint(&mut err, "loki", &l.url, l.timeout, l.auth.as_ref(), &l.tls);
        if !(1..=5000).contains(&l.page_limit) {
            err(
                "loki.page_limit".into(),
                format!(
                    "must be between 1 and 5000 (Loki's default max_entries_limit_per_query), got {}",
                    l.page_limit
                ),
            );
        }
        if l.max_entries < l.page_limit as usize {
            err("loki.max_entries".into(), format!("must be at least page_limit ({})", l.page_limit));
        } else if l.max_entries > 10_000_000 {
            err("loki.max_entries".into(), format!("{} is outside page_limit..=10000000", l.max_entries));
        }
    } else if !cfg.log_watches.is_empty() {
        err("log_watches".into(), "log watches need the `loki` section".into());
    }
    for (i, w) in cfg.log_watches.iter().enumerate() {
        let at = format!("log_watches[{i}]");
        if w.name.trim().is_empty() {
            err(format!("{at}.name"), "must not be empty".into());
        } else if !names.insert(w.name.clone()) {
            err(
                format!("{at}.name"),
                format!("duplicate watch name `{}` (log watches and watches share one namespace)", w.name),
            );
        }
        log_watch(&mut err, &at, w);
    }
    out
}

fn log_watch(err: &mut impl FnMut(String, String), at: &str, w: &super::LogWatchConfig) {
    if let Some(problem) = logql_problem(&w.query) {
        err(format!("{at}.query"), problem);
    }
    if w.interval.get().is_zero() {
        err(format!("{at}.interval"), "must be greater than 0".into());
    } else {
        within(err, &format!("{at}.interval"), w.interval, SECOND, DAY);
    }
    if w.start_lookback.get().is_zero() {
        err(format!("{at}.start_lookback"), "must be greater than 0".into());
    } else {
        within(err, &format!("{at}.start_lookback"), w.start_lookback, MS, 30 * DAY);
    }
    if w.offset.get() > 7 * DAY {
        err(format!("{at}.offset"), "must not exceed 7 days".into());
    }
    if w.resolve_after == 0 {
        err(format!("{at}.resolve_after"), "must be at least 1".into());
    } else {
        count(err, &format!("{at}.resolve_after"), w.resolve_after, 1, MAX_RESOLVE_AFTER);
    }
    if w.open_on.is_empty() {
        err(format!("{at}.open_on"), "name at least one of new_template, rate_change, error_burst".into());
    }
    let mut seen = HashSet::new();
    for (j, l) in w.identity.iter().enumerate() {
        if !is_label_name(l) {
            err(format!("{at}.identity[{j}]"), format!("`{l}` is not a valid label name"));
        } else if !seen.insert(l) {
            err(format!("{at}.identity[{j}]"), format!("label `{l}` listed twice"));
        }
    }
    let check = |err: &mut dyn FnMut(String, String), section: &str, r: Result<(), warden_detectors::Error>| {
        if let Err(e) = r {
            let (param, message) = crate::ingest::watch_kind::named(&e);
            let path = if param.is_empty() { format!("{at}.{section}") } else { format!("{at}.{section}.{param}") };
            err(path, message);
        }
    };
    check(&mut *err, "miner", w.miner_params().map(|_| ()));
    check(&mut *err, "signals", w.signal_params().map(|_| ()));
}

/// Why a LogQL text is not a log query Warden can read, if it is not. Loki parses the query
/// itself (and answers 400 with its message); this catches what is certainly wrong early.
fn logql_problem(q: &str) -> Option<String> {
    let t = q.trim();
    if t.is_empty() {
        return Some("must not be empty".into());
    }
    if !t.starts_with('{') {
        return Some(format!(
            "a log watch reads lines: the query must start with a stream selector like `{{app=\"checkout\"}}`, got `{}`",
            t.chars().take(40).collect::<String>()
        ));
    }
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in t.chars() {
        match quote {
            Some(qc) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == qc {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' => quote = Some(c),
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            },
        }
        if depth < 0 {
            return Some("unbalanced `}`".into());
        }
    }
    if quote.is_some() {
        return Some("unterminated string".into());
    }
    if depth != 0 {
        return Some("unclosed `{`".into());
    }
    None
}

/// The receivers beside Slack webhooks and e-mail: secrets, URLs, timeouts, ids.
/// `leader_election`: names and timings (checked even when it is off, so that turning it
/// on does not reveal old mistakes); when on, the namespace and identity must be known, and
/// every notification channel's timeout must fit in what the fence admits.
fn leader_election(err: &mut impl FnMut(String, String), cfg: &Config) {
    let le = &cfg.leader_election;
    let pod = if le.enabled { super::PodEnv::current() } else { super::PodEnv::default() };
    if le.enabled {
        // Reported here, so that the timings below are checked too.
        if le.namespace.is_none() && pod.namespace.is_none() {
            err("leader_election.namespace".into(), super::NAMESPACE_REQUIRED.into());
        }
        if le.identity.is_none() && pod.name.is_none() {
            err("leader_election.identity".into(), super::IDENTITY_REQUIRED.into());
        }
    }
    let env = super::PodEnv {
        namespace: pod.namespace.or_else(|| Some("default".into())),
        name: pod.name.or_else(|| Some("warden".into())),
    };
    let lease = match le.lease_config(&env) {
        Ok(l) => l,
        Err((path, msg)) => return err(path, msg),
    };
    if !le.enabled {
        return;
    }
    if cfg.kubernetes.is_none() {
        err(
            "leader_election.enabled".into(),
            "needs a `kubernetes` section (the Lease lives on the API server)".into(),
        );
    }
    let budget = super::operation_budget(&lease);
    for (_, path, timeout) in cfg.notify.timeouts() {
        if timeout > budget {
            err(
                path.into(),
                format!(
                    "{} is longer than the {} a fenced send may take with leader election (lease_duration - 1s - 2 × retry_period)",
                    HumanDuration(timeout),
                    HumanDuration(budget)
                ),
            );
        }
    }
}

fn receivers(err: &mut impl FnMut(String, String), n: &super::NotifySection) {
    if let Some(a) = &n.slack_app {
        secret(err, "notify.slack_app.bot_token", &a.bot_token);
        secret(err, "notify.slack_app.signing_secret", &a.signing_secret);
        within(err, "notify.slack_app.timeout", a.timeout, MS, HOUR);
        if !slack_id(&a.channel, &['C', 'G', 'D']) {
            err(
                "notify.slack_app.channel".into(),
                format!(
                    "`{}` is not a Slack channel id (C..., G...; a name like #ops does not work with chat.update)",
                    a.channel
                ),
            );
        }
        for (i, u) in a.approvers.users.iter().enumerate() {
            if !slack_id(u, &['U', 'W']) {
                err(
                    format!("notify.slack_app.approvers.users[{i}]"),
                    format!("`{u}` is not a Slack user id (U... or W...; a name or @handle cannot be checked)"),
                );
            } else if a.approvers.users[..i].contains(u) {
                err(format!("notify.slack_app.approvers.users[{i}]"), format!("`{u}` is listed twice"));
            }
        }
        for (i, g) in a.approvers.groups.iter().enumerate() {
            if !slack_id(g, &['S']) {
                err(
                    format!("notify.slack_app.approvers.groups[{i}]"),
                    format!("`{g}` is not a Slack user group id (S...)"),
                );
            } else if a.approvers.groups[..i].contains(g) {
                err(format!("notify.slack_app.approvers.groups[{i}]"), format!("`{g}` is listed twice"));
            }
        }
        if let Some(u) = &a.api_url {
            http_url(err, "notify.slack_app.api_url", u);
        }
    }
    if let Some(p) = &n.pagerduty {
        secret(err, "notify.pagerduty.routing_key", &p.routing_key);
        within(err, "notify.pagerduty.timeout", p.timeout, MS, HOUR);
        if let Some(u) = &p.url {
            http_url(err, "notify.pagerduty.url", u);
        }
    }
    if let Some(o) = &n.opsgenie {
        secret(err, "notify.opsgenie.api_key", &o.api_key);
        within(err, "notify.opsgenie.timeout", o.timeout, MS, HOUR);
        if let Some(u) = &o.url {
            http_url(err, "notify.opsgenie.url", u);
        }
        if o.tags.len() > warden_connectors::opsgenie::limits::TAGS {
            err("notify.opsgenie.tags".into(), format!("at most {} tags", warden_connectors::opsgenie::limits::TAGS));
        }
        for (i, t) in o.tags.iter().enumerate() {
            if t.trim().is_empty() || t.chars().count() > 50 {
                err(format!("notify.opsgenie.tags[{i}]"), "a tag has 1 to 50 characters".into());
            }
        }
    }
    if let Some(t) = &n.teams {
        secret(err, "notify.teams.webhook_url", &t.webhook_url);
        within(err, "notify.teams.timeout", t.timeout, MS, HOUR);
    }
    if let Some(w) = &n.webhook {
        secret(err, "notify.webhook.secret", &w.secret);
        within(err, "notify.webhook.timeout", w.timeout, MS, HOUR);
        http_url(err, "notify.webhook.url", &w.url);
    }
}

/// Whether `id` looks like a Slack id starting with one of `prefixes` (upper-case letters
/// and digits).
fn slack_id(id: &str, prefixes: &[char]) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| prefixes.contains(&c))
        && id.len() >= 3
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// An http(s) URL with a host; the message shows only its scheme (the rest may carry a key).
fn http_url(err: &mut impl FnMut(String, String), path: &str, url: &str) {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {}
        Ok(u) => err(path.into(), format!("must be an http(s) URL with a host, not `{}:`", u.scheme())),
        Err(e) => err(path.into(), format!("not a valid URL: {e}")),
    }
}

/// URL, timeout, auth and TLS of an HTTP server section (`prometheus`, `loki`).
fn endpoint(
    err: &mut impl FnMut(String, String),
    section: &str,
    url: &str,
    timeout: HumanDuration,
    auth: Option<&AuthSection>,
    tls: &TlsSection,
) {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        Ok(u) => err(format!("{section}.url"), format!("unsupported scheme `{}`: use http or https", u.scheme())),
        Err(e) => err(format!("{section}.url"), format!("invalid URL `{url}`: {e}")),
    }
    if timeout.get().is_zero() {
        err(format!("{section}.timeout"), "must be greater than 0".into());
    } else {
        within(err, &format!("{section}.timeout"), timeout, MS, HOUR);
    }
    if let Some(a) = auth {
        match (&a.bearer, &a.basic) {
            (Some(b), None) => secret(err, &format!("{section}.auth.bearer"), b),
            (None, Some(b)) => secret(err, &format!("{section}.auth.basic.password"), &b.password),
            _ => err(format!("{section}.auth"), "set exactly one of `bearer` or `basic`".into()),
        }
    }
    if let Some(ca) = &tls.ca_file {
        if tls.insecure_skip_verify {
            err(format!("{section}.tls"), format!("ca_file {} and insecure_skip_verify are exclusive", ca.display()));
        }
    }
}

/// A duration within `lo..=hi` (both shown in the message).
fn within(err: &mut impl FnMut(String, String), path: &str, d: HumanDuration, lo: Duration, hi: Duration) {
    if d.get() < lo || d.get() > hi {
        err(path.into(), format!("{d} is outside {}..={}", HumanDuration(lo), HumanDuration(hi)));
    }
}

/// A count within `lo..=hi`.
fn count<T: PartialOrd + std::fmt::Display>(err: &mut impl FnMut(String, String), path: &str, n: T, lo: T, hi: T) {
    if n < lo || n > hi {
        err(path.into(), format!("{n} is outside {lo}..={hi}"));
    }
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
/// Replicas and replica steps: far above any Deployment, far below i32 overflow.
const MAX_REPLICAS: i32 = 1_000_000;
/// Evaluations in a row before an incident resolves.
const MAX_RESOLVE_AFTER: u32 = 100_000;

/// Scale bounds, from `actions.scale` or a watch's `action.scale`.
fn scale_bounds(err: &mut impl FnMut(String, String), at: &str, min: i32, max: i32, step: i32) {
    if min < 0 {
        err(format!("{at}.min_replicas"), "must not be negative".into());
    } else if min > MAX_REPLICAS {
        err(format!("{at}.min_replicas"), format!("{min} is outside 0..={MAX_REPLICAS}"));
    }
    if max > MAX_REPLICAS {
        err(format!("{at}.max_replicas"), format!("{max} is outside 0..={MAX_REPLICAS}"));
    } else if min > max {
        err(format!("{at}.max_replicas"), format!("{max} is below min_replicas {min}"));
    }
    if step == 0 {
        err(format!("{at}.step"), "must not be 0".into());
    } else if step.unsigned_abs() > MAX_REPLICAS.unsigned_abs() {
        err(format!("{at}.step"), format!("{step} is outside -{MAX_REPLICAS}..={MAX_REPLICAS}"));
    }
}

fn secret(err: &mut impl FnMut(String, String), path: &str, s: &SecretRef) {
    if let Some(msg) = s.shape_error() {
        err(path.into(), msg);
    }
}

/// `Name <addr@host>` or `addr@host`; delegated to the mail library where it is sent.
fn mailbox_error(s: &str) -> Option<String> {
    match warden_connectors::smtp::validate_mailbox(s) {
        Ok(()) => None,
        Err(_) => Some(format!("`{s}` is not an e-mail address (expected `Name <user@host>` or `user@host`)")),
    }
}

fn watch(err: &mut impl FnMut(String, String), at: &str, w: &WatchConfig, cfg: &Config) {
    queries(err, at, w);
    let (interval, step, lookback) = (w.interval.get(), w.step.get(), w.lookback.get());
    if interval.is_zero() {
        err(format!("{at}.interval"), "must be greater than 0".into());
    } else {
        within(err, &format!("{at}.interval"), w.interval, SECOND, DAY);
    }
    if step.is_zero() {
        err(format!("{at}.step"), "must be greater than 0".into());
    } else if step > DAY {
        err(format!("{at}.step"), format!("{} is outside 1ms..=1day", w.step));
    } else {
        if lookback < step * 2 {
            err(format!("{at}.lookback"), format!("must cover at least two steps ({} < 2 x {})", w.lookback, w.step));
        }
        let points = lookback.as_millis() / step.as_millis().max(1);
        if points > MAX_POINTS_PER_QUERY {
            err(
                format!("{at}.lookback"),
                format!("{points} points per query exceeds Prometheus' limit of {MAX_POINTS_PER_QUERY}; raise step or shorten lookback"),
            );
        }
    }
    if w.offset.get() > Duration::from_secs(7 * 24 * 3600) {
        err(format!("{at}.offset"), "must not exceed 7 days".into());
    }
    if w.resolve_after == 0 {
        err(format!("{at}.resolve_after"), "must be at least 1".into());
    } else {
        count(err, &format!("{at}.resolve_after"), w.resolve_after, 1, MAX_RESOLVE_AFTER);
    }
    if w.lookback.get() > 90 * DAY {
        err(format!("{at}.lookback"), format!("{} is longer than 90d", w.lookback));
    }
    let mut seen = HashSet::new();
    for (j, l) in w.identity.iter().enumerate() {
        if !is_label_name(l) {
            err(format!("{at}.identity[{j}]"), format!("`{l}` is not a valid label name"));
        } else if !seen.insert(l) {
            err(format!("{at}.identity[{j}]"), format!("label `{l}` listed twice"));
        }
    }
    if let Some(t) = &w.target {
        for (field, tpl) in [("namespace", &t.namespace), ("deployment", &t.deployment)] {
            match placeholders(tpl) {
                Err(msg) => err(format!("{at}.target.{field}"), msg),
                Ok(labels) => {
                    for l in labels {
                        if !w.identity.iter().any(|i| i == &l) {
                            err(
                                format!("{at}.target.{field}"),
                                format!("placeholder {{{l}}} names a label that is not in `identity`"),
                            );
                        }
                    }
                }
            }
        }
    }
    detector(err, at, w);
    if let Some(a) = &w.action {
        if w.target.is_none() {
            err(format!("{at}.action"), "an action needs `target` to name the Deployment".into());
        }
        if cfg.kubernetes.is_none() {
            err(format!("{at}.action"), "an action needs the `kubernetes` section".into());
        }
        if a.playbook.is_some() && a.scale.is_some() {
            err(format!("{at}.action"), "give either `playbook` or `scale`, not both".into());
        }
        if a.playbook.is_none() && !a.params.is_empty() {
            err(format!("{at}.action.params"), "`params` are for `playbook`".into());
        }
        if let Some(name) = &a.playbook {
            // A directory that does not load is reported once, at `playbooks.dir`.
            if let Ok(catalog) = playbook_catalog(cfg) {
                match catalog.get(name) {
                    None => err(
                        format!("{at}.action.playbook"),
                        format!("no playbook named {name:?} (known: {})", catalog.names().join(", ")),
                    ),
                    Some(pb) => {
                        let given = a.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                        if let Err(e) = warden_playbooks::params::resolve_params(pb, &given) {
                            err(format!("{at}.action.params"), e.to_string());
                        }
                    }
                }
            }
            return;
        }
        let d = &cfg.actions.scale;
        let s = a.scale.clone().unwrap_or_default();
        let (min, max, step) = (
            s.min_replicas.unwrap_or(d.min_replicas),
            s.max_replicas.unwrap_or(d.max_replicas),
            s.step.unwrap_or(d.step),
        );
        scale_bounds(err, &format!("{at}.action.scale"), min, max, step);
    }
}

/// `query`, or `queries` for a multivariate watch; every query must parse.
fn queries(err: &mut impl FnMut(String, String), at: &str, w: &WatchConfig) {
    let promql = |err: &mut dyn FnMut(String, String), path: String, q: &str| {
        if let Err(e) = promql_parser::parser::parse(q) {
            err(path, format!("invalid PromQL: {}", e.trim()));
        }
    };
    if WatchKind::wants_queries(&w.detector.kind) {
        if w.query.is_some() {
            err(
                format!("{at}.query"),
                format!("a `{}` watch takes named `queries` (one per metric), not `query`", w.detector.kind),
            );
        }
        let n = w.queries.len();
        if !(2..=crate::ingest::joint_eval::MAX_QUERIES).contains(&n) {
            err(
                format!("{at}.queries"),
                format!("needs between 2 and {} named queries, got {n}", crate::ingest::joint_eval::MAX_QUERIES),
            );
        }
        for (name, q) in &w.queries {
            if !is_label_name(name) {
                err(
                    format!("{at}.queries.{name}"),
                    format!("`{name}` is not a valid metric name (letters, digits, `_`)"),
                );
            }
            promql(&mut *err, format!("{at}.queries.{name}"), q);
        }
        return;
    }
    if !w.queries.is_empty() {
        err(
            format!("{at}.queries"),
            format!("named `queries` are only for `kind: {}` watches; use `query`", crate::ingest::joint_eval::KIND),
        );
    }
    match &w.query {
        Some(q) => promql(&mut *err, format!("{at}.query"), q),
        None => err(at.to_string(), "missing field `query`".into()),
    }
}

/// Settings that depend on the watch as well as the detector.
fn windows(err: &mut impl FnMut(String, String), at: &str, w: &WatchConfig, kind: &WatchKind) {
    let lookback = w.lookback.get();
    let (current, reference) = match kind {
        WatchKind::Drift(s) => (s.current, s.reference_for(lookback)),
        WatchKind::Quality(s) => {
            (s.current, if s.baseline.is_some() { Duration::ZERO } else { s.reference_for(lookback) })
        }
        _ => return,
    };
    if current >= lookback {
        err(
            format!("{at}.detector.current"),
            format!(
                "the current window ({}) must be shorter than the lookback ({})",
                HumanDuration(current),
                w.lookback
            ),
        );
    } else if current.checked_add(reference).is_none_or(|sum| sum > lookback) {
        err(
            format!("{at}.detector.reference"),
            format!(
                "current + reference ({} + {}) exceed the lookback ({}); raise `lookback`",
                HumanDuration(current),
                HumanDuration(reference),
                w.lookback
            ),
        );
    }
    if matches!(kind, WatchKind::Drift(_)) && w.identity.iter().any(|l| l == "le") {
        err(
            format!("{at}.identity"),
            "`le` tells the buckets of one histogram apart; it cannot be an identity label".into(),
        );
    }
}

/// Report the problems found when the detector's spec was read (an unknown key is reported
/// and left out, so the remaining parameters are still checked), then the settings that
/// depend on the watch as well.
fn detector(err: &mut impl FnMut(String, String), at: &str, w: &WatchConfig) {
    match w.detector.watch_kind() {
        Err(problems) => {
            for (param, message) in problems {
                let path = if param.is_empty() { format!("{at}.detector") } else { format!("{at}.detector.{param}") };
                err(path, message.clone());
            }
        }
        Ok(kind) => windows(err, at, w, kind),
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Labels named by `{label}` placeholders in a target template.
pub(crate) fn placeholders(tpl: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = tpl;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed `{{` in `{tpl}`"))?;
        let name = &after[..close];
        if !is_label_name(name) {
            return Err(format!("`{{{name}}}` in `{tpl}` is not a label placeholder"));
        }
        out.push(name.to_string());
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched `}}` in `{tpl}`"));
    }
    if tpl.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(out)
}

/// The playbooks the config can name: built-ins and `playbooks.dir`.
pub fn playbook_catalog(cfg: &Config) -> Result<warden_playbooks::load::Catalog, warden_playbooks::load::LoadErrors> {
    warden_playbooks::load::Catalog::load(cfg.playbooks.dir.as_deref())
}

/// How deep `routes` may nest (a tree deeper than this is a configuration mistake).
const MAX_ROUTE_DEPTH: usize = 8;

/// One route of `notify.routes` and its children, errors named by their path.
fn check_route(
    err: &mut impl FnMut(String, String),
    path: &str,
    route: &crate::config::RouteConfig,
    channels: &[&str],
    depth: usize,
) {
    for (j, m) in route.matchers.iter().enumerate() {
        if let Err(e) = crate::incident::silence::Matcher::parse(m) {
            err(format!("{path}.match[{j}]"), e);
        }
    }
    for (j, r) in route.receivers.iter().flatten().enumerate() {
        if !channels.contains(&r.as_str()) {
            let known = if channels.is_empty() { "none".to_string() } else { channels.join(", ") };
            err(format!("{path}.receivers[{j}]"), format!("`{r}` is not a configured channel (configured: {known})"));
        }
    }
    if let Some(by) = &route.group_by {
        let all = by.iter().any(|l| l == "...");
        for (j, label) in by.iter().enumerate() {
            if all && by.len() > 1 {
                err(format!("{path}.group_by[{j}]"), "`...` (every label) must be the only entry".into());
                break;
            }
            if label != "..." && !label_name_ok(label) {
                err(
                    format!("{path}.group_by[{j}]"),
                    format!("`{label}` is not a label name (letters, digits and `_`, not starting with a digit)"),
                );
            }
        }
    }
    if let Some(w) = route.group_wait {
        if w.get() > Duration::from_secs(3600) {
            err(format!("{path}.group_wait"), "must be at most 1h (a longer wait hides new incidents)".into());
        }
    }
    if let Some(i) = route.group_interval {
        if i.get() < Duration::from_secs(1) || i.get() > Duration::from_secs(86_400) {
            err(format!("{path}.group_interval"), "must be between 1s and 1d".into());
        }
    }
    if !route.routes.is_empty() && depth >= MAX_ROUTE_DEPTH {
        err(format!("{path}.routes"), format!("routes nest at most {MAX_ROUTE_DEPTH} deep"));
        return;
    }
    for (k, child) in route.routes.iter().enumerate() {
        check_route(err, &format!("{path}.routes[{k}]"), child, channels, depth + 1);
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
