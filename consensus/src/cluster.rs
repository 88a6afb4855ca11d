//! A typed view of everything under the cluster prefix, built from one snapshot.
//!
//! Bad values are not fatal: a key that does not parse is left out of the view and
//! reported in `errors` with the key's name, so one corrupt member cannot stop the
//! cluster from being managed, and operators see exactly which key is wrong.

use crate::dcs::{KeyValue, Snapshot};
use crate::dynamic_config::DynamicConfig;
use crate::keys::Keys;
use crate::types::{Failover, HistoryEntry, Member, Status, SyncState};
use std::collections::BTreeMap;

/// The largest value of a cluster key that is read (a member key or the config is
/// a few KiB; `/history` grows by a line per failover).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The most member keys read; more are reported and ignored.
pub const MAX_MEMBERS: usize = 1024;

/// A parsed value with the revision needed to compare-and-swap it.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// The leader key: holder's name plus the revisions that make up the fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: String,
    /// Fencing token: bumps every time a new leader key is created.
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// Store revision of the snapshot.
    pub revision: i64,
    /// `None`: no `initialize` key; `Some("")`: bootstrap race in progress.
    pub initialize: Option<String>,
    pub config: Option<Versioned<DynamicConfig>>,
    /// The `config` key exactly as stored (the writer's key names and values), when it
    /// is JSON; `GET /config` serves this, as Patroni does.
    pub config_raw: Option<serde_json::Value>,
    /// The `config` key exists but is not a configuration Warden can read (see
    /// `errors`): the agents keep the last valid one rather than fall back to defaults.
    pub config_invalid: bool,
    pub leader: Option<LeaderKey>,
    pub members: BTreeMap<String, Versioned<Member>>,
    pub failover: Option<Versioned<Failover>>,
    pub sync: Option<Versioned<SyncState>>,
    pub history: Vec<HistoryEntry>,
    /// `mod_revision` of the `history` key (0: absent), to guard the leader race.
    pub history_revision: i64,
    pub status: Option<Status>,
    pub failsafe: Option<BTreeMap<String, String>>,
    /// `warden/archiver`: the member archiving WAL (Warden only).
    pub archiver: Option<String>,
    /// `warden/transitions`: recent leadership transitions, oldest first (Warden only).
    pub transitions: Vec<crate::transitions::Transition>,
    /// Keys under the prefix whose values could not be understood, with the reason.
    pub errors: Vec<String>,
}

impl Cluster {
    pub fn from_snapshot(keys: &Keys, snap: &Snapshot) -> Self {
        let mut c = Cluster {
            revision: snap.revision,
            ..Cluster::default()
        };
        for kv in &snap.kvs {
            let Some(rel) = keys.relative(&kv.key) else {
                continue;
            };
            if kv.value.len() > MAX_VALUE_BYTES {
                // Nothing Warden or Patroni writes comes near it: not parsed at all.
                c.config_invalid |= rel == "config";
                c.errors.push(format!(
                    "{}: {} bytes, more than any cluster key holds ({MAX_VALUE_BYTES}); ignored",
                    kv.key,
                    kv.value.len()
                ));
                continue;
            }
            if rel.starts_with("members/") && c.members.len() >= MAX_MEMBERS {
                c.errors.push(format!(
                    "{}: more than {MAX_MEMBERS} member keys; ignored",
                    kv.key
                ));
                continue;
            }
            if let Err(e) = c.absorb(rel, kv) {
                c.errors.push(format!("{}: {e}", kv.key));
            }
        }
        c
    }

    fn absorb(&mut self, rel: &str, kv: &KeyValue) -> Result<(), String> {
        let text = kv
            .value_str()
            .map_err(|_| "value is not UTF-8".to_string())?;
        let json = || {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("invalid JSON: {e}"))
        };
        let rev = kv.mod_revision;
        match rel {
            "initialize" => self.initialize = Some(text.to_string()),
            "leader" => {
                if text.is_empty() {
                    return Err("leader key holds an empty name".into());
                }
                self.leader = Some(LeaderKey {
                    name: text.to_string(),
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    lease: kv.lease,
                });
            }
            "config" => {
                // Read leniently, as Patroni does: out-of-range timings are adjusted, not
                // rejected, so a config another tool wrote still applies.
                self.config_invalid = true;
                let raw = json()?;
                self.config_raw = Some(raw.clone());
                let (cfg, adjusted) = DynamicConfig::from_dcs_json(&raw).map_err(|errs| {
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })?;
                for a in adjusted {
                    tracing::debug!(adjustment = %a, "adjusted the DCS config");
                }
                self.config = Some(Versioned {
                    value: cfg,
                    mod_revision: rev,
                });
                self.config_invalid = false;
            }
            "failover" => {
                // Patroni clears the key by writing `{}`; an empty value means the same.
                let f: Failover = if text.trim().is_empty() {
                    Failover::default()
                } else {
                    serde_json::from_str(text).map_err(|e| e.to_string())?
                };
                self.failover = Some(Versioned {
                    value: f,
                    mod_revision: rev,
                });
            }
            "sync" => {
                let value = serde_json::from_str(text).map_err(|e| e.to_string())?;
                self.sync = Some(Versioned {
                    value,
                    mod_revision: rev,
                });
            }
            "history" => {
                // Before parsing: a race guarded by it must see even a bad value change.
                self.history_revision = rev;
                self.history = serde_json::from_str(text).map_err(|e| e.to_string())?;
            }
            "status" => self.status = Some(serde_json::from_str(text).map_err(|e| e.to_string())?),
            "failsafe" => {
                self.failsafe = Some(serde_json::from_str(text).map_err(|e| e.to_string())?)
            }
            "warden/archiver" => {
                if text.is_empty() {
                    return Err("archiver key holds an empty name".into());
                }
                self.archiver = Some(text.to_string());
            }
            "warden/transitions" => {
                self.transitions = serde_json::from_str(text).map_err(|e| e.to_string())?;
            }
            _ => {
                if let Some(name) = rel.strip_prefix("members/") {
                    let m: Member = serde_json::from_str(text).map_err(|e| e.to_string())?;
                    self.members.insert(
                        name.to_string(),
                        Versioned {
                            value: m,
                            mod_revision: rev,
                        },
                    );
                }
                // Other keys are not ours to judge here.
            }
        }
        Ok(())
    }

    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name).map(|v| &v.value)
    }

    /// The dynamic configuration in force: the stored one, or Patroni's defaults.
    pub fn dynamic_config(&self) -> DynamicConfig {
        self.config
            .as_ref()
            .map(|c| c.value.clone())
            .unwrap_or_default()
    }

    pub fn is_paused(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.value.pause)
    }

    /// The latest timeline recorded in `history`, if any.
    pub fn history_timeline(&self) -> Option<u32> {
        self.history.last().map(|h| h.timeline)
    }

    /// The newest timeline the cluster is known to have reached: one past the last
    /// timeline `/history` records as ended, or the highest timeline a member key
    /// reports if that is newer (the promoted node may have died before writing
    /// `/history`). `None` when neither says anything.
    pub fn timeline(&self) -> Option<u32> {
        let from_history = self.history_timeline().map(|t| t.saturating_add(1));
        let from_members = self.members.values().filter_map(|m| m.value.timeline).max();
        from_history.max(from_members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_values_and_too_many_members_are_reported_not_read() {
        let keys = Keys::new("service", "c");
        let mut kvs = vec![KeyValue {
            key: keys.config(),
            value: vec![b' '; MAX_VALUE_BYTES + 1],
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }];
        for i in 0..=MAX_MEMBERS {
            kvs.push(KeyValue {
                key: keys.member(&format!("m{i:05}")),
                value: br#"{"conn_url":"postgres://h:5432/postgres","api_url":"http://h:8008/patroni","state":"running","role":"replica","version":"4.0.1"}"#.to_vec(),
                create_revision: 2,
                mod_revision: 2,
                lease: 0,
            });
        }
        let c = Cluster::from_snapshot(&keys, &Snapshot { revision: 3, kvs });
        assert!(
            c.config.is_none() && c.config_invalid,
            "the last valid one stays"
        );
        assert_eq!(
            c.members.len(),
            MAX_MEMBERS,
            "{:?}",
            &c.errors[..c.errors.len().min(3)]
        );
        assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
        assert!(c.errors[0].contains("bytes, more than any cluster key holds"));
    }

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    #[test]
    fn parses_a_patroni_cluster_and_reports_bad_keys() {
        let keys = Keys::new("/service/", "demo");
        let snap = Snapshot {
            revision: 42,
            kvs: vec![
                kv("/service/demo/initialize", "7312345678901234567", 2),
                kv(
                    "/service/demo/config",
                    r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#,
                    3,
                ),
                KeyValue {
                    lease: 77,
                    ..kv("/service/demo/leader", "node1", 5)
                },
                kv(
                    "/service/demo/members/node1",
                    r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.0.1","timeline":1}"#,
                    6,
                ),
                kv("/service/demo/members/node2", "{not json", 7),
                kv("/service/demo/failover", "{}", 8),
                kv(
                    "/service/demo/history",
                    r#"[[1,25165984,"no recovery target specified","2024-05-01T10:00:00+00:00","node1"]]"#,
                    9,
                ),
                kv("/service/demo/status", r#"{"optime":50331808}"#, 10),
                kv("/service/other/leader", "x", 11),
            ],
        };
        let c = Cluster::from_snapshot(&keys, &snap);
        assert_eq!(c.revision, 42);
        assert_eq!(c.initialize.as_deref(), Some("7312345678901234567"));
        let leader = c.leader.as_ref().unwrap();
        assert_eq!(
            (leader.name.as_str(), leader.create_revision, leader.lease),
            ("node1", 5, 77)
        );
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.errors.len(), 1);
        assert!(
            c.errors[0].starts_with("/service/demo/members/node2: "),
            "{:?}",
            c.errors
        );
        assert!(c.failover.as_ref().unwrap().value.is_empty());
        assert_eq!(c.history_timeline(), Some(1));
        assert_eq!(c.status.as_ref().unwrap().optime, Some(50_331_808));
        assert_eq!(c.dynamic_config().ttl, 30);
        assert!(!c.is_paused());
    }

    #[test]
    fn invalid_config_key_is_reported_not_applied() {
        let keys = Keys::new("service", "demo");
        let snap = Snapshot {
            revision: 1,
            kvs: vec![kv("/service/demo/config", r#"{"ttl":"soon"}"#, 1)],
        };
        let c = Cluster::from_snapshot(&keys, &snap);
        assert!(c.config.is_none());
        assert!(c.errors[0].contains("ttl"), "{:?}", c.errors);
    }

    #[test]
    fn cluster_timeline_is_the_newest_of_history_and_member_keys() {
        let keys = Keys::new("/service/", "demo");
        let member = |tl: u32| {
            format!(
                r#"{{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","version":"4.0.1","timeline":{tl}}}"#
            )
        };
        let snap =
            |kvs: Vec<KeyValue>| Cluster::from_snapshot(&keys, &Snapshot { revision: 1, kvs });
        assert_eq!(snap(vec![]).timeline(), None);
        // /history records timeline 2 as ended: the cluster is on 3.
        let history = kv(
            "/service/demo/history",
            r#"[[1,100,"r",null,"n2"],[2,200,"r",null,"n3"]]"#,
            2,
        );
        let c = snap(vec![
            history.clone(),
            kv("/service/demo/members/n1", &member(1), 3),
        ]);
        assert_eq!(c.timeline(), Some(3));
        // A member already on 4 (its promotion not in /history yet) wins.
        let c = snap(vec![history, kv("/service/demo/members/n1", &member(4), 3)]);
        assert_eq!(c.timeline(), Some(4), "{:?}", c.errors);
        let c = snap(vec![kv("/service/demo/members/n1", &member(1), 3)]);
        assert_eq!(c.timeline(), Some(1));
    }
}
