//! Scoring: each candidate's signals (strength, precedence, topology, propagation, change
//! correlation, events, logs) weighed into one score with its reasons, and the ranking in a
//! total order.

use super::*;

impl<'a> Context<'a> {
    pub(super) fn profile_of(&self, s: &Subject) -> Option<&Profile> {
        self.profiles.get(s)
    }

    /// The onset used for comparisons: a node's is moved back by the grace period.
    pub(super) fn effective_onset(&self, s: &Subject) -> Option<i64> {
        let pr = self.profile_of(s)?;
        let o = pr.onset?;
        Some(if s.kind == SubjectKind::Node && pr.onset_declared { o.saturating_sub(self.p.node_grace) } else { o })
    }

    /// Weight of a subject as a "mover" for the others' precedence.
    pub(super) fn mover_weight(&self, s: &Subject) -> f64 {
        self.profile_of(s).map(|pr| pr.strength.max(0.5 * pr.events).max(0.5 * pr.logs)).unwrap_or(0.0)
    }

    pub(super) fn precedence(&self, s: &Subject) -> f64 {
        let Some(os) = self.effective_onset(s) else {
            return 0.0;
        };
        let mut num = 0.0;
        let mut den = 0.0;
        for o in self.profiles.keys() {
            if o == s {
                continue;
            }
            let Some(oo) = self.effective_onset(o) else {
                continue;
            };
            let w = self.mover_weight(o);
            if w <= 0.0 {
                continue;
            }
            let cmp = if os < oo.saturating_sub(self.p.tolerance) {
                1.0
            } else if os <= oo.saturating_add(self.p.tolerance) {
                0.5
            } else {
                0.0
            };
            num += w * cmp;
            den += w;
        }
        let relative = if den > 0.0 { num / den } else { 1.0 };
        // Relative to the incident start: moving before (or at) the start is what a cause does;
        // starting to move long after it is what a consequence does.
        let after = os.saturating_sub(self.input.start.saturating_add(60));
        let to_start = if after <= 0 { 1.0 } else { unit(1.0 - after as f64 / self.p.lag as f64) };
        unit(0.8 * relative + 0.2 * to_start)
    }

    /// Workloads `s` depends on, transitively, with the hop count of the shortest path.
    pub(super) fn downstream(&self, s: &Subject) -> BTreeMap<Subject, u32> {
        reachable(&self.deps, s)
    }

    /// Workloads that depend on `s`, transitively, with hop counts.
    pub(super) fn upstream(&self, s: &Subject) -> BTreeMap<Subject, u32> {
        reachable(&self.rdeps, s)
    }

    pub(super) fn residents(&self, node: &Subject) -> Vec<Subject> {
        self.residents_of.get(node).cloned().unwrap_or_default()
    }

    pub(super) fn is_anomalous(&self, s: &Subject) -> bool {
        self.profile_of(s).is_some_and(|pr| pr.anomalous)
    }

    pub(super) fn fault_strength(&self, s: &Subject) -> f64 {
        self.profile_of(s)
            .map(|pr| pr.fault_strength.max(if s.kind == SubjectKind::Node { pr.events } else { 0.0 }))
            .unwrap_or(0.0)
    }

    /// Whether `cause` began no later than `effect` (within tolerance): 1, else a small weight.
    pub(super) fn timing(&self, cause: &Subject, effect: &Subject) -> f64 {
        match (self.effective_onset(cause), self.effective_onset(effect)) {
            (Some(c), Some(e)) if c <= e.saturating_add(self.p.tolerance.max(30)) => 1.0,
            (Some(_), Some(_)) => 0.25,
            _ => 0.5,
        }
    }

    /// Fraction of the node's residents other than `except` that are anomalous.
    pub(super) fn resident_fraction(&self, node: &Subject, except: Option<&Subject>) -> (usize, usize) {
        let res = self.residents(node);
        let others: Vec<&Subject> = res.iter().filter(|r| Some(*r) != except).collect();
        let bad = others.iter().filter(|r| self.is_anomalous(r)).count();
        (bad, others.len())
    }

    /// Victim/source score in `[0, 1]` and its reasons.
    pub(super) fn propagation(&self, s: &Subject) -> (f64, Vec<String>, Vec<String>) {
        let mut reasons = Vec::new();
        let mut ids = Vec::new();
        let decay = |hops: u32| self.p.hop_decay.powi(hops.saturating_sub(1).min(64) as i32);
        // Victim: an anomalous dependency (or a broadly anomalous node) that began no later.
        let mut victim = 0.0f64;
        let mut victim_of: Option<Subject> = None;
        if s.kind == SubjectKind::Workload {
            for (d, hops) in self.downstream(s) {
                if !self.is_anomalous(&d) {
                    continue;
                }
                let v = decay(hops) * self.fault_strength(&d) * self.timing(&d, s);
                if v > victim {
                    victim = v;
                    victim_of = Some(d);
                }
            }
            for n in self.placement.get(s).into_iter().flatten() {
                if !self.is_anomalous(n) {
                    continue;
                }
                let (bad, total) = self.resident_fraction(n, Some(s));
                let broad = if total == 0 { 0.0 } else { bad as f64 / total as f64 };
                let v = self.fault_strength(n) * broad * self.timing(n, s);
                if v > victim {
                    victim = v;
                    victim_of = Some(n.clone());
                }
            }
        }
        // Source: the share of all anomaly mass (other subjects) that s can explain.
        let mut explained_set: BTreeMap<Subject, u32> = BTreeMap::new();
        let mut breadth = 1.0;
        if s.kind == SubjectKind::Node {
            let res = self.residents(s);
            let bad = res.iter().filter(|r| self.is_anomalous(r)).count();
            breadth = if res.is_empty() { 0.0 } else { bad as f64 / res.len() as f64 };
            if bad >= 1 {
                reasons.push(format!("{bad} of {} workloads on it anomalous", res.len()));
            }
            for r in res {
                for (u, h) in self.upstream(&r) {
                    let e = explained_set.entry(u).or_insert(h + 1);
                    *e = (*e).min(h + 1);
                }
                explained_set.insert(r, 1);
            }
        } else {
            explained_set = self.upstream(s);
        }
        let mut total = 0.0;
        let mut explained = 0.0;
        let mut n_explained = 0usize;
        for o in self.profiles.keys() {
            if o == s || !self.is_anomalous(o) {
                continue;
            }
            let w = self.fault_strength(o);
            total += w;
            if let Some(h) = explained_set.get(o) {
                explained += w * decay(*h) * self.timing(s, o);
                n_explained += 1;
            }
        }
        let explain = if total > 0.0 { unit(explained / total) * breadth } else { 0.0 };
        if s.kind == SubjectKind::Workload && n_explained > 0 && explain >= 0.3 {
            reasons
                .push(format!("can explain {n_explained} anomalous caller{}", if n_explained == 1 { "" } else { "s" }));
        }
        if let Some(v) = &victim_of {
            if victim >= 0.3 {
                let what = if v.kind == SubjectKind::Node { "runs on anomalous" } else { "depends on anomalous" };
                reasons.push(format!("{what} {v} (likely a victim)"));
            }
        }
        for t in self.facts.get(s).map(|f| f.topology.clone()).unwrap_or_default() {
            ids.push(t);
        }
        (unit(0.5 * (1.0 - unit(victim)) + 0.5 * explain), reasons, ids)
    }

    /// Proximity to the symptom, in `[0, 1]`.
    pub(super) fn proximity(&self, s: &Subject) -> (f64, Option<String>) {
        let Some(sym) = &self.input.symptom else {
            return (0.5, None);
        };
        if s == sym {
            return (1.0, Some("is the symptom".to_string()));
        }
        let down = &self.symptom_downstream;
        if s.kind == SubjectKind::Node {
            let on_path = self.placement.iter().any(|(w, ns)| ns.contains(s) && (w == sym || down.contains_key(w)));
            return if on_path { (1.0, Some(format!("hosts the path of {sym}"))) } else { (0.2, None) };
        }
        if let Some(h) = down.get(s) {
            let why = if *h == 1 { format!("{sym} depends on it") } else { format!("on {sym}'s dependency path") };
            return (1.0, Some(why));
        }
        if s.namespace.is_some() && s.namespace == sym.namespace {
            return (0.4, None);
        }
        (0.2, None)
    }

    /// Correlation of one change with the anomalies, in `[0, 1]`, and a reason.
    pub(super) fn change_score(&self, workload: &Subject, c: &ChangeItem, first_onset: Option<i64>) -> (f64, String) {
        let own = self.profile_of(workload).filter(|pr| pr.anomalous).and_then(|pr| pr.onset);
        let (reference, own_factor, what) = match (own, first_onset) {
            (Some(o), _) => (Some(o), 1.0, "the first anomaly"),
            (None, Some(f)) => (Some(f), 0.35, "the first anomaly"),
            (None, None) => (Some(self.input.start), 0.35, "the incident start"),
        };
        let kind_factor = match c.kind {
            ChangeKind::Rollout => 1.0,
            ChangeKind::Config => 0.8,
            ChangeKind::Secret => 0.7,
            ChangeKind::Scale | ChangeKind::Autoscaler => 0.0,
        };
        let Some(r) = reference else {
            return (0.0, String::new());
        };
        let gap = r.saturating_sub(c.time);
        let tf = if gap >= 0 && gap <= self.p.change_window {
            1.0 - 0.5 * gap as f64 / self.p.change_window as f64
        } else if gap < 0 && -gap <= self.p.change_after {
            0.6
        } else {
            0.0
        };
        let reason = if gap >= 0 {
            format!("{} {} before {what}", c.label, human_secs(gap))
        } else {
            format!("{} {} after {what}", c.label, human_secs(gap))
        };
        (unit(tf * kind_factor * own_factor), reason)
    }

    pub(super) fn first_onset(&self) -> Option<i64> {
        self.profiles.iter().filter(|(_, pr)| pr.anomalous).filter_map(|(s, _)| self.effective_onset(s)).min()
    }

    pub(super) fn active_weight(&self) -> f64 {
        let w = &self.p.w;
        let mut total = w[W_STRENGTH] + w[W_PRECEDENCE];
        if self.has_topology && self.input.symptom.is_some() {
            total += w[W_TOPOLOGY];
        }
        if self.has_topology {
            total += w[W_PROPAGATION];
        }
        if self.has_changes {
            total += w[W_CHANGE];
        }
        if self.has_events {
            total += w[W_EVENTS];
        }
        if self.has_logs {
            total += w[W_LOGS];
        }
        total
    }

    /// Score a subject (as a workload or node candidate, or as the workload of a change with
    /// change score `change`), with its supporting evidence ranked by contribution.
    pub(super) fn score_subject(&self, s: &Subject, change: Option<(f64, &ChangeItem, String)>) -> Candidate {
        let w = &self.p.w;
        let empty_facts = Facts::default();
        let f = self.facts.get(s).unwrap_or(&empty_facts);
        let empty_profile = Profile::default();
        let pr = self.profile_of(s).unwrap_or(&empty_profile);
        let mut contrib: Vec<(f64, String)> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut sum = 0.0;

        // Strength.
        sum += w[W_STRENGTH] * pr.strength;
        if let Some(a) = pr.top.and_then(|i| f.anomalies.get(i)) {
            if a.z > 0.0 {
                let dir = if a.rising { "above" } else { "below" };
                reasons.push(match a.forecast {
                    Some(f) => match f.crossing {
                        Some(t) => format!("{} forecast to reach {} at {}", a.metric, f.limit, clock(t)),
                        None => format!("{} heading for {} (beyond the forecast horizon)", a.metric, f.limit),
                    },
                    None => format!("{} {:.1}σ {dir} normal", a.metric, a.raw_z),
                });
            }
        }
        for a in &f.anomalies {
            contrib.push((w[W_STRENGTH] * self.p.strength(a.z), a.id.clone()));
        }

        // Precedence, as sure as the subject's own movement.
        let confidence = pr.strength.max(0.5 * pr.events).max(0.5 * pr.logs);
        let prec = self.precedence(s) * unit(confidence).powf(self.p.precedence_exponent);
        sum += w[W_PRECEDENCE] * prec;
        if let Some(o) = pr.onset {
            let movers = self.profiles.iter().filter(|(x, _)| *x != s && self.mover_weight(x) >= 0.2).count();
            if self.precedence(s) >= 0.9 && movers > 0 {
                reasons.insert(0, format!("moved first (onset {})", clock(o)));
            } else {
                reasons.push(format!("onset {}", clock(o)));
            }
            if let Some(a) = pr.onset_anomaly.and_then(|i| f.anomalies.get(i)) {
                contrib.push((w[W_PRECEDENCE] * prec, a.id.clone()));
            }
        }

        // Topology.
        let mut unrelated = false;
        if self.has_topology {
            if self.input.symptom.is_some() {
                let (t, why) = self.proximity(s);
                unrelated = t < 1.0;
                sum += w[W_TOPOLOGY] * t;
                if let Some(why) = why {
                    reasons.push(why);
                }
            }
            let (x, why, ids) = self.propagation(s);
            sum += w[W_PROPAGATION] * x;
            reasons.extend(why);
            for id in ids {
                contrib.push((0.01, id));
            }
            if s.kind == SubjectKind::Node {
                for r in self.residents(s) {
                    if self.is_anomalous(&r) {
                        if let Some(rf) = self.facts.get(&r) {
                            for t in &rf.topology {
                                contrib.push((0.02, t.clone()));
                            }
                        }
                    }
                }
            }
        }

        // Changes.
        if self.has_changes {
            let c = match &change {
                Some((score, item, reason)) => {
                    contrib.push((w[W_CHANGE] * score + 1.0, item.id.clone()));
                    reasons.insert(0, reason.clone());
                    *score
                }
                None => {
                    let first = self.first_onset();
                    let mut best = 0.0f64;
                    for c in f.changes.iter().filter(|c| is_cause_change(c.kind)) {
                        let (sc, reason) = self.change_score(s, c, first);
                        if sc > 0.0 {
                            contrib.push((w[W_CHANGE] * sc, c.id.clone()));
                            if sc > best {
                                best = sc;
                                if sc >= 0.3 {
                                    reasons.push(reason);
                                }
                            }
                        }
                    }
                    best
                }
            };
            sum += w[W_CHANGE] * c;
        }

        // Events.
        if self.has_events {
            sum += w[W_EVENTS] * pr.events;
            let mut evs: Vec<&Signal> = f.events.iter().chain(self.node_support.get(s).into_iter().flatten()).collect();
            evs.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.id.cmp(&b.id)));
            for (i, e) in evs.iter().enumerate() {
                contrib.push((w[W_EVENTS] * e.weight, e.id.clone()));
                if i < 3 && e.weight >= 0.2 {
                    reasons.push(e.label.clone());
                }
            }
        }

        // Logs.
        if self.has_logs {
            sum += w[W_LOGS] * pr.logs;
            for l in &f.logs {
                contrib.push((w[W_LOGS] * l.weight, l.id.clone()));
                if l.weight >= 0.2 {
                    reasons.push(l.label.clone());
                }
            }
        }

        let total = self.active_weight();
        let mut score = if total > 0.0 { unit(sum / total) } else { 0.0 };
        if unrelated {
            score *= self.p.unrelated;
            reasons.push("not on the symptom's dependency path".to_string());
        }
        if let Some((c, _, _)) = &change {
            // The change itself: as probable as its workload, a little more when well correlated.
            score = unit(score * (0.9 + 0.15 * unit(*c / 0.9)));
        }

        contrib.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut seen = BTreeSet::new();
        let evidence: Vec<String> =
            contrib.into_iter().filter(|(_, id)| seen.insert(id.clone())).map(|(_, id)| id).collect();
        let mut seen_reasons = BTreeSet::new();
        reasons.retain(|r| seen_reasons.insert(r.clone()));
        reasons.truncate(6);
        let cause = match (&change, s.kind) {
            (Some(_), _) => CauseKind::Change,
            (None, SubjectKind::Node) => CauseKind::Node,
            (None, SubjectKind::Workload) => CauseKind::Workload,
        };
        Candidate { subject: s.clone(), cause, score, evidence, reasons }
    }

    pub(super) fn ranking(&self) -> Ranking {
        let mut candidates = Vec::new();
        // Workloads and nodes with evidence of their own.
        let mut subjects: BTreeSet<Subject> =
            self.facts.iter().filter(|(_, f)| f.signal).map(|(s, _)| s.clone()).collect();
        subjects.extend(self.node_support.keys().cloned());
        // Nodes without evidence of their own where most workloads are anomalous.
        let nodes: BTreeSet<Subject> = self.placement.values().flatten().cloned().collect();
        for n in nodes {
            let res = self.residents(&n);
            let bad = res.iter().filter(|r| self.is_anomalous(r)).count();
            if bad >= 2 && bad * 2 >= res.len() {
                subjects.insert(n);
            }
        }
        for s in &subjects {
            candidates.push(self.score_subject(s, None));
        }
        // Changes.
        let first = self.first_onset();
        for (s, f) in &self.facts {
            if s.kind != SubjectKind::Workload {
                continue;
            }
            for c in f.changes.iter().filter(|c| is_cause_change(c.kind)) {
                let (sc, reason) = self.change_score(s, c, first);
                candidates.push(self.score_subject(s, Some((sc, c, reason))));
            }
        }
        for c in &mut candidates {
            if !c.score.is_finite() {
                c.score = 0.0;
            }
        }
        candidates.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.subject.cmp(&b.subject))
                .then_with(|| cause_order(a.cause).cmp(&cause_order(b.cause)))
                .then_with(|| a.evidence.first().cmp(&b.evidence.first()))
        });
        Ranking { candidates }
    }
}

pub(super) fn cause_order(c: CauseKind) -> u8 {
    match c {
        CauseKind::Change => 0,
        CauseKind::Workload => 1,
        CauseKind::Node => 2,
    }
}

pub(super) fn is_cause_change(k: ChangeKind) -> bool {
    matches!(k, ChangeKind::Rollout | ChangeKind::Config | ChangeKind::Secret)
}

pub(super) fn change_word(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Rollout => "rollout",
        ChangeKind::Config => "config change",
        ChangeKind::Secret => "secret change",
        ChangeKind::Scale => "scale",
        ChangeKind::Autoscaler => "autoscaler change",
    }
}

/// `b` without the image name it shares with `a`: `api:v1.4.2`, `api:v1.5.0` → `v1.5.0`.
pub(super) fn short_target<'b>(a: &str, b: &'b str) -> &'b str {
    match (a.rsplit_once(':'), b.rsplit_once(':')) {
        (Some((ia, _)), Some((ib, tag))) if ia == ib && !tag.is_empty() && !ib.is_empty() => tag,
        _ => b,
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Subjects reachable from `s` along `edges` (breadth first, at most 64 hops), with the hop
/// count of the shortest path.
pub(super) fn reachable(edges: &BTreeMap<Subject, BTreeSet<Subject>>, s: &Subject) -> BTreeMap<Subject, u32> {
    let mut out: BTreeMap<Subject, u32> = BTreeMap::new();
    let mut frontier = vec![s.clone()];
    let mut hop = 0u32;
    while !frontier.is_empty() && hop < 64 {
        hop += 1;
        let mut next = Vec::new();
        for f in &frontier {
            for d in edges.get(f).into_iter().flatten() {
                if d != s && !out.contains_key(d) {
                    out.insert(d.clone(), hop);
                    next.push(d.clone());
                }
            }
        }
        frontier = next;
    }
    out
}
