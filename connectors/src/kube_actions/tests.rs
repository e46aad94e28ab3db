//! Unit tests of the actions' pure parts: rollback resolution by revision, merge-patch diffs,
//! Job ownership, selectors and terminating pods.

use super::*;
use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

fn job(status: JobStatus) -> Job {
    Job { spec: Some(JobSpec { backoff_limit: Some(2), ..JobSpec::default() }), status: Some(status), ..Job::default() }
}

fn condition(kind: &str, status: &str, reason: Option<&str>) -> JobCondition {
    JobCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message: reason.map(|r| format!("because {r}")),
        ..JobCondition::default()
    }
}

#[test]
fn job_phase_follows_conditions_then_counts() {
    assert_eq!(job_phase(&Job::default()), JobPhase::Running);
    let active = job(JobStatus { active: Some(1), failed: Some(2), ..JobStatus::default() });
    assert_eq!(job_phase(&active), JobPhase::Running);
    let complete = job(JobStatus {
        conditions: Some(vec![condition("Complete", "True", None)]),
        succeeded: Some(1),
        ..JobStatus::default()
    });
    assert_eq!(job_phase(&complete), JobPhase::Succeeded);
    let not_yet =
        job(JobStatus { conditions: Some(vec![condition("Complete", "False", None)]), ..JobStatus::default() });
    assert_eq!(job_phase(&not_yet), JobPhase::Running);
    let failed = job(JobStatus {
        conditions: Some(vec![
            condition("FailureTarget", "True", Some("DeadlineExceeded")),
            condition("Failed", "True", Some("DeadlineExceeded")),
        ]),
        ..JobStatus::default()
    });
    assert_eq!(
        job_phase(&failed),
        JobPhase::Failed { reason: "DeadlineExceeded".into(), message: "because DeadlineExceeded".into() }
    );
    let by_count = job(JobStatus { failed: Some(3), ..JobStatus::default() });
    assert!(matches!(job_phase(&by_count), JobPhase::Failed { reason, .. } if reason == "BackoffLimitExceeded"));
    let succeeded_by_count = job(JobStatus { succeeded: Some(1), ..JobStatus::default() });
    assert_eq!(job_phase(&succeeded_by_count), JobPhase::Succeeded);
}

#[test]
fn merge_patch_diff_replaces_exactly() {
    let from = json!({"metadata": {"labels": {"app": "web", "x": "1"}},
                      "spec": {"containers": [{"name": "web", "image": "a"}], "dnsPolicy": "Default"}});
    let to = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"k": "v"}},
                    "spec": {"containers": [{"name": "web", "image": "b"}]}});
    let patch = merge_patch_diff(&from, &to);
    assert_eq!(
        patch,
        json!({"metadata": {"labels": {"x": null}, "annotations": {"k": "v"}},
               "spec": {"containers": [{"name": "web", "image": "b"}], "dnsPolicy": null}})
    );
}

#[test]
fn selectors_render_in_query_syntax() {
    let selector = LabelSelector {
        match_labels: Some([("app".to_string(), "web".to_string())].into()),
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            },
            LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
        ]),
    };
    assert_eq!(selector_string(&selector).ok().flatten().as_deref(), Some("app=web,tier in (a,b),!canary"));
    assert_eq!(selector_string(&LabelSelector::default()).ok().flatten(), None);
    let bad = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "k".into(),
            operator: "Near".into(),
            values: None,
        }]),
        ..LabelSelector::default()
    };
    assert!(selector_string(&bad).is_err());
}

fn replica_set(name: &str, revision: i64, history: Option<&str>, image: &str) -> ReplicaSet {
    let mut annotations = std::collections::BTreeMap::from([(REVISION_ANNOTATION.to_string(), revision.to_string())]);
    if let Some(h) = history {
        annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), h.to_string());
    }
    let value = json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: name}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
    });
    serde_json::from_value(value).unwrap()
}

fn deployment(annotation: i64, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "annotations": {REVISION_ANNOTATION: annotation.to_string()}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
    }))
    .unwrap()
}

fn plan(d: &Deployment, sets: &[ReplicaSet], to: Option<i64>) -> Result<RollbackPlan> {
    resolve_rollback("api (deployment shop/web)", "shop", "web", d, sets, to).map(|r| r.plan)
}

#[test]
fn rollback_revisions_come_from_the_replica_sets_not_the_annotation() {
    // A rollback from v2 (revision 2) to v1: the controller renumbered v1's ReplicaSet
    // to 3 but has not yet updated the Deployment's annotation, which still says 2.
    let sets = [replica_set("web-a", 3, Some("1"), "web:1"), replica_set("web-b", 2, None, "web:2")];
    let lagging = deployment(2, "web:1");
    let p = plan(&lagging, &sets, None).unwrap();
    assert_eq!((p.from_revision, p.to_revision, p.replica_set.as_str(), p.unchanged), (3, 2, "web-b", false));
    // The same target by its old number, through revision-history: already in place.
    let p = plan(&lagging, &sets, Some(1)).unwrap();
    assert_eq!((p.from_revision, p.to_revision, p.replica_set.as_str(), p.unchanged), (3, 1, "web-a", true));
    let p = plan(&lagging, &sets, Some(3)).unwrap();
    assert!(p.unchanged);
    let err = plan(&lagging, &sets, Some(7)).unwrap_err();
    assert!(err.to_string().contains("no revision 7 (known revisions: 2, 3)"), "{err}");
    // Only one revision: nothing to go back to.
    let err = plan(&deployment(1, "web:1"), &[replica_set("web-a", 1, None, "web:1")], None).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("no revision older than 1"), "{err}");
    // No ReplicaSet with the current template yet: the controller is behind (retryable).
    let err = plan(&deployment(2, "web:9"), &sets, None).unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn a_job_is_ours_only_with_every_requested_label() {
    let with = |labels: &[(&str, &str)]| Job {
        metadata: ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..ObjectMeta::default()
        },
        ..Job::default()
    };
    let ours = with(&[("warden.io/run", "16"), ("warden.io/installation", "abc")]);
    assert!(job_owner_differences(
        &ours,
        &with(&[("warden.io/run", "16"), ("warden.io/installation", "abc"), ("extra", "x")])
    )
    .is_empty());
    let other_store =
        job_owner_differences(&ours, &with(&[("warden.io/run", "16"), ("warden.io/installation", "def")]));
    assert_eq!(other_store, vec!["label warden.io/installation is \"def\", not \"abc\"".to_string()]);
    let by_hand = job_owner_differences(&ours, &Job::default());
    assert_eq!(by_hand.len(), 2, "{by_hand:?}");
}

#[test]
fn conflict_backoff_grows_with_jitter_and_a_cap() {
    for attempt in 1..=10 {
        let base = Duration::from_millis(50 * (1u64 << (attempt - 1).min(5))).min(Duration::from_secs(1));
        let pause = conflict_backoff(attempt);
        assert!(pause >= base / 2 && pause <= base, "attempt {attempt}: {pause:?} vs {base:?}");
    }
}

#[test]
fn hash_label_is_dropped() {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(
                [("app".to_string(), "web".to_string()), (POD_TEMPLATE_HASH_LABEL.to_string(), "abc".to_string())]
                    .into(),
            ),
            ..ObjectMeta::default()
        }),
        spec: None,
    };
    let labels = without_hash_label(template).metadata.and_then(|m| m.labels);
    assert_eq!(labels, Some([("app".to_string(), "web".to_string())].into()));
}
