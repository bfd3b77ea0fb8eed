"""Build step: copy the top-level `migrations/` and `flows/` into the wheel as `gateway/_shipped/`.

They stay at the top of the repository (they are part of the product's shape, edited by people who
never open `gateway/`); `gateway.infra.assets` finds them in either place. All metadata is in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {"migrations": ("*.sql",), "flows": ("*.yaml", "*.md")}


class BuildWithAssets(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's own directories
            return
        for name, patterns in SHIPPED.items():
            source = HERE / name
            target = Path(self.build_lib) / "gateway" / "_shipped" / name
            if target.exists():
                shutil.rmtree(target)
            for pattern in patterns:
                for path in source.rglob(pattern):
                    dest = target / path.relative_to(source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest)


setup(cmdclass={"build_py": BuildWithAssets})
