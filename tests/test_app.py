"""app.py: the web page that colorizes a photo and takes colour hints by clicks.

Three layers, one hint model (config 198, 2 iterations, trained once for the module):
the page's logic without a server (app.Engine, its limits), the real server started as
``python app.py`` (its command line, bad input through the Gradio API, a
bounded load test, a fuzz of every endpoint, two sessions sharing the workers,
the downloads bound to their session: all on 127.0.0.1, bounded in count and
time), and headless Chromium driving the page (``-m browser``, one test timing
click -> new picture; skipped, with the reason, without chromium, chromedriver or
selenium).  Without gradio (requirements-app.txt) the whole module is skipped.
"""
import base64
import colorsys
import concurrent.futures
import io
import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_DIR, free_port, skimage_photo

pytest.importorskip('gradio', reason='the page needs gradio: pip install -r requirements-app.txt')

import app  # noqa: E402
import app_limits  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import hints  # noqa: E402
import trainer  # noqa: E402

sys.path.insert(0, os.path.join(REPO_DIR, 'bench'))
# the benchmark's colour picking and its timing in the page ([in the page, painted] per new picture)
from bench_app import LATENCY_JS, browser_missing, set_colour  # noqa: E402

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
PHOTO_SIZE = (320, 240)               # shown at its own size on the page: a click is one photo pixel
GREEN, BLUE = '#20c040', '#2050e0'    # hues far from the untrained model's faint sepia
POINT_A, POINT_B = (70, 60), (250, 180)
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
    log_path = tmp_path_factory.mktemp('app-server') / 'server.log'
    log = open(log_path, 'w+')
    process = subprocess.Popen([sys.executable, os.path.join(REPO_DIR, 'app.py'), '-m', app_hint_model,
                                '--port', str(port), '--device', 'cpu'],
                               cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT)
    process.log_path = str(log_path)   # what the server wrote: no test may leave a traceback there
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
    names = ('picture', 'palette', 'status', 'error', 'downloads', 'picker')
    return dict(zip(names, result))


def hue_distance(a, b):
    return min(abs(a - b), 1 - abs(a - b))


def hue_chroma(rgb_mean):
    """Mean colour (0..255) -> (hue in turns, chroma = max - min in 0..1)."""
    r, g, b = (float(v) / 255 for v in rgb_mean)
    return colorsys.rgb_to_hsv(r, g, b)[0], max(r, g, b) - min(r, g, b)


def hex_hue(hex_color):
    return hue_chroma([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])[0]


def data_url_picture(src):
    """A ``data:image/png;base64,...`` URL -> uint8 [H, W, 3]."""
    assert src.startswith('data:image/png;base64,'), src[:80]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(',', 1)[1]))).convert('RGB'))


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
    assert (state['width'], state['height'], state['points']) == (320, 240, [])
    before = np.asarray(Image.open(engine.write_png(state)))
    one = engine.add_hint(state, *POINT_A, GREEN, HINT_SIZE)
    two = engine.add_hint(one, *POINT_B, BLUE, HINT_SIZE)
    assert state['points'] == [] and len(one['points']) == 1   # states are never changed in place
    assert two['points'] == [{'x': 70, 'y': 60, 'color': GREEN, 'size': HINT_SIZE},
                             {'x': 250, 'y': 180, 'color': BLUE, 'size': HINT_SIZE}]
    shown = engine.render(two, show_dots=False)
    full = np.asarray(Image.open(engine.write_png(two, 'two')))
    assert full.shape == (240, 320, 3) and not np.array_equal(full, before)
    np.testing.assert_array_equal(np.asarray(shown['picture']), full)   # shown at its own size, no dots
    assert json.loads(engine.hints_json(two)) == {'points': two['points']}
    assert len(shown['palette']) == app.PALETTE_SIZE and all(c.startswith('#') for c in shown['palette'])
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        hue, chroma = hue_chroma(ring_mean(full, x, y, 0, 15))
        assert hue_distance(hue, hex_hue(colour)) < 0.05 and chroma > 0.1
    dotted = np.asarray(engine.render(two, show_dots=True)['picture'])
    assert not np.array_equal(dotted[POINT_A[1], POINT_A[0]], full[POINT_A[1], POINT_A[0]])  # a dot is drawn
    recoloured = engine.recolor_last(two, '#e0a020')
    assert recoloured['points'][-1]['color'] == '#e0a020' and recoloured['points'][0] == two['points'][0]
    assert engine.undo(two)['points'] == one['points'] and engine.clear(two)['points'] == []


def test_a_loaded_point_on_the_chroma_plane_is_drawn_in_its_colour_and_can_be_recoloured(engine, photo, tmp_path):
    state = engine.open_photo(photo)
    ab = [float(v) for v in hints.rgb_to_plane(np.array(hints.parse_color(BLUE), np.uint8))]
    (tmp_path / 'ab.json').write_text(json.dumps({'points': [{'x': 160, 'y': 120, 'ab': ab, 'size': 9}]}))
    loaded = engine.load_hints(state, str(tmp_path / 'ab.json'))
    dotted = np.asarray(engine.render(loaded, show_dots=True)['picture'])
    assert hue_distance(hue_chroma(dotted[120, 160])[0], hex_hue(BLUE)) < 0.03      # the dot's centre
    recoloured = engine.recolor_last(loaded, GREEN)['points'][-1]
    assert recoloured == {'x': 160, 'y': 120, 'color': GREEN, 'size': 9}


def test_the_pages_png_is_what_colorize_py_writes_from_its_hints_file(engine, photo, app_hint_model, tmp_path):
    state = engine.open_photo(photo)
    state = engine.add_hint(engine.add_hint(state, *POINT_A, GREEN), *POINT_B, BLUE, HINT_SIZE)
    assert state['stem'] == 'cat'   # the downloads' names: cat.png, cat.json
    (tmp_path / 'cat.json').write_text(engine.hints_json(state))
    assert colorize.main(['-m', app_hint_model, '--device', 'cpu', '--hints', str(tmp_path / 'cat.json'), '-o',
                          str(tmp_path / 'cli'), photo]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(engine.write_png(state))),
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
    assert os.path.isfile(engine.write_png(state))


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


def test_a_lightness_only_checkpoint_takes_hints_and_the_page_equals_colorize_py(app_plain_model, photo, tmp_path):
    """Every checkpoint takes hints (issue 25): the page's PNG of a lightness-only model with two hints is
    what ``colorize.py --hints`` writes from the page's JSON, and differs from the picture without them."""
    engine = app.Engine(colorize.load_colorizer(app_plain_model, 'cpu'), app_plain_model, str(tmp_path))
    state = engine.open_photo(photo)
    hinted = engine.add_hint(engine.add_hint(state, *POINT_A, GREEN), *POINT_B, BLUE, HINT_SIZE)
    assert len(hinted['points']) == 2 and len(engine.render(hinted)['palette']) == app.PALETTE_SIZE
    assert '2 hints' in engine.status(hinted, 0.1) and '--hints' in engine.status(hinted, 0.1)
    (tmp_path / 'cat.json').write_text(engine.hints_json(hinted))
    assert colorize.main(['-m', app_plain_model, '--device', 'cpu', '--hints', str(tmp_path / 'cat.json'), '-o',
                          str(tmp_path / 'cli'), photo]) == 0
    page = np.asarray(Image.open(engine.write_png(hinted, 'hinted')))
    np.testing.assert_array_equal(page, np.asarray(Image.open(tmp_path / 'cli' / 'cat.png')))
    assert not np.array_equal(page, np.asarray(Image.open(engine.write_png(state, 'no-hints'))))
    assert engine.load_hints(state, str(tmp_path / 'cat.json'))['points'] == hinted['points']


# --- limits: bounded work, hostile input (issue 26) -------------------------------------

def test_hints_are_capped_per_photo_in_size_and_in_area(engine, photo, tmp_path):
    state = engine.open_photo(photo)   # 320 x 240
    most = [{'x': i % 320, 'y': i // 320, 'color': GREEN, 'size': 1} for i in range(config.APP_MAX_HINTS)]
    (tmp_path / 'most.json').write_text(json.dumps({'points': most}))
    full = engine.load_hints(state, str(tmp_path / 'most.json'))
    assert len(full['points']) == config.APP_MAX_HINTS
    with pytest.raises(app.PageError, match='has 500 hints, the most the page takes'):
        engine.add_hint(full, 5, 5, BLUE)
    # the issue's file: 2,500 points of size 4000 (124 kB, under the 1 MiB limit), 81 s of work before
    issue = [{'x': i % 320, 'y': i % 240, 'color': '#3b7dd8', 'size': 4000} for i in range(2500)]
    (tmp_path / 'issue.json').write_text(json.dumps({'points': issue}))
    start = time.monotonic()
    with pytest.raises(app.PageError, match='issue.json has 2500 hints: the page takes at most 500'):
        engine.load_hints(state, str(tmp_path / 'issue.json'))
    assert time.monotonic() - start < 2
    # a hint's square: at most the photo's longer side, clicked or from a file (10^12 painted it all)
    with pytest.raises(app.PageError, match='the hint size is 1000000000000: it must be from 1 to 320'):
        engine.add_hint(state, 5, 5, BLUE, 10 ** 12)
    assert engine.add_hint(state, 5, 5, BLUE, 320)['points'][0]['size'] == 320
    (tmp_path / 'huge.json').write_text(json.dumps({'points': [{'x': 5, 'y': 5, 'color': BLUE, 'size': 10 ** 12}]}))
    with pytest.raises(app.PageError, match='hint 1 size is 1000000000000: at most 320 pixels'):
        engine.load_hints(state, str(tmp_path / 'huge.json'))
    # their squares together: at most APP_MAX_HINT_AREA times the photo (each of these covers 99.7 % of it)
    covering = {'x': 160, 'y': 120, 'color': BLUE, 'size': 320}
    (tmp_path / 'cover.json').write_text(json.dumps({'points': [covering] * config.APP_MAX_HINT_AREA}))
    covered = engine.load_hints(state, str(tmp_path / 'cover.json'))
    with pytest.raises(app.PageError, match=r"the hints' squares would cover 9\.0 times the photo in all: at most 8"):
        engine.add_hint(covered, 160, 120, BLUE, 320)
    (tmp_path / 'cover.json').write_text(json.dumps({'points': [covering] * (config.APP_MAX_HINT_AREA + 1)}))
    with pytest.raises(app.PageError, match='cover.json: the hints\' squares would cover 9.0 times'):
        engine.load_hints(state, str(tmp_path / 'cover.json'))
    assert state['points'] == []


def test_hostile_hints_files_are_a_message(engine, photo, tmp_path):
    state = engine.add_hint(engine.open_photo(photo), *POINT_A, GREEN)
    files = {
        'nested.json': b'[' * (app.MAX_HINTS_FILE_BYTES - 1),   # 1 MiB of [[[...: RecursionError before
        'deep.json': b'{"points": ' + b'[' * 5000 + b']' * 5000 + b'}',
        'bigint.json': json.dumps({'points': [{'x': 10 ** 400, 'y': 1, 'color': BLUE}]}).encode(),
        'nan.json': b'{"points": [{"x": NaN, "y": 1, "color": "#2050e0"}]}',
        'bytes.json': np.random.RandomState(0).bytes(4096),
        'toolarge.json': b' ' * (app.MAX_HINTS_FILE_BYTES + 1),
        'keys.json': json.dumps({'points': [{'x': 1, 'y': 1, 'color': BLUE, '\u0000': 1}]}).encode(),
    }
    messages = {'nested.json': 'not a hints file (JSON nested too deeply)', 'deep.json': 'nested too deeply',
                'bigint.json': 'bigint.json: ', 'nan.json': 'hint 1 x is nan', 'bytes.json': 'not a hints file',
                'toolarge.json': 'over 1048576 bytes', 'keys.json': 'unknown keys'}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(app.PageError) as refused:
            engine.load_hints(state, str(tmp_path / name))
        assert messages[name] in str(refused.value) and len(str(refused.value)) < 400, (name, refused.value)
    assert state['points'] == [{'x': 70, 'y': 60, 'color': GREEN}]


def png_header(width, height):
    """The bytes of a PNG that says it is ``width`` x ``height`` (a decompression bomb's header, no pixels)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def test_a_decompression_bomb_is_refused_in_the_pages_own_words(engine, tmp_path):
    (tmp_path / 'bomb.png').write_bytes(png_header(30000, 30000))   # 900 MP: Pillow refuses it in its words
    with pytest.raises(app.PageError) as refused:
        engine.open_photo(str(tmp_path / 'bomb.png'))
    assert str(refused.value) == ('bomb.png is too large: 30000x30000 pixels is over the limit of 16000000 '
                                  '(--max-pixels)')


def test_the_command_line_shown_is_quoted_for_the_shell(engine, photo, tmp_path):
    named = tmp_path / "my photo's cat.png"
    shutil.copy(photo, named)
    state = engine.add_hint(engine.open_photo(str(named)), *POINT_A, GREEN)
    command = engine.status(state, 0.1).split('from the command line: ', 1)[1].strip('` ')
    assert shlex.split(command) == ['python', 'colorize.py', '-m', engine.checkpoint, '--hints',
                                    'my_photo_s_cat.json', "my photo's cat.png"]
    assert app.code_span('a `b` c') == '`` a `b` c ``' and app.code_span('a b') == '`a b`'


def test_the_fair_queue_takes_sessions_in_turn_and_each_sessions_requests_in_order():
    queue = app_limits.FairQueue(workers=1, per_session=3)
    gate, order = threading.Event(), []

    def request(tag, wait=False):
        def run():
            if wait:
                gate.wait(30)
            order.append(tag)
            return tag
        return run
    first = queue.submit('a', request('a1', wait=True))   # holds the only worker
    later = [queue.submit(s, request(t)) for s, t in (('a', 'a2'), ('a', 'a3'), ('b', 'b1'), ('b', 'b2'))]
    with pytest.raises(app.PageError, match='3 requests running or waiting already'):
        queue.submit('a', request('a4'))
    gate.set()
    assert [f.result(30) for f in [first] + later] == ['a1', 'a2', 'a3', 'b1', 'b2']
    assert order == ['a1', 'b1', 'a2', 'b2', 'a3']   # b, which waited, goes before a's second request
    assert queue.run('c', lambda: 7) == 7 and not queue.turns and not queue.waiting


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


class RawSession:
    """One session of the page spoken to as its browser does, through Gradio's queue API on 127.0.0.1,
    with any data and event data (gradio_client sends neither freely)."""

    def __init__(self, url):
        import httpx
        self.url, self.session = url, uuid.uuid4().hex[:12]
        self.http = httpx.Client(timeout=120)
        self.endpoints = {d['api_name']: d for d in self.http.get(url + 'config').json()['dependencies']
                          if d.get('api_name')}

    def upload(self, name, content):
        """Bytes uploaded as the page's upload buttons do -> the file data the page's handler is sent."""
        paths = self.http.post(self.url + 'gradio_api/upload', files={'files': (name, content)}).json()
        return {'path': paths[0], 'orig_name': name, 'meta': {'_type': 'gradio.FileData'}}

    def call(self, api_name, data, event_data=None, started=None):
        """-> the answer (Gradio's process_completed message, or {'http': status, 'text': ...});
        ``started``: an Event set when the server starts on it."""
        endpoint = self.endpoints[api_name]
        body = {'data': data, 'event_data': event_data, 'fn_index': endpoint['id'],
                'trigger_id': endpoint['targets'][0][0], 'session_hash': self.session}
        joined = self.http.post(self.url + 'gradio_api/queue/join', content=json.dumps(body),
                                headers={'Content-Type': 'application/json'})
        if joined.status_code != 200:
            return {'http': joined.status_code, 'text': joined.text}
        event_id = joined.json()['event_id']
        with self.http.stream('GET', self.url + 'gradio_api/queue/data', params={'session_hash': self.session}) as sse:
            for line in sse.iter_lines():
                message = json.loads(line[5:]) if line.startswith('data:') else {}
                if message.get('event_id') != event_id:
                    continue
                if message.get('msg') == 'process_starts' and started is not None:
                    started.set()
                if message.get('msg') == 'process_completed':
                    return message
        raise AssertionError('no answer to %s %r' % (api_name, data))


def page_message(answer):
    """(error line, status) of a raw answer: the page's error output, or the text of a refusal."""
    if 'http' in answer:
        return answer['text'], ''
    output = answer.get('output') or {}
    if not answer.get('success'):
        return output.get('error') or '', ''
    data = output.get('data') or []
    text = [v if isinstance(v, str) else '' for v in data[3:5]] + ['', '']
    return text[1], text[0]


def server_log_since(process, offset):
    with open(process.log_path, errors='replace') as f:
        f.seek(offset)
        return f.read()


def nested_list(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = [None, True, -1, 0.5, 1e308, float('nan'), 10 ** 30, '', 'x', 'x' * 20000, [], [1, 2], {},
           {'path': 1}, nested_list(300)]


def test_fuzz_every_endpoint_answers_with_a_message_and_no_traceback(server, photo, tmp_path):
    """Every endpoint through Gradio's HTTP API on 127.0.0.1, each input and the event data replaced by
    hostile values (the issue's cases among them), hostile files uploaded: every call is answered with a
    message, the server log gets no traceback.  About 330 requests; stops by itself after 150 s."""
    url, process = server
    offset = os.path.getsize(process.log_path)
    page = RawSession(url)
    cat = page.upload('cat.png', open(photo, 'rb').read())
    hints_file = page.upload('hints.json', json.dumps({'points': [{'x': 5, 'y': 5, 'color': BLUE}]}).encode())
    assert 'cat.png' in page_message(page.call('open_photo', [None, cat, True]))[1]
    rng = np.random.RandomState(1)
    bad_photos = [page.upload(name, content) for name, content in [
        ('notes.jpg', b'this is no photo'), ('empty.png', b''), ('noise.png', rng.bytes(5000)),
        ('bomb.png', png_header(30000, 30000)), ('nested.png', b'[' * 100000)]]
    bad_hints = [page.upload(name, content) for name, content in [
        ('nested.json', b'[' * ((1 << 20) - 1)), ('noise.json', rng.bytes(5000)),
        ('issue.json', json.dumps({'points': [{'x': 1, 'y': 1, 'color': '#3b7dd8', 'size': 4000}] * 2500}).encode()),
        ('size.json', json.dumps({'points': [{'x': 1, 'y': 1, 'color': BLUE, 'size': 10 ** 12}]}).encode()),
        ('bigint.json', json.dumps({'points': [{'x': 10 ** 400, 'y': 1, 'color': BLUE}]}).encode())]]
    not_uploaded = [{'path': '/etc/passwd', 'meta': {'_type': 'gradio.FileData'}}, {'nopath': 1}, 'x', 7]
    # (endpoint, valid inputs after the state, valid event data)
    endpoints = [('open_photo', [cat, True], None), ('open_bundled', [True], {'index': 0}),
                 ('click', [GREEN, 9, True], {'index': [10, 10]}), ('pick_colour', [True], {'color': BLUE}),
                 ('undo', [True], None), ('clear', [True], None), ('show_dots', [True], None),
                 ('open_hints', [hints_file, True], None)]
    # first, on the cat (320 x 240): the issue's crafted event data, each with the words it is refused in
    cases = [('click', [None, GREEN, 9, True], {'index': index}, 'the click') for index in
             (['a', 'b'], None, [float('nan'), 3], [99999, -5], [320, 0], [0, 240], [-1, 5])]
    if 'open_bundled' in page.endpoints:
        cases += [('open_bundled', [None, True], {'index': index}, "the bundled photo's number")
                  for index in (10 ** 6, 'x', -1, True, 1.5)]
    for name, inputs, event in endpoints:
        if name not in page.endpoints:   # no bundled photos on this machine
            continue
        for i in range(len(inputs)):
            values = HOSTILE + (bad_photos + not_uploaded if name == 'open_photo' and i == 0 else [])
            values += bad_hints + not_uploaded if name == 'open_hints' and i == 0 else []
            cases += [(name, [None] + inputs[:i] + [v] + inputs[i + 1:], event, None) for v in values]
        cases += [(name, [], event, None), (name, [None] + inputs + [None], event, None)]
        if event is not None:
            key = next(iter(event))
            cases += [(name, [None] + inputs, v, None) for v in HOSTILE]
            cases += [(name, [None] + inputs, {key: v}, None) for v in HOSTILE]
    deadline, answered = time.monotonic() + 150, 0
    for name, data, event, words in cases:
        if time.monotonic() > deadline:
            break
        error, status = page_message(page.call(name, data, event))
        assert error or status, (name, data, event)   # a message: the page's error line, or its status
        assert 'please report it' not in error and 'Traceback' not in error, (name, data, event, error)
        if words:
            assert error.startswith('**' + words) or error.startswith(words), (name, event, error)
        answered += 1
    # any depth, any bytes: a request body no JSON parser reads, a fn_index that is none
    assert page.http.post(url + 'gradio_api/queue/join', content=b'[' * 100000,
                          headers={'Content-Type': 'application/json'}).status_code in (400, 422)
    assert page.http.post(url + 'gradio_api/queue/join', content=json.dumps(
        {'data': [], 'fn_index': 999, 'session_hash': page.session})).status_code >= 400
    log = server_log_since(process, offset)
    print('fuzz: %d of %d calls answered with a message in %.0f s; the server log: %d lines, no traceback'
          % (answered, len(cases), time.monotonic() - deadline + 150, len(log.splitlines())))
    assert 'Traceback' not in log, log[-3000:]
    assert answered == len(cases) and process.poll() is None


def test_two_sessions_one_sessions_heaviest_request_does_not_hold_anothers_click(server, photo, tmp_path):
    """Session A loads the heaviest hints file the page accepts on a 16 MP photo (500 hints whose squares
    cover 7.8 photos); session B's click meanwhile is answered before A's, within a couple of seconds of
    what the same click takes B alone (it shares the cores, it does not wait: on a loaded machine both grow)."""
    url, process = server
    offset = os.path.getsize(process.log_path)
    big = tmp_path / 'big.jpg'
    Image.fromarray(skimage_photo('chelsea', (4000, 4000))).save(big, quality=85)   # 16 MP: the page's limit
    rng = np.random.RandomState(2)
    heaviest = [{'x': int(x), 'y': int(y), 'color': '#%06x' % c, 'size': 500} for x, y, c in
                zip(rng.randint(4000, size=500), rng.randint(4000, size=500), rng.randint(1 << 24, size=500))]
    a, b = RawSession(url), RawSession(url)
    assert 'cat.png' in page_message(b.call('open_photo', [None, b.upload('cat.png', open(photo, 'rb').read()),
                                                           True]))[1]
    assert '4000 x 4000' in page_message(a.call('open_photo', [None, a.upload('big.jpg', big.read_bytes()), True]))[1]
    heavy = a.upload('heaviest.json', json.dumps({'points': heaviest}).encode())
    click = {'value': None, 'selected': True}   # as gr.Image's select sent it, so that the old page reads it too
    alone = time.monotonic()
    assert '1 hint,' in page_message(b.call('click', [None, BLUE, 9, True], dict(click, index=list(POINT_B))))[1]
    alone = time.monotonic() - alone
    started, ends = threading.Event(), {}

    def load_heaviest():
        answer = a.call('open_hints', [None, heavy, True], started=started)
        ends['a'] = time.monotonic()
        return page_message(answer)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        a_start = time.monotonic()
        a_answer = pool.submit(load_heaviest)
        assert started.wait(60)
        time.sleep(0.3)
        b_start = time.monotonic()
        error, status = page_message(b.call('click', [None, GREEN, 9, True], dict(click, index=list(POINT_A))))
        b_end = time.monotonic()
        a_error, a_status = a_answer.result(300)
    during = b_end - b_start
    print('two sessions: A\'s heaviest request (500 hints on 16 MP) %.1f s; B\'s click during it %.2f s, '
          'alone %.2f s' % (ends['a'] - a_start, during, alone))
    assert '500 hints' in a_status and not a_error, (a_error, a_status)
    assert '2 hints,' in status and not error, (error, status)
    assert b_end < ends['a'] and during < 2 + 2 * alone, (during, alone, ends['a'] - a_start)
    assert 'Traceback' not in server_log_since(process, offset)


def test_pictures_and_downloads_only_to_their_session_and_no_server_path(server, photo, app_hint_model):
    """The picture comes inside the answer (a data: URL), the downloads as links with a token: no answer
    holds a server path or a Gradio file URL; a guessed link is 404, and a link dies with its picture."""
    url, process = server
    a, b = RawSession(url), RawSession(url)
    answer = a.call('open_photo', [None, a.upload('cat.png', open(photo, 'rb').read()), True])
    error, status = page_message(answer)
    assert not error and 'cat.png' in status, (error, status)
    text = json.dumps(answer['output'])
    for path in (tempfile.gettempdir(), REPO_DIR, os.path.dirname(app_hint_model), 'gradio_api/file='):
        assert path not in text.replace(app_hint_model, ''), path   # the checkpoint: in the command line shown
    data = answer['output']['data']
    assert data_url_picture(data[1]['src']).shape == (240, 320, 3)   # the picture itself, in the answer
    links = data[5]
    png = b.http.get(url + links['png'])   # the link works (from any client that has it) ...
    assert png.status_code == 200 and 'attachment' in png.headers['content-disposition']
    assert np.asarray(Image.open(io.BytesIO(png.content))).shape == (240, 320, 3)
    assert b.http.get(url + links['hints']).json() == {'points': []}
    token = links['png'].split('/')[-2]
    assert len(token) >= 24 and token not in json.dumps(
        b.call('open_photo', [None, b.upload('cat.png', open(photo, 'rb').read()), True])['output'])
    for guess in (links['png'].replace(token, 'x' * len(token)), links['png'].replace('cat.png', 'dog.png'),
                  'colorizer/download/%s/../../config' % token):
        assert b.http.get(url + guess).status_code == 404, guess
    clicked = a.call('click', [None, GREEN, 9, True], {'index': list(POINT_A)})
    assert '1 hint,' in page_message(clicked)[1]
    assert b.http.get(url + links['png']).status_code == 404   # ... until its session moves on
    assert b.http.get(url + clicked['output']['data'][5]['png']).status_code == 200


# --- the page in a real browser (-m browser) -------------------------------------------

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


def set_hint_size(driver, size):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    field = driver.find_element(By.CSS_SELECTOR, '#hint-size input[type=number]')
    field.send_keys(Keys.CONTROL, 'a')
    field.send_keys(str(size), Keys.ENTER)


def click_photo_pixel(driver, x, y):
    """Click the shown picture at the centre of its pixel (x, y).

    WebDriver's offsets count from the element's centre in whole CSS pixels (floored), and the
    picture may sit at a fractional position: the offset is taken from that point.
    """
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    img = driver.find_element(By.CSS_SELECTOR, '#picture img')
    left, top, width, height, natural_w, natural_h = driver.execute_script(
        'const r = arguments[0].getBoundingClientRect(); '
        'return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth, arguments[0].naturalHeight];', img)
    at_x, at_y = left + (x + 0.5) * width / natural_w, top + (y + 0.5) * height / natural_h
    centre_x, centre_y = int(left + width / 2), int(top + height / 2)
    ActionChains(driver).move_to_element_with_offset(
        img, int(round(at_x - centre_x)), int(round(at_y - centre_y))).click().perform()


def shown_picture(driver):
    """The picture the page shows, read back from its <img> (uint8 [H, W, 3]): a data: URL, no file."""
    from selenium.webdriver.common.by import By
    return data_url_picture(driver.find_element(By.CSS_SELECTOR, '#picture img').get_attribute('src'))


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
def test_browser_two_clicks_colour_their_points(hinted_page):
    driver, before, after = hinted_page
    assert after.shape == before.shape == (240, 320, 3)
    for (x, y), colour in ((POINT_A, GREEN), (POINT_B, BLUE)):
        hue, chroma = hue_chroma(ring_mean(after, x, y, 10, 16))   # outside the dot, inside the square
        assert chroma > 0.1 and hue_distance(hue, hex_hue(colour)) < 0.06, (colour, hue, chroma)
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


@pytest.mark.browser
def test_browser_click_to_new_picture_latency(hinted_page):
    """Five clicks, each timed in Chromium from the mouse button to the new picture painted."""
    import re
    driver = hinted_page[0]
    driver.execute_script(LATENCY_JS)
    count = int(re.search(r'(\d+) hints?,', status_text(driver)).group(1))
    for i, (x, y) in enumerate(((40, 40), (280, 40), (40, 200), (280, 200), (160, 120))):
        click_photo_pixel(driver, x, y)
        wait_for(driver, lambda d: len(d.execute_script('return window.pictureTimes')) > i, 'picture %d' % (i + 1))
        placed = '%d hint%s,' % (count + i + 1, '' if count + i + 1 == 1 else 's')
        wait_for(driver, lambda d: placed in status_text(d), 'hint %d placed' % (i + 1))
    seconds = [painted for _, painted in driver.execute_script('return window.pictureTimes')]
    print('browser: click -> new picture painted in %s s (median %.2f s; 320 x 240, tiny model)'
          % (', '.join('%.2f' % s for s in seconds), float(np.median(seconds))))
    assert len(seconds) == 5 and all(0 < s < 30 for s in seconds) and float(np.median(seconds)) < 10


def two_flat_regions(path, size=PHOTO_SIZE):
    """A photo of a darker left half and a lighter right half, each flat, in a faint warm tone."""
    width, height = size
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, :width // 2] = (110, 100, 95)
    rgb[:, width // 2:] = (190, 180, 175)
    Image.fromarray(rgb).save(path)
    return str(path)


@pytest.mark.browser
def test_browser_a_click_recolours_its_flat_region_far_from_the_click(hinted_page, tmp_path):
    """Issue 25: one blue click in the left half turns pixels of the left half blue 100 px away (far
    outside the hint's square); the blue does not cross the sharp edge into the right half."""
    from selenium.webdriver.common.by import By
    driver = hinted_page[0]
    driver.find_element(By.CSS_SELECTOR, 'input[data-testid="Upload a photo-upload-button"]').send_keys(
        two_flat_regions(tmp_path / 'halves.png'))
    wait_for(driver, lambda d: 'halves.png' in status_text(d) and '0 hints' in status_text(d), 'the photo is open')
    before = shown_picture(driver)
    set_hint_size(driver, 9)
    set_colour(driver, BLUE)
    click_photo_pixel(driver, 40, 120)
    wait_for(driver, lambda d: '1 hint,' in status_text(d), 'the hint is placed')
    after = shown_picture(driver)
    far = ring_mean(after, 140, 120, 0, 10)            # 100 px right of the click, still in the left half
    hue, chroma = hue_chroma(far)
    assert chroma > 0.08 and hue_distance(hue, hex_hue(BLUE)) < 0.08, (hue, chroma)
    assert hue_distance(hue_chroma(ring_mean(before, 140, 120, 0, 10))[0], hex_hue(BLUE)) > 0.15
    hue, chroma = hue_chroma(ring_mean(after, 260, 120, 0, 30))   # the right half
    assert chroma < 0.03 or hue_distance(hue, hex_hue(BLUE)) > 0.15, (hue, chroma)
