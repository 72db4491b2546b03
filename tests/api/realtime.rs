//! Live progress over Socket.IO with real clients (JS socket.io-client v4 and
//! python-socketio), over SSE, and by polling.

use std::time::Duration;

use serde_json::{Value, json};
use trawl::auth::ApiKeys;

use crate::helpers::*;

fn paced_site() -> SiteOptions {
    SiteOptions { latency: Duration::from_millis(15), ..Default::default() }
}

fn long_crawl(site: &FixtureServer) -> Value {
    json!({"url": site.url("/"), "crawlType": "recursive", "maxDepth": 10, "concurrency": 4})
}

fn percentages(events: &[(String, Value)]) -> Vec<f64> {
    events.iter().filter(|(n, _)| n == "crawl_progress").map(|(_, d)| d["percentage"].as_f64().unwrap()).collect()
}

async fn subscriber_gets_snapshot_progress_and_completion(client: Client) {
    let app = spawn_app().await;
    let site = fixture_with(paced_site()).await;
    let id = app.start_crawl(long_crawl(&site)).await;
    let lines = run_client(client, "watch", &app.address, &[&id]).await;
    assert_eq!(ack_of(&lines, "subscribe")["ok"], true, "{lines:?}");
    let events = events_of(&lines);
    assert_eq!(events[0].0, "crawl_progress", "the snapshot comes first: {events:?}");
    assert_eq!(events[0].1["progressId"], id.as_str());
    let p = percentages(&events);
    assert!(p.len() >= 3, "progress flows: {p:?}");
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "percentage never decreases: {p:?}");
    let ids: Vec<u64> = events.iter().map(|(_, d)| d["eventId"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "events are numbered in order: {ids:?}");
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "crawl_progress");
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["pagesCrawled"], 300);
    assert_eq!(last["percentage"], 100.0);
    assert!(events.iter().all(|(_, d)| d.get("log").is_some() || d.get("progressId").is_some()));
}

async fn stop_gives_stopping_then_stopped_and_no_running_progress_after(client: Client) {
    let app = spawn_app().await;
    let site = fixture_with(paced_site()).await;
    let id = app.start_crawl(long_crawl(&site)).await;
    let lines = run_client(client, "stop", &app.address, &[&id]).await;
    let stop_ack = ack_of(&lines, "stop");
    assert_eq!(stop_ack["ok"], true, "{stop_ack}");
    let events = events_of(&lines);
    let stopping = events.iter().position(|(n, _)| n == "crawl:stopping").expect("crawl:stopping");
    let stopped = events.iter().position(|(n, _)| n == "crawl:stopped").expect("crawl:stopped");
    assert!(stopping < stopped, "{events:?}");
    assert_eq!(events.iter().filter(|(n, _)| n == "crawl:stopped").count(), 1);
    assert_eq!(events[stopping].1["status"], "stopping");
    assert_eq!(events[stopped].1["status"], "cancelled");
    assert!(events[stopped].1["timestamp"].is_string());
    for i in [stopping, stopped] {
        let (name, data) = &events[i];
        assert!(data["eventId"].as_u64().is_some_and(|n| n > 0), "{name} carries its eventId: {data}");
        assert!(data["emittedAt"].is_string(), "{name} carries emittedAt: {data}");
    }
    assert!(events[stopping].1["eventId"].as_u64() < events[stopped].1["eventId"].as_u64());
    assert!(
        events[stopping..].iter().all(|(n, d)| n != "crawl_progress" || d["status"] != "running"),
        "no running progress after stopping: {events:?}"
    );
    assert!(events[stopped + 1..].is_empty(), "nothing after crawl:stopped: {events:?}");
    assert_eq!(app.status(&id).await["status"], "cancelled");
}

async fn reconnect_mid_crawl_gets_the_snapshot(client: Client) {
    let app = spawn_app().await;
    let site = fixture_with(paced_site()).await;
    let id = app.start_crawl(long_crawl(&site)).await;
    let lines = run_client(client, "reconnect", &app.address, &[&id]).await;
    let back = lines.iter().position(|l| l["kind"] == "mark" && l["step"] == "reconnected").unwrap();
    let before: Vec<f64> = percentages(&events_of(&lines[..back]));
    let after = events_of(&lines[back..]);
    assert_eq!(after[0].0, "crawl_progress", "a snapshot at once: {after:?}");
    assert!(after[0].1["pagesCrawled"].as_u64().unwrap() >= 3);
    assert!(after[0].1["percentage"].as_f64().unwrap() >= *before.last().unwrap());
    assert_eq!(after.last().unwrap().1["status"], "completed");
}

async fn tenants_cannot_see_or_stop_each_others_crawls(client: Client) {
    let keys = ApiKeys::from_pairs([("key-alpha-123", "alpha"), ("key-beta-4567", "beta")]);
    let app = spawn_app_with(|c| c.api_keys = keys).await;
    let site = fixture_with(paced_site()).await;
    let id = app.start_crawl_as("key-alpha-123", long_crawl(&site)).await;
    let lines = run_client(client, "tenants", &app.address, &[&id, "key-beta-4567", "wrong-key-000"]).await;
    assert_eq!(ack_of(&lines, "subscribe_other")["error"]["code"], "not_found", "{lines:?}");
    assert_eq!(ack_of(&lines, "stop_other")["error"]["code"], "not_found");
    assert_eq!(ack_of(&lines, "list")["crawls"], json!([]));
    let refused: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "connect_error").collect();
    assert_eq!(refused.len(), 2, "a bad key and no key are refused: {lines:?}");
    assert!(refused.iter().all(|l| l["message"].as_str().unwrap().contains("unauthorized")), "{refused:?}");
    assert!(
        events_of(&lines).iter().all(|(n, _)| n != "crawl_progress"),
        "beta never sees alpha's progress: {lines:?}"
    );
    let s: Value = app
        .request_as("key-alpha-123", reqwest::Method::GET, &format!("/api/crawls/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(s["status"], "cancelled", "beta's stop did nothing: {s}");
}

async fn malformed_payloads_get_error_acks_on_a_connection_that_stays_up(client: Client) {
    let (app, site) = (spawn_app().await, fixture().await);
    let id = app.start_crawl(crawl_body(site.url("/docs/1.html"), "page")).await;
    app.wait_terminal(&id).await;
    let lines = run_client(client, "malformed", &app.address, &[&id]).await;
    for (step, code) in [
        ("no_payload", "invalid_payload"),
        ("string_payload", "invalid_payload"),
        ("number_payload", "invalid_payload"),
        ("array_payload", "invalid_payload"),
        ("missing_id", "missing_progress_id"),
        ("numeric_id", "invalid_progress_id"),
        ("unknown_id", "not_found"),
        ("unknown_stop", "not_found"),
        ("unknown_event", "unknown_event"),
        ("oversized", "payload_too_large"),
    ] {
        let a = ack_of(&lines, step);
        assert_eq!(a["error"]["code"], code, "{step}: {a}");
        assert!(a["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{step}: {a}");
    }
    let error_event = events_of(&lines).into_iter().find(|(n, _)| n == "error").expect("an error event");
    assert_eq!(error_event.1["error"]["code"], "invalid_payload");
    assert_eq!(ack_of(&lines, "still_usable")["ok"], true);
    assert_eq!(ack_of(&lines, "still_usable")["status"], "completed", "a finished crawl's final state");
    let mark = lines.iter().find(|l| l["kind"] == "mark" && l["step"] == "connected").unwrap();
    assert_eq!(mark["connected"], true);
}

/// Runs each case once per real client: socket.io-client (Node) and
/// python-socketio.
macro_rules! clients {
    ($($name:ident),* $(,)?) => {
        mod js {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Client::Js).await;
            })*
        }
        mod python {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Client::Python).await;
            })*
        }
    };
}

clients!(
    subscriber_gets_snapshot_progress_and_completion,
    stop_gives_stopping_then_stopped_and_no_running_progress_after,
    reconnect_mid_crawl_gets_the_snapshot,
    tenants_cannot_see_or_stop_each_others_crawls,
    malformed_payloads_get_error_acks_on_a_connection_that_stays_up,
);

#[tokio::test]
async fn js_crawl_list_subscribers_get_crawls_update_when_a_crawl_starts_and_ends() {
    let (app, site) = (spawn_app().await, fixture().await);
    let lines = run_client(Client::Js, "list", &app.address, &[&site.url("/docs/3.html")]).await;
    assert_eq!(ack_of(&lines, "subscribe_crawls")["ok"], true);
    let id = lines.iter().find(|l| l["step"] == "started").unwrap()["progressId"].as_str().unwrap().to_string();
    let updates: Vec<Value> =
        events_of(&lines).into_iter().filter(|(n, _)| n == "crawls_update").map(|(_, d)| d).collect();
    assert_eq!(updates[0]["crawls"], json!([]), "the current list comes at once");
    let statuses: Vec<&str> = updates
        .iter()
        .filter_map(|u| u["crawls"].as_array().unwrap().iter().find(|c| c["progressId"] == id.as_str()))
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.last(), Some(&"completed"), "{updates:?}");
    assert_eq!(ack_of(&lines, "unsubscribe_crawls")["ok"], true);
}

async fn open_sse(app: &TestApp, id: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(&format!("/api/crawls/{id}/events")));
    if let Some(l) = last_event_id {
        req = req.header("Last-Event-ID", l);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn sse_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let app = spawn_app().await;
    let site = fixture_with(paced_site()).await;
    let id = app.start_crawl(long_crawl(&site)).await;

    let resp = open_sse(&app, &id, None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut first = SseReader::new(resp);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(first.next().await.expect("an event"));
    }
    drop(first);
    let last_id = seen.last().unwrap().id.clone().unwrap();
    // Miss a few events while disconnected.
    app.wait_for(&id, |s| s["pagesCrawled"].as_u64() >= Some(150) || s["status"] != "running").await;

    let mut again = SseReader::new(open_sse(&app, &id, Some(&last_id)).await);
    let mut rest = Vec::new();
    while let Some(f) = again.next().await {
        rest.push(f);
    }
    let ids: Vec<u64> = seen.iter().chain(&rest).map(|f| f.id.as_ref().unwrap().parse().unwrap()).collect();
    let first_missed = rest[0].id.as_ref().unwrap().parse::<u64>().unwrap();
    assert_eq!(first_missed, last_id.parse::<u64>().unwrap() + 1, "resumes right after the last seen event");
    assert!(ids[2..].windows(2).all(|w| w[1] == w[0] + 1), "no gap and no repeat after the snapshot: {ids:?}");
    let last = rest.last().unwrap();
    assert_eq!(last.event.as_deref(), Some("crawl_progress"));
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["status"], "completed", "the stream ends with the terminal event");

    // A reconnect after the final event is told to stop.
    let done = open_sse(&app, &id, last.id.as_deref()).await;
    assert_eq!(done.status(), 204);
}

#[tokio::test]
async fn sse_of_a_stopped_crawl_ends_with_stopping_and_stopped() {
    let app = spawn_app_with(|c| c.crawler.request_timeout = Duration::from_secs(120)).await;
    let site = fixture().await;
    let id = app.start_crawl(crawl_body(site.url("/trouble/slow"), "page")).await;
    let mut sse = SseReader::new(open_sse(&app, &id, None).await);
    let snapshot = sse.next().await.unwrap();
    assert_eq!(snapshot.event.as_deref(), Some("crawl_progress"));
    app.stop(&id).await;
    let mut names = Vec::new();
    while let Some(f) = sse.next().await {
        names.push(f.event.unwrap());
    }
    let stopping = names.iter().position(|n| n == "crawl:stopping").expect("stopping");
    assert_eq!(names.last().map(String::as_str), Some("crawl:stopped"), "{names:?}");
    assert!(stopping < names.len() - 1);
}

#[tokio::test]
async fn sse_of_an_unknown_crawl_is_not_found() {
    let app = spawn_app().await;
    let resp = open_sse(&app, "01a1f000-0000-7000-8000-000000000000", None).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn polling_answers_304_to_an_unchanged_state_and_says_how_often_to_poll() {
    let app = spawn_app().await;
    let site = fixture_with(paced_site()).await;
    let id = app.start_crawl(long_crawl(&site)).await;
    let running = app.client.get(app.url(&format!("/api/crawls/{id}"))).send().await.unwrap();
    assert_eq!(running.headers()["x-poll-interval"], "1000");
    app.stop(&id).await;
    app.wait_terminal(&id).await;
    let first = app.client.get(app.url(&format!("/api/crawls/{id}"))).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-poll-interval"], "0");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let again =
        app.client.get(app.url(&format!("/api/crawls/{id}"))).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    let other = app
        .client
        .get(app.url(&format!("/api/crawls/{id}")))
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn tenants_see_only_their_own_crawls_over_http() {
    let keys = ApiKeys::from_pairs([("key-alpha-123", "alpha"), ("key-beta-4567", "beta")]);
    let app = spawn_app_with(|c| c.api_keys = keys).await;
    let site = fixture().await;
    let no_key = app.post_crawl(crawl_body(site.url("/"), "page")).await;
    assert_eq!(no_key.status(), 401);
    assert_eq!(no_key.json::<Value>().await.unwrap()["error"]["code"], "unauthorized");
    let bad = app.request_as("nope-nope-nope", reqwest::Method::GET, "/api/crawls").send().await.unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(app.get("/healthz").await.0, 200, "health stays open");

    let (alpha, beta) = ("key-alpha-123", "key-beta-4567");
    let id = app.start_crawl_as(alpha, crawl_body(site.url("/docs/2.html"), "page")).await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/api/crawls/{id}")),
        (reqwest::Method::GET, format!("/api/crawls/{id}/pages")),
        (reqwest::Method::GET, format!("/api/crawls/{id}/events")),
        (reqwest::Method::POST, format!("/api/crawls/{id}/stop")),
        (reqwest::Method::DELETE, format!("/api/crawls/{id}")),
    ] {
        let resp = app.request_as(beta, method.clone(), &path).send().await.unwrap();
        assert_eq!(resp.status(), 404, "beta {method} {path}");
    }
    let beta_list: Value =
        app.request_as(beta, reqwest::Method::GET, "/api/crawls").send().await.unwrap().json().await.unwrap();
    assert_eq!(beta_list["crawls"], json!([]));
    let alpha_list: Value =
        app.request_as(alpha, reqwest::Method::GET, "/api/crawls").send().await.unwrap().json().await.unwrap();
    assert_eq!(alpha_list["crawls"][0]["progressId"], id.as_str());
}
