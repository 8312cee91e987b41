"""An uninstall within 48 hours posts "Uninstalled <app>" through the real engine and reopens the conversation."""

from datetime import timedelta

import orjson
import pytest

from engine.client import EngineClient
from engine.shopify import connections
from engine.shopify.churn import uninstall_notifier
from engine.shopify.runner import sync_one
from tests.engine.shopify import partner_dataset as ds
from tests.engine.shopify.test_revenue import add_contact, add_conversation


@pytest.fixture
async def engine(config, redis_client, db):
    client = EngineClient(config, redis=redis_client, pool=db)
    await client.start()
    yield client
    await client.close()


async def test_uninstall_reopens_the_merchants_conversation_once(db, owner_db, org, fake, settings, session, encryptor,
                                                                 engine):
    ds.build(fake)
    await connections.connect(db, encryptor, session, settings, org_id=org, partner_org_id=fake.partner_org_id,
                              token=fake.token)
    verified = await add_contact(owner_db, org, shop="delta.myshopify.com", shop_verified=True)
    conversation = await add_conversation(owner_db, org, verified, ds.NOW - timedelta(days=2))
    forged = await add_contact(owner_db, org, shop="eta.myshopify.com", shop_verified=False)
    untouched = await add_conversation(owner_db, org, forged, ds.NOW - timedelta(days=1))

    notify = uninstall_notifier(db, engine, now=lambda: ds.NOW)
    posted = []

    async def hook(org_id, uninstall):
        posted.append(await notify(org_id, uninstall))

    report = await sync_one(db, settings, session, encryptor, org, on_uninstall=hook, now=lambda: ds.NOW)
    assert report.error is None and posted == [conversation]

    state = await engine.conversation(str(org), str(conversation))
    assert state.status == "open"
    messages = [orjson.loads(m) for m in (await engine.history(str(org), str(conversation)))[0]]
    assert [(m["type"], m["body"]) for m in messages] == [("activity", "Uninstalled Reviews Pro")]

    # The same notice again (a retried run) posts nothing new.
    await notify(org, report.outcome.recent_uninstalls[0])
    assert len((await engine.history(str(org), str(conversation)))[0]) == 1
    # eta uninstalled 3 days ago (outside 48 h) and its contact is not verified: untouched.
    assert (await engine.conversation(str(org), str(untouched))).status == "resolved"
