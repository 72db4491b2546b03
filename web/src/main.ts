// The dashboard's shell: hash routes to views, the connection line, the API
// key dialog. Views are functions that fill <main> and return how to leave.
import { byId } from './dom';
import { ApiFailure, apiKey, get, setApiKey, whenUnauthorized } from './http';
import { live, type Connection } from './live';
import { crawlView } from './views/crawl';
import { crawlsView } from './views/crawls';
import { pageView } from './views/page';
import { searchView } from './views/search';
import { sourcesView } from './views/sources';

export interface View {
  leave?(): void;
}

const main = byId('main');
let view: View = {};

function route(): void {
  view.leave?.();
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean);
  let section = 'crawls';
  if (parts[0] === 'crawls' && parts[1]) view = crawlView(main, decodeURIComponent(parts[1]));
  else if (parts[0] === 'pages' && parts[1]) view = pageView(main, decodeURIComponent(parts[1]));
  else if (parts[0] === 'sources') (view = sourcesView(main)), (section = 'sources');
  else if (parts[0] === 'search') (view = searchView(main, new URLSearchParams(query ?? ''))), (section = 'search');
  else view = crawlsView(main);
  for (const a of document.querySelectorAll<HTMLAnchorElement>('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Focus the new view's heading, so keyboard and screen reader users land there.
  const heading = main.querySelector<HTMLElement>('h1');
  (heading ?? main).focus({ preventScroll: false });
}

// --- connection line -------------------------------------------------------

const conn = byId('conn');
const banner = byId('banner');
const CONNECTION: Record<Connection, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  lost: 'Connection lost, reconnecting…',
  refused: 'Refused',
};
live.onState = (c, why) => {
  conn.textContent = CONNECTION[c];
  conn.dataset.state = c;
  if (c === 'lost') {
    banner.textContent = 'The connection to the service was lost. Reconnecting by itself; what you see may be out of date until then.';
    banner.hidden = false;
  } else if (c === 'refused') {
    banner.textContent = `The service refused the live connection: ${why ?? 'unauthorized'}.`;
    banner.hidden = false;
    askKey(why ? `The key was refused (${why}).` : 'The key was refused.');
  } else {
    banner.hidden = true;
  }
};

// --- API key ---------------------------------------------------------------

const keyDialog = byId<HTMLDialogElement>('key-dialog');
const keyInput = byId<HTMLInputElement>('key-input');
const keyError = byId('key-error');
const keyButton = byId<HTMLButtonElement>('key-button');

function askKey(message?: string): void {
  keyButton.hidden = false;
  keyError.textContent = message ?? '';
  keyError.hidden = !message;
  if (!keyDialog.open) keyDialog.showModal();
  keyInput.focus();
}

whenUnauthorized((f: ApiFailure) => askKey(apiKey() ? `The key was refused: ${f.message}` : f.message));
keyButton.addEventListener('click', () => askKey());
byId('key-form').addEventListener('submit', (e) => {
  const key = keyInput.value.trim();
  if (!key) {
    e.preventDefault();
    keyError.textContent = 'Enter a key.';
    keyError.hidden = false;
    return;
  }
  setApiKey(key);
  keyInput.value = '';
  live.reconnect();
  route();
});
byId('key-forget').addEventListener('click', () => {
  setApiKey(null);
  keyDialog.close();
  live.reconnect();
  route();
});

// --- start -----------------------------------------------------------------

if (apiKey()) keyButton.hidden = false;
window.addEventListener('hashchange', route);
route();
// With keys set and none kept here, the first call answers 401 and the
// dialog asks for one.
void get('/api/crawls?limit=1').catch(() => {});
