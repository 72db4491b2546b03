"""The official MCP Python SDK against trawl, as an agent host would use it.

Usage:
  mcp_client.py http URL KEY PAGE SLOW          Streamable HTTP at URL (Bearer KEY; "-" for none)
  mcp_client.py stdio TRAWL DATABASE PAGE SLOW  `TRAWL mcp --database DATABASE` over stdio

PAGE is a page with code to crawl; SLOW one that answers after a minute.

Prints one JSON line per step ({"kind": ..., "step": ..., ...}) and
{"kind": "done"} at the end; the Rust test reads them.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def emit(**line):
    print(json.dumps(line), flush=True)


def result_line(step, r):
    text = "".join(c.text for c in r.content if getattr(c, "type", None) == "text")
    emit(kind="result", step=step, isError=bool(r.is_error), structured=r.structured_content, text=text)


async def scenario(server, start_url, slow_url):
    async with Client(server, read_timeout_seconds=120) as client:
        tools = await client.list_tools()
        emit(kind="tools", names=sorted(t.name for t in tools.tools),
             schemas={t.name: t.input_schema for t in tools.tools})

        progress = []

        async def on_progress(done, total, message):
            progress.append({"progress": done, "total": total, "message": message})

        r = await client.call_tool(
            "start_crawl",
            {"url": start_url, "crawlType": "page", "wait": True},
            progress_callback=on_progress,
        )
        result_line("start_crawl", r)
        emit(kind="progress", step="start_crawl", notes=progress)

        result_line("search_knowledge", await client.call_tool(
            "search_knowledge", {"query": "count words with a HashMap", "mode": "text", "limit": 3}))
        result_line("search_code_examples", await client.call_tool(
            "search_code_examples", {"query": "count words", "limit": 3}))
        result_line("get_page", await client.call_tool("get_page", {"url": start_url}))
        result_line("list_sources", await client.call_tool("list_sources", {}))

        # Bad input is a tool error; the session goes on.
        result_line("missing_url", await client.call_tool("start_crawl", {"crawlType": "page"}))
        result_line("wrong_type", await client.call_tool("search_knowledge", {"query": 42}))
        result_line("blank_query", await client.call_tool("search_knowledge", {"query": "   "}))
        result_line("not_http", await client.call_tool("start_crawl", {"url": "ftp://example.com/"}))
        result_line("unknown_crawl", await client.call_tool("crawl_status", {"progressId": "no-such-crawl"}))
        result_line("page_by_both", await client.call_tool("get_page", {"id": 1, "url": start_url}))

        # A crawl that is stopped while a tool waits for it.
        r = await client.call_tool("start_crawl", {"url": slow_url, "crawlType": "page"})
        pid = r.structured_content["progressId"]
        result_line("stop_crawl", await client.call_tool("stop_crawl", {"progressId": pid}))
        result_line("stopped_status", await client.call_tool(
            "crawl_status", {"progressId": pid, "wait": True, "timeoutSeconds": 30}))
        sources = (await client.call_tool("list_sources", {})).structured_content["sources"]
        source = next(s for s in sources if s["url"] == start_url)
        result_line("refresh_source", await client.call_tool(
            "refresh_source", {"sourceId": source["id"], "wait": True, "timeoutSeconds": 60}))

        again = await client.list_tools()
        emit(kind="tools_again", count=len(again.tools))
    emit(kind="done")


def main():
    mode = sys.argv[1]
    if mode == "http":
        url, key, start_url, slow_url = sys.argv[2:6]
        headers = {} if key == "-" else {"Authorization": f"Bearer {key}"}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0))
        server = streamable_http_client(url, http_client=http)
    else:
        trawl, database, start_url, slow_url = sys.argv[2:6]
        server = StdioServerParameters(
            command=trawl,
            args=["mcp", "--database", database, "--allow-private-networks"],
        )
    asyncio.run(scenario(server, start_url, slow_url))


if __name__ == "__main__":
    main()
