//! Runs one scale action with its audit trail.
//!
//! Order matters for safety: the intent is recorded *before* the request is sent, and the
//! outcome after; if the record cannot be written the request is not sent. A crash between the
//! two leaves a `pending` record that [`ScaleExecutor::reconcile_pending`] settles on restart by
//! reading the cluster, never by sending again.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::cluster::{Cluster, WorkloadRef};
use crate::scale::{plan_scale, Guard, Refusal, ScaleDecision, ScalePolicy};
use crate::{Error, Result};

/// Lifecycle of an action record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Recorded, request possibly sent, outcome not yet known.
    Pending,
    Succeeded,
    Failed,
    /// A guard refused; nothing was sent.
    Refused,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::Succeeded => "succeeded",
            ActionStatus::Failed => "failed",
            ActionStatus::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ActionStatus::Pending,
            "succeeded" => ActionStatus::Succeeded,
            "failed" => ActionStatus::Failed,
            "refused" => ActionStatus::Refused,
            _ => return None,
        })
    }
}

/// One row of the audit trail for actions: who/what/why, the request and the response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRecord {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub kind: String,
    pub target: WorkloadRef,
    pub actor: String,
    pub reason: String,
    pub from_replicas: Option<i32>,
    pub to_replicas: Option<i32>,
    pub dry_run: bool,
    pub status: ActionStatus,
    pub request: serde_json::Value,
    pub response: Option<serde_json::Value>,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Durable storage of action records. Implementations must persist before returning.
pub trait ActionLog: Send + Sync {
    /// Insert a new record (its `id` is ignored) and return the stored id.
    fn insert(&self, record: &ActionRecord) -> std::result::Result<i64, String>;
    /// Set the final status, response and message of a record.
    fn finish(
        &self,
        id: i64,
        status: ActionStatus,
        response: Option<&serde_json::Value>,
        message: Option<&str>,
        at: DateTime<Utc>,
    ) -> std::result::Result<(), String>;
    /// Time of the last action on `target` that reached (or may have reached) the cluster.
    fn last_action_at(&self, target: &WorkloadRef) -> std::result::Result<Option<DateTime<Utc>>, String>;
    /// Records left `pending` by a crash.
    fn pending(&self) -> std::result::Result<Vec<ActionRecord>, String>;
}

/// Everything needed to decide and run one scale action.
#[derive(Debug, Clone)]
pub struct ScaleRequest {
    pub incident_id: Option<i64>,
    pub target: WorkloadRef,
    pub policy: ScalePolicy,
    /// Who asked (e.g. `watch/checkout-latency`).
    pub actor: String,
    /// Why, in words (e.g. the anomaly that triggered it).
    pub reason: String,
    /// Whether the triggering signal had data; without it nothing is done.
    pub has_data: bool,
    pub now: DateTime<Utc>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ExecutionOutcome {
    Applied { action_id: i64, from: i32, to: i32, dry_run: bool },
    Refused { action_id: i64, refusal: Refusal },
    Failed { action_id: i64, message: String },
}

/// Runs scale actions against a [`Cluster`], recording them in an [`ActionLog`].
pub struct ScaleExecutor<'a> {
    pub cluster: &'a dyn Cluster,
    pub log: &'a dyn ActionLog,
}

impl<'a> ScaleExecutor<'a> {
    pub fn new(cluster: &'a dyn Cluster, log: &'a dyn ActionLog) -> Self {
        Self { cluster, log }
    }

    /// Decide and, if allowed, apply one scale step. Every path leaves exactly one record.
    pub async fn execute(&self, req: &ScaleRequest) -> Result<ExecutionOutcome> {
        let base = ActionRecord {
            id: 0,
            incident_id: req.incident_id,
            kind: "scale".into(),
            target: req.target.clone(),
            actor: req.actor.clone(),
            reason: req.reason.clone(),
            from_replicas: None,
            to_replicas: None,
            dry_run: req.policy.dry_run,
            status: ActionStatus::Pending,
            request: json!({}),
            response: None,
            message: None,
            created_at: req.now,
            finished_at: None,
        };

        if !req.has_data {
            return self.refuse(base, Refusal { guard: Guard::NoData, reason: "the triggering signal has no data".into() });
        }
        let last = self.log.last_action_at(&req.target).map_err(Error::ActionLog)?;
        let state = match self.cluster.get_replicas(&req.target).await {
            Ok(s) => s,
            Err(e) => {
                let message = format!("reading the scale of {}: {}", req.target, e.message);
                let record = ActionRecord {
                    status: ActionStatus::Failed,
                    request: json!({"op": "get_scale", "namespace": req.target.namespace, "name": req.target.name}),
                    message: Some(message.clone()),
                    finished_at: Some(req.now),
                    ..base
                };
                let action_id = self.log.insert(&record).map_err(Error::ActionLog)?;
                return Ok(ExecutionOutcome::Failed { action_id, message });
            }
        };

        let (from, to) = match plan_scale(&req.policy, state.desired, last, req.now, req.has_data) {
            ScaleDecision::Refuse(refusal) => {
                return self.refuse(ActionRecord { from_replicas: Some(state.desired), ..base }, refusal)
            }
            ScaleDecision::Scale { from, to } => (from, to),
        };

        let request = json!({
            "op": "patch_scale",
            "namespace": req.target.namespace,
            "name": req.target.name,
            "patch": {"spec": {"replicas": to}},
            "dry_run": req.policy.dry_run,
        });
        let pending = ActionRecord { from_replicas: Some(from), to_replicas: Some(to), request, ..base };
        // Recorded before sending: no record, no request.
        let action_id = self.log.insert(&pending).map_err(Error::ActionLog)?;

        match self.cluster.set_replicas(&req.target, to, req.policy.dry_run).await {
            Ok(outcome) => {
                self.log
                    .finish(action_id, ActionStatus::Succeeded, Some(&outcome.response), None, req.now)
                    .map_err(Error::ActionLog)?;
                Ok(ExecutionOutcome::Applied { action_id, from, to, dry_run: outcome.dry_run })
            }
            Err(e) => {
                let message = format!("patching the scale of {}: {}", req.target, e.message);
                self.log
                    .finish(action_id, ActionStatus::Failed, None, Some(&message), req.now)
                    .map_err(Error::ActionLog)?;
                Ok(ExecutionOutcome::Failed { action_id, message })
            }
        }
    }

    fn refuse(&self, base: ActionRecord, refusal: Refusal) -> Result<ExecutionOutcome> {
        let record = ActionRecord {
            status: ActionStatus::Refused,
            message: Some(format!("refused by guard {:?}: {}", refusal.guard, refusal.reason)),
            finished_at: Some(base.created_at),
            ..base
        };
        let action_id = self.log.insert(&record).map_err(Error::ActionLog)?;
        Ok(ExecutionOutcome::Refused { action_id, refusal })
    }

    /// Settle records left `pending` by a crash: the cluster is read, never written. A record
    /// whose target already has the requested replicas succeeded; any other is marked failed
    /// (interrupted), and the next evaluation decides afresh under the usual guards.
    pub async fn reconcile_pending(&self, now: DateTime<Utc>) -> Result<Vec<(i64, ActionStatus)>> {
        let mut settled = Vec::new();
        for rec in self.log.pending().map_err(Error::ActionLog)? {
            let (status, message) = match (rec.dry_run, rec.to_replicas) {
                (true, _) => (ActionStatus::Failed, "interrupted dry-run; not repeated".to_string()),
                (false, Some(to)) => match self.cluster.get_replicas(&rec.target).await {
                    Ok(s) if s.desired == to => {
                        (ActionStatus::Succeeded, format!("confirmed after restart: {} has {to} replicas", rec.target))
                    }
                    Ok(s) => (
                        ActionStatus::Failed,
                        format!("interrupted: {} has {} replicas, not {to}; not re-sent", rec.target, s.desired),
                    ),
                    Err(e) => (ActionStatus::Failed, format!("interrupted; state unknown ({}); not re-sent", e.message)),
                },
                (false, None) => (ActionStatus::Failed, "interrupted before a target was chosen".to_string()),
            };
            self.log.finish(rec.id, status, None, Some(&message), now).map_err(Error::ActionLog)?;
            settled.push((rec.id, status));
        }
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome};
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct FakeCluster {
        replicas: Mutex<i32>,
        patches: Mutex<Vec<(i32, bool)>>,
        fail_patch: bool,
    }

    #[async_trait]
    impl Cluster for FakeCluster {
        async fn get_replicas(&self, _t: &WorkloadRef) -> std::result::Result<ReplicaState, ClusterError> {
            let r = *self.replicas.lock().map_err(|_| ClusterError::new(ClusterErrorKind::Other, "poisoned"))?;
            Ok(ReplicaState { desired: r, current: r })
        }
        async fn set_replicas(
            &self,
            _t: &WorkloadRef,
            replicas: i32,
            dry_run: bool,
        ) -> std::result::Result<SetReplicasOutcome, ClusterError> {
            self.patches.lock().map_err(|_| ClusterError::new(ClusterErrorKind::Other, "poisoned"))?.push((replicas, dry_run));
            if self.fail_patch {
                return Err(ClusterError::new(ClusterErrorKind::Conflict, "409 Conflict"));
            }
            if !dry_run {
                *self.replicas.lock().map_err(|_| ClusterError::new(ClusterErrorKind::Other, "poisoned"))? = replicas;
            }
            Ok(SetReplicasOutcome { replicas, dry_run, response: json!({"spec": {"replicas": replicas}}) })
        }
    }

    #[derive(Default)]
    struct MemLog {
        rows: Mutex<Vec<ActionRecord>>,
        fail_insert: bool,
    }

    impl ActionLog for MemLog {
        fn insert(&self, record: &ActionRecord) -> std::result::Result<i64, String> {
            if self.fail_insert {
                return Err("disk full".into());
            }
            let mut rows = self.rows.lock().map_err(|e| e.to_string())?;
            let id = rows.len() as i64 + 1;
            rows.push(ActionRecord { id, ..record.clone() });
            Ok(id)
        }
        fn finish(
            &self,
            id: i64,
            status: ActionStatus,
            response: Option<&serde_json::Value>,
            message: Option<&str>,
            at: DateTime<Utc>,
        ) -> std::result::Result<(), String> {
            let mut rows = self.rows.lock().map_err(|e| e.to_string())?;
            let row = rows.iter_mut().find(|r| r.id == id).ok_or("no such record")?;
            row.status = status;
            row.response = response.cloned();
            row.message = message.map(str::to_string);
            row.finished_at = Some(at);
            Ok(())
        }
        fn last_action_at(&self, target: &WorkloadRef) -> std::result::Result<Option<DateTime<Utc>>, String> {
            let rows = self.rows.lock().map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .filter(|r| &r.target == target && r.status != ActionStatus::Refused)
                .map(|r| r.created_at)
                .max())
        }
        fn pending(&self) -> std::result::Result<Vec<ActionRecord>, String> {
            let rows = self.rows.lock().map_err(|e| e.to_string())?;
            Ok(rows.iter().filter(|r| r.status == ActionStatus::Pending).cloned().collect())
        }
    }

    fn request(now_secs: i64) -> ScaleRequest {
        ScaleRequest {
            incident_id: Some(7),
            target: WorkloadRef::new("shop", "checkout"),
            policy: ScalePolicy { min_replicas: 1, max_replicas: 4, step: 1, cooldown: Duration::from_secs(300), dry_run: false },
            actor: "watch/latency".into(),
            reason: "p95 latency anomalous".into(),
            has_data: true,
            now: DateTime::from_timestamp(1_700_000_000 + now_secs, 0).expect("valid time"),
        }
    }

    #[tokio::test]
    async fn applies_then_cooldown_refuses() {
        let cluster = FakeCluster { replicas: Mutex::new(2), ..Default::default() };
        let log = MemLog::default();
        let ex = ScaleExecutor::new(&cluster, &log);
        let out = ex.execute(&request(0)).await.expect("executes");
        assert_eq!(out, ExecutionOutcome::Applied { action_id: 1, from: 2, to: 3, dry_run: false });
        let out = ex.execute(&request(10)).await.expect("executes");
        match out {
            ExecutionOutcome::Refused { refusal, .. } => assert_eq!(refusal.guard, Guard::Cooldown),
            other => panic!("expected cooldown refusal, got {other:?}"),
        }
        assert_eq!(*cluster.patches.lock().expect("lock"), vec![(3, false)]);
        let rows = log.rows.lock().expect("lock");
        assert_eq!(rows[0].status, ActionStatus::Succeeded);
        assert_eq!(rows[0].request["patch"]["spec"]["replicas"], 3);
        assert!(rows[0].response.is_some());
        assert_eq!(rows[1].status, ActionStatus::Refused);
    }

    #[tokio::test]
    async fn no_data_never_reaches_the_cluster() {
        let cluster = FakeCluster { replicas: Mutex::new(2), ..Default::default() };
        let log = MemLog::default();
        let out = ScaleExecutor::new(&cluster, &log)
            .execute(&ScaleRequest { has_data: false, ..request(0) })
            .await
            .expect("executes");
        assert!(matches!(out, ExecutionOutcome::Refused { refusal: Refusal { guard: Guard::NoData, .. }, .. }));
        assert!(cluster.patches.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn unrecordable_action_is_not_sent() {
        let cluster = FakeCluster { replicas: Mutex::new(2), ..Default::default() };
        let log = MemLog { fail_insert: true, ..Default::default() };
        let err = ScaleExecutor::new(&cluster, &log).execute(&request(0)).await.expect_err("must fail");
        assert!(matches!(err, Error::ActionLog(_)));
        assert!(cluster.patches.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn failed_patch_is_recorded_as_failed() {
        let cluster = FakeCluster { replicas: Mutex::new(2), fail_patch: true, ..Default::default() };
        let log = MemLog::default();
        let out = ScaleExecutor::new(&cluster, &log).execute(&request(0)).await.expect("executes");
        assert!(matches!(out, ExecutionOutcome::Failed { action_id: 1, .. }));
        let rows = log.rows.lock().expect("lock");
        assert_eq!(rows[0].status, ActionStatus::Failed);
        assert!(rows[0].message.as_deref().unwrap_or("").contains("409"));
    }

    #[tokio::test]
    async fn reconcile_confirms_or_fails_without_writing() {
        let cluster = FakeCluster { replicas: Mutex::new(3), ..Default::default() };
        let log = MemLog::default();
        let base = ActionRecord {
            id: 0,
            incident_id: None,
            kind: "scale".into(),
            target: WorkloadRef::new("shop", "checkout"),
            actor: "t".into(),
            reason: "t".into(),
            from_replicas: Some(2),
            to_replicas: Some(3),
            dry_run: false,
            status: ActionStatus::Pending,
            request: json!({}),
            response: None,
            message: None,
            created_at: request(0).now,
            finished_at: None,
        };
        log.insert(&base).expect("insert");
        log.insert(&ActionRecord { to_replicas: Some(4), ..base }).expect("insert");
        let settled = ScaleExecutor::new(&cluster, &log).reconcile_pending(request(5).now).await.expect("reconciles");
        assert_eq!(settled, vec![(1, ActionStatus::Succeeded), (2, ActionStatus::Failed)]);
        assert!(cluster.patches.lock().expect("lock").is_empty());
        assert!(log.pending().expect("pending").is_empty());
    }
}
