//! Unit tests of the service spec: parsing, every validation error at its
//! exact position, templates, update refusals and changed pods.

use super::yaml::{parse_duration_ms, parse_size_mib};
use super::*;

/// The spec's errors, one `file:line:column: field: message (hint)` each.
fn errors(yaml: &str) -> Vec<String> {
    match ServiceSpec::from_yaml(yaml, "t.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts the spec fails with exactly one error, starting with `prefix`.
#[track_caller]
fn one_error(yaml: &str, prefix: &str) -> String {
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    assert!(errs[0].starts_with(prefix), "expected {prefix:?}…, got {:?}", errs[0]);
    errs[0].clone()
}

fn parse(yaml: &str) -> ServiceSpec {
    ServiceSpec::from_yaml(yaml, "t.yaml").unwrap_or_else(|e| panic!("spec should parse:\n{e}"))
}

/// A one-pod spec around the given pod body (indented 4), on lines 4…
fn pod(body: &str) -> String {
    format!("name: svc\npods:\n  web:\n{body}")
}

const MIN_POD: &str = "    count: 1
    resources: { cpus: 1, mem: 64 }
    tasks:
      main: { cmd: sleep 1000 }
";

#[test]
fn hello_spec_parses_into_typed_structs() {
    let spec = parse(HELLO_SPEC);
    assert_eq!(spec.name, "hello");
    assert_eq!(spec.role, "hello");
    let pod = spec.pod("hello").unwrap();
    assert_eq!(pod.count, 3);
    assert_eq!(pod.instance_name(2), "hello-2");
    assert_eq!(pod.resources.cpus, 0.5);
    assert_eq!(pod.resources.mem, 256);
    let http = pod.port("http").unwrap();
    assert!(http.is_dynamic());
    assert_eq!(http.env_name(), "PORT_HTTP");
    assert_eq!(pod.volumes[0].path, "data");
    assert_eq!(pod.volumes[0].name, "data");
    assert_eq!(pod.volumes[0].kind, VolumeType::Root);
    assert_eq!(pod.volumes[0].size, 1024);
    assert_eq!(pod.volumes[0].env_name(), "VOLUME_DATA");
    let rules: Vec<&PlacementRule> = pod.rules().collect();
    assert_eq!(
        rules,
        [
            &PlacementRule::Unique { attribute: "hostname".into() },
            &PlacementRule::MaxPer { attribute: "zone".into(), max: 1 }
        ]
    );
    assert!(pod.is_zone_aware());
    let t = pod.task("server").unwrap();
    assert_eq!(t.goal, Goal::Running);
    assert!(t.essential);
    assert_eq!(t.kill_grace_period_ms, 10_000);
    assert_eq!(t.env["GREETING"], "hello");
    assert_eq!(t.configs[0].dest, "hello.conf");
    let r = t.readiness_check.as_ref().unwrap();
    assert_eq!(r.kind, CheckKind::Http { port: "http".into(), path: "/ready".into() });
    let h = t.health_check.as_ref().unwrap();
    assert_eq!(h.kind, CheckKind::Tcp("http".into()));
    assert_eq!((h.interval_ms, h.timeout_ms, h.max_failures, h.grace_period_ms), (5000, 1000, 3, 30_000));
    let deploy = spec.plan("deploy").unwrap();
    assert!(!deploy.is_custom());
    assert_eq!(deploy.phases[0].pod, "hello");
    assert_eq!(spec.deploy_plan(), *deploy);
}

#[test]
fn positions_point_at_the_written_values() {
    let spec = parse(HELLO_SPEC);
    let pod = spec.pod("hello").unwrap();
    assert_eq!((pod.pos.line, pod.pos.column), (3, 3));
    assert_eq!((pod.count_pos.line, pod.count_pos.column), (4, 12));
    let http = pod.port("http").unwrap();
    assert_eq!((http.pos.line, http.pos.column), (9, 9));
    assert_eq!((pod.placement[1].pos.line, pod.placement[1].pos.column), (16, 18));
}

#[test]
fn spec_round_trips_through_its_serialized_form() {
    let spec = parse(HELLO_SPEC);
    let json = serde_json::to_string_pretty(&spec).unwrap();
    assert!(json.contains("\"kill-grace-period\": \"10s\""), "{json}");
    assert!(json.contains("\"max-per\""), "{json}");
    assert!(json.contains("\"readiness-check\""), "{json}");
    // JSON is YAML: the serialized spec parses back to the same spec.
    let back = parse(&json);
    assert_eq!(back, spec);
}

#[test]
fn defaults_fill_what_is_not_written() {
    let spec = parse(&pod(MIN_POD));
    assert_eq!(spec.role, "svc");
    let pod = &spec.pods[0];
    assert!(!pod.allow_decommission);
    let t = &pod.tasks[0];
    assert_eq!((t.goal, t.essential, t.kill_grace_period_ms), (Goal::Running, true, 5000));
    let deploy = spec.deploy_plan();
    assert_eq!(deploy.phases.len(), 1);
    assert_eq!((deploy.phases[0].name.as_str(), deploy.strategy), ("web", Strategy::Serial));
}

#[test]
fn sizes_accept_mib_and_binary_units() {
    assert_eq!(parse_size_mib("512"), Ok(512));
    assert_eq!(parse_size_mib("512Mi"), Ok(512));
    assert_eq!(parse_size_mib("2Gi"), Ok(2048));
    assert_eq!(parse_size_mib("1.5Gi"), Ok(1536));
    assert_eq!(parse_size_mib("1TiB"), Ok(1024 * 1024));
    assert!(parse_size_mib("2GB").is_err());
    assert!(parse_size_mib("0.5Mi").is_err());
    assert!(parse_size_mib("lots").is_err());
    let spec = parse(&pod("    count: 1
    resources: { cpus: 0.25, mem: 2Gi }
    volumes: [ { path: data, size: 10Gi, type: MOUNT } ]
    tasks:
      main: { cmd: x }
"));
    assert_eq!(spec.pods[0].resources.mem, 2048);
    assert_eq!(spec.pods[0].volumes[0].size, 10 * 1024);
    let e = one_error(
        &pod("    count: 1\n    resources: { cpus: 1, mem: 2GB }\n    tasks:\n      main: { cmd: x }\n"),
        "t.yaml:5:32: pods.web.resources.mem: expected a size",
    );
    assert!(e.contains("unknown size unit `GB`"), "{e}");
}

#[test]
fn durations_need_units() {
    assert_eq!(parse_duration_ms("10s"), Ok(10_000));
    assert_eq!(parse_duration_ms("250ms"), Ok(250));
    assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
    assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
    assert_eq!(parse_duration_ms("0"), Ok(0));
    assert!(parse_duration_ms("10").is_err());
    assert!(parse_duration_ms("10 parsecs").is_err());
    assert_eq!(format_duration(90_000), "1m30s");
    assert_eq!(format_duration(250), "250ms");
    let e = one_error(
        &pod("    count: 1\n    resources: { cpus: 1, mem: 64 }\n    tasks:\n      main: { cmd: x, kill-grace-period: 10 }\n"),
        "t.yaml:7:42: pods.web.tasks.main.kill-grace-period: expected a duration",
    );
    assert!(e.ends_with("(hint: add a unit: `10s` or `10ms`)"), "{e}");
}

#[test]
fn unknown_field_lists_the_valid_ones_and_guesses() {
    let e = one_error(
        &pod("    count: 1\n    resources: { cpus: 1, mem: 64 }\n    tasks:\n      main: { cmd: x, gaol: FINISH }\n"),
        "t.yaml:7:23: pods.web.tasks.main.gaol: unknown field `gaol`; valid fields here are `cmd`, `env`, `configs`, `goal`",
    );
    assert!(e.ends_with("(hint: did you mean `goal`?)"), "{e}");
    let e = one_error(
        &format!("name: svc\nrole: r\nplugins: 3\npods:\n  web:\n{MIN_POD}"),
        "t.yaml:3:1: plugins: unknown field `plugins`",
    );
    assert!(e.contains("`name`, `role`, `pods`, `plans`"), "{e}");
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let yaml = pod("    cont: 3
    resources: { cpus: 0, mem: 64 }
    tasks:
      Main: { cmd: x }
");
    let errs = errors(&yaml);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with("t.yaml:4:5: pods.web.cont: unknown field `cont`"), "{errs:#?}");
    assert!(errs[0].ends_with("(hint: did you mean `count`?)"), "{errs:#?}");
    assert!(errs[1].starts_with("t.yaml:4:5: pods.web: missing field `count`"), "{errs:#?}");
    assert_eq!(errs[2], "t.yaml:5:24: pods.web.resources.cpus: expected a number of cpus > 0, found 0");
    assert!(errs[3].starts_with("t.yaml:7:7: pods.web.tasks.Main: `Main` is not a valid task name"), "{errs:#?}");
    assert!(errs[3].ends_with("(hint: try `main`)"), "{errs:#?}");
    // Display: one error per line.
    let all = ServiceSpec::from_yaml(&yaml, "t.yaml").unwrap_err().to_string();
    assert_eq!(all.lines().count(), 4);
}

#[test]
fn count_must_not_be_negative() {
    one_error(
        &pod("    count: -1\n    resources: { cpus: 1, mem: 64 }\n    tasks:\n      main: { cmd: x }\n"),
        "t.yaml:4:12: pods.web.count: expected a whole number ≥ 0, found -1: must not be negative",
    );
    one_error(
        &pod("    count: three\n    resources: { cpus: 1, mem: 64 }\n    tasks:\n      main: { cmd: x }\n"),
        "t.yaml:4:12: pods.web.count: expected a whole number ≥ 0, found `three`",
    );
    // count 0 is fine: a pod type with no pods.
    assert_eq!(parse(&pod(&MIN_POD.replace("count: 1", "count: 0"))).pods[0].count, 0);
}

#[test]
fn mem_must_be_positive() {
    one_error(
        &pod("    count: 1\n    resources: { cpus: 1, mem: 0 }\n    tasks:\n      main: { cmd: x }\n"),
        "t.yaml:5:32: pods.web.resources.mem: must be greater than 0",
    );
}

#[test]
fn missing_and_empty_required_fields() {
    one_error(
        &pod("    count: 1\n    resources: { cpus: 1 }\n    tasks:\n      main: { cmd: x }\n"),
        "t.yaml:5:16: pods.web.resources: missing field `mem`",
    );
    one_error(
        &pod("    count: 1\n    resources: { cpus: 1, mem: 1 }\n    tasks:\n      main:\n        cmd:\n"),
        "t.yaml:8:9: pods.web.tasks.main.cmd: `cmd` is empty",
    );
}

#[test]
fn port_names_must_be_env_safe_and_unique() {
    let errs = errors(&pod("    count: 1
    resources:
      cpus: 1
      mem: 64
      ports:
        web-ui: { port: 8080 }
        web_ui: 0
        9bad: 0
        admin: { port: 8080 }
        x: { port: 70000 }
        y: { port: 1, env: 1BAD }
    tasks:
      main: { cmd: x }
"));
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs[0].starts_with("t.yaml:10:9: pods.web.resources.ports.web_ui: port `web_ui` is injected as PORT_WEB_UI, like port `web-ui` (at 9:9)"), "{errs:#?}");
    assert!(
        errs[1].starts_with("t.yaml:11:9: pods.web.resources.ports.9bad: `9bad` is not a valid port name"),
        "{errs:#?}"
    );
    assert!(errs[2].starts_with("t.yaml:12:24: pods.web.resources.ports.admin.port: port 8080 is already used by port `web-ui` of this pod (at 9:25)"), "{errs:#?}");
    assert!(errs[3].starts_with("t.yaml:13:20: pods.web.resources.ports.x.port: expected a port number 0..=65535 (0 for a dynamic port), found 70000: must be at most 65535"), "{errs:#?}");
    assert!(
        errs[4].starts_with("t.yaml:14:28: pods.web.resources.ports.y.env: `1BAD` is not a valid env var name"),
        "{errs:#?}"
    );
}

#[test]
fn port_env_override_is_used() {
    let spec = parse(&pod("    count: 1
    resources:
      cpus: 1
      mem: 64
      ports:
        broker: { port: 9092, env: BROKER_PORT }
        jmx: 0
    tasks:
      main: { cmd: x }
"));
    let pod = &spec.pods[0];
    assert_eq!(pod.port("broker").unwrap().env_name(), "BROKER_PORT");
    assert_eq!(pod.port("jmx").unwrap().env_name(), "PORT_JMX");
    assert_eq!(pod.fixed_resources().ports, crate::resources::PortSet::from_ports([9092]));
}

#[test]
fn volume_paths_relative_without_dotdot_and_unique() {
    let errs = errors(&pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    volumes:
      - { path: /var/data, size: 1 }
      - { path: ../up, size: 1 }
      - { path: data, size: 1 }
      - { path: data/, size: 1, name: other }
      - { path: logs, size: 0, type: FLOPPY }
    tasks:
      main: { cmd: x }
"));
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.yaml:7:17: pods.web.volumes[0].path: path `/var/data` must be relative"),
        "{errs:#?}"
    );
    assert!(errs[0].ends_with("(hint: write a path below the sandbox, e.g. `var/data`)"), "{errs:#?}");
    assert!(
        errs[1].starts_with("t.yaml:8:17: pods.web.volumes[1].path: path `../up` must not contain `..`"),
        "{errs:#?}"
    );
    assert!(errs[2].starts_with("t.yaml:10:17: pods.web.volumes[3].path: volume path `data/` is already used by another volume of this pod (at 9:17)"), "{errs:#?}");
    assert!(errs[3].starts_with("t.yaml:11:29: pods.web.volumes[4].size: must be greater than 0"), "{errs:#?}");
    assert!(
        errs[4].starts_with("t.yaml:11:38: pods.web.volumes[4].type: expected one of `ROOT`, `MOUNT`, found `FLOPPY`"),
        "{errs:#?}"
    );
}

#[test]
fn volume_converts_to_a_volume_source() {
    use crate::resources::MountDisk;
    let spec = parse(&pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    volumes:
      - { path: data, size: 100 }
      - { path: log, size: 5Gi, type: mount }
    tasks:
      main: { cmd: x }
"));
    let pod = &spec.pods[0];
    assert_eq!(pod.volumes[0].source(None), Some(VolumeSource::Root { size: 100 }));
    let disk = MountDisk { path: "/mnt/d1".into(), size: 8 * 1024 };
    assert_eq!(pod.volumes[1].source(Some(&disk)), Some(VolumeSource::Mount { path: "/mnt/d1".into() }));
    let small = MountDisk { path: "/mnt/d2".into(), size: 1024 };
    assert_eq!(pod.volumes[1].source(Some(&small)), None);
    assert_eq!(pod.fixed_resources().disk, 100);
}

#[test]
fn finish_and_once_tasks_cannot_have_health_checks() {
    let e = one_error(
        &pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    tasks:
      init:
        cmd: ./init
        goal: FINISH
        health-check: { cmd: 'true' }
"),
        "t.yaml:10:9: pods.web.tasks.init.health-check: a task with goal FINISH cannot have a health-check",
    );
    assert!(e.contains("hint: health checks watch long-running tasks"), "{e}");
    let spec = parse(&pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    tasks:
      init:
        cmd: ./init
        goal: ONCE
        readiness-check: { cmd: 'test -f done' }
"));
    assert_eq!(spec.pods[0].tasks[0].goal, Goal::Once);
}

#[test]
fn checks_must_name_declared_ports() {
    let errs = errors(&pod("    count: 1
    resources:
      cpus: 1
      mem: 64
      ports: { api: 0 }
    tasks:
      main:
        cmd: x
        health-check: { tcp: apii }
        readiness-check:
          http: { port: admin, path: /ready }
"));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        errs[0],
        "t.yaml:12:30: pods.web.tasks.main.health-check: port `apii` is not declared in this pod's resources (hint: declared ports: api)"
    );
    assert!(
        errs[1].starts_with("t.yaml:14:25: pods.web.tasks.main.readiness-check: port `admin` is not declared"),
        "{errs:#?}"
    );
}

#[test]
fn check_forms_and_their_errors() {
    let errs = errors(&pod("    count: 1
    resources: { cpus: 1, mem: 64, ports: { api: 0 } }
    tasks:
      a: { cmd: x, readiness-check: { interval: 1s } }
      b: { cmd: x, readiness-check: { cmd: x, tcp: api } }
      c: { cmd: x, readiness-check: { http: api, max-failures: 0 } }
"));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.yaml:7:37: pods.web.tasks.a.readiness-check: a check needs one of `cmd`"),
        "{errs:#?}"
    );
    assert!(errs[1].starts_with("t.yaml:8:47: pods.web.tasks.b.readiness-check.tcp: a check has one of `cmd`, `tcp` or `http`, found `cmd`, `tcp`"), "{errs:#?}");
    assert!(errs[2].starts_with("t.yaml:9:64: pods.web.tasks.c.readiness-check.max-failures: expected a whole number ≥ 1, found 0: must be at least 1"), "{errs:#?}");

    let spec = parse(&pod("    count: 1
    resources: { cpus: 1, mem: 64, ports: { api: 0 } }
    tasks:
      c: { cmd: x, readiness-check: { http: api, interval: 2s, timeout: 500ms } }
"));
    let check = spec.pods[0].tasks[0].readiness_check.clone().unwrap();
    let agent_side = check.to_check_spec(|p| (p == "api").then_some(31000)).unwrap();
    assert_eq!(agent_side.check, Check::Http { port: 31000, path: "/".into() });
    assert_eq!((agent_side.interval_ms, agent_side.timeout_ms), (2000, 500));
    assert!(check.to_check_spec(|_| None).is_none());
}

#[test]
fn colocate_and_avoid_name_pod_types_of_this_spec() {
    let yaml = "name: svc
pods:
  web:
    count: 1
    resources: { cpus: 1, mem: 64 }
    placement:
      - colocate-with: nosuch
      - avoid: db
      - colocate-with: web
      - unique: hostname
    tasks:
      main: { cmd: x }
";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!(
        errs[0],
        "t.yaml:7:24: pods.web.placement[0].colocate-with: no pod type `nosuch` in this service (hint: pod types: web)"
    );
    assert!(
        errs[1].starts_with("t.yaml:8:16: pods.web.placement[1].avoid: no pod type `db` in this service"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with(
            "t.yaml:9:24: pods.web.placement[2].colocate-with: pod type `web` cannot be colocated with itself"
        ),
        "{errs:#?}"
    );
    // Avoiding its own type is allowed (one per agent).
    assert!(errors(
        &yaml
            .replace("colocate-with: nosuch", "avoid: web")
            .replace("avoid: db", "unique: zone")
            .replace("colocate-with: web", "unique: rack")
    )
    .is_empty());
}

#[test]
fn placement_rule_forms() {
    let spec = parse(&pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    placement:
      - unique: rack
      - max-per: { zone: 2 }
      - group-by: zone
      - group-by: { rack: 3 }
      - like: { zone: 'zone-[ab]' }
      - unlike: { hostname: bad-host }
    tasks:
      main: { cmd: x }
"));
    let rules: Vec<String> = spec.pods[0].rules().map(ToString::to_string).collect();
    assert_eq!(
        rules,
        [
            "unique: rack",
            "max-per: {zone: 2}",
            "group-by: zone",
            "group-by: {rack: 3}",
            "like: {zone: zone-[ab]}",
            "unlike: {hostname: bad-host}"
        ]
    );
    let errs = errors(&pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    placement:
      - uniq: hostname
      - max-per: { zone: 1, rack: 1 }
      - { unique: hostname, avoid: web }
      - max-per: { zone: 0 }
    tasks:
      main: { cmd: x }
"));
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with("t.yaml:7:9: pods.web.placement[0].uniq: unknown field `uniq`"), "{errs:#?}");
    assert!(errs[0].ends_with("(hint: did you mean `unique`?)"), "{errs:#?}");
    assert!(
        errs[1].starts_with("t.yaml:8:18: pods.web.placement[1].max-per: expected exactly one attribute, found 2"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("t.yaml:9:9: pods.web.placement[2]: a placement rule has exactly one key, found 2"),
        "{errs:#?}"
    );
    assert!(
        errs[3].starts_with("t.yaml:10:26: pods.web.placement[3].max-per.zone: expected a whole number ≥ 1, found 0"),
        "{errs:#?}"
    );
}

const PLANS_BASE: &str = "name: svc
pods:
  web:
    count: 2
    resources: { cpus: 1, mem: 64 }
    tasks:
      init: { cmd: x, goal: FINISH }
      main: { cmd: x }
  db:
    count: 1
    resources: { cpus: 1, mem: 64 }
    tasks:
      main: { cmd: x }
plans:
";

#[test]
fn custom_plans_with_parameters_and_phases() {
    let spec = parse(&format!(
        "{PLANS_BASE}  update:
    strategy: canary
    phases:
      - {{ name: web, pod: web, tasks: [main] }}
  rebalance:
    strategy: dependency
    parameters: {{ TOPIC: all, THROTTLE: 10 }}
    phases:
      - {{ name: first, pod: db, steps: [0] }}
      - {{ name: second, pod: web, steps: [1, 0], tasks: [init, main], depends-on: [first] }}
"
    ));
    let rebalance = spec.plan("rebalance").unwrap();
    assert!(rebalance.is_custom());
    assert_eq!(rebalance.parameters["THROTTLE"], "10");
    assert_eq!(rebalance.phase("second").unwrap().steps, Some(vec![1, 0]));
    assert_eq!(rebalance.phase("second").unwrap().depends_on, ["first"]);
    assert_eq!(spec.plan("update").unwrap().strategy, Strategy::Canary);
}

#[test]
fn phases_must_reference_existing_pods_tasks_and_indices() {
    let errs = errors(&format!(
        "{PLANS_BASE}  deploy:
    phases:
      - {{ name: a, pod: cache }}
      - {{ name: b, pod: web, tasks: [main, mian], steps: [0, 2, 0] }}
      - {{ name: a, pod: db, strategy: paralel }}
"
    ));
    assert_eq!(errs.len(), 6, "{errs:#?}");
    assert_eq!(
        errs[0],
        "t.yaml:17:25: plans.deploy.phases[0].pod: no pod type `cache` in this service (hint: pod types: web, db)"
    );
    assert_eq!(errs[1], "t.yaml:18:44: plans.deploy.phases[1].tasks[1]: pod type `web` has no task `mian` (hint: its tasks: init, main)");
    assert_eq!(errs[2], "t.yaml:18:62: plans.deploy.phases[1].steps[1]: pod `web` has no index 2: its count is 2");
    assert_eq!(errs[3], "t.yaml:18:65: plans.deploy.phases[1].steps[2]: index 0 is listed twice");
    assert_eq!(
        errs[4],
        "t.yaml:19:17: plans.deploy.phases[2].name: phase `a` is already declared in this plan (at 17:17)"
    );
    assert!(errs[5].starts_with("t.yaml:19:39: plans.deploy.phases[2].strategy: expected one of `serial`, `parallel`, `canary`, `dependency`, found `paralel`"), "{errs:#?}");
    assert!(errs[5].ends_with("(hint: did you mean `parallel`?)"), "{errs:#?}");
}

#[test]
fn plan_names_are_unique() {
    let e = one_error(
        &format!("{PLANS_BASE}  fix:\n    phases: [ {{ name: a, pod: db }} ]\n  fix:\n    phases: [ {{ name: a, pod: db }} ]\n"),
        "t.yaml:17:3: fix: `fix` appears twice in the same mapping (first at 15:3)",
    );
    assert!(e.contains("hint: names must be unique"), "{e}");
}

#[test]
fn built_in_plans_rules() {
    let errs = errors(&format!(
        "{PLANS_BASE}  recovery:
    phases: [ {{ name: a, pod: db }} ]
  deploy:
    parameters: {{ X: 1 }}
    phases: [ {{ name: a, pod: db }} ]
"
    ));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.yaml:15:3: plans.recovery: `recovery` is a built-in plan and cannot be overridden"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("t.yaml:18:5: plans.deploy.parameters: built-in plan `deploy` takes no parameters"),
        "{errs:#?}"
    );
}

#[test]
fn dependency_strategy_rejects_cycles_and_unknown_phases() {
    let e = one_error(
        &format!(
            "{PLANS_BASE}  migrate:
    strategy: dependency
    phases:
      - {{ name: a, pod: db, depends-on: [c] }}
      - {{ name: b, pod: web, depends-on: [a] }}
      - {{ name: c, pod: web, depends-on: [b] }}
"
        ),
        "t.yaml:18:42: plans.migrate.phases: the phases' dependencies form a cycle: a → c → b → a",
    );
    assert!(e.ends_with("(hint: remove one of these `depends-on` entries)"), "{e}");
    let errs = errors(&format!(
        "{PLANS_BASE}  migrate:
    phases:
      - {{ name: a, pod: db, depends-on: [a, zz] }}
"
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].starts_with("t.yaml:17:42: plans.migrate.phases[0].depends-on: `depends-on` needs the plan's strategy to be `dependency`, not `serial`"), "{errs:#?}");
    assert_eq!(errs[1], "t.yaml:17:42: plans.migrate.phases[0].depends-on[0]: phase `a` cannot depend on itself");
    assert!(
        errs[2].starts_with("t.yaml:17:45: plans.migrate.phases[0].depends-on[1]: no phase `zz` in plan `migrate`"),
        "{errs:#?}"
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let errs = errors("name: svc\npods:\n  web: { count: 1\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("t.yaml:4:1: invalid YAML:"), "{errs:#?}");
    let errs = errors("- a\n- b\n");
    assert!(errs[0].starts_with("t.yaml:1:1: expected a service spec"), "{errs:#?}");
}

#[test]
fn config_templates_are_checked_and_rendered() {
    one_error(
        &pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    tasks:
      main:
        cmd: x
        configs:
          - { template: 'port={{PORT_API', dest: app.conf }
"),
        "t.yaml:10:25: pods.web.tasks.main.configs[0].template: template placeholder opened at byte 5",
    );
    let env = BTreeMap::from([("PORT_API".to_string(), "31000".to_string()), ("HOST".into(), "h1".into())]);
    assert_eq!(render_template("listen={{HOST}}:{{ PORT_API }}\n", &env).unwrap(), "listen=h1:31000\n");
    assert_eq!(render_template("no placeholders", &env).unwrap(), "no placeholders");
    let e = render_template("{{ZONE}} {{HOST}} {{A}} {{ZONE}}", &env).unwrap_err();
    assert_eq!(e, TemplateError::Missing(vec!["A".into(), "ZONE".into()]));
    assert_eq!(e.to_string(), "template variables A, ZONE are not set");
    let e = render_template("x {{NOPE}}", &env).unwrap_err();
    assert_eq!(e.to_string(), "template variable NOPE is not set");
    assert!(matches!(render_template("{{a-b}}", &env), Err(TemplateError::BadName { offset: 0, .. })));
    assert_eq!(template_vars("{{B}}{{A}}{{B}}").unwrap(), ["A", "B"]);
}

#[test]
fn config_dest_must_be_relative() {
    let errs = errors(&pod("    count: 1
    resources: { cpus: 1, mem: 64 }
    tasks:
      main:
        cmd: x
        configs:
          - { template: 'a={{A}}', dest: /etc/app.conf }
"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.yaml:10:42: pods.web.tasks.main.configs[0].dest: path `/etc/app.conf` must be relative"),
        "{errs:#?}"
    );
}

// ------------------------------------------------------------- updates

fn hello() -> ServiceSpec {
    parse(HELLO_SPEC)
}

fn with(f: impl FnOnce(&mut ServiceSpec)) -> ServiceSpec {
    let mut s = hello();
    f(&mut s);
    s
}

#[test]
fn a_safe_update_is_not_refused() {
    let new = with(|s| {
        s.pods[0].count = 5;
        s.pods[0].tasks[0].env.insert("GREETING".into(), "hi".into());
    });
    assert_eq!(validate_update(&hello(), &new), []);
    assert_eq!(validate_update(&hello(), &hello()), []);
}

#[test]
fn volume_size_and_type_changes_are_refused() {
    let new = with(|s| s.pods[0].volumes[0].size = 2048);
    let r = validate_update(&hello(), &new);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!((r[0].pod.as_deref(), r[0].field.as_str()), (Some("hello"), "volumes[data].size"));
    assert!(
        r[0].to_string()
            .starts_with("pod `hello`: volumes[data].size: volume `data` size changed from 1024 MiB to 2048 MiB"),
        "{}",
        r[0]
    );
    let new = with(|s| s.pods[0].volumes[0].kind = VolumeType::Mount);
    let r = validate_update(&hello(), &new);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].field, "volumes[data].type");
    assert!(r[0].message.contains("from ROOT to MOUNT"), "{}", r[0]);
}

#[test]
fn volumes_added_or_removed_are_refused() {
    let new = with(|s| s.pods[0].volumes.clear());
    let r = validate_update(&hello(), &new);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert!(r[0].message.starts_with("volume `data` was removed"), "{}", r[0]);
    let new = with(|s| {
        let mut v = s.pods[0].volumes[0].clone();
        v.path = "logs".into();
        s.pods[0].volumes.push(v);
    });
    let r = validate_update(&hello(), &new);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].field, "volumes[logs]");
}

#[test]
fn removing_a_pod_type_is_refused_unless_it_has_no_pods() {
    let old = parse(
        &format!("{PLANS_BASE}  x:\n    phases: [ {{ name: a, pod: db }} ]\n")
            .replace("plans:\n  x:\n    phases: [ { name: a, pod: db } ]\n", ""),
    );
    let mut new = old.clone();
    new.pods.retain(|p| p.name != "db");
    let r = validate_update(&old, &new);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!((r[0].pod.as_deref(), r[0].field.as_str()), (Some("db"), "pods"));
    assert!(r[0].message.contains("first scale it to `count: 0` with `allow-decommission: true`"), "{}", r[0]);
    let mut old0 = old.clone();
    old0.pods[1].count = 0;
    assert_eq!(validate_update(&old0, &new), []);
}

#[test]
fn lowering_count_needs_allow_decommission() {
    let new = with(|s| s.pods[0].count = 2);
    let r = validate_update(&hello(), &new);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(
        r[0].to_string(),
        "pod `hello`: count: count lowered from 3 to 2 without `allow-decommission: true`; decommissioning destroys the removed pods' volumes, so it must be allowed explicitly"
    );
    let new = with(|s| {
        s.pods[0].count = 2;
        s.pods[0].allow_decommission = true;
    });
    assert_eq!(validate_update(&hello(), &new), []);
}

#[test]
fn switching_on_zone_awareness_is_refused() {
    let old = with(|s| s.pods[0].placement.retain(|p| !p.rule.is_zone_aware()));
    assert!(!old.pods[0].is_zone_aware());
    let r = validate_update(&old, &hello());
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].field, "placement");
    assert!(r[0].message.starts_with("zone-awareness (`max-per: {zone: 1}`) cannot be switched on"), "{}", r[0]);
    // Switching it off, or on for a pod type that never ran, is fine.
    assert_eq!(validate_update(&hello(), &old), []);
    let mut never_ran = old.clone();
    never_ran.pods[0].count = 0;
    assert_eq!(validate_update(&never_ran, &hello()), []);
}

#[test]
fn name_and_role_cannot_change() {
    let new = with(|s| {
        s.name = "other".into();
        s.role = "other".into();
    });
    let r = validate_update(&hello(), &new);
    let fields: Vec<&str> = r.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(fields, ["name", "role"]);
    assert!(r.iter().all(|r| r.pod.is_none()));
}

#[test]
fn changed_pods_lists_only_reconfigured_pod_types() {
    let old = parse(&format!("{PLANS_BASE}  x:\n    phases: [ {{ name: a, pod: db }} ]\n"));
    assert!(changed_pods(&old, &old).is_empty());
    let mut new = old.clone();
    new.pods[0].count = 7; // scaling is not reconfiguring
    new.pods[0].allow_decommission = true;
    assert!(changed_pods(&old, &new).is_empty());
    new.pods[1].tasks[0].cmd = "y".into();
    assert_eq!(changed_pods(&old, &new), ["db"]);
    new.pods[0].resources.cpus = 2.0;
    assert_eq!(changed_pods(&old, &new), ["web", "db"]);
    // Only the layout of the file changed: nothing to roll.
    let reflowed = parse(&serde_json::to_string(&old).unwrap());
    assert!(changed_pods(&old, &reflowed).is_empty());
}

#[test]
fn empty_and_skeletal_files() {
    let errs = errors("");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("t.yaml:1:1: the spec is empty"), "{errs:#?}");
    assert_eq!(errors("# only a comment\n").len(), 1);
    let errs = errors("name: svc\n");
    assert_eq!(errs, ["t.yaml:1:1: missing field `pods` (a mapping of pod type → pod)"]);
}

#[test]
fn decommission_hook_parses_with_defaults_and_changes_no_pod() {
    let with = pod(&format!(
        "{MIN_POD}    hooks:\n      decommission:\n        cmd: ./drain.sh\n        env: {{ MODE: fast }}\n"
    ));
    let spec = parse(&with);
    let h = spec.pod("web").unwrap().hooks.decommission.clone().unwrap();
    assert_eq!(h.cmd, "./drain.sh");
    assert_eq!(h.env["MODE"], "fast");
    assert_eq!((h.cpus, h.mem), (0.1, 64));
    let sized = parse(&pod(&format!("{MIN_POD}    hooks:\n      decommission: {{ cmd: x, cpus: 0.5, mem: 1Gi }}\n")));
    let h = sized.pod("web").unwrap().hooks.decommission.clone().unwrap();
    assert_eq!((h.cpus, h.mem), (0.5, 1024));
    // Adding or changing a hook restarts nothing.
    let without = parse(&pod(MIN_POD));
    assert!(changed_pods(&without, &spec).is_empty());
}

#[test]
fn update_order_hook_parses_and_changes_no_pod() {
    let with = pod(&format!("{MIN_POD}    hooks:\n      update-order: {{ cmd: ./leader-last.sh, env: {{ A: b }} }}\n"));
    let spec = parse(&with);
    let h = spec.pod("web").unwrap().hooks.update_order.clone().unwrap();
    assert_eq!((h.cmd.as_str(), h.env["A"].as_str()), ("./leader-last.sh", "b"));
    assert!(spec.pod("web").unwrap().hooks.decommission.is_none());
    assert!(changed_pods(&parse(&pod(MIN_POD)), &spec).is_empty());
    one_error(
        &pod(&format!("{MIN_POD}    hooks:\n      update-order: {{ env: {{}} }}\n")),
        "t.yaml:9:21: pods.web.hooks.update-order: missing field `cmd`",
    );
}

#[test]
fn bad_hooks_are_refused_where_they_are() {
    one_error(
        &pod(&format!("{MIN_POD}    hooks:\n      on-start: {{ cmd: x }}\n")),
        "t.yaml:9:7: pods.web.hooks.on-start: unknown field",
    );
    one_error(
        &pod(&format!("{MIN_POD}    hooks:\n      decommission: {{ env: {{}} }}\n")),
        "t.yaml:9:21: pods.web.hooks.decommission: missing field `cmd`",
    );
    one_error(
        &pod(&format!("{MIN_POD}    hooks:\n      decommission: {{ cmd: x, cpus: -1 }}\n")),
        "t.yaml:9:37: pods.web.hooks.decommission.cpus: expected a number of cpus > 0",
    );
}

/// A three-pod spec with the given `prefer:` body (indented 4, on line 8…).
fn preferring(prefer: &str) -> String {
    pod(&format!("{}    prefer:\n{prefer}", MIN_POD.replace("count: 1", "count: 3")))
}

#[test]
fn preferences_are_per_pod_index_and_may_be_empty() {
    let spec = parse(&preferring("      - {hostname: 10.0.0.1, zone: zone-a}\n      - {zone: zone-b}\n      - {}\n"));
    let web = spec.pod("web").unwrap();
    assert_eq!(web.prefer.len(), 3);
    let p0 = web.preference(0).unwrap();
    assert_eq!((p0.hostname.as_deref(), p0.zone.as_deref()), (Some("10.0.0.1"), Some("zone-a")));
    let p1 = web.preference(1).unwrap();
    assert_eq!((p1.hostname.as_deref(), p1.zone.as_deref()), (None, Some("zone-b")));
    assert!(web.preference(2).is_none(), "`{{}}` is no preference");
    assert!(web.preference(7).is_none(), "pods past the list have none");
    // Fewer entries than pods, and a null entry, are fine.
    let short = parse(&preferring("      - ~\n      - {hostname: h2}\n"));
    let web = short.pod("web").unwrap();
    assert!(web.preference(0).is_none());
    assert_eq!(web.preference(1).unwrap().hostname.as_deref(), Some("h2"));
    // Serialized back, a spec keeps its preferences.
    let yaml = serde_json::to_value(&spec).unwrap();
    assert_eq!(yaml["pods"]["web"]["prefer"][0]["hostname"], "10.0.0.1");
    assert!(yaml["pods"]["web"]["prefer"][2].as_object().unwrap().is_empty());
}

#[test]
fn changing_preferences_restarts_nothing() {
    let old = parse(&preferring("      - {hostname: a}\n"));
    let new = parse(&preferring("      - {hostname: b}\n      - {zone: z}\n"));
    assert!(changed_pods(&old, &new).is_empty());
    assert!(validate_update(&old, &new).is_empty());
    assert!(
        changed_pods(&parse(&pod(MIN_POD)), &parse(&pod(&format!("{MIN_POD}    prefer: [{{zone: z}}]\n")))).is_empty()
    );
}

#[test]
fn bad_preferences_are_refused_where_they_are() {
    one_error(
        &preferring("      hostname: a\n"),
        "t.yaml:9:7: pods.web.prefer: expected a list with one preference per pod index",
    );
    one_error(
        &preferring("      - {host: a}\n"),
        "t.yaml:9:10: pods.web.prefer[0].host: unknown field `host`; valid fields here are `hostname`, `zone`",
    );
    one_error(
        &preferring("      - {}\n      - {zone: [a, b]}\n"),
        "t.yaml:10:16: pods.web.prefer[1].zone: expected an agent zone",
    );
    one_error(
        &preferring("      - {zone: \"zone a\"}\n"),
        "t.yaml:9:16: pods.web.prefer[0].zone: expected an agent zone without spaces",
    );
    one_error(&preferring("      - node-1\n"), "t.yaml:9:9: pods.web.prefer[0]: expected a preference");
    let e = one_error(
        &preferring("      - {}\n      - {}\n      - {}\n      - {zone: d}\n"),
        "t.yaml:12:9: pods.web.prefer[3]: 4 preferences for 3 pods",
    );
    assert!(e.contains("hint: `prefer` has one entry per pod index"), "{e}");
}
