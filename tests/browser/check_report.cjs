// Loads a trailsight HTML report in headless Chromium and prints one JSON line with what a
// test needs: console errors, whether a script from the logs ran, rows and plots, the order
// after sorting by duration both ways. Run by tests/views.rs:
//   NODE_PATH=<dir>/node_modules CHROMIUM=/usr/bin/chromium node check_report.cjs REPORT.html SHOT.png
const { chromium } = require('playwright-core');

(async () => {
  const [file, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('dialog', (d) => { errors.push('dialog: ' + d.message()); d.dismiss(); });
    await page.goto('file://' + require('path').resolve(file), { waitUntil: 'load' });
    const rows = await page.$$eval('#insights tbody.insight', (r) => r.length);
    const plots = await page.$$eval('#insights tbody.insight td.plot svg', (r) => r.length);
    const pwned = await page.evaluate(() => (window.__pwned === undefined ? null : window.__pwned));
    const shownAgent = await page.evaluate(() => document.body.textContent.includes('<script>window.__pwned=1</script>'));
    const durations = () => page.$$eval('#insights tbody.insight', (gs) => gs.map((g) => Number(g.rows[0].cells[5].dataset.v)));
    await page.click('th[data-col="5"]');
    const ascending = await durations();
    await page.click('th[data-col="5"]');
    const descending = await durations();
    await page.click('th[data-col="0"]');
    await page.screenshot({ path: shot });
    console.log(JSON.stringify({ errors, pwned, rows, plots, shownAgent, ascending, descending }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
