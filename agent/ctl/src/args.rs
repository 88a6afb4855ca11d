//! The command line, shaped like `patronictl`'s (Patroni 4.x) so scripts port by
//! renaming the binary: same subcommands, positionals, flags and defaults.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "wardenctl",
    version,
    about = "Operate a Warden (or Patroni) cluster: list, switchover, restart, edit-config, ...",
    after_help = "Exit codes: 0 success, 1 the operation failed or was refused (the reason is \
                  printed), 2 bad usage, 3 dr-report found an objective violated."
)]
pub struct Cli {
    /// Patroni/Warden YAML config to read scope, namespace, etcd3 hosts and REST API
    /// credentials from (also WARDENCTL_CONFIG_FILE, PATRONICTL_CONFIG_FILE).
    #[arg(
        short = 'c',
        long = "config-file",
        value_name = "CONFIG",
        global = true
    )]
    pub config_file: Option<PathBuf>,
    /// The DCS to read: etcd3://HOST:PORT[/NAMESPACE] (etcd:// is accepted too; also
    /// the DCS_URL environment variable). Overrides the config file's etcd3 section.
    #[arg(
        short = 'd',
        long = "dcs-url",
        visible_alias = "dcs",
        value_name = "DCS_URL",
        global = true
    )]
    pub dcs_url: Option<String>,
    /// Accepted for patronictl compatibility; the REST API is plain HTTP.
    #[arg(short = 'k', long = "insecure", global = true)]
    pub insecure: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the members of a cluster.
    List(ListArgs),
    /// The member table with replicas indented under the member they stream from.
    Topology(TopologyArgs),
    /// Hand the leader role to a replica (now or at a scheduled time).
    Switchover(SwitchoverArgs),
    /// Promote a replica even if the cluster has no healthy leader.
    Failover(FailoverArgs),
    /// Restart PostgreSQL on members.
    Restart(RestartArgs),
    /// Re-create replicas from scratch (new base backup).
    Reinit(ReinitArgs),
    /// Reload the configuration of members.
    Reload(ReloadArgs),
    /// Maintenance mode: stop automatic failover and management.
    Pause(PauseArgs),
    /// Leave maintenance mode.
    Resume(PauseArgs),
    /// Discard scheduled restarts or a scheduled switchover:
    /// `flush CLUSTER_NAME [MEMBER...] restart|switchover`.
    Flush(FlushArgs),
    /// Print the dynamic configuration (the `config` key) as YAML.
    ShowConfig(ClusterArg),
    /// Change the dynamic configuration, with compare-and-swap.
    EditConfig(EditConfigArgs),
    /// The history of failovers and switchovers.
    History(HistoryArgs),
    /// wardenctl's version, and each member's with a cluster name.
    Version(VersionArgs),
    /// Delete all of a cluster's keys from the DCS (asks to confirm three times).
    Remove(RemoveArgs),
    /// Base backups (Warden only): `backup create`, `backup list`.
    Backup(BackupArgs),
    /// Restore a base backup from the repository into a new data directory, with
    /// point-in-time recovery (Warden only).
    Restore(super::restore::RestoreArgs),
    /// Restore drill: restore the latest backup into a scratch directory, start it,
    /// run the checks, report RTO and RPO, clean up (Warden only).
    Drill(super::restore::DrillArgs),
    /// Disaster-recovery plan from the live cluster and repository, with a verdict
    /// per `backup.objectives` objective; exit 3 when one is violated (Warden only).
    DrReport(super::dr_report::DrReportArgs),
    /// Print `host=H port=P` of the leader, or of a member with --role, or of --member.
    Dsn(DsnArgs),
    /// Run SQL on the leader, or on a member with --role, or on --member, and print the
    /// rows (tsv by default).
    #[command(
        after_help = "After `query`, -c is --command and -d is --dbname, as in patronictl: give \
                      the config file and the DCS before it (wardenctl -c FILE -d URL query ...) \
                      or as --config-file/--dcs-url."
    )]
    Query(QueryArgs),
    /// Demote the cluster to a standby cluster of a remote primary (sets
    /// `standby_cluster`), and follow it until the leader is the standby leader.
    DemoteCluster(super::cluster_role::DemoteClusterArgs),
    /// Promote a standby cluster, make it run standalone (removes `standby_cluster`),
    /// and follow it until the leader runs as primary.
    PromoteCluster(super::cluster_role::PromoteClusterArgs),
}

impl Command {
    /// The subcommand's name as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::List(_) => "list",
            Command::Topology(_) => "topology",
            Command::Switchover(_) => "switchover",
            Command::Failover(_) => "failover",
            Command::Restart(_) => "restart",
            Command::Reinit(_) => "reinit",
            Command::Reload(_) => "reload",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
            Command::Flush(_) => "flush",
            Command::ShowConfig(_) => "show-config",
            Command::EditConfig(_) => "edit-config",
            Command::History(_) => "history",
            Command::Version(_) => "version",
            Command::Remove(_) => "remove",
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
            Command::Drill(_) => "drill",
            Command::DrReport(_) => "dr-report",
            Command::Dsn(_) => "dsn",
            Command::Query(_) => "query",
            Command::DemoteCluster(_) => "demote-cluster",
            Command::PromoteCluster(_) => "promote-cluster",
        }
    }
}

/// Output formats of `list`, `history` and `remove`, as patronictl names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Pretty,
    Tsv,
    Json,
    Yaml,
    Yml,
}

/// Member roles the member-selecting commands filter on (patronictl's `--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleFilter {
    Leader,
    #[value(alias = "master")]
    Primary,
    StandbyLeader,
    Replica,
    Standby,
    Any,
}

impl RoleFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleFilter::Leader => "leader",
            RoleFilter::Primary => "primary",
            RoleFilter::StandbyLeader => "standby-leader",
            RoleFilter::Replica => "replica",
            RoleFilter::Standby => "standby",
            RoleFilter::Any => "any",
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a base backup now, on the member holding the archiver key.
    Create(BackupCreateArgs),
    /// The committed backups (and dumps, and the last drill) in the repository;
    /// needs -c with the agent's `backup` section.
    List(BackupListArgs),
    /// Re-read a backup (default: every backup and dump) and check its parts,
    /// per-file checksums, manifest and WAL continuity to the newest archived WAL.
    /// Exit 1 on any problem. Needs -c like `list`.
    Verify(BackupVerifyArgs),
    /// Delete one backup or dump, or (--prune) what backup.retention does not keep,
    /// incomplete leftovers and WAL no kept backup needs. A dry run unless --confirm.
    Delete(BackupDeleteArgs),
}

#[derive(Debug, Args)]
pub struct BackupCreateArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Wait until the backup is committed or failed, showing progress (the default).
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,
    /// Return once the archiver accepted the request.
    #[arg(long = "no-wait", overrides_with = "wait")]
    pub no_wait: bool,
    /// A logical dump (pg_dump of backup.dump.databases) instead of a base backup.
    #[arg(long)]
    pub dump: bool,
    /// A `backup.jobs` job instead of PostgreSQL (run by wardenctl from -c).
    #[arg(long = "job", value_name = "NAME")]
    pub job: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupListArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// The sets of this `backup.jobs` job (and its last drill).
    #[arg(long = "job", value_name = "NAME")]
    pub job: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// List this repository: a `backup.copies` name (default: `main`).
    #[arg(long = "repository", value_name = "NAME")]
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClusterArg {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Refresh every 2 seconds.
    #[arg(short = 'W')]
    pub w: bool,
    /// Refresh every SECONDS seconds.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Cluster names (default: the config's scope).
    pub cluster_names: Vec<String>,
    /// Show pending restarts, scheduled restarts and tags even when empty.
    #[arg(short = 'e', long = "extended")]
    pub extended: bool,
    /// Print a timestamp before the table.
    #[arg(short = 't', long = "timestamp")]
    pub timestamp: bool,
    /// Output format.
    #[arg(
        short = 'f',
        long = "format",
        short_alias = 'o',
        value_enum,
        default_value = "pretty"
    )]
    pub format: Format,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Cluster names (default: the config's scope).
    pub cluster_names: Vec<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// The current leader (checked against the leader key).
    #[arg(long = "leader", visible_alias = "primary", value_name = "NAME")]
    pub leader: Option<String>,
    /// The replica to promote.
    #[arg(long = "candidate", value_name = "NAME")]
    pub candidate: Option<String>,
    /// When: an ISO 8601 timestamp (local time if no offset) or `now`.
    #[arg(long = "scheduled", value_name = "TIME")]
    pub scheduled: Option<String>,
    /// Do not ask for anything; missing values take their defaults.
    #[arg(long = "force")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// The current leader, if there is one (sent to the API as a check).
    #[arg(long = "leader", visible_alias = "primary", value_name = "NAME")]
    pub leader: Option<String>,
    /// The replica to promote.
    #[arg(long = "candidate", value_name = "NAME")]
    pub candidate: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long = "force")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    pub cluster_name: String,
    /// Members to restart (default: every member with --role).
    pub member_names: Vec<String>,
    /// Restart only members with this role.
    #[arg(short = 'r', long = "role", value_enum, default_value = "any")]
    pub role: RoleFilter,
    /// Restart a single member only (picked at random among the matching ones).
    #[arg(long = "any")]
    pub any: bool,
    /// When: an ISO 8601 timestamp (local time if no offset) or `now`.
    #[arg(long = "scheduled", value_name = "TIME")]
    pub scheduled: Option<String>,
    /// Restart only if the running PostgreSQL version is lower than this (e.g. 15.8).
    #[arg(long = "pg-version", value_name = "VERSION")]
    pub pg_version: Option<String>,
    /// Restart only members flagged as pending restart.
    #[arg(long = "pending")]
    pub pending: bool,
    /// Give up (and fail over if needed) when the restart takes longer than this.
    #[arg(long = "timeout", value_name = "TIMEOUT")]
    pub timeout: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long = "force")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ReinitArgs {
    pub cluster_name: String,
    /// Replicas to reinitialize.
    pub member_names: Vec<String>,
    /// Do not ask for confirmation; cancel a reinitialization already in progress.
    #[arg(long = "force")]
    pub force: bool,
    /// Take the base backup from the leader.
    #[arg(long = "from-leader")]
    pub from_leader: bool,
    /// Wait until the reinitialization has finished.
    #[arg(long = "wait")]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    pub cluster_name: String,
    /// Members to reload (default: every member with --role).
    pub member_names: Vec<String>,
    /// Reload only members with this role.
    #[arg(short = 'r', long = "role", value_enum, default_value = "any")]
    pub role: RoleFilter,
    /// Do not ask for confirmation.
    #[arg(long = "force")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Wait until every member reports the new state.
    #[arg(long = "wait")]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct FlushArgs {
    pub cluster_name: String,
    /// `[MEMBER...] restart|switchover`: the members whose scheduled restart to
    /// discard, then what to discard.
    #[arg(value_name = "MEMBER... TARGET", required = true)]
    pub rest: Vec<String>,
    /// Flush only members with this role.
    #[arg(short = 'r', long = "role", value_enum, default_value = "any")]
    pub role: RoleFilter,
    /// Do not ask for confirmation.
    #[arg(long = "force")]
    pub force: bool,
}

/// What `flush` discards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushTarget {
    Restart,
    Switchover,
}

impl FlushArgs {
    /// Splits `rest` into members and the target (the last word), as patronictl
    /// takes them.
    pub fn split(&self) -> Result<(Vec<String>, FlushTarget), String> {
        let (last, members) = self
            .rest
            .split_last()
            .ok_or_else(|| "flush needs a target: restart or switchover".to_string())?;
        let target = match last.as_str() {
            "restart" => FlushTarget::Restart,
            "switchover" => FlushTarget::Switchover,
            other => {
                return Err(format!(
                "invalid flush target {other:?}: the last argument must be restart or switchover"
            ))
            }
        };
        Ok((members.to_vec(), target))
    }
}

#[derive(Debug, Args)]
pub struct EditConfigArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Do not show the changes.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Set KEY.PATH=VALUE (VALUE is YAML; `null` deletes). Repeatable.
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set the PostgreSQL parameter NAME=VALUE (postgresql.parameters.NAME). Repeatable.
    #[arg(short = 'p', long = "pg", value_name = "NAME=VALUE")]
    pub pg: Vec<String>,
    /// Merge a YAML file into the config (`-` for stdin; `null` deletes a key).
    #[arg(long = "apply", value_name = "FILE")]
    pub apply: Option<String>,
    /// Replace the whole config with a YAML file (`-` for stdin).
    #[arg(long = "replace", value_name = "FILE")]
    pub replace: Option<String>,
    /// Apply without asking.
    #[arg(long = "force")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Output format.
    #[arg(
        short = 'f',
        long = "format",
        short_alias = 'o',
        value_enum,
        default_value = "pretty"
    )]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// With a cluster name, also ask each member's REST API for its version.
    pub cluster_name: Option<String>,
    /// Only these members.
    pub member_names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    pub cluster_name: String,
    /// Format of the member table shown before asking.
    #[arg(
        short = 'f',
        long = "format",
        short_alias = 'o',
        value_enum,
        default_value = "pretty"
    )]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DsnArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// A member with this role (default: the leader); `replica`/`standby` is any
    /// member but the leader.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<RoleFilter>,
    /// This member.
    #[arg(short = 'm', long = "member", value_name = "NAME")]
    pub member: Option<String>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Cluster name (default: the config's scope).
    pub cluster_name: Option<String>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value = "tsv")]
    pub format: Format,
    /// Run the SQL in this file (`-` for standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Ask for the database password (read from the terminal with echo off, or as a
    /// line of standard input). Without it: PGPASSWORD, else PGPASSFILE or ~/.pgpass.
    #[arg(long = "password")]
    pub password: bool,
    /// Database user name (default: PGUSER, else the user running wardenctl).
    #[arg(short = 'U', long = "username", value_name = "USER")]
    pub username: Option<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Query a member with this role (default: the leader). `primary`, `replica`,
    /// `standby` and `standby-leader` are checked with pg_is_in_recovery().
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<RoleFilter>,
    /// Query this member.
    #[arg(short = 'm', long = "member", value_name = "NAME")]
    pub member: Option<String>,
    /// Column delimiter of the tsv format (default: a tab).
    #[arg(long = "delimiter", default_value = "\t", hide_default_value = true)]
    pub delimiter: String,
    /// The SQL to run.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub command: Option<String>,
    /// Database to connect to (default: PGDATABASE, else the server's default: the
    /// user's name).
    #[arg(short = 'd', long = "dbname", value_name = "NAME")]
    pub dbname: Option<String>,
    // After `query`, -c and -d are --command and --dbname, as in patronictl. These two
    // take the global options' ids so clap does not give the subcommand the global
    // -c/-d as well; given here, their values still reach the global options.
    #[arg(
        long = "config-file",
        id = "config_file",
        value_name = "CONFIG",
        hide = true
    )]
    pub config_file: Option<PathBuf>,
    #[arg(
        long = "dcs-url",
        visible_alias = "dcs",
        id = "dcs_url",
        value_name = "DCS_URL",
        hide = true
    )]
    pub dcs_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wardenctl").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn patronictl_command_lines_parse() {
        let cli = parse(&["-c", "/etc/p.yml", "list", "-e", "-f", "json"]).unwrap();
        assert_eq!(cli.config_file, Some(PathBuf::from("/etc/p.yml")));
        let Command::List(l) = cli.command else {
            panic!("not list")
        };
        assert!(l.extended && l.cluster_names.is_empty());
        assert_eq!(l.format, Format::Json);

        let cli = parse(&["--dcs", "etcd3://h:1", "list", "demo", "-o", "yaml", "-W"]).unwrap();
        assert_eq!(cli.dcs_url.as_deref(), Some("etcd3://h:1"));
        let Command::List(l) = cli.command else {
            panic!("not list")
        };
        assert_eq!(l.cluster_names, vec!["demo"]);
        assert_eq!(l.format, Format::Yaml);
        assert!(l.watch.w);

        let cli = parse(&[
            "switchover",
            "demo",
            "--primary",
            "n1",
            "--candidate",
            "n2",
            "--scheduled",
            "now",
            "--force",
        ])
        .unwrap();
        let Command::Switchover(s) = cli.command else {
            panic!("not switchover")
        };
        assert_eq!(s.leader.as_deref(), Some("n1"));
        assert_eq!(s.candidate.as_deref(), Some("n2"));
        assert!(s.force);

        let cli = parse(&[
            "restart",
            "demo",
            "n1",
            "n2",
            "--role",
            "master",
            "--pending",
        ])
        .unwrap();
        let Command::Restart(r) = cli.command else {
            panic!("not restart")
        };
        assert_eq!(r.member_names, vec!["n1", "n2"]);
        assert_eq!(r.role, RoleFilter::Primary);

        let cli = parse(&[
            "edit-config",
            "-s",
            "ttl=20",
            "-p",
            "work_mem=8MB",
            "--set",
            "loop_wait=3",
            "--force",
        ])
        .unwrap();
        let Command::EditConfig(e) = cli.command else {
            panic!("not edit-config")
        };
        assert_eq!(e.set, vec!["ttl=20", "loop_wait=3"]);
        assert_eq!(e.pg, vec!["work_mem=8MB"]);
        // Global options are accepted after the subcommand too.
        assert!(parse(&["show-config", "demo", "-k"]).unwrap().insecure);
    }

    #[test]
    fn query_takes_c_and_d_as_command_and_dbname() {
        let cli = parse(&[
            "-c",
            "/etc/p.yml",
            "-d",
            "etcd3://h:1",
            "query",
            "demo",
            "-c",
            "select 1",
            "-d",
            "app",
            "-U",
            "alice",
            "-r",
            "replica",
            "--format",
            "json",
            "--delimiter",
            ";",
            "--password",
        ])
        .unwrap();
        assert_eq!(cli.config_file, Some(PathBuf::from("/etc/p.yml")));
        assert_eq!(cli.dcs_url.as_deref(), Some("etcd3://h:1"));
        let Command::Query(q) = cli.command else {
            panic!("not query")
        };
        assert_eq!(q.cluster_name.as_deref(), Some("demo"));
        assert_eq!(q.command.as_deref(), Some("select 1"));
        assert_eq!(q.dbname.as_deref(), Some("app"));
        assert_eq!(q.username.as_deref(), Some("alice"));
        assert_eq!(q.role, Some(RoleFilter::Replica));
        assert_eq!(q.format, Format::Json);
        assert_eq!(q.delimiter, ";");
        assert!(q.password && q.file.is_none());
        // The defaults; the long global options still work after `query`.
        let cli = parse(&["query", "--config-file", "x.yml", "-f", "q.sql", "-W"]).unwrap();
        assert_eq!(cli.config_file, Some(PathBuf::from("x.yml")));
        let Command::Query(q) = cli.command else {
            panic!("not query")
        };
        assert_eq!((q.format, q.delimiter.as_str()), (Format::Tsv, "\t"));
        assert_eq!(q.file.as_deref(), Some("q.sql"));
        assert!(q.watch.w && q.role.is_none() && q.member.is_none());
        // Elsewhere -c and -d are still the global options.
        let cli = parse(&["list", "-c", "y.yml"]).unwrap();
        assert_eq!(cli.config_file, Some(PathBuf::from("y.yml")));

        let cli = parse(&["dsn", "demo", "-r", "standby-leader"]).unwrap();
        let Command::Dsn(d) = cli.command else {
            panic!("not dsn")
        };
        assert_eq!(d.role, Some(RoleFilter::StandbyLeader));
        let cli = parse(&["dsn", "-m", "node2"]).unwrap();
        let Command::Dsn(d) = cli.command else {
            panic!("not dsn")
        };
        assert_eq!((d.cluster_name, d.member.as_deref()), (None, Some("node2")));
        assert_eq!(parse(&["dsn", "-r", "boss"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn flush_takes_the_target_last() {
        let cli = parse(&["flush", "demo", "n1", "n2", "restart", "--force"]).unwrap();
        let Command::Flush(f) = cli.command else {
            panic!("not flush")
        };
        assert_eq!(
            f.split().unwrap(),
            (
                vec!["n1".to_string(), "n2".to_string()],
                FlushTarget::Restart
            )
        );
        let cli = parse(&["flush", "demo", "switchover"]).unwrap();
        let Command::Flush(f) = cli.command else {
            panic!("not flush")
        };
        assert_eq!(f.split().unwrap(), (vec![], FlushTarget::Switchover));
        let cli = parse(&["flush", "demo", "n1"]).unwrap();
        let Command::Flush(f) = cli.command else {
            panic!("not flush")
        };
        assert!(f.split().unwrap_err().contains("restart or switchover"));
        assert!(parse(&["flush", "demo"]).is_err());
    }

    #[test]
    fn usage_errors_are_exit_code_2() {
        for bad in [
            &["list", "--format", "xml"][..],
            &["restart"],
            &["nosuchcommand"],
            &["restart", "demo", "--role", "boss"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// Backup id, or `latest` (default: every backup and dump).
    pub id: Option<String>,
    /// Verify the sets of this `backup.jobs` job (ID: one set).
    #[arg(long = "job", value_name = "NAME")]
    pub job: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Verify this repository: a `backup.copies` name (default: `main`), opened with
    /// that copy's key.
    #[arg(long = "repository", value_name = "NAME")]
    pub repository: Option<String>,
    /// Cluster name (default: the config's scope).
    #[arg(long = "cluster", value_name = "CLUSTER_NAME")]
    pub cluster: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupDeleteArgs {
    /// Backup (or dump) id to delete.
    pub id: Option<String>,
    /// Apply backup.retention instead of deleting one id.
    #[arg(long)]
    pub prune: bool,
    /// Really delete (without it: print what would be deleted).
    #[arg(long)]
    pub confirm: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Cluster name (default: the config's scope).
    #[arg(long = "cluster", value_name = "CLUSTER_NAME")]
    pub cluster: Option<String>,
}
