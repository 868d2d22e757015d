//! Comparing a running spec with a new one: which changes are unsafe (and
//! refused, keeping the old target), and which pod types an update plan must
//! roll.

use super::*;

/// Why a new spec cannot replace the running one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRefusal {
    /// The pod type concerned; `None` for service-wide fields.
    pub pod: Option<String>,
    /// The field, e.g. `volumes[data].size`.
    pub field: String,
    /// What changed, why that is unsafe, and what to do instead.
    pub message: String,
}

impl fmt::Display for UpdateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pod {
            Some(p) => write!(f, "pod `{p}`: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

fn refuse(out: &mut Vec<UpdateRefusal>, pod: Option<&str>, field: impl Into<String>, message: impl Into<String>) {
    out.push(UpdateRefusal { pod: pod.map(str::to_string), field: field.into(), message: message.into() });
}

/// The unsafe changes from `old` (running) to `new`; empty when `new` may be
/// applied. Both specs are assumed valid on their own.
///
/// Refused: a changed service name or role; a pod type removed while it has
/// pods; `count` lowered without `allow-decommission: true` in the new spec;
/// a volume added, removed, resized or retyped on a pod type that has pods;
/// a zone rule (`max-per`, `group-by` or `unique` on `zone`) added to a pod
/// type whose pods were placed without one.
pub fn validate_update(old: &ServiceSpec, new: &ServiceSpec) -> Vec<UpdateRefusal> {
    let mut out = Vec::new();
    if old.name != new.name {
        refuse(
            &mut out,
            None,
            "name",
            format!("the service name cannot change (`{}` → `{}`): deploy a new service instead", old.name, new.name),
        );
    }
    if old.role != new.role {
        refuse(
            &mut out,
            None,
            "role",
            format!(
                "the role cannot change (`{}` → `{}`): the running pods' reservations carry the old role",
                old.role, new.role
            ),
        );
    }
    for o in &old.pods {
        let Some(n) = new.pod(&o.name) else {
            if o.count > 0 {
                refuse(&mut out, Some(&o.name), "pods", format!("pod type `{}` was removed while it has {} pod(s); removing it would strand their volumes and reservations: first scale it to `count: 0` with `allow-decommission: true`, then remove it", o.name, o.count));
            }
            continue;
        };
        let pod = Some(o.name.as_str());
        if n.count < o.count && !n.allow_decommission {
            refuse(&mut out, pod, "count", format!("count lowered from {} to {} without `allow-decommission: true`; decommissioning destroys the removed pods' volumes, so it must be allowed explicitly", o.count, n.count));
        }
        if o.count == 0 {
            continue;
        }
        for ov in &o.volumes {
            let field = format!("volumes[{}]", ov.path);
            match n.volumes.iter().find(|v| v.path == ov.path) {
                None => refuse(&mut out, pod, field, format!("volume `{}` was removed; its data lives on the running pods' disks: volumes cannot be removed from a pod type that has pods", ov.path)),
                Some(nv) => {
                    if nv.kind != ov.kind {
                        refuse(&mut out, pod, format!("{field}.type"), format!("volume `{}` type changed from {} to {}; a persistent volume cannot change type in place", ov.path, ov.kind, nv.kind));
                    }
                    if nv.size != ov.size {
                        refuse(&mut out, pod, format!("{field}.size"), format!("volume `{}` size changed from {} MiB to {} MiB; a persistent volume cannot be resized in place (replace the pods one by one onto new volumes instead)", ov.path, ov.size, nv.size));
                    }
                }
            }
        }
        for nv in &n.volumes {
            if !o.volumes.iter().any(|v| v.path == nv.path) {
                refuse(&mut out, pod, format!("volumes[{}]", nv.path), format!("volume `{}` was added; the running pods' reservations have no disk for it: volumes cannot be added to a pod type that has pods", nv.path));
            }
        }
        if !o.is_zone_aware() && n.is_zone_aware() {
            let rule = n.rules().find(|r| r.is_zone_aware()).map(ToString::to_string).unwrap_or_default();
            refuse(&mut out, pod, "placement", format!("zone-awareness (`{rule}`) cannot be switched on for pods already placed without it; their current placement may break the rule"));
        }
    }
    out
}

/// Pod types present in both specs whose configuration differs: resources,
/// volumes, placement rules or tasks. `count` and `allow-decommission` are
/// scaling, hooks and `prefer` restart nothing, and are ignored; pod types only in `new` are not
/// listed. In `new`'s order.
pub fn changed_pods(old: &ServiceSpec, new: &ServiceSpec) -> Vec<String> {
    new.pods
        .iter()
        .filter(|n| {
            old.pod(&n.name).is_some_and(|o| {
                let mut o = o.clone();
                o.count = n.count;
                o.allow_decommission = n.allow_decommission;
                // Hooks run beside the tasks: changing one restarts nothing.
                o.hooks = n.hooks.clone();
                // Preferences only rank offers for pods placed anew.
                o.prefer = n.prefer.clone();
                o != **n
            })
        })
        .map(|n| n.name.clone())
        .collect()
}
