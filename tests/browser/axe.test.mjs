// axe-core on every page of the Wink Widget, at desktop and phone widths, in English and
// Chinese: 0 violations. Each run walks the widget through all its pages as a user would,
// checks each page as it is shown, and keeps its screenshot (test-artifacts/widget/all-*).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { artifacts, launchBrowser, newUserToken, startHostPage, startServer } from './harness.mjs';

const axeSource = createRequire(import.meta.url)('axe-core').source;
const sample = join(import.meta.dirname, '..', '..', 'crates', 'smile-sandbox', 'samples', 'payslip-george-2025-11.pdf');
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

/** Opens the widget and returns the page and the widget's frame (a Frame, for axe). */
async function open(width, locale, options = {}) {
  const page = await browser.newPage({ viewport: { width, height: 800 } });
  await page.goto(host.url);
  const { token } = await newUserToken(server);
  await page.exposeFunction('freshToken', async () => token);
  await page.evaluate(({ token, options }) => window.openWidget(token, options), {
    token, options: { locale, companyName: 'Acme Lending', enableUpload: true, ...options },
  });
  const frame = await (await page.waitForSelector('iframe[title="Smile Wink Widget"]')).contentFrame();
  return { page, frame };
}

/** axe's violations on the widget's current page, as "rule: target" lines. */
async function violations(frame) {
  if (!(await frame.evaluate(() => typeof window.axe === 'object'))) {
    await frame.evaluate(axeSource);
  }
  const result = await frame.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(' ')}`));
}

async function at(frame, name) {
  await frame.waitForSelector(`main[data-page="${name}"]`);
}

for (const locale of ['en', 'zh-CN']) {
  for (const width of [1280, 390]) {
    test(`axe: 0 violations on every page, ${locale} at ${width} px`, async () => {
      const found = {};
      let shots = 0;
      const check = async (frame, name) => {
        await at(frame, name);
        const v = await violations(frame);
        if (v.length) found[name] = v;
        shots += 1;
        await page.screenshot({ path: join(artifacts, `all-${locale}-${width}-${String(shots).padStart(2, '0')}-${name}.png`) });
      };
      const { page, frame } = await open(width, locale);
      const submit = (f) => f.click('form button[type=submit]');
      await check(frame, 'consent');
      await frame.click('button.primary');
      await check(frame, 'providers');
      // Login, a wrong password, login options.
      await frame.click('[data-provider="sss"]');
      await check(frame, 'login');
      await frame.click('button.linkish');
      await check(frame, 'loginOptions');
      await frame.click('[data-option="EMAIL"]');
      await frame.fill('input[name=username]', 'gpalomero1234@smileapi.io');
      await frame.fill('input[name=password]', 'wrong');
      await submit(frame);
      await frame.waitForSelector('[role=alert]');
      await check(frame, 'login');
      // A terminal error.
      await frame.fill('input[name=username]', 'fail@smileapi.io');
      await frame.fill('input[name=password]', 'ACCOUNT_DISABLED');
      await submit(frame);
      await check(frame, 'error');
      await frame.click('button.secondary');
      // MFA, a wrong code, then connected.
      await frame.click('[data-provider="xyzbank"]');
      await frame.fill('input[name=username]', 'christina4321@smileapi.io');
      await frame.fill('input[name=password]', 'YGUS1');
      await submit(frame);
      await check(frame, 'mfa');
      await frame.fill('input[name=code]', '0000');
      await submit(frame);
      await frame.waitForSelector('[role=alert]');
      await check(frame, 'mfa');
      await frame.fill('input[name=code]', '1234');
      await submit(frame);
      await check(frame, 'connected');
      // The account, and the disconnect confirmation.
      await frame.click('button.secondary');
      await frame.click('[data-provider="xyzbank"]');
      await check(frame, 'account');
      await frame.click('button.danger');
      await check(frame, 'confirmDisconnect');
      await frame.click('button.secondary');
      await at(frame, 'account');
      await frame.click('header button.icon:not([data-close])');
      // The employer survey.
      await at(frame, 'providers');
      await frame.click('button.linkish');
      await check(frame, 'survey');
      await frame.fill('input[name=employer]', 'Jollibee Foods');
      await submit(frame);
      await check(frame, 'surveyThanks');
      await frame.click('button.primary');
      // Uploads.
      await at(frame, 'providers');
      await frame.click('.content > button.secondary');
      await check(frame, 'fileTypes');
      await frame.click('[data-file-type="PAYSLIP"]');
      await check(frame, 'upload');
      await frame.setInputFiles('input[type=file]', sample);
      await submit(frame);
      await check(frame, 'archiveSuccess');
      await frame.click('button.secondary');
      await check(frame, 'uploads');
      await frame.click('[data-delete]');
      await check(frame, 'confirmDelete');
      assert.deepEqual(found, {}, 'axe violations by page');
      await page.close();
    });
  }
}
