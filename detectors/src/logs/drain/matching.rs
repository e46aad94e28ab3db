//! Matching a masked line against the template tree: the exact and similarity searches, the
//! gap search for optional fields, generalising and merging templates, creating new ones and
//! evicting the least recently used.

use super::*;

impl Miner {
    pub(super) fn add_masked(&mut self, line: &str, masked: &MaskedLine) -> MatchResult {
        let truncated = masked.truncated();
        // Exact match.
        if let Some(&s) = self.by_text.get(masked.as_str()) {
            return self.record(s, line, Change::Existing, Vec::new(), truncated);
        }
        // The tokens, on the stack for the usual short line.
        let mut stack = [""; 48];
        let heap: Vec<&str>;
        let tokens: &[&str] = if masked.len() <= stack.len() {
            for (slot, t) in stack.iter_mut().zip(masked.tokens()) {
                *slot = t;
            }
            &stack[..masked.len()]
        } else {
            heap = masked.tokens().collect();
            &heap
        };
        let Some(s) = self.search(masked, tokens) else {
            if let Some((s, gap)) = self.gap_search(tokens) {
                return self.join_gap(line, s, gap, tokens, truncated);
            }
            return self.create(line, masked, tokens, truncated);
        };
        let Some(c) = self.slot(s) else {
            return self.create(line, masked, tokens, truncated);
        };
        // Constant words of the template that the line does not have.
        let differing: Vec<usize> = (0..c.len()).filter(|&i| c.is_constant(i) && c.token(i) != tokens[i]).collect();
        let mut merged = Vec::new();
        let mut target = s;
        if !differing.is_empty() && self.params.min_variants > 2 {
            let siblings = self.siblings(s, &differing, tokens);
            if siblings.len() + 2 < self.params.min_variants {
                // Not yet evidence that these words are values: a template of its own, in the
                // same leaf, where later variants will find it. Unless the line is a template
                // of another length with an optional field.
                let path = c.path.clone();
                if let Some((s, gap)) = self.gap_search(tokens) {
                    return self.join_gap(line, s, gap, tokens, truncated);
                }
                return self.create_at(line, path, tokens, truncated);
            }
            for sibling in siblings {
                if self.slot(target).is_some() && self.slot(sibling).is_some() {
                    target = self.merge(target, sibling, &mut merged);
                }
            }
        }
        let change = match self.generalize(target, tokens) {
            Generalized::Unchanged => Change::Existing,
            Generalized::Changed => Change::Updated,
            Generalized::Collides(other) => {
                target = self.merge(target, other, &mut merged);
                Change::Updated
            }
        };
        let change = if merged.is_empty() { change } else { Change::Updated };
        self.record(target, line, change, merged, truncated)
    }

    /// Count the line in template `s` and report it.
    pub(super) fn record(
        &mut self,
        s: usize,
        line: &str,
        change: Change,
        merged: Vec<TemplateId>,
        truncated: bool,
    ) -> MatchResult {
        let seq = self.lines;
        let (max_samples, sample_bytes) = (self.params.max_samples, self.params.sample_max_bytes);
        match self.slot_mut(s) {
            Some(c) => {
                c.count = c.count.saturating_add(1);
                c.last_seen = seq;
                c.add_sample(line, max_samples, sample_bytes);
                MatchResult {
                    template_id: c.id,
                    template: Arc::clone(&c.text),
                    change,
                    count: c.count,
                    merged,
                    evicted: Vec::new(),
                    truncated,
                }
            }
            // Unreachable: callers pass live slots.
            None => MatchResult {
                template_id: 0,
                template: Arc::from(""),
                change,
                count: 0,
                merged,
                evicted: Vec::new(),
                truncated,
            },
        }
    }

    /// The most similar template for the line in its leaf, if similar enough.
    pub(super) fn search(&self, masked: &MaskedLine, tokens: &[&str]) -> Option<usize> {
        let node = self.leaf(masked, tokens)?;
        let n = tokens.len().max(1) as f64;
        let mut best: Option<(usize, usize, usize, TemplateId)> = None; // (slot, same, wildcards, id)
        for &s in &node.clusters {
            let Some(c) = self.slot(s) else { continue };
            if c.len() != tokens.len() {
                continue;
            }
            let same = (0..c.len()).filter(|&i| c.is_constant(i) && c.token(i) == tokens[i]).count();
            let better = match best {
                None => true,
                Some((_, bs, bw, bid)) => {
                    (same, c.wildcards, std::cmp::Reverse(c.id)) > (bs, bw, std::cmp::Reverse(bid))
                }
            };
            if better {
                best = Some((s, same, c.wildcards, c.id));
            }
        }
        let (s, same, _, _) = best?;
        let sim = if tokens.is_empty() { 1.0 } else { same as f64 / n };
        (sim >= self.params.sim_threshold).then_some(s)
    }

    /// The leaf a line is searched in.
    pub(super) fn leaf(&self, masked: &MaskedLine, tokens: &[&str]) -> Option<&Node> {
        let mut node = self.roots.get(&tokens.len())?;
        for (i, token) in tokens.iter().take(self.params.depth).enumerate() {
            let key = tree_key(token, masked.kind(i));
            node = node.children.get(key).or_else(|| node.children.get(WILDCARD))?;
        }
        Some(node)
    }

    /// The leaf that templates of `len` tokens starting like `tokens` are in.
    pub(super) fn leaf_for(&self, tokens: &[&str], len: usize) -> Option<&Node> {
        let mut node = self.roots.get(&len)?;
        for token in tokens.iter().take(self.params.depth.min(len)) {
            let key = tree_key(token, None);
            node = node.children.get(key).or_else(|| node.children.get(WILDCARD))?;
        }
        Some(node)
    }

    /// A template with 1 ..= [`MAX_GAP`] tokens more or fewer that the line matches with an
    /// optional field left out ([`gap`]): the fewest tokens apart first, then the most equal
    /// constant words, then the oldest.
    pub(super) fn gap_search(&self, tokens: &[&str]) -> Option<(usize, Gap)> {
        let n = tokens.len();
        let mut template: Vec<&str> = Vec::new();
        for d in 1..=MAX_GAP {
            let mut best: Option<(usize, Gap, TemplateId)> = None;
            for len in [n.checked_sub(d), Some(n + d)].into_iter().flatten() {
                let Some(node) = self.leaf_for(tokens, len) else {
                    continue;
                };
                for &s in &node.clusters {
                    let Some(c) = self.slot(s) else { continue };
                    if c.len() != len {
                        continue;
                    }
                    template.clear();
                    template.extend((0..c.len()).map(|i| c.token(i)));
                    let Some(g) = gap::align(&template, tokens, false) else {
                        continue;
                    };
                    if g.same < 2 || (g.same as f64) < self.params.sim_threshold * n.min(len) as f64 {
                        continue;
                    }
                    if best.is_none_or(|(_, b, id)| (g.same, std::cmp::Reverse(c.id)) > (b.same, std::cmp::Reverse(id)))
                    {
                        best = Some((s, g, c.id));
                    }
                }
            }
            if let Some((s, g, _)) = best {
                return Some((s, g));
            }
        }
        None
    }

    /// The line joins template `s` of another length through `gap`. A longer line leaves the
    /// template's length as it is (a `<*>` next to the gap stands for the field too); a shorter
    /// line makes the template drop the field, and the templates of the old shape that line up
    /// with the new one the same way are merged into it.
    pub(super) fn join_gap(&mut self, line: &str, s: usize, g: Gap, tokens: &[&str], truncated: bool) -> MatchResult {
        let Some(c) = self.slot(s) else {
            return self.create_unkeyed(line, tokens, truncated);
        };
        let mut merged = Vec::new();
        let mut target = s;
        let mut change = Change::Updated;
        if c.len() < tokens.len() {
            let aligned: Vec<&str> = tokens[..g.start].iter().chain(&tokens[g.start + g.len..]).copied().collect();
            match self.generalize(target, &aligned) {
                Generalized::Collides(other) => target = self.merge(target, other, &mut merged),
                Generalized::Unchanged => change = Change::Existing,
                Generalized::Changed => {}
            }
        } else {
            let (old_len, old_path) = (c.len(), c.path.clone());
            let short: Vec<String> = (0..c.len())
                .filter(|i| !(g.start..g.start + g.len).contains(i))
                .map(|i| c.token(i).to_string())
                .collect();
            target = self.reshape(s, &short, &mut merged);
            if let Generalized::Collides(other) = self.generalize(target, tokens) {
                target = self.merge(target, other, &mut merged);
            }
            target = self.absorb_old_shape(target, old_len, &old_path, &mut merged);
        }
        let change = if merged.is_empty() { change } else { Change::Updated };
        self.record(target, line, change, merged, truncated)
    }

    /// A new template for tokens whose masking kinds are not at hand.
    pub(super) fn create_unkeyed(&mut self, line: &str, tokens: &[&str], truncated: bool) -> MatchResult {
        let path = self.new_path_with(tokens, |_| None);
        self.create_at(line, path, tokens, truncated)
    }

    /// Give template `s` the text `tokens` (another length): it moves to its new place in the
    /// tree, keeping its id; if another template has that text, the two are merged. Returns
    /// the template's slot.
    pub(super) fn reshape(&mut self, s: usize, tokens: &[String], merged: &mut Vec<TemplateId>) -> usize {
        let Some(mut c) = self.take(s) else { return s };
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        c.set_text(&refs);
        c.path = self.new_path_with(&refs, |_| None);
        let other = self.by_text.get(&c.text).copied();
        let slot = self.insert(c);
        match other {
            Some(o) if o != slot => self.merge(slot, o, merged),
            _ => slot,
        }
    }

    /// Merge into `target` the templates of the leaf at `len`, `path` that line up with it
    /// through an optional field (the shapes `target` had before it dropped the field).
    pub(super) fn absorb_old_shape(
        &mut self,
        mut target: usize,
        len: usize,
        path: &[Box<str>],
        merged: &mut Vec<TemplateId>,
    ) -> usize {
        let Some(mut node) = self.roots.get(&len) else {
            return target;
        };
        for key in path {
            match node.children.get(key) {
                Some(n) => node = n,
                None => return target,
            }
        }
        let mut candidates: Vec<(TemplateId, usize)> =
            node.clusters.iter().filter_map(|&o| self.slot(o).map(|c| (c.id, o))).collect();
        candidates.sort_unstable();
        for (_, o) in candidates {
            let (Some(t), Some(c)) = (self.slot(target), self.slot(o)) else {
                continue;
            };
            if c.len() != len {
                continue;
            }
            let short: Vec<&str> = (0..t.len()).map(|i| t.token(i)).collect();
            let long: Vec<&str> = (0..c.len()).map(|i| c.token(i)).collect();
            let Some(g) = gap::align(&long, &short, true) else {
                continue;
            };
            if g.same < 2 || (g.same as f64) < self.params.sim_threshold * short.len() as f64 {
                continue;
            }
            target = self.merge(target, o, merged);
        }
        target
    }

    /// Templates in the leaf of `s` that differ from it only in the constant words at
    /// `differing` and in values: with those words made `<*>` they and the line would be one
    /// template. One per distinct combination of those words, the line's own excluded.
    pub(super) fn siblings(&self, s: usize, differing: &[usize], tokens: &[&str]) -> Vec<usize> {
        let Some(t) = self.slot(s) else { return Vec::new() };
        let Some(root) = self.roots.get(&t.len()) else { return Vec::new() };
        let mut node = root;
        for key in &t.path {
            match node.children.get(key) {
                Some(n) => node = n,
                None => return Vec::new(),
            }
        }
        let words = |c: &Cluster| -> Vec<String> { differing.iter().map(|&i| c.token(i).to_string()).collect() };
        let mut seen = vec![words(t), differing.iter().map(|&i| tokens[i].to_string()).collect()];
        let mut candidates: Vec<(TemplateId, usize)> =
            node.clusters.iter().filter_map(|&o| self.slot(o).map(|c| (c.id, o))).filter(|&(_, o)| o != s).collect();
        candidates.sort_unstable();
        let mut out = Vec::new();
        for (_, o) in candidates {
            let Some(c) = self.slot(o) else { continue };
            if c.len() != t.len() {
                continue;
            }
            let compatible = (0..t.len())
                .all(|i| differing.contains(&i) || c.token(i) == t.token(i) || !c.is_constant(i) || !t.is_constant(i));
            if !compatible {
                continue;
            }
            let w = words(c);
            if !seen.contains(&w) {
                seen.push(w);
                out.push(o);
            }
        }
        out
    }

    /// Make template `s` match `tokens`: positions that differ become `<*>`.
    pub(super) fn generalize(&mut self, s: usize, tokens: &[&str]) -> Generalized {
        let Some(c) = self.slot_mut(s) else { return Generalized::Unchanged };
        if c.len() != tokens.len() || (0..c.len()).all(|i| c.token(i) == WILDCARD || c.token(i) == tokens[i]) {
            return Generalized::Unchanged;
        }
        let old_text = Arc::clone(&c.text);
        let new_tokens: Vec<String> = (0..c.len())
            .map(|i| {
                let t = c.token(i);
                if t == tokens[i] {
                    t.to_string()
                } else {
                    WILDCARD.to_string()
                }
            })
            .collect();
        let refs: Vec<&str> = new_tokens.iter().map(String::as_str).collect();
        c.set_text(&refs);
        let new_text = Arc::clone(&c.text);
        if self.by_text.get(&old_text) == Some(&s) {
            self.by_text.remove(&old_text);
        }
        match self.by_text.get(&new_text) {
            Some(&other) if other != s => Generalized::Collides(other),
            _ => {
                self.by_text.insert(new_text, s);
                Generalized::Changed
            }
        }
    }

    /// Merge templates `a` and `b` into the one with the older id, made general enough for
    /// both; returns the survivor's slot. Merged ids are appended to `merged`.
    pub(super) fn merge(&mut self, a: usize, b: usize, merged: &mut Vec<TemplateId>) -> usize {
        let (Some(ca), Some(cb)) = (self.slot(a), self.slot(b)) else { return a };
        if a == b {
            return a;
        }
        let (keep, gone) = if cb.id < ca.id { (b, a) } else { (a, b) };
        let Some(g) = self.take(gone) else { return keep };
        merged.push(g.id);
        let max_samples = self.params.max_samples;
        if let Some(k) = self.slot_mut(keep) {
            k.count = k.count.saturating_add(g.count);
            k.first_seen = k.first_seen.min(g.first_seen);
            k.last_seen = k.last_seen.max(g.last_seen);
            for sample in &g.samples {
                if k.samples.len() < max_samples && !k.samples.contains(sample) {
                    k.samples.push(sample.clone());
                }
            }
        }
        let g_tokens: Vec<&str> = (0..g.len()).map(|i| g.token(i)).collect();
        match self.generalize(keep, &g_tokens) {
            Generalized::Collides(other) => self.merge(keep, other, merged),
            Generalized::Changed | Generalized::Unchanged => {
                if let Some(text) = self.slot(keep).map(|k| Arc::clone(&k.text)) {
                    self.by_text.entry(text).or_insert(keep);
                }
                keep
            }
        }
    }

    /// Remove the template in slot `s` from every index and return it.
    pub(super) fn take(&mut self, s: usize) -> Option<Cluster> {
        let c = self.slots.get_mut(s)?.take()?;
        self.by_id.remove(&c.id);
        if self.by_text.get(&c.text) == Some(&s) {
            self.by_text.remove(&c.text);
        }
        if let Some(root) = self.roots.get_mut(&c.len()) {
            if root.remove(&c.path, s) {
                self.roots.remove(&c.len());
            }
        }
        self.free.push(s);
        self.live = self.live.saturating_sub(1);
        Some(c)
    }

    /// Insert a cluster in a free slot and in every index, at its recorded path.
    pub(super) fn insert(&mut self, c: Cluster) -> usize {
        let len = c.len();
        let path = c.path.clone();
        let id = c.id;
        let text = Arc::clone(&c.text);
        let s = match self.free.pop() {
            Some(s) => {
                if let Some(slot) = self.slots.get_mut(s) {
                    *slot = Some(c);
                }
                s
            }
            None => {
                self.slots.push(Some(c));
                self.slots.len() - 1
            }
        };
        let mut node = self.roots.entry(len).or_default();
        for key in path {
            node = node.children.entry(key).or_default();
        }
        node.clusters.push(s);
        self.by_id.insert(id, s);
        self.by_text.insert(text, s);
        self.live += 1;
        s
    }

    /// The tree path for a new template: its first `depth` tokens' keys, with the `<*>` child
    /// taking new keys once a node is full.
    pub(super) fn new_path(&self, masked: &MaskedLine, tokens: &[&str]) -> Vec<Box<str>> {
        self.new_path_with(tokens, |i| masked.kind(i))
    }

    /// [`Miner::new_path`] with the tokens' kinds given by `kind`.
    pub(super) fn new_path_with(&self, tokens: &[&str], kind: impl Fn(usize) -> Option<TokenKind>) -> Vec<Box<str>> {
        let mut path = Vec::with_capacity(self.params.depth.min(tokens.len()));
        let mut node = self.roots.get(&tokens.len());
        for (i, token) in tokens.iter().take(self.params.depth).enumerate() {
            let mut key = tree_key(token, kind(i));
            if let Some(n) = node {
                if !n.children.contains_key(key) && key != WILDCARD {
                    let has_wildcard = n.children.contains_key(WILDCARD);
                    let room = n.children.len() + usize::from(!has_wildcard) < self.params.max_children;
                    if !room {
                        key = WILDCARD;
                    }
                }
                node = n.children.get(key);
            }
            path.push(Box::from(key));
        }
        path
    }

    pub(super) fn create(&mut self, line: &str, masked: &MaskedLine, tokens: &[&str], truncated: bool) -> MatchResult {
        let path = self.new_path(masked, tokens);
        self.create_at(line, path, tokens, truncated)
    }

    /// A new template for the line, inserted under `path`.
    pub(super) fn create_at(
        &mut self,
        line: &str,
        path: Vec<Box<str>>,
        tokens: &[&str],
        truncated: bool,
    ) -> MatchResult {
        let seq = self.lines;
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let mut c = Cluster::build(id, tokens, path);
        c.count = 1;
        c.first_seen = seq;
        c.last_seen = seq;
        c.add_sample(line, self.params.max_samples, self.params.sample_max_bytes);
        let template = Arc::clone(&c.text);
        self.insert(c);
        let evicted = if self.live > self.params.max_templates { self.evict(id) } else { Vec::new() };
        MatchResult { template_id: id, template, change: Change::New, count: 1, merged: Vec::new(), evicted, truncated }
    }

    /// Evict the least recently matched templates (never `keep`), a batch at a time.
    pub(super) fn evict(&mut self, keep: TemplateId) -> Vec<TemplateId> {
        let batch = (self.params.max_templates / 64).max(1).max(self.live.saturating_sub(self.params.max_templates));
        let mut candidates: Vec<(u64, TemplateId, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(s, c)| c.as_ref().filter(|c| c.id != keep).map(|c| (c.last_seen, c.id, s)))
            .collect();
        let batch = batch.min(candidates.len());
        if batch == 0 {
            return Vec::new();
        }
        if batch < candidates.len() {
            candidates.select_nth_unstable(batch - 1);
        }
        candidates.truncate(batch);
        candidates.sort_unstable();
        let mut evicted = Vec::with_capacity(batch);
        for (_, id, s) in candidates {
            if self.take(s).is_some() {
                evicted.push(id);
            }
        }
        evicted
    }
}
