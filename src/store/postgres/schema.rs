//! Connecting: migrations under an advisory lock, and the vector columns'
//! dimension fixed at first start.

use std::time::Duration;

use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;

use super::*;

/// The advisory lock that serialises schema setup between instances
/// starting at once.
pub(super) const SETUP_LOCK: i64 = 0x7472_6177_6c00;

impl PgStore {
    /// Connects, runs the migrations and makes sure the vector columns have
    /// the embedder's dimension (adding them on a fresh database).
    pub async fn connect(database_url: &str, dimensions: Option<usize>) -> Result<Self, StoreError> {
        let dimensions = dimensions.ok_or_else(|| {
            StoreError::Config(
                "PostgreSQL needs the embedding dimension: set TRAWL_EMBEDDING_DIMENSIONS (or --embedding-dimensions)"
                    .into(),
            )
        })?;
        if !(1..=16_000).contains(&dimensions) {
            return Err(StoreError::Config(format!("embedding dimension {dimensions} is out of range (1..=16000)")));
        }
        let opts: PgConnectOptions = database_url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Filtered vector searches keep walking the HNSW graph
                    // until they have enough rows (pgvector 0.8).
                    conn.execute("SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100").await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(SETUP_LOCK).execute(&mut *conn).await?;
        let setup = async {
            crate::store::migrations::migrator(crate::store::migrations::POSTGRES).run(&mut *conn).await?;
            ensure_dimensions(&mut conn, dimensions).await
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(SETUP_LOCK).execute(&mut *conn).await?;
        setup?;
        drop(conn);
        Ok(Self { pool, owner: None, indexed_since_analyze: 0.into() })
    }
}

/// Adds the `vector(N)` columns and their indexes on first start; refuses a
/// store made for another dimension, which would fail on every insert.
pub(super) async fn ensure_dimensions(conn: &mut sqlx::PgConnection, dimensions: usize) -> Result<(), StoreError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM trawl_settings WHERE key = 'embedding_dimensions'")
            .fetch_optional(&mut *conn)
            .await?;
    match stored {
        Some(d) if d == dimensions.to_string() => Ok(()),
        Some(d) => Err(StoreError::Config(format!(
            "the database stores {d}-dimension vectors but the embedder makes {dimensions}: \
             use an embedder of {d} dimensions, or a new database"
        ))),
        None => {
            let ddl = format!(
                "ALTER TABLE chunks ADD COLUMN embedding vector({dimensions});
                 ALTER TABLE code_examples ADD COLUMN embedding vector({dimensions});
                 CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops) WHERE indexed;
                 CREATE INDEX chunks_to_index ON chunks (id) WHERE NOT indexed AND embedding IS NOT NULL;
                 CREATE INDEX code_embedding ON code_examples USING hnsw (embedding vector_cosine_ops);
                 CREATE INDEX chunks_without_vectors ON chunks (id) WHERE embedding IS NULL;
                 CREATE INDEX code_without_vectors ON code_examples (id) WHERE embedding IS NULL;
                 INSERT INTO trawl_settings (key, value) VALUES ('embedding_dimensions', '{dimensions}');"
            );
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}
