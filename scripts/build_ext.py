"""Build the OTLP door's compiled reader (ingestion/otlp/_wire.pyx) in place: `make ext`.

The extension embeds the SHA-256 of the .pyx it was built from (SOURCE_HASH, through the
generated _wire_hash.pxi), so ingestion.otlp.reader and tests/test_otlp_wire.py can tell a
build of another version of the file from a current one.
"""

import hashlib
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "ingestion" / "otlp" / "_wire.pyx"


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def main() -> None:
    (SOURCE.parent / "_wire_hash.pxi").write_text(f'SOURCE_HASH = "{source_hash()}"\n')
    build = ROOT / "var" / "build"
    extension = Extension("ingestion.otlp._wire", [str(SOURCE.relative_to(ROOT))],
                          extra_compile_args=["-O2"])
    setup(name="llmops-otlp-wire", packages=[], py_modules=[],
          script_args=["-q", "build_ext", "--inplace", "--build-temp", str(build),
                       "--build-lib", str(build / "lib")],
          ext_modules=cythonize([extension], quiet=True, build_dir=str(build),
                                compiler_directives={"language_level": 3}))


if __name__ == "__main__":
    sys.exit(main())
