"""Training throughput: the trainer on 1 and 2 replicas, and the input pipeline.

Three figures in one run, so that a regression in either the training step
or the data path shows:

- the trainer (`recipes.trainer.Trainer`, a `strategy.run` step with SGD)
  on the antialiased ResNet-50 (`filter_size=4`), fed in-memory batches,
  with 1 replica (`OneDeviceStrategy`) and 2 replicas (`MirroredStrategy`
  over the CPU split into 2 logical devices; on a machine with GPUs, the
  first one and two GPUs);
- the ImageNet training input pipeline alone (`recipes.data`: JPEG
  decode, random-resized crop, flip, normalise, batch) and the evaluation
  pipeline (resize, center crop), on a folder of JPEGs the benchmark
  generates in a temporary directory.

Images per second, median over repeats (an epoch of `--steps` steps for the
trainer, its first step excluded; a pass over the folder for the
pipelines).

    python benchmarks/train_throughput.py [--repeats 3] [--steps 4] [--batch-size 16]
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# recipes/ is not an installed package: run from a clone.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recipes import strategy as strategy_lib  # noqa: E402


def _write_jpegs(root, count, rng):
    """ImageNet-like JPEGs: ~400x350 pixels, smooth content plus noise."""
    for i in range(count):
        folder = os.path.join(root, "train", f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        height, width = rng.integers(300, 500, 2)
        low = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3))
        image = np.kron(low, np.ones((16, 16, 1)))[:height, :width]
        image += rng.normal(0, 20, image.shape)
        data = tf.io.encode_jpeg(np.clip(image, 0, 255).astype("uint8"),
                                 quality=90)
        with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
            f.write(data.numpy())


def _pipeline_rates(dataset_fn, repeats):
    rates = []
    for repeat in range(repeats + 1):
        start, images = time.perf_counter(), 0
        for batch, _ in dataset_fn(repeat):
            images += int(batch.shape[0])
        if repeat:  # the first pass warms the file cache and the tracing
            rates.append(images / (time.perf_counter() - start))
    return rates


def _trainer_rates(strategy, args, out_dir):
    import keras

    from recipes.config import TrainConfig
    from recipes.models import build_model
    from recipes.trainer import Trainer

    rng = np.random.default_rng(0)
    images = rng.standard_normal(
        (args.batch_size, args.size, args.size, 3)
    ).astype("float32")
    labels = rng.integers(0, 1000, args.batch_size).astype("int32")

    def train_input_fn(context, batch_size, epoch):
        dataset = tf.data.Dataset.from_tensors((images, labels)).unbatch()
        return dataset.batch(batch_size, drop_remainder=True).cache().repeat()

    def model_fn():
        keras.utils.set_random_seed(0)
        return build_model("resnet50", 4, image_size=args.size)

    config = TrainConfig(
        out_dir=out_dir,
        epochs=args.repeats,
        steps_per_epoch=args.steps,
        global_batch_size=args.batch_size,
        lr=0.1,
        checkpoint_every=0,
        keep_checkpoints=1,
        verbose=0,
    )
    result = Trainer(config, strategy, model_fn, train_input_fn).fit()
    return [record["images_per_sec"] for record in result.history]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4,
                        help="trainer steps per repeat (first one untimed)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=512,
                        help="JPEGs for the input pipeline")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error(f"argument --steps: at least 2 (the first is untimed), "
                     f"got {args.steps}")

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        strategy_lib.split_cpu(2)
    devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU")]
    strategies = {
        "trainer, 1 replica": tf.distribute.OneDeviceStrategy(devices[0]),
        "trainer, 2 replicas": tf.distribute.MirroredStrategy(
            devices[:2],
            cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice(),
        ),
    }
    from recipes import data

    work = tempfile.mkdtemp(prefix="train_throughput-")
    rows = {}
    try:
        _write_jpegs(work, args.images, np.random.default_rng(0))
        source = data.load_images(work, "train", shuffle_seed=0)
        rows["input pipeline, train (decode+crop+flip)"] = _pipeline_rates(
            lambda epoch: data.train_dataset(source, 32, epoch=epoch).prefetch(2),
            args.repeats,
        )
        rows["input pipeline, eval (decode+resize+crop)"] = _pipeline_rates(
            lambda epoch: data.eval_dataset(source, 32).prefetch(2),
            args.repeats,
        )
        for name, strategy in strategies.items():
            rows[name] = _trainer_rates(
                strategy, args, os.path.join(work, name.replace(" ", "_"))
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import keras

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{'GPUs: ' + str(len(gpus)) if gpus else 'no GPU'}; TF "
        f"{tf.__version__}, Keras {keras.__version__}; trainer: antialiased "
        f"ResNet-50 (filter 4), global batch {args.batch_size} at "
        f"{args.size}x{args.size}, {args.steps - 1} timed steps x "
        f"{args.repeats}; pipelines: {args.images} JPEGs, batch 32, "
        f"{args.repeats} passes"
    )
    width = max(len(name) for name in rows)
    print(f"| {'':<{width}} | images/sec (median) | min | max |")
    print(f"|{'-' * (width + 2)}|---:|---:|---:|")
    for name, rates in rows.items():
        print(f"| {name:<{width}} | {np.median(rates):.1f} | "
              f"{min(rates):.1f} | {max(rates):.1f} |")
    one, two = (np.median(rows[k]) for k in strategies)
    print(f"2 replicas / 1 replica: {two / one:.2f}x")


if __name__ == "__main__":
    main()
