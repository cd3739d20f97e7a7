"""Firmware: the typed ``update-firmware`` command body (one meaning for OCPP 1.6 and
2.0.1 stations) and the firmware rollouts (a set of stations updated in waves)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.params import INT32_MAX

LOCATION_PATTERN = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[\x21-\x7e]+$"


class UpdateFirmwareCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"location": "https://fw.example.com/sim-2.0.0.bin"}]},
    )

    location: str = Field(
        max_length=512,
        pattern=LOCATION_PATTERN,
        description="Where the station downloads the firmware (an absolute URI)",
        examples=["https://fw.example.com/sim-2.0.0.bin"],
    )
    retrieve_date: AwareDatetime | None = Field(
        default=None, description="Download from this time on (default: now)"
    )
    install_date: AwareDatetime | None = Field(
        default=None, description="2.0.1 installDateTime (1.6: not expressible)"
    )
    retries: int | None = Field(default=None, ge=0, le=INT32_MAX)
    retry_interval: int | None = Field(default=None, ge=0, le=INT32_MAX, description="Seconds")
    signing_certificate: str | None = Field(
        default=None, min_length=1, max_length=5500, description="2.0.1 only: PEM X.509"
    )
    signature: str | None = Field(
        default=None, min_length=1, max_length=800, description="2.0.1 only: base64"
    )
