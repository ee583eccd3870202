"""A real llama.cpp `llama-server`, built from source, for tests against a real rerank server.

llama.cpp's source ships inside the `llama-cpp-python` sdist on PyPI.
[`build_llama_server`][qwen_rerank.testing.llama_server.build_llama_server] downloads that
sdist with pip, builds only the `llama-server` target with CMake and a C++ compiler, and keeps
the binary in the per-user cache (`$QWEN_RERANK_CACHE/llama.cpp/VERSION` when set, else
`~/.cache/qwen-rerank/...`), so the 4-40 minute build on a small machine happens once per
version. [`convert_to_gguf`][qwen_rerank.testing.llama_server.convert_to_gguf] turns a
checkpoint into a GGUF with the source tree's `convert_hf_to_gguf.py` (it needs
`sentencepiece`), cached by the checkpoint's hash, and
[`LlamaServer`][qwen_rerank.testing.llama_server.LlamaServer] runs `llama-server --reranking`
on a free loopback port.

Run `python -m qwen_rerank.testing.llama_server` to build it ahead of a test run.

Example:
    <!-- not run by the tests: builds llama-server from source on first use, minutes -->
    ```python
    from qwen_rerank import VLLMReranker
    from qwen_rerank.testing import make_tiny_reranker
    from qwen_rerank.testing.llama_server import LlamaServer, convert_to_gguf

    with LlamaServer(convert_to_gguf(make_tiny_reranker())) as server:
        reranker = VLLMReranker(server.url, api="llamacpp")
        print(reranker.score("what is a panda?", ["The giant panda is a bear."]))
    ```
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from qwen_rerank._paths import user_cache_dir
from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.testing.server_process import ServerProcess

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "LlamaServer",
    "build_llama_server",
    "built_llama_server",
    "convert_to_gguf",
    "llama_cpp_source_dir",
]

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
_CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _root(version: str) -> Path:
    return user_cache_dir() / "llama.cpp" / version


def llama_cpp_source_dir(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """The llama.cpp source tree of `llama-cpp-python==version`, unpacked once into the cache."""
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


def built_llama_server(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path | None:
    """The cached `llama-server` binary of `version`, or `None` when it has not been built."""
    binary = _root(version) / "bin" / "llama-server"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def build_llama_server(version: str = LLAMA_CPP_PYTHON_VERSION, *, jobs: int | None = None) -> Path:
    """The path of a built `llama-server` binary, building it first if the cache has none.

    The build is a CMake Release build with `GGML_NATIVE` (the CPU's own instruction set)
    and OpenMP when the compiler has it, without curl or OpenSSL.

    Raises:
        QwenRerankError: the download or the build failed; the message ends with the tool's output.
    """
    binary = built_llama_server(version)
    if binary is not None:
        return binary
    binary = _root(version) / "bin" / "llama-server"
    src = llama_cpp_source_dir(version)
    build = _root(version) / "build"
    _run(["cmake", "-S", str(src), "-B", str(build), *_CMAKE_FLAGS])
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs or os.cpu_count() or 1)])
    binary.parent.mkdir(parents=True, exist_ok=True)
    staged = binary.with_suffix(".tmp")
    shutil.copy2(build / "bin" / "llama-server", staged)
    staged.replace(binary)
    return binary


def convert_to_gguf(
    model_dir: str | os.PathLike[str],
    *,
    outtype: str = "f32",
    as_reranker: bool = True,
    version: str = LLAMA_CPP_PYTHON_VERSION,
) -> Path:
    """A GGUF of the checkpoint in `model_dir`, converted once and cached by the checkpoint's hash.

    llama.cpp's converter keeps the reranker's rank head (the `yes`/`no` rows of the
    output layer) and its rerank template only when the folder's name contains
    `qwen3-reranker`. The checkpoint is linked into a folder named so (or, with
    `as_reranker=False`, into one that is not, to make the GGUF a user gets from a
    wrongly named folder).

    Args:
        model_dir: A Qwen3-Reranker checkpoint folder (`save_pretrained` layout).
        outtype: The converter's `--outtype`: `f32`, `f16`, `bf16` or `q8_0`.
        as_reranker: Whether the converter may recognise the reranker.
        version: The llama.cpp source to convert with.

    Returns:
        The GGUF's path in the per-user cache.

    Raises:
        QwenRerankError: the converter failed; the message ends with its output.
    """
    model = Path(model_dir)
    key = _checkpoint_hash(model)
    name = f"{'qwen3-reranker' if as_reranker else 'qwen3-plain'}-{key}"
    out = _root(version) / "gguf" / f"{name}-{outtype}.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    src = llama_cpp_source_dir(version)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        staged = Path(tmp) / name
        staged.mkdir()
        for file in model.iterdir():
            if file.is_file():
                (staged / file.name).symlink_to(file.resolve())
        partial = Path(tmp) / out.name
        env = {**os.environ, "PYTHONPATH": str(src / "gguf-py")}
        _run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(staged), "--outtype", outtype,
              "--outfile", str(partial)], env=env)  # fmt: skip
        partial.replace(out)
    return out


def _checkpoint_hash(model: Path) -> str:
    digest = hashlib.sha256()
    for name in _CHECKPOINT_FILES:
        path = model / name
        if not path.is_file():
            raise QwenRerankError(f"{model} has no {name}: pass a folder saved with save_pretrained.")
        digest.update(name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class LlamaServer(ServerProcess):
    """`llama-server -m GGUF --reranking` on 127.0.0.1 and a free port, stopped on exit.

    Args:
        gguf: The model file.
        binary: The `llama-server` to run; `None` builds or finds the cached one.
        ctx: `-c`, the context in tokens that the slots share; `None` keeps the server's.
        ubatch: `-ub`, the physical batch in tokens; `None` keeps the server's.
        threads: `-t`, CPU threads.
        extra: More command-line arguments.
        startup_timeout: Seconds to wait for `/health` to answer `ok`.
    """

    name = "llama-server"
    poll_interval = 0.1

    def __init__(
        self,
        gguf: str | os.PathLike[str],
        *,
        binary: str | os.PathLike[str] | None = None,
        ctx: int | None = None,
        ubatch: int | None = None,
        threads: int = 1,
        extra: Sequence[str] = (),
        startup_timeout: float = 120.0,
    ) -> None:
        self.gguf = Path(gguf)
        self.binary = Path(binary) if binary is not None else build_llama_server()
        self.args = ["-t", str(threads)] + (["-c", str(ctx)] if ctx else [])
        self.args += (["-ub", str(ubatch)] if ubatch else []) + list(extra)
        super().__init__(startup_timeout=startup_timeout)

    def command(self, port: int) -> list[str]:
        return [str(self.binary), "-m", str(self.gguf), "--reranking", "--host", "127.0.0.1",
                "--port", str(port), "--no-webui", *self.args]  # fmt: skip


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise QwenRerankError(f"{cmd[0]} {cmd[1]} failed with exit code {proc.returncode}:\n{tail}")


if __name__ == "__main__":
    print(build_llama_server())
