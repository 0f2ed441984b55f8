"""Real upstream TFX pipelines whose outputs are the tool's proof cases.

A TFX team does not hand the optimizer a hand-built Keras model: it hands over whatever
its Trainer exported, with a Transform graph and serialized-`tf.Example` parsing inside
the serving signature. This package builds that upstream half, from real TFX components
on scikit-learn's bundled data (nothing is downloaded), so the optimizer's components can
be appended after the Trainer and tested on realistic `Model` and `Examples` artifacts:

* `breast_cancer`: CsvExampleGen -> StatisticsGen -> SchemaGen -> Transform -> Trainer,
  a binary classifier served from serialized `tf.Example`s.
* `diabetes`: the same steps, a regression model served from serialized `tf.Example`s.
* `digits_png`: ImportExampleGen -> Trainer, a CNN over PNG-encoded digits served from a
  `uint8` image tensor.

`upstream.py` assembles and runs them; `datasets.py` writes their raw input data; the
`*_module.py` files are the TFX module files (`preprocessing_fn`, `run_fn`).
"""
