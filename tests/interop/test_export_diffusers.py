"""scoresde models trained with a diffusers UNet2DModel, exported as diffusers pipeline folders.

diffusers' own ``DDIMPipeline`` (and its scheduler loop) on the exported folder against scoresde's
``ddim`` on the grid of the same steps, from the same ``x_T``.  Agreement is to float32 rounding:
the largest difference is at most ``BOUND = 2e-5`` times the largest entry of diffusers' output
(measured 1e-7 to 5e-6 over the cases below: the two sides compute the same updates in a
different order, and diffusers rebuilds the noise table as a float32 cumulative product of the
exported betas, within 7e-7 of the model's table).  The pipeline's images are ``(x / 2 + 0.5)``
clipped to ``[0, 1]``, a map that halves differences, compared with the same bound.
"""

from __future__ import annotations

import json

import pytest
import torch

import scoresde as ss
from scoresde.interop.diffusers import from_diffusers
from scoresde.interop.export_diffusers import EXPORT_INFO, export_diffusers, exported_unet, read_export
from scoresde.io.checkpoint import load_checkpoint, save_checkpoint
from scoresde.nets import DiffusersUNet, UNet, build_net, net_config
from tests.interop.conftest import diffusers, tiny_unet

BOUND = 2e-5
SHAPE = (2, 1, 8, 8)
UNET_ARGS = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}


def tiny_net(num_classes: int | None = None, seed: int = 0) -> DiffusersUNet:
    torch.manual_seed(seed)
    return DiffusersUNet(1, 8, num_classes=num_classes, unet=UNET_ARGS).eval()


def x_T(seed: int = 3) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def scheduler_loop(pipe, x: torch.Tensor, steps: int, y=None) -> torch.Tensor:
    """DDIMPipeline's loop (eta 0), without its final clipping to images."""
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(pipe.unet(x, t, class_labels=y).sample, t, x, eta=0.0).prev_sample
    return x


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize(("prediction", "steps"), [("eps", 10), ("eps", 25), ("v", 10), ("x0", 10)])
def test_exported_pipeline_reproduces_scoresde_ddim(tmp_path, prediction: str, steps: int) -> None:
    sde = ss.VPSDE()
    model = ss.ScoreModel(tiny_net(), sde, prediction=prediction, scale_input=False)
    res = export_diffusers(model, tmp_path / "pipe")
    assert {p.name for p in res.path.iterdir()} == {"unet", "scheduler", "model_index.json", EXPORT_INFO}
    assert res.time_scale == 999.0 and res.num_train_timesteps == 1000 and res.table_error < 2e-6
    pipe = diffusers.DDIMPipeline.from_pretrained(res.path, local_files_only=True)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert (
        pipe.scheduler.config.prediction_type
        == {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[prediction]
    )
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        ours = ss.sample(model, sde, x_T=x_T(), method="ddim", grid=res.grid(steps), denoise=False)
    assert ours.nfe == steps
    ref = scheduler_loop(pipe, x_T(), steps)
    assert rel_err(ours.x, ref) <= BOUND
    # The pipeline itself: it draws x_T from the generator exactly as x_T() does.
    images = pipe(
        batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=steps, output_type="np"
    ).images
    mine = (ours.x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert abs(mine - images).max() <= BOUND * float(ref.abs().max())


def test_a_diffusers_model_round_trips(tmp_path) -> None:
    """A loaded diffusers model (discrete table, timestep input) exported again is the same model."""
    unet = tiny_unet()
    sched = diffusers.DDIMScheduler(
        prediction_type="v_prediction", clip_sample=False, timestep_spacing="trailing"
    )
    model, sde = from_diffusers(unet, sched)
    res = export_diffusers(model, tmp_path / "again")
    assert res.time_scale is None and res.num_train_timesteps == 1000
    back = diffusers.DDIMPipeline.from_pretrained(res.path, local_files_only=True)
    torch.testing.assert_close(back.scheduler.alphas_cumprod, sched.alphas_cumprod, rtol=2e-6, atol=0)
    with torch.no_grad():
        ours = ss.sample(model, sde, x_T=x_T(), method="ddim", grid=res.grid(10), denoise=False)
    assert rel_err(ours.x, scheduler_loop(back, x_T(), 10)) <= BOUND


def test_class_conditional_export_takes_labels_in_the_loop(tmp_path) -> None:
    sde = ss.VPSDE()
    model = ss.ScoreModel(tiny_net(num_classes=3), sde, prediction="eps", scale_input=False)
    res = export_diffusers(model, tmp_path / "cond")
    assert res.num_classes == 3 and json.loads((res.path / EXPORT_INFO).read_text())["num_classes"] == 3
    pipe = diffusers.DDIMPipeline.from_pretrained(res.path, local_files_only=True)
    y = torch.tensor([0, 2])
    with torch.no_grad():
        ours = ss.sample(model, sde, x_T=x_T(), y=y, method="ddim", grid=res.grid(10), denoise=False)
    assert rel_err(ours.x, scheduler_loop(pipe, x_T(), 10, y=y)) <= BOUND


def test_diffusers_unet_checkpoints_are_safetensors_and_json(tmp_path) -> None:
    net = tiny_net(num_classes=3)
    model = ss.ScoreModel(net, ss.VPSDE(), prediction="v")
    cfg = net_config(net)
    assert cfg["name"] == "diffusers-unet" and json.loads(json.dumps(cfg)) == cfg
    path = save_checkpoint(tmp_path / "c.safetensors", model, step=1)
    back = load_checkpoint(path)
    assert isinstance(back.model.net, DiffusersUNet) and back.info.item_shape == (1, 8, 8)
    assert back.info.num_classes == 3
    x, t = x_T(), torch.tensor([0.2, 0.9])
    with torch.no_grad():
        assert torch.equal(back.model(x, t, torch.tensor([1, 3])), model.eval()(x, t, torch.tensor([1, 3])))
    assert isinstance(build_net(cfg), DiffusersUNet)
    with pytest.raises(ValueError, match="block_out_channels entries"):
        build_net({**cfg, "unet": {**cfg["unet"], "block_out_channels": [10**6, 32]}})


def test_wrapping_a_built_unet_and_the_time_input() -> None:
    unet = tiny_unet()
    net = DiffusersUNet.from_unet(unet, time_scale=999.0)
    x, t = x_T(), torch.tensor([0.5, 1.0])
    with torch.no_grad():
        assert torch.equal(net(x, t), unet(x, t * 999.0).sample)
    with pytest.raises(ValueError, match="unconditional"):
        net(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sample_size, in_channels"):
        DiffusersUNet(3, 8, unet=unet)


def test_trainer_and_cli_train_and_export_a_diffusers_unet(tmp_path, capsys) -> None:
    from scoresde.cli.__main__ import main
    from scoresde.data.images import load_digits
    from scoresde.train.trainer import TrainConfig, Trainer

    d = load_digits(test_fraction=0.1)
    d.train, d.train_labels = d.train[:32], d.train_labels[:32]
    d.test, d.test_labels = d.test[:16], d.test_labels[:16]
    cfg = TrainConfig(
        net="diffusers-unet",
        base_channels=8,
        batch_size=16,
        steps=2,
        warmup=1,
        num_samples=0,
        sigma_data=1.0,
        progress=False,
        out=str(tmp_path),
        name="du",
    )
    trainer = Trainer(cfg, data=d)
    assert isinstance(trainer.model.net, DiffusersUNet)
    trainer.fit(evaluate=False)
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(tmp_path / "du"), "--out", str(out), "--device", "cpu"]) == 0
    assert "v_prediction" in capsys.readouterr().out
    pipe = diffusers.DDIMPipeline.from_pretrained(out, local_files_only=True)
    loaded = load_checkpoint(tmp_path / "du")
    grid = read_export(out).grid(10)
    with torch.no_grad():
        ours = ss.sample(loaded.model, loaded.model.sde, x_T=x_T(), method="ddim", grid=grid, denoise=False)
    assert rel_err(ours.x, scheduler_loop(pipe, x_T(), 10)) <= BOUND
    assert main(["export", "--checkpoint", str(tmp_path / "du"), "--out", str(out), "--device", "cpu"]) != 0
    assert "--overwrite" in capsys.readouterr().err  # the CLI's outputs rule refuses a second export


def test_what_does_not_map_is_refused_by_name(tmp_path) -> None:
    net = tiny_net()
    with pytest.raises(ValueError, match="scoresde's own UNet cannot be exported"):
        exported_unet(UNet(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2)))
    cases = [
        (
            ss.ScoreModel(net, ss.VESDE(), prediction="eps", scale_input=False),
            "VESDE is not variance preserving",
        ),
        (ss.ScoreModel(net, ss.SubVPSDE(), prediction="eps", scale_input=False), "not variance preserving"),
        (
            ss.ScoreModel(net, ss.VPSDE(), prediction="score", scale_input=False),
            "no diffusers prediction_type",
        ),
        (ss.ScoreModel(net, ss.VPSDE(), prediction="eps", sigma_data=0.5), r"sigma_data=0\.5"),
        (
            ss.ScoreModel(net, ss.VPSDE(), prediction="eps", scale_input=False, time_input="log_sigma"),
            "not linear in t",
        ),
    ]
    for model, message in cases:
        with pytest.raises(ValueError, match=message):
            export_diffusers(model, tmp_path / "x")
    ok = ss.ScoreModel(net, ss.VPSDE(), prediction="eps", sigma_data=1.0)  # scale_input is 1 on VP
    export_diffusers(ok, tmp_path / "ok")
    with pytest.raises(ValueError, match="not empty"):
        export_diffusers(ok, tmp_path / "ok")
    export_diffusers(ok, tmp_path / "ok", overwrite=True)
