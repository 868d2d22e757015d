//! Checks after deserialization: names, references between parts, services
//! the parts need, Kafka topic settings, SQL, keys and primary keys, tests.
//! Every error is collected with the position of the offending value.

use super::decode::quoted;
use super::sql::{closest, Relation, StageSql};
use super::yaml::{field, key_pos, node_at, value_pos, Cx};
use super::*;
use indexmap::IndexMap;
use marked_yaml::Node;

pub(super) fn validate(cx: &mut Cx, root: &Node, spec: &PipelineSpec) {
    let v = Validator { root };
    v.name(cx, &["name"], &spec.name, NameKind::Pipeline, true);
    v.services(cx, spec);
    v.unique_names(cx, spec);
    if spec.sources.is_empty() {
        cx.err(key_pos(root, &["sources"]), "sources", "a pipeline needs at least one source");
    }
    if spec.sinks.is_empty() {
        cx.err(key_pos(root, &["sinks"]), "sinks", "a pipeline needs at least one sink");
    }
    if spec.checkpoint_interval.0.is_zero() {
        let p = ["checkpoint-interval"];
        cx.err(value_pos(root, &p), &field(&p), "must be greater than 0s");
    }
    let mut relations: IndexMap<String, Relation> = IndexMap::new();
    for (name, s) in &spec.sources {
        v.source(cx, spec, name, s);
        relations.insert(
            name.clone(),
            Relation {
                kind: "source",
                columns: Some(s.columns()),
                event_time: s.event_time().map(str::to_string),
                key: Vec::new(),
            },
        );
    }
    for (name, l) in &spec.lookups {
        v.lookup(cx, spec, name, l);
        relations.entry(name.clone()).or_insert(Relation {
            kind: "lookup",
            columns: Some(l.schema().keys().cloned().collect()),
            event_time: None,
            key: l.key().to_vec(),
        });
    }
    let stage_names: Vec<String> = spec.stages.keys().cloned().collect();
    for (i, (name, stage)) in spec.stages.iter().enumerate() {
        v.name(cx, &["stages", name], name, NameKind::Table, false);
        if stage.parallelism == 0 {
            let p = ["stages", name, "parallelism"];
            cx.err(value_pos(root, &p), &field(&p), "must be at least 1");
        }
        let columns = StageSql {
            name,
            sql: &stage.sql,
            key: stage.key.as_deref(),
            readable: &relations,
            later: &stage_names[i..],
        }
        .check(cx, root);
        if relations.contains_key(name) {
            continue; // a duplicate name, reported already
        }
        relations.insert(name.clone(), Relation { kind: "stage", columns, event_time: None, key: Vec::new() });
    }
    for (name, sink) in &spec.sinks {
        v.sink(cx, spec, name, sink, &relations);
    }
    v.tests(cx, spec);
    if let Some(g) = &spec.generator {
        for src in g.example.sources() {
            if !spec.sources.contains_key(*src) {
                let p = ["generator", "example"];
                cx.err(
                    value_pos(root, &p),
                    &field(&p),
                    format!(
                        "the {} generator writes source `{src}`, which the pipeline does not declare",
                        g.example.name()
                    ),
                );
            }
        }
        if !(g.rate.is_finite() && g.rate > 0.0) {
            let p = ["generator", "rate"];
            cx.err(value_pos(root, &p), &field(&p), "expected events per second, greater than 0");
        }
        for (name, share) in [("malformed-share", g.malformed_share), ("fraud-share", g.fraud_share)] {
            if share.is_some_and(|s| !(0.0..=0.5).contains(&s)) {
                let p = ["generator", name];
                cx.err(value_pos(root, &p), &field(&p), "expected a share between 0 and 0.5");
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum NameKind {
    /// Lowercase letters, digits and `-`.
    Pipeline,
    /// Lowercase letters, digits and `_` (usable as an SQL table name).
    Table,
    /// Lowercase letters, digits, `_` and `-`.
    Sink,
}

struct Validator<'n> {
    root: &'n Node,
}

impl Validator<'_> {
    /// Checks a name; `at_value` points at the value, else at the key.
    fn name(&self, cx: &mut Cx, path: &[&str], name: &str, kind: NameKind, at_value: bool) {
        let ok_char = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || (c == '-' && kind != NameKind::Table)
                || (c == '_' && kind != NameKind::Pipeline)
        };
        let valid = name.len() <= 63 && name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(ok_char);
        if valid {
            return;
        }
        let what = match kind {
            NameKind::Pipeline => "lowercase letters, digits and `-`",
            NameKind::Table => "lowercase letters, digits and `_` (it is a table name in SQL)",
            NameKind::Sink => "lowercase letters, digits, `_` and `-`",
        };
        let pos = if at_value { value_pos(self.root, path) } else { key_pos(self.root, path) };
        cx.err(
            pos,
            &field(path),
            format!("invalid name `{name}`: expected {what}, starting with a letter, at most 63 characters"),
        );
    }

    /// A lookup: a table name, a non-empty schema holding its key, a cache.
    fn lookup(&self, cx: &mut Cx, spec: &PipelineSpec, name: &str, l: &Lookup) {
        let root = self.root;
        self.name(cx, &["lookups", name], name, NameKind::Table, false);
        let Lookup::Cassandra(c) = l;
        if spec.services.cassandra.is_none() {
            let p = ["lookups", name, "type"];
            cx.err(
                value_pos(root, &p),
                &field(&p),
                "a Cassandra lookup needs `services.cassandra` (nodes smack runs, or `external`)",
            );
        }
        for (f, value) in [("keyspace", &c.keyspace), ("table", &c.table)] {
            let ok = value.starts_with(|ch: char| ch.is_ascii_alphabetic())
                && value.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !ok {
                let p = ["lookups", name, f];
                cx.err(value_pos(root, &p), &field(&p), "expected letters, digits and `_`, starting with a letter");
            }
        }
        if c.schema.is_empty() {
            let p = ["lookups", name, "schema"];
            cx.err(value_pos(root, &p), &field(&p), "expected the table's columns and their types");
        }
        if c.key.is_empty() {
            let p = ["lookups", name, "key"];
            cx.err(value_pos(root, &p), &field(&p), "expected the key columns stages join on");
        }
        for (i, k) in c.key.iter().enumerate() {
            if !c.schema.contains_key(k) {
                let index = i.to_string();
                let p = ["lookups", name, "key", index.as_str()];
                let cols: Vec<&str> = c.schema.keys().map(String::as_str).collect();
                cx.err(
                    value_pos(root, &p),
                    &field(&p),
                    format!("`{k}` is not a column of the lookup; expected one of: {}", cols.join(", ")),
                );
            }
        }
        self.lookup_cache(cx, name, &c.cache);
    }

    /// A lookup's `cache:`: a size of at least 1, or a mode with only its
    /// own options, each in range.
    fn lookup_cache(&self, cx: &mut Cx, name: &str, cache: &LookupCache) {
        let root = self.root;
        let o = match cache {
            LookupCache::Size(0) => {
                let p = ["lookups", name, "cache"];
                cx.err(value_pos(root, &p), &field(&p), "expected at least 1 cached key");
                return;
            }
            LookupCache::Size(_) => return,
            LookupCache::Options(o) => o,
        };
        let at = |f: &'static str| ["lookups", name, "cache", f];
        let zero = |d: &Option<Duration>| d.is_some_and(|d| d.0.is_zero());
        match o.mode {
            CacheMode::Partial => {
                if o.size == Some(0) {
                    let p = at("size");
                    cx.err(value_pos(root, &p), &field(&p), "expected at least 1 cached key");
                }
                if zero(&o.expire_after_write) {
                    let p = at("expire-after-write");
                    cx.err(
                        value_pos(root, &p),
                        &field(&p),
                        "expected a duration of more than 0s, e.g. `10m` (leave it out to keep rows until evicted)",
                    );
                }
                if o.reload.is_some() {
                    let p = at("reload");
                    cx.err(
                        key_pos(root, &p),
                        &field(&p),
                        "`reload` is an option of `mode: full`; a partial cache expires entries with \
                         `expire-after-write` and `missing-expire`",
                    );
                }
            }
            CacheMode::Full => {
                for (f, set) in [
                    ("size", o.size.is_some()),
                    ("expire-after-write", o.expire_after_write.is_some()),
                    ("missing-expire", o.missing_expire.is_some()),
                ] {
                    if set {
                        let p = at(f);
                        cx.err(
                            key_pos(root, &p),
                            &field(&p),
                            format!(
                                "`{f}` is an option of `mode: partial`; a full cache holds the whole table \
                                 and reads it again every `reload`"
                            ),
                        );
                    }
                }
                if zero(&o.reload) {
                    let p = at("reload");
                    cx.err(value_pos(root, &p), &field(&p), "expected a reload period of more than 0s, e.g. `5m`");
                }
            }
        }
    }

    fn unique_names(&self, cx: &mut Cx, spec: &PipelineSpec) {
        let mut seen: IndexMap<&str, &str> = IndexMap::new();
        let all = spec
            .sources
            .keys()
            .map(|n| ("sources", n))
            .chain(spec.lookups.keys().map(|n| ("lookups", n)))
            .chain(spec.stages.keys().map(|n| ("stages", n)))
            .chain(spec.sinks.keys().map(|n| ("sinks", n)));
        for (section, name) in all {
            if let Some(first) = seen.get(name.as_str()) {
                let first_line = key_pos(self.root, &[first, name]).line;
                cx.err(
                    key_pos(self.root, &[section, name]),
                    &format!("{section}.{name}"),
                    format!("the name `{name}` is taken by {first}.{name} (line {first_line}); sources, lookups, stages and sinks need distinct names"),
                );
            } else {
                seen.insert(name, section);
            }
        }
    }

    fn services(&self, cx: &mut Cx, spec: &PipelineSpec) {
        const MANAGED: [&str; 7] = ["brokers", "nodes", "cpus", "mem", "disk", "placement", "controllers"];
        let checks: [(&str, Option<bool>); 2] = [
            ("kafka", spec.services.kafka.as_ref().map(|k| k.external.is_some())),
            ("cassandra", spec.services.cassandra.as_ref().map(|c| c.external.is_some())),
        ];
        for (svc, external) in checks {
            let Some(external) = external else { continue };
            if external {
                for f in MANAGED.iter().chain(["datacenter"].iter()) {
                    let p = ["services", svc, f];
                    if node_at(self.root, &p).is_some() && !(svc == "cassandra" && *f == "datacenter") {
                        cx.err(
                            key_pos(self.root, &p),
                            &field(&p),
                            format!("`{f}` sizes a {svc} cluster that smack runs; with `external`, remove it"),
                        );
                    }
                }
            }
        }
        if let Some(k) = &spec.services.kafka {
            match &k.external {
                Some(e) if e.bootstrap_servers.is_empty() => {
                    let p = ["services", "kafka", "external", "bootstrap-servers"];
                    cx.err(value_pos(self.root, &p), &field(&p), "expected at least one `host:port`");
                }
                Some(_) => {}
                None => self.sizes(cx, "kafka", "brokers", k.brokers, k.cpus, k.mem, k.disk),
            }
            // A quorum decides by majority: an even count adds a member and no safety.
            if let Some(n) = k.controllers.filter(|n| *n % 2 == 0 || *n > 9) {
                let p = ["services", "kafka", "controllers"];
                let e = cx.err(
                    value_pos(self.root, &p),
                    &field(&p),
                    format!("{n} controllers: expected an odd number from 1 to 9"),
                );
                e.hint = Some(
                    "3 controllers outlive the loss of one; leave it out to run controllers on the brokers".into(),
                );
            }
        }
        if let Some(c) = &spec.services.cassandra {
            match &c.external {
                Some(e) if e.contact_points.is_empty() => {
                    let p = ["services", "cassandra", "external", "contact-points"];
                    cx.err(value_pos(self.root, &p), &field(&p), "expected at least one `host:port`");
                }
                Some(_) => {}
                None => self.sizes(cx, "cassandra", "nodes", c.nodes, c.cpus, c.mem, c.disk),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sizes(&self, cx: &mut Cx, svc: &str, count_field: &str, count: u32, cpus: f64, mem: Size, disk: Size) {
        let bad: [(&str, bool, &str); 4] = [
            (count_field, count == 0, "must be at least 1"),
            ("cpus", cpus.is_nan() || cpus <= 0.0, "must be greater than 0"),
            ("mem", mem.mib() == 0, "must be greater than 0"),
            ("disk", disk.mib() == 0, "must be greater than 0"),
        ];
        for (f, is_bad, msg) in bad {
            if is_bad {
                let p = ["services", svc, f];
                cx.err(value_pos(self.root, &p), &field(&p), msg);
            }
        }
    }

    fn source(&self, cx: &mut Cx, spec: &PipelineSpec, name: &str, source: &Source) {
        self.name(cx, &["sources", name], name, NameKind::Table, false);
        let Source::Kafka(k) = source;
        let at = |f: &'static str| ["sources", name, f];
        if spec.services.kafka.is_none() {
            let p = at("type");
            cx.err(
                value_pos(self.root, &p),
                &field(&p),
                "a Kafka source needs `services.kafka` (brokers smack runs, or `external`)",
            );
        }
        let topic_ok = !k.topic.is_empty()
            && k.topic.len() <= 249
            && k.topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !topic_ok {
            let p = at("topic");
            cx.err(
                value_pos(self.root, &p),
                &field(&p),
                format!("invalid topic `{}`: expected letters, digits, `.`, `_` and `-`, at most 249", k.topic),
            );
        }
        if k.partitions == 0 {
            let p = at("partitions");
            cx.err(value_pos(self.root, &p), &field(&p), "must be at least 1");
        }
        if k.replication == 0 {
            let p = at("replication");
            cx.err(value_pos(self.root, &p), &field(&p), "must be at least 1");
        }
        if let Some(kafka) = spec.services.kafka.as_ref().filter(|k| k.external.is_none()) {
            if k.replication > kafka.brokers {
                let p = at("replication");
                let e = cx.err(
                    value_pos(self.root, &p),
                    &field(&p),
                    format!(
                        "replication {} is more than the {} Kafka broker{} in `services.kafka.brokers`",
                        k.replication,
                        kafka.brokers,
                        if kafka.brokers == 1 { "" } else { "s" }
                    ),
                );
                e.hint = Some(format!("set `replication: {}` or run more brokers", kafka.brokers));
            }
        }
        if k.schema.is_empty() {
            let p = at("schema");
            cx.err(value_pos(self.root, &p), &field(&p), "expected at least one field: `name: type`");
        }
        for f in k.schema.keys() {
            let valid = f.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && f.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                let p = ["sources", name, "schema", f.as_str()];
                cx.err(
                    key_pos(self.root, &p),
                    &field(&p),
                    format!("invalid field name `{f}`: expected lowercase letters, digits and `_`"),
                );
            }
        }
        super::formats::check(cx, self.root, name, source);
        match &k.event_time {
            Some(et) => match source.column_type(et) {
                Some(FieldType::Timestamp | FieldType::Long) => {}
                Some(t) => {
                    let p = at("event-time");
                    cx.err(
                        value_pos(self.root, &p),
                        &field(&p),
                        format!(
                            "event-time field `{et}` is a {}; expected a `timestamp` or `long` field",
                            serde_json::to_value(t)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default()
                        ),
                    );
                }
                None => {
                    let p = at("event-time");
                    let names: Vec<&str> = k.schema.keys().map(String::as_str).collect();
                    let e = cx.err(
                        value_pos(self.root, &p),
                        &field(&p),
                        format!("`{et}` is not a field of the schema, which has {}", quoted(&names)),
                    );
                    e.hint = closest(et, &names).map(|c| format!("did you mean `{c}`?"));
                }
            },
            None if k.watermark.is_some() => {
                let p = at("watermark");
                cx.err(key_pos(self.root, &p), &field(&p), "a watermark needs `event-time`: the field it runs on");
            }
            None => {}
        }
    }

    fn sink(&self, cx: &mut Cx, spec: &PipelineSpec, name: &str, sink: &Sink, relations: &IndexMap<String, Relation>) {
        self.name(cx, &["sinks", name], name, NameKind::Sink, false);
        let at = |f: &'static str| ["sinks", name, f];
        let from = sink.from();
        let input = relations.get(from);
        if input.is_none() {
            let p = at("from");
            let names: Vec<&str> = relations.keys().map(String::as_str).collect();
            let e = cx.err(
                value_pos(self.root, &p),
                &field(&p),
                format!("`{from}` is not a stage or source; expected one of {}", quoted(&names)),
            );
            e.hint = closest(from, &names).map(|c| format!("did you mean `{c}`?"));
        }
        match sink {
            Sink::Cassandra(c) => {
                if spec.services.cassandra.is_none() {
                    let p = at("type");
                    cx.err(
                        value_pos(self.root, &p),
                        &field(&p),
                        "a Cassandra sink needs `services.cassandra` (nodes smack runs, or `external`)",
                    );
                }
                for (f, v) in [("keyspace", &c.keyspace), ("table", &c.table)] {
                    let ok = v.len() <= 48
                        && v.starts_with(|c: char| c.is_ascii_lowercase())
                        && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !ok {
                        let p = ["sinks", name, f];
                        cx.err(value_pos(self.root, &p), &field(&p), format!("invalid {f} `{v}`: expected lowercase letters, digits and `_`, starting with a letter, at most 48 characters"));
                    }
                }
                if c.primary_key.is_empty() {
                    let p = at("primary-key");
                    cx.err(
                        value_pos(self.root, &p),
                        &field(&p),
                        "expected at least one column: the partition key first",
                    );
                }
                let columns = input.and_then(|r| r.columns.as_ref());
                for (i, col) in c.primary_key.iter().enumerate() {
                    let idx = i.to_string();
                    let p = ["sinks", name, "primary-key", idx.as_str()];
                    if c.primary_key[..i].contains(col) {
                        cx.err(value_pos(self.root, &p), &field(&p), format!("`{col}` is listed twice"));
                        continue;
                    }
                    let Some(cols) = columns else { continue };
                    if !cols.contains(col) {
                        let names: Vec<&str> = cols.iter().map(String::as_str).collect();
                        let kind = input.map(|r| r.kind).unwrap_or("stage");
                        let e = cx.err(
                            value_pos(self.root, &p),
                            &field(&p),
                            format!(
                                "primary-key column `{col}` is not produced by {kind} `{from}`, which gives {}",
                                quoted(&names)
                            ),
                        );
                        e.hint = closest(col, &names).map(|c| format!("did you mean `{c}`?"));
                    }
                }
            }
            Sink::Kafka(k) => {
                if spec.services.kafka.is_none() {
                    let p = at("type");
                    cx.err(value_pos(self.root, &p), &field(&p), "a Kafka sink needs `services.kafka`");
                }
                let columns = input.and_then(|r| r.columns.as_deref());
                super::formats::check_sink(cx, self.root, name, k, columns);
            }
        }
    }

    fn tests(&self, cx: &mut Cx, spec: &PipelineSpec) {
        for (i, t) in spec.tests.iter().enumerate() {
            let idx = i.to_string();
            for (source, records) in &t.inputs {
                let p = ["tests", idx.as_str(), "inputs", source.as_str()];
                let Some(s) = spec.sources.get(source) else {
                    let names: Vec<&str> = spec.sources.keys().map(String::as_str).collect();
                    cx.err(
                        key_pos(self.root, &p),
                        &field(&p),
                        format!("`{source}` is not a source; expected one of {}", quoted(&names)),
                    );
                    continue;
                };
                for (j, r) in records.iter().enumerate() {
                    for k in r.keys() {
                        if s.column_type(k).is_none() {
                            let jdx = j.to_string();
                            let rp = ["tests", idx.as_str(), "inputs", source.as_str(), jdx.as_str(), k.as_str()];
                            let names: Vec<&str> = s.schema().keys().map(String::as_str).collect();
                            cx.err(
                                key_pos(self.root, &rp),
                                &field(&rp),
                                format!("`{k}` is not a field of source `{source}`, which has {}", quoted(&names)),
                            );
                        }
                    }
                }
            }
            for (lookup, rows) in &t.lookups {
                let p = ["tests", idx.as_str(), "lookups", lookup.as_str()];
                let Some(l) = spec.lookups.get(lookup) else {
                    let names: Vec<&str> = spec.lookups.keys().map(String::as_str).collect();
                    cx.err(
                        key_pos(self.root, &p),
                        &field(&p),
                        format!("`{lookup}` is not a lookup; expected one of {}", quoted(&names)),
                    );
                    continue;
                };
                for (j, r) in rows.iter().enumerate() {
                    let jdx = j.to_string();
                    for k in r.keys().filter(|k| !l.schema().contains_key(*k)) {
                        let rp = ["tests", idx.as_str(), "lookups", lookup.as_str(), jdx.as_str(), k.as_str()];
                        let names: Vec<&str> = l.schema().keys().map(String::as_str).collect();
                        cx.err(
                            key_pos(self.root, &rp),
                            &field(&rp),
                            format!("`{k}` is not a column of lookup `{lookup}`, which has {}", quoted(&names)),
                        );
                    }
                    for k in l.key().iter().filter(|k| r.get(*k).is_none_or(|v| v.is_null())) {
                        let rp = ["tests", idx.as_str(), "lookups", lookup.as_str(), jdx.as_str()];
                        cx.err(
                            value_pos(self.root, &rp),
                            &field(&rp),
                            format!("a row of lookup `{lookup}` needs its key column `{k}`"),
                        );
                    }
                }
            }
            for sink in t.expect.keys() {
                if !spec.sinks.contains_key(sink) {
                    let p = ["tests", idx.as_str(), "expect", sink.as_str()];
                    let names: Vec<&str> = spec.sinks.keys().map(String::as_str).collect();
                    cx.err(
                        key_pos(self.root, &p),
                        &field(&p),
                        format!("`{sink}` is not a sink; expected one of {}", quoted(&names)),
                    );
                }
            }
        }
    }
}
