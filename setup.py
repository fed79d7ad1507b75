"""Build the optional C accelerators; everything else is declared in pyproject.toml.

The extensions are optional: where no C compiler is available the numpy/Python paths are used
and the output is the same, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "neurodata_cli.datasets.yinyang._walk",
            ["neurodata_cli/datasets/yinyang/_walk.c"],
            # FMA contraction would change the rounding of the reference's float64 expressions.
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        ),
        Extension(
            "neurodata_cli.datasets.es_imagenet._odg",
            ["neurodata_cli/datasets/es_imagenet/_odg.c"],
            # -O3 vectorises the per-row comparison loop.
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
