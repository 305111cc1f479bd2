"""Playbooks: content checked against the one schema, versions immutable once active, a new
version links its parent, one active playbook per team and function."""

from __future__ import annotations

import json

import psycopg
import pytest
from coaching_support import AGENT, CONTENT, OWNER, TEAM, TENANT, playbook

from support import Db


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"sections": []}, "sections must be an array of 1 to 30 sections"),
        ({"sections": [{"title": "Descoberta"}]}, "sections[1].questions must be 1 to 30 texts"),
        ({"sections": [{"title": "", "questions": ["Oi?"]}]}, "sections[1].title must be a text"),
        ({"sections": [{"title": "D", "questions": [42]}]}, "sections[1].questions must be 1 to 30 texts"),
        ({**CONTENT, "objections": [{"objection": "Caro", "response": "ROI"}]}, "objections[1] must be"),
        ({**CONTENT, "script": "..."}, "content has keys other than"),
        ([1, 2], "content must be a JSON object"),
    ],
)
def test_content_outside_the_schema_is_refused(db: Db, content: object, problem: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=problem.replace("[", r"\[").replace("]", r"\]")):
        playbook(db, content=content, status="draft")


def test_an_active_version_is_frozen_and_a_new_version_links_its_parent(db: Db) -> None:
    first = playbook(db)
    assert first["version"] == 1 and first["activated_at"] is not None
    with (
        pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="cannot change"),
        db.as_user(OWNER) as s,
    ):
        s.all(
            "update public.playbooks set content = content || '{\"automations\": {}}' where id = %s",
            (first["id"],),
        )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is kept"), db.as_user(OWNER) as s:
        s.all("delete from public.playbooks where id = %s", (first["id"],))
    second = playbook(db, status="draft", parent=str(first["id"]), content={**CONTENT, "automations": {}})
    assert second["version"] == 2
    with db.as_user(OWNER) as s:  # a draft is edited freely, then activated: the first retires
        s.all("update public.playbooks set name = 'Vendas v2' where id = %s", (second["id"],))
        s.all("update public.playbooks set status = 'active' where id = %s", (second["id"],))
        rows = s.all(
            "select version, status from public.playbooks where tenant_id = %s order by version", (TENANT,)
        )
    assert rows == [{"version": 1, "status": "inactive"}, {"version": 2, "status": "active"}]
    with pytest.raises(psycopg.errors.UniqueViolation):  # no fork of version 1
        playbook(db, status="draft", parent=str(first["id"]))
    with pytest.raises(psycopg.errors.CheckViolation, match="keeps the team"):
        playbook(db, status="draft", parent=str(second["id"]), team=TEAM)
    assert db.value("select count(*) from public.events where type = 'playbook.activated'") == 2


def test_one_active_playbook_per_team_and_function(db: Db) -> None:
    tenant_wide = playbook(db)
    team = playbook(db, team=TEAM, name="Playbook do time")
    assert db.value("select status from public.playbooks where id = %s", (tenant_wide["id"],)) == "active"
    playbook(db, team=TEAM, name="Outro do time")
    assert db.value("select status from public.playbooks where id = %s", (team["id"],)) == "inactive"


def test_agents_read_playbooks_but_do_not_write_them(db: Db) -> None:
    playbook(db)
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.playbooks") == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all(
            "insert into public.playbooks (tenant_id, name, function, methodology, content)"
            " values (%s, 'x', 'sales', 'bant', %s)",
            (TENANT, json.dumps(CONTENT)),
        )
