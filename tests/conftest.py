"""Shared fixtures: the embedded default model and data, trained once per session."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

# Quieter TF logs in test output; set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402 - after the environment tweak above.


def cpu_flags() -> frozenset[str]:
    """This machine's /proc/cpuinfo flags (the CPU changes from one machine to the next)."""
    from components.common.cpu_facts import host_cpu

    return host_cpu().flags


# On a CPU without AVX-512, TF 2.16's oneDNN int8 kernels (QuantizedMatMulWithBias*)
# return no output at all, and Grappler's oneDNN bfloat16 pass rewrites nothing: tests
# that need either run only where they can; the rest run everywhere.
requires_avx512 = pytest.mark.skipif(
    "avx512f" not in cpu_flags(),
    reason="needs AVX-512 (oneDNN int8 kernels, bfloat16 rewrite); this CPU has none",
)


@pytest.fixture(scope="session")
def embedded_default(tmp_path_factory: pytest.TempPathFactory):
    """The digits CNN as a TFX Model artifact plus its eval Examples (trained once)."""
    from pipelines.embedded_default import ensure_embedded_default

    cache = os.environ.get("INFERENCE_OPTIMIZER_TEST_CACHE") or str(
        tmp_path_factory.mktemp("embedded_default_cache")
    )
    return ensure_embedded_default(cache)


@pytest.fixture(scope="session")
def frozen_digits(embedded_default):
    """The digits CNN frozen: a FrozenModel with `.graph_def` and `.signature`."""
    from components.freezer.freezing import freeze_saved_model

    return freeze_saved_model(embedded_default.model_uri)


@dataclasses.dataclass
class LabelledImages:
    """Images shaped for the model input (N, 32, 32, 1) and their integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read_labelled_images(examples_uri: str, signature, split: str = "eval") -> LabelledImages:
    """A split's images and labels, decoded the way every component feeds the model."""
    from components.common.examples_io import read_records
    from components.common.feeds import ExampleRecords, FeedSettings, decode_inputs, plan_inputs
    from components.common.tasks import decode_labels

    records = ExampleRecords(read_records(examples_uri, split), examples_uri)
    (images,) = decode_inputs(records, plan_inputs(signature.inputs, FeedSettings(), records))
    return LabelledImages(images=images, labels=decode_labels(records, "label"))


@pytest.fixture(scope="session")
def digits_eval(embedded_default, frozen_digits):
    """The held-out digits as LabelledImages shaped for the model input."""
    return read_labelled_images(embedded_default.examples_uri, frozen_digits.signature)


@pytest.fixture(scope="session")
def digits_train(embedded_default, frozen_digits):
    """The digits the CNN was trained on: what int8 calibration reads."""
    return read_labelled_images(embedded_default.examples_uri, frozen_digits.signature, "train")


@dataclasses.dataclass(frozen=True)
class Outlier:
    frozen: object  # FrozenModel
    calibration: list[np.ndarray]
    held_out: object  # components.common.held_out.HeldOut
    float_top1: float

    def write_graph(self, directory: str) -> str:
        """The frozen graph as a FrozenGraph artifact folder (graph.pb, signature.json)."""
        from components.common.graph_io import save_graph_def

        save_graph_def(self.frozen.graph_def, directory)
        self.frozen.signature.save(directory)
        return directory

    def search(self, mode: str, output: str, max_drop: float = 0.01):
        """Runs a RuntimeConverter accuracy-aware mode on it: (outcome, search record)."""
        from components.common.int8_fallback import Int8SearchSettings, read_search_record
        from components.runtime_converter.modes import ConvertSettings, get_mode

        outcome = get_mode(mode).run(
            self.write_graph(os.path.join(output, "graph")),
            self.frozen.signature,
            self.calibration,
            os.path.join(output, "out"),
            ConvertSettings(
                num_calibration=200,
                int8_search=Int8SearchSettings(max_accuracy_drop=max_drop),
            ),
            held_out=self.held_out,
        )
        return outcome, read_search_record(os.path.join(output, "out"))


@pytest.fixture(scope="session")
def outlier(tmp_path_factory) -> Outlier:
    """The outlier digits CNN (pipelines/examples/outlier_digits.py), frozen, with its
    calibration digits and held-out digits scored for top-1."""
    from components.common.held_out import HeldOut
    from components.common.tasks import OutputPlan
    from components.freezer.freezing import freeze_saved_model
    from pipelines.examples.outlier_digits import write_outlier_digits

    written = write_outlier_digits(str(tmp_path_factory.mktemp("outlier_digits")))
    frozen = freeze_saved_model(written.model_uri)
    train = read_labelled_images(written.examples_uri, frozen.signature, "train")
    evaluation = read_labelled_images(written.examples_uri, frozen.signature, "eval")
    plan = OutputPlan(frozen.signature.outputs[0], "multiclass", "label")
    held_out = HeldOut([evaluation.images], evaluation.labels, plan)
    return Outlier(frozen, [train.images[:200]], held_out, written.eval_accuracy)
