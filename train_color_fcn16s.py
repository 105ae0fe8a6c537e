"""Train FCN-16s to colorize: `python train_color_fcn16s.py -c N [-d DATA] ...` (see --help)."""
from trainer import main

if __name__ == '__main__':
    main('fcn16s')
