//! A PostgreSQL schema of the benchmark's own, dropped afterwards.

use std::time::Duration;

/// A schema of the benchmark's own in a PostgreSQL database.
pub struct BenchSchema {
    base: String,
    name: String,
    pub url: String,
}

impl BenchSchema {
    pub async fn create(base: &str, scenario: &str) -> anyhow::Result<Self> {
        let name = format!("smile_bench_{}_{}", std::process::id(), scenario.replace('-', "_"));
        Self::run(base, &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).await?;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Ok(BenchSchema { base: base.to_owned(), name, url })
    }

    /// Drops the schema; the stopped engines' last queries may still hold locks, so a
    /// deadlock is tried again.
    pub async fn drop(self) -> anyhow::Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let mut tries = 0;
        loop {
            match Self::run(&self.base, &sql).await {
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("dropping the benchmark schema: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                done => return done,
            }
        }
    }

    async fn run(url: &str, sql: &str) -> anyhow::Result<()> {
        let describe = |e: tokio_postgres::Error| match e.as_db_error() {
            Some(db) => anyhow::anyhow!("PostgreSQL: {}", db.message()),
            None => anyhow::anyhow!("PostgreSQL: {e}"),
        };
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(describe)?;
        tokio::spawn(connection);
        client.batch_execute(sql).await.map_err(describe)
    }
}
