// Where the Wink Widget may be framed, in a real browser: inside Smile's iframe quickstart (a
// sandboxed srcdoc frame, an opaque origin) with sandbox tokens, and only on a tenant's allowed
// origins with production tokens. A file of its own, so that each file stays well inside the
// runner's per-file time limit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  calls, connectGeorgeAtSss, eventually, launchBrowser, newUserToken, shot, startHostPage, startServer, uiEvents,
} from './harness.mjs';

let server, host, browser;

before(async () => {
  server = await startServer();
  host = await startHostPage(server.base);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  host?.stop();
  server?.stop();
});

test("Smile's iframe quickstart: the SDK in a sandboxed srcdoc frame (an opaque origin) opens the widget and gets every callback", async () => {
  const page = await browser.newPage({ viewport: { width: 460, height: 800 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  await page.goto(host.url);
  const { userId, token } = await newUserToken(server);
  const inner = `<!doctype html><html><head><meta charset="utf-8"></head><body>
<script src="${server.base}/v2/smile.v2.js"></script>
<script>
  window.calls = [];
  var settings = { userToken: ${JSON.stringify(token)} };
  ['onAccountConnected', 'onClose', 'onUIEvent'].forEach(function (name) {
    settings[name] = function (payload) { window.calls.push({ name: name, payload: payload }); };
  });
  new SmileLinkModal(settings).open();
</script></body></html>`;
  await page.evaluate((html) => {
    const quickstart = document.createElement('iframe');
    quickstart.title = 'quickstart';
    quickstart.setAttribute('sandbox', 'allow-scripts allow-forms allow-popups');
    quickstart.style.cssText = 'width:440px;height:760px;border:0';
    quickstart.srcdoc = html;
    document.body.appendChild(quickstart);
  }, inner);
  const frame = page.frameLocator('iframe[title="quickstart"]').frameLocator('iframe[title="Smile Wink Widget"]');
  await frame.getByRole('button', { name: 'Continue' }).click();
  await connectGeorgeAtSss(frame);
  await shot(page, '30-srcdoc-quickstart');
  const quickstart = page.frames().find((f) => f.url() === 'about:srcdoc');
  assert.equal(await quickstart.evaluate(() => window.origin), 'null', 'the quickstart frame has an opaque origin');
  const got = await eventually('onAccountConnected in the sandboxed frame', async () => {
    const list = await quickstart.evaluate(() => window.calls);
    return list.some((c) => c.name === 'onAccountConnected') && list;
  });
  const connected = got.find((c) => c.name === 'onAccountConnected').payload;
  assert.equal(connected.userId, userId);
  assert.equal(connected.providerId, 'sss');
  assert.ok(uiEvents(got).includes('ProviderListPageOpened'));
  assert.deepEqual(errors, []);
  await page.close();
});

test('in production the widget is framed only on the tenant\'s allowed origins', async () => {
  const production = await server.keys('acme', 'production');
  const made = await production('POST', '/v1/users', {});
  assert.equal(made.status, 201);
  const token = made.body.data.token.accessToken;
  const open = async (messages = []) => {
    const page = await browser.newPage({ viewport: { width: 420, height: 760 } });
    page.on('console', (message) => messages.push(message.text()));
    await page.goto(host.url);
    await page.evaluate((token) => window.openWidget(token, { enableConsentPage: false }), token);
    return page;
  };

  // No allowed origins yet: the browser refuses to show the widget on the host page.
  const messages = [];
  const blocked = await open(messages);
  await eventually('the browser to refuse framing the widget', () =>
    messages.some((m) => m.includes(`Framing '${server.base}/' violates`) && m.includes('frame-ancestors')));
  await eventually("the frame to show the browser's error page", () =>
    blocked.frames().some((f) => f.url().startsWith('chrome-error:')));
  const shown = await blocked.frameLocator('iframe[title="Smile Wink Widget"]').locator('main').count();
  assert.equal(shown, 0, 'nothing of the widget shows');
  const policy = await fetch(`${server.base}/widget/?frame=production.acme`);
  assert.match(policy.headers.get('content-security-policy'), /frame-ancestors 'self'$/);
  await shot(blocked, '31-production-not-allowed');
  await blocked.close();

  const origin = new URL(host.url).origin;
  const put = await production('PUT', '/v1/widget/allowedOrigins', { origins: [origin] });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.deepEqual(put.body.data.origins, [origin]);
  const allowed = await open();
  const frame = allowed.frameLocator('iframe[title="Smile Wink Widget"]');
  await connectGeorgeAtSss(frame);
  await shot(allowed, '32-production-allowed');
  const got = await eventually('onAccountConnected', async () => {
    const list = await calls(allowed);
    return list.some((c) => c.name === 'onAccountConnected') && list;
  });
  assert.ok(got.length > 0);
  await allowed.close();
});
