"""Response schemas (pydantic v2), one module per resource.

A resource with several shapes follows the Base/Public family: ``<Name>Base`` holds the
fields every shape shares, ``<Name>Public`` is what the API returns (``Create``/``Update``
join them when a resource becomes writable); list responses wrap the public items.
"""
