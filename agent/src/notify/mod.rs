//! Telling people: rendering incident events into messages, and delivering them.
//!
//! Messages are rendered when the event happens and stored in the outbox in the same
//! transaction as the event ([`render`]); the [`outbox`] worker delivers them with retries.

pub mod outbox;
pub mod render;

pub use outbox::{Channels, Outbox};
pub use render::{render, NotifyEvent};
