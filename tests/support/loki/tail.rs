//! The tail WebSocket: the replay of recent entries from `start`, then live entries as they
//! are pushed, with the faults a test injects.

use super::*;

pub(super) async fn tail_handler(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let mut inner = state.lock().unwrap();
    let params = parse_params(uri.query());
    let decided = match gate(&mut inner, &method, &uri, &headers, true) {
        Gate::Answer(response) => Err(response),
        Gate::Pass { .. } => prepare_tail(&mut inner, &params).map_err(IntoResponse::into_response),
    };
    let response = match decided {
        Err(response) => response,
        Ok(plan) => ws.on_upgrade(move |socket| run_tail(socket, plan)),
    };
    set_last_status(&mut inner, response.status().as_u16());
    response
}

pub(super) struct TailPlan {
    pub(super) query: LogQuery,
    pub(super) frames: Vec<Vec<LokiEntry>>,
    pub(super) live: mpsc::UnboundedReceiver<Live>,
    pub(super) drop_after: Option<usize>,
}

/// Validates the tail request and, under the same lock as the subscription,
/// takes the replay snapshot: nothing pushed later is missed or sent twice.
pub(super) fn prepare_tail(inner: &mut Inner, params: &[(String, String)]) -> std::result::Result<TailPlan, ApiError> {
    let bad = bad_request;
    let query = parse_query(inner, param(params, "query").unwrap_or("")).map_err(bad)?;
    let limit = match param(params, "limit") {
        None => 100,
        Some(v) => v.parse::<usize>().map_err(|_| bad(format!("invalid limit {v:?}\n")))?,
    };
    if limit > inner.max_limit as usize {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})\n",
            inner.max_limit
        )));
    }
    if let Some(d) = param(params, "delay_for") {
        match d.parse::<u32>() {
            Ok(s) if s <= 5 => {}
            _ => return Err(bad("delay_for can't be greater than 5\n".into())),
        }
    }
    let start = match param(params, "start") {
        Some(v) => parse_time(v).map_err(bad)?,
        None => now_ns() - HOUR_NS,
    };
    let mut history: Vec<(usize, &LokiEntry)> =
        inner.entries.iter().enumerate().filter(|(_, e)| e.ts_ns >= start && query.matches(e)).collect();
    history.sort_by_key(|(seq, e)| (e.ts_ns, *seq));
    // Like Loki: the latest `limit` entries of the history.
    let skip = history.len().saturating_sub(limit);
    let history: Vec<LokiEntry> = history.into_iter().skip(skip).map(|(_, e)| e.clone()).collect();
    let frames = history.chunks(inner.tail_frame_size).map(<[LokiEntry]>::to_vec).collect();
    let mut drop_after = None;
    if let Some(i) = inner.faults.iter().position(|f| matches!(f, LokiFault::DropTail { times, .. } if *times > 0)) {
        if let LokiFault::DropTail { after_frames, times } = &mut inner.faults[i] {
            drop_after = Some(*after_frames);
            *times -= 1;
            if *times == 0 {
                inner.faults.remove(i);
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    inner.subscribers.push(tx);
    inner.tail_connections += 1;
    Ok(TailPlan { query, frames, live: rx, drop_after })
}

pub(super) async fn run_tail(mut socket: WebSocket, mut plan: TailPlan) {
    let mut sent = 0usize;
    let dropped_now = |sent: usize| plan.drop_after.is_some_and(|n| sent >= n);
    if dropped_now(sent) {
        return;
    }
    for frame in std::mem::take(&mut plan.frames) {
        let refs: Vec<&LokiEntry> = frame.iter().collect();
        let body = json!({"streams": streams_json(&refs)}).to_string();
        if socket.send(Message::Text(body.into())).await.is_err() {
            return;
        }
        sent += 1;
        if dropped_now(sent) {
            return; // Dropping the socket closes the TCP connection without a close frame.
        }
    }
    loop {
        tokio::select! {
            item = plan.live.recv() => {
                let body = match item {
                    None => return,
                    Some(Live::Entry(e)) if plan.query.matches(&e) => {
                        json!({"streams": streams_json(&[&e])}).to_string()
                    }
                    Some(Live::Entry(_)) => continue,
                    Some(Live::Dropped(list)) => {
                        let dropped: Vec<Value> = list
                            .iter()
                            .map(|(labels, ts)| json!({"labels": labels, "timestamp": ts.to_string()}))
                            .collect();
                        json!({"streams": [], "dropped_entries": dropped}).to_string()
                    }
                };
                if socket.send(Message::Text(body.into())).await.is_err() {
                    return;
                }
                sent += 1;
                if dropped_now(sent) {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // pings are answered by the WebSocket layer
            },
        }
    }
}
