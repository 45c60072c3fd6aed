"""Which packages the wheel and sdist hold (pyproject.toml has everything else).

The folders people read and edit stay at the top of the source tree (``templates/``,
``config/``, ``subscribers/``, ``examples/``) and ship inside the package as the data packages
below, so an installed ``digest`` never reads its source tree: ``digest/resources.py`` finds
every file through ``importlib.resources``. Every ``digest.*`` Python package is found by
itself; which files of the data folders ship is pyproject.toml's ``package-data`` (all of
``templates/`` and ``examples/``, so a new template needs no change here).
"""

from setuptools import find_packages, setup

#: package name -> folder of the source tree
DATA_PACKAGES = {
    "digest.templates": "templates",
    "digest.config": "config",
    "digest.subscribers": "subscribers",
    "digest.examples": "examples",
}

setup(
    packages=find_packages(include=["digest", "digest.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
