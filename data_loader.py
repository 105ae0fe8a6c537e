"""Files -> uint8 batches: file lists, splits, datasets and training views (augmentation).

``ColorizeImageNet`` (a ``torch.utils.data.Dataset``) does only the per-file
work in DataLoader workers: decode, convert to RGB, crop / mirror (a training
view), resize.  It yields ``uint8 [3, H, W]`` tensors; unreadable files come back
as ``None`` and are dropped by :func:`collate_skip_unreadable`.  What the network
learns from a batch (L and the colour target) is ``targets.ColorEncoder``'s work,
on the training device; ``targets.fit_encoder`` fits it to a dataset.

Where the files come from: an ImageNet root (``train/``, ``val/`` and the list
files of ``lists/``), any folder of photos (split by a hash of each path), or the
colour photos shipped inside scikit-image (the default demo set).
"""
import hashlib
import logging
import math
import os
import shutil
import warnings

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

import targets

log = logging.getLogger('colorizer')

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
LISTS_DIR = os.path.join(REPO_DIR, 'lists')
BUNDLED_DIR = os.path.join(REPO_DIR, 'data', 'bundled')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')

# ImageNet list files of each set; `{split}` is train or val (seed-configs.md)
SET_LISTS = {
    'tiny': 'tiny_val.txt',
    'small': 'files_100k_{split}.txt',
    'full': 'files_{split}.txt',
    'bright-1': 'files-rgbvar-{split}-1000-101000.txt',
}

# colour photos that ship inside scikit-image: skimage.data loader name -> its file in skimage/data
BUNDLED_PHOTOS = {
    'astronaut': 'astronaut.png', 'chelsea': 'chelsea.png', 'coffee': 'coffee.png', 'rocket': 'rocket.jpg',
    'motorcycle_left': 'motorcycle_left.png', 'motorcycle_right': 'motorcycle_right.png',
    'hubble_deep_field': 'hubble_deep_field.jpg', 'immunohistochemistry': 'ihc.png',
    'retina': 'retina.jpg', 'colorwheel': 'color.png',
}


class UnreadableImage(Exception):
    """A file that cannot be turned into an RGB image (the message says why)."""


class ImageTooLarge(UnreadableImage):
    """An image over the pixel limit, refused from its header."""


# --------------------------------------------------------------------------
# training views: random resized crops and mirror images
# --------------------------------------------------------------------------

EXIF_ORIENTATION = 0x0112
EXIF_TRANSPOSED = (5, 6, 7, 8)   # orientations whose upright image swaps width and height
CROP_TRIES = 10                  # random crops drawn before falling back to a centred one


def upright_size(img):
    """(width, height) of ``img`` once its EXIF orientation is applied, from the header."""
    width, height = img.size
    try:
        transposed = img.getexif().get(EXIF_ORIENTATION) in EXIF_TRANSPOSED
    except Exception:   # a broken EXIF block: exif_transpose will judge the file
        transposed = False
    return (height, width) if transposed else (width, height)


def random_crop_box(rng, width, height, area, aspect, tries=CROP_TRIES):
    """(left, top, right, bottom) pixels of a random crop of a ``width x height`` photo.

    The crop's share of the area is uniform in ``area`` (min, max), its aspect
    (width / height) log-uniform in ``aspect``, its place uniform; after ``tries``
    draws that do not fit, the largest centred crop whose aspect is in range.
    """
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    for _ in range(tries):
        target = width * height * rng.uniform(*area)
        ratio = math.exp(rng.uniform(*log_aspect))
        w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    w, h = width, height
    if width / height < aspect[0]:
        h = max(1, min(height, int(round(width / aspect[0]))))
    elif width / height > aspect[1]:
        w = max(1, min(width, int(round(height * aspect[1]))))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class PhotoView:
    """One training view of a photo: a random resized crop and/or a mirror image.

    Drawn from ``rng`` when the photo's size is known (:meth:`box`); the crop is
    kept as fractions of the photo so that a JPEG decoded at a reduced DCT scale
    is cut at the same place.
    """

    def __init__(self, rng, crop_area=None, crop_aspect=(3 / 4, 4 / 3), hflip=False):
        self.rng, self.crop_area, self.crop_aspect = rng, crop_area, crop_aspect
        self.flip = bool(hflip and rng.random() < 0.5)
        self._box = None

    def box(self, width, height):
        """(left, top, right, bottom) of the crop as fractions of the upright photo (drawn once)."""
        if self._box is None:
            if self.crop_area is None:
                self._box = (0.0, 0.0, 1.0, 1.0)
            else:
                left, top, right, bottom = random_crop_box(self.rng, width, height, self.crop_area,
                                                           self.crop_aspect)
                self._box = (left / width, top / height, right / width, bottom / height)
        return self._box

    def apply(self, img, box):
        """The crop ``box`` (fractions) of PIL ``img``, mirrored if this view flips."""
        width, height = img.size
        pixels = (int(round(box[0] * width)), int(round(box[1] * height)),
                  int(round(box[2] * width)), int(round(box[3] * height)))
        pixels = (pixels[0], pixels[1], max(pixels[2], pixels[0] + 1), max(pixels[3], pixels[1] + 1))
        if pixels != (0, 0, width, height):
            img = img.crop(pixels)
        return img.transpose(Image.FLIP_LEFT_RIGHT) if self.flip else img


class Augmentation:
    """Training views: ``crops_per_photo`` per photo per epoch, each a :class:`PhotoView`.

    A view depends only on (seed, epoch, sample index in the epoch), so a resumed
    run and any DataLoader worker draw the same one; each epoch draws new ones.
    """

    def __init__(self, seed=0, crops_per_photo=1, crop_area=None, crop_aspect=(3 / 4, 4 / 3), hflip=False):
        if int(crops_per_photo) < 1:
            raise ValueError('crops_per_photo must be >= 1, got %r' % (crops_per_photo,))
        if crop_area is not None and not 0 < crop_area[0] <= crop_area[1] <= 1:
            raise ValueError('aug_crop_area must be (min, max) with 0 < min <= max <= 1, got %r' % (crop_area,))
        if not 0 < crop_aspect[0] <= crop_aspect[1]:
            raise ValueError('aug_crop_aspect must be (min, max) with 0 < min <= max, got %r' % (crop_aspect,))
        self.seed, self.crops_per_photo = int(seed), int(crops_per_photo)
        self.crop_area = None if crop_area is None else tuple(crop_area)
        self.crop_aspect, self.hflip = tuple(crop_aspect), bool(hflip)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg['seed'], cfg['crops_per_photo'], cfg['aug_crop_area'], cfg['aug_crop_aspect'],
                   cfg['aug_hflip'])

    @property
    def changes_pixels(self):
        return self.crop_area is not None or self.hflip

    def view(self, epoch, index):
        """The :class:`PhotoView` of sample ``index`` of ``epoch`` (None when views are whole photos)."""
        if not self.changes_pixels:
            return None
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        return PhotoView(rng, self.crop_area, self.crop_aspect, self.hflip)


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------

def load_rgb(path, max_pixels, draft_size=None, resize_to=None, view=None, limit_name='max_image_pixels',
             max_side=None):
    """Read any PIL-readable image as uint8 RGB ``[H, W, 3]``, EXIF orientation applied.

    ``draft_size`` (an int) lets a JPEG decode at the smallest DCT scale (1/2,
    1/4, 1/8) that keeps both sides >= ``draft_size`` (libjpeg's scaled decoding,
    :meth:`PIL.Image.Image.draft`): several times faster for large photos that
    are resized down anyway; with a ``view`` both sides of its crop stay >= ``draft_size``.
    ``view`` (a :class:`PhotoView`): crop and mirror the photo, in the
    coordinates of the full-size, upright photo, before the resize.  ``resize_to``
    ``(height, width)``: bilinear resize (as the seed) before the pixels leave PIL.  ``max_side``: a photo
    whose long side is longer is scaled down to it (Lanczos, the aspect kept): a faster proxy for scoring.

    Grey, palette, CMYK, RGBA (composited on white) and 16-bit images are
    converted; images of more than ``max_pixels`` pixels are refused from their
    header, before decoding (:class:`ImageTooLarge`, naming the setting ``limit_name``).  Raises :class:`UnreadableImage` for everything
    that cannot be read (missing, empty, truncated, not an image, a decoder
    error of any kind), so one bad file never stops an epoch.
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise ImageTooLarge('%dx%d pixels is over the limit of %d (%s)'
                                    % (img.width, img.height, max_pixels, limit_name))
            box = view.box(*upright_size(img)) if view is not None else (0.0, 0.0, 1.0, 1.0)
            if draft_size and isinstance(img, JpegImagePlugin.JpegImageFile):   # also MPO (phone photos)
                cover = math.ceil(draft_size / min(box[2] - box[0], box[3] - box[1]))
                img.draft('RGB', (cover, cover))
            ImageOps.exif_transpose(img, in_place=True)
            if img.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
                arr = np.asarray(img, dtype=np.float64)
                if img.mode == 'F' and arr.max() <= 1.0:  # float images in [0, 1]
                    top = 1.0
                else:
                    top = 65535.0 if img.mode.startswith('I;16') or arr.max() > 255 else 255.0
                img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
            if img.mode == 'P' and 'transparency' in img.info:
                img = img.convert('RGBA')
            if img.mode in ('RGBA', 'LA', 'PA'):
                background = Image.new('RGBA', img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img.convert('RGBA'))
            img = img.convert('RGB')
            if view is not None:
                img = view.apply(img, box)
            if resize_to is not None and img.size != (resize_to[1], resize_to[0]) and min(img.size) >= 1:
                img = img.resize((resize_to[1], resize_to[0]), Image.BILINEAR)
            if max_side is not None and max(img.size) > max_side:
                scale = max_side / max(img.size)
                img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                 Image.LANCZOS)
            rgb = np.asarray(img)
    except UnreadableImage:
        raise
    except Exception as err:  # PIL's decoders raise many types (OSError, SyntaxError, struct.error, ...)
        raise UnreadableImage('%s: %s' % (type(err).__name__, err)) from None
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise UnreadableImage('empty image')
    return rgb


def find_images(folder):
    """Sorted paths (relative to ``folder``) of every image file below it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return sorted(found)


def read_list(path):
    """A list file -> image paths (first column; Larsson's lists carry a class index)."""
    with open(path) as f:
        return [line.split()[0].lstrip('/') for line in f if line.strip()]


def write_list(path, files):
    """Write one path a line, atomically (never a half-written list)."""
    tmp = path + '.tmp%d' % os.getpid()
    with open(tmp, 'w') as f:
        f.writelines(p + '\n' for p in files)
    os.replace(tmp, path)


def hash_split(files, val_fraction, salt=''):
    """Deterministic (train, val) split by an md5 of each relative path.

    At least one validation image; with a single image it serves both splits.
    """
    def score(p):
        digest = hashlib.md5((salt + p.replace(os.sep, '/')).encode()).hexdigest()
        return int(digest[:8], 16) / 16 ** 8
    scored = sorted(files, key=score)
    val = {p for p in files if score(p) < val_fraction} or set(scored[:1])
    train = [p for p in files if p not in val] or list(files)
    return train, sorted(val)


def materialise_bundled(dest=BUNDLED_DIR):
    """Copy scikit-image's colour photos into ``dest`` once, as shipped (JPEGs stay JPEGs); returns ``dest``.

    A photo that a scikit-image version does not ship as a file is written as
    PNG from its ``skimage.data`` loader.  PNG copies of the JPEGs, written by
    earlier versions of this function, are removed so no photo is listed twice.
    """
    import skimage.data
    shipped_dir = os.path.dirname(skimage.data.__file__)
    os.makedirs(dest, exist_ok=True)
    for name, shipped in BUNDLED_PHOTOS.items():
        source = os.path.join(shipped_dir, shipped)
        ext = os.path.splitext(shipped)[1] if os.path.isfile(source) else '.png'
        path = os.path.join(dest, name + ext)
        if ext != '.png':
            try:
                os.remove(os.path.join(dest, name + '.png'))
            except FileNotFoundError:
                pass
        if os.path.exists(path):
            continue
        tmp = '%s.tmp%d' % (path, os.getpid())   # not an image name; concurrent first runs never share it
        if ext == '.png' and not os.path.isfile(source):
            if name.startswith('motorcycle_'):
                left, right, _ = skimage.data.stereo_motorcycle()
                rgb = left if name.endswith('left') else right
            else:
                rgb = getattr(skimage.data, name)()
            Image.fromarray(np.asarray(rgb)[..., :3]).save(tmp, format='PNG')
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    return dest


def is_imagenet_root(root):
    """An ImageNet-style root holds ``train/`` and ``val/`` folders."""
    return os.path.isdir(os.path.join(root, 'train')) and os.path.isdir(os.path.join(root, 'val'))


def resolve_list(root, set_name, split, generated_dir=None):
    """The list file of an ImageNet set: under ``root`` first, then in ``lists/``.

    The full lists are not shipped: a missing ``files_<split>.txt`` is generated
    by scanning ``root/<split>`` and written to ``root`` (or ``generated_dir``
    when ``root`` is read-only).
    """
    if set_name not in SET_LISTS:
        raise ValueError('unknown set %r (choose from %s)' % (set_name, sorted(SET_LISTS)))
    name = SET_LISTS[set_name].format(split=split)
    for folder in (root, LISTS_DIR, generated_dir):
        if folder and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    if set_name != 'full':
        raise FileNotFoundError('list %s of set %r found neither in %s nor in %s'
                                % (name, set_name, root, LISTS_DIR))
    files = [os.path.join(split, p) for p in find_images(os.path.join(root, split))]
    target = os.path.join(root, name) if os.access(root, os.W_OK) else os.path.join(generated_dir, name)
    log.warning('%s not found: generated it from %s (%d images) into %s',
                name, os.path.join(root, split), len(files), target)
    write_list(target, files)
    return target


# --------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------

class ColorizeImageNet(torch.utils.data.Dataset):
    """Images of a list (ImageNet set) or an explicit file list, as uint8 ``[3, H, W]``.

    The colour arguments of the seed (bins, num_hc_bins, img_lowpass, gmm_path,
    mean_l_path, uniform_sigma, gmm_space) are kept: ``targets.fit_encoder`` turns them
    into the ``targets.ColorEncoder`` that makes (L, target) from a batch.
    ``__getitem__`` returns ``(rgb_uint8 or None, index, reason)``.
    """

    def __init__(self, root, split='train', set='small', bins='soft', num_hc_bins=128,
                 img_lowpass=None, im_size=(256, 256), gmm_path=None, mean_l_path=None,
                 uniform_sigma='default', files=None, max_image_pixels=Image.MAX_IMAGE_PIXELS,
                 list_dir=None, jpeg_draft=True, gmm_space='polar', augmentation=None):
        if bins not in targets.BINNINGS:
            raise ValueError('unknown binning %r (choose from %s)' % (bins, targets.BINNINGS))
        self.root, self.split, self.set = root, split, set
        self.bins, self.num_hc_bins, self.img_lowpass = bins, num_hc_bins, img_lowpass
        self.im_size = tuple(im_size)
        self.gmm_path, self.mean_l_path, self.uniform_sigma = gmm_path, mean_l_path, uniform_sigma
        self.max_image_pixels, self.jpeg_draft = max_image_pixels, jpeg_draft
        if gmm_space not in targets.GMM_SPACES:
            raise ValueError('unknown gmm_space %r (choose from %s)' % (gmm_space, targets.GMM_SPACES))
        self.gmm_space = gmm_space
        self.augmentation = augmentation or Augmentation()
        if files is None:
            self.list_path = resolve_list(root, set, split, list_dir)
            files = read_list(self.list_path)
        else:
            self.list_path = None
        self.files = list(files)
        if not self.files:
            raise ValueError('no images in %s' % (self.list_path or root))

    def __len__(self):
        """Samples per epoch: ``crops_per_photo`` views of every photo."""
        return len(self.files) * self.augmentation.crops_per_photo

    def photo_and_view(self, sample):
        """Sample number -> (photo index, :class:`PhotoView` or None).

        ``sample`` may count on across epochs (``epoch * len(self) + index``, as
        ``ResumableSampler(numbered_by_epoch=True)`` yields them): the epoch picks new views.
        """
        epoch, index = divmod(int(sample), len(self))
        return index % len(self.files), self.augmentation.view(epoch, index)

    def describe(self):
        return self.list_path or self.root

    def path(self, index):
        return os.path.join(self.root, self.files[index])

    def load_resized(self, index, view=None):
        """Photo ``index`` (its ``view``, else whole) as uint8 ``[H, W, 3]`` at ``im_size`` (bilinear,
        as the seed); raises UnreadableImage."""
        draft = max(self.im_size) if self.jpeg_draft else None
        return load_rgb(self.path(index), self.max_image_pixels, draft, resize_to=self.im_size, view=view)

    def __getitem__(self, sample):
        """-> (uint8 ``[3, H, W]`` or None, photo index, why unreadable)."""
        index, view = self.photo_and_view(sample)
        try:
            rgb = self.load_resized(index, view)
        except UnreadableImage as err:
            return None, index, str(err)
        return torch.from_numpy(np.array(rgb)).permute(2, 0, 1), index, ''

    def check_readable(self, max_tries=50):
        """Fail at start, naming the list or folder, when no image can be read.

        Tries up to ``max_tries`` files spread over the whole list and stops at
        the first readable one.
        """
        n = len(self.files)
        tries = np.unique(np.linspace(0, n - 1, min(n, max_tries)).round().astype(int))
        reasons = []
        for index in tries:
            try:
                self.load_resized(int(index))
                return
            except UnreadableImage as err:
                reasons.append('%s (%s)' % (self.files[index], err))
        raise ValueError('no readable image in %s: none of the %d files tried can be read, e.g. %s'
                         % (self.describe(), len(tries), '; '.join(reasons[:3])))

    def sample_pixels(self, num_images, pixels_per_image, seed):
        """Random (H, C, L) pixels ``[N, 3]`` from up to ``num_images`` random whole images."""
        rng = np.random.RandomState(seed)
        order = rng.permutation(len(self.files))[:num_images]
        samples = []
        for index in order:
            try:
                rgb = self.load_resized(int(index))
            except UnreadableImage:
                continue
            flat = rgb.reshape(-1, 3)
            pick = rng.choice(len(flat), size=min(pixels_per_image, len(flat)), replace=False)
            rgb_t = torch.from_numpy(flat[pick].T.reshape(3, 1, -1).astype(np.float64) / 255.0)
            h, c, l = targets.rgb_to_hcl_flat(rgb_t)
            samples.append(np.stack([h, c, l], axis=1))
        if not samples:
            raise ValueError('no readable image to sample colours from in %s' % self.describe())
        return np.concatenate(samples).astype(np.float64)



def collate_skip_unreadable(batch):
    """Stack the readable images of a batch; report the unreadable ones.

    Returns ``dict(rgb=uint8 [B, 3, H, W] or None, index=[B], skipped=[(index, reason)])``.
    """
    good = [(rgb, i) for rgb, i, _ in batch if rgb is not None]
    skipped = [(i, reason) for rgb, i, reason in batch if rgb is None]
    return {
        'rgb': torch.stack([rgb for rgb, _ in good]) if good else None,
        'index': torch.tensor([i for _, i in good], dtype=torch.long),
        'skipped': skipped,
    }


# --------------------------------------------------------------------------
# which files, from the command line and the config
# --------------------------------------------------------------------------

def make_datasets(dataset_path, cfg, run_dir, binning, num_bins):
    """(train, val) datasets for ``-d`` (ImageNet root, photo folder, or None = bundled set).

    A photo folder that holds ``split_train.txt`` and ``split_val.txt`` (as
    ``experiments/get_photos.py`` writes) is split by them, any other by
    :func:`hash_split`; the split is written into ``run_dir`` (``split_train.txt``,
    ``split_val.txt``) and re-read on resume.  Only the training set draws
    augmented views (``crops_per_photo``, ``aug_*``); validation sees whole photos.
    """
    common = dict(bins=binning, num_hc_bins=num_bins, img_lowpass=cfg.get('img_lowpass'),
                  im_size=cfg['im_size'], uniform_sigma=cfg.get('uniform_sigma', 'default'),
                  gmm_path=os.path.join(run_dir, 'gmm.npz'),
                  mean_l_path=os.path.join(run_dir, 'mean_l.npy'),
                  max_image_pixels=cfg['max_image_pixels'], jpeg_draft=cfg['jpeg_draft'],
                  gmm_space=cfg['gmm_space'])
    train_views = dict(augmentation=Augmentation.from_config(cfg))
    if dataset_path and is_imagenet_root(dataset_path):
        return (ColorizeImageNet(dataset_path, 'train', cfg['train_set'], list_dir=run_dir, **common, **train_views),
                ColorizeImageNet(dataset_path, 'val', cfg['val_set'], list_dir=run_dir, **common))
    if dataset_path is None:
        root = materialise_bundled()
        files = find_images(root)
        return (ColorizeImageNet(root, 'train', files=files, **common, **train_views),
                ColorizeImageNet(root, 'val', files=files, **common))
    if not os.path.isdir(dataset_path):
        raise FileNotFoundError('dataset folder %s does not exist' % dataset_path)
    split_files = [os.path.join(run_dir, 'split_%s.txt' % s) for s in ('train', 'val')]
    given_files = [os.path.join(dataset_path, 'split_%s.txt' % s) for s in ('train', 'val')]
    if all(os.path.isfile(p) for p in split_files):
        train, val = (read_list(p) for p in split_files)
    elif all(os.path.isfile(p) for p in given_files):
        train, val = (read_list(p) for p in given_files)
        for given, copy, split in zip(given_files, split_files, (train, val)):
            if not split:
                raise ValueError('%s lists no photo' % given)
            write_list(copy, split)
    else:
        files = find_images(dataset_path)
        if not files:
            raise ValueError('no image files (%s) found in %s' % (', '.join(IMAGE_EXTENSIONS), dataset_path))
        train, val = hash_split(files, cfg['val_fraction'])
        for path, split in zip(split_files, (train, val)):
            write_list(path, split)
    return (ColorizeImageNet(dataset_path, 'train', files=train, **common, **train_views),
            ColorizeImageNet(dataset_path, 'val', files=val, **common))


warnings.filterwarnings('ignore', message='.*Palette images with Transparency.*')
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is unreadable, not half grey
