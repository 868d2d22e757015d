// The dashboard's browser check, run by tests/dashboard.rs against a real
// master with a deployed service:
//
//   node check.mjs MASTER_URL TOKEN --shot PNG --service NAME \
//        [--agent ID]... [--log-text TEXT] \
//        [--stage-service NAME [--scale-pod TYPE --scale-to N]]
//
// In headless Chromium (the Debian `chromium` package; CHROMIUM=/path picks
// another binary) it checks that the page shows only a sign-in box without
// the token and refuses a wrong one; that with the token it shows the agents
// and the service's deploy plan with the reason a step waits; that a click
// on "Pause" pauses the plan (the page shows it WAITING and paused); that a
// task's stdout link opens its log; and that a `#token=` link signs in and
// drops the token from the address bar. With --stage-service, that the
// service's task shows a stage panel with live charts (records in/s above
// zero, dead letters by reason, a known checkpoint age); with --scale-pod,
// that "Scale" raises that pod type's count to N (a new pod row and stage
// panel appear) and that a lower count is refused with the scheduler's
// reason (`allow-decommission`). It saves a screenshot to PNG (and
// PNG with `-failure` on a failure) and prints `ok` last.
//
// Exit codes: 0 passed, 1 a check failed, 2 something to install is missing.

import { existsSync } from 'node:fs';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const WAIT_MS = 45000;

function usage(msg) {
  console.error(`check.mjs: ${msg}`);
  console.error('usage: node check.mjs MASTER_URL TOKEN --shot PNG --service NAME [--agent ID]... [--log-text TEXT]' +
    ' [--stage-service NAME [--scale-pod TYPE --scale-to N]]');
  process.exit(2);
}

function parseArgs(argv) {
  const [url, token, ...rest] = argv;
  if (!url || !token) usage('MASTER_URL and TOKEN are required');
  const o = {
    url: url.replace(/\/+$/, ''), token, shot: null, service: null, agents: [], logText: null,
    stageService: null, scalePod: null, scaleTo: null,
  };
  for (let i = 0; i < rest.length; i += 2) {
    const [k, v] = [rest[i], rest[i + 1]];
    if (v === undefined) usage(`${k} needs a value`);
    if (k === '--shot') o.shot = v;
    else if (k === '--service') o.service = v;
    else if (k === '--agent') o.agents.push(v);
    else if (k === '--log-text') o.logText = v;
    else if (k === '--stage-service') o.stageService = v;
    else if (k === '--scale-pod') o.scalePod = v;
    else if (k === '--scale-to') o.scaleTo = Number(v);
    else usage(`unknown option ${k}`);
  }
  if (!o.shot || !o.service) usage('--shot and --service are required');
  if (o.scalePod && (!o.stageService || !Number.isInteger(o.scaleTo) || o.scaleTo < 2)) {
    usage('--scale-pod needs --stage-service and --scale-to N (2 or more)');
  }
  return o;
}

function findChromium() {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']
    .filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    console.error(`check.mjs: no Chromium found (looked at ${candidates.join(', ')}): ` +
      'install it with `apt-get install -y chromium` (Debian), or set CHROMIUM=/path/to/chrome');
    process.exit(2);
  }
  return found;
}

async function loadPlaywright() {
  try {
    return await import('playwright-core');
  } catch (e) {
    console.error(`check.mjs: playwright-core is not installed (${e.message}): run \`npm ci\` in tests/dashboard`);
    process.exit(2);
  }
}

function step(what) {
  console.log(`- ${what}`);
}

/** The text of the value shown on a stage chart. */
async function chartValue(panel, chart) {
  return ((await panel.locator(`.chart[data-chart="${chart}"] .val`).textContent()) || '').trim();
}

async function checkStages(page, o) {
  step(`service ${o.stageService}: a stage panel with live charts`);
  const card = page.locator(`article.service[data-service="${o.stageService}"]`);
  const panel = card.locator('.stage').first();
  await panel.waitFor();
  // Rates need two scrapes; the checkpoint age needs a checkpoint seen while watching.
  await page.waitForFunction((svc) => {
    const p = document.querySelector(`article.service[data-service="${svc}"] .stage`);
    const val = (c) => (p && p.querySelector(`.chart[data-chart="${c}"] .val`) || {}).textContent || '';
    return parseFloat(val('records-in')) > 0 && parseFloat(val('rows-out')) > 0 && /^\d/.test(val('checkpoint-age'));
  }, o.stageService);
  for (const c of ['records-in', 'rows-out', 'consumer-lag', 'watermark-delay', 'dead-lettered', 'checkpoint-age']) {
    await panel.locator(`.chart[data-chart="${c}"] svg path.line`).waitFor({ state: 'attached' });
  }
  await panel.locator('.reason[data-reason="decode"]').waitFor();
  await panel.locator('.reason[data-reason="late"]').waitFor();
  const shown = [];
  for (const c of ['records-in', 'rows-out', 'consumer-lag', 'watermark-delay', 'dead-lettered', 'checkpoint-age']) {
    shown.push(`${c} ${await chartValue(panel, c)}`);
  }
  console.log(`  ${shown.join(' · ')}`);
  await card.screenshot({ path: o.shot.replace(/\.png$/, '') + '-stage.png' });

  if (!o.scalePod) return;
  step(`"Scale" sets pod type ${o.scalePod} of ${o.stageService} to ${o.scaleTo}`);
  const row = card.locator(`.scale-row[data-pod-type="${o.scalePod}"]`);
  await row.locator('input').fill(String(o.scaleTo));
  await page.getByRole('button', { name: `Scale pod type ${o.scalePod}`, exact: true }).click();
  await card.locator('.scale-note', { hasText: `→ ${o.scaleTo}` }).waitFor();
  console.log(`  ${(await card.locator('.scale-note').textContent()).trim()}`);
  await card.locator(`table.pods tr[data-pod="${o.scalePod}-${o.scaleTo - 1}"]`).waitFor();
  await page.waitForFunction(([svc, n]) =>
    document.querySelectorAll(`article.service[data-service="${svc}"] .stage`).length === n, [o.stageService, o.scaleTo]);
  await row.locator('.muted', { hasText: `spec count ${o.scaleTo}` }).waitFor();
  // The new pod's task is scraped too: the charts keep following the service.
  await page.waitForFunction(([svc, n]) => {
    const panels = document.querySelectorAll(`article.service[data-service="${svc}"] .stage`);
    const v = panels[n - 1] && panels[n - 1].querySelector('.chart[data-chart="records-in"] .val');
    return v && parseFloat(v.textContent) > 0;
  }, [o.stageService, o.scaleTo]);

  step('a lower count without allow-decommission is refused, with the scheduler\'s reason');
  await row.locator('input').fill(String(o.scaleTo - 1));
  await page.getByRole('button', { name: `Scale pod type ${o.scalePod}`, exact: true }).click();
  const banner = page.locator('#banner', { hasText: 'allow-decommission' });
  await banner.waitFor({ state: 'visible' });
  console.log(`  ${(await page.locator('#banner-text').textContent()).trim()}`);
  await page.click('#banner-close');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const executablePath = findChromium();
  const { chromium } = await loadPlaywright();
  mkdirSync(dirname(o.shot), { recursive: true });
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  const problems = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
        problems.push(`console: ${m.text()}`);
      }
    });
    const dash = `${o.url}/dashboard/`;

    step('without a token the page shows only the sign-in box');
    await page.goto(dash);
    await page.locator('#signin').waitFor({ state: 'visible' });
    await page.screenshot({ path: o.shot.replace(/\.png$/, '') + '-signin.png' });
    if (await page.locator('#app').isVisible()) throw new Error('the dashboard is visible before sign-in');
    for (const id of o.agents) {
      if ((await page.content()).includes(id)) throw new Error(`agent ${id} is shown before sign-in`);
    }

    step('a wrong token is refused');
    await page.fill('#token', 'not-the-token');
    await page.click('#signin-form button[type=submit]');
    await page.locator('#signin-error', { hasText: 'refused' }).waitFor({ state: 'visible' });
    if (await page.locator('#app').isVisible()) throw new Error('a wrong token opened the dashboard');

    step('the token signs in; the agents show');
    await page.fill('#token', o.token);
    await page.click('#signin-form button[type=submit]');
    await page.locator('#app').waitFor({ state: 'visible' });
    const rows = page.locator('table.agents tbody tr');
    await page.waitForFunction((n) => document.querySelectorAll('table.agents tbody tr').length === n, o.agents.length);
    for (const id of o.agents) {
      const row = page.locator(`table.agents tr[data-agent="${id}"]`);
      await row.waitFor({ state: 'visible' });
      await row.locator('.state', { hasText: 'REACHABLE' }).waitFor();
    }
    console.log(`  ${await rows.count()} agents`);

    step(`service ${o.service}: the deploy plan and the reason a step waits`);
    const card = page.locator(`article.service[data-service="${o.service}"]`);
    const plan = card.locator('.plan[data-plan="deploy"]');
    await plan.waitFor({ state: 'visible' });
    await plan.locator('.step').first().waitFor();
    const waiting = plan.locator('.step .why').first();
    await waiting.waitFor();
    console.log(`  a step waits: ${(await waiting.textContent()).trim()}`);
    await card.locator('table.pods tbody tr').first().waitFor();

    if (o.stageService) await checkStages(page, o);

    step('a click on "Pause" pauses the plan');
    const pause = card.getByRole('button', { name: 'Pause plan deploy', exact: true });
    await pause.click();
    await page.locator(`article.service[data-service="${o.service}"] .plan[data-plan="deploy"][data-status="WAITING"]`)
      .waitFor();
    await plan.locator('.plan-head .flag', { hasText: 'paused' }).waitFor();
    await card.getByRole('button', { name: 'Resume plan deploy', exact: true }).and(page.locator(':enabled')).waitFor();
    if (await pause.isEnabled()) throw new Error('"Pause" is still enabled on a paused plan');

    await page.screenshot({ path: o.shot, fullPage: true });
    console.log(`  screenshot: ${o.shot}`);

    if (o.logText) {
      step('a task\'s stdout link opens its log');
      const task = card.locator('table.pods .task', { has: page.locator('.state', { hasText: 'RUNNING' }) }).first();
      await task.locator('a', { hasText: 'stdout' }).click();
      await page.locator('#log').waitFor({ state: 'visible' });
      await page.locator('#log-text', { hasText: o.logText }).waitFor();
      await page.screenshot({ path: o.shot.replace(/\.png$/, '') + '-log.png' });
      await page.click('#log-close');
      await page.locator('#log').waitFor({ state: 'hidden' });
    }

    step('a #token= link signs in and leaves the address bar clean');
    const fresh = await browser.newContext();
    const p2 = await fresh.newPage();
    p2.setDefaultTimeout(WAIT_MS);
    await p2.goto(`${dash}#token=${encodeURIComponent(o.token)}`);
    await p2.locator('table.agents tbody tr').first().waitFor();
    if (p2.url().includes(o.token)) throw new Error(`the token stayed in the address bar: ${p2.url()}`);
    await fresh.close();

    if (problems.length) throw new Error(problems.join('\n'));
    console.log('ok');
  } catch (e) {
    if (page) {
      const failShot = o.shot.replace(/\.png$/, '') + '-failure.png';
      await page.screenshot({ path: failShot, fullPage: true }).catch(() => {});
      console.error(`failure screenshot: ${failShot}`);
    }
    if (problems.length) console.error(problems.join('\n'));
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`check.mjs: ${e.stack || e.message}`);
  process.exit(1);
});
