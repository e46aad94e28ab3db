//! `warden detect`: run a detector over a CSV file, streaming, one output row per input row.
//!
//! Users run this on data exported from their monitoring, so the formats are stable:
//! input `timestamp,value` (RFC 3339, `YYYY-MM-DD HH:MM:SS` taken as UTC, or Unix seconds);
//! output `timestamp,value,score,expected,lower,upper,anomaly` (CSV, or JSON lines). Rows are
//! read, scored and written one at a time, so row i's score can only depend on rows <= i.
//! An empty or non-numeric value is passed on as missing (the detector reports no data).
//! A line longer than 1 MiB stops the command with an error naming it.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDateTime};
use warden_detectors::registry;

/// Parse a timestamp in one of the accepted forms into Unix milliseconds.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 1e13 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    Err(format!("`{t}` is not a timestamp (RFC 3339, `YYYY-MM-DD HH:MM:SS` or Unix seconds)"))
}

fn parse_value(s: &str) -> f64 {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "" | "nan" | "null" | "na" => f64::NAN,
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        _ => t.parse().unwrap_or(f64::NAN),
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    }
}

fn json_num(v: Option<f64>) -> serde_json::Value {
    match v {
        Some(x) if x.is_finite() => serde_json::json!(x),
        _ => serde_json::Value::Null,
    }
}

/// Score `input` with `detector` and write the rows to `out`.
pub fn run_to(
    input: &Path,
    detector: &str,
    params: &[(String, String)],
    json: bool,
    out: &mut dyn Write,
) -> Result<usize> {
    let mut det = registry::build(detector, params).map_err(|e| anyhow!("{e}"))?;
    let file = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(crate::cli::line_limit::LineLimit::new(file, crate::cli::line_limit::MAX_LINE_BYTES));
    let headers = reader.headers().with_context(|| format!("{}:1: reading the header", input.display()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(ti), Some(vi)) = (col("timestamp"), col("value")) else {
        bail!(
            "{}:1: the header must name `timestamp` and `value` columns (found: {})",
            input.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        );
    };
    if !json {
        writeln!(out, "timestamp,value,score,expected,lower,upper,anomaly")?;
    }
    let mut rows = 0;
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| match e.kind() {
            // The reader names the physical line that is too long.
            csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                anyhow!("{}: {io}", input.display())
            }
            _ => anyhow!("{}:{line}: reading the row: {e}", input.display()),
        })?;
        let ts_text = rec.get(ti).unwrap_or("");
        let ts = parse_timestamp(ts_text).map_err(|e| anyhow!("{}:{line}: {e}", input.display()))?;
        let value = parse_value(rec.get(vi).unwrap_or(""));
        let d = det.update(ts, value);
        if json {
            let row = serde_json::json!({
                "timestamp": ts_text.trim(),
                "value": json_num(Some(value)),
                "score": d.score,
                "expected": json_num(d.expected),
                "lower": json_num(d.lower),
                "upper": json_num(d.upper),
                "anomaly": d.is_anomaly(),
            });
            writeln!(out, "{row}")?;
        } else {
            let ts_out = ts_text.trim();
            let ts_out = if ts_out.contains([',', '"']) {
                format!("\"{}\"", ts_out.replace('"', "\"\""))
            } else {
                ts_out.to_string()
            };
            writeln!(
                out,
                "{ts_out},{},{},{},{},{},{}",
                num(Some(value)),
                d.score,
                num(d.expected),
                num(d.lower),
                num(d.upper),
                d.is_anomaly()
            )?;
        }
        rows += 1;
    }
    out.flush()?;
    Ok(rows)
}

/// `warden detect`: write to stdout.
pub fn run(input: &Path, detector: &str, params: &[(String, String)], json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    run_to(input, detector, params, json, &mut out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_form() {
        assert_eq!(parse_timestamp("2026-01-02T03:04:05Z"), Ok(1_767_323_045_000));
        assert_eq!(parse_timestamp("2026-01-02T04:04:05+01:00"), Ok(1_767_323_045_000));
        assert_eq!(parse_timestamp("2026-01-02 03:04:05"), Ok(1_767_323_045_000));
        assert_eq!(parse_timestamp("1767323045"), Ok(1_767_323_045_000));
        assert_eq!(parse_timestamp("1767323045.5"), Ok(1_767_323_045_500));
        assert!(parse_timestamp("yesterday").is_err());
    }

    fn write_csv(rows: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(rows.as_bytes()).expect("write");
        f
    }

    #[test]
    fn one_output_row_per_input_row_streaming() {
        let mut text = String::from("timestamp,value\n");
        for i in 0..40 {
            text.push_str(&format!(
                "{},{}\n",
                1_700_000_000 + i * 60,
                if i >= 37 { 50.0 } else { 10.0 + (i % 3) as f64 }
            ));
        }
        text.push_str("1700002400,\n");
        let f = write_csv(&text);
        let params = vec![("min_history".to_string(), "10".to_string()), ("window".to_string(), "20".to_string())];
        let mut out = Vec::new();
        let n = run_to(f.path(), "robust_baseline", &params, false, &mut out).expect("runs");
        assert_eq!(n, 41);
        let out = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "timestamp,value,score,expected,lower,upper,anomaly");
        assert_eq!(lines.len(), 42);
        assert!(lines[1].starts_with("1700000000,10,0,"), "{}", lines[1]);
        assert!(lines[40].ends_with(",true"), "{}", lines[40]);
        // The missing value is echoed empty and is not an anomaly.
        assert!(lines[41].starts_with("1700002400,,0,"), "{}", lines[41]);

        // Streaming: the rows for a prefix of the file are the same as in the full run.
        let prefix: String = text.lines().take(30).map(|l| format!("{l}\n")).collect();
        let g = write_csv(&prefix);
        let mut out2 = Vec::new();
        run_to(g.path(), "robust_baseline", &params, false, &mut out2).expect("runs");
        let out2 = String::from_utf8(out2).expect("utf8");
        assert!(out.starts_with(&out2));
    }

    #[test]
    fn an_over_long_line_is_an_error_naming_the_file_and_line() {
        let long = "9".repeat(crate::cli::line_limit::MAX_LINE_BYTES + 10);
        let f = write_csv(&format!("timestamp,value\n1700000000,1\n1700000060,{long}\n1700000120,3\n"));
        let e = run_to(f.path(), "robust_baseline", &[], false, &mut Vec::new()).expect_err("too long");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&f.path().display().to_string()) && msg.contains("line 3 is longer than 1048576 bytes"),
            "{msg}"
        );
        // A newline-free input fails on its header line.
        let f = write_csv(&long);
        let msg =
            format!("{:#}", run_to(f.path(), "robust_baseline", &[], false, &mut Vec::new()).expect_err("too long"));
        assert!(msg.contains("line 1 is longer"), "{msg}");
    }

    #[test]
    fn json_lines() {
        let f = write_csv("timestamp,value\n2026-01-02 03:04:05,1.5\n");
        let mut out = Vec::new();
        run_to(f.path(), "robust_baseline", &[], true, &mut out).expect("runs");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON line");
        assert_eq!(v["timestamp"], "2026-01-02 03:04:05");
        assert_eq!(v["value"], 1.5);
        assert_eq!(v["anomaly"], false);
        assert!(v["expected"].is_null());
    }

    #[test]
    fn errors_name_file_and_line() {
        let f = write_csv("timestamp,value\n2026-01-02 03:04:05,1\nsoon,2\n");
        let e = run_to(f.path(), "robust_baseline", &[], false, &mut Vec::new()).expect_err("bad timestamp");
        assert!(e.to_string().contains(":3: `soon` is not a timestamp"), "{e}");
        let g = write_csv("time,v\n1,2\n");
        let e = run_to(g.path(), "robust_baseline", &[], false, &mut Vec::new()).expect_err("bad header");
        assert!(e.to_string().contains(":1: the header must name"), "{e}");
        let e = run_to(g.path(), "nope", &[], false, &mut Vec::new()).expect_err("bad detector");
        assert!(e.to_string().contains("unknown detector"), "{e}");
    }
}
