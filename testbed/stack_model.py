"""The base of every stack-file model (unknown keys refused, values frozen) and the names the models share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

CONFIG_NAMESPACE = "testbed"  # every stack-file key lives under it: testbed:tenants, testbed:prices, ...
SLUG = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
LOCAL_POOL = "local"  # the price pool of the embedded local testbed (its CPUs and logical GPUs)


class StackModel(BaseModel):
    """A part of a stack file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
