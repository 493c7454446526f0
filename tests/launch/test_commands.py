"""Command composition: exact ``--dry-run`` output, how accelerate/torchrun read it, bad input -> 2."""

from __future__ import annotations

import shlex

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from distill.cli import main
from launch.compose import ACCELERATE_CONFIG_DIR
from tests.launch.conftest import ROOT

TPL = "configs/accelerate/gpu_multi.yaml"
CPU_TPL = "configs/accelerate/cpu_multi.yaml"
CLUSTER = ["--nodes", "4", "--procs-per-node", "8", "--main-addr", "10.0.0.1", "--main-port", "29500"]


def launch(capsys, monkeypatch, *args, cwd=ROOT):
    """``distill launch ARGS`` in this process; running anything fails the test instead."""

    def must_not_run(commands, *args, **kwargs):
        pytest.fail(f"launched {commands}")

    monkeypatch.setattr("launch.runner.run_sequence", must_not_run)
    monkeypatch.setattr("launch.runner.run_parallel", must_not_run)
    monkeypatch.chdir(cwd)
    rc = main(["launch", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def commands(out: str) -> list[str]:
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def test_dry_run_node_of_a_4x8_cluster(capsys, monkeypatch):
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", *CLUSTER, "--node-rank", "2", "--dry-run")
    assert rc == 0
    common = (f"DISTILL_DIST_TIMEOUT_S=900 TORCH_ELASTIC_SHUTDOWN_TIMEOUT=120 accelerate launch --config_file {TPL} --num_processes 32 "
              "--num_machines 4 --machine_rank 2 --main_process_ip 10.0.0.1")
    assert commands(out) == [
        f"{common} --main_process_port 29501 --rdzv_conf timeout=900 -m distill embed configs/default.yaml",
        f"{common} --main_process_port 29500 --rdzv_conf timeout=900 -m distill train configs/default.yaml",
    ]


def test_accelerate_and_torchrun_read_the_command_as_node_2_of_4(capsys, monkeypatch):
    """Parse the printed train command with accelerate's own parser and validation, then torchrun's:
    8 local processes, 4 nodes, node rank 2, rendezvous 10.0.0.1:29500, timeout 900."""
    import torch.distributed.run as distrib_run
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import _filter_args
    from accelerate.utils.launch import prepare_multi_gpu_env

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's config_from_args sets it otherwise
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", *CLUSTER, "--node-rank", "2", "--dry-run",
                        "--", "train.max_steps=7")
    assert rc == 0
    argv = shlex.split(commands(out)[1])
    assert argv[:2] == ["DISTILL_DIST_TIMEOUT_S=900", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT=120"]
    assert argv[2:4] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(argv[4:])
    args, _, _ = _validate_launch_command(args)
    assert args.multi_gpu and not args.cpu and not args.use_deepspeed
    prepare_multi_gpu_env(args)
    targs = _filter_args(args, distrib_run.get_args_parser(),
                         ["--training_script", args.training_script, "--training_script_args",
                          args.training_script_args])
    config, cmd, cmd_args = distrib_run.config_from_args(targs)
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (4, 4, 8)
    assert config.rdzv_backend == "static" and config.rdzv_endpoint == "10.0.0.1:29500"
    assert config.rdzv_configs == {"timeout": "900", "rank": 2}
    assert cmd_args[-6:] == ["-m", "distill", "train", "configs/default.yaml", "--set", "train.max_steps=7"]


def test_dry_run_without_node_rank_prints_every_node(capsys, monkeypatch):
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", *CLUSTER, "--dry-run", "--no-embed")
    assert rc == 0
    lines = commands(out)
    assert len(lines) == 4
    for rank, line in enumerate(lines):
        argv = shlex.split(line)
        assert argv[argv.index("--machine_rank") + 1] == str(rank)
        assert argv[argv.index("--num_processes") + 1] == "32"
        assert argv[-2:] == ["train", "configs/default.yaml"]


def test_local_cpu_overrides_and_resume(capsys, monkeypatch):
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", "--cpu", "--procs-per-node", "2", "--resume",
                        "--set", "train.max_steps=5", "--dry-run", "--grace", "45", "--",
                        "run.name=x y", "data.max_pairs=40")
    assert rc == 0
    env = "DISTILL_DIST_TIMEOUT_S=900 TORCH_ELASTIC_SHUTDOWN_TIMEOUT=45 CUDA_VISIBLE_DEVICES= "
    acc = f"accelerate launch --config_file {CPU_TPL} --num_processes 2 --num_machines 1 -m distill"
    sets = "--set train.max_steps=5 --set 'run.name=x y' --set data.max_pairs=40 --set train.cpu=true"
    assert commands(out) == [f"{env}{acc} embed configs/default.yaml {sets}",
                             f"{env}{acc} train configs/default.yaml {sets} --resume"]


def test_online_targets_run_only_the_train_phase(capsys, monkeypatch):
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", "--dry-run", "--", "targets.mode=online",
                        "curriculum.difficulty=length", "student.kernel_skip.teachers=[]")
    assert rc == 0
    phases = [(a := shlex.split(c))[a.index("-m") + 2] for c in commands(out)]
    assert phases == ["train"]


def test_template_choice(capsys, monkeypatch):
    rc, out, _ = launch(capsys, monkeypatch, "configs/default.yaml", "--procs-per-node", "4", "--dry-run",
                        "--accelerate-config", "gpu_multi", "--no-embed")
    assert rc == 0
    argv = shlex.split(commands(out)[0])
    assert argv[argv.index("--config_file") + 1] == "configs/accelerate/gpu_multi.yaml"


@pytest.mark.parametrize("name", ["cpu_multi", "gpu_multi"])
def test_templates_are_real_accelerate_configs(name):
    """accelerate's loader rejects unknown keys; the torchrun path needs these values."""
    path = ACCELERATE_CONFIG_DIR / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert cfg.compute_environment.value == "LOCAL_MACHINE"
    assert raw["rdzv_backend"] == "static" and raw["same_network"] is True
    assert cfg.distributed_type.value == "MULTI_GPU"


@pytest.mark.parametrize("args, needle", [
    (["--nodes", "4", "--node-rank", "4", "--main-addr", "a"], "--node-rank: must be in [0, 3]"),
    (["--nodes", "0"], "--nodes: must be >= 1"),
    (["--nodes", "2", "--node-rank", "0"], "--main-addr: is needed"),
    (["--procs-per-node", "3"], "train.batch_size 64 is not divisible by 3 processes"),
    (["--main-port", "70000"], "--main-port: must be in"),
    (["--accelerate-config", "nope"], "'nope' is not a file nor one of cpu_multi"),
    (["--", "train.max_step=5"], "train.max_step"),
    (["--", "train.max_steps=0"], "train.max_steps: must be >= 1"),
    (["--", "notakeyvalue"], "'notakeyvalue' is not a KEY=VALUE override"),
    (["--nodes", "2", "--main-addr", "a"], "--node-rank: is needed"),
    (["--slurm", "--node-rank", "0"], "--node-rank: is given by SLURM"),
    (["--grace", "0"], "--grace: must be >= 1 second"),
])
def test_bad_input_exits_2_before_anything_runs(capsys, monkeypatch, tmp_path, args, needle):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    rc, out, err = launch(capsys, monkeypatch, "configs/default.yaml", *args, cwd=tmp_path)
    assert rc == 2, (out, err)
    assert needle in err
    assert "accelerate launch" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]


def test_missing_config_exits_2(capsys, monkeypatch, tmp_path):
    rc, _, err = launch(capsys, monkeypatch, "nope.yaml", "--dry-run", cwd=tmp_path)
    assert rc == 2 and "config file not found: nope.yaml" in err


def test_existing_run_directory_is_refused_before_launching(capsys, monkeypatch, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "config.yaml").write_text("x")
    rc, out, err = launch(capsys, monkeypatch, "configs/default.yaml", "--cpu", cwd=tmp_path)
    assert rc == 2 and "already exists; pass --resume" in err
    assert "accelerate launch" not in out
