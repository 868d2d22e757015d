//! The settings every Kafka client here shares: where the brokers are, who
//! the client is, how long to wait, and pass-through librdkafka properties.

use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// Connection settings shared by the source, the sink and the admin client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaClientConfig {
    /// `host:port[,host:port…]` of one or more brokers.
    pub bootstrap_servers: String,
    /// The client id brokers log and quota by.
    pub client_id: String,
    /// How long a request (metadata, admin, commit read-back) may take.
    pub timeout: Duration,
    /// Extra librdkafka properties, applied last (they override the defaults
    /// chosen here; see librdkafka's CONFIGURATION.md).
    pub properties: BTreeMap<String, String>,
}

impl KafkaClientConfig {
    /// Settings for `bootstrap_servers` with client id `smack` and a 30 s timeout.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaClientConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: "smack".into(),
            timeout: Duration::from_secs(30),
            properties: BTreeMap::new(),
        }
    }

    /// With another client id.
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// With another request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With one more librdkafka property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The librdkafka config: the common keys, then `defaults` (the role's
    /// own), then the user's properties.
    pub(crate) fn client_config(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", &self.client_id);
        c.set("socket.timeout.ms", self.timeout.as_millis().max(10).to_string());
        for (k, v) in defaults {
            c.set(*k, v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Checks what can be checked without a broker.
    pub(crate) fn validate(&self) -> super::Result<()> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(super::Error::Invalid {
                what: "bootstrap servers".into(),
                reason: "empty (expected host:port[,host:port…])".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_override_role_defaults() {
        let cfg = KafkaClientConfig::new("h:1").with_property("linger.ms", "7");
        let c = cfg.client_config(&[("linger.ms", "5".into()), ("acks", "all".into())]);
        assert_eq!(c.get("linger.ms"), Some("7"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("bootstrap.servers"), Some("h:1"));
        assert_eq!(c.get("client.id"), Some("smack"));
    }

    #[test]
    fn empty_bootstrap_is_refused() {
        let e = KafkaClientConfig::new(" ").validate().unwrap_err().to_string();
        assert!(e.contains("bootstrap servers"), "{e}");
    }
}
