//! Tests of the whole loader: YAML text in, `Config` or the full list of problems out.

mod addresses;
mod backup;
mod backup_copies;
mod backup_jobs;
mod bootstrap;
mod bootstrap_restore;
mod etcd3;
mod fixtures;
mod loader;
mod member_settings;
mod objectives;
mod pg_tls;
mod postgresql;
mod redis;
mod restapi_tls;
mod stack_jobs;
mod unknown_keys;
