"""The photos of experiments/quality.py: the folder's checks, k folds by photo, and the rule that picks a
candidate on them.

Two validation photos decide nothing (a stage chosen on them scored worse on the test split than the
ones it beat), so every choice of the experiment is made on the mean over k folds of the photos that
are not in the test split: fold f's model trains on the other folds and is scored on fold f.  A
photo's fold follows the rule of ``get_photos.split_photos``: near-duplicates form one group, groups
are ordered by a hash of their key and dealt round-robin into the folds, so a fold depends only on the
set of photos.

The selection rule (``config.QUALITY_EXPERIMENT['selection']``): among the candidates whose mean plain
AuC is within ``auc_points`` points of grayscale's on the same folds (a model that paints wrong colours
loses plain AuC to grayscale), the highest mean ``metric`` (rebalanced AuC: colour where colour is
rare); a tie goes to the higher plain AuC, then to the candidate listed first.  When no candidate
qualifies, the one with the highest plain AuC.
"""
import os

import config
import data_loader
import get_photos
from quality_runs import UserError

SELECTION = config.QUALITY_EXPERIMENT['selection']


def make_folds(relatives, k):
    """Photo paths (relative to the folder) -> ``k`` disjoint sorted lists covering them, near-duplicates
    together; raises ValueError with fewer than ``k`` groups."""
    groups = {}
    for rel in relatives:
        groups.setdefault(get_photos.group_of(rel), []).append(rel)
    if len(groups) < k:
        raise ValueError('%d folds need at least %d photos outside the test split (there are %d groups of '
                         'near-duplicates): use fewer --folds' % (k, k, len(groups)))
    order = sorted(groups, key=get_photos.hash_rank)
    return [sorted(rel for key in order[f::k] for rel in groups[key]) for f in range(k)]


def non_test_photos(photos, test_list):
    """The photos of ``photos``' split_train.txt and split_val.txt minus any of ``test_list``, sorted."""
    test = set(data_loader.read_list(test_list))
    listed = []
    for name in ('split_train.txt', 'split_val.txt'):
        path = os.path.join(photos, name)
        if os.path.isfile(path):
            listed += data_loader.read_list(path)
    return sorted(set(listed) - test)


def photo_share(photos, share):
    """The first ``share`` of ``photos``' groups of near-duplicates in hash order (at least one): nested, so a
    larger share holds every photo of a smaller one."""
    groups = {}
    for rel in photos:
        groups.setdefault(get_photos.group_of(rel), []).append(rel)
    order = sorted(groups, key=get_photos.hash_rank)
    return sorted(rel for key in order[:max(1, int(round(share * len(order))))] for rel in groups[key])


def fold_lists(folds, held_out):
    """(training photos, validation photos) of fold ``held_out``: every other fold, and that fold."""
    return sorted(p for f, fold in enumerate(folds) if f != held_out for p in fold), list(folds[held_out])


def select(candidates, rule=None):
    """{name: summary} in the table's order (summary: {'model': {metric: {'mean': ...}}, 'grayscale': ...},
    means over the same folds) -> {'chosen', 'qualified' (names), 'rule' (one sentence)}; chosen None when
    nothing is scored."""
    rule = rule or SELECTION
    scored = [(i, name, s) for i, (name, s) in enumerate(candidates.items()) if s]
    text = ('the highest mean %s among the candidates whose mean plain AuC is within %g point(s) of '
            "grayscale's on the same folds (ties: higher plain AuC, then the first listed; none qualifying: the "
            'highest plain AuC)' % (rule['metric'], rule['auc_points']))
    if not scored:
        return {'chosen': None, 'qualified': [], 'rule': text}

    def mean(s, method, key):
        return s[method][key]['mean']
    qualified = [(i, n, s) for i, n, s in scored
                 if mean(s, 'model', 'auc') >= mean(s, 'grayscale', 'auc') - rule['auc_points']]
    if qualified:
        best = max(qualified, key=lambda c: (mean(c[2], 'model', rule['metric']), mean(c[2], 'model', 'auc'), -c[0]))
    else:
        best = max(scored, key=lambda c: (mean(c[2], 'model', 'auc'), -c[0]))
    return {'chosen': best[1], 'qualified': [n for _, n, _ in qualified], 'rule': text}


def check_photos(args):
    """Fill args.val_list / args.test_list; raise UserError for a folder that cannot be used."""
    photos = args.photos
    if not os.path.isdir(photos):
        raise UserError('--photos %s is not a folder (make one with experiments/get_photos.py --out %s)'
                        % (photos, photos))
    if not os.access(photos, os.R_OK | os.X_OK):
        raise UserError('--photos %s cannot be read (permissions)' % photos)
    imagenet = data_loader.is_imagenet_root(photos)
    if not imagenet and not data_loader.find_images(photos):
        raise UserError('--photos %s holds no photo (%s): make one with experiments/get_photos.py --out %s'
                        % (photos, ', '.join(data_loader.IMAGE_EXTENSIONS), photos))
    needed = [] if imagenet else ['split_train.txt']
    for attr, name in (('val_list', 'split_val.txt'), ('test_list', 'split_test.txt')):
        if getattr(args, attr) is None:
            setattr(args, attr, os.path.join(photos, name))
            needed.append(name)
    missing = [n for n in needed if not os.path.isfile(os.path.join(photos, n))]
    for attr in ('val_list', 'test_list'):
        path = getattr(args, attr)
        if not os.path.isfile(path) and os.path.basename(path) not in missing:
            missing.append(path)
    if missing:
        raise UserError('--photos %s has no %s: split it with experiments/get_photos.py, or pass '
                        '--val-list / --test-list' % (photos, ', '.join(missing)))
    for attr in ('val_list', 'test_list'):
        if not data_loader.read_list(getattr(args, attr)):
            raise UserError('%s lists no photo' % getattr(args, attr))


def split_sizes(args):
    sizes = {}
    for split, path in (('train', os.path.join(args.photos, 'split_train.txt')),
                        ('val', args.val_list), ('test', args.test_list)):
        sizes[split] = len(data_loader.read_list(path)) if os.path.isfile(path) else None
    return sizes
