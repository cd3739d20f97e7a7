"""What of an OCPP payload is never kept outside the message itself: the values of
secret-named fields and of configuration entries that name a secret.

:func:`runtime.logs.redact_value` masks values under secret-named keys (``password``,
``token``, ...) and secret patterns inside any text. OCPP also carries secrets as
name/value pairs, where the key is generic and the *name* says what the value is:

* 1.6 ``ChangeConfiguration`` / ``GetConfiguration.conf``: ``{"key": "AuthorizationKey",
  "value": "..."}`` (the security profile 1/2 password of the station);
* 2.0.1 ``SetVariables`` / ``GetVariables`` (and their results): ``{"variable":
  {"name": "BasicAuthPassword"}, "attributeValue": "..."}``.

:func:`redact_ocpp` masks both (the value of an entry whose name is secret-like,
``runtime.logs.is_secret_key``; ``AuthorizationKey`` matches "authorization"), then
applies ``redact_value`` to everything.

>>> redact_ocpp({"key": "AuthorizationKey", "value": "0123456789abcdef"})
{'key': 'AuthorizationKey', 'value': '***'}
>>> redact_ocpp({"setVariableData": [{"attributeValue": "s3cret-s3cret",
...     "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]})
{'setVariableData': [{'attributeValue': '***', 'component': {'name': 'SecurityCtrlr'}, \
'variable': {'name': 'BasicAuthPassword'}}]}
>>> redact_ocpp({"key": "HeartbeatInterval", "value": "300", "idTag": "TAG-1"})
{'key': 'HeartbeatInterval', 'value': '300', 'idTag': 'TAG-1'}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.logs import MASK, is_secret_key, redact_value

# The value fields of a name/value entry (1.6 KeyValue, 2.0.1 SetVariableData et al.).
_VALUE_FIELDS = ("value", "attributeValue")


def _entry_name(entry: Mapping[str, Any]) -> object:
    variable = entry.get("variable")
    if isinstance(variable, Mapping):
        return variable.get("name")
    return entry.get("key")


def _mask_entries(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = {k: _mask_entries(v) for k, v in value.items()}
        name = _entry_name(value)
        if isinstance(name, str) and is_secret_key(name):
            for field in _VALUE_FIELDS:
                if out.get(field) is not None:
                    out[field] = MASK
        return out
    if isinstance(value, list):
        return [_mask_entries(v) for v in value]
    return value


def redact_ocpp(value: Any) -> Any:
    """``value`` (an OCPP payload or answer) with its secrets masked (module doc)."""
    return redact_value(_mask_entries(value))
