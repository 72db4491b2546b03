//! The schema migrations, embedded in the binary. Built here rather than by
//! `sqlx::migrate!`: that macro needs sqlx's proc-macro crate, which compiles
//! a second SQLite and sqlx's drivers for the build host, minutes of every
//! cold build for reading a folder.

use std::borrow::Cow;

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(file name, SQL)` of each migration, in order.
type Files = &'static [(&'static str, &'static str)];

macro_rules! files {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir, "/", $file)))),*]
    };
}

pub const SQLITE: Files = files!("sqlite":
    "0001_crawls_and_pages.sql",
    "0002_chunks_and_code_examples.sql",
    "0003_rendered_pages.sql",
    "0004_limit_reached.sql",
    "0005_last_event_id.sql",
    "0006_sources.sql",
    "0007_webhooks.sql",
    "0008_links_cut.sql",
    "0009_forget_login.sql",
    "0010_chunk_pages.sql",
    "0011_vector_index.sql",
);

pub const POSTGRES: Files = files!("postgres":
    "0001_schema.sql",
    "0002_rendered_pages.sql",
    "0003_cluster.sql",
    "0004_limit_reached.sql",
    "0005_last_event_id.sql",
    "0006_sources.sql",
    "0007_webhooks.sql",
    "0008_links_cut.sql",
    "0009_forget_login.sql",
    "0010_host_leases.sql",
    "0011_chunk_pages.sql",
);

/// The migrator `sqlx::migrate!` would build from the same files: version
/// and description from the name (`0001_crawls_and_pages.sql` is version 1,
/// "crawls and pages"), the checksum from the SQL.
pub fn migrator(files: Files) -> Migrator {
    let migrations = files
        .iter()
        .map(|(name, sql)| {
            let stem = name.trim_end_matches(".sql");
            let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
            Migration::new(
                version.parse().unwrap_or_default(),
                Cow::Owned(description.replace('_', " ")),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migration file added to the folder but not to the list would never run.
    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (dir, files) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
            let mut on_disk: Vec<String> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let listed: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
            assert_eq!(on_disk, listed, "migrations/{dir}");
            let versions: Vec<i64> = migrator(files).migrations.iter().map(|m| m.version).collect();
            assert!(versions.windows(2).all(|w| w[0] < w[1]) && versions[0] == 1, "{versions:?}");
        }
    }
}
