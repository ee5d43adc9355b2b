# setuptools reads pyproject.toml; this file only adds the cffi modules
# (out-of-line API mode), one build script per native module under native/.
import os
from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
modules = [f"native/{f}:ffibuilder" for f in sorted(os.listdir(os.path.join(here, "native")))
           if f.startswith("build_") and f.endswith(".py")]
setup(cffi_modules=modules)
