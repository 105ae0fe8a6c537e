"""config.py keeps the seed's numbered settings (checked against ../shared/seed/seed-configs.md)."""
import ast
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import config  # noqa: E402

SEED_TABLE = os.path.join(os.path.dirname(REPO), 'shared', 'seed', 'seed-configs.md')
COLUMNS = ['cfg', 'max_iteration', 'lr', 'optim', 'momentum', 'weight_decay', 'interval_validate',
           'img_lowpass', 'im_size', 'batch_size', 'train_set', 'val_set', 'binning', 'init', 'stats']


def seed_rows():
    if not os.path.isfile(SEED_TABLE):
        pytest.skip('seed table %s not beside the repo' % SEED_TABLE)
    rows = {}
    with open(SEED_TABLE) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if len(cells) == len(COLUMNS) and cells[0].isdigit():
                rows[int(cells[0])] = dict(zip(COLUMNS, cells))
    return rows


def test_config_numbers():
    numbers = set(config.configurations)
    assert set(range(32)) - {26} <= numbers and 26 not in numbers
    assert {100, 101, 102} <= numbers


def test_seed_settings_are_kept():
    rows = seed_rows()
    assert len(rows) == 31
    for n, row in rows.items():
        cfg = config.get_config(n)
        assert cfg['max_iteration'] == int(row['max_iteration']), n
        assert cfg['lr'] == float(row['lr']), n
        assert cfg['optim'] == (row['optim'] or 'SGD'), n
        assert cfg['momentum'] == float(row['momentum']) and cfg['weight_decay'] == float(row['weight_decay']), n
        assert cfg['interval_validate'] == int(row['interval_validate']), n
        lowpass = row['img_lowpass']
        assert cfg['img_lowpass'] == (int(lowpass) if lowpass not in ('', 'none') else None), n
        assert tuple(cfg['im_size']) == (ast.literal_eval(row['im_size']) if row['im_size'] else (256, 256)), n
        assert cfg['batch_size'] == (int(row['batch_size']) if row['batch_size'] else 1), n
        if row['train_set']:
            assert (cfg['train_set'], cfg['val_set']) == (row['train_set'], row['val_set']), n
        assert cfg['binning'] == (row['binning'] or None), n
        init = re.match(r'fcn(\d+)s of cfg (\d+)', row['init'])
        assert cfg['init_from'] == (int(init.group(2)) if init else None), n
        stats = re.search(r'of cfg (\d+)', row['stats'])
        expected_stats = int(stats.group(1)) if stats and int(stats.group(1)) != n else None
        assert cfg['color_stats_from'] == expected_stats, n


def test_demo_stages_chain_and_every_key_is_known():
    assert config.get_config(101)['init_from'] == 100 and config.get_config(102)['init_from'] == 101
    for n in config.configurations:
        config.get_config(n)  # raises on an unknown key
    with pytest.raises(KeyError, match='no configuration'):
        config.get_config(26)


def test_every_default_has_a_comment():
    with open(os.path.join(REPO, 'config.py')) as f:
        source = f.read()
    block = source[source.index('DEFAULTS = dict('):source.index('\n)\n')]
    for key in config.DEFAULTS:
        line = next(l for l in block.splitlines() if l.strip().startswith(key + '='))
        assert '#' in line, key
