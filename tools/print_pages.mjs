// Print built pages of the site to PDF with Chromium, as the PDF edition needs them
// (tools/pdf.py runs this and binds the results into one book).
// Usage: node tools/print_pages.mjs BASE_URL SITE_URL OUT_DIR COVER_HTML page1 page2 ...
// Each page is printed as it is served, from the same executed outputs as the site, after:
// MathJax has typeset; every collapsed cell and solution is opened (a printed book shows them);
// links within the site point at the published site (SITE_URL), since a PDF has no server.
// The cover is printed from the HTML file COVER_HTML. Writes OUT_DIR/000-cover.pdf and
// OUT_DIR/NNN.pdf per page, each with a document outline from its headings, and OUT_DIR/NNN.json,
// the headings' texts in document order (Chromium's outline joins the lines of a wrapped heading
// without a space, so tools/pdf.py takes the titles from here).
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';

const [base, site, outDir, cover, ...pages] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run'],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 1400 } });
await context.route('**/*', (route) => {
  const url = route.request().url();
  return url.startsWith(base) || url.startsWith('data:') ? route.continue() : route.abort();
});
const options = {
  format: 'A4', printBackground: true, outline: true, tagged: true,
  margin: { top: '18mm', bottom: '18mm', left: '16mm', right: '16mm' },
};
const tab = await context.newPage();
await tab.setContent(readFileSync(cover, 'utf8'), { waitUntil: 'load' });
await tab.pdf({ ...options, path: `${outDir}/000-cover.pdf` });
// every page of a chapter names the chapter and its page within it at the foot
const footer = '<div style="font: 8px sans-serif; color: #666; width: 100%; text-align: center">' +
  '<span class="title"></span> · <span class="pageNumber"></span>/<span class="totalPages"></span></div>';
for (const [i, page] of pages.entries()) {
  await tab.goto(`${base}/${page}.html`, { waitUntil: 'load' });
  await tab.evaluate(() => window.MathJax?.startup?.promise).catch(() => {});
  await tab.evaluate(([site, page]) => {
    document.querySelectorAll('details').forEach((d) => { d.open = true; });
    const here = new URL(`${site}${page}.html`);
    document.querySelectorAll('a[href]').forEach((a) => {
      const href = a.getAttribute('href');
      if (!/^[a-z]+:/i.test(href) && !href.startsWith('#')) a.href = new URL(href, here).href;
    });
  }, [site, page]);
  // in print: no toggle buttons, and long code lines wrap instead of running off the page
  await tab.addStyleTag({ content: '@media print { details > summary { display: none !important; }' +
    ' pre { white-space: pre-wrap !important; overflow-wrap: anywhere; } }' });
  await tab.emulateMedia({ media: 'print' });
  const headings = await tab.evaluate(() => Array.from(
    document.querySelectorAll('h1, h2, h3, h4, h5, h6')).filter((h) => h.getClientRects().length)
    .map((h) => {
      const copy = h.cloneNode(true);
      copy.querySelectorAll('.headerlink').forEach((a) => a.remove());
      return { level: +h.tagName[1], text: copy.textContent.replace(/\s+/g, ' ').trim() };
    }));
  writeFileSync(`${outDir}/${String(i + 1).padStart(3, '0')}.json`, JSON.stringify(headings));
  await tab.pdf({ ...options, path: `${outDir}/${String(i + 1).padStart(3, '0')}.pdf`,
                  displayHeaderFooter: true, headerTemplate: '<div></div>', footerTemplate: footer });
}
await browser.close();
