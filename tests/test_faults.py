"""Fault injection: a training process killed (SIGKILL) again and again, also inside the write of
its checkpoint, resumes each time and ends bit for bit where the uninterrupted run ends, leaving no
temporary file behind.

Each attempt is a ``python`` subprocess running the ``softseg train`` CLI through a small driver
that can kill its own process half-way through the N-th checkpoint write (``KILL_IN_WRITE=N``):
the temporary file then holds half a checkpoint, as after a power cut or an OOM kill mid-write.
Other attempts are killed from outside after a random delay.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

DRIVER = """
import io, os, signal, sys
import softseg.atomic as atomic

kill_at, writes, real = int(os.environ.get("KILL_IN_WRITE", "0")), [0], atomic.atomic_write

def atomic_write(path, write):
    if os.path.basename(path) != "checkpoint.pt":
        return real(path, write)
    writes[0] += 1
    if writes[0] != kill_at:
        return real(path, write)

    def half_then_die(f):
        buf = io.BytesIO()
        write(buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    return real(path, half_then_die)

atomic.atomic_write = atomic_write
from softseg.cli import main
sys.argv = ["softseg", *sys.argv[1:]]
main()
"""

EPOCHS = 4


def _dataset(root: Path, n: int = 8) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.json").write_text(json.dumps({"classes": ["ground", "square"]}))
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        mask = torch.zeros(24, 32, dtype=torch.uint8)
        top, left = (int(v) for v in torch.randint(0, 12, (2,), generator=g))
        mask[top : top + 12, left : left + 16] = 1
        image = (mask * 180 + 30).expand(3, -1, -1).permute(1, 2, 0).contiguous()
        Image.fromarray(image.numpy()).save(root / "images" / f"f{i}.png")
        Image.fromarray(mask.numpy()).save(root / "masks" / f"f{i}.png")
    return root


def _start(
    driver: Path, out: Path, data: Path, resume: bool, kill_in_write: int = 0, epochs: int = EPOCHS
) -> subprocess.Popen:
    args = [sys.executable, str(driver), "train", "--out", str(out), "--dataset", "folder",
            "--root", str(data), "--arch", "tiny", "--factor", "2", "--batch-size", "2",
            "--workers", "0", "--device", "cpu", "--epochs", str(epochs), "--limit-val", "2",
            "--seed", "5", *(["--resume"] if resume else [])]  # fmt: skip
    env = os.environ | {"KILL_IN_WRITE": str(kill_in_write), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out.decode(errors="replace")


def _epochs_done(out: Path) -> int:
    log = out / "metrics.jsonl"
    return log.read_text().count("\n") if log.exists() else 0


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) if out.exists() else []


def _assert_same_run(a: Path, b: Path, epochs: int) -> None:
    """Bit-identical weights and the same per-epoch losses in run directories ``a`` and ``b``."""
    wa, wb = (
        torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True) for d in (a, b)
    )
    assert wa["model"].keys() == wb["model"].keys()
    assert all(torch.equal(wa["model"][k], wb["model"][k]) for k in wa["model"])
    losses = [
        [json.loads(line)["train_loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        for d in (a, b)
    ]
    assert len(losses[0]) == epochs and losses[0] == losses[1]


@pytest.fixture
def setup(tmp_path) -> tuple[Path, Path]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return driver, _dataset(tmp_path / "data")


def test_a_kill_inside_the_checkpoint_write_resumes_exactly(tmp_path, setup):
    driver, data = setup
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    code, log = _finish(_start(driver, straight, data, resume=False, epochs=2))
    assert code == 0, log
    code, log = _finish(_start(driver, killed, data, resume=False, kill_in_write=2, epochs=2))
    assert code == -signal.SIGKILL, log
    assert _epochs_done(killed) == 1 and len(_temps(killed)) == 1  # half of epoch 2's checkpoint
    code, log = _finish(_start(driver, killed, data, resume=True, epochs=2))
    assert code == 0, log
    assert _temps(killed) == []
    _assert_same_run(straight, killed, epochs=2)


@pytest.mark.slow  # seven processes, each importing torch: over a minute on a busy machine
def test_repeated_kills_resume_bit_identical_and_leave_no_temp_files(tmp_path, setup):
    driver, data = setup
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    code, log = _finish(_start(driver, straight, data, resume=False))
    assert code == 0, log

    # 1. inside the first checkpoint write: no checkpoint yet, half a temporary file
    code, log = _finish(_start(driver, killed, data, resume=False, kill_in_write=1))
    assert code == -signal.SIGKILL, log
    assert not (killed / "checkpoint.pt").exists() and len(_temps(killed)) == 1
    # 2. resumed (from the start: config.json only), killed inside its second checkpoint write
    code, log = _finish(_start(driver, killed, data, resume=True, kill_in_write=2))
    assert code == -signal.SIGKILL, log
    assert _epochs_done(killed) == 1 and len(_temps(killed)) == 1  # the old one was removed
    # 3. and 4. killed from outside at random moments (before, during or after an epoch)
    rng = random.Random(15)
    for _ in range(2):
        proc = _start(driver, killed, data, resume=True)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        _finish(proc)
        assert _epochs_done(killed) <= EPOCHS
    # 5. the last attempt runs to the end
    code, log = _finish(_start(driver, killed, data, resume=True))
    assert code == 0, log
    assert _temps(killed) == []
    _assert_same_run(straight, killed, epochs=EPOCHS)
