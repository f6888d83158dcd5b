"""The trainer under `recipes/strategy.py`'s strategies, in subprocesses.

Splitting the CPU into logical devices and MultiWorkerMirroredStrategy
must happen before TensorFlow initialises, so each test runs Python
processes of its own.
"""

import json
import socket
import subprocess
import sys
import textwrap

import numpy as np

from tests._recipes_training import REPO
from tests._recipes_training import make_env
from tests._recipes_training import run_python

_MIRRORED = """
    import json, sys
    import numpy as np, tensorflow as tf
    from recipes import strategy as strategy_lib
    strategy_lib.split_cpu(2)
    from tests._recipes_training import (dense_model, in_memory_input,
                                         random_arrays, train_config, weights_of)
    from recipes.trainer import Trainer
    from recipes import train

    out = sys.argv[1]
    images, labels = random_arrays()
    weights = {}
    for name in ("mirrored", "one_device"):
        strategy = strategy_lib.make_strategy(name)
        trainer = Trainer(train_config(f"{out}/{name}", steps_per_epoch=3), strategy,
                          dense_model, in_memory_input(images, labels, shuffle=False))
        weights[name] = (weights_of(trainer.fit().model),
                         strategy.num_replicas_in_sync)
    (mirrored, replicas), (single, _) = weights["mirrored"], weights["one_device"]
    same = all(np.allclose(a, b, rtol=1e-5, atol=1e-7)
               for a, b in zip(mirrored, single))
    code = train.main(["--arch", "demo", "--strategy", "mirrored", "--cpu-devices",
                       "2", "--epochs", "1", "--steps-per-epoch", "2",
                       "--batch-size", "8", "--eval-batch-size", "300",
                       "--out-dir", f"{out}/cli"])
    print("RESULT", json.dumps({"replicas": replicas, "same": same, "code": code}))
"""


def test_mirrored_over_two_logical_cpus(tmp_path):
    output = run_python(_MIRRORED, str(tmp_path))
    result = json.loads(output.split("RESULT ")[-1])
    assert result == {"replicas": 2, "same": True, "code": 0}, output
    # 2 replicas, per-replica batch 4; validation of 1000 images in global
    # batches of 300 (the last one partial) counts every image once.
    assert "on 2 replica(s) (MirroredStrategy)" in output
    assert "(1000 images)" in output
    assert (tmp_path / "cli" / "final.keras").exists()


_WORKER = """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    from recipes import strategy as strategy_lib
    strategy = strategy_lib.make_strategy("auto")
    import keras
    from recipes import data
    from recipes.models import build_model
    from recipes.config import TrainConfig
    from recipes.trainer import Trainer

    out, dump = sys.argv[1], sys.argv[2]

    def model_fn():
        keras.utils.set_random_seed(0)
        return build_model("demo", 4, num_classes=10, image_size=32)

    def train_input_fn(context, batch_size, epoch):
        source = data.load_images("demo", "train", input_context=context,
                                  shuffle_seed=0)
        return data.train_dataset(source, batch_size, seed=0, epoch=epoch)

    def eval_input_fn(batch_size):
        source = data.load_images("demo", "validation")
        return data.eval_dataset(source, batch_size).take(3)

    config = TrainConfig(out_dir=out, epochs=1, steps_per_epoch=3,
                         global_batch_size=16, lr=0.05, verbose=0,
                         checkpoint_every=2)
    # Stopped at step 2 and resumed by a new trainer: every worker restores
    # the chief's checkpoint.
    Trainer(config, strategy, model_fn, train_input_fn,
            eval_input_fn).fit(stop_at_step=2)
    trainer = Trainer(config, strategy, model_fn, train_input_fn, eval_input_fn)
    result = trainer.fit()
    np.savez(dump, *[np.array(w) for w in result.model.weights])
    print("RESULT", json.dumps({
        "replicas": strategy.num_replicas_in_sync, "chief": trainer.is_chief,
        "step": result.step, "resumed_from": result.resumed_from,
        "multi_worker": isinstance(strategy,
                                   tf.distribute.MultiWorkerMirroredStrategy),
        "paths": sorted(result.paths)}))
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_end_identical(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = make_env()
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        processes.append(subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_WORKER),
             str(tmp_path / "run"), str(tmp_path / f"worker{index}.npz")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        ))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    results = [json.loads(o.split("RESULT ")[-1]) for o in outputs]
    assert [r["chief"] for r in results] == [True, False]
    for r in results:
        assert r["multi_worker"]
        assert r["replicas"] == 2 and r["step"] == 3 and r["resumed_from"] == 2
    assert results[0]["paths"] and not results[1]["paths"]
    a = np.load(tmp_path / "worker0.npz")
    b = np.load(tmp_path / "worker1.npz")
    assert len(a.files) == len(b.files) > 0
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    # Only the chief wrote into the output directory.
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.keras", "best.weights.h5", "checkpoints", "final.keras",
        "final.weights.h5", "logs", "run.json"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.is_dir()]
