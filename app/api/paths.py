"""What a caller without the admin key sees of the models: no filesystem paths (they tell an
outsider the deployment's layout; the checkpoint's version already names it)."""

from __future__ import annotations

import re
from typing import Any

# The directory part of a path in a message ("/var/lib/recsys/models/mf/v1" -> "v1"):
# one or more "name/" segments, with an optional leading "/" or drive.
_DIRECTORIES = re.compile(r"(?:[A-Za-z]:)?[\\/]?(?:[^\s:'\"\\/]+[\\/])+")


def hide_paths(text: str) -> str:
    """`text` with each path cut to its last component."""
    return _DIRECTORIES.sub("", text)


def public_errors(errors: dict[str, str]) -> dict[str, str]:
    """Refused checkpoints and why, without their paths."""
    return {name: hide_paths(reason) for name, reason in errors.items()}


def public_model(described: dict[str, Any]) -> dict[str, Any]:
    """A loaded model's description without its checkpoint path."""
    return {**described, "path": None}
