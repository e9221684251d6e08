"""What a sandboxed run can come to: a `CodeResult`, or `SandboxUnavailable` when nothing ran."""

from __future__ import annotations

from dataclasses import dataclass

from s3ft_jax.errors import S3FTError

STATUSES = ("passed", "failed", "timeout", "error", "crashed")
DETAIL_CHARS = 500


class SandboxUnavailable(S3FTError):
    """The machine cannot isolate untrusted code; nothing was run."""


@dataclass(frozen=True)
class CodeResult:
    """`passed` only when every test ran to completion in the trusted harness."""

    passed: bool
    status: str  # one of STATUSES
    detail: str


def short(text: str, limit: int = DETAIL_CHARS) -> str:
    """One line of at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
