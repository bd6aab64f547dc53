"""Build the C compressed_segmentation codec, the raw file paster and the point reader; everything else is declared in pyproject.toml.

``optional=True``: where no C compiler exists the install still succeeds, and
``cloudvolume_lite.codecs.cseg`` decodes with its exact numpy fallback instead (much slower;
it warns once per process, and ``cvl info`` / ``cvl demo`` name the decoder in use).

``pip install -e .`` puts the built ``_cseg*.so`` next to ``_cseg.c`` (gitignored). Keeping it
out of the source tree was tried and rejected: setuptools' ``editable_mode=strict`` link tree
symlinks to that same in-tree file, and a strict install that built only into ``build/`` would
miss modules added after installing and leave ``python -m pytest`` or ``python -c`` run from
the checkout (which import the source tree first) without the extension.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("cloudvolume_lite._cseg", ["cloudvolume_lite/_cseg.c"], optional=True, extra_compile_args=["-O3"]),
    # raw chunk files read and pasted without the GIL; without it the same reads run in Python
    Extension("cloudvolume_lite._rawio", ["cloudvolume_lite/_rawio.c"], optional=True, extra_compile_args=["-O3"]),
    # scattered points read from chunk files with pread, without the GIL; without it the store's path
    Extension("cloudvolume_lite._pointio", ["cloudvolume_lite/_pointio.c"], optional=True, extra_compile_args=["-O3"]),
])
