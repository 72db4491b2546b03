"""The official Firecrawl Python SDK (firecrawl-py), unmodified, pointed at trawl.

Usage: firecrawl_client.py API_URL KEY SITE
  SITE is the fixture site's base URL (http://127.0.0.1:PORT).

Prints one JSON line per step and {"kind": "done"} at the end.
"""

import json
import sys

from firecrawl import Firecrawl
from firecrawl.v2.types import PaginationConfig


def emit(**line):
    print(json.dumps(line, default=str), flush=True)


def doc_line(step, d):
    md = d.metadata_typed
    emit(kind="doc", step=step, markdown=d.markdown, html=d.html, raw_html=d.raw_html, links=d.links,
         title=md.title, source_url=md.source_url, url=md.url, status_code=md.status_code)


def error_line(step, fn):
    try:
        fn()
        emit(kind="error", step=step, raised=False)
    except Exception as e:  # the SDK's own exception types
        emit(kind="error", step=step, raised=True, type=type(e).__name__, message=str(e))


def main():
    api_url, key, site = sys.argv[1:4]
    fc = Firecrawl(api_key=key, api_url=api_url)

    doc = fc.scrape(f"{site}/code/examples.html", formats=["markdown", "html", "rawHtml", "links"])
    doc_line("scrape", doc)

    job = fc.crawl(f"{site}/docs/1.html", limit=12, max_discovery_depth=2, crawl_entire_domain=True,
                   poll_interval=1, timeout=60)
    emit(kind="crawl", step="crawl", id=getattr(job, "id", None), status=job.status, completed=job.completed,
         total=job.total, docs=len(job.data), urls=sorted(d.metadata_typed.source_url for d in job.data),
         empty=sum(1 for d in job.data if not d.markdown))

    started = fc.start_crawl(f"{site}/", limit=200, max_discovery_depth=5, crawl_entire_domain=True)
    emit(kind="started", step="start_crawl", id=started.id, url=started.url)
    cancelled = fc.cancel_crawl(started.id)
    status = fc.get_crawl_status(started.id)
    emit(kind="cancel", step="cancel_crawl", cancelled=cancelled, status=status.status)

    # A crawl with more pages than one status page holds, read page by page.
    big = fc.crawl(f"{site}/", limit=120, max_discovery_depth=8, crawl_entire_domain=True, poll_interval=1, timeout=90)
    first = fc.get_crawl_status(big.id, pagination_config=PaginationConfig(auto_paginate=False))
    pages, seen, nxt = 1, len(first.data), first.next
    while nxt:
        page = fc.get_crawl_status_page(nxt)
        pages, seen, nxt = pages + 1, seen + len(page.data), page.next
    emit(kind="pages", step="pagination", total_docs=len(big.data), completed=big.completed, pages=pages, seen=seen)

    errors = fc.get_crawl_errors(job.id)
    emit(kind="errors", step="crawl_errors", errors=len(errors.errors), robots=len(errors.robots_blocked))

    mapped = fc.map(f"{site}/", limit=50, search="docs")
    emit(kind="map", step="map", links=[link.url for link in mapped.links])

    batch = fc.batch_scrape([f"{site}/docs/1.html", f"{site}/docs/2.html", f"{site}/code/examples.html"],
                            formats=["markdown"], poll_interval=1, wait_timeout=60)
    emit(kind="batch", step="batch_scrape", status=batch.status, completed=batch.completed, total=batch.total,
         urls=sorted(d.metadata_typed.source_url for d in batch.data))

    error_line("unsupported_format", lambda: fc.scrape(f"{site}/docs/1.html", formats=["screenshot"]))
    error_line("private_or_missing", lambda: fc.scrape("ftp://example.com/file"))
    error_line("unknown_crawl", lambda: fc.get_crawl_status("01a1f000-0000-7000-8000-000000000000"))
    emit(kind="done")


if __name__ == "__main__":
    main()
