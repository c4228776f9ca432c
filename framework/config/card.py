"""``card``: the human fields of the model card. Left empty, they are listed as to-do."""

from __future__ import annotations

from pydantic import Field

from framework.config.base import StrictModel


class CardConfig(StrictModel):
    """What only people can say about a model; the card never invents these."""

    intended_use: str | None = Field(None, description="What the model is for, and for whom.")
    out_of_scope: str | None = Field(None, description="Uses the model is not fit for.")
    limitations: str | None = Field(None, description="Known limits, biases and risks.")
    owners: list[str] = Field(default_factory=list, description="People or teams who own it.")
    license: str | None = Field(None, description="License id, e.g. apache-2.0 or other.")
    tags: list[str] = Field(default_factory=list, description="Extra tags for the card.")
    contact: str | None = Field(None, description="Where to report a problem.")
