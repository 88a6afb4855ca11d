//! `warden/transitions` (Warden only): the cluster's recent leadership transitions,
//! each with what the member that became leader measured about it.
//!
//! `/history` says when a promotion forked the history, not how long the cluster was
//! without a primary: this key adds the durations the new leader can honestly know.
//! It is written by that member after its promotion (best effort, by compare-and-swap,
//! never in the way of a turn) and read by `wardenctl dr-report`. Patroni reads only the
//! keys it knows (`leader`, `members/*`, `config`, `history`, ...), so it ignores this
//! one, as it ignores `warden/archiver`.

use serde::{Deserialize, Serialize};

/// The most entries the key keeps; older ones are dropped when a new one is appended.
pub const MAX_TRANSITIONS: usize = 20;

/// Why the new leader was promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The leader key was vacant (its holder failed, or gave it up) and this member won
    /// the race for it.
    Failover,
    /// The `failover` key named this member (`switchover`, or `failover --candidate`).
    Switchover,
    /// This member led a standby cluster and was promoted because the config's
    /// `standby_cluster` section was removed (`promote-cluster`, `edit-config`).
    ClusterPromotion,
    /// A kind written by a newer Warden.
    #[serde(other)]
    Unknown,
}

impl TransitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Switchover => "switchover",
            Self::ClusterPromotion => "cluster_promotion",
            Self::Unknown => "unknown",
        }
    }
}

/// One promotion, as the promoted member saw it. Times are RFC 3339 (UTC); durations
/// are seconds measured on that member's monotonic clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub kind: TransitionKind,
    /// The previous leader (`failover`, `switchover`) or the remote primary's
    /// `host:port` (`cluster_promotion`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The member promoted (the writer).
    pub to: String,
    /// The timeline the promotion started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// When the promotion completed (the database accepted writes).
    pub at: String,
    /// When this member first saw the cause: the leader key vacant (`failover`), the
    /// `failover` key naming it (`switchover`), the `standby_cluster` section gone
    /// (`cluster_promotion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<String>,
    /// Seconds from `detected_at` to the completed promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_to_promoted: Option<f64>,
    /// The leader key's ttl (seconds) then: a failed leader's key expires up to this
    /// long after its last renewal, time no member can see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// `cluster_promotion`: how far the standby leader was behind the remote primary
    /// just before it was promoted (bytes; seconds), as `/patroni` showed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
}

/// `list` with `entry` appended, keeping the newest [`MAX_TRANSITIONS`] (oldest first).
pub fn append(list: &[Transition], entry: Transition) -> Vec<Transition> {
    let keep = list.len().min(MAX_TRANSITIONS - 1);
    let mut out = list[list.len() - keep..].to_vec();
    out.push(entry);
    out
}

/// The newest entry of `kind`.
pub fn last_of(list: &[Transition], kind: TransitionKind) -> Option<&Transition> {
    list.iter().rev().find(|t| t.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(to: &str) -> Transition {
        Transition {
            kind: TransitionKind::Failover,
            from: None,
            to: to.into(),
            timeline: Some(2),
            at: "2026-12-07T19:00:00Z".into(),
            detected_at: None,
            detected_to_promoted: Some(1.5),
            ttl: Some(10),
            lag_bytes: None,
            lag_seconds: None,
        }
    }

    #[test]
    fn append_keeps_the_newest_twenty_oldest_first() {
        let mut list = Vec::new();
        for i in 0..25 {
            list = append(&list, entry(&format!("n{i}")));
            assert_eq!(list.len(), (i + 1).min(MAX_TRANSITIONS));
        }
        assert_eq!(list.first().unwrap().to, "n5");
        assert_eq!(list.last().unwrap().to, "n24");
        // A list longer than the bound (written by hand) is cut too.
        let long: Vec<_> = (0..30).map(|i| entry(&format!("m{i}"))).collect();
        let cut = append(&long, entry("new"));
        assert_eq!(cut.len(), MAX_TRANSITIONS);
        assert_eq!((cut[0].to.as_str(), cut[19].to.as_str()), ("m11", "new"));
    }

    #[test]
    fn reads_unknown_kinds_and_fields_and_finds_the_last_of_a_kind() {
        let text = r#"[{"kind":"failover","to":"n2","at":"t1","ttl":10,"detected_to_promoted":2.5},
            {"kind":"switchover","from":"n2","to":"n1","at":"t2","extra":true},
            {"kind":"teleport","to":"n3","at":"t3"}]"#;
        let list: Vec<Transition> = serde_json::from_str(text).unwrap();
        assert_eq!(list[2].kind, TransitionKind::Unknown);
        assert_eq!(last_of(&list, TransitionKind::Failover).unwrap().to, "n2");
        assert_eq!(
            last_of(&list, TransitionKind::Switchover)
                .unwrap()
                .from
                .as_deref(),
            Some("n2")
        );
        assert!(last_of(&list, TransitionKind::ClusterPromotion).is_none());
        let json = serde_json::to_value(&list[0]).unwrap();
        assert_eq!(json["kind"], "failover");
        assert!(json.get("from").is_none(), "{json}");
    }
}
