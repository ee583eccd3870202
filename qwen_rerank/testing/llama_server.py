"""A real llama.cpp ``llama-server``, built from source, for tests against a real rerank server.

llama.cpp's source ships inside the ``llama-cpp-python`` sdist on PyPI. :func:`build_llama_server`
downloads that sdist with pip, builds only the ``llama-server`` target with CMake and a C++
compiler, and keeps the binary in the per-user cache, so the 10-40 minute build on a small
machine happens once per version. :func:`llama_cpp_source_dir` gives the source tree, whose
``convert_hf_to_gguf.py`` turns a checkpoint into a GGUF (it needs ``sentencepiece``).

Run ``python -m qwen_rerank.testing.llama_server`` to build it ahead of a test run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from qwen_rerank._paths import user_cache_dir
from qwen_rerank.exceptions import QwenRerankError

__all__ = ["LLAMA_CPP_PYTHON_VERSION", "build_llama_server", "llama_cpp_source_dir"]

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
_CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DGGML_NATIVE=ON",
]


def _root(version: str) -> Path:
    return user_cache_dir() / "llama.cpp" / version


def llama_cpp_source_dir(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """The llama.cpp source tree of ``llama-cpp-python==version``, unpacked once into the cache."""
    src = _root(version) / "src"
    if (src / "CMakeLists.txt").is_file():
        return src
    _root(version).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=_root(version)) as tmp:
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
              f"llama-cpp-python=={version}", "-d", tmp])  # fmt: skip
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
            tar.extractall(tmp, members=members, filter="data")
        tree = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        shutil.rmtree(src, ignore_errors=True)
        tree.rename(src)
    return src


def build_llama_server(version: str = LLAMA_CPP_PYTHON_VERSION, *, jobs: int | None = None) -> Path:
    """The path of a built ``llama-server`` binary, building it first if the cache has none.

    Raises:
        QwenRerankError: the download or the build failed; the message ends with the tool's output.
    """
    binary = _root(version) / "bin" / "llama-server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    src = llama_cpp_source_dir(version)
    build = _root(version) / "build"
    _run(["cmake", "-S", str(src), "-B", str(build), *_CMAKE_FLAGS])
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 1)])
    binary.parent.mkdir(parents=True, exist_ok=True)
    staged = binary.with_suffix(".tmp")
    shutil.copy2(build / "bin" / "llama-server", staged)
    staged.replace(binary)
    return binary


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise QwenRerankError(f"{cmd[0]} {cmd[1]} failed with exit code {proc.returncode}:\n{tail}")


if __name__ == "__main__":
    print(build_llama_server())
