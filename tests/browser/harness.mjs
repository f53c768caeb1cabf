// Test harness: a real `smile serve`, a webhook receiver and a host page on another origin,
// and Debian's chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const artifacts = join(root, 'test-artifacts', 'widget');
mkdirSync(artifacts, { recursive: true });

/** Polls `check` until it returns a truthy value, or throws after `ms`. */
export async function eventually(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Starts `smile serve` on an ephemeral port; resolves with its address and sandbox keys. */
export async function startServer(extraArgs = []) {
  const binary = join(root, 'target', 'debug', 'smile');
  const dataDir = mkdtempSync(join(tmpdir(), 'smile-browser-'));
  const child = spawn(binary, ['serve', '--listen', '127.0.0.1:0', '--rate-limit', '0', '--data-dir', dataDir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, SMILE_LOG: 'warn' },
  });
  const lines = createInterface({ input: child.stdout });
  const found = {};
  for await (const line of lines) {
    if (line.startsWith('API key: ')) found.key = line.slice(9);
    if (line.startsWith('API secret: ')) found.secret = line.slice(12);
    if (line.startsWith('Listening on ')) {
      found.base = line.slice(13);
      break;
    }
  }
  /** An API caller with a key pair: `(method, path, body) => { status, body }`. */
  const caller = (key, secret) => {
    const authorization = 'Basic ' + Buffer.from(`${key}:${secret}`).toString('base64');
    return async (method, path, body) => {
      const response = await fetch(found.base + path, {
        method, headers: { authorization, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(20000),
      });
      return { status: response.status, body: await response.json() };
    };
  };
  const api = caller(found.key, found.secret);
  /** Another tenant's key pair in `mode`, and an API caller with it. */
  const keys = async (tenant, mode) => {
    const made = spawn(binary, ['keys', 'create', '--tenant', tenant, '--mode', mode, '--data-dir', dataDir], {
      stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, SMILE_LOG: 'error' },
    });
    const pair = {};
    for await (const line of createInterface({ input: made.stdout })) {
      if (line.startsWith('API key: ')) pair.key = line.slice(9);
      if (line.startsWith('API secret: ')) pair.secret = line.slice(12);
    }
    return caller(pair.key, pair.secret);
  };
  return { ...found, dataDir, binary, api, keys, stop: () => child.kill('SIGKILL') };
}

/** A webhook receiver recording every delivery. */
export async function startReceiver() {
  const events = [];
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      events.push(JSON.parse(body));
      response.end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}/hook`, events, stop: () => server.close() };
}

/** An integrator's page on another origin: it only adds the script tag. */
export async function startHostPage(smileBase) {
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Acme Lending</h1><p><a href="#terms">Terms</a> <button id="opener" type="button">Connect your accounts</button></p>
<script src="${smileBase}/v2/smile.v2.js"></script>
<script>
  window.calls = [];
  window.openWidget = function (token, options) {
    var record = function (name) { return function (payload) { window.calls.push({ name: name, payload: payload }); }; };
    var settings = Object.assign({ userToken: token }, options || {});
    ['onAccountCreated', 'onAccountConnected', 'onAccountRemoved', 'onAccountError', 'onClose', 'onUploadsCreated',
      'onUploadsRemoved', 'onUIEvent'].forEach(function (name) { settings[name] = record(name); });
    settings.onTokenExpired = function () {
      window.calls.push({ name: 'onTokenExpired' });
      window.freshToken().then(function (token) { window.modal.updateToken(token); });
    };
    window.modal = new SmileLinkModal(settings);
    window.modal.open();
  };
</script></body></html>`;
  const server = createServer((request, response) => {
    response.setHeader('content-type', 'text/html');
    response.end(html);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://localhost:${server.address().port}/`, stop: () => server.close() };
}

/**
 * Settles like `promise`, or fails after `ms` naming `what` and the caller's line: Playwright
 * waits on `evaluate`, `exposeFunction` and the keyboard without a limit, and a hang there
 * used to end as the runner's bare "test timed out" with no place.
 */
export function within(what, promise, ms = 20000) {
  const where = new Error(`no answer within ${ms} ms: ${what}`);
  let timer;
  const expired = new Promise((_, reject) => { timer = setTimeout(() => reject(where), ms); });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Gives a page's untimed calls a limit (see {@link within}). */
function limitUntimedCalls(page) {
  for (const name of ['evaluate', 'exposeFunction']) {
    const call = page[name].bind(page);
    page[name] = (...args) => within(`page.${name}`, call(...args));
  }
  for (const name of ['press', 'type']) {
    const call = page.keyboard[name].bind(page.keyboard);
    page.keyboard[name] = (...args) => within(`keyboard.${name}(${JSON.stringify(args[0])})`, call(...args));
  }
  return page;
}

export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.SMILE_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const newPage = browser.newPage.bind(browser);
  browser.newPage = async (...args) => limitUntimedCalls(await newPage(...args));
  return browser;
}

/** A fresh sandbox user's link token. */
export async function newUserToken(server) {
  const { status, body } = await server.api('POST', '/v1/users', {});
  if (status !== 201) throw new Error(`create user: ${status} ${JSON.stringify(body)}`);
  return { userId: body.data.user.id, token: body.data.token.accessToken };
}

/** The callbacks the host page got, as names, and the UI event names among them. */
export async function calls(page) {
  return page.evaluate(() => window.calls);
}

export function uiEvents(list) {
  return list.filter((c) => c.name === 'onUIEvent').map((c) => c.payload.eventName);
}

/** Logs George in at SSS (no MFA there) and waits for the connected page. */
export async function connectGeorgeAtSss(frame) {
  await frame.locator('[data-provider="sss"]').click();
  await frame.getByLabel('E-mail').fill('gpalomero1234@smileapi.io');
  await frame.getByLabel('Password').fill('123456');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await frame.locator('main[data-page="connected"]').waitFor();
}

/** Saves a screenshot of `page` as test-artifacts/widget/NAME.png. */
export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
}
