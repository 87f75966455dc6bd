"""What every API schema shares: unknown fields are refused, and the answer languages."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Lang = Literal["fi", "sv", "en"]


class ApiModel(BaseModel):
    """Base of request and response models: an unknown field is a 422 naming it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")
