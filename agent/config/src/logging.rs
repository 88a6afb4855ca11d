//! `tracing` set-up: human-readable by default, JSON lines with `log.type: json` or
//! `--log-format json`. Patroni's level names map onto tracing's.

use tracing_subscriber::EnvFilter;

pub fn init(level: &str, json: bool) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => "info",
    };
    // RUST_LOG, when set, refines the configured level (e.g. to debug one module).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=warn,tower=warn,hyper=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_target(false).init();
    }
}
