"""Build the training/tuning photo folder of issue 11 from packages anyone can install.

    python experiments/get_photos.py --out DIR

Sources (nothing else goes into training or tuning; photos of any other package stay
free for independent evaluation):

* Debian ``lomiri-wallpapers-16.04`` (every photo but the abstract ``umang_*``) and
  ``lomiri-wallpapers-20.04`` (``Kleiber_*`` only), fetched with ``apt-get download``
  and unpacked with ``dpkg-deb -x``; licences from each package's copyright file.
* The natural colour photos that scikit-image, scikit-learn (``load_sample_images``)
  and matplotlib (``sample_data``) ship, copied from the installed packages.

Files are copied as shipped (no re-encoding, no downscaling) to ``DIR/<source>/<name>``;
``DIR/SOURCES.txt`` names each one's package, version and licence (tab-separated), and
``DIR/split_{train,val,test}.txt`` split them by photo (~70/10/20, see :func:`split_photos`).
Re-running into the same DIR rewrites the same files.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata

SPLIT_SHARES = (('train', 0.7), ('val', 0.1), ('test', 0.2))

# Debian package -> which of its photos are natural photos (by file-name prefix)
DEB_PACKAGES = {
    'lomiri-wallpapers-16.04': dict(exclude=('umang_',)),     # umang_*: an abstract graphic
    'lomiri-wallpapers-20.04': dict(include=('Kleiber_',)),   # the others: artwork, not photos
}
DEB_PHOTO_DIR = os.path.join('usr', 'share', 'backgrounds')
DEB_PHOTO_EXTENSIONS = ('.jpg', '.jpeg', '.png')

# Natural colour photos shipped inside Python packages: (package, distribution, file relative
# to the package, licence).  Left out of scikit-image: hubble_deep_field (astronomy),
# retina and ihc (medical / microscopy), color.png (a synthetic colour wheel), phantom,
# chessboard, logo, horse (drawings and test patterns) and the grey images.  Left out of
# matplotlib: the icon and logo PNGs.
PACKAGE_PHOTOS = (
    ('scikit-image', 'scikit-image', 'skimage/data/astronaut.png', 'public domain (NASA)'),
    ('scikit-image', 'scikit-image', 'skimage/data/chelsea.png', 'CC0 (Stefan van der Walt)'),
    ('scikit-image', 'scikit-image', 'skimage/data/coffee.png', 'CC0 (Rachel Michetti)'),
    ('scikit-image', 'scikit-image', 'skimage/data/rocket.jpg', 'public domain (SpaceX)'),
    ('scikit-image', 'scikit-image', 'skimage/data/motorcycle_left.png',
     'Middlebury 2014 stereo benchmark, shipped under scikit-image BSD-3-Clause'),
    ('scikit-image', 'scikit-image', 'skimage/data/motorcycle_right.png',
     'Middlebury 2014 stereo benchmark, shipped under scikit-image BSD-3-Clause'),
    ('scikit-learn', 'scikit-learn', 'sklearn/datasets/images/china.jpg', 'CC-BY-2.0 (danielbuechele)'),
    ('scikit-learn', 'scikit-learn', 'sklearn/datasets/images/flower.jpg', 'CC-BY-2.0 (vultilion)'),
    ('matplotlib', 'matplotlib', 'matplotlib/mpl-data/sample_data/grace_hopper.jpg',
     'public domain (U.S. Navy photograph)'),
)

# photos that are (nearly) the same picture: one group, one split
NEAR_DUPLICATES = {
    'scikit-image/motorcycle_left.png': 'scikit-image/motorcycle',
    'scikit-image/motorcycle_right.png': 'scikit-image/motorcycle',
}


class SetupError(Exception):
    """Something the user must fix (the message says what); printed as one ``error:`` line."""


# --------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------

def parse_copyright(text):
    """Machine-readable Debian copyright file -> {file base name: licence short name}."""
    licences = {}
    for stanza in re.split(r'\n\s*\n', text):
        files = re.search(r'^Files:(.*(?:\n[ \t].*)*)', stanza, re.M)
        licence = re.search(r'^License:[ \t]*(\S.*)$', stanza, re.M)
        if files and licence:
            for pattern in files.group(1).split():
                licences[os.path.basename(pattern)] = licence.group(1).strip()
    return licences


def is_wanted(name, package):
    rule = DEB_PACKAGES[package]
    if not name.lower().endswith(DEB_PHOTO_EXTENSIONS):
        return False
    if 'include' in rule and not name.startswith(rule['include']):
        return False
    return not name.startswith(rule.get('exclude', ()))


def debian_photos(tree, package, version):
    """Photos of one unpacked package ``tree``: [(relative path in DIR, source file, origin, licence)]."""
    copyright_path = os.path.join(tree, 'usr', 'share', 'doc', package, 'copyright')
    if not os.path.isfile(copyright_path):
        raise SetupError('%s has no copyright file %s: not an unpacked %s package' % (tree, copyright_path, package))
    with open(copyright_path, encoding='utf-8') as f:
        licences = parse_copyright(f.read())
    photo_dir = os.path.join(tree, DEB_PHOTO_DIR)
    photos = []
    for name in sorted(os.listdir(photo_dir)) if os.path.isdir(photo_dir) else []:
        if is_wanted(name, package):
            if name not in licences:
                raise SetupError('%s names no licence for %s' % (copyright_path, name))
            photos.append(('%s/%s' % (package, name), os.path.join(photo_dir, name),
                           '%s %s' % (package, version), licences[name]))
    return photos


def fetch_debian_packages(work_dir):
    """apt-get download + dpkg-deb -x of :data:`DEB_PACKAGES` -> {package: (unpacked tree, version)}."""
    for tool in ('apt-get', 'dpkg-deb'):
        if shutil.which(tool) is None:
            raise SetupError('%s not found: this script needs a Debian/Ubuntu system with apt '
                             '(it downloads %s)' % (tool, ' and '.join(DEB_PACKAGES)))
    packages = list(DEB_PACKAGES)
    download = ['apt-get', 'download'] + packages
    if subprocess.run(download, cwd=work_dir, capture_output=True).returncode != 0:
        subprocess.run(['apt-get', 'update'], capture_output=True)   # package lists may be missing
        done = subprocess.run(download, cwd=work_dir, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ['no message'])[-1]
            raise SetupError('apt-get download %s failed (%s): enable a Debian bookworm or newer '
                             'repository, or run as root so apt-get update can fetch the lists'
                             % (' '.join(packages), last))
    trees = {}
    for package in packages:
        debs = sorted(f for f in os.listdir(work_dir) if f.startswith(package + '_') and f.endswith('.deb'))
        if not debs:
            raise SetupError('apt-get download left no %s_*.deb in %s' % (package, work_dir))
        deb = os.path.join(work_dir, debs[-1])
        version = subprocess.run(['dpkg-deb', '-f', deb, 'Version'], capture_output=True, text=True,
                                 check=True).stdout.strip()
        tree = os.path.join(work_dir, package)
        subprocess.run(['dpkg-deb', '-x', deb, tree], check=True)
        trees[package] = (tree, version)
    return trees


# --------------------------------------------------------------------------
# Python packages
# --------------------------------------------------------------------------

def package_photos():
    """The photos of :data:`PACKAGE_PHOTOS` in the installed packages: same tuples as :func:`debian_photos`."""
    photos = []
    for source, distribution, relative, licence in PACKAGE_PHOTOS:
        dist = metadata.distribution(distribution)
        path = str(dist.locate_file(relative))
        if not os.path.isfile(path):
            raise SetupError('%s is not in the installed %s %s' % (relative, distribution, dist.version))
        photos.append(('%s/%s' % (source, os.path.basename(relative)), path,
                       '%s %s (Python)' % (distribution, dist.version), licence))
    return photos


# --------------------------------------------------------------------------
# the folder
# --------------------------------------------------------------------------

def same_file_contents(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


def copy_as_shipped(source, target):
    """Byte-for-byte copy through a temporary file; a target already equal is left alone."""
    if os.path.isfile(target) and same_file_contents(source, target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = '%s.tmp%d' % (target, os.getpid())
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_text(path, lines):
    tmp = '%s.tmp%d' % (path, os.getpid())
    with open(tmp, 'w', encoding='utf-8') as f:
        f.writelines(line + '\n' for line in lines)
    os.replace(tmp, path)


def group_of(relative):
    return NEAR_DUPLICATES.get(relative, relative)


def hash_rank(key):
    return hashlib.sha1(key.encode('utf-8')).hexdigest()


def split_photos(relatives, shares=SPLIT_SHARES):
    """{split: sorted relative paths}: groups of near-duplicates ordered by a hash of their key,
    then cut into ``shares``.  With >= 3 groups every split gets at least one; the split of a
    group depends only on the set of group keys."""
    groups = {}
    for rel in relatives:
        groups.setdefault(group_of(rel), []).append(rel)
    order = sorted(groups, key=hash_rank)
    n = len(order)
    counts = [int(round(share * n)) for _, share in shares[1:]]
    if n >= len(shares):
        counts = [max(1, c) for c in counts]
    counts = [min(c, n - sum(counts[:i])) for i, c in enumerate(counts)]
    counts.insert(0, n - sum(counts))
    splits, start = {}, 0
    for (name, _), count in zip(shares, counts):
        splits[name] = sorted(rel for key in order[start:start + count] for rel in groups[key])
        start += count
    return splits


def build_folder(out, photos):
    """Copy ``photos`` (see :func:`debian_photos`) into ``out``; write SOURCES.txt and the split lists."""
    seen = set()
    for relative, source, _, _ in photos:
        if relative in seen:
            raise SetupError('two photos named %s' % relative)
        seen.add(relative)
        copy_as_shipped(source, os.path.join(out, relative))
    write_text(os.path.join(out, 'SOURCES.txt'),
               ['%s\t%s\t%s' % (rel, origin, licence) for rel, _, origin, licence in sorted(photos)])
    splits = split_photos([p[0] for p in photos])
    for name, files in splits.items():
        write_text(os.path.join(out, 'split_%s.txt' % name), files)
    return splits


def summary(photos, splits):
    lines = []
    per_source = {}
    for relative, _, _, _ in photos:
        per_source[relative.split('/')[0]] = per_source.get(relative.split('/')[0], 0) + 1
    for source, count in sorted(per_source.items()):
        lines.append('%-26s %3d photos' % (source, count))
    lines.append('split: ' + ', '.join('%s %d' % (name, len(files)) for name, files in splits.items()))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='folder to build (created; re-running is safe)')
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix='get-photos-') as work_dir:
            trees = fetch_debian_packages(work_dir)
            os.makedirs(args.out, exist_ok=True)
            photos = [p for package, (tree, version) in trees.items()
                      for p in debian_photos(tree, package, version)]
            photos += package_photos()
            splits = build_folder(args.out, photos)
    except (SetupError, OSError, subprocess.CalledProcessError, metadata.PackageNotFoundError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    print(summary(photos, splits))
    print('wrote %d photos, SOURCES.txt and split_{train,val,test}.txt to %s' % (len(photos), args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
