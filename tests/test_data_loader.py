"""Lists, splits, image files and the bundled photos of data_loader.py."""
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import data_loader  # noqa: E402

SHARED_LISTS = os.path.join(os.path.dirname(data_loader.REPO_DIR), 'shared', 'seed-lists')


def write_photo(path, seed, size=(40, 30)):
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def imagenet_root(tmp_path):
    """A miniature ImageNet root: train/<wnid>/*.JPEG, val/*.JPEG."""
    for i in range(6):
        write_photo(str(tmp_path / 'train' / ('n%08d' % (i % 2)) / ('img_%d.JPEG' % i)), i)
    for i in range(3):
        write_photo(str(tmp_path / 'val' / ('ILSVRC2012_val_%08d.JPEG' % i)), 100 + i)
    return tmp_path


def test_shipped_lists_are_the_seed_lists():
    expected = {'files_100k_train.txt': 100000, 'files_100k_val.txt': 10009, 'files_val.txt': 50000,
                'files-rgbvar-train-1000-101000.txt': 100001, 'tiny_val.txt': 9,
                'ctest10k.txt': 10000, 'cval1k.txt': 1000}
    for name, n in expected.items():
        with open(os.path.join(data_loader.LISTS_DIR, name)) as f:
            assert sum(1 for _ in f) == n, name
    if os.path.isdir(SHARED_LISTS):
        for name in expected:
            with open(os.path.join(SHARED_LISTS, name)) as a, open(os.path.join(data_loader.LISTS_DIR, name)) as b:
                assert a.read() == b.read(), name


def test_larsson_lists_lose_their_class_column_and_slash():
    files = data_loader.read_list(os.path.join(data_loader.LISTS_DIR, 'cval1k.txt'))
    assert len(files) == 1000 and files[0].startswith('n01440764/ILSVRC2012_val_') and ' ' not in files[0]


def test_list_is_looked_up_under_the_root_first_then_in_lists(imagenet_root):
    shipped = data_loader.resolve_list(str(imagenet_root), 'small', 'val')
    assert shipped == os.path.join(data_loader.LISTS_DIR, 'files_100k_val.txt')
    (imagenet_root / 'files_100k_val.txt').write_text('val/ILSVRC2012_val_00000001.JPEG\n')
    assert data_loader.resolve_list(str(imagenet_root), 'small', 'val') == str(imagenet_root / 'files_100k_val.txt')
    with pytest.raises(ValueError, match='unknown set'):
        data_loader.resolve_list(str(imagenet_root), 'huge', 'val')


def test_missing_full_train_list_is_generated_from_the_folder(imagenet_root, caplog):
    path = data_loader.resolve_list(str(imagenet_root), 'full', 'train')
    assert path == str(imagenet_root / 'files_train.txt')
    files = data_loader.read_list(path)
    assert len(files) == 6 and all(f.startswith('train' + os.sep) for f in files)
    assert 'generated' in caplog.text
    ds = data_loader.ColorizeImageNet(str(imagenet_root), 'train', 'full', im_size=(16, 24))
    rgb, index, reason = ds[3]
    assert rgb.dtype == torch.uint8 and tuple(rgb.shape) == (3, 16, 24) and reason == ''


def test_hash_split_is_deterministic_and_never_empty():
    files = ['dir/photo_%03d.jpg' % i for i in range(200)]
    train, val = data_loader.hash_split(files, 0.1)
    train_r, val_r = data_loader.hash_split(list(reversed(files)), 0.1)
    assert set(train_r) == set(train) and set(val_r) == set(val)  # membership ignores the order
    assert sorted(train + val) == sorted(files) and not set(train) & set(val)
    assert 5 <= len(val) <= 40
    train1, val1 = data_loader.hash_split(['only.jpg'], 0.1)
    assert train1 == ['only.jpg'] and val1 == ['only.jpg']
    _, val2 = data_loader.hash_split(['a.jpg', 'b.jpg'], 0.0)
    assert len(val2) == 1


def test_photo_folder_split_is_written_and_reused(tmp_path):
    photos = tmp_path / 'photos'
    for i in range(12):
        write_photo(str(photos / ('sub%d' % (i % 3)) / ('p%d.png' % i)), i)
    (photos / 'notes.txt').write_text('not an image')
    run = tmp_path / 'run'
    run.mkdir()
    cfg = config.get_config(199)
    train, val = data_loader.make_datasets(str(photos), cfg, str(run), 'soft', 8)
    assert len(train) + len(val) == 12
    assert data_loader.read_list(str(run / 'split_val.txt')) == val.files
    write_photo(str(photos / 'new.png'), 99)  # a later file does not reshuffle a resumed run
    train2, val2 = data_loader.make_datasets(str(photos), cfg, str(run), 'soft', 8)
    assert train2.files == train.files and val2.files == val.files


def test_float_images_in_unit_range_are_scaled_not_darkened(tmp_path):
    ramp = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    path = str(tmp_path / 'float.tif')
    Image.fromarray(ramp, mode='F').save(path)
    rgb = data_loader.load_rgb(path, 10 ** 6)
    np.testing.assert_array_equal(rgb[..., 0], np.clip(ramp * 255 + 0.5, 0, 255).astype(np.uint8))
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_bundled_photos_are_the_files_scikit_image_ships_and_old_png_copies_go(tmp_path):
    import skimage.data
    dest = str(tmp_path / 'bundled')
    os.makedirs(dest)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(dest, 'retina.png'))  # an old copy
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(os.path.join(dest, 'mine.png'))    # not ours
    data_loader.materialise_bundled(dest)
    names = data_loader.find_images(dest)
    assert 'retina.png' not in names and 'mine.png' in names and 'retina.jpg' in names
    assert len(names) == len(data_loader.BUNDLED_PHOTOS) + 1
    shipped_dir = os.path.dirname(skimage.data.__file__)
    for name, shipped in data_loader.BUNDLED_PHOTOS.items():
        copy = os.path.join(dest, name + os.path.splitext(shipped)[1])
        with open(copy, 'rb') as a, open(os.path.join(shipped_dir, shipped), 'rb') as b:
            assert a.read() == b.read(), name
        if not name.startswith('motorcycle_'):   # skimage's own loader reads the same pixels
            np.testing.assert_array_equal(data_loader.load_rgb(copy, 10 ** 8),
                                          np.asarray(getattr(skimage.data, name)())[..., :3])


def test_jpeg_draft_decodes_large_jpegs_smaller_and_resizes_to_nearly_the_same_image(tmp_path):
    import skimage.data
    big = str(tmp_path / 'big.jpg')
    Image.fromarray(skimage.data.astronaut()).resize((1200, 1000), Image.BICUBIC).save(big, quality=95)
    small = str(tmp_path / 'small.png')
    Image.fromarray(skimage.data.astronaut()).save(small)
    full = data_loader.load_rgb(big, 10 ** 8)
    drafted = data_loader.load_rgb(big, 10 ** 8, draft_size=256)
    assert full.shape == (1000, 1200, 3)
    assert drafted.shape == (500, 600, 3)      # 1/2 scale: 1/4 would make a side < 256
    np.testing.assert_array_equal(data_loader.load_rgb(small, 10 ** 8, draft_size=64),
                                  data_loader.load_rgb(small, 10 ** 8))   # PNGs are not affected

    def at_256(draft):
        ds = data_loader.ColorizeImageNet(str(tmp_path), files=['big.jpg'], im_size=(256, 256), jpeg_draft=draft)
        return ds[0][0].numpy().astype(np.float64)
    diff = np.abs(at_256(True) - at_256(False))
    assert diff.shape == (3, 256, 256) and diff.mean() < 1.0   # measured 0.33 grey levels


def test_max_side_scales_the_long_side_down_with_lanczos_and_keeps_smaller_photos(tmp_path):
    from skimage import data
    rgb = data.astronaut()[:, :400]                       # 512 x 400: the long side is the height
    path = str(tmp_path / 'tall.png')
    Image.fromarray(rgb).save(path)
    scaled = data_loader.load_rgb(path, config.DEFAULTS['max_image_pixels'], max_side=256)
    assert scaled.shape == (256, 200, 3)
    np.testing.assert_array_equal(scaled, np.asarray(Image.fromarray(rgb).resize((200, 256), Image.LANCZOS)))
    np.testing.assert_array_equal(data_loader.load_rgb(path, config.DEFAULTS['max_image_pixels'], max_side=512), rgb)
