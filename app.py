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

import collections  # noqa: E402
import concurrent.futures  # noqa: E402
import errno  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from PIL import Image, ImageDraw  # noqa: E402

import cli  # noqa: E402
import colorize  # noqa: E402
import config  # noqa: E402
import data_loader  # noqa: E402
import hints  # noqa: E402
import utils  # noqa: E402

DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 7860
APP_MAX_PIXELS = 16_000_000     # larger photos are refused from their header (a phone photo is 12 MP)
MAX_UPLOAD = '100mb'            # Gradio refuses larger uploads before they reach the disk
DISPLAY_MAX_SIDE = 1024         # the page shows the picture at most this size; downloads are full size
PHOTO_MEMORY = 512 << 20        # bytes of open photos held for all sessions (least recently used go first)
MAX_SESSIONS = 64               # sessions (tabs, API clients) whose state the server keeps (LRU)
MAX_HINTS_FILE_BYTES = 1 << 20  # a hint file is a few kB
PALETTE_SIZE = 8
HINT_SIZE_MAX = 64              # the hint size slider's range: at least this, up to a quarter of the short side
DEFAULT_COLOR = '#d62828'
NO_HINT_MODEL = ('This checkpoint takes no hints: the page colorizes, and a click shows the colours the '
                 'model finds likely there, but hints need a hint model (one trained with `hints: true`).')


class PageError(Exception):
    """A user's mistake on the page: shown as a message, the page keeps its photo and hints."""


# --------------------------------------------------------------------------
# the photos of all sessions, in bounded memory
# --------------------------------------------------------------------------

class PhotoStore:
    """Open photos by id (uint8 ``[H, W, 3]``), at most ``budget`` bytes, least recently used dropped first.

    Each photo has a folder under ``root`` for its downloads, deleted with it.
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


def to_photo_pixel(index, display, photo):
    """A pixel index of the shown picture (``display`` pixels wide) -> the photo's pixel (``photo`` wide)."""
    return min(photo - 1, max(0, int((index + 0.5) * photo / display)))


def to_display_pixel(index, photo, display):
    return (index + 0.5) * display / photo - 0.5


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


class Engine:
    """One checkpoint's page: opens photos, edits hints, renders the picture and its downloads.

    A state is a small dict (photo id, name, size, hints); every method returns
    a new one and leaves its argument as it was, so that a refused action
    (:class:`PageError`) loses nothing.
    """

    def __init__(self, colorizer, checkpoint, workdir, max_pixels=APP_MAX_PIXELS, method='annealed',
                 temperature=utils.DEFAULT_TEMPERATURE, edge_aware=False, photo_memory=PHOTO_MEMORY):
        self.colorizer, self.checkpoint = colorizer, checkpoint
        self.method, self.temperature, self.edge_aware = method, temperature, edge_aware
        limit = colorizer.config.get('max_image_pixels')
        self.max_pixels = min(max_pixels, limit) if limit else max_pixels
        self.store = PhotoStore(os.path.join(workdir, 'photos'), photo_memory)
        self.takes_hints = colorizer.takes_hints
        # all network work on one thread: one colorization at a time (bounded memory, no contention for
        # the cores), and torch's thread pool made once, not once per server thread that calls it
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='colorize')

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
            raise PageError('cannot open %s as a photo (%s)' % (name, str(err).replace(path, name))) from None
        height, width = rgb.shape[:2]
        state = {'photo': self.store.add(rgb), 'name': name, 'stem': safe_stem(name), 'width': width,
                 'height': height, 'points': [], 'probe': None}
        if previous:
            self.store.discard(previous.get('photo'))
        return state

    def add_hint(self, state, x, y, color, size=None):
        """A hint at the photo's pixel (x, y) with ``color`` '#rrggbb'; a model without hint input only
        probes the point (its palette) and says why no hint was placed."""
        state = need_photo(state)
        point = {'x': x, 'y': y, 'color': color}
        if size:
            point['size'] = size
        if not self.takes_hints:
            self.check_point(point, state)
            return dict(state, probe=(point['x'], point['y']))
        point = self.check_point(point, state)
        return dict(state, points=state['points'] + [point], probe=None)

    def check_point(self, point, state):
        try:
            return hints.check_point(point, state['width'], state['height'], 'the hint')
        except hints.HintError as err:
            raise PageError(str(err)) from None

    def recolor_last(self, state, color):
        """The last hint takes ``color`` (a palette pick)."""
        state = need_photo(state)
        if not state['points']:
            return state
        last = {k: v for k, v in state['points'][-1].items() if k != 'ab'}   # a loaded point's colour goes
        last = self.check_point(dict(last, color=color), state)
        return dict(state, points=state['points'][:-1] + [last])

    def undo(self, state):
        state = need_photo(state)
        if not state['points']:
            raise PageError('there is no hint to undo')
        return dict(state, points=state['points'][:-1], probe=None)

    def clear(self, state):
        return dict(need_photo(state), points=[], probe=None)

    def load_hints(self, state, path):
        """A hint JSON file (colorize.py's; hint images only there) -> its points replace the state's;
        PageError otherwise."""
        state = need_photo(state)
        if not self.takes_hints:
            raise PageError(NO_HINT_MODEL)
        name = os.path.basename(path)
        if os.path.getsize(path) > MAX_HINTS_FILE_BYTES:
            raise PageError('%s is not a hints file: over %d bytes' % (name, MAX_HINTS_FILE_BYTES))
        try:
            with open(path, encoding='utf-8') as f:
                obj = json.load(f)
            points = hints.points_from_json(obj, state['width'], state['height'])
        except (ValueError, UnicodeDecodeError) as err:   # HintError is a ValueError too
            if isinstance(err, hints.HintError):
                raise PageError('%s: %s' % (name, err)) from None
            raise PageError('%s is not a hints file (not JSON: %s)' % (name, err)) from None
        return dict(state, points=points, probe=None)

    # --- the picture --------------------------------------------------------------------

    def colorize(self, rgb, points):
        """The full-resolution picture, exactly as ``colorize.py [--hints FILE]`` computes it."""
        return self.colorizer.colorize(rgb, self.method, self.temperature, hints=points or None,
                                       edge_aware=self.edge_aware)

    def suggestions(self, rgb, state):
        """The palette: the most likely colours at the last hint (given the others) or at the probed point."""
        if state.get('probe') is not None:
            (x, y), others = state['probe'], None
        elif state['points']:
            last = state['points'][-1]
            (x, y), others = (last['x'], last['y']), state['points'][:-1]
        else:
            return []
        return list(self.colorizer.suggest_colors(rgb, x, y, hints=others, count=PALETTE_SIZE))

    def render(self, state, show_dots=True):
        """-> dict: picture (shown, PNG path), png (full resolution), hints (JSON), palette, seconds."""
        state = need_photo(state)
        rgb = self.store.get(state['photo'])
        folder = self.store.folder(state['photo'])
        start = time.perf_counter()
        result = self.worker.submit(self.colorize, rgb, state['points']).result()
        seconds = time.perf_counter() - start
        palette = self.worker.submit(self.suggestions, rgb, state)   # while the pictures are written
        png = os.path.join(folder, state['stem'] + '.png')
        colorize.save_png(png, result, colorize.PNG_COMPRESSION)
        hints_path = os.path.join(folder, state['stem'] + '.json')
        with open(hints_path, 'w') as f:
            json.dump(hints.points_to_json(state['points']), f, indent=1)
        picture = os.path.join(folder, 'shown.png')
        dots = state['points'] if show_dots else []
        shown_picture(result, dots).save(picture, compress_level=colorize.PNG_COMPRESSION)
        return {'picture': picture, 'png': png, 'hints': hints_path, 'palette': palette.result(),
                'seconds': seconds}

    def status(self, state, seconds):
        points = len(state['points'])
        text = '**%s**: %d x %d pixels, %s, colorized in %.2f s.' % (
            state['name'], state['width'], state['height'],
            '%d hint%s' % (points, '' if points == 1 else 's') if self.takes_hints else 'no hints', seconds)
        if self.takes_hints:
            flags = ''.join([' --decode %s' % self.method if self.method != 'annealed' else '',
                             ' -T %r' % self.temperature if self.temperature != utils.DEFAULT_TEMPERATURE else '',
                             ' --edge-aware' if self.edge_aware else ''])
            text += ' The same picture from the command line: `python colorize.py -m %s%s --hints %s.json %s`' % (
                self.checkpoint, flags, state['stem'], state['name'])
        return text


def need_photo(state):
    if not state or not state.get('photo'):
        raise PageError('upload a photo first (or pick a bundled one)')
    return state


def safe_stem(name):
    stem = os.path.splitext(os.path.basename(name))[0]
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in stem).strip('.') or 'photo'


# --------------------------------------------------------------------------
# the page (Gradio)
# --------------------------------------------------------------------------

PALETTE_TEMPLATE = (
    "<div class='palette-title'>Likely colours at the last hint (a pick recolours it)</div>"
    "<div class='palette'>${(value && value.length) ? value.map(c => "
    "`<button type='button' class='swatch' data-color='${c}' title='${c}' style='background:${c}'></button>`"
    ").join('') : `<span class='empty'>click the photo: the model's likely colours there appear here</span>`}</div>")
PALETTE_CSS = """
.palette { display: flex; flex-wrap: wrap; gap: 6px; min-height: 34px; align-items: center; }
.swatch { width: 26px; height: 26px; border-radius: 6px; border: 2px solid #fff; outline: 1px solid #888;
          cursor: pointer; padding: 0; }
.swatch:hover { outline: 2px solid #000; }
.empty { color: #888; font-size: 0.85em; }
.palette-title { font-size: var(--block-label-text-size, 0.85em); color: var(--block-label-text-color, #555);
                 margin-bottom: 6px; }
"""
PALETTE_JS = ("element.addEventListener('click', (e) => { const b = e.target.closest('.swatch'); "
              "if (b) trigger('click', {color: b.dataset.color}); });")
PAGE_CSS = '#picture img { cursor: crosshair; } #error p { color: #c0392b; font-weight: 600; }'


def bundled_photos():
    """[(path, name)] of the photos bundled with scikit-image (written to data/bundled once)."""
    try:
        folder = data_loader.materialise_bundled()
    except Exception as err:   # a read-only checkout: the page still takes uploads
        print('warning: no bundled photos (%s)' % err, file=sys.stderr)
        return []
    return [(os.path.join(folder, rel), os.path.splitext(rel)[0]) for rel in data_loader.find_images(folder)]


def build_page(engine):
    """The Gradio Blocks of the page for ``engine``."""
    import gradio as gr

    photos = bundled_photos()

    def answer(state, show_dots, picker=None):
        """Outputs after a change of ``state``: state, picture, palette, status, error, png, hints, picker."""
        shown = engine.render(state, show_dots)
        return (state, shown['picture'], shown['palette'], engine.status(state, shown['seconds']), '',
                gr.DownloadButton(value=shown['png'], interactive=True),
                gr.DownloadButton(value=shown['hints'], interactive=engine.takes_hints),
                gr.skip() if picker is None else picker)

    def guarded(fn, count=8):
        """``fn`` whose PageError is a warning and an error line, every other output left as it was."""
        @functools.wraps(fn)   # Gradio reads the signature: SelectData / EventData parameters
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PageError as err:
                gr.Warning(str(err))
                return (gr.skip(),) * 4 + ('**%s**' % err,) + (gr.skip(),) * (count - 5)
        return run

    def opened(state, show_dots):
        """After a new photo: also the hint size slider fitted to it."""
        size = hints.default_size(state['width'], state['height'])
        return answer(state, show_dots) + (gr.Slider(value=size, maximum=max(HINT_SIZE_MAX, min(state['width'],
                                                                                     state['height']) // 4)),)

    def on_upload(state, path, show_dots):
        if not path:
            raise PageError('the upload was empty')
        return opened(engine.open_photo(path, previous=state), show_dots)

    def on_bundled(state, show_dots, evt: gr.SelectData):
        path, _ = photos[evt.index]
        return opened(engine.open_photo(path, previous=state), show_dots)

    def on_click(state, color, size, show_dots, evt: gr.SelectData):
        state = need_photo(state)
        shown = display_size(state['width'], state['height'])
        x = to_photo_pixel(evt.index[0], shown[0], state['width'])
        y = to_photo_pixel(evt.index[1], shown[1], state['height'])
        return answer(engine.add_hint(state, x, y, color, int(size) if size else None), show_dots)

    def on_swatch(state, show_dots, evt: gr.EventData):
        color = getattr(evt, 'color', None)
        if not color:
            return (gr.skip(),) * 8
        return answer(engine.recolor_last(state, color), show_dots, picker=color)

    outputs_count = 8
    with gr.Blocks(title='colorizer-fcn: colorize a photo', analytics_enabled=False,
                   delete_cache=(600, 3600)) as page:
        state = gr.State(None, time_to_live=24 * 3600,   # an expired or closed session's photo goes too
                         delete_callback=lambda old: engine.store.discard(old['photo']) if old else None)
        gr.Markdown('## Colorize a photo, then correct it with colour hints\n'
                    'Upload a photo (or pick a bundled one). Click the picture to add a hint there with the '
                    'hint colour; every click re-colorizes.')
        if not engine.takes_hints:
            gr.Markdown('**%s**' % NO_HINT_MODEL, elem_id='no-hints')
        with gr.Row():
            with gr.Column(scale=3):
                picture = gr.Image(label='Colorized (click to add a hint)', type='filepath', format='png',
                                   interactive=False, elem_id='picture', buttons=['fullscreen'], height=600)
                with gr.Row():
                    download_png = gr.DownloadButton('Download PNG (full resolution)', interactive=False,
                                                     size='md', elem_id='download-png')
                    download_hints = gr.DownloadButton('Download hints (.json)', interactive=False, size='md',
                                                       elem_id='download-hints')
                    upload_hints = gr.UploadButton('Upload hints (.json)', size='md', elem_id='upload-hints',
                                                   interactive=engine.takes_hints)
                error = gr.Markdown(elem_id='error')
                status = gr.Markdown(elem_id='status')
            with gr.Column(scale=1, min_width=300):
                upload = gr.UploadButton('Upload a photo', variant='primary', elem_id='upload-photo')
                gallery = gr.Gallery([(p, n) for p, n in photos], label='... or pick a bundled photo',
                                     columns=4, height=150, allow_preview=False, elem_id='bundled',
                                     interactive=False) if photos else None
                picker = gr.ColorPicker(DEFAULT_COLOR, label='Hint colour (for the next click)',
                                        elem_id='hint-color')
                palette = gr.HTML([], html_template=PALETTE_TEMPLATE, css_template=PALETTE_CSS,
                                  js_on_load=PALETTE_JS, elem_id='palette', container=True, padding=True)
                size = gr.Slider(1, HINT_SIZE_MAX, value=config.HINT_SWEEP['patch'], step=1, label='Hint size (pixels of the photo)',
                                 elem_id='hint-size')
                show_dots = gr.Checkbox(True, label='Show the hints as dots', elem_id='show-dots')
                with gr.Row():
                    undo = gr.Button('Undo last hint', size='md', min_width=100, elem_id='undo')
                    clear = gr.Button('Clear hints', size='md', min_width=100, elem_id='clear')
        outputs = [state, picture, palette, status, error, download_png, download_hints, picker]
        assert len(outputs) == outputs_count
        work = dict(concurrency_limit=1, concurrency_id='colorize', show_progress='minimal')
        upload.upload(guarded(on_upload, 9), [state, upload, show_dots], outputs + [size], api_name='open_photo',
                      **work)
        if gallery is not None:
            gallery.select(guarded(on_bundled, 9), [state, show_dots], outputs + [size], api_name='open_bundled',
                           **work)
        picture.select(guarded(on_click), [state, picker, size, show_dots], outputs, api_name='click', **work)
        palette.click(guarded(on_swatch), [state, show_dots], outputs, api_name='pick_colour', **work)
        undo.click(guarded(lambda s, d: answer(engine.undo(s), d)), [state, show_dots], outputs,
                   api_name='undo', **work)
        clear.click(guarded(lambda s, d: answer(engine.clear(s), d)), [state, show_dots], outputs,
                    api_name='clear', **work)
        show_dots.change(guarded(lambda s, d: answer(s, d) if s else (gr.skip(),) * outputs_count),
                         [state, show_dots], outputs, api_name='show_dots', **work)
        upload_hints.upload(guarded(lambda s, p, d: answer(engine.load_hints(s, p), d)),
                            [state, upload_hints, show_dots], outputs, api_name='open_hints', **work)
    page.queue(max_size=256, default_concurrency_limit=1)
    return page


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
    with tempfile.TemporaryDirectory(prefix='colorizer-app-') as workdir:
        # Gradio's uploads and cached outputs too: all deleted when the page stops
        os.environ.setdefault('GRADIO_TEMP_DIR', os.path.join(workdir, 'gradio'))
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise cli.UserError('the page needs gradio: pip install -r requirements-app.txt') from None
        engine = Engine(colorizer, args.model, workdir, args.max_pixels, args.decode, args.temperature,
                        args.edge_aware)
        page = build_page(engine)
        url = 'http://%s:%d' % ('[%s]' % args.host if ':' in args.host else args.host, args.port)
        try:
            page.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True,
                        max_file_size=MAX_UPLOAD, footer_links=['api', 'settings'], run_history=False,
                        ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
                        css=PAGE_CSS, show_error=False, prevent_thread_lock=True,
                        state_session_capacity=args.max_sessions)
        except OSError as err:   # the port was taken between the check and the launch
            raise cli.UserError('cannot listen on %s: %s' % (url, err)) from None
        print('colorizer page on %s (%s; Ctrl+C stops it)' % (
            url, 'hint model' if engine.takes_hints else 'no hint input'), flush=True)
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
