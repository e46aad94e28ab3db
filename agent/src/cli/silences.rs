//! `warden silences add|list|expire`: the same rules as `POST /api/v1/silences`
//! ([`crate::incident::silence::check_request`]), written straight to the store.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use chrono::Utc;

use crate::incident::silence::{check_request, Silence, SilenceRequest};
use crate::store::Store;

pub fn add(store: &Store, request: SilenceRequest, out: &mut impl Write) -> Result<()> {
    let now = Utc::now();
    let new = check_request(request, now).map_err(|e| anyhow!("{e}"))?;
    let s = store.add_silence(&new, now)?;
    writeln!(
        out,
        "silence {} {} until {} ({}): {}",
        s.id,
        s.state(now),
        s.ends_at.format("%Y-%m-%d %H:%M:%S UTC"),
        s.matchers.join(", "),
        s.comment
    )?;
    Ok(())
}

pub fn list(store: &Store, all: bool, json: bool, out: &mut impl Write) -> Result<()> {
    let now = Utc::now();
    let silences = store.list_silences(all, now)?;
    if json {
        let rows: Vec<_> = silences.iter().map(|s| serde_json::json!({"silence": s, "state": s.state(now)})).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&serde_json::json!({ "silences": rows }))?)?;
        return Ok(());
    }
    if silences.is_empty() {
        writeln!(out, "no silences{}", if all { "" } else { " in force (--all lists ended ones)" })?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["ID", "STATE", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT"]);
    for s in &silences {
        table.add_row(row(s, now));
    }
    writeln!(out, "{table}")?;
    Ok(())
}

fn row(s: &Silence, now: chrono::DateTime<Utc>) -> Vec<String> {
    let end = s.expired_at.map_or(s.ends_at, |e| e.min(s.ends_at));
    vec![
        s.id.to_string(),
        s.state(now).to_string(),
        s.matchers.join(", "),
        s.starts_at.format("%Y-%m-%d %H:%M").to_string(),
        end.format("%Y-%m-%d %H:%M").to_string(),
        s.expired_by.as_ref().map_or(s.created_by.clone(), |by| format!("{} (ended by {by})", s.created_by)),
        s.comment.clone(),
    ]
}

pub fn expire(store: &Store, id: i64, by: &str, out: &mut impl Write) -> Result<()> {
    match store.expire_silence(id, by, Utc::now())? {
        Some((_, true)) => writeln!(out, "silence {id} ended")?,
        Some((_, false)) => bail!("silence {id} has already ended"),
        None => bail!("no silence {id} (`warden silences list --all`)"),
    }
    Ok(())
}
