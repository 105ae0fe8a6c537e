"""app.py's real server, started as ``python app.py`` on 127.0.0.1 and shared by the session
(tests/app_support.py): bad input through the Gradio API, a bounded load test, a fuzz of every
endpoint, two sessions sharing the workers, the downloads bound to their session; all bounded in
count and time.  Without gradio (requirements-app.txt) the module is skipped.
"""
import concurrent.futures
import io
import json
import os
import tempfile
import threading
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_DIR, skimage_photo

pytest.importorskip('gradio', reason='the page needs gradio: pip install -r requirements-app.txt')

from app_support import (  # noqa: E402
    BLUE, GREEN, POINT_A, POINT_B, client, data_url_picture, mid_photo, outputs, png_header, rss_mb,
    upload)


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
    # first, on the cat (320 x 240): the crafted event data, each with the words it is refused in
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
