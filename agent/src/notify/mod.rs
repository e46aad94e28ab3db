//! Telling people: rendering incident events into messages, and delivering them.
//!
//! Messages are rendered when the event happens and stored in the outbox in the same
//! transaction as the event ([`render`]); the [`outbox`] worker delivers them with retries,
//! in order per incident, sorting failures with [`classify`] so that a message a receiver
//! will never accept becomes a dead letter instead of blocking its channel.

pub mod classify;
pub mod outbox;
pub mod render;

pub use outbox::{Channels, Outbox, Pass, Policy};
pub use render::{render, NotifyEvent};
