"""The full-resolution hint branch (models.py, issue 28): a hint model grown from a lightness-only one
computes exactly what that model computed whatever the hints; the branch is a short, local path from a
hint to the scores at its own resolution; its weights learn at hint_lr_mult times the rate; checkpoints
without it load as before.  The hints filled to every pixel (models.fill_hints) follow the nearest hint
(scipy's distance transform is the reference) and let the branch carry a hint across the whole photo."""
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

import config
import models
import run_setup

N_CLASS, FC = 8, 16


def lightness_model(arch='fcn32s'):
    torch.manual_seed(0)
    return models.build_model(arch, N_CLASS, fc_channels=FC).eval()


def test_a_hint_model_with_a_branch_grown_from_a_lightness_model_computes_what_it_did_whatever_the_hints():
    for arch, fill in (('fcn32s', False), ('fcn16s', False), ('fcn8s', False), ('fcn32s', True)):
        plain = lightness_model(arch)
        grown = models.build_model(arch, N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6,
                                   hint_fill=fill).eval()
        grown.copy_params_from(plain)
        if fill:
            grown.set_hint_bins(torch.randn(N_CLASS, 2))
        x = torch.randn(2, 4, 40, 56)
        with torch.no_grad():
            assert torch.equal(grown(x), plain(x[:, :1]))
        assert {k for k in grown.state_dict() if k.startswith('hint_branch.')}   # the branch is there, at zero


def test_the_branch_carries_a_hint_to_the_scores_at_its_pixel_and_only_nearby():
    """Grown from a lightness model (so the trunk ignores the hints) with the branch's last layer as after
    training: a hinted pixel moves the scores at its place and within the branch's reach (1 + 2 + 4 pixels
    of 3x3 convolutions), nowhere else."""
    model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6).eval()
    model.copy_params_from(lightness_model())
    torch.manual_seed(1)
    torch.nn.init.normal_(model.hint_branch[-1].weight)
    x = torch.rand(1, 4, 64, 64)
    x[:, 1:] = 0                                                # no hints ...
    y = x.clone()
    y[0, 1:, 32, 32] = torch.tensor([0.3, -0.2, 1.0])           # ... and one hinted pixel
    with torch.no_grad():
        moved = (model(y) - model(x)).abs().sum(1)[0] > 1e-6
    rows, cols = torch.nonzero(moved, as_tuple=True)
    radius = sum(models.HINT_BRANCH_DILATIONS)
    assert moved[32, 32] and int((rows - 32).abs().max()) <= radius and int((cols - 32).abs().max()) <= radius
    assert int(moved.sum()) > 9                                 # more than the pixel and its neighbours
    model.hint_branch[-1].weight.data.zero_()                   # without the branch: the hint goes nowhere
    with torch.no_grad():
        assert torch.equal(model(y), model(x))


def hint_points(height, width, where):
    """Maps with a hint of colour ab at each (y, x) of ``where`` ({(y, x): (a, b)})."""
    plane, mask = torch.zeros(1, 2, height, width), torch.zeros(1, 1, height, width)
    for (y, x), ab in where.items():
        plane[0, :, y, x] = torch.tensor(ab)
        mask[0, 0, y, x] = 1
    return plane, mask


def test_fill_hints_follows_the_nearest_hint_and_its_reach_grows_with_the_distance():
    """Four hints of different colours: each hinted pixel keeps its colour with reach 0; the fill is close
    to the nearest hint's colour near it and closer to it than the hints' mean colour almost everywhere;
    the reach ranks pixels by their distance to the nearest hint (scipy's distance transform)."""
    where = {(6, 9): (0.4, 0.0), (40, 12): (-0.3, 0.2), (20, 55): (0.0, -0.4), (44, 60): (0.2, 0.3)}
    plane, mask = hint_points(48, 67, where)
    filled = models.fill_hints(plane, mask)[0].numpy()
    for (y, x), ab in where.items():
        assert np.allclose(filled[:2, y, x], ab) and filled[2, y, x] == 0
    distance, (ny, nx) = scipy.ndimage.distance_transform_edt(mask[0, 0].numpy() == 0, return_indices=True)
    nearest = np.stack([plane[0, c].numpy()[ny, nx] for c in range(2)])   # the nearest hint's colour
    error = np.linalg.norm(filled[:2] - nearest, axis=0)
    mean_error = np.linalg.norm(np.mean(list(where.values()), axis=0)[:, None, None] - nearest, axis=0)
    assert error[distance <= 2].mean() < 0.15, error[distance <= 2].mean()    # measured 0.09
    assert np.mean(error < mean_error) > 0.75, np.mean(error < mean_error)    # measured 0.86
    rng = np.random.default_rng(0)
    rhos = []
    for size in ((48, 67), (68, 97), (88, 127)):             # random layouts: rank correlation with distance
        mask = torch.zeros(1, 1, *size)
        mask[0, 0, rng.integers(size[0], size=5), rng.integers(size[1], size=5)] = 1
        reach = models.fill_hints(torch.zeros(1, 2, *size), mask)[0, 2].numpy()
        rhos.append(scipy.stats.spearmanr(scipy.ndimage.distance_transform_edt(mask[0, 0].numpy() == 0).ravel(),
                                          reach.ravel())[0])
    assert np.mean(rhos) > 0.5, rhos                             # measured 0.66, 0.88, 0.65


@pytest.mark.parametrize('size', [(1, 1), (5, 3), (33, 64)])
def test_fill_hints_with_one_hint_paints_its_colour_everywhere_and_without_hints_nothing(size):
    plane, mask = hint_points(*size, {(size[0] - 1, 0): (0.25, -0.1)})
    filled = models.fill_hints(plane, mask)[0]
    assert torch.allclose(filled[:2], torch.tensor([0.25, -0.1])[:, None, None])
    empty = models.fill_hints(torch.zeros_like(plane), torch.zeros_like(mask))[0]
    assert torch.equal(empty[:2], torch.zeros_like(empty[:2])) and torch.equal(empty[2], torch.ones(size))


def test_the_fill_spread_along_edges_keeps_each_hint_in_its_own_region():
    """Two flat regions split by a sharp lightness edge, one hint in each: spread along the edges, the fill
    stays near each region's own hint colour (its mean error a quarter of the plain fill's, which blends
    the two across the edge); hinted pixels keep their colour; a model's fill reads its lightness input."""
    height, width, edge = 48, 64, 32
    lightness = torch.full((1, 1, height, width), 0.2)
    lightness[..., edge:] = 0.8
    where = {(24, 5): (0.4, 0.0), (24, 40): (-0.3, 0.3)}
    plane, mask = hint_points(height, width, where)
    own = torch.zeros(1, 2, height, width)
    own[0, :, :, :edge] = torch.tensor(where[(24, 5)])[:, None, None]
    own[0, :, :, edge:] = torch.tensor(where[(24, 40)])[:, None, None]
    plain = (models.fill_hints(plane, mask)[:, :2] - own).norm(dim=1).mean()
    spread = models.fill_hints(plane, mask, lightness, edge_sigma=0.02, edge_iterations=8)
    error = (spread[:, :2] - own).norm(dim=1).mean()
    assert error < 0.4 * plain, (float(error), float(plain))     # measured 0.061 vs 0.217
    for (y, x), ab in where.items():
        assert torch.allclose(spread[0, :2, y, x], torch.tensor(ab))
    model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6, hint_fill=True,
                               fill_edge_sigma=0.02, fill_edge_iterations=8).eval()
    seen = {}
    model.hint_branch[0].register_forward_pre_hook(lambda module, args: seen.update(input=args[0]))
    x = torch.cat([lightness - 0.5, plane, mask], dim=1)
    with torch.no_grad():
        model(x)
    assert torch.allclose(seen['input'][:, 4:6], spread[:, :2], atol=1e-6)   # the centred lightness: same edges


def test_with_the_fill_the_branch_carries_a_hint_across_the_whole_photo():
    """The same as above with hint_fill: the one hinted pixel now moves the scores far beyond the branch's
    own reach; without the branch's last layer, still nowhere."""
    model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6,
                               hint_fill=True).eval()
    model.copy_params_from(lightness_model())
    torch.manual_seed(1)
    torch.nn.init.normal_(model.hint_branch[-1].weight)
    x = torch.rand(1, 4, 64, 64)
    x[:, 1:] = 0
    y = x.clone()
    y[0, 1:, 32, 32] = torch.tensor([0.3, -0.2, 1.0])
    with torch.no_grad():
        moved = (model(y) - model(x)).abs().sum(1)[0] > 1e-6
    assert moved.float().mean() > 0.95 and moved[0, 0] and moved[-1, -1]
    model.hint_branch[-1].weight.data.zero_()
    with torch.no_grad():
        assert torch.equal(model(y), model(x))


def test_a_trusting_gate_paints_the_filled_hint_colour_bin_everywhere():
    """Grown from a lightness model (its scores all 0) with the gate started to trust the fill
    (``gate_init``): one hint whose colour is bin j's centre makes bin j the most likely at every pixel
    (the nearest bin to the filled colour, bin_scores' peak); without hints nothing moves; with the gate
    started at 0, hints change nothing."""
    angles = torch.arange(N_CLASS) * 2 * np.pi / N_CLASS
    centres = torch.stack([angles.cos(), angles.sin()], 1) * 0.3     # 8 hues at chroma 0.3
    x = torch.rand(1, 4, 48, 64)
    x[:, 1:] = 0
    y = x.clone()
    y[0, 1:3, 10, 50], y[0, 3, 10, 50] = centres[3], 1.0
    for gate_init in (0.0, 5.0):
        model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6,
                                   hint_fill=True, gate_init=gate_init).eval()
        model.copy_params_from(lightness_model())
        model.set_hint_bins(centres)
        with torch.no_grad():
            assert torch.equal(model(x), torch.zeros_like(model(x)))   # no hints: nothing to trust
            if gate_init:
                assert bool((model(y).argmax(1) == 3).all())
            else:
                assert torch.equal(model(y), model(x))                  # the gate at 0: hints change nothing


def test_a_gated_branch_adds_nothing_without_hints_however_it_has_learnt():
    """branch_gated: with the branch's last layer and the gate as after training (non-zero), a model grown
    from a lightness model still computes exactly that model's scores when no hint is given; ungated, the
    branch's own scores change them; with a hint, the gated branch moves them too."""
    plain = lightness_model()
    x = torch.rand(1, 4, 40, 48)
    x[:, 1:] = 0
    y = x.clone()
    y[0, 1:3, 5, 5], y[0, 3, 5, 5] = torch.tensor([0.2, -0.1]), 1.0
    for gated in (True, False):
        model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6,
                                   hint_fill=True, gate_init=1.0, branch_gated=gated).eval()
        model.copy_params_from(plain)
        model.set_hint_bins(torch.randn(N_CLASS, 2) * 0.2)
        torch.manual_seed(1)
        with torch.no_grad():
            model.hint_branch[-1].weight.normal_(0, 0.5)
            model.hint_branch[-1].bias.normal_(0, 0.5)
            assert torch.equal(model(x), plain(x[:, :1])) == gated
            assert not torch.equal(model(y), plain(y[:, :1]))
    with pytest.raises(ValueError, match='branch_gated needs the fill'):
        models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6, branch_gated=True)


@pytest.mark.parametrize('settings, fragment', [
    (dict(hint_branch=0), 'hint_fill: true - the filled hints feed the hint branch'),
    (dict(binning='one-hot'), 'hint_fill: true - the filled hints are scored on joint bins'),
    (dict(hint_fill=False, hint_gate_init=2.0), 'hint_gate_init: 2.0 - the gate weighs the filled hints'),
    (dict(hint_branch=0, hint_fill=False, hint_trunk_lr_mult=0.0), "hint_trunk_lr_mult: 0.0 - a hint model's rate"),
    (dict(hint_fill=False, hint_branch_gated=True), "hint_branch_gated: true - the branch is weighed"),
])
def test_settings_the_filled_hints_cannot_go_with_are_refused_in_one_line(settings, fragment):
    cfg = dict(config.get_config(122), **settings)
    with pytest.raises(config.ConfigError, match=fragment):
        config.check_config(cfg, 'configuration 122')
    config.check_config(dict(config.get_config(122), hint_gate_init=2.0))     # with the fill, fine


def test_the_branch_and_its_gate_learn_at_their_multiples_of_the_rate_and_only_hint_models_have_one():
    cfg = dict(config.get_config(119), lr=1e-3, hint_lr_mult=10.0, hint_gate_lr_mult=30.0)
    model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=cfg['hint_branch'],
                               hint_fill=cfg['hint_fill'])
    optim = run_setup.make_optimizer(model, cfg)
    branch = {id(p) for p in model.hint_branch.parameters()}
    gate = {id(p) for p in model.hint_gate.parameters()}
    rates = {id(p): g['lr'] for g in optim.param_groups for p in g['params']}
    assert all(rates[i] == pytest.approx(1e-2) for i in branch) and all(rates[i] == pytest.approx(3e-2) for i in gate)
    assert all(r == 1e-3 for i, r in rates.items() if i not in branch | gate)
    assert len(rates) == len([p for p in model.parameters() if p.requires_grad])   # every trainable one once
    plain = dict(config.get_config(110))
    assert 'hint_branch' not in run_setup.model_kwargs(plain, type('E', (), {'num_outputs': N_CLASS})())
    try:
        models.build_model('fcn32s', N_CLASS, fc_channels=FC, hint_branch=6)
    except ValueError as e:
        assert 'hint input' in str(e)
    else:
        raise AssertionError('a lightness-only model took a hint branch')
    with pytest.raises(ValueError, match='hint branch'):
        models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_fill=True)
    with pytest.raises(config.ConfigError, match='hint_branch > 0'):
        config.check_config(dict(config.get_config(113), hint_fill=True))


def test_with_the_trunk_rate_at_zero_training_moves_only_the_hint_branch_and_gate():
    """hint_trunk_lr_mult 0: three Adam steps on a loss of hinted inputs change the branch's and the gate's
    weights and no other; at the default 1 the trunk's change too."""
    for trunk_mult in (0.0, 1.0):
        cfg = dict(config.get_config(125), lr=1e-2, hint_trunk_lr_mult=trunk_mult)
        torch.manual_seed(0)
        model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4,
                                   hint_branch=cfg['hint_branch'], hint_fill=True, gate_init=1.0)
        model.set_hint_bins(torch.randn(N_CLASS, 2) * 0.2)
        before = {k: v.clone() for k, v in model.named_parameters()}
        optim = run_setup.make_optimizer(model, cfg)
        x = torch.rand(2, 4, 32, 32)
        x[:, 3] = (torch.rand(2, 32, 32) < 0.05).float()
        for _ in range(3):
            optim.zero_grad()
            model(x).square().mean().backward()
            optim.step()
        moved = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
        hint_weights = {k for k in before if k.startswith(('hint_branch.', 'hint_gate.'))}
        assert moved & hint_weights
        assert (moved <= hint_weights) == (trunk_mult == 0.0)
        assert (moved - hint_weights) or trunk_mult == 0.0


def test_a_run_with_a_branch_and_recolouring_trains_and_colorizes(train, photo_folder, tmp_path):
    """Config 198 with a hint branch reading the filled hints and half of each batch recoloured: two
    iterations, the checkpoint rebuilt from its own model_kwargs (branch, fill) by colorize.load_colorizer."""
    import colorize
    import numpy as np
    import trainer
    run = tmp_path / 'run'
    train('fcn32s', '-c', '198', '-d', photo_folder, '-o', run, '--max-iter', '2', '--set', 'hint_branch=4',
          '--set', 'recolour_share=0.5', '--set', 'hint_fill=true', '--set', 'hint_fill_edge_sigma=0.02',
          '--set', 'hint_gate_init=2')
    ckpt = trainer.load_checkpoint(str(run / trainer.MODEL_BEST))
    assert ckpt['model_kwargs']['hint_branch'] == 4 and ckpt['model_kwargs']['hint_fill']
    assert ckpt['model_kwargs']['gate_init'] == 2.0
    assert ckpt['model_kwargs']['fill_edge_sigma'] == 0.02 and ckpt['model_kwargs']['fill_edge_iterations'] == 8
    assert ckpt['config']['recolour_share'] == 0.5
    colorizer = colorize.load_colorizer(str(run / trainer.MODEL_BEST))
    assert colorizer.model.hint_branch_channels == 4 and colorizer.model.hint_fill
    assert colorizer.model.fill_edge_sigma == 0.02
    photo = np.full((40, 50, 3), 120, np.uint8)
    out = colorizer.colorize(photo, hints=[{'x': 10, 'y': 10, 'color': '#3060c0'}])
    assert out.shape == (40, 50, 3)
