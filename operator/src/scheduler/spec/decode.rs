//! Decodes the parsed YAML tree into a [`ServiceSpec`], by hand, collecting
//! every error at its node's position. Checks that need only the node at hand
//! (types, ranges, names, syntax) live here; cross-references live in
//! `validate`. Decoding always yields a value, with defaults where an error
//! was recorded, so later checks see every name that was written.

use super::yaml::*;
use super::*;
use crate::scheduler::plan::PlanKind;
use marked_yaml::types::MarkedScalarNode;
use marked_yaml::{LoadError, LoaderOptions, Node};

/// Parses `text` and decodes it; `None` when the YAML itself is malformed.
pub(super) fn decode(cx: &mut Cx, text: &str) -> Option<ServiceSpec> {
    let opts = LoaderOptions::default().error_on_duplicate_keys(true);
    match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(root) => Some(service(cx, &root)),
        Err(e) => {
            load_error(cx, e);
            None
        }
    }
}

fn load_error(cx: &mut Cx, e: LoadError) {
    let at = |m: &marked_yaml::Marker| Pos { line: m.line(), column: m.column() };
    match e {
        LoadError::TopLevelMustBeMapping(m) => {
            cx.err(at(&m), "", "expected a service spec: a mapping with `name`, `role`, `pods` and `plans`");
        }
        LoadError::TopLevelMustBeSequence(m) => {
            cx.err(at(&m), "", "expected a mapping at the top level");
        }
        LoadError::UnexpectedAnchor(m) => {
            cx.err(at(&m), "", "YAML anchors and aliases are not supported in service specs").hint =
                Some("write the value out where it is used".into());
        }
        LoadError::MappingKeyMustBeScalar(m) => {
            cx.err(at(&m), "", "a mapping key must be a plain string");
        }
        LoadError::UnexpectedTag(m) => {
            cx.err(at(&m), "", "YAML tags (`!tag`) are not supported in service specs");
        }
        LoadError::ScanError(m, e) => {
            cx.err(at(&m), "", format!("invalid YAML: {}", e.info()));
        }
        LoadError::DuplicateKey(d) => {
            let first = pos(d.prev_key.span());
            cx.err(
                pos(d.key.span()),
                d.key.as_str(),
                format!("`{}` appears twice in the same mapping (first at {first})", d.key.as_str()),
            )
            .hint = Some("names must be unique: rename or merge one of them".into());
        }
    }
}

const SERVICE_FIELDS: &[&str] = &["name", "role", "pods", "plans"];
const POD_FIELDS: &[&str] =
    &["count", "resources", "volumes", "placement", "prefer", "tasks", "allow-decommission", "hooks"];
const PREFER_FIELDS: &[&str] = &["hostname", "zone"];
const HOOKS: &[&str] = &["decommission", "update-order"];
const HOOK_FIELDS: &[&str] = &["cmd", "env", "cpus", "mem"];
const RESOURCE_FIELDS: &[&str] = &["cpus", "mem", "ports"];
const PORT_FIELDS: &[&str] = &["port", "env"];
const VOLUME_FIELDS: &[&str] = &["name", "path", "type", "size"];
const RULES: &[&str] = &["unique", "max-per", "group-by", "like", "unlike", "colocate-with", "avoid"];
const TASK_FIELDS: &[&str] =
    &["cmd", "env", "configs", "goal", "essential", "kill-grace-period", "health-check", "readiness-check"];
const CONFIG_FIELDS: &[&str] = &["template", "dest"];
const CHECK_FIELDS: &[&str] = &["cmd", "tcp", "http", "interval", "timeout", "max-failures", "grace-period"];
const HTTP_FIELDS: &[&str] = &["port", "path"];
const PLAN_FIELDS: &[&str] = &["strategy", "phases", "parameters"];
const PHASE_FIELDS: &[&str] = &["name", "strategy", "pod", "steps", "tasks", "depends-on"];

fn service(cx: &mut Cx, root: &Node) -> ServiceSpec {
    let mut spec = ServiceSpec { name: String::new(), role: String::new(), pods: Vec::new(), plans: Vec::new() };
    if matches!(root, Node::Mapping(m) if m.is_empty()) {
        cx.err(
            Pos { line: 1, column: 1 },
            "",
            "the spec is empty; expected a mapping with `name`, `pods` and optionally `role`, `plans`",
        );
        return spec;
    }
    let Some(f) = fields(cx, root, "", "a service spec (a mapping)", SERVICE_FIELDS) else {
        return spec;
    };
    if let Some(n) = f.required(cx, "name", "the service's name, e.g. `name: hello`") {
        if let Some(s) = string(cx, n, "name", "the service's name") {
            check_dns_name(cx, npos(n), "name", &s, "service name");
            spec.name = s;
        }
    }
    spec.role = spec.name.clone();
    if let Some(n) = f.get("role") {
        if let Some(s) = string(cx, n, "role", "a role name") {
            if s.chars().any(|c| c.is_whitespace() || c.is_control()) || s.starts_with('.') || s.starts_with('-') {
                cx.err(npos(n), "role", format!("`{s}` is not a valid role: expected letters, digits, `-`, `_`, `.`, not starting with `.` or `-`"));
            }
            spec.role = s;
        }
    }
    if let Some(n) = f.required(cx, "pods", "a mapping of pod type → pod") {
        spec.pods = pods(cx, n, "pods");
    }
    if let Some(n) = f.get("plans") {
        spec.plans = plans(cx, n, "plans");
    }
    spec
}

fn pods(cx: &mut Cx, n: &Node, path: &str) -> Vec<PodSpec> {
    let Node::Mapping(map) = n else {
        cx.err(npos(n), path, format!("expected a mapping of pod type → pod, found {}", describe(n)));
        return Vec::new();
    };
    if map.is_empty() {
        cx.err(npos(n), path, "a service needs at least one pod type");
    }
    map.iter().map(|(k, v)| pod(cx, k, v, &join(path, k.as_str()))).collect()
}

fn pod(cx: &mut Cx, key: &MarkedScalarNode, n: &Node, path: &str) -> PodSpec {
    let at = pos(key.span());
    let mut pod = PodSpec {
        name: key.as_str().to_string(),
        count: 0,
        resources: ResourceSpec { cpus: 0.0, mem: 0, ports: Vec::new() },
        volumes: Vec::new(),
        placement: Vec::new(),
        tasks: Vec::new(),
        allow_decommission: false,
        hooks: Hooks::default(),
        prefer: Vec::new(),
        pos: at,
        count_pos: at,
    };
    check_dns_name(cx, at, path, &pod.name, "pod type name");
    let what = "a pod: a mapping with `count`, `resources`, `tasks` and optionally `volumes`, `placement`, `allow-decommission`, `hooks`";
    let Some(f) = fields(cx, n, path, what, POD_FIELDS) else {
        return pod;
    };
    if let Some(n) = f.required(cx, "count", "how many pods of this type, a whole number ≥ 0") {
        pod.count_pos = npos(n);
        let c = uint(cx, n, &f.path("count"), "a whole number ≥ 0", 0, u64::from(u32::MAX));
        pod.count = c.unwrap_or(0) as u32;
    }
    if let Some(n) = f.required(cx, "resources", "a mapping with `cpus`, `mem` and optionally `ports`") {
        pod.resources = resources(cx, n, &f.path("resources"));
    }
    if let Some(n) = f.get("volumes") {
        pod.volumes = volumes(cx, n, &f.path("volumes"));
    }
    if let Some(n) = f.get("placement") {
        pod.placement = placement(cx, n, &f.path("placement"));
    }
    if let Some(n) = f.required(cx, "tasks", "a mapping of task name → task") {
        pod.tasks = tasks(cx, n, &f.path("tasks"));
    }
    if let Some(n) = f.get("allow-decommission") {
        pod.allow_decommission = boolean(cx, n, &f.path("allow-decommission")).unwrap_or(false);
    }
    if let Some(n) = f.get("hooks") {
        pod.hooks = hooks(cx, n, &f.path("hooks"));
    }
    if let Some(n) = f.get("prefer") {
        pod.prefer = preferences(cx, n, &f.path("prefer"));
        if let Some(extra) = pod.prefer.get(pod.count as usize) {
            let (count, n) = (pod.count, pod.prefer.len());
            cx.err(
                extra.pos,
                &format!("{}[{count}]", f.path("prefer")),
                format!("{n} preferences for {count} pods: entry {count} is for a pod that does not exist"),
            )
            .hint = Some("`prefer` has one entry per pod index, at most `count` entries".into());
        }
    }
    pod
}

/// `prefer:` — a list indexed by pod index, each entry a mapping with
/// `hostname` and/or `zone`, or `{}` / nothing for no preference.
fn preferences(cx: &mut Cx, n: &Node, path: &str) -> Vec<Preference> {
    let Node::Sequence(seq) = n else {
        cx.err(
            npos(n),
            path,
            format!(
                "expected a list with one preference per pod index (`- {{hostname: H, zone: Z}}`), found {}",
                describe(n)
            ),
        )
        .hint = Some("entry i is pod i's preference; write `- {}` for a pod without one".into());
        return Vec::new();
    };
    let mut out = Vec::with_capacity(seq.len());
    for (i, item) in seq.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let mut pref = Preference { pos: npos(item), ..Default::default() };
        if !is_null(item) {
            let what = "a preference: a mapping with `hostname` and/or `zone` (or `{}` for none)";
            if let Some(f) = fields(cx, item, &p, what, PREFER_FIELDS) {
                for key in PREFER_FIELDS {
                    let Some(v) = f.get(key) else { continue };
                    let Some(s) = string(cx, v, &f.path(key), &format!("an agent {key}")) else { continue };
                    if s.trim().is_empty() || s.chars().any(char::is_whitespace) {
                        cx.err(npos(v), &f.path(key), format!("expected an agent {key} without spaces, found `{s}`"));
                        continue;
                    }
                    match *key {
                        "hostname" => pref.hostname = Some(s),
                        _ => pref.zone = Some(s),
                    }
                }
            }
        }
        out.push(pref);
    }
    out
}

fn hooks(cx: &mut Cx, n: &Node, path: &str) -> Hooks {
    let mut h = Hooks::default();
    let Some(f) = fields(cx, n, path, "a mapping of hook name (`decommission`, `update-order`) → hook", HOOKS) else {
        return h;
    };
    if let Some(n) = f.get("decommission") {
        h.decommission = hook(cx, n, &f.path("decommission"));
    }
    if let Some(n) = f.get("update-order") {
        h.update_order = hook(cx, n, &f.path("update-order"));
    }
    h
}

fn hook(cx: &mut Cx, n: &Node, path: &str) -> Option<HookSpec> {
    let f = fields(cx, n, path, "a hook: a mapping with `cmd` and optionally `env`, `cpus`, `mem`", HOOK_FIELDS)?;
    let mut h = HookSpec { cmd: String::new(), env: BTreeMap::new(), cpus: 0.1, mem: 64, pos: npos(n) };
    if let Some(n) = f.required(cx, "cmd", "the shell command to run") {
        h.cmd = string(cx, n, &f.path("cmd"), "a shell command").unwrap_or_default();
    }
    if let Some(n) = f.get("env") {
        h.env = env(cx, n, &f.path("env"));
    }
    if let Some(n) = f.get("cpus") {
        let p = f.path("cpus");
        if let Some(s) = scalar(cx, n, &p, "a number of cpus > 0, e.g. 0.1") {
            match s.as_str().trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => h.cpus = v,
                _ => {
                    cx.err(npos(n), &p, format!("expected a number of cpus > 0, e.g. 0.1, found {}", describe(n)));
                }
            }
        }
    }
    if let Some(n) = f.get("mem") {
        h.mem = size(cx, n, &f.path("mem")).unwrap_or(64);
    }
    Some(h)
}

fn resources(cx: &mut Cx, n: &Node, path: &str) -> ResourceSpec {
    let mut r = ResourceSpec { cpus: 0.0, mem: 0, ports: Vec::new() };
    let Some(f) =
        fields(cx, n, path, "a resource set: a mapping with `cpus`, `mem` and optionally `ports`", RESOURCE_FIELDS)
    else {
        return r;
    };
    if let Some(n) = f.required(cx, "cpus", "a number of cpus > 0, e.g. 0.5") {
        let p = f.path("cpus");
        if let Some(s) = scalar(cx, n, &p, "a number of cpus > 0, e.g. 0.5") {
            match s.as_str().trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => r.cpus = v,
                Ok(v) => {
                    cx.err(npos(n), &p, format!("expected a number of cpus > 0, found {v}"));
                }
                Err(_) => {
                    cx.err(npos(n), &p, format!("expected a number of cpus > 0, e.g. 0.5, found {}", describe(n)));
                }
            }
        }
    }
    if let Some(n) = f.required(cx, "mem", "memory in MiB, or with a unit like 512Mi or 2Gi") {
        r.mem = size(cx, n, &f.path("mem")).unwrap_or(0);
    }
    if let Some(n) = f.get("ports") {
        r.ports = ports(cx, n, &f.path("ports"));
    }
    r
}

fn ports(cx: &mut Cx, n: &Node, path: &str) -> Vec<PortSpec> {
    let Node::Mapping(map) = n else {
        cx.err(npos(n), path, format!("expected a mapping of port name → {{port: N}}, found {}", describe(n)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map.iter() {
        let name = k.as_str().to_string();
        let at = pos(k.span());
        let p = join(path, &name);
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            cx.err(at, &p, format!("`{name}` is not a valid port name: expected a letter, then letters, digits, `-` or `_` (the port is injected as PORT_<NAME>)"));
        }
        let mut port = PortSpec { name, port: 0, env: None, pos: at, port_pos: npos(v) };
        const EXPECTED: &str = "a port number 0..=65535 (0 for a dynamic port)";
        match v {
            Node::Scalar(_) => port.port = uint(cx, v, &p, EXPECTED, 0, 65535).unwrap_or(0) as u16,
            _ => {
                let what = "a port: `{port: N}` (0 for dynamic) and optionally `env: VAR`";
                if let Some(f) = fields(cx, v, &p, what, PORT_FIELDS) {
                    if let Some(n) = f.required(cx, "port", EXPECTED) {
                        port.port_pos = npos(n);
                        port.port = uint(cx, n, &f.path("port"), EXPECTED, 0, 65535).unwrap_or(0) as u16;
                    }
                    if let Some(n) = f.get("env") {
                        if let Some(s) = string(cx, n, &f.path("env"), "an env var name") {
                            if !is_env_name(&s) {
                                cx.err(npos(n), &f.path("env"), format!("`{s}` is not a valid env var name: expected letters, digits and `_`, not starting with a digit"));
                            }
                            port.env = Some(s);
                        }
                    }
                }
            }
        }
        out.push(port);
    }
    out
}

fn volumes(cx: &mut Cx, n: &Node, path: &str) -> Vec<VolumeSpec> {
    let Node::Sequence(seq) = n else {
        cx.err(npos(n), path, format!("expected a list of volumes (`- path: data`), found {}", describe(n)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let what = "a volume: a mapping with `path`, `size` and optionally `name`, `type` (ROOT or MOUNT)";
        let Some(f) = fields(cx, item, &p, what, VOLUME_FIELDS) else {
            continue;
        };
        let mut v =
            VolumeSpec { name: String::new(), path: String::new(), kind: VolumeType::Root, size: 0, pos: f.pos };
        if let Some(n) = f.required(cx, "path", "the volume's path, relative to the sandbox") {
            if let Some(s) = string(cx, n, &f.path("path"), "a relative path") {
                v.pos = npos(n);
                check_relative_path(cx, v.pos, &f.path("path"), &s);
                v.path = s;
            }
        }
        v.name = v.path.clone();
        if let Some(n) = f.get("name") {
            if let Some(s) = string(cx, n, &f.path("name"), "a volume name") {
                v.name = s;
            }
        }
        let suffix = env_suffix(&v.name);
        if !v.name.is_empty() && !suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let at = f.get("name").map(npos).unwrap_or(v.pos);
            cx.err(at, &f.path("name"), format!("volume name `{}` cannot be made into an env var name (VOLUME_{suffix}): expected letters, digits, `-`, `_`, `.`, `/`", v.name));
        }
        if let Some(n) = f.get("type") {
            v.kind = one_of(cx, n, &f.path("type"), &[("ROOT", VolumeType::Root), ("MOUNT", VolumeType::Mount)])
                .unwrap_or(VolumeType::Root);
        }
        if let Some(n) = f.required(cx, "size", "the size in MiB, or with a unit like 10Gi") {
            v.size = size(cx, n, &f.path("size")).unwrap_or(0);
        }
        out.push(v);
    }
    out
}

fn placement(cx: &mut Cx, n: &Node, path: &str) -> Vec<Placement> {
    let Node::Sequence(seq) = n else {
        cx.err(
            npos(n),
            path,
            format!("expected a list of placement rules (`- unique: hostname`), found {}", describe(n)),
        )
        .hint = Some("placement is a list: put `- ` before each rule".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let what = format!("a placement rule: one of {}", quoted_list(RULES));
        let Some(f) = fields(cx, item, &p, &what, RULES) else {
            continue;
        };
        if f.map.len() != 1 {
            cx.err(f.pos, &p, format!("a placement rule has exactly one key, found {}", f.map.len())).hint =
                Some("write each rule as its own list item: `- unique: hostname`".into());
            continue;
        }
        let (k, v) = f.map.iter().next().expect("one entry");
        if let Some(rule) = rule(cx, k.as_str(), v, &join(&p, k.as_str())) {
            out.push(Placement { rule, pos: npos(v) });
        }
    }
    out
}

fn attribute(cx: &mut Cx, at: Pos, path: &str, a: &str) -> bool {
    let ok = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        cx.err(at, path, format!("`{a}` is not a valid agent attribute name (e.g. `hostname`, `zone`, `rack`)"));
    }
    ok
}

/// A one-entry `{ATTR: VALUE}` mapping.
fn attr_entry<'n>(cx: &mut Cx, n: &'n Node, path: &str, example: &str) -> Option<(String, Pos, &'n Node)> {
    let Node::Mapping(m) = n else {
        cx.err(npos(n), path, format!("expected `{{ATTRIBUTE: VALUE}}`, e.g. `{example}`, found {}", describe(n)));
        return None;
    };
    if m.len() != 1 {
        cx.err(npos(n), path, format!("expected exactly one attribute, found {}", m.len())).hint =
            Some(format!("write one rule per attribute, e.g. `{example}`"));
        return None;
    }
    let (k, v) = m.iter().next().expect("one entry");
    let at = pos(k.span());
    attribute(cx, at, path, k.as_str()).then(|| (k.as_str().to_string(), at, v))
}

fn rule(cx: &mut Cx, keyword: &str, n: &Node, path: &str) -> Option<PlacementRule> {
    match keyword {
        "unique" => {
            let a = string(cx, n, path, "an agent attribute, e.g. `unique: hostname`")?;
            attribute(cx, npos(n), path, &a).then_some(PlacementRule::Unique { attribute: a })
        }
        "max-per" => {
            let (a, _, v) = attr_entry(cx, n, path, "max-per: {zone: 1}")?;
            let p = join(path, &a);
            let max = uint(cx, v, &p, "a whole number ≥ 1", 1, u64::from(u32::MAX))? as u32;
            Some(PlacementRule::MaxPer { attribute: a, max })
        }
        "group-by" => match n {
            Node::Scalar(_) => {
                let a = string(cx, n, path, "an agent attribute, e.g. `group-by: zone`")?;
                attribute(cx, npos(n), path, &a).then_some(PlacementRule::GroupBy { attribute: a, count: None })
            }
            _ => {
                let (a, _, v) = attr_entry(cx, n, path, "group-by: {zone: 3}")?;
                let p = join(path, &a);
                let count = uint(cx, v, &p, "a whole number ≥ 1", 1, u64::from(u32::MAX))? as u32;
                Some(PlacementRule::GroupBy { attribute: a, count: Some(count) })
            }
        },
        "like" | "unlike" => {
            let (a, _, v) = attr_entry(cx, n, path, &format!("{keyword}: {{zone: zone-a}}"))?;
            let p = join(path, &a);
            let pattern = string(cx, v, &p, "a value or a regular expression")?;
            Some(if keyword == "like" {
                PlacementRule::Like { attribute: a, pattern }
            } else {
                PlacementRule::Unlike { attribute: a, pattern }
            })
        }
        "colocate-with" | "avoid" => {
            let pod = string(cx, n, path, "a pod type of this service")?;
            Some(if keyword == "avoid" { PlacementRule::Avoid { pod } } else { PlacementRule::ColocateWith { pod } })
        }
        _ => None,
    }
}

fn tasks(cx: &mut Cx, n: &Node, path: &str) -> Vec<TaskSpec> {
    let Node::Mapping(map) = n else {
        cx.err(npos(n), path, format!("expected a mapping of task name → task, found {}", describe(n)));
        return Vec::new();
    };
    if map.is_empty() {
        cx.err(npos(n), path, "a pod needs at least one task");
    }
    map.iter().map(|(k, v)| task(cx, k, v, &join(path, k.as_str()))).collect()
}

fn task(cx: &mut Cx, key: &MarkedScalarNode, n: &Node, path: &str) -> TaskSpec {
    let at = pos(key.span());
    let mut t = TaskSpec {
        name: key.as_str().to_string(),
        cmd: String::new(),
        env: BTreeMap::new(),
        configs: Vec::new(),
        goal: Goal::Running,
        essential: true,
        kill_grace_period_ms: 5000,
        health_check: None,
        readiness_check: None,
        pos: at,
    };
    check_dns_name(cx, at, path, &t.name, "task name");
    let Some(f) = fields(cx, n, path, "a task: a mapping with `cmd` and optionally `env`, `goal`, …", TASK_FIELDS)
    else {
        return t;
    };
    if let Some(n) = f.required(cx, "cmd", "the shell command to run") {
        t.cmd = string(cx, n, &f.path("cmd"), "a shell command").unwrap_or_default();
    }
    if let Some(n) = f.get("env") {
        t.env = env(cx, n, &f.path("env"));
    }
    if let Some(n) = f.get("configs") {
        t.configs = configs(cx, n, &f.path("configs"));
    }
    if let Some(n) = f.get("goal") {
        let choices = [("RUNNING", Goal::Running), ("FINISH", Goal::Finish), ("ONCE", Goal::Once)];
        t.goal = one_of(cx, n, &f.path("goal"), &choices).unwrap_or(Goal::Running);
    }
    if let Some(n) = f.get("essential") {
        t.essential = boolean(cx, n, &f.path("essential")).unwrap_or(true);
    }
    if let Some(n) = f.get("kill-grace-period") {
        t.kill_grace_period_ms = duration(cx, n, &f.path("kill-grace-period")).unwrap_or(5000);
    }
    if let Some(n) = f.get("health-check") {
        t.health_check = check(cx, n, &f.path("health-check"));
        if t.goal != Goal::Running {
            cx.err(
                f.key_pos("health-check"),
                &f.path("health-check"),
                format!("a task with goal {} cannot have a health-check", t.goal),
            )
            .hint = Some("health checks watch long-running tasks: use `goal: RUNNING`, or a readiness-check".into());
        }
    }
    if let Some(n) = f.get("readiness-check") {
        t.readiness_check = check(cx, n, &f.path("readiness-check"));
    }
    t
}

fn env(cx: &mut Cx, n: &Node, path: &str) -> BTreeMap<String, String> {
    let Node::Mapping(map) = n else {
        cx.err(npos(n), path, format!("expected a mapping of VAR → value, found {}", describe(n)));
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (k, v) in map.iter() {
        let p = join(path, k.as_str());
        if !is_env_name(k.as_str()) {
            cx.err(
                pos(k.span()),
                &p,
                format!(
                    "`{}` is not a valid env var name: expected letters, digits and `_`, not starting with a digit",
                    k.as_str()
                ),
            );
        }
        let value = match v {
            Node::Scalar(s) if is_null_scalar(s) => String::new(),
            _ => string(cx, v, &p, "a string value").unwrap_or_default(),
        };
        out.insert(k.as_str().to_string(), value);
    }
    out
}

fn configs(cx: &mut Cx, n: &Node, path: &str) -> Vec<ConfigSpec> {
    let Node::Sequence(seq) = n else {
        cx.err(npos(n), path, format!("expected a list of `{{template, dest}}`, found {}", describe(n)));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(f) = fields(cx, item, &p, "a config: a mapping with `template` and `dest`", CONFIG_FIELDS) else {
            continue;
        };
        let mut c = ConfigSpec { template: String::new(), dest: String::new(), pos: f.pos };
        if let Some(n) = f.required(cx, "template", "the file's text, with {{VAR}} placeholders") {
            if let Some(s) = string(cx, n, &f.path("template"), "the file's text") {
                if let Err(e) = template_vars(&s) {
                    cx.err(npos(n), &f.path("template"), e.to_string());
                }
                c.pos = npos(n);
                c.template = s;
            }
        }
        if let Some(n) = f.required(cx, "dest", "where to write the file, relative to the sandbox") {
            if let Some(s) = string(cx, n, &f.path("dest"), "a relative path") {
                check_relative_path(cx, npos(n), &f.path("dest"), &s);
                c.dest = s;
            }
        }
        out.push(c);
    }
    out
}

fn check(cx: &mut Cx, n: &Node, path: &str) -> Option<TaskCheck> {
    let what = "a check: a mapping with one of `cmd`, `tcp`, `http`, and optionally `interval`, `timeout`, `max-failures`, `grace-period`";
    let f = fields(cx, n, path, what, CHECK_FIELDS)?;
    let kinds: Vec<&str> = ["cmd", "tcp", "http"].into_iter().filter(|k| f.get(k).is_some()).collect();
    if kinds.len() > 1 {
        cx.err(
            f.key_pos(kinds[1]),
            &f.path(kinds[1]),
            format!("a check has one of `cmd`, `tcp` or `http`, found {}", quoted_list(&kinds)),
        );
        return None;
    }
    let mut port_pos = f.pos;
    let kind = match kinds.first().copied() {
        None => {
            cx.err(
                f.pos,
                path,
                "a check needs one of `cmd` (a command), `tcp` (a port name) or `http` (`{port, path}`)",
            );
            return None;
        }
        Some("cmd") => CheckKind::Cmd(string(cx, f.get("cmd")?, &f.path("cmd"), "a shell command")?),
        Some("tcp") => {
            let n = f.get("tcp")?;
            port_pos = npos(n);
            CheckKind::Tcp(string(cx, n, &f.path("tcp"), "the name of one of the pod's ports")?)
        }
        _ => {
            let n = f.get("http")?;
            let p = f.path("http");
            match n {
                Node::Scalar(_) => {
                    port_pos = npos(n);
                    let port = string(cx, n, &p, "a port name, or `{port: NAME, path: /PATH}`")?;
                    CheckKind::Http { port, path: "/".into() }
                }
                _ => {
                    let h = fields(cx, n, &p, "`{port: NAME, path: /PATH}`", HTTP_FIELDS)?;
                    let pn = h.required(cx, "port", "the name of one of the pod's ports")?;
                    port_pos = npos(pn);
                    let port = string(cx, pn, &h.path("port"), "a port name")?;
                    let mut url = "/".to_string();
                    if let Some(pp) = h.get("path") {
                        url = string(cx, pp, &h.path("path"), "a URL path")?;
                        if !url.starts_with('/') {
                            cx.err(
                                npos(pp),
                                &h.path("path"),
                                format!("expected a URL path starting with `/`, found `{url}`"),
                            );
                        }
                    }
                    CheckKind::Http { port, path: url }
                }
            }
        }
    };
    let mut c = TaskCheck { kind, interval_ms: 1000, timeout_ms: 1000, max_failures: 3, grace_period_ms: 0, port_pos };
    if let Some(n) = f.get("interval") {
        c.interval_ms = duration(cx, n, &f.path("interval")).unwrap_or(c.interval_ms);
        if c.interval_ms == 0 {
            cx.err(npos(n), &f.path("interval"), "must be greater than 0");
        }
    }
    if let Some(n) = f.get("timeout") {
        c.timeout_ms = duration(cx, n, &f.path("timeout")).unwrap_or(c.timeout_ms);
        if c.timeout_ms == 0 {
            cx.err(npos(n), &f.path("timeout"), "must be greater than 0");
        }
    }
    if let Some(n) = f.get("max-failures") {
        c.max_failures =
            uint(cx, n, &f.path("max-failures"), "a whole number ≥ 1", 1, u64::from(u32::MAX)).unwrap_or(3) as u32;
    }
    if let Some(n) = f.get("grace-period") {
        c.grace_period_ms = duration(cx, n, &f.path("grace-period")).unwrap_or(0);
    }
    Some(c)
}

fn strategy(cx: &mut Cx, n: &Node, path: &str) -> Strategy {
    let choices = [
        ("serial", Strategy::Serial),
        ("parallel", Strategy::Parallel),
        ("canary", Strategy::Canary),
        ("dependency", Strategy::Dependency),
    ];
    one_of(cx, n, path, &choices).unwrap_or(Strategy::Serial)
}

fn plans(cx: &mut Cx, n: &Node, path: &str) -> Vec<PlanSpec> {
    let Node::Mapping(map) = n else {
        cx.err(npos(n), path, format!("expected a mapping of plan name → plan, found {}", describe(n)));
        return Vec::new();
    };
    map.iter().map(|(k, v)| plan(cx, k, v, &join(path, k.as_str()))).collect()
}

fn plan(cx: &mut Cx, key: &MarkedScalarNode, n: &Node, path: &str) -> PlanSpec {
    let at = pos(key.span());
    let mut plan = PlanSpec {
        name: key.as_str().to_string(),
        strategy: Strategy::Serial,
        phases: Vec::new(),
        parameters: BTreeMap::new(),
        pos: at,
    };
    check_dns_name(cx, at, path, &plan.name, "plan name");
    if matches!(PlanKind::of(&plan.name), PlanKind::Recovery | PlanKind::Decommission) {
        cx.err(at, path, format!("`{}` is a built-in plan and cannot be overridden", plan.name)).hint =
            Some("only `deploy` and `update` can be overridden; give a custom plan another name".into());
    }
    let what = "a plan: a mapping with `phases` and optionally `strategy`, `parameters`";
    let Some(f) = fields(cx, n, path, what, PLAN_FIELDS) else {
        return plan;
    };
    if let Some(n) = f.get("strategy") {
        plan.strategy = strategy(cx, n, &f.path("strategy"));
    }
    if let Some(n) = f.get("parameters") {
        let p = f.path("parameters");
        if !plan.is_custom() {
            cx.err(
                f.key_pos("parameters"),
                &p,
                format!("built-in plan `{}` takes no parameters; only custom plans do", plan.name),
            );
        }
        plan.parameters = env(cx, n, &p);
    }
    if let Some(n) = f.required(cx, "phases", "a list of phases (`- name: …, pod: …`)") {
        let p = f.path("phases");
        match n {
            Node::Sequence(seq) if seq.is_empty() => {
                cx.err(npos(n), &p, "a plan needs at least one phase");
            }
            Node::Sequence(seq) => {
                plan.phases =
                    seq.iter().enumerate().filter_map(|(i, item)| phase(cx, item, &format!("{p}[{i}]"))).collect();
            }
            other => {
                cx.err(npos(other), &p, format!("expected a list of phases, found {}", describe(other)));
            }
        }
    }
    plan
}

fn phase(cx: &mut Cx, n: &Node, path: &str) -> Option<PhaseSpec> {
    let what = "a phase: a mapping with `name`, `pod` and optionally `strategy`, `steps`, `tasks`, `depends-on`";
    let f = fields(cx, n, path, what, PHASE_FIELDS)?;
    let mut ph = PhaseSpec {
        name: String::new(),
        strategy: Strategy::Serial,
        pod: String::new(),
        steps: None,
        tasks: None,
        depends_on: Vec::new(),
        at: PhasePositions { name: f.pos, pod: f.pos, ..Default::default() },
    };
    if let Some(n) = f.required(cx, "name", "the phase's name") {
        if let Some(s) = string(cx, n, &f.path("name"), "a phase name") {
            ph.at.name = npos(n);
            check_dns_name(cx, ph.at.name, &f.path("name"), &s, "phase name");
            ph.name = s;
        }
    }
    if let Some(n) = f.get("strategy") {
        ph.strategy = strategy(cx, n, &f.path("strategy"));
    }
    if let Some(n) = f.required(cx, "pod", "the pod type this phase deploys") {
        if let Some(s) = string(cx, n, &f.path("pod"), "a pod type") {
            ph.at.pod = npos(n);
            ph.pod = s;
        }
    }
    if let Some(n) = f.get("steps") {
        let p = f.path("steps");
        if let Node::Sequence(seq) = n {
            let mut steps = Vec::new();
            for (i, item) in seq.iter().enumerate() {
                if let Some(v) = uint(cx, item, &format!("{p}[{i}]"), "a pod index ≥ 0", 0, u64::from(u32::MAX)) {
                    steps.push(v as u32);
                    ph.at.steps.push(npos(item));
                }
            }
            ph.steps = Some(steps);
        } else {
            cx.err(npos(n), &p, format!("expected a list of pod indices, e.g. `[0, 1, 2]`, found {}", describe(n)));
        }
    }
    if let Some(n) = f.get("tasks") {
        let list = string_list(cx, n, &f.path("tasks"), "task names");
        ph.at.tasks = list.iter().map(|(_, p)| *p).collect();
        ph.tasks = Some(list.into_iter().map(|(s, _)| s).collect());
    }
    if let Some(n) = f.get("depends-on") {
        let list = string_list(cx, n, &f.path("depends-on"), "phase names");
        ph.at.depends_on = list.iter().map(|(_, p)| *p).collect();
        ph.depends_on = list.into_iter().map(|(s, _)| s).collect();
    }
    Some(ph)
}
