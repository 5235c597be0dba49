"""Experiments as the request path sees them: immutable states, held in memory per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import repo
from app.db.tables import Experiment
from app.domain import as_utc
from app.experiments.routing import Arm


@dataclass(frozen=True)
class ExperimentState:
    """An experiment as the request path needs it."""

    name: str
    arms: tuple[Arm, ...]
    salt: str
    status: str
    updated_at: datetime | None = None
    started_at: datetime | None = None
    guardrail: dict[str, Any] | None = None  # {"metric", "tolerance"}; None: the settings'

    def arms_json(self) -> list[dict[str, Any]]:
        """The arms as stored and answered."""
        return [{"name": a.name, "model": a.model, "weight": a.weight} for a in self.arms]

    def to_json(self) -> dict[str, Any]:
        """The API shape."""
        return {
            "name": self.name,
            "arms": self.arms_json(),
            "salt": self.salt,
            "status": self.status,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "guardrail": self.guardrail,
        }

    @classmethod
    def of(cls, row: Experiment) -> ExperimentState:
        """The state of a stored row."""
        arms = tuple(Arm(a["name"], a["model"], float(a["weight"])) for a in row.arms["arms"])
        updated = None if row.updated_at is None else as_utc(row.updated_at)  # SQLite: naive
        started = None if row.started_at is None else as_utc(row.started_at)
        return cls(row.name, arms, row.salt, row.status, updated, started, row.guardrail)


@dataclass
class ExperimentBook:
    """Experiments held in memory so that assignment costs no database round trip."""

    experiments: dict[str, ExperimentState] = field(default_factory=dict)

    def running(self, name: str) -> ExperimentState | None:
        """The experiment if it is running."""
        state = self.experiments.get(name)
        return state if state is not None and state.status == "running" else None

    def put(self, state: ExperimentState) -> None:
        """Apply a change at once in this process."""
        self.experiments = {**self.experiments, state.name: state}

    async def refresh(self, session: AsyncSession) -> None:
        """Reload every experiment (other replicas' changes arrive this way)."""
        rows = await repo.all_experiments(session=session)
        self.experiments = {row.name: ExperimentState.of(row) for row in rows}
