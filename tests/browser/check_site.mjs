// Load every page of the built site in headless Chromium and report, as JSON on stdout:
// failed requests, requests to any host but the local server, console errors, raw TeX left
// untypeset, whether moving each static slider (dlcv.interactive) from the keyboard changes its
// frame, its alt text and the value it announces, and the
// code or output blocks that need horizontal scrolling on a 1280 x 900 screen (collapsed
// cells opened first), and the accessibility violations axe-core finds (WCAG 2.0 and 2.1, levels A
// and AA, with axe's best practices and the experimental check that a control's name contains
// its visible text, WCAG 2.5.3).
// Usage: node tests/browser/check_site.mjs BASE_URL page1.html page2.html ...
// The browser is Debian's chromium (Playwright cannot download its own here); set CHROMIUM to
// use another binary.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';

const AXE = fileURLToPath(new URL('../../node_modules/axe-core/axe.min.js', import.meta.url));
const AXE_OPTIONS = {
  runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  rules: { 'label-content-name-mismatch': { enabled: true } },
  resultTypes: ['violations'],
};

const [base, ...pages] = process.argv.slice(2);
// The code's colours come from one stylesheet: their contrast is checked on the page that
// DLCV_CODE_CONTRAST_PAGE names (the test picks the one with the most code), and the other
// pages check the contrast of everything but their code blocks. Checking every token of every
// page took most of axe's time (about 14 of 17 s on two chapters).
const codeContrastPage = process.env.DLCV_CODE_CONTRAST_PAGE || null;
const origin = new URL(base).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run'],
});
const results = [];
for (const page of pages) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const tab = await context.newPage();
  let recording = true;
  const r = { page, failed: [], external: [], console: [], rawTex: [], math: 0, sliders: [],
              overflow: [], axe: [], redirects: false };
  // Anything not served by the local site is blocked and reported: the site must work offline.
  await tab.route('**/*', async (route) => {
    const url = route.request().url();
    if (route.request().resourceType() === 'document' && url.startsWith(origin)) {
      // A page that redirects at once (the entry page's meta refresh) would navigate away while
      // it is checked: it is served without the refresh, checked as it stands, and reported.
      const response = await route.fetch();
      const body = await response.text();
      const still = body.replace(/<meta[^>]*http-equiv=["']?refresh["']?[^>]*>/gi, '');
      if (still !== body) r.redirects = true;
      return route.fulfill({ response, body: still });
    }
    if (url.startsWith(origin) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    r.external.push(url);
    return route.abort();
  });
  tab.on('requestfailed', (req) => {
    if (recording && !r.external.includes(req.url())) r.failed.push(`${req.url()} (${req.failure()?.errorText})`);
  });
  tab.on('response', (res) => {
    if (recording && res.status() >= 400) r.failed.push(`${res.url()} (HTTP ${res.status()})`);
  });
  tab.on('console', (msg) => { if (recording && msg.type() === 'error') r.console.push(msg.text()); });
  tab.on('pageerror', (err) => r.console.push(`uncaught: ${err.message}`));
  await tab.goto(`${base}/${page}`, { waitUntil: 'load' });
  // Wait for MathJax (if the page has math) to finish typesetting.
  await tab.waitForFunction(() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise),
                            null, { timeout: 20000 }).catch(() => {});
  await tab.evaluate(() => window.MathJax?.startup?.promise).catch(() => {});
  r.math = await tab.evaluate(() => document.querySelectorAll('mjx-container').length);
  // Screen readers read math from the MathML that MathJax hides beside each formula.
  r.spokenMath = await tab.evaluate(
    () => document.querySelectorAll('mjx-container mjx-assistive-mml math').length);
  r.rawTex = await tab.evaluate(() => {
    const main = document.querySelector('main') || document.body || document.documentElement;
    const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    const hits = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (n.parentElement.closest('pre, code, script, style, mjx-container, .highlight')) continue;
      const m = n.textContent.match(/\\\(|\\\[|\$\$|\\(frac|sum|mathbf|left|right|begin)\b/);
      if (m) hits.push(n.textContent.trim().slice(0, 80));
    }
    return hits;
  });
  r.overflow = await tab.evaluate(() => {
    document.querySelectorAll('main details').forEach((d) => { d.open = true; });
    const blocks = document.querySelectorAll('main pre, main div.cell_output');
    return Array.from(blocks)
      .filter((el) => el.getClientRects().length && el.scrollWidth > el.clientWidth + 1)
      .map((el) => {
        const lines = el.textContent.split('\n');
        const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
        return `${el.scrollWidth - el.clientWidth} px too wide: ${longest.trim().slice(0, 90)}`;
      });
  });
  // Static sliders: move each to its last position; the frame (img src) must change.
  const sliders = await tab.$$('.dlcv-interactive input[type=range]');
  for (const [i, slider] of sliders.entries()) {
    const img = await slider.evaluateHandle((s) => s.closest('.dlcv-interactive').querySelector('img'));
    const before = await img.evaluate((el) => [el.src, el.alt]);
    // moved from the keyboard, as a reader without a mouse would: focus, then End
    await slider.focus();
    await tab.keyboard.press('End');
    const after = await img.evaluate((el) => [el.src, el.alt]);
    const spoken = await slider.evaluate((s) => [s.getAttribute('aria-valuetext'),
      s.dataset.values ? JSON.parse(s.dataset.values)[+s.value] : null]);
    r.sliders.push({ index: i, changed: before[0] !== after[0], altChanged: before[1] !== after[1],
                     saysValue: spoken[0] !== null && spoken[0] === spoken[1] });
  }
  // Accessibility last: axe fetches the stylesheets itself to read them (and resolves the
  // theme's relative @import wrongly), so the page's own requests stop being recorded here.
  recording = false;
  await tab.addScriptTag({ path: AXE });
  const allCode = codeContrastPage === null || page === codeContrastPage;
  r.codeContrast = allCode;
  r.axe = await tab.evaluate(async ([options, allCode]) => {
    // opened cells fade in: judge colours once the animations have finished
    await Promise.all(document.getAnimations().map((a) => a.finished.catch(() => {})));
    const report = (found) => found.violations.map((v) => `${v.id} (${v.nodes.length}x: ${v.help}): ` +
      v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', '));
    if (allCode) return report(await window.axe.run(document, options));
    const rest = { ...options, rules: { ...options.rules, 'color-contrast': { enabled: false } } };
    const contrast = { runOnly: { type: 'rule', values: ['color-contrast'] }, resultTypes: ['violations'] };
    return [...report(await window.axe.run(document, rest)),
            ...report(await window.axe.run({ exclude: [['div.highlight']] }, contrast))];
  }, [AXE_OPTIONS, allCode]);
  await context.close();
  results.push(r);
}
await browser.close();
console.log(JSON.stringify(results, null, 1));
