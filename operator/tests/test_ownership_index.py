"""The sync's views: our objects indexed by Service uid, kept right as listings and writes
change them (pure logic, no controller)."""

from __future__ import annotations

from boundary_api import Alias
from boundary_api.listing import Listing
from boundary_operator.services.ownership import OwnedIndex, Owner


def alias(alias_id: str, value: str, description: str) -> Alias:
    return Alias(id=alias_id, value=value, description=description)


def mine(uid: str, port: str = "pg", cluster: str = "prod") -> str:
    return Owner(cluster, "data", "db", uid, port).description()


def test_only_this_clusters_marked_objects_are_owned() -> None:
    view: OwnedIndex[Alias] = OwnedIndex("prod", value_of=lambda a: a.value)
    view["alt_1"] = alias("alt_1", "db.test", mine("u-1"))
    view["alt_2"] = alias("alt_2", "hand.test", "made by hand")
    view["alt_3"] = alias("alt_3", "other.test", mine("u-1", cluster="staging"))
    assert set(view.owned()) == {"alt_1"}
    assert view.owned("u-1")["alt_1"][0].port == "pg"
    assert view.owned("u-2") == {}
    assert view.by_value("hand.test") is view["alt_2"]
    assert len(view) == 3


def test_replacing_and_deleting_keep_the_indexes_right() -> None:
    view: OwnedIndex[Alias] = OwnedIndex("prod", value_of=lambda a: a.value)
    view["alt_1"] = alias("alt_1", "db.test", mine("u-1"))
    view["alt_1"] = alias("alt_1", "db2.test", mine("u-2"))  # value and owner changed by hand
    assert view.owned("u-1") == {}
    assert set(view.owned("u-2")) == {"alt_1"}
    assert view.by_value("db.test") is None
    assert view.pop("alt_1").value == "db2.test"
    assert view.owned() == {}
    assert view.by_value("db2.test") is None


def test_listings_apply_full_and_delta() -> None:
    view: OwnedIndex[Alias] = OwnedIndex("prod", value_of=lambda a: a.value)
    first = [alias(f"alt_{n}", f"n{n}.test", mine(f"u-{n % 2}")) for n in range(6)]
    Listing(items=first, list_token="t1").apply_to(view)
    assert len(view.owned("u-0")) == 3
    delta = Listing[Alias](items=[], list_token="t2", removed_ids=["alt_0", "alt_2"], full=False)
    delta.apply_to(view)
    assert set(view.owned("u-0")) == {"alt_4"}
    Listing(items=first[:1], list_token="t3").apply_to(view)  # a restarted, full listing
    assert set(view) == {"alt_0"}
    assert view.by_value("n4.test") is None
