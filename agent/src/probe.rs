//! What the REST API, the metrics and the backup supervisor read of the local server,
//! for either engine: the loop turns its engine's facts into a [`ServerProbe`] once per
//! turn ([`EngineFacts::probe`]), and readers ask engine-neutral questions (writable?
//! position? streaming?) or look at the engine's own details where the answer is the
//! engine's (PostgreSQL's timelines and LSNs, Redis's replication ids and offsets).

use warden_pg::policy::PgLocal;
use warden_pg::sql::Probe;
use warden_redis::policy::{RedisLocal, Replication, ServerRole};

/// The local server as last probed.
#[derive(Debug, Clone)]
pub enum ServerProbe {
    Postgres(Box<Probe>),
    Redis(RedisProbe),
}

/// The local `redis-server` as `INFO` showed it.
#[derive(Debug, Clone)]
pub struct RedisProbe {
    pub replication: Replication,
    /// The agent paused writes (fencing or a switchover).
    pub writes_paused: bool,
}

impl ServerProbe {
    /// Runs as a replica (PostgreSQL: in recovery; Redis: `role:slave`).
    pub fn in_recovery(&self) -> bool {
        match self {
            ServerProbe::Postgres(p) => p.in_recovery,
            ServerProbe::Redis(r) => r.replication.role == ServerRole::Replica,
        }
    }

    /// Runs as a primary (the opposite of [`ServerProbe::in_recovery`]; a paused Redis
    /// primary is still one).
    pub fn is_primary(&self) -> bool {
        !self.in_recovery()
    }

    /// Where the server is in the replication stream: PostgreSQL's WAL position (the
    /// primary's insert position, a replica's newest received or replayed), Redis's
    /// replication offset.
    pub fn position(&self) -> Option<u64> {
        match self {
            ServerProbe::Postgres(p) => p.wal_position,
            ServerProbe::Redis(r) => Some(r.replication.position()),
        }
    }

    /// A replica whose link to its upstream is up.
    pub fn streaming(&self) -> bool {
        match self {
            ServerProbe::Postgres(p) => p.streaming,
            ServerProbe::Redis(r) => {
                r.replication.role == ServerRole::Replica && r.replication.link_up
            }
        }
    }

    /// A replica's received position (PostgreSQL: the WAL received; Redis:
    /// `slave_read_repl_offset`).
    pub fn received(&self) -> Option<u64> {
        match self {
            ServerProbe::Postgres(p) => p.receive_lsn,
            ServerProbe::Redis(r) => r.replication.slave_read_repl_offset,
        }
    }

    /// A replica's applied position (PostgreSQL: the WAL replayed; Redis:
    /// `slave_repl_offset`).
    pub fn applied(&self) -> Option<u64> {
        match self {
            ServerProbe::Postgres(p) => p.replay_lsn,
            ServerProbe::Redis(r) => r.replication.slave_repl_offset,
        }
    }

    /// A parameter change waits for a restart (PostgreSQL only).
    pub fn pending_restart(&self) -> bool {
        self.pg().is_some_and(|p| p.pending_restart)
    }

    /// PostgreSQL's `server_version_num`; `None` for Redis.
    pub fn server_version(&self) -> Option<u32> {
        self.pg().map(|p| p.server_version)
    }

    /// Just promoted: a primary from now on (until the next probe says otherwise).
    pub fn mark_primary(&mut self) {
        match self {
            ServerProbe::Postgres(p) => p.in_recovery = false,
            ServerProbe::Redis(r) => r.replication.role = ServerRole::Master,
        }
    }

    pub fn pg(&self) -> Option<&Probe> {
        match self {
            ServerProbe::Postgres(p) => Some(p),
            ServerProbe::Redis(_) => None,
        }
    }

    pub fn pg_mut(&mut self) -> Option<&mut Probe> {
        match self {
            ServerProbe::Postgres(p) => Some(p),
            ServerProbe::Redis(_) => None,
        }
    }

    pub fn redis(&self) -> Option<&RedisProbe> {
        match self {
            ServerProbe::Redis(r) => Some(r),
            ServerProbe::Postgres(_) => None,
        }
    }
}

/// An engine's facts as the daemon needs them beyond the decision: the probe the REST
/// API and the backups read, and the facts published while a long job (a clone, a
/// restore) runs and the server is not looked at.
pub trait EngineFacts: warden_ha::Engine + Send + Sync + 'static {
    fn probe(&self) -> Option<ServerProbe>;

    /// The facts while the server is not being probed; `rewound`: the data directory
    /// was rewound since it last ran as a primary (PostgreSQL's).
    fn busy(rewound: bool) -> Self;
}

impl EngineFacts for PgLocal {
    fn probe(&self) -> Option<ServerProbe> {
        self.probe
            .clone()
            .map(|p| ServerProbe::Postgres(Box::new(p)))
    }

    fn busy(rewound: bool) -> Self {
        PgLocal {
            rewound,
            ..Default::default()
        }
    }
}

impl EngineFacts for RedisLocal {
    fn probe(&self) -> Option<ServerProbe> {
        self.replication.clone().map(|replication| {
            ServerProbe::Redis(RedisProbe {
                replication,
                writes_paused: self.writes_paused,
            })
        })
    }

    fn busy(_: bool) -> Self {
        RedisLocal {
            replication: None,
            writes_paused: false,
            last_known: None,
        }
    }
}
