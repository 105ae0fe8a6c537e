"""Train FCN-8s to colorize: `python train_color_fcn8s.py -c N [-d DATA] ...` (see --help)."""
from trainer import main

if __name__ == '__main__':
    main('fcn8s')
