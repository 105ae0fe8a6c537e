"""Train FCN-32s to colorize: `python train_color_fcn32s.py -c N [-d DATA] ...` (see --help).

Exit status: 0 when the run finished, 2 for a bad command line, setting or file (one `error:` line),
1 for a stop such as a non-finite loss (the message names the last good checkpoint).
"""
import functools
import sys

from cli import run_cli
from trainer import STOPS, main

if __name__ == '__main__':
    sys.exit(run_cli(functools.partial(main, 'fcn32s'), stops=STOPS))
