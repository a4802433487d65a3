"""Write the partial intersphinx inventories numpy.inv, xarray.inv and matplotlib.inv of this folder.

The docs are built offline (CI reaches package registries only), so ``conf.py`` reads every intersphinx inventory
from this folder.  python.inv (CPython 3.11), scipy.inv (SciPy 1.10) and distributed.inv (dask.distributed
2022.12) are the projects' own ``objects.inv`` files, taken from the Debian packages python3.11-doc,
python-scipy-doc and python-distributed-doc.  NumPy, xarray and Matplotlib have no such package here, so this
script writes an inventory of the few of their names the docs link to, at the addresses of their published
documentation.  When the real ``objects.inv`` can be downloaded, it can replace the file written here:

    python docs/_intersphinx/make_partial.py
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: project -> (version, [(name, domain:role, relative uri)]); "$" in a uri stands for the name
ENTRIES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "numpy": (
        "2",
        [
            ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#$"),
            ("numpy.random.Generator", "py:class", "reference/random/generator.html#$"),
            # where the class is defined, as autodoc reports it from annotations
            ("numpy.random._generator.Generator", "py:class", "reference/random/generator.html#numpy.random.Generator"),
            ("numpy.random.default_rng", "py:function", "reference/random/generator.html#$"),
            ("numpy.typing.ArrayLike", "py:data", "reference/typing.html#$"),
            ("numpy.typing.NDArray", "py:data", "reference/typing.html#$"),
            ("numpy.dtype", "py:class", "reference/generated/numpy.dtype.html#$"),
            ("numpy.float64", "py:class", "reference/arrays.scalars.html#$"),
            ("numpy.linspace", "py:function", "reference/generated/numpy.linspace.html#$"),
            ("numpy.savez", "py:function", "reference/generated/numpy.savez.html#$"),
            ("numpy.load", "py:function", "reference/generated/numpy.load.html#$"),
            ("array_like", "std:term", "glossary.html#term-array_like"),
        ],
    ),
    "xarray": (
        "2024",
        [
            ("xarray.Dataset", "py:class", "generated/xarray.Dataset.html#$"),
            ("xarray.DataArray", "py:class", "generated/xarray.DataArray.html#$"),
            # where the classes are defined, as autodoc reports them from annotations
            ("xarray.core.dataset.Dataset", "py:class", "generated/xarray.Dataset.html#xarray.Dataset"),
            ("xarray.core.dataarray.DataArray", "py:class", "generated/xarray.DataArray.html#xarray.DataArray"),
            ("xarray.open_dataset", "py:function", "generated/xarray.open_dataset.html#$"),
            ("xarray.concat", "py:function", "generated/xarray.concat.html#$"),
            ("xarray.Dataset.to_zarr", "py:method", "generated/xarray.Dataset.to_zarr.html#$"),
            ("xarray.Dataset.sel", "py:method", "generated/xarray.Dataset.sel.html#$"),
            ("xarray.testing.assert_identical", "py:function", "generated/xarray.testing.assert_identical.html#$"),
        ],
    ),
    "matplotlib": (
        "3",
        [
            ("matplotlib.axes.Axes", "py:class", "api/_as_gen/matplotlib.axes.Axes.html#$"),
            ("matplotlib.figure.Figure", "py:class", "api/_as_gen/matplotlib.figure.Figure.html#$"),
            ("matplotlib.figure.Figure.subplots", "py:method", "api/_as_gen/matplotlib.figure.Figure.html#$"),
            ("matplotlib.colors.Colormap", "py:class", "api/_as_gen/matplotlib.colors.Colormap.html#$"),
            ("matplotlib.pyplot.subplots", "py:function", "api/_as_gen/matplotlib.pyplot.subplots.html#$"),
        ],
    ),
}


def inventory(project: str, version: str, entries: list[tuple[str, str, str]]) -> bytes:
    """An intersphinx inventory (format version 2) of ``entries``."""
    header = (
        f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    lines = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in sorted(entries))
    return header + zlib.compress(lines.encode())


def main() -> None:
    for project, (version, entries) in ENTRIES.items():
        (HERE / f"{project}.inv").write_bytes(inventory(project, version, entries))
        print(f"wrote {HERE / f'{project}.inv'} ({len(entries)} names)")


if __name__ == "__main__":
    main()
