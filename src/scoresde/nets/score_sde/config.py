"""The paper's network config fields (``config.model.*``, ``config.data.*``), read and checked.

score_sde_pytorch configures its networks with ``ml_collections`` config files
(``configs/ve/cifar10_ncsnpp_continuous.py`` and friends).  Here the same fields come from a
nested mapping ``{"model": {...}, "data": {...}, "training": {...}}`` (dotted keys such as
``"model.nf"`` are accepted too), e.g. a JSON or TOML file written from such a config.  Every
field a network does not support, and every value it does not support, raises a
``ValueError`` that names the field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# model.name of the RefineNet score networks (score_sde_pytorch ``models/ncsnv2.py``): NCSN
# (Song & Ermon 2019, configs/ve/ncsn/*) and NCSNv2 (Song & Ermon 2020, configs/ve/ncsnv2/*).
# The number is how many times the encoder halves the resolution (the others are dilated).
REFINENET_NETWORKS = {"ncsn": 1, "ncsnv2_64": 1, "ncsnv2_128": 2, "ncsnv2_256": 3}

__all__ = [
    "REFINENET_NETWORKS",
    "NCSNNetConfig",
    "ScoreSdeNetConfig",
    "load_config_file",
    "nest_dotted",
    "parse_net_config",
]

# Values of the paper's default configs (configs/default_*_configs.py) used when a field is absent.
_MODEL_DEFAULTS: dict[str, Any] = {
    "dropout": 0.1,
    "sigma_min": 0.01,
    "sigma_max": 50.0,
    "num_scales": 1000,
    "beta_min": 0.1,
    "beta_max": 20.0,
    "embedding_type": "fourier",
    "conditional": True,
    "resamp_with_conv": True,
    "nonlinearity": "swish",
    "normalization": "GroupNorm",
    "scale_by_sigma": False,
}
_DATA_DEFAULTS: dict[str, Any] = {"centered": False, "num_channels": 3}

_COMMON_MODEL = {
    "name", "nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv",
    "conditional", "nonlinearity", "normalization", "scale_by_sigma", "sigma_min", "sigma_max",
    "num_scales", "beta_min", "beta_max", "embedding_type", "ema_rate",
}  # fmt: skip
_NCSNPP_MODEL = {
    "fir", "fir_kernel", "skip_rescale", "resblock_type", "progressive", "progressive_input",
    "progressive_combine", "attention_type", "init_scale", "fourier_scale", "conv_size",
}  # fmt: skip
# Fields the paper's config files set that its network code never reads (``conv_size`` of
# ``configs/ve/cifar10_ddpm.py``, ``sigma_begin`` of ``configs/ve/celeba_ncsnpp.py``): accepted
# and ignored, so that every config file loads as the paper wrote it.
_IGNORED_MODEL = {"sigma_begin"}
MODEL_FIELDS = {
    "ncsnpp": _COMMON_MODEL | _NCSNPP_MODEL | _IGNORED_MODEL,
    "ddpm": _COMMON_MODEL | _IGNORED_MODEL | {"conv_size"},
}
# Data fields that describe the data set, not the network: accepted and ignored.
_DATA_IGNORED = {"dataset", "random_flip", "uniform_dequantization", "category", "tfrecords_path"}
DATA_FIELDS = {"image_size", "num_channels", "centered"} | _DATA_IGNORED

ACTIVATIONS = ("elu", "relu", "lrelu", "swish")
CHOICES: dict[str, tuple[str, ...]] = {
    "nonlinearity": ACTIVATIONS,
    "normalization": ("groupnorm",),
    "attention_type": ("ddpm",),
    "resblock_type": ("ddpm", "biggan"),
    "progressive": ("none", "output_skip", "residual"),
    "progressive_input": ("none", "input_skip", "residual"),
    "progressive_combine": ("sum", "cat"),
    "embedding_type": ("fourier", "positional"),
}


@dataclass(frozen=True)
class ScoreSdeNetConfig:
    """The fields that build an NCSN++ / DDPM++ (``name="ncsnpp"``) or DDPM (``name="ddpm"``) network.

    Field names and meanings are those of score_sde_pytorch's ``config.model`` and
    ``config.data``; the NCSN++-only fields are ``None`` for DDPM.
    """

    name: str
    nf: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    dropout: float
    resamp_with_conv: bool
    conditional: bool
    nonlinearity: str
    scale_by_sigma: bool
    sigma_min: float
    sigma_max: float
    num_scales: int
    beta_min: float
    beta_max: float
    embedding_type: str
    image_size: int
    num_channels: int
    centered: bool
    fir: bool | None = None
    fir_kernel: tuple[float, ...] | None = None
    skip_rescale: bool | None = None
    resblock_type: str | None = None
    progressive: str | None = None
    progressive_input: str | None = None
    progressive_combine: str | None = None
    init_scale: float | None = None
    fourier_scale: float | None = None

    def to_dict(self) -> dict:
        """The config as ``{"model": {...}, "data": {...}}`` (JSON-serialisable)."""
        data_keys = ("image_size", "num_channels", "centered")
        model = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in data_keys}
        model = {k: list(v) if isinstance(v, tuple) else v for k, v in model.items() if v is not None}
        return {"model": model, "data": {k: getattr(self, k) for k in data_keys}}


@dataclass(frozen=True)
class NCSNNetConfig:
    """The fields that build an NCSN (``name="ncsn"``) or NCSNv2 (``ncsnv2_64`` / ``_128`` / ``_256``).

    These RefineNet networks (Song & Ermon 2019, 2020) take the integer index of a noise level
    in ``sigmas`` (``num_scales`` geometric levels from ``sigma_max`` down to ``sigma_min``) and
    are VE, discrete-time models.  ``beta_min`` / ``beta_max`` are carried for the score
    wrapper and unused.
    """

    name: str
    nf: int
    nonlinearity: str
    sigma_min: float
    sigma_max: float
    num_scales: int
    image_size: int
    num_channels: int
    centered: bool
    beta_min: float = 0.1
    beta_max: float = 20.0

    @property
    def conditional_norms(self) -> bool:
        """NCSN conditions every normalisation on the noise level; NCSNv2 divides by ``sigma``."""
        return self.name == "ncsn"

    def to_dict(self) -> dict:
        """The config as ``{"model": {...}, "data": {...}}`` (JSON-serialisable)."""
        data_keys = ("image_size", "num_channels", "centered")
        model = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in data_keys}
        model.update(normalization="InstanceNorm++", scale_by_sigma=not self.conditional_norms)
        return {"model": model, "data": {k: getattr(self, k) for k in data_keys}}


def nest_dotted(config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"model.nf": 4}`` into ``{"model": {"nf": 4}}``; nested mappings pass unchanged."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            value = nest_dotted(value)
        head, _, rest = str(key).partition(".")
        if rest:
            value = nest_dotted({rest: value})
            head_dict = out.setdefault(head, {})
            if not isinstance(head_dict, dict):
                raise ValueError(f"config field {head!r} is both a value and a section")
            _merge(head_dict, value)
        elif isinstance(value, dict) and isinstance(out.get(head), dict):
            _merge(out[head], value)
        else:
            out[head] = value
    return out


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config written as JSON (``.json``) or TOML (``.toml``) into a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    else:
        raise ValueError(f"config file {path} must end in .json or .toml")
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config sections, got {type(data).__name__}")
    return nest_dotted(data)


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = config.get(name)
    if section is None:
        raise ValueError(f"the config has no {name!r} section (fields {name}.*)")
    if not isinstance(section, Mapping):
        raise ValueError(f"config field {name!r} must be a section, got {type(section).__name__}")
    return dict(section)


def _get(section: dict, prefix: str, key: str, defaults: dict) -> Any:
    if key in section:
        return section[key]
    if key in defaults:
        return defaults[key]
    raise ValueError(f"the config lacks the required field {prefix}.{key}")


def _as_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"config field {field} must be true or false, got {value!r}")
    return value


def _as_int(value: Any, field: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"config field {field} must be an integer >= {minimum}, got {value!r}")
    return value


def _as_float(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"config field {field} must be a number, got {value!r}")
    return float(value)


def _as_ints(value: Any, field: str, minimum: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"config field {field} must be a list of integers, got {value!r}")
    return tuple(_as_int(v, field, minimum) for v in value)


def _as_choice(value: Any, field: str) -> str:
    key = field.split(".")[-1]
    if not isinstance(value, str) or value.lower() not in CHOICES[key]:
        raise ValueError(
            f"unsupported value {value!r} of config field {field}; supported: {list(CHOICES[key])}"
        )
    return value.lower()


def parse_net_config(
    config: Mapping[str, Any] | ScoreSdeNetConfig | NCSNNetConfig,
) -> ScoreSdeNetConfig | NCSNNetConfig:
    """Check the ``model`` and ``data`` sections of a paper config and return its network config.

    Raises:
        ValueError: naming the field, for a missing required field, a field the network does not
            have, or an unsupported value.
    """
    if isinstance(config, (ScoreSdeNetConfig, NCSNNetConfig)):
        return config
    config = nest_dotted(config)
    model, data = _section(config, "model"), _section(config, "data")
    name = model.get("name")
    if name in REFINENET_NETWORKS:
        return _parse_refinenet(name, model, data)
    if name not in MODEL_FIELDS:
        raise ValueError(
            f"unsupported value {name!r} of config field model.name; "
            f"supported: {sorted(MODEL_FIELDS) + sorted(REFINENET_NETWORKS)}"
        )
    for key in model:
        if key not in MODEL_FIELDS[name]:
            raise ValueError(
                f"unsupported config field model.{key} (not a field of the paper's {name} network)"
            )
    for key in data:
        if key not in DATA_FIELDS:
            raise ValueError(f"unsupported config field data.{key}")

    def m(key: str) -> Any:
        return _get(model, "model", key, _MODEL_DEFAULTS)

    out: dict[str, Any] = {
        "name": name,
        "nf": _as_int(m("nf"), "model.nf", 1),
        "ch_mult": _as_ints(m("ch_mult"), "model.ch_mult", 1),
        "num_res_blocks": _as_int(m("num_res_blocks"), "model.num_res_blocks", 0),
        "attn_resolutions": _as_ints(m("attn_resolutions"), "model.attn_resolutions", 1),
        "dropout": _as_float(m("dropout"), "model.dropout"),
        "resamp_with_conv": _as_bool(m("resamp_with_conv"), "model.resamp_with_conv"),
        "conditional": _as_bool(m("conditional"), "model.conditional"),
        "nonlinearity": _as_choice(m("nonlinearity"), "model.nonlinearity"),
        "scale_by_sigma": _as_bool(m("scale_by_sigma"), "model.scale_by_sigma"),
        "sigma_min": _as_float(m("sigma_min"), "model.sigma_min"),
        "sigma_max": _as_float(m("sigma_max"), "model.sigma_max"),
        "num_scales": _as_int(m("num_scales"), "model.num_scales", 1),
        "beta_min": _as_float(m("beta_min"), "model.beta_min"),
        "beta_max": _as_float(m("beta_max"), "model.beta_max"),
        "embedding_type": _as_choice(m("embedding_type"), "model.embedding_type"),
        "image_size": _as_int(_get(data, "data", "image_size", _DATA_DEFAULTS), "data.image_size", 1),
        "num_channels": _as_int(_get(data, "data", "num_channels", _DATA_DEFAULTS), "data.num_channels", 1),
        "centered": _as_bool(_get(data, "data", "centered", _DATA_DEFAULTS), "data.centered"),
    }
    _as_choice(m("normalization"), "model.normalization")
    if not out["ch_mult"]:
        raise ValueError("config field model.ch_mult must not be empty")
    if not (0.0 <= out["dropout"] < 1.0):
        raise ValueError(f"config field model.dropout must lie in [0, 1), got {out['dropout']}")
    if not (0 < out["sigma_min"] < out["sigma_max"]):
        raise ValueError("config fields model.sigma_min and model.sigma_max need 0 < sigma_min < sigma_max")
    factor = 2 ** (len(out["ch_mult"]) - 1)
    if out["image_size"] % factor:
        raise ValueError(
            f"config field data.image_size = {out['image_size']} must be divisible by "
            f"2^(len(model.ch_mult) - 1) = {factor}"
        )
    if name == "ncsnpp":
        if "attention_type" in model:
            _as_choice(model["attention_type"], "model.attention_type")
        if model.get("conv_size", 3) != 3:
            raise ValueError(
                f"unsupported value {model['conv_size']!r} of config field model.conv_size; supported: [3]"
            )
        out.update(
            fir=_as_bool(m("fir"), "model.fir"),
            fir_kernel=tuple(
                _as_float(v, "model.fir_kernel") for v in _as_list(m("fir_kernel"), "model.fir_kernel")
            ),
            skip_rescale=_as_bool(m("skip_rescale"), "model.skip_rescale"),
            resblock_type=_as_choice(m("resblock_type"), "model.resblock_type"),
            progressive=_as_choice(m("progressive"), "model.progressive"),
            progressive_input=_as_choice(m("progressive_input"), "model.progressive_input"),
            progressive_combine=_as_choice(m("progressive_combine"), "model.progressive_combine"),
            init_scale=_as_float(m("init_scale"), "model.init_scale"),
        )
        # Read only by the Fourier embedding: the positional configs (e.g. the discrete
        # configs/ve/cifar10_ncsnpp.py) do not set it.
        if out["embedding_type"] == "fourier" or "fourier_scale" in model:
            out["fourier_scale"] = _as_float(m("fourier_scale"), "model.fourier_scale")
    return ScoreSdeNetConfig(**out)


def _as_list(value: Any, field: str) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"config field {field} must be a list, got {value!r}")
    value = list(value)
    if not value:
        raise ValueError(f"config field {field} must not be empty")
    return value


# Fields of the RefineNet configs (configs/ve/ncsn*/ and the default configs they extend) that
# those networks never read: accepted and ignored.
_REFINENET_IGNORED = {
    "dropout", "embedding_type", "ema_rate", "sigma_begin", "conditional", "resamp_with_conv",
}  # fmt: skip
_REFINENET_MODEL = {
    "name", "nf", "nonlinearity", "normalization", "scale_by_sigma", "sigma_min", "sigma_max",
    "num_scales", "beta_min", "beta_max", "interpolation",
} | _REFINENET_IGNORED  # fmt: skip


def _parse_refinenet(name: str, model: dict[str, Any], data: dict[str, Any]) -> NCSNNetConfig:
    """The ``model`` / ``data`` sections of an NCSN / NCSNv2 config (see :class:`NCSNNetConfig`).

    The paper's PyTorch code ignores ``model.scale_by_sigma`` and ``model.interpolation`` for
    these networks (NCSN never divides by ``sigma``, NCSNv2 always does; the RefineNet blocks
    always interpolate bilinearly); its JAX code reads ``scale_by_sigma``.  Values on which the
    two would differ are refused, so no config means something else here than there.
    """
    for key in model:
        if key not in _REFINENET_MODEL:
            raise ValueError(
                f"unsupported config field model.{key} (not a field of the paper's {name} network)"
            )
    for key in data:
        if key not in DATA_FIELDS:
            raise ValueError(f"unsupported config field data.{key}")
    norm = model.get("normalization", _MODEL_DEFAULTS["normalization"])
    if not isinstance(norm, str) or norm.lower() != "instancenorm++":
        raise ValueError(
            f"unsupported value {norm!r} of config field model.normalization for {name}; "
            "supported: ['InstanceNorm++'] (what every NCSN / NCSNv2 config of the paper uses)"
        )
    divides = name != "ncsn"
    if "scale_by_sigma" in model and _as_bool(model["scale_by_sigma"], "model.scale_by_sigma") != divides:
        raise ValueError(
            f"unsupported value {model['scale_by_sigma']!r} of config field model.scale_by_sigma for {name}: "
            f"the paper's PyTorch {name} {'always' if divides else 'never'} divides its output by sigma; "
            f"supported: [{str(divides).lower()}]"
        )
    interpolation = model.get("interpolation", "bilinear")
    if interpolation != "bilinear":
        raise ValueError(
            f"unsupported value {interpolation!r} of config field model.interpolation; "
            "supported: ['bilinear'] (the paper's RefineNet blocks always interpolate bilinearly)"
        )

    def m(key: str) -> Any:
        return _get(model, "model", key, _MODEL_DEFAULTS)

    out = NCSNNetConfig(
        name=name,
        nf=_as_int(m("nf"), "model.nf", 1),
        nonlinearity=_as_choice(m("nonlinearity"), "model.nonlinearity"),
        sigma_min=_as_float(m("sigma_min"), "model.sigma_min"),
        sigma_max=_as_float(m("sigma_max"), "model.sigma_max"),
        num_scales=_as_int(m("num_scales"), "model.num_scales", 1),
        image_size=_as_int(_get(data, "data", "image_size", _DATA_DEFAULTS), "data.image_size", 1),
        num_channels=_as_int(_get(data, "data", "num_channels", _DATA_DEFAULTS), "data.num_channels", 1),
        centered=_as_bool(_get(data, "data", "centered", _DATA_DEFAULTS), "data.centered"),
        beta_min=_as_float(m("beta_min"), "model.beta_min"),
        beta_max=_as_float(m("beta_max"), "model.beta_max"),
    )
    if not (0 < out.sigma_min < out.sigma_max):
        raise ValueError("config fields model.sigma_min and model.sigma_max need 0 < sigma_min < sigma_max")
    if out.nf < 2:
        raise ValueError(
            f"config field model.nf must be >= 2 for {name} (InstanceNorm++ takes a variance over channels)"
        )
    factor = 2 ** REFINENET_NETWORKS[name]
    if out.image_size % factor:
        raise ValueError(
            f"config field data.image_size = {out.image_size} must be divisible by {factor} for {name} "
            f"(it halves the resolution {REFINENET_NETWORKS[name]} time(s))"
        )
    return out
