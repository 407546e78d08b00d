"""Image data: scikit-learn's bundled digits, ``.npy`` / ``.npz`` arrays (keras layout too), CIFAR, folders.

Every loader returns a :class:`DataSplit`: float32 tensors ``(N, C, H, W)`` in ``[-1, 1]``
with a held-out split, integer labels where the source has them, and the number of
intensity ``levels`` of the source (256 for 8-bit images, 17 for digits, ``None`` for
float data) so that likelihoods can be reported in bits/dim.

Scaling and the likelihood convention
-------------------------------------
Training data with ``K`` integer levels ``k in {0, ..., K-1}`` is scaled by
:func:`to_unit_range` as ``x = 2 k / (K - 1) - 1`` (integers map exactly onto ``[-1, 1]``).

For likelihoods the data must be dequantized (Theis et al. 2016; the convention of Song
et al. 2021's code): :func:`dequantize` draws ``z = 2 (k + u) / K - 1`` with
``u ~ U[0, 1)^D``, a continuous variable in ``[-1, 1)``.  The map ``k + u -> z`` multiplies
lengths by ``2 / K`` in each of the ``D`` dimensions, so densities satisfy
``log p(k + u) = log p(z) + D log(2 / K)`` and, by Jensen, the discrete log-probability
obeys ``log P(k) >= E_u[log p(z)] + D log(2 / K)``.  Bits per dimension are therefore

    bpd = -log p(z) / (D ln 2) + log2(K / 2),

i.e. ``+7`` for 8-bit data (``K = 256``), as in Song et al. 2021.  :func:`bits_per_dim`
applies exactly this; :func:`log_jacobian` returns ``D log(2 / K)``.  All three are
``Quantization(K, -1, 1)`` of :mod:`scoresde.flow.dequantization`, the library's one convention.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scoresde.data.labels import check_classes

__all__ = [
    "DATA_LAYOUTS",
    "IMAGE_EXTENSIONS",
    "MAX_CLASSES",
    "DataSplit",
    "ImageDataset",
    "bits_per_dim",
    "dequantize",
    "from_unit_range",
    "load_array",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_npy",
    "load_npz",
    "log_jacobian",
    "random_hflip",
    "resize_images",
    "save_image_folder",
    "save_image_grid",
    "split_data",
    "to_uint8",
    "to_unit_range",
]

MAX_CLASSES = 2**20
"""The most class labels a data set may have (checked before any embedding is allocated)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_IMAGE_KEYS = ("x", "images", "image", "data", "arr_0")
_LABEL_KEYS = ("y", "labels", "label", "targets", "arr_1")


@dataclass
class DataSplit:
    """An image data set split into training and held-out parts.

    Attributes:
        train: ``(N_train, C, H, W)`` float32 in ``[-1, 1]``.
        test: ``(N_test, C, H, W)`` float32 in ``[-1, 1]``.
        train_labels, test_labels: ``(N,)`` int64 labels, or ``None``.
        num_classes: number of classes (labels lie in ``[0, num_classes)``), or ``None``.
        levels: intensity levels ``K`` of the source (256 for 8-bit, 17 for digits), or
            ``None`` for continuous data (no bits/dim).
        name: where the data came from.
        class_names: the classes' names where the source has them (CIFAR, class folders).
    """

    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    num_classes: int | None = None
    levels: int | None = None
    name: str = ""
    class_names: list[str] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    def info(self) -> dict:
        """JSON-serialisable description (stored in checkpoints)."""
        info = {
            "name": self.name,
            "shape": list(self.shape),
            "num_train": int(self.train.shape[0]),
            "num_test": int(self.test.shape[0]),
            "num_classes": self.num_classes,
            "levels": self.levels,
        }
        if self.class_names is not None:
            info["class_names"] = list(self.class_names)
        return info


ImageDataset = DataSplit


# ---------------------------------------------------------------------- #
# Scaling.
# ---------------------------------------------------------------------- #
def to_unit_range(x: Tensor, max_value: float) -> Tensor:
    """Map values in ``[0, max_value]`` to ``[-1, 1]``: ``2 x / max_value - 1`` (float32)."""
    return x.float() * (2.0 / max_value) - 1.0


def from_unit_range(x: Tensor, max_value: float = 1.0) -> Tensor:
    """Map ``[-1, 1]`` back to ``[0, max_value]`` (clamping samples that overshoot)."""
    return (x.clamp(-1.0, 1.0) + 1.0) * (0.5 * max_value)


def to_uint8(x: Tensor) -> Tensor:
    """``[-1, 1]`` images to 8-bit integers (rounded)."""
    return torch.round(from_unit_range(x.float(), 255.0)).to(torch.uint8)


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniformly dequantize scaled data ``x = 2 k / (K - 1) - 1`` to ``z = 2 (k + u) / K - 1``.

    See the module docstring for the change of variables; ``x: (B, *D)``.  The one convention
    of :class:`scoresde.flow.dequantization.Quantization` (``Quantization(levels, -1, 1)``).
    """
    return _quantization(levels).dequantize_data(x, generator)


def log_jacobian(num_dims: int, levels: int) -> float:
    """``D log(2 / K)``: add to ``log p(z)`` for the density of the dequantized integers ``k + u``."""
    return _quantization(levels).log_jacobian(num_dims)


def bits_per_dim(logp: Tensor, num_dims: int, levels: int | None = None) -> Tensor:
    """Bits/dim from ``log p(z)`` (nats) of dequantized data ``z`` in ``[-1, 1]``.

    ``bpd = -(log p(z) + D log(2/K)) / (D ln 2)``; with ``levels=None`` the plain
    ``-log p / (D ln 2)`` of continuous data.
    """
    if levels is None:
        return -logp / (num_dims * math.log(2.0))
    return _quantization(levels).bits_per_dim(logp, num_dims)


def _quantization(levels: int):
    from scoresde.flow.dequantization import Quantization

    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    return Quantization(int(levels), -1.0, 1.0)


def random_hflip(x: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Flip each image ``(B, C, H, W)`` left-right with probability ``p``."""
    flip = torch.rand(x.shape[0], generator=generator) < p
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


# ---------------------------------------------------------------------- #
# Splitting.
# ---------------------------------------------------------------------- #
def split_data(
    x: Tensor,
    labels: Tensor | None,
    test_fraction: float = 0.1,
    seed: int = 0,
    *,
    num_classes: int | None = None,
    levels: int | None = None,
    name: str = "",
) -> DataSplit:
    """Shuffle with ``seed`` and hold out ``test_fraction`` of the images (at least one of each part)."""
    n = x.shape[0]
    if not (0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    n_test = round(n * test_fraction)
    if test_fraction > 0:
        n_test = max(1, n_test)
    if n - n_test < 1:
        raise ValueError(
            f"{name or 'data'}: {n} image(s) are too few for a held-out split of {test_fraction}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, te = perm[n_test:], perm[:n_test]
    return DataSplit(
        train=x[tr].contiguous(),
        test=x[te].contiguous(),
        train_labels=None if labels is None else labels[tr].contiguous(),
        test_labels=None if labels is None else labels[te].contiguous(),
        num_classes=num_classes,
        levels=levels,
        name=name,
    )


def _labels(y: np.ndarray | None, n: int, where: str) -> tuple[Tensor | None, int | None]:
    if y is None:
        return None, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1 and y.shape[0] == n:
        y = y[:, 0]  # keras' CIFAR labels are (N, 1)
    if y.shape != (n,):
        raise ValueError(f"{where}: labels must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if n and y.min() < 0:
        raise ValueError(f"{where}: labels must be non-negative, got minimum {y.min()}")
    if n and y.max() >= MAX_CLASSES:
        raise ValueError(
            f"{where}: labels go up to {y.max()}, but at most {MAX_CLASSES} classes are supported "
            f"(labels in [0, {MAX_CLASSES - 1}]; a conditional model allocates one embedding per class)"
        )
    labels = torch.as_tensor(y.astype(np.int64))
    return labels, int(labels.max()) + 1 if n else 0


# ---------------------------------------------------------------------- #
# The bundled default: scikit-learn's digits.
# ---------------------------------------------------------------------- #
def load_digits(test_fraction: float = 0.1, seed: int = 0, colored: bool = False) -> DataSplit:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, 17 levels).

    No download: the data ships with scikit-learn.  Images ``(N, 1, 8, 8)`` in ``[-1, 1]``.

    With ``colored=True`` every digit is tinted by its own random colour, giving a 3-channel
    set ``(N, 3, 8, 8)`` for colorization (:func:`scoresde.guidance.colorize`): the colour
    is a fully saturated hue ``h ~ U[0, 1)`` (HSV with ``s = v = 1``) drawn with ``seed``,
    and image ``n`` is ``2 v_n c_n - 1`` with intensities ``v_n`` in ``[0, 1]`` (black
    background, coloured strokes).  Such data is continuous (``levels=None``); ``load_dataset``
    calls it ``"digits-color"``.
    """
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    v = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.as_tensor(d.target, dtype=torch.int64)
    if not colored:
        x = to_unit_range(v * 16.0, 16.0)
        return split_data(x, y, test_fraction, seed, num_classes=10, levels=17, name="digits")
    hue = torch.rand(v.shape[0], generator=torch.Generator().manual_seed(seed + 12345))
    colour = _hue_to_rgb(hue)  # (N, 3)
    x = 2.0 * v * colour[:, :, None, None] - 1.0
    return split_data(x, y, test_fraction, seed, num_classes=10, levels=None, name="digits-color")


def _hue_to_rgb(hue: Tensor) -> Tensor:
    """Fully saturated, full-value HSV colours of hues ``(N,)`` in ``[0, 1)``, as RGB ``(N, 3)``."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6.0 * hue[:, None]) % 6.0
    return 1.0 - torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


# ---------------------------------------------------------------------- #
# Arrays.
# ---------------------------------------------------------------------- #
def _images_from_array(a: np.ndarray, where: str) -> tuple[Tensor, int | None]:
    """``(N, H, W[, C])`` uint8 / integer / float array to ``(N, C, H, W)`` in ``[-1, 1]``."""
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{where}: images must be uint8, integer or float, got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: images must have shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4, got {a.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{where}: the array holds no images (shape {a.shape})")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{where}: images contain NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{where}: float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        x, levels = to_unit_range(torch.as_tensor(a, dtype=torch.float32), 1.0), None
    elif a.dtype == np.uint16:
        x, levels = to_unit_range(torch.as_tensor(a.astype(np.int32)), 65535.0), 65536
    else:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{where}: integer images must lie in [0, 255] (or be uint16), got values in [{lo}, {hi}]"
            )
        x, levels = to_unit_range(torch.as_tensor(a.astype(np.uint8)), 255.0), 256
    return x.permute(0, 3, 1, 2).contiguous(), levels


def resize_images(x: Tensor, image_size: int, levels: int | None = None) -> Tensor:
    """Resize ``(N, C, H, W)`` images in ``[-1, 1]`` to ``image_size x image_size``.

    Bicubic with antialiasing (as PIL resizes image folders), clamped to ``[-1, 1]``; with
    ``levels`` the result is rounded back onto the ``K``-level grid ``2 k / (K - 1) - 1`` so
    that bits/dim stay defined.  A no-op when the size already matches.
    """
    if int(image_size) < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size}")
    if x.ndim != 4:
        raise ValueError(f"resize_images expects (N, C, H, W), got {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == (image_size, image_size):
        return x
    out = torch.nn.functional.interpolate(
        x.float(), size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True
    ).clamp(-1.0, 1.0)
    if levels is not None:
        k = torch.round((out + 1.0) * 0.5 * (levels - 1))
        out = to_unit_range(k, levels - 1)
    return out.contiguous()


def load_npy(
    path: str | Path, test_fraction: float = 0.1, seed: int = 0, image_size: int | None = None
) -> DataSplit:
    """Load unlabelled images from a ``.npy`` array ``(N, H, W[, C])``, uint8 or float in ``[0, 1]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    x, levels = _images_from_array(a, str(path))
    if image_size is not None:
        x = resize_images(x, image_size, levels)
    return split_data(x, None, test_fraction, seed, levels=levels, name=str(path))


_KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_keras(path: Path, arrays: dict[str, np.ndarray], test_fraction: float, seed: int) -> DataSplit:
    """The keras layout: ``x_train`` [, ``y_train``] [, ``x_test`` [, ``y_test``]]."""
    x_tr, levels = _images_from_array(arrays["x_train"], f"{path}[x_train]")
    has_test = "x_test" in arrays
    if has_test and ("y_train" in arrays) != ("y_test" in arrays):
        raise ValueError(f"{path}: labels for one split only; give both y_train and y_test, or neither")
    if "y_test" in arrays and not has_test:
        raise ValueError(f"{path}: y_test without x_test")
    y_tr, c_tr = _labels(arrays.get("y_train"), x_tr.shape[0], f"{path}[y_train]")
    if not has_test:
        split = split_data(x_tr, y_tr, test_fraction, seed, num_classes=c_tr, levels=levels, name=str(path))
        split.num_classes = check_classes(split.train_labels, split.test_labels, str(path))
        return split
    x_te, levels_te = _images_from_array(arrays["x_test"], f"{path}[x_test]")
    if x_te.shape[1:] != x_tr.shape[1:] or levels_te != levels:
        raise ValueError(
            f"{path}: x_test {tuple(x_te.shape[1:])} (levels {levels_te}) does not match "
            f"x_train {tuple(x_tr.shape[1:])} (levels {levels})"
        )
    y_te, _ = _labels(arrays.get("y_test"), x_te.shape[0], f"{path}[y_test]")
    num_classes = check_classes(y_tr, y_te, str(path))
    return DataSplit(x_tr, x_te, y_tr, y_te, num_classes=num_classes, levels=levels, name=str(path))


def load_npz(
    path: str | Path, test_fraction: float = 0.1, seed: int = 0, image_size: int | None = None
) -> DataSplit:
    """Load images and optional labels from a ``.npz`` archive.

    Two layouts:

    - keras (``keras.datasets.mnist.load_data()`` saved with ``np.savez``): ``x_train``
      [, ``y_train``] [, ``x_test`` [, ``y_test``]].  A given test split is used as such
      (``test_fraction`` and ``seed`` are then ignored); without one, ``test_fraction`` of
      ``x_train`` is held out.  Labels may be ``(N,)`` or ``(N, 1)``.
    - one array: images under ``x``/``images``/``image``/``data``/``arr_0`` and optional labels
      under ``y``/``labels``/``label``/``targets``/``arr_1``, split by ``test_fraction``.

    Images are ``(N, H, W[, C])``: uint8 (256 levels), uint16 (65,536 levels) or float in
    ``[0, 1]``; ``image_size`` resizes them (see :func:`resize_images`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from None
    if "x_train" in arrays:
        split = _load_keras(path, arrays, test_fraction, seed)
    else:
        for kind, keys in (("image", _IMAGE_KEYS), ("label", _LABEL_KEYS)):
            found = [k for k in keys if k in arrays]
            if len(found) > 1:
                raise ValueError(
                    f"{path}: ambiguous {kind} arrays {found} (keys in the file: {list(arrays)}); keep one "
                    f"of them, since it is unclear which one holds the {kind}s"
                )
        key = next((k for k in _IMAGE_KEYS if k in arrays), None)
        if key is None:
            raise ValueError(
                f"{path}: no image array; expected the keras keys {list(_KERAS_KEYS)} or one of "
                f"{list(_IMAGE_KEYS)}, found {list(arrays)}"
            )
        x, levels = _images_from_array(arrays[key], f"{path}[{key}]")
        label_key = next((k for k in _LABEL_KEYS if k in arrays and k != key), None)
        y, num_classes = _labels(arrays.get(label_key), x.shape[0], f"{path}[{label_key}]")
        split = split_data(x, y, test_fraction, seed, num_classes=num_classes, levels=levels, name=str(path))
        split.num_classes = check_classes(split.train_labels, split.test_labels, str(path))
    if image_size is not None:
        split.train = resize_images(split.train, image_size, split.levels)
        split.test = resize_images(split.test, image_size, split.levels)
    return split


def load_array(
    path: str | Path, test_fraction: float = 0.1, seed: int = 0, image_size: int | None = None
) -> DataSplit:
    """:func:`load_npy` or :func:`load_npz` by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return load_npy(path, test_fraction, seed, image_size)
    if suffix == ".npz":
        return load_npz(path, test_fraction, seed, image_size)
    raise ValueError(f"{path}: unsupported array file; use .npy or .npz")


# ---------------------------------------------------------------------- #
# Folders of images.
# ---------------------------------------------------------------------- #
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _image_to_array(im, channels: int, image_size: int | None, where: str) -> tuple[np.ndarray, int]:
    """A PIL image as ``(H, W, C)`` float32 in ``[0, 1]`` and its intensity levels (256 or 65536).

    8-bit images go through ``convert("L"/"RGB")``; 16-bit grayscale (PIL modes ``I;16*``,
    and ``I`` as older Pillow opens 16-bit PNGs) are divided by 65535 instead, since
    ``convert("L")`` would clip them at 255.  Float images (mode ``F``) must lie in ``[0, 1]``.
    """
    from PIL import Image

    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
        a: np.ndarray = np.asarray(im, dtype=np.float32)
        if im.mode == "F":
            scale, levels = 1.0, 0
        else:
            scale, levels = 65535.0, 65536
        if a.min() < 0 or a.max() > scale:
            raise ValueError(
                f"{where}: mode {im.mode} values lie in [{a.min():g}, {a.max():g}], not [0, {scale:g}]"
            )
        f = Image.fromarray(a / scale, mode="F")
        if image_size is not None:
            f = f.resize((image_size, image_size), Image.Resampling.BICUBIC)
        a = np.clip(np.asarray(f, dtype=np.float32), 0.0, 1.0)[..., None]
        if levels:
            a = np.round(a * 65535.0) / 65535.0
        return (np.repeat(a, 3, axis=-1) if channels == 3 else a), levels
    im = im.convert("L" if channels == 1 else "RGB")
    if image_size is not None:
        im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
    a = np.asarray(im, dtype=np.float32) / 255.0
    return (a[..., None] if a.ndim == 2 else a), 256


def load_image_folder(
    path: str | Path,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplit:
    """Load every image under ``path`` (recursively) with PIL.

    If all images sit in sub-folders of ``path``, each sub-folder is a class (sorted names
    give labels ``0, 1, ...``; the torchvision ``ImageFolder`` convention).  16-bit grayscale
    PNGs keep their 65,536 levels (scaled by 65535, not clipped at 255).

    Args:
        path: the folder.
        image_size: resize (bicubic) to ``image_size x image_size``; without it all images
            must share one size.
        channels: 1 (grayscale) or 3 (RGB); default: 1 if every image is grayscale, else 3.
        test_fraction, seed: the held-out split.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no such image folder: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"{root}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    images = []
    for f in files:
        try:
            with warnings.catch_warnings():
                # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: refuse both.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    im.load()
                    images.append(im.copy())
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
            raise ValueError(
                f"{f}: image too large to decode safely ({err}); the limit is "
                f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels"
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{f}: cannot read this image ({err})") from None
    if channels is None:
        channels = 1 if all(im.mode in ("1", "L", "F", *_SIXTEEN_BIT_MODES) for im in images) else 3
    arrays, levels = [], set()
    for f, im in zip(files, images):
        a, k = _image_to_array(im, channels, image_size, str(f))
        arrays.append(a)
        levels.add(k)
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(
            f"{root}: images have different sizes {sorted(sizes)}; pass image_size to resize them"
        )
    # One level count for the set: 8-bit images are exact on the 16-bit grid only when
    # rescaled, so mixed or float folders are continuous data (no bits/dim).
    level = levels.pop() if len(levels) == 1 else 0
    x = torch.as_tensor(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    x = x * 2.0 - 1.0
    if level:
        x = to_unit_range(torch.round((x + 1.0) * 0.5 * (level - 1)), level - 1)
    rel = [f.relative_to(root) for f in files]
    labels, num_classes, class_names = None, None, None
    if all(len(r.parts) >= 2 for r in rel):
        classes = sorted({r.parts[0] for r in rel})
        if len(classes) > 1:
            index = {c: i for i, c in enumerate(classes)}
            labels = torch.tensor([index[r.parts[0]] for r in rel], dtype=torch.int64)
            num_classes, class_names = len(classes), classes
    split = split_data(
        x, labels, test_fraction, seed, num_classes=num_classes, levels=level or None, name=str(root)
    )
    split.class_names = class_names
    if labels is not None:
        check_classes(
            split.train_labels,
            split.test_labels,
            str(root),
            num_classes,
            "the class sub-folders",
            class_names,
        )
    return split


DATA_LAYOUTS = """\
Accepted data sources (--data):
  digits, digits-color    scikit-learn's bundled 8x8 digits (no download)
  FILE.npz (keras)        x_train [y_train] [x_test [y_test]], e.g. np.savez of
                          keras.datasets.mnist.load_data(); a given test split is used as such
  FILE.npz / FILE.npy     one image array (x / images / data / arr_0) [labels: y / labels / targets]
                          arrays are (N, H, W[, C]): uint8, uint16, or float in [0, 1]
  CIFAR-10 / CIFAR-100    the folder (or .tar.gz) torchvision downloads: cifar-10-batches-py
                          (data_batch_1..5, test_batch, batches.meta), cifar-100-python (train,
                          test, meta), or the binary version (cifar-10-batches-bin, cifar-100-binary);
                          pickles are read without running code; the official test split is used
  FOLDER/                 images (png, jpg, bmp, gif, webp, tif); class sub-folders become labels;
                          16-bit grayscale PNGs keep their 65,536 levels
  --image-size N resizes any of them (bicubic) to N x N."""
"""The accepted layouts, in words, for ``--help`` texts."""


def load_dataset(
    source: str | Path,
    test_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
) -> DataSplit:
    """Load any source of :data:`DATA_LAYOUTS`.

    Args:
        source: ``"digits"``, ``"digits-color"``, a ``.npy`` / ``.npz`` file, a CIFAR folder or
            archive, or a folder of images.
        test_fraction, seed: the held-out split, where the source has none of its own.
        image_size: resize to ``image_size x image_size``.
        channels: 1 or 3 for image folders (default: from the images).
    """
    if str(source) in ("digits", "digits-color"):
        split = load_digits(test_fraction, seed, colored=str(source) == "digits-color")
        if image_size is not None:
            split.train = resize_images(split.train, image_size, split.levels)
            split.test = resize_images(split.test, image_size, split.levels)
        return split
    from scoresde.data.cifar import find_cifar, load_cifar

    path = Path(source)
    if find_cifar(path) is not None:
        split = load_cifar(path)
        if image_size is not None:
            split.train = resize_images(split.train, image_size, split.levels)
            split.test = resize_images(split.test, image_size, split.levels)
        return split
    if path.is_dir():
        return load_image_folder(path, image_size, channels, test_fraction, seed)
    if path.suffix.lower() in (".npy", ".npz"):
        return load_array(path, test_fraction, seed, image_size)
    if not path.exists():
        raise FileNotFoundError(f"unknown data set {str(source)!r}: not 'digits', and no such file or folder")
    raise ValueError(f"{path}: unsupported data source.\n{DATA_LAYOUTS}")


# ---------------------------------------------------------------------- #
# Writing images.
# ---------------------------------------------------------------------- #
def save_image_grid(
    x: Tensor, path: str | Path, nrow: int | None = None, padding: int = 1, scale: int = 1
) -> Path:
    """Write images ``(B, C, H, W)`` in ``[-1, 1]`` as one PNG grid (``nrow`` images per row).

    Args:
        x: images; ``C`` is 1 (grayscale) or 3 (RGB).
        path: output file.
        nrow: images per row (default ``ceil(sqrt(B))``).
        padding: pixels between images.
        scale: integer upscaling factor (nearest neighbour), for tiny images such as digits.
    """
    from PIL import Image

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"save_image_grid expects (B, C, H, W) with C in 1, 3, got {tuple(x.shape)}")
    b, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    ncol = math.ceil(b / nrow)
    img = to_uint8(x.detach().cpu()).permute(0, 2, 3, 1).numpy()
    grid = np.zeros((ncol * (h + padding) + padding, nrow * (w + padding) + padding, c), dtype=np.uint8)
    for i in range(b):
        r, q = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + q * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = img[i]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
    return path


def save_image_folder(
    x: Tensor, folder: str | Path, first_index: int = 0, digits: int = 6, prefix: str = ""
) -> list[Path]:
    """Write images ``(B, C, H, W)`` in ``[-1, 1]`` as numbered 8-bit PNGs, one file per image.

    Image ``b`` becomes ``folder/{prefix}{first_index + b:0{digits}d}.png`` (grayscale for
    ``C = 1``, RGB for ``C = 3``): the layout external FID tools (pytorch-fid,
    torch-fidelity, clean-fid) read.  ``first_index`` lets several processes write their shares
    of one numbering into the same folder.
    """
    from PIL import Image

    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"save_image_folder expects (B, C, H, W) with C in 1, 3, got {tuple(x.shape)}")
    if first_index < 0 or digits < 1:
        raise ValueError(f"need first_index >= 0 and digits >= 1, got {first_index} and {digits}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    img = to_uint8(x.detach().cpu()).permute(0, 2, 3, 1).numpy()
    paths = []
    for b in range(img.shape[0]):
        path = folder / f"{prefix}{first_index + b:0{digits}d}.png"
        Image.fromarray(img[b, :, :, 0] if img.shape[-1] == 1 else img[b]).save(path)
        paths.append(path)
    return paths
