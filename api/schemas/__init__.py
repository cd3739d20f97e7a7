"""Response schemas (pydantic v2), one module per resource.

A resource with several shapes follows the Base/Public family: ``<Name>Base`` holds the
fields every shape shares, ``<Name>Public`` is what the API returns (``Create``/``Update``
join them when a resource becomes writable); list responses wrap the public items.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def public_of(model: type[M], record: object) -> M:
    """``model`` with each of its fields read off a store record of the same names."""
    return model.model_validate({name: getattr(record, name) for name in model.model_fields})
