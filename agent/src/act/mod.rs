//! The responder: what happens because an incident changed.
//!
//! [`responder`] turns incident changes into playbook runs (through [`remediation`], which
//! owns the playbook engine and its ports), queued root-cause analyses and a wake-up of the
//! outbox. [`tasks`] keeps runs off the evaluation loop in the daemon; [`kube_cluster`] is
//! the playbooks' cluster port over the Kubernetes connector; [`fencing`] is the engine's
//! leader-election fence before every cluster write.

pub mod fencing;
pub mod kube_cluster;
pub mod remediation;
pub mod responder;
pub mod tasks;
