// Builds the dashboard into dist/, which the trawl binary embeds:
//   1. TypeScript types generated from the service's own types:
//      src/events.d.ts from docs/events.schema.json (the Socket.IO events),
//      src/api.d.ts from docs/openapi.json (the HTTP API's shapes);
//   2. src/main.ts and its npm dependencies bundled and minified by esbuild;
//   3. each asset also gzipped, served to clients that accept it.
// Same lockfile, same output: CI rebuilds and compares with what ships.
import { readFileSync, writeFileSync, mkdirSync, rmSync, copyFileSync } from 'node:fs';
import { gzipSync, constants } from 'node:zlib';
import { compile } from 'json-schema-to-typescript';
import * as esbuild from 'esbuild';

const here = new URL('.', import.meta.url).pathname;
const docs = `${here}../docs`;
const options = {
  additionalProperties: false,
  unreachableDefinitions: true,
  format: true,
  style: { singleQuote: true, printWidth: 100 },
};

const banner = (from) =>
  `/* Generated from ${from} (made from the service's Rust types) by web/build.mjs with\n` +
  ` * json-schema-to-typescript; do not edit: \`npm run build\` in web/ rewrites it. */`;

const events = JSON.parse(readFileSync(`${docs}/events.schema.json`, 'utf8'));
writeFileSync(
  `${here}src/events.d.ts`,
  await compile(events, 'TrawlEvents', { ...options, bannerComment: banner('docs/events.schema.json') }),
);

// The HTTP API's component schemas, as one JSON Schema.
const openapi = JSON.parse(readFileSync(`${docs}/openapi.json`, 'utf8'));
const defs = JSON.parse(JSON.stringify(openapi.components.schemas).replaceAll('#/components/schemas/', '#/$defs/'));
const api = { title: 'TrawlApi', type: 'object', additionalProperties: false, properties: {}, $defs: defs };
writeFileSync(
  `${here}src/api.d.ts`,
  await compile(api, 'TrawlApi', { ...options, bannerComment: banner('docs/openapi.json') }),
);

rmSync(`${here}dist`, { recursive: true, force: true });
mkdirSync(`${here}dist`);
await esbuild.build({
  entryPoints: [`${here}src/main.ts`],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  legalComments: 'none',
  charset: 'utf8',
  outfile: `${here}dist/app.js`,
  logLevel: 'warning',
});
copyFileSync(`${here}src/index.html`, `${here}dist/index.html`);
copyFileSync(`${here}src/style.css`, `${here}dist/style.css`);
for (const f of ['index.html', 'app.js', 'style.css']) {
  const body = readFileSync(`${here}dist/${f}`);
  writeFileSync(`${here}dist/${f}.gz`, gzipSync(body, { level: constants.Z_BEST_COMPRESSION, mtime: 0 }));
}
