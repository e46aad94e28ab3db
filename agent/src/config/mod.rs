//! `warden.yaml`: a closed schema, parsed with every error reported at once.
//!
//! Loading has three layers: serde types (this file) that reject unknown keys and wrong types,
//! [`load`] which keeps going after an error so one run reports them all with YAML path and
//! line, and [`validate`] for semantic checks (PromQL parses, names referenced exist, bounds).
//! Secrets are never inline: they are `{env: NAME}` or `{file: PATH}` and resolved at start-up.

mod load;
mod secret;
mod validate;
pub use warden_playbooks::yaml_index;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::incident::identity::{Severity, TargetTemplate};
pub use load::{load_file, parse_str, ConfigError, ConfigErrors};
pub use secret::SecretRef;
pub use warden_playbooks::duration::HumanDuration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub prometheus: Option<PrometheusSection>,
    pub loki: Option<LokiSection>,
    pub kubernetes: Option<KubernetesSection>,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub notify: NotifySection,
    #[serde(default)]
    pub actions: ActionDefaults,
    #[serde(default)]
    pub playbooks: PlaybooksSection,
    #[serde(default)]
    pub analysis: AnalysisSection,
    /// Two or more replicas: elect one leader on a Lease (off: one replica, always leader).
    #[serde(default)]
    pub leader_election: LeaderElectionSection,
    #[serde(default)]
    pub watches: Vec<WatchConfig>,
    #[serde(default)]
    pub log_watches: Vec<LogWatchConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSection {
    pub url: String,
    #[serde(default = "defaults::prometheus_timeout")]
    pub timeout: HumanDuration,
    pub auth: Option<AuthSection>,
    #[serde(default)]
    pub tls: TlsSection,
}

/// Loki, for log watches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiSection {
    pub url: String,
    #[serde(default = "defaults::prometheus_timeout")]
    pub timeout: HumanDuration,
    pub auth: Option<AuthSection>,
    /// Multi-tenant Loki: sent as `X-Scope-OrgID`.
    pub tenant: Option<String>,
    #[serde(default)]
    pub tls: TlsSection,
    /// Entries per request when paging (keep at or below Loki's `max_entries_limit_per_query`).
    #[serde(default = "defaults::loki_page")]
    pub page_limit: u32,
    /// Most entries one evaluation reads; the rest is read by the next one.
    #[serde(default = "defaults::loki_max_entries")]
    pub max_entries: usize,
}

/// One log watch: a LogQL stream selector read on an interval, mined into templates, with
/// signals (new pattern, rate change, error burst) that open incidents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogWatchConfig {
    pub name: String,
    /// LogQL log query (a stream selector, optionally with line filters).
    pub query: String,
    #[serde(default = "defaults::interval")]
    pub interval: HumanDuration,
    /// How far back the first read goes; later reads continue after the last line read.
    #[serde(default = "defaults::log_start_lookback")]
    pub start_lookback: HumanDuration,
    /// Read up to `now - offset` (lines still arriving at Loki).
    #[serde(default = "defaults::log_offset")]
    pub offset: HumanDuration,
    /// Stream labels that identify the service a signal is about (part of the incident key).
    #[serde(default)]
    pub identity: Vec<String>,
    #[serde(default)]
    pub severity: Severity,
    /// Evaluations in a row without the signal before its incident resolves.
    #[serde(default = "defaults::log_resolve_after")]
    pub resolve_after: u32,
    /// Template miner settings (`docs/logs.md`).
    #[serde(default)]
    pub miner: serde_json::Map<String, serde_json::Value>,
    /// Signal settings (`docs/logs.md`).
    #[serde(default)]
    pub signals: serde_json::Map<String, serde_json::Value>,
    /// Which signals open incidents (default all three).
    #[serde(default = "defaults::log_open_on")]
    pub open_on: Vec<LogSignalKind>,
}

impl LogWatchConfig {
    /// The miner parameters, checked.
    pub fn miner_params(&self) -> Result<warden_detectors::logs::MinerParams, warden_detectors::Error> {
        let p: warden_detectors::logs::MinerParams = warden_detectors::registry::from_map(&self.miner)?;
        p.validate()?;
        Ok(p)
    }

    /// The signal parameters, checked.
    pub fn signal_params(&self) -> Result<warden_detectors::logs::SignalParams, warden_detectors::Error> {
        let p: warden_detectors::logs::SignalParams = warden_detectors::registry::from_map(&self.signals)?;
        p.validate()?;
        Ok(p)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSignalKind {
    NewTemplate,
    RateChange,
    ErrorBurst,
}

/// Exactly one of `bearer` or `basic`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub bearer: Option<SecretRef>,
    pub basic: Option<BasicAuth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: SecretRef,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `in_cluster: true`, or a kubeconfig (default: `$KUBECONFIG`, then `~/.kube/config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    #[serde(default)]
    pub in_cluster: bool,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The embedded SQLite file (one replica). The default when `postgres` is not given.
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL store shared by replicas (with `leader_election`): a new leader resumes
    /// the old one's runs and outbox from it.
    pub postgres: Option<PostgresStore>,
}

impl StoreSection {
    /// The SQLite file: the one configured, else the default.
    pub fn sqlite_path(&self) -> PathBuf {
        self.sqlite.clone().unwrap_or_else(defaults::sqlite_path)
    }
}

/// `store.postgres`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStore {
    /// The connection URL (`postgres://user:password@host:5432/db`), a secret: it holds
    /// the password.
    pub url_from: SecretRef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Bearer token for `/api/*` with the `operator` role (read, start runs, approve).
    /// Without any token the API answers 403.
    pub api_token: Option<SecretRef>,
    /// Bearer token with the `viewer` role: read only.
    pub viewer_token: Option<SecretRef>,
    /// Timeouts and the connection limit of the HTTP server (`docs/operations.md`).
    #[serde(default)]
    pub limits: ServerLimits,
    /// Proxies (addresses or CIDR ranges, `10.0.0.0/8`) whose `X-Forwarded-For` names the
    /// client: the console's failed-login count is then per client, not per proxy.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            api_token: None,
            viewer_token: None,
            limits: ServerLimits::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerSection {
    /// `trusted_proxies` parsed; entries that do not parse (refused when the configuration
    /// was checked) are left out.
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.iter().filter_map(|p| parse_net(p).ok()).collect()
    }
}

/// An address (`10.1.2.3`, a one-address range) or a CIDR range (`10.0.0.0/8`).
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is neither an address nor a CIDR range (10.0.0.0/8, fd00::/8)"))
}

/// What one client may hold of the HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// A request's head must arrive within this time; also how long a kept-alive
    /// connection may wait for its next request.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// A request body that sends nothing for this long fails and its connection closes.
    #[serde(default = "defaults::body_read_timeout")]
    pub body_read_timeout: HumanDuration,
    /// Open connections at most; more are closed when accepted.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Of `max_connections`, how many are kept for `/healthz`, `/readyz` and `/metrics`.
    #[serde(default = "defaults::reserved_connections")]
    pub reserved_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: defaults::header_read_timeout(),
            body_read_timeout: defaults::body_read_timeout(),
            max_connections: defaults::max_connections(),
            reserved_connections: defaults::reserved_connections(),
        }
    }
}

/// `leader_election`: run two or more replicas, of which only the holder of a
/// `coordination.k8s.io/v1` Lease acts (see `docs/operations.md`, high availability).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionSection {
    /// Off (the default): one replica, always the leader, no Lease.
    #[serde(default)]
    pub enabled: bool,
    /// Name of the Lease object.
    #[serde(default = "defaults::lease_name")]
    pub lease_name: String,
    /// Namespace of the Lease; default: `POD_NAMESPACE`, else the service account's
    /// namespace file; required when neither is there.
    pub namespace: Option<String>,
    /// This replica's identity in the Lease; default: `POD_NAME`, else the host name.
    pub identity: Option<String>,
    /// How long a lease stays valid after its last renew.
    #[serde(default = "defaults::lease_duration")]
    pub lease_duration: HumanDuration,
    /// How long the leader keeps trying to renew before it steps down.
    #[serde(default = "defaults::renew_deadline")]
    pub renew_deadline: HumanDuration,
    /// How often the leader renews and followers look at the lease.
    #[serde(default = "defaults::retry_period")]
    pub retry_period: HumanDuration,
}

impl Default for LeaderElectionSection {
    fn default() -> Self {
        Self {
            enabled: false,
            lease_name: defaults::lease_name(),
            namespace: None,
            identity: None,
            lease_duration: defaults::lease_duration(),
            renew_deadline: defaults::renew_deadline(),
            retry_period: defaults::retry_period(),
        }
    }
}

/// Where the service account's namespace is mounted in a pod.
pub const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

const NAMESPACE_REQUIRED: &str = "required: neither POD_NAMESPACE nor the service account's namespace file is there";
const IDENTITY_REQUIRED: &str = "required: neither POD_NAME nor a host name is there";

/// What the defaults of `leader_election` are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEnv {
    /// `POD_NAMESPACE`, else the service account's namespace file.
    pub namespace: Option<String>,
    /// `POD_NAME`, else the host name.
    pub name: Option<String>,
}

impl PodEnv {
    /// From this process's environment.
    pub fn current() -> Self {
        let env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let file = |p: &str| std::fs::read_to_string(p).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        Self {
            namespace: env("POD_NAMESPACE").or_else(|| file(SERVICE_ACCOUNT_NAMESPACE)),
            name: env("POD_NAME").or_else(|| env("HOSTNAME")).or_else(|| file("/proc/sys/kernel/hostname")),
        }
    }
}

impl LeaderElectionSection {
    /// The Lease configuration, with namespace and identity defaulted from `env`. Errors
    /// are `(YAML path, message)`.
    pub fn lease_config(&self, env: &PodEnv) -> Result<warden_connectors::leader::LeaseConfig, (String, String)> {
        let at = |k: &str| format!("leader_election.{k}");
        let namespace = self
            .namespace
            .clone()
            .or_else(|| env.namespace.clone())
            .ok_or_else(|| (at("namespace"), NAMESPACE_REQUIRED.to_string()))?;
        let identity = self
            .identity
            .clone()
            .or_else(|| env.name.clone())
            .ok_or_else(|| (at("identity"), IDENTITY_REQUIRED.to_string()))?;
        let lease = warden_connectors::leader::LeaseConfig {
            lease_duration: self.lease_duration.get(),
            renew_deadline: self.renew_deadline.get(),
            retry_period: self.retry_period.get(),
            ..warden_connectors::leader::LeaseConfig::new(namespace, self.lease_name.clone(), identity)
        };
        if let Err(e) = lease.validate() {
            let message = e.to_string();
            // The setting's own words, without the error's kind or the lease's name.
            let prefix = format!("{}: ", lease.describe());
            let text = match message.find(&prefix) {
                Some(i) => &message[i + prefix.len()..],
                None => message.strip_prefix("invalid input: ").unwrap_or(&message),
            };
            // The setting the message names first is the one to change.
            let keys = [
                ("retry_period", "retry_period"),
                ("renew_deadline", "renew_deadline"),
                ("lease_duration", "lease_duration"),
                ("lease namespace", "namespace"),
                ("lease name", "lease_name"),
                ("identity", "identity"),
            ];
            let key = keys
                .iter()
                .filter_map(|(word, key)| text.find(word).map(|i| (i, std::cmp::Reverse(word.len()), *key)))
                .min()
                .map_or("lease_name", |(_, _, k)| k);
            return Err((at(key), text.to_string()));
        }
        if operation_budget(&lease).is_zero() {
            return Err((
                at("lease_duration"),
                format!(
                    "{} leaves no time for an operation: it must exceed the safety margin ({}) plus twice retry_period",
                    self.lease_duration,
                    HumanDuration(lease.safety_margin)
                ),
            ));
        }
        Ok(lease)
    }
}

/// The longest operation the leader's fence admits at every point of a renew cycle, with
/// one renew late: `lease_duration - safety_margin - 2 × retry_period` (10 s with the
/// defaults). Under leader election the Kubernetes client's request timeout is cut to it,
/// and every notification channel's timeout must fit in it (checked at load).
pub fn operation_budget(lease: &warden_connectors::leader::LeaseConfig) -> std::time::Duration {
    lease.lease_duration.saturating_sub(lease.safety_margin).saturating_sub(lease.retry_period.saturating_mul(2))
}

impl NotifySection {
    /// Each configured channel's send timeout: `(channel, YAML path, timeout)`. The file
    /// channel, a local write, has none.
    pub fn timeouts(&self) -> Vec<(&'static str, &'static str, std::time::Duration)> {
        let mut out = Vec::new();
        if let Some(c) = &self.slack {
            out.push(("slack", "notify.slack.timeout", c.timeout.get()));
        }
        if let Some(c) = &self.slack_app {
            out.push(("slack_app", "notify.slack_app.timeout", c.timeout.get()));
        }
        if let Some(c) = &self.email {
            out.push(("email", "notify.email.timeout", c.timeout.get()));
        }
        if let Some(c) = &self.pagerduty {
            out.push(("pagerduty", "notify.pagerduty.timeout", c.timeout.get()));
        }
        if let Some(c) = &self.opsgenie {
            out.push(("opsgenie", "notify.opsgenie.timeout", c.timeout.get()));
        }
        if let Some(c) = &self.teams {
            out.push(("teams", "notify.teams.timeout", c.timeout.get()));
        }
        if let Some(c) = &self.webhook {
            out.push(("webhook", "notify.webhook.timeout", c.timeout.get()));
        }
        out
    }
}

/// Playbooks: where the operator's files are, and the global guard defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybooksSection {
    /// A directory of `*.yaml` playbooks (a playbook whose `name` is a built-in's replaces it).
    pub dir: Option<PathBuf>,
    /// Guard defaults for every playbook; a playbook's own `guards` override them field by field.
    #[serde(default)]
    pub guards: warden_playbooks::spec::Guards,
}

/// Root-cause analysis of incidents: how far back evidence is looked for, and the optional
/// local model that writes the summary (without one, the template summary is used).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSection {
    /// Analyse incidents when they open.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Evidence is looked for from this long before the incident opened.
    #[serde(default = "defaults::analysis_lookback")]
    pub lookback: HumanDuration,
    pub model: Option<ModelSection>,
    /// A call graph for root-cause ranking: a CSV with the header `caller,callee`, workload
    /// names in the incident's namespace (used beside what the cluster tells).
    #[serde(default)]
    pub graph: Option<std::path::PathBuf>,
}

impl Default for AnalysisSection {
    fn default() -> Self {
        Self { enabled: true, lookback: defaults::analysis_lookback(), model: None, graph: None }
    }
}

/// A local GGUF model for summaries (see docs/root-cause.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The `.gguf` file (`warden model pull` downloads one).
    pub path: PathBuf,
    /// A `tokenizer.json`; without it the tokenizer is built from the GGUF's metadata.
    pub tokenizer: Option<PathBuf>,
    /// `chatml`, `llama3`, `llama2` or `gemma`; detected from the GGUF when absent.
    pub chat_template: Option<String>,
    /// `cpu` (default), `cuda` or `cuda:N` (needs a build with `--features cuda`).
    #[serde(default = "defaults::model_device")]
    pub device: String,
    /// Upper bound on generated tokens.
    #[serde(default = "defaults::model_max_tokens")]
    pub max_tokens: usize,
    /// A summary not done in this time falls back to the template.
    #[serde(default = "defaults::model_time_budget")]
    pub time_budget: HumanDuration,
    /// Expected SHA-256 of the file, checked when it loads.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    pub slack: Option<SlackSection>,
    /// Slack app mode: a bot token posts and edits messages, a signing secret checks
    /// button presses (beside or instead of the incoming webhook of `slack`).
    pub slack_app: Option<SlackAppSection>,
    pub email: Option<EmailSection>,
    pub file: Option<FileSinkSection>,
    pub pagerduty: Option<PagerDutySection>,
    pub opsgenie: Option<OpsgenieSection>,
    pub teams: Option<TeamsSection>,
    /// A generic JSON webhook, every call signed with HMAC-SHA256.
    pub webhook: Option<WebhookSection>,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub digest: DigestSection,
    /// Which channels hear about which incidents (`docs/notifications.md#routes`); without
    /// routes, or when none matches, every channel.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Every notification channel's name, in the order channels are listed and rendered.
pub const CHANNEL_NAMES: [&str; 8] =
    ["slack", "slack_app", "email", "file", "pagerduty", "opsgenie", "teams", "webhook"];

/// The names of [`CHANNEL_NAMES`] whose flag (same order) is set.
pub fn configured_channels(on: [bool; 8]) -> Vec<&'static str> {
    CHANNEL_NAMES.into_iter().zip(on).filter_map(|(name, on)| on.then_some(name)).collect()
}

impl NotifySection {
    /// The channel names this section configures (the names routes use).
    pub fn channel_names(&self) -> Vec<&'static str> {
        configured_channels([
            self.slack.is_some(),
            self.slack_app.is_some(),
            self.email.is_some(),
            self.file.is_some(),
            self.pagerduty.is_some(),
            self.opsgenie.is_some(),
            self.teams.is_some(),
            self.webhook.is_some(),
        ])
    }
}

/// One entry of `notify.routes` (or of a route's `routes`), Alertmanager's routing tree.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label matchers (`namespace=payments`, `severity=~critical|warning`); none: every
    /// incident. A child route's matchers apply on top of its parent's.
    #[serde(rename = "match", default)]
    pub matchers: Vec<String>,
    /// Configured channel names (`slack`, `email`, `pagerduty`, ...); empty: dropped;
    /// absent: the parent's (a top-level route's parent is every channel).
    pub receivers: Option<Vec<String>>,
    /// Go on to the next sibling routes after this one matched (their receivers are added).
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
    /// Child routes: the first that matches (and those after it while they `continue`)
    /// decides instead of this one; none matching: this route.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Batch the incidents this route matches into one message per group (label values;
    /// `[]`: one group for the route; `['...']`: one per incident). Setting any of
    /// `group_by`, `group_wait`, `group_interval` turns grouping on; children inherit them.
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more incidents before its first message (30s).
    pub group_wait: Option<HumanDuration>,
    /// At most one message per group in this time after the last one (5m).
    pub group_interval: Option<HumanDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSection {
    pub webhook_url: SecretRef,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

/// Slack app mode (`docs/notifications.md`): the Web API with a bot token, and the
/// signing secret that `POST /api/v1/slack/interactions` checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackAppSection {
    /// Bot token (`xoxb-...`, scopes `chat:write`, and `usergroups:read` for group approvers).
    pub bot_token: SecretRef,
    /// The app's signing secret (Basic Information, App Credentials).
    pub signing_secret: SecretRef,
    /// The channel id (`C...`) incident messages go to; the bot must be a member.
    pub channel: String,
    /// Who may approve or deny from Slack; nobody when empty.
    #[serde(default)]
    pub approvers: SlackApproversSection,
    /// The Web API base (default `https://slack.com/api/`).
    pub api_url: Option<String>,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

/// Slack user ids (`U...`, `W...`) and user group ids (`S...`) allowed to approve.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackApproversSection {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// PagerDuty Events API v2: one alert per incident (`dedup_key` = the incident's fingerprint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySection {
    /// The integration key of an Events API v2 integration on a PagerDuty service.
    pub routing_key: SecretRef,
    /// The Events API endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    pub url: Option<String>,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

/// Opsgenie Alert API: one alert per incident (`alias` = the incident's fingerprint).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieSection {
    /// The key of an API integration (sent as `Authorization: GenieKey KEY`).
    pub api_key: SecretRef,
    /// The API base (default `https://api.opsgenie.com`; EU: `https://api.eu.opsgenie.com`).
    pub url: Option<String>,
    /// Tags added to every alert.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

/// Microsoft Teams through a Workflows webhook (Adaptive Cards).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsSection {
    /// The workflow's HTTP trigger URL (it carries a signature: a secret).
    pub webhook_url: SecretRef,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

/// A generic JSON webhook; every call carries `X-Warden-Signature` (HMAC-SHA256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: String,
    /// The shared signing secret (at least 16 characters).
    pub secret: SecretRef,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTlsMode {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub host: String,
    #[serde(default = "defaults::smtp_port")]
    pub port: u16,
    #[serde(default = "defaults::smtp_tls")]
    pub tls: SmtpTlsMode,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "defaults::notify_timeout")]
    pub timeout: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkSection {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    #[serde(default = "defaults::initial_backoff")]
    pub initial_backoff: HumanDuration,
    #[serde(default = "defaults::max_backoff")]
    pub max_backoff: HumanDuration,
    /// Failures charged to one message (not to an unreachable channel) before it is
    /// dead-lettered.
    #[serde(default = "defaults::notify_max_attempts")]
    pub max_attempts: u32,
    /// A message not delivered within this time is dead-lettered.
    #[serde(default = "defaults::notify_max_age")]
    pub max_age: HumanDuration,
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            initial_backoff: defaults::initial_backoff(),
            max_backoff: defaults::max_backoff(),
            max_attempts: defaults::notify_max_attempts(),
            max_age: defaults::notify_max_age(),
        }
    }
}

/// When a channel's backlog is sent as digests instead of one message at a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSection {
    /// More pending messages than this on a channel are a flood: they go out as digests.
    #[serde(default = "defaults::digest_threshold")]
    pub threshold: u32,
    /// Incidents in one digest.
    #[serde(default = "defaults::digest_max_items")]
    pub max_items: u32,
}

impl Default for DigestSection {
    fn default() -> Self {
        Self { threshold: defaults::digest_threshold(), max_items: defaults::digest_max_items() }
    }
}

/// Global defaults for actions; a watch's `action` overrides them field by field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDefaults {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "defaults::cooldown")]
    pub cooldown: HumanDuration,
    #[serde(default)]
    pub scale: ScaleDefaults,
}

impl Default for ActionDefaults {
    fn default() -> Self {
        Self { dry_run: false, cooldown: defaults::cooldown(), scale: ScaleDefaults::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleDefaults {
    #[serde(default = "defaults::min_replicas")]
    pub min_replicas: i32,
    #[serde(default = "defaults::max_replicas")]
    pub max_replicas: i32,
    #[serde(default = "defaults::step")]
    pub step: i32,
}

impl Default for ScaleDefaults {
    fn default() -> Self {
        Self { min_replicas: defaults::min_replicas(), max_replicas: defaults::max_replicas(), step: defaults::step() }
    }
}

/// One metric watch: a PromQL query evaluated on an interval through a detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    pub name: String,
    /// The PromQL query (every detector kind but `multivariate`).
    #[serde(default)]
    pub query: Option<String>,
    /// Named PromQL queries, one per feature (`multivariate` only).
    #[serde(default)]
    pub queries: std::collections::BTreeMap<String, String>,
    #[serde(default = "defaults::interval")]
    pub interval: HumanDuration,
    #[serde(default = "defaults::query_step")]
    pub step: HumanDuration,
    #[serde(default = "defaults::lookback")]
    pub lookback: HumanDuration,
    /// Evaluate at `now - offset` (tolerates ingestion delay).
    #[serde(default)]
    pub offset: HumanDuration,
    /// Labels whose values identify one target (and one incident) among the series returned.
    #[serde(default)]
    pub identity: Vec<String>,
    /// The Deployment to act on, with `{label}` placeholders filled from identity labels.
    pub target: Option<TargetTemplate>,
    #[serde(default)]
    pub severity: Severity,
    /// Evaluations in a row with data and without anomaly before an incident resolves.
    #[serde(default = "defaults::resolve_after")]
    pub resolve_after: u32,
    /// The detector; `auto` (a calibrated default) when the watch names none.
    #[serde(default)]
    pub detector: DetectorSpec,
    pub action: Option<WatchAction>,
}

/// Which detector a watch uses (`kind`), with its parameters (the other keys). The
/// parameters are checked by the detector's own closed schema (see `docs/detectors.md`) once,
/// when the spec is read: the typed result is kept for every evaluation, or the problems
/// found, each naming its parameter, which validation reports under the watch's YAML path.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawDetectorSpec")]
pub struct DetectorSpec {
    pub kind: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    parsed: Result<crate::ingest::watch_kind::WatchKind, Vec<crate::ingest::watch_kind::SpecError>>,
}

/// `detector:` as written.
#[derive(Deserialize)]
struct RawDetectorSpec {
    kind: String,
    #[serde(flatten)]
    params: serde_json::Map<String, serde_json::Value>,
}

impl From<RawDetectorSpec> for DetectorSpec {
    fn from(raw: RawDetectorSpec) -> Self {
        Self::new(raw.kind, raw.params)
    }
}

impl Default for DetectorSpec {
    fn default() -> Self {
        Self::new(warden_detectors::registry::DEFAULT.to_string(), serde_json::Map::new())
    }
}

impl DetectorSpec {
    /// Parse and check detector `kind` with `params`.
    pub fn new(kind: String, params: serde_json::Map<String, serde_json::Value>) -> Self {
        let parsed = crate::ingest::watch_kind::WatchKind::parse(&kind, &params);
        Self { kind, params, parsed }
    }

    pub fn name(&self) -> &str {
        &self.kind
    }

    /// The checked, typed detector configuration, or every problem with it as
    /// `(parameter, message)` (the parameter is empty for the detector as a whole).
    pub fn watch_kind(&self) -> Result<&crate::ingest::watch_kind::WatchKind, &[crate::ingest::watch_kind::SpecError]> {
        self.parsed.as_ref().map_err(Vec::as_slice)
    }

    /// A fresh detector for one series.
    pub fn build(&self) -> Result<Box<dyn warden_detectors::Detector>, warden_detectors::Error> {
        match &self.parsed {
            Ok(crate::ingest::watch_kind::WatchKind::Single(config)) => config.build(),
            Ok(_) => Err(warden_detectors::Error::InvalidParam {
                name: "detector",
                message: format!("`{}` does not judge one series at a time", self.kind),
            }),
            Err(problems) => {
                let (param, message) = problems.first().cloned().unwrap_or_default();
                Err(warden_detectors::Error::InvalidParam {
                    name: "detector",
                    message: format!("parameter {param}: {message}"),
                })
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchAction {
    /// Run this playbook (built-in or from `playbooks.dir`) on the incident's target.
    pub playbook: Option<String>,
    /// Parameters for `playbook`.
    #[serde(default)]
    pub params: BTreeMap<String, warden_playbooks::spec::Arg>,
    /// Shorthand for a one-step scale playbook with these bounds.
    pub scale: Option<ScaleOverride>,
    pub cooldown: Option<HumanDuration>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOverride {
    pub min_replicas: Option<i32>,
    pub max_replicas: Option<i32>,
    pub step: Option<i32>,
}

mod defaults {
    use super::*;
    use std::time::Duration;

    pub fn yes() -> bool {
        true
    }

    pub fn analysis_lookback() -> HumanDuration {
        HumanDuration(Duration::from_secs(30 * 60))
    }

    pub fn model_device() -> String {
        "cpu".into()
    }

    pub fn model_max_tokens() -> usize {
        160
    }

    pub fn model_time_budget() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }

    pub fn prometheus_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn lease_name() -> String {
        "warden".into()
    }
    pub fn lease_duration() -> HumanDuration {
        HumanDuration(Duration::from_secs(15))
    }
    pub fn renew_deadline() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn retry_period() -> HumanDuration {
        HumanDuration(Duration::from_secs(2))
    }
    pub fn notify_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn sqlite_path() -> PathBuf {
        PathBuf::from("warden.db")
    }
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn header_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn body_read_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn max_connections() -> usize {
        1024
    }
    pub fn reserved_connections() -> usize {
        16
    }
    pub fn smtp_port() -> u16 {
        25
    }
    pub fn smtp_tls() -> SmtpTlsMode {
        SmtpTlsMode::Starttls
    }
    pub fn initial_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(1))
    }
    pub fn max_backoff() -> HumanDuration {
        HumanDuration(Duration::from_secs(300))
    }
    pub fn notify_max_attempts() -> u32 {
        10
    }
    pub fn notify_max_age() -> HumanDuration {
        HumanDuration(Duration::from_secs(24 * 3600))
    }
    pub fn digest_threshold() -> u32 {
        20
    }
    pub fn digest_max_items() -> u32 {
        50
    }
    pub fn cooldown() -> HumanDuration {
        HumanDuration(Duration::from_secs(600))
    }
    pub fn min_replicas() -> i32 {
        1
    }
    pub fn max_replicas() -> i32 {
        10
    }
    pub fn step() -> i32 {
        1
    }
    pub fn interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn query_step() -> HumanDuration {
        HumanDuration(Duration::from_secs(15))
    }
    pub fn lookback() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    pub fn resolve_after() -> u32 {
        3
    }
    pub fn loki_page() -> u32 {
        1000
    }
    pub fn loki_max_entries() -> usize {
        100_000
    }
    pub fn log_start_lookback() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
    pub fn log_offset() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub fn log_resolve_after() -> u32 {
        10
    }
    pub fn log_open_on() -> Vec<LogSignalKind> {
        vec![LogSignalKind::NewTemplate, LogSignalKind::RateChange, LogSignalKind::ErrorBurst]
    }
}
