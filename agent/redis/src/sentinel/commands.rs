//! One request in, Sentinel 7.0's replies out: the command table, the checks Redis makes
//! before running a command (lookup, arity, authentication, the RESP2 pub/sub context)
//! and the handlers. No I/O: the server feeds it requests and writes what it returns.

use std::time::Instant;

use subtle::ConstantTimeEq;

use super::records::{self, ServerFacts, REDIS_VERSION};
use super::resp::Reply;
use super::view::SentinelView;

/// What one connection carries between requests.
#[derive(Debug, Clone)]
pub struct Session {
    /// `CLIENT ID`, and `id` in `HELLO`.
    pub id: u64,
    /// 2 or 3 (`HELLO`).
    pub proto: u8,
    /// Passed `AUTH` (always true when no password is configured).
    pub authed: bool,
    /// `CLIENT SETNAME`.
    pub name: Option<Vec<u8>>,
    /// Subscribed channels, in subscription order.
    pub channels: Vec<Vec<u8>>,
    /// Subscribed patterns, in subscription order.
    pub patterns: Vec<Vec<u8>>,
}

impl Session {
    /// A new connection: RESP2, authenticated only if there is no password.
    pub fn new(id: u64, password_required: bool) -> Session {
        Session {
            id,
            proto: 2,
            authed: !password_required,
            name: None,
            channels: Vec::new(),
            patterns: Vec::new(),
        }
    }

    /// Subscriptions of both kinds, the count Redis reports in confirmations.
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// What a handler needs besides the session.
pub struct Context<'a> {
    /// The view at the time of the request.
    pub view: &'a SentinelView,
    /// The configured password (`requirepass`), if any.
    pub password: Option<&'a str>,
    /// Process facts for `INFO`, gathered only when asked.
    pub facts: &'a dyn Fn() -> ServerFacts,
    /// The time the "ms ago" fields are measured to.
    pub now: Instant,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("view", self.view)
            .finish_non_exhaustive()
    }
}

/// Sentinel's answer when it cannot name the master (Sentinel 2.8's reply to
/// `GET-MASTER-ADDR-BY-NAME` before its first INFO): every client treats an error reply
/// as "ask the next Sentinel".
pub const IDONTKNOW: &str =
    "IDONTKNOW I have not enough information to reply. Please ask another Sentinel.";

const NOAUTH: &str = "NOAUTH Authentication required.";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NO_SUCH_MASTER: &str = "No such master with that name";

/// Top-level commands a 7.0 Sentinel knows, with Redis's arity (negative: at least).
const COMMANDS: [(&str, i32); 15] = [
    ("ping", -1),
    ("sentinel", -2),
    ("subscribe", -2),
    ("unsubscribe", -1),
    ("psubscribe", -2),
    ("punsubscribe", -1),
    ("publish", 3),
    ("info", -1),
    ("role", 1),
    ("client", -2),
    ("shutdown", -1),
    ("auth", -2),
    ("hello", -1),
    ("acl", -2),
    ("command", -1),
];

/// `SENTINEL` subcommands a 7.0 Sentinel knows (arity counts `SENTINEL` itself).
const SENTINEL_SUBS: [(&str, i32); 21] = [
    ("ckquorum", 3),
    ("config", -3),
    ("debug", -2),
    ("get-master-addr-by-name", 3),
    ("failover", 3),
    ("flushconfig", 2),
    ("help", 2),
    ("info-cache", -3),
    ("is-master-down-by-addr", 6),
    ("master", 3),
    ("masters", 2),
    ("monitor", 6),
    ("myid", 2),
    ("pending-scripts", 2),
    ("remove", 3),
    ("replicas", 3),
    ("reset", 3),
    ("sentinels", 3),
    ("set", -3),
    ("simulate-failure", -3),
    ("slaves", 3),
];

/// `CLIENT` subcommands a 7.0 server knows.
const CLIENT_SUBS: [(&str, i32); 16] = [
    ("caching", 3),
    ("getredir", 2),
    ("getname", 2),
    ("help", 2),
    ("id", 2),
    ("info", 2),
    ("kill", -3),
    ("list", -2),
    ("no-evict", 3),
    ("pause", -3),
    ("reply", 3),
    ("setname", 3),
    ("tracking", -3),
    ("trackinginfo", 2),
    ("unblock", -3),
    ("unpause", 2),
];

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

fn lossy(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn truncated(arg: &[u8], max: usize) -> String {
    lossy(&arg[..arg.len().min(max)])
}

fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

fn wrong_args(full: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{full}' command"))
}

/// Redis's reply to a command it does not have, quoting the first arguments.
fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push_str(&format!("'{}' ", truncated(arg, room)));
    }
    Reply::err(format!(
        "unknown command '{}', with args beginning with: {quoted}",
        truncated(&args[0], 128)
    ))
}

/// Commands and subcommands Sentinel has but Warden's port does not serve: they would
/// reconfigure or fail over behind the DCS's back.
fn unsupported(full: &str) -> Reply {
    Reply::err(format!(
        "'{full}' is not supported by Warden's Sentinel port: the cluster is managed through its DCS (wardenctl)"
    ))
}

/// Runs one request (already split into arguments; not empty) and returns its replies.
pub fn dispatch(session: &mut Session, ctx: &Context<'_>, args: &[Vec<u8>]) -> Vec<Reply> {
    let cmd = lower(&args[0]);
    let Some(&(_, arity)) = COMMANDS.iter().find(|(n, _)| *n == cmd) else {
        return vec![unknown_command(args)];
    };
    if !arity_ok(arity, args.len()) {
        return vec![wrong_args(&cmd)];
    }
    let mut full = cmd.clone();
    let table: Option<(&[(&str, i32)], &str)> = match cmd.as_str() {
        "sentinel" => Some((&SENTINEL_SUBS, "SENTINEL")),
        "client" => Some((&CLIENT_SUBS, "CLIENT")),
        _ => None,
    };
    if let Some((subs, upper)) = table {
        let sub = lower(&args[1]);
        let Some(&(_, sub_arity)) = subs.iter().find(|(n, _)| *n == sub) else {
            return vec![Reply::err(format!(
                "unknown subcommand '{}'. Try {upper} HELP.",
                truncated(&args[1], 128)
            ))];
        };
        full = format!("{cmd}|{sub}");
        if !arity_ok(sub_arity, args.len()) {
            return vec![wrong_args(&full)];
        }
    }
    if !session.authed && cmd != "auth" && cmd != "hello" {
        return vec![Reply::error_with_code(NOAUTH)];
    }
    let pubsub_cmd = matches!(
        cmd.as_str(),
        "ping" | "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe"
    );
    if session.proto == 2 && session.subscriptions() > 0 && !pubsub_cmd {
        return vec![Reply::err(format!(
            "Can't execute '{full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))];
    }
    match cmd.as_str() {
        "ping" => vec![ping(session, args)],
        "sentinel" => vec![sentinel(ctx, &full, args)],
        "subscribe" | "psubscribe" => subscribe(session, &cmd, &args[1..]),
        "unsubscribe" | "punsubscribe" => unsubscribe(session, &cmd, &args[1..]),
        "publish" => vec![Reply::err(
            "Only HELLO messages are accepted by Sentinel instances.",
        )],
        "info" => vec![Reply::Bulk(
            records::info(ctx.view, &(ctx.facts)(), &args[1..]).into_bytes(),
        )],
        "role" => vec![Reply::Array(vec![
            Reply::bulk("sentinel"),
            Reply::Array(vec![Reply::bulk(&ctx.view.master_name)]),
        ])],
        "client" => vec![client(session, &full, args)],
        "auth" => vec![auth(session, ctx.password, args)],
        "hello" => vec![hello(session, ctx.password, args)],
        _ => vec![unsupported(&full)],
    }
}

fn ping(session: &Session, args: &[Vec<u8>]) -> Reply {
    // The table says "at least one"; PING itself refuses more than one argument.
    if args.len() > 2 {
        return wrong_args("ping");
    }
    if session.proto == 2 && session.subscriptions() > 0 {
        let payload = args.get(1).cloned().unwrap_or_default();
        return Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(payload)]);
    }
    match args.get(1) {
        Some(payload) => Reply::Bulk(payload.clone()),
        None => Reply::Simple("PONG".into()),
    }
}

fn sentinel(ctx: &Context<'_>, full: &str, args: &[Vec<u8>]) -> Reply {
    let view = ctx.view;
    let sub = &full["sentinel|".len()..];
    let named = |arg: &[u8]| arg == view.master_name.as_bytes();
    match sub {
        "myid" => Reply::bulk(&view.my_id),
        "masters" => match view.current_primary() {
            // A stale or leaderless view leaves the master out rather than naming an old
            // address: clients that list masters (redis-py, redis-rs) then ask the next.
            Some(p) => Reply::Array(vec![records::master_record(view, p, ctx.now)]),
            None => Reply::Array(Vec::new()),
        },
        "master" | "get-master-addr-by-name" | "replicas" | "slaves" | "sentinels" | "ckquorum" => {
            if !named(&args[2]) {
                return if sub == "get-master-addr-by-name" {
                    Reply::NullArray
                } else {
                    Reply::err(NO_SUCH_MASTER)
                };
            }
            lookup(ctx, sub)
        }
        _ => unsupported(full),
    }
}

/// The lookups about the (existing) master name.
fn lookup(ctx: &Context<'_>, sub: &str) -> Reply {
    let view = ctx.view;
    match sub {
        "ckquorum" => ckquorum(view),
        "master" | "get-master-addr-by-name" => match view.current_primary() {
            None => Reply::error_with_code(IDONTKNOW),
            Some(p) if sub == "master" => records::master_record(view, p, ctx.now),
            Some(p) => Reply::Array(vec![Reply::bulk(&p.ip), Reply::bulk(p.port.to_string())]),
        },
        // Replicas and peers are only listed from a fresh view; without a primary the
        // replica records would have no `master-host`, so that is "don't know" too.
        "replicas" | "slaves" => match view.current_primary() {
            None => Reply::error_with_code(IDONTKNOW),
            Some(p) => Reply::Array(
                view.replicas
                    .iter()
                    .map(|r| records::replica_record(view, p, r, ctx.now))
                    .collect(),
            ),
        },
        _ if !view.fresh => Reply::error_with_code(IDONTKNOW),
        _ => Reply::Array(
            view.sentinels
                .iter()
                .map(|s| records::sentinel_record(view, s, ctx.now))
                .collect(),
        ),
    }
}

/// `SENTINEL CKQUORUM`: the agents this one can see through a fresh DCS view. Without one
/// not even this agent can take part in a failover (that needs the DCS), so it counts 0
/// usable and answers `NOQUORUM`.
fn ckquorum(view: &SentinelView) -> Reply {
    let voters = view.sentinels.len() + 1;
    let usable = if view.fresh { voters } else { 0 };
    let quorum = usize::try_from(view.quorum).unwrap_or(usize::MAX);
    if usable < quorum {
        return Reply::error_with_code(&format!(
            "NOQUORUM {usable} usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master"
        ));
    }
    if usable < voters / 2 + 1 {
        return Reply::error_with_code(&format!(
            "NOQUORUM {usable} usable Sentinels. Not enough available Sentinels to reach the majority and authorize a failover"
        ));
    }
    Reply::Simple(format!(
        "OK {usable} usable Sentinels. Quorum and failover authorization can be reached"
    ))
}

fn subscribe(session: &mut Session, cmd: &str, names: &[Vec<u8>]) -> Vec<Reply> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let list = if cmd == "subscribe" {
            &mut session.channels
        } else {
            &mut session.patterns
        };
        if !list.contains(name) {
            list.push(name.clone());
        }
        out.push(confirmation(
            cmd,
            Reply::Bulk(name.clone()),
            session.subscriptions(),
        ));
    }
    out
}

fn unsubscribe(session: &mut Session, cmd: &str, names: &[Vec<u8>]) -> Vec<Reply> {
    let channels = cmd == "unsubscribe";
    let targets: Vec<Vec<u8>> = if names.is_empty() {
        if channels {
            session.channels.clone()
        } else {
            session.patterns.clone()
        }
    } else {
        names.to_vec()
    };
    if targets.is_empty() {
        // Nothing to leave: Redis still confirms once, with a null name.
        return vec![confirmation(cmd, Reply::NullBulk, session.subscriptions())];
    }
    let mut out = Vec::with_capacity(targets.len());
    for name in targets {
        let list = if channels {
            &mut session.channels
        } else {
            &mut session.patterns
        };
        list.retain(|c| *c != name);
        out.push(confirmation(
            cmd,
            Reply::Bulk(name),
            session.subscriptions(),
        ));
    }
    out
}

fn confirmation(kind: &str, name: Reply, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::bulk(kind),
        name,
        Reply::Int(i64::try_from(count).unwrap_or(i64::MAX)),
    ])
}

/// Redis accepts printable ASCII without spaces as a client name.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

const BAD_CLIENT_NAME: &str = "Client names cannot contain spaces, newlines or special characters.";

fn client(session: &mut Session, full: &str, args: &[Vec<u8>]) -> Reply {
    match full {
        "client|setname" => {
            let name = &args[2];
            if !valid_client_name(name) {
                return Reply::err(BAD_CLIENT_NAME);
            }
            session.name = if name.is_empty() {
                None
            } else {
                Some(name.clone())
            };
            Reply::Simple("OK".into())
        }
        "client|getname" => session.name.clone().map_or(Reply::NullBulk, Reply::Bulk),
        "client|id" => Reply::Int(i64::try_from(session.id).unwrap_or(i64::MAX)),
        _ => unsupported(full),
    }
}

/// Checks a user/password pair against the `default` user: with no password configured
/// it takes any password (Redis's `nopass`); compared in constant time.
fn authenticate(password: Option<&str>, user: &[u8], given: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    match password {
        None => true,
        Some(expected) => bool::from(expected.as_bytes().ct_eq(given)),
    }
}

fn auth(session: &mut Session, password: Option<&str>, args: &[Vec<u8>]) -> Reply {
    if args.len() > 3 {
        return Reply::err("syntax error");
    }
    let (user, given): (&[u8], &[u8]) = if args.len() == 2 {
        if password.is_none() {
            return Reply::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        (b"default", &args[1])
    } else {
        (&args[1], &args[2])
    };
    if authenticate(password, user, given) {
        session.authed = true;
        Reply::Simple("OK".into())
    } else {
        Reply::error_with_code(WRONGPASS)
    }
}

fn hello(session: &mut Session, password: Option<&str>, args: &[Vec<u8>]) -> Reply {
    let mut proto = session.proto;
    if let Some(ver) = args.get(1) {
        let Some(ver) = std::str::from_utf8(ver)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return Reply::err("Protocol version is not an integer or out of range");
        };
        if !(2..=3).contains(&ver) {
            return Reply::error_with_code("NOPROTO unsupported protocol version");
        }
        proto = u8::try_from(ver).unwrap_or(2);
    }
    let mut creds = None;
    let mut name = None;
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = lower(&args[j]);
        if opt == "auth" && more >= 2 {
            creds = Some((&args[j + 1], &args[j + 2]));
            j += 3;
        } else if opt == "setname" && more >= 1 {
            name = Some(&args[j + 1]);
            j += 2;
        } else {
            return Reply::err(format!(
                "Syntax error in HELLO option '{}'",
                lossy(&args[j])
            ));
        }
    }
    if let Some((user, pass)) = creds {
        if !authenticate(password, user, pass) {
            return Reply::error_with_code(WRONGPASS);
        }
        session.authed = true;
    }
    if !session.authed {
        return Reply::error_with_code(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        if !valid_client_name(name) {
            return Reply::err(BAD_CLIENT_NAME);
        }
        session.name = if name.is_empty() {
            None
        } else {
            Some(name.clone())
        };
    }
    session.proto = proto;
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
        (Reply::bulk("proto"), Reply::Int(i64::from(proto))),
        (
            Reply::bulk("id"),
            Reply::Int(i64::try_from(session.id).unwrap_or(i64::MAX)),
        ),
        (Reply::bulk("mode"), Reply::bulk("sentinel")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}
