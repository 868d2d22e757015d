//! Dead letters: the topic a source's bad records go to, the metric label of
//! a reason, and the identity that keeps a replay from sending the same dead
//! letter twice.
//!
//! A dead letter is the record as it came (or, for a late row, the row
//! re-encoded as JSON) with two headers: the reason
//! ([`smack_connectors::kafka::DLQ_REASON_HEADER`]) and where it came from
//! ([`smack_connectors::kafka::DLQ_SOURCE_HEADER`]: `topic/partition@offset`
//! for a record that did not decode, `topic/partition` for a late row). Its
//! identity is that source header and the payload: a replay after a crash
//! produces the same identities, so the task skips the ones the crashed run
//! already sent after its last checkpoint.

use std::collections::HashSet;

/// The dead-letter topic of `source` in `pipeline`: `<pipeline>.<source>.dead-letter`.
pub fn dead_letter_topic(pipeline: &str, source: &str) -> String {
    format!("{pipeline}.{source}.dead-letter")
}

/// The reason of a record that did not decode.
pub fn decode_reason(why: &str) -> String {
    format!("does not decode: {why}")
}

/// The metric label of a dead letter's reason (a small fixed set).
pub fn reason_label(reason: &str) -> &'static str {
    if reason.starts_with("does not decode") {
        "decode"
    } else if reason.starts_with("late") {
        "late"
    } else if reason.contains("event time is null") {
        "no-event-time"
    } else {
        "other"
    }
}

/// The source header of a late row: `topic/partition`.
pub fn late_source(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The partition named by a source header (`topic/partition[@offset]`),
/// when its topic is `topic`.
pub fn source_partition(header: &str, topic: &str) -> Option<i32> {
    let rest = header.strip_prefix(topic)?.strip_prefix('/')?;
    let p = rest.split('@').next()?;
    p.parse().ok()
}

/// Dead letters already in the topic (sent after the last checkpoint by a
/// run that crashed): a replay skips each one once.
#[derive(Debug, Default)]
pub struct SentAlready {
    seen: HashSet<(String, Vec<u8>)>,
}

impl SentAlready {
    /// Remembers a dead letter found in the topic.
    pub fn insert(&mut self, source_header: String, payload: Vec<u8>) {
        self.seen.insert((source_header, payload));
    }

    /// True (once) when this dead letter was sent already; it is then forgotten,
    /// so a second identical record of the replay is still sent.
    pub fn take(&mut self, source_header: &str, payload: &[u8]) -> bool {
        if self.seen.is_empty() {
            return false;
        }
        self.seen.remove(&(source_header.to_string(), payload.to_vec()))
    }

    /// How many are still remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_pipeline_and_source() {
        assert_eq!(dead_letter_topic("fraud-detection", "transactions"), "fraud-detection.transactions.dead-letter");
    }

    #[test]
    fn reasons_map_to_few_labels() {
        assert_eq!(reason_label("late for stage s: event time 3 falls in window [0, 1)"), "late");
        assert_eq!(reason_label("stage s: the event time is null"), "no-event-time");
        assert_eq!(reason_label("does not decode: field amount: expected a number"), "decode");
        assert_eq!(reason_label("whatever"), "other");
    }

    #[test]
    fn source_headers_name_their_partition() {
        assert_eq!(source_partition("tx/3@17", "tx"), Some(3));
        assert_eq!(source_partition(&late_source("tx", 5), "tx"), Some(5));
        assert_eq!(source_partition("tx2/3@17", "tx"), None);
        assert_eq!(source_partition("tx/x@1", "tx"), None);
    }

    #[test]
    fn each_sent_dead_letter_is_skipped_once() {
        let mut s = SentAlready::default();
        assert!(!s.take("t/0@1", b"x"));
        s.insert("t/0@1".into(), b"x".to_vec());
        s.insert("t/0".into(), b"{}".to_vec());
        assert_eq!(s.len(), 2);
        assert!(!s.take("t/0@2", b"x"));
        assert!(s.take("t/0@1", b"x"));
        assert!(!s.take("t/0@1", b"x"), "only once");
        assert!(s.take("t/0", b"{}"));
        assert!(s.is_empty());
    }
}
