"""Typed event data, and the registry that turns ``ce_type`` + JSON into it and back.

Each event class names its wire identity in its class statement (service, name,
version, topic), so renaming or moving a Python class never changes a ``ce_type``.
Older versions stay readable: an :class:`Upcaster` rewrites the JSON of version N
into version N+1, and :meth:`EventRegistry.decode` applies them one step at a
time up to the newest registered class, as pyeventsourcing does, but explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from eventkit.envelope import Envelope, EnvelopeError, EventType, encode_data

PERSONAL_DATA_KEYWORD = "x-personal-data"


@dataclass(frozen=True, slots=True)
class PersonalDataMarker:
    """Marks a field as personal data, encrypted per person and erased with the key.

    Put it in ``Annotated[...]``; the JSON Schema then carries
    ``"x-personal-data": true`` so subscribers in any language see it too.
    """

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema[PERSONAL_DATA_KEYWORD] = True
        return schema


PERSONAL = PersonalDataMarker()
# A personal text field without further constraints; contracts narrow it.
PersonalData = Annotated[str, PERSONAL]


class UnknownEventType(LookupError):
    """A ``ce_type`` (or event class) this registry cannot read or write."""


class InvalidEventData(ValueError):
    """Event JSON that does not fit its (upcast) event class."""


class EventData(BaseModel):
    """Base of every event payload.

    Writing is strict (``extra="forbid"``) so a misspelt field fails where the
    event is made. Reading is tolerant (:meth:`EventRegistry.decode` validates
    with ``extra="ignore"``): adding an optional field is not a new version, so
    a consumer must accept fields from producers newer than itself.

    A concrete event declares its identity in the class statement::

        class UserSuspended(EventData, service="identity", name="UserSuspended",
                            version=1, topic="identity.user"): ...

    A class without these keywords is an abstract base for shared fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[EventType]
    topic: ClassVar[str]

    def __init_subclass__(
        cls,
        *,
        service: str | None = None,
        name: str | None = None,
        version: int | None = None,
        topic: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        identity = (service, name, version, topic)
        if all(part is None for part in identity):
            return
        if service is None or name is None or version is None or topic is None:
            raise TypeError(f"{cls.__name__}: give all of service, name, version and topic")
        event_type = EventType(service=service, name=name, version=version)
        try:
            EventType.parse(str(event_type))
        except EnvelopeError as error:
            raise TypeError(f"{cls.__name__}: {error}") from error
        # Each service writes only its own topics (DESIGN: "writes (topic)").
        if not topic.startswith(f"{service}."):
            raise TypeError(f"{cls.__name__}: topic {topic!r} is not one of {service}'s")
        cls.event_type = event_type
        cls.topic = topic

    @classmethod
    def has_identity(cls) -> bool:
        return "event_type" in vars(cls)


def personal_fields(event_class: type[BaseModel]) -> tuple[str, ...]:
    """Names of the top-level fields marked as personal data, in declaration order.

    Personal data sits at the top level of an event so encryption can replace
    whole values; a marker nested inside a sub-model is not reported.
    """
    return tuple(
        name
        for name, info in event_class.model_fields.items()
        if any(isinstance(item, PersonalDataMarker) for item in info.metadata)
        or _annotation_is_personal(info.annotation)
    )


def _annotation_is_personal(annotation: Any) -> bool:
    # ``Email | None`` keeps the marker inside the union, not in the field metadata.
    origin = get_origin(annotation)
    if origin is Annotated:
        return any(isinstance(item, PersonalDataMarker) for item in get_args(annotation)[1:])
    if origin is Union or origin is UnionType:
        return any(_annotation_is_personal(arg) for arg in get_args(annotation))
    return False


UpcastFunction = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Upcaster:
    """Rewrites the data of ``<service>.<name>`` version ``from_version`` into the next one."""

    service: str
    name: str
    from_version: int
    upcast: UpcastFunction

    @property
    def to_version(self) -> int:
        return self.from_version + 1


class EventRegistry:
    """Every event class a process knows, looked up by ``ce_type``.

    Built once in a composition root (see ``schemas.catalog.build_registry``);
    construction fails if two classes claim one type or an upcaster chain has a
    gap, so a bad catalog stops the service at start-up rather than mid-stream.
    """

    def __init__(
        self,
        event_classes: Iterable[type[EventData]],
        upcasters: Iterable[Upcaster] = (),
    ) -> None:
        self._classes: dict[str, type[EventData]] = {}
        # (service, name) -> the newest registered class of that event.
        self._newest: dict[tuple[str, str], type[EventData]] = {}
        self._upcasters: dict[tuple[str, str, int], Upcaster] = {}

        for event_class in event_classes:
            if not event_class.has_identity():
                raise TypeError(f"{event_class.__name__} declares no service/name/version/topic")
            type_name = str(event_class.event_type)
            if type_name in self._classes:
                raise ValueError(f"{type_name} is registered twice")
            self._classes[type_name] = event_class
            key = (event_class.event_type.service, event_class.event_type.name)
            current = self._newest.get(key)
            if current is None or current.event_type.version < event_class.event_type.version:
                self._newest[key] = event_class

        for upcaster in upcasters:
            step = (upcaster.service, upcaster.name, upcaster.from_version)
            if step in self._upcasters:
                raise ValueError(f"two upcasters from {_describe(*step)}")
            newest = self._newest.get((upcaster.service, upcaster.name))
            if newest is None:
                raise ValueError(f"upcaster from {_describe(*step)} has no registered event class")
            if upcaster.to_version > newest.event_type.version:
                raise ValueError(
                    f"upcaster from {_describe(*step)} goes past the newest version "
                    f"v{newest.event_type.version}"
                )
            self._upcasters[step] = upcaster

        self._check_chains()

    def _check_chains(self) -> None:
        """Every version that is readable at all must reach the newest without a gap."""
        for (service, name), newest in self._newest.items():
            known = [
                upcaster.from_version
                for (s, n, _), upcaster in self._upcasters.items()
                if (s, n) == (service, name)
            ]
            known += [
                cls.event_type.version
                for cls in self._classes.values()
                if (cls.event_type.service, cls.event_type.name) == (service, name)
            ]
            for version in range(min(known), newest.event_type.version):
                if (service, name, version) not in self._upcasters:
                    raise ValueError(f"no upcaster from {_describe(service, name, version)}")

    def types(self) -> tuple[str, ...]:
        """The ``ce_type`` of every registered class, sorted."""
        return tuple(sorted(self._classes))

    def event_classes(self) -> tuple[type[EventData], ...]:
        return tuple(self._classes[type_name] for type_name in self.types())

    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({cls.topic for cls in self._classes.values()}))

    def __contains__(self, type_name: object) -> bool:
        if not isinstance(type_name, str):
            return False
        try:
            self.class_for(type_name)
        except UnknownEventType:
            return False
        return True

    def class_for(self, type_name: str) -> type[EventData]:
        """The class that data of ``type_name`` decodes into (the newest of its name).

        An old version without a class of its own still has one here, as long as
        upcasters lead from it to the newest.
        """
        try:
            event_type = EventType.parse(type_name)
        except EnvelopeError as error:
            raise UnknownEventType(str(error)) from error
        newest = self._newest.get((event_type.service, event_type.name))
        if newest is None:
            raise UnknownEventType(f"{type_name} is not a registered event type")
        newest_version = newest.event_type.version
        if event_type.version > newest_version:
            raise UnknownEventType(
                f"{type_name} is newer than this reader (knows up to v{newest_version})"
            )
        for version in range(event_type.version, newest_version):
            if (event_type.service, event_type.name, version) not in self._upcasters:
                raise UnknownEventType(
                    f"{type_name} cannot be read: no upcaster from v{version}"
                )
        return newest

    def topic_of(self, type_name: str) -> str:
        return self.class_for(type_name).topic

    def decode(self, envelope: Envelope) -> EventData:
        return self.decode_data(envelope.type, envelope.data)

    def decode_data(self, type_name: str, data: Mapping[str, Any]) -> EventData:
        """Upcast ``data`` of ``type_name`` step by step, then validate it as the newest class."""
        event_class = self.class_for(type_name)
        event_type = EventType.parse(type_name)
        upgraded = dict(data)
        for version in range(event_type.version, event_class.event_type.version):
            upcaster = self._upcasters[(event_type.service, event_type.name, version)]
            upgraded = upcaster.upcast(upgraded)
        try:
            return event_class.model_validate(upgraded, extra="ignore")
        except ValidationError as error:
            raise InvalidEventData(f"{type_name}: {error}") from error

    def encode(self, event: EventData) -> str:
        """The event's data as the JSON text that goes into the envelope."""
        event_class = type(event)
        if not event_class.has_identity():
            raise UnknownEventType(f"{event_class.__name__} declares no event type")
        type_name = str(event_class.event_type)
        if self._classes.get(type_name) is not event_class:
            raise UnknownEventType(f"{type_name} ({event_class.__name__}) is not registered")
        return encode_data(event.model_dump(mode="json"))


def _describe(service: str, name: str, version: int) -> str:
    return str(EventType(service=service, name=name, version=version))
