//! `warden playbook list|show`, `warden check-config` on a playbook directory with errors,
//! and `warden runs list` on an empty store.

use std::process::Command;

fn warden(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden")).args(args).output().expect("run warden");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn list_and_show_the_builtins() {
    let (ok, text) = warden(&["playbook", "list"]);
    assert!(ok, "{text}");
    for name in ["scale-up-on-saturation", "rollback-on-error-spike", "restart-on-memory-leak", "retrain-on-drift"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let (ok, text) = warden(&["playbook", "show", "rollback-on-error-spike"]);
    assert!(ok, "{text}");
    assert!(text.contains("rollback:") && text.contains("autonomy: recommend"), "{text}");
    let (ok, text) = warden(&["playbook", "show", "no-such"]);
    assert!(!ok);
    assert!(text.contains("no playbook named") && text.contains("retrain-on-drift"), "{text}");
}

#[test]
fn a_bad_playbook_is_reported_with_file_line_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pbdir = dir.path().join("playbooks");
    std::fs::create_dir_all(&pbdir).expect("mkdir");
    std::fs::write(
        pbdir.join("bad.yaml"),
        "name: bad\nsteps:\n  - scale: {by: 1}\n  - restart: {}\n    wait: {for: 1m}\n",
    )
    .expect("write");
    std::fs::write(pbdir.join("typo.yaml"), "name: typo\nsteps:\n  - scale: {by: one}\n").expect("write");
    let cfg = dir.path().join("warden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "playbooks: {{dir: '{}'}}\nkubernetes: {{}}\nprometheus: {{url: 'http://127.0.0.1:9'}}\nwatches:\n  - name: w\n    query: up\n    interval: 30s\n    step: 30s\n    lookback: 1h\n    identity: [namespace, deployment]\n    target: {{namespace: '{{namespace}}', deployment: '{{deployment}}'}}\n    detector: {{kind: robust_baseline}}\n    action: {{playbook: nonexistent}}\n",
            pbdir.display()
        ),
    )
    .expect("write");
    let (ok, text) = warden(&["check-config", cfg.to_str().expect("utf-8")]);
    assert!(!ok, "{text}");
    assert!(text.contains("bad.yaml:4"), "no file:line for the step with two actions:\n{text}");
    assert!(text.contains("typo.yaml:3") && text.contains("steps[0].scale.by"), "{text}");
}

#[test]
fn runs_and_audit_on_an_empty_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("w.db");
    // The store is created by the daemon or demo; a missing one is a clear error.
    let (ok, text) = warden(&["runs", "list", "--db", db.to_str().expect("utf-8")]);
    assert!(!ok && text.contains("no store at"), "{text}");
    warden_agent::store::Store::open(&db).expect("create store");
    let (ok, text) = warden(&["runs", "list", "--db", db.to_str().expect("utf-8")]);
    assert!(ok && text.contains("no runs"), "{text}");
    let (ok, text) = warden(&["audit", "verify", "--db", db.to_str().expect("utf-8")]);
    assert!(ok && text.contains("intact: 0 entries"), "{text}");
}
