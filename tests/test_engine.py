"""Training, resume (also after a kill), evaluation, prediction and DDP on tiny synthetic data."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy
import pytest
import torch
from typer.testing import CliRunner

import softseg.train.loop as loop
from conftest import SMALL_RUN as SMALL
from softseg.cli import app
from softseg.train.config import TrainConfig, config_differences
from softseg.train.evaluate import evaluate_run
from softseg.train.loop import open_run, train

LEGACY_RUN = Path(__file__).parent / "fixtures" / "legacy_v0_1" / "run"  # written by v0.1
CLI_DATA = [
    "--dataset",
    "synthetic",
    "--limit-train",
    "8",
    "--limit-val",
    "2",
    "--factor",
    "8",
    "--arch",
    "tiny",
    "--batch-size",
    "4",
    "--workers",
    "0",
]


def weights(run_dir):
    return torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_ends_where_the_uninterrupted_run_ends(tmp_path):
    # deterministic: on a CUDA machine this runs on the GPU, where exactness needs it
    straight = TrainConfig(out=str(tmp_path / "a"), deterministic=True, **SMALL)
    train(straight, progress=False)
    half = replace(straight, out=str(tmp_path / "b"))
    train(half, progress=False, stop_after_epoch=1)
    first = [
        json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in first] == [1]
    train(half, resume=True, progress=False)
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    log_a = [
        json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    ]
    log_b = [
        json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]
    assert [r["val_miou"] for r in log_a] == [r["val_miou"] for r in log_b]


def test_existing_run_needs_resume_and_same_config(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "r"), **(SMALL | {"epochs": 1}))
    train(cfg, progress=False)
    with pytest.raises(FileExistsError, match="`resume=True`"):
        train(cfg, progress=False)
    differs = r"in lr \(saved 0.001, now 0.5\); a resumed run may change only .*`epochs`"
    with pytest.raises(ValueError, match=differs):
        train(replace(cfg, lr=0.5), resume=True, progress=False)
    # the step on its own: epochs may change, and resuming where there is no run is an error
    assert open_run(replace(cfg, epochs=5, workers=3), resume=True)["epoch"] == 0
    assert open_run(replace(cfg, out=str(tmp_path / "new")), resume=False) is None
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        open_run(replace(cfg, out=str(tmp_path / "new")), resume=True)
    assert config_differences(cfg, replace(cfg, epochs=9, seed=4)) == {"seed": (0, 4)}


def test_non_finite_loss_stops_without_touching_the_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(out=str(tmp_path / "r"), **SMALL)
    train(cfg, progress=False, stop_after_epoch=1)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()

    class Exploding(loop.SoftCrossEntropy):
        def forward(self, logits, target):
            raise FloatingPointError("non-finite loss (nan)")

    monkeypatch.setattr(loop, "SoftCrossEntropy", Exploding)
    with pytest.raises(FloatingPointError, match="epoch 2, step 1"):
        train(cfg, resume=True, progress=False)
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == before


def test_empty_batch_and_bad_label_method(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(TrainConfig(out=str(tmp_path / "a"), **(SMALL | {"batch_size": 64})), progress=False)
    with pytest.raises(ValueError, match="label_method"):
        train(
            TrainConfig(out=str(tmp_path / "b"), **(SMALL | {"labels": "blurry"})), progress=False
        )


@pytest.mark.parametrize("labels", ["nearest", "mode"])
def test_hard_label_methods_train(tmp_path, labels):
    record = train(
        TrainConfig(out=str(tmp_path / labels), **(SMALL | {"epochs": 1, "labels": labels})),
        progress=False,
    )
    assert record["epoch"] == 1 and 0 <= record["val_miou"] <= 100


def test_eval_and_predict(tmp_path):
    run = tmp_path / "r"
    train(TrainConfig(out=str(run), **(SMALL | {"epochs": 1})), progress=False)
    result = evaluate_run(run, split="val", progress=False)
    assert 0 <= result["miou"] <= 100 and len(result["per_class"]) == 11
    assert result["epoch"] == 1
    from PIL import Image

    from softseg.data import SyntheticStreets
    from softseg.train.predict import predict_paths

    image, _, _ = SyntheticStreets(1, size=(48, 96))[0]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "x.png")
    written = predict_paths(str(run), [str(tmp_path / "x.png")], str(tmp_path / "out"))
    mask = Image.open(written[0])
    assert mask.size == (96, 48) and (tmp_path / "out" / "x_overlay.png").exists()
    # written atomically: the two PNGs and no temporary file beside them
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_mask.png", "x_overlay.png"]


def _softseg(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "softseg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def test_cli_resume_after_kill_matches_uninterrupted_run(tmp_path):
    common = CLI_DATA + ["--epochs", "3", "--seed", "3", "--deterministic"]
    subprocess.run(
        [sys.executable, "-m", "softseg", "train", "--out", str(tmp_path / "a"), *common],
        check=True,
        capture_output=True,
    )
    proc = _softseg("train", "--out", str(tmp_path / "b"), *common)
    log = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = log.read_text().count("\n")
    assert 1 <= done <= 3
    subprocess.run(
        [
            sys.executable,
            "-m",
            "softseg",
            "train",
            "--out",
            str(tmp_path / "b"),
            *common,
            "--resume",
        ],
        check=True,
        capture_output=True,
    )
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]


def test_cli_eval_json_contract(tmp_path):
    run = tmp_path / "r"
    subprocess.run(
        [sys.executable, "-m", "softseg", "train", "--out", str(run), *CLI_DATA, "--epochs", "1"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "softseg",
            "eval",
            str(run),
            "--dataset",
            "synthetic",
            "--split",
            "val",
            "--limit",
            "2",
            "--json",
            str(tmp_path / "s.json"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    scores = json.loads((tmp_path / "s.json").read_text())
    assert 0 <= scores["miou"] <= 100 and set(scores["per_class"]) >= {"pole", "sky"}
    assert "mIoU" in out.stdout
    # boundary and calibration scores are printed and written too
    assert 0 <= scores["boundary_miou"] <= 100 and 0 <= scores["ece"] <= 100 and scores["nll"] > 0
    assert f"{scores['boundary_miou']:.2f}" in out.stdout and f"{scores['nll']:.4f}" in out.stdout


def test_cli_reports_bad_input_cleanly(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "softseg",
            "train",
            "--out",
            str(tmp_path / "r"),
            "--dataset",
            "camvid",
            "--root",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "missing" in res.stderr and "Traceback" not in res.stderr


def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29531",
            "-m",
            "softseg",
            "train",
            "--out",
            str(tmp_path / "ddp"),
            *CLI_DATA,
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    log = [
        json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in log] == [1] and 0 <= log[0]["val_miou"] <= 100


def test_deterministic_algorithms_are_scoped_to_the_run(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(loop, "_train", lambda cfg, **kw: seen.append(
        (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    ))  # fmt: skip
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        train(TrainConfig(out=str(tmp_path / "d"), deterministic=True), progress=False)
        train(TrainConfig(out=str(tmp_path / "n")), progress=False)
        assert seen == [(True, False), (False, True)]
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark  # restored after the deterministic run
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def test_median_frequency_class_weights_train_and_bad_name(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "w"), **(SMALL | {"epochs": 1}))
    record = train(replace(cfg, class_weights="median-frequency"), progress=False)
    assert record["epoch"] == 1 and 0 <= record["val_miou"] <= 100
    with pytest.raises(ValueError, match="class_weights must be one of"):
        train(replace(cfg, out=str(tmp_path / "x"), class_weights="inverse"), progress=False)


def test_configs_without_weight_mode_keep_the_class_weighting_they_were_trained_with():
    assert TrainConfig().weight_mode == "pixel"
    old = {k: v for k, v in asdict(TrainConfig()).items() if k != "weight_mode"}
    assert TrainConfig.from_dict(old).weight_mode == "class"
    assert TrainConfig.from_dict(old | {"weight_mode": "pixel"}).weight_mode == "pixel"
    assert TrainConfig.from_dict(old | {"weight_mode": "class"}).weight_mode == "class"
    legacy = json.loads((LEGACY_RUN / "config.json").read_text())
    assert TrainConfig.from_dict(legacy).weight_mode == legacy["weight_mode"]


def test_pixel_weight_mode_leaves_hard_label_runs_unchanged(tmp_path):
    # a full-resolution model, so that hard labels reach the loss as hard labels (the tiny model's
    # stride-4 logits would bring them down to soft ones)
    full = {"arch": "linknet", "epochs": 1, "class_weights": "median-frequency", "val_split": None}
    full |= {"deterministic": True}  # bit equality on a CUDA machine too
    cfg = TrainConfig(**(SMALL | full))
    loss = {}
    for labels in ("nearest", "soft"):
        for mode in ("class", "pixel"):
            run = replace(
                cfg, out=str(tmp_path / f"{labels}-{mode}"), labels=labels, weight_mode=mode
            )
            loss[labels, mode] = train(run, progress=False)["train_loss"]
    # for one-hot targets the two modes are the same loss, to the bit; soft targets tell them apart
    assert loss["nearest", "class"] == loss["nearest", "pixel"]
    assert loss["soft", "class"] != loss["soft", "pixel"]


# --------------------------------------------------------------------------- CLI contract
def test_cli_speaks_of_flags_where_the_library_speaks_of_arguments(tmp_path):
    args = ["train", "--out", str(tmp_path / "r"), "--device", "cpu", "--amp"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "error: --amp and --compile are CUDA options" in res.stderr
    assert "`" not in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(ValueError, match="`amp` and `compile` are CUDA options"):
        train(TrainConfig(out=str(tmp_path / "r"), device="cpu", amp=True), progress=False)


def _folder_dataset(root: Path, n: int = 4) -> None:
    """A two-class folder dataset with colours of its own: a bright square on a dark ground."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    spec = {"classes": ["ground", "square"], "colors": [[10, 20, 30], [250, 200, 0]]}
    (root / "classes.json").write_text(json.dumps(spec))
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        mask = torch.zeros(32, 48, dtype=torch.uint8)
        top, left = (int(v) for v in torch.randint(0, 16, (2,), generator=g))
        mask[top : top + 16, left : left + 24] = 1
        image = (mask * 200 + 20).expand(3, -1, -1).permute(1, 2, 0).contiguous()
        Image.fromarray(image.numpy()).save(root / "images" / f"f{i}.png")
        Image.fromarray(mask.numpy()).save(root / "masks" / f"f{i}.png")


def test_predict_needs_no_dataset_once_trained(tmp_path):
    from PIL import Image

    data, run = tmp_path / "data", tmp_path / "run"
    _folder_dataset(data)
    res = CliRunner().invoke(app, [
        "train", "--out", str(run), "--dataset", "folder", "--root", str(data), "--arch", "tiny",
        "--factor", "2", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--val-split", "",
        "--device", "cpu",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "dataset.json").read_text())
    assert saved["classes"] == ["ground", "square"] and saved["colors"][1] == [250, 200, 0]
    image = tmp_path / "x.png"
    (data / "images" / "f0.png").rename(image)
    data.rename(tmp_path / "moved")  # the dataset is gone from where the run's config says
    res = CliRunner().invoke(app, ["predict", str(run), str(image), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    mask = torch.from_numpy(numpy.array(Image.open(tmp_path / "p" / "x_mask.png")))
    colours = {tuple(c) for c in mask.reshape(-1, 3).tolist()}
    assert mask.shape == (32, 48, 3) and colours <= {(10, 20, 30), (250, 200, 0)}


def test_runs_written_before_dataset_json_still_predict_and_evaluate(tmp_path):
    import shutil

    from PIL import Image

    from softseg.data import SYNTHETIC_INFO, SyntheticStreets
    from softseg.train.evaluate import run_dataset_info

    run = tmp_path / "run"
    shutil.copytree(LEGACY_RUN, run)
    assert not (run / "dataset.json").exists()
    assert run_dataset_info(run) == SYNTHETIC_INFO  # from the dataset the config names
    image, _, _ = SyntheticStreets(1, size=(48, 96))[0]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "x.png")
    out = tmp_path / "p"
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "x.png"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "x_mask.png").exists()
    scores = evaluate_run(run, split="val", limit=1, progress=False)
    assert set(scores["per_class"]) == set(SYNTHETIC_INFO.classes) and scores["epoch"] == 1
