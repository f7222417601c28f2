"""The packages of the wheel; everything else is in pyproject.toml.

Each vendor's function directory is a subpackage of `auditlake_vendors` (functions/), found here so that adding a
vendor touches no packaging file: a directory `functions/<vendor>/` with its `<vendor>_collector.py`. Its Lambda
entry point (`<vendor>_lambda.py`) stays out of the wheel: it imports Powertools and the adapter as Lambda lays
them out, which the command line needs neither of.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FUNCTIONS = Path(__file__).parent / "functions"
VENDOR_PACKAGES = sorted(f"auditlake_vendors.{d.name}" for d in FUNCTIONS.iterdir()
                         if (d / f"{d.name}_collector.py").is_file())


class WithoutLambdaEntryPoints(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package in VENDOR_PACKAGES and m[1].endswith("_lambda"))]


setup(packages=["auditlake", "auditlake_vendors", *VENDOR_PACKAGES, "auditlake_cli", "auditlake_cli.commands"],
      cmdclass={"build_py": WithoutLambdaEntryPoints})
