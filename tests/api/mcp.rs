//! The MCP server, driven by the official MCP Python SDK (`mcp` from PyPI)
//! as an agent host drives it: over Streamable HTTP with a Bearer key, and
//! over stdio with `trawl mcp`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

fn python() -> tokio::process::Command {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    assert!(py.exists(), "Python test client not installed: run scripts/test");
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(root.join("tests/clients/python/mcp_client.py"));
    cmd
}

fn step<'a>(lines: &'a [Value], step: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["kind"] == "result" && l["step"] == step)
        .unwrap_or_else(|| panic!("no result for {step}: {lines:#?}"))
}

/// A tool error with the API's error code.
fn assert_tool_error(lines: &[Value], name: &str, code: &str) {
    let r = step(lines, name);
    assert_eq!(r["isError"], true, "{name}: {r}");
    assert_eq!(r["structured"]["error"]["code"], code, "{name}: {r}");
}

/// What both transports must show: the tools, a crawl waited for with
/// progress, search, a page read whole, sources, tool errors for bad input
/// on a session that stays up, a stop, a refresh.
fn check_scenario(lines: &[Value], page: &str) {
    let tools = lines.iter().find(|l| l["kind"] == "tools").expect("tools listed");
    let names: Vec<&str> = tools["names"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        names,
        [
            "crawl_status",
            "get_page",
            "list_sources",
            "refresh_source",
            "search_code_examples",
            "search_knowledge",
            "start_crawl",
            "stop_crawl"
        ]
    );
    let schema = &tools["schemas"]["start_crawl"];
    assert_eq!(schema["type"], "object");
    assert!(schema["required"].as_array().unwrap().iter().any(|r| r == "url"), "{schema}");
    assert!(schema.to_string().contains("llms_txt"), "crawlType names its choices: {schema}");

    let crawl = step(lines, "start_crawl");
    assert_eq!(crawl["isError"], false, "{crawl}");
    assert_eq!(crawl["structured"]["status"], "completed", "{crawl}");
    let status = typed(&crawl["structured"]);
    assert_eq!(status.pages_crawled, 1);
    assert!(crawl["text"].as_str().unwrap().contains("completed"));
    let notes = lines.iter().find(|l| l["kind"] == "progress").unwrap()["notes"].as_array().unwrap().clone();
    assert!(!notes.is_empty(), "the wait sent progress notifications");
    assert_eq!(notes.last().unwrap()["progress"], 1.0, "{notes:?}");

    let search = step(lines, "search_knowledge");
    assert_eq!(search["structured"]["results"][0]["url"], page, "{search}");
    assert!(search["text"].as_str().unwrap().contains(page));
    let code = step(lines, "search_code_examples");
    assert!(!code["structured"]["results"].as_array().unwrap().is_empty(), "{code}");
    let read = step(lines, "get_page");
    assert_eq!(read["structured"]["url"], page, "{read}");
    assert!(read["structured"]["markdown"].as_str().unwrap().contains("HashMap"), "{read}");
    assert!(!read["structured"]["chunks"].as_array().unwrap().is_empty());
    let sources = step(lines, "list_sources");
    assert_eq!(sources["structured"]["sources"][0]["pages"], 1, "{sources}");

    // rmcp answers arguments that do not fit the schema as a tool error.
    for name in ["missing_url", "wrong_type"] {
        assert_eq!(step(lines, name)["isError"], true, "{name}");
    }
    assert_tool_error(lines, "blank_query", "invalid_request");
    assert_tool_error(lines, "not_http", "invalid_url");
    assert_tool_error(lines, "unknown_crawl", "not_found");
    assert_tool_error(lines, "page_by_both", "invalid_request");

    let stopped = step(lines, "stopped_status");
    assert_eq!(stopped["structured"]["status"], "cancelled", "{stopped}");
    let refresh = step(lines, "refresh_source");
    assert_eq!(refresh["structured"]["status"], "completed", "{refresh}");
    assert_eq!(refresh["structured"]["refresh"], true, "{refresh}");
    assert_eq!(refresh["structured"]["pagesUnchanged"], 1, "{refresh}");
    assert_eq!(lines.iter().find(|l| l["kind"] == "tools_again").unwrap()["count"], 8);
}

#[tokio::test]
async fn the_python_sdk_uses_every_tool_over_streamable_http_with_a_key() {
    let app = spawn_app_with(|c| {
        c.api_keys = trawl::auth::ApiKeys::from_pairs([("agent-key-12345", "agents")]);
        c.crawler.request_timeout = Duration::from_secs(120);
    })
    .await;
    let site = fixture().await;
    let page = site.url("/code/examples.html");
    let mut cmd = python();
    cmd.args(["http", &app.url("/mcp"), "agent-key-12345", &page, &site.url("/trouble/slow")]);
    let lines = run_script(cmd, "MCP over Streamable HTTP").await;
    check_scenario(&lines, &page);

    // The crawls are ordinary crawls of the key's tenant.
    let (code, listed) = app.get("/api/crawls").await;
    assert_eq!(code, 401, "the API wants the key too: {listed}");
    let other = app
        .client
        .post(app.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401, "no key, no tools");
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_python_sdk_uses_every_tool_over_stdio() {
    if on_postgres() {
        return; // `trawl mcp` here runs on its own SQLite file.
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mcp.db").display());
    let site = fixture().await;
    let page = site.url("/code/examples.html");
    let mut cmd = python();
    cmd.args(["stdio", env!("CARGO_BIN_EXE_trawl"), &db, &page, &site.url("/trouble/slow")]);
    cmd.env("TRAWL_EMBEDDER", "lexical");
    let lines = run_script(cmd, "MCP over stdio").await;
    check_scenario(&lines, &page);
}
