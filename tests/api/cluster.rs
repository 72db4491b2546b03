//! Several `trawl serve` processes on one PostgreSQL database and one Redis
//! (or none, where rooms then follow the store):
//! progress crosses instances, a stop on one reaches the crawl on another,
//! a killed instance's crawl is taken over, and every crawl runs once.
//! Each test starts its own Redis (`redis-server` on a free port) and its
//! own instances, all killed when the test ends.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The child dies with the test thread that started it, even when the test
/// binary is killed.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on {port} within 10 s");
}

/// A throwaway `redis-server` (Debian's package; `scripts/test` installs it).
pub struct Redis {
    _child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("redis-server runs (scripts/test installs it)");
        wait_for_port(port, "redis-server").await;
        Redis { _child: child, port, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// One `trawl serve` process.
pub struct Instance {
    pub name: String,
    pub address: String,
    child: tokio::process::Child,
    client: reqwest::Client,
}

/// How long an instance may miss heartbeats before its crawls are taken over.
const TTL_MS: &str = "1500";

impl Instance {
    pub async fn start(name: &str, database: &str, redis: Option<&Redis>, max_crawls: usize) -> Instance {
        Self::start_with(name, database, redis, max_crawls, &[]).await
    }

    /// As [`Instance::start`], with more of the environment.
    pub async fn start_with(
        name: &str,
        database: &str,
        redis: Option<&Redis>,
        max_crawls: usize,
        env: &[(&str, &str)],
    ) -> Instance {
        let port = free_port();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_trawl"));
        cmd.arg("serve")
            .env("TRAWL_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database)
            .env("TRAWL_INSTANCE_NAME", name)
            .env("TRAWL_INSTANCE_TTL_MS", TTL_MS)
            .env("TRAWL_MAX_CRAWLS", max_crawls.to_string())
            .env("TRAWL_ALLOW_PRIVATE_NETWORKS", "true")
            .env("TRAWL_EMBEDDER", "lexical")
            .env("TRAWL_REQUEST_TIMEOUT_MS", "5000")
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some(r) = redis {
            cmd.env("REDIS_URL", r.url());
        }
        cmd.envs(env.iter().copied());
        match std::env::var("TRAWL_TEST_LOG") {
            Ok(filter) => cmd.env("RUST_LOG", filter).stderr(Stdio::inherit()),
            Err(_) => cmd.stderr(Stdio::null()),
        };
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("trawl serve starts");
        let address = format!("http://127.0.0.1:{port}");
        trawl::install_crypto_provider();
        let client = reqwest::Client::new();
        for _ in 0..400 {
            if client.get(format!("{address}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Instance { name: name.to_string(), address, child, client };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {name} was not ready within 20 s");
    }

    pub async fn start_crawl(&self, body: Value) -> String {
        let r = self.client.post(format!("{}/api/crawls", self.address)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202, "start on {}", self.name);
        r.json::<Value>().await.unwrap()["progressId"].as_str().unwrap().to_string()
    }

    pub async fn status(&self, id: &str) -> Value {
        let r = self.client.get(format!("{}/api/crawls/{id}", self.address)).send().await.unwrap();
        assert_eq!(r.status(), 200, "status on {}", self.name);
        r.json().await.unwrap()
    }

    pub async fn wait_for(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..1200 {
            let s = self.status(id).await;
            if pred(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("crawl {id} on {} did not reach the state within 60 s", self.name);
    }

    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_for(id, |s| matches!(s["status"].as_str(), Some("completed" | "failed" | "cancelled"))).await
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let body = self.client.get(format!("{}/metrics", self.address)).send().await.unwrap().text().await.unwrap();
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, and the exit it leads to.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("running");
        assert!(std::process::Command::new("kill").arg(pid.to_string()).status().unwrap().success());
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        assert!(exit.expect("exits within 10 s").unwrap().success(), "{} exits cleanly", self.name);
    }

    /// `kill -9`: no shutdown, no last heartbeat, no goodbye.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

async fn db(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.unwrap()
}

/// The instance name in a crawl's `owner` (the name plus a per-process suffix).
async fn owner_of(url: &str, id: &str) -> Option<String> {
    let owner: Option<String> = sqlx::query_scalar("SELECT owner FROM crawls WHERE id = $1")
        .bind(id)
        .fetch_one(&mut db(url).await)
        .await
        .unwrap();
    owner.map(|o| o.rsplit_once('-').map(|(name, _)| name.to_string()).unwrap_or(o))
}

fn paced_site() -> SiteOptions {
    SiteOptions { latency: Duration::from_millis(15), ..Default::default() }
}

fn recursive(site: &FixtureServer, concurrency: u32) -> Value {
    json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": concurrency})
}

#[tokio::test]
async fn progress_of_a_crawl_on_one_instance_reaches_subscribers_and_readers_on_another() {
    let url = crate::pg::fresh_database_url().await;
    let redis = Redis::start().await;
    // A serves the API and runs nothing: every crawl runs on B.
    let a = Instance::start("a", &url, Some(&redis), 0).await;
    let b = Instance::start("b", &url, Some(&redis), 4).await;
    let site = fixture_with(paced_site()).await;
    let id = a.start_crawl(recursive(&site, 4)).await;
    let watch = {
        let (address, id) = (a.address.clone(), id.clone());
        tokio::spawn(async move { run_client(Client::Js, "watch", &address, &[&id]).await })
    };
    // And over SSE on A: B's state as it is stored, to the end.
    let sse = {
        let resp = reqwest::get(format!("{}/api/crawls/{id}/events", a.address)).await.unwrap();
        assert_eq!(resp.status(), 200);
        tokio::spawn(async move {
            let mut reader = SseReader::new(resp);
            let mut frames = Vec::new();
            while let Some(f) = reader.next().await {
                frames.push(f);
            }
            frames
        })
    };
    // Status reads on A show B's live state.
    let live = a.wait_for(&id, |s| s["status"] == "running" && s["pagesCrawled"].as_u64().unwrap_or(0) >= 10).await;
    assert!(live["pagesCrawled"].as_u64().unwrap() < 300, "{live}");
    assert_eq!(owner_of(&url, &id).await.as_deref(), Some("b"));
    let lines = watch.await.unwrap();
    assert_eq!(ack_of(&lines, "subscribe")["ok"], true, "{lines:?}");
    let events = events_of(&lines);
    let progress: Vec<&Value> = events.iter().filter(|(n, _)| n == "crawl_progress").map(|(_, d)| d).collect();
    assert!(progress.len() >= 5, "B's progress flows to A's subscriber: {} events", progress.len());
    let crawled: Vec<u64> = progress.iter().map(|d| d["pagesCrawled"].as_u64().unwrap()).collect();
    assert!(crawled.windows(2).all(|w| w[0] <= w[1]), "in order: {crawled:?}");
    let last = progress.last().unwrap();
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["pagesCrawled"], 300);
    assert_eq!(a.wait_terminal(&id).await["pagesCrawled"], 300);
    let frames = tokio::time::timeout(Duration::from_secs(10), sse).await.expect("the SSE stream ends").unwrap();
    let states: Vec<Value> = frames.iter().map(|f| serde_json::from_str(&f.data).unwrap()).collect();
    assert!(states.iter().filter(|s| s["status"] == "running").count() >= 3, "{} SSE frames", frames.len());
    // Numbered as B numbered them: the ids B's stored states include.
    let ids: Vec<u64> = states.iter().map(|s| s["eventId"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "{ids:?}");
    // Only states stored before B's first event (queued, just started) have none.
    assert!(ids.iter().filter(|&&i| i == 0).count() <= 2 && ids.last() > Some(&0), "{ids:?}");
    let last = frames.last().unwrap();
    assert_eq!((last.id.as_deref(), states.last().unwrap()["status"].as_str()), (Some("final"), Some("completed")));
    assert_eq!(b.metric("trawl_crawls_claimed_total").await, 1.0);
    assert_eq!(a.metric("trawl_crawls_claimed_total").await, 0.0);
}

#[tokio::test]
async fn a_stop_on_one_instance_stops_the_crawl_on_another_and_every_subscriber_hears_it() {
    let url = crate::pg::fresh_database_url().await;
    let redis = Redis::start().await;
    let a = Instance::start("a", &url, Some(&redis), 0).await;
    let b = Instance::start("b", &url, Some(&redis), 4).await;
    // Far too long to end before a client started on a loaded machine has
    // subscribed (≥ 50 s); the stop ends it within seconds.
    let site =
        fixture_with(SiteOptions { pages: 2000, latency: Duration::from_millis(50), ..Default::default() }).await;
    let mut body = recursive(&site, 2);
    body["maxPages"] = json!(2000);
    let id = a.start_crawl(body).await;
    let lines = run_client(Client::Js, "stop_across", &a.address, &[&id, &b.address]).await;
    assert_eq!(ack_of(&lines, "stop")["ok"], true, "{lines:?}");
    for tag in ["a", "b"] {
        let events: Vec<(String, Value)> =
            events_of(&lines.iter().filter(|l| l["socket"] == tag).cloned().collect::<Vec<_>>());
        let stopping = events.iter().position(|(n, _)| n == "crawl:stopping");
        let stopped = events.iter().position(|(n, _)| n == "crawl:stopped");
        let (Some(stopping), Some(stopped)) = (stopping, stopped) else {
            panic!("socket on {tag} got stopping and stopped: {events:?}");
        };
        assert!(stopping < stopped, "{tag}: {events:?}");
        assert_eq!(events[stopped].1["status"], "cancelled");
        assert!(
            events[stopping..].iter().all(|(n, d)| n != "crawl_progress" || d["status"] != "running"),
            "{tag}: no running progress after stopping: {events:?}"
        );
        assert!(events[stopped + 1..].is_empty(), "{tag}: nothing after crawl:stopped: {events:?}");
    }
    // B's tasks have ended: the site hears nothing more, B runs nothing.
    let fin = b.status(&id).await;
    assert_eq!(fin["status"], "cancelled", "{fin}");
    let requests = site.stats().requests.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(site.stats().requests.load(std::sync::atomic::Ordering::SeqCst), requests, "no request after stopped");
    assert_eq!(b.metric("trawl_crawls_active").await, 0.0);
    // Nothing was stored after `cancelled`, and the counters match the rows.
    let mut conn = db(&url).await;
    let (rows, last_fetch, finished): (i64, Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM pages WHERE crawl_id = $1), (SELECT max(fetched_at) FROM pages WHERE crawl_id = $1),
               finished_at FROM crawls WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (crawled, failed, skipped) = counts(&fin);
    assert_eq!(rows as u64, crawled + failed + skipped, "{fin}");
    assert!(rows < 2000, "stopped before the end: {rows}");
    assert!(last_fetch.is_none_or(|t| t <= finished), "a page fetched at {last_fetch:?} after {finished}");
}

#[tokio::test]
async fn a_crawl_whose_instance_is_killed_is_taken_over_and_completed_without_duplicates() {
    let url = crate::pg::fresh_database_url().await;
    let redis = Redis::start().await;
    let a = Instance::start("a", &url, Some(&redis), 0).await;
    let b = Instance::start("b", &url, Some(&redis), 4).await;
    let c = Instance::start("c", &url, Some(&redis), 4).await;
    let site = fixture_with(SiteOptions { latency: Duration::from_millis(30), ..Default::default() }).await;
    let id = a.start_crawl(recursive(&site, 2)).await;
    a.wait_for(&id, |s| s["pagesCrawled"].as_u64().unwrap_or(0) >= 40).await;
    let owner = owner_of(&url, &id).await.expect("claimed");
    let (victim, survivor) = if owner == "b" { (b, c) } else { (c, b) };
    victim.kill().await;
    let mut conn = db(&url).await;
    let before: Vec<String> =
        sqlx::query_scalar("SELECT url FROM pages WHERE crawl_id = $1").bind(&id).fetch_all(&mut conn).await.unwrap();
    assert!(!before.is_empty() && before.len() < 300, "{} pages stored before the kill", before.len());
    let fin = a.wait_terminal(&id).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    let (crawled, failed, skipped) = counts(&fin);
    assert_eq!((crawled, failed), (300, 0), "{fin}");
    assert_eq!(owner_of(&url, &id).await.as_deref(), Some(survivor.name.as_str()));
    let (rows, distinct, attempts): (i64, i64, i32) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT url), (SELECT attempts FROM crawls WHERE id = $1) FROM pages WHERE crawl_id = $1",
    )
    .bind(&id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let total = (crawled + failed + skipped) as i64;
    assert_eq!((rows, distinct, attempts), (total, total, 2), "one row per URL, claimed twice");
    // Pages stored before the kill were not fetched again.
    let refetched: Vec<&String> =
        before.iter().filter(|u| site.hits(u.strip_prefix(&site.url("")).unwrap_or(u)) > 1).collect();
    assert!(refetched.is_empty(), "fetched twice: {refetched:?}");
    assert_eq!(survivor.metric("trawl_crawls_taken_over_total").await, 1.0);
}

#[tokio::test]
async fn many_crawls_posted_at_once_to_several_instances_each_run_exactly_once() {
    let url = crate::pg::fresh_database_url().await;
    let redis = Redis::start().await;
    let instances = [
        Instance::start("a", &url, Some(&redis), 3).await,
        Instance::start("b", &url, Some(&redis), 3).await,
        Instance::start("c", &url, Some(&redis), 3).await,
    ];
    let site = fixture_with(SiteOptions { pages: 20, latency: Duration::from_millis(5), ..Default::default() }).await;
    const CRAWLS: usize = 24;
    let posts = (0..CRAWLS).map(|i| instances[i % 3].start_crawl(recursive(&site, 4)));
    let ids: Vec<String> = futures::future::join_all(posts).await;
    for id in &ids {
        let fin = instances[0].wait_terminal(id).await;
        assert_eq!(fin["status"], "completed", "{fin}");
        assert_eq!(fin["pagesCrawled"], 20, "{fin}");
    }
    let mut conn = db(&url).await;
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM crawls ORDER BY id").fetch_all(&mut conn).await.unwrap();
    assert_eq!(attempts, vec![1; CRAWLS], "each crawl claimed once");
    let mut claimed = 0.0;
    for i in &instances {
        claimed += i.metric("trawl_crawls_claimed_total").await;
    }
    assert_eq!(claimed, CRAWLS as f64);
    // Each page was fetched once per crawl.
    for i in 0..20 {
        let path = trawl_fixtures::Site::path(i);
        assert_eq!(site.hits(&path), CRAWLS as u64, "{path}");
    }
}

#[tokio::test]
async fn crawls_left_by_a_dead_instance_that_cannot_resume_end_with_a_clear_status() {
    let url = crate::pg::fresh_database_url().await;
    // A runs nothing; its crawls wait in the queue.
    let a = Instance::start("a", &url, None, 0).await;
    let site = fixture().await;
    let worn = a.start_crawl(recursive(&site, 2)).await;
    let stopping = a.start_crawl(recursive(&site, 2)).await;
    // As a dead instance leaves them: one claimed three times already, one
    // whose stop was asked while its instance was dying.
    let mut conn = db(&url).await;
    sqlx::query("UPDATE crawls SET owner = 'ghost-00000000', attempts = 3, status = 'running' WHERE id = $1")
        .bind(&worn)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE crawls SET owner = 'ghost-00000000', attempts = 1, status = 'stopping' WHERE id = $1")
        .bind(&stopping)
        .execute(&mut conn)
        .await
        .unwrap();
    let b = Instance::start("b", &url, None, 4).await;
    let fin = b.wait_terminal(&worn).await;
    assert_eq!(fin["status"], "failed", "{fin}");
    assert!(fin["error"].as_str().unwrap().contains("stopped responding 3 times"), "{fin}");
    let fin = b.wait_terminal(&stopping).await;
    assert_eq!(fin["status"], "cancelled", "{fin}");
    assert_eq!(site.hits("/"), 0, "neither crawl fetched anything");
}

#[tokio::test]
async fn an_instance_shutting_down_hands_its_crawl_to_another_which_resumes_it() {
    let url = crate::pg::fresh_database_url().await;
    let redis = Redis::start().await;
    let a = Instance::start("a", &url, Some(&redis), 0).await;
    let b = Instance::start("b", &url, Some(&redis), 4).await;
    let site = fixture_with(SiteOptions { latency: Duration::from_millis(30), ..Default::default() }).await;
    let id = a.start_crawl(recursive(&site, 2)).await;
    let watch = {
        let (address, id) = (a.address.clone(), id.clone());
        tokio::spawn(async move { run_client(Client::Js, "watch", &address, &[&id]).await })
    };
    a.wait_for(&id, |s| s["pagesCrawled"].as_u64().unwrap_or(0) >= 30).await;
    // C joins, then B shuts down (a rolling deploy): the crawl goes on on C
    // at once, without waiting out B's heartbeat.
    let c = Instance::start("c", &url, Some(&redis), 4).await;
    b.terminate().await;
    let fin = a.wait_terminal(&id).await;
    assert_eq!(fin["status"], "completed", "{fin}");
    let (crawled, failed, skipped) = counts(&fin);
    assert_eq!((crawled, failed), (300, 0), "{fin}");
    let mut conn = db(&url).await;
    let (rows, attempts, handoffs): (i64, i32, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pages WHERE crawl_id = $1), attempts, handoffs FROM crawls WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((rows as u64, attempts, handoffs), (crawled + failed + skipped, 2, 1));
    assert_eq!(owner_of(&url, &id).await.as_deref(), Some("c"));
    assert_eq!(c.metric("trawl_crawls_taken_over_total").await, 0.0, "a handover is not a takeover");
    // Pages B stored were not fetched again: only the two B had in flight
    // (concurrency 2) when it stopped may have been.
    let fetches: u64 = (0..300).map(|i| site.hits(&trawl_fixtures::Site::path(i))).sum();
    assert!((300..=302).contains(&fetches), "{fetches} fetches of 300 pages");
    // A's subscriber saw the crawl through: B's last word, then C's events.
    let events = events_of(&watch.await.unwrap());
    assert!(
        events
            .iter()
            .any(|(_, d)| d["status"] == "queued" && d["message"].as_str().unwrap_or("").contains("handed over"))
    );
    let last = &events.last().unwrap().1;
    assert_eq!(last["status"], "completed", "{last}");
    let ids: Vec<u64> = events.iter().filter_map(|(_, d)| d["eventId"].as_u64()).collect();
    assert!(ids.iter().any(|&i| i > 1_000_000_000), "C numbers its events above B's: {ids:?}");
}

#[tokio::test]
async fn without_redis_a_socket_on_one_instance_still_follows_and_stops_a_crawl_on_another() {
    let url = crate::pg::fresh_database_url().await;
    let a = Instance::start("a", &url, None, 0).await;
    let b = Instance::start("b", &url, None, 4).await;
    let paced = fixture_with(paced_site()).await;
    let long =
        fixture_with(SiteOptions { pages: 2000, latency: Duration::from_millis(50), ..Default::default() }).await;
    let watched = a.start_crawl(recursive(&paced, 4)).await;
    let mut body = recursive(&long, 2);
    body["maxPages"] = json!(2000);
    let stopped = a.start_crawl(body).await;
    let (watch_args, stop_args) = ([watched.as_str()], [stopped.as_str()]);
    let (watch, stop) = tokio::join!(
        run_client(Client::Js, "watch", &a.address, &watch_args),
        run_client(Client::Js, "stop", &a.address, &stop_args),
    );
    // The watcher followed B's crawl to its end, its counts never going back.
    let events = events_of(&watch);
    let crawled: Vec<u64> = events.iter().filter_map(|(_, d)| d["pagesCrawled"].as_u64()).collect();
    assert!(crawled.windows(2).all(|w| w[0] <= w[1]), "{crawled:?}");
    assert!(events.iter().filter(|(_, d)| d["status"] == "running").count() >= 2, "{events:?}");
    let ids: Vec<u64> = events.iter().map(|(_, d)| d["eventId"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "numbered as B numbered them: {ids:?}");
    assert!(ids.iter().filter(|&&i| i == 0).count() <= 2 && ids.last() > Some(&0), "{ids:?}");
    let (name, last) = events.last().unwrap();
    assert_eq!(
        (name.as_str(), last["status"].as_str(), last["pagesCrawled"].as_u64()),
        ("crawl_progress", Some("completed"), Some(300))
    );
    // The stopper heard stopping, then stopped, then nothing.
    assert_eq!(ack_of(&stop, "stop")["ok"], true, "{stop:?}");
    let events = events_of(&stop);
    let stopping = events.iter().position(|(n, _)| n == "crawl:stopping").expect("crawl:stopping");
    let end = events.iter().position(|(n, _)| n == "crawl:stopped").expect("crawl:stopped");
    assert!(stopping < end && end == events.len() - 1, "{events:?}");
    assert_eq!(b.status(&stopped).await["status"], "cancelled");
    assert_eq!(b.metric("trawl_crawls_claimed_total").await, 2.0);
}

/// Ten crawls of one host, five on each of two instances: the host's limit
/// (4) holds across them, with the leases in Redis or, without it, in
/// PostgreSQL.
async fn two_instances_share_a_hosts_limit(with_redis: bool) {
    let url = crate::pg::fresh_database_url().await;
    let redis = match with_redis {
        true => Some(Redis::start().await),
        false => None,
    };
    let env = [("TRAWL_PER_HOST_CONCURRENCY", "4")];
    let a = Instance::start_with("a", &url, redis.as_ref(), 5, &env).await;
    let b = Instance::start_with("b", &url, redis.as_ref(), 5, &env).await;
    let site = fixture_with(SiteOptions { pages: 40, ..paced_site() }).await;
    let mut crawls = Vec::new();
    for i in 0..10 {
        let on = if i % 2 == 0 { &a } else { &b };
        crawls.push((on, on.start_crawl(recursive(&site, 8)).await));
    }
    for (on, id) in &crawls {
        let s = on.wait_terminal(id).await;
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(s["pagesCrawled"], 40, "{s}");
    }
    let most = site.stats().max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    println!("the host saw at most {most} requests at once (limit 4)");
    assert!(most <= 4, "the host saw {most} requests at once");
    assert!(most >= 3, "the crawls ran side by side ({most} at most)");
}

#[tokio::test]
async fn two_instances_sharing_redis_keep_a_hosts_limit_across_ten_crawls() {
    two_instances_share_a_hosts_limit(true).await;
}

#[tokio::test]
async fn two_instances_without_redis_keep_a_hosts_limit_through_postgres() {
    two_instances_share_a_hosts_limit(false).await;
}
