//! Logical dumps: `pg_dump --format=custom` of each database, streamed through the
//! codec into the repository, then proven restorable before they count.
//!
//! For each database: `pg_dump` runs as the data directory's owner against the local
//! server; its stdout is sealed and uploaded in parts (`dumps/<id>/<db>.dump.<n>`)
//! without staging on disk. Then the parts are read back, authenticated, decrypted and
//! piped into `pg_restore --list`, which must succeed and list at least one TOC entry.
//! Only when every database passed is the [`DumpRecord`] written (last: the commit
//! marker). A failed dump leaves parts without a record, which the prune removes as
//! leftovers after a day.

mod process;
pub mod run;

use chrono::Utc;

use super::catalog::{self, Catalog, DumpRecord, DumpedDatabase, DUMP_RECORD, FORMAT};
use warden_pg::process::Programs;
use warden_pg::sql::Sql;
use warden_pg::Settings;

pub use process::DumpError;

/// What a dump job needs.
#[derive(Debug, Clone)]
pub struct DumpJob {
    pub catalog: Catalog,
    pub programs: Programs,
    pub settings: Settings,
    pub compression_level: i32,
    /// Empty: every database that accepts connections except templates.
    pub databases: Vec<String>,
    pub member: String,
    pub system_identifier: u64,
}

/// The object-name form of a database name: anything but `[A-Za-z0-9_.-]` is
/// `%XX`-escaped, so every name maps to one path segment and distinct names stay
/// distinct.
pub fn object_name(db: &str) -> String {
    let mut out = String::with_capacity(db.len());
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl DumpJob {
    /// Databases to dump, and the server version.
    async fn inventory(&self) -> Result<(Vec<String>, u32), DumpError> {
        let mut sql = Sql::new(
            self.settings.local_conn_string(),
            std::time::Duration::from_secs(10),
        );
        let version: u32 = sql
            .query("SELECT current_setting('server_version_num')")
            .await
            .map_err(|e| DumpError::Inventory(e.to_string()))?
            .first()
            .and_then(|r| r.try_get::<_, String>(0).ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| DumpError::Inventory("no server_version_num".into()))?;
        let rows = sql
            .query(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            )
            .await
            .map_err(|e| DumpError::Inventory(e.to_string()))?;
        let present: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<_, String>(0).ok())
            .collect();
        if self.databases.is_empty() {
            return Ok((present, version));
        }
        if let Some(missing) = self.databases.iter().find(|d| !present.contains(d)) {
            return Err(DumpError::Inventory(format!(
                "backup.dump.databases names \"{missing}\", which does not exist or does not accept connections (present: {})",
                present.join(", ")
            )));
        }
        Ok((self.databases.clone(), version))
    }

    /// Dumps, verifies and commits under a fresh id; returns the record.
    pub async fn run(&self) -> Result<DumpRecord, DumpError> {
        self.run_as(&catalog::id_at(Utc::now())).await
    }

    /// The same under `id` (the start time, from [`catalog::id_at`]).
    pub async fn run_as(&self, id: &str) -> Result<DumpRecord, DumpError> {
        let id = id.to_owned();
        let started_at = Utc::now();
        let (dbs, pg_version) = self.inventory().await?;
        if dbs.is_empty() {
            return Err(DumpError::Inventory("no database to dump".into()));
        }
        let dir = self.catalog.dump_dir(&id);
        let mut databases = Vec::with_capacity(dbs.len());
        for db in &dbs {
            tracing::info!(dump = %id, database = %db, "pg_dump starting");
            let prefix = format!("{dir}/{}.dump", object_name(db));
            let (parts, size, stored_size) = process::dump_to_parts(self, db, &prefix).await?;
            let toc_entries = process::verify_parts(self, db, &dir, &parts).await?;
            tracing::info!(dump = %id, database = %db, size, toc_entries, "dump verified with pg_restore --list");
            databases.push(DumpedDatabase {
                name: db.clone(),
                size,
                stored_size,
                parts,
                toc_entries,
            });
        }
        let record = DumpRecord {
            format: FORMAT,
            id: id.clone(),
            member: self.member.clone(),
            system_identifier: self.system_identifier,
            pg_version,
            started_at,
            finished_at: Utc::now(),
            databases,
        };
        self.catalog
            .put_record(&format!("{dir}/{DUMP_RECORD}"), &record)
            .await
            .map_err(|e| DumpError::Repo(e.to_string()))?;
        tracing::info!(dump = %id, "dump committed");
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs runner spawns dump jobs: the future must be `Send`. The closure is
    /// never called; type-checking its body is the test.
    #[test]
    fn the_dump_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let _check: fn(&DumpJob) = |job| assert_send(&job.run());
    }

    #[test]
    fn object_names_are_one_segment_and_distinct() {
        assert_eq!(object_name("postgres"), "postgres");
        assert_eq!(object_name("my db/x"), "my%20db%2Fx");
        assert_eq!(object_name("a%20"), "a%2520");
        assert_ne!(object_name("a b"), object_name("a%20b"));
        assert_eq!(object_name("Ünï"), "%C3%9Cn%C3%AF");
    }
}
