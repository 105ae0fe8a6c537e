"""Files -> (lightness, colour target).

Two halves, so that the data never starves the GPU:

* ``ColorizeImageNet`` (a ``torch.utils.data.Dataset``) does only the per-file
  work in DataLoader workers: decode, convert to RGB, resize.  It yields
  ``uint8 [3, H, W]`` tensors; unreadable files come back as ``None`` and are
  dropped by :func:`collate_skip_unreadable`.
* ``ColorEncoder.encode`` turns a whole uint8 batch, already on the training
  device, into the network input (mean-centred L, ``[B, 1, H, W]``) and the
  target: bin posteriors ``[B, K, H, W]`` (``soft`` GMM bins, ``uniform`` grid
  bins) or integer labels ``[B, 2, H, W]`` (``one-hot``: hue and chroma bins).

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

import utils

log = logging.getLogger('colorizer')

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
LISTS_DIR = os.path.join(REPO_DIR, 'lists')
BUNDLED_DIR = os.path.join(REPO_DIR, 'data', 'bundled')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
BINNINGS = ('soft', 'uniform', 'one-hot')
GMM_SPACES = ('polar', 'plane')   # GMM fitted on (H, C), or on the chroma plane (C cos 2piH, C sin 2piH)

ENCODE_BLOCK_PIXELS_CPU = 8192  # pixels per block of GMMBins.encode on a CPU (cache-sized temporaries)
# Pruned posteriors (CPU): the GMM's square ((H, C) in [0, 1]^2, the plane's [-1, 1]^2) is cut into
# PRUNE_GRID^2 cells; a component whose log-posterior is provably PRUNE_LOG_MARGIN below the best one
# everywhere in a cell gets exactly 0 there (each such posterior < e^-20 = 2e-9, all of them < K * 2e-9).
PRUNE_GRID = 64
PRUNE_LOG_MARGIN = 20.0
PRUNE_BOX_PAD = 1e-6  # cells reach this far past their edges: float32 low-pass output may be 1 + 2e-7

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

def load_rgb(path, max_pixels, draft_size=None, resize_to=None, view=None):
    """Read any PIL-readable image as uint8 RGB ``[H, W, 3]``, EXIF orientation applied.

    ``draft_size`` (an int) lets a JPEG decode at the smallest DCT scale (1/2,
    1/4, 1/8) that keeps both sides >= ``draft_size`` (libjpeg's scaled decoding,
    :meth:`PIL.Image.Image.draft`): several times faster for large photos that
    are resized down anyway; with a ``view`` both sides of its crop stay >= ``draft_size``.
    ``view`` (a :class:`PhotoView`): crop and mirror the photo, in the
    coordinates of the full-size, upright photo, before the resize.  ``resize_to``
    ``(height, width)``: bilinear resize (as the seed) before the pixels leave PIL.

    Grey, palette, CMYK, RGBA (composited on white) and 16-bit images are
    converted; images of more than ``max_pixels`` pixels are refused from their
    header, before decoding.  Raises :class:`UnreadableImage` for everything
    that cannot be read (missing, empty, truncated, not an image, a decoder
    error of any kind), so one bad file never stops an epoch.
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise UnreadableImage('%dx%d pixels is over the limit of %d (max_image_pixels)'
                                      % (img.width, img.height, max_pixels))
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
    mean_l_path, uniform_sigma) are kept: :meth:`build_encoder` turns them into
    the :class:`ColorEncoder` that makes (L, target) from a batch.
    ``__getitem__`` returns ``(rgb_uint8 or None, index, reason)``.
    """

    def __init__(self, root, split='train', set='small', bins='soft', num_hc_bins=128,
                 img_lowpass=None, im_size=(256, 256), gmm_path=None, mean_l_path=None,
                 uniform_sigma='default', files=None, max_image_pixels=Image.MAX_IMAGE_PIXELS,
                 list_dir=None, jpeg_draft=True, gmm_space='polar', augmentation=None):
        if bins not in BINNINGS:
            raise ValueError('unknown binning %r (choose from %s)' % (bins, BINNINGS))
        self.root, self.split, self.set = root, split, set
        self.bins, self.num_hc_bins, self.img_lowpass = bins, num_hc_bins, img_lowpass
        self.im_size = tuple(im_size)
        self.gmm_path, self.mean_l_path, self.uniform_sigma = gmm_path, mean_l_path, uniform_sigma
        self.max_image_pixels, self.jpeg_draft = max_image_pixels, jpeg_draft
        if gmm_space not in GMM_SPACES:
            raise ValueError('unknown gmm_space %r (choose from %s)' % (gmm_space, GMM_SPACES))
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
            h, c, l = rgb_to_hcl_flat(rgb_t)
            samples.append(np.stack([h, c, l], axis=1))
        if not samples:
            raise ValueError('no readable image to sample colours from in %s' % self.describe())
        return np.concatenate(samples).astype(np.float64)

    def build_encoder(self, num_images, pixels_per_image, seed, rebalance_lambda=None,
                      rebalance_sigma=None, inherited=None):
        """The :class:`ColorEncoder` of this dataset's colour statistics and this run's settings.

        Bins and mean L come from ``inherited`` (the previous stage's encoder), or
        are loaded from ``mean_l_path`` / ``gmm_path`` when those files exist, or
        are estimated from sampled pixels; either way they are cached there
        (plain ``.npy`` / ``.npz`` arrays, never pickles), as is the bin prior of
        class rebalancing.  ``img_lowpass`` and the rebalancing are always this run's.
        """
        samples = []

        def pixels():  # sampled once, and only when something must be estimated
            if not samples:
                samples.append(self.sample_pixels(num_images, pixels_per_image, seed))
            return samples[0]

        if inherited is not None:
            bins, mean_l = inherited.bins, inherited.mean_l
            if bins.binning == 'soft' and self.gmm_path:
                bins.save(self.gmm_path)
        else:
            if self.mean_l_path and os.path.isfile(self.mean_l_path):
                mean_l = float(np.load(self.mean_l_path))
            else:
                mean_l = float(pixels()[:, 2].mean())
            if self.bins == 'soft':
                if self.gmm_path and os.path.isfile(self.gmm_path):
                    bins = GMMBins.load(self.gmm_path)
                    if bins.num_bins != self.num_hc_bins or bins.space != self.gmm_space:
                        raise ValueError('%s holds %d GMM bins fitted in %s space, the run asks for %d in %s '
                                         'space (gmm_space)' % (self.gmm_path, bins.num_bins, bins.space,
                                                                self.num_hc_bins, self.gmm_space))
                else:
                    bins = GMMBins.fit(pixels()[:, :2], self.num_hc_bins, seed, self.gmm_space)
                    if self.gmm_path:
                        bins.save(self.gmm_path)
            elif self.bins == 'uniform':
                bins = GMMBins.uniform_grid(self.num_hc_bins, self.uniform_sigma)
            else:
                bins = OneHotBins(self.num_hc_bins)
        if self.mean_l_path:
            save_array(self.mean_l_path, np.array(mean_l))

        class_weights = None
        if rebalance_lambda:
            if bins.binning == 'one-hot':
                raise ValueError('class rebalancing needs joint bins (soft or uniform), not one-hot')
            cached = prior_path(self.gmm_path) if self.gmm_path else None
            prior = np.load(cached) if cached and os.path.isfile(cached) else None
            if prior is None or prior.shape != (bins.num_bins,):  # absent, or left by another K
                prior = bins.empirical_prior(pixels()[:, :2], rebalance_sigma)
                if cached:
                    save_array(cached, prior)
            class_weights = rebalancing_weights(prior, rebalance_lambda)
        return ColorEncoder(bins, mean_l, self.img_lowpass, class_weights)


def hue_chroma_to_plane_np(hc):
    """(H, C) ``[N, 2]`` -> (C cos 2piH, C sin 2piH) ``[N, 2]`` float64 numpy."""
    hc = np.asarray(hc, np.float64)
    angle = 2.0 * math.pi * hc[:, 0]
    return np.stack([hc[:, 1] * np.cos(angle), hc[:, 1] * np.sin(angle)], 1)


def rgb_to_hcl_flat(rgb):
    """``[3, 1, N]`` float RGB -> numpy (h, c, l) vectors of length N."""
    h, c, l = utils.rgb_to_hcl(rgb)
    return h.reshape(-1).numpy(), c.reshape(-1).numpy(), l.reshape(-1).numpy()


def prior_path(gmm_path):
    return os.path.join(os.path.dirname(gmm_path), 'bin_prior.npy')


def save_array(path, array):
    """np.save through a temporary file in the same folder, then an atomic rename."""
    tmp = path + '.tmp%d.npy' % os.getpid()
    np.save(tmp, array)
    os.replace(tmp, path)


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
# colour bins
# --------------------------------------------------------------------------

def quadratic_range_over_boxes(coefficients, h0, h1, c0, c1):
    """(min, max) over each box [h0, h1] x [c0, c1] of q_k = (a d_h + b d_c)^2 + e d_c^2.

    ``coefficients [6, K]`` as :meth:`GMMBins._coefficients`; box corners
    broadcast against K (e.g. ``[cells, 1]``) -> two ``[cells, K]`` arrays.
    q_k is convex: its maximum is at a corner; its minimum is 0 where the mean
    is inside, else on an edge, at the edge's own minimiser clamped to the edge.
    """
    mu_h, mu_c, a, b, e, _ = coefficients
    qa, qb, qc = a * a, a * b, b * b + e            # q = qa d_h^2 + 2 qb d_h d_c + qc d_c^2

    def q(h, c):
        d_h, d_c = h - mu_h, c - mu_c
        return qa * d_h * d_h + 2 * qb * d_h * d_c + qc * d_c * d_c

    q_max = np.maximum.reduce([q(h, c) for h in (h0, h1) for c in (c0, c1)])
    on_edges = [q(h, np.clip(mu_c - qb * (h - mu_h) / qc, c0, c1)) for h in (h0, h1)]
    on_edges += [q(np.clip(mu_h - qb * (c - mu_c) / qa, h0, h1), c) for c in (c0, c1)]
    inside = (h0 <= mu_h) & (mu_h <= h1) & (c0 <= mu_c) & (mu_c <= c1)
    return np.where(inside, 0.0, np.minimum.reduce(on_edges)), q_max


class GMMBins:
    """K Gaussian bins with full 2x2 covariances; posteriors are soft targets.

    ``weights [K]``, ``means [K, 2]``, ``covariances [K, 2, 2]`` (float64 numpy), in the
    coordinates of ``space``: ``'polar'`` (H, C), as the seed, or ``'plane'``
    (C cos 2piH, C sin 2piH), where reds at H = 0.98 and H = 0.02 are neighbours.
    Pixels always come in and centres go out as (H, C).
    """

    binning = 'soft'

    def __init__(self, weights, means, covariances, binning='soft', space='polar'):
        self.weights = np.asarray(weights, np.float64)
        self.means = np.asarray(means, np.float64)
        self.covariances = np.asarray(covariances, np.float64)
        self.binning = binning
        if space not in GMM_SPACES:
            raise ValueError('unknown gmm_space %r (choose from %s)' % (space, GMM_SPACES))
        self.space = space
        self.square = (0.0, 1.0) if space == 'polar' else (-1.0, 1.0)   # where the pixels' coordinates lie
        k = len(self.weights)
        if self.means.shape != (k, 2) or self.covariances.shape != (k, 2, 2):
            raise ValueError('GMM arrays do not describe K=%d 2-D components' % k)
        # log N(x | mu, Sigma) = -0.5 |U^T (x - mu)|^2 + log det U - log 2 pi, U U^T = Sigma^-1, U lower
        self._prec_chol = np.stack([np.linalg.cholesky(np.linalg.inv(c)) for c in self.covariances])
        self._log_norm = (np.log(self.weights) - math.log(2 * math.pi)
                          + np.log(self._prec_chol[:, 0, 0] * self._prec_chol[:, 1, 1]))
        self._device_cache = {}

    @property
    def num_bins(self):
        return len(self.weights)

    @property
    def num_outputs(self):
        return self.num_bins

    @property
    def centres(self):
        """``[K, 2]`` (H, C) of each bin, for decoding."""
        if self.space == 'polar':
            return torch.from_numpy(self.means).float()
        hue, chroma = utils.plane_to_hue_chroma(torch.from_numpy(self.means.T.copy()))
        return torch.stack([hue, chroma], 1).float()

    @property
    def centres_on_plane(self):
        """``[K, 2]`` float64 numpy: each bin's centre on the chroma plane."""
        if self.space == 'plane':
            return self.means
        return hue_chroma_to_plane_np(self.means)

    def coordinates(self, hc):
        """(H, C) pixels ``[N, 2]`` (numpy) -> this GMM's coordinates ``[N, 2]``."""
        return np.asarray(hc, np.float64) if self.space == 'polar' else hue_chroma_to_plane_np(hc)

    @classmethod
    def fit(cls, hc, num_bins, seed, space='polar'):
        """Fit scikit-learn's GaussianMixture (full covariance, k-means init) on ``[N, 2]`` (H, C)
        pixels, in the coordinates of ``space``."""
        from sklearn.mixture import GaussianMixture
        if len(hc) < num_bins:
            raise ValueError('%d sampled pixels cannot fit %d GMM bins: sample more pixels '
                             '(stats_pixels_per_image) or use fewer bins (-k)' % (len(hc), num_bins))
        gmm = GaussianMixture(n_components=num_bins, covariance_type='full',
                              init_params='kmeans', random_state=seed)
        gmm.fit(hc if space == 'polar' else hue_chroma_to_plane_np(hc))
        return cls(gmm.weights_, gmm.means_, gmm.covariances_, space=space)

    @classmethod
    def uniform_grid(cls, num_bins, sigma='default'):
        """``uniform`` binning: a sqrt(K) x sqrt(K) grid of centres on [0, 1]^2, equal weights.

        ``sigma='default'`` is the radius of a bin's Voronoi cell, spacing / sqrt(2).
        """
        check_num_bins('uniform', num_bins)
        side = int(round(math.sqrt(num_bins)))
        axis = np.linspace(0.0, 1.0, side)
        hh, cc = np.meshgrid(axis, axis, indexing='ij')
        if sigma in (None, 'default'):
            sigma = (axis[1] - axis[0]) / math.sqrt(2.0)
        cov = np.tile(np.eye(2) * float(sigma) ** 2, (num_bins, 1, 1))
        return cls(np.full(num_bins, 1.0 / num_bins), np.stack([hh.ravel(), cc.ravel()], 1),
                   cov, binning='uniform')

    @classmethod
    def load(cls, path):
        """A GMM saved by :meth:`save` (files without ``space`` are from before it: polar)."""
        with np.load(path, allow_pickle=False) as z:
            space = str(z['space']) if 'space' in z.files else 'polar'
            return cls(z['weights'], z['means'], z['covariances'], space=space)

    def save(self, path):
        tmp = path + '.tmp%d.npz' % os.getpid()
        extra = {} if self.space == 'polar' else {'space': np.array(self.space)}   # polar: the seed's files
        np.savez(tmp, weights=self.weights, means=self.means, covariances=self.covariances, **extra)
        os.replace(tmp, path)

    def _coefficients(self):
        """``[6, K]`` float64: mu_h, mu_c, a, b, e, log_norm of each component.

        (h, c) stand for the GMM's two coordinates (H, C, or the plane's two axes).
        With U lower triangular (U U^T = Sigma^-1) and d = (h - mu_h, c - mu_c),
        |U^T d|^2 / 2 = (a d_h + b d_c)^2 + e d_c^2, a = U00/sqrt2, b = U10/sqrt2, e = U11^2/2,
        and log w_k N_k = log_norm_k - that.
        """
        u = self._prec_chol
        return np.stack([self.means[:, 0], self.means[:, 1], u[:, 0, 0] / math.sqrt(2), u[:, 1, 0] / math.sqrt(2),
                         u[:, 1, 1] ** 2 / 2, self._log_norm])

    def _params_on(self, device):
        """The coefficients as ``[K, 1]`` float32 columns on ``device`` (cached)."""
        key = ('dense', str(device))
        if key not in self._device_cache:
            self._device_cache[key] = [torch.as_tensor(col, dtype=torch.float32, device=device).view(-1, 1)
                                       for col in self._coefficients()]
        return self._device_cache[key]

    def candidates(self, grid=PRUNE_GRID, margin=PRUNE_LOG_MARGIN):
        """``[grid^2, M]`` component indices per cell, and which of them are candidates.

        Cell ``i * grid + j`` covers the first coordinate in [i, i+1] / grid, the second in
        [j, j+1] / grid of :attr:`square` (the unit square: H, C).
        Component k is a candidate there unless max over the cell of its log
        w_k N_k is below max_j min over the cell of log w_j N_j minus ``margin``
        (then its posterior is < e^-margin at every point of the cell).  Each
        row lists the candidates first, then other components to fill M slots.
        """
        edges = np.linspace(*self.square, grid + 1)
        pad = PRUNE_BOX_PAD
        h0, c0 = np.meshgrid(edges[:-1] - pad, edges[:-1] - pad, indexing='ij')
        h1, c1 = np.meshgrid(edges[1:] + pad, edges[1:] + pad, indexing='ij')
        q_min, q_max = quadratic_range_over_boxes(self._coefficients(), *(x.reshape(-1, 1) for x in (h0, h1, c0, c1)))
        log_norm = self._log_norm
        keep = log_norm - q_min >= (log_norm - q_max).max(1, keepdims=True) - margin   # [cells, K]
        order = np.argsort(~keep, axis=1, kind='stable')[:, :keep.sum(1).max()]
        return order, np.take_along_axis(keep, order, 1)

    def _pruned_params_on(self, device):
        """(6 ``[cells, M]`` float32 tables of each cell's slots' coefficients, log_norm -inf off
        the candidates; ``[cells, M]`` int64 component indices), cached."""
        key = ('pruned', str(device))
        if key not in self._device_cache:
            order, keep = self.candidates()
            tables = self._coefficients()[:, order]                      # [6, cells, M]
            tables[5] = np.where(keep, tables[5], -np.inf)
            self._device_cache[key] = ([torch.as_tensor(t, dtype=torch.float32, device=device) for t in tables],
                                       torch.as_tensor(order, device=device))
        return self._device_cache[key]

    def prunes(self, x0, x1):
        """Whether :meth:`encode` computes only the candidates: on a CPU, with every cell at
        most K/2 candidates and the GMM coordinates ``[B, n]`` inside the cells' boxes."""
        if x0.device.type != 'cpu' or x0.numel() == 0:
            return False
        if self._pruned_params_on(x0.device)[1].shape[1] > self.num_bins // 2:
            return False
        low, high = self.square[0] - PRUNE_BOX_PAD, self.square[1] + PRUNE_BOX_PAD
        return bool(x0.min() >= low and x0.max() <= high and x1.min() >= low and x1.max() <= high)

    def encode(self, hue, chroma, prune=None):
        """(H, C) ``[B, H, W]`` -> posterior over the K bins ``[B, K, H, W]`` (sums to 1).

        The pixels go to the GMM's coordinates (the chroma plane for ``space='plane'``);
        log w_k N_k(x) - in float32 but centred on each mean first (no cancellation;
        equals scikit-learn's ``predict_proba`` within 1e-4) - then a softmax over K.
        ``prune`` (default :meth:`prunes`) computes only each cell's candidates
        (:meth:`candidates`; the coordinates must lie in :attr:`square`) and scatters them
        into zeros; otherwise all K, in blocks of pixels whose temporaries stay in
        cache on a CPU.
        """
        batch, image_shape, n_pix = hue.shape[0], hue.shape[1:], hue[0].numel()
        hue, chroma = hue.reshape(batch, -1).float(), chroma.reshape(batch, -1).float()
        if self.space == 'plane':
            angle = hue * (2.0 * math.pi)                      # from here on the plane's two axes
            hue, chroma = chroma * torch.cos(angle), chroma * torch.sin(angle)
        if prune is None:
            prune = self.prunes(hue, chroma)
        fill = self._encode_pruned if prune else self._encode_dense
        out = (torch.zeros if prune else torch.empty)(batch, self.num_bins, n_pix, dtype=torch.float32,
                                                     device=hue.device)
        block = ENCODE_BLOCK_PIXELS_CPU if hue.device.type == 'cpu' else max(n_pix, 1)
        for i in range(batch):
            for start in range(0, n_pix, block):
                stop = min(start + block, n_pix)
                fill(hue[i, start:stop], chroma[i, start:stop], out[i, :, start:stop])
        return out.view(batch, self.num_bins, *image_shape)

    def _encode_dense(self, hue, chroma, out):
        """``[n]`` H, C -> ``out [K, n]`` (all components)."""
        mu_h, mu_c, a, b, e, log_norm = self._params_on(hue.device)
        d_c = chroma - mu_c                                                      # [K, n]
        logp = (hue - mu_h).mul_(a).addcmul_(d_c, b).square_()
        logp = torch.sub(log_norm, logp.addcmul_(d_c.square_(), e), out=logp)
        torch.softmax(logp, 0, out=out)

    def _encode_pruned(self, hue, chroma, out):
        """``[n]`` coordinates in :attr:`square` -> the candidates' posteriors written into zeros ``out [K, n]``."""
        tables, index = self._pruned_params_on(hue.device)
        grid = PRUNE_GRID
        low, scale = self.square[0], grid / (self.square[1] - self.square[0])
        cell = ((hue - low) * scale).long().clamp_(0, grid - 1).mul_(grid).add_(
            ((chroma - low) * scale).long().clamp_(0, grid - 1))
        mu_h, mu_c, a, b, e, log_norm = (t.index_select(0, cell) for t in tables)   # each [n, M]
        d_c = chroma[:, None] - mu_c
        logp = (hue[:, None] - mu_h).mul_(a).addcmul_(d_c, b).square_()
        logp = torch.sub(log_norm, logp.addcmul_(d_c.square_(), e), out=logp)
        probs = torch.softmax(logp, 1, out=d_c)
        out.T.scatter_(1, index.index_select(0, cell), probs)

    def decode(self, probs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """``[B, K, H, W]`` probabilities -> (hue, chroma) ``[B, H, W]``."""
        return utils.decode_bins(probs, self.centres, method, temperature)

    def empirical_prior(self, hc, sigma):
        """Bin prior ``[K]`` from pixels ``[N, 2]``: mean posterior, smoothed over bin centres.

        The smoothing is a Gaussian of width ``sigma`` on the chroma plane between centres.
        """
        post = self.encode(torch.from_numpy(hc[:, 0]).view(1, -1, 1),
                           torch.from_numpy(hc[:, 1]).view(1, -1, 1))
        prior = post.double().mean(dim=(0, 2, 3)).numpy()
        if sigma:
            ab = self.centres_on_plane                                                  # [K, 2]
            dist2 = ((ab[:, None, :] - ab[None, :, :]) ** 2).sum(-1)
            kernel = np.exp(-0.5 * dist2 / sigma ** 2)
            prior = kernel @ prior / kernel.sum(1)
        return prior / prior.sum()

    def state(self):
        """Plain tensors for a checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {'binning': self.binning, 'weights': torch.from_numpy(self.weights),
                'means': torch.from_numpy(self.means), 'covariances': torch.from_numpy(self.covariances),
                'space': self.space}


class OneHotBins:
    """Separate hue and chroma bins, edges ``linspace(0, 1, K)``; labels ``digitize - 1``.

    The network has two heads (2K outputs: hue scores then chroma scores).
    """

    binning = 'one-hot'

    def __init__(self, num_bins):
        if num_bins < 2:
            raise ValueError('one-hot binning needs K >= 2')
        self.num_bins = num_bins
        self.edges = torch.linspace(0.0, 1.0, num_bins, dtype=torch.float64)
        upper = torch.cat([self.edges[1:], self.edges[-1:]])
        self.bin_centres = ((self.edges + upper) / 2).float()

    @property
    def num_outputs(self):
        return 2 * self.num_bins

    def labels(self, x):
        """Values ``[...]`` in [0, 1] -> bin indices (numpy.digitize(x, edges) - 1)."""
        edges = self.edges.to(device=x.device, dtype=x.dtype)
        return (torch.bucketize(x, edges, right=True) - 1).clamp_(0, self.num_bins - 1)

    def encode(self, hue, chroma):
        """(H, C) ``[B, H, W]`` -> labels ``[B, 2, H, W]`` (hue bin, chroma bin), int64."""
        return torch.stack([self.labels(hue), self.labels(chroma)], dim=1)

    def split_heads(self, scores):
        """``[B, 2K, H, W]`` network output -> (hue scores, chroma scores)."""
        return scores[:, :self.num_bins], scores[:, self.num_bins:]

    def decode(self, probs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """``[B, 2K, H, W]`` per-head probabilities -> (hue, chroma) ``[B, H, W]``."""
        hue_p, chroma_p = self.split_heads(probs)
        return utils.decode_hue_and_chroma_heads(hue_p, chroma_p, self.bin_centres,
                                                 self.bin_centres, method, temperature)

    def state(self):
        return {'binning': self.binning, 'num_bins': self.num_bins}


def check_num_bins(binning, num_bins):
    """Fail early, before anything is written, on a K the binning cannot take."""
    if binning not in BINNINGS:
        raise ValueError('unknown binning %r (choose from %s)' % (binning, BINNINGS))
    side = int(round(math.sqrt(num_bins)))
    if binning == 'uniform' and (side * side != num_bins or side < 2):
        raise ValueError('uniform binning needs K to be a perfect square >= 4, got %d' % num_bins)
    if num_bins < 2:
        raise ValueError('K must be at least 2, got %d' % num_bins)


def rebalancing_weights(prior, lam):
    """Zhang et al. 2016: w ~ ((1 - lam) p + lam / K)^-1, scaled so E_p[w] = 1."""
    prior = np.asarray(prior, np.float64)
    weights = 1.0 / ((1.0 - lam) * prior + lam / len(prior))
    return weights / (prior * weights).sum()


def bins_from_state(state):
    """Inverse of ``bins.state()`` (checkpoint -> bins object)."""
    if state['binning'] == 'one-hot':
        return OneHotBins(int(state['num_bins']))
    return GMMBins(state['weights'].numpy(), state['means'].numpy(), state['covariances'].numpy(),
                   binning=state['binning'], space=state.get('space', 'polar'))   # older checkpoints: polar


# --------------------------------------------------------------------------
# batch encoder (runs on the training device)
# --------------------------------------------------------------------------

class ColorEncoder:
    """uint8 RGB batch -> (mean-centred L ``[B, 1, H, W]``, target); also the way back."""

    def __init__(self, bins, mean_l, img_lowpass=None, class_weights=None):
        self.bins, self.mean_l, self.img_lowpass = bins, float(mean_l), img_lowpass
        self.class_weights = None if class_weights is None else torch.as_tensor(
            np.asarray(class_weights), dtype=torch.float32)

    @property
    def binning(self):
        return self.bins.binning

    @property
    def num_bins(self):
        return self.bins.num_bins

    @property
    def num_outputs(self):
        return self.bins.num_outputs

    def rgb_float(self, rgb_uint8):
        return rgb_uint8.float().div_(255.0)

    def lightness_input(self, lightness):
        """L ``[B, H, W]`` -> network input ``[B, 1, H, W]`` (mean-centred)."""
        return (lightness - self.mean_l).unsqueeze(1)

    def encode(self, rgb_uint8, target_dtype=torch.float32):
        """uint8 ``[B, 3, H, W]`` (on any device) -> (input ``[B, 1, H, W]``, target).

        Target: ``[B, K, H, W]`` posteriors in ``target_dtype`` or ``[B, 2, H, W]`` labels.
        Computed in float32 also inside an autocast region (only the storage is ``target_dtype``).
        """
        with torch.autocast(rgb_uint8.device.type, enabled=False):   # bf16 low-pass matmuls move bins
            hue, chroma, lightness = utils.rgb_to_hcl(self.rgb_float(rgb_uint8))
            hue, chroma = utils.lowpass_hue_chroma(hue, chroma, self.img_lowpass)
            target = self.bins.encode(hue, chroma)
        if target.is_floating_point():
            target = target.to(target_dtype)
        return self.lightness_input(lightness), target

    def probabilities(self, scores):
        """Network scores -> per-pixel bin probabilities (softmax per head)."""
        if self.binning == 'one-hot':
            return torch.cat([torch.softmax(s.float(), 1) for s in self.bins.split_heads(scores)], 1)
        return torch.softmax(scores.float(), dim=1)

    def to_rgb(self, net_input, probs, method='annealed', temperature=utils.DEFAULT_TEMPERATURE):
        """(input ``[B, 1, H, W]``, probabilities) -> RGB ``[B, 3, H, W]`` in [0, 1]."""
        hue, chroma = self.bins.decode(probs, method, temperature)
        return utils.hue_chroma_to_rgb(hue, chroma, net_input[:, 0].float() + self.mean_l)

    def state(self):
        """Everything needed to rebuild this encoder, as plain tensors and builtins."""
        return {'bins': self.bins.state(), 'mean_l': self.mean_l, 'img_lowpass': self.img_lowpass,
                'class_weights': self.class_weights}

    @classmethod
    def from_state(cls, state):
        return cls(bins_from_state(state['bins']), state['mean_l'], state['img_lowpass'],
                   state.get('class_weights'))


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
