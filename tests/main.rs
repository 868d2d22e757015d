//! End-to-end tests of smack against real processes: one test binary with
//! modules, so the (heavy) dependencies link once.

mod cassandra;
mod catalog;
mod connectors;
mod dashboard;
mod etcd;
mod kafka;
mod kafka_controllers;
mod kafka_scale;
mod locality;
mod logs;
mod metrics;
mod offers;
mod pipeline_up;
mod scheduler;
mod stage;
mod support;
mod up;
