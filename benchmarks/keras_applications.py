"""Benchmark the pipeline on real architectures: MobileNetV2 and ResNet50, no downloads.

    .venv/bin/python -m benchmarks.keras_applications --arch mobilenet_v2
    make benchmark ARCH=resnet50

Builds `keras.applications.<arch>(weights=None)` with a fixed seed (nothing is
downloaded), exports it as a TFX `Model` artifact, writes an `Examples` artifact of
seeded random images labelled with the model's own top-1 (so the baseline scores 1.0
and every variant's top-1 is its agreement with the baseline: with random weights
there is no other meaningful label), then runs `inference-optimizer run` on them. All
ratios in the printed table come from that one run.
"""

from __future__ import annotations

import argparse
import os
import sys

ARCHITECTURES = {
    "mobilenet_v2": "MobileNetV2",
    "resnet50": "ResNet50",
}
SEED = 1234
IMAGE_SIZE = 224


def build_inputs(arch: str, directory: str, num_examples: int) -> tuple[str, str]:
    """Exports the model and its examples under `directory` (reused when already there)."""
    model_uri = os.path.join(directory, "model")
    examples_uri = os.path.join(directory, "examples")
    ready = os.path.join(directory, "READY")
    if os.path.exists(ready):
        return model_uri, examples_uri

    import keras
    import numpy as np

    from components.common.examples_io import write_labelled_images

    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, ARCHITECTURES[arch])(
        weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classes=1000
    )
    model.export(os.path.join(model_uri, "Format-Serving"), format="tf_saved_model", verbose=False)
    images = (
        np.random.default_rng(SEED)
        .uniform(-1.0, 1.0, size=(num_examples, IMAGE_SIZE, IMAGE_SIZE, 3))
        .astype(np.float32)
    )
    labels = np.argmax(model.predict(images, batch_size=16, verbose=0), axis=1)
    write_labelled_images(examples_uri, images, labels)
    with open(ready, "w", encoding="utf-8") as f:
        f.write("ok\n")
    return model_uri, examples_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="mobilenet_v2")
    parser.add_argument("--output", default=None, help="default: runs/benchmark-<arch>")
    parser.add_argument("--num-examples", type=int, default=64)
    parser.add_argument(
        "run_args", nargs="*", help="extra `inference-optimizer run` arguments, after --"
    )
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output or os.path.join("runs", f"benchmark-{args.arch}"))
    model_uri, examples_uri = build_inputs(
        args.arch, os.path.join(output, "inputs"), args.num_examples
    )
    from pipelines import cli

    return cli.main(
        [
            "run",
            "--model",
            model_uri,
            "--examples",
            examples_uri,
            "--output",
            output,
            "--pipeline-name",
            f"benchmark-{args.arch.replace('_', '-')}",
            *args.run_args,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
