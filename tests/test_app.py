"""app.py without a server: its command line and the page's logic (app.Engine, its limits, the fair
queue) with one barely trained hint model.  Shared fixtures and helpers: tests/app_support.py; the
real server: test_app_server.py; the page in a browser: test_app_browser.py.  Without gradio
(requirements-app.txt) the module is skipped.
"""
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_DIR, free_port

pytest.importorskip('gradio', reason='the page needs gradio: pip install -r requirements-app.txt')

import app  # noqa: E402
import app_limits  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import hints  # noqa: E402
from app_support import (  # noqa: E402
    BLUE, GREEN, HINT_SIZE, POINT_A, POINT_B, hex_hue, hue_chroma, hue_distance, png_header,
    ring_mean)


@pytest.fixture
def engine(app_hint_model, tmp_path):
    return app.Engine(colorize.load_colorizer(app_hint_model, 'cpu'), app_hint_model, str(tmp_path))


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


def test_a_lightness_only_checkpoint_takes_hints_and_the_page_equals_colorize_py(plain_model, photo, tmp_path):
    """Every checkpoint takes hints (issue 25): the page's PNG of a lightness-only model with two hints is
    what ``colorize.py --hints`` writes from the page's JSON, and differs from the picture without them."""
    engine = app.Engine(colorize.load_colorizer(plain_model, 'cpu'), plain_model, str(tmp_path))
    state = engine.open_photo(photo)
    hinted = engine.add_hint(engine.add_hint(state, *POINT_A, GREEN), *POINT_B, BLUE, HINT_SIZE)
    assert len(hinted['points']) == 2 and len(engine.render(hinted)['palette']) == app.PALETTE_SIZE
    assert '2 hints' in engine.status(hinted, 0.1) and '--hints' in engine.status(hinted, 0.1)
    (tmp_path / 'cat.json').write_text(engine.hints_json(hinted))
    assert colorize.main(['-m', plain_model, '--device', 'cpu', '--hints', str(tmp_path / 'cat.json'), '-o',
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
