"""The web page's limits (app.py): what one request may ask, checked before any work, and how the
requests of many sessions share the workers.

* Every input that reaches the page (event data, component values, files) is checked here and
  refused with the page's own one-line :class:`PageError`: coordinates must be whole numbers inside
  the shown picture (refused, not clamped), indices in range, colours colours, a hint's size at most
  the photo's longer side, at most ``config.APP_MAX_HINTS`` hints on a photo and their squares
  covering at most ``config.APP_MAX_HINT_AREA`` times its pixels (so that painting the hint maps,
  which costs each square's area, stays a few full-frame passes), a hint file at most
  ``MAX_HINTS_FILE_BYTES`` of JSON nested any depth.
* :class:`FairQueue` runs the requests on a few worker threads: one session's requests in order, one
  at a time; the sessions in turn, so a session's heavy request holds one worker, never another
  session's click; a session with ``per_session`` requests already waiting is refused at once.
"""
import asyncio
import collections
import concurrent.futures
import json
import math
import os
import threading

from PIL import Image

import config
import hints

MAX_HINTS_FILE_BYTES = 1 << 20  # a hint file is a few kB
MAX_TEXT = 64                   # characters of a colour (or any other short text) the page reads


class PageError(Exception):
    """A user's mistake on the page: shown as a message, the page keeps its photo and hints."""


def shorten(value, limit=80):
    """repr of ``value`` cut to ``limit`` characters: a message never quotes a megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + ' ...'


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------

def whole_number(value, what, low, high):
    """``value`` (an int, or a float that is whole) in [low, high] -> int; PageError otherwise.

    Booleans, strings, NaN, infinities and numbers too large for a float are refused, not converted.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PageError('%s is %s: it must be a whole number from %d to %d' % (what, shorten(value), low, high))
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise PageError('%s is %s: it must be a whole number from %d to %d' % (what, shorten(value), low, high))
    if not low <= value <= high:
        raise PageError('%s is %s: it must be from %d to %d' % (what, shorten(value), low, high))
    return int(value)


def event_data(data, keys, what):
    """An event's data (a dict from the browser) -> its ``keys``' values; PageError if it is none."""
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise PageError('%s came without its %s (the event data is %s)' % (what, ' and '.join(keys), shorten(data)))
    return [data[key] for key in keys]


def clicked_pixel(data, shown, width, height):
    """A click's event data ``{"index": [x, y]}`` (a pixel of the picture shown ``shown`` = (w, h)
    pixels) -> the photo's pixel (x, y); PageError for anything else, or a pixel outside the picture."""
    index, = event_data(data, ['index'], 'the click')
    if not isinstance(index, (list, tuple)) or len(index) != 2:
        raise PageError('the click is at %s: it must be [x, y], a pixel of the picture' % shorten(index))
    x = whole_number(index[0], 'the click\'s x', 0, shown[0] - 1)
    y = whole_number(index[1], 'the click\'s y', 0, shown[1] - 1)
    return to_photo_pixel(x, shown[0], width), to_photo_pixel(y, shown[1], height)


def to_photo_pixel(index, display, photo):
    """A pixel index of the shown picture (``display`` pixels wide, 0 <= index < display) -> the photo's
    pixel: the one under the shown pixel's centre, inside the photo by construction."""
    return int((index + 0.5) * photo / display)


def to_display_pixel(index, photo, display):
    return (index + 0.5) * display / photo - 0.5


def bundled_index(data, count):
    """A bundled photo's pick ``{"index": i}`` -> i in [0, count); PageError otherwise (no -1: no wrap)."""
    if not count:
        raise PageError('there are no bundled photos on this server: upload one')
    index, = event_data(data, ['index'], 'the pick of a bundled photo')
    return whole_number(index, 'the bundled photo\'s number', 0, count - 1)


def color_text(value, what='the hint colour'):
    """A colour as the page sends it ('#rrggbb', 'rgb(...)') -> the text; PageError if it is none."""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise PageError('%s is %s: it must be a colour such as "#3b7dd8"' % (what, shorten(value)))
    try:
        hints.parse_color(value)
    except hints.HintError as err:
        raise PageError(str(err)) from None
    return value


def flag(value, what):
    if not isinstance(value, bool):
        raise PageError('%s is %s: it must be true or false' % (what, shorten(value)))
    return value


def uploaded_path(payload, what, folder):
    """An upload's value (Gradio's file data, which Gradio checks names a file uploaded to this page)
    -> its path; PageError for anything else, or a file outside Gradio's upload ``folder`` (checked again
    here: the page reads no other file a request names)."""
    path = payload.get('path') if isinstance(payload, dict) else None
    if not isinstance(path, str) or not path or not os.path.isfile(path):
        raise PageError('%s is empty or not a file' % what)
    if not os.path.realpath(path).startswith(os.path.join(os.path.realpath(folder), '')):
        raise PageError('%s is not a file uploaded to this page' % what)
    return path


# --------------------------------------------------------------------------
# hints: their number, sizes and area
# --------------------------------------------------------------------------

def max_hint_size(width, height):
    """The largest hint square the page takes: the photo's longer side (a larger one paints nothing more)."""
    return max(width, height)


def hint_area(points, width, height):
    """Pixels the hints' squares paint in all (each clipped to the photo): what painting the maps costs."""
    total = 0
    for point in points:
        x0, y0, x1, y1 = hints.point_box(point, width, height)
        total += (x1 - x0) * (y1 - y0)
    return total


def check_hints(points, width, height, where=''):
    """Checked points (hints.check_point) -> the same; PageError when there are more than APP_MAX_HINTS,
    a square over the photo's longer side, or squares covering more than APP_MAX_HINT_AREA photos."""
    if len(points) > config.APP_MAX_HINTS:
        raise PageError('%s%d hints: the page takes at most %d on a photo' % (where, len(points), config.APP_MAX_HINTS))
    largest = max_hint_size(width, height)
    for i, point in enumerate(points):
        if (point.get('size') or 0) > largest:
            raise PageError('%shint %d size is %s: at most %d pixels, the photo\'s longer side'
                            % (where, i + 1, shorten(point['size'], 24), largest))
    area = hint_area(points, width, height)
    if area > config.APP_MAX_HINT_AREA * width * height:
        raise PageError('%sthe hints\' squares would cover %.1f times the photo in all: at most %d (smaller hint '
                        'sizes, or fewer hints)' % (where, area / (width * height), config.APP_MAX_HINT_AREA))
    return points


def read_hints_json(path, name):
    """A hint file the page was given -> its parsed JSON; PageError if it is too large or no JSON.

    Any bytes and any nesting depth give a message (a RecursionError of the JSON parser included).
    """
    if os.path.getsize(path) > MAX_HINTS_FILE_BYTES:
        raise PageError('%s is not a hints file: over %d bytes' % (name, MAX_HINTS_FILE_BYTES))
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except RecursionError:
        raise PageError('%s is not a hints file (JSON nested too deeply)' % name) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise PageError('%s is not a hints file (not JSON: %s)' % (name, str(err)[:120])) from None


def points_from_json(obj, width, height, name):
    """Parsed hint JSON -> checked points within the page's limits; PageError otherwise."""
    if isinstance(obj, dict) and isinstance(obj.get('points'), list) and len(obj['points']) > config.APP_MAX_HINTS:
        raise PageError('%s has %d hints: the page takes at most %d on a photo'
                        % (name, len(obj['points']), config.APP_MAX_HINTS))
    try:
        points = hints.points_from_json(obj, width, height)
    except hints.HintError as err:
        raise PageError('%s: %s' % (name, str(err)[:300])) from None
    except (OverflowError, TypeError) as err:   # a number too large for a float, a key that is no string
        raise PageError('%s: a value cannot be read (%s)' % (name, str(err)[:120])) from None
    return check_hints(points, width, height, '%s: ' % name)


# --------------------------------------------------------------------------
# photos: the size from the header, even past Pillow's decompression-bomb limit
# --------------------------------------------------------------------------

def header_size(path):
    """(width, height) from an image file's header, or None.

    Read by Pillow's own format plugins (the registry ``Image.open`` walks) but without its
    decompression-bomb check, which refuses huge images in its own words before the page can say
    they are over its pixel limit.  Nothing is decoded.
    """
    Image.init()
    try:
        with open(path, 'rb') as f:
            prefix = f.read(16)
            for format_id in list(Image.ID):
                factory, accept = Image.OPEN[format_id]
                try:
                    if accept and not accept(prefix):
                        continue
                    f.seek(0)
                    return tuple(factory(f, path).size)
                except Exception:   # noqa: BLE001 - not this format (Pillow's plugins raise many types)
                    continue
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------
# fair sharing of the workers
# --------------------------------------------------------------------------

class FairQueue:
    """Requests (functions) of many sessions on ``workers`` threads.

    A session's requests run in the order they came, one at a time; a free worker takes the next
    request of the session that has waited longest since its last turn (sessions in turn, a new one
    first), so one session's heavy request holds at most one worker and its queued ones wait behind
    the other sessions'.  A session that already has ``per_session`` requests running or waiting is
    refused (:class:`PageError`) at once, so it cannot fill the queue either.
    """

    def __init__(self, workers=config.APP_WORKERS, per_session=config.APP_SESSION_QUEUE, name='colorize'):
        self.per_session = per_session
        self.cond = threading.Condition()
        self.waiting = collections.OrderedDict()   # session -> deque of (fn, future), in order of arrival
        self.running = set()
        self.turns, self.turn = {}, 0              # session -> the turn it last started (while it has requests)
        self.threads = [threading.Thread(target=self._work, name='%s-%d' % (name, i), daemon=True)
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, session, fn):
        """A future of ``fn()`` run on a worker in ``session``'s turn; PageError if the session has too many."""
        with self.cond:
            queue = self.waiting.get(session, ())
            if len(queue) + (session in self.running) >= self.per_session:
                raise PageError('this page has %d requests running or waiting already: wait for them'
                                % self.per_session)
            future = concurrent.futures.Future()
            self.waiting.setdefault(session, collections.deque()).append((fn, future))
            self.cond.notify()
        return future

    def run(self, session, fn):
        """``fn()`` in ``session``'s turn, waiting for it (a thread's call)."""
        return self.submit(session, fn).result()

    async def run_async(self, session, fn):
        """``fn()`` in ``session``'s turn, awaited (the event loop is not held while it waits)."""
        return await asyncio.wrap_future(self.submit(session, fn))

    def _next(self):
        """The session whose request runs next (under the lock), or None."""
        ready = [session for session in self.waiting if session not in self.running]
        return min(ready, key=lambda session: self.turns.get(session, 0), default=None)

    def _work(self):
        while True:
            with self.cond:
                session = self._next()
                while session is None:
                    self.cond.wait()
                    session = self._next()
                fn, future = self.waiting[session].popleft()
                if not self.waiting[session]:
                    del self.waiting[session]
                self.running.add(session)
                self.turn += 1
                self.turns[session] = self.turn
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as err:   # noqa: BLE001 - handed to the waiting caller
                        future.set_exception(err)
            finally:
                with self.cond:
                    self.running.discard(session)
                    if session not in self.waiting:
                        del self.turns[session]   # an idle session keeps nothing
                    self.cond.notify_all()
