"""Command-line plumbing of the entry scripts: a user's mistake is one ``error: ...`` line, not a traceback.

``run_cli(main)`` runs ``main(argv)`` and returns the exit status:

* what ``main`` returns (an int), 0 for anything else (a finished Trainer);
* 2 with ``error: MESSAGE`` on stderr for a user error: a bad argument
  (:class:`ArgumentParser`, argparse's own status), a bad setting
  (``config.ConfigError``), a file that is not a checkpoint / VGG16 state dict
  (``models.CheckpointError``), or any other :class:`UserError`;
* 1 with ``error: MESSAGE`` for a declared stop (e.g. a non-finite training loss);
* any other exception is a bug: its traceback is shown as usual.

``--debug`` shows the traceback of every error.  Under torchrun (``RANK`` set)
only rank 0 prints the message; every process exits with the same status.
"""
import argparse
import os
import sys
import traceback

import config
import models

USAGE_ERROR = 2   # argparse's status for a bad command line; ours for any user error
STOPPED = 1       # a declared stop, or (colorize / evaluate) some inputs could not be read
DEBUG_FLAG = '--debug'


class UserError(ValueError):
    """A mistake in the command line or its inputs (a missing folder, a run folder in use, no image)."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder named on the command line (or by a config) that is not there."""


class RunFolderTaken(UserError, FileExistsError):
    """A fresh run asked to write into a folder that already holds a run."""


USER_ERRORS = (UserError, config.ConfigError, models.CheckpointError)


def is_main_process():
    """Rank 0 of a torchrun job, or a plain process."""
    return int(os.environ.get('RANK', '0') or 0) == 0


def report(message):
    """``error: message`` on stderr, one line, from rank 0 only."""
    if is_main_process():
        print('error: %s' % ' '.join(str(message).split()), file=sys.stderr, flush=True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one ``error: ...`` line (status 2), with a ``--debug`` flag."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action='store_true', help='show the Python traceback of any error')

    def error(self, message):
        report('%s (see %s --help)' % (message, self.prog))
        sys.exit(USAGE_ERROR)


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def natural_int(text):
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text) from None
    if value < low:
        raise argparse.ArgumentTypeError('%d - must be an integer >= %d' % (value, low))
    return value


def run_cli(main, argv=None, stops=()):
    """Exit status of ``main(argv)`` (see the module docstring); ``stops``: exception types reported as 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = DEBUG_FLAG in argv
    try:
        status = main(argv)
    except USER_ERRORS as err:
        return _fail(err, USAGE_ERROR, debug)
    except tuple(stops) as err:
        return _fail(err, STOPPED, debug)
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def _fail(err, status, debug):
    if debug and is_main_process():
        traceback.print_exc()
    report(err)
    return status
