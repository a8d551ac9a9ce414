"""boundary_api against the real controller of the local stack: every call, typed errors,
fast failures, and secrets kept out of reprs, messages and logs."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from cryptography import x509

from boundary_api import (
    BoundaryClient,
    Conflict,
    InvalidArgument,
    NotFound,
    StaleVersion,
    Unauthenticated,
    Unavailable,
)
from boundary_devstack.net import free_port
from boundary_devstack.stack import StackEnv


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_password_login_and_existing_token(
    boundary: BoundaryClient, stack_env: StackEnv
) -> None:
    env = stack_env.values
    async with BoundaryClient(env["BOUNDARY_ADDR"]) as fresh:
        token = await fresh.authenticate_password(
            env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
        )
    assert token.id.startswith("at_")
    assert token.user_id == "u_1234567890"
    info = await boundary.auth_tokens.read(token.id)
    assert (info.user_id, info.expiration_time) == (token.user_id, token.expiration_time)
    async with BoundaryClient(env["BOUNDARY_ADDR"], token=token.token.get_secret_value()) as c:
        assert (await c.scopes.read(env["BOUNDARY_PROJECT_ID"])).type == "project"


async def test_wrong_password_fails_fast_with_unauthenticated(stack_env: StackEnv) -> None:
    env = stack_env.values
    started = time.monotonic()
    async with BoundaryClient(env["BOUNDARY_ADDR"]) as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.authenticate_password(env["BOUNDARY_AUTH_METHOD_ID"], "admin", "nope")
    assert time.monotonic() - started < 5
    assert "authenticate" in str(caught.value)


async def test_unreachable_controller_fails_fast_with_unavailable() -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    async with BoundaryClient(address, token="at_x", retries=2, backoff=0.1) as client:
        with pytest.raises(Unavailable) as caught:
            await client.targets.read("ttcp_1234567890")
    assert time.monotonic() - started < 5
    assert "cannot reach the controller" in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)


async def test_workers_controller_led_lifecycle(boundary: BoundaryClient) -> None:
    name = unique("api-worker")
    created = await boundary.workers.create_controller_led(name, description="api test")
    token = created.controller_generated_activation_token.get_secret_value()
    assert token.startswith("neslat_")
    assert token not in repr(created)

    listed = await boundary.workers.list(filter=f'"/item/name" == "{name}"')
    assert [w.id for w in listed] == [created.id]
    worker = await boundary.workers.read(created.id)
    assert worker.name == name
    worker = await boundary.workers.set_tags(worker.id, worker.version, {"env": ["a", "b"]})
    worker = await boundary.workers.add_tags(worker.id, worker.version, {"team": ["x"]})
    assert worker.api_tags == {"env": ["a", "b"], "team": ["x"]}
    worker = await boundary.workers.remove_tags(worker.id, worker.version, {"env": ["a"]})
    assert worker.api_tags == {"env": ["b"], "team": ["x"]}
    await boundary.workers.delete(worker.id)
    with pytest.raises(NotFound):
        await boundary.workers.read(worker.id)


async def test_targets_create_read_update_delete(
    boundary: BoundaryClient, stack_env: StackEnv
) -> None:
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    alias = f"{unique('db')}.api.test"
    target = await boundary.targets.create_tcp(
        project,
        unique("t"),
        address="db.internal",
        default_port=5432,
        egress_worker_filter='"dev" in "/tags/type"',
        session_max_seconds=600,
        session_connection_limit=5,
        aliases=[alias],
    )
    assert target.default_port == 5432
    assert [a.value for a in target.aliases] == [alias]
    assert (target.session_max_seconds, target.session_connection_limit) == (600, 5)
    assert target.egress_worker_filter == '"dev" in "/tags/type"'

    read = await boundary.targets.read(target.id)
    updated = await boundary.targets.update(
        read.id, read.version, default_port=6543, description="moved"
    )
    assert (updated.default_port, updated.description) == (6543, "moved")
    with pytest.raises(StaleVersion) as stale:
        await boundary.targets.update(read.id, read.version, description="stale")
    assert isinstance(stale.value, Conflict)
    assert "incorrect version" in str(stale.value)

    listing = await boundary.targets.list(project, recursive=False)
    assert target.id in {t.id for t in listing.items}

    await boundary.targets.delete(target.id)
    with pytest.raises(NotFound):
        await boundary.targets.read(target.id)
    # Boundary keeps a deleted target's aliases, without a destination.
    leftover = await boundary.aliases.read(target.aliases[0].id)
    assert leftover.destination_id == ""
    await boundary.aliases.delete(leftover.id)


async def test_invalid_argument_names_the_fields(
    boundary: BoundaryClient, stack_env: StackEnv
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await boundary.targets.create_tcp(
            stack_env.values["BOUNDARY_PROJECT_ID"], unique("t"), address="x", default_port=0
        )
    assert "attributes.default_port" in caught.value.fields
    assert "attributes.default_port" in str(caught.value)


async def test_duplicate_name_is_a_conflict(boundary: BoundaryClient, stack_env: StackEnv) -> None:
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    name = unique("dup")
    target = await boundary.targets.create_tcp(project, name, address="db.internal", default_port=1)
    try:
        with pytest.raises(Conflict):
            await boundary.targets.create_tcp(project, name, address="db.internal", default_port=1)
    finally:
        await boundary.targets.delete(target.id)


async def test_aliases_crud_and_authorize_by_alias_value(
    boundary: BoundaryClient, stack_env: StackEnv
) -> None:
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    target = await boundary.targets.create_tcp(
        project, unique("t"), address="127.0.0.1", default_port=5432
    )
    value = f"{unique('svc')}.aliases.test"
    alias = await boundary.aliases.create(value, destination_id=target.id, description="d")
    try:
        assert (await boundary.aliases.read(alias.id)).value == value
        renamed = await boundary.aliases.update(alias.id, alias.version, value=f"new.{value}")
        assert renamed.value == f"new.{value}"
        listing = await boundary.aliases.list()
        assert alias.id in {a.id for a in listing.items}

        session = await boundary.sessions.authorize(f"new.{value}")
        assert session.target_id == target.id
        assert session.data.session_id == session.session_id
        assert session.data.endpoint_port == 5432
        assert session.data.worker_addresses, "the dev worker should be offered"
        cert = x509.load_der_x509_certificate(session.data.certificate)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [session.session_id]
        key = session.data.private_key.get_secret_value()
        assert len(key) == 64
        # Ed25519: the key's second half is the certificate's public key.
        assert cert.public_key().public_bytes_raw() == key[32:]  # type: ignore[union-attr]
        assert session.authorization_token.get_secret_value() not in repr(session)
        await boundary.sessions.cancel(session.session_id)
    finally:
        await boundary.aliases.delete(alias.id)
        await boundary.targets.delete(target.id)


async def test_list_resolvable_aliases_and_delta(
    boundary: BoundaryClient, stack_env: StackEnv
) -> None:
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    first = await boundary.users.list_resolvable_aliases("u_1234567890")
    assert first.full
    assert first.list_token
    value = f"{unique('r')}.resolvable.test"
    target = await boundary.targets.create_tcp(
        project, unique("t"), address="127.0.0.1", default_port=80, aliases=[value]
    )
    try:
        delta = await boundary.users.list_resolvable_aliases(
            "u_1234567890", list_token=first.list_token
        )
        assert not delta.full
        assert value in {a.value for a in delta.items}
        view = {a.id: a for a in first.items}
        delta.apply_to(view)
        assert value in {a.value for a in view.values()}
    finally:
        await boundary.targets.delete(target.id)
        await boundary.aliases.delete(target.aliases[0].id)


async def test_brokered_credentials_follow_the_stored_credential(
    boundary: BoundaryClient, stack_env: StackEnv
) -> None:
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    store = await boundary.credential_stores.create_static(project, name=unique("store"))
    credential = await boundary.credentials.create_username_password(
        store.id, username="app", password="s3cret-one", name="app"
    )
    target = await boundary.targets.create_tcp(
        project, unique("t"), address="127.0.0.1", default_port=5432
    )
    try:
        target = await boundary.targets.add_credential_sources(
            target.id, target.version, [credential.id]
        )
        assert target.brokered_credential_source_ids == [credential.id]
        session = await boundary.sessions.authorize(target.id)
        assert [(c.username, c.password) for c in session.credentials] == [("app", "s3cret-one")]

        await boundary.credentials.update_username_password(
            credential.id, credential.version, password="s3cret-two"
        )
        session = await boundary.sessions.authorize(target.id)
        assert [c.password for c in session.credentials] == ["s3cret-two"]
        assert "s3cret-two" not in repr(session)

        target = await boundary.targets.remove_credential_sources(
            target.id, target.version, [credential.id]
        )
        assert target.brokered_credential_source_ids == []
        assert (await boundary.credentials.list(store.id)).items[0].id == credential.id
    finally:
        await boundary.targets.delete(target.id)
        await boundary.credentials.delete(credential.id)
        await boundary.credential_stores.delete(store.id)


async def test_scopes_by_name(boundary: BoundaryClient, stack_env: StackEnv) -> None:
    org = await boundary.scopes.find_by_name("Generated org scope")
    assert org.id == stack_env.values["BOUNDARY_ORG_ID"]
    project = await boundary.scopes.find_project("Generated project scope")
    assert project.id == stack_env.values["BOUNDARY_PROJECT_ID"]
    with pytest.raises(NotFound):
        await boundary.scopes.find_by_name("no such org")


async def test_token_never_in_repr_errors_or_logs(
    boundary: BoundaryClient, stack_env: StackEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = stack_env.values
    caplog.set_level(logging.DEBUG)
    async with BoundaryClient(env["BOUNDARY_ADDR"]) as client:
        token = await client.authenticate_password(
            env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
        )
        secret = token.token.get_secret_value()
        with pytest.raises(NotFound) as caught:
            await client.targets.read("ttcp_0000000000")
        for text in (repr(client), repr(token), str(caught.value), caplog.text):
            assert secret not in text
