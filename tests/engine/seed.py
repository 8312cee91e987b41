"""Seeding for real-time tests: organisations, members, apps and contacts written directly in
SQL as the table owner (the admin API that normally creates them is another service)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass
class Tenant:
    org: str
    app: str
    owner: str
    agents: list[str] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)


async def seed_tenant(owner_db, *, agents: int = 2, admins: int = 1, contacts: int = 3) -> Tenant:
    org, owner = uuid.uuid4(), uuid.uuid4()
    t = Tenant(str(org), "", str(owner))
    async with owner_db.transaction():
        await owner_db.execute("SELECT set_config('convot.org_id', $1, true)", str(org))
        users = [owner] + [uuid.uuid4() for _ in range(agents + admins)]
        await owner_db.executemany("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')",
                                   [(u, f"{u}@example.test") for u in users])
        await owner_db.execute("INSERT INTO organisations (id, name, super_owner_id) VALUES ($1, 'Org', $2)", org, owner)
        roles = ["owner"] + ["agent"] * agents + ["admin"] * admins
        await owner_db.executemany("INSERT INTO members (org_id, user_id, role) VALUES ($1, $2, $3)",
                                   [(org, u, r) for u, r in zip(users, roles)])
        t.agents = [str(u) for u in users[1:1 + agents]]
        t.admins = [str(u) for u in users[1 + agents:]]
        t.app = str(await owner_db.fetchval(
            "INSERT INTO apps (org_id, public_key, name, identity_secret_enc) VALUES ($1, $2, 'App', '\\x00') RETURNING id",
            org, f"app_{uuid.uuid4().hex}"))
        for _ in range(contacts):
            t.contacts.append(str(await owner_db.fetchval(
                "INSERT INTO contacts (org_id) VALUES ($1) RETURNING id", org)))
    return t


async def seed_many(owner_db, orgs: int, *, agents: int, contacts: int) -> list[Tenant]:
    return [await seed_tenant(owner_db, agents=agents, admins=0, contacts=contacts) for _ in range(orgs)]
