"""Train FCN-32s to colorize: `python train_color_fcn32s.py -c N [-d DATA] ...` (see --help)."""
from trainer import main

if __name__ == '__main__':
    main('fcn32s')
