//! `warden-demo`: a local 3-node Warden cluster in the foreground.
//!
//! Single-node etcd on 127.0.0.1:2379, three `warden` agents (PostgreSQL on
//! 15432-15434, REST on 8008-8010) and HAProxy with `deploy/haproxy.cfg`
//! (write port 5000, read port 5001). Ctrl-C or SIGTERM stops everything in
//! order and exits 0.
//!
//! With `--redis`: the agents run redis-server (16379-16381) and serve
//! Sentinel-compatible ports (26379-26381), HAProxy uses
//! `deploy/haproxy-redis.cfg`.
//!
//! Usage: `warden-demo [--redis] [--dir DIR]` (default /tmp/warden-demo, or
//! /tmp/warden-demo-redis, wiped and recreated on each run). Set
//! WARDEN_BIN_DIR to use prebuilt binaries.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use warden_tests::config::{REDIS_PASSWORD, SUPERUSER, SUPERUSER_PASSWORD};
use warden_tests::{demo, ports, process, Cluster};

/// Bound for the cluster to form (initdb + two base backups on 2 cores).
const FORM_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound for each agent to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the foreground loop looks at signals and children.
const TICK: Duration = Duration::from_millis(200);
/// Marks a directory as the demo's own, so `--dir` never wipes anything else.
const MARKER: &str = ".warden-demo";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: warden-demo [--redis] [--dir DIR]";

/// `(dir, redis)`.
fn parse_args() -> Result<(PathBuf, bool)> {
    let mut dir = None;
    let mut redis = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(args.next().context("--dir needs a value")?)),
            "--redis" => redis = true,
            "-h" | "--help" => {
                println!(
                    "{USAGE}   (default dir {}, with --redis {})",
                    demo::DEFAULT_DIR,
                    demo::REDIS_DEFAULT_DIR
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} ({USAGE})"),
        }
    }
    let default = if redis {
        demo::REDIS_DEFAULT_DIR
    } else {
        demo::DEFAULT_DIR
    };
    Ok((dir.unwrap_or_else(|| PathBuf::from(default)), redis))
}

/// Refuse to start if any fixed port is in use, naming it.
fn check_ports(redis: bool) -> Result<()> {
    let labelled = if redis {
        demo::labelled_redis_ports()
    } else {
        demo::labelled_ports()
    };
    let taken: Vec<String> = labelled
        .into_iter()
        .filter(|(p, _)| !ports::port_is_free(*p))
        .map(|(p, what)| format!("127.0.0.1:{p} ({what})"))
        .collect();
    if !taken.is_empty() {
        bail!(
            "port(s) already in use: {}. Is another demo, etcd or HAProxy running? Stop it and retry.",
            taken.join(", ")
        );
    }
    Ok(())
}

/// Make `dir` a fresh, empty demo directory.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by warden-demo; refusing to wipe it (use --dir)",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing old {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by warden-demo; wiped on the next run\n",
    )
    .context("writing the demo marker")
}

fn run() -> Result<()> {
    let (dir, redis) = parse_args()?;
    check_ports(redis)?;
    prepare_dir(&dir)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    // Children must not get the terminal's Ctrl-C: we stop them in order.
    process::detach_process_groups();

    println!(
        "Starting etcd, 3 warden agents and HAProxy in {} ...",
        dir.display()
    );
    let spec = if redis {
        demo::redis_spec(&dir)
    } else {
        demo::spec(&dir)
    };
    let mut cluster = Cluster::start(spec)?;

    let formed = wait_formed(&mut cluster, &stop);
    let took = match formed {
        Ok(Some(took)) => took,
        Ok(None) => return shutdown(&mut cluster),
        Err(e) => {
            eprintln!("{}", cluster.dump_logs());
            let _ = shutdown(&mut cluster);
            return Err(e);
        }
    };
    if redis {
        print_redis_banner(&cluster, &dir, took);
    } else {
        print_banner(&cluster, &dir, took);
    }

    let mut reported = [false; 3];
    while !stop.load(Ordering::SeqCst) {
        for (i, seen) in reported.iter_mut().enumerate() {
            let node = cluster.node_mut(i);
            if !*seen {
                if let Some(st) = node.exit_status() {
                    *seen = true;
                    eprintln!(
                        "warden-demo: agent {} exited unexpectedly ({st}); see {}",
                        node.name(),
                        node.log_path().display()
                    );
                }
            }
        }
        std::thread::sleep(TICK);
    }
    println!();
    shutdown(&mut cluster)
}

/// Poll for formation; `Ok(None)` if interrupted, an error on timeout or if
/// an agent died.
fn wait_formed(cluster: &mut Cluster, stop: &AtomicBool) -> Result<Option<Duration>> {
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if cluster.formation().is_some() {
            return Ok(Some(cluster.agents_started().elapsed()));
        }
        for i in 0..cluster.nodes().len() {
            let n = cluster.node_mut(i);
            if let Some(st) = n.exit_status() {
                bail!(
                    "agent {} exited ({st}) before the cluster formed; log: {}",
                    n.name(),
                    n.log_path().display()
                );
            }
        }
        if Instant::now() >= deadline {
            bail!("cluster did not form within {FORM_TIMEOUT:?}");
        }
        std::thread::sleep(TICK);
    }
}

fn print_banner(cluster: &Cluster, dir: &Path, took: Duration) {
    let url = |port: u16| {
        format!("postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/postgres")
    };
    let primary = cluster.primary_index();
    println!(
        "\nWarden demo cluster '{}' is up (formed {:.1} s after the agents started).\n",
        demo::SCOPE,
        took.as_secs_f64()
    );
    println!("Connect through HAProxy:");
    println!(
        "  write (primary):  psql '{}'",
        url(demo::HAPROXY_WRITE_PORT)
    );
    println!(
        "  read  (replicas): psql '{}'",
        url(demo::HAPROXY_READ_PORT)
    );
    println!("\nNodes:");
    for (i, n) in cluster.nodes().iter().enumerate() {
        let role = if Some(i) == primary {
            "primary"
        } else {
            "replica"
        };
        println!(
            "  {:<6} {:<8} psql '{}'   REST {}/patroni",
            n.name(),
            role,
            url(n.pg_port()),
            n.api_url()
        );
    }
    println!(
        "\nREST:   curl {}/cluster    (also /primary, /replica, /health, /metrics)",
        cluster.node(0).api_url()
    );
    println!(
        "etcd:   {}    (patronictl -d etcd3://127.0.0.1:{} list {})",
        cluster.etcd().client_url(),
        demo::ETCD_CLIENT_PORT,
        demo::SCOPE
    );
    println!(
        "Logs:   {}/node*/warden.log, {}/etcd1.log, {}/haproxy.log",
        dir.display(),
        dir.display(),
        dir.display()
    );
    println!("\nPress Ctrl-C to stop.");
}

fn print_redis_banner(cluster: &Cluster, dir: &Path, took: Duration) {
    let primary = cluster.primary_index();
    println!(
        "\nWarden demo cluster '{}' (Redis) is up (formed {:.1} s after the agents started).\n",
        demo::REDIS_SCOPE,
        took.as_secs_f64()
    );
    println!("Connect through HAProxy (writes) or ask the Sentinel ports (any client that speaks Sentinel):");
    println!(
        "  write (primary):  redis-cli -p {} -a {REDIS_PASSWORD} --no-auth-warning",
        demo::HAPROXY_WRITE_PORT
    );
    println!(
        "  Sentinel:         redis-cli -p {} SENTINEL get-master-addr-by-name mymaster",
        demo::SENTINEL_PORTS[0]
    );
    println!(
        "  redis-py:         Sentinel([('127.0.0.1', {}), ('127.0.0.1', {}), ('127.0.0.1', {})]).master_for('mymaster', password='{REDIS_PASSWORD}')",
        demo::SENTINEL_PORTS[0],
        demo::SENTINEL_PORTS[1],
        demo::SENTINEL_PORTS[2]
    );
    println!("\nNodes:");
    for (i, n) in cluster.nodes().iter().enumerate() {
        let role = if Some(i) == primary {
            "primary"
        } else {
            "replica"
        };
        println!(
            "  {:<6} {:<8} redis 127.0.0.1:{}   Sentinel 127.0.0.1:{}   REST {}/patroni",
            n.name(),
            role,
            n.redis_port(),
            n.sentinel_port().unwrap_or(0),
            n.api_url()
        );
    }
    println!(
        "\nREST:   curl {}/cluster    (also /primary, /replica, /health, /metrics)",
        cluster.node(0).api_url()
    );
    println!("wardenctl -c {}/node1/warden.yml list", dir.display());
    println!(
        "Logs:   {}/node*/warden.log, {}/node*/data/redis.log",
        dir.display(),
        dir.display()
    );
    println!("\nPress Ctrl-C to stop.");
}

fn shutdown(cluster: &mut Cluster) -> Result<()> {
    println!("Stopping: agents (replicas first, then the primary), HAProxy, etcd ...");
    let mut clean = true;
    for (name, res) in cluster.stop(STOP_TIMEOUT) {
        match res {
            Ok(st) if st.success() => println!("  {name}: stopped"),
            Ok(st) => {
                clean = false;
                println!("  {name}: exited with {st}");
            }
            Err(e) => {
                clean = false;
                println!("  {name}: {e:#}");
            }
        }
    }
    println!(
        "Stopped{}. Logs are kept in {}.",
        if clean { "" } else { " (see above)" },
        cluster.dir().display()
    );
    Ok(())
}
