// Drives trawl's dashboard in Debian's Chromium with Playwright
// (playwright-core: no browser download), as a person would: keyboard and
// clicks, no API calls of its own except to compare the page with the truth.
//
// Usage: node dashboard.mjs SCENARIO BASE_URL [ARGS...]
// Prints one JSON line per observation and {"kind":"done"} at the end; a
// line {"kind":"wait","for":X} asks the test to do X and answer on stdin.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const [scenario, base, ...args] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
const waitFor = async (what) => {
  out({ kind: 'wait', for: what });
  const { value } = await lines.next();
  return value;
};
const check = (cond, message) => {
  if (!cond) throw new Error(`check failed: ${message}`);
};

const browser = await chromium.launch({
  executablePath: process.env.TRAWL_CHROME || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

async function api(path, key) {
  const resp = await fetch(base + path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  return resp.json();
}

/** The data-status of every row the crawl list drew for a crawl, in order. */
async function watchRows(page) {
  await page.evaluate(() => {
    window.__rows = [];
    new MutationObserver((records) => {
      for (const r of records)
        for (const n of r.addedNodes)
          if (n.nodeType === 1) {
            const rows = n.matches('tr[data-id]') ? [n] : [...n.querySelectorAll('tr[data-id]')];
            for (const tr of rows)
              window.__rows.push({
                id: tr.dataset.id,
                status: tr.dataset.status,
                pages: tr.querySelector('[data-field=pages]')?.textContent,
              });
          }
    }).observe(document.getElementById('main'), { childList: true, subtree: true });
  });
}

const rowsOf = (page, id) => page.evaluate((id) => window.__rows.filter((r) => r.id === id), id);

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function latency(page) {
  const ms = await page.evaluate(() =>
    performance.getEntriesByName('trawl:progress-to-dom').map((e) => e.duration),
  );
  ms.sort((a, b) => a - b);
  return { count: ms.length, p50: pct(ms, 50), p99: pct(ms, 99), max: ms[ms.length - 1] };
}

const scenarios = {
  // Start a crawl from the form with the keyboard; watch its row move; stop it.
  async live(page) {
    const [siteUrl] = args;
    await page.goto(base + '/');
    await page.locator('#conn[data-state=live]').waitFor();
    await watchRows(page);
    // A refusal is shown in the API's words, and nothing starts.
    await page.getByLabel('URL', { exact: true }).fill('ftp://example.com/');
    await page.getByRole('button', { name: 'Start crawl' }).click();
    const refusal = page.locator('#start-error');
    await refusal.filter({ hasText: 'Not started' }).waitFor();
    out({ kind: 'refusal', message: await refusal.innerText() });
    await page.getByLabel('URL', { exact: true }).fill(siteUrl);
    await page.getByLabel('Type').selectOption('recursive');
    await page.getByLabel('Max depth').fill('6');
    await page.getByLabel('URL', { exact: true }).press('Enter');
    const row = page.locator('#crawl-list tr[data-id]').first();
    await row.waitFor();
    const id = await row.getAttribute('data-id');
    out({ kind: 'started', id });
    // The counters move without a reload: several distinct values drawn.
    await page.waitForFunction(
      (id) => new Set(window.__rows.filter((r) => r.id === id && r.status === 'running').map((r) => r.pages)).size >= 3,
      id,
      { timeout: 30_000 },
    );
    const navigations = await page.evaluate(() => performance.getEntriesByType('navigation').length);
    check(navigations === 1, 'the page was not reloaded');
    // Stop with the keyboard, as the button's label says.
    await page.getByRole('button', { name: /^Stop crawl of/ }).first().focus();
    await page.keyboard.press('Enter');
    await page.locator(`tr[data-id="${id}"][data-status=cancelled]`).waitFor({ timeout: 30_000 });
    const seen = (await rowsOf(page, id)).map((r) => r.status);
    const stopping = seen.indexOf('stopping');
    check(stopping >= 0 && seen.indexOf('cancelled') > stopping, `stopping then cancelled drawn (saw ${seen})`);
    const shown = await page.locator(`tr[data-id="${id}"] [data-field=pages]`).textContent();
    // Nothing moves after: the row is the same a second later and agrees with the API.
    await page.waitForTimeout(1000);
    const after = await page.locator(`tr[data-id="${id}"] [data-field=pages]`).textContent();
    check(after === shown, `the row moved after cancelled: ${shown} → ${after}`);
    check(!(await page.locator(`tr[data-id="${id}"] button`).count()), 'no Stop button on an ended crawl');
    const truth = await api(`/api/crawls/${id}`);
    out({ kind: 'row', id, status: 'cancelled', pages: after, api: `${truth.pagesCrawled} / ${truth.pagesFailed} / ${truth.pagesSkipped}` });
    check(truth.status === 'cancelled', `the API says ${truth.status}`);
    check(after === `${truth.pagesCrawled.toLocaleString('en-US')} / ${truth.pagesFailed} / ${truth.pagesSkipped}`, `row ${after} is the API's`);
    out({ kind: 'latency', ...(await latency(page)) });
  },

  // The server restarts while a crawl runs: the page says so, reconnects by
  // itself, and shows what the API says, with no reload.
  async restart(page) {
    const [id] = args;
    await page.goto(base + '/');
    await page.locator('#conn[data-state=live]').waitFor();
    await page.locator(`tr[data-id="${id}"][data-status=running]`).waitFor({ timeout: 30_000 });
    await page.evaluate(() => {
      window.__conn = [];
      new MutationObserver(() => window.__conn.push(document.getElementById('conn').dataset.state)).observe(
        document.getElementById('conn'),
        { attributes: true },
      );
    });
    await waitFor('restart');
    // The page noticed: the connection line went from live to lost and back.
    await page.waitForFunction(() => window.__conn.includes('lost') && window.__conn.at(-1) === 'live', null, { timeout: 30_000 }).catch(async (e) => {
      throw new Error(`${e}; states seen: ${await page.evaluate(() => window.__conn)}`);
    });
    // The page saw the loss (the banner) or was quick to recover; either way it
    // is live again without a reload.
    await page.locator('#conn[data-state=live]').waitFor({ timeout: 30_000 });
    const truth = await api(`/api/crawls/${id}`);
    await page.locator(`tr[data-id="${id}"][data-status="${truth.status}"]`).waitFor({ timeout: 15_000 });
    out({ kind: 'after-restart', id, status: truth.status });
    // A crawl started after the restart appears by itself (the list's room was re-joined).
    const second = await waitFor('second crawl');
    await page.locator(`tr[data-id="${second}"]`).waitFor({ timeout: 15_000 });
    check((await page.evaluate(() => performance.getEntriesByType('navigation').length)) === 1, 'no reload');
    out({ kind: 'second', id: second });
  },

  // A finished crawl: open one of its pages, read its markdown; search finds it.
  async content(page) {
    const [id, title, word] = args;
    await page.goto(`${base}/#/crawls/${id}`);
    await page.getByRole('link', { name: title, exact: true }).click();
    await page.locator('main > h1', { hasText: title }).waitFor();
    const rendered = await page.locator('#panel-rendered').innerText();
    check(rendered.includes(word), `rendered markdown has ${word}`);
    check(!(await page.locator('#panel-rendered script, #panel-rendered [onerror]').count()), 'nothing executable rendered');
    await page.getByRole('tab', { name: 'Markdown' }).click();
    const raw = await page.locator('#panel-raw').innerText();
    check(raw.includes(word) && raw.includes('```'), 'raw markdown (its code fences) shown as text');
    await page.getByRole('tab', { name: /Chunks/ }).press('ArrowRight');
    await page.getByRole('tab', { name: /Code examples/ }).waitFor();
    out({ kind: 'page', url: page.url() });
    await page.getByRole('link', { name: 'Search' }).click();
    await page.getByLabel('Search for').fill(word);
    await page.getByLabel('Search for').press('Enter');
    await page.locator('#results .hits h3 a').first().waitFor();
    const hrefs = await page.locator('#results .hits h3 a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    out({ kind: 'search', hrefs });
  },

  // Crawled markdown that carries script is shown as inert text and markup.
  async hostile(page) {
    const [pageId] = args;
    await page.goto(`${base}/#/pages/${pageId}`);
    await page.locator('#panel-rendered h1', { hasText: 'Hostile notes' }).waitFor();
    await page.locator('#panel-rendered a', { hasText: 'click me' }).click();
    await page.locator('#panel-rendered a', { hasText: 'a link' }).click().catch(() => {});
    await page.waitForTimeout(300);
    const found = await page.evaluate(() => ({
      xss: window.__xss ?? null,
      executable: document.querySelectorAll(
        '#panel-rendered script, #panel-rendered iframe, #panel-rendered [onerror], #panel-rendered [onclick], #panel-rendered a[href^="javascript:"]',
      ).length,
      text: document.querySelector('#panel-rendered').innerText,
    }));
    check(found.xss === null, `script ran: ${found.xss}`);
    check(found.executable === 0, 'nothing executable left in the rendered markdown');
    check(found.text.includes('Plain words stay.'), 'the text is there');
    out({ kind: 'inert', ...found });
  },

  // Sources: Refresh starts a crawl; Delete asks first, Cancel keeps it.
  async sources(page) {
    const [sourceId, name] = args;
    await page.goto(`${base}/#/sources`);
    const row = page.locator(`tr[data-id="${sourceId}"]`);
    await row.waitFor();
    await page.getByRole('button', { name: `Refresh ${name}` }).click();
    const watch = page.getByRole('link', { name: 'watch it' });
    await watch.waitFor();
    const crawl = (await watch.getAttribute('href')).split('/').pop();
    out({ kind: 'refreshed', crawl });
    // The list redraws when the refresh starts and ends; let it settle.
    await row.getByRole('link', { name: /^completed/ }).and(page.locator(`a[href="#/crawls/${crawl}"]`)).waitFor({ timeout: 30_000 });
    // Delete with the keyboard: Escape cancels, then confirm.
    await page.getByRole('button', { name: `Delete ${name}` }).press('Enter');
    const dialog = page.getByRole('dialog', { name: `Delete ${name}?` });
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    check((await row.count()) === 1, 'cancel keeps the source');
    await page.getByRole('button', { name: `Delete ${name}` }).click();
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await page.getByText(`Deleted ${name}`).waitFor({ timeout: 70_000 });
    check((await page.locator(`tr[data-id="${sourceId}"]`).count()) === 0, 'the row is gone');
    out({ kind: 'deleted' });
  },

  // API keys: a wrong key is refused in words; tenant A's page shows only A's.
  async keys(page) {
    const [good, mine, theirs] = args;
    await page.setViewportSize({ width: 375, height: 800 });
    await page.goto(base + '/');
    const dialog = page.getByRole('dialog', { name: 'API key' });
    await dialog.waitFor();
    await page.getByLabel('Key', { exact: true }).fill('not-a-key-of-anyone');
    await page.getByLabel('Key', { exact: true }).press('Enter');
    await page.locator('#key-error').filter({ hasText: /refused|not valid/ }).waitFor();
    out({ kind: 'refused', message: await page.locator('#key-error').innerText() });
    await page.getByLabel('Key', { exact: true }).fill(good);
    await page.getByLabel('Key', { exact: true }).press('Enter');
    await page.locator(`tr[data-id="${mine}"]`).waitFor({ timeout: 15_000 });
    await page.locator('#conn[data-state=live]').waitFor();
    const ids = await page.locator('tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    check(ids.includes(mine) && !ids.includes(theirs), `only the tenant's crawls: ${ids}`);
    // A narrow screen scrolls tables in their box, not the page.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the page is ${overflow}px wider than a 375px screen`);
    // The key was kept: a reload needs no dialog.
    await page.reload();
    await page.locator(`tr[data-id="${mine}"]`).waitFor({ timeout: 15_000 });
    check(!(await dialog.isVisible()), 'no key asked again after a reload');
    out({ kind: 'rows', ids });
  },

  // Measures (not a test): crawl_progress emitted → DOM updated over a whole
  // crawl, on the crawl list and on the crawl's own view, and the bytes the
  // page costs over the wire.
  async measure(page) {
    const [id, view] = args;
    await page.goto(view === 'crawl' ? `${base}/#/crawls/${id}` : `${base}/`);
    const done = view === 'crawl' ? '.crawl-head .badge.completed' : `tr[data-id="${id}"][data-status=completed]`;
    await page.locator(done).waitFor({ timeout: 300_000 });
    const wire = await page.evaluate(() => {
      const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
      const own = entries.filter((e) => !e.name.includes('/api/') && !e.name.includes('/socket.io/'));
      return {
        files: own.map((e) => `${new URL(e.name).pathname} ${e.encodedBodySize}/${e.decodedBodySize}`),
        transferred: own.reduce((n, e) => n + e.transferSize, 0),
        encoded: own.reduce((n, e) => n + e.encodedBodySize, 0),
        decoded: own.reduce((n, e) => n + e.decodedBodySize, 0),
      };
    });
    out({ kind: 'measure', view: view ?? 'list', latency: await latency(page), wire });
  },

  // Two pictures for the README.
  async screenshots(page) {
    const [id, pageId, dir] = args;
    await page.setViewportSize({ width: 1200, height: 720 });
    await page.goto(`${base}/#/`);
    await page.locator(`tr[data-id="${id}"][data-status=running]`).waitFor({ timeout: 30_000 });
    await page.waitForTimeout(1500);
    await page.screenshot({ path: `${dir}/dashboard-crawls.png` });
    await page.goto(`${base}/#/pages/${pageId}`);
    await page.locator('#panel-rendered h1, #panel-rendered p').first().waitFor();
    await page.screenshot({ path: `${dir}/dashboard-page.png` });
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`no scenario ${scenario}; the scenarios are ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
const context = await browser.newContext();
const page = await context.newPage();
page.on('pageerror', (e) => out({ kind: 'page-error', message: String(e) }));
page.on('console', (m) => {
  if (m.type() === 'error') out({ kind: 'console-error', text: m.text() });
});
try {
  await run(page);
  out({ kind: 'done' });
} catch (e) {
  out({ kind: 'failed', message: String(e?.stack ?? e) });
  await page.screenshot({ path: `/tmp/trawl-dashboard-${scenario}-failure.png` }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
  stdin.close();
}
