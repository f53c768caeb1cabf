// The consumer portal in a real browser: what an integrator's customer sees from a portal link,
// what they can do there, and that a link sees nothing beyond its tenant, mode, subscriptions
// and lifetime.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { artifacts, eventually, launchBrowser, startReceiver, startServer } from './harness.mjs';

let server, good, failing, browser, goodSub, failingSub;

/** A receiver that always answers 500. */
async function startFailing() {
  let hits = 0;
  const s = createServer((request, response) => {
    request.resume();
    request.on('end', () => { hits += 1; response.statusCode = 500; response.end('upstream broke'); });
  });
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${s.address().port}/hook`, hits: () => hits, stop: () => s.close() };
}

async function subscribe(api, name, url) {
  const { status, body } = await api('POST', '/v1/webhooks', { name, url, eventTypes: ['ALL_EVENTS'], active: true, secret: `${name}-secret` });
  assert.equal(status, 200, JSON.stringify(body));
  return body.data.id;
}

async function portalLink(api, request = {}) {
  const { status, body } = await api('POST', '/v1/portal/sessions', request);
  assert.equal(status, 200, JSON.stringify(body));
  return body.data.url;
}

/** A key pair for another tenant, made by `smile keys create` on the server's data directory. */
function otherTenantApi() {
  const out = execFileSync(server.binary, ['keys', 'create', '--tenant', 'other', '--data-dir', server.dataDir], { encoding: 'utf8' });
  const key = out.match(/API key: (\S+)/)[1];
  const secret = out.match(/API secret: (\S+)/)[1];
  const auth = 'Basic ' + Buffer.from(`${key}:${secret}`).toString('base64');
  return async (method, path, body) => {
    const response = await fetch(server.base + path, {
      method, headers: { authorization: auth, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined,
    });
    return { status: response.status, body: await response.json() };
  };
}

async function openPortal(url, width = 1280) {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  await page.goto(url);
  return { page, errors };
}

/** What a page's own script can reach with the token it holds. */
async function portalCall(page, path) {
  return page.evaluate(async (p) => {
    const token = sessionStorage.getItem('smile-portal-token');
    const response = await fetch('/portal/api/' + p, { headers: { authorization: 'Bearer ' + token } });
    return response.status;
  }, path);
}

before(async () => {
  server = await startServer();
  good = await startReceiver();
  failing = await startFailing();
  goodSub = await subscribe(server.api, 'orders', good.url);
  failingSub = await subscribe(server.api, 'billing', failing.url);
  for (let i = 0; i < 3; i++) {
    assert.equal((await server.api('POST', '/v1/events', { type: 'USER_CREATED' })).status, 200);
  }
  await eventually('the deliveries were attempted', () => good.events.length >= 3 && failing.hits() >= 3);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  good?.stop();
  failing?.stop();
  server?.stop();
});

test('the portal shows each subscription with its health and the chart, and its actions work', async () => {
  const { page, errors } = await openPortal(await portalLink(server.api));
  await page.getByRole('heading', { name: 'Endpoints (2)' }).waitFor();
  assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
  const orders = page.getByRole('article', { name: 'orders' });
  const billing = page.getByRole('article', { name: 'billing' });
  await orders.getByText('3 succeeded').waitFor();
  await billing.getByText('3 pending').waitFor();
  await billing.getByText(/Failing since/).waitFor();
  const chart = page.getByRole('img', { name: /3 succeeded, 0 failed, 3 pending in the last 24 hours/ });
  await chart.waitFor();
  assert.ok(await page.locator('.chart rect').count() >= 2, 'bars are drawn');
  await page.screenshot({ path: join(artifacts, 'portal-1280.png'), fullPage: true });

  // The attempt log, with the response body of a failure.
  await billing.getByRole('button', { name: 'Deliveries' }).click();
  const first = billing.locator('details').first();
  await first.waitFor();
  await first.locator('summary').click();
  await first.getByText('HTTP 500').first().waitFor();
  await first.getByText('upstream broke').first().waitFor();
  await page.screenshot({ path: join(artifacts, 'portal-deliveries-1280.png'), fullPage: true });
  const before = failing.hits();
  await first.getByRole('button', { name: 'Retry now' }).click();
  await page.getByRole('status').getByText('Retry queued').waitFor();
  await eventually('the retry reached the endpoint', () => failing.hits() > before);

  // Test send, rotation, disable and re-enable.
  const sent = good.events.length;
  await orders.getByRole('button', { name: 'Send test event' }).click();
  await eventually('the test event arrived', () => good.events.length > sent);
  await orders.getByRole('button', { name: 'Rotate secret' }).click();
  await orders.getByRole('button', { name: 'Rotate? Click again' }).click();
  await page.getByRole('status').getByText(/Secret rotated/).waitFor();
  const rotated = await server.api('GET', `/v1/webhooks/${goodSub}`);
  assert.ok(rotated.body.data.previousSecretExpiresAt, 'the old secret still signs for a while');
  await orders.getByRole('button', { name: 'Disable' }).click();
  await orders.getByRole('button', { name: 'Disable? Click again' }).click();
  await page.getByRole('article', { name: 'orders' }).getByText('Disabled').waitFor();
  assert.equal((await server.api('GET', `/v1/webhooks/${goodSub}`)).body.data.active, false);
  await page.getByRole('article', { name: 'orders' }).getByRole('button', { name: 'Enable' }).click();
  await page.getByRole('article', { name: 'orders' }).getByText('Active').waitFor();
  assert.equal((await server.api('GET', `/v1/webhooks/${goodSub}`)).body.data.active, true);
  await page.getByRole('article', { name: 'billing' }).getByRole('button', { name: 'Resend' }).click();
  await page.getByRole('status').getByText(/failed deliver(y|ies) resent/).waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});

test('at 390 px the portal fits the screen', async () => {
  const { page, errors } = await openPortal(await portalLink(server.api), 390);
  await page.getByRole('heading', { name: 'Endpoints (2)' }).waitFor();
  await page.getByRole('article', { name: 'billing' }).getByRole('button', { name: 'Deliveries' }).click();
  await page.getByRole('article', { name: 'billing' }).locator('details').first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling (${overflow} px over)`);
  await page.screenshot({ path: join(artifacts, 'portal-390.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('an expired link, a forged one, another tenant\'s and a narrowed one see nothing beyond their own', async () => {
  // Expired.
  const shortLived = await portalLink(server.api, { expiresInSeconds: 1 });
  const token = new URL(shortLived).hash.slice('#token='.length);
  await eventually('the link expires', async () => {
    const response = await fetch(`${server.base}/portal/api/overview`, { headers: { authorization: `Bearer ${token}` } });
    return response.status === 401;
  }, 5000);
  let { page } = await openPortal(shortLived);
  await page.getByRole('alert').getByText('This link does not work any more').waitFor();
  assert.equal(await page.getByRole('article').count(), 0);
  await page.screenshot({ path: join(artifacts, 'portal-expired.png') });
  await page.close();

  // Forged.
  ({ page } = await openPortal(`${server.base}/portal#token=${'0'.repeat(64)}`));
  await page.getByRole('alert').getByText('This link does not work any more').waitFor();
  await page.close();

  // Another tenant: its own subscription only, and this tenant's ids are not found.
  const other = otherTenantApi();
  await subscribe(other, 'their-hook', good.url);
  ({ page } = await openPortal(await portalLink(other)));
  await page.getByRole('heading', { name: 'Endpoints (1)' }).waitFor();
  await page.getByRole('article', { name: 'their-hook' }).waitFor();
  assert.equal(await page.getByText('orders').count(), 0);
  assert.equal(await portalCall(page, `webhooks/${goodSub}/deliveries`), 404);
  assert.equal(await portalCall(page, `webhooks/${failingSub}/deliveries`), 404);
  await page.close();

  // Narrowed to one subscription of this tenant.
  ({ page } = await openPortal(await portalLink(server.api, { subscriptionIds: [goodSub] })));
  await page.getByRole('heading', { name: 'Endpoints (1)' }).waitFor();
  await page.getByRole('article', { name: 'orders' }).waitFor();
  assert.equal(await portalCall(page, `webhooks/${goodSub}/deliveries`), 200);
  assert.equal(await portalCall(page, `webhooks/${failingSub}/deliveries`), 404);
  const failedDelivery = (await server.api('GET', `/v1/webhooks/${failingSub}/deliveries`)).body.data.items[0].id;
  const retried = await page.evaluate(async (id) => {
    const token = sessionStorage.getItem('smile-portal-token');
    return (await fetch(`/portal/api/deliveries/${id}/retry`, { method: 'POST', headers: { authorization: 'Bearer ' + token } })).status;
  }, failedDelivery);
  assert.equal(retried, 404, 'a delivery of another subscription cannot be retried');
  await page.close();
});
