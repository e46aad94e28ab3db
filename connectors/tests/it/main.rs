//! Integration tests of the connectors against local servers on 127.0.0.1.

mod kubernetes;
mod prometheus;
mod slack;
mod smtp;
mod support;
mod tls;
