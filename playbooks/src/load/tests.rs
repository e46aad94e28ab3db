//! Tests of loading and checking playbook files.

use super::*;
use crate::spec::ParamType;

fn errors(text: &str) -> Vec<LoadError> {
    parse_playbook(text, Path::new("p.yaml")).expect_err("must be invalid").0
}

/// `(line, path)` of every error, with the message containing `needle` for `path`.
fn has(errs: &[LoadError], line: usize, path: &str, needle: &str) {
    assert!(
        errs.iter().any(|e| e.line == Some(line)
            && e.path == path
            && e.message.contains(needle)
            && e.file == Path::new("p.yaml")),
        "no error at line {line} path {path} containing {needle:?} in:\n{}",
        LoadErrors(errs.to_vec())
    );
}

const VALID: &str = "\
name: scale-api
description: Scale the API.
target: deployment
params:
  step: {type: int, default: 2, min: 1, max: 5}
  query: {type: string, default: 'up == 1'}
triggers:
  - incident: {watch: api-latency, severity: [critical], params: {step: '3'}}
  - alert: {labels: {alertname: HighLatency}}
  - cron: {schedule: '0 0 3 * * *', timezone: Europe/Berlin, target: shop/api}
guards:
  autonomy: auto
  cooldown: 10m
  rate: {global: {max: 3, per: 1h}}
  blast_radius: {max_replica_change_percent: 50, max_pods_deleted: 2}
steps:
  - name: up
    scale: {by: '{{ params.step }}', max: 10}
  - patch:
      patch:
        spec:
          template:
            metadata:
              annotations: {warden.io/reason: '{{ incident.title }}', \"prometheus.io/scrape\": 'true'}
            spec:
              containers:
                - name: api
                  resources: {limits: {memory: 1Gi}}
                  env: [{name: MODE, value: safe}]
  - delete_pod: {selector: 'app=api', max: 2}
  - run_job:
      name_prefix: warm
      spec: {backoffLimit: 0, template: {spec: {restartPolicy: Never, containers: [{name: w, image: 'busybox', args: ['{{ run.id }}']}]}}}
      timeout: 10m
  - http: {url: 'https://hooks.example.com/x', method: post, headers: {X-Run: '{{ run.id }}'}, body: {text: '{{ target.name }}'}, expect_status: [200, 202]}
  - wait: {for: 1m}
  - verify: {query: '{{ params.query }}', for: 5m, step: 30s}
  - notify: {message: 'scaled {{ target.namespace }}/{{ target.name }} at {{ now }}'}
revert:
  - scale: {to: 2}
";

#[test]
fn a_valid_playbook_loads() {
    let p = parse_playbook(VALID, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "scale-api");
    assert_eq!(p.steps.len(), 8);
    assert_eq!(p.triggers.len(), 3);
    assert_eq!(p.revert.as_ref().map(Vec::len), Some(1));
    assert_eq!(p.params["step"].kind, ParamType::Int);
}

#[test]
fn syntax_errors_have_a_line_and_no_path() {
    let e = errors("name: x\nsteps: [\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].line.is_some() && e[0].path.is_empty() && e[0].message.starts_with("invalid YAML"), "{e:?}");
    assert!(e[0].to_string().starts_with("p.yaml:"), "{}", e[0]);
}

#[test]
fn unknown_keys_and_bad_values_come_from_serde_with_paths() {
    let text = "name: x\ncolour: red\nguards: {cooldown: 5 parsecs}\nsteps:\n  - scale: {by: 1, maximum: 3}\n  - wait: {for: 30}\n  - scael: {by: 1}\ntriggers:\n  - webhook: {}\nparams:\n  a: {type: integer}\n";
    let e = errors(text);
    has(&e, 2, "colour", "unknown field `colour`");
    has(&e, 3, "guards.cooldown", "invalid duration");
    has(&e, 5, "steps[0].scale.maximum", "unknown field `maximum`");
    has(&e, 6, "steps[1].wait.for", "unit is required");
    has(&e, 7, "steps[2].scael", "unknown field `scael`");
    has(&e, 9, "triggers[0].webhook", "unknown trigger `webhook`; one of incident, alert, cron, manual");
    assert_eq!(e.iter().filter(|x| x.path.starts_with("triggers")).count(), 1, "{e:?}");
    has(&e, 11, "params.a.type", "unknown variant `integer`");
    // The typo'd action is not reported a second time as "no action".
    assert!(!e.iter().any(|x| x.path == "steps[2]"), "{e:?}");
    // In line order.
    let lines: Vec<usize> = e.iter().filter_map(|x| x.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn missing_fields() {
    let e = errors("description: no name\nsteps:\n  - verify: {query: up}\n");
    let name = e.iter().find(|x| x.path == "name" && x.message.contains("missing field `name`"));
    assert!(name.is_some_and(|x| x.line.is_none() && x.to_string().starts_with("p.yaml: name: ")), "{e:?}");
    has(&e, 3, "steps[0].verify.for", "missing field `for`");
    let e = errors("name: x\n");
    assert!(e.iter().any(|x| x.path == "steps" && x.message.contains("missing field")), "{e:?}");
}

#[test]
fn names_actions_and_step_names() {
    let text = "name: Scale_API\nsteps:\n  - name: a\n    wait: {for: 1s}\n  - name: a\n    restart: {}\n  - {}\n  - scale: {by: 1}\n    restart: {}\n  - name: 6-wait\n    wait: {for: 1s}\n  - wait: {for: 1s}\n";
    let e = errors(text);
    has(&e, 1, "name", "DNS-1123");
    has(&e, 5, "steps[1].name", "already used by steps[0]");
    has(&e, 7, "steps[2]", "exactly one action; allowed: scale, rollback");
    has(&e, 8, "steps[3]", "found scale, restart");
    has(&e, 12, "steps[5]", "`6-wait` is already used by steps[4]");
    assert!(!e.iter().any(|x| x.path == "steps[4].name"), "{e:?}");
    let e = errors("name: x\nsteps: []\n");
    has(&e, 2, "steps", "at least one step");
}

#[test]
fn templates_are_checked_where_they_are() {
    let text = "name: x\nparams:\n  step: {type: int, default: 1}\n  q: {type: string, default: up}\nsteps:\n  - scale: {by: '{{ params.stepp }}'}\n  - scale: {to: '{{ params.q }}'}\n  - notify: {message: 'hi {{ targt.name }}'}\n  - http:\n      url: 'https://x/{{ run.id'\n      headers: {X-A: '{{ alert.labels.team }}', X-B: '{{ run.nope }}'}\n      body: {a: ['{{ incident.labels.pod }}', '{{ param.x }}']}\n  - run_job:\n      name_prefix: j\n      spec: {template: {spec: {containers: [{name: c, image: '{{ params.image }}'}]}}}\n      timeout: 1m\n";
    let e = errors(text);
    has(&e, 6, "steps[0].scale.by", "unknown parameter `stepp`; declared: q, step");
    has(&e, 7, "steps[1].scale.to", "parameter `q` is string");
    has(&e, 8, "steps[2].notify.message", "unknown variable `targt.name`");
    has(&e, 10, "steps[3].http.url", "without a closing");
    has(&e, 11, "steps[3].http.headers.X-B", "known in `run`: run.id, run.playbook, run.trigger");
    has(&e, 12, "steps[3].http.body.a[1]", "unknown variable `param.x`");
    has(&e, 15, "steps[4].run_job.spec.template.spec.containers[0].image", "unknown parameter `image`");
    assert_eq!(e.len(), 7, "{e:?}");
}

#[test]
fn literal_arguments_parse_as_their_type() {
    let text = "name: x\nsteps:\n  - scale: {to: three, by: 1, min: 5, max: 2}\n  - scale: {}\n  - scale: {by: 0}\n  - rollback: {to_revision: 0}\n  - delete_pod: {name: web-1, selector: app=web, max: 0}\n  - delete_pod: {}\n  - http: {url: 'ftp://x', method: FETCH, expect_status: [200, 600]}\n  - http: {url: 'https://user:pw@x'}\n  - wait: {for: 0s}\n  - verify: {query: up, for: 1m, step: 2m}\n  - run_job: {name_prefix: Bad_Prefix, spec: [a], timeout: 1m}\n  - run_job: {name_prefix: j, spec: {backoffLimit: 0}, timeout: 1m, poll: 2m}\n";
    let e = errors(text);
    has(&e, 3, "steps[0].scale", "exclude each other");
    has(&e, 3, "steps[0].scale.to", "`three` is not a whole number");
    has(&e, 3, "steps[0].scale.max", "2 is below min 5");
    has(&e, 4, "steps[1].scale", "needs `to`");
    has(&e, 5, "steps[2].scale.by", "must not be 0");
    has(&e, 6, "steps[3].rollback.to_revision", "at least 1");
    has(&e, 7, "steps[4].delete_pod", "`name` and `selector` exclude each other");
    has(&e, 7, "steps[4].delete_pod.max", "at least 1");
    has(&e, 8, "steps[5].delete_pod", "needs `name`");
    has(&e, 9, "steps[6].http.url", "http:// or https://");
    has(&e, 9, "steps[6].http.method", "GET, POST, PUT, PATCH, DELETE");
    has(&e, 9, "steps[6].http.expect_status[1]", "600");
    has(&e, 10, "steps[7].http.url", "credentials");
    has(&e, 11, "steps[8].wait.for", "greater than 0");
    has(&e, 12, "steps[9].verify.step", "longer than the window");
    has(&e, 13, "steps[10].run_job.name_prefix", "DNS-1123");
    has(&e, 13, "steps[10].run_job.spec", "must be a mapping");
    has(&e, 14, "steps[11].run_job.spec", "needs `template`");
    has(&e, 14, "steps[11].run_job.poll", "longer than `timeout`");
}

#[test]
fn counts_and_windows_are_bounded() {
    let text = "name: x\nguards:\n  max_attempts: 4294967295\n  rate: {global: {max: 4294967295, per: 1h}}\n  blast_radius: {max_pods_deleted: 4294967295}\nsteps:\n  - scale: {by: -9223372036854775808}\n  - scale: {to: 9223372036854775807}\n  - verify: {query: up, for: 366d}\n  - verify: {query: up, for: 3d, step: 1s}\n  - wait: {for: 1000000000d}\n";
    let e = errors(text);
    has(&e, 3, "guards.max_attempts", "outside 1..=1000");
    has(&e, 4, "guards.rate.global.max", "outside 1..=1000000");
    has(&e, 5, "guards.blast_radius.max_pods_deleted", "outside 0..=1000000");
    has(&e, 7, "steps[0].scale.by", "outside -1000000..=1000000");
    has(&e, 8, "steps[1].scale.to", "outside -1000000..=1000000");
    has(&e, 9, "steps[2].verify.for", "at most 11000");
    has(&e, 10, "steps[3].verify.for", "at most 11000");
    has(&e, 11, "steps[4].wait.for", "366d");
    parse_playbook("name: x\nsteps:\n  - scale: {by: 1000000}\n  - verify: {query: up, for: 3d, step: 30s}\n  - wait: {for: 366d}\n", Path::new("p.yaml"))
        .expect("at the bounds");
}

#[test]
fn actions_must_fit_the_target() {
    let text = "name: x\ntarget: none\nsteps:\n  - scale: {to: 1}\n  - cordon: {}\n  - run_job: {name_prefix: j, spec: {template: {}}, timeout: 1m}\n  - notify: {message: '{{ target.name }}'}\n  - restart: {}\n";
    let e = errors(text);
    has(&e, 4, "steps[0].scale", "needs `target: deployment` (it has `target: none`)");
    has(&e, 5, "steps[1].cordon", "needs `node:`");
    has(&e, 6, "steps[2].run_job", "needs `namespace:`");
    has(&e, 7, "steps[3].notify.message", "`target: none`");
    has(&e, 8, "steps[4].restart", "needs `target: deployment`");
    let node = "name: drain\ntarget: node\ntriggers:\n  - cron: {schedule: '0 0 * * * *', target: worker-1}\nsteps:\n  - cordon: {}\n  - notify: {message: 'cordoned {{ target.name }}'}\n";
    assert!(parse_playbook(node, Path::new("n.yaml")).is_ok());
}

#[test]
fn triggers_are_checked() {
    let text = "name: x\nparams:\n  q: {type: string}\n  n: {type: int, default: 1, max: 3}\ntriggers:\n  - cron: {schedule: '0 3 * * *'}\n  - cron: {schedule: '0 0 3 * * *', timezone: Mars/Olympus, target: shop/api, params: {q: up}}\n  - cron: {schedule: '0 0 3 * * *', target: shop, params: {q: '{{ incident.id }}', n: 5}}\n  - incident: {severity: [critical, page], params: {q: '{{ incident.labels.query }}', m: 1}}\n  - manual\n  - alert: {labels: {}, params: {q: '{{ params.n }}'}}\nsteps: [{wait: {for: 1s}}]\n";
    let e = errors(text);
    has(&e, 6, "triggers[0].cron.schedule", "did you mean `0 0 3 * * *`");
    has(&e, 6, "triggers[0].cron", "needs `target: namespace/deployment`");
    has(&e, 6, "triggers[0].cron.params", "required parameter `q`");
    has(&e, 7, "triggers[1].cron.timezone", "Europe/Berlin");
    has(&e, 8, "triggers[2].cron.target", "`shop` is not `namespace/deployment`");
    has(&e, 8, "triggers[2].cron.params.q", "only set for runs started by an incident");
    has(&e, 8, "triggers[2].cron.params.n", "above the maximum 3");
    has(&e, 9, "triggers[3].incident.severity[1]", "`page` is not a severity");
    has(&e, 9, "triggers[3].incident.params.m", "unknown parameter; declared: n, q");
    has(&e, 10, "triggers[4]", "`manual` declares");
    has(&e, 11, "triggers[5].alert.labels", "at least one label");
    has(&e, 11, "triggers[5].alert.params.q", "cannot refer to other parameters");
    let none = "name: x\ntarget: none\ntriggers:\n  - cron: {schedule: '@daily', target: a/b}\nsteps: [{notify: {message: hi}}]\n";
    has(&parse_playbook(none, Path::new("p.yaml")).unwrap_err().0, 4, "triggers[0].cron.target", "`target: none`");
}

#[test]
fn params_and_guards_are_checked() {
    let text = "name: x\nparams:\n  n: {type: int, default: 9, min: 1, max: 5}\n  '9lives': {type: string, default: a}\n  d: {type: duration, min: 5 parsecs}\nguards:\n  max_attempts: 0\n  approval_ttl: 0s\n  rate: {global: {max: 0, per: 1h}, per_namespace: {max: 1, per: 0s}}\n  blast_radius:\n    max_replica_change_percent: 0\n    namespaces_allow: [shop, Bad]\n    namespaces_deny: [shop]\n    patch_allow: ['spec..x', 'a[0]', 'ok.*']\nsteps: [{wait: {for: 1s}}]\n";
    let e = errors(text);
    has(&e, 3, "params.n.default", "9 is above the maximum 5");
    has(&e, 4, "params.9lives", "must start with a letter");
    has(&e, 5, "params.d.min", "invalid duration");
    has(&e, 7, "guards.max_attempts", "at least 1");
    has(&e, 8, "guards.approval_ttl", "greater than 0");
    has(&e, 9, "guards.rate.global.max", "at least 1");
    has(&e, 9, "guards.rate.per_namespace.per", "greater than 0");
    has(&e, 11, "guards.blast_radius.max_replica_change_percent", "1..=1000");
    has(&e, 12, "guards.blast_radius.namespaces_allow[1]", "`Bad`");
    has(&e, 12, "guards.blast_radius.namespaces_allow[0]", "also in namespaces_deny");
    has(&e, 14, "guards.blast_radius.patch_allow[0]", "empty segment");
    has(&e, 14, "guards.blast_radius.patch_allow[1]", "`[` must be followed by `]`");
    assert!(!e.iter().any(|x| x.path == "guards.blast_radius.patch_allow[2]"), "{e:?}");
}

#[test]
fn patches_must_stay_inside_the_allow_list() {
    let text = "name: x\nsteps:\n  - patch:\n      patch:\n        spec:\n          replicas: 3\n          template:\n            spec:\n              containers:\n                - name: api\n                  image: evil\n                  env: [{name: A, value: b}]\n              hostNetwork: true\n  - patch: {patch: {metadata: {labels: !x {a: b}}}}\n  - patch: {patch: []}\n";
    let e = errors(text);
    has(&e, 6, "steps[0].patch.patch.spec.replicas", "`spec.replicas`, which the default patch_allow does not allow");
    has(&e, 11, "steps[0].patch.patch.spec.template.spec.containers[0].image", "containers[].image");
    has(&e, 13, "steps[0].patch.patch.spec.template.spec.hostNetwork", "hostNetwork");
    has(&e, 14, "steps[1].patch.patch.metadata.labels", "tags");
    has(&e, 15, "steps[2].patch.patch", "non-empty mapping");
    assert!(!e.iter().any(|x| x.path.ends_with("env[0].value") || x.path.ends_with("containers[0].name")), "{e:?}");
    // A playbook's own allow-list replaces the default.
    let own = "name: x\nguards: {blast_radius: {patch_allow: ['spec.replicas']}}\nsteps:\n  - patch: {patch: {spec: {replicas: 2, paused: true}}}\n";
    let e = errors(own);
    has(&e, 4, "steps[0].patch.patch.spec.paused", "guards.blast_radius.patch_allow does not allow");
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn patch_paths_and_patterns() {
    let patch = serde_json::json!({"spec": {"template": {
        "metadata": {"annotations": {"prometheus.io/scrape": "true", "a": "b"}},
        "spec": {"containers": [{"name": "api", "env": [{"name": "A", "value": "1"}], "args": []}]}}}});
    assert_eq!(
        patch_paths(&patch),
        [
            "spec.template.metadata.annotations.\"prometheus.io/scrape\"",
            "spec.template.metadata.annotations.a",
            "spec.template.spec.containers[].args[]",
            "spec.template.spec.containers[].env[].name",
            "spec.template.spec.containers[].env[].value",
            "spec.template.spec.containers[].name",
        ]
    );
    let allowed: Vec<bool> = patch_paths(&patch).iter().map(|p| path_allowed(p, DEFAULT_PATCH_ALLOW)).collect();
    assert_eq!(allowed, [true, true, false, true, true, true]);
    assert!(path_allowed("a.\"b.c\"", &["a.\"b.c\"".to_string()]));
    assert!(!path_allowed("spec.template.spec.containers[].image", DEFAULT_PATCH_ALLOW));
    assert!(!path_allowed("spec.template.spec.volumes[].name", DEFAULT_PATCH_ALLOW));
    assert!(!path_allowed("spec.template.metadata.annotations", DEFAULT_PATCH_ALLOW));
    assert!(!path_allowed("spec.template.metadata.annotations.a.b", DEFAULT_PATCH_ALLOW));
    for p in DEFAULT_PATCH_ALLOW {
        assert!(check_pattern(p).is_ok(), "{p}");
    }
    for bad in ["", "a.", ".a", "a[1]", "[]", "a.\"b", "a]"] {
        assert!(check_pattern(bad).is_err(), "{bad}");
    }
}

#[test]
fn urls() {
    for ok in ["https://hooks.example.com/x?y=1", "http://10.0.0.1:8080/", "http://[::1]:9000/a", "https://a"] {
        assert!(check_http_url(ok).is_ok(), "{ok}");
    }
    for bad in ["ftp://x", "https://", "https://a b", "https://u@x", "http://x:0/", "http://x:99999", "https://a/b c"] {
        assert!(check_http_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_directory_loads_sorted_with_every_error_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("b.yaml", "name: b\nsteps: [{wait: {for: 1s}}]\n");
    write("a.yml", "name: a\nsteps: [{wait: {for: 1s}}]\n");
    write("notes.txt", "not a playbook");
    let got = load_dir(dir.path()).expect("valid");
    let names: Vec<&str> = got.iter().map(|(_, p)| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);

    write("c.yaml", "name: c\nsteps: [{wait: {for: 0s}}]\n");
    write("d.yaml", "name: d\nbogus: 1\nsteps: [{wait: {for: 1s}}]\n");
    write("e.yaml", "# same name as b\nname: b\nsteps: [{wait: {for: 1s}}]\n");
    let e = load_dir(dir.path()).expect_err("invalid").0;
    let got: Vec<(String, Option<usize>, &str)> = e
        .iter()
        .map(|x| {
            (x.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), x.line, x.path.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("c.yaml".to_string(), Some(2), "steps[0].wait.for"),
            ("d.yaml".to_string(), Some(2), "bogus"),
            ("e.yaml".to_string(), Some(2), "name"),
        ]
    );
    assert!(e[2].message.contains("b.yaml"), "{}", e[2].message);
    let shown = LoadErrors(e).to_string();
    assert!(shown.contains("c.yaml:2: steps[0].wait.for: must be greater than 0"), "{shown}");
    let missing = load_dir(&dir.path().join("nope")).expect_err("missing").0;
    assert!(missing[0].line.is_none() && missing[0].to_string().contains("nope: cannot read"), "{}", missing[0]);
}

#[test]
fn the_documented_examples_load() {
    let doc = include_str!("../../../docs/playbooks.md");
    let mut checked = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap_or_default();
        if yaml.lines().any(|l| l.starts_with("name: ")) {
            if let Err(e) = parse_playbook(yaml, Path::new("docs/playbooks.md")) {
                panic!("{e}\n---\n{yaml}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn the_catalog_holds_builtins_and_files_replace_them() {
    let builtin = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
    assert!(builtin.names().contains(&"scale-up-on-saturation"), "{:?}", builtin.names());
    assert_eq!(builtin.source("scale-up-on-saturation"), Some(&Source::Builtin));

    let dir = tempfile::tempdir().expect("tempdir");
    let own = dir.path().join("mine.yaml");
    std::fs::write(&own, "name: scale-up-on-saturation\ndescription: ours\nsteps: [{wait: {for: 1s}}]\n")
        .expect("write");
    std::fs::write(dir.path().join("extra.yaml"), "name: extra\nsteps: [{wait: {for: 1s}}]\n").expect("write");
    let c = Catalog::load(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.source("scale-up-on-saturation"), Some(&Source::File(own)));
    assert_eq!(c.get("scale-up-on-saturation").map(|p| p.description.as_str()), Some("ours"));
    assert!(c.get("extra").is_some());
    assert_eq!(c.len(), builtin.len() + 1);
    assert_eq!(c.iter().count(), c.names().len());
    assert!(c.get("nope").is_none());
}
