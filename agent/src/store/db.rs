//! The store's two databases behind one small SQL interface: embedded SQLite (one replica,
//! a VM) and PostgreSQL (replicas sharing one store, see `docs/operations.md`).
//!
//! The store's queries are written once, in the SQL both databases understand, with SQLite's
//! numbered parameters (`?1`, `?2`); for PostgreSQL they become `$1`, `$2`. Values cross as
//! [`Value`] (integer, real, text or null), the types both schemas use: integers are 64-bit
//! (`BIGINT` in PostgreSQL), reals double precision, times Unix milliseconds.
//!
//! Calls are synchronous and short, as they were with SQLite alone: one connection per store
//! behind a mutex. The PostgreSQL connection's socket is driven by a runtime on its own
//! thread, so a call may block the calling task's thread but never needs (or enters) the
//! caller's runtime. A connection found closed (the server restarted, a failover) is
//! reconnected on the next call; the error of the call that found it is retryable.
//!
//! Transactions: [`Db::tx`] for ordinary ones and [`Db::tx_serial`] for those that must
//! not interleave with another writer of the same store (the audit chain): SQLite's
//! `BEGIN IMMEDIATE`, PostgreSQL's transaction-scoped advisory lock.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::store::{StoreError, StoreResult};

/// The advisory lock key of serial transactions ("warden" in ASCII).
const SERIAL_LOCK: i64 = 0x7761_7264_656e;
/// The advisory lock key held while migrating a PostgreSQL store.
pub(crate) const MIGRATION_LOCK: i64 = 0x0077_6172_6465_6e01;

/// A value crossing into or out of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A Rust value that can be a query parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_value!(i64, i32, u32, bool);

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// Query parameters: `args![a, b, c]` is a `&[Value]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$x)),*][..]
    };
}
pub(crate) use args;

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromValue for u32 {
    fn from_value(v: &Value) -> Result<Self, String> {
        let i = i64::from_value(v)?;
        u32::try_from(i).map_err(|_| format!("{i} is out of range"))
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(*f),
            // SQLite stores a whole REAL as an integer when it can.
            Value::Int(i) => Ok(*i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    cols: Vec<Value>,
}

impl Row {
    /// Column `i` as `T`; a column of another type is a corrupt row.
    pub fn get<T: FromValue>(&self, i: usize) -> StoreResult<T> {
        let v = self.cols.get(i).ok_or_else(|| StoreError::Corrupt {
            table: "query",
            message: format!("no column {i} (the row has {})", self.cols.len()),
        })?;
        T::from_value(v).map_err(|m| StoreError::Corrupt { table: "query", message: format!("column {i}: {m}") })
    }
}

/// A connection, inside or outside a transaction, as the store's code sees it.
pub struct Conn<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a tokio_postgres::Client),
}

impl Conn<'_> {
    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[Value]) -> StoreResult<usize> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute(sql, rusqlite::params_from_iter(args.iter().map(sqlite_value)))?),
            Inner::Postgres(c) => {
                let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let n = block_on(c.execute(postgres_sql(sql).as_str(), &params))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Every row of a query.
    pub fn query(&self, sql: &str, args: &[Value]) -> StoreResult<Vec<Row>> {
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut cols = Vec::with_capacity(n);
                    for i in 0..n {
                        cols.push(from_sqlite(r.get_ref(i)?)?);
                    }
                    out.push(Row { cols });
                }
                Ok(out)
            }
            Inner::Postgres(c) => {
                let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let rows = block_on(c.query(postgres_sql(sql).as_str(), &params))?;
                rows.iter().map(from_postgres).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, args: &[Value]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a query that always returns one (an aggregate, `RETURNING`).
    pub fn query_one(&self, sql: &str, args: &[Value]) -> StoreResult<Row> {
        self.query_opt(sql, args)?.ok_or_else(|| StoreError::Corrupt {
            table: "query",
            message: format!("no row from `{}`", first_line(sql)),
        })
    }

    /// Runs statements with no parameters (schema changes).
    pub fn batch(&self, sql: &str) -> StoreResult<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => Ok(block_on(c.batch_execute(sql))?),
        }
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or("")
}

/// The store's database.
pub(crate) enum Db {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<Mutex<PgConnection>>),
}

impl Db {
    /// Runs `f` outside a transaction (each statement commits on its own).
    pub fn with<R>(&self, f: impl FnOnce(&Conn<'_>) -> StoreResult<R>) -> StoreResult<R> {
        match self {
            Db::Sqlite(m) => {
                let c = m.lock().map_err(|_| StoreError::Poisoned)?;
                f(&Conn { inner: Inner::Sqlite(&c) })
            }
            Db::Postgres(m) => {
                let mut pg = m.lock().map_err(|_| StoreError::Poisoned)?;
                let client = pg.client()?;
                f(&Conn { inner: Inner::Postgres(client) })
            }
        }
    }

    /// Runs `f` in a transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn tx<R>(&self, f: impl FnOnce(&Conn<'_>) -> StoreResult<R>) -> StoreResult<R> {
        self.transaction("BEGIN", "BEGIN", f)
    }

    /// A transaction no other serial transaction of the store interleaves with, in this
    /// process or another (the audit chain's appends).
    pub fn tx_serial<R>(&self, f: impl FnOnce(&Conn<'_>) -> StoreResult<R>) -> StoreResult<R> {
        let pg = format!("BEGIN; SELECT pg_advisory_xact_lock({SERIAL_LOCK})");
        self.transaction("BEGIN IMMEDIATE", &pg, f)
    }

    fn transaction<R>(
        &self,
        sqlite_begin: &str,
        pg_begin: &str,
        f: impl FnOnce(&Conn<'_>) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let begin = match self {
            Db::Sqlite(_) => sqlite_begin,
            Db::Postgres(_) => pg_begin,
        };
        self.with(|c| {
            c.batch(begin)?;
            match f(c) {
                Ok(r) => match c.batch("COMMIT") {
                    Ok(()) => Ok(r),
                    Err(e) => {
                        let _ = c.batch("ROLLBACK");
                        Err(e)
                    }
                },
                Err(e) => {
                    // A failed rollback leaves nothing to undo: the connection is gone
                    // (PostgreSQL aborts the transaction with it) or SQLite has already
                    // rolled back.
                    let _ = c.batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }
}

/// One PostgreSQL connection and how to make it again.
pub(crate) struct PgConnection {
    config: tokio_postgres::Config,
    client: Option<tokio_postgres::Client>,
}

impl PgConnection {
    pub fn connect(config: tokio_postgres::Config) -> StoreResult<Self> {
        let client = connect(&config)?;
        Ok(Self { config, client: Some(client) })
    }

    /// The live client, reconnecting when the last one was closed.
    fn client(&mut self) -> StoreResult<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.client = Some(connect(&self.config)?);
        }
        self.client.as_ref().ok_or(StoreError::Poisoned)
    }
}

/// Connects and drives the connection on a thread of its own, which ends with it.
fn connect(config: &tokio_postgres::Config) -> StoreResult<tokio_postgres::Client> {
    let config = config.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("warden-postgres".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(StoreError::Connect(format!("starting the connection's runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                match config.connect(tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        if tx.send(Ok(client)).is_ok() {
                            if let Err(e) = connection.await {
                                tracing::warn!(error = %e, "the PostgreSQL store's connection ended");
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(StoreError::Postgres(e)));
                    }
                }
            });
        })
        .map_err(|e| StoreError::Connect(format!("starting the connection's thread: {e}")))?;
    rx.recv().map_err(|_| StoreError::Connect("the connection's thread ended before connecting".into()))?
}

/// Waits for a client call. The connection itself is driven on its own thread, so this
/// works from any thread, inside an async runtime or not.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// `?N` parameters as PostgreSQL's `$N` (outside quoted text).
pub(crate) fn postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(ch),
        }
    }
    out
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> StoreResult<Value> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt { table: "query", message: format!("text that is not UTF-8: {e}") })?
                .to_string(),
        ),
        ValueRef::Blob(_) => {
            return Err(StoreError::Corrupt { table: "query", message: "a blob where the store keeps none".into() })
        }
    })
}

fn from_postgres(r: &tokio_postgres::Row) -> StoreResult<Row> {
    let mut cols = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into()))
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(StoreError::Corrupt {
                table: "query",
                message: format!("column {} has type {ty}, which the store does not use", col.name()),
            });
        };
        cols.push(v.unwrap_or(Value::Null));
    }
    Ok(Row { cols })
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => {
                if *ty == Type::INT8 {
                    i.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*i)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*i != 0).to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*i as f64).to_sql(ty, out)
                } else if text_type(ty) {
                    i.to_string().as_str().to_sql(ty, out)
                } else {
                    Err(format!("an integer for a parameter of type {ty}").into())
                }
            }
            Value::Real(f) => {
                if *ty == Type::FLOAT8 {
                    f.to_sql(ty, out)
                } else if *ty == Type::FLOAT4 {
                    (*f as f32).to_sql(ty, out)
                } else {
                    Err(format!("a number for a parameter of type {ty}").into())
                }
            }
            Value::Text(s) => {
                if text_type(ty) {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(format!("text for a parameter of type {ty}").into())
                }
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn text_type(ty: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN].contains(ty)
}

/// Whether a PostgreSQL error is worth retrying: the connection is gone, or the server
/// asked for it (serialization failure, deadlock, too many connections, shutting down).
pub(crate) fn postgres_retryable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::LOCK_NOT_AVAILABLE,
        ]
        .contains(code),
        // No SQLSTATE: an I/O or protocol error on the way, not the server's answer.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12 AND e IS ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12 AND e IS ?"
        );
    }

    #[test]
    fn values_read_back_as_the_types_the_store_uses() {
        assert_eq!(u32::from_value(&Value::Int(7)), Ok(7));
        assert!(u32::from_value(&Value::Int(-1)).is_err());
        assert_eq!(f64::from_value(&Value::Int(2)), Ok(2.0));
        assert_eq!(Option::<String>::from_value(&Value::Null), Ok(None));
        assert!(String::from_value(&Value::Int(1)).is_err());
        assert_eq!(bool::from_value(&Value::Int(1)), Ok(true));
        assert_eq!(args![1i64, "a", None::<i64>, 0.5, true].len(), 5);
    }
}
