//! Tests of the whole loader: YAML text in, `Config` or the full list of problems out.

mod addresses;
mod backup;
mod backup_jobs;
mod bootstrap;
mod bootstrap_restore;
mod fixtures;
mod loader;
mod member_settings;
mod postgresql;
mod unknown_keys;
