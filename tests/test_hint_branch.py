"""The full-resolution hint branch (models.py, issue 28): a hint model grown from a lightness-only one
computes exactly what that model computed whatever the hints; the branch is a short, local path from a
hint to the scores at its own resolution; its weights learn at hint_lr_mult times the rate; checkpoints
without it load as before."""
import torch

import config
import models
import run_setup

N_CLASS, FC = 8, 16


def lightness_model(arch='fcn32s'):
    torch.manual_seed(0)
    return models.build_model(arch, N_CLASS, fc_channels=FC).eval()


def test_a_hint_model_with_a_branch_grown_from_a_lightness_model_computes_what_it_did_whatever_the_hints():
    for arch in ('fcn32s', 'fcn16s', 'fcn8s'):
        plain = lightness_model(arch)
        grown = models.build_model(arch, N_CLASS, fc_channels=FC, in_channels=4, hint_branch=6).eval()
        grown.copy_params_from(plain)
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


def test_the_branch_learns_at_hint_lr_mult_times_the_rate_and_only_hint_models_have_one():
    cfg = dict(config.get_config(116), lr=1e-3, hint_lr_mult=10.0)
    model = models.build_model('fcn32s', N_CLASS, fc_channels=FC, in_channels=4, hint_branch=cfg['hint_branch'])
    optim = run_setup.make_optimizer(model, cfg)
    branch = {id(p) for p in model.hint_branch.parameters()}
    rates = {id(p): g['lr'] for g in optim.param_groups for p in g['params']}
    assert all(rates[i] == 1e-2 for i in branch) and all(r == 1e-3 for i, r in rates.items() if i not in branch)
    assert len(rates) == len([p for p in model.parameters() if p.requires_grad])   # every trainable one once
    plain = dict(config.get_config(110))
    assert 'hint_branch' not in run_setup.model_kwargs(plain, type('E', (), {'num_outputs': N_CLASS})())
    try:
        models.build_model('fcn32s', N_CLASS, fc_channels=FC, hint_branch=6)
    except ValueError as e:
        assert 'hint input' in str(e)
    else:
        raise AssertionError('a lightness-only model took a hint branch')


def test_a_run_with_a_branch_and_recolouring_trains_and_colorizes(train, photo_folder, tmp_path):
    """Config 198 with a hint branch and half of each batch recoloured: two iterations, the checkpoint
    rebuilt from its own model_kwargs (branch included) by colorize.load_colorizer, with hints."""
    import colorize
    import numpy as np
    import trainer
    run = tmp_path / 'run'
    train('fcn32s', '-c', '198', '-d', photo_folder, '-o', run, '--max-iter', '2', '--set', 'hint_branch=4',
          '--set', 'recolour_share=0.5')
    ckpt = trainer.load_checkpoint(str(run / trainer.MODEL_BEST))
    assert ckpt['model_kwargs']['hint_branch'] == 4 and ckpt['config']['recolour_share'] == 0.5
    colorizer = colorize.load_colorizer(str(run / trainer.MODEL_BEST))
    assert colorizer.model.hint_branch_channels == 4
    photo = np.full((40, 50, 3), 120, np.uint8)
    out = colorizer.colorize(photo, hints=[{'x': 10, 'y': 10, 'color': '#3060c0'}])
    assert out.shape == (40, 50, 3)
