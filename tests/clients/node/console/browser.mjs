// Drives the system Chromium (headless, through playwright-core) through the console's real pages,
// signed in at a real OpenID provider (console/oidc.mjs) and once with an API key. Run by
// tests/e2e/console_browser.rs:
//
//   node console/browser.mjs PLAN.json
//
// PLAN (written by the test from the gRPC API's answers) says where the console is, who signs in,
// which pages each role opens and with what status, and what the programme page must show. Every
// check runs, whatever failed before it; the script prints { "checks": [...], "failed": N } as JSON
// and exits 1 naming each failed check on stderr when any failed.
//
// The checks: sign-in through the OpenID provider for each role and with an API key; sign-out ends
// the session; every page answers with the status the role table gives; every page passes axe-core
// with no serious or critical violation; every page works from the keyboard (Tab reaches each link,
// button and input in document order, each visibly focused); no page scrolls sideways at 390 px;
// the funnel plot's points and the league table's numbers equal the API's; the CSV equals the
// table; a contractor cannot reach another contractor's pages or act on its escalations; a form
// post without a CSRF token is refused; Enter on an escalation's acknowledge button acknowledges
// it. Screenshots of each page at 1280x800 and 390 px wide go to PLAN.screenshots.

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const planPath = process.argv[2];
if (!planPath) {
  process.stderr.write('usage: node console/browser.mjs PLAN.json\n');
  process.exit(2);
}
const plan = JSON.parse(readFileSync(planPath, 'utf8'));
const base = plan.console_url.replace(/\/$/, '');
const url = (p) => `${base}${p}`;

const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok: Boolean(ok), detail: typeof detail === 'string' ? detail : JSON.stringify(detail) });
  return ok;
}
async function attempt(name, body) {
  try {
    await body();
  } catch (error) {
    check(name, false, `threw: ${error.stack ?? error}`);
  }
}

// Within 1e-9 relative (or absolute, near zero) of the API's number; both empty when undefined.
function sameNumber(shown, expected) {
  if (expected === null || expected === undefined) return shown === '';
  if (shown === '' || shown === null || shown === undefined) return false;
  const value = Number(shown);
  if (!Number.isFinite(value)) return false;
  return Math.abs(value - expected) <= 1e-9 * Math.max(1, Math.abs(expected));
}

// Chromium without the browser's own traffic: this closed network refuses every connection to
// Google's services, and the background fetches would flood it.
const browser = await chromium.launch({
  executablePath: plan.chromium,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

const screenshots = plan.screenshots;
mkdirSync(screenshots, { recursive: true });

async function newPage() {
  // The console's Content-Security-Policy allows its own scripts only; axe-core is injected.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  return { context, page };
}

function pathOf(page) {
  const u = new URL(page.url());
  return u.pathname;
}

// The authorization-code flow through the provider's own pages: its login form (the user name,
// any password), then its consent form, back to the console's callback.
async function signInWithOidc(page, login) {
  try {
    await oidcFlow(page, login);
  } catch (error) {
    const text = await page.locator('body').innerText().catch(() => '');
    throw new Error(`signing in as ${login} stopped at ${page.url()} showing "${text.slice(0, 300)}": ${error.message}`);
  }
}

async function oidcFlow(page, login) {
  await page.goto(url('/sign-in'));
  await page.click('#sign-in-oidc');
  await page.waitForSelector('input[name=login]');
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  for (let step = 0; step < 3 && !page.url().startsWith(base); step += 1) {
    const consent = page.locator('button[type=submit]');
    await consent.first().waitFor();
    await Promise.all([page.waitForNavigation(), consent.first().click()]);
  }
  // The callback answers with a page of the console's own that moves on to the role's home.
  await page.waitForURL((at) => at.origin === base && at.pathname !== '/auth/callback');
  await page.waitForLoadState('load');
}

async function axeCheck(page, name) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(`${name}: axe-core finds no serious or critical violation`, serious.length === 0,
    serious.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) })));
  const minor = result.violations.filter((v) => !(v.impact === 'serious' || v.impact === 'critical'));
  return minor.map((v) => `${v.id} (${v.impact})`);
}

// Tab from the top of the page must visit every focusable element in document order, each with a
// visible focus indicator; no positive tabindex reorders them.
async function keyboardCheck(page, name) {
  const expected = await page.evaluate(() => {
    const selector = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), '
      + 'select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
    const shown = (element) => {
      if (element.closest('[hidden], [inert]')) return false;
      const details = element.closest('details:not([open])');
      if (details && element.tagName !== 'SUMMARY') return false;
      const style = getComputedStyle(element);
      return style.display !== 'none' && style.visibility !== 'hidden';
    };
    const elements = [...document.querySelectorAll(selector)].filter(shown);
    elements.forEach((element, index) => element.setAttribute('data-keyboard-order', String(index)));
    return elements.map((element) => ({
      tag: element.tagName.toLowerCase(),
      text: (element.getAttribute('aria-label') || element.textContent || element.value || element.name || '').trim().slice(0, 40),
      tabindex: element.getAttribute('tabindex'),
    }));
  });
  const positive = expected.filter((e) => e.tabindex !== null && Number(e.tabindex) > 0);
  check(`${name}: no positive tabindex`, positive.length === 0, positive);
  await page.evaluate(() => {
    if (document.activeElement) document.activeElement.blur();
    window.scrollTo(0, 0);
  });
  const visited = [];
  const unfocused = [];
  // A date or month input takes a Tab per field (month, year) in Chromium: the same element is
  // then seen several times running, which counts once.
  for (let i = 0; i < expected.length * 4 && visited.at(-1) !== expected.length - 1; i += 1) {
    await page.keyboard.press('Tab');
    const seen = await page.evaluate(() => {
      const element = document.activeElement;
      if (!element || element === document.body) return { order: null };
      const style = getComputedStyle(element);
      const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
      const shadow = style.boxShadow && style.boxShadow !== 'none';
      // Chromium marks the focused field of a date or month input itself, in the field.
      const segmented = element.tagName === 'INPUT' && ['date', 'month', 'week', 'time', 'datetime-local'].includes(element.type);
      return {
        order: element.getAttribute('data-keyboard-order'),
        focusVisible: segmented || element.matches(':focus-visible'),
        indicator: segmented || outline || shadow,
        text: (element.getAttribute('aria-label') || element.textContent || element.name || '').trim().slice(0, 40),
      };
    });
    const order = seen.order === null ? null : Number(seen.order);
    if (order !== null && order === visited.at(-1)) continue;
    visited.push(order);
    if (seen.order !== null && !(seen.focusVisible && seen.indicator)) unfocused.push(seen.text);
  }
  const inOrder = visited.length === expected.length && visited.every((order, i) => order === i);
  check(`${name}: Tab reaches all ${expected.length} links, buttons and inputs in order`, inOrder,
    inOrder ? '' : { expected: expected.map((e, i) => `${i}:${e.tag}:${e.text}`), visited });
  check(`${name}: focus is visible on every element Tab reaches`, unfocused.length === 0, unfocused);
}

// Chart text as drawn: an SVG scaled down to a narrow column scales its type down with it.
const LEGIBLE_TEXT_PX = 9;
async function chartTextCheck(page, name, width) {
  const small = await page.evaluate((least) => [...document.querySelectorAll('main svg text')]
    .filter((t) => t.textContent.trim() !== '' && t.getBoundingClientRect().width > 0)
    .map((t) => {
      const svg = t.ownerSVGElement;
      const box = svg.viewBox.baseVal;
      const scale = box && box.width ? svg.getBoundingClientRect().width / box.width : 1;
      return { text: t.textContent.trim().slice(0, 30), px: Math.round(parseFloat(getComputedStyle(t).fontSize) * scale * 10) / 10 };
    })
    .filter((t) => t.px < least), LEGIBLE_TEXT_PX);
  check(`${name}: chart text at least ${LEGIBLE_TEXT_PX} px at ${width} px wide`, small.length === 0, small.slice(0, 8));
}

async function screenshotsOf(page, name) {
  await page.evaluate(() => {
    document.activeElement?.blur();
    window.scrollTo(0, 0);
  });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(screenshots, `${name}-1280.png`), fullPage: true });
  await chartTextCheck(page, name, 1280);
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(`${name}: no sideways scrolling at 390 px`, overflow <= 0, `the page is ${overflow}px wider than the window`);
  await chartTextCheck(page, name, 390);
  await page.screenshot({ path: path.join(screenshots, `${name}-390.png`), fullPage: true });
  // The first screenful, as a phone shows it.
  await page.screenshot({ path: path.join(screenshots, `${name}-390-first-screen.png`) });
  await page.setViewportSize({ width: 1280, height: 800 });
}

// One page as one role: its status, then (when it is a page the role may see) axe-core, the
// keyboard and the screenshots.
async function visit(page, role, spec) {
  const name = spec.name ?? `${role} ${spec.path}`;
  const response = await page.goto(url(spec.path));
  const status = response ? response.status() : 0;
  check(`${role} ${spec.path}: answers ${spec.status}`, status === spec.status, `answered ${status} at ${page.url()}`);
  if (spec.h1) {
    const h1 = (await page.locator('main h1').first().textContent({ timeout: 2_000 }).catch(() => null)) ?? '';
    check(`${role} ${spec.path}: <main> has the heading "${spec.h1}"`, h1.includes(spec.h1), `the heading is "${h1.trim()}"`);
  }
  const text = await page.locator('body').innerText();
  for (const absent of spec.absent_text ?? []) {
    check(`${role} ${spec.path}: does not show "${absent}"`, !text.includes(absent));
  }
  for (const present of spec.present_text ?? []) {
    check(`${role} ${spec.path}: shows "${present}"`, text.includes(present));
  }
  await axeCheck(page, `${role} ${spec.path}`);
  if (spec.keyboard !== false) await keyboardCheck(page, `${role} ${spec.path}`);
  if (spec.screenshot) await screenshotsOf(page, spec.screenshot);
  return status;
}

async function hiddenCsrfToken(page) {
  return page.evaluate(() => document.querySelector('input[name=csrf_token]')?.value ?? null);
}

async function post(page, target, fields) {
  return page.evaluate(async ({ target, fields }) => {
    const answer = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
      redirect: 'manual',
    });
    return answer.status;
  }, { target, fields });
}

const output = {};

// Each role signs in at the provider and opens its pages.
for (const user of plan.users) {
  await attempt(`${user.login}: signs in and opens its pages`, async () => {
    const { context, page } = await newPage();
    await signInWithOidc(page, user.login);
    check(`${user.login}: signing in at the OpenID provider lands on ${user.landing}`, pathOf(page) === user.landing,
      `landed on ${page.url()}`);
    const nav = await page.locator('nav a').evaluateAll((links) => links.map((a) => new URL(a.href).pathname));
    for (const expected of user.nav ?? []) {
      check(`${user.login}: the navigation links to ${expected}`, nav.includes(expected), nav);
    }
    for (const absent of user.nav_absent ?? []) {
      check(`${user.login}: the navigation does not link to ${absent}`, !nav.includes(absent), nav);
    }
    if (user.sign_in_screenshot) {
      await screenshotsOf(page, user.sign_in_screenshot);
    }
    for (const spec of user.pages ?? []) {
      await attempt(`${user.login} ${spec.path}`, () => visit(page, user.login, spec));
    }
    for (const spec of user.refused ?? []) {
      const response = await page.goto(url(spec.path));
      const status = response ? response.status() : 0;
      check(`${user.login} ${spec.path}: refused with ${spec.status}`, status === spec.status, `answered ${status}`);
    }
    for (const action of user.refused_posts ?? []) {
      // With the session's own valid token: the refusal is the role's, not the CSRF check's.
      await page.goto(url(user.landing));
      const token = await hiddenCsrfToken(page);
      check(`${user.login}: a page it may see carries a CSRF token`, token !== null);
      const status = await post(page, url(action.path), { csrf_token: token ?? '' });
      const allowed = [].concat(action.status);
      check(`${user.login} POST ${action.path}: refused with ${allowed.join(' or ')}`, allowed.includes(status), `answered ${status}`);
    }
    await context.close();
  });
}

// The sign-in page itself, the API-key sign-in and sign-out.
await attempt('API-key sign-in', async () => {
  const { context, page } = await newPage();
  const first = await page.goto(url('/programme'));
  check('signed out, /programme sends the browser to /sign-in', pathOf(page) === '/sign-in', `at ${page.url()} (${first?.status()})`);
  await visit(page, 'signed out', { path: '/sign-in', status: 200, screenshot: 'sign-in' });
  // Chromium asks for /favicon.ico after a page loads, when it likes; ask now, so that a sign-in
  // form spoilt by it fails every time rather than now and then.
  await page.evaluate(() => fetch('/favicon.ico').catch(() => null));
  await page.fill('#api-key', plan.api_key);
  await Promise.all([page.waitForNavigation(), page.locator('#sign-in-key [type=submit], #sign-in-key button').first().click()]);
  check('an API key signs in and lands on /programme', pathOf(page) === '/programme', `at ${page.url()}`);
  const signOut = page.locator('form[action="/sign-out"] [type=submit], form[action="/sign-out"] button').first();
  await Promise.all([page.waitForNavigation(), signOut.click()]);
  check('sign-out lands on /sign-in', pathOf(page) === '/sign-in', `at ${page.url()}`);
  await page.goto(url('/programme'));
  check('after sign-out, /programme sends the browser to /sign-in again', pathOf(page) === '/sign-in', `at ${page.url()}`);
  await context.close();

  const wrong = await newPage();
  await wrong.page.goto(url('/sign-in'));
  await wrong.page.fill('#api-key', 'not-a-key');
  await Promise.all([wrong.page.waitForNavigation(), wrong.page.locator('#sign-in-key [type=submit], #sign-in-key button').first().click()]);
  const afterWrong = await wrong.page.goto(url('/programme'));
  check('a wrong API key does not sign in', pathOf(wrong.page) === '/sign-in', `at ${wrong.page.url()} (${afterWrong?.status()})`);
  await wrong.context.close();
});

// The programme page against the API's figures.
await attempt('programme figures', async () => {
  const programme = plan.programme;
  const { context, page } = await newPage();
  await signInWithOidc(page, programme.login);
  await page.goto(url(programme.path));

  const points = await page.locator('#funnel-plot g.funnel-point').evaluateAll((gs) => gs.map((g) => ({
    contractor_id: g.getAttribute('data-contractor-id'),
    status: g.getAttribute('data-status'),
    label: (g.querySelector('text')?.textContent ?? '').trim(),
    tabindex: g.getAttribute('tabindex'),
    role: g.getAttribute('role'),
    name: g.getAttribute('aria-label') ?? '',
  })));
  const svg = await page.evaluate(() => {
    const plot = document.querySelector('#funnel-plot');
    return plot && {
      role: plot.getAttribute('role'),
      labelledby: plot.getAttribute('aria-labelledby'),
      title: document.getElementById('funnel-title')?.textContent?.trim() ?? '',
      desc: document.getElementById('funnel-desc')?.textContent?.trim() ?? '',
    };
  });
  // A group (an image's children would be presentational, and the points are focusable), named
  // by its title and description; each point an image named by its figures.
  check('the funnel plot is a group named by a title and a description',
    svg && svg.role === 'group' && svg.labelledby === 'funnel-title funnel-desc' && svg.title && svg.desc, svg);
  const byId = new Map(points.map((p) => [p.contractor_id, p]));
  check('the funnel plot has one point per contractor with visits', points.length === programme.funnel.length && byId.size === points.length,
    { shown: points.map((p) => p.contractor_id), expected: programme.funnel.map((p) => p.contractor_id) });
  for (const expected of programme.funnel) {
    const point = byId.get(expected.contractor_id);
    check(`funnel point ${expected.contractor_id}: status ${expected.status}`, point?.status === expected.status, point ?? 'no point');
    check(`funnel point ${expected.contractor_id}: labelled "${expected.label}"`, point?.label.includes(expected.label), point ?? 'no point');
    check(`funnel point ${expected.contractor_id}: reachable by Tab`, point?.tabindex === '0', point ?? 'no point');
    check(`funnel point ${expected.contractor_id}: an image named by its figures`,
      point?.role === 'img' && point.name.includes(expected.label) && point.name.includes(expected.rate_shown) && point.name.includes(expected.visits_shown), point ?? 'no point');
  }
  const funnelTable = await page.locator('#funnel-table').count();
  check('the funnel plot has a table of the same numbers beside it', funnelTable === 1);

  const table = await page.evaluate(() => {
    const league = document.querySelector('#league-table');
    if (!league) return null;
    const headings = [...league.querySelectorAll('thead th')].map((th) => ({ column: th.getAttribute('data-column'), text: th.textContent.trim() }));
    const rows = [...league.querySelectorAll('tbody tr')].map((tr) => ({
      contractor_id: tr.getAttribute('data-contractor-id'),
      cells: [...tr.querySelectorAll('td, th')].map((td) => ({ column: td.getAttribute('data-column'), value: td.getAttribute('data-value'), text: td.textContent.trim() })),
    }));
    return { headings, rows };
  });
  check('the league table is on the page', table !== null);
  if (table) {
    check('the league table has one row per contractor, in the API\'s order',
      JSON.stringify(table.rows.map((r) => r.contractor_id)) === JSON.stringify(programme.league.map((r) => r.contractor_id)),
      { shown: table.rows.map((r) => r.contractor_id), expected: programme.league.map((r) => r.contractor_id) });
    const headingColumns = table.headings.map((h) => h.column);
    for (const column of Object.keys(programme.league[0]?.values ?? {})) {
      check(`the league table has the column ${column}`, headingColumns.includes(column), headingColumns);
    }
    for (const expected of programme.league) {
      const row = table.rows.find((r) => r.contractor_id === expected.contractor_id);
      if (!row) continue;
      for (const [column, value] of Object.entries(expected.values)) {
        const cell = row.cells.find((c) => c.column === column);
        check(`league ${expected.contractor_id} ${column} = ${value}`, cell && sameNumber(cell.value, value),
          cell ? `data-value="${cell.value}", shown "${cell.text}"` : 'no cell');
      }
    }

    // The CSV: the headings as shown, then each row's data-values, in the table's order.
    const csvLink = await page.locator('a[href*="league.csv"]').first().getAttribute('href').catch(() => null);
    check('the programme page links to the league table\'s CSV', csvLink !== null);
    const answer = await context.request.get(url(programme.csv_path));
    check('the CSV answers 200 as text/csv', answer.status() === 200 && (answer.headers()['content-type'] ?? '').startsWith('text/csv'),
      `${answer.status()} ${answer.headers()['content-type']}`);
    const csv = parseCsv(await answer.text());
    const tableHeadings = table.headings.map((h) => h.text);
    check('the CSV\'s first row is the table\'s headings', JSON.stringify(csv[0]) === JSON.stringify(tableHeadings), { csv: csv[0], table: tableHeadings });
    const body = csv.slice(1).filter((r) => r.length > 1 || r[0] !== '');
    check('the CSV has a row per table row', body.length === table.rows.length, `${body.length} rows, table ${table.rows.length}`);
    table.rows.forEach((row, i) => {
      const expected = row.cells.map((c) => c.value ?? c.text);
      check(`CSV row ${i + 1} equals the table's row for ${row.contractor_id}`, JSON.stringify(body[i]) === JSON.stringify(expected),
        { csv: body[i], table: expected });
    });
  }
  await context.close();
});

// A contractor's own records only: another contractor's pages and a missing one are 404 alike.
await attempt('contractor confinement', async () => {
  const c = plan.contractor;
  const { context, page } = await newPage();
  await signInWithOidc(page, c.login);
  for (const p of c.not_found) {
    const response = await page.goto(url(p));
    check(`${c.login} ${p}: 404, as for a missing page`, response?.status() === 404, `answered ${response?.status()}`);
  }
  for (const p of c.visible) {
    const response = await page.goto(url(p));
    check(`${c.login} ${p}: its own page answers 200`, response?.status() === 200, `answered ${response?.status()}`);
  }
  await context.close();
});

// Acknowledging from the page, with the keyboard; a post without the CSRF token changes nothing.
await attempt('escalations', async () => {
  const e = plan.escalations;
  const { context, page } = await newPage();
  await signInWithOidc(page, e.login);
  await page.goto(url('/escalations'));
  const noToken = await post(page, url(`/escalations/${e.untouched_id}/acknowledge`), {});
  check('a form post without csrf_token is refused with 403', noToken === 403, `answered ${noToken}`);
  const badToken = await post(page, url(`/escalations/${e.untouched_id}/acknowledge`), { csrf_token: 'forged' });
  check('a form post with a forged csrf_token is refused with 403', badToken === 403, `answered ${badToken}`);

  await page.goto(url('/escalations'));
  await page.evaluate(() => document.activeElement?.blur());
  const row = `tr[data-escalation-id="${e.acknowledge_id}"]`;
  check('the escalation to acknowledge has a row', (await page.locator(row).count()) === 1);
  let reached = false;
  for (let i = 0; i < 200 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate((rowSelector) => {
      const element = document.activeElement;
      return Boolean(element && element.closest(rowSelector) && element.closest('form') && (element.tagName === 'BUTTON' || element.type === 'submit'));
    }, row);
  }
  check('Tab reaches the acknowledge button in the escalation\'s row', reached);
  if (reached) {
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
    const after = await page.locator(row).evaluateAll((rows) => rows.map((r) => r.textContent.replace(/\s+/g, ' ').trim()));
    check('after Enter, the escalation is no longer open on the page (or says acknowledged)',
      after.length === 0 || after.every((text) => /acknowledged/i.test(text)), after);
  }
  await context.close();
});

await browser.close();

function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i += 1; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i += 1;
      row.push(field); rows.push(row); row = []; field = '';
    } else field += ch;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

const failed = checks.filter((c) => !c.ok);
output.checks = checks;
output.failed = failed.length;
process.stdout.write(`${JSON.stringify(output, null, 1)}\n`);
if (failed.length) {
  process.stderr.write(`${failed.length} of ${checks.length} browser checks failed:\n`);
  for (const f of failed) process.stderr.write(`  FAILED ${f.name}: ${f.detail}\n`);
  process.exit(1);
}
