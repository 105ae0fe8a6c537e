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
    with pytest.raises(config.ConfigError, match='no configuration 26'):
        config.get_config(26)


def test_every_default_has_a_comment():
    with open(os.path.join(REPO, 'config.py')) as f:
        source = f.read()
    block = source[source.index('DEFAULTS = dict('):source.index('\n)\n')]
    for key in config.DEFAULTS:
        line = next(l for l in block.splitlines() if l.strip().startswith(key + '='))
        assert '#' in line, key


# --- the schema: every key declared, every setting valid, bad values named ------------------

def test_every_default_is_declared_and_every_declared_key_is_a_default():
    assert set(config.SCHEMA) == set(config.DEFAULTS)
    assert not set(config.RUN_KEYS) & set(config.DEFAULTS)
    assert set(config.RESUME_DEFAULTS) <= set(config.DEFAULTS)


def test_defaults_and_every_configuration_pass_the_check():
    assert config.check_config(dict(config.DEFAULTS)) == config.DEFAULTS
    for n in config.configurations:   # 0-31, the demo 100-102, the tests' 199 and any new one
        cfg = config.get_config(n)
        assert config.check_config(dict(cfg)) == cfg, n
        for key, value in cfg.items():
            assert config.check_value(key, value) == value, (n, key)


def test_declared_choices_are_the_ones_the_code_knows():
    import data_loader
    import targets
    import utils
    assert config.SCHEMA['train_set'].choices == tuple(data_loader.SET_LISTS)
    assert config.SCHEMA['val_set'].choices == tuple(data_loader.SET_LISTS)
    assert config.SCHEMA['binning'].choices == targets.BINNINGS
    assert config.SCHEMA['decode'].choices == tuple(utils.DECODE_METHODS)


@pytest.mark.parametrize('key, value, message', [
    ('lr', 'abc', "lr: 'abc' is not a number"),
    ('lr', 0, 'lr: 0 - must be a number > 0'),
    ('lr', float('nan'), 'lr: nan - must be a number > 0'),
    ('numbins', 0, 'numbins: 0 - must be an integer >= 2'),
    ('numbins', 2.5, 'numbins: 2.5 - must be an integer >= 2'),
    ('im_size', [0, 0], 'im_size: [0, 0] - must be two integers >= 32'),
    ('im_size', [64], 'im_size: [64] - must be two integers >= 32'),
    ('binning', 'softt', "binning: 'softt' - must be one of soft, uniform, one-hot, or null (did you mean soft?)"),
    ('optim', 'adam', "optim: 'adam' - must be one of SGD, Adam (did you mean Adam?)"),
    ('momentum', 1, 'momentum: 1 - must be a number >= 0 and < 1'),
    ('amp', 'yes please', "amp: 'yes please' - must be true or false"),
    ('amp', 1, 'amp: 1 - must be true or false'),
    ('batch_size', True, 'batch_size: true is not a number'),
    ('workers', -1, 'workers: -1 - must be an integer >= 0, or null'),
    ('init_from', 26, 'init_from: 26 - must be a configuration number of config.py'),
    ('uniform_sigma', 'wide', "uniform_sigma: 'wide' - must be 'default' or a number > 0"),
    ('seed', 2 ** 32, 'seed: 4294967296 - must be an integer from 0 to 4294967295'),
    ('vgg16', '', "vgg16: '' - must be a file path"),
    ('lerning_rate', 1, "unknown config key 'lerning_rate'"),
])
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(key, value, message):
    with pytest.raises(config.ConfigError) as refused:
        config.check_value(key, value)
    assert str(refused.value).startswith(message), str(refused.value)
    assert '\n' not in str(refused.value)


def test_values_are_normalised_as_the_code_uses_them():
    assert config.check_value('im_size', [128, 96]) == (128, 96)
    assert config.check_value('max_iteration', 1e5) == 100000 and isinstance(
        config.check_value('max_iteration', 1e5), int)
    assert config.check_value('numbins', None) is None and config.check_value('uniform_sigma', 'default') == 'default'


def test_settings_that_cannot_go_together_are_refused():
    cfg = config.get_config(100)
    with pytest.raises(config.ConfigError, match='numbins: 10 - uniform binning needs a perfect square'):
        config.check_config(dict(cfg, binning='uniform', numbins=10))
    config.check_config(dict(cfg, binning='uniform', numbins=9))
    with pytest.raises(config.ConfigError, match='rebalance_lambda: 0.5 - class rebalancing needs joint bins'):
        config.check_config(dict(cfg, binning='one-hot', rebalance_lambda=0.5))
    with pytest.raises(config.ConfigError, match="trunk_width: 16 - VGG16 weights .* need trunk_width 64"):
        config.check_config(dict(cfg, vgg16='imagenet', trunk_width=16))
    config.check_config(dict(cfg, vgg16='imagenet', trunk_width=64))
    with pytest.raises(config.ConfigError, match=r"^ckpt: unknown config key 'foo'"):
        config.check_config(dict(cfg, foo=1), 'ckpt')
    config.check_config(dict(cfg, foo=1, config_number=100), 'ckpt', ignore_unknown=True)


def test_a_configuration_with_a_bad_value_is_refused_by_number(monkeypatch):
    monkeypatch.setitem(config.configurations, 998, dict(lr='abc'))
    with pytest.raises(config.ConfigError, match="^configuration 998: lr: 'abc' is not a number"):
        config.get_config(998)
