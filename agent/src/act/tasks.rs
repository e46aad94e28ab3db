//! Playbook runs off the evaluation loop.
//!
//! A run can take as long as the cluster makes it (a hung API server, retries, a request
//! whose answer never comes). Awaited inside a watch evaluation, one slow run would stall
//! every watch. So the daemon starts and advances runs in tasks of their own: bounded (at
//! most [`MAX_CONCURRENT_RUNS`] started by evaluations at once), tracked (shutdown waits for
//! them, within its deadline) and tied to the root shutdown token (a task still waiting for
//! its turn when shutdown begins does not start). At most one task per incident starts
//! runs, and at most one per run advances it; the run's claim (see
//! `warden_playbooks::claim`) keeps any other task, here or in another process, off it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs started by evaluations that may be in flight at once.
pub const MAX_CONCURRENT_RUNS: usize = 32;

/// Where the daemon's run tasks live.
#[derive(Clone)]
pub struct ActionTasks {
    pub tracker: TaskTracker,
    limit: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    /// Keys with a task in flight (`incident:<id>`, `run:<id>`).
    inflight: Arc<Mutex<HashSet<String>>>,
}

impl ActionTasks {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT_RUNS)),
            shutdown,
            inflight: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Run `work` in a task of its own unless a task for `key` is in flight; `bounded`
    /// tasks wait for one of the [`MAX_CONCURRENT_RUNS`] slots first. Returns whether a
    /// task was started.
    pub fn spawn<F>(&self, key: String, bounded: bool, work: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        {
            let Ok(mut set) = self.inflight.lock() else { return false };
            if !set.insert(key.clone()) {
                return false;
            }
        }
        let inflight = self.inflight.clone();
        let limit = self.limit.clone();
        let token = self.shutdown.clone();
        self.tracker.spawn(async move {
            let permit = if bounded {
                tokio::select! {
                    p = limit.acquire_owned() => p.ok(),
                    _ = token.cancelled() => None,
                }
            } else {
                None
            };
            if !bounded || permit.is_some() {
                work.await;
            }
            drop(permit);
            if let Ok(mut set) = inflight.lock() {
                set.remove(&key);
            }
        });
        true
    }

    /// How many keys have a task in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_task_per_key_and_all_tracked() {
        let tasks = ActionTasks::new(CancellationToken::new());
        let done = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (d, g) = (done.clone(), gate.clone());
        assert!(tasks.spawn("run:1".into(), true, async move {
            g.notified().await;
            d.fetch_add(1, Ordering::SeqCst);
        }));
        // Same key while the first is in flight: not started.
        let d = done.clone();
        assert!(!tasks.spawn("run:1".into(), true, async move {
            d.fetch_add(100, Ordering::SeqCst);
        }));
        assert_eq!(tasks.in_flight(), 1);
        gate.notify_one();
        tasks.tracker.close();
        tasks.tracker.wait().await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert_eq!(tasks.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_bounded_task_waiting_at_shutdown_does_not_start() {
        let token = CancellationToken::new();
        let tasks = ActionTasks::new(token.clone());
        let ran = Arc::new(AtomicUsize::new(0));
        let mut permits = Vec::new();
        for _ in 0..MAX_CONCURRENT_RUNS {
            permits.push(tasks.limit.clone().try_acquire_owned().expect("permit"));
        }
        let r = ran.clone();
        assert!(tasks.spawn("incident:9".into(), true, async move {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        token.cancel();
        tasks.tracker.close();
        tasks.tracker.wait().await;
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        drop(permits);
    }
}
