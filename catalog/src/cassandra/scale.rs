//! `smack cassandra scale --nodes N`: the service's spec with N nodes,
//! submitted to its scheduler; more nodes join one at a time (the deploy of
//! the `update` plan), fewer are decommissioned highest index first by
//! their hook. Refused, naming the keyspaces, when fewer nodes would remain
//! in the datacenter than a keyspace keeps replicas there
//! ([`super::service::check_scale_down`]), while a node is not `UN`, or
//! while the service's deploy, update or decommission is under way.

use super::cql::{keyspaces_from, ring, NodeRow};
use super::service as svc;
use crate::client::{placed_endpoints, ServiceClient};
use crate::error::{bail, chain, format_err, Context, Result};
use std::time::Duration;

/// A scale needs a settled ring: every member `UN`.
pub fn check_ring_up(nodes: &[NodeRow]) -> Result<(), String> {
    let bad: Vec<String> =
        nodes.iter().filter(|n| n.state != "UN").map(|n| format!("{} is {}", n.address, n.state)).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the ring is not settled ({}): bring the node(s) back (or `smack pod replace` them) first",
            bad.join(", ")
        ))
    }
}

/// A scale waits for the service's own plans: a deploy, an update (a roll
/// would be cut short: a newer spec supersedes it) or a decommission still
/// under way is named, and the scale refused.
pub fn check_plans_settled(plans: &[smack_operator::scheduler::api::PlanSummary]) -> Result<(), String> {
    use smack_operator::scheduler::plan::Status;
    let busy: Vec<String> = plans
        .iter()
        .filter(|p| ["deploy", "update", "decommission"].contains(&p.name.as_str()) && p.status != Status::Complete)
        .map(|p| format!("plan {} is {}", p.name, p.status.as_str()))
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; scale once it completes (`smack plan show NAME`)", busy.join(", ")))
    }
}

/// The datacenter of the service's nodes (those at `hosts`), which must be one.
pub fn service_datacenter(nodes: &[NodeRow], hosts: &[String]) -> Result<String, String> {
    let dcs: std::collections::BTreeSet<&str> =
        nodes.iter().filter(|n| hosts.contains(&n.address)).map(|n| n.datacenter.as_str()).collect();
    match dcs.len() {
        1 => Ok(dcs.into_iter().next().expect("one").to_string()),
        0 => Err(format!("none of the service's nodes ({}) is in the ring", hosts.join(", "))),
        _ => Err(format!(
            "the service's nodes are in several datacenters ({})",
            dcs.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// `smack cassandra scale --nodes N`.
/// Returns the ring it settled at, `None` when the count was already `nodes`.
pub async fn scale(svc: &impl ServiceClient, nodes: u32, timeout: Duration) -> Result<Option<Vec<NodeRow>>> {
    let service = svc.service();
    let deadline = std::time::Instant::now() + timeout;
    let spec = svc.spec().await.with_context(|| format!("reading the spec of service {service}"))?;
    let now = svc::node_count(&spec.yaml).map_err(|e| format_err!("service {service}: {e}"))?;
    let yaml = svc::with_node_count(&spec.yaml, nodes).map_err(|e| format_err!("service {service}: {e}"))?;
    if now == nodes {
        println!("service {service} already runs {nodes} node(s): nothing to change");
        return Ok(None);
    }
    let plans = svc.plans().await?;
    check_plans_settled(&plans).map_err(|e| format_err!("refusing to scale service {service}: {e}"))?;
    let pods = svc.pods().await?;
    let cps = placed_endpoints(&pods, svc::NATIVE_PORT);
    if cps.is_empty() {
        bail!("service {service} has no placed node yet; wait for its deploy (`smack plan show deploy`)");
    }
    let members = ring(&cps).await?;
    check_ring_up(&members).map_err(|e| format_err!("refusing to scale service {service}: {e}"))?;
    if nodes < now {
        let hosts: Vec<String> = pods.iter().map(|p| p.pod.hostname.clone()).filter(|h| !h.is_empty()).collect();
        let dc = service_datacenter(&members, &hosts).map_err(|e| format_err!("service {service}: {e}"))?;
        let removed = now - nodes;
        let in_dc = members.iter().filter(|n| n.datacenter == dc).count() as u32;
        let spaces = keyspaces_from(&cps).await?;
        svc::check_scale_down(
            &dc,
            in_dc.saturating_sub(removed),
            (members.len() as u32).saturating_sub(removed),
            &spaces,
        )
        .map_err(|e| format_err!("refusing to scale service {service} from {now} to {nodes} node(s): {e}"))?;
    }
    let plans = svc
        .submit_spec(&smack_operator::scheduler::api::SpecUpdate { yaml, file: spec.file.clone() })
        .await
        .with_context(|| format!("service {service} refused the new node count"))?;
    println!("service {service}: {now} -> {nodes} node(s); started {}", plans.join(", "));
    let plan = if nodes > now { "update" } else { "decommission" };
    svc.wait_plan_complete(plan, deadline).await?;
    // Then the ring as the remaining nodes see it: N members, all UN (a
    // decommissioned node has left it, not gone down in it).
    loop {
        let pods = svc.pods().await?;
        let cps = placed_endpoints(&pods, svc::NATIVE_PORT);
        let last = match ring(&cps).await {
            Ok(r) if r.len() == nodes as usize && check_ring_up(&r).is_ok() => return Ok(Some(r)),
            Ok(r) => r.iter().map(|n| format!("{} {}", n.address, n.state)).collect::<Vec<_>>().join(", "),
            Err(e) => chain(&e),
        };
        if std::time::Instant::now() > deadline {
            bail!("the ring did not settle at {nodes} UN node(s) within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassandra::keyspace::pick_datacenter;

    fn node(address: &str, dc: &str, state: &str) -> NodeRow {
        NodeRow {
            address: address.into(),
            native: None,
            datacenter: dc.into(),
            rack: "zone-a".into(),
            state: state.into(),
            status: "NORMAL".into(),
            up: state.starts_with('U'),
            load_bytes: None,
            tokens: 16,
            host_id: String::new(),
        }
    }

    #[test]
    fn a_scale_needs_every_node_up_and_normal() {
        assert_eq!(check_ring_up(&[node("h0", "dc1", "UN"), node("h1", "dc1", "UN")]), Ok(()));
        let e =
            check_ring_up(&[node("h0", "dc1", "UN"), node("h1", "dc1", "DN"), node("h2", "dc1", "UJ")]).unwrap_err();
        assert!(e.contains("h1 is DN, h2 is UJ"), "{e}");
        assert_eq!(check_ring_up(&[]), Ok(()));
    }

    #[test]
    fn the_service_datacenter_is_the_one_its_nodes_are_in() {
        let ring = [node("h0", "dc1", "UN"), node("h1", "dc1", "UN"), node("x9", "dc2", "UN")];
        assert_eq!(service_datacenter(&ring, &["h0".into(), "h1".into()]), Ok("dc1".into()));
        assert!(service_datacenter(&ring, &["h0".into(), "x9".into()]).unwrap_err().contains("dc1, dc2"));
        assert!(service_datacenter(&ring, &["zz".into()]).unwrap_err().contains("none of the service's nodes (zz)"));
        assert_eq!(pick_datacenter(&ring[..2], None).unwrap(), "dc1");
        assert_eq!(pick_datacenter(&ring, Some("dc2")).unwrap(), "dc2");
        assert!(pick_datacenter(&ring, None).unwrap_err().to_string().contains("several datacenters (dc1, dc2)"));
    }

    #[test]
    fn a_scale_waits_for_the_service_plans() {
        use smack_operator::scheduler::api::PlanSummary;
        use smack_operator::scheduler::plan::Status;
        let plan = |name: &str, status| PlanSummary { name: name.into(), status };
        let settled = vec![plan("deploy", Status::Complete), plan("recovery", Status::InProgress)];
        assert_eq!(check_plans_settled(&settled), Ok(()));
        let custom = vec![plan("deploy", Status::Complete), plan("backup", Status::Waiting)];
        assert_eq!(check_plans_settled(&custom), Ok(()));
        let rolling = vec![plan("deploy", Status::Complete), plan("update", Status::InProgress)];
        assert!(check_plans_settled(&rolling).unwrap_err().starts_with("plan update is IN_PROGRESS"));
        let both = vec![plan("deploy", Status::Pending), plan("decommission", Status::Error)];
        let e = check_plans_settled(&both).unwrap_err();
        assert!(e.contains("plan deploy is PENDING, plan decommission is ERROR"), "{e}");
    }
}
