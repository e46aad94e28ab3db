//! Unit tests of evidence extraction from Kubernetes objects: events, rollouts with image
//! diffs, referenced configuration, pods, nodes and autoscalers.

use super::*;
use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource, Container, EnvFromSource,
    EnvVar, EnvVarSource, LocalObjectReference, PodTemplateSpec, ProjectedVolumeSource, SecretKeySelector,
    SecretVolumeSource, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

fn at(seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
}

fn replica_set(name: &str, revision: i64, history: &str, image: &str, created: i64) -> ReplicaSet {
    let mut annotations =
        BTreeMap::from([(crate::kube_actions::REVISION_ANNOTATION.to_string(), revision.to_string())]);
    if !history.is_empty() {
        annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), history.to_string());
    }
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: Some(annotations),
            creation_timestamp: Some(at(created)),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            template: Some(PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "web".to_string(),
                        image: Some(image.to_string()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            }),
            ..ReplicaSetSpec::default()
        }),
        status: None,
    }
}

#[test]
fn rollback_is_compared_with_the_revision_it_replaced_and_dated_approximately() {
    let mut a = replica_set("web-a", 4, "1", "web:1", 100);
    a.metadata.managed_fields = Some(vec![
        ManagedFieldsEntry {
            manager: Some("kube-controller-manager".into()),
            time: Some(at(400)),
            ..ManagedFieldsEntry::default()
        },
        ManagedFieldsEntry {
            manager: Some("kube-controller-manager".into()),
            subresource: Some("status".into()),
            time: Some(at(450)),
            ..ManagedFieldsEntry::default()
        },
    ]);
    let b = replica_set("web-b", 2, "", "web:2", 200);
    let c = replica_set("web-c", 3, "", "web:3", 300);
    let changes = rollout_changes(&[a, b, c], 0);
    let summary: Vec<(i64, i64, bool, bool, Option<i64>)> =
        changes.iter().map(|c| (c.revision, c.time, c.rollback, c.time_approximate, c.previous_revision)).collect();
    assert_eq!(
        summary,
        vec![
            (1, 100, false, false, None),
            (2, 200, false, false, Some(1)),
            (3, 300, false, false, Some(2)),
            (4, 400, true, true, Some(3)),
        ]
    );
    let rollback = &changes[3];
    assert_eq!(rollback.time_source, TimeSource::ManagedFields);
    assert_eq!(
        rollback.image_changes,
        vec![ImageChange { container: "web".into(), from: Some("web:3".into()), to: Some("web:1".into()) }]
    );
    // `since` drops what happened before it.
    let recent =
        rollout_changes(&[replica_set("web-b", 2, "", "web:2", 200), replica_set("web-c", 3, "", "web:3", 300)], 250);
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].from_images[0].image, "web:2");
    // Revision 1 is gone: revision 2 cannot be compared.
    let orphan = rollout_changes(&[replica_set("web-b", 2, "", "web:2", 200)], 0);
    assert!(orphan[0].from_images.is_empty());
    assert!(orphan[0].note.as_deref().is_some_and(|n| n.contains("no longer retained")));
}

#[test]
fn config_references_come_from_env_env_from_volumes_and_pull_secrets() {
    let container = Container {
        name: "web".into(),
        env: Some(vec![
            EnvVar {
                name: "DB_URL".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector { name: "db".into(), key: "url".into(), optional: None }),
                    ..EnvVarSource::default()
                }),
                value: None,
            },
            EnvVar {
                name: "MODE".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "settings".into(),
                        key: "mode".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
                value: None,
            },
            EnvVar { name: "PLAIN".into(), value: Some("x".into()), value_from: None },
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: "settings".into(), optional: None }),
            ..EnvFromSource::default()
        }]),
        ..Container::default()
    };
    let deployment = Deployment {
        spec: Some(DeploymentSpec {
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "cfg".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: "files".into(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "tls".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some("tls".into()),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "all".into(),
                            projected: Some(ProjectedVolumeSource {
                                sources: Some(vec![VolumeProjection {
                                    config_map: Some(ConfigMapProjection {
                                        name: "files".into(),
                                        ..ConfigMapProjection::default()
                                    }),
                                    ..VolumeProjection::default()
                                }]),
                                ..ProjectedVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    image_pull_secrets: Some(vec![LocalObjectReference { name: "registry".into() }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    };
    let refs = referenced_config(&deployment);
    let shown: Vec<(ConfigKind, &str, Vec<&str>)> =
        refs.iter().map(|r| (r.kind, r.name.as_str(), r.used_by.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        shown,
        vec![
            (ConfigKind::ConfigMap, "files", vec!["volume all", "volume cfg"]),
            (ConfigKind::ConfigMap, "settings", vec!["env web/MODE", "envFrom web"]),
            (ConfigKind::Secret, "db", vec!["env web/DB_URL"]),
            (ConfigKind::Secret, "registry", vec!["imagePullSecrets"]),
            (ConfigKind::Secret, "tls", vec!["volume tls"]),
        ]
    );
    assert!(referenced_config(&Deployment::default()).is_empty());
}

#[test]
fn messages_are_cut_on_character_boundaries() {
    assert_eq!(truncate_chars("short", 10), "short");
    assert_eq!(truncate_chars("ééééé", 3), "ééé…");
    assert_eq!(truncate_chars("", 3), "");
}

#[test]
fn event_time_falls_back_through_the_timestamps() {
    let mut event = Event { first_timestamp: Some(at(10)), count: Some(-3), ..Event::default() };
    let info = event_info(&event);
    assert_eq!(info.as_ref().map(|i| (i.time, i.count)), Some((10, 1)));
    event.last_timestamp = Some(at(20));
    assert_eq!(event_info(&event).map(|i| i.time), Some(20));
    assert!(event_info(&Event::default()).is_none());
}
