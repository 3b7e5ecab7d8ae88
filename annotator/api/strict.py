"""PATCH bodies are checked by name: a key the endpoint does not let you change is a 400 naming it, never ignored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictPatchMixin:
    """For serializers used with `partial=True` (PATCH): unknown keys and read-only fields are refused (400) with
    the field's name, instead of DRF's default of dropping them silently. Put it before the serializer base class."""

    def to_internal_value(self, data: Any) -> Any:
        if getattr(self, "partial", False) and isinstance(data, Mapping):
            fields = self.fields
            writable = sorted(name for name, field in fields.items() if not field.read_only)
            errors: dict[str, list[str]] = {}
            for key in data:
                if key not in fields:
                    errors[str(key)] = [f"unknown field; the fields you can change are: {', '.join(writable)}"]
                elif fields[key].read_only:
                    errors[str(key)] = ["read-only: it cannot be changed"]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
