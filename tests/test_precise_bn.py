"""Precise BN (trainer.recompute_bn_statistics, issue 27): BatchNorm's running statistics recomputed with
the final weights equal the means of the batches' own statistics, computed here by hand; a run with
precise_bn_batches ends with them, a run without keeps the momentum averages."""
import torch

import models
import trainer


def test_recomputed_statistics_are_the_means_of_the_batches_own():
    torch.manual_seed(0)
    model = models.build_model('fcn32s', 8, fc_channels=16)
    batches = [torch.randn(3, 1, 32, 32) * (1 + i) + i for i in range(4)]
    model.bn1_1.running_mean.fill_(5.0)                 # stale statistics
    model.bn1_1.running_var.fill_(9.0)
    seen = trainer.recompute_bn_statistics(model, iter(batches + [torch.zeros(3, 1, 32, 32)]), 4)
    assert seen == 4 and model.bn1_1.momentum == 0.1    # the fifth batch not used, the momentum restored
    with torch.no_grad():
        acts = [model.conv1_1(x) for x in batches]      # bn1_1's inputs (conv1_1 is the first layer)
    means = torch.stack([a.mean((0, 2, 3)) for a in acts]).mean(0)
    variances = torch.stack([a.transpose(0, 1).flatten(1).var(1, unbiased=True) for a in acts]).mean(0)
    torch.testing.assert_close(model.bn1_1.running_mean, means, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.bn1_1.running_var, variances, atol=1e-4, rtol=1e-4)
    assert int(model.bn1_1.num_batches_tracked) == 4


def test_a_run_ends_with_precise_statistics_only_when_asked(train, photo_folder, tmp_path):
    def final_stats(run, *sets):
        train('fcn32s', '-d', photo_folder, '-o', run, '--max-iter', '3', *sets)
        state = trainer.load_checkpoint(str(run / 'checkpoint.pth.tar'))['model_state_dict']
        return state['bn1_1.num_batches_tracked'], state['bn7.running_mean']
    tracked_off, mean_off = final_stats(tmp_path / 'off')
    tracked_on, mean_on = final_stats(tmp_path / 'on', '--set', 'precise_bn_batches=2')
    assert int(tracked_off) == 3 and int(tracked_on) == 2    # 3 training steps; then 2 batches, counted anew
    assert not torch.equal(mean_on, mean_off)
