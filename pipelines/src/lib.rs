//! smack-pipelines: the pipeline YAML spec and its validation, the layout of a
//! pipeline into service specs, and the stage runtime (micro-batches, event
//! time and watermarks, windows, keyed state, checkpoints, DataFusion SQL).
//!
//! Must not depend on: `smack-operator`'s master or agent internals; it hands
//! service specs to the operator through the scheduler's public types only.
//! DataFusion lives here and nowhere else.
//!
//! Nothing is here yet: the spec and runtime arrive with the pipelines issue.
