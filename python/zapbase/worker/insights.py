"""The insight loop: claims pending conversation analyses and runs each through its tenant's
AI gateway (feature coaching_insight: budget, usage log and fallback as any call), then records
the outcome, which the database checks again (evidence must quote the conversation).

`NOTIFY zapbase_insights` (a call uploaded, an insight requested) wakes it; it polls as a
fallback, and an analysis whose worker died returns to the queue when its lease expires.
"""

from __future__ import annotations

import json
import logging

from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.coaching import PROMPT_VERSION, InsightJob, answer_schema, build_request, judge
from zapbase.db.pool import Pool
from zapbase.worker.loop import QueueLoop, record_outcome

__all__ = ["INSIGHTS_CHANNEL", "InsightLoop"]

_logger = logging.getLogger(__name__)

INSIGHTS_CHANNEL = "zapbase_insights"
_CLAIM = "select * from public.coaching_insight_claim(%s, %s, %s)"
_RECORD = "select public.coaching_insight_record(%s, %s, %s, %s::jsonb, %s, %s, %s) as status"


class InsightLoop(QueueLoop):
    """Claims pending analyses and runs them through the tenant's gateway, one at a time.

    **Parameters**

    * **pool** - service-role connections.
    * **gateways** - the AI gateway of each tenant (its own keys or the platform's).
    * **worker_id** - who holds the leases.
    * **batch_size** - analyses claimed per round.
    * **lease_seconds** - how long a claimed analysis is ours (a crashed worker's returns after it).
    """

    def __init__(
        self,
        *,
        pool: Pool,
        gateways: Gateways,
        worker_id: str,
        batch_size: int = 4,
        lease_seconds: int = 300,
        poll_interval: float = 5.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._gateways = gateways
        self._worker_id = worker_id
        self._batch_size = batch_size
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_CLAIM, (self._worker_id, self._batch_size,
                                                      self._lease_seconds))).fetchall()  # fmt: skip
        for row in rows:
            await self.analyse(InsightJob.from_row(row))
        return len(rows)

    async def analyse(self, job: InsightJob) -> str:
        """Run one claimed analysis and record its outcome; returns the stored status."""
        async with self._pool.connection() as conn:
            policy = await load_policy(conn, job.tenant_id, None)
            gateway = await self._gateways.for_tenant(conn, job.tenant_id)
        answer = await gateway.complete_json(build_request(job), policy, schema=answer_schema(job.dimensions),
                                             name="conversation_insight")  # fmt: skip
        verdict = judge(answer)
        if verdict.status != "done":
            _logger.warning("insight %s: %s (%s)", job.insight_id, verdict.status, verdict.error)
        params = (job.insight_id, job.attempt, verdict.status,
                  json.dumps(verdict.result) if verdict.result is not None else None,
                  verdict.model, PROMPT_VERSION, verdict.error)  # fmt: skip
        row = await record_outcome(self._pool, _RECORD, params, within=self._lease_seconds)
        return str(row["status"]) if row else verdict.status
