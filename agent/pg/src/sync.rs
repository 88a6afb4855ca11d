//! Synchronous replication (`synchronous_mode`): which standbys the leader makes
//! synchronous, and in which order `synchronous_standby_names` and the `/sync` key change.
//!
//! The safety rule (Patroni's): only members listed in `/sync` may be promoted
//! automatically, so every commit acknowledged to a client must be on every member listed
//! there. That holds if
//! - `synchronous_standby_names` always requires an acknowledgement from *every* listed
//!   standby (`FIRST n (s1, ..., sn)` with exactly n names), and
//! - a standby is added to `/sync` only after PostgreSQL reports it `sync` and
//!   streaming (caught up, and acknowledging every commit since), and
//! - a standby is removed from `/sync` before it is removed from
//!   `synchronous_standby_names`.
//!
//! Everything here is pure; the executor reads the probe and the DCS, calls [`plan`],
//! and carries out the steps in the order given.

use crate::sql::ReplicationRow;
use warden_consensus::dynamic_config::SynchronousMode;
use warden_consensus::types::SyncState;

/// A standby connected to the leader, as `pg_stat_replication` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    pub name: String,
    /// `state = 'streaming'` (caught up; not `catchup` or `startup`).
    pub streaming: bool,
    /// PostgreSQL counts it as synchronous right now (`sync_state = 'sync'`). Not
    /// `quorum`: under `ANY k (...)` (quorum mode's names) one standby's
    /// acknowledgement does not mean every other's.
    pub sync: bool,
    /// Bytes behind the leader's current WAL position (flush position), if known.
    pub lag: Option<u64>,
    /// Tagged `nosync`: never made synchronous.
    pub nosync: bool,
    /// Tagged `nofailover`: in quorum mode a voter only when needed for the count.
    pub nofailover: bool,
    /// The `sync_priority` tag: higher is preferred; 0 means never (as `nosync`).
    pub priority: u32,
}

/// A member's tags that matter for synchronous replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTags {
    pub nosync: bool,
    pub nofailover: bool,
    pub priority: u32,
}

impl Standby {
    /// From a `pg_stat_replication` row; `None` for rows that are not cluster members.
    /// `synchronous_commit` is the primary's: the lag is measured on the position a
    /// commit waits for (see [`ReplicationRow::acknowledged`]).
    pub fn from_row(
        row: &ReplicationRow,
        leader_wal: u64,
        synchronous_commit: Option<&str>,
        member: impl Fn(&str) -> Option<SyncTags>,
    ) -> Option<Standby> {
        let name = row.application_name.clone()?;
        let tags = member(&name)?;
        Some(Standby {
            streaming: row.state.as_deref() == Some("streaming"),
            sync: row.sync_state.as_deref() == Some("sync"),
            lag: row
                .acknowledged(synchronous_commit)
                .map(|f| leader_wal.saturating_sub(f)),
            nosync: tags.nosync,
            nofailover: tags.nofailover,
            priority: tags.priority,
            name,
        })
    }
}

/// The settings that govern the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    pub mode: SynchronousMode,
    pub strict: bool,
    pub node_count: u32,
    /// `maximum_lag_on_syncnode`; negative: no limit.
    pub max_lag: i64,
}

/// What the leader should do this turn, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// First: shrink `/sync` to these (removing standbys that are no longer wanted),
    /// if different from what it holds.
    pub shrink_key_to: Option<Vec<String>>,
    /// Then: `synchronous_standby_names` (`""`: asynchronous).
    pub names: String,
    /// Last: grow `/sync` to these (adding standbys PostgreSQL confirms as synchronous).
    pub grow_key_to: Option<Vec<String>>,
}

/// The standbys that may be made synchronous (in either mode): streaming, not `nosync`,
/// `sync_priority` above 0, within `maximum_lag_on_syncnode`.
pub fn eligible(standbys: &[Standby], settings: SyncSettings) -> Vec<&Standby> {
    standbys
        .iter()
        .filter(|s| s.streaming && !s.nosync && s.priority > 0)
        .filter(|s| {
            settings.max_lag < 0
                || s.lag
                    .is_some_and(|l| i64::try_from(l).is_ok_and(|l| l <= settings.max_lag))
        })
        .collect()
}

/// The standbys the leader wants synchronous: [`eligible`] ones, the current
/// synchronous ones first (no churn), then by `sync_priority`, lag and name. At most
/// `node_count`.
pub fn pick(standbys: &[Standby], settings: SyncSettings) -> Vec<String> {
    let mut eligible = eligible(standbys, settings);
    eligible.sort_by(|a, b| {
        b.sync
            .cmp(&a.sync)
            .then(b.priority.cmp(&a.priority))
            .then(a.lag.unwrap_or(u64::MAX).cmp(&b.lag.unwrap_or(u64::MAX)))
            .then(a.name.cmp(&b.name))
    });
    let n = usize::try_from(settings.node_count.max(1)).unwrap_or(1);
    let mut names: Vec<String> = eligible
        .into_iter()
        .take(n)
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

/// `synchronous_standby_names` requiring every one of `names` to acknowledge. Empty:
/// `*` in strict mode (no commit without some standby; none is promotable), else `""`.
///
/// Written exactly as Patroni writes it, since monitoring compares the text: names
/// sorted, quoted only where PostgreSQL needs it, no spaces; one name bare (`a`, which
/// PostgreSQL reads as `FIRST 1 (a)`), several as `n (a,b)` (`FIRST n`, n = all).
pub fn render_names(names: &[String], strict: bool) -> String {
    if names.is_empty() {
        return if strict { "*".into() } else { String::new() };
    }
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    let list = standby_list(sorted.into_iter());
    if names.len() == 1 {
        list
    } else {
        format!("{} ({list})", names.len())
    }
}

/// Standby names joined by `,` as Patroni joins them, each quoted only when needed.
pub(crate) fn standby_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names
        .map(|n| quote_standby_name(n))
        .collect::<Vec<_>>()
        .join(",")
}

/// A name as written in `synchronous_standby_names`: bare when PostgreSQL's parser
/// takes it as it is (`[A-Za-z_][A-Za-z_0-9$]*`, not the keywords `first`/`any`),
/// else double-quoted with embedded quotes doubled (Patroni's rule).
fn quote_standby_name(name: &str) -> String {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !name.eq_ignore_ascii_case("first")
        && !name.eq_ignore_ascii_case("any");
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `synchronous_standby_names` for a primary started before its leader turn chose any
/// (e.g. the agent restarted while holding the key): every standby `/sync` lists for us
/// must acknowledge each commit, the strictest reading of the key in either mode, so no
/// commit is acknowledged that a listed standby (one that may be promoted) lacks. The
/// next turn's plan relaxes it as the mode allows.
pub fn names_until_planned(sync: Option<&SyncState>, me: &str, strict: bool) -> String {
    let listed: Vec<String> = sync
        .filter(|s| s.leader.as_deref() == Some(me))
        .map(|s| s.standbys().into_iter().map(str::to_string).collect())
        .unwrap_or_default();
    render_names(&listed, strict)
}

/// The plan for this turn, given the standbys now in `/sync` (`in_key`).
pub fn plan(standbys: &[Standby], in_key: &[String], settings: SyncSettings) -> Plan {
    let wanted = pick(standbys, settings);
    let mut kept: Vec<String> = in_key
        .iter()
        .filter(|n| wanted.contains(n))
        .cloned()
        .collect();
    kept.sort();
    let mut current: Vec<String> = in_key.to_vec();
    current.sort();
    let shrink_key_to = (kept != current).then(|| kept.clone());
    // Confirmed: wanted, reported synchronous and streaming by PostgreSQL. (The names
    // just written may not be in force yet: they are confirmed at a later turn.)
    let mut grown = kept.clone();
    for s in standbys {
        if wanted.contains(&s.name) && s.sync && s.streaming && !grown.contains(&s.name) {
            grown.push(s.name.clone());
        }
    }
    grown.sort();
    let grow_key_to = (grown != kept).then_some(grown);
    Plan {
        shrink_key_to,
        names: render_names(&wanted, settings.strict),
        grow_key_to,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lag_is_measured_where_commits_wait() {
        let row = ReplicationRow {
            usename: None,
            application_name: Some("b".into()),
            client_addr: None,
            state: Some("streaming".into()),
            sync_state: Some("sync".into()),
            sync_priority: Some(1),
            write_lsn: Some(900),
            flush_lsn: Some(800),
            replay_lsn: Some(100),
        };
        let tags = |_: &str| {
            Some(SyncTags {
                nosync: false,
                nofailover: false,
                priority: 1,
            })
        };
        let lag = |commit: Option<&str>| Standby::from_row(&row, 1000, commit, tags).unwrap().lag;
        // Replay paused: only remote_apply commits wait for it, and only there is it lag.
        assert_eq!(lag(Some("remote_apply")), Some(900));
        assert_eq!(lag(Some("remote_write")), Some(100));
        assert_eq!(lag(Some("on")), Some(200));
        assert_eq!(lag(None), Some(200));
    }

    #[test]
    fn names_are_rendered_as_patroni_renders_them() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(render_names(&list(&["b", "a"]), false), "2 (a,b)");
        assert_eq!(render_names(&list(&["node1"]), false), "node1");
        assert_eq!(render_names(&[], true), "*");
        assert_eq!(render_names(&[], false), "");
        let odd = list(&["node-1", "a\"b", "any", "Node_2$"]);
        let text = render_names(&odd, false);
        assert_eq!(text, r#"4 (Node_2$,"a""b","any","node-1")"#);
        // PostgreSQL's reading of it: all four, each required.
        let parsed = crate::quorum::Names::parse(&text).unwrap();
        assert_eq!(parsed.count, 4);
        assert_eq!(parsed.standbys.len(), 4);
        assert!(parsed.standbys.contains("a\"b"));
    }

    use super::*;

    fn sb(name: &str, streaming: bool, sync: bool, lag: u64) -> Standby {
        Standby {
            name: name.into(),
            streaming,
            sync,
            lag: Some(lag),
            nosync: false,
            nofailover: false,
            priority: 1,
        }
    }

    #[test]
    fn a_primary_started_before_planning_waits_for_every_standby_listed_for_it() {
        let key: SyncState =
            serde_json::from_str(r#"{"leader":"n1","quorum":1,"sync_standby":"n2,n3"}"#).unwrap();
        assert_eq!(names_until_planned(Some(&key), "n1", false), "2 (n2,n3)");
        // Listed for another leader: nothing of ours to protect.
        assert_eq!(names_until_planned(Some(&key), "n2", false), "");
        assert_eq!(names_until_planned(None, "n1", true), "*");
    }

    fn settings(count: u32, strict: bool) -> SyncSettings {
        SyncSettings {
            mode: SynchronousMode::On,
            strict,
            node_count: count,
            max_lag: -1,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_new_standby_is_named_first_and_enters_the_key_only_once_confirmed() {
        let s = [sb("b", true, false, 0)];
        let p = plan(&s, &[], settings(1, false));
        assert_eq!(p.names, "b");
        assert_eq!(p.shrink_key_to, None);
        assert_eq!(p.grow_key_to, None, "not confirmed yet");
        let s = [sb("b", true, true, 0)];
        let p = plan(&s, &[], settings(1, false));
        assert_eq!(p.grow_key_to, Some(names(&["b"])));
    }

    #[test]
    fn a_disconnected_standby_leaves_the_key_before_the_names() {
        // b is gone, c streams: b must leave /sync first; c is named, not yet in /sync.
        let s = [sb("c", true, false, 0)];
        let p = plan(&s, &names(&["b"]), settings(1, false));
        assert_eq!(p.shrink_key_to, Some(vec![]));
        assert_eq!(p.names, "c");
        assert_eq!(p.grow_key_to, None);
    }

    #[test]
    fn no_candidate_means_async_or_blocked_in_strict_mode() {
        let p = plan(&[], &names(&["b"]), settings(1, false));
        assert_eq!(p.shrink_key_to, Some(vec![]));
        assert_eq!(p.names, "");
        let p = plan(&[], &[], settings(1, true));
        assert_eq!(p.names, "*");
        assert_eq!(p.shrink_key_to, None);
    }

    #[test]
    fn current_sync_standby_is_kept_over_a_higher_priority_newcomer() {
        let mut c = sb("c", true, false, 0);
        c.priority = 5;
        let s = [sb("b", true, true, 0), c];
        let p = plan(&s, &names(&["b"]), settings(1, false));
        assert_eq!(p.names, "b");
        assert_eq!((p.shrink_key_to, p.grow_key_to), (None, None));
    }

    #[test]
    fn nosync_priority_zero_lagging_and_catching_up_standbys_are_not_picked() {
        let mut nosync = sb("a", true, false, 0);
        nosync.nosync = true;
        let mut zero = sb("b", true, false, 0);
        zero.priority = 0;
        let lagging = sb("c", true, false, 10_000);
        let catchup = sb("d", false, false, 0);
        let mut st = settings(4, false);
        st.max_lag = 1000;
        assert!(pick(&[nosync, zero, lagging, catchup], st).is_empty());
    }

    #[test]
    fn two_sync_standbys_are_both_required() {
        let s = [
            sb("b", true, true, 0),
            sb("c", true, true, 5),
            sb("d", true, false, 1),
        ];
        let p = plan(&s, &names(&["b"]), settings(2, false));
        assert_eq!(p.names, "2 (b,c)");
        assert_eq!(p.grow_key_to, Some(names(&["b", "c"])));
    }
}
