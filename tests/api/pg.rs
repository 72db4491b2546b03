//! Throwaway PostgreSQL clusters for the tests: `initdb` in a temporary
//! folder, a free port on loopback, torn down when the test process ends
//! (a watchdog process stops the server and removes the folder even if the
//! test binary is killed). One shared cluster serves every test, each with a
//! fresh database; fault tests start a cluster of their own to restart.
//! PostgreSQL and pgvector come from `scripts/test` (Debian's packages).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sqlx::Connection;
use tokio::sync::OnceCell;

pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Removed on drop; the shared cluster is left to its watchdog.
    owned: bool,
}

/// initdb and postgres refuse to run as root: then they run as `postgres`.
fn as_server_user(bin: &Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn server_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    found.pop().expect("no PostgreSQL server under /usr/lib/postgresql: run scripts/test, which installs it")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// A new cluster of its own (blocking: call from `spawn_blocking`).
    pub fn start(owned: bool) -> PgCluster {
        let bin = server_bin();
        let dir = std::env::temp_dir().join(format!("trawl-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir);
            run(chown, "chown");
        }
        let data = dir.join("data");
        let mut init = as_server_user(&bin, "initdb");
        init.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
        run(init, "initdb");
        let cluster = PgCluster { dir, bin, port: free_port(), owned };
        cluster.watchdog();
        cluster.pg_ctl("start");
        cluster
    }

    fn pg_ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB",
            self.port,
            self.dir.display()
        );
        let mut c = as_server_user(&self.bin, "pg_ctl");
        c.arg("-D").arg(self.dir.join("data")).args(["-o", &opts, "-l"]).arg(self.dir.join("log"));
        c.args(["-w", "-t", "30", "-m", "fast", action]).stdout(Stdio::null());
        run(c, &format!("pg_ctl {action}"));
    }

    /// Stops the server and removes the folder once this process is gone.
    /// The watchdog outlives this process by design, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    fn watchdog(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if is_root() {
            format!("runuser -u postgres -- {} -D {}/data stop -m immediate", pg_ctl.display(), self.dir.display())
        } else {
            format!("{} -D {}/data stop -m immediate", pg_ctl.display(), self.dir.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Restarts the server (a fault: every connection breaks).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// A new, empty database; returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await.expect("admin connection");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.ok();
        self.url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.owned {
            let mut c = as_server_user(&self.bin, "pg_ctl");
            c.arg("-D").arg(self.dir.join("data")).args(["stop", "-m", "immediate"]);
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

static SHARED: OnceCell<PgCluster> = OnceCell::const_new();

/// The cluster every test shares.
pub async fn shared() -> &'static PgCluster {
    SHARED
        .get_or_init(|| async { tokio::task::spawn_blocking(|| PgCluster::start(false)).await.expect("cluster") })
        .await
}

/// A fresh database on the shared cluster.
pub async fn fresh_database_url() -> String {
    shared().await.fresh_database().await
}

/// A cluster of the caller's own (to restart, stop...), removed on drop.
pub async fn own_cluster() -> PgCluster {
    tokio::task::spawn_blocking(|| PgCluster::start(true)).await.expect("cluster")
}
