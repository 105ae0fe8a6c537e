"""Seconds of one re-colorization on the web page (app.py): a click on a 1-megapixel photo, on the CPU,
as the server does it and as a person feels it in a browser; and the worst request the page accepts.

    .venv/bin/python bench/bench_app.py [--threads 2] [--repeats 7] [--hints 10] [--hint-model] [--no-browser]
                                        [--worst]
    .venv/bin/python bench/bench_app.py --screenshot figures/app-screenshot.png -m CKPT --photo PHOTO \
                                        --click X,Y,#rrggbb [--click ...]     # the README's figure

What a click costs the server: the hint is added (app.Engine.add_hint), the
photo is colorized at full resolution with every hint (Colorizer.colorize),
the palette is computed at the new hint (Colorizer.suggest_colors) and the
picture the page shows is made (at most 1024 px, dots drawn) and encoded as the
PNG data: URL the page sends (app_page.picture_value).  The full-resolution PNG
is written only when it is downloaded: its cost is listed apart.  The page's
goal: under a second.  The network is an untrained FCN-32s of config 100's size
(the demo's model, which ``make app`` serves; ``--hint-model``: with hint input;
weights do not change the cost), written the way the trainer writes a
checkpoint and read back by colorize.load_colorizer.  The hints spread along
lightness edges (``propagate.py``) with every checkpoint.  Medians over
--repeats clicks, each on the photo with --hints hints already placed; the
ratios are of medians measured in this one run.

The browser figure (second line; skipped, with the reason, without chromium,
chromedriver or selenium): ``app.py`` serving the same checkpoint on
127.0.0.1, headless Chromium with the photo uploaded and the same number of
hints loaded from a hints file, then --repeats clicks (after one warm-up),
each timed in the page itself from the mouse button going down to the new
picture decoded and painted (two animation frames after it was decoded).  Its
parts: until the new picture is in the page (request, the server's work, the
answer, Gradio's front end), then decoding and painting it.

--worst: the heaviest request the page accepts, on a 16 MP photo (4000 x 4000,
the page's --max-pixels): opening it, then a hints file of config.APP_MAX_HINTS
hints whose squares cover almost config.APP_MAX_HINT_AREA times the photo,
then its full-resolution download.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import torch

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_DIR)
import app  # noqa: E402
import app_page  # noqa: E402
from bench_common import demo_checkpoint, median_seconds, noisy_astronaut  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import hints  # noqa: E402

WIDTH, HEIGHT = 1155, 866   # 1.0 megapixel, 4:3
WORST_SIDE = 4000           # 16 MP: app.APP_MAX_PIXELS
BUDGET = 1.0                # seconds: a click should feel live
CHROMEDRIVER = '/usr/bin/chromedriver'
SERVER_START_S = 300
# In the page: the time from the mouse button going down on the picture to the new picture decoded and
# two animation frames later (painted), and to the moment it was in the page; one entry per new picture.
LATENCY_JS = """
const box = document.querySelector('#picture');
window.pictureTimes = [];
box.addEventListener('mousedown', () => { window.clickedAt = performance.now(); }, true);
let src = (box.querySelector('img') || {}).src;
new MutationObserver(() => {
  const img = box.querySelector('img');
  if (!img || img.src === src) return;
  src = img.src;
  const clicked = window.clickedAt, inPage = performance.now();
  window.clickedAt = undefined;
  if (clicked === undefined) return;   // a picture no click asked for (an undo)
  img.decode().then(() => requestAnimationFrame(() => requestAnimationFrame(() => window.pictureTimes.push(
    [(inPage - clicked) / 1000, (performance.now() - clicked) / 1000]))));
}).observe(box, {childList: true, subtree: true, attributes: true, attributeFilter: ['src']});
"""


def server_click_medians(engine, state, rng, repeats):
    rgb = engine.store.get(state['photo'])
    points = state['points']

    def click():
        clicked = engine.add_hint(state, int(rng.randint(WIDTH)), int(rng.randint(HEIGHT)), '#2050e0')
        app_page.picture_value(engine.render(clicked)['picture'])

    steps = {
        'click (whole)': click,
        'colorize, no hints': lambda: engine.colorizer.colorize([rgb])[0],
        'colorize, hints': lambda: engine.colorizer.colorize(rgb, hints=points),
        'palette': lambda: engine.colorizer.suggest_colors(rgb, 10, 10, hints=points, count=app.PALETTE_SIZE),
        'shown picture (data: URL)': lambda: app_page.picture_value(app.shown_picture(rgb, points)),
        'full PNG (download only)': lambda: engine.write_png(dict(state, points=list(points)), 'bench%f' % time.time()),
    }
    return {name: median_seconds(fn, repeats) for name, fn in steps.items()}


# --------------------------------------------------------------------------
# the browser: click -> new picture, as a person sees it
# --------------------------------------------------------------------------

def browser_missing():
    """Why the browser cannot run here (one line), or None."""
    if not (shutil.which('chromium') or os.path.exists('/usr/bin/chromium')):
        return 'no chromium (apt-get install chromium chromium-driver)'
    if not os.path.exists(CHROMEDRIVER):
        return 'no %s (apt-get install chromium-driver)' % CHROMEDRIVER
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'no selenium (pip install -r requirements-app.txt)'
    return None


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_server(ckpt, threads, log):
    """``app.py -m CKPT`` on 127.0.0.1 (a free port) -> (process, url) once it answers."""
    port = free_port()
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    process = subprocess.Popen([sys.executable, os.path.join(REPO_DIR, 'app.py'), '-m', ckpt, '--port', str(port),
                                '--device', 'cpu'], cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT,
                               env=environment)
    url, deadline = 'http://127.0.0.1:%d/' % port, time.monotonic() + SERVER_START_S
    while True:
        if process.poll() is not None:
            raise cli.UserError('app.py exited with status %s (its log: %s)' % (process.returncode, log.name))
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.terminate()
            raise cli.UserError('app.py did not answer within %d s' % SERVER_START_S)
        time.sleep(0.5)


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium')
    for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1400,1000',
                 '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--no-first-run'):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def wait_for(driver, condition, what, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: condition(d), message=what)


def click_picture(driver, x, y):
    """Click the shown picture at its pixel (x, y) (offsets from the element's floored centre)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    img = driver.find_element(By.CSS_SELECTOR, '#picture img')
    left, top, width, height, natural_w, natural_h = driver.execute_script(
        'const r = arguments[0].getBoundingClientRect(); '
        'return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];', img)
    at_x, at_y = left + (x + 0.5) * width / natural_w, top + (y + 0.5) * height / natural_h
    ActionChains(driver).move_to_element_with_offset(
        img, int(round(at_x - int(left + width / 2))), int(round(at_y - int(top + height / 2)))).click().perform()


def set_colour(driver, hex_color):
    """Pick ``hex_color`` in the page's colour picker (the colour of the next click's hint)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    driver.find_element(By.CSS_SELECTOR, '#hint-color button.dialog-button').click()
    field = driver.find_element(By.CSS_SELECTOR, '#hint-color .color-picker input[type=text]')
    field.send_keys(Keys.CONTROL, 'a')
    field.send_keys(hex_color, Keys.ENTER)
    driver.find_element(By.TAG_NAME, 'h2').click()   # closes the picker
    rgb = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    wait_for(driver, lambda d: 'rgb%s' % (rgb,) in d.find_element(
        By.CSS_SELECTOR, '#hint-color button.dialog-button').get_attribute('style').replace(' ', '').replace(
        ',', ', '), 'the colour picker shows %s' % hex_color, 10)


def screenshot(ckpt, photo, clicks, out, threads, tmp):
    """The page in headless Chromium with ``photo`` open and ``clicks`` [(x, y, '#rrggbb')] (in the shown
    picture's pixels) made one by one, saved as the PNG ``out`` (the README's figure)."""
    from selenium.webdriver.common.by import By
    with open(os.path.join(tmp, 'server.log'), 'w') as log:
        process, url = start_server(ckpt, threads, log)
        driver = None
        try:
            driver = chromium()
            driver.get(url)
            status = lambda d: d.find_element(By.ID, 'status').text   # noqa: E731
            upload = 'input[data-testid="Upload a photo-upload-button"]'
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, upload), 'the page loads')
            driver.find_element(By.CSS_SELECTOR, upload).send_keys(os.path.abspath(photo))
            wait_for(driver, lambda d: os.path.basename(photo) in status(d), 'the photo is colorized')
            for count, (x, y, colour) in enumerate(clicks, 1):
                set_colour(driver, colour)
                click_picture(driver, x, y)
                wait_for(driver, lambda d: '%d hint%s,' % (count, '' if count == 1 else 's') in status(d),
                         'hint %d placed' % count)
            time.sleep(1)   # the palette's swatches
            driver.save_screenshot(out)
        finally:
            if driver is not None:
                driver.quit()
            process.terminate()
            process.wait(30)


def click_spec(text):
    """argparse type: 'X,Y,#rrggbb' -> (x, y, '#rrggbb')."""
    try:
        x, y, colour = text.split(',')
        return int(x), int(y), colour
    except ValueError:
        raise cli.UserError('--click %r: expected X,Y,#rrggbb' % text) from None


def browser_click_seconds(ckpt, photo, points, repeats, threads, tmp):
    """[(in the page, painted)] seconds of ``repeats`` clicks in headless Chromium (after one warm-up)."""
    from selenium.webdriver.common.by import By
    hints_file = os.path.join(tmp, 'photo.json')
    with open(hints_file, 'w') as f:
        json.dump({'points': points}, f)
    with open(os.path.join(tmp, 'server.log'), 'w') as log:
        process, url = start_server(ckpt, threads, log)
        driver = None
        try:
            driver = chromium()
            driver.get(url)
            status = lambda d: d.find_element(By.ID, 'status').text   # noqa: E731
            wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]'),
                     'the page loads')
            driver.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(photo)
            wait_for(driver, lambda d: 'photo.jpg' in status(d), 'the photo is colorized')
            driver.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload hints (.json)-upload-button"]').send_keys(
                hints_file)
            wait_for(driver, lambda d: '%d hints' % len(points) in status(d), 'the hints are loaded')
            driver.execute_script(LATENCY_JS)
            rng = np.random.RandomState(3)
            shown = app.display_size(WIDTH, HEIGHT)
            for i in range(repeats + 1):
                click_picture(driver, int(rng.randint(shown[0])), int(rng.randint(shown[1])))
                wait_for(driver, lambda d: len(d.execute_script('return window.pictureTimes')) > i, 'click %d' % i)
                wait_for(driver, lambda d: '%d hints' % (len(points) + 1) in status(d), 'click %d done' % i)
                driver.find_element(By.ID, 'undo').click()   # the next click again on --hints hints
                wait_for(driver, lambda d: '%d hints' % len(points) in status(d), 'undo %d' % i)
            return driver.execute_script('return window.pictureTimes')[1:]
        finally:
            if driver is not None:
                driver.quit()
            process.terminate()
            process.wait(30)


# --------------------------------------------------------------------------
# the worst request the page accepts
# --------------------------------------------------------------------------

def worst_request(engine, tmp):
    """Seconds of the heaviest requests the page accepts, on a 16 MP photo (and what they hold)."""
    photo, hints_file = os.path.join(tmp, 'worst.jpg'), os.path.join(tmp, 'worst.json')
    noisy_astronaut(photo, WORST_SIDE, WORST_SIDE)
    # APP_MAX_HINTS squares of one size, together just under APP_MAX_HINT_AREA photos
    side = int((config.APP_MAX_HINT_AREA * WORST_SIDE ** 2 / config.APP_MAX_HINTS) ** 0.5)
    rng = np.random.RandomState(4)
    points = [{'x': int(rng.randint(WORST_SIDE)), 'y': int(rng.randint(WORST_SIDE)),
               'color': '#%06x' % rng.randint(1 << 24), 'size': side} for _ in range(config.APP_MAX_HINTS)]
    with open(hints_file, 'w') as f:
        json.dump({'points': points}, f)
    seconds = {}
    start = time.perf_counter()
    state = engine.open_photo(photo)
    app_page.picture_value(engine.render(state)['picture'])
    seconds['open the photo'] = time.perf_counter() - start
    start = time.perf_counter()
    hinted = engine.load_hints(state, hints_file)
    app_page.picture_value(engine.render(hinted)['picture'])
    seconds['load the hints'] = time.perf_counter() - start
    start = time.perf_counter()
    engine.write_png(hinted, 'worst')
    seconds['download the PNG'] = time.perf_counter() - start
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in
               (hints.point_box(p, WORST_SIDE, WORST_SIDE) for p in points)) / WORST_SIDE ** 2
    return seconds, side, area


def main():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=cli.positive_int, default=2, help='torch CPU threads (default 2)')
    p.add_argument('--repeats', type=cli.positive_int, default=7)
    p.add_argument('--hints', type=cli.natural_int, default=10, help='hints already on the photo (default 10)')
    p.add_argument('--hint-model', action='store_true', help='a network with hint input (default: lightness only)')
    p.add_argument('--no-browser', action='store_true', help='only the server side')
    p.add_argument('--worst', action='store_true', help='also the heaviest request the page accepts (16 MP)')
    p.add_argument('--screenshot', metavar='PNG', help='instead: the page with -m CKPT, --photo and --click '
                   'X,Y,#rrggbb (repeatable, shown-picture pixels) in headless Chromium, saved to PNG')
    p.add_argument('-m', '--model', help='--screenshot: the checkpoint served')
    p.add_argument('--photo', help='--screenshot: the photo uploaded')
    p.add_argument('--click', type=click_spec, action='append', default=[], help='--screenshot: a click')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.screenshot:
        if not (args.model and args.photo):
            raise cli.UserError('--screenshot needs -m CKPT and --photo FILE')
        with tempfile.TemporaryDirectory() as tmp:
            screenshot(args.model, args.photo, args.click, args.screenshot, args.threads, tmp)
        print('wrote %s' % args.screenshot)
        return 0
    rng = np.random.RandomState(1)
    with tempfile.TemporaryDirectory() as tmp:
        photo, ckpt = os.path.join(tmp, 'photo.jpg'), os.path.join(tmp, 'model.pth.tar')
        noisy_astronaut(photo, WIDTH, HEIGHT)
        demo_checkpoint(ckpt, hints=args.hint_model)
        engine = app.Engine(colorize.load_colorizer(ckpt, 'cpu'), ckpt, tmp)
        state = engine.open_photo(photo)
        for _ in range(args.hints):
            state = engine.add_hint(state, int(rng.randint(WIDTH)), int(rng.randint(HEIGHT)),
                                    '#%06x' % rng.randint(1 << 24))
        medians = server_click_medians(engine, state, rng, args.repeats)
        whole, plain = medians['click (whole)'], medians['colorize, no hints']
        print('1 MP click on the page (%dx%d, %d hints + 1, %s, hints by %s, %d torch threads, %d cores seen): '
              'median %.3f s over %d clicks = %.2f x the %.0f s budget, %.2f x a plain colorization (%.3f s)'
              % (WIDTH, HEIGHT, args.hints, 'hint model' if args.hint_model else 'lightness-only model',
                 engine.colorizer.hint_method, torch.get_num_threads(), os.cpu_count(), whole, args.repeats,
                 whole / BUDGET, BUDGET, whole / plain, plain))
        print('  medians: ' + ', '.join('%s %.3f s' % kv for kv in medians.items() if kv[0] != 'click (whole)'),
              flush=True)
        why = 'not asked (--no-browser)' if args.no_browser else browser_missing()
        if why:
            print('browser: skipped: %s' % why)
        else:
            times = np.array(browser_click_seconds(ckpt, photo, state['points'], args.repeats, args.threads, tmp))
            painted, in_page = float(np.median(times[:, 1])), float(np.median(times[:, 0]))
            print('browser (headless Chromium, the same photo and checkpoint, app.py on 127.0.0.1): click -> new '
                  'picture painted median %.3f s over %d clicks = %.2f x the %.0f s budget; its parts: the picture '
                  'in the page %.3f s (the server\'s work %.3f s, the rest request, answer and Gradio\'s front '
                  'end), decoding and painting it %.3f s'
                  % (painted, len(times), painted / BUDGET, BUDGET, in_page, whole, painted - in_page))
        if args.worst:
            seconds, side, area = worst_request(engine, tmp)
            print('worst accepted request (%dx%d photo; %d hints of size %d covering %.1f photos): %s'
                  % (WORST_SIDE, WORST_SIDE, config.APP_MAX_HINTS, side, area,
                     ', '.join('%s %.2f s' % kv for kv in seconds.items())))


if __name__ == '__main__':
    sys.exit(cli.run_cli(lambda argv: main()))
