"""A web page to colorize a photo and correct it by clicking colours on it (Gradio).

    python app.py -m logs/RUN/model_best.pth.tar [--port 7860] [--host 127.0.0.1]
                  [--device cpu] [--decode annealed|mean|mode] [-T 0.38] [--max-pixels N]

Open http://127.0.0.1:7860, upload a photo (or pick a bundled one) and it is
colorized at once.  A click on the photo adds a hint there (Zhang et al. 2017)
with the current colour: the colour picker's, or one of the palette of colours
the model finds most likely at the last hint.  Every change re-colorizes.  The
picture downloads as a PNG at the photo's full resolution, the hints as the
JSON file ``colorize.py --hints`` reads, so that

    python colorize.py -m CHECKPOINT --hints NAME.json PHOTO

writes the very same PNG.  With a checkpoint trained without hint input the page
still colorizes (clicks then only show the model's colours at that point).

The page listens on 127.0.0.1 only unless ``--host`` says otherwise (``0.0.0.0``:
every interface); there is no public share link, and nothing is fetched from or
sent to the internet (Gradio's analytics, update check and run history are off;
its fonts and scripts are served locally).  Exit status 2 with one ``error:``
line for a usage error (missing checkpoint, port in use, bad flag).

Every request's work is bounded and checked before it starts (``app_limits``:
pixels, hints per photo, a hint's size, the hints' area, any event data, any
file); the requests of all sessions share ``config.APP_WORKERS`` workers in
turn, so no session's heavy request holds another's click; a mistake is the
page's own one-line message, never a traceback.  The Gradio side (layout,
handlers, the download route) is ``app_page.py``.

The requirements are apart from training's: ``pip install -r requirements-app.txt``.
"""
import os

# Nothing leaves the machine: set before gradio (and huggingface_hub, which it imports) is imported.
OFFLINE_ENVIRONMENT = {
    'GRADIO_ANALYTICS_ENABLED': 'False',   # no usage analytics, no version check (api.gradio.app)
    'GRADIO_RUN_HISTORY': 'False',         # no run history (browser storage, Hugging Face buckets)
    'GRADIO_MCP_SERVER': 'False',
    'GRADIO_SSR_MODE': 'False',            # no node server
    'GRADIO_SHARE': 'False',               # no public share link
    'HF_HUB_OFFLINE': '1',
    'HF_HUB_DISABLE_TELEMETRY': '1',
    'DO_NOT_TRACK': '1',
}
os.environ.update(OFFLINE_ENVIRONMENT)

import base64  # noqa: E402
import collections  # noqa: E402
import concurrent.futures  # noqa: E402
import errno  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from PIL import Image, ImageDraw  # noqa: E402

import app_limits as limits  # noqa: E402
import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import data_loader  # noqa: E402
import hints  # noqa: E402
import utils  # noqa: E402
from app_limits import PageError, to_display_pixel, to_photo_pixel  # noqa: E402,F401 (the page's names)

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 7860
APP_MAX_PIXELS = 16_000_000     # larger photos are refused from their header (a phone photo is 12 MP)
MAX_UPLOAD = '100mb'            # Gradio refuses larger uploads before they reach the disk
DISPLAY_MAX_SIDE = 1024         # the page shows the picture at most this size; downloads are full size
PHOTO_MEMORY = 512 << 20        # bytes of open photos held for all sessions (least recently used go first)
MAX_SESSIONS = 64               # sessions (tabs, API clients) whose state the server keeps (LRU)
MAX_HINTS_FILE_BYTES = limits.MAX_HINTS_FILE_BYTES
PALETTE_SIZE = 8


# --------------------------------------------------------------------------
# the photos of all sessions, in bounded memory
# --------------------------------------------------------------------------

class PhotoStore:
    """Open photos by id (uint8 ``[H, W, 3]``), at most ``budget`` bytes, least recently used dropped first.

    Each photo has a folder under ``root`` for its download, deleted with it.
    A session's state holds only the id, so memory stays bounded however many
    sessions (browser tabs, API clients) come and go.
    """

    def __init__(self, root, budget=PHOTO_MEMORY):
        self.root, self.budget = root, int(budget)
        self.photos = collections.OrderedDict()
        self.lock = threading.Lock()

    def add(self, rgb):
        photo_id = uuid.uuid4().hex
        os.makedirs(self.folder(photo_id))
        with self.lock:
            self.photos[photo_id] = rgb
            while len(self.photos) > 1 and self.nbytes() > self.budget:
                old, _ = self.photos.popitem(last=False)
                shutil.rmtree(self.folder(old), ignore_errors=True)
        return photo_id

    def discard(self, photo_id):
        """Forget a photo no session shows any more (its session opened another, or expired)."""
        with self.lock:
            if self.photos.pop(photo_id, None) is not None:
                shutil.rmtree(self.folder(photo_id), ignore_errors=True)

    def get(self, photo_id):
        with self.lock:
            if photo_id not in self.photos:
                raise PageError('the server no longer holds this photo (too many photos were opened since): '
                                'upload it again (and its hints file)')
            self.photos.move_to_end(photo_id)
            return self.photos[photo_id]

    def nbytes(self):
        return sum(rgb.nbytes for rgb in self.photos.values())

    def folder(self, photo_id):
        return os.path.join(self.root, photo_id)


# --------------------------------------------------------------------------
# the page's logic, without Gradio: states in, states and pictures out
# --------------------------------------------------------------------------

def display_size(width, height, max_side=DISPLAY_MAX_SIDE):
    scale = min(1.0, max_side / max(width, height))
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def draw_dots(picture, points, width, height, last=None):
    """The shown picture (PIL, display size) with a dot of each hint's colour at its place; ``last``: ringed."""
    draw = ImageDraw.Draw(picture)
    radius = max(4, int(round(max(picture.size) / 110)))
    for i, point in enumerate(points):
        x = to_display_pixel(point['x'], width, picture.width)
        y = to_display_pixel(point['y'], height, picture.height)
        r = radius + (2 if i == last else 0)
        draw.ellipse((x - r - 2, y - r - 2, x + r + 2, y + r + 2), fill='black')
        draw.ellipse((x - r - 1, y - r - 1, x + r + 1, y + r + 1), fill='white')
        draw.ellipse((x - r + 1, y - r + 1, x + r - 1, y + r - 1), fill=hints.point_color(point))
    return picture


def shown_picture(result, points):
    """The full-resolution picture uint8 ``[H, W, 3]`` -> what the page shows (PIL, at most
    DISPLAY_MAX_SIDE), with the hint ``points`` drawn as dots, the last one ringed."""
    height, width = result.shape[:2]
    shown = Image.fromarray(result)
    size = display_size(width, height)
    if shown.size != size:
        shown = shown.resize(size, Image.BILINEAR, reducing_gap=2.0)
    return draw_dots(shown, points, width, height, last=len(points) - 1)


def data_url(picture, image_format='PNG', **options):
    """A PIL picture -> ``data:image/...;base64,...``: sent to its session only, no file, no URL to fetch."""
    buffer = io.BytesIO()
    picture.save(buffer, image_format, **options)
    return 'data:image/%s;base64,%s' % (image_format.lower(), base64.b64encode(buffer.getvalue()).decode('ascii'))


def code_span(text):
    """``text`` as one Markdown code span, whatever backticks it holds."""
    runs = [len(run) for run in re.findall('`+', text)]
    fence = '`' * (max(runs, default=0) + 1)
    return '%s %s %s' % (fence, text, fence) if runs else fence + text + fence


class Engine:
    """One checkpoint's page: opens photos, edits hints, renders the picture and its downloads.

    A state is a small dict (photo id, name, size, hints); every method returns
    a new one and leaves its argument as it was, so that a refused action
    (:class:`PageError`) loses nothing.  ``jobs`` runs the requests of all
    sessions (:class:`app_limits.FairQueue`: a session's one at a time, the
    sessions in turn, ``workers`` at once).
    """

    def __init__(self, colorizer, checkpoint, workdir, max_pixels=APP_MAX_PIXELS, method='annealed',
                 temperature=utils.DEFAULT_TEMPERATURE, edge_aware=False, photo_memory=PHOTO_MEMORY,
                 workers=config.APP_WORKERS):
        self.colorizer, self.checkpoint = colorizer, checkpoint
        self.method, self.temperature, self.edge_aware = method, temperature, edge_aware
        limit = colorizer.config.get('max_image_pixels')
        self.max_pixels = min(max_pixels, limit) if limit else max_pixels
        self.store = PhotoStore(os.path.join(workdir, 'photos'), photo_memory)
        # at most `workers` colorizations at once (bounded memory and cores), each session's in turn
        self.jobs = limits.FairQueue(workers)
        self.palettes = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='palette')

    # --- photos and hints --------------------------------------------------------------

    def open_photo(self, path, name=None, previous=None):
        """A photo file -> a new state (no hints), replacing the ``previous`` state's photo.

        PageError for a file that is no image or too large (``previous`` then stays).
        """
        name = name or os.path.basename(path)
        try:
            rgb = data_loader.load_rgb(path, self.max_pixels, limit_name='--max-pixels')
        except data_loader.ImageTooLarge as err:
            raise PageError('%s is too large: %s' % (name, err)) from None
        except data_loader.UnreadableImage as err:
            size = limits.header_size(path)   # Pillow's decompression-bomb refusal: say it as the page does
            if size and size[0] * size[1] > self.max_pixels:
                raise PageError('%s is too large: %dx%d pixels is over the limit of %d (--max-pixels)'
                                % (name, size[0], size[1], self.max_pixels)) from None
            raise PageError('cannot open %s as a photo (%s)' % (name, str(err).replace(path, name)[:200])) from None
        height, width = rgb.shape[:2]
        state = {'photo': self.store.add(rgb), 'name': name, 'stem': safe_stem(name), 'width': width,
                 'height': height, 'points': []}
        if previous and previous.get('photo'):
            self.store.discard(previous['photo'])
        return state

    def add_hint(self, state, x, y, color, size=None):
        """A hint at the photo's pixel (x, y) with ``color`` '#rrggbb' (every checkpoint takes hints: they
        are spread along lightness edges and fused with its prediction, ``propagate.py``)."""
        state = need_photo(state)
        point = {'x': x, 'y': y, 'color': limits.color_text(color)}
        if size is not None:
            point['size'] = limits.whole_number(size, 'the hint size', 1, limits.max_hint_size(state['width'],
                                                                                               state['height']))
        point = self.check_point(point, state)
        if len(state['points']) >= config.APP_MAX_HINTS:
            raise PageError('this photo has %d hints, the most the page takes: undo or clear some first'
                            % len(state['points']))
        points = limits.check_hints(state['points'] + [point], state['width'], state['height'])
        return dict(state, points=points)

    def check_point(self, point, state):
        try:
            return hints.check_point(point, state['width'], state['height'], 'the hint')
        except hints.HintError as err:
            raise PageError(str(err)) from None

    def recolor_last(self, state, color):
        """The last hint takes ``color`` (a palette pick)."""
        state = need_photo(state)
        color = limits.color_text(color, 'the picked colour')
        if not state['points']:
            return state
        last = {k: v for k, v in state['points'][-1].items() if k != 'ab'}   # a loaded point's colour goes
        last = self.check_point(dict(last, color=color), state)
        return dict(state, points=state['points'][:-1] + [last])

    def undo(self, state):
        state = need_photo(state)
        if not state['points']:
            raise PageError('there is no hint to undo')
        return dict(state, points=state['points'][:-1])

    def clear(self, state):
        return dict(need_photo(state), points=[])

    def load_hints(self, state, path, name=None):
        """A hint JSON file (colorize.py's; hint images only there) -> its points replace the state's;
        PageError otherwise (within the page's limits: app_limits)."""
        state = need_photo(state)
        name = name or os.path.basename(path)
        obj = limits.read_hints_json(path, name)
        return dict(state, points=limits.points_from_json(obj, state['width'], state['height'], name))

    # --- the picture --------------------------------------------------------------------

    def colorize(self, rgb, points):
        """The full-resolution picture, exactly as ``colorize.py [--hints FILE]`` computes it."""
        return self.colorizer.colorize(rgb, self.method, self.temperature, hints=points or None,
                                       edge_aware=self.edge_aware)

    def suggestions(self, rgb, state):
        """The palette: the most likely colours at the last hint (given the others)."""
        if not state['points']:
            return []
        last = state['points'][-1]
        (x, y), others = (last['x'], last['y']), state['points'][:-1]
        return list(self.colorizer.suggest_colors(rgb, x, y, hints=others, count=PALETTE_SIZE))

    def render(self, state, show_dots=True):
        """-> dict: picture (shown, PIL, at most DISPLAY_MAX_SIDE, dots drawn), palette, seconds (colorizing).

        The full-resolution PNG is written when it is downloaded (:meth:`write_png`), not at every click.
        """
        state = need_photo(state)
        rgb = self.store.get(state['photo'])
        palette = self.palettes.submit(self.suggestions, rgb, state)   # at the same time (it needs no picture)
        start = time.perf_counter()
        result = self.colorize(rgb, state['points'])
        seconds = time.perf_counter() - start
        picture = shown_picture(result, state['points'] if show_dots else [])
        return {'picture': picture, 'palette': palette.result(), 'seconds': seconds}

    def write_png(self, state, key='picture'):
        """The full-resolution picture of ``state`` as a PNG in its photo's folder (``KEY.png``, written once;
        the photo's other PNGs go) -> its path.  The same pixels as ``colorize.py --hints``."""
        state = need_photo(state)
        rgb = self.store.get(state['photo'])
        folder = self.store.folder(state['photo'])
        path = os.path.join(folder, '%s.png' % key)
        if not os.path.exists(path):
            for old in os.listdir(folder):
                os.remove(os.path.join(folder, old))
            partial = os.path.join(folder, 'partial-%s.png' % key)   # a download never gets half a file
            colorize.save_png(partial, self.colorize(rgb, state['points']), colorize.PNG_COMPRESSION)
            os.replace(partial, path)
        return path

    def hints_json(self, state):
        """The hints file of ``state`` (the JSON ``colorize.py --hints`` reads)."""
        return json.dumps(hints.points_to_json(need_photo(state)['points']), indent=1)

    def command_line(self, state):
        """The shell command that writes the same picture (every name quoted for the shell)."""
        words = ['python', 'colorize.py', '-m', self.checkpoint]
        if self.method != 'annealed':
            words += ['--decode', self.method]
        if self.temperature != utils.DEFAULT_TEMPERATURE:
            words += ['-T', repr(self.temperature)]
        if self.edge_aware:
            words += ['--edge-aware']
        files = [state['stem'] + '.json', state['name']]
        return shlex.join(words + ['--hints'] + ['./' + f if f.startswith('-') else f for f in files])   # no option

    def status(self, state, seconds):
        points = len(state['points'])
        text = '**%s**: %d x %d pixels, %d hint%s, colorized in %.2f s.' % (
            state['name'], state['width'], state['height'], points, '' if points == 1 else 's', seconds)
        return text + ' The same picture from the command line: %s' % code_span(self.command_line(state))


def need_photo(state):
    if not isinstance(state, dict) or not state.get('photo'):
        raise PageError('upload a photo first (or pick a bundled one)')
    return state


def safe_stem(name):
    stem = os.path.splitext(os.path.basename(name))[0]
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in stem).strip('.')[:100] or 'photo'


def build_page(engine, sessions=None):
    """The Gradio Blocks of the page for ``engine`` (app_page.build_page)."""
    import app_page
    return app_page.build_page(engine, sessions)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def port_number(text):
    value = cli.natural_int(text)
    if not 1 <= value <= 65535:
        raise cli.argparse.ArgumentTypeError('%d is not a port (1-65535)' % value)
    return value


def parse_args(argv=None):
    p = cli.ArgumentParser(description='A web page to colorize photos and correct them with colour hints.')
    p.add_argument('-m', '--model', required=True, metavar='CHECKPOINT',
                   help='model_best.pth.tar (or checkpoint.pth.tar) of a training run')
    p.add_argument('--port', type=port_number, default=DEFAULT_PORT, help='(default %(default)s)')
    p.add_argument('--host', default=DEFAULT_HOST,
                   help='address to listen on (default %(default)s: this machine only; 0.0.0.0 exposes the page '
                        'to the network, with no login)')
    p.add_argument('--decode', choices=utils.DECODE_METHODS, default='annealed',
                   help='bin probabilities -> colour (as colorize.py; default %(default)s)')
    p.add_argument('-T', '--temperature', type=colorize.positive_float, default=utils.DEFAULT_TEMPERATURE,
                   help='annealed-mean temperature (default %(default)s)')
    p.add_argument('--edge-aware', action='store_true',
                   help='upsample the colours along the lightness edges (as colorize.py --edge-aware)')
    p.add_argument('--device', type=colorize.device_name, default=colorize.default_device(),
                   help='cpu, cuda, cuda:1 ... (default %(default)s)')
    p.add_argument('--max-pixels', type=cli.positive_int, default=APP_MAX_PIXELS,
                   help="refuse larger photos (default %(default)s; at most the checkpoint's max_image_pixels)")
    p.add_argument('--max-sessions', type=cli.positive_int, default=MAX_SESSIONS,
                   help='browser tabs (or API clients) whose photo and hints the server keeps; the least '
                        'recently used is dropped first (default %(default)s): bounded memory')
    return p.parse_args(argv)


def check_port(host, port):
    """UserError unless (host, port) can be listened on now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise cli.UserError('--host %s: not an address of this machine (%s)' % (host, err.strerror)) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if os.name == 'posix':   # as uvicorn: a port in TIME_WAIT (a recent connection) is free to listen on
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise cli.UserError('port %d on %s is in use: choose another with --port' % (port, host)) from None
            raise cli.UserError('cannot listen on %s port %d (%s)' % (host, port, err.strerror or err)) from None


def main(argv=None):
    args = parse_args(argv)
    check_port(args.host, args.port)
    colorizer = colorize.load_colorizer(args.model, args.device)
    colorize.resolve_decoding(args, colorizer)
    with tempfile.TemporaryDirectory(prefix='colorizer-app-') as workdir:
        # Gradio's uploads and cached outputs too: all deleted when the page stops
        os.environ.setdefault('GRADIO_TEMP_DIR', os.path.join(workdir, 'gradio'))
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise cli.UserError('the page needs gradio: pip install -r requirements-app.txt') from None
        import app_page
        engine = Engine(colorizer, args.model, workdir, args.max_pixels, args.decode, args.temperature,
                        args.edge_aware)
        sessions = app_page.Sessions(args.max_sessions)
        page = app_page.build_page(engine, sessions)
        url = 'http://%s:%d' % ('[%s]' % args.host if ':' in args.host else args.host, args.port)
        try:
            page.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True,
                        max_file_size=MAX_UPLOAD, footer_links=['api', 'settings'], run_history=False,
                        ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
                        css=app_page.PAGE_CSS, show_error=False, prevent_thread_lock=True,
                        state_session_capacity=args.max_sessions,
                        app_kwargs=app_page.server_app_kwargs(engine, sessions))
        except OSError as err:   # the port was taken between the check and the launch
            raise cli.UserError('cannot listen on %s: %s' % (url, err)) from None
        print('colorizer page on %s (%s; hints: %s; Ctrl+C stops it)' % (
            url, 'hint model' if colorizer.takes_hints else 'lightness-only model',
            colorizer.hint_method), flush=True)
        serve_until_stopped(page)
    return 0


def serve_until_stopped(page):
    """Block until Ctrl+C or SIGTERM (a service manager, a test), then close the server."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and page.is_running:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        page.close()
        print('colorizer page stopped', flush=True)


if __name__ == '__main__':
    sys.exit(cli.run_cli(main))
