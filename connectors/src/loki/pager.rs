//! Paging of range queries, pure: the next window after a page, the single-timestamp
//! overflow with a doubled limit, de-duplication of the overlap by entry identity, and the
//! entry cap (see the module docs of [`super`]).

use super::*;

/// Identity of an entry: Loki de-duplicates entries with equal labels, timestamp
/// and line at ingestion, so equal keys mean the same entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct EntryKey {
    pub(super) labels: Arc<Labels>,
    pub(super) timestamp_ns: i64,
    pub(super) line: String,
}

impl EntryKey {
    pub(super) fn of(e: &LogEntry) -> Self {
        Self { labels: e.labels.clone(), timestamp_ns: e.timestamp_ns, line: e.line.clone() }
    }
}

/// One request of a paged query: `[start_ns, end_ns)` with `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PageRequest {
    pub(super) start_ns: i64,
    pub(super) end_ns: i64,
    pub(super) limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Moving the window through the range.
    Window,
    /// Fetching every entry of one crowded timestamp with a growing limit.
    OneTimestamp { ts: i64, limit: u32 },
}

/// The paging state machine behind [`LokiClient::query_range`], free of I/O.
#[derive(Debug)]
pub(super) struct Pager {
    pub(super) direction: Direction,
    pub(super) page_limit: u32,
    pub(super) max_entries: usize,
    /// The window still to fetch: `[lo, hi)`.
    pub(super) lo: i64,
    pub(super) hi: i64,
    pub(super) mode: Mode,
    /// Timestamp at the edge of the window, where the next page overlaps this one.
    pub(super) edge_ts: Option<i64>,
    /// Keys of the entries already collected at `edge_ts`.
    pub(super) edge_keys: HashSet<EntryKey>,
    /// Collected entries, in the query's direction.
    pub(super) entries: Vec<LogEntry>,
    pub(super) truncated: Option<Truncation>,
    pub(super) done: bool,
}

impl Pager {
    pub(super) fn new(direction: Direction, start_ns: i64, end_ns: i64, limit: u32, max_entries: usize) -> Self {
        Self {
            direction,
            page_limit: limit.max(1),
            max_entries: max_entries.max(1),
            lo: start_ns,
            hi: end_ns,
            mode: Mode::Window,
            edge_ts: None,
            edge_keys: HashSet::new(),
            entries: Vec::new(),
            truncated: None,
            done: end_ns <= start_ns,
        }
    }

    /// The next request to send, or `None` when the query is over.
    pub(super) fn next_request(&self) -> Option<PageRequest> {
        if self.done || self.lo >= self.hi {
            return None;
        }
        Some(match self.mode {
            Mode::Window => PageRequest { start_ns: self.lo, end_ns: self.hi, limit: self.page_limit },
            Mode::OneTimestamp { ts, limit } => PageRequest { start_ns: ts, end_ns: ts.saturating_add(1), limit },
        })
    }

    /// Whether the current request asks for a larger limit than the page size.
    pub(super) fn is_growing_limit(&self) -> bool {
        matches!(self.mode, Mode::OneTimestamp { limit, .. } if limit > self.page_limit)
    }

    /// Loki refused the larger limit: stop, saying which timestamp is incomplete.
    pub(super) fn limit_refused(&mut self) {
        if let Mode::OneTimestamp { ts, limit } = self.mode {
            self.truncated =
                Some(Truncation::TimestampOverflow { timestamp_ns: ts, limit: (limit / 2).max(self.page_limit) });
        }
        self.done = true;
    }

    /// The largest limit worth asking for one timestamp.
    pub(super) fn limit_cap(&self) -> u32 {
        let cap = u32::try_from(self.max_entries.saturating_add(1)).unwrap_or(u32::MAX);
        cap.max(self.page_limit)
    }

    /// Sorts a page in the query's direction (ties by labels, then line).
    pub(super) fn sort(&self, page: &mut [LogEntry]) {
        page.sort_by(|a, b| {
            let by_time = a.timestamp_ns.cmp(&b.timestamp_ns);
            let by_time = match self.direction {
                Direction::Forward => by_time,
                Direction::Backward => by_time.reverse(),
            };
            by_time.then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
        });
    }

    /// Adds `e` unless it was collected before; stops at `max_entries`.
    pub(super) fn collect(&mut self, e: &LogEntry) {
        if self.done {
            return;
        }
        if self.edge_ts == Some(e.timestamp_ns) && self.edge_keys.contains(&EntryKey::of(e)) {
            return;
        }
        if self.entries.len() >= self.max_entries {
            self.truncated = Some(Truncation::MaxEntries { max: self.max_entries });
            self.done = true;
            return;
        }
        self.entries.push(e.clone());
    }

    /// Makes `ts` the overlap edge, remembering the page's entries at it.
    pub(super) fn set_edge(&mut self, ts: i64, page: &[LogEntry]) {
        if self.edge_ts != Some(ts) {
            self.edge_keys.clear();
            self.edge_ts = Some(ts);
        }
        for e in page.iter().filter(|e| e.timestamp_ns == ts) {
            self.edge_keys.insert(EntryKey::of(e));
        }
    }

    /// Moves the window past timestamp `ts`, whose entries are all collected.
    pub(super) fn move_past(&mut self, ts: i64) {
        match self.direction {
            Direction::Forward => match ts.checked_add(1) {
                Some(next) => self.lo = next,
                None => self.done = true,
            },
            Direction::Backward => self.hi = ts,
        }
        self.edge_ts = None;
        self.edge_keys.clear();
        self.mode = Mode::Window;
    }

    /// Takes the answer to `req`. An `Err` describes an answer that cannot be right.
    pub(super) fn accept(&mut self, req: PageRequest, page: Vec<LogEntry>) -> std::result::Result<(), String> {
        let raw = page.len();
        let full = raw >= req.limit as usize;
        let mut page: Vec<LogEntry> =
            page.into_iter().filter(|e| e.timestamp_ns >= req.start_ns && e.timestamp_ns < req.end_ns).collect();
        if page.len() < raw {
            tracing::warn!(
                outside = raw - page.len(),
                start = req.start_ns,
                end = req.end_ns,
                "Loki returned entries outside the requested range; ignoring them"
            );
        }
        self.sort(&mut page);
        for e in &page {
            self.collect(e);
        }
        if self.done {
            return Ok(());
        }
        match self.mode {
            Mode::OneTimestamp { ts, limit } => {
                if !full {
                    self.move_past(ts);
                } else if limit >= self.limit_cap() {
                    self.truncated = Some(Truncation::TimestampOverflow { timestamp_ns: ts, limit });
                    self.done = true;
                } else {
                    self.set_edge(ts, &page);
                    let next = limit.saturating_mul(2).min(self.limit_cap());
                    self.mode = Mode::OneTimestamp { ts, limit: next };
                }
            }
            Mode::Window => {
                if !full {
                    self.done = true;
                    return Ok(());
                }
                let (Some(first), Some(last)) = (page.first(), page.last()) else {
                    return Err(format!(
                        "a full page of {raw} entries has none inside the requested range [{}, {})",
                        req.start_ns, req.end_ns
                    ));
                };
                let (first_ts, edge) = (first.timestamp_ns, last.timestamp_ns);
                self.set_edge(edge, &page);
                if first_ts == edge {
                    // One timestamp fills the page: moving the window would not
                    // progress, so fetch that nanosecond alone with a larger limit.
                    let next = req.limit.saturating_mul(2).min(self.limit_cap());
                    if next <= req.limit {
                        self.truncated = Some(Truncation::TimestampOverflow { timestamp_ns: edge, limit: req.limit });
                        self.done = true;
                    } else {
                        self.mode = Mode::OneTimestamp { ts: edge, limit: next };
                    }
                } else {
                    // Overlap the next window with this page by the edge
                    // nanosecond; its collected entries are skipped by key.
                    match self.direction {
                        Direction::Forward => self.lo = edge,
                        Direction::Backward => self.hi = edge.saturating_add(1),
                    }
                }
            }
        }
        Ok(())
    }

    /// The collected entries in ascending time order, and the truncation if any.
    pub(super) fn finish(mut self) -> (Vec<LogEntry>, Option<Truncation>) {
        self.entries.sort_by(|a, b| {
            a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
        });
        (self.entries, self.truncated)
    }
}
