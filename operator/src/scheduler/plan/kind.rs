//! The kind of a plan, read from its name: the built-in `deploy`, `update`,
//! `recovery` and `decommission`, or a custom plan of the spec.

use std::fmt;

/// What a plan is for. Plans are kept and served by name; this is how the
/// scheduler tells the built-in ones apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlanKind {
    /// Places every pod of the spec.
    Deploy,
    /// Rolls pods whose config changed and deploys added ones.
    Update,
    /// Relaunches failed pods, in place or anew.
    Recovery,
    /// Removes pods: their hook, their tasks, their disks.
    Decommission,
    /// A plan the spec declares, started by `plan start`.
    Custom(String),
}

impl PlanKind {
    /// The kind of the plan named `name`.
    pub fn of(name: &str) -> PlanKind {
        match name {
            "deploy" => PlanKind::Deploy,
            "update" => PlanKind::Update,
            "recovery" => PlanKind::Recovery,
            "decommission" => PlanKind::Decommission,
            other => PlanKind::Custom(other.to_string()),
        }
    }

    /// The plan's name.
    pub fn as_str(&self) -> &str {
        match self {
            PlanKind::Deploy => "deploy",
            PlanKind::Update => "update",
            PlanKind::Recovery => "recovery",
            PlanKind::Decommission => "decommission",
            PlanKind::Custom(name) => name,
        }
    }

    /// Whether the scheduler makes this plan itself.
    pub fn is_built_in(&self) -> bool {
        !matches!(self, PlanKind::Custom(_))
    }
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for PlanKind {
    fn from(name: &str) -> PlanKind {
        PlanKind::of(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_names() {
        for name in ["deploy", "update", "recovery", "decommission", "rebalance"] {
            assert_eq!(PlanKind::of(name).as_str(), name);
        }
        assert!(PlanKind::of("recovery").is_built_in());
        assert_eq!(PlanKind::of("rebalance"), PlanKind::Custom("rebalance".into()));
    }
}
