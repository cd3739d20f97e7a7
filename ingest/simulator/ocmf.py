"""OCMF-like signed meter values of a simulated Eichrecht meter (pure).

The record has OCMF's shape (``OCMF|<payload JSON>|<signature JSON>``, payload fields
FV, GI, GS, PG, MS and one reading in RD: TM, TX ``B``/``E``, RV in kWh, RI, RU, ST),
but the signature is a stand-in -- a BLAKE2b digest of the payload, not ECDSA -- and so
is the public key: the CSMS keeps signed data untouched and never verifies it, so
nothing here needs real keys. 1.6 stations send the record as the SignedData ``value``;
2.0.1 stations base64-encode it into ``signedMeterValue.signedMeterData``.

>>> from datetime import UTC, datetime
>>> record = ocmf_record("SIM-0001", datetime(2026, 1, 5, 10, tzinfo=UTC), 1234567,
...     "Transaction.Begin", page=1)
>>> record.split("|")[0], '"TX":"B"' in record, '"RV":1234.567' in record
('OCMF', True, True)
>>> signed_meter_value("SIM-0001", record)["encodingMethod"]
'OCMF'
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

SIGNING_METHOD = "ECDSA-secp256r1-SHA256"
_TX_CODE = {"Transaction.Begin": "B", "Transaction.End": "E"}


def _ocmf_time(at: datetime) -> str:
    """OCMF's time format: local time with milliseconds and offset, then the clock's
    synchronisation state (``S``: synchronised)."""
    millis = f"{at.microsecond // 1000:03d}"
    return f"{at.strftime('%Y-%m-%dT%H:%M:%S')},{millis}{at.strftime('%z') or '+0000'} S"


def ocmf_record(meter_id: str, at: datetime, register_wh: int, context: str, *, page: int) -> str:
    """The signed record of the register at ``at`` in a reading ``context``; ``page``
    is the meter's running record number (OCMF pagination, ``T<page>``)."""
    payload = {
        "FV": "1.0",
        "GI": "chargeflow simulator",
        "GS": meter_id,
        "PG": f"T{page}",
        "MS": meter_id,
        "RD": [
            {
                "TM": _ocmf_time(at),
                "TX": _TX_CODE.get(context, "T"),
                "RV": register_wh / 1000,  # (shortest repr: exactly the Wh / 1000)
                "RI": "1-b:1.8.0",
                "RU": "kWh",
                "ST": "G",
            }
        ],
    }
    text = json.dumps(payload, separators=(",", ":"))
    digest = hashlib.blake2b(text.encode(), digest_size=32).hexdigest().upper()
    signature = json.dumps({"SA": SIGNING_METHOD, "SD": digest}, separators=(",", ":"))
    return f"OCMF|{text}|{signature}"


def public_key(meter_id: str) -> str:
    """The meter's stand-in public key (base64)."""
    return base64.b64encode(hashlib.blake2b(meter_id.encode(), digest_size=32).digest()).decode()


def signed_meter_value(meter_id: str, record: str) -> dict[str, Any]:
    """A 2.0.1 ``SignedMeterValueType`` of the record."""
    return {
        "signedMeterData": base64.b64encode(record.encode()).decode(),
        "signingMethod": SIGNING_METHOD,
        "encodingMethod": "OCMF",
        "publicKey": public_key(meter_id),
    }
