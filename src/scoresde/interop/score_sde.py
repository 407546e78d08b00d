"""Load the paper's own checkpoints (score_sde_pytorch, Song et al. 2021) as scoresde score models.

``load_score_sde(checkpoint, config)`` reads a ``checkpoint_*.pth`` written by the paper's
``utils.save_checkpoint`` (``{"model", "ema", "optimizer", "step"}``) with
``torch.load(..., weights_only=True)`` only, builds the network named by the config
(:mod:`scoresde.nets.score_sde`), loads the raw or EMA weights strictly and returns it as a
:class:`~scoresde.models.base.ScoreFunction` with its SDE, following the paper's
``models.utils.get_score_fn(sde, model, train=False, continuous=True)``:

- **VE** (``training.sde = "vesde"``, NCSN++): the network takes the noise level
  ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` as its label and its output *is* the
  score (with ``model.scale_by_sigma`` it has already divided by ``sigma``).  The paper's
  marginal standard deviation is this ``sigma(t)`` too, which is not the exact VE marginal
  ``sigma_min sqrt(r^(2t) - 1)`` that :class:`~scoresde.sde.VESDE` uses by default; the SDE
  returned here is ``VESDE(sigma_min, sigma_max, kernel="geometric")``, the VE SDE with the
  paper's marginal (the same diffusion ``g(t)``).
- **VP / sub-VP** (``"vpsde"`` / ``"subvpsde"``, DDPM++ and DDPM): the label is ``999 t`` and
  the score is ``-net(x, 999 t) / std(t)`` with the paper's formula for ``std``, evaluated in
  the input's dtype: ``log_mean_coeff = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`` and
  ``std = sqrt(1 - exp(2 log_mean_coeff))`` (VP) or ``1 - exp(2 log_mean_coeff)`` (sub-VP).  In
  float32 this loses digits near ``t = 0`` (about 3.8e-5 relative at ``t = 0.002`` against
  an exact ``expm1``); it is kept so that the scores are those the model was trained and
  evaluated with.  The SDE is the library's :class:`~scoresde.sde.VPSDE` /
  :class:`~scoresde.sde.SubVPSDE`, whose marginals are the paper's in exact arithmetic.
- **Data range:** with ``data.centered = false`` the network maps its input ``x -> 2x - 1``
  itself, so the model's data space is ``[0, 1]``; otherwise ``[-1, 1]``
  (:attr:`ScoreSdeModel.data_range`, :attr:`ScoreSdeModel.quantization`).

Discrete-time checkpoints (``training.continuous = false``) use the paper's discrete conventions
(see :class:`PaperScoreModel`), tested against references made by the paper's code
(``tests/interop/data``).  Outputs are in the input's dtype (float64 inputs run a float32
network; the positional networks' float64 ``sigmas`` division does not leak).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scoresde.flow.dequantization import Quantization
from scoresde.models.base import ScoreFunction
from scoresde.nets.score_sde import build_score_sde_net, load_config_file
from scoresde.nets.score_sde.config import (
    REFINENET_NETWORKS,
    NCSNNetConfig,
    ScoreSdeNetConfig,
    nest_dotted,
    parse_net_config,
)
from scoresde.nets.score_sde.ddpm import DDPM
from scoresde.nets.score_sde.ncsn import NCSN, NCSNv2
from scoresde.nets.score_sde.ncsnpp import NCSNpp
from scoresde.nets.score_sde.paper_configs import PAPER_CONFIGS, paper_config
from scoresde.sde.base import SDE
from scoresde.sde.ve import VESDE
from scoresde.sde.vp import VPSDE, SubVPSDE

__all__ = [
    "SDE_NAMES",
    "WEIGHTS",
    "PaperScoreModel",
    "ScoreSdeModel",
    "build_paper_sde",
    "build_score_sde",
    "load_score_sde",
    "load_score_sde_state",
]

SDE_NAMES = ("vesde", "vpsde", "subvpsde")
WEIGHTS = ("ema", "raw")
_SHOW = 5  # how many missing / unexpected keys an error lists


def build_paper_sde(sde_name: str, cfg: ScoreSdeNetConfig | NCSNNetConfig) -> SDE:
    """The SDE of a paper config: ``training.sde`` with the ``model.sigma_*`` / ``model.beta_*`` fields."""
    if sde_name == "vesde":
        # The paper code's VE marginal sigma_min r^t (its VESDE.marginal_prob), not the exact one.
        return VESDE(cfg.sigma_min, cfg.sigma_max, kernel="geometric")
    if sde_name == "vpsde":
        return VPSDE(cfg.beta_min, cfg.beta_max)
    return SubVPSDE(cfg.beta_min, cfg.beta_max)


class PaperScoreModel(ScoreFunction):
    """A paper network as a score model with the paper's score function (its ``get_score_fn``).

    ``forward(x, t)`` returns the score (``prediction="score"``); every other prediction is
    derived through ``sde``'s marginal.  The model is unconditional: labels ``y`` are refused.

    Continuous-time models take ``sigma(t)`` (VE) or ``999 t`` (VP, sub-VP).  Discrete-time
    ones (``continuous=False``) follow the paper's code too: VE takes the integer index
    ``round((1 - t) (N - 1))`` into the descending noise levels ``sigmas`` (the nearest of the
    ``N = model.num_scales`` SMLD levels to ``sigma(t)``); VP takes ``t (N - 1)`` and divides by
    ``sqrt(1 - alphas_cumprod)[floor(t (N - 1))]`` of DDPM's discrete betas
    ``linspace(beta_min / N, beta_max / N, N)``; sub-VP always uses the continuous convention
    (as the paper's ``get_score_fn`` does).

    NCSN and NCSNv2 (``model.name`` ``ncsn``, ``ncsnv2_*``) are VE, discrete-time models: they
    take the index ``round((1 - t) (N - 1))`` as above and their output is the score (NCSNv2
    has divided by ``sigmas[index]`` itself, NCSN's output is the score as trained), exactly
    the paper's ``get_score_fn(sde, model, continuous=False)`` for ``VESDE``.

    Args:
        net: an :class:`~scoresde.nets.score_sde.NCSNpp`, :class:`~scoresde.nets.score_sde.DDPM`,
            :class:`~scoresde.nets.score_sde.NCSN` or :class:`~scoresde.nets.score_sde.NCSNv2`.
        sde: the SDE (see :func:`build_paper_sde`).
        sde_name: ``vesde``, ``vpsde`` or ``subvpsde``: which score convention applies.
        continuous: whether the model was trained in continuous time.
    """

    def __init__(
        self, net: NCSNpp | DDPM | NCSN | NCSNv2, sde: SDE, sde_name: str, continuous: bool = True
    ) -> None:
        super().__init__(sde, "score")
        if sde_name not in SDE_NAMES:
            raise ValueError(f"unknown sde {sde_name!r}; choose one of {list(SDE_NAMES)}")
        self.net = net
        self.sde_name = sde_name
        if isinstance(net, (NCSN, NCSNv2)) and (continuous or sde_name != "vesde"):
            raise ValueError(
                "NCSN / NCSNv2 networks are VE, discrete-time: sde_name='vesde', continuous=False"
            )
        self.continuous = bool(continuous) or sde_name == "subvpsde"
        cfg = net.cfg
        self.sigma_min, self.sigma_max = cfg.sigma_min, cfg.sigma_max
        self.beta_min, self.beta_max = cfg.beta_min, cfg.beta_max
        self.num_scales = cfg.num_scales

    def labels(self, t: Tensor) -> Tensor:
        """The network's time input (see the class docstring)."""
        if self.sde_name == "vesde":
            if self.continuous:
                return self.sigma_min * (self.sigma_max / self.sigma_min) ** t
            return torch.round((1.0 - t) * (self.num_scales - 1)).long()
        return t * 999 if self.continuous else t * (self.num_scales - 1)

    def discrete_sqrt_1m_alphas_cumprod(self, device: torch.device | str | None = None) -> Tensor:
        """``sqrt(1 - prod_{j <= i} (1 - beta_j))`` of the paper's discrete VP betas, float32, ``(N,)``."""
        n = self.num_scales
        betas = torch.linspace(self.beta_min / n, self.beta_max / n, n, device=device)
        return torch.sqrt(1.0 - torch.cumprod(1.0 - betas, dim=0))

    def std(self, t: Tensor) -> Tensor:
        """The paper's marginal standard deviation (VP: what the score divides by), in ``t``'s dtype."""
        if self.sde_name == "vesde":
            return self.labels(t) if self.continuous else self.net.sigmas[self.labels(t)].to(t.dtype)
        if not self.continuous:
            return self.discrete_sqrt_1m_alphas_cumprod(t.device)[self.labels(t).long()].to(t.dtype)
        log_mean_coeff = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        if self.sde_name == "vpsde":
            return torch.sqrt(1.0 - torch.exp(2.0 * log_mean_coeff))
        return 1.0 - torch.exp(2.0 * log_mean_coeff)

    def _net_dtype(self) -> torch.dtype | None:
        for p in self.net.parameters():
            if p.is_floating_point():
                return p.dtype
        return None

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The score at ``x: (B, C, H, W)``, ``t: (B,)``, in ``x``'s dtype.

        Inputs in another precision than the network's (float64 data, a float32 network) run in
        the network's dtype and come back in ``x``'s, as :class:`~scoresde.models.ScoreModel`
        does for diffusers models; the paper's ``std`` is evaluated in ``t``'s dtype.
        """
        if y is not None:
            raise ValueError("score_sde_pytorch models are unconditional; labels y are not supported")
        labels = self.labels(t)
        net_dtype = self._net_dtype()
        x_in = x
        if net_dtype is not None and not torch.is_autocast_enabled(x.device.type):
            x_in = x.to(net_dtype)
            labels = labels.to(net_dtype) if labels.is_floating_point() else labels
        out = self.net(x_in, labels).to(x.dtype)
        if self.sde_name == "vesde":
            return out
        return -out / self.std(t).to(x.dtype).reshape(x.shape[0], *([1] * (x.ndim - 1)))


@dataclass
class ScoreSdeModel:
    """A loaded score_sde_pytorch checkpoint.

    Attributes:
        model: the score model (``model.score(x, t)``, ``ss.sample(model, sde, ...)``).
        sde: its SDE.
        net: the bare network ``net(x, labels)`` (NCSN++ / DDPM++, DDPM, NCSN or NCSNv2) with the
            loaded weights.
        config: the network config.
        sde_name: ``vesde``, ``vpsde`` or ``subvpsde``.
        continuous: ``training.continuous`` of the config.
        weights: ``ema`` or ``raw`` (``init`` from :func:`build_score_sde`).
        step: the training step stored in the checkpoint, if any.
    """

    model: PaperScoreModel
    sde: SDE
    net: NCSNpp | DDPM | NCSN | NCSNv2
    config: ScoreSdeNetConfig | NCSNNetConfig
    sde_name: str
    continuous: bool
    weights: str
    step: int | None

    @property
    def data_range(self) -> tuple[float, float]:
        """The model's data space: ``(0, 1)`` when ``data.centered`` is false, else ``(-1, 1)``."""
        return (-1.0, 1.0) if self.config.centered else (0.0, 1.0)

    @property
    def quantization(self) -> Quantization:
        """8-bit images in the model's data space, for bits/dim with :func:`scoresde.log_likelihood`."""
        return Quantization(256, *self.data_range)


def _read_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, str) and config in PAPER_CONFIGS and not Path(config).exists():
        return paper_config(config)
    if isinstance(config, (str, Path)):
        return load_config_file(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a path or a mapping, got {type(config).__name__}")
    return nest_dotted(config)


def _training_fields(config: Mapping[str, Any]) -> tuple[str, bool]:
    training = config.get("training")
    if not isinstance(training, Mapping) or "sde" not in training:
        raise ValueError("the config lacks the required field training.sde (one of vesde, vpsde, subvpsde)")
    sde_name = str(training["sde"]).lower()
    if sde_name not in SDE_NAMES:
        raise ValueError(
            f"unsupported value {training['sde']!r} of config field training.sde; "
            f"supported: {list(SDE_NAMES)}"
        )
    if "continuous" not in training:
        raise ValueError("the config lacks the required field training.continuous")
    continuous = training["continuous"]
    if not isinstance(continuous, bool):
        raise ValueError(f"config field training.continuous must be true or false, got {continuous!r}")
    return sde_name, continuous


def _refinenet_training_fields(config: Mapping[str, Any]) -> tuple[str, bool]:
    """NCSN / NCSNv2 are VE models over discrete noise levels, whatever the config's typos say.

    ``configs/ve/ncsn/celeba.py`` sets ``training.loss = 'vesde'`` where the others set
    ``training.sde``, so it has no ``training.sde``; ``configs/ve/ncsnv2/bedroom.py`` sets
    ``training.continuouse = False``, so its ``training.continuous`` keeps the default ``True``
    (with which the paper's ``get_score_fn`` would index ``sigmas`` by a float and fail).  Both
    are read as VE, discrete.  An explicit ``training.sde`` other than ``vesde`` is refused.
    """
    training = config.get("training")
    sde = training.get("sde", "vesde") if isinstance(training, Mapping) else "vesde"
    if str(sde).lower() != "vesde":
        raise ValueError(
            f"unsupported value {sde!r} of config field training.sde for NCSN / NCSNv2 networks; "
            "supported: ['vesde'] (they are conditioned on the index of a VE noise level)"
        )
    return "vesde", False


def _check_torch_file(path: Path) -> None:
    """Refuse, from its first bytes, a file that is no PyTorch checkpoint at all (a zip archive
    since torch 1.6, a pickle before): a config given as the checkpoint is named as such."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip():
        raise ValueError(
            f"{path} is a text file (a config?), not a PyTorch checkpoint: --model score_sde:CKPT takes the "
            "checkpoint_N.pth of score_sde_pytorch, and --model-config its config"
        )
    raise ValueError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")


def _torch_load(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    _check_torch_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers, which "
            "torch.load(..., weights_only=True) does not unpickle (an untrusted pickle could run code). "
            f"Details: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err


def _strip_prefix(state: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > _SHOW else ''})"


def _check_keys(net: nn.Module, state: Mapping[str, Tensor], path: str) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        raise ValueError(f"{path} does not match the network the config describes; " + "; ".join(parts))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"{path}: tensors of the wrong shape (checkpoint vs network): {_listing(wrong)}")


def _apply_ema(net: nn.Module, state: dict[str, Tensor], ema: Any, path: str) -> dict[str, Tensor]:
    """Replace each trainable parameter by its EMA shadow (the paper's ``ema.copy_to``).

    ``shadow_params`` is an unnamed list over the parameters with ``requires_grad`` in
    ``model.parameters()`` order (the Fourier ``W`` is not one), matched here in the
    checkpoint's own key order.
    """
    if not isinstance(ema, Mapping) or "shadow_params" not in ema:
        raise ValueError(f"{path} has no EMA weights (ckpt['ema']['shadow_params']); use weights='raw'")
    shadow = list(ema["shadow_params"])
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    names = [k for k in state if k in trainable]
    if len(names) != len(shadow):
        raise ValueError(
            f"{path}: the EMA holds {len(shadow)} shadow parameters but the network has {len(names)} "
            "trainable parameters"
        )
    out = dict(state)
    for name, value in zip(names, shadow, strict=True):
        if not torch.is_tensor(value) or value.shape != state[name].shape:
            got = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise ValueError(
                f"{path}: EMA shadow for {name} has shape {got}, expected {tuple(state[name].shape)}"
            )
        out[name] = value
    return out


def load_score_sde_state(
    net: nn.Module, checkpoint: Mapping[str, Any], weights: str = "ema", path: str = "checkpoint"
) -> int | None:
    """Load a score_sde_pytorch checkpoint dict (or a bare ``model`` state dict) into ``net`` strictly.

    Returns:
        The checkpoint's ``step``, if it has one.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; choose one of {list(WEIGHTS)}")
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} must hold a dict, got {type(checkpoint).__name__}")
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        state, ema, step = checkpoint["model"], checkpoint.get("ema"), checkpoint.get("step")
    elif checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
        state, ema, step = checkpoint, None, None  # a bare state dict: raw weights only
    else:
        raise ValueError(f"{path} is neither a score_sde_pytorch checkpoint (with 'model') nor a state dict")
    state = _strip_prefix(state)
    _check_keys(net, state, path)
    if weights == "ema":
        state = _apply_ema(net, state, ema, path)
    net.load_state_dict(state, strict=True)
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def load_score_sde(
    checkpoint_path: str | Path,
    config: str | Path | Mapping[str, Any],
    weights: str = "ema",
    device: torch.device | str = "cpu",
) -> ScoreSdeModel:
    """Load a score_sde_pytorch checkpoint as a score model and its SDE.

    Args:
        checkpoint_path: the paper's ``checkpoint_*.pth`` (or a bare ``model`` state dict file).
        config: its config as a JSON / TOML file or a mapping with the paper's ``model.*``,
            ``data.*`` and ``training.sde`` / ``training.continuous`` fields, or the name of a
            paper config in :data:`~scoresde.nets.score_sde.paper_configs.PAPER_CONFIGS`
            (e.g. ``"ve/cifar10_ncsnpp_continuous"``).
        weights: ``ema`` (the weights the paper samples and evaluates with) or ``raw``.
        device: where the model goes.

    Returns:
        A :class:`ScoreSdeModel` (model in eval mode).

    Raises:
        ValueError: an unsupported config field or value (named), a checkpoint that needs more
            than ``weights_only`` unpickling, or missing / unexpected / misshapen keys (listed).
    """
    loaded = build_score_sde(config, device="meta")
    # Built without random initialisation (every tensor comes from the checkpoint, strictly);
    # the buffer ``sigmas`` is recomputed by the constructor and then loaded too.
    net = loaded.net.to_empty(device="cpu")
    if isinstance(net, NCSN):
        net.reset_sigmas()  # not in NCSN's state dict, so not loaded below
    checkpoint = _torch_load(checkpoint_path)
    step = load_score_sde_state(net, checkpoint, weights, str(checkpoint_path))
    net = net.to(device).eval()
    model = PaperScoreModel(net, loaded.sde, loaded.sde_name, loaded.continuous).eval()
    return ScoreSdeModel(
        model, loaded.sde, net, loaded.config, loaded.sde_name, loaded.continuous, weights, step
    )


def build_score_sde(
    config: str | Path | Mapping[str, Any], device: torch.device | str = "cpu"
) -> ScoreSdeModel:
    """Build the model a paper config describes, with freshly initialised weights (no checkpoint).

    On ``device="meta"`` nothing is allocated: this checks that a config (e.g. a full-size
    paper config) builds, and is the first half of :func:`load_score_sde`.  Takes ``config``
    as :func:`load_score_sde` does; the result has ``weights="init"`` and ``step=None``.

    Raises:
        ValueError: an unsupported config field or value, named.
    """
    raw_config = _read_config(config)
    model_section = raw_config.get("model")
    if isinstance(model_section, Mapping) and model_section.get("name") in REFINENET_NETWORKS:
        sde_name, continuous = _refinenet_training_fields(raw_config)
    else:
        sde_name, continuous = _training_fields(raw_config)
    cfg = parse_net_config(raw_config)
    if (
        isinstance(cfg, ScoreSdeNetConfig)
        and cfg.name == "ncsnpp"
        and not continuous
        and cfg.embedding_type == "fourier"
    ):
        raise ValueError(
            "config fields model.embedding_type = 'fourier' and training.continuous = false do not go "
            "together: the paper uses Fourier features only for continuous-time models"
        )
    with torch.device(device):
        net = build_score_sde_net(cfg)
    net = net.eval()
    sde = build_paper_sde(sde_name, cfg)
    model = PaperScoreModel(net, sde, sde_name, continuous).eval()
    return ScoreSdeModel(model, sde, net, cfg, sde_name, continuous, "init", None)
