//! Playbooks shipped with Warden, embedded in the binary.
//!
//! They are ordinary playbook files (`playbooks/builtin/*.yaml`), compiled in with
//! `include_str!` so a daemon has them without any file on disk, and loaded through the same
//! checks as an operator's files (a test loads every one). A file in the playbook directory
//! with a built-in's name replaces it, so a built-in is a starting point, not a constraint.

/// `(file name, YAML text)` of every built-in playbook, in name order.
pub fn builtins() -> Vec<(&'static str, &'static str)> {
    vec![
        ("restart-on-memory-leak.yaml", include_str!("../builtin/restart-on-memory-leak.yaml")),
        ("retrain-on-drift.yaml", include_str!("../builtin/retrain-on-drift.yaml")),
        ("rollback-on-error-spike.yaml", include_str!("../builtin/rollback-on-error-spike.yaml")),
        ("scale-up-on-saturation.yaml", include_str!("../builtin/scale-up-on-saturation.yaml")),
    ]
}

/// The YAML text of the built-in named `name`.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    builtins().into_iter().find(|(file, _)| file.strip_suffix(".yaml") == Some(name)).map(|(_, text)| text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::load::parse_playbook;
    use crate::params::resolve_params;
    use crate::spec::{Autonomy, StepAction, TargetKind};

    #[test]
    fn every_builtin_loads_and_is_named_like_its_file() {
        for (file, text) in builtins() {
            let p = parse_playbook(text, Path::new(file)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(format!("{}.yaml", p.name), file);
            assert_eq!(builtin_text(&p.name), Some(text));
            assert_eq!(p.target, TargetKind::Deployment, "{file}");
            assert!(
                p.guards.autonomy.is_some() && p.guards.cooldown.is_some() && p.guards.max_attempts.is_some(),
                "{file}"
            );
        }
        assert_eq!(builtins().len(), 4);
    }

    fn load(name: &str) -> crate::spec::Playbook {
        let text = builtin_text(name).unwrap_or_else(|| panic!("no built-in {name}"));
        parse_playbook(text, Path::new(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn scale_up_defaults_and_guards() {
        let p = load("scale-up-on-saturation");
        assert_eq!(p.guards.autonomy, Some(Autonomy::Auto));
        assert_eq!(p.guards.blast_radius.as_ref().and_then(|b| b.max_replica_change_percent), Some(100));
        let given = BTreeMap::from([("verify_query".to_string(), "up".to_string())]);
        let r = resolve_params(&p, &given).expect("params");
        assert_eq!(r["step"].to_string(), "1");
        assert_eq!(r["max_replicas"].to_string(), "10");
        assert!(resolve_params(&p, &BTreeMap::new()).is_err(), "verify_query is required");
        let keys: Vec<&str> = p.steps.iter().filter_map(|s| s.action()).map(|a| a.key()).collect();
        assert_eq!(keys, ["scale", "verify"]);
    }

    #[test]
    fn rollback_and_restart_shapes() {
        let p = load("rollback-on-error-spike");
        assert_eq!(p.guards.autonomy, Some(Autonomy::Recommend));
        assert!(p.revert.is_none(), "the automatic roll-forward is the revert");
        let p = load("restart-on-memory-leak");
        assert_eq!(p.guards.max_attempts, Some(2));
    }

    #[test]
    fn retrain_renders_a_job_and_a_promotion() {
        let p = load("retrain-on-drift");
        let given: BTreeMap<String, String> =
            [("model", "fraud"), ("image", "registry/train:1"), ("quality_query", "q"), ("serving_query", "s")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let params = resolve_params(&p, &given).expect("params");
        let mut vars = crate::template::Vars::new();
        crate::params::to_vars(&params, &mut vars);
        vars.set("run.id", "42");
        let Some(StepAction::RunJob(job)) = p.steps[0].action() else { panic!("first step is run_job") };
        let spec = crate::template::render_tree(&job.spec, &vars).expect("renders");
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["args"],
            serde_json::json!(["--model", "fraud", "--window", "7days", "--candidate", "42"])
        );
        assert_eq!(spec["backoffLimit"], 0);
        let Some(StepAction::Patch(patch)) = p.steps[2].action() else { panic!("third step is patch") };
        let rendered = crate::template::render_tree(&patch.patch, &vars).expect("renders");
        let c = &rendered["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"], "fraud");
        assert_eq!(c["env"][0], serde_json::json!({"name": "MODEL_VERSION", "value": "run-42"}));
        for path in crate::load::patch_paths(&rendered) {
            assert!(crate::load::path_allowed(&path, crate::load::DEFAULT_PATCH_ALLOW), "{path}");
        }
        // The run-time guard agrees.
        assert!(crate::guards::check_patch(&crate::guards::GuardSettings::default(), &rendered).is_ok());
    }
}
