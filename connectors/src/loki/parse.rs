//! Loki's answers: HTTP statuses and error bodies turned into the crate's typed errors,
//! `Retry-After`, and the JSON envelopes of range queries (nanosecond timestamps as strings,
//! structured metadata) decoded into entries.

use super::*;

/// The error for a non-2xx answer.
pub(super) fn status_error(status: u16, retry_after: Option<Duration>, body: &[u8], target: &str) -> Error {
    match status {
        400 => Error::LokiQuery { url: target.to_string(), status, message: error_message(body, status) },
        429 => Error::RateLimited { retry_after },
        _ => Error::Http { url: target.to_string(), status: Some(status), message: error_message(body, status) },
    }
}

/// Loki's error text: plain text, or the `error`/`message` field of a JSON body.
pub(super) fn error_message(body: &[u8], status: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text) {
        for key in ["error", "message"] {
            if let Some(serde_json::Value::String(s)) = obj.get(key) {
                return http::truncate_chars(s.trim(), MESSAGE_CHARS);
            }
        }
    }
    if text.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("empty response body")
            .to_string()
    } else {
        http::truncate_chars(text, MESSAGE_CHARS)
    }
}

/// Deserializes JSON, describing failures as truncated JSON, invalid JSON or an
/// unexpected shape, with the JSON path.
pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(crate::http::describe_json_error)?;
    de.end().map_err(|e| format!("invalid JSON after the value: {e}"))?;
    Ok(value)
}

#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub(super) status: String,
    #[serde(default = "Option::default")]
    pub(super) data: Option<T>,
    #[serde(default)]
    pub(super) error: Option<String>,
    #[serde(default)]
    pub(super) warnings: Vec<String>,
}

/// Unwraps `{"status":"success","data":...}`.
pub(super) fn parse_envelope<T: DeserializeOwned>(body: &[u8], target: &str) -> Result<(T, Vec<String>)> {
    let env: Envelope<T> = decode(body).map_err(|message| Error::Decode { url: target.to_string(), message })?;
    if env.status != "success" {
        return Err(Error::LokiQuery {
            url: target.to_string(),
            status: 200,
            message: env.error.unwrap_or_else(|| format!("response status {:?}", env.status)),
        });
    }
    let data = env.data.ok_or_else(|| Error::Decode {
        url: target.to_string(),
        message: "successful response has no \"data\" field".into(),
    })?;
    Ok((data, env.warnings))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueryData {
    pub(super) result_type: String,
    #[serde(default)]
    pub(super) result: serde_json::Value,
}

#[derive(Deserialize)]
pub(super) struct RawStream {
    #[serde(default)]
    pub(super) stream: Labels,
    #[serde(default)]
    pub(super) values: Vec<RawValue>,
}

/// `["<ns>", "<line>"]`, tolerating a third element (structured metadata).
pub(super) struct RawValue(pub(super) i64, pub(super) String);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array [\"<timestamp ns>\", \"<line>\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<RawValue, A::Error> {
                let ts: NsTimestamp = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let line: String = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawValue(ts.0, line))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A nanosecond timestamp sent as a decimal string (or, leniently, an integer).
pub(super) struct NsTimestamp(pub(super) i64);

impl<'de> Deserialize<'de> for NsTimestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NsTimestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a nanosecond Unix timestamp as a decimal string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<NsTimestamp, E> {
                v.trim()
                    .parse::<i64>()
                    .map(NsTimestamp)
                    .map_err(|_| E::custom(format!("invalid nanosecond timestamp {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<NsTimestamp, E> {
                Ok(NsTimestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<NsTimestamp, E> {
                i64::try_from(v).map(NsTimestamp).map_err(|_| E::custom(format!("timestamp {v} is out of range")))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn flatten_streams(streams: Vec<RawStream>) -> Vec<LogEntry> {
    let mut entries = Vec::with_capacity(streams.iter().map(|s| s.values.len()).sum());
    for s in streams {
        let labels = Arc::new(s.stream);
        for RawValue(ts, line) in s.values {
            entries.push(LogEntry { timestamp_ns: ts, labels: labels.clone(), line });
        }
    }
    entries
}

/// Parses a `query_range` answer into its entries (in no particular order) and warnings.
pub(super) fn parse_query_range(body: &[u8], target: &str) -> Result<(Vec<LogEntry>, Vec<String>)> {
    let (data, warnings) = parse_envelope::<QueryData>(body, target)?;
    if data.result_type != "streams" {
        return Err(Error::Decode {
            url: target.to_string(),
            message: format!(
                "expected resultType \"streams\" from a log query, got {:?} (metric queries are not log queries)",
                data.result_type
            ),
        });
    }
    let streams: Vec<RawStream> = serde_path_to_error::deserialize(data.result).map_err(|e| {
        let path = e.path().to_string();
        Error::Decode {
            url: target.to_string(),
            message: format!(
                "invalid streams at data.result{}: {}",
                if path == "." { "" } else { path.as_str() },
                e.inner()
            ),
        }
    })?;
    Ok((flatten_streams(streams), warnings))
}
