"""The optional compiled core (pmaps.kernel._kpage): built when a C compiler and Python's headers are
there, skipped otherwise (optional=True); pmaps then runs its pure Python/numpy path. Everything
else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("pmaps.kernel._kpage", ["src/pmaps/kernel/_kpage.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
