"""
Every public function and class has a numpydoc docstring with a runnable example.

"Public" means: the names in ``spectralnn.__all__`` and in the ``__all__`` of
every module whose dotted path has no part starting with an underscore. A
docstring passes when it has an ``Examples`` section with at least one
``>>>`` line that is not skipped (the examples themselves are run by
pytest-doctestplus, which collects the package's docstrings), and a
``Parameters`` section when the callable takes arguments (a class may list
its fields under ``Attributes`` instead). Exceptions, warnings and enums
take no documented arguments. Public methods and properties of public classes
need at least a one-line docstring.
"""

import enum
import importlib
import inspect
import pkgutil
import re

import pytest

import spectralnn

#: modules that import Keras at import time
_KERAS_MODULES = {"spectralnn.models.heads", "spectralnn.models.layers"}


def _has_keras():
    return importlib.util.find_spec("keras") is not None


def _public_modules():
    names = ["spectralnn"]
    for info in pkgutil.walk_packages(spectralnn.__path__, "spectralnn."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def _public_objects():
    """(qualified name, object) of every public function and class, once each."""
    seen, found = set(), []
    for module_name in _public_modules():
        if module_name in _KERAS_MODULES and not _has_keras():
            continue
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("spectralnn"):
                continue
            key = (obj.__module__, obj.__qualname__)
            if key in seen:
                continue
            seen.add(key)
            found.append((f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(found, key=lambda item: item[0])


def _section(doc, title):
    """The text of a numpydoc section, or None when it is absent."""
    match = re.search(rf"^{title}\n-{{{len(title)}}}\n(.*?)(?=^\S[^\n]*\n-{{3,}}\n|\Z)",
                      doc, flags=re.M | re.S)
    return None if match is None else match.group(1)


def _takes_arguments(obj):
    if inspect.isclass(obj) and issubclass(obj, (BaseException, enum.Enum)):
        return False
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return any(name not in ("self", "cls") for name in signature.parameters)


def _problems(obj):
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return ["no docstring"]
    problems = []
    examples = _section(doc, "Examples")
    if examples is None:
        problems.append("no Examples section")
    else:
        runnable = [line for line in examples.splitlines()
                    if line.lstrip().startswith(">>>") and "+SKIP" not in line]
        if not runnable:
            problems.append("Examples section has no runnable >>> line")
    if _takes_arguments(obj):
        titles = ("Parameters", "Attributes") if inspect.isclass(obj) else ("Parameters",)
        if all(_section(doc, title) is None for title in titles):
            problems.append("no Parameters section")
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_"):
                continue
            target = member.fget if isinstance(member, property) else member
            if isinstance(target, (staticmethod, classmethod)):
                target = target.__func__
            if inspect.isfunction(target) and not (inspect.getdoc(target) or "").strip():
                problems.append(f"method or property {name!r} has no docstring")
    return problems


PUBLIC = _public_objects()


def test_public_api_is_found():
    names = {name.rsplit(".", 1)[-1] for name, _ in PUBLIC}
    # one name from each layer of the package, so a broken walk cannot pass silently
    assert {"SpectrumBatch", "MassEstimator", "read_sdss", "deredden",
            "virial_black_hole_mass", "simulate_quasars", "write_dataset",
            "build_model", "black_hole_mass", "plot_mass_fit", "main"} <= names
    assert len(PUBLIC) > 100


def test_top_level_names_are_documented():
    for name in spectralnn.__all__:
        obj = getattr(spectralnn, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert not _problems(obj), (name, _problems(obj))


@pytest.mark.parametrize("name,obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_numpydoc_docstring_with_example(name, obj):
    problems = _problems(obj)
    assert not problems, f"{name}: {'; '.join(problems)}"
