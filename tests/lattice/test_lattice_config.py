"""Config validation, save/load round trips, import hygiene and registry extension."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lattice import PERCEIVES, RULES, Lattice3D, LatticeConfig, Perceive
from lattice.rules import MLPRule

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kw,field,needle",
    [
        (dict(steps=0), "steps", ">= 1"),
        (dict(steps=True), "steps", "integer"),
        (dict(steps_range=[5, 2]), "steps_range", "lo <= hi"),
        (dict(steps_range=[0, 2]), "steps_range", "1 <= lo"),
        (dict(boundary="mirror"), "boundary", "zero, periodic, reflect"),
        (dict(boundary="reflect", width=1), "boundary", "width=1"),
        (dict(neighbourhood="hex"), "neighbourhood", "von_neumann, moore"),
        (dict(rule="lstm"), "rule", "mlp, gated_mlp, gru"),
        (dict(perceive="sobel"), "perceive", "gather, isotropic"),
        (dict(readout="max"), "readout", "flatten, mean"),
        (dict(norm="batch"), "norm", "none, layer, rms"),
        (dict(inject="sometimes"), "inject", "once, every_step"),
        (dict(io_axis="w"), "io_axis", "z, y, x"),
        (dict(impl="cuda"), "impl", "auto, conv, slice, index"),
        (dict(depth=1), "io_axis", "at least 2"),
        (dict(io_axis="x", width=1), "io_axis", "at least 2"),
        (dict(channels=0), "channels", "positive"),
        (dict(hidden=-3), "hidden", "positive"),
        (dict(depth=1, height=1, width=1), "depth", "at least 2 cells"),
        (dict(update_rate=0.0), "update_rate", "(0, 1]"),
        (dict(update_rate=1.5), "update_rate", "(0, 1]"),
        (dict(face_channels=0), "face_channels", "between 1 and channels=16"),
        (dict(face_channels=17), "face_channels", "between 1"),
        (dict(output_dim=-1), "output_dim", ">= 0"),
        # 8x8 face x 2 channels = 128 values cannot hold a 384-d input
        (dict(face_channels=2, input_dim=384), "input_dim", "128 values"),
        (dict(io_axis="y", height=2, depth=3, width=4, channels=2, input_dim=25), "input_dim", "3x4"),
    ],
)
def test_invalid_config_names_the_field(kw, field, needle):
    with pytest.raises(ValueError) as err:
        LatticeConfig(**kw)
    msg = str(err.value)
    assert msg.startswith(f"{field}: "), msg
    if needle:
        assert needle in msg, msg


def test_face_capacity_is_checked_on_replace():
    # The student wrapper fills input_dim in with dataclasses.replace: the check must run then.
    cfg = LatticeConfig(height=4, width=4, channels=8, face_channels=1)
    assert dataclasses.replace(cfg, input_dim=16).input_dim == 16
    with pytest.raises(ValueError, match=r"^input_dim: 17 values do not fit on the 4x4 input face"):
        dataclasses.replace(cfg, input_dim=17)


def test_model_needs_io_dims_and_checks_input_shape():
    with pytest.raises(ValueError, match="^input_dim: must be > 0"):
        Lattice3D(LatticeConfig(output_dim=3))
    with pytest.raises(ValueError, match="^output_dim: must be > 0"):
        Lattice3D(LatticeConfig(input_dim=3))
    m = Lattice3D(LatticeConfig(input_dim=3, output_dim=2))
    with pytest.raises(ValueError, match=r"^x: expected shape \(B, 3\)"):
        m(torch.zeros(2, 4))
    assert m(torch.zeros(5, 3)).shape == (5, 2)


def _nondefault_model() -> Lattice3D:
    cfg = LatticeConfig(depth=4, height=3, width=5, channels=6, hidden=7, steps=3, steps_range=[2, 4],
                        neighbourhood="moore", boundary="reflect", rule="gru", io_axis="y",
                        inject="every_step", update_rate=0.7, norm="layer", zero_init=False,
                        face_channels=3, input_dim=9, output_dim=4, perceive="gather", readout="mean")
    torch.manual_seed(0)
    m = Lattice3D(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def test_save_load_round_trip_is_exact(tmp_path):
    m = _nondefault_model().eval()
    out = m.save_pretrained(tmp_path / "student")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["student"]  # no temporary left behind
    m2 = Lattice3D.from_pretrained(tmp_path / "student").eval()
    assert m2.config == m.config
    x = torch.randn(3, 9)
    assert torch.equal(m(x, steps=5), m2(x, steps=5))
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_save_replaces_an_existing_model_whole(tmp_path):
    m = _nondefault_model()
    m.save_pretrained(tmp_path / "s")
    (tmp_path / "s" / "stale.txt").write_text("from an older save")
    with torch.no_grad():
        m.readout.proj.bias.fill_(3.0)
    m.save_pretrained(tmp_path / "s")
    assert not (tmp_path / "s" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert torch.equal(Lattice3D.from_pretrained(tmp_path / "s").readout.proj.bias, m.readout.proj.bias)


def test_failed_save_leaves_previous_model_and_no_temporary(tmp_path, monkeypatch):
    m = _nondefault_model()
    m.save_pretrained(tmp_path / "s")
    before = (tmp_path / "s" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with torch.no_grad():
        m.readout.proj.bias.fill_(3.0)
    with pytest.raises(OSError, match="disk full"):
        m.save_pretrained(tmp_path / "s")
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert (tmp_path / "s" / "model.safetensors").read_bytes() == before


def test_config_json_is_plain_and_versioned(tmp_path):
    _nondefault_model().save_pretrained(tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "config.json").read_text())
    assert doc["format_version"] == 1 and doc["model"] == "Lattice3D"
    assert LatticeConfig(**doc["config"]) == _nondefault_model().config


def test_package_loads_with_torch_and_safetensors_only(tmp_path):
    # A fresh interpreter loads a saved model and runs it; none of the training stack is imported.
    m = _nondefault_model().eval()
    m.save_pretrained(tmp_path / "s")
    x = torch.randn(2, 9)
    torch.save({"x": x, "y": m(x)}, tmp_path / "io.pt")
    code = f"""
import sys, torch
from lattice import Lattice3D
m = Lattice3D.from_pretrained({str(tmp_path / 's')!r}).eval()
io = torch.load({str(tmp_path / 'io.pt')!r})
assert torch.equal(m(io["x"]), io["y"])
bad = [n for n in ("accelerate", "deepspeed", "transformers", "teachers", "distill") if n in sys.modules]
assert not bad, bad
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_conv_impl_needs_a_linear_perception(monkeypatch):
    class MaxPerceive(Perceive):  # max over the neighbourhood: no stencil, so no conv form
        def __init__(self, offsets, boundary, channels):
            super().__init__(offsets, boundary, channels)
            self.num_features = channels

        def forward(self, state):
            return torch.stack(self.shifted(state)).amax(0)

    monkeypatch.setitem(PERCEIVES, "max", MaxPerceive)
    with pytest.raises(ValueError, match="^impl: 'conv' needs a perception linear"):
        LatticeConfig(perceive="max", impl="conv")
    m = Lattice3D(LatticeConfig(perceive="max", input_dim=4, output_dim=2))  # auto -> slice (no gather form)
    assert m._impl_for(torch.zeros(2, 4, 8, 8, 16)) == "slice" and m(torch.randn(2, 4)).shape == (2, 2)


def test_a_new_rule_is_one_registry_entry(monkeypatch):
    class TanhMLP(MLPRule):
        def forward(self, state, project):
            return self.fc_out(torch.tanh(project(state, self.fc_in)))

    monkeypatch.setitem(RULES, "tanh_mlp", TanhMLP)
    m = Lattice3D(LatticeConfig(rule="tanh_mlp", input_dim=4, output_dim=2))
    assert isinstance(m.rule, TanhMLP)
    assert m(torch.randn(2, 4)).shape == (2, 2)


def test_auto_impl_gathers_for_few_cells_and_convolves_for_many():
    # "auto" resolves per call: a 3x1x32 token lattice encoding one text (96 cells) takes the
    # one-gather path; the same lattice at batch 64 (6144 cells) the convolution.
    m = Lattice3D(LatticeConfig(input_dim=4, output_dim=2, depth=3, height=1, width=32, channels=16))
    assert m.impl == "auto"
    assert m._impl_for(torch.zeros(1, 3, 1, 32, 16)) == "index"
    assert m._impl_for(torch.zeros(64, 3, 1, 32, 16)) == "conv"
    iso = Lattice3D(LatticeConfig(input_dim=4, output_dim=2, perceive="isotropic"))
    assert iso._impl_for(torch.zeros(64, 4, 8, 8, 16)) == "index"  # no conv preference: always gather
