//! `warden logs mine`: mine the templates of a log file, one message per line.
//!
//! This is the template miner of the log watches, offline: it shows what the miner makes of a
//! log before a watch is built on it. Lines are read, mined and printed one at a time, with
//! the template *as of that line* (a later line can still generalise it, or merge it into an
//! older template; the final table has the final state). Blank lines are skipped but keep
//! their number; bytes that are not UTF-8 are replaced. A line longer than 1 MiB stops the
//! command with an error naming it (no line is buffered without bound). The miner uses its default setting,
//! the one measured by `warden bench loghub`.
//!
//! Output, text: `ID<TAB>TEMPLATE` per line, then a blank line and the table `ID COUNT
//! TEMPLATE` by id. With `--json`: one object `{"line": N, "template_id": ID, "template": T}`
//! per mined line (`line` is the 1-based line number in the file), then
//! `{"templates": [{"id": ID, "count": C, "template": T}, ...]}`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use warden_detectors::logs::{Miner, MinerParams};

/// Mine `input` and write the report to `out`; returns the number of lines mined.
pub fn run_to(input: &Path, json: bool, out: &mut dyn Write) -> Result<u64> {
    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut reader =
        BufReader::new(crate::cli::line_limit::LineLimit::new(file, crate::cli::line_limit::MAX_LINE_BYTES));
    let mut miner = Miner::new(MinerParams::default())?;
    let mut buf = Vec::new();
    let mut number = 0u64;
    let mut mined = 0u64;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).with_context(|| format!("reading {}", input.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let r = miner.add(line);
        mined += 1;
        if json {
            writeln!(out, "{}", json!({ "line": number, "template_id": r.template_id, "template": &*r.template }))?;
        } else {
            writeln!(out, "{}\t{}", r.template_id, r.template)?;
        }
    }
    if json {
        let templates: Vec<_> =
            miner.templates().map(|t| json!({ "id": t.id, "count": t.count, "template": t.template })).collect();
        writeln!(out, "{}", json!({ "templates": templates }))?;
    } else {
        writeln!(out)?;
        writeln!(out, "{:>6} {:>8}  TEMPLATE", "ID", "COUNT")?;
        for t in miner.templates() {
            writeln!(out, "{:>6} {:>8}  {}", t.id, t.count, t.template)?;
        }
    }
    Ok(mined)
}

/// `warden logs mine`: the report on standard output.
pub fn run(input: &Path, json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    run_to(input, json, &mut out)?;
    out.flush().context("writing to standard output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_reports() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("app.log");
        std::fs::write(&path, "user 1 logged in\r\n\nuser 2 logged in\ndisk full\n").unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        assert_eq!(run_to(&path, false, &mut out).unwrap_or_else(|e| panic!("{e:#}")), 3);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("1\tuser <*> logged in\n1\tuser <*> logged in\n2\tdisk full\n\n"), "{text}");
        assert!(text.contains("     1        2  user <*> logged in"), "{text}");
        let mut out = Vec::new();
        run_to(&path, true, &mut out).unwrap_or_else(|e| panic!("{e:#}"));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1]["line"], 3, "the blank line keeps its number");
        assert_eq!(lines[3]["templates"][1]["template"], "disk full");
    }

    #[test]
    fn an_over_long_line_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("big.log");
        let long = "y".repeat(crate::cli::line_limit::MAX_LINE_BYTES + 10);
        std::fs::write(&path, format!("user 1 logged in\n{long}\nuser 2 logged in\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = run_to(&path, false, &mut Vec::new()).expect_err("too long");
        let msg = format!("{e:#}");
        assert!(msg.contains("big.log") && msg.contains("line 2 is longer than 1048576 bytes"), "{msg}");
    }
}
