"""The shapes of the main answers (docs/api.md). Fields the server may add later are not listed; every answer is
the parsed JSON, so `project["strategy"]` works for any field docs/api.md names."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Annotation",
    "ExportFormat",
    "ImportResult",
    "Job",
    "JobStatus",
    "LabelHit",
    "Member",
    "ModelVersion",
    "NextItem",
    "Project",
    "Suggestion",
    "Token",
    "TrainMode",
    "Webhook",
]

ExportFormat = Literal["jsonl", "csv", "labelstudio", "parquet"]
TrainMode = Literal["full", "incremental", "auto"]
JobStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]


class Token(TypedDict):
    token: str
    id: int
    name: str
    prefix: str
    created_at: str
    expires_at: str
    expired: bool


class Project(TypedDict):
    id: int
    name: str
    role: str | None
    label_budget: int | None
    strategy: str
    retrain_every: int
    created_at: str
    archived_at: str | None


class Member(TypedDict):
    username: str
    role: str
    quota: int | None
    spent: NotRequired[int]


class ImportResult(TypedDict):
    documents: int
    annotations: int
    labels_created: int
    notes: NotRequired[list[str]]


class Suggestion(TypedDict):
    label_id: int
    label: str
    description: str
    score: float
    preselected: bool


class NextDocument(TypedDict):
    id: int
    external_id: str
    text: str
    metadata: dict[str, Any]


class NextItem(TypedDict):
    document: NextDocument
    strategy: str | None
    model_version: int | None
    score: float | None
    suggestions: list[Suggestion]
    threshold: float | None
    pretick: dict[str, Any]
    lease_expires_at: str
    lease_seconds: int
    budget: dict[str, Any]


class Annotation(TypedDict):
    id: int
    document: int
    labels: list[str]
    rejected: list[str]
    strategy: str | None
    model_version: int | None
    seconds_spent: float | None
    updated_at: str


class LabelHit(TypedDict):
    id: int
    name: str
    description: str
    frequency: int
    score: float | None
    match: str
    alias: str | None


class Job(TypedDict):
    id: int
    kind: str
    mode: str
    status: JobStatus
    progress: float
    message: str
    error: str
    reason: str
    model_version: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class ModelVersion(TypedDict):
    id: int
    number: int
    is_serving: bool
    created_at: str
    n_annotations: int
    n_labels: int
    metrics: dict[str, Any]
    evaluation: dict[str, Any]
    agreement: Any
    train_seconds: float | None
    device: str
    config: dict[str, Any]


class Webhook(TypedDict):
    id: int
    url: str
    events: list[str]
    active: bool
    secret: str
    created_by: str | None
    created_at: str
