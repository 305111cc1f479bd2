"""OKRs: one current period, status and trend derived from progress against time elapsed,
key results linked to metrics moved by the okr_metrics job; the coaching alerts job raises
deal_stuck, low_playbook_adherence, target_risk and conversion_drop once per subject and period."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from coaching_support import AGENT, AGENT_MEMBER, OWNER, TEAM, TENANT, playbook, run_job

from support import Db


def period(
    db: Db,
    label: str,
    starts: str = "current_date - 30",
    ends: str = "current_date + 60",
    current: bool = False,
) -> dict[str, Any]:
    with db.as_user(OWNER) as s:
        return s.one(
            f"insert into public.okr_periods (tenant_id, label, starts_on, ends_on, is_current)"
            f" values (%s, %s, {starts}, {ends}, %s) returning *",
            (TENANT, label, current),
        )


def key_result(
    db: Db,
    period_id: Any,
    *,
    metric: str = "manual",
    target: int = 100,
    start: int = 0,
    team: str | None = None,
) -> dict[str, Any]:
    with db.as_user(OWNER) as s:
        objective = s.value(
            "insert into public.objectives (tenant_id, period_id, title, area, owner_team_id)"
            " values (%s, %s, 'Crescer receita', 'revenue', %s) returning id",
            (TENANT, period_id, TEAM),
        )
        return s.one(
            "insert into public.key_results (tenant_id, objective_id, title, unit, start_value, target,"
            " metric, metric_team_id, owner_member_id) values (%s, %s, 'Meta', 'number', %s, %s, %s, %s, %s)"
            " returning *",
            (TENANT, objective, start, target, metric, team, AGENT_MEMBER),
        )


def status(db: Db, kr: Any) -> dict[str, Any]:
    with db.as_user(AGENT) as s:
        return s.one(
            "select status, trend, progress, current_value from public.key_results_status where id = %s",
            (kr,),
        )


def test_exactly_one_current_period(db: Db) -> None:
    q1 = period(db, "Q1")
    assert q1["is_current"]  # the first one is current
    q2 = period(db, "Q2", "current_date + 61", "current_date + 150", current=True)
    assert db.value("select is_current from public.okr_periods where id = %s", (q1["id"],)) is False
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState), db.as_user(OWNER) as s:
        s.all("update public.okr_periods set is_current = false where id = %s", (q2["id"],))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState), db.as_user(OWNER) as s:
        s.all("delete from public.okr_periods where id = %s", (q2["id"],))
    with db.as_user(OWNER) as s:
        s.all("update public.okr_periods set is_current = true where id = %s", (q1["id"],))
        assert s.value("select count(*) from public.okr_periods where is_current") == 1


def test_status_and_trend_follow_progress_against_time(db: Db) -> None:
    kr = key_result(db, period(db, "Q1")["id"])["id"]  # a third of the period has gone
    assert status(db, kr)["status"] == "behind"
    with db.as_user(AGENT) as s:  # the owner records progress
        s.all(
            "insert into public.key_result_progress (tenant_id, key_result_id, value, recorded_by)"
            " values (%s, %s, 25, auth.uid())",
            (TENANT, kr),
        )
    assert status(db, kr)["status"] == "at_risk"
    db.sql(
        "insert into public.key_result_progress (tenant_id, key_result_id, value, recorded_at)"
        " values (%s, %s, 10, now() - interval '8 days')",
        (TENANT, kr),
    )  # a week ago it was 10
    with db.as_user(OWNER) as s:
        s.all(
            "insert into public.key_result_progress (tenant_id, key_result_id, value, recorded_by)"
            " values (%s, %s, 40, auth.uid())",
            (TENANT, kr),
        )
    assert status(db, kr) == {
        "status": "on_track",
        "trend": "up",
        "progress": Decimal("0.4000"),
        "current_value": Decimal("40.0000"),
    }
    with db.as_user(OWNER) as s:
        s.all(
            "insert into public.key_result_progress (tenant_id, key_result_id, value, recorded_by)"
            " values (%s, %s, 100, auth.uid())",
            (TENANT, kr),
        )
    assert status(db, kr)["status"] == "achieved"
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState), db.as_service() as s:
        s.all("update public.key_result_progress set value = 1 where key_result_id = %s", (kr,))


def test_progress_outlives_the_user_who_recorded_it(db: Db) -> None:
    """History is never edited, but a deleted user leaves it: their progress stays, unsigned."""
    kr = key_result(db, period(db, "Q1")["id"])["id"]
    leaver = db.create_user()
    db.sql("insert into public.key_result_progress (tenant_id, key_result_id, value, recorded_by)"
           " values (%s, %s, 5, %s)", (TENANT, kr, leaver))
    db.sql("delete from auth.users where id = %s", (leaver,))
    assert db.sql("select value, recorded_by from public.key_result_progress where key_result_id = %s",
                  (kr,)) == [{"value": 5, "recorded_by": None}]


def test_a_viewer_does_not_record_progress_of_a_result_they_do_not_own(db: Db) -> None:
    kr = key_result(db, period(db, "Q1")["id"])["id"]
    viewer = db.add_member(TENANT, "viewer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(viewer) as s:
        s.all(
            "insert into public.key_result_progress (tenant_id, key_result_id, value, recorded_by)"
            " values (%s, %s, 99, auth.uid())",
            (TENANT, kr),
        )


def won_deal(db: Db, value: int, status: str = "won", owner: str | None = AGENT_MEMBER) -> None:
    db.sql(
        """
      with p as (insert into public.pipelines (tenant_id, name)
                 values (%(t)s, 'P' || gen_random_uuid()) returning id),
           s as (insert into public.pipeline_stages (tenant_id, pipeline_id, name, kind)
                 select %(t)s, p.id, 'Fim', %(k)s from p returning id, pipeline_id)
      insert into public.deals (tenant_id, title, pipeline_id, stage_id, value, owner_id, lost_reason)
      select %(t)s, 'Contrato', s.pipeline_id, s.id, %(v)s, %(o)s,
             case %(k)s when 'lost' then 'preço' end from s
    """,
        {"t": TENANT, "k": status, "v": value, "o": owner},
    )


def test_linked_key_results_move_with_real_data(db: Db) -> None:
    q1 = period(db, "Q1")["id"]
    revenue = key_result(db, q1, metric="won_deal_value", target=10000, team=TEAM)["id"]
    adherence = key_result(db, q1, metric="avg_playbook_score", target=80)["id"]
    won_deal(db, 3000)
    won_deal(db, 5000, owner=None)  # not the team's
    done_insight(db, 70)
    assert run_job(db, "okr_metrics") == 2
    assert status(db, revenue)["current_value"] == 3000
    assert status(db, adherence)["current_value"] == 70
    assert run_job(db, "okr_metrics") == 0  # unchanged: nothing recorded
    sources = db.sql("select source from public.key_result_progress order by source")
    assert sources == [{"source": "coach"}, {"source": "crm"}]


def done_insight(db: Db, score: int) -> None:
    """An analysed call of the agent with this playbook score."""
    call = db.value(
        "insert into public.coaching_calls (tenant_id, seller_id, occurred_at, transcript)"
        " values (%s, %s, now(), 'Vendedor: oi ' || %s) returning id",
        (TENANT, AGENT_MEMBER, score),
    )
    db.sql(
        "update public.conversation_insights set status = 'done', playbook_score = %s, completed_at = now()"
        " where call_id = %s",
        (score, call),
    )


def alerts(db: Db, kind: str) -> list[dict[str, Any]]:
    return db.sql("select payload, dedupe_key from public.alerts where type = %s", (kind,))


def test_deal_stuck_once_per_stay_in_a_stage(db: Db) -> None:
    db.sql(
        """
      with p as (insert into public.pipelines (tenant_id, name) values (%(t)s, 'Vendas') returning id),
           s as (insert into public.pipeline_stages (tenant_id, pipeline_id, name, stuck_after)
                 select %(t)s, p.id, 'Proposta', interval '5 days' from p returning id, pipeline_id)
      insert into public.deals (tenant_id, title, pipeline_id, stage_id, value)
      select %(t)s, 'Plano anual', s.pipeline_id, s.id, 1200 from s""",
        {"t": TENANT},
    )
    assert run_job(db, "coaching_alerts", "now() + interval '4 days'") == 0
    run_job(db, "coaching_alerts", "now() + interval '6 days'")
    run_job(db, "coaching_alerts", "now() + interval '7 days'")
    assert len(alerts(db, "deal_stuck")) == 1
    db.sql('update public.tenants set settings = settings || \'{"coaching": {"deal_stuck_days": 2}}\'')
    db.sql("update public.pipeline_stages set stuck_after = null")
    run_job(db, "coaching_alerts", "now() + interval '3 days'")
    assert len(alerts(db, "deal_stuck")) == 1  # same stay in the stage: still one


def test_low_adherence_target_risk_and_conversion_drop(db: Db) -> None:
    playbook(db)
    for score in (40, 50, 55, 45, 60):
        done_insight(db, score)
    key_result(db, period(db, "Q1")["id"])
    for _ in range(3):  # four weeks ago: three wins
        won_deal(db, 100)
    db.sql(
        "alter table public.deals disable trigger _200_prepare;"  # past closings: it keeps closed_at
        " update public.deals set closed_at = now() - interval '20 days';"
        " alter table public.deals enable trigger _200_prepare"
    )
    won_deal(db, 100)
    for _ in range(3):  # this week: one win in four
        won_deal(db, 100, status="lost")
    run_job(db, "coaching_alerts")
    run_job(db, "coaching_alerts")
    low = alerts(db, "low_playbook_adherence")
    assert len(low) == 1 and low[0]["payload"]["member_id"] == AGENT_MEMBER
    assert low[0]["payload"]["average"] == 50
    assert len(alerts(db, "target_risk")) == 1
    drop = alerts(db, "conversion_drop")
    assert len(drop) == 1 and drop[0]["payload"]["rate"] == 0.25 and drop[0]["payload"]["baseline"] == 1
    assert json.dumps(drop)  # payloads are plain JSON
