"""app.py: the web page that colorizes a photo and takes colour hints by clicks.

Three layers, one hint model (config 198, 2 iterations, trained once for the module):
the page's logic without a server (app.Engine), the real server started as
``python app.py`` (its command line, bad input through the Gradio API, a
bounded load test on 127.0.0.1), and headless Chromium driving the page
(``-m browser``; skipped, with the reason, without chromium, chromedriver or
selenium).  Without gradio (requirements-app.txt) the whole module is skipped.
"""
import colorsys
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_DIR, free_port, skimage_photo

pytest.importorskip('gradio', reason='the page needs gradio: pip install -r requirements-app.txt')

import app  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402
import hints  # noqa: E402
import trainer  # noqa: E402

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
# the README's picture of the page; a test run rewrites it only when asked (UPDATE_FIGURES=1)
SCREENSHOT = os.path.join(REPO_DIR, 'figures', 'app-screenshot.png')
PHOTO_SIZE = (320, 240)               # shown at its own size on the page: a click is one photo pixel
GREEN, BLUE = '#20c040', '#2050e0'    # hues far from the untrained model's faint sepia
POINT_A, POINT_B, FAR = (70, 60), (250, 180), (290, 30)   # FAR: > 1/4 of the width from A and B
HINT_SIZE = 41                        # the hints' squares: +-20 photo pixels
SERVER_START_S = 180


# --- fixtures -------------------------------------------------------------------------

def train_tiny(tmp_path_factory, config_number):
    run = tmp_path_factory.mktemp('app-train') / 'run'
    trainer.main('fcn32s', ['-c', str(config_number), '-j', '0', '-o', str(run), '--max-iter', '2'])
    return str(run / trainer.MODEL_BEST)


@pytest.fixture(scope='module')
def app_hint_model(tmp_path_factory):
    """model_best of ``train_color_fcn32s.py -c 198 --max-iter 2``: a (barely trained) hint model."""
    return train_tiny(tmp_path_factory, 198)


@pytest.fixture(scope='module')
def app_plain_model(tmp_path_factory):
    """The same without hint input (config 199)."""
    return train_tiny(tmp_path_factory, 199)


def mid_photo(path, size=PHOTO_SIZE):
    """The cat at ``size``, its lightness squeezed into [0.25, 0.75] so any hue fits at every pixel."""
    rgb = skimage_photo('chelsea', size).astype(np.float32)
    Image.fromarray((rgb * 0.5 + 64).round().astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    return mid_photo(tmp_path_factory.mktemp('app-photo') / 'cat.png')


@pytest.fixture
def engine(app_hint_model, tmp_path):
    return app.Engine(colorize.load_colorizer(app_hint_model, 'cpu'), app_hint_model, str(tmp_path))


def rss_mb(pid):
    with open('/proc/%d/status' % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:')) / 1024.0


@pytest.fixture(scope='module')
def server(app_hint_model, tmp_path_factory):
    """``python app.py -m HINT_MODEL --port P`` on 127.0.0.1, shared by the module: (url, process)."""
    port = free_port()
    log = open(tmp_path_factory.mktemp('app-server') / 'server.log', 'w+')
    process = subprocess.Popen([sys.executable, os.path.join(REPO_DIR, 'app.py'), '-m', app_hint_model,
                                '--port', str(port), '--device', 'cpu'],
                               cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = 'http://127.0.0.1:%d/' % port
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail('app.py exited with status %s:\n%s' % (process.returncode, log.read()[-3000:]))
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail('app.py did not answer within %d s' % SERVER_START_S)
            time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def client(url):
    from gradio_client import Client
    return Client(url, verbose=False, download_files=False)


def upload(path):
    from gradio_client import handle_file
    return handle_file(str(path))


def outputs(result):
    """A page answer -> dict (picture, palette, status, error, png, hints) of what came back."""
    names = ('picture', 'palette', 'status', 'error', 'png', 'hints')
    return dict(zip(names, result))


def hue_distance(a, b):
    return min(abs(a - b), 1 - abs(a - b))


def hue_chroma(rgb_mean):
    """Mean colour (0..255) -> (hue in turns, chroma = max - min in 0..1)."""
    r, g, b = (float(v) / 255 for v in rgb_mean)
    return colorsys.rgb_to_hsv(r, g, b)[0], max(r, g, b) - min(r, g, b)


def hex_hue(hex_color):
    return hue_chroma([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])[0]


def ring_mean(rgb, x, y, inner, outer):
    """Mean colour of the pixels at distance [inner, outer) from (x, y): around a drawn dot, inside its square."""
    yy, xx = np.mgrid[:rgb.shape[0], :rgb.shape[1]]
    distance = np.hypot(xx - x, yy - y)
    return rgb[(distance >= inner) & (distance < outer)].reshape(-1, 3).mean(0)


# --- the command line -----------------------------------------------------------------

def run_app(argv, capsys):
    """(exit status, stderr) of ``app.py ARGV`` run in this process (argparse exits by itself)."""
    try:
        status = cli.run_cli(app.main, [str(a) for a in argv])
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def test_command_line_mistakes_are_one_error_line(app_hint_model, tmp_path, capsys):
    cases = [
        (['-m', tmp_path / 'missing.pth.tar', '--port', free_port()], 'missing.pth.tar does not exist'),
        (['-m', app_hint_model, '--prot', '8000'], 'unrecognized arguments: --prot'),
        (['-m', app_hint_model, '--port', 'http'], "'http' is not an integer"),
        (['-m', app_hint_model, '--port', '70000'], 'not a port'),
        (['-m', app_hint_model, '--host', 'no-such-host.invalid', '--port', free_port()], 'not an address'),
    ]
    with socket.socket() as taken:   # a port in use
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cases.append((['-m', app_hint_model, '--port', port], 'is in use'))
        for argv, message in cases:
            status, err = run_app(argv, capsys)
            lines = err.strip().splitlines()
            assert status == 2 and len(lines) == 1, (argv, status, err)
            assert lines[0].startswith('error: ') and message in lines[0], (argv, err)
        # the script itself, as a user runs it
        done = subprocess.run([sys.executable, os.path.join(REPO_DIR, 'app.py'), '-m', app_hint_model, '--port',
                               str(port)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        'error: port %d on 127.0.0.1 is in use: choose another with --port' % port]


def test_defaults_listen_on_loopback_only():
    args = app.parse_args(['-m', 'x.pth.tar'])
    assert (args.host, args.port) == ('127.0.0.1', 7860)
    assert os.environ['GRADIO_ANALYTICS_ENABLED'] == 'False' and os.environ['HF_HUB_OFFLINE'] == '1'


# --- the page's logic (no server) -----------------------------------------------------

def test_clicks_map_to_the_photos_own_pixels():
    assert app.display_size(4000, 3000) == (1024, 768) and app.display_size(320, 240) == (320, 240)
    for index in (0, 1, 511, 767):   # shown pixel -> photo pixel -> shown pixel
        photo_x = app.to_photo_pixel(index, 768, 3000)
        assert 0 <= photo_x < 3000 and round(app.to_display_pixel(photo_x, 3000, 768)) == index
    assert app.to_photo_pixel(767, 768, 3000) <= 2999 and app.to_photo_pixel(0, 768, 3000) == 1
    assert app.to_photo_pixel(5, 320, 320) == 5


def test_hints_add_undo_clear_and_the_downloads(engine, photo, tmp_path):
    state = engine.open_photo(photo)
    assert engine.takes_hints and (state['width'], state['height'], state['points']) == (320, 240, [])
    before = np.asarray(Image.open(engine.render(state)['png']))
    one = engine.add_hint(state, *POINT_A, GREEN, HINT_SIZE)
    two = engine.add_hint(one, *POINT_B, BLUE, HINT_SIZE)
    assert state['points'] == [] and len(one['points']) == 1   # states are never changed in place
    assert two['points'] == [{'x': 70, 'y': 60, 'color': GREEN, 'size': HINT_SIZE},
                             {'x': 250, 'y': 180, 'color': BLUE, 'size': HINT_SIZE}]
    shown = engine.render(two, show_dots=False)
    full = np.asarray(Image.open(shown['png']))
    assert full.shape == (240, 320, 3) and not np.array_equal(full, before)
    assert json.load(open(shown['hints'])) == {'points': two['points']}
    assert len(shown['palette']) == app.PALETTE_SIZE and all(c.startswith('#') for c in shown['palette'])
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        hue, chroma = hue_chroma(ring_mean(full, x, y, 0, 15))
        assert hue_distance(hue, hex_hue(colour)) < 0.05 and chroma > 0.1
    dotted = np.asarray(Image.open(engine.render(two, show_dots=True)['picture']))
    assert not np.array_equal(dotted[POINT_A[1], POINT_A[0]], full[POINT_A[1], POINT_A[0]])  # a dot is drawn
    recoloured = engine.recolor_last(two, '#e0a020')
    assert recoloured['points'][-1]['color'] == '#e0a020' and recoloured['points'][0] == two['points'][0]
    assert engine.undo(two)['points'] == one['points'] and engine.clear(two)['points'] == []


def test_a_loaded_point_on_the_chroma_plane_is_drawn_in_its_colour_and_can_be_recoloured(engine, photo, tmp_path):
    state = engine.open_photo(photo)
    ab = [float(v) for v in hints.rgb_to_plane(np.array(hints.parse_color(BLUE), np.uint8))]
    (tmp_path / 'ab.json').write_text(json.dumps({'points': [{'x': 160, 'y': 120, 'ab': ab, 'size': 9}]}))
    loaded = engine.load_hints(state, str(tmp_path / 'ab.json'))
    dotted = np.asarray(Image.open(engine.render(loaded, show_dots=True)['picture']))
    assert hue_distance(hue_chroma(dotted[120, 160])[0], hex_hue(BLUE)) < 0.03      # the dot's centre
    recoloured = engine.recolor_last(loaded, GREEN)['points'][-1]
    assert recoloured == {'x': 160, 'y': 120, 'color': GREEN, 'size': 9}


def test_the_pages_png_is_what_colorize_py_writes_from_its_hints_file(engine, photo, app_hint_model, tmp_path):
    state = engine.open_photo(photo)
    state = engine.add_hint(engine.add_hint(state, *POINT_A, GREEN), *POINT_B, BLUE, HINT_SIZE)
    shown = engine.render(state)
    assert os.path.basename(shown['png']) == 'cat.png' and os.path.basename(shown['hints']) == 'cat.json'
    assert colorize.main(['-m', app_hint_model, '--device', 'cpu', '--hints', shown['hints'], '-o',
                          str(tmp_path / 'cli'), photo]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(shown['png'])),
                                  np.asarray(Image.open(tmp_path / 'cli' / 'cat.png')))


def test_bad_input_is_a_message_and_loses_nothing(engine, photo, tmp_path):
    state = engine.add_hint(engine.open_photo(photo), *POINT_A, GREEN)
    (tmp_path / 'notes.jpg').write_text('this is no photo')
    (tmp_path / 'empty.png').write_bytes(b'')
    Image.new('RGB', (200, 200)).save(tmp_path / 'huge.png')
    small = app.Engine(engine.colorizer, 'ckpt', str(tmp_path / 'small'), max_pixels=200 * 199)
    for opener, path, message in [(engine, 'notes.jpg', 'cannot open notes.jpg as a photo'),
                                  (engine, 'empty.png', 'cannot open empty.png as a photo'),
                                  (small, 'huge.png', 'huge.png is too large: 200x200 pixels is over the limit')]:
        with pytest.raises(app.PageError, match=message):
            opener.open_photo(str(tmp_path / path))
    with pytest.raises(app.PageError, match='outside the photo'):
        engine.add_hint(state, 320, 10, BLUE)
    (tmp_path / 'outside.json').write_text(json.dumps({'points': [{'x': 5, 'y': 999, 'color': BLUE}]}))
    (tmp_path / 'broken.json').write_text('{"points": [')
    (tmp_path / 'colour.json').write_text(json.dumps({'points': [{'x': 5, 'y': 5, 'color': 'blueish'}]}))
    for name, message in [('outside.json', 'outside the photo'), ('broken.json', 'not a hints file'),
                          ('colour.json', 'is not a colour')]:
        with pytest.raises(app.PageError, match=message):
            engine.load_hints(state, str(tmp_path / name))
    with pytest.raises(app.PageError, match='no hint to undo'):
        engine.undo(engine.clear(state))
    assert state['points'] == [{'x': 70, 'y': 60, 'color': GREEN}]   # nothing lost
    assert engine.render(state)['png']


def test_photos_in_bounded_memory(engine, photo, tmp_path):
    store = app.PhotoStore(str(tmp_path / 'store'), budget=3 * 320 * 240 * 3)
    ids = [store.add(np.zeros((240, 320, 3), np.uint8)) for _ in range(5)]
    assert list(store.photos) == ids[2:] and store.nbytes() <= store.budget
    assert not os.path.exists(store.folder(ids[0])) and os.path.isdir(store.folder(ids[4]))
    with pytest.raises(app.PageError, match='upload it again'):
        store.get(ids[0])
    store.discard(ids[3])
    assert list(store.photos) == [ids[2], ids[4]] and not os.path.exists(store.folder(ids[3]))
    first = engine.open_photo(photo)   # a session's next photo replaces its last
    second = engine.open_photo(photo, previous=first)
    assert list(engine.store.photos) == [second['photo']]


def test_a_checkpoint_without_hint_input_still_colorizes(app_plain_model, photo, tmp_path):
    engine = app.Engine(colorize.load_colorizer(app_plain_model, 'cpu'), app_plain_model, str(tmp_path))
    assert not engine.takes_hints
    state = engine.open_photo(photo)
    probed = engine.add_hint(state, *POINT_A, GREEN)
    assert probed['points'] == [] and probed['probe'] == POINT_A
    shown = engine.render(probed)
    assert np.asarray(Image.open(shown['png'])).shape == (240, 320, 3)
    assert 'no hints' in engine.status(probed, 0.1)
    with pytest.raises(app.PageError, match='hints need a hint model'):
        engine.load_hints(state, photo)
    page = app.build_page(engine)
    assert 'hints need a hint model' in json.dumps(page.config, default=str)


# --- the server -----------------------------------------------------------------------

def test_server_answers_bad_uploads_with_a_message_and_keeps_the_hints(server, photo, tmp_path):
    url, process = server
    page = client(url)
    opened = outputs(page.predict(upload(photo), True, api_name='/open_photo'))
    assert 'cat.png' in opened['status'] and opened['error'] == ''
    hints_file = tmp_path / 'cat.json'
    hints_file.write_text(json.dumps({'points': [{'x': 70, 'y': 60, 'color': GREEN},
                                                 {'x': 250, 'y': 180, 'color': BLUE, 'size': 9}]}))
    assert '2 hints' in outputs(page.predict(upload(hints_file), True, api_name='/open_hints'))['status']
    (tmp_path / 'notes.jpg').write_text('this is no photo')
    (tmp_path / 'empty.png').write_bytes(b'')
    Image.new('RGB', (4100, 4100), (90, 90, 90)).save(tmp_path / 'huge.png')  # 16.8 MP > app.APP_MAX_PIXELS
    (tmp_path / 'outside.json').write_text(json.dumps({'points': [{'x': 320, 'y': 0, 'color': BLUE}]}))
    for endpoint, name, message in [('/open_photo', 'notes.jpg', 'cannot open notes.jpg as a photo'),
                                    ('/open_photo', 'empty.png', 'cannot open empty.png'),
                                    ('/open_photo', 'huge.png', 'huge.png is too large'),
                                    ('/open_hints', 'outside.json', 'outside the photo')]:
        answer = outputs(page.predict(upload(tmp_path / name), True, api_name=endpoint))
        assert message in answer['error'], (name, answer)
    undone = outputs(page.predict(True, api_name='/undo'))   # the two hints were kept: one is left
    assert '1 hint,' in undone['status'] and undone['error'] == ''
    assert process.poll() is None


def test_load_20_concurrent_clients_all_answered_memory_bounded(server, tmp_path):
    """20 clients at once on 127.0.0.1 for a few seconds: every request is answered, RSS stays bounded."""
    url, process = server
    photos = [mid_photo(tmp_path / ('p%d.png' % i), (160 + 8 * i, 120)) for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        pages = list(pool.map(lambda _: client(url), range(20)))   # 20 sessions

    def session(i, seconds):
        page, answered, deadline = pages[i], 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            answer = outputs(page.predict(upload(photos[i]), True, api_name='/open_photo'))
            assert 'p%d.png' % i in answer['status'] and answer['error'] == '', answer
            answered += 1
        return answered

    def round_of_load(seconds):
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            return list(pool.map(session, range(20), [seconds] * 20))

    round_of_load(0.5)   # warm-up: every session's first photo, Gradio's and the allocator's caches
    warm = rss_mb(process.pid)
    counts = [round_of_load(3.0) for _ in range(2)]
    after = rss_mb(process.pid)
    print('load: %d answers from 20 clients in two 3 s rounds; server RSS %.0f MB after the warm-up, %.0f MB '
          'after' % (sum(map(sum, counts)), warm, after))
    assert all(n >= 1 for c in counts for n in c) and process.poll() is None
    assert after - warm < 100 and after < 2000, (warm, after, counts)


# --- the page in a real browser (-m browser) -------------------------------------------

def browser_missing():
    if not (shutil.which('chromium') or os.path.exists(CHROMIUM)):
        return 'no chromium (apt-get install chromium chromium-driver)'
    if not os.path.exists(CHROMEDRIVER):
        return 'no %s (apt-get install chromium-driver)' % CHROMEDRIVER
    try:
        import selenium  # noqa: F401
    except ImportError:
        return 'no selenium (pip install -r requirements-app.txt)'
    return None


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    """Headless Chromium through Debian's chromedriver (no driver download), loopback only."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which('chromium') or CHROMIUM
    for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1400,1000',
                 '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--no-first-run'):
        options.add_argument(flag)
    downloads = str(tmp_path_factory.mktemp('downloads'))
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd('Browser.setDownloadBehavior', {'behavior': 'allow', 'downloadPath': downloads})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what, timeout=60):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def status_text(driver):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, 'status').text


def set_colour(driver, hex_color):
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


def set_hint_size(driver, size):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    field = driver.find_element(By.CSS_SELECTOR, '#hint-size input[type=number]')
    field.send_keys(Keys.CONTROL, 'a')
    field.send_keys(str(size), Keys.ENTER)


def click_photo_pixel(driver, x, y):
    """Click the shown picture at its pixel (x, y), the picture letterboxed in its box as Gradio does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    img = driver.find_element(By.CSS_SELECTOR, '#picture img')
    width, height, natural_w, natural_h = driver.execute_script(
        'const r = arguments[0].getBoundingClientRect(); '
        'return [r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];', img)
    scale = min(width / natural_w, height / natural_h, 1.0)
    left, top = (width - natural_w * scale) / 2, (height - natural_h * scale) / 2
    ActionChains(driver).move_to_element_with_offset(
        img, int(round(left + (x + 0.5) * scale - width / 2)), int(round(top + (y + 0.5) * scale - height / 2))
    ).click().perform()


def shown_picture(driver):
    """The picture the page shows, read back from its <img> (uint8 [H, W, 3])."""
    import io
    from selenium.webdriver.common.by import By
    src = driver.find_element(By.CSS_SELECTOR, '#picture img').get_attribute('src')
    assert src.startswith('http://127.0.0.1:'), src
    with urllib.request.urlopen(src, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert('RGB'))


def downloaded(driver, button_id, name, timeout=30):
    from selenium.webdriver.common.by import By
    path = os.path.join(driver.downloads, name)
    if os.path.exists(path):
        os.remove(path)
    driver.find_element(By.ID, button_id).click()
    wait_for(driver, lambda d: os.path.exists(path) and not os.path.exists(path + '.crdownload'),
             'download of %s' % name, timeout)
    return path


@pytest.fixture(scope='module')
def hinted_page(server, browser, photo):
    """The page with the cat uploaded and two hints clicked (green at A, blue at B): (driver, before, after)."""
    from selenium.webdriver.common.by import By
    url, _ = server
    browser.get(url)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#upload-photo input[type=file], '
                                                 'input[data-testid="Upload a photo-upload-button"]'),
             'the page loads')
    browser.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(photo)
    wait_for(browser, lambda d: 'cat.png' in status_text(d), 'the photo is colorized')
    before = shown_picture(browser)
    set_hint_size(browser, HINT_SIZE)
    for count, (point, colour) in enumerate(((POINT_A, GREEN), (POINT_B, BLUE)), 1):
        set_colour(browser, colour)
        click_photo_pixel(browser, *point)
        wait_for(browser, lambda d: '%d hint%s,' % (count, '' if count == 1 else 's') in status_text(d),
                 'hint %d is placed' % count)
    return browser, before, shown_picture(browser)


@pytest.mark.browser
def test_browser_two_clicks_colour_their_points_and_nothing_far_away(hinted_page):
    driver, before, after = hinted_page
    assert after.shape == before.shape == (240, 320, 3)
    if os.environ.get('UPDATE_FIGURES') == '1':
        driver.save_screenshot(SCREENSHOT)
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        hue, chroma = hue_chroma(ring_mean(after, x, y, 10, 16))   # outside the dot, inside the square
        assert chroma > 0.1 and hue_distance(hue, hex_hue(colour)) < 0.06, (colour, hue, chroma)
    hue, chroma = hue_chroma(ring_mean(after, *FAR, 0, 16))
    assert chroma < 0.05 or min(hue_distance(hue, hex_hue(c)) for c in (GREEN, BLUE)) > 0.15, (hue, chroma)
    # the dots are drawn in their hints' colours
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        assert hue_distance(hue_chroma(after[y, x])[0], hex_hue(colour)) < 0.03


@pytest.mark.browser
def test_browser_downloads_reproduce_with_colorize_py(hinted_page, app_hint_model, photo, tmp_path):
    driver, _, _ = hinted_page
    png = downloaded(driver, 'download-png', 'cat.png')
    hints_file = downloaded(driver, 'download-hints', 'cat.json')
    points = json.load(open(hints_file))['points']
    assert [(p['x'], p['y'], p['color']) for p in points] == [POINT_A + (GREEN,), POINT_B + (BLUE,)]
    assert colorize.main(['-m', app_hint_model, '--device', 'cpu', '--hints', hints_file, '-o', str(tmp_path),
                          photo]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / 'cat.png')))


@pytest.mark.browser
def test_browser_bad_file_is_a_message_and_the_hints_stay(hinted_page, tmp_path):
    from selenium.webdriver.common.by import By
    driver, _, after = hinted_page
    (tmp_path / 'notes.jpg').write_text('this is no photo')
    driver.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(
        str(tmp_path / 'notes.jpg'))
    wait_for(driver, lambda d: 'cannot open notes.jpg' in d.find_element(By.ID, 'error').text, 'the message')
    assert '2 hints,' in status_text(driver)
    np.testing.assert_array_equal(shown_picture(driver), after)
    # and nothing on the page came from anywhere but this server
    outside = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                    ".filter(n => !n.startsWith('http://127.0.0.1:') && !n.startsWith('data:'))")
    assert outside == []


@pytest.mark.browser
def test_browser_palette_pick_recolours_the_last_hint_then_undo_and_clear(hinted_page):
    from selenium.webdriver.common.by import By
    driver, _, after = hinted_page
    swatches = driver.find_elements(By.CSS_SELECTOR, '#palette .swatch')
    assert len(swatches) == app.PALETTE_SIZE
    colour = swatches[-1].get_attribute('data-color')   # the least likely: far from the blue asked for
    swatches[-1].click()
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    wait_for(driver, lambda d: 'rgb(%d, %d, %d)' % rgb in d.find_element(
        By.CSS_SELECTOR, '#hint-color button.dialog-button').get_attribute('style'), 'the picker takes the pick')
    wait_for(driver, lambda d: not np.array_equal(shown_picture(d), after), 'the picture changes')
    picked = shown_picture(driver)
    assert np.abs(picked[POINT_B[1], POINT_B[0]].astype(int) - rgb).max() <= 1   # the last dot: the pick
    yy, xx = np.mgrid[:240, :320]
    around_a = (np.hypot(xx - POINT_A[0], yy - POINT_A[1]) >= 10) & (np.hypot(xx - POINT_A[0], yy - POINT_A[1]) < 16)
    np.testing.assert_array_equal(picked[around_a], after[around_a])   # the first hint's square: as it was
    driver.find_element(By.ID, 'undo').click()
    wait_for(driver, lambda d: '1 hint,' in status_text(d), 'undo')
    driver.find_element(By.ID, 'clear').click()
    wait_for(driver, lambda d: '0 hints,' in status_text(d), 'clear')
