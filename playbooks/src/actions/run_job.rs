//! `run_job:` create a Job from a template and wait for it to finish.
//!
//! The Job's name carries the run, the step and the installation, so a resumed run finds
//! the Job it created instead of creating a second one, and a Job of another installation's
//! run of the same number is never taken for this run's.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{applied_after_all_result, Action, Ctx, Planned, Sent, StepError};
use crate::cluster::{Cluster, ClusterError, ClusterErrorKind, JobPhase};
use crate::duration::HumanDuration;
use crate::guards;
use crate::load::{is_dns_label, Checker, Lit};
use crate::run::Phase;
use crate::spec::{Arg, TargetKind};

/// How often a Job's status is looked at when the step does not say.
pub const DEFAULT_JOB_POLL: Duration = Duration::from_secs(10);

/// Create a Job from a template and wait for it to finish.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunJobStep {
    /// Defaults to the target's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Arg>,
    /// The Job is named `<name_prefix>-<run id>-<step>`, so a resumed run finds the Job it
    /// created instead of creating a second one.
    pub name_prefix: String,
    /// A `batch/v1` Job `spec` (YAML); strings in it may be templated.
    pub spec: serde_yaml::Value,
    /// Labels for the Job (templated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Arg>,
    /// Give up (and fail the step) after this long.
    pub timeout: HumanDuration,
    /// How often to look at the Job's status; 10s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<HumanDuration>,
}

/// Create `job` as `namespace/name`, then look at it every `poll_secs` until `deadline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJobPlan {
    pub namespace: String,
    pub name: String,
    pub job: Value,
    pub deadline: DateTime<Utc>,
    #[serde(default = "default_poll_secs")]
    pub poll_secs: f64,
}

fn default_poll_secs() -> f64 {
    DEFAULT_JOB_POLL.as_secs_f64()
}

#[async_trait]
impl Action for RunJobStep {
    const KEY: &'static str = "run_job";
    const MUTATING: bool = true;
    type Plan = RunJobPlan;
    const EXAMPLE: &'static str = "{name_prefix: migrate, timeout: 5m, spec: {template: {spec: {restartPolicy: Never, containers: [{name: migrate, image: 'busybox:1.36'}]}}}}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        let target = c.playbook().target;
        match &self.namespace {
            Some(a) => {
                c.arg(&format!("{at}.namespace"), a, Lit::Label);
            }
            None if target == TargetKind::Deployment => {}
            None => c.err(at, format!("needs `namespace:` (it defaults to the target's namespace, and the target is `{target}`)")),
        }
        if !is_dns_label(&self.name_prefix) {
            c.err(
                format!("{at}.name_prefix"),
                format!("`{}` must be a DNS-1123 label (lower-case letters, digits, `-`)", self.name_prefix),
            );
        }
        match &self.spec {
            serde_yaml::Value::Mapping(m) if m.contains_key(serde_yaml::Value::String("template".into())) => {}
            serde_yaml::Value::Mapping(_) => c.err(format!("{at}.spec"), "a Job spec needs `template` (the pod template)"),
            _ => c.err(format!("{at}.spec"), "must be a mapping: the `spec` of a batch/v1 Job"),
        }
        c.tree(&format!("{at}.spec"), &self.spec);
        for (k, v) in &self.labels {
            if k.is_empty() || k.len() > 317 || k.chars().any(char::is_whitespace) {
                c.err(format!("{at}.labels"), format!("`{k}` is not a valid label name"));
            }
            c.arg(&format!("{at}.labels.{k}"), v, Lit::Text);
        }
        c.positive(&format!("{at}.timeout"), self.timeout.get());
        if let Some(p) = self.poll {
            c.positive(&format!("{at}.poll"), p.get());
            if p > self.timeout {
                c.err(format!("{at}.poll"), "must not be longer than `timeout`");
            }
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<RunJobPlan>, StepError> {
        let run = cx.run;
        let namespace = match (&self.namespace, &run.target) {
            (Some(n), _) => cx.render(n.as_str())?,
            (None, Some(t)) if t.kind == TargetKind::Deployment => t.namespace.clone(),
            _ => return Err(StepError::Failed("run_job needs `namespace`".into())),
        };
        guards::check_namespace(&run.guards, &namespace).map_err(StepError::Refused)?;
        let index = cx.index;
        let (step, step_key) = match cx.phase {
            Phase::Main => (format!("{}-{}", run.id, index + 1), format!("run-{}-step-{}", run.id, index + 1)),
            Phase::Revert => (format!("{}-r{}", run.id, index + 1), format!("run-{}-revert-{}", run.id, index + 1)),
        };
        // The installation (store) is part of the name and the labels: a Job another
        // store's run of the same number made is neither found nor adopted.
        let installation = cx.store.installation_id().map_err(|e| StepError::Failed(e.to_string()))?;
        let suffix = match &installation {
            Some(id) => format!("{}-{step}", short_installation_id(id)),
            None => step,
        };
        let name = job_name(&self.name_prefix, &suffix);
        let spec = cx.render_tree(&self.spec)?;
        let mut labels = serde_json::Map::new();
        for (k, v) in &self.labels {
            labels.insert(k.clone(), json!(cx.render(v.as_str())?));
        }
        labels.insert("app.kubernetes.io/managed-by".into(), json!("warden"));
        labels.insert("warden.io/run".into(), json!(run.id.to_string()));
        labels.insert("warden.io/step".into(), json!(step_key));
        if let Some(id) = &installation {
            labels.insert("warden.io/installation".into(), json!(id));
        }
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec,
        });
        let deadline = crate::time::after(cx.now, self.timeout.get())
            .ok_or_else(|| StepError::Failed(format!("run_job.timeout {} puts the deadline out of range", self.timeout)))?;
        let poll = self.poll.map(|p| p.get()).unwrap_or(DEFAULT_JOB_POLL);
        Ok(Planned::Request(RunJobPlan { namespace, name, job, deadline, poll_secs: poll.as_secs_f64() }))
    }

    async fn apply(plan: &RunJobPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let (ns, name) = (&plan.namespace, &plan.name);
        let out = cx.cluster()?.create_job(ns, &plan.job, cx.dry_run()).await?;
        if cx.dry_run() {
            return Ok(Sent::Done(
                json!({"created": out.created, "response": out.response, "summary": format!("created job {ns}/{name}{}", cx.dry_note())}),
            ));
        }
        let poll = plan.poll_secs;
        let wake =
            crate::time::after_secs(cx.now, poll).ok_or_else(|| StepError::Failed(format!("job poll interval {poll}s is out of range")))?;
        Ok(Sent::Wait(wake, json!({"created": out.created, "job": format!("{ns}/{name}")})))
    }

    async fn poll(plan: &RunJobPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let (ns, name) = (&plan.namespace, &plan.name);
        let status = cx.cluster()?.job_status(ns, name).await?;
        match status.phase {
            JobPhase::Succeeded => Ok(Sent::Done(
                json!({"job": format!("{ns}/{name}"), "status": status.status, "summary": format!("job {ns}/{name} succeeded")}),
            )),
            JobPhase::Failed { reason } => Err(StepError::Failed(format!("job {ns}/{name} failed: {reason}"))),
            JobPhase::Running => {
                let deadline = plan.deadline;
                if cx.now >= deadline {
                    return Err(StepError::Failed(format!("job {ns}/{name} did not finish before its timeout ({deadline})")));
                }
                let wake = crate::time::after_secs(cx.now, plan.poll_secs).unwrap_or(deadline).min(deadline);
                Ok(Sent::Wait(wake, json!({"job": format!("{ns}/{name}"), "status": status.status})))
            }
        }
    }

    async fn read_back(plan: &RunJobPlan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        match cluster.job_status(&plan.namespace, &plan.name).await {
            Ok(_) => Ok(Some(true)),
            Err(e) if e.kind == ClusterErrorKind::NotFound => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }

    /// A Job found created is then waited for like one whose answer came back.
    fn applied_after_all(plan: &RunJobPlan, now: DateTime<Utc>) -> Sent {
        let mut result = applied_after_all_result(&Self::describe(plan));
        let wake = now + chrono::Duration::milliseconds((plan.poll_secs * 1000.0) as i64);
        result["job"] = json!(format!("{}/{}", plan.namespace, plan.name));
        Sent::Wait(wake, result)
    }

    fn namespace(plan: &RunJobPlan) -> Option<&str> {
        Some(&plan.namespace)
    }

    fn describe(plan: &RunJobPlan) -> String {
        format!("run Job {}/{} and wait for it", plan.namespace, plan.name)
    }
}

/// The part of an installation id that goes into Job names: its first 8 characters that
/// are lower-case letters or digits.
pub fn short_installation_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).take(8).collect()
}

/// A DNS-1123 Job name: `<prefix>-<suffix>`, lower case, at most 63 characters.
pub fn job_name(prefix: &str, suffix: &str) -> String {
    let clean: String = prefix.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let head: String = clean.chars().take(room).collect();
    format!("{}-{suffix}", head.trim_matches('-'))
}
