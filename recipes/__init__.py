"""Training and evaluation recipes for the antialiased model zoo.

Run from a clone of the repository: `python -m recipes.train`,
`python -m recipes.evaluate`.
"""
