"""A real vLLM server on the CPU, built from its sdist, for tests against the server users deploy.

[`build_vllm`][qwen_rerank.testing.vllm_server.build_vllm] downloads vLLM's sdist from PyPI,
patches it so that it builds for the CPU with this machine's compiler and a CUDA build of torch,
builds a wheel and installs it into a virtual environment of its own in the per-user cache
(`$QWEN_RERANK_CACHE/vllm/VERSION/venv`), so the 40-minute build on a 2-core machine happens
once per version. [`VLLMServer`][qwen_rerank.testing.vllm_server.VLLMServer] runs
`vllm serve` with the model card's overrides on a free loopback port.

Run `python -m qwen_rerank.testing.vllm_server` to build it ahead of a test run.

The patches, each applied to the pristine sdist and checked to apply exactly once:

- torch: PyPI has no `torch==2.14.0+cpu`, so the CUDA build is used on the CPU, with the
  CUDA parts of its CMake config (`Caffe2Config`, `TorchConfig`, `Caffe2Targets`) switched off.
- `requirements/cpu.txt`: `torch==2.14.0`, `torchvision==0.29.0` (its pair), no triton-cpu
  (a GitHub URL), torchaudio or torchcodec. Without Triton vLLM uses its older model runner.
- `cmake/cpu_extension.cmake`: gcc 12.2 (Debian 12) is accepted where 12.3 is demanded.
- `csrc/cpu/sgl-kernels/flash_mla.cpp`: a `static constexpr` that gcc 12.2 crashes on otherwise.
- `setup.py`: only the CPU extension this machine loads (`_C` with AVX512-BF16, `_C_AVX512`,
  or `_C_AVX2`) is built, which saves 10-15 minutes.
- oneDNN v3.13, which CMake would clone from GitHub, comes from a local source tree or tarball:
  `onednn_source=` or `$QWEN_RERANK_ONEDNN_SOURCE`. A machine with internet access needs none.

It also needs `libnuma-dev`, CMake's `ninja` and a C++ compiler (gcc 12.2 or newer).

Example:
    <!-- not run by the tests: builds vLLM from its sdist on first use, about 40 minutes -->
    ```python
    from qwen_rerank import VLLMReranker
    from qwen_rerank.testing import make_tiny_reranker
    from qwen_rerank.testing.vllm_server import VLLMServer

    with VLLMServer(make_tiny_reranker(head_dim=32)) as server:
        reranker = VLLMReranker(server.url, template="client")
        print(reranker.score("what is a panda?", ["The giant panda is a bear."]))
    ```
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from qwen_rerank._paths import user_cache_dir
from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.testing.server_process import ServerProcess

__all__ = [
    "ONEDNN_SOURCE_ENV",
    "VLLM_VERSION",
    "VLLMServer",
    "build_vllm",
    "built_vllm",
    "vllm_chat_template",
]

VLLM_VERSION = "0.33.0"
ONEDNN_SOURCE_ENV = "QWEN_RERANK_ONEDNN_SOURCE"
_SDIST_SHA256 = {"0.33.0": "f4c33c2503d52bb411146afa9618a4f48bed68912f617e6803ac8d76e4c74112"}
_TORCH = "torch==2.14.0"
_BUILD_REQUIRES = [
    "cmake>=3.26.1",
    "ninja",
    "packaging>=24.2",
    "setuptools>=77.0.3,<81.0.0",
    "setuptools-scm>=8.0",
    "setuptools-rust>=1.9.0",
    "wheel",
    "jinja2",
]
_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
_TEMPLATE = "examples/pooling/score/template/qwen3_reranker.jinja"


def _root(version: str) -> Path:
    return user_cache_dir() / "vllm" / version


def _cpu_extension() -> str:
    """The vLLM CPU extension this machine loads (vllm/platforms/cpu.py picks it the same way)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if "avx512f" in flags:
        return "_C" if "avx512_bf16" in flags else "_C_AVX512"
    return "_C_AVX2"


def built_vllm(version: str = VLLM_VERSION) -> Path | None:
    """The Python of the cached vLLM venv, or `None` when it was not built for this CPU."""
    marker = _root(version) / "venv" / "qwen-rerank-built.json"
    try:
        built = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if built.get("extension") != _cpu_extension():
        return None
    python = _root(version) / "venv" / "bin" / "python"
    return python if python.is_file() else None


def build_vllm(
    version: str = VLLM_VERSION,
    *,
    onednn_source: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
) -> Path:
    """The Python of a venv with vLLM built for this CPU, building it first if the cache has none.

    Args:
        version: The vLLM release whose sdist is built.
        onednn_source: oneDNN v3.13's source, a folder or a `.tar.gz`; defaults to
            `$QWEN_RERANK_ONEDNN_SOURCE`, else CMake clones it from GitHub.
        jobs: Parallel compile jobs; defaults to the CPU count.

    Raises:
        QwenRerankError: a download, a patch or the build failed; the message ends with the
            tool's output, and the whole build log stays in the cache as `build.log`.
    """
    python = built_vllm(version)
    if python is not None:
        return python
    root = _root(version)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    started = time.monotonic()
    venv = root / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)], log)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", _TORCH, *_BUILD_REQUIRES], log)
    _patch_torch_cmake(python)
    src = _unpacked_sdist(root, version)
    extension = _cpu_extension()
    _patch_sdist(src, extension)
    env = _build_env(root, onednn_source, jobs)
    dist = root / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _run([str(python), "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", str(dist), "."],
         log, cwd=src, env=env)  # fmt: skip
    wheel = next(dist.glob("vllm-*.whl"))
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], log, cwd=src)
    marker = {"version": version, "extension": extension, "seconds": round(time.monotonic() - started)}
    (venv / "qwen-rerank-built.json").write_text(json.dumps(marker))
    return python


def vllm_chat_template(version: str = VLLM_VERSION) -> Path:
    """The reranker chat template vLLM ships (`qwen3_reranker.jinja`), from the built sdist."""
    path = _root(version) / "src" / _TEMPLATE
    if not path.is_file():
        raise QwenRerankError(f"{path} is missing: build vLLM first with build_vllm().")
    return path


def _unpacked_sdist(root: Path, version: str) -> Path:
    sdist = root / f"vllm-{version}.tar.gz"
    if not sdist.is_file() or _sha256(sdist) != _SDIST_SHA256.get(version):
        _download_sdist(version, sdist)
    src = root / "src"
    shutil.rmtree(src, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (Path(tmp) / f"vllm-{version}").rename(src)
    return src


def _download_sdist(version: str, target: Path) -> None:
    # pip download --no-binary fails at vLLM's metadata step, so the file comes from the index.
    index = httpx.get(
        "https://pypi.org/simple/vllm/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=60,
        follow_redirects=True,
    )
    index.raise_for_status()
    name = f"vllm-{version}.tar.gz"
    url = next((f["url"] for f in index.json()["files"] if f["filename"] == name), None)
    if url is None:
        raise QwenRerankError(f"PyPI has no {name}.")
    partial = target.with_suffix(".part")
    with httpx.stream("GET", url, timeout=600, follow_redirects=True) as response, partial.open("wb") as f:
        response.raise_for_status()
        for block in response.iter_bytes():
            f.write(block)
    expected = _SDIST_SHA256.get(version)
    if expected is not None and _sha256(partial) != expected:
        raise QwenRerankError(f"{name} does not have the expected SHA-256 {expected}.")
    partial.replace(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _patch(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise QwenRerankError(f"cannot patch {path}: {old!r} occurs {text.count(old)} times, not once.")
    path.write_text(text.replace(old, new))


def _patch_torch_cmake(python: Path) -> None:
    out = subprocess.run([str(python), "-c", "import torch, os; print(os.path.dirname(torch.__file__))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    cmake = Path(out.stdout.strip()) / "share" / "cmake"
    _patch(cmake / "Caffe2" / "Caffe2Config.cmake",
           "if(1)\n  # The file public/cuda.cmake", "if(0)\n  # The file public/cuda.cmake")  # fmt: skip
    _patch(cmake / "Torch" / "TorchConfig.cmake",
           "if(1)\n  if(MSVC)\n    find_library(CAFFE2_NVRTC_LIBRARY",
           "if(0)\n  if(MSVC)\n    find_library(CAFFE2_NVRTC_LIBRARY")  # fmt: skip
    _patch(cmake / "Caffe2" / "Caffe2Targets.cmake",
           'INTERFACE_LINK_LIBRARIES "torch_cpu_library;torch_cuda_library"',
           'INTERFACE_LINK_LIBRARIES "torch_cpu_library"')  # fmt: skip


def _patch_sdist(src: Path, extension: str) -> None:
    requirements = src / "requirements" / "cpu.txt"
    kept = []
    for line in requirements.read_text().splitlines():
        name = line.split(";")[0].strip()
        if name.startswith(("triton @", "torchaudio", "torchcodec")):
            continue
        if name.startswith("torch==2.14.0+cpu"):
            line = "torch==2.14.0"
        elif name.startswith("torchvision"):
            line = "torchvision==0.29.0"
        kept.append(line)
    requirements.write_text("\n".join(kept) + "\n")
    gcc = "CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL"
    _patch(src / "cmake" / "cpu_extension.cmake", f"{gcc} 12.3", f"{gcc} 12.2")
    _patch(src / "csrc" / "cpu" / "sgl-kernels" / "flash_mla.cpp",
           "  constexpr int64_t kBLOCK_H_MAX = 16;\n  const int64_t BLOCK_H",
           "  static constexpr int64_t kBLOCK_H_MAX = 16;\n  const int64_t BLOCK_H")  # fmt: skip
    every = "".join(f'        ext_modules.append(CMakeExtension(name="vllm.{name}"))\n'
                    for name in ("_C", "_C_AVX512", "_C_AVX2"))  # fmt: skip
    _patch(src / "setup.py", every, f'        ext_modules.append(CMakeExtension(name="vllm.{extension}"))\n')


def _build_env(root: Path, onednn_source: str | os.PathLike[str] | None, jobs: int | None) -> dict[str, str]:
    env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "MAX_JOBS": str(jobs or os.cpu_count() or 1),
        "CMAKE_BUILD_TYPE": "Release",
        "CMAKE_ARGS": "-DCMAKE_DISABLE_FIND_PACKAGE_CUDA=ON",
        # The venv's CMake (vLLM needs 3.26 or newer) and ninja come first.
        "PATH": f"{root / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    onednn = onednn_source or os.environ.get(ONEDNN_SOURCE_ENV)
    if onednn:
        env["FETCHCONTENT_SOURCE_DIR_ONEDNN"] = str(_onednn_tree(root, Path(onednn)))
    return env


def _onednn_tree(root: Path, source: Path) -> Path:
    if source.is_dir():
        return source
    tree = root / "onednn"
    if not (tree / "CMakeLists.txt").is_file():
        shutil.rmtree(tree, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            with tarfile.open(source) as tar:
                tar.extractall(tmp, filter="data")
            top = next(p for p in Path(tmp).iterdir() if (p / "CMakeLists.txt").is_file())
            top.rename(tree)
    return tree


class VLLMServer(ServerProcess):
    """`vllm serve MODEL` as a Qwen3-Reranker on 127.0.0.1 and a free port, stopped on exit.

    The server gets the model card's `--hf-overrides` (a sequence classifier over the `no` and
    `yes` rows of the LM head), `--runner pooling`, float32 and `VLLM_CPU_KVCACHE_SPACE=1`.

    Args:
        model: A checkpoint folder. vLLM's CPU attention needs a head_dim of 32 or more
            (`make_tiny_reranker(head_dim=32)`).
        chat_template: `True` for the template vLLM ships (`qwen3_reranker.jinja`), a path for
            another, `False` for none.
        overrides: `False` to start without `--hf-overrides`, as a misconfigured server would.
        max_model_len: `--max-model-len`.
        extra_args: More command-line arguments.
        python: The venv's Python; `None` builds or finds the cached one.
        startup_timeout: Seconds to wait for `/health`.
    """

    name = "vllm-server"
    stop_grace = 20.0
    poll_interval = 0.5

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        chat_template: bool | str | os.PathLike[str] = False,
        overrides: bool = True,
        max_model_len: int = 512,
        extra_args: Sequence[str] = (),
        python: str | os.PathLike[str] | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        self.model = Path(model)
        self.python = Path(python) if python is not None else build_vllm()
        args = ["--runner", "pooling", "--dtype", "float32", "--max-model-len", str(max_model_len)]
        if overrides:
            args += ["--hf-overrides", json.dumps(_OVERRIDES)]
        if chat_template is True:
            args += ["--chat-template", str(vllm_chat_template())]
        elif chat_template:
            args += ["--chat-template", str(chat_template)]
        self.args = args + list(extra_args)
        super().__init__(startup_timeout=startup_timeout)

    def command(self, port: int) -> list[str]:
        return [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
                "--host", "127.0.0.1", "--port", str(port), *self.args]  # fmt: skip

    def environment(self, tmp: str) -> dict[str, str]:
        # vLLM puts its IPC sockets and dist-init files in the temporary folder: one of its own.
        settings = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
        return {**os.environ, **settings, "TMPDIR": tmp}


def _run(cmd: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, cwd=cwd, env=env)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise QwenRerankError(
            f"{cmd[0]} {cmd[1]} failed with exit code {proc.returncode} (log: {log}):\n{tail}"
        )


if __name__ == "__main__":
    print(build_vllm())
