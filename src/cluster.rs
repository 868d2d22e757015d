//! Finding the cluster: `cluster.json` in the state dir, the token file, and
//! the `--master`/`--token` flags that override them.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use smack_operator::client::MasterClient;
use std::path::{Path, PathBuf};

/// What `smack up` and `smack master` write so other commands find them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub master: String,
    pub token: String,
}

impl ClusterFile {
    /// The client of this cluster's master.
    pub fn master_client(&self) -> MasterClient {
        MasterClient::new(self.master.clone(), self.token.clone())
    }
}

pub fn cluster_file(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster.json")
}

pub fn write_cluster_file(state_dir: &Path, c: &ClusterFile) -> Result<()> {
    smack_storage::durable::write_json_atomic(&cluster_file(state_dir), c)
        .with_context(|| format!("writing {}", cluster_file(state_dir).display()))
}

/// The cluster token kept in the state dir, made on first use.
pub fn load_or_create_token(state_dir: &Path) -> Result<String> {
    let path = state_dir.join("token");
    if let Some(bytes) = smack_storage::durable::read_optional(&path)? {
        let t = String::from_utf8_lossy(&bytes).trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    smack_storage::durable::ensure_dir(state_dir)?;
    smack_storage::durable::write_atomic(&path, token.as_bytes())?;
    Ok(token)
}

/// Resolves the master URL and token: flags (or env), else `cluster.json`.
pub fn resolve(master: Option<String>, token: Option<String>, state_dir: &Path) -> Result<ClusterFile> {
    if let (Some(m), Some(t)) = (&master, &token) {
        return Ok(ClusterFile { master: m.clone(), token: t.clone() });
    }
    let path = cluster_file(state_dir);
    let file: Option<ClusterFile> = match smack_storage::durable::read_optional(&path)? {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: expected {{\"master\": URL, \"token\": TOKEN}}", path.display()))?,
        ),
        None => None,
    };
    match (master, token, file) {
        (m, t, Some(f)) => Ok(ClusterFile { master: m.unwrap_or(f.master), token: t.unwrap_or(f.token) }),
        (Some(_), None, None) => bail!(
            "no token: pass --token (or SMACK_TOKEN), or run where {} exists",
            path.display()
        ),
        (_, _, None) => bail!(
            "no cluster found: {} does not exist. Start one with `smack up`, or pass --master URL and --token TOKEN (env SMACK_MASTER, SMACK_TOKEN)",
            path.display()
        ),
    }
}
