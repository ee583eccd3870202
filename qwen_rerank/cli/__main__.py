"""`python -m qwen_rerank.cli` runs the `qwen-rerank` command."""

from __future__ import annotations

import sys

from qwen_rerank.cli import main

sys.exit(main())
