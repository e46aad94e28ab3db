//! The HTTP side of the server: faults and authentication checked first (`gate`), then the
//! query, label and series endpoints answered from the stored entries.

use super::*;

pub(super) fn push_locked(inner: &mut Inner, entries: Vec<LokiEntry>) {
    for e in entries {
        inner.subscribers.retain(|s| s.send(Live::Entry(e.clone())).is_ok());
        inner.entries.push(e);
    }
}

pub(super) fn parse_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

pub(super) fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub(super) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// An error answer: a status and Loki's plain-text message.
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

pub(super) fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// What the common checks decided for a request.
pub(super) enum Gate {
    Pass { truncate: bool },
    Answer(Response),
}

/// Records the request, checks credentials and applies transient faults.
pub(super) fn gate(inner: &mut Inner, method: &Method, uri: &Uri, headers: &HeaderMap, websocket: bool) -> Gate {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    inner.requests.push(LokiRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        authorization: header_str("authorization"),
        tenant: header_str("x-scope-orgid"),
        websocket,
        status: 0,
    });
    if let Some(expected) = &inner.bearer {
        if header_str("authorization").as_deref() != Some(expected.as_str()) {
            return Gate::Answer(text(StatusCode::UNAUTHORIZED, "unauthorized\n"));
        }
    }
    if let Some(expected) = &inner.tenant {
        if header_str("x-scope-orgid").as_deref() != Some(expected.as_str()) {
            return Gate::Answer(text(StatusCode::UNAUTHORIZED, "no org id\n"));
        }
    }
    let mut truncate = false;
    let mut answer = None;
    let mut used = None;
    for (i, fault) in inner.faults.iter_mut().enumerate() {
        match fault {
            LokiFault::RateLimited { retry_after_secs, times } if *times > 0 => {
                *times -= 1;
                answer = Some(
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, retry_after_secs.to_string())],
                        "too many outstanding requests\n",
                    )
                        .into_response(),
                );
                used = Some(i);
            }
            LokiFault::ServerError { times } if *times > 0 => {
                *times -= 1;
                answer = Some(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "rpc error: code = Internal desc = injected failure\n",
                ));
                used = Some(i);
            }
            LokiFault::TruncatedBody { times } if *times > 0 && !websocket => {
                *times -= 1;
                truncate = true;
                used = Some(i);
            }
            _ => continue,
        }
        break;
    }
    if let Some(i) = used {
        let spent = matches!(
            inner.faults[i],
            LokiFault::RateLimited { times: 0, .. }
                | LokiFault::ServerError { times: 0 }
                | LokiFault::TruncatedBody { times: 0 }
        );
        if spent {
            inner.faults.remove(i);
        }
    }
    match answer {
        Some(response) => Gate::Answer(response),
        None => Gate::Pass { truncate },
    }
}

pub(super) fn set_last_status(inner: &mut Inner, status: u16) {
    if let Some(last) = inner.requests.last_mut() {
        last.status = status;
    }
}

pub(super) async fn http_handler(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = state.lock().unwrap();
    let response = match gate(&mut inner, &method, &uri, &headers, false) {
        Gate::Answer(response) => response,
        Gate::Pass { truncate } => {
            let params = parse_params(uri.query());
            match route(&mut inner, &method, uri.path(), &params, &body) {
                Ok(value) => {
                    let mut body = value.to_string();
                    if truncate {
                        let mut cut = body.len() / 2;
                        while !body.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        body.truncate(cut);
                    }
                    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                }
                Err(error) => error.into_response(),
            }
        }
    };
    set_last_status(&mut inner, response.status().as_u16());
    response
}

/// The JSON answer of an API call, or an error response.
pub(super) fn route(
    inner: &mut Inner,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> std::result::Result<Value, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["loki", "api", "v1", "query_range"]) => query_range(inner, params),
        ("GET", ["loki", "api", "v1", "labels"] | ["loki", "api", "v1", "label"]) => {
            let (start, end) = optional_range(params)?;
            let names: BTreeSet<&String> = in_range(&inner.entries, start, end).flat_map(|e| e.labels.keys()).collect();
            Ok(json!({"status": "success", "data": names}))
        }
        ("GET", ["loki", "api", "v1", "label", name, "values"]) => {
            let name = percent_decode(name);
            let (start, end) = optional_range(params)?;
            let values: BTreeSet<&String> =
                in_range(&inner.entries, start, end).filter_map(|e| e.labels.get(&name)).collect();
            Ok(json!({"status": "success", "data": values}))
        }
        ("GET" | "POST", ["loki", "api", "v1", "series"]) => {
            let selectors: Vec<&str> =
                params.iter().filter(|(k, _)| k == "match[]" || k == "match").map(|(_, v)| v.as_str()).collect();
            if selectors.is_empty() {
                return Err(bad_request("match[] is required\n".into()));
            }
            let mut parsed = Vec::new();
            for s in selectors {
                let q = parse_logql(s).map_err(bad_request)?;
                parsed.push(q);
            }
            let (start, end) = optional_range(params)?;
            let sets: BTreeSet<&Labels> = in_range(&inner.entries, start, end)
                .filter(|e| parsed.iter().any(|q| q.matches_labels(&e.labels)))
                .map(|e| &e.labels)
                .collect();
            Ok(json!({"status": "success", "data": sets}))
        }
        ("POST", ["loki", "api", "v1", "push"]) => {
            let text_body = String::from_utf8_lossy(body);
            let entries = entries_from_push_json(&text_body).map_err(|e| bad_request(format!("{e:#}\n")))?;
            push_locked(inner, entries);
            Ok(json!({}))
        }
        ("GET", ["ready"]) => Ok(json!("ready")),
        _ => Err(ApiError(StatusCode::NOT_FOUND, "404 page not found\n".into())),
    }
}

pub(super) fn percent_decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub(super) fn in_range(
    entries: &[LokiEntry],
    start: Option<i64>,
    end: Option<i64>,
) -> impl Iterator<Item = &LokiEntry> {
    entries.iter().filter(move |e| start.is_none_or(|s| e.ts_ns >= s) && end.is_none_or(|x| e.ts_ns < x))
}

pub(super) fn optional_range(params: &[(String, String)]) -> std::result::Result<(Option<i64>, Option<i64>), ApiError> {
    let parse = |key: &str| -> std::result::Result<Option<i64>, ApiError> {
        match param(params, key) {
            None => Ok(None),
            Some(v) => parse_time(v).map(Some).map_err(bad_request),
        }
    };
    Ok((parse("start")?, parse("end")?))
}

pub(super) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub(super) const HOUR_NS: i64 = 3_600_000_000_000;

/// Loki's time parsing: fractional seconds, nanoseconds (seconds when ten digits
/// or fewer), or RFC 3339.
pub(super) fn parse_time(value: &str) -> std::result::Result<i64, String> {
    if value.contains('.') {
        if let Ok(secs) = value.parse::<f64>() {
            return Ok((secs * 1e9).round() as i64);
        }
    }
    match value.parse::<i64>() {
        Ok(n) if value.trim_start_matches('-').len() <= 10 => Ok(n.saturating_mul(1_000_000_000)),
        Ok(n) => Ok(n),
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("cannot parse {value:?} to a valid timestamp\n")),
    }
}

pub(super) fn query_range(inner: &Inner, params: &[(String, String)]) -> std::result::Result<Value, ApiError> {
    let bad = bad_request;
    let query = param(params, "query").unwrap_or("");
    let q = parse_query(inner, query).map_err(bad)?;
    let limit = match param(params, "limit") {
        None => 100,
        Some(v) => v.parse::<u32>().map_err(|_| bad(format!("invalid limit {v:?}\n")))?,
    };
    if limit == 0 {
        return Err(bad("limit must be a positive value\n".into()));
    }
    if limit > inner.max_limit {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})\n",
            inner.max_limit
        )));
    }
    let backward = match param(params, "direction").unwrap_or("backward") {
        "backward" | "BACKWARD" => true,
        "forward" | "FORWARD" => false,
        other => return Err(bad(format!("invalid direction {other:?}\n"))),
    };
    let end = match param(params, "end") {
        Some(v) => parse_time(v).map_err(bad)?,
        None => now_ns(),
    };
    let start = match param(params, "start") {
        Some(v) => parse_time(v).map_err(bad)?,
        None => end - HOUR_NS,
    };
    if end <= start {
        return Err(bad("end timestamp must not be before or equal to start time\n".into()));
    }
    let mut hits: Vec<(usize, &LokiEntry)> =
        inner.entries.iter().enumerate().filter(|(_, e)| e.ts_ns >= start && e.ts_ns < end && q.matches(e)).collect();
    hits.sort_by_key(|(seq, e)| (e.ts_ns, *seq));
    if backward {
        hits.reverse();
    }
    hits.truncate(limit as usize);
    let entries: Vec<&LokiEntry> = hits.into_iter().map(|(_, e)| e).collect();
    Ok(json!({
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": streams_json(&entries),
            "stats": {"summary": {"totalEntriesReturned": entries.len()}}
        }
    }))
}

/// Groups entries by stream (first appearance order), values in the given order.
pub(super) fn streams_json(entries: &[&LokiEntry]) -> Vec<Value> {
    let mut streams: Vec<(&Labels, Vec<Value>)> = Vec::new();
    for e in entries {
        let values = match streams.iter_mut().position(|(l, _)| **l == e.labels) {
            Some(i) => &mut streams[i].1,
            None => {
                streams.push((&e.labels, Vec::new()));
                let last = streams.len() - 1;
                &mut streams[last].1
            }
        };
        values.push(json!([e.ts_ns.to_string(), e.line]));
    }
    streams.into_iter().map(|(labels, values)| json!({"stream": labels, "values": values})).collect()
}

/// Parses a query, answering the injected message for a "bad" query.
pub(super) fn parse_query(inner: &Inner, query: &str) -> std::result::Result<LogQuery, String> {
    if let Some(message) = inner.bad_queries.get(query) {
        return Err(format!("{message}\n"));
    }
    parse_logql(query).map_err(|m| format!("{m}\n"))
}
