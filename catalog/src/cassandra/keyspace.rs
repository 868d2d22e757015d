//! Keyspaces of a Cassandra service: created with
//! `NetworkTopologyStrategy`, or one datacenter's replication altered,
//! refused when it asks for more replicas than the datacenter has nodes.

use super::cql::{keyspaces_from, ring, NodeRow};
use super::service as svc;
use crate::error::{bail, format_err, Result};
use std::collections::BTreeMap;

/// The datacenter asked for, or the ring's only one.
pub fn pick_datacenter(nodes: &[NodeRow], dc: Option<&str>) -> Result<String> {
    let dcs: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.datacenter.as_str()).collect();
    Ok(match dc {
        Some(d) => d.to_string(),
        None if dcs.len() == 1 => dcs.iter().next().expect("one").to_string(),
        None => bail!(
            "the ring has several datacenters ({}): pick one with --datacenter",
            dcs.into_iter().collect::<Vec<_>>().join(", ")
        ),
    })
}

/// `smack cassandra keyspace create`: refused with the reason when the
/// datacenter has fewer nodes than replicas.
/// Returns the datacenter.
pub async fn create_keyspace(contacts: &[String], name: &str, rf: u32, dc: Option<&str>) -> Result<String> {
    let nodes = ring(contacts).await?;
    let dc = pick_datacenter(&nodes, dc)?;
    let count = nodes.iter().filter(|n| n.datacenter == dc).count() as u32;
    svc::check_replication(count, rf).map_err(|e| format_err!("keyspace {name} refused: {e} (datacenter {dc})"))?;
    let s = smack_connectors::cassandra::CassandraSession::connect(&smack_connectors::cassandra::CassandraConfig::new(
        contacts,
    ))
    .await
    .map_err(|e| format_err!("{e}"))?;
    s.create_keyspace(name, &BTreeMap::from([(dc.clone(), rf)])).await.map_err(|e| format_err!("{e}"))?;
    Ok(dc)
}

/// The replication map a keyspace gets when `dc` is set to `rf`: its other
/// datacenters kept when it already uses NetworkTopologyStrategy.
pub fn merged_replication(ks: &svc::KeyspaceReplication, dc: &str, rf: u32) -> Result<BTreeMap<String, u32>, String> {
    let mut out = BTreeMap::new();
    let class = ks.replication.get("class").map(String::as_str).unwrap_or("");
    if class.ends_with("NetworkTopologyStrategy") {
        for other in ks.replication.keys().filter(|k| *k != "class" && *k != dc) {
            if let svc::Replicas::InDatacenter(n) = ks.replicas(other)? {
                out.insert(other.clone(), n);
            }
        }
    }
    out.insert(dc.to_string(), rf);
    Ok(out)
}

/// `ALTER KEYSPACE name WITH replication = {NetworkTopologyStrategy, dc: rf…}`.
pub fn alter_keyspace_cql(name: &str, replication: &BTreeMap<String, u32>) -> Result<String, String> {
    if name.is_empty() || name.len() > 48 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("keyspace name {name:?}: expected 1 to 48 letters, digits or `_`"));
    }
    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
    for (dc, rf) in replication {
        if *rf == 0 {
            return Err(format!("keyspace {name}: replication 0 in datacenter {dc} (expected 1 or more)"));
        }
        parts.push(format!("'{}': {rf}", dc.replace('\'', "''")));
    }
    Ok(format!("ALTER KEYSPACE {name} WITH replication = {{{}}}", parts.join(", ")))
}

/// `smack cassandra keyspace alter`: one datacenter's replication changed,
/// refused above that datacenter's node count. Returns the datacenter and
/// its replication before.
pub async fn alter_keyspace(
    contacts: &[String],
    name: &str,
    rf: u32,
    dc: Option<&str>,
) -> Result<(String, svc::Replicas)> {
    let nodes = ring(contacts).await?;
    let dc = pick_datacenter(&nodes, dc)?;
    let count = nodes.iter().filter(|n| n.datacenter == dc).count() as u32;
    svc::check_replication(count, rf)
        .map_err(|e| format_err!("keyspace {name} alter refused: {e} (datacenter {dc})"))?;
    let all = keyspaces_from(contacts).await?;
    let ks = all.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> =
            all.iter().map(|k| k.name.as_str()).filter(|n| !svc::SYSTEM_KEYSPACES.contains(n)).collect();
        format_err!("no keyspace {name}; the keyspaces are: {}", names.join(", "))
    })?;
    let before = ks.replicas(&dc).map_err(|e| format_err!("{e}"))?;
    let merged = merged_replication(ks, &dc, rf).map_err(|e| format_err!("{e}"))?;
    let cql = alter_keyspace_cql(name, &merged).map_err(|e| format_err!("{e}"))?;
    let s = smack_connectors::cassandra::CassandraSession::connect(&smack_connectors::cassandra::CassandraConfig::new(
        contacts,
    ))
    .await
    .map_err(|e| format_err!("{e}"))?;
    s.execute_ddl(&cql).await.map_err(|e| format_err!("{e}"))?;
    Ok((dc, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks(name: &str, pairs: &[(&str, &str)]) -> svc::KeyspaceReplication {
        svc::KeyspaceReplication {
            name: name.into(),
            replication: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn altering_one_datacenter_keeps_the_others() {
        let nts = "org.apache.cassandra.locator.NetworkTopologyStrategy";
        let k = ks("e2e", &[("class", nts), ("dc1", "3"), ("dc2", "2")]);
        let m = merged_replication(&k, "dc1", 2).unwrap();
        assert_eq!(m, BTreeMap::from([("dc1".to_string(), 2), ("dc2".to_string(), 2)]));
        assert_eq!(
            alter_keyspace_cql("e2e", &m).unwrap(),
            "ALTER KEYSPACE e2e WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 2, 'dc2': 2}"
        );
        // SimpleStrategy becomes NetworkTopologyStrategy in the one datacenter.
        let simple = ks("s", &[("class", "org.apache.cassandra.locator.SimpleStrategy"), ("replication_factor", "3")]);
        assert_eq!(merged_replication(&simple, "dc1", 2).unwrap(), BTreeMap::from([("dc1".to_string(), 2)]));
        assert!(merged_replication(&ks("b", &[("class", nts), ("dc2", "x")]), "dc1", 1).is_err());
        assert!(alter_keyspace_cql("e2e; DROP", &m).unwrap_err().contains("keyspace name"));
        assert!(alter_keyspace_cql("", &m).is_err());
        let zero = BTreeMap::from([("dc1".to_string(), 0)]);
        assert!(alter_keyspace_cql("k", &zero).unwrap_err().contains("replication 0 in datacenter dc1"));
        let quoted = BTreeMap::from([("d'c".to_string(), 1)]);
        assert!(alter_keyspace_cql("k", &quoted).unwrap().contains("'d''c': 1"));
    }
}
