"""The command lines of keras-blurpool, importable without Keras.

`import keras_blurpool` imports Keras, and Keras on its default backend
imports TensorFlow (seconds, and TensorFlow's C++ log lines), so what the
command lines need before their arguments are parsed lives outside the
package, in modules that import neither:

* `parsers`: the registry's names for `--help`, and the converter's
  parser. Imports nothing of the project; `keras_blurpool.convert` and
  the recipes' command lines import it.
* `scripts`: the console scripts `keras-blurpool-train`,
  `keras-blurpool-evaluate` and `keras-blurpool-convert`. Each parses the
  command line, then imports the module that runs it. Nothing imports
  `scripts`.

A wheel installs the clone's `recipes/` folder (`python -m
recipes.train`) as the package `keras_blurpool_recipes`, so that no
generic top-level name such as `recipes` is installed.
"""
