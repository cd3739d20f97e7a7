"""Settings: one pydantic-settings model per process, composed from the parts below.

Every process reads its settings the same way: ``CHARGEFLOW_*`` environment variables,
then a ``.env`` file in the working directory (the environment wins), then the
defaults. ``Model.load()`` reads them and turns a validation error into one
:class:`SettingsError` line naming the variable.

Layout:

* the shared parts live here (:class:`KafkaSettings`, :class:`DatabaseSettings`,
  :class:`TopicSettings`, :class:`LoggingSettings`, :class:`MqttSettings`); a process
  model inherits the parts it needs;
* each process's model lives next to its process (``ingest/gateway/settings.py``,
  ``api/settings.py``, ``ingest/meters/settings.py``, ``flows/settings.py``,
  ``ingest/simulator/settings.py``, ``store/aggregates.py``; the launcher/CLI's in
  ``chargeflow/settings.py``);
* a process whose component takes a config dataclass (``GatewayConfig``, ``ApiConfig``,
  ``BridgeConfig``, ``FlowConfig``...) declares ``__component__ =
  ComponentFields(TheConfig, prefix="gateway_")``: every field of that dataclass becomes
  a setting ``CHARGEFLOW_<PREFIX><FIELD>`` (type and default from the dataclass, the
  description from the comment above the field or at the end of its line) and
  ``ComponentFields.build`` makes the dataclass from them. Nothing is copied by hand.

How to add a setting:

* a tunable of a component: add the field (with a default and a comment saying what it
  does) to its config dataclass, e.g. ``ingest/gateway/config.py``. That is all; it is
  ``CHARGEFLOW_GATEWAY_<FIELD>`` from then on;
* a setting only the process uses (a listen port, say): a field with
  ``Field(default, description=...)`` on the process model;
* something several processes share: a field on a part here;
* a secret: type it ``SecretStr`` (never printed by ``repr``, logs or the docs' defaults).

Every setting can also come from a file: ``CHARGEFLOW_<NAME>_FILE=/run/secrets/x`` reads
the value of ``CHARGEFLOW_<NAME>`` from that file (one trailing newline dropped; JSON
for list and object settings), the convention of Docker and Kubernetes secrets.
Setting both is an error, as is a file that cannot be read.

Then run ``python -m chargeflow.settings_doc`` to regenerate docs/configuration.md (a
test fails while it is out of date).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
import textwrap
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import BeforeValidator, Field, SecretStr, ValidationError

# The metaclass of every pydantic model: the one hook that runs before pydantic collects
# a class's fields (tests/unit/test_settings.py fails if it moves).
from pydantic._internal._model_construction import ModelMetaclass
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from runtime.logs import is_secret_key, redact_text

ENV_PREFIX = "CHARGEFLOW_"


def off_is_none(value: object) -> object:
    """An empty, ``off`` or ``none`` setting means "not set" (an endpoint switched off).

    >>> off_is_none(" Off "), off_is_none(""), off_is_none("9110")
    (None, None, '9110')
    """
    if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
        return None
    return value


# A listen port that can be switched off: unset, empty or "off" = None; 0 = a free port.
OptionalPort = Annotated[Annotated[int, Field(ge=0, le=65535)] | None, BeforeValidator(off_is_none)]


class SettingsError(ValueError):
    """A setting has a bad value or a required one is missing (one line, no secret)."""


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


FILE_SUFFIX = "_FILE"


def file_variable(field_name: str) -> str:
    """The variable naming a file that holds the setting (Docker/Kubernetes secrets).

    >>> file_variable("database_url")
    'CHARGEFLOW_DATABASE_URL_FILE'
    """
    return env_name(field_name) + FILE_SUFFIX


def read_setting_file(variable: str, path: str) -> str:
    """The text of a setting's file without its final line break (``echo x > file``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SettingsError(f"{variable}: cannot read {path}: {reason}") from None
    return text.removesuffix("\n").removesuffix("\r")


class FileVariablesSource(PydanticBaseSettingsSource):
    """``CHARGEFLOW_<NAME>_FILE``: the setting read from the file it names."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(settings_cls)
        self._environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            variable = file_variable(name)
            path = self._environ.get(variable)
            if not path:
                continue
            if self._environ.get(env_name(name)):
                raise SettingsError(f"{env_name(name)} and {variable} are both set; set one")
            text = read_setting_file(variable, path)
            if self.field_is_complex(info):
                try:
                    values[name] = json.loads(text)
                except ValueError:
                    raise SettingsError(f"{variable}: the file is not valid JSON") from None
            else:
                values[name] = text
        return values


def one_line(error: ValidationError) -> str:
    """``CHARGEFLOW_<NAME>: what is wrong (got ...)`` for each error, joined by ``; ``.

    Inputs of secret fields are never echoed."""
    parts = []
    for item in error.errors(include_url=False):
        loc = item.get("loc") or ()
        name = env_name(str(loc[0])) if loc else "settings"
        # Inside a list or object setting: the path, e.g. ``...ENDPOINTS[0].secret``.
        name += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        message = item.get("msg", "invalid")
        value = item.get("input")
        hidden = isinstance(value, (dict, list, SecretStr)) or value is None
        shown = (
            ""
            if hidden or any(is_secret_key(p) for p in loc if isinstance(p, str))
            else (f" (got {redact_text(str(value)[:60])!r})")
        )
        parts.append(f"{name}: {message}{shown}")
    return "; ".join(parts)


# ------------------------------------------------------------- component fields


def field_comments(cls: type) -> dict[str, str]:
    """The comment documenting each field of a class body: the comment at the end of
    its line, else the comment lines right above it (unless they open a section with
    ``# ---``)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        own = lines[node.end_lineno - 1] if node.end_lineno else ""
        text = ""
        if "#" in own:
            text = own.split("#", 1)[1].strip()
        else:
            above: list[str] = []
            n = node.lineno - 2
            while n >= 0 and lines[n].strip().startswith("#"):
                above.insert(0, lines[n].strip().lstrip("#").strip())
                n -= 1
            # A block opening with a ruler (``# --- topic``) introduces a group of
            # fields, not this one.
            text = "" if above and above[0].startswith("---") else " ".join(above)
        docs[node.target.id] = text
    return docs


@dataclass(frozen=True)
class ComponentFields:
    """The settings that make a component's config dataclass (see the module docstring).

    ``prefix``: settings are named ``prefix + field`` (a field already starting with
    the prefix keeps its name); ``names``: other names for some fields (to keep an
    established variable); ``defaults``: the process's default where the dataclass's
    (meant for tests and library use) differs; ``shared``: fields the process fills from
    its shared parts when building (Kafka, database, topics...), not settings of their
    own; ``exclude``: fields that are not settings at all (wiring). A field declared with
    ``repr=False`` is a secret: its setting is a ``SecretStr``.
    """

    component: type
    prefix: str
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    shared: Iterable[str] = ()
    exclude: Iterable[str] = ()

    def setting_name(self, field_name: str) -> str:
        if field_name in self.names:
            return self.names[field_name]
        if field_name.startswith(self.prefix):
            return field_name
        return self.prefix + field_name

    def settings_fields(self) -> dict[str, tuple[Any, FieldInfo]]:
        hints = typing.get_type_hints(self.component, include_extras=True)
        docs = field_comments(self.component)
        skip = set(self.shared) | set(self.exclude)
        out: dict[str, tuple[Any, FieldInfo]] = {}
        for f in dataclasses.fields(self.component):
            if f.name in skip or not f.init:
                continue
            annotation: Any = hints[f.name]
            if not f.repr:  # a secret (e.g. a key): never printed by the settings either
                annotation = SecretStr | None if f.default is None else SecretStr
            description = docs.get(f.name) or None
            if f.name in self.defaults:
                info = Field(self.defaults[f.name], description=description)
            elif f.default is not MISSING:
                info = Field(f.default, description=description)
            else:  # computed when built (default_factory): unset = the component decides
                annotation = annotation | None
                info = Field(None, description=description)
            out[self.setting_name(f.name)] = (annotation, info)
        return out

    def build(self, settings: BaseSettings, **shared: Any) -> Any:
        skip = set(self.shared) | set(self.exclude)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self.component):
            if f.name in skip or not f.init:
                continue
            value = getattr(settings, self.setting_name(f.name))
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is None and f.default is MISSING:
                continue  # its default_factory
            values[f.name] = value
        return self.component(**values, **shared)


class _ComposedSettingsMeta(ModelMetaclass):
    """Adds the fields of ``__component__`` (a :class:`ComponentFields`) to the model."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> type:
        spec = namespace.get("__component__")
        if isinstance(spec, ComponentFields):
            annotations = dict(namespace.get("__annotations__", {}))
            for field_name, (annotation, info) in spec.settings_fields().items():
                if field_name not in annotations:  # an explicit field wins
                    annotations[field_name] = annotation
                    namespace[field_name] = info
            namespace["__annotations__"] = annotations
        return super().__new__(mcs, name, bases, namespace, **kwargs)


class ChargeflowSettings(BaseSettings, metaclass=_ComposedSettingsMeta):
    """Base of every settings part and process model: ``CHARGEFLOW_*`` env + ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )
    __component__: ClassVar[ComponentFields | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A *_FILE variable is as strong as the variable itself (both set: an error).
        return (
            init_settings,
            env_settings,
            FileVariablesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @classmethod
    def load(cls, **values: Any) -> Self:
        """The settings from the environment and ``.env`` (``values`` win), or
        :class:`SettingsError` in one line."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(one_line(exc)) from None
        except PydanticSettingsError as exc:  # a list/object variable that is not JSON
            field = re.search(r'field "(\w+)"', str(exc))
            name = env_name(field.group(1)) if field else "settings"
            raise SettingsError(f"{name}: not valid JSON") from None

    def require(self, field_name: str) -> Any:
        """The value of a setting this process cannot run without."""
        value = getattr(self, field_name)
        if value is None or value == "":
            raise SettingsError(f"{env_name(field_name)} is required")
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def build_component(self, **shared: Any) -> Any:
        spec = type(self).__component__
        if spec is None:
            raise TypeError(f"{type(self).__name__} has no __component__")
        return spec.build(self, **shared)


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


# ------------------------------------------------------------------ shared parts


class KafkaSettings(ChargeflowSettings):
    kafka_bootstrap: str | None = Field(
        None,
        description="host:port[,host:port...] of Kafka; `chargeflow run` starts an "
        "embedded broker when unset",
    )

    @property
    def kafka_brokers(self) -> list[str]:
        return [b.strip() for b in (self.kafka_bootstrap or "").split(",") if b.strip()]


class DatabaseSettings(ChargeflowSettings):
    database_url: SecretStr | None = Field(
        None,
        description="postgresql:// URL of the database; unset: `chargeflow` finds "
        "the local server on 127.0.0.1:5432 (database CHARGEFLOW_DATABASE_NAME), else "
        "starts an embedded one",
    )
    database_name: str = Field(
        "chargeflow",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="database created on the local or embedded server when "
        "CHARGEFLOW_DATABASE_URL is unset",
    )


class TopicSettings(ChargeflowSettings):
    topic_prefix: str = Field("", description="prefix of every Kafka topic name")
    topic_partitions: int = Field(4, ge=1, description="partitions of topics created")


class LoggingSettings(ChargeflowSettings):
    log_level: str = Field(
        "INFO",
        pattern="(?i)^(debug|info|warning|error|critical)$",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    log_format: str = Field(
        "console",
        pattern="^(console|json)$",
        description="console (human) or json (one object a line)",
    )


class MqttSettings(ChargeflowSettings):
    mqtt_url: SecretStr | None = Field(
        None,
        description="mqtt://[user:password@]host:port of the meters' broker "
        "(mqtts:// = TLS); `chargeflow run` starts an embedded one when unset",
    )
    mqtt_topic_pattern: str = Field(
        "meters/+/reading",
        description="MQTT subscription filter; the level matched by its first '+' is the meter id",
    )


SHARED_PARTS: tuple[type[ChargeflowSettings], ...] = (
    KafkaSettings,
    DatabaseSettings,
    TopicSettings,
    LoggingSettings,
    MqttSettings,
)


def part_of(model: type[BaseSettings], field_name: str) -> type[ChargeflowSettings] | None:
    """The shared part a field of ``model`` comes from, if any (for the docs)."""
    for part in SHARED_PARTS:
        if issubclass(model, part) and field_name in part.model_fields:
            return part
    return None


__all__ = [
    "ChargeflowSettings",
    "ComponentFields",
    "DatabaseSettings",
    "KafkaSettings",
    "LoggingSettings",
    "MqttSettings",
    "SettingsError",
    "TopicSettings",
    "env_name",
    "field_comments",
    "file_variable",
    "part_of",
    "secret",
]
