"""Training experiments/quality.py's runs as child processes (``train_color_fcn*s.py``, forked from a
server that imported torch once) and scoring them in this process (``evaluate.main``), with progress
lines, their output in each run's ``quality.log``, and every finished run or score reused: a run folder
holds ``quality_run.json`` once trained, an evaluation folder its ``metrics.json`` once scored; a folder
that cannot be continued is set aside, never deleted."""
import datetime
import json
import os
import runpy
import shutil
import sys
import time
import traceback

import config

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = config.QUALITY_EXPERIMENT
DONE_MARKER = 'quality_run.json'     # written into a run folder once its training finished
FINAL_MODEL = 'checkpoint.pth.tar'   # the trainer's checkpoint at the last iteration
MODEL_SELECTION = 'final'            # recorded in DONE_MARKER: later stages start from the final model
RESUME_ONLY_KEYS = ('optim_state_dict', 'scaler_state_dict', 'sample_in_epoch', 'validated_at', 'log_rows',
                    'rng', 'world_size', 'elapsed_time', 'nonfinite_steps')  # not needed to colorize
PROGRESS_EVERY_S = 60                # a progress line per running child at most this often


def duration(seconds):
    """Seconds as "4m 05s" (or "45s" under a minute), for progress lines and reports."""
    seconds = int(round(seconds))
    return '%dm %02ds' % (seconds // 60, seconds % 60) if seconds >= 60 else '%ds' % seconds


class UserError(Exception):
    """A mistake in the command line or the photo folder: one ``error:`` line, exit status 2."""


def set_pairs(overrides):
    """{'rebalance_lambda': None} -> ['rebalance_lambda=null'] (YAML values, as --set reads them)."""
    import yaml
    return ['%s=%s' % (k, yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip())
            for k, v in sorted(overrides.items())]


def stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M:%S')


def say(text):
    print('[%s] %s' % (stamp(), text), flush=True)


def count_iterations(run_dir):
    """Training rows in log.csv so far (one per iteration), for progress lines."""
    try:
        with open(os.path.join(run_dir, 'log.csv')) as f:
            next(f, None)   # the header
            return sum(1 for line in f if line.split(',')[2:3] not in ([''], []))
    except OSError:
        return 0


def run_script(script, argv, log_path):
    """In a process forked by :func:`runtime.fresh_process_context`: ``python SCRIPT ARGV`` from the
    repository, what it prints appended to ``log_path``; its exit status is the process's."""
    import multiprocessing
    multiprocessing.set_start_method(None, force=True)   # its DataLoader workers start as a new interpreter's
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(REPO_DIR)
    sys.argv = [script] + list(argv)
    runpy.run_path(script, run_name='__main__')


def run_child(command, log_path, label, run_dir=None, total=None):
    """Run ``command`` (``[sys.executable, SCRIPT, ARGS...]``) in a fresh process forked from a server
    that imported torch once (:func:`run_script`), its output appended to ``log_path``; progress lines
    while it runs.  Returns (exit status, wall seconds)."""
    import runtime
    assert command[0] == sys.executable, command
    start = time.time()
    with open(log_path, 'a') as log:
        log.write('\n$ %s\n' % ' '.join(command))
    child = runtime.fresh_process_context().Process(target=run_script, args=(command[1], command[2:], log_path))
    child.start()
    last = start
    try:
        while child.exitcode is None:
            child.join(5)
            if child.exitcode is None and time.time() - last >= PROGRESS_EVERY_S:
                last = time.time()
                progress = ' iteration %d/%d,' % (count_iterations(run_dir), total) if run_dir else ''
                say('  ... %s:%s %s' % (label, progress, duration(last - start)))
    except KeyboardInterrupt:
        child.terminate()
        child.join()
        raise
    return child.exitcode, time.time() - start


def score(argv, log_path):
    """``evaluate.py ARGV`` in this process (threads may score side by side), what it prints appended to
    ``log_path``; an error or a crash is written there and gives a non-zero status, as a child's would.
    Returns (exit status, wall seconds)."""
    import cli
    import evaluate
    start = time.time()
    with open(log_path, 'a') as log:
        log.write('\n$ evaluate.py %s   (in quality.py\'s process)\n' % ' '.join(argv))
        log.flush()
        try:
            status = evaluate.main(argv, log=log)
        except SystemExit as stop:            # argparse's refusal
            status = stop.code
        except cli.USER_ERRORS as err:
            log.write('error: %s\n' % err)
            status = cli.USAGE_ERROR
        except Exception:                     # a bug of ours: its traceback in the log, the others go on
            log.write(traceback.format_exc())
            status = 1
    return status, time.time() - start


def tail(path, lines=8):
    try:
        with open(path) as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def file_stamp(path):
    """[size, mtime in ns] of a file: which version of a model a score or a sweep was made from."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def write_json(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def set_aside(run_dir, why):
    """A run folder that cannot be continued is renamed RUN.<why>-N beside, never deleted."""
    n = 1
    while os.path.exists('%s.%s-%d' % (run_dir, why, n)):
        n += 1
    os.replace(run_dir, '%s.%s-%d' % (run_dir, why, n))
    return '%s.%s-%d' % (run_dir, why, n)


def train(run, args):
    """Train ``run`` unless its folder already holds the finished run; True when it is usable."""
    marker = read_json(os.path.join(run.dir, DONE_MARKER))
    if marker is not None and run.previous is not None and marker.get('selection') != MODEL_SELECTION:
        # started from the previous stage's lowest-validation-loss model by an earlier version: kept aside
        say('note   %s: started from another model of its previous stage, kept as %s'
            % (run.name, set_aside(run.dir, 'superseded')))
        marker = None
    if marker is not None and os.path.isfile(run.model):
        if marker['iterations'] != run.iterations:
            raise UserError('%s was trained for %d iterations, this budget asks for %d: use another --out'
                            % (run.dir, marker['iterations'], run.iterations))
        return True
    if run.previous is not None and (run.previous.failed or not os.path.isfile(os.path.join(run.previous.dir,
                                                                                            DONE_MARKER))):
        say('skip   %s: its previous stage did not finish' % run.name)
        run.failed = True
        return False
    script = os.path.join(REPO_DIR, 'train_color_%s.py' % run.arch)
    checkpoint = os.path.join(run.dir, 'checkpoint.pth.tar')
    if os.path.isfile(checkpoint):
        command = [sys.executable, script, '--resume', checkpoint]
        how = 'resume'
    else:
        if os.path.exists(os.path.join(run.dir, 'log.csv')):
            say('note   %s: interrupted before its first checkpoint, kept as %s'
                % (run.name, set_aside(run.dir, 'interrupted')))
        command = [sys.executable, script, '-c', str(run.config_number), '-d', args.photos, '-o', run.dir]
        if run.lists.get('train'):   # the trainer reads a run folder's split lists first
            os.makedirs(run.dir, exist_ok=True)
            for split in ('train', 'val'):
                shutil.copyfile(run.lists[split], os.path.join(run.dir, 'split_%s.txt' % split))
        for pair in list(args.overrides) + set_pairs(dict(run.overrides, seed=run.seed)):
            command += ['--set', pair]
        if run.previous is not None:
            command += ['-m', run.previous.model]
        how = 'train'
    command += ['--max-iter', str(run.iterations)]
    os.makedirs(run.dir, exist_ok=True)
    log_path = os.path.join(run.dir, 'quality.log')
    say('%-6s %s: %d iterations (budget %s)' % (how, run.name, run.iterations, duration(run.budget_s)))
    status, wall = run_child(command, log_path, run.name, run.dir, run.iterations)
    if status != 0 or not os.path.isfile(run.model):
        say('FAILED %s (exit status %d) after %s; see %s:\n%s' % (run.name, status, duration(wall), log_path,
                                                                tail(log_path)))
        run.failed = True
        return False
    previous = marker['wall_s'] if marker else 0.0
    write_json(os.path.join(run.dir, DONE_MARKER), {
        'iterations': run.iterations, 'budget_s': run.budget_s, 'wall_s': wall + previous,
        'seed': run.seed, 'config': run.config_number, 'overrides': run.overrides, 'command': command,
        'selection': MODEL_SELECTION})
    say('done   %s in %s' % (run.name, duration(wall)))
    if wall > EXPERIMENT['overrun_warning'] * run.budget_s + 60:
        say('warning: %s took %s for a budget of %s: this machine (or its load) is slower than the '
            'reference; the results are the same, only later' % (run.name, duration(wall), duration(run.budget_s)))
    return True


def decoding_of(label):
    """A decoding of ``QUALITY_EXPERIMENT['decodings']`` -> (decode, temperature or None): 'annealed-T0.2'
    -> ('annealed', 0.2), 'mode' -> ('mode', None)."""
    return tuple(EXPERIMENT['decodings'][label])


def decoding_argv(label):
    """The same as evaluate.py's flags: 'annealed-T0.2' -> ['--decode', 'annealed', '-T', '0.2']."""
    decode, temperature = decoding_of(label)
    return ['--decode', decode] + (['-T', repr(temperature)] if temperature is not None else [])


def evaluate(run, split, decode, args):
    """metrics.json of ``run`` on ``split`` decoded by ``decode``, its photos scaled to ``run.max_side(split)``
    (reused when present at that size), or None."""
    out = run.eval_dir(split, decode)
    max_side = run.max_side(split)
    found = read_json(os.path.join(out, 'metrics.json'))
    if found is not None and found.get('max_side') == max_side:
        return found
    if found is not None:   # scored at another size by an earlier version: kept aside
        say('note   %s: scored at another size, kept as %s' % (run.name, set_aside(out, 'other-size')))
    tmp = out + '.tmp'
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)  # a half-written evaluation of our own
    argv = ['-m', run.model, '-d', args.photos, '--list', run.lists[split], '-o', tmp] + decoding_argv(decode)
    if max_side is not None:
        argv += ['--max-side', str(max_side)]
    label = '%s on %s (%s)' % (run.name, split, decode)
    status, wall = score(argv, os.path.join(run.dir, 'quality.log'))
    if status != 0 or not os.path.isfile(os.path.join(tmp, 'metrics.json')):
        say('FAILED evaluating %s (exit status %d); see %s' % (label, status, os.path.join(run.dir, 'quality.log')))
        return None
    metrics = read_json(os.path.join(tmp, 'metrics.json'))
    metrics['wall_s'] = wall
    write_json(os.path.join(tmp, 'metrics.json'), metrics)
    os.replace(tmp, out)
    say('scored %s in %s: model AuC rebal. %.2f %% (grayscale %.2f %%)'
        % (label, duration(wall), metrics['model']['auc_rebal'], metrics['grayscale']['auc_rebal']))
    return metrics


def save_colorizer_checkpoint(source, target, decoding=None, hint_method=None):
    """``source`` checkpoint without what only resuming needs (optimizer, RNG states), atomically;
    ``decoding`` (a label of ``QUALITY_EXPERIMENT['decodings']``) and ``hint_method`` (of
    ``config.HINT_METHODS``): written into its config, so that colorize.py, evaluate.py and the page
    decode and spread hints as the experiment chose."""
    import torch
    import models
    ckpt = models.load_checkpoint(source)
    if decoding is not None:
        decode, temperature = decoding_of(decoding)
        ckpt['config'] = dict(ckpt['config'], decode=decode)
        if temperature is not None:
            ckpt['config']['temperature'] = temperature
    if hint_method is not None:
        ckpt['config'] = dict(ckpt['config'], hint_method=hint_method)
    tmp = target + '.tmp'
    torch.save({k: v for k, v in ckpt.items() if k not in RESUME_ONLY_KEYS}, tmp)
    os.replace(tmp, target)
