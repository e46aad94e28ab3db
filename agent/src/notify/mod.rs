//! Telling people: rendering incident events into messages, and delivering them.
//!
//! Messages are rendered when the event happens and stored in the outbox in the same
//! transaction as the event ([`render`]; [`receivers`] for PagerDuty, Opsgenie, Teams and
//! the signed webhook). [`channels`] builds the receivers' clients from `notify`; the
//! [`outbox`] worker delivers the messages with retries, in order per incident, sorting
//! failures with [`classify`] so that a message a receiver will never accept becomes a
//! dead letter instead of blocking its channel. [`slack_app`] keeps one Slack message per
//! incident and checks Slack's button presses. [`routes`] chooses which channels hear about
//! an incident (`notify.routes`).

pub mod channels;
pub mod classify;
pub mod outbox;
pub mod receivers;
pub mod render;
pub mod routes;
pub mod slack_app;

pub use channels::build_channels;
pub use outbox::{Channels, Outbox, Pass, Policy};
pub use render::{render, NotifyEvent};
pub use routes::Routes;
pub use slack_app::{Interaction, SlackApp};
