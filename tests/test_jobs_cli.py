"""`zapbase jobs list|run` as an operator runs them against DATABASE_URL."""

from __future__ import annotations

from support import Db
from test_db_cli import assert_clean_failure, run


def test_jobs_list_and_run(db: Db) -> None:
    env = {"DATABASE_URL": db.url}
    listed = run("jobs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "conversations_expire_idle" in listed.stdout and "*/5 * * * *" in listed.stdout
    ran = run("jobs", "run", "session_context_cleanup", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "session_context_cleanup: 0 row(s)" in ran.stdout
    status = db.value("select status from public.job_runs where job_name = 'session_context_cleanup'")
    assert status == "succeeded"
    assert "succeeded (0 rows)" in run("jobs", "list", env=env).stdout
    evicted = run("jobs", "run", "tts_cache_evict", env=env)  # a worker job: its handler runs here
    assert evicted.returncode == 0, evicted.stderr
    assert_clean_failure(run("jobs", "run", "nope", env=env), "no job named 'nope'")
