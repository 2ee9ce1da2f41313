"""Training, resume (also after a kill), evaluation, prediction and DDP on tiny synthetic data."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import softseg.train.engine as engine
from softseg.train.engine import TrainConfig, evaluate_run, train

SMALL = dict(
    dataset="synthetic",
    dataset_options={"num_images": 8, "size": (48, 96)},
    factor=2.0,
    arch="tiny",
    batch_size=4,
    workers=0,
    epochs=2,
    scale=(0.75, 1.25),
)
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
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, progress=False)
    with pytest.raises(ValueError, match="only --epochs may change"):
        train(replace(cfg, lr=0.5), resume=True, progress=False)


def test_non_finite_loss_stops_without_touching_the_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(out=str(tmp_path / "r"), **SMALL)
    train(cfg, progress=False, stop_after_epoch=1)
    before = (tmp_path / "r" / "checkpoint.pt").read_bytes()

    class Exploding(engine.SoftCrossEntropy):
        def forward(self, logits, target):
            raise FloatingPointError("non-finite loss (nan)")

    monkeypatch.setattr(engine, "SoftCrossEntropy", Exploding)
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
    monkeypatch.setattr(engine, "_train", lambda cfg, **kw: seen.append(
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
