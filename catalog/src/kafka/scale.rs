//! `smack kafka scale --brokers N` and `smack kafka quorum [--prune]`: the
//! broker count changed through the service's scheduler, with the replicas
//! moved to match, and the controller voters kept to the pods that exist.

use super::admin::{self, Quorum};
use super::drain;
use super::plan::{controller_ids, too_wide_topics};
use super::service as kafka_service;
use crate::client::{placed_endpoints, ServiceClient};
use crate::error::{bail, format_err, Context, Result};
use smack_connectors::kafka::{KafkaAdmin, KafkaClientConfig};
use std::time::Duration;

/// `smack kafka scale --brokers N`: the service's spec with the new count,
/// submitted to its scheduler; then, growing, waits for the new brokers'
/// deploy steps and rebalances the replicas onto them; shrinking, waits for
/// the decommission plan (each removed broker drained by its hook first)
/// and takes any controller the removed brokers left behind out of the
/// quorum.
///
/// The rebalance runs here, in the CLI, not as a scheduler plan: it is one
/// cluster-wide Admin API call and a wait, not work on a pod (a scheduler
/// step would have to launch a task inside some broker's reservation), and
/// Kafka itself keeps the reassignment durably, so if this process dies the
/// move goes on and `smack kafka rebalance` picks it up.
pub async fn scale(svc: &impl ServiceClient, brokers: u32, throttle: u64, timeout: Duration) -> Result<()> {
    let service = svc.service();
    if brokers == 0 {
        bail!("--brokers 0: a Kafka service needs at least one broker; use `smack service delete` to remove it");
    }
    let deadline = std::time::Instant::now() + timeout;
    let spec = svc.spec().await.with_context(|| format!("reading the spec of service {service}"))?;
    let now = kafka_service::pod_count(&spec.yaml, kafka_service::POD_TYPE)
        .map_err(|e| format_err!("service {service}: {e}"))?;
    if now == brokers {
        println!("service {service} already runs {brokers} broker(s): nothing to change");
        return Ok(());
    }
    let pods = svc.pods().await?;
    let bootstrap = placed_endpoints(&pods, kafka_service::CLIENT_PORT).join(",");
    if bootstrap.is_empty() {
        bail!("service {service} has no placed broker yet; wait for its deploy (`smack plan show deploy`)");
    }
    let config =
        KafkaClientConfig::new(bootstrap.clone()).with_client_id("smack-cli").with_timeout(Duration::from_secs(30));
    let admin = KafkaAdmin::connect(&config).await.with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
    if brokers < now {
        let too_wide = too_wide_topics(&admin.snapshot().await?, brokers as usize);
        if !too_wide.is_empty() {
            bail!(
                "refusing to scale service {service} from {now} to {brokers} broker(s): fewer brokers would remain \
                 than the replication factor of {}; lower those topics' replication or keep more brokers",
                too_wide.join(", ")
            );
        }
    }
    let yaml = kafka_service::with_pod_count(&spec.yaml, kafka_service::POD_TYPE, brokers)
        .map_err(|e| format_err!("service {service}: {e}"))?;
    let plans = svc
        .submit_spec(&smack_operator::scheduler::api::SpecUpdate { yaml, file: spec.file.clone() })
        .await
        .with_context(|| format!("service {service} refused the new broker count"))?;
    println!("service {service}: {now} -> {brokers} broker(s); started {}", plans.join(", "));
    if brokers > now {
        svc.wait_plan_complete("update", deadline).await?;
        let want: Vec<i32> = (now as i32..brokers as i32).collect();
        let mut missing = want.clone();
        while !missing.is_empty() {
            if std::time::Instant::now() > deadline {
                bail!("broker(s) {missing:?} did not register with the controller within {timeout:?}");
            }
            let snap = admin.snapshot().await?;
            missing.retain(|id| !snap.brokers.iter().any(|b| b.id == *id));
            if !missing.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        println!("broker(s) {want:?} registered; rebalancing");
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        drain::rebalance(&admin, &bootstrap, throttle, left).await?;
    } else {
        svc.wait_plan_complete("decommission", deadline).await?;
        // Each removed broker left the quorum in its drain hook and could
        // not join it again; a voter without a pod (a hook that failed
        // half-way, then force-completed) is taken out now.
        let q = prune_voters(svc, true).await?;
        println!("service {service} runs {brokers} broker(s); controller voters {:?}", q.voters);
    }
    Ok(())
}

/// The controller quorum (voters and active controller); with `prune`,
/// first removes every voter whose pod the service no longer has. Returns
/// the quorum left.
pub async fn prune_voters(svc: &impl ServiceClient, prune: bool) -> Result<Quorum> {
    let service = svc.service();
    let pods = svc.pods().await?;
    let live = placed_endpoints(&pods, kafka_service::CLIENT_PORT).join(",");
    if live.is_empty() {
        bail!("service {service} has no placed broker");
    }
    let q = admin::quorum(&live).await?;
    let ids = controller_ids(pods.iter().map(|v| (v.pod.pod_type.as_str(), v.pod.index, &v.pod.ports)));
    let stale: Vec<i32> = q.voters.iter().copied().filter(|v| !ids.contains(v)).collect();
    if stale.is_empty() || !prune {
        if !stale.is_empty() {
            println!("controller(s) {stale:?} are voters without a pod; remove them with `smack kafka quorum --prune`");
        }
        return Ok(q);
    }
    for v in &stale {
        println!("controller {v} is still a voter but its pod is gone: removing it from the quorum");
        admin::remove_voter(&live, *v).await?;
    }
    admin::quorum(&live).await
}
