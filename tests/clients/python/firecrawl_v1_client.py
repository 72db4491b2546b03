"""Firecrawl's v1 client (firecrawl-py's V1FirecrawlApp), unmodified, against trawl's /v1.

Usage: firecrawl_v1_client.py API_URL KEY SITE; prints JSON lines, then {"kind": "done"}.
"""

import json
import sys

from firecrawl import V1FirecrawlApp


def emit(**line):
    print(json.dumps(line, default=str), flush=True)


def main():
    api_url, key, site = sys.argv[1:4]
    app = V1FirecrawlApp(api_key=key, api_url=api_url)
    doc = app.scrape_url(f"{site}/code/examples.html", formats=["markdown", "links"])
    emit(kind="doc", step="scrape", markdown=doc.markdown, links=len(doc.links or []),
         source_url=(doc.metadata or {}).get("sourceURL"))
    job = app.crawl_url(f"{site}/docs/1.html", limit=12, max_depth=2, allow_backward_links=True, poll_interval=1)
    emit(kind="crawl", step="crawl", status=job.status, completed=job.completed, docs=len(job.data),
         empty=sum(1 for d in job.data if not d.markdown))
    mapped = app.map_url(f"{site}/", search="docs", limit=20)
    emit(kind="map", step="map", links=mapped.links)
    emit(kind="done")


if __name__ == "__main__":
    main()
