//! The ledger of one agent: its total resources, the reservations and
//! volumes made on it, and the tasks using them; and the all-or-nothing
//! check of an accept against what was offered. Pure: no I/O, no clock.

use crate::resources::{
    FrameworkId, Operation, Reservation, ReservationId, ReservedOffer, Resources, TaskId, TaskInfo, TaskState,
    VolumeSource,
};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A task as the master accounts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerTask {
    pub framework_id: FrameworkId,
    pub role: String,
    pub info: TaskInfo,
    pub state: TaskState,
}

/// What the master knows is set aside and used on one agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentLedger {
    pub total: Resources,
    pub reservations: BTreeMap<ReservationId, Reservation>,
    /// Tasks not yet terminal.
    pub tasks: BTreeMap<TaskId, LedgerTask>,
}

impl AgentLedger {
    pub fn new(total: Resources) -> Self {
        AgentLedger { total, ..Default::default() }
    }

    /// All reserved resources, of every role.
    pub fn reserved(&self) -> Resources {
        let mut r = Resources::default();
        for res in self.reservations.values() {
            r.add(&res.resources);
        }
        r
    }

    /// Resources used by live tasks, reserved or not.
    pub fn used(&self) -> Resources {
        let mut r = Resources::default();
        for t in self.tasks.values() {
            r.add(&t.info.resources);
        }
        r
    }

    /// Unreserved resources no task uses.
    pub fn unreserved_free(&self) -> Resources {
        let mut free = self.total.minus(&self.reserved());
        for t in self.tasks.values().filter(|t| t.info.reservation.is_none()) {
            free.subtract(&t.info.resources);
        }
        free
    }

    /// The part of a reservation no task uses.
    pub fn reservation_free(&self, id: &str) -> Option<Resources> {
        let res = self.reservations.get(id)?;
        let mut free = res.resources.clone();
        for t in self.tasks.values().filter(|t| t.info.reservation.as_deref() == Some(id)) {
            free.subtract(&t.info.resources);
        }
        Some(free)
    }

    /// Each reservation with its free part, grouped by role.
    pub fn reserved_offers(&self) -> Vec<(String, ReservedOffer)> {
        self.reservations
            .values()
            .map(|r| {
                let free = self.reservation_free(&r.id).unwrap_or_default();
                (r.role.clone(), ReservedOffer { reservation: r.clone(), free })
            })
            .collect()
    }

    fn volume_in_use(&self, reservation: &str, volume: &str) -> Option<&TaskId> {
        self.tasks
            .iter()
            .find(|(_, t)| {
                t.info.reservation.as_deref() == Some(reservation) && t.info.volumes.iter().any(|v| v == volume)
            })
            .map(|(id, _)| id)
    }

    fn volume_id_taken(&self, volume: &str) -> bool {
        self.reservations.values().any(|r| r.volumes.iter().any(|v| v.id == volume))
    }
}

/// What an accept may draw on: the offered unreserved resources and the
/// offered reservations of the framework's role.
#[derive(Debug, Clone, Default)]
pub struct OfferedPool {
    pub unreserved: Resources,
    /// Reservation id → free part offered.
    pub reserved: BTreeMap<ReservationId, Resources>,
}

/// The outcome of a valid accept: the agent's new ledger, and what is left of
/// the offered pool (returned to the allocator).
#[derive(Debug, Clone)]
pub struct Applied {
    pub ledger: AgentLedger,
    pub leftover: OfferedPool,
}

/// Checks `ops` one after another against `ledger` and the offered `pool`,
/// for a framework of `role`. Either every operation is valid and the new
/// ledger is returned, or the first invalid one is named with the reason
/// and nothing changes (the caller keeps its ledger).
pub fn apply_operations(
    ledger: &AgentLedger,
    pool: &OfferedPool,
    framework_id: &str,
    role: &str,
    ops: &[Operation],
) -> Result<Applied> {
    let mut l = ledger.clone();
    let mut p = pool.clone();
    for (index, op) in ops.iter().enumerate() {
        let refuse = |reason: String| Error::OperationRefused { index, kind: op.kind(), reason };
        match op {
            Operation::Reserve { id, resources, labels } => {
                if id.is_empty() {
                    return Err(refuse("a reservation needs a non-empty id".into()));
                }
                if resources.is_empty() {
                    return Err(refuse("nothing to reserve: the resources are empty".into()));
                }
                if let Some(existing) = l.reservations.get(id) {
                    return Err(refuse(format!(
                        "reservation {id} already exists on this agent (role {})",
                        existing.role
                    )));
                }
                if let Some(short) = p.unreserved.shortfall(resources) {
                    return Err(refuse(format!("more than offered: {short}")));
                }
                p.unreserved.subtract(resources);
                l.reservations.insert(
                    id.clone(),
                    Reservation {
                        id: id.clone(),
                        role: role.to_string(),
                        resources: resources.clone(),
                        labels: labels.clone(),
                        volumes: Vec::new(),
                    },
                );
                p.reserved.insert(id.clone(), resources.clone());
            }
            Operation::Unreserve { id } => {
                let res = own_reservation(&l, &p, id, role).map_err(refuse)?;
                if !res.volumes.is_empty() {
                    let ids: Vec<&str> = res.volumes.iter().map(|v| v.id.as_str()).collect();
                    return Err(refuse(format!(
                        "reservation {id} still has volumes {}; destroy them first",
                        ids.join(", ")
                    )));
                }
                let total = res.resources.clone();
                if let Some((tid, _)) = l.tasks.iter().find(|(_, t)| t.info.reservation.as_deref() == Some(id)) {
                    return Err(refuse(format!("reservation {id} is in use by task {tid}")));
                }
                l.reservations.remove(id);
                p.reserved.remove(id);
                p.unreserved.add(&total);
            }
            Operation::CreateVolume { reservation, volume } => {
                let res = match own_reservation(&l, &p, reservation, role) {
                    Ok(r) => r.clone(),
                    Err(e) => {
                        return Err(refuse(format!("a volume must be made on reserved disk: {e}")));
                    }
                };
                if volume.id.is_empty() || volume.id.contains('/') || volume.id.contains("..") {
                    return Err(refuse(format!(
                        "volume id {:?} is not valid: expected a non-empty name without '/' or '..'",
                        volume.id
                    )));
                }
                if l.volume_id_taken(&volume.id) {
                    return Err(refuse(format!("volume {} already exists on this agent", volume.id)));
                }
                match &volume.source {
                    VolumeSource::Root { size } => {
                        if *size == 0 {
                            return Err(refuse("a ROOT volume needs a size above 0 MiB".into()));
                        }
                        let free = res.free_root_disk();
                        if *size > free {
                            return Err(refuse(format!(
                                "more than offered: volume of {size} MiB on reservation {reservation} with {free} MiB of ROOT disk free"
                            )));
                        }
                    }
                    VolumeSource::Mount { path } => {
                        if !res.resources.mounts.iter().any(|m| &m.path == path) {
                            return Err(refuse(format!("MOUNT disk {path} is not part of reservation {reservation}")));
                        }
                        if res
                            .volumes
                            .iter()
                            .any(|v| matches!(&v.source, VolumeSource::Mount { path: p2 } if p2 == path))
                        {
                            return Err(refuse(format!("MOUNT disk {path} already holds a volume")));
                        }
                    }
                }
                if let Some(r) = l.reservations.get_mut(reservation) {
                    r.volumes.push(volume.clone());
                }
            }
            Operation::DestroyVolume { reservation, volume } => {
                own_reservation(&l, &p, reservation, role).map_err(refuse)?;
                let has = l.reservations[reservation].volumes.iter().any(|v| &v.id == volume);
                if !has {
                    return Err(refuse(format!("volume {volume} does not exist on reservation {reservation}")));
                }
                if let Some(tid) = l.volume_in_use(reservation, volume) {
                    return Err(refuse(format!("volume {volume} is in use by task {tid}")));
                }
                if let Some(r) = l.reservations.get_mut(reservation) {
                    r.volumes.retain(|v| &v.id != volume);
                }
            }
            Operation::Launch { task } => {
                if task.id.is_empty() {
                    return Err(refuse("a task needs a non-empty id".into()));
                }
                if task.command.trim().is_empty() {
                    return Err(refuse(format!("task {} has an empty command", task.id)));
                }
                if l.tasks.contains_key(&task.id) {
                    return Err(refuse(format!("task {} is already running on this agent", task.id)));
                }
                match &task.reservation {
                    Some(rid) => {
                        let res = own_reservation(&l, &p, rid, role).map_err(refuse)?.clone();
                        for v in &task.volumes {
                            if !res.volumes.iter().any(|x| &x.id == v) {
                                return Err(refuse(format!("volume {v} does not exist on reservation {rid}")));
                            }
                        }
                        let free = p.reserved.get(rid).cloned().unwrap_or_default();
                        if let Some(short) = free.shortfall(&task.resources) {
                            return Err(refuse(format!("more than offered in reservation {rid}: {short}")));
                        }
                        if let Some(f) = p.reserved.get_mut(rid) {
                            f.subtract(&task.resources);
                        }
                    }
                    None => {
                        if !task.volumes.is_empty() {
                            return Err(refuse(format!(
                                "task {} uses volumes but names no reservation: volumes live on reserved disk",
                                task.id
                            )));
                        }
                        if let Some(short) = p.unreserved.shortfall(&task.resources) {
                            return Err(refuse(format!("more than offered: {short}")));
                        }
                        p.unreserved.subtract(&task.resources);
                    }
                }
                l.tasks.insert(
                    task.id.clone(),
                    LedgerTask {
                        framework_id: framework_id.to_string(),
                        role: role.to_string(),
                        info: task.clone(),
                        state: TaskState::Staging,
                    },
                );
            }
            Operation::Kill { task } => match l.tasks.get(task) {
                None => return Err(refuse(format!("task {task} is not running on this agent"))),
                Some(t) if t.framework_id != framework_id => {
                    return Err(refuse(format!("task {task} belongs to another framework")));
                }
                Some(_) => {}
            },
        }
    }
    Ok(Applied { ledger: l, leftover: p })
}

/// The reservation `id`, if it exists, is of `role`, and was offered.
fn own_reservation<'a>(
    l: &'a AgentLedger,
    p: &OfferedPool,
    id: &str,
    role: &str,
) -> std::result::Result<&'a Reservation, String> {
    match l.reservations.get(id) {
        None => Err(format!("reservation {id} does not exist on this agent")),
        Some(r) if r.role != role => Err(format!("reservation {id} holds resources of another role ({})", r.role)),
        Some(_) if !p.reserved.contains_key(id) => Err(format!("reservation {id} was not part of the offer")),
        Some(r) => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{PortRange, PortSet, Volume};

    fn agent() -> AgentLedger {
        AgentLedger::new(
            Resources::new(4.0, 4096, 10_000)
                .with_mount("/mnt/d1", 50_000)
                .with_ports(PortSet::from_ranges([PortRange::new(31000, 31099)])),
        )
    }

    fn offer_all(l: &AgentLedger, role: &str) -> OfferedPool {
        OfferedPool {
            unreserved: l.unreserved_free(),
            reserved: l
                .reserved_offers()
                .into_iter()
                .filter(|(r, _)| r == role)
                .map(|(_, o)| (o.reservation.id.clone(), o.free))
                .collect(),
        }
    }

    fn task(id: &str, res: Option<&str>, r: Resources, vols: &[&str]) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            name: id.into(),
            command: "sleep 100".into(),
            env: Default::default(),
            resources: r,
            reservation: res.map(String::from),
            volumes: vols.iter().map(|v| v.to_string()).collect(),
            health_check: None,
            readiness_check: None,
            kill_grace_period_ms: 1000,
            labels: Default::default(),
        }
    }

    /// A RESERVE of `resources` as reservation `id`, without labels.
    fn reserve(id: &str, resources: Resources) -> Operation {
        Operation::Reserve { id: id.into(), resources, labels: Default::default() }
    }

    fn vol(id: &str, size: u64) -> Volume {
        Volume {
            id: id.into(),
            source: VolumeSource::Root { size },
            container_path: "data".into(),
            host_path: String::new(),
        }
    }

    fn reserve_with_volume(l: &AgentLedger) -> AgentLedger {
        let ops = vec![
            reserve("r1", Resources::new(1.0, 1024, 2000)),
            Operation::CreateVolume { reservation: "r1".into(), volume: vol("v1", 1500) },
        ];
        apply_operations(l, &offer_all(l, "broker"), "f1", "broker", &ops).unwrap().ledger
    }

    #[test]
    fn reserve_volume_launch_in_one_accept() {
        let l = agent();
        let ops = vec![
            reserve("r1", Resources::new(1.0, 1024, 2000)),
            Operation::CreateVolume { reservation: "r1".into(), volume: vol("v1", 1500) },
            Operation::Launch { task: task("t1", Some("r1"), Resources::new(1.0, 512, 0), &["v1"]) },
        ];
        let a = apply_operations(&l, &offer_all(&l, "broker"), "f1", "broker", &ops).unwrap();
        assert_eq!(a.ledger.unreserved_free().cpus, 3.0);
        assert_eq!(a.ledger.reservation_free("r1").unwrap().mem, 512);
        assert_eq!(a.leftover.unreserved.cpus, 3.0);
        assert!(a.ledger.tasks.contains_key("t1"));
    }

    fn refused(l: &AgentLedger, pool: &OfferedPool, role: &str, ops: Vec<Operation>) -> String {
        let before = l.clone();
        let e = apply_operations(l, pool, "f1", role, &ops).unwrap_err();
        assert_eq!(&before, l);
        e.to_string()
    }

    /// [`refused`], with all the agent offers to `role`.
    fn refused_all(l: &AgentLedger, role: &str, ops: Vec<Operation>) -> String {
        refused(l, &offer_all(l, role), role, ops)
    }

    #[test]
    fn reserve_more_than_offered_is_refused() {
        let l = agent();
        let e = refused_all(&l, "broker", vec![reserve("r", Resources::new(8.0, 1, 1))]);
        assert!(e.contains("operation 0 (RESERVE) refused: more than offered: cpus 8 wanted, 4 available"), "{e}");
    }

    #[test]
    fn volume_on_unreserved_disk_is_refused() {
        let l = agent();
        let e = refused_all(
            &l,
            "broker",
            vec![Operation::CreateVolume { reservation: "nope".into(), volume: vol("v", 10) }],
        );
        assert!(e.contains("CREATE_VOLUME") && e.contains("reserved disk"), "{e}");
    }

    #[test]
    fn resources_of_another_role_are_refused() {
        let l = reserve_with_volume(&agent());
        let e = refused_all(
            &l,
            "db",
            vec![Operation::Launch { task: task("t", Some("r1"), Resources::new(0.5, 10, 0), &[]) }],
        );
        assert!(e.contains("another role (broker)"), "{e}");
    }

    #[test]
    fn second_op_failure_undoes_the_first() {
        let l = agent();
        let e = refused_all(
            &l,
            "broker",
            vec![
                reserve("r1", Resources::new(1.0, 1, 1)),
                Operation::Launch { task: task("t", None, Resources::new(3.5, 1, 0), &[]) },
            ],
        );
        assert!(e.contains("operation 1 (LAUNCH)"), "{e}");
    }

    #[test]
    fn volume_too_big_and_duplicate_volume() {
        let l = reserve_with_volume(&agent());
        let pool = offer_all(&l, "broker");
        let e = refused(
            &l,
            &pool,
            "broker",
            vec![Operation::CreateVolume { reservation: "r1".into(), volume: vol("v2", 600) }],
        );
        assert!(e.contains("500 MiB of ROOT disk free"), "{e}");
        let e = refused(
            &l,
            &pool,
            "broker",
            vec![Operation::CreateVolume { reservation: "r1".into(), volume: vol("v1", 10) }],
        );
        assert!(e.contains("already exists"), "{e}");
    }

    #[test]
    fn unreserve_with_volume_or_task_is_refused() {
        let l = reserve_with_volume(&agent());
        let pool = offer_all(&l, "broker");
        let e = refused(&l, &pool, "broker", vec![Operation::Unreserve { id: "r1".into() }]);
        assert!(e.contains("still has volumes v1"), "{e}");
        let ok = apply_operations(
            &l,
            &pool,
            "f1",
            "broker",
            &[
                Operation::DestroyVolume { reservation: "r1".into(), volume: "v1".into() },
                Operation::Unreserve { id: "r1".into() },
            ],
        )
        .unwrap();
        assert!(ok.ledger.reservations.is_empty());
        assert_eq!(ok.ledger.unreserved_free().cpus, 4.0);
    }

    #[test]
    fn destroy_volume_in_use_is_refused() {
        let l = reserve_with_volume(&agent());
        let pool = offer_all(&l, "broker");
        let l = apply_operations(
            &l,
            &pool,
            "f1",
            "broker",
            &[Operation::Launch { task: task("t1", Some("r1"), Resources::new(0.5, 10, 0), &["v1"]) }],
        )
        .unwrap()
        .ledger;
        let e =
            refused_all(&l, "broker", vec![Operation::DestroyVolume { reservation: "r1".into(), volume: "v1".into() }]);
        assert!(e.contains("in use by task t1"), "{e}");
    }

    #[test]
    fn mount_disk_whole() {
        let l = agent();
        let pool = offer_all(&l, "c");
        let res = Resources::new(1.0, 10, 0).with_mount("/mnt/d1", 50_000);
        let a = apply_operations(
            &l,
            &pool,
            "f",
            "c",
            &[
                reserve("m", res),
                Operation::CreateVolume {
                    reservation: "m".into(),
                    volume: Volume {
                        id: "mv".into(),
                        source: VolumeSource::Mount { path: "/mnt/d1".into() },
                        container_path: "data".into(),
                        host_path: String::new(),
                    },
                },
            ],
        )
        .unwrap();
        assert!(a.ledger.unreserved_free().mounts.is_empty());
        let e = refused(&l, &pool, "c", vec![reserve("m", Resources::default().with_mount("/mnt/other", 5))]);
        assert!(e.contains("MOUNT disk /mnt/other"), "{e}");
    }

    #[test]
    fn kill_of_unknown_or_foreign_task_is_refused() {
        let l = agent();
        let pool = offer_all(&l, "r");
        let l2 = apply_operations(
            &l,
            &pool,
            "f2",
            "r",
            &[Operation::Launch { task: task("t", None, Resources::new(1.0, 1, 0), &[]) }],
        )
        .unwrap()
        .ledger;
        let e = refused_all(&l2, "r", vec![Operation::Kill { task: "t".into() }]);
        assert!(e.contains("another framework"), "{e}");
        let e = refused_all(&l2, "r", vec![Operation::Kill { task: "zz".into() }]);
        assert!(e.contains("not running"), "{e}");
    }

    #[test]
    fn reservation_not_offered_is_refused() {
        let l = reserve_with_volume(&agent());
        let pool = OfferedPool { unreserved: l.unreserved_free(), reserved: BTreeMap::new() };
        let e = refused(&l, &pool, "broker", vec![Operation::Unreserve { id: "r1".into() }]);
        assert!(e.contains("not part of the offer"), "{e}");
    }

    #[test]
    fn duplicate_task_and_empty_command() {
        let l = agent();
        let pool = offer_all(&l, "r");
        let mut t = task("t", None, Resources::new(0.1, 1, 0), &[]);
        t.command = " ".into();
        let e = refused(&l, &pool, "r", vec![Operation::Launch { task: t }]);
        assert!(e.contains("empty command"), "{e}");
        let t = task("t", None, Resources::new(0.1, 1, 0), &[]);
        let e = refused(&l, &pool, "r", vec![Operation::Launch { task: t.clone() }, Operation::Launch { task: t }]);
        assert!(e.contains("operation 1") && e.contains("already running"), "{e}");
    }
}
