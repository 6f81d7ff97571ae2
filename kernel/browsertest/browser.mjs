// Opens a notebook in a running Jupyter Notebook (6.x classic UI) in headless Chromium, runs all
// cells with the gopeft kernel, waits for the kernel to finish, and checks that inline charts
// render (a decoded <img> or an inline <svg> with drawn content, laid out at a visible size) and that
// no cell shows an error. Saves a screenshot with the first chart in view.
//
// usage: node browser.mjs URL SCREENSHOT.png
import { chromium } from 'playwright-core';

const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let code = 1;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url, { waitUntil: 'load' });
  // Wait for the kernel to be ready, then run every cell.
  await page.waitForFunction(() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel &&
    Jupyter.notebook.kernel.is_connected(), null, { timeout: 60000 });
  await page.evaluate(() => Jupyter.notebook.execute_all_cells());
  // Done when every code cell has a numbered prompt (no "[*]") and the kernel is idle.
  await page.waitForFunction(() => {
    const cells = Jupyter.notebook.get_cells().filter(c => c.cell_type === 'code');
    const busy = document.querySelector('#kernel_indicator_icon.kernel_busy_icon');
    return !busy && cells.every(c => c.input_prompt_number !== '*' && c.input_prompt_number !== undefined && c.input_prompt_number !== null);
  }, null, { timeout: 240000, polling: 500 });
  // The notebook scrolls inside its own panel: bring the first chart into view for the screenshot.
  await page.evaluate(() => {
    const el = document.querySelector('.output_area .output_svg svg, .output_area img');
    if (el) el.scrollIntoView({ block: 'center' });
  });
  await page.screenshot({ path: shot });
  const result = await page.evaluate(() => {
    // Charts arrive as PNG (<img>) or SVG (inline <svg>, which Notebook prefers when both are sent).
    const imgs = [...document.querySelectorAll('.output_area img')];
    const svgs = [...document.querySelectorAll('.output_area .output_svg svg')];
    const shown = el => { const r = el.getBoundingClientRect(); return r.width > 10 && r.height > 10; };
    return {
      cells: Jupyter.notebook.get_cells().filter(c => c.cell_type === 'code').length,
      images: imgs.length + svgs.length,
      rendered: imgs.filter(i => i.complete && i.naturalWidth > 0 && shown(i)).length +
        svgs.filter(s => s.querySelector('path, text') && shown(s)).length,
      errors: [...document.querySelectorAll('.output_error')].map(e => e.innerText.slice(0, 500)),
    };
  });
  console.log(JSON.stringify(result));
  if (result.errors.length > 0) console.error('browser: error outputs:', result.errors);
  else if (result.images === 0) console.error('browser: no inline image rendered');
  else if (result.rendered !== result.images) console.error(`browser: ${result.images - result.rendered} images did not decode`);
  else code = 0;
} catch (e) {
  console.error('browser:', e.message);
} finally {
  await browser.close();
}
process.exit(code);
