//! Support library of Warden's end-to-end tests.
//!
//! Local servers the tests run the `warden` binary against:
//!
//! * [`kube_api`]: a Kubernetes API test server (Deployments and their scale
//!   subresource) built on the real `k8s-openapi` types, with request
//!   recording and failure injection, plus a kubeconfig writer;
//! * [`loki`]: a Loki API test server (range queries, labels, series and the
//!   WebSocket tail) with fault injection and request recording;
//! * [`slack`]: a Slack incoming-webhook receiver;
//! * [`procs`]: real Prometheus, Alertmanager, SMTP (aiosmtpd) and `warden`
//!   processes on free loopback ports, and the [`wait_until`] helper;
//! * [`config`]: warden configuration files and backfill data;
//! * [`stack`]: the usual set of servers around one warden under test.
//!
//! Everything listens on 127.0.0.1 only. A missing program is a test failure
//! whose message says to run `tests/run.sh`.

pub mod config;
pub mod kube_api;
pub mod loki;
pub mod procs;
pub mod slack;
pub mod stack;

pub use procs::{free_port, http_client, wait_until, within};
