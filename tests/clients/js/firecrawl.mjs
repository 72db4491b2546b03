// The official Firecrawl JS SDK (@mendable/firecrawl-js), unmodified,
// pointed at trawl. Usage: node firecrawl.mjs API_URL KEY SITE
// Prints one JSON line per step and {"kind": "done"} at the end.
import Firecrawl from "@mendable/firecrawl-js";

const [apiUrl, apiKey, site] = process.argv.slice(2);
const emit = (line) => console.log(JSON.stringify(line));
const fc = new Firecrawl({ apiKey, apiUrl });

async function errorLine(step, fn) {
  try {
    await fn();
    emit({ kind: "error", step, raised: false });
  } catch (e) {
    emit({ kind: "error", step, raised: true, type: e.constructor.name, message: String(e.message) });
  }
}

const doc = await fc.scrape(`${site}/code/examples.html`, { formats: ["markdown", "html", "rawHtml", "links"] });
emit({
  kind: "doc", step: "scrape", markdown: doc.markdown, html: doc.html, rawHtml: doc.rawHtml, links: doc.links,
  title: doc.metadata?.title, source_url: doc.metadata?.sourceURL, url: doc.metadata?.url,
  status_code: doc.metadata?.statusCode,
});

const job = await fc.crawl(`${site}/docs/1.html`, { limit: 12, maxDiscoveryDepth: 2, crawlEntireDomain: true, pollInterval: 1, timeout: 60 });
emit({
  kind: "crawl", step: "crawl", id: job.id, status: job.status, completed: job.completed, total: job.total,
  docs: job.data.length, empty: job.data.filter((d) => !d.markdown).length,
});

const started = await fc.startCrawl(`${site}/`, { limit: 200, maxDiscoveryDepth: 5, crawlEntireDomain: true });
const cancelled = await fc.cancelCrawl(started.id);
const status = await fc.getCrawlStatus(started.id);
emit({ kind: "cancel", step: "cancel_crawl", cancelled, status: status.status });

const big = await fc.crawl(`${site}/`, { limit: 120, maxDiscoveryDepth: 8, crawlEntireDomain: true, pollInterval: 1, timeout: 90 });
const first = await fc.getCrawlStatus(big.id, { autoPaginate: false });
emit({
  kind: "pages", step: "pagination", total_docs: big.data.length, completed: big.completed,
  pages: first.next ? 2 : 1, seen: big.data.length,
});

const errors = await fc.getCrawlErrors(job.id);
emit({ kind: "errors", step: "crawl_errors", errors: errors.errors.length, robots: errors.robotsBlocked.length });

const mapped = await fc.map(`${site}/`, { limit: 50, search: "docs" });
emit({ kind: "map", step: "map", links: mapped.links.map((l) => l.url) });

const batch = await fc.batchScrape([`${site}/docs/1.html`, `${site}/docs/2.html`, `${site}/code/examples.html`], {
  options: { formats: ["markdown"] }, pollInterval: 1, timeout: 60,
});
emit({ kind: "batch", step: "batch_scrape", status: batch.status, completed: batch.completed, total: batch.total });

await errorLine("unsupported_format", () => fc.scrape(`${site}/docs/1.html`, { formats: ["screenshot"] }));
await errorLine("private_or_missing", () => fc.scrape("ftp://example.com/file"));
await errorLine("unknown_crawl", () => fc.getCrawlStatus("01a1f000-0000-7000-8000-000000000000"));
emit({ kind: "done" });
