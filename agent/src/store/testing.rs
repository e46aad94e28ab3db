//! Stores for tests: every store test runs on SQLite and, where the test command started a
//! PostgreSQL server (`WARDEN_TEST_POSTGRES_URL`), on PostgreSQL too, each in a schema of
//! its own. `WARDEN_REQUIRE_POSTGRES=1` (set by the test command) makes a missing server a
//! failure instead of a skip.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::store::db::{Db, PgConnection};
use crate::store::Store;

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// The PostgreSQL server the tests may use, if any.
pub fn postgres_config() -> Option<tokio_postgres::Config> {
    match std::env::var("WARDEN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url.parse().expect("WARDEN_TEST_POSTGRES_URL is a connection string")),
        _ => {
            assert!(
                std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "WARDEN_REQUIRE_POSTGRES=1 but WARDEN_TEST_POSTGRES_URL is not set"
            );
            None
        }
    }
}

/// A new, empty schema on the test server; `None` without a server.
pub fn postgres_schema() -> Option<(tokio_postgres::Config, String)> {
    let config = postgres_config()?;
    let schema = format!("t_{}_{}", std::process::id(), SCHEMAS.fetch_add(1, Ordering::Relaxed));
    let admin = Db::Postgres(Box::new(std::sync::Mutex::new(PgConnection::connect(config.clone()).expect("connect"))));
    admin.with(|c| c.batch(&format!("CREATE SCHEMA {schema}"))).expect("create schema");
    Some((config, schema))
}

/// A PostgreSQL store in a new, empty schema; `None` without a server.
pub fn postgres_store() -> Option<Store> {
    let (config, schema) = postgres_schema()?;
    Some(postgres_store_in(config, &schema))
}

/// Another connection to the store in `schema` (a second replica).
pub fn postgres_store_in(mut config: tokio_postgres::Config, schema: &str) -> Store {
    config.options(format!("-c search_path={schema}"));
    Store::open_postgres_config(config).expect("open the PostgreSQL store")
}

/// A fresh in-memory SQLite store and, with a server, a fresh PostgreSQL one.
pub fn stores() -> Vec<Store> {
    let mut out = vec![Store::open_in_memory().expect("sqlite store")];
    match postgres_store() {
        Some(pg) => out.push(pg),
        None => eprintln!("store tests: PostgreSQL skipped (WARDEN_TEST_POSTGRES_URL is not set)"),
    }
    out
}
