"""Which Boundary objects the Service sync owns, and fast access to them.

Objects we create carry an ownership marker (cluster, namespace, Service uid, and for targets
and aliases the port) in their description. The views of every target, alias and role keep what
is ours indexed by Service uid as they change, so syncing one Service looks at that Service's
objects only, not at every description in the controller (with 1,000 Services that scan was
the sync's largest cost)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from boundary_api import Listing
from boundary_operator.naming import owner_marker, parse_owner_marker


@dataclass(frozen=True)
class Owner:
    cluster: str
    namespace: str
    service: str
    uid: str
    port: str = ""
    """The Service port a target or alias is for; "" for what serves the whole Service (its
    role)."""

    def description(self, extra: str = "") -> str:
        fields = {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "service": self.service,
            "uid": self.uid,
        }
        if self.port:
            fields["port"] = self.port
        return f"{owner_marker(**fields)} {extra}".rstrip()

    @classmethod
    def parse(cls, description: str) -> Owner | None:
        fields = parse_owner_marker(description, "cluster", "namespace", "service", "uid")
        if fields is None:
            return None
        return cls(
            fields["cluster"],
            fields["namespace"],
            fields["service"],
            fields["uid"],
            fields.get("port", ""),
        )

    @classmethod
    def of_cluster(cls, description: str, cluster: str) -> Owner | None:
        """The owner in a description when it is one of this cluster's; None otherwise."""
        owner = cls.parse(description)
        return owner if owner and owner.cluster == cluster else None


class Described(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def version(self) -> int: ...


T = TypeVar("T", bound=Described)


class OwnedIndex(MutableMapping[str, T]):
    """Objects by id (a listing's apply_to keeps it current), with this cluster's own objects
    indexed by Service uid and, given value_of, every object by that value."""

    def __init__(self, cluster: str, value_of: Callable[[T], str] | None = None) -> None:
        self.cluster = cluster
        self._value_of = value_of
        self._items: dict[str, T] = {}
        self._owners: dict[str, Owner] = {}
        self._by_uid: dict[str, dict[str, T]] = {}
        self._by_value: dict[str, str] = {}

    def __getitem__(self, object_id: str) -> T:
        return self._items[object_id]

    def __setitem__(self, object_id: str, item: T) -> None:
        if object_id in self._items:
            del self[object_id]
        self._items[object_id] = item
        if self._value_of is not None:
            self._by_value[self._value_of(item)] = object_id
        owner = Owner.of_cluster(item.description, self.cluster)
        if owner is not None:
            self._owners[object_id] = owner
            self._by_uid.setdefault(owner.uid, {})[object_id] = item

    def __delitem__(self, object_id: str) -> None:
        item = self._items.pop(object_id)
        if self._value_of is not None and self._by_value.get(self._value_of(item)) == object_id:
            del self._by_value[self._value_of(item)]
        owner = self._owners.pop(object_id, None)
        if owner is not None:
            siblings = self._by_uid[owner.uid]
            del siblings[object_id]
            if not siblings:
                del self._by_uid[owner.uid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        for index in (self._items, self._owners, self._by_uid, self._by_value):
            index.clear()

    def owned(self, uid: str | None = None) -> dict[str, tuple[Owner, T]]:
        """Our objects (of one Service, given its uid) by id, with their owners."""
        uids = [uid] if uid is not None else list(self._by_uid)
        return {
            object_id: (self._owners[object_id], item)
            for one in uids
            for object_id, item in self._by_uid.get(one, {}).items()
        }

    def by_value(self, value: str) -> T | None:
        object_id = self._by_value.get(value)
        return self._items[object_id] if object_id is not None else None


class DetailedIndex(OwnedIndex[T]):
    """An OwnedIndex of a kind whose listings leave fields out (a target's credential sources,
    a role's principals and grants: measured on the real controller). It knows which entries
    came whole from a read or a write (`remember`), and keeps them across listings while their
    version does not move; any other entry must be read before those fields are trusted."""

    def __init__(self, cluster: str, value_of: Callable[[T], str] | None = None) -> None:
        super().__init__(cluster, value_of)
        self._whole: set[str] = set()

    def apply(self, listing: Listing[Any]) -> None:
        """A listing's changes (all of it when `full`), keeping our whole copies it did not
        change."""
        unchanged = {
            item.id: held
            for item in listing.items
            if item.id in self._whole
            and (held := self._items.get(item.id)) is not None
            and held.version == item.version
        }
        whole = set(unchanged)
        if not listing.full:
            whole |= self._whole - {item.id for item in listing.items}
        listing.apply_to(self)
        for item in unchanged.values():
            self[item.id] = item
        self._whole = whole & self._items.keys()

    def remember(self, item: T) -> None:
        """An item as a read or a write returned it, every field included."""
        self[item.id] = item
        self._whole.add(item.id)

    def is_whole(self, object_id: str) -> bool:
        return object_id in self._whole

    def __delitem__(self, object_id: str) -> None:
        # Also on a plain assignment (which replaces the entry): only `remember` makes whole.
        super().__delitem__(object_id)
        self._whole.discard(object_id)

    def clear(self) -> None:
        super().clear()
        self._whole.clear()
