from setuptools import find_packages
from setuptools import setup

setup(
    name="keras-blurpool",
    version="0.1.0",
    description=(
        "Anti-aliased CNNs (Zhang, ICML 2019) for Keras 3: BlurPool layers, "
        "the antialiased model zoo and PyTorch weight conversion."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_blurpool", "keras_blurpool.*"]),
    package_data={"keras_blurpool.applications": ["imagenet_classes.txt"]},
    install_requires=["keras>=3.8", "tensorflow>=2.16", "numpy"],
    extras_require={
        "test": ["pytest>=7", "hypothesis", "tensorflow-datasets", "matplotlib"],
        # recipes/ (training, evaluation CLI) and the diagonal-shift plot.
        "recipes": ["tensorflow-datasets", "matplotlib"],
        # The PyTorch reference, for the equality tests (CPU torch is enough).
        "reference": ["torch", "antialiased-cnns"],
        "backends": ["jax", "jaxlib"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
