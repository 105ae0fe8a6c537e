"""experiments/get_photos.py without the network: a fake unpacked Debian package tree for the
selection, licences, copies, SOURCES.txt and the split; the Python packages' photos for real."""
import os
import sys

import pytest

from conftest import REPO_DIR

sys.path.insert(0, os.path.join(REPO_DIR, 'experiments'))
import get_photos  # noqa: E402

COPYRIGHT = '''Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: lomiri-wallpapers

Files: 16.04/lake_by_A.jpg
Copyright: A, 2018
License: CC-BY-4.0

Files: 16.04/umang_by_B.jpg
Copyright: B, 2018
License: CC-BY-4.0

Files: 16.04/hill_by_C.jpg
 16.04/tree_by_C.jpg
Copyright: C, 2018
License: CC0-1.0

Files: 20.04/Kleiber_by_D.jpg
Copyright: 2021, D
License: CC-BY-SA-3.0

Files: 20.04/Fossa_by_E.jpg
Copyright: 2023, E
License: CC-BY-SA-3.0

Files: debian/*
Copyright: 2018, F
License: Expat

License: Expat
 Permission is hereby granted ...
'''


def fake_package(root, package, names):
    """An unpacked package: its copyright file and photos whose bytes name them."""
    doc = root / 'usr' / 'share' / 'doc' / package
    doc.mkdir(parents=True)
    (doc / 'copyright').write_text(COPYRIGHT)
    photos = root / 'usr' / 'share' / 'backgrounds'
    photos.mkdir(parents=True, exist_ok=True)
    for name in names:
        (photos / name).write_bytes(b'\xff\xd8 not re-encoded: ' + name.encode())
    return str(root)


@pytest.fixture
def fake_photos(tmp_path):
    names = ['lake_by_A.jpg', 'umang_by_B.jpg', 'hill_by_C.jpg', 'tree_by_C.jpg', 'Kleiber_by_D.jpg',
             'Fossa_by_E.jpg']
    old = fake_package(tmp_path / 'old', 'lomiri-wallpapers-16.04', names)
    new = fake_package(tmp_path / 'new', 'lomiri-wallpapers-20.04', names)
    return (get_photos.debian_photos(old, 'lomiri-wallpapers-16.04', '1.0-1')
            + get_photos.debian_photos(new, 'lomiri-wallpapers-20.04', '2.0-1'))


def test_natural_photos_and_their_licences_are_picked_from_the_packages(fake_photos):
    picked = {rel: (origin, licence) for rel, _, origin, licence in fake_photos}
    assert picked == {
        # 16.04: all but umang_*; the copyright file's own stanza for each (continuation lines too)
        'lomiri-wallpapers-16.04/Fossa_by_E.jpg': ('lomiri-wallpapers-16.04 1.0-1', 'CC-BY-SA-3.0'),
        'lomiri-wallpapers-16.04/Kleiber_by_D.jpg': ('lomiri-wallpapers-16.04 1.0-1', 'CC-BY-SA-3.0'),
        'lomiri-wallpapers-16.04/hill_by_C.jpg': ('lomiri-wallpapers-16.04 1.0-1', 'CC0-1.0'),
        'lomiri-wallpapers-16.04/lake_by_A.jpg': ('lomiri-wallpapers-16.04 1.0-1', 'CC-BY-4.0'),
        'lomiri-wallpapers-16.04/tree_by_C.jpg': ('lomiri-wallpapers-16.04 1.0-1', 'CC0-1.0'),
        # 20.04: Kleiber_* only
        'lomiri-wallpapers-20.04/Kleiber_by_D.jpg': ('lomiri-wallpapers-20.04 2.0-1', 'CC-BY-SA-3.0'),
    }


def test_a_photo_without_a_licence_stanza_is_refused(tmp_path):
    tree = fake_package(tmp_path, 'lomiri-wallpapers-16.04', ['unknown_by_Z.jpg'])
    with pytest.raises(get_photos.SetupError, match='no licence'):
        get_photos.debian_photos(tree, 'lomiri-wallpapers-16.04', '1.0')


def test_the_folder_holds_the_files_as_shipped_sources_and_a_split_by_photo(fake_photos, tmp_path):
    photos = fake_photos + get_photos.package_photos()
    out = tmp_path / 'out'
    splits = get_photos.build_folder(str(out), photos)
    for rel, source, _, _ in photos:
        with open(source, 'rb') as a, open(str(out / rel), 'rb') as b:
            assert a.read() == b.read(), rel
    lines = (out / 'SOURCES.txt').read_text().splitlines()
    assert sorted(line.split('\t')[0] for line in lines) == sorted(p[0] for p in photos)
    assert all(len(line.split('\t')) == 3 for line in lines)
    listed = {name: (out / ('split_%s.txt' % name)).read_text().split() for name in ('train', 'val', 'test')}
    assert listed == splits and all(listed.values())
    everything = sum(listed.values(), [])
    assert sorted(everything) == sorted(p[0] for p in photos)          # each photo in exactly one list
    motorcycle = [name for name, files in listed.items() if 'scikit-image/motorcycle_left.png' in files]
    assert 'scikit-image/motorcycle_right.png' in listed[motorcycle[0]]

    before = {f: os.path.getmtime(str(out / f)) for f in everything}
    assert get_photos.build_folder(str(out), photos) == splits            # re-running: the same folder
    assert {f: os.path.getmtime(str(out / f)) for f in everything} == before


def test_the_python_packages_natural_colour_photos_are_found():
    found = {rel for rel, path, _, _ in get_photos.package_photos() if os.path.isfile(path)}
    assert {'scikit-learn/china.jpg', 'scikit-learn/flower.jpg', 'matplotlib/grace_hopper.jpg',
            'scikit-image/astronaut.png', 'scikit-image/motorcycle_left.png'} <= found
    assert not {'scikit-image/color.png', 'scikit-image/hubble_deep_field.jpg'} & found


def test_the_split_is_about_70_10_20_deterministic_and_keeps_near_duplicates_together(monkeypatch):
    names = ['src/photo_%03d.jpg' % i for i in range(200)]
    splits = get_photos.split_photos(names)
    assert [len(splits[s]) for s in ('train', 'val', 'test')] == [140, 20, 40]
    assert get_photos.split_photos(list(reversed(names))) == splits
    assert get_photos.split_photos(names[:3]) and all(get_photos.split_photos(names[:3]).values())
    first, second = splits['train'][0], splits['test'][0]          # apart on their own
    monkeypatch.setitem(get_photos.NEAR_DUPLICATES, first, 'pair')
    monkeypatch.setitem(get_photos.NEAR_DUPLICATES, second, 'pair')
    together = get_photos.split_photos(names)
    assert sum((first in f) == (second in f) for f in together.values()) == 3


def test_without_apt_one_error_line_and_exit_status_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(get_photos.shutil, 'which', lambda tool: None)
    assert get_photos.main(['--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: apt-get not found')
    assert not (tmp_path / 'out').exists()
