"""The one builder pattern: signature, docstrings, stubs, variants."""

import dataclasses
import inspect
import pathlib
import re

import keras
import numpy as np
import pytest

from keras_blurpool import applications
from keras_blurpool.applications import convnext_afc
from keras_blurpool.applications import registry
from keras_blurpool.applications import stubs
from keras_blurpool.applications.arguments import ARGUMENT_NAMES
from keras_blurpool.applications.arguments import OPTIONAL_ARGUMENTS
from keras_blurpool.applications.builder import Family

BUILDERS = [a.builder for a in registry.ARCHITECTURES.values()]
IDS = [b.__name__ for b in BUILDERS]
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _documented_arguments(doc: str) -> list[str]:
    """The names of the "Args:" section of a Google-style docstring."""
    section = doc.split("\nArgs:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^    (\w+): ", section, flags=re.MULTILINE)


def test_every_public_builder_is_registered():
    public = {name for name in dir(applications) if name[0].isupper()}
    assert public == set(IDS)


@pytest.mark.parametrize("builder", BUILDERS, ids=IDS)
def test_docstring_documents_exactly_the_signature(builder):
    parameters = list(inspect.signature(builder).parameters)
    assert _documented_arguments(inspect.getdoc(builder)) == parameters
    if builder.__module__ == convnext_afc.__name__:
        # keras.applications' arguments, the ConvNeXt configuration, and
        # the padding (circular only).
        assert parameters[-3:] == ["depths", "dims", "padding"]
        return
    # One signature for all: the shared arguments, in their order.
    assert parameters == [
        name
        for name in ARGUMENT_NAMES
        if name in parameters or name not in OPTIONAL_ARGUMENTS
    ]
    assert "{" not in inspect.getdoc(builder), "an unfilled template field"


def test_the_check_sees_a_missing_or_extra_argument():
    # Guards the guard: a docstring that drops or adds an entry differs.
    doc = inspect.getdoc(applications.ResNet18)
    names = _documented_arguments(doc)
    dropped = doc.replace("    pooling: feature pooling", "    feature pooling")
    assert _documented_arguments(dropped) == [n for n in names if n != "pooling"]


@pytest.mark.parametrize("builder", BUILDERS, ids=IDS)
def test_variant_is_named_configuration(builder):
    assert builder.arch in registry.ARCHITECTURES
    assert registry.get(builder.arch).builder is builder
    if builder.variant is not None:
        assert dataclasses.is_dataclass(builder.variant)
        parameters = dataclasses.fields(builder.variant)
        assert all(field.kw_only for field in parameters)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(builder.variant, parameters[0].name, None)


def test_stubs_are_current():
    for module, builders in stubs.family_modules().items():
        path = stubs.stub_path(module)
        assert path.exists(), f"{path} is missing: run python -m {stubs.__name__}"
        assert path.read_text(encoding="utf-8") == stubs.render(module, builders), (
            f"{path} is out of date: run python -m {stubs.__name__}"
        )
    assert stubs.main(["--check"]) == 0


def test_stubs_declare_each_builder_as_the_source_does():
    # What an IDE reads: every builder with its signature and docstring.
    import ast

    for module, builders in stubs.family_modules().items():
        tree = ast.parse(stubs.stub_path(module).read_text(encoding="utf-8"))
        functions = {
            node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
        }
        assert "__getattr__" in functions  # other names come from the source
        for builder in builders:
            node = functions[builder.__name__]
            assert [a.arg for a in node.args.args] == list(
                inspect.signature(builder).parameters
            )
            defaults = [ast.literal_eval(d) for d in node.args.defaults]
            assert defaults == [
                p.default for p in inspect.signature(builder).parameters.values()
            ]
            assert ast.get_docstring(node) == inspect.getdoc(builder)


def test_positional_and_keyword_calls_build_the_same_model():
    by_position = applications.ResNet18(True, None, None, (64, 64, 3), None, 5)
    by_keyword = applications.ResNet18(input_shape=(64, 64, 3), classes=5)
    assert by_position.output_shape == by_keyword.output_shape == (None, 5)
    assert [w.shape for w in by_position.weights] == [
        w.shape for w in by_keyword.weights
    ]
    with pytest.raises(TypeError, match="unexpected keyword argument 'pool_only'"):
        applications.VGG11(pool_only=True)
    with pytest.raises(TypeError, match="multiple values"):
        applications.ResNet18(True, include_top=False)


def test_builders_are_found_where_they_are_declared():
    # help(), doctest and the API docs look builders up by `__module__`.
    for builder in BUILDERS:
        module = inspect.getmodule(builder)
        assert getattr(module, builder.__name__) is builder
        assert module.__name__.startswith("keras_blurpool.applications.")


def test_family_refuses_unknown_arguments_and_defaults():
    def network(inputs, variant, options):
        return inputs

    with pytest.raises(ValueError, match=r"among \('pool_only', 'padding'\)"):
        Family(
            name="x", module=__name__, network=network,
            min_input_size=lambda v, o: 32, doc="", arguments=("strides",),
        )
    family = Family(
        name="x", module=__name__, network=network,
        min_input_size=lambda v, o: 32, doc="",
        defaults=lambda variant: {"filter_sise": 3},
    )
    with pytest.raises(ValueError, match="filter_sise"):
        family.builder("X", arch="x", variant=None, title="X")


def test_adding_a_family_example_runs():
    # docs/zoo.md "Adding a family": its example builds, anti-aliased and plain.
    text = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    section = text.split("## Adding a family", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
    namespace = {"__name__": "docs_zoo_example"}
    exec(compile(code, "docs/zoo.md", "exec"), namespace)
    model = namespace["TinyNet"](input_shape=(32, 32, 3), classes=4)
    assert model.output_shape == (None, 4)
    assert any(layer.name.endswith("_blur") for layer in model.layers)
    plain = namespace["TinyNet"](input_shape=(32, 32, 3), classes=4, antialias=None)
    assert not any(layer.name.endswith("_blur") for layer in plain.layers)
    x = np.zeros((1, 32, 32, 3), "float32")
    assert np.isfinite(keras.ops.convert_to_numpy(model(x))).all()
    assert "Args:" in namespace["TinyNet"].__doc__
