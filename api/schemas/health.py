"""Liveness and readiness reports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LivenessPublic(BaseModel):
    status: Literal["ok"]


class HealthPublic(BaseModel):
    status: Literal["ok"] = Field(
        description="ok: ready to serve (the database answers); else a 503 problem"
    )
    database: str = Field(description='"ok", or the reason the database check failed')
    broker: str = Field(
        description='For information only: "ok", "disabled" (not configured), or the '
        "failure reason. The API serves without the broker."
    )
