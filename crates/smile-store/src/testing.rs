//! For tests of this and other crates: a PostgreSQL database of their own, when there is one.

use crate::StoreError;
use tokio_postgres::NoTls;

/// The variable that names the PostgreSQL server tests may use.
pub const TEST_URL_VAR: &str = "SMILE_TEST_POSTGRES_URL";

/// A URL to a fresh, empty schema on the test server, or None (with a printed notice) when
/// `SMILE_TEST_POSTGRES_URL` is unset. Panics when it is set but the server cannot be
/// reached: a configured backend that is down must fail the run, not skip it.
pub async fn fresh_postgres_schema() -> Option<String> {
    let Ok(base) = std::env::var(TEST_URL_VAR) else {
        println!("notice: {TEST_URL_VAR} is not set; skipping the PostgreSQL variant");
        return None;
    };
    match create_schema(&base).await {
        Ok(url) => Some(url),
        Err(e) => panic!("{TEST_URL_VAR}={base} is set but unusable: {e}"),
    }
}

async fn create_schema(base: &str) -> Result<String, StoreError> {
    let (client, connection) = tokio_postgres::connect(base, NoTls).await?;
    tokio::spawn(connection);
    let schema = format!("smile_test_{}", uuid_like());
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
    let separator = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{separator}options=-c%20search_path%3D{schema}"))
}

fn uuid_like() -> String {
    (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}
