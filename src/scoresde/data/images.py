"""Image data: scikit-learn's bundled digits, ``.npy`` / ``.npz`` arrays, folders of images.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGE_EXTENSIONS",
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
    "save_image_grid",
    "split_data",
    "to_uint8",
    "to_unit_range",
]

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
    """

    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    num_classes: int | None = None
    levels: int | None = None
    name: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    def info(self) -> dict:
        """JSON-serialisable description (stored in checkpoints)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "num_train": int(self.train.shape[0]),
            "num_test": int(self.test.shape[0]),
            "num_classes": self.num_classes,
            "levels": self.levels,
        }


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
    if y.shape != (n,):
        raise ValueError(f"{where}: labels must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if n and y.min() < 0:
        raise ValueError(f"{where}: labels must be non-negative, got minimum {y.min()}")
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
    else:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{where}: integer images must lie in [0, 255], got values in [{lo}, {hi}]")
        x, levels = to_unit_range(torch.as_tensor(a.astype(np.uint8)), 255.0), 256
    return x.permute(0, 3, 1, 2).contiguous(), levels


def load_npy(path: str | Path, test_fraction: float = 0.1, seed: int = 0) -> DataSplit:
    """Load unlabelled images from a ``.npy`` array ``(N, H, W[, C])``, uint8 or float in ``[0, 1]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    x, levels = _images_from_array(a, str(path))
    return split_data(x, None, test_fraction, seed, levels=levels, name=str(path))


def load_npz(path: str | Path, test_fraction: float = 0.1, seed: int = 0) -> DataSplit:
    """Load images (key ``x``/``images``/``data``/``arr_0``) and optional labels (``y``/``labels``/...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from None
    key = next((k for k in _IMAGE_KEYS if k in arrays), None)
    if key is None:
        raise ValueError(
            f"{path}: no image array; expected one of the keys {list(_IMAGE_KEYS)}, found {list(arrays)}"
        )
    x, levels = _images_from_array(arrays[key], f"{path}[{key}]")
    label_key = next((k for k in _LABEL_KEYS if k in arrays and k != key), None)
    y, num_classes = _labels(arrays.get(label_key), x.shape[0], f"{path}[{label_key}]")
    return split_data(x, y, test_fraction, seed, num_classes=num_classes, levels=levels, name=str(path))


def load_array(path: str | Path, test_fraction: float = 0.1, seed: int = 0) -> DataSplit:
    """:func:`load_npy` or :func:`load_npz` by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return load_npy(path, test_fraction, seed)
    if suffix == ".npz":
        return load_npz(path, test_fraction, seed)
    raise ValueError(f"{path}: unsupported array file; use .npy or .npz")


# ---------------------------------------------------------------------- #
# Folders of images.
# ---------------------------------------------------------------------- #
def load_image_folder(
    path: str | Path,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplit:
    """Load every image under ``path`` (recursively) with PIL.

    If all images sit in sub-folders of ``path``, each sub-folder is a class (sorted names
    give labels ``0, 1, ...``; the torchvision ``ImageFolder`` convention).

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
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{f}: cannot read this image ({err})") from None
    if channels is None:
        channels = 1 if all(im.mode in ("1", "L", "I;16", "I", "F") for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for im in images:
        im = im.convert(mode)
        if image_size is not None:
            im = im.resize((image_size, image_size), Image.BICUBIC)
        arrays.append(np.asarray(im, dtype=np.uint8))
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(
            f"{root}: images have different sizes {sorted(sizes)}; pass image_size to resize them"
        )
    x = to_unit_range(torch.as_tensor(np.stack(arrays)), 255.0)
    x = x[..., None] if x.ndim == 3 else x
    x = x.permute(0, 3, 1, 2).contiguous()
    rel = [f.relative_to(root) for f in files]
    labels, num_classes = None, None
    if all(len(r.parts) >= 2 for r in rel):
        classes = sorted({r.parts[0] for r in rel})
        if len(classes) > 1:
            index = {c: i for i, c in enumerate(classes)}
            labels = torch.tensor([index[r.parts[0]] for r in rel], dtype=torch.int64)
            num_classes = len(classes)
    return split_data(x, labels, test_fraction, seed, num_classes=num_classes, levels=256, name=str(root))


def load_dataset(
    source: str | Path,
    test_fraction: float = 0.1,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
) -> DataSplit:
    """``"digits"``, ``"digits-color"``, a ``.npy`` / ``.npz`` file or a folder of images."""
    if str(source) == "digits":
        return load_digits(test_fraction, seed)
    if str(source) == "digits-color":
        return load_digits(test_fraction, seed, colored=True)
    path = Path(source)
    if path.is_dir():
        return load_image_folder(path, image_size, channels, test_fraction, seed)
    if path.suffix.lower() in (".npy", ".npz"):
        return load_array(path, test_fraction, seed)
    if not path.exists():
        raise FileNotFoundError(f"unknown data set {str(source)!r}: not 'digits', and no such file or folder")
    raise ValueError(f"{path}: unsupported data source; use 'digits', a .npy/.npz file or a folder of images")


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
