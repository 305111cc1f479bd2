"""`zapbase knowledge` end to end: typer's CliRunner with DATABASE_URL on the test database."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from support import Db
from zapbase.cli import app

from .knowledge_support import TENANT_A, new_tenant

FIXTURES = Path(__file__).parents[1] / "knowledge" / "fixtures"
FILES = [str(FIXTURES / name) for name in ("loja.md", "loja.html", "loja.txt")]
SEED = str(Path(__file__).parents[2] / "seed" / "knowledge")

Cli = Callable[..., Result]


@pytest.fixture
def cli(db: Db, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("COLUMNS", "220")
    for name in ("OPENAI_API_KEY", "ZAPBASE_EMBEDDER"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, ["knowledge", *args])

    return run


def rows(output: str, bar: str = "│") -> list[list[str]]:
    """The body rows (or with bar="┃", the header) of rich tables in `output`."""
    return [[cell.strip() for cell in line.strip().strip(bar).split(bar)]
            for line in output.splitlines() if line.strip().startswith(bar)]  # fmt: skip


def test_knowledge_add_stores_the_files_and_skips_them_the_second_time(cli: Cli, db: Db) -> None:
    first = cli("add", *FILES)
    assert first.exit_code == 0, first.output
    assert [r[1] for r in rows(first.output)] == ["created"] * 3
    stored = db.sql("select s.title, s.status, s.chunk_count, count(c.id) as chunks"
                    " from public.knowledge_sources s join public.document_chunks c on c.source_id = s.id"
                    " where s.tenant_id = %s group by s.id order by s.title", (TENANT_A,))
    assert [r["title"] for r in stored] == ["Ajuda — Loja Demo", "Loja Demo", "Trocas e devoluções"]
    assert all(r["status"] == "ready" and r["chunk_count"] == r["chunks"] > 0 for r in stored)

    again = cli("add", *FILES)
    assert again.exit_code == 0, again.output
    assert [r[1] for r in rows(again.output)] == ["unchanged"] * 3
    assert [r[2] for r in rows(again.output)] == [r[2] for r in rows(first.output)]
    assert db.value("select count(*) from public.knowledge_sources") == 3
    assert db.value("select count(*) from public.document_chunks") == sum(r["chunks"] for r in stored)


def test_knowledge_add_takes_folders_and_refuses_unknown_files(cli: Cli, db: Db, tmp_path: Path) -> None:
    result = cli("add", SEED)
    assert result.exit_code == 0, result.output
    assert len(rows(result.output)) == db.value("select count(*) from public.knowledge_sources") == 4
    odd = tmp_path / "planilha.xlsx"
    odd.write_bytes(b"PK")
    refused = cli("add", str(odd))
    assert refused.exit_code == 2 and "unsupported file type" in refused.output
    assert db.value("select count(*) from public.knowledge_sources") == 4


def test_knowledge_search_prints_the_fused_ranking_with_the_answer_first(cli: Cli) -> None:
    assert cli("add", SEED).exit_code == 0
    result = cli("search", "tem desconto no pix?", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "vectors: local:hashing-v1" in result.output
    [header], body = rows(result.output, "┃"), rows(result.output)
    assert header == ["rank", "score", "full-text rank", "vector rank", "heading", "snippet"]
    assert [r[0] for r in body] == ["1", "2", "3"]
    _, score, fts, vector, heading, snippet = body[0]
    assert heading == "Formas de pagamento › PIX" and "5% de desconto" in snippet
    assert float(score) > 0 and (fts, vector) == ("1", "1")


def test_knowledge_list_and_remove(cli: Cli, db: Db) -> None:
    cli("add", FILES[0])
    source_id = str(db.value("select id from public.knowledge_sources"))
    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    assert any(r[0] == source_id and r[1] == "Loja Demo" and r[2] == "ready" for r in rows(listed.output))
    removed = cli("remove", source_id)
    assert removed.exit_code == 0 and f"removed {source_id}" in removed.output
    assert db.value("select count(*) from public.document_chunks") == 0
    missing = cli("remove", source_id)
    assert missing.exit_code == 1 and "has no source" in missing.output


def test_knowledge_keeps_tenants_apart(cli: Cli, db: Db) -> None:
    other, _ = new_tenant(db, "Atacado Sul")
    slug = db.value("select slug from public.tenants where id = %s", (other,))
    assert cli("add", FILES[2], "--tenant", slug).exit_code == 0
    theirs = str(db.value("select id from public.knowledge_sources where tenant_id = %s", (other,)))
    assert theirs not in cli("list").output
    assert theirs in cli("list", "--tenant", slug).output
    found = cli("search", "reembolso", "--tenant", "loja-demo")
    assert found.exit_code == 0 and "nothing found" in found.output
    assert re.search(r"Reembolso em até 5 dias", cli("search", "reembolso", "--tenant", slug).output)
    refused = cli("remove", theirs)  # the default tenant is loja-demo
    assert refused.exit_code == 1
    assert db.value("select count(*) from public.knowledge_sources where id = %s", (theirs,)) == 1


def test_knowledge_names_an_unknown_tenant(cli: Cli) -> None:
    result = cli("list", "--tenant", "nao-existe")
    assert result.exit_code == 1 and "no tenant with slug or id 'nao-existe'" in result.output
