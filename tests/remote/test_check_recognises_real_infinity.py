"""`check` recognises a real Infinity server from its model cards, and names its api when another is given."""

from __future__ import annotations

from qwen_rerank.tools.diagnose import run_checks

# The real Infinity server of the session, started by the fixtures of its own tests.
from tests.remote.test_tei_real_infinity_server import infinity_url, seq_cls_path  # noqa: F401


def test_infinity_is_recognised_and_spoken_to_with_its_api(infinity_url: str) -> None:  # noqa: F811
    findings = {f.name: f for f in run_checks(infinity_url, api="infinity", max_length=512)}
    server = findings["server"]
    assert server.status == "ok" and server.data["name"] == "infinity" and "Infinity" in server.message


def test_infinity_reached_as_vllm_is_told_to_use_api_infinity(infinity_url: str) -> None:  # noqa: F811
    (reachable,) = run_checks(infinity_url, api="vllm", max_length=512)
    assert reachable.status == "FAIL" and reachable.fix is not None
    assert "--api infinity" in reachable.fix and "GGUF" not in reachable.fix
