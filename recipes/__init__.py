"""Training and evaluation recipes for the antialiased model zoo.

Run from a clone of the repository: `python -m recipes.train`,
`python -m recipes.evaluate`. A wheel installs this folder as
`keras_blurpool_recipes` (its modules import each other relatively), with
the console scripts `keras-blurpool-train` and `keras-blurpool-evaluate`.
"""
