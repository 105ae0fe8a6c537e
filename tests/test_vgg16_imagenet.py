"""--vgg16 imagenet / imagenet_bn / none / PATH: torchvision's ImageNet weights come from the torch hub
cache ($TORCH_HOME/hub/checkpoints/<torchvision's file name>) without network; missing and offline, the
run stops before its folder exists, in one line.  No test touches the network: downloads are made to fail."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import cli
import run_setup
import trainer
from conftest import REPO_DIR, SMOKE_ARGS

VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
POOL_AFTER = {1, 3, 6, 9, 12}   # conv positions followed by max-pooling in torchvision's features


def fake_vgg16_state_dict(batch_norm=False, seed=0):
    """A torchvision vgg16 / vgg16_bn ``features`` state dict with the real key names and shapes.

    conv1 is fully random; the other weights are one random value per output
    channel, stored expanded (stride 0), so the saved file stays a few KB.
    """
    gen = torch.Generator().manual_seed(seed)
    state, index, in_ch = {}, 0, 3
    for position, out_ch in enumerate(VGG16_WIDTHS):
        if position == 0:
            weight = torch.randn(out_ch, in_ch, 3, 3, generator=gen)
        else:
            weight = torch.randn(out_ch, 1, 1, 1, generator=gen).expand(out_ch, in_ch, 3, 3)
        state['features.%d.weight' % index] = weight
        state['features.%d.bias' % index] = torch.randn(out_ch, generator=gen)
        index += 1
        if batch_norm:
            for field in ('weight', 'bias', 'running_mean'):
                state['features.%d.%s' % (index, field)] = torch.randn(out_ch, generator=gen)
            state['features.%d.running_var' % index] = torch.rand(out_ch, generator=gen) + 0.5
            state['features.%d.num_batches_tracked' % index] = torch.tensor(7)
            index += 1
        index += 1 + (position in POOL_AFTER)   # ReLU (and max-pool)
        in_ch = out_ch
    return state


def hub_file(torch_home, name):
    return os.path.join(torch_home, 'hub', 'checkpoints', name)


def no_download(*args, **kwargs):
    raise AssertionError('the network was asked for %r' % (args[:1],))


@pytest.mark.parametrize('choice,file_name,batch_norm', [('imagenet', 'vgg16-397923af.pth', False),
                                                         ('imagenet_bn', 'vgg16_bn-6c64b313.pth', True)])
def test_imagenet_weights_from_the_hub_cache_train_offline(choice, file_name, batch_norm, photo_folder, work_dir,
                                                           train, monkeypatch):
    torch_home = os.path.join(work_dir, 'torch_home')
    path = hub_file(torch_home, file_name)
    os.makedirs(os.path.dirname(path))
    state = fake_vgg16_state_dict(batch_norm)
    torch.save(state, path)
    assert os.path.getsize(path) < 200_000
    monkeypatch.setenv('TORCH_HOME', torch_home)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    built = []
    build_network = run_setup.build_network

    def keep_initial_weights(*args, **kwargs):
        model = build_network(*args, **kwargs)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model
    monkeypatch.setattr(run_setup, 'build_network', keep_initial_weights)
    run_dir = os.path.join(work_dir, 'run')
    with pytest.warns(UserWarning, match='fc6/fc7 not copied'):   # config 199's fc6/fc7 are 32 wide, not 4096
        result = train('fcn32s', '-d', photo_folder, '-o', run_dir, '--max-iter', 2, '--vgg16', choice)
    assert result.iteration == 2
    initial = built[0]
    expected_conv1 = state['features.0.weight'].numpy().mean(axis=1, keepdims=True)   # RGB -> lightness
    np.testing.assert_allclose(initial['conv1_1.weight'].numpy(), expected_conv1, rtol=1e-6, atol=1e-7)
    last_conv = max(int(k.split('.')[1]) for k, v in state.items() if v.ndim == 4)
    np.testing.assert_array_equal(initial['conv5_3.weight'].numpy(), state['features.%d.weight' % last_conv].numpy())
    if batch_norm:
        np.testing.assert_array_equal(initial['bn1_1.running_var'].numpy(), state['features.1.running_var'].numpy())
    with open(path, 'rb') as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(run_dir, 'config.yaml')) as f:
        recorded = yaml.safe_load(f)['vgg16_weights']
    assert recorded == {'source': choice, 'file': os.path.abspath(path), 'sha256_prefix': sha256[:12]}
    with open(os.path.join(run_dir, 'train.log')) as f:
        assert 'initialised the VGG16 trunk from %s (%s, sha256 %s' % (path, choice, sha256[:12]) in f.read()
    assert trainer.load_checkpoint(os.path.join(run_dir, trainer.CHECKPOINT))['vgg16_weights'] == recorded


# runs a train script with every network connection refused (no packet leaves the process)
OFFLINE = r'''
import runpy, socket, sys
def refuse(*args, **kwargs):
    raise OSError('network disabled by the test')
socket.create_connection = refuse
socket.socket.connect = refuse
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.parametrize('choice,file_name', [('imagenet', 'vgg16-397923af.pth'),
                                              ('imagenet_bn', 'vgg16_bn-6c64b313.pth')])
def test_offline_and_not_cached_stops_before_the_run_folder_in_one_line(choice, file_name, photo_folder, work_dir):
    torch_home = os.path.join(work_dir, 'empty_torch_home')
    os.makedirs(torch_home)
    run_dir = os.path.join(work_dir, 'run')
    env = dict(os.environ, TORCH_HOME=torch_home)
    proc = subprocess.run([sys.executable, '-c', OFFLINE, os.path.join(REPO_DIR, 'train_color_fcn32s.py')]
                          + SMOKE_ARGS + ['-d', photo_folder, '-o', run_dir, '--vgg16', choice],
                          capture_output=True, text=True, cwd=REPO_DIR, env=env, timeout=600)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stdout + proc.stderr
    assert file_name in lines[0] and os.path.dirname(hub_file(torch_home, file_name)) in lines[0]
    assert '--vgg16 none' in lines[0] and 'https://download.pytorch.org/models/' + file_name in lines[0]
    assert not os.path.exists(run_dir)
    assert not os.path.exists(hub_file(torch_home, file_name))


def test_none_and_local_files(work_dir):
    assert run_setup.fetch_vgg16(None) is None and run_setup.fetch_vgg16('none') is None
    path = os.path.join(work_dir, 'my_vgg16.pth')
    torch.save(fake_vgg16_state_dict(), path)
    record = run_setup.fetch_vgg16(path)
    with open(path, 'rb') as f:
        assert record == {'source': path, 'file': os.path.abspath(path),
                          'sha256_prefix': hashlib.sha256(f.read()).hexdigest()[:12]}
    np.testing.assert_array_equal(run_setup.vgg16_state_dict(record, {'fc_channels': 32})['features.0.weight'].numpy(),
                                  fake_vgg16_state_dict()['features.0.weight'].numpy())
    with pytest.raises(cli.MissingFile, match='--vgg16 .*missing.pth does not exist'):
        run_setup.fetch_vgg16(os.path.join(work_dir, 'missing.pth'))
