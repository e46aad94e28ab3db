//! Saving and restoring a miner: its whole state as a versioned, serialisable value, checked
//! on the way back in so a damaged or foreign state is refused with the template named.

use super::*;

impl Miner {
    /// Everything needed to continue later with [`Miner::from_state`].
    pub fn state(&self) -> MinerState {
        let templates = self
            .templates()
            .filter_map(|t| {
                let c = self.by_id.get(&t.id).and_then(|&s| self.slot(s))?;
                Some(TemplateState {
                    id: c.id,
                    template: c.text.to_string(),
                    path: c.path.iter().map(|k| k.to_string()).collect(),
                    count: c.count,
                    first_seen: c.first_seen,
                    last_seen: c.last_seen,
                    samples: c.samples.clone(),
                })
            })
            .collect();
        MinerState {
            version: STATE_VERSION,
            params: self.params.clone(),
            lines: self.lines,
            next_id: self.next_id,
            templates,
        }
    }

    /// Rebuild a miner from a state written by [`Miner::state`]. With the parameters it was
    /// saved with, the miner continues exactly as the saved one would have. The parameters may
    /// also be changed in the state before restoring: templates then keep their ids; with
    /// another `depth` they are keyed by their own first tokens, and beyond a smaller
    /// `max_templates` the least recently matched are dropped. A version, parameters, ids,
    /// texts or counters that no miner could have written are an [`Error::InvalidInput`]
    /// naming the template.
    pub fn from_state(state: MinerState) -> Result<Self> {
        let bad = |what: String, message: String| Error::InvalidInput { what, message };
        if state.version != STATE_VERSION {
            return Err(bad(
                "miner state".into(),
                format!("version {} is not supported (expected {STATE_VERSION})", state.version),
            ));
        }
        let mut miner = Miner::new(state.params)?;
        miner.lines = state.lines;
        miner.next_id = state.next_id;
        for t in state.templates {
            let what = format!("template {} of the miner state", t.id);
            if t.id == 0 || t.id >= state.next_id {
                return Err(bad(
                    what,
                    format!("id must be between 1 and next_id - 1 ({})", state.next_id.saturating_sub(1)),
                ));
            }
            if miner.by_id.contains_key(&t.id) {
                return Err(bad(what, "duplicate id".into()));
            }
            let tokens: Vec<&str> = if t.template.is_empty() { Vec::new() } else { t.template.split(' ').collect() };
            if tokens.iter().any(|tok| tok.is_empty() || tok.bytes().any(|b| b <= 0x20)) {
                return Err(bad(what, "the template has empty tokens or extra whitespace".into()));
            }
            let depth = miner.params.depth.min(tokens.len());
            let path: Vec<Box<str>> = if t.path.len() == depth {
                t.path.into_iter().map(String::into_boxed_str).collect()
            } else {
                // Saved with another `depth`: key the template by its own first tokens.
                tokens.iter().take(depth).map(|tok| Box::from(tree_key(tok, None))).collect()
            };
            if miner.by_text.contains_key(t.template.as_str()) {
                return Err(bad(what, "another template has the same text".into()));
            }
            if t.count == 0 || t.first_seen > t.last_seen || t.last_seen > state.lines {
                return Err(bad(what, "count must be at least 1 and first_seen <= last_seen <= lines".into()));
            }
            let mut c = Cluster::build(t.id, &tokens, path);
            c.count = t.count;
            c.first_seen = t.first_seen;
            c.last_seen = t.last_seen;
            c.samples = t.samples.into_iter().take(miner.params.max_samples).collect();
            miner.insert(c);
        }
        if miner.live > miner.params.max_templates {
            // Saved with a larger `max_templates`.
            miner.evict(0);
        }
        Ok(miner)
    }
}
