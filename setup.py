"""Build the optional C accelerators; everything else is declared in pyproject.toml.

The extensions are optional: where no C compiler is available the numpy/Python paths are used
and the output is the same, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "neurodata_cli.datasets._yinyang_walk",
            ["neurodata_cli/datasets/_yinyang_walk.c"],
            # -O3 vectorises MT19937's regeneration. FMA contraction would change the rounding
            # of the reference's float64 expressions.
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        ),
        Extension(
            "neurodata_cli.formats._runs",
            ["neurodata_cli/formats/_runs.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "neurodata_cli.datasets._odg",
            ["neurodata_cli/datasets/_odg.c"],
            # -O3 vectorises the per-row comparison loop.
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
