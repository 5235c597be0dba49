"""Dashboard inputs (query strings and forms) parsed into the API's own request models; a bad
field becomes a FormError naming it, which the page shows (never a 500)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.domain import ID_LEN
from app.schemas import ExperimentIn

EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as the JSON API's path parameter
MAX_K = 100
MAX_HISTORY = 200
ARM_ROWS = 8  # arm rows a form can carry


class FormError(Exception):
    """Bad input: (field, message) pairs; `status` 422, or 400 for a form that is not one."""

    def __init__(self, problems: list[tuple[str, str]], status: int = 422) -> None:
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in problems))
        self.problems, self.status = problems, status


@dataclass(frozen=True)
class CompareInput:
    """What the Compare page was asked."""

    user_id: str | None
    history: tuple[str, ...] | None
    k: int
    models: list[str]


def _clean_id(value: str, field: str) -> str:
    """An id as the API accepts it: 1..256 characters, no NUL."""
    value = value.strip()
    if not value or len(value) > ID_LEN or "\x00" in value:
        raise FormError([(field, f"an id is 1 to {ID_LEN} characters without NUL")])
    return value


def parse_k(text: str | None, default: int = 10) -> int:
    """The list length: a whole number from 1 to MAX_K."""
    if text is None or not text.strip():
        return default
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_K:
        raise FormError([("k", f"a whole number from 1 to {MAX_K}, got {text[:40]!r}")])
    return int(text)


def parse_compare(query: Mapping[str, str], models: list[str]) -> CompareInput | None:
    """The Compare page's question; None when nothing was asked yet."""
    k = parse_k(query.get("k"))
    user = (query.get("user_id") or "").strip()
    typed = (query.get("history") or "").strip()
    if not user and not typed:
        return None
    if user and typed:
        raise FormError([("history", "give a user id or a history, not both")])
    history = None
    if typed:
        parts = [p for p in (x.strip() for x in typed.split(",")) if p]
        if len(parts) > MAX_HISTORY:
            raise FormError([("history", f"at most {MAX_HISTORY} items")])
        history = tuple(_clean_id(p, "history") for p in parts)
    user_id = _clean_id(user, "user_id") if user else None
    return CompareInput(user_id, history, k, models)


def _arm_rows(form: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The filled arm rows of the form (a row with every field empty is left out)."""
    arms = []
    for n in range(ARM_ROWS):
        name, model, weight = (
            str(form.get(f"arm_{part}_{n}", "")).strip() for part in ("name", "model", "weight")
        )
        if name or model or weight:
            arms.append({"name": name, "model": model, "weight": weight or "1"})
    return arms


def _field_of(loc: tuple[Any, ...], arms: list[dict[str, Any]]) -> str:
    """A validation error's location as the form's field ("arm 2 weight")."""
    if len(loc) >= 3 and loc[0] == "arms" and isinstance(loc[1], int):
        return f"arm {loc[1] + 1} {loc[2]}"
    return " ".join(str(part) for part in loc) or "form"


def parse_experiment(form: Mapping[str, Any]) -> tuple[str, ExperimentIn]:
    """The experiment form as (name, the JSON API's body)."""
    name = str(form.get("name", "")).strip()
    if not EXPERIMENT_NAME.match(name):
        raise FormError([("name", "1 to 64 letters, digits, '_', '.' or '-'")])
    arms = _arm_rows(form)
    body: dict[str, Any] = {"arms": arms, "status": str(form.get("status", "running")) or "running"}
    salt = str(form.get("salt", "")).strip()
    if salt:
        body["salt"] = salt
    metric = str(form.get("guardrail_metric", "")).strip()
    if metric:
        body["guardrail"] = {
            "metric": metric,
            "tolerance": str(form.get("guardrail_tolerance", "")).strip() or "0.2",
        }
    try:
        return name, ExperimentIn.model_validate(body, strict=False)
    except ValidationError as error:
        problems = [(_field_of(tuple(e["loc"]), arms), e["msg"]) for e in error.errors()]
        raise FormError(problems) from None


def parse_status(text: str) -> str:
    """A start/stop form's target status."""
    if text not in ("running", "paused", "stopped"):
        raise FormError([("status", "one of running, paused, stopped")])
    return text
