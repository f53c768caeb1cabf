// The Wink Widget and the SmileLinkModal SDK in a real browser: each test drives the widget
// on a host page of another origin and asserts the callbacks, their payloads and the webhooks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  calls, eventually, launchBrowser, newUserToken, startHostPage, startReceiver, startServer, uiEvents,
  connectGeorgeAtSss, shot, within,
} from './harness.mjs';

let server, receiver, host, browser;

before(async () => {
  server = await startServer();
  receiver = await startReceiver();
  const { status } = await server.api('POST', '/v1/webhooks', {
    name: 'browser tests', url: receiver.url, eventTypes: ['ALL_EVENTS'], active: true, secret: 'browser-secret',
  });
  assert.equal(status, 200);
  host = await startHostPage(server.base);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  host?.stop();
  receiver?.stop();
  server?.stop();
});

/** Opens the host page and the widget for a fresh user; returns the page, the frame and the user. */
async function openWidget(options = {}, env = { server, host }) {
  const { server, host } = env;
  const page = await browser.newPage({ viewport: { width: 420, height: 760 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  await page.goto(host.url);
  const { userId, token } = await newUserToken(server);
  await page.exposeFunction('freshToken', async () => {
    const { body } = await server.api('POST', `/v1/tokens?userId=${userId}`);
    return body.data.accessToken;
  });
  await page.evaluate(({ token, options }) => window.openWidget(token, options), { token, options });
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  return { page, frame, userId, token, errors };
}

async function onPage(frame, name) {
  await frame.locator(`main[data-page="${name}"]`).waitFor();
}

async function webhooks(type, accountId) {
  return eventually(`${type} webhook`, () =>
    receiver.events.find((e) => e.type === type && (!accountId || e.data.accountId === accountId)));
}

test('connecting with MFA fires every callback in order, with the seed payloads, and the webhooks', async () => {
  const { page, frame, userId, errors } = await openWidget({ companyName: 'Acme Lending', topProviders: ['grab'] });
  await onPage(frame, 'consent');
  await shot(page, '01-consent');
  await frame.getByRole('button', { name: 'Continue' }).click();
  await onPage(frame, 'providers');
  await shot(page, '02-provider-list');
  await frame.locator('[data-provider="grab"]').click();
  await onPage(frame, 'login');
  await shot(page, '03-login');
  await frame.getByLabel('Phone number').fill('+63 9559991234');
  await frame.getByLabel('Password').fill('123456');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'mfa');
  await shot(page, '04-mfa');
  await frame.getByLabel('Verification code').fill('1234');
  await frame.getByRole('button', { name: 'Verify' }).click();
  await onPage(frame, 'connected');
  await shot(page, '05-connect-success');
  await frame.getByRole('button', { name: 'Done' }).click();
  const got = await eventually('onClose', async () => {
    const list = await calls(page);
    return list.some((c) => c.name === 'onClose') && list;
  });

  const names = got.map((c) => (c.name === 'onUIEvent' ? c.payload.eventName : c.name));
  assert.deepEqual(names, [
    'ConsentPageOpened', 'ProviderListPageOpened', 'LoginPageOpened', 'onAccountCreated', 'MfaPageOpened',
    'onAccountConnected', 'ConnectSuccessPageOpened', 'onClose',
  ]);
  const created = got.find((c) => c.name === 'onAccountCreated').payload;
  assert.deepEqual(Object.keys(created).sort(), ['accountId', 'providerId', 'userId']);
  assert.equal(created.userId, userId);
  assert.equal(created.providerId, 'grab');
  assert.match(created.accountId, /^a-/);
  assert.deepEqual(got.find((c) => c.name === 'onAccountConnected').payload, created);
  assert.deepEqual(got.at(-1).payload, { reason: 'exit' });
  for (const c of got.filter((c) => c.name === 'onUIEvent')) {
    assert.equal(c.payload.mode, 'SANDBOX');
    assert.equal(c.payload.userId, userId);
    assert.ok(!Number.isNaN(Date.parse(c.payload.eventTime)), 'eventTime is ISO 8601');
  }
  const ui = (name) => got.find((c) => c.payload?.eventName === name).payload;
  assert.deepEqual(ui('LoginPageOpened').account, { providerId: 'grab' });
  assert.deepEqual(ui('MfaPageOpened').account, { providerId: 'grab' });
  assert.deepEqual(ui('ConnectSuccessPageOpened').account, { providerId: 'grab', accountId: created.accountId });
  assert.equal((await webhooks('ACCOUNT_CREATED', created.accountId)).data.userId, userId);
  assert.equal((await webhooks('ACCOUNT_CONNECTED', created.accountId)).data.loginName, '+63 9559991234');
  assert.equal(await page.locator('iframe').count(), 0, 'the widget is gone after Done');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a wrong password returns to the login form with the e-mail kept and the password cleared', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false, providers: ['abccorp'] });
  await onPage(frame, 'login');
  await frame.getByLabel('E-mail').fill('gpalomero1234@smileapi.io');
  await frame.getByLabel('Password').fill('not-it');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await frame.getByRole('alert').getByText('That e-mail or password is not right. Check them and try again.').waitFor();
  await onPage(frame, 'login');
  assert.equal(await frame.getByLabel('E-mail').inputValue(), 'gpalomero1234@smileapi.io');
  assert.equal(await frame.getByLabel('Password').inputValue(), '');
  assert.equal(await frame.getByLabel('Password').getAttribute('aria-invalid'), 'true');
  assert.equal(await frame.locator(':focus').getAttribute('name'), 'password', 'focus is where the fix goes');
  await shot(page, '06-wrong-password');
  const error = (await calls(page)).find((c) => c.name === 'onAccountError').payload;
  assert.equal(error.errorCode, 'INVALID_CREDENTIALS');
  assert.deepEqual(Object.keys(error).sort(), ['accountId', 'errorCode', 'providerId', 'userId']);
  assert.equal((await webhooks('ACCOUNT_FAILED', error.accountId)).data.errorCode, 'INVALID_CREDENTIALS');
  // The right password from here connects.
  await frame.getByLabel('Password').fill('123456');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'connected');
  await page.close();
});

test('a wrong MFA code stays on the MFA page with the tries left; Resend and Back work', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false });
  await onPage(frame, 'providers');
  await frame.locator('[data-provider="xyzbank"]').click();
  await frame.getByLabel('E-mail').fill('christina4321@smileapi.io');
  await frame.getByLabel('Password').fill('YGUS1');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'mfa');
  await frame.getByLabel('Verification code').fill('0000');
  await frame.getByRole('button', { name: 'Verify' }).click();
  await frame.getByRole('alert').getByText('That code is not right. You have 2 tries left.').waitFor();
  await onPage(frame, 'mfa');
  await shot(page, '07-wrong-mfa');
  await frame.getByRole('button', { name: 'Resend code' }).click();
  await frame.getByRole('status').getByText('We sent a new code.').waitFor();
  assert.equal(await frame.getByRole('alert').count(), 0, 'the tries start over');
  assert.equal((await calls(page)).filter((c) => c.name === 'onAccountError').length, 0, 'not failed yet');
  await frame.getByRole('button', { name: 'Back' }).click();
  await onPage(frame, 'login');
  await page.close();
});

test('errors read as sentences with the code small; Try again where it can work, Exit where not', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false });
  await onPage(frame, 'providers');
  await frame.locator('[data-provider="sss"]').click();
  await frame.getByLabel('E-mail').fill('fail@smileapi.io');
  await frame.getByLabel('Password').fill('ACCOUNT_LOCKED');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'error');
  await frame.getByRole('alert').getByText(/This account is locked at .+\. Unlock it with .+, then try again\./).waitFor();
  await frame.getByText('Error code: ACCOUNT_LOCKED').waitFor();
  await shot(page, '08-error-retryable');
  await frame.getByRole('button', { name: 'Try again' }).click();
  await onPage(frame, 'login');
  await frame.getByLabel('E-mail').fill('fail@smileapi.io');
  await frame.getByLabel('Password').fill('ACCOUNT_DISABLED');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'error');
  await frame.getByText('Error code: ACCOUNT_DISABLED').waitFor();
  assert.equal(await frame.getByRole('button', { name: 'Try again' }).count(), 0, 'no retry where it cannot work');
  await frame.getByRole('button', { name: 'Exit' }).click();
  const got = await eventually('onClose', async () => {
    const list = await calls(page);
    return list.some((c) => c.name === 'onClose') && list;
  });
  assert.deepEqual(got.filter((c) => c.name === 'onAccountError').map((c) => c.payload.errorCode), ['ACCOUNT_LOCKED', 'ACCOUNT_DISABLED']);
  assert.deepEqual(got.at(-1).payload, { reason: 'error' });
  await page.close();
});

test('the close icon closes with reason close, and login options and the employer survey have their pages', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false, enableSearchBar: true });
  await onPage(frame, 'providers');
  await frame.getByLabel('Search').fill('social');
  assert.equal(await frame.locator('[data-provider]').count(), 1);
  await frame.locator('[data-provider="sss"]').click();
  await frame.getByRole('button', { name: 'Other ways to log in' }).click();
  await onPage(frame, 'loginOptions');
  await shot(page, '07-login-options');
  await frame.locator('[data-option="SS_NUMBER"]').click();
  await frame.getByLabel('Social security number').waitFor();
  await frame.getByRole('button', { name: 'Back' }).click();
  await frame.getByRole('button', { name: "Can't find your employer?" }).click();
  await onPage(frame, 'survey');
  await shot(page, '08-employer-survey');
  await frame.getByRole('button', { name: 'Close' }).click();
  const got = await eventually('onClose', async () => {
    const list = await calls(page);
    return list.some((c) => c.name === 'onClose') && list;
  });
  assert.deepEqual(uiEvents(got), [
    'ProviderListPageOpened', 'LoginPageOpened', 'LoginOptionsPageOpened', 'LoginPageOpened', 'ProviderListPageOpened',
    'EmployerSurveyPageOpened',
  ]);
  assert.deepEqual(got.at(-1), { name: 'onClose', payload: { reason: 'close' } });
  await page.close();
});

test('revoking a connected account fires onAccountRemoved', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false });
  await onPage(frame, 'providers');
  await frame.locator('[data-provider="lazada"]').click();
  await frame.getByLabel('E-mail').fill('ryan1234@smileapi.io');
  await frame.getByLabel('Password').fill('654321');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'connected');
  await frame.getByRole('button', { name: 'Connect another account' }).click();
  await frame.locator('[data-provider="lazada"]').click();
  await onPage(frame, 'account');
  await shot(page, '09-account-revoke');
  await frame.getByRole('button', { name: 'Disconnect' }).click();
  await onPage(frame, 'confirmDisconnect');
  assert.equal((await calls(page)).filter((c) => c.name === 'onAccountRemoved').length, 0, 'nothing happens before the confirmation');
  await shot(page, '09-account-revoke-confirm');
  await frame.getByRole('button', { name: 'Disconnect' }).click();
  await onPage(frame, 'providers');
  await frame.getByRole('status').getByText(/account is disconnected/).waitFor();
  const got = await calls(page);
  const removed = got.find((c) => c.name === 'onAccountRemoved').payload;
  assert.equal(removed.providerId, 'lazada');
  const revokePage = got.find((c) => c.payload?.eventName === 'AccountRevokePageOpened').payload;
  assert.deepEqual(revokePage.account, { providerId: 'lazada', accountId: removed.accountId });
  assert.equal((await webhooks('ACCOUNT_DISCONNECTED', removed.accountId)).data.userId, removed.userId);
  await page.close();
});

test('uploading a sample payslip, then deleting it, fires the upload callbacks', async () => {
  const { page, frame, userId } = await openWidget({ enableConsentPage: false, enableUpload: true });
  await onPage(frame, 'providers');
  await frame.getByRole('button', { name: 'Upload documents instead' }).click();
  await onPage(frame, 'fileTypes');
  await shot(page, '10-file-types');
  await frame.locator('[data-file-type="PAYSLIP"]').click();
  await onPage(frame, 'upload');
  await shot(page, '11-file-upload');
  const sample = join(import.meta.dirname, '..', '..', 'crates', 'smile-sandbox', 'samples', 'payslip-george-2025-11.pdf');
  // A drop zone: a file dropped on it is taken, and its name and size are shown.
  await frame.locator('.drop').evaluate((zone) => {
    const dropped = new DataTransfer();
    dropped.items.add(new File(['%PDF-1.4'], 'dropped.pdf', { type: 'application/pdf' }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dropped, bubbles: true, cancelable: true }));
  });
  await frame.getByText('dropped.pdf · 1 KB').waitFor();
  await frame.locator('input[type=file]').setInputFiles(sample);
  await frame.getByText(/payslip-george-2025-11\.pdf · \d+ KB/).waitFor();
  await shot(page, '11-file-upload-chosen');
  await frame.getByRole('button', { name: 'Upload', exact: true }).click();
  await onPage(frame, 'archiveSuccess');
  await shot(page, '12-archive-success');
  const created = (await calls(page)).find((c) => c.name === 'onUploadsCreated').payload;
  assert.equal(created.userId, userId);
  assert.match(created.uploads[0].id, /^u-/);
  const archiveId = created.uploads[0].id;
  await eventually('ARCHIVE_ANALYZED', () => receiver.events.find((e) => e.type === 'ARCHIVE_ANALYZED' && e.data.archiveId === archiveId));
  await frame.getByRole('button', { name: 'View my uploads' }).click();
  await onPage(frame, 'uploads');
  // Words a person uses, not internal values or ISO timestamps.
  const row = frame.locator('li.upload').first();
  await row.getByText('Payslips').waitFor();
  await row.getByText('Read', { exact: true }).waitFor();
  assert.doesNotMatch(await row.innerText(), /PAYSLIP|ANALYZED|\d{4}-\d{2}-\d{2}T/);
  await shot(page, '13-archive-status');
  await frame.locator(`[data-delete="${archiveId}"]`).click();
  await onPage(frame, 'confirmDelete');
  await frame.getByRole('button', { name: 'Delete' }).click();
  await frame.getByRole('status').getByText('The upload is deleted.').waitFor();
  const removed = await eventually('onUploadsRemoved', async () =>
    (await calls(page)).find((c) => c.name === 'onUploadsRemoved'));
  assert.equal(removed.payload.uploads[0].id, archiveId);
  assert.equal(removed.payload.userId, userId);
  assert.deepEqual(
    uiEvents(await calls(page)),
    ['ProviderListPageOpened', 'FileTypeListPageOpened', 'FileTypePageOpened', 'ArchiveSuccessPageOpened', 'RevokeArchivePageOpened', 'RevokeArchivePageOpened'],
  );
  const fileTypePage = (await calls(page)).find((c) => c.payload?.eventName === 'FileTypePageOpened').payload;
  assert.deepEqual(fileTypePage.archive, { fileType: 'PAYSLIP' });
  await eventually('ARCHIVE_REVOKED', () => receiver.events.find((e) => e.type === 'ARCHIVE_REVOKED' && e.data.archiveId === archiveId));
  await page.close();
});

test('a forged postMessage fires no callback', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false });
  await onPage(frame, 'providers');
  const before = (await calls(page)).length;
  await page.evaluate(() => {
    const forged = { smile: 1, type: 'callback', name: 'onAccountConnected', payload: { accountId: 'a-forged' } };
    window.postMessage(forged, '*');
    const other = document.createElement('iframe');
    document.body.appendChild(other);
    other.contentWindow.parent.postMessage(forged, '*');
    other.contentWindow.eval("parent.postMessage({smile:1,type:'callback',name:'onClose',payload:{reason:'close'}}, '*')");
    // And to the widget: a token from a frame that is not its parent must not replace the real one.
    other.contentWindow.eval(
      "parent.document.querySelector('iframe[title=\"Smile Wink Widget\"]').contentWindow" +
      ".postMessage({smile:1,type:'token',userToken:'forged'}, '*')");
  });
  // The widget's own next message proves the forged ones were handled (and dropped) before it.
  await frame.locator('[data-provider="grab"]').click();
  await onPage(frame, 'login');
  const got = await eventually('LoginPageOpened', async () => {
    const list = await calls(page);
    return list.some((c) => c.payload?.eventName === 'LoginPageOpened') && list;
  });
  assert.deepEqual(got.slice(before).map((c) => c.name), ['onUIEvent']);
  assert.equal(await page.locator('iframe[title="Smile Wink Widget"]').count(), 1, 'still open');
  await frame.getByLabel('Phone number').fill('+63 9559991234');
  await frame.getByLabel('Password').fill('123456');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await onPage(frame, 'mfa');
  assert.ok(!(await calls(page)).some((c) => c.name === 'onTokenExpired'), 'the forged token was not taken');
  await page.close();
});

test('the widget follows the locale, fits a phone, and loads nothing from other hosts', async () => {
  const page = await browser.newPage({ viewport: { width: 360, height: 640 } });
  const hosts = new Set();
  page.on('request', (request) => hosts.add(new URL(request.url()).host));
  await page.goto(host.url);
  const { token } = await newUserToken(server);
  await page.evaluate((token) => window.openWidget(token, { locale: 'zh-CN', companyName: 'Acme' }), token);
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  await onPage(frame, 'consent');
  await frame.getByRole('button', { name: '继续' }).waitFor();
  await shot(page, '14-consent-zh-CN-phone');
  const box = await page.locator('iframe').boundingBox();
  assert.ok(box.width <= 360, 'the widget fits the phone screen');
  const smileHost = new URL(server.base).host;
  const hostPage = new URL(host.url).host;
  assert.deepEqual([...hosts].filter((h) => h !== smileHost && h !== hostPage), []);
  await page.close();
});

test('an expired token fires onTokenExpired; after updateToken the widget carries on where it was', async () => {
  const shortLived = await startServer(['--token-ttl', '2s']);
  const shortHost = await startHostPage(shortLived.base);
  try {
    const { page, frame, token } = await openWidget({ enableConsentPage: false }, { server: shortLived, host: shortHost });
    await onPage(frame, 'providers');
    await frame.locator('[data-provider="grab"]').click();
    await frame.getByLabel('Phone number').fill('+63 9559991234');
    await frame.getByLabel('Password').fill('123456');
    await eventually('the token to expire', async () => {
      const response = await fetch(`${shortLived.base}/link/v1/session`, { headers: { authorization: `Bearer ${token}` } });
      return response.status === 401;
    }, 15000);
    await frame.getByRole('button', { name: 'Log in', exact: true }).click();
    await onPage(frame, 'mfa');
    await frame.getByLabel('Verification code').fill('1234');
    await frame.getByRole('button', { name: 'Verify' }).click();
    await onPage(frame, 'connected');
    const names = (await calls(page)).map((c) => c.name);
    assert.ok(names.indexOf('onTokenExpired') >= 0, 'onTokenExpired fired');
    assert.ok(names.indexOf('onTokenExpired') < names.indexOf('onAccountCreated'), 'the login went through after the new token');
    assert.ok(names.includes('onAccountConnected'));
    await page.close();
  } finally {
    shortHost.stop();
    shortLived.stop();
  }
});

test('opening the widget with an expired token: every first call resumes after updateToken', async () => {
  // Long enough that the fresh token handed over is still good when the calls resume, even on
  // a loaded machine (else a second, legitimate expiry follows).
  const shortLived = await startServer(['--token-ttl', '6s']);
  const shortHost = await startHostPage(shortLived.base);
  try {
    const page = await browser.newPage({ viewport: { width: 420, height: 760 } });
    await page.goto(shortHost.url);
    const { userId, token } = await newUserToken(shortLived);
    await page.exposeFunction('freshToken', async () => {
      const { body } = await shortLived.api('POST', `/v1/tokens?userId=${userId}`);
      return body.data.accessToken;
    });
    await eventually('the token to expire', async () => {
      const response = await fetch(`${shortLived.base}/link/v1/session`, { headers: { authorization: `Bearer ${token}` } });
      return response.status === 401;
    }, 15000);
    // The widget's first page loads three things at once; all three meet the expired token.
    await page.evaluate(({ token }) => window.openWidget(token, { enableConsentPage: false }), { token });
    const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
    await frame.locator('main[data-page="providers"]').waitFor({ timeout: 10000 });
    const expired = (await calls(page)).filter((c) => c.name === 'onTokenExpired');
    assert.equal(expired.length, 1, 'the host hears of the expiry once');
    await page.close();
  } finally {
    shortHost.stop();
    shortLived.stop();
  }
});

test('the /demo page shows the callbacks and the signed webhooks of a connection', async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(`${server.base}/demo`);
  await page.getByLabel('API key').fill(server.key);
  await page.getByLabel('API secret').fill(server.secret);
  await page.getByRole('button', { name: 'Create a sandbox user and open the widget' }).click();
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  await frame.getByRole('button', { name: 'Continue' }).click();
  await connectGeorgeAtSss(frame);
  await page.locator('#callbacks', { hasText: 'onAccountConnected' }).waitFor();
  await page.locator('#webhooks', { hasText: 'ACCOUNT_CONNECTED ✓ signed' }).waitFor();
  await page.locator('#webhooks', { hasText: 'TASK_FINISHED ✓ signed' }).waitFor();
  await frame.getByRole('button', { name: 'Done' }).click();
  await page.locator('#callbacks', { hasText: 'onClose' }).waitFor();
  await shot(page, '15-demo');
  assert.equal(await page.locator('#webhooks .bad').count(), 0, 'every delivery verified');

  // A reload and a second run: the session keeps its inbox and secret, so every delivery of
  // both runs still verifies.
  await page.reload();
  await page.locator('#webhooks', { hasText: 'ACCOUNT_CONNECTED ✓ signed' }).waitFor();
  await page.getByRole('button', { name: 'Create a sandbox user and open the widget' }).click();
  await frame.getByRole('button', { name: 'Continue' }).click();
  await connectGeorgeAtSss(frame);
  await eventually('the second run\'s webhooks', async () =>
    (await page.locator('#webhooks li', { hasText: 'ACCOUNT_CONNECTED' }).count()) >= 2);
  assert.equal(await page.locator('#webhooks .bad').count(), 0, 'every delivery of both runs verified');
  await page.close();
});

test('an upload the server refuses shows the error page and creates nothing', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false, enableUpload: true });
  await onPage(frame, 'providers');
  await frame.getByRole('button', { name: 'Upload documents instead' }).click();
  await frame.locator('[data-file-type="PAYSLIP"]').click();
  await frame.locator('input[type=file]').setInputFiles({ name: 'payslip.png', mimeType: 'image/png', buffer: Buffer.from('GIF89a not a png') });
  await frame.getByRole('button', { name: 'Upload', exact: true }).click();
  await onPage(frame, 'error');
  await frame.getByText('payslip.png is not a PDF, PNG, JPG or TIFF file').waitFor();
  const names = (await calls(page)).map((c) => c.name);
  assert.ok(!names.includes('onUploadsCreated'), 'no upload was created');
  await page.close();
});

test('an invite link opens the widget for the invited user, and connecting links the invite', async () => {
  const { status, body } = await server.api('POST', '/v1/invites', {
    fullName: 'Anisha Bhatia', email: 'anisha98765@smileapi.io', templateId: 'tpl-browser',
  });
  assert.equal(status, 201);
  const invite = body.data;
  const page = await browser.newPage({ viewport: { width: 420, height: 760 } });
  assert.ok(invite.inviteLandingPageUrl.startsWith(`${server.base}/invite/`), invite.inviteLandingPageUrl);
  await page.goto(invite.inviteLandingPageUrl);
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  await frame.getByRole('button', { name: 'Continue' }).click();
  await frame.locator('[data-provider="abccorp"]').click();
  await frame.getByLabel('E-mail').fill('anisha98765@smileapi.io');
  await frame.getByLabel('Password').fill('123456');
  await frame.getByRole('button', { name: 'Log in', exact: true }).click();
  await frame.locator('main[data-page="connected"]').waitFor();
  const linked = await eventually('INVITE_LINKED', () =>
    receiver.events.find((e) => e.type === 'INVITE_LINKED' && e.data.inviteId === invite.id));
  assert.equal(linked.data.userId, invite.userId);
  await page.close();
});

test('Escape closes the widget like the close icon', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false });
  await onPage(frame, 'providers');
  assert.equal(await page.locator('[data-smile-link][role=dialog][aria-modal=true]').count(), 1);
  // Key down only: the widget closes on keydown, and chromium never acknowledges a keyup sent
  // to the out-of-process frame that keydown removed, so a full press could hang the test.
  await frame.locator('h1').focus();
  await page.keyboard.down('Escape');
  const close = await eventually('onClose', async () => (await calls(page)).find((c) => c.name === 'onClose'));
  assert.deepEqual(close.payload, { reason: 'close' });
  await page.close();
});

test('keyboard: focus stays in the widget, the page behind is inert, and focus returns to the opener', async () => {
  const page = await browser.newPage({ viewport: { width: 420, height: 760 } });
  await page.goto(host.url);
  const { token } = await newUserToken(server);
  await page.locator('#opener').focus();
  await page.evaluate(({ token }) => window.openWidget(token, { enableConsentPage: false }), { token });
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  await onPage(frame, 'providers');
  const behindIsInert = () => page.evaluate(() => document.querySelector('a[href="#terms"]').closest('[inert]') !== null);
  assert.equal(await behindIsInert(), true, 'the host page is inert while the widget is open');
  for (const key of [...Array(60).fill('Tab'), ...Array(10).fill('Shift+Tab')]) {
    await page.keyboard.press(key);
    const where = await page.evaluate(() => document.activeElement && document.activeElement.tagName);
    assert.equal(where, 'IFRAME', `${key}: focus stays inside the widget`);
  }
  await shot(page, '16-focus-ring');
  // Key down only: the widget closes on keydown (see the Escape test).
  await page.keyboard.down('Escape');
  await eventually('focus back on the button that opened the widget',
    () => page.evaluate(() => document.activeElement && document.activeElement.id === 'opener'));
  assert.equal(await behindIsInert(), false, 'the host page is live again');
  await page.close();
});

test('on a phone the widget fills the screen, the page behind does not scroll, and inputs do not zoom', async () => {
  const page = await browser.newPage({ viewport: { width: 390, height: 700 } });
  await page.goto(host.url);
  const { token } = await newUserToken(server);
  await page.evaluate(({ token }) => window.openWidget(token, { enableConsentPage: false, providers: ['sss'] }), { token });
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  await onPage(frame, 'login');
  const box = await page.locator('iframe').boundingBox();
  assert.deepEqual([box.x, box.y, box.width, box.height], [0, 0, 390, 700], 'full screen at 390 px');
  assert.equal(await page.evaluate(() => getComputedStyle(document.documentElement).overflow), 'hidden');
  const sizes = await frame.locator('input').evaluateAll((inputs) => inputs.map((i) => parseFloat(getComputedStyle(i).fontSize)));
  assert.ok(sizes.length > 0 && sizes.every((size) => size >= 16), `input text sizes ${sizes}`);
  await shot(page, '17-login-phone-full-screen');
  await page.keyboard.down('Escape');
  await eventually('the page scrolls again', async () =>
    (await page.evaluate(() => getComputedStyle(document.documentElement).overflow)) !== 'hidden');
  // A wider screen keeps the card.
  await page.setViewportSize({ width: 1000, height: 800 });
  const { token: second } = await newUserToken(server);
  await page.evaluate(({ token }) => window.openWidget(token, { enableConsentPage: false }), { token: second });
  await onPage(frame, 'providers');
  const card = await page.locator('iframe').boundingBox();
  assert.ok(card.width <= 420 && card.height <= 680, `a card on a wide screen: ${card.width}x${card.height}`);
  await page.close();
});

test('the provider list scrolls under a fixed title, search and chips; chips wrap; no match says what to do', async () => {
  const { page, frame } = await openWidget({ enableConsentPage: false, enableUpload: true });
  await onPage(frame, 'providers');
  const search = frame.getByRole('searchbox');
  const before = await search.boundingBox();
  const list = frame.getByRole('list', { name: 'Choose where you work or earn' });
  const scrolled = await list.evaluate((ul) => { ul.scrollTop = ul.scrollHeight; return ul.scrollTop; });
  assert.ok(scrolled > 0, 'the list scrolls on its own');
  assert.deepEqual(await search.boundingBox(), before, 'the search stays where it was');
  const pageScrolls = await list.evaluate(() => document.scrollingElement.scrollHeight > window.innerHeight + 1);
  assert.equal(pageScrolls, false, 'the page itself does not scroll');
  const clipped = await frame.getByRole('group', { name: 'Provider types' }).evaluate((group) => {
    const box = group.getBoundingClientRect();
    return [...group.querySelectorAll('button')].filter((b) => b.getBoundingClientRect().right > box.right + 0.5).length;
  });
  assert.equal(clipped, 0, 'no chip is cut off');
  await search.fill('zzz');
  await frame.getByRole('status').getByText('Nothing matches “zzz”.').waitFor();
  await frame.getByText('or upload documents instead').waitFor();
  await shot(page, '18-provider-search-empty');
  await page.close();
});

test('the employer survey passes the employer on: the API lists it and onUIEvent says it was sent', async () => {
  const { page, frame, userId } = await openWidget({ enableConsentPage: false, companyName: 'Acme Lending' });
  await onPage(frame, 'providers');
  await frame.getByRole('button', { name: "Can't find your employer?" }).click();
  await onPage(frame, 'survey');
  await frame.getByLabel('Employer name').fill('Jollibee Foods');
  await frame.getByRole('button', { name: 'Submit' }).click();
  await onPage(frame, 'surveyThanks');
  await frame.getByText('Thank you! We passed Jollibee Foods on to Acme Lending.').waitFor();
  assert.ok(uiEvents(await calls(page)).includes('EmployerSurveySubmitted'));
  const { body } = await server.api('GET', `/v1/employerSurveys?userId=${userId}`);
  assert.ok(body.data.items.some((s) => s.employerName === 'Jollibee Foods' && s.userId === userId), JSON.stringify(body));
  await page.close();
});

/** Latin text on the widget's page that is not marked lang="en", and aria-labels in Latin. */
async function unmarkedEnglish(frame) {
  return frame.locator('#app').evaluate((app) => {
    const found = [];
    const walker = document.createTreeWalker(app, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (/[A-Za-z]/.test(node.nodeValue) && !node.parentElement.closest('[lang="en"]')) found.push(node.nodeValue.trim());
    }
    for (const labelled of app.querySelectorAll('[aria-label]')) {
      if (/[A-Za-z]/.test(labelled.getAttribute('aria-label'))) found.push(`aria-label: ${labelled.getAttribute('aria-label')}`);
    }
    return found;
  });
}

test('in zh-CN nothing the server sends shows in English, and English names carry lang="en"', async () => {
  const { page, frame } = await openWidget({ locale: 'zh-CN', companyName: 'Acme Lending' });
  await onPage(frame, 'consent');
  assert.deepEqual(await unmarkedEnglish(frame), [], 'consent');
  await frame.getByRole('button', { name: '继续' }).click();
  await onPage(frame, 'providers');
  assert.deepEqual(await unmarkedEnglish(frame), [], 'provider list');
  await frame.locator('[data-provider="abccorp"]').click();
  await onPage(frame, 'login');
  await frame.getByLabel('电子邮箱').fill('gpalomero1234@smileapi.io');
  await frame.getByLabel('密码').fill('not-it');
  await frame.getByRole('button', { name: '登录', exact: true }).click();
  await frame.getByRole('alert').getByText('电子邮箱或密码不正确。请检查后重试。').waitFor();
  assert.deepEqual(await unmarkedEnglish(frame), [], 'login with an error');
  assert.equal(await frame.locator('h1 [lang="en"]').first().textContent(), 'ABC Corporation');
  await frame.getByLabel('密码').fill('123456');
  await frame.getByRole('button', { name: '登录', exact: true }).click();
  await onPage(frame, 'connected');
  assert.deepEqual(await unmarkedEnglish(frame), [], 'connected');
  await frame.getByRole('button', { name: '连接其他账户' }).click();
  await onPage(frame, 'providers');
  await frame.locator('[data-provider="abccorp"]').getByText('已连接').waitFor();
  assert.deepEqual(await unmarkedEnglish(frame), [], 'provider list with a connected account');
  await frame.locator('[data-provider="abccorp"]').click();
  await onPage(frame, 'account');
  assert.deepEqual(await unmarkedEnglish(frame), [], 'account');
  await shot(page, '19-account-zh-CN');
  await page.close();
});

test('opening the widget again downloads nothing but API JSON: static files come compressed, then revalidated without a body', async () => {
  const { page, frame, token } = await openWidget({ enableConsentPage: false });
  const seen = [];
  page.on('response', (response) => seen.push(response));
  await onPage(frame, 'providers');
  await frame.locator('[data-provider="sss"] img').evaluate((img) => img.complete || new Promise((resolve) => { img.onload = resolve; }));
  const isStatic = (url) => /\/(widget\/|assets\/providers\/)/.test(new URL(url).pathname);
  const first = seen.filter((r) => isStatic(r.url()));
  assert.ok(first.length >= 3, `the first open loads the widget's files (${first.length})`);
  for (const r of first.filter((r) => /\.(js|css)$|\/widget\/$/.test(new URL(r.url()).pathname))) {
    assert.equal((await r.allHeaders())['content-encoding'], 'gzip', r.url());
    assert.ok((await r.request().sizes()).responseBodySize > 0, `${r.url()} has a body the first time`);
  }

  seen.length = 0;
  await page.evaluate(() => window.modal.close());
  await page.evaluate((t) => window.openWidget(t, { enableConsentPage: false }), token);
  await onPage(frame, 'providers');
  await frame.locator('[data-provider="sss"] img').evaluate((img) => img.complete || new Promise((resolve) => { img.onload = resolve; }));
  const again = seen.filter((r) => isStatic(r.url()));
  assert.ok(again.length >= 3, 'the files are asked for again (revalidated)');
  for (const r of again) {
    // Chromium reports a revalidated file as its cached 200; what crossed the wire says more.
    assert.ok((await r.request().allHeaders())['if-none-match'], `${r.url()} is revalidated with its ETag`);
    assert.equal((await r.request().sizes()).responseBodySize, 0, `${r.url()} came back without a body (304)`);
  }
  const others = seen.filter((r) => !isStatic(r.url())).map((r) => new URL(r.url()).pathname);
  assert.ok(others.every((p) => p.startsWith('/link/v1/')), `only API calls besides: ${others}`);
  await page.close();
});

test('keyboard only: George connects at SSS with Tab, typing and Enter; focus stays in, then returns to the opener', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(host.url);
  const { token } = await newUserToken(server);
  await page.exposeFunction('freshToken', async () => token);
  await page.locator('#opener').focus();
  await page.evaluate(({ token }) => window.openWidget(token, {}), { token });
  const frame = page.frameLocator('iframe[title="Smile Wink Widget"]');
  /** Presses Tab until the focused element in the widget matches `selector`. */
  async function tabTo(selector) {
    for (let i = 0; i < 40; i++) {
      if (await within(`count of ${selector}:focus`, frame.locator(`${selector}:focus`).count())) return;
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.tagName), 'IFRAME', 'focus stays in the widget');
    }
    throw new Error(`Tab never reached ${selector}`);
  }
  await onPage(frame, 'consent');
  await tabTo('button.primary');
  await page.keyboard.press('Enter');
  await onPage(frame, 'providers');
  await tabTo('[data-provider="sss"]');
  await page.keyboard.press('Enter');
  await onPage(frame, 'login');
  await tabTo('input[name=username]');
  await page.keyboard.type('gpalomero1234@smileapi.io');
  await page.keyboard.press('Tab');
  await page.keyboard.type('123456');
  await page.keyboard.press('Enter');
  await onPage(frame, 'connected');
  await tabTo('button.primary');
  // This Enter closes the widget: its frame goes away while the key is being dispatched, and
  // Chromium then may never acknowledge the rest of the press (a 20 s hang in CI on
  // 2026-12-02). What the key does is asserted below; its acknowledgement is not awaited.
  page.keyboard.press('Enter').catch(() => {});
  await eventually('focus back on the button that opened the widget',
    () => page.evaluate(() => document.activeElement && document.activeElement.id === 'opener'));
  const got = await calls(page);
  assert.ok(got.some((c) => c.name === 'onAccountConnected' && c.payload.providerId === 'sss'));
  assert.deepEqual(got.at(-1), { name: 'onClose', payload: { reason: 'exit' } });
  await page.close();
});

