//! Versioned schema migrations, one set per backend, kept by refinery in
//! `refinery_schema_history`. A node or a CLI command that finds the schema up to date reads
//! one row and stops: it takes no lock and runs no DDL, so it never waits on (or deadlocks
//! with) the writes of running nodes. Otherwise PostgreSQL migrations run under an advisory
//! lock, once, however many nodes start together.

use crate::{Result, StoreError};
use refinery::{Runner, Target};
use rusqlite::Connection;

mod postgres_set {
    refinery::embed_migrations!("migrations/postgres");
}
mod sqlite_set {
    refinery::embed_migrations!("migrations/sqlite");
}

/// Serialises PostgreSQL migrations when several nodes start at once.
const MIGRATION_LOCK: i64 = 0x736d_696c_6501;
const HISTORY: &str = "refinery_schema_history";

fn latest(runner: &Runner) -> i32 {
    runner.get_migrations().iter().map(|m| m.version()).max().unwrap_or(0)
}

fn failed(e: refinery::Error) -> StoreError {
    StoreError::Database(format!("migration failed: {e}"))
}

/// Brings a PostgreSQL schema up to date.
pub(crate) async fn postgres(client: &mut tokio_postgres::Client) -> Result<()> {
    let runner = postgres_set::migrations::runner();
    if postgres_version(client).await? >= latest(&runner) {
        return Ok(());
    }
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let migrated = postgres_locked(client, runner).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    migrated
}

async fn postgres_locked(client: &mut tokio_postgres::Client, runner: Runner) -> Result<()> {
    // Another node may have migrated while this one waited for the lock.
    if postgres_version(client).await? >= latest(&runner) {
        return Ok(());
    }
    if !postgres_has(client, HISTORY).await? && postgres_has(client, "schema_version").await? {
        // A schema versioned before refinery: record what it has, without running it again.
        let row = client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await?;
        let adopted: i32 = row.get(0);
        if adopted > 0 {
            let fake = postgres_set::migrations::runner().set_target(Target::FakeVersion(adopted));
            fake.run_async(client).await.map_err(failed)?;
        }
        client.batch_execute("DROP TABLE schema_version").await?;
    }
    let report = runner.run_async(client).await.map_err(failed)?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "applied a schema migration");
    }
    Ok(())
}

async fn postgres_has(client: &tokio_postgres::Client, table: &str) -> Result<bool> {
    Ok(client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await?.get(0))
}

/// The highest applied version, 0 for an empty or pre-refinery schema.
async fn postgres_version(client: &tokio_postgres::Client) -> Result<i32> {
    if !postgres_has(client, HISTORY).await? {
        return Ok(0);
    }
    let row = client.query_one(&format!("SELECT COALESCE(MAX(version), 0) FROM {HISTORY}"), &[]).await?;
    Ok(row.get(0))
}

/// Brings a SQLite schema up to date (one process owns the file, so no lock is needed).
pub(crate) fn sqlite(conn: &mut Connection) -> Result<()> {
    let runner = sqlite_set::migrations::runner();
    if sqlite_version(conn)? >= latest(&runner) {
        return Ok(());
    }
    if !sqlite_has(conn, HISTORY)? {
        // A schema versioned before refinery kept its version in `PRAGMA user_version`.
        let adopted: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if adopted > 0 {
            sqlite_set::migrations::runner().set_target(Target::FakeVersion(adopted)).run(conn).map_err(failed)?;
        }
    }
    let report = runner.run(conn).map_err(failed)?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "applied a schema migration");
    }
    Ok(())
}

fn sqlite_has(conn: &Connection, table: &str) -> Result<bool> {
    let n: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))?;
    Ok(n > 0)
}

fn sqlite_version(conn: &Connection) -> Result<i32> {
    if !sqlite_has(conn, HISTORY)? {
        return Ok(0);
    }
    Ok(conn.query_row(&format!("SELECT COALESCE(MAX(version), 0) FROM {HISTORY}"), [], |r| r.get(0))?)
}
