//! The commands that are not the daemon: inspect and change the store (`incidents`, `runs`,
//! `outbox`, `audit`, `silences`), run detectors and log mining on files (`detect`, `logs`), playbooks
//! (`playbook`), root-cause analysis (`rca`), models (`model`) and configuration checks
//! (`check-config`). The daemon and the demo are in [`crate::app`].

pub mod args;
pub mod check;
pub mod detect;
pub mod incidents;
pub mod line_limit;
pub mod logs;
pub mod model;
pub mod outbox;
pub mod playbook;
pub mod rca;
pub mod silences;
