//! The store: incidents, their events, the notification outbox, log-watch state, and
//! playbook runs with their audit trail (see [`crate::store::runs`]).
//!
//! Everything that must survive a crash lives here, written in transactions so that an
//! incident and the notifications it owes are stored together or not at all. Two databases
//! hold it with the same schema and guarantees ([`db`]): an embedded SQLite file (one
//! replica) or PostgreSQL (replicas sharing one store, so that a new leader resumes the old
//! one's runs and outbox). Schema changes are versioned migrations: SQLite's below (its
//! `user_version`), PostgreSQL's the same steps in its dialect ([`postgres`]). Times are
//! stored as Unix milliseconds. Calls are synchronous and short; the connection sits behind
//! a mutex shared by the tasks.

pub(crate) mod db;
pub mod outbox;
mod postgres;
pub mod runs;
pub mod sessions;
pub mod silences;
pub mod slack_inbox;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

use db::{args, Conn, Db, PgConnection, Row};
use serde::Serialize;

const MIGRATIONS: &[&str] = &[
    // v1: the foundation schema.
    "CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        source TEXT NOT NULL,
        watch TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        labels TEXT NOT NULL,
        target_namespace TEXT,
        target_deployment TEXT,
        observed REAL,
        expected REAL,
        lower_bound REAL,
        upper_bound REAL,
        score REAL,
        detector TEXT,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        resolved_at INTEGER,
        quiet_evaluations INTEGER NOT NULL DEFAULT 0
     );
     CREATE UNIQUE INDEX incidents_one_open_per_fingerprint ON incidents(fingerprint) WHERE status = 'open';
     CREATE INDEX incidents_by_status ON incidents(status, opened_at);
     CREATE TABLE incident_events (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX incident_events_by_incident ON incident_events(incident_id, id);
     CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER REFERENCES incidents(id),
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        from_replicas INTEGER,
        to_replicas INTEGER,
        dry_run INTEGER NOT NULL,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        response TEXT,
        message TEXT,
        created_at INTEGER NOT NULL,
        finished_at INTEGER
     );
     CREATE INDEX actions_by_target ON actions(namespace, name, created_at);
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        incident_id INTEGER REFERENCES incidents(id),
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        delivered_at INTEGER,
        last_error TEXT
     );
     CREATE INDEX outbox_due ON outbox(delivered_at, next_attempt_at);",
    // v2: log watches: the template miner's state and where reading resumes, per watch.
    "CREATE TABLE log_watch_state (
        watch TEXT PRIMARY KEY,
        miner_state TEXT NOT NULL,
        resume_ns TEXT,
        updated_at INTEGER NOT NULL
     );",
    // v3: playbook runs (the whole run as JSON, with the columns queries need) and the
    // hash-chained audit trail. `active_target` is the target while the run is active and
    // NULL after: its UNIQUE index is what keeps two runs off one target, across processes.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        playbook TEXT NOT NULL,
        status TEXT NOT NULL,
        target_key TEXT,
        namespace TEXT,
        incident_id INTEGER,
        trigger_kind TEXT NOT NULL,
        acted_at INTEGER,
        dry_run INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        wake_at INTEGER,
        active_target TEXT UNIQUE,
        body TEXT NOT NULL
     );
     CREATE INDEX runs_due ON runs(status, wake_at);
     CREATE INDEX runs_by_target ON runs(target_key, acted_at);
     CREATE INDEX runs_by_incident ON runs(incident_id, playbook);
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        run_id INTEGER,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );",
    // v4: root-cause analyses, one per incident (ranking, evidence and summary as JSON; see
    // `crate::analysis`).
    "CREATE TABLE analyses (
        incident_id INTEGER PRIMARY KEY REFERENCES incidents(id),
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL
     );",
    // v5 (outbox): delivery states beside `delivered_at` (pending, delivered, dead,
    // digested, discarded), failures charged to the message (`strikes`), dead letters with
    // their reason, digests (`digest_id` on the messages a digest row covers), and the
    // subject as a column for listings and digests. See `crate::store::outbox`.
    "ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
     ALTER TABLE outbox ADD COLUMN strikes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE outbox ADD COLUMN last_attempt_at INTEGER;
     ALTER TABLE outbox ADD COLUMN retried_at INTEGER;
     ALTER TABLE outbox ADD COLUMN dead_at INTEGER;
     ALTER TABLE outbox ADD COLUMN dead_reason TEXT;
     ALTER TABLE outbox ADD COLUMN dead_noticed INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE outbox ADD COLUMN digest_id INTEGER;
     ALTER TABLE outbox ADD COLUMN subject TEXT NOT NULL DEFAULT '';
     UPDATE outbox SET state = 'delivered' WHERE delivered_at IS NOT NULL;
     UPDATE outbox SET subject = COALESCE(CAST(json_extract(payload, '$.subject') AS TEXT), CAST(json_extract(payload, '$.text') AS TEXT), '')
        WHERE json_valid(payload);
     DROP INDEX outbox_due;
     CREATE INDEX outbox_by_state ON outbox(state, channel, id);
     CREATE INDEX outbox_by_digest ON outbox(digest_id) WHERE digest_id IS NOT NULL;",
    // v6: this store's installation id: 32 random hex digits made once, when the
    // store is created or first migrated. Objects runs create in the cluster carry it (Job
    // names and labels), so that another installation's objects are never taken for ours.
    "CREATE TABLE installation (
        id TEXT NOT NULL PRIMARY KEY,
        created_at INTEGER NOT NULL
     );
     INSERT INTO installation (id, created_at)
        VALUES (lower(hex(randomblob(16))), CAST(strftime('%s', 'now') AS INTEGER) * 1000);",
    // v7: one owner per run and the audit head. A run's claim (owner, fencing token, expiry
    // in wall-clock ms; see `warden_playbooks::claim`) is checked by every write of the run.
    // The audit head (entry count and last hash) is written in the same transaction as each
    // append, so deleting the last entries is detected (`warden audit verify`).
    "ALTER TABLE runs ADD COLUMN claim_owner TEXT;
     ALTER TABLE runs ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN claim_expires_at INTEGER;
     CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        count INTEGER NOT NULL,
        last_hash TEXT NOT NULL
     );
     INSERT INTO audit_head (id, count, last_hash)
        SELECT 1, COALESCE(MAX(seq), 0),
               COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '0000000000000000000000000000000000000000000000000000000000000000')
        FROM audit;",
    // v8: the leader lease a request was fenced with (holder, transition count), written
    // with the request's audit entry when leader election is on (NULL otherwise and in
    // older entries; the hash covers them only when set).
    "ALTER TABLE audit ADD COLUMN lease TEXT;
     ALTER TABLE audit ADD COLUMN lease_holder TEXT;
     ALTER TABLE audit ADD COLUMN lease_transitions INTEGER;",
    // v9: the Slack message of each incident (the Slack app edits it as the incident moves).
    // Stores from before v9 may have it already (it was made on first use).
    "CREATE TABLE IF NOT EXISTS slack_messages (
        incident_id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        ts TEXT NOT NULL,
        posted_at INTEGER NOT NULL
     );",
    // v10: marks of the leader's schedules (how far cron triggers were checked), so that
    // the next leader (or the same replica after a restart) starts where it stopped.
    "CREATE TABLE schedule_marks (
        name TEXT PRIMARY KEY,
        at INTEGER NOT NULL
     );",
    // v11: silences (see `crate::incident::silence`); matchers as a JSON array of text.
    "CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expired_at INTEGER,
        expired_by TEXT
     );
     CREATE INDEX silences_by_end ON silences(ends_at);",
    // v12: incidents newest first without a status filter (the console's list, paged).
    "CREATE INDEX incidents_by_opened ON incidents(opened_at, id);",
    // v13: notification groups (`notify.routes[].group_by`): a held message's group and
    // windows, and when each group last sent a message; the audit trail by run; the web
    // console's sessions (shared by replicas, kept across restarts); Slack presses a follower
    // received, for the leader.
    "ALTER TABLE outbox ADD COLUMN group_key TEXT;
     ALTER TABLE outbox ADD COLUMN group_wait_ms INTEGER;
     ALTER TABLE outbox ADD COLUMN group_interval_ms INTEGER;
     CREATE TABLE notify_groups (
        channel TEXT NOT NULL,
        group_key TEXT NOT NULL,
        last_sent_at INTEGER NOT NULL,
        PRIMARY KEY (channel, group_key)
     );
     CREATE INDEX audit_by_run ON audit(run_id, seq);
     CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        csrf TEXT NOT NULL,
        token_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX console_sessions_by_expiry ON console_sessions(expires_at);
     CREATE TABLE slack_inbox (
        id INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        received_by TEXT NOT NULL,
        slack_timestamp TEXT NOT NULL,
        signature TEXT NOT NULL,
        retry INTEGER NOT NULL,
        body TEXT NOT NULL,
        handled_at INTEGER
     );
     CREATE INDEX slack_inbox_pending ON slack_inbox(handled_at, id);",
];

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("connecting to the PostgreSQL store: {0}")]
    Connect(String),
    #[error("migrating the store schema: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("corrupt row in {table}: {message}")]
    Corrupt { table: &'static str, message: String },
    #[error("store lock poisoned")]
    Poisoned,
}

impl StoreError {
    /// Whether trying again may succeed: a busy or locked SQLite file, a lost PostgreSQL
    /// connection, or a transaction PostgreSQL asked to repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            }
            StoreError::Postgres(e) => db::postgres_retryable(e),
            StoreError::Connect(_) => true,
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The workload an incident concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetRef {
    pub namespace: String,
    pub deployment: String,
}

/// An incident as stored and shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub fingerprint: String,
    pub watch: String,
    pub source: String,
    pub status: String,
    pub severity: String,
    pub title: String,
    pub labels: BTreeMap<String, String>,
    pub target: Option<TargetRef>,
    pub observed: Option<f64>,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub score: Option<f64>,
    pub detector: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub quiet_evaluations: u32,
}

/// What is known about a new or updated incident.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSignal {
    pub fingerprint: String,
    pub watch: String,
    pub source: String,
    pub severity: String,
    pub title: String,
    pub labels: BTreeMap<String, String>,
    pub target: Option<TargetRef>,
    pub observed: Option<f64>,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub score: Option<f64>,
    pub detector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentEvent {
    pub id: i64,
    pub incident_id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub detail: serde_json::Value,
}

/// A notification to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub channel: String,
    pub event: String,
    pub payload: serde_json::Value,
    /// The group that holds it back (a route's grouping, [`crate::notify::routes`]); `None`:
    /// sent at once.
    pub group: Option<NotifyGroup>,
}

/// A notification group: which one, and its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyGroup {
    /// The route's path and the group's label values:
    /// `notify.routes[0]{namespace="payments"}`.
    pub key: String,
    /// How long a new group waits for more before its first message.
    pub wait: std::time::Duration,
    /// The least time between two messages of the group.
    pub interval: std::time::Duration,
}

pub struct Store {
    db: Db,
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or(DateTime::UNIX_EPOCH)
}

fn json_col<T: serde::de::DeserializeOwned>(table: &'static str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt { table, message: e.to_string() })
}

impl Store {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt {
                table: "store",
                message: format!("creating directory {}: {e}", dir.display()),
            })?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::init(conn)
    }

    /// A private in-memory database (demo, tests).
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        // Two processes opening a new file at once (the daemon and the CLI) may both start
        // the same migration; the loser's fails ("table ... already exists"). Once the winner
        // is done there is nothing left to migrate, so the loser tries again a few times.
        let mut tries = 0;
        while let Err(e) = migrations.to_latest(&mut conn) {
            tries += 1;
            if tries >= 20 {
                return Err(e.into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(Self { db: Db::Sqlite(Mutex::new(conn)) })
    }

    /// Connect to (and migrate) the PostgreSQL store at `url` (a `postgres://` URL or a
    /// `key=value` connection string). Replicas sharing it migrate one at a time.
    pub fn open_postgres(url: &str) -> StoreResult<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| StoreError::Connect(format!("the store's URL: {e}")))?;
        Self::open_postgres_config(config)
    }

    /// As [`Store::open_postgres`], with a parsed configuration.
    pub fn open_postgres_config(mut config: tokio_postgres::Config) -> StoreResult<Self> {
        if config.get_application_name().is_none() {
            config.application_name("warden");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let conn = PgConnection::connect(config)?;
        let store = Self { db: Db::Postgres(Box::new(Mutex::new(conn))) };
        store.db.with(postgres::migrate)?;
        Ok(store)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Runs `f` on the store's connection, outside a transaction.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Conn<'_>) -> StoreResult<R>) -> StoreResult<R> {
        self.db.with(f)
    }

    /// Runs `f` in a transaction, committed when it returns `Ok`.
    pub(crate) fn tx<R>(&self, f: impl FnOnce(&Conn<'_>) -> StoreResult<R>) -> StoreResult<R> {
        self.db.tx(f)
    }

    /// This store's installation id (32 hex digits, made once with the store; see the
    /// `installation` migration).
    pub fn installation_id(&self) -> StoreResult<String> {
        self.with(|c| c.query_one("SELECT id FROM installation LIMIT 1", args![])?.get(0))
    }

    // ---- incidents -------------------------------------------------------------------

    pub fn open_incident_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<Incident>> {
        self.with(|c| {
            c.query_opt(&format!("{INCIDENT_SELECT} WHERE fingerprint = ?1 AND status = 'open'"), args![fingerprint])?
                .map(|r| incident_from_row(&r))
                .transpose()
        })
    }

    /// Open an incident with its first event and the notifications it owes, atomically.
    pub fn open_incident(
        &self,
        sig: &IncidentSignal,
        now: DateTime<Utc>,
        detail: &serde_json::Value,
        notify: impl Fn(&Incident) -> Vec<NewNotification>,
    ) -> StoreResult<Incident> {
        self.tx(|tx| {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO incidents (fingerprint, source, watch, status, severity, title, labels,
                        target_namespace, target_deployment, observed, expected, lower_bound, upper_bound, score,
                        detector, opened_at, updated_at)
                     VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)
                     RETURNING id",
                    args![
                        sig.fingerprint,
                        sig.source,
                        sig.watch,
                        sig.severity,
                        sig.title,
                        serde_json::to_string(&sig.labels).unwrap_or_else(|_| "{}".into()),
                        sig.target.as_ref().map(|t| t.namespace.clone()),
                        sig.target.as_ref().map(|t| t.deployment.clone()),
                        sig.observed,
                        sig.expected,
                        sig.lower,
                        sig.upper,
                        sig.score,
                        sig.detector,
                        ms(now),
                    ],
                )?
                .get(0)?;
            insert_event(tx, id, now, "opened", detail)?;
            let incident = incident_from_row(&tx.query_one(&format!("{INCIDENT_SELECT} WHERE id = ?1"), args![id])?)?;
            for n in notify(&incident) {
                insert_outbox(tx, Some(id), &n, now)?;
            }
            Ok(incident)
        })
    }

    /// Refresh an open incident's latest values; it is anomalous again, so the quiet count resets.
    /// Returns the number of quiet evaluations it had before this update.
    pub fn update_incident(&self, id: i64, sig: &IncidentSignal, now: DateTime<Utc>) -> StoreResult<u32> {
        self.tx(|c| {
            let quiet: u32 = c.query_one("SELECT quiet_evaluations FROM incidents WHERE id = ?1", args![id])?.get(0)?;
            c.execute(
                "UPDATE incidents SET observed = ?2, expected = ?3, lower_bound = ?4, upper_bound = ?5, score = ?6,
                     updated_at = ?7, quiet_evaluations = 0,
                     severity = CASE WHEN CAST(?8 AS TEXT) = 'critical' THEN 'critical' ELSE severity END
                 WHERE id = ?1 AND status = 'open'",
                args![id, sig.observed, sig.expected, sig.lower, sig.upper, sig.score, ms(now), sig.severity],
            )?;
            Ok(quiet)
        })
    }

    /// Count one more evaluation with data and no anomaly; returns the new count.
    pub fn record_quiet(&self, id: i64) -> StoreResult<u32> {
        self.with(|c| {
            c.query_one(
                "UPDATE incidents SET quiet_evaluations = quiet_evaluations + 1 WHERE id = ?1 RETURNING quiet_evaluations",
                args![id],
            )?
            .get(0)
        })
    }

    /// Resolve with its event and the notifications it owes, atomically. Returns `None` when
    /// the incident was not open (already resolved).
    /// `by`: the person who resolved it by hand; their resolution is appended to the audit
    /// trail in the same transaction.
    pub fn resolve_incident(
        &self,
        id: i64,
        now: DateTime<Utc>,
        detail: &serde_json::Value,
        by: Option<&str>,
        notify: impl Fn(&Incident) -> Vec<NewNotification>,
    ) -> StoreResult<Option<Incident>> {
        let body = |tx: &Conn<'_>| {
            let changed = tx.execute(
                "UPDATE incidents SET status = 'resolved', resolved_at = ?2, updated_at = ?2 WHERE id = ?1 AND status = 'open'",
                args![id, ms(now)],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            insert_event(tx, id, now, "resolved", detail)?;
            let incident = incident_from_row(&tx.query_one(&format!("{INCIDENT_SELECT} WHERE id = ?1"), args![id])?)?;
            for n in notify(&incident) {
                insert_outbox(tx, Some(id), &n, now)?;
            }
            if let Some(by) = by {
                runs::append(tx, &[human_incident_audit(&incident, "resolved", by, detail, now)])?;
            }
            Ok(Some(incident))
        };
        match by {
            Some(_) => self.db.tx_serial(body),
            None => self.tx(body),
        }
    }

    /// Record that person `by` acknowledged open incident `id`: an `acknowledged` event with
    /// `detail` and an audit entry, in one transaction. `Ok(false)`: it was not open or was
    /// acknowledged before; nothing changed.
    pub fn acknowledge_incident(
        &self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
        detail: &serde_json::Value,
    ) -> StoreResult<bool> {
        self.db.tx_serial(|tx| {
            let open: bool = match tx.query_opt("SELECT status = 'open' FROM incidents WHERE id = ?1", args![id])? {
                Some(r) => r.get(0)?,
                None => false,
            };
            let acked: bool = tx
                .query_one(
                    "SELECT EXISTS(SELECT 1 FROM incident_events WHERE incident_id = ?1 AND kind = 'acknowledged')",
                    args![id],
                )?
                .get(0)?;
            if !open || acked {
                return Ok(false);
            }
            insert_event(tx, id, now, "acknowledged", detail)?;
            let incident = incident_from_row(&tx.query_one(&format!("{INCIDENT_SELECT} WHERE id = ?1"), args![id])?)?;
            runs::append(tx, &[human_incident_audit(&incident, "acknowledged", by, detail, now)])?;
            Ok(true)
        })
    }

    /// Append an event and its notifications to an incident, atomically.
    pub fn add_event(
        &self,
        incident_id: i64,
        now: DateTime<Utc>,
        kind: &str,
        detail: &serde_json::Value,
        notifications: &[NewNotification],
    ) -> StoreResult<()> {
        self.tx(|tx| {
            insert_event(tx, incident_id, now, kind, detail)?;
            for n in notifications {
                insert_outbox(tx, Some(incident_id), n, now)?;
            }
            Ok(())
        })
    }

    /// Save a log watch's miner state (JSON) and the timestamp (ns) its next read starts after.
    pub fn save_log_state(
        &self,
        watch: &str,
        miner_state: &str,
        resume_ns: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO log_watch_state (watch, miner_state, resume_ns, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(watch) DO UPDATE SET miner_state = excluded.miner_state, resume_ns = excluded.resume_ns, updated_at = excluded.updated_at",
                args![watch, miner_state, resume_ns.map(|n| n.to_string()), now.timestamp_millis()],
            )?;
            Ok(())
        })
    }

    /// A log watch's saved miner state and resume timestamp, if any.
    pub fn load_log_state(&self, watch: &str) -> StoreResult<Option<(String, Option<i64>)>> {
        let row = self.with(|c| {
            c.query_opt("SELECT miner_state, resume_ns FROM log_watch_state WHERE watch = ?1", args![watch])
        })?;
        let Some(row) = row else { return Ok(None) };
        let (state, ns): (String, Option<String>) = (row.get(0)?, row.get(1)?);
        match ns {
            None => Ok(Some((state, None))),
            Some(ns) => match ns.parse::<i64>() {
                Ok(ns) => Ok(Some((state, Some(ns)))),
                Err(e) => {
                    Err(StoreError::Corrupt { table: "log_watch_state", message: format!("resume_ns `{ns}`: {e}") })
                }
            },
        }
    }

    pub fn get_incident(&self, id: i64) -> StoreResult<Option<Incident>> {
        self.with(|c| {
            c.query_opt(&format!("{INCIDENT_SELECT} WHERE id = ?1"), args![id])?
                .map(|r| incident_from_row(&r))
                .transpose()
        })
    }

    /// Incidents, newest first; `status` filters on `open` / `resolved`.
    pub fn list_incidents(&self, status: Option<&str>, limit: u32) -> StoreResult<Vec<Incident>> {
        self.list_incidents_page(status, 0, limit)
    }

    /// One page of [`Store::list_incidents`]: `limit` incidents after the first `offset`.
    pub fn list_incidents_page(&self, status: Option<&str>, offset: u32, limit: u32) -> StoreResult<Vec<Incident>> {
        self.with(|c| {
            c.query(
                &format!(
                    "{INCIDENT_SELECT} WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1) ORDER BY opened_at DESC, id DESC LIMIT ?2 OFFSET ?3"
                ),
                args![status, limit, offset],
            )?
            .iter()
            .map(incident_from_row)
            .collect()
        })
    }

    pub fn open_incidents(&self) -> StoreResult<Vec<Incident>> {
        self.list_incidents(Some("open"), u32::MAX)
    }

    pub fn incident_events(&self, incident_id: i64) -> StoreResult<Vec<IncidentEvent>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, incident_id, at, kind, detail FROM incident_events WHERE incident_id = ?1 ORDER BY id",
                args![incident_id],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(IncidentEvent {
                    id: r.get(0)?,
                    incident_id: r.get(1)?,
                    at: from_ms(r.get(2)?),
                    kind: r.get(3)?,
                    detail: json_col("incident_events", &r.get::<String>(4)?)?,
                })
            })
            .collect()
    }
    /// How far the schedule `name` was checked (see `act::remediation::Remediation::on_clock`).
    pub fn schedule_mark(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.with(|c| {
            c.query_opt("SELECT at FROM schedule_marks WHERE name = ?1", args![name])?
                .map(|r| Ok(from_ms(r.get(0)?)))
                .transpose()
        })
    }

    /// Record that the schedule `name` was checked up to `at`.
    pub fn set_schedule_mark(&self, name: &str, at: DateTime<Utc>) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO schedule_marks (name, at) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET at = excluded.at",
                args![name, ms(at)],
            )?;
            Ok(())
        })
    }

    /// The Slack message (channel, ts) posted for `incident`, if any.
    pub fn slack_message(&self, incident: i64) -> StoreResult<Option<(String, String)>> {
        self.with(|c| {
            c.query_opt("SELECT channel, ts FROM slack_messages WHERE incident_id = ?1", args![incident])?
                .map(|r| Ok((r.get(0)?, r.get(1)?)))
                .transpose()
        })
    }

    /// Remember the Slack message posted for `incident`, so that every replica edits it.
    pub fn remember_slack_message(
        &self,
        incident: i64,
        channel: &str,
        ts: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO slack_messages (incident_id, channel, ts, posted_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(incident_id) DO UPDATE SET channel = excluded.channel, ts = excluded.ts, posted_at = excluded.posted_at",
                args![incident, channel, ts, ms(now)],
            )?;
            Ok(())
        })
    }
    // The outbox: `crate::store::outbox`.
}

const INCIDENT_SELECT: &str = "SELECT id, fingerprint, source, watch, status, severity, title, labels,
    target_namespace, target_deployment, observed, expected, lower_bound, upper_bound, score, detector,
    opened_at, updated_at, resolved_at, quiet_evaluations FROM incidents";

fn incident_from_row(r: &Row) -> StoreResult<Incident> {
    let labels: String = r.get(7)?;
    let ns: Option<String> = r.get(8)?;
    let dep: Option<String> = r.get(9)?;
    Ok(Incident {
        id: r.get(0)?,
        fingerprint: r.get(1)?,
        source: r.get(2)?,
        watch: r.get(3)?,
        status: r.get(4)?,
        severity: r.get(5)?,
        title: r.get(6)?,
        labels: json_col("incidents", &labels)?,
        target: match (ns, dep) {
            (Some(namespace), Some(deployment)) => Some(TargetRef { namespace, deployment }),
            _ => None,
        },
        observed: r.get(10)?,
        expected: r.get(11)?,
        lower: r.get(12)?,
        upper: r.get(13)?,
        score: r.get(14)?,
        detector: r.get(15)?,
        opened_at: from_ms(r.get(16)?),
        updated_at: from_ms(r.get(17)?),
        resolved_at: r.get::<Option<i64>>(18)?.map(from_ms),
        quiet_evaluations: r.get(19)?,
    })
}

/// The audit entry of a person's hand on an incident (`action`: `acknowledged` or
/// `resolved`); `detail` is the incident event's (who, comment).
fn human_incident_audit(
    incident: &Incident,
    action: &str,
    by: &str,
    detail: &serde_json::Value,
    now: DateTime<Utc>,
) -> warden_playbooks::audit::AuditEvent {
    warden_playbooks::audit::AuditEvent::new(
        now,
        None,
        warden_playbooks::audit::AuditKind::Incident,
        by,
        serde_json::json!({
            "action": action,
            "incident_id": incident.id,
            "fingerprint": incident.fingerprint,
            "title": incident.title,
            "comment": detail.get("comment").cloned().unwrap_or(serde_json::Value::Null),
        }),
    )
}

pub(crate) fn insert_event(
    c: &Conn<'_>,
    incident_id: i64,
    now: DateTime<Utc>,
    kind: &str,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO incident_events (incident_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        args![incident_id, ms(now), kind, detail.to_string()],
    )?;
    Ok(())
}

/// Queue a notification; returns its id.
pub(crate) fn insert_outbox(
    c: &Conn<'_>,
    incident_id: Option<i64>,
    n: &NewNotification,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let window = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    c.query_one(
        "INSERT INTO outbox (channel, incident_id, event, payload, created_at, next_attempt_at, subject, group_key, group_wait_ms, group_interval_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9)
         RETURNING id",
        args![
            n.channel,
            incident_id,
            n.event,
            n.payload.to_string(),
            ms(now),
            crate::store::outbox::payload_subject(&n.payload),
            n.group.as_ref().map(|g| g.key.clone()),
            n.group.as_ref().map(|g| window(g.wait)),
            n.group.as_ref().map(|g| window(g.interval))
        ],
    )?
    .get(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig() -> IncidentSignal {
        IncidentSignal {
            fingerprint: "fp1".into(),
            watch: "w".into(),
            source: "watch".into(),
            severity: "warning".into(),
            title: "t".into(),
            labels: BTreeMap::from([("namespace".into(), "shop".into())]),
            target: Some(TargetRef { namespace: "shop".into(), deployment: "checkout".into() }),
            observed: Some(0.5),
            expected: Some(0.1),
            lower: Some(0.05),
            upper: Some(0.15),
            score: Some(0.8),
            detector: Some("robust_baseline".into()),
        }
    }

    fn now(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    fn note(event: &str) -> NewNotification {
        NewNotification { channel: "slack".into(), event: event.into(), payload: json!({"text": event}), group: None }
    }

    #[test]
    fn installation_id_is_made_once_per_store_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let id = Store::open(&path).unwrap().installation_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
        assert_eq!(Store::open(&path).unwrap().installation_id().unwrap(), id);
        let other = Store::open(&dir.path().join("other.db")).unwrap().installation_id().unwrap();
        assert_ne!(other, id);
    }

    #[test]
    fn replicas_of_one_postgres_store_share_it_and_migrate_once() {
        let Some((config, schema)) = testing::postgres_schema() else {
            eprintln!("replicas_of_one_postgres_store_share_it_and_migrate_once: skipped: no PostgreSQL server");
            return;
        };
        // Two replicas start together: one migrates, the other waits for it.
        let (a, b) = std::thread::scope(|sc| {
            let a = sc.spawn(|| testing::postgres_store_in(config.clone(), &schema));
            let b = sc.spawn(|| testing::postgres_store_in(config.clone(), &schema));
            (a.join().expect("replica a"), b.join().expect("replica b"))
        });
        assert_eq!(a.backend(), "postgres");
        let id = a.installation_id().expect("id");
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
        assert_eq!(b.installation_id().expect("id"), id, "one installation, whichever replica asks");
        let other = testing::postgres_store().expect("another schema").installation_id().expect("id");
        assert_ne!(other, id);
        // What one replica writes, the other reads.
        let inc = a.open_incident(&sig(), now(0), &json!({}), |_| vec![note("opened")]).expect("open");
        assert_eq!(b.open_incident_by_fingerprint("fp1").expect("read").map(|i| i.id), Some(inc.id));
        assert!(b.open_incident(&sig(), now(1), &json!({}), |_| vec![]).is_err(), "one open incident per fingerprint");
        let versions: i64 =
            a.with(|c| c.query_one("SELECT COUNT(*) FROM warden_schema", args![])?.get(0)).expect("schema versions");
        assert_eq!(versions, 1);
    }

    #[test]
    fn concurrent_writers_keep_one_audit_chain() {
        use warden_playbooks::audit::{self, AuditEvent, AuditKind};
        use warden_playbooks::engine::RunStore;
        // Two stores on one database (two processes on one file, two replicas on one server)
        // append to the audit trail at once; the chain stays one chain.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let mut pairs = vec![(Store::open(&path).expect("a"), Store::open(&path).expect("b"))];
        if let Some((config, schema)) = testing::postgres_schema() {
            pairs.push((
                testing::postgres_store_in(config.clone(), &schema),
                testing::postgres_store_in(config, &schema),
            ));
        }
        for (a, b) in pairs {
            std::thread::scope(|sc| {
                for (store, who) in [(&a, "a"), (&b, "b")] {
                    sc.spawn(move || {
                        for i in 0..15 {
                            let mut run = crate::store::runs::tests::run();
                            run.target = None;
                            let ev = AuditEvent::new(Utc::now(), None, AuditKind::Trigger, who, json!({ "i": i }));
                            store.insert_run(&run, &[ev.clone(), ev], who).expect("insert");
                        }
                    });
                }
            });
            let entries = a.audit_entries().expect("entries");
            assert_eq!(entries.len(), 60, "{}", a.backend());
            assert!(
                audit::verify_with_head(&entries, a.audit_head().expect("head").as_ref()).is_ok(),
                "{}",
                a.backend()
            );
        }
    }

    #[test]
    fn incident_lifecycle_with_outbox() {
        for s in crate::store::testing::stores() {
            let inc =
                s.open_incident(&sig(), now(0), &json!({}), |i| vec![note(&format!("opened {}", i.id))]).expect("open");
            assert_eq!(inc.status, "open");
            assert_eq!(s.open_incident_by_fingerprint("fp1").expect("q").map(|i| i.id), Some(inc.id));
            // A second open incident with the same fingerprint is refused by the schema.
            assert!(s.open_incident(&sig(), now(1), &json!({}), |_| vec![]).is_err());

            assert_eq!(s.record_quiet(inc.id).expect("quiet"), 1);
            assert_eq!(s.update_incident(inc.id, &sig(), now(2)).expect("update"), 1);
            assert_eq!(s.record_quiet(inc.id).expect("quiet"), 1);

            let resolved =
                s.resolve_incident(inc.id, now(3), &json!({}), None, |_| vec![note("resolved")]).expect("resolve");
            assert_eq!(resolved.map(|i| i.status), Some("resolved".into()));
            assert!(s
                .resolve_incident(inc.id, now(4), &json!({}), None, |_| vec![note("again")])
                .expect("resolve")
                .is_none());

            // Both notifications wait in the outbox, in order, with the incident.
            let pending = s.pending_messages("slack").expect("pending");
            assert_eq!(pending.len(), 2);
            assert_eq!(pending[0].subject, format!("opened {}", inc.id));
            assert_eq!(pending[1].subject, "resolved");
            assert!(pending.iter().all(|p| p.incident_id == Some(inc.id)));
            for p in &pending {
                s.mark_delivered(p.id, now(20)).expect("deliver");
            }
            assert_eq!(s.pending_notifications().expect("count"), 0);
            let kinds: Vec<_> = s.incident_events(inc.id).expect("events").into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds, ["opened", "resolved"]);
        }
    }

    #[test]
    fn survives_reopen_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/warden.db");
        {
            let s = Store::open(&path).expect("store");
            s.open_incident(&sig(), now(0), &json!({}), |_| vec![note("opened")]).expect("open");
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.open_incidents().expect("list").len(), 1);
        assert_eq!(s.pending_notifications().expect("count"), 1);
    }

    #[test]
    fn schedule_marks_are_kept_per_name() {
        for s in crate::store::testing::stores() {
            assert_eq!(s.schedule_mark("cron").expect("read"), None);
            s.set_schedule_mark("cron", now(5)).expect("mark");
            s.set_schedule_mark("cron", now(7)).expect("mark again");
            s.set_schedule_mark("other", now(1)).expect("mark");
            assert_eq!(s.schedule_mark("cron").expect("read"), Some(now(7)), "{}", s.backend());
        }
    }

    #[test]
    fn log_state_round_trips_and_updates() {
        for s in crate::store::testing::stores() {
            let now = Utc::now();
            assert_eq!(s.load_log_state("w").expect("load"), None);
            s.save_log_state("w", "{\"a\":1}", Some(1_700_000_000_123_456_789), now).expect("save");
            s.save_log_state("w", "{\"a\":2}", Some(1_700_000_000_123_456_790), now).expect("update");
            assert_eq!(
                s.load_log_state("w").expect("load"),
                Some(("{\"a\":2}".to_string(), Some(1_700_000_000_123_456_790)))
            );
        }
    }
}
