"""Build the optional C decoder; everything else is declared in pyproject.toml.

``optional=True``: where no C compiler exists the install still succeeds and the pure-Python
path (the compressed-segmentation package) is used instead.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("cloudvolume_lite._cseg", ["cloudvolume_lite/_cseg.c"], optional=True,
                             extra_compile_args=["-O3"])])
