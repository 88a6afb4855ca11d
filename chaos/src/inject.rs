//! Injecting one step of the schedule into the running cluster, healing it,
//! and waiting (bounded) for the cluster to converge again.
//!
//! Everything goes through the kit: [`Node`](warden_tests::Node) for agent
//! and PostgreSQL processes, the etcd members of
//! [`EtcdCluster`](warden_tests::EtcdCluster), each node's fault proxies
//! ([`NodeProxies`](warden_tests::NodeProxies)), the REST API over HTTP and
//! PostgreSQL over its port. Every executor heals what it broke on every
//! path, also when a step fails half-way, so the next step (or the final
//! checks) starts from a whole cluster.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use warden_api::SwitchoverRequest;
use warden_tests::wait::poll_until;
use warden_tests::{http, process, sql, Cluster};

use crate::converge;
use crate::events::FaultRecord;
use crate::fault::FaultKind;
use crate::redis_engine;
use crate::schedule::Step;
use crate::workload::{pause, Clock, HaWriter, Probes};

/// Bound for writes through HAProxy to resume once the cluster converged.
const WRITES_RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for restarted etcd members to report healthy.
const ETCD_HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of `POST /switchover` (the agent answers once it is done).
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for the leader to list a synchronous standby (sync mode).
const SYNC_STANDBY_TIMEOUT: Duration = Duration::from_secs(20);
/// `rogue-promote`: bound for both nodes to acknowledge direct writes.
const ROGUE_EVIDENCE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for a killed redis-server to be gone.
const SERVER_KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// `rogue-promote`: acknowledged direct writes wanted from each node.
const ROGUE_EVIDENCE_ACKS: usize = 3;

/// What an executor works with.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub cluster: &'a mut Cluster,
    pub clock: Clock,
    pub writer: &'a HaWriter,
    pub probes: &'a Probes,
    pub stop: &'a AtomicBool,
    pub converge_timeout: Duration,
    /// `synchronous_mode` is on: only a synchronous standby may take a
    /// switchover.
    pub sync: bool,
}

impl Ctx<'_> {
    fn name(&self, i: usize) -> String {
        self.cluster.node(i).name().to_string()
    }

    fn record(&self, step: &Step, target: String, old_primary: usize) -> FaultRecord {
        FaultRecord {
            step: step.index,
            kind: step.kind,
            target,
            old_primary: Some(old_primary),
            injected: self.clock.now(),
            healed: None,
            converged: None,
            converge_error: None,
            error: None,
            notes: Vec::new(),
        }
    }

    fn hold(&self, step: &Step) {
        pause(step.hold(), self.stop);
    }

    fn replicas(&self, primary: usize) -> Vec<usize> {
        (0..self.cluster.nodes().len())
            .filter(|&i| i != primary)
            .collect()
    }

    /// Node index of a database port.
    fn node_of_port(&self, port: u16) -> Option<usize> {
        self.cluster
            .nodes()
            .iter()
            .position(|n| n.pg_port() == port)
    }
}

/// Inject `step` while `primary` is the primary; heal; wait for
/// convergence. Returns the records (the last one carries the convergence)
/// and the primary afterwards, `None` if the cluster did not converge.
pub fn execute(
    ctx: &mut Ctx<'_>,
    step: &Step,
    primary: usize,
) -> (Vec<FaultRecord>, Option<usize>) {
    let mut records = match step.kind {
        FaultKind::RepeatedFailovers => repeated_failovers(ctx, step, primary),
        _ => vec![single(ctx, step, primary)],
    };
    let Some(last) = records.last_mut() else {
        return (records, None);
    };
    let next = settle(ctx, last);
    (records, next)
}

/// One fault: inject, hold, heal. An error is recorded, not returned.
fn single(ctx: &mut Ctx<'_>, step: &Step, primary: usize) -> FaultRecord {
    let mut rec = ctx.record(step, String::new(), primary);
    let result = match step.kind {
        FaultKind::KillPrimary => kill_node(ctx, step, primary, "primary", &mut rec),
        FaultKind::KillReplica => {
            let r = ctx.replicas(primary);
            let victim = r[step.pick as usize % r.len()];
            kill_node(ctx, step, victim, "replica", &mut rec)
        }
        FaultKind::KillPostgres => kill_postgres(ctx, primary, &mut rec),
        FaultKind::FreezeAgent => freeze_agent(ctx, step, primary, &mut rec),
        FaultKind::FreezePostgres => freeze_postgres(ctx, step, primary, &mut rec),
        FaultKind::PartitionPrimary => partition(ctx, step, primary, &mut rec),
        FaultKind::KillEtcdMember | FaultKind::KillEtcdLeader => kill_etcd(ctx, step, &mut rec),
        FaultKind::EtcdOutage => etcd_outage(ctx, step, &mut rec),
        FaultKind::Switchover => switchover(ctx, step, primary, &mut rec),
        FaultKind::RoguePromote => rogue_promote(ctx, step, primary, &mut rec),
        FaultKind::RepeatedFailovers => Err(anyhow!("repeated-failovers is not a single fault")),
    };
    if let Err(e) = result {
        rec.error = Some(format!("{e:#}"));
    }
    if rec.healed.is_none() {
        rec.healed = Some(ctx.clock.now());
    }
    rec
}

/// SIGKILL a node (agent, guard, PostgreSQL), hold, start its agent again.
fn kill_node(
    ctx: &mut Ctx<'_>,
    step: &Step,
    i: usize,
    role: &str,
    rec: &mut FaultRecord,
) -> Result<()> {
    rec.target = format!("{} ({role})", ctx.name(i));
    rec.injected = ctx.clock.now();
    ctx.cluster.node_mut(i).kill_hard();
    ctx.hold(step);
    let r = ctx.cluster.node_mut(i).start();
    rec.healed = Some(ctx.clock.now());
    r
}

/// SIGKILL the primary's postmaster (with Redis members: its redis-server)
/// only; the agent is left to react (restart in place or fail over), so there
/// is nothing to heal.
fn kill_postgres(ctx: &mut Ctx<'_>, i: usize, rec: &mut FaultRecord) -> Result<()> {
    let node = ctx.cluster.node(i);
    if redis_engine::is_redis(ctx.cluster) {
        rec.target = format!("{} (primary's redis-server)", node.name());
        let pid = redis_engine::server_pid(node).context("the primary has no redis-server")?;
        rec.injected = ctx.clock.now();
        kill(Pid::from_raw(pid), Signal::SIGKILL).context("SIGKILL redis-server")?;
        if !process::wait_gone(&[pid], SERVER_KILL_TIMEOUT) {
            bail!("redis-server {pid} survived SIGKILL");
        }
        rec.notes.push(format!("killed redis-server {pid}"));
        return Ok(());
    }
    rec.target = format!("{} (primary's PostgreSQL)", node.name());
    let pid = node
        .postmaster_pid()
        .context("the primary has no postmaster")?;
    rec.injected = ctx.clock.now();
    if !node.kill_postmaster() {
        bail!("postmaster {pid} survived SIGKILL");
    }
    rec.notes.push(format!("killed postmaster {pid}"));
    Ok(())
}

fn freeze_agent(ctx: &mut Ctx<'_>, step: &Step, i: usize, rec: &mut FaultRecord) -> Result<()> {
    rec.target = format!("{} (primary's agent)", ctx.name(i));
    rec.injected = ctx.clock.now();
    ctx.cluster.node(i).signal(Signal::SIGSTOP)?;
    ctx.hold(step);
    let r = ctx.cluster.node(i).signal(Signal::SIGCONT);
    rec.healed = Some(ctx.clock.now());
    r
}

/// SIGSTOP the postmaster (with Redis members: redis-server) first, so it
/// cannot fork, then its children; SIGCONT them all after the hold, each only
/// if it still is a server process (a pid of a process that died meanwhile
/// may have been reused).
fn freeze_postgres(ctx: &mut Ctx<'_>, step: &Step, i: usize, rec: &mut FaultRecord) -> Result<()> {
    let node = ctx.cluster.node(i);
    let redis = redis_engine::is_redis(ctx.cluster);
    let pm = if redis {
        rec.target = format!("{} (primary's redis-server)", node.name());
        redis_engine::server_pid(node).context("the primary has no redis-server")?
    } else {
        rec.target = format!("{} (primary's PostgreSQL)", node.name());
        node.postmaster_pid()
            .context("the primary has no postmaster")?
    };
    rec.injected = ctx.clock.now();
    kill(Pid::from_raw(pm), Signal::SIGSTOP).context("SIGSTOP the server")?;
    let mut frozen = vec![pm];
    for c in process::children(pm) {
        if kill(Pid::from_raw(c), Signal::SIGSTOP).is_ok() {
            frozen.push(c);
        }
    }
    rec.notes
        .push(format!("stopped {} processes", frozen.len()));
    ctx.hold(step);
    for pid in frozen {
        let is_server = if redis {
            redis_engine::is_redis_process(pid)
        } else {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| matches!(c.trim(), "postgres" | "postmaster"))
        };
        if is_server {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
    rec.healed = Some(ctx.clock.now());
    Ok(())
}

/// Cut every proxy of the primary: its etcd client connections, the
/// replication and REST connections its peers open to it. Clients (HAProxy,
/// the probes) still reach it on its real ports.
fn partition(ctx: &mut Ctx<'_>, step: &Step, i: usize, rec: &mut FaultRecord) -> Result<()> {
    rec.target = format!("{} (primary)", ctx.name(i));
    rec.injected = ctx.clock.now();
    ctx.cluster.proxies(i).isolate();
    ctx.hold(step);
    ctx.cluster.proxies(i).heal();
    rec.healed = Some(ctx.clock.now());
    Ok(())
}

fn kill_etcd(ctx: &mut Ctx<'_>, step: &Step, rec: &mut FaultRecord) -> Result<()> {
    let leader = ctx.cluster.etcd().leader_index()?;
    let k = if step.kind == FaultKind::KillEtcdLeader {
        leader
    } else {
        let followers: Vec<usize> = (0..ctx.cluster.etcd().members().len())
            .filter(|&k| k != leader)
            .collect();
        followers[step.pick as usize % followers.len()]
    };
    let name = ctx.cluster.etcd().member(k).name().to_string();
    rec.target = if k == leader {
        format!("{name} (raft leader)")
    } else {
        format!("{name} (follower)")
    };
    rec.injected = ctx.clock.now();
    ctx.cluster.etcd_mut().member_mut(k).kill();
    ctx.hold(step);
    let r = ctx.cluster.etcd_mut().member_mut(k).start();
    rec.healed = Some(ctx.clock.now());
    r?;
    ctx.cluster.etcd_mut().wait_healthy(ETCD_HEALTHY_TIMEOUT)
}

/// SIGKILL every member at once (a sharp instant for the outage), restart
/// them all after the hold; their data directories bring the keys back.
fn etcd_outage(ctx: &mut Ctx<'_>, step: &Step, rec: &mut FaultRecord) -> Result<()> {
    let n = ctx.cluster.etcd().members().len();
    rec.target = format!("all {n} etcd members");
    rec.injected = ctx.clock.now();
    for k in 0..n {
        ctx.cluster.etcd_mut().member_mut(k).kill();
    }
    ctx.hold(step);
    let mut first_err = None;
    for k in 0..n {
        if let Err(e) = ctx.cluster.etcd_mut().member_mut(k).start() {
            first_err.get_or_insert(e);
        }
    }
    rec.healed = Some(ctx.clock.now());
    if let Some(e) = first_err {
        return Err(e);
    }
    ctx.cluster.etcd_mut().wait_healthy(ETCD_HEALTHY_TIMEOUT)
}

/// `POST /switchover {leader, candidate}` to the leader's REST API.
fn switchover(ctx: &mut Ctx<'_>, step: &Step, primary: usize, rec: &mut FaultRecord) -> Result<()> {
    let leader = ctx
        .cluster
        .leader_key()?
        .context("the leader key is vacant")?
        .value;
    let li = ctx
        .cluster
        .index_of(&leader)
        .with_context(|| format!("the leader key names {leader:?}, not a node"))?;
    if li != primary {
        rec.notes.push(format!(
            "leader key holder {leader} is not the last seen primary"
        ));
    }
    rec.old_primary = Some(li);
    let r = if ctx.sync {
        sync_standbys(ctx, li)?
    } else {
        ctx.replicas(li)
    };
    let candidate = ctx.name(r[step.pick as usize % r.len()]);
    rec.target = format!("{leader} -> {candidate}");
    let url = format!("{}/switchover", ctx.cluster.node(li).api_url());
    let body = serde_json::to_string(&SwitchoverRequest {
        leader: Some(leader),
        candidate: Some(candidate),
        scheduled_at: None,
    })?;
    rec.injected = ctx.clock.now();
    let resp = http::send(
        "POST",
        &url,
        Some(body.as_bytes()),
        None,
        SWITCHOVER_TIMEOUT,
    )?;
    rec.healed = Some(ctx.clock.now());
    rec.notes.push(format!(
        "POST /switchover answered {} after {:.2} s: {}",
        resp.status,
        (rec.healed.unwrap_or(0) - rec.injected) as f64 / 1e6,
        resp.body.trim()
    ));
    if resp.status != 200 {
        bail!("switchover refused: {} {}", resp.status, resp.body.trim());
    }
    Ok(())
}

/// The members `/cluster` (asked of the leader) lists as synchronous (or
/// quorum) standbys, in node order: in synchronous mode only they may take over.
fn sync_standbys(ctx: &Ctx<'_>, leader: usize) -> Result<Vec<usize>> {
    let api = ctx.cluster.node(leader);
    let found = poll_until(SYNC_STANDBY_TIMEOUT, || {
        let mut idx: Vec<usize> = api
            .cluster_status()?
            .members
            .iter()
            // Patroni's names: `quorum_standby` under `synchronous_mode: quorum`.
            .filter(|m| m.is_sync())
            .filter_map(|m| ctx.cluster.index_of(&m.name))
            .collect();
        idx.sort_unstable();
        (!idx.is_empty()).then_some(idx)
    });
    found.with_context(|| {
        format!(
            "{} lists no synchronous standby within {SYNC_STANDBY_TIMEOUT:?}",
            api.name()
        )
    })
}

/// TEST-ONLY: promote a replica behind the agents' back.
///
/// The replica's agent is frozen first, so it cannot notice and demote its
/// server while we watch; then `pg_promote()` over SQL (Redis: `REPLICAOF NO
/// ONE`) makes it a second writable primary beside the real one. The fault holds
/// until the direct-write probes have evidence from both nodes (several
/// acknowledged writes each, after the promotion) — so the split brain is in
/// the log by construction, not by luck of timing — then the agent is
/// resumed and left to clean up.
fn rogue_promote(
    ctx: &mut Ctx<'_>,
    step: &Step,
    primary: usize,
    rec: &mut FaultRecord,
) -> Result<()> {
    let r = ctx.replicas(primary);
    let rogue = r[step.pick as usize % r.len()];
    rec.target = format!(
        "{} (replica promoted behind its agent's back)",
        ctx.name(rogue)
    );
    let port = ctx.cluster.node(rogue).pg_port();
    ctx.cluster.node(rogue).signal(Signal::SIGSTOP)?;
    let t = Instant::now();
    rec.injected = ctx.clock.us(t);
    let redis = redis_engine::is_redis(ctx.cluster);
    let result = (|| -> Result<()> {
        if redis {
            redis_engine::promote_behind_agent(port)?;
        } else {
            let promoted = sql::query_text(port, "SELECT pg_promote(true, 4)::text")?;
            if promoted.as_deref() != Some("true") {
                bail!("pg_promote() returned {promoted:?}");
            }
        }
        let evidence = poll_until(ROGUE_EVIDENCE_TIMEOUT, || {
            let acks = ctx.probes.acks();
            let count = |n: usize| {
                acks.iter()
                    .filter(|a| a.node == n && a.sent >= rec.injected)
                    .count()
            };
            (count(rogue) >= ROGUE_EVIDENCE_ACKS && count(primary) >= ROGUE_EVIDENCE_ACKS)
                .then_some(())
        });
        if evidence.is_none() {
            bail!(
                "the probes did not see both {} and {} accept writes within {ROGUE_EVIDENCE_TIMEOUT:?}",
                ctx.name(rogue),
                ctx.name(primary)
            );
        }
        rec.notes.push(format!(
            "both nodes acknowledged direct writes {:.2} s after the promotion",
            t.elapsed().as_secs_f64()
        ));
        ctx.hold(step);
        Ok(())
    })();
    let resumed = ctx.cluster.node(rogue).signal(Signal::SIGCONT);
    rec.healed = Some(ctx.clock.now());
    result.and(resumed)
}

/// Kill the primary; as soon as another node acknowledges a write through
/// HAProxy, restart the victim and kill the new primary; `step.repeat` times.
fn repeated_failovers(ctx: &mut Ctx<'_>, step: &Step, primary: usize) -> Vec<FaultRecord> {
    let bound = 3 * ctx.cluster.ttl() + Duration::from_secs(10);
    let mut victim = primary;
    let mut out = Vec::new();
    for j in 1..=step.repeat {
        let mut rec = ctx.record(
            step,
            format!(
                "{} (primary, kill {j} of {})",
                ctx.name(victim),
                step.repeat
            ),
            victim,
        );
        let t = Instant::now();
        rec.injected = ctx.clock.us(t);
        ctx.cluster.node_mut(victim).kill_hard();
        let next = poll_until(bound, || {
            ctx.writer
                .acks_since(t)
                .iter()
                .filter_map(|a| ctx.node_of_port(a.server_port))
                .find(|&n| n != victim)
        });
        let started = ctx.cluster.node_mut(victim).start();
        rec.healed = Some(ctx.clock.now());
        if let Err(e) = started {
            rec.error = Some(format!("restarting {}: {e:#}", ctx.name(victim)));
        }
        match next {
            Some(n) => {
                rec.notes.push(format!("{} took writes", ctx.name(n)));
                let failed = rec.error.is_some();
                out.push(rec);
                if failed {
                    break;
                }
                victim = n;
            }
            None => {
                // Not a failure of the injection: with synchronous mode only a
                // synchronous standby may take over, and after a kill in quick
                // succession there may be none until the victim is back. The
                // checks judge what follows (convergence, lost writes).
                rec.notes.push(format!(
                    "no other node acknowledged a write within {bound:?} of the kill; {} \
                     restarted, no further kills in this step",
                    ctx.name(victim)
                ));
                out.push(rec);
                break;
            }
        }
    }
    out
}

/// Wait for convergence and for writes through HAProxy to resume; record
/// either on `rec`. Returns the primary.
fn settle(ctx: &mut Ctx<'_>, rec: &mut FaultRecord) -> Option<usize> {
    match converge::wait(ctx.cluster, ctx.converge_timeout, ctx.stop) {
        Ok((c, at)) => {
            let resumed = poll_until(WRITES_RESUME_TIMEOUT, || {
                (!ctx.writer.acks_since(at).is_empty()).then_some(())
            });
            if resumed.is_none() {
                rec.converge_error = Some(format!(
                    "converged, but no write was acknowledged through HAProxy within \
                     {WRITES_RESUME_TIMEOUT:?}"
                ));
                return None;
            }
            rec.converged = Some(ctx.clock.us(at));
            Some(c.primary)
        }
        Err(e) => {
            let dead = exited_agents(ctx.cluster);
            rec.converge_error = Some(if dead.is_empty() {
                e
            } else {
                format!("{e}; agents that exited: {}", dead.join(", "))
            });
            None
        }
    }
}

/// Agents that are not running, with how they ended.
pub fn exited_agents(cluster: &mut Cluster) -> Vec<String> {
    (0..cluster.nodes().len())
        .filter_map(|i| {
            let n = cluster.node_mut(i);
            (!n.is_running()).then(|| {
                let how = n
                    .exit_status()
                    .map_or_else(|| "never started".into(), |s| s.to_string());
                format!("{} ({how})", n.name())
            })
        })
        .collect()
}

/// Undo anything a step may have left broken (belt and braces: every
/// executor heals on its own): heal every proxy, SIGCONT every agent, start
/// etcd members that are down. Agents that are not running are *not*
/// restarted — an agent that exited by itself is a finding; they are
/// returned instead.
pub fn heal_everything(cluster: &mut Cluster) -> Vec<String> {
    for i in 0..cluster.nodes().len() {
        cluster.proxies(i).heal();
        let _ = cluster.node(i).signal(Signal::SIGCONT);
    }
    let mut problems = Vec::new();
    for k in 0..cluster.etcd().members().len() {
        let m = cluster.etcd_mut().member_mut(k);
        if !m.is_running() {
            if let Err(e) = m.start() {
                problems.push(format!("restarting etcd member {}: {e:#}", m.name()));
            }
        }
    }
    problems.extend(
        exited_agents(cluster)
            .into_iter()
            .map(|a| format!("agent {a} is not running")),
    );
    problems
}
