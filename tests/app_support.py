"""The web page's tests' shared parts (tests/test_app*.py): one barely trained hint model (config 198,
2 iterations; the lightness-only one is conftest's ``plain_model``), a photo, the real server started as
``python app.py`` on 127.0.0.1, and helpers that read what the page answers.  conftest.py registers
the fixtures for the whole session, so the three modules share one server and one model of each kind;
nothing here imports gradio (the modules skip themselves without it)."""
import base64
import colorsys
import io
import os
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

import trainer
from conftest import REPO_DIR, free_port, skimage_photo, temporary_folder

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
PHOTO_SIZE = (320, 240)               # shown at its own size on the page: a click is one photo pixel
GREEN, BLUE = '#20c040', '#2050e0'    # hues far from the untrained model's faint sepia
POINT_A, POINT_B = (70, 60), (250, 180)
HINT_SIZE = 41                        # the hints' squares: +-20 photo pixels
SERVER_START_S = 180


# --- fixtures (session scope: registered by conftest.py) ------------------------------

@pytest.fixture(scope='session')
def app_hint_model():
    """model_best of ``train_color_fcn32s.py -c 198 --max-iter 2``: a (barely trained) hint model."""
    with temporary_folder() as folder:
        run = os.path.join(folder, 'run')
        trainer.main('fcn32s', ['-c', '198', '-j', '0', '-o', run, '--max-iter', '2'])
        yield os.path.join(run, trainer.MODEL_BEST)


def mid_photo(path, size=PHOTO_SIZE):
    """The cat at ``size``, its lightness squeezed into [0.25, 0.75] so any hue fits at every pixel."""
    rgb = skimage_photo('chelsea', size).astype(np.float32)
    Image.fromarray((rgb * 0.5 + 64).round().astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope='session')
def photo(tmp_path_factory):
    return mid_photo(tmp_path_factory.mktemp('app-photo') / 'cat.png')


def rss_mb(pid):
    with open('/proc/%d/status' % pid) as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:')) / 1024.0


@pytest.fixture(scope='session')
def server(app_hint_model, tmp_path_factory):
    """``python app.py -m HINT_MODEL --port P`` on 127.0.0.1, shared by the session: (url, process)."""
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


def png_header(width, height):
    """The bytes of a PNG that says it is ``width`` x ``height`` (a decompression bomb's header, no pixels)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))
