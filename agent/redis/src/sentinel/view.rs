//! What the port answers from: the daemon's DCS view of the cluster ([`SentinelView`]),
//! and the Sentinel events that follow from one view to the next ([`EventTracker`]).

use std::time::Instant;

/// An address plus the run id Sentinel shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// IP (or host name) clients connect to.
    pub ip: String,
    /// TCP port.
    pub port: u16,
    /// 40 hexadecimal characters, as Redis run ids are ([`run_id_for`] derives one).
    pub run_id: String,
}

/// A replica of the primary, as its member key reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Where it listens and its run id.
    pub instance: Instance,
    /// `slave_repl_offset`.
    pub offset: u64,
    /// `master_link_status:up`.
    pub link_up: bool,
    /// `false` when its agent's member key is gone or says Redis is not running: shown as
    /// Sentinel shows a replica it cannot reach (`s_down,slave,disconnected`).
    pub reachable: bool,
    /// `replica-priority` (0: never promoted).
    pub priority: u32,
}

/// The cluster as this agent last read it from the DCS; the daemon publishes a new one
/// after each DCS read (e.g. through `tokio::sync::watch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelView {
    /// The service name clients ask for (`mymaster`): Patroni's `scope`.
    pub master_name: String,
    /// The DCS answered within the agent's last loop (`false` once the agent lost
    /// etcd): nothing read before that is offered as the current primary.
    pub fresh: bool,
    /// The leader key's holder, when there is one and its member key names an address.
    pub primary: Option<Instance>,
    /// The replicas following the primary.
    pub replicas: Vec<Replica>,
    /// The other agents' Sentinel ports (not this one).
    pub sentinels: Vec<Instance>,
    /// This agent's Sentinel run id (`SENTINEL MYID`).
    pub my_id: String,
    /// `config-epoch`: e.g. the newest timeline (one per promotion, never reused).
    pub epoch: u64,
    /// `quorum` shown in the master record: a majority of the agents.
    pub quorum: u32,
    /// `down-after-milliseconds`: the leader key's TTL in ms.
    pub down_after_ms: u64,
    /// `failover-timeout` in ms.
    pub failover_timeout_ms: u64,
    /// When the DCS was last read successfully (the base of Sentinel's "ms ago" fields).
    pub refreshed_at: Instant,
    /// When the current primary took the leader key, if known (`role-reported-time`).
    pub primary_since: Option<Instant>,
}

impl SentinelView {
    /// A view with no cluster information yet: not fresh, so lookups answer "I don't know".
    pub fn unknown(master_name: impl Into<String>, my_id: impl Into<String>) -> SentinelView {
        SentinelView {
            master_name: master_name.into(),
            fresh: false,
            primary: None,
            replicas: Vec::new(),
            sentinels: Vec::new(),
            my_id: my_id.into(),
            epoch: 0,
            quorum: 1,
            down_after_ms: 30_000,
            failover_timeout_ms: 180_000,
            refreshed_at: Instant::now(),
            primary_since: None,
        }
    }

    /// The primary a client may be sent to: only from a fresh view with a leader.
    pub fn current_primary(&self) -> Option<&Instance> {
        if self.fresh {
            self.primary.as_ref()
        } else {
            None
        }
    }
}

/// A run id for an agent: 40 hex characters derived from its member name, stable across
/// restarts so clients and peers see the same id for the same agent.
pub fn run_id_for(member_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(member_name.as_bytes());
    let mut id = hex::encode(digest);
    id.truncate(40);
    id
}

/// One Sentinel event: the channel is the event type (`+switch-master`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Channel name, e.g. `+switch-master`.
    pub channel: String,
    /// The message, formatted as Sentinel does.
    pub payload: String,
}

impl Event {
    /// `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>`.
    pub fn switch_master(name: &str, old: &Instance, new: &Instance) -> Event {
        Event {
            channel: "+switch-master".into(),
            payload: format!("{name} {} {} {} {}", old.ip, old.port, new.ip, new.port),
        }
    }

    /// `<type> master <name> <ip> <port>` (e.g. `+sdown`, `-sdown`, `+odown`).
    pub fn master_event(kind: &str, name: &str, primary: &Instance) -> Event {
        Event {
            channel: kind.into(),
            payload: format!("master {name} {} {}", primary.ip, primary.port),
        }
    }

    /// `<type> slave <ip:port> <ip> <port> @ <name> <master-ip> <master-port>`.
    pub fn replica_event(kind: &str, replica: &Instance, name: &str, primary: &Instance) -> Event {
        Event {
            channel: kind.into(),
            payload: format!(
                "slave {ip}:{port} {ip} {port} @ {name} {} {}",
                primary.ip,
                primary.port,
                ip = replica.ip,
                port = replica.port
            ),
        }
    }
}

/// Turns successive views into the events a Sentinel would have published in between.
///
/// It remembers the last primary it announced, so a primary change seen across a stale or
/// leaderless stretch still yields `+switch-master` from the old address to the new one.
#[derive(Debug, Default)]
pub struct EventTracker {
    announced: Option<Instance>,
    primary_down: bool,
    epoch: Option<u64>,
    replicas: Vec<(Instance, bool)>,
}

impl EventTracker {
    /// The events between the previous view given and `view`, in Sentinel's order.
    pub fn update(&mut self, view: &SentinelView) -> Vec<Event> {
        let mut events = Vec::new();
        let name = &view.master_name;
        match (view.current_primary(), self.announced.clone()) {
            (Some(new), Some(old)) if new.ip != old.ip || new.port != old.port => {
                if self.epoch.is_some_and(|e| view.epoch > e) {
                    events.push(Event {
                        channel: "+new-epoch".into(),
                        payload: view.epoch.to_string(),
                    });
                }
                events.push(Event::switch_master(name, &old, new));
                self.announced = Some(new.clone());
                self.primary_down = false;
                self.replicas.clear();
            }
            (Some(same), Some(_)) => {
                if self.primary_down {
                    events.push(Event::master_event("-sdown", name, same));
                    self.primary_down = false;
                }
            }
            (Some(first), None) => self.announced = Some(first.clone()),
            (None, Some(old)) => {
                if !self.primary_down {
                    events.push(Event::master_event("+sdown", name, &old));
                    self.primary_down = true;
                }
            }
            (None, None) => {}
        }
        if view.fresh {
            self.epoch = Some(view.epoch);
        }
        if let Some(primary) = view.current_primary() {
            self.replica_events(view, primary, &mut events);
        }
        events
    }

    fn replica_events(&mut self, view: &SentinelView, primary: &Instance, events: &mut Vec<Event>) {
        let name = &view.master_name;
        let mut next = Vec::with_capacity(view.replicas.len());
        for replica in &view.replicas {
            let up = replica.reachable;
            let known = self
                .replicas
                .iter()
                .find(|(i, _)| i.ip == replica.instance.ip && i.port == replica.instance.port);
            match known {
                None => events.push(Event::replica_event(
                    "+slave",
                    &replica.instance,
                    name,
                    primary,
                )),
                Some((_, was_up)) if *was_up && !up => {
                    events.push(Event::replica_event(
                        "+sdown",
                        &replica.instance,
                        name,
                        primary,
                    ));
                }
                Some((_, was_up)) if !*was_up && up => {
                    events.push(Event::replica_event(
                        "-sdown",
                        &replica.instance,
                        name,
                        primary,
                    ));
                }
                Some(_) => {}
            }
            next.push((replica.instance.clone(), up));
        }
        self.replicas = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(port: u16) -> Instance {
        Instance {
            ip: "10.0.0.1".into(),
            port,
            run_id: run_id_for(&port.to_string()),
        }
    }

    fn view(primary: Option<u16>, fresh: bool, epoch: u64) -> SentinelView {
        SentinelView {
            fresh,
            primary: primary.map(inst),
            epoch,
            ..SentinelView::unknown("m", "x")
        }
    }

    #[test]
    fn promotion_is_one_switch_master_even_across_a_stale_gap() {
        let mut t = EventTracker::default();
        assert!(t.update(&view(Some(1), true, 1)).is_empty());
        let down = t.update(&view(Some(1), false, 1));
        assert_eq!(down, vec![Event::master_event("+sdown", "m", &inst(1))]);
        assert!(
            t.update(&view(None, true, 1)).is_empty(),
            "sdown is said once"
        );
        let switched = t.update(&view(Some(2), true, 2));
        assert_eq!(
            switched,
            vec![
                Event {
                    channel: "+new-epoch".into(),
                    payload: "2".into()
                },
                Event {
                    channel: "+switch-master".into(),
                    payload: "m 10.0.0.1 1 10.0.0.1 2".into()
                }
            ]
        );
        assert!(t.update(&view(Some(2), true, 2)).is_empty());
    }

    #[test]
    fn stale_then_back_with_the_same_primary_is_sdown_then_minus_sdown() {
        let mut t = EventTracker::default();
        t.update(&view(Some(1), true, 1));
        assert_eq!(t.update(&view(Some(1), false, 1))[0].channel, "+sdown");
        assert_eq!(
            t.update(&view(Some(1), true, 1)),
            vec![Event::master_event("-sdown", "m", &inst(1))]
        );
    }

    #[test]
    fn replicas_appear_and_go_down_and_up() {
        let mut t = EventTracker::default();
        let mut v = view(Some(1), true, 1);
        let r = Replica {
            instance: inst(2),
            offset: 0,
            link_up: true,
            reachable: true,
            priority: 100,
        };
        v.replicas.push(r);
        let e = t.update(&v);
        assert_eq!(
            e,
            vec![Event::replica_event("+slave", &inst(2), "m", &inst(1))]
        );
        assert_eq!(e[0].payload, "slave 10.0.0.1:2 10.0.0.1 2 @ m 10.0.0.1 1");
        v.replicas[0].reachable = false;
        assert_eq!(t.update(&v)[0].channel, "+sdown");
        v.replicas[0].reachable = true;
        assert_eq!(t.update(&v)[0].channel, "-sdown");
    }

    #[test]
    fn run_ids_look_like_redis_ones() {
        let id = run_id_for("node1");
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, run_id_for("node1"));
        assert_ne!(id, run_id_for("node2"));
    }
}
