"""The web page of app.py in Gradio: its layout, its handlers and what its server serves besides Gradio.

Every handler runs its work through the engine's :class:`app_limits.FairQueue`
(a session's requests one at a time, the sessions in turn) and checks every
input it is sent (``app_limits``); Gradio's own checks of a request, made before
a handler runs, and any exception that escapes a route answer with the page's
one line, never a traceback in the log.  The picture is sent to its session
only (a data: URL), its downloads are links with a token only that session
knows (:class:`Sessions`); no URL shows a server path.
"""
import collections
import html
import os
import secrets
import sys
import tempfile
import threading

from PIL import Image

import app_limits as limits
import colorize
import config
import data_loader
import hints
from app import APP_MAX_PIXELS, MAX_SESSIONS, PageError, data_url, display_size, need_photo

HINT_SIZE_MAX = 64              # the hint size slider's range: at least this, up to a quarter of the short side
THUMBNAIL_HEIGHT = 72           # the bundled photos' thumbnails (in the page itself, as data: URLs)
DOWNLOAD_ROUTE = 'colorizer/download'   # /colorizer/download/TOKEN/NAME: a session's downloads (Sessions)
DEFAULT_COLOR = '#d62828'


class Sessions:
    """What the server remembers of each session (at most ``capacity``, least recently used dropped).

    Its latest state: a request that waited behind another of the same session
    (:class:`app_limits.FairQueue`) starts from that one's result, not from the
    state Gradio read when it came.  And the token of its download links,
    ``/colorizer/download/TOKEN/NAME``: random, new for every picture, known
    only to the session it was sent to (Gradio's own file URLs can be fetched
    by anyone and show the server's paths).
    """

    def __init__(self, capacity=MAX_SESSIONS):
        self.capacity = capacity
        self.lock = threading.Lock()
        self.states = collections.OrderedDict()   # session -> (state, token)
        self.links = {}                           # token -> (session, state)

    def state(self, session, given):
        with self.lock:
            return self.states[session][0] if session in self.states else given

    def update(self, session, state):
        """``state`` is the session's latest -> the token of its download links (the previous one dies)."""
        token = secrets.token_urlsafe(18)
        with self.lock:
            old = self.states.pop(session, None)
            if old:
                self.links.pop(old[1], None)
            self.states[session] = (state, token)
            self.links[token] = (session, state)
            while len(self.states) > self.capacity:
                _, (_, dropped) = self.states.popitem(last=False)
                self.links.pop(dropped, None)
        return token

    def link(self, token):
        """(session, state) of a download token, or None (unknown, or the session has moved on)."""
        with self.lock:
            return self.links.get(token)


# The picture, its downloads and the bundled photos are HTML the page fills itself: the picture as a
# data: URL (sent to its session only: no file, no URL anyone else can fetch, no server path), the
# downloads as links under DOWNLOAD_ROUTE with the session's token.  A click on the picture sends the
# pixel of the shown picture under it, as Gradio's image select did.
PICTURE_TEMPLATE = (
    "${(value && value.src) ? `<img class='shown' src='${value.src}' width='${value.width}' "
    "height='${value.height}' alt='the colorized photo: click to add a hint'>` "
    ": `<div class='empty'>upload a photo, or pick a bundled one: it is colorized here</div>`}")
PICTURE_CSS = """
.shown { display: block; margin: 0 auto; max-width: 100%; max-height: 600px; width: auto; height: auto;
         cursor: crosshair; }
.empty { color: #888; padding: 60px 0; text-align: center; }
"""
PICTURE_JS = (
    "element.addEventListener('click', (e) => { const img = e.target.closest('img.shown'); "
    "if (!img || !img.naturalWidth) return; const r = img.getBoundingClientRect(); "
    "const at = (v, size, n) => Math.min(n - 1, Math.max(0, Math.floor(v * n / size))); "
    "trigger('click', {index: [at(e.clientX - r.left, r.width, img.naturalWidth), "
    "at(e.clientY - r.top, r.height, img.naturalHeight)]}); });")
DOWNLOADS_TEMPLATE = (
    "<div class='downloads'>${(value && value.png) ? `<a id='download-png' class='download' href='${value.png}' "
    "download='${value.png_name}'>Download PNG (full resolution)</a>` : `<span class='download off'>Download "
    "PNG (full resolution)</span>`}${(value && value.hints) ? `<a id='download-hints' class='download' "
    "href='${value.hints}' download='${value.hints_name}'>Download hints (.json)</a>` : `<span class='download "
    "off'>Download hints (.json)</span>`}</div>")
DOWNLOADS_CSS = """
.downloads { display: flex; gap: 8px; flex-wrap: wrap; }
.download { padding: 6px 14px; border-radius: 6px; border: 1px solid #bbb; text-decoration: none; color: inherit; }
.download.off { color: #aaa; border-color: #ddd; }
"""
BUNDLED_TEMPLATE = (
    "<div class='bundled'>${value.map((p, i) => `<button type='button' class='thumb' data-index='${i}' "
    "title='${p.name}'><img src='${p.src}' alt='${p.name}'></button>`).join('')}</div>")
BUNDLED_CSS = """
.bundled { display: flex; flex-wrap: wrap; gap: 4px; }
.thumb { padding: 0; border: 1px solid #ccc; border-radius: 4px; cursor: pointer; background: none; }
.thumb img { display: block; height: %dpx; }
""" % THUMBNAIL_HEIGHT
BUNDLED_JS = ("element.addEventListener('click', (e) => { const b = e.target.closest('.thumb'); "
              "if (b) trigger('click', {index: Number(b.dataset.index)}); });")
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
PAGE_CSS = '#error p { color: #c0392b; font-weight: 600; }'


def bundled_photos():
    """[(path, name)] of the photos bundled with scikit-image (written to data/bundled once)."""
    try:
        folder = data_loader.materialise_bundled()
    except Exception as err:   # a read-only checkout: the page still takes uploads
        print('warning: no bundled photos (%s)' % err, file=sys.stderr)
        return []
    return [(os.path.join(folder, rel), os.path.splitext(rel)[0]) for rel in data_loader.find_images(folder)]


def thumbnails(photos):
    """[(path, name)] -> [(path, name, thumbnail as a data: URL)] of those that open."""
    done = []
    for path, name in photos:
        try:
            picture = Image.fromarray(data_loader.load_rgb(path, APP_MAX_PIXELS))
        except (data_loader.UnreadableImage, data_loader.ImageTooLarge):
            continue
        picture.thumbnail((4 * THUMBNAIL_HEIGHT, THUMBNAIL_HEIGHT))
        done.append((path, name, data_url(picture, 'JPEG', quality=85)))
    return done


def picture_value(picture):
    """The shown picture (PIL) -> the picture component's value: a PNG data: URL and its size."""
    return {'src': data_url(picture, compress_level=colorize.PNG_COMPRESSION), 'width': picture.width,
            'height': picture.height}


def request_error(err):
    """An exception Gradio raised over a request's inputs (or any route over a request) -> one line."""
    first = (str(err).strip().splitlines() or [''])[0]
    return 'the page could not read this request (%s: %s)' % (type(err).__name__, first[:160])


class QuietErrors:
    """ASGI middleware of the page's server: an exception that escapes a route (Gradio's own, over a
    request no page sends) is one line in the log and a short answer, never a traceback."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get('type') != 'http':
            return await self.app(scope, receive, send)
        started = False

        async def sending(message):
            nonlocal started
            started = started or message.get('type') == 'http.response.start'
            await send(message)
        try:
            await self.app(scope, receive, sending)
        except Exception as err:   # noqa: BLE001 - the log gets one line
            print('warning: %s %s: %s' % (scope.get('method', ''), scope.get('path', '')[:80], request_error(err)),
                  file=sys.stderr, flush=True)
            if not started:
                from starlette.responses import PlainTextResponse
                await PlainTextResponse(request_error(err), status_code=500)(scope, receive, send)


def server_app_kwargs(engine, sessions):
    """The page server's FastAPI arguments (Gradio's ``app_kwargs``): the download route and QuietErrors.

    ``/colorizer/download/TOKEN/NAME.png`` writes the full-resolution PNG of the
    picture the session was shown with TOKEN (in its turn on the workers), ``NAME.json`` its hints; a token
    the session has moved on from, or never had, is 404.
    """
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def download(request):
        token, name = request.path_params['token'], request.path_params['name']
        link = sessions.link(token)
        if link is None:
            return PlainTextResponse('this download link has expired (the page has shown another picture since): '
                                     'download again from the page', status_code=404)
        session, state = link
        if name == state['stem'] + '.json':
            return Response(engine.hints_json(state), media_type='application/json',
                            headers={'Content-Disposition': 'attachment; filename="%s"' % name})
        if name != state['stem'] + '.png':
            return PlainTextResponse('no such download', status_code=404)
        try:
            path = await engine.jobs.run_async(session, lambda: engine.write_png(state, token))
        except PageError as err:
            return PlainTextResponse(str(err), status_code=409)
        return FileResponse(path, media_type='image/png', filename=name)

    return {'routes': [Route('/%s/{token}/{name}' % DOWNLOAD_ROUTE, download)],
            'middleware': [Middleware(QuietErrors)]}


def build_page(engine, sessions=None):
    """The Gradio Blocks of the page for ``engine`` (``sessions``: what the server keeps of each session)."""
    import gradio as gr

    sessions = sessions or Sessions()
    photos = thumbnails(bundled_photos())

    class Page(gr.Blocks):
        """gr.Blocks whose own checks of a request's inputs, made before a handler runs (their number, an
        upload that is no file uploaded to this page), answer with the page's message, no traceback."""

        async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
            try:
                return await super().preprocess_data(block_fn, inputs, state, explicit_call)
            except Exception as err:   # noqa: BLE001 - refused with a message
                raise gr.Error(request_error(err), print_exception=False) from None

    def links(token, state):
        base = '%s/%s/%s' % (DOWNLOAD_ROUTE, token, state['stem'])
        return {'png': base + '.png', 'png_name': state['stem'] + '.png', 'hints': base + '.json',
                'hints_name': state['stem'] + '.json'}

    def refused(message, count):
        gr.Warning(message)
        return (gr.skip(),) * 4 + ('**%s**' % message,) + (gr.skip(),) * (count - 5)

    async def respond(request, state, show_dots, change, count=7, picker=None):
        """``change(the session's latest state) -> new state`` and its picture, in the session's turn on
        the workers -> the page's outputs (+ the hint size slider fitted to a new photo with count=8);
        a refusal (PageError) -> its message, every other output as it was; ``change`` -> None: nothing."""
        session = getattr(request, 'session_hash', None) or 'anonymous'

        def job():
            dots = limits.flag(show_dots, 'show the hints as dots')
            new = change(sessions.state(session, state))
            if new is None:
                return None
            shown = engine.render(new, dots)
            return new, picture_value(shown['picture']), shown, sessions.update(session, new)
        try:
            done = await engine.jobs.run_async(session, job)
        except PageError as err:
            return refused(str(err), count)
        except Exception as err:   # noqa: BLE001 - a bug: one line in the log and a message, no traceback
            print('error: %s: %s' % (type(err).__name__, str(err)[:300]), file=sys.stderr, flush=True)
            return refused('the server could not do this (%s): please report it' % type(err).__name__, count)
        if done is None:
            return (gr.skip(),) * count
        new, picture, shown, token = done
        outputs = (new, picture, shown['palette'], engine.status(new, shown['seconds']), '', links(token, new),
                   gr.skip() if picker is None else picker)
        if count == 8:
            size = hints.default_size(new['width'], new['height'])
            outputs += (gr.Slider(value=size, maximum=max(HINT_SIZE_MAX, min(new['width'], new['height']) // 4)),)
        return outputs

    uploads = os.environ.get('GRADIO_TEMP_DIR') or os.path.join(tempfile.gettempdir(), 'gradio')   # as Gradio

    async def on_upload(state, upload, show_dots, request: gr.Request):
        def change(current):
            return engine.open_photo(limits.uploaded_path(upload, 'the upload', uploads), previous=current)
        return await respond(request, state, show_dots, change, count=8)

    async def on_bundled(state, show_dots, evt: gr.EventData, request: gr.Request):
        def change(current):
            path = photos[limits.bundled_index(evt._data, len(photos))][0]
            return engine.open_photo(path, previous=current)
        return await respond(request, state, show_dots, change, count=8)

    async def on_click(state, color, size, show_dots, evt: gr.EventData, request: gr.Request):
        def change(current):
            current = need_photo(current)
            width, height = current['width'], current['height']
            x, y = limits.clicked_pixel(evt._data, display_size(width, height), width, height)
            return engine.add_hint(current, x, y, color, size)
        return await respond(request, state, show_dots, change)

    async def on_swatch(state, show_dots, evt: gr.EventData, request: gr.Request):
        data = evt._data if isinstance(evt._data, dict) else {}
        picked = data.get('color') if isinstance(data.get('color'), str) else None

        def change(current):
            color, = limits.event_data(evt._data, ['color'], 'the palette pick')
            return engine.recolor_last(current, color)
        return await respond(request, state, show_dots, change, picker=picked)

    async def on_undo(state, show_dots, request: gr.Request):
        return await respond(request, state, show_dots, engine.undo)

    async def on_clear(state, show_dots, request: gr.Request):
        return await respond(request, state, show_dots, engine.clear)

    async def on_show_dots(state, show_dots, request: gr.Request):
        return await respond(request, state, show_dots,
                             lambda current: current if isinstance(current, dict) and current.get('photo') else None)

    async def on_hints(state, upload, show_dots, request: gr.Request):
        def change(current):
            return engine.load_hints(current, limits.uploaded_path(upload, 'the hints upload', uploads))
        return await respond(request, state, show_dots, change)

    with Page(title='colorizer-fcn: colorize a photo', analytics_enabled=False,
              delete_cache=(600, 3600)) as page:
        state = gr.State(None, time_to_live=24 * 3600,   # an expired or closed session's photo goes too
                         delete_callback=lambda old: engine.store.discard(old['photo'])
                         if isinstance(old, dict) and old.get('photo') else None)
        gr.Markdown('## Colorize a photo, then correct it with colour hints\n'
                    'Upload a photo (or pick a bundled one). Click the picture to add a hint there with the '
                    'hint colour; every click re-colorizes.')
        with gr.Row():
            with gr.Column(scale=3):
                picture = gr.HTML(None, html_template=PICTURE_TEMPLATE, css_template=PICTURE_CSS,
                                  js_on_load=PICTURE_JS, elem_id='picture', label='Colorized (click to add a hint)',
                                  show_label=True, container=True, padding=True)
                with gr.Row():
                    downloads = gr.HTML(None, html_template=DOWNLOADS_TEMPLATE, css_template=DOWNLOADS_CSS,
                                        js_on_load=None, elem_id='downloads')
                    upload_hints = gr.UploadButton('Upload hints (.json)', size='md', elem_id='upload-hints')
                error = gr.Markdown(elem_id='error')
                status = gr.Markdown(elem_id='status')
            with gr.Column(scale=1, min_width=300):
                upload = gr.UploadButton('Upload a photo', variant='primary', elem_id='upload-photo')
                bundled = gr.HTML([{'name': html.escape(name), 'src': src} for _, name, src in photos],
                                  html_template=BUNDLED_TEMPLATE, css_template=BUNDLED_CSS, js_on_load=BUNDLED_JS,
                                  elem_id='bundled', label='... or pick a bundled photo', show_label=True,
                                  container=True, padding=True) if photos else None
                picker = gr.ColorPicker(DEFAULT_COLOR, label='Hint colour (for the next click)',
                                        elem_id='hint-color')
                palette = gr.HTML([], html_template=PALETTE_TEMPLATE, css_template=PALETTE_CSS,
                                  js_on_load=PALETTE_JS, elem_id='palette', container=True, padding=True)
                size = gr.Slider(1, HINT_SIZE_MAX, value=config.HINT_SWEEP['patch'], step=1,
                                 label='Hint size (pixels of the photo)', elem_id='hint-size')
                show_dots = gr.Checkbox(True, label='Show the hints as dots', elem_id='show-dots')
                with gr.Row():
                    undo = gr.Button('Undo last hint', size='md', min_width=100, elem_id='undo')
                    clear = gr.Button('Clear hints', size='md', min_width=100, elem_id='clear')
        outputs = [state, picture, palette, status, error, downloads, picker]
        # every input reaches the handlers as sent (preprocess=False) and is checked there (app_limits); the
        # workers' FairQueue, not Gradio's queue, decides what runs when (no concurrency limit here)
        work = dict(concurrency_limit=None, show_progress='minimal', preprocess=False)
        upload.upload(on_upload, [state, upload, show_dots], outputs + [size], api_name='open_photo', **work)
        if bundled is not None:
            bundled.click(on_bundled, [state, show_dots], outputs + [size], api_name='open_bundled', **work)
        picture.click(on_click, [state, picker, size, show_dots], outputs, api_name='click', **work)
        palette.click(on_swatch, [state, show_dots], outputs, api_name='pick_colour', **work)
        undo.click(on_undo, [state, show_dots], outputs, api_name='undo', **work)
        clear.click(on_clear, [state, show_dots], outputs, api_name='clear', **work)
        show_dots.change(on_show_dots, [state, show_dots], outputs, api_name='show_dots', **work)
        upload_hints.upload(on_hints, [state, upload_hints, show_dots], outputs, api_name='open_hints', **work)
    page.queue(max_size=256)
    return page
