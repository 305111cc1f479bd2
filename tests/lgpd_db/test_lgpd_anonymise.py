"""The LGPD proof: a contact whose personal data sits in every place Zapbase keeps data is
exported, then anonymised; a scan of EVERY text and jsonb column of EVERY table (read
from the catalog, so tables added later are scanned too) and of the storage directory
finds none of it, and the export held every place the scan found it before."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from campaigns_db.campaign_support import campaign as draft_campaign
from campaigns_db.campaign_support import template
from coaching_db.coaching_support import AGENT_MEMBER, TEAM
from coaching_db.coaching_support import CONTENT as PLAYBOOK
from commerce_db.hotmart_corpus import create_integration, event
from flows_db.flow_support import create_flow, graph
from support import Db, Session
from whatsapp_db.webhooks import AGENT, OWNER, TENANT, body, change, ingest, msg, profile, text
from zapbase.db.pool import Connect
from zapbase.lgpd import purge_storage
from zapbase.storage import LocalStorage

pytestmark = pytest.mark.anyio

WA_ID = "5511987654321"
NAME = "Joana Pereira Lima"
EMAIL = "joana.lima@exemplo.com.br"
CPF = "123.456.789-09"
ADDRESS = "Rua das Acácias, 742"
# every way the scan looks for her; the seed writes each somewhere
NEEDLES = [NAME, "JOANA PEREIRA LIMA", EMAIL, CPF, "12345678909", ADDRESS, WA_ID, "+5511987654321",
           "+55 11 98765-4321", "(11) 98765-4321", "11987654321", "98765-4321"]
SKIP_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def scan(db: Db) -> dict[str, set[str]]:
    """{"schema.table.column": needles found} over every column of every table that can hold
    text: string types and domains over them (category S), json, jsonb, and arrays of these."""
    columns = db.sql("""
        select n.nspname as schema, c.relname as table, a.attname as column
          from pg_attribute a join pg_class c on c.oid = a.attrelid
          join pg_namespace n on n.oid = c.relnamespace
          join pg_type t on t.oid = a.atttypid
          left join pg_type e on e.oid = t.typelem and t.typcategory = 'A'
         where c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
           and n.nspname <> all(%s) and n.nspname not like 'pg_temp%%'
           and (coalesce(e.typcategory, t.typcategory) = 'S'
                or coalesce(nullif(e.typbasetype, 0), e.oid, nullif(t.typbasetype, 0), t.oid)
                   in ('json'::regtype, 'jsonb'::regtype))""",
        (list(SKIP_SCHEMAS),))
    hits: dict[str, set[str]] = {}
    for col in columns:
        place = f"{col['schema']}.{col['table']}.{col['column']}"
        query = psycopg.sql.SQL("select n from unnest(%s::text[]) n where exists ("
                                "select 1 from {}.{} t where t.{}::text ilike '%%' || n || '%%')").format(
            psycopg.sql.Identifier(col["schema"]), psycopg.sql.Identifier(col["table"]),
            psycopg.sql.Identifier(col["column"]))
        found = {r["n"] for r in db.sql(query.as_string(), (NEEDLES,))}
        if found:
            hits[place] = found
    return hits


def scan_files(root: Path) -> list[str]:
    return [f"{path}: {n}" for path in root.rglob("*") if path.is_file()
            for n in NEEDLES if n.encode() in path.read_bytes()]


def seed_everywhere(db: Db, media: Path) -> dict[str, Any]:
    """Her data in every place the module lists, the way each gets there."""
    with db.as_user(OWNER) as s:
        s.all("select public.create_webhook_endpoint(%s, 'CRM', 'https://crm.example.com/hook', '{*}')",
              (TENANT,))
    spoken = (f"Oi, sou {NAME}, CPF {CPF}, e-mail {EMAIL}, moro na {ADDRESS}. "
              "Meu celular é (11) 98765-4321 ou +55 11 98765-4321.")
    ingest(db, body(change(contacts=[profile(WA_ID, NAME)], messages=[text(spoken, WA_ID)])))
    contact = db.value("select id from public.contacts where wa_id = %s", (WA_ID,))
    row = db.sql("select conversation_id, id from public.messages where contact_id = %s", (contact,))[0]
    conv, first = row["conversation_id"], row["id"]
    ingest(db, body(change(contacts=[profile(WA_ID, NAME)], messages=[
        msg("image", {"id": "media-1", "mime_type": "image/jpeg", "caption": f"RG de {NAME}"}, WA_ID),
        msg("audio", {"id": "media-2", "mime_type": "audio/ogg", "voice": True}, WA_ID)])))
    image, audio = (db.value("select id from public.messages where contact_id = %s and type = %s",
                             (contact, t)) for t in ("image", "audio"))
    key = f"whatsapp-media/{TENANT}/{conv}/{image}.jpg"
    (media / key).parent.mkdir(parents=True, exist_ok=True)
    (media / key).write_bytes(f"JPEG... {NAME} {CPF}".encode())
    db.sql("update public.messages set media_storage_path = %s where id = %s", (key, image))
    db.sql("update public.messages set transcription = %s where id = %s",
           (f"aqui é a {NAME}, meu CPF é 12345678909", audio))
    with db.as_service() as s:
        reply = s.value("select id from public.whatsapp_queue_reply(%s, %s)", (conv, json.dumps(
            {"type": "text", "text": {"body": f"Obrigado, {NAME}! Enviaremos para {ADDRESS}."}})))
        s.value("select public.whatsapp_mark_sent(%s, 'wamid.reply-1')", (reply,))
    ingest(db, body(change(statuses=[{"id": "wamid.reply-1", "status": "delivered", "timestamp": "1764400010",
                                      "recipient_id": WA_ID}])))
    db.sql("""update public.contacts set name = %s, email = %s, cpf = '12345678909', notes = %s,
                     attributes = jsonb_build_object('endereco', %s::text, 'telefone', '(11) 98765-4321')
               where id = %s""", (NAME, EMAIL, f"Cliente {NAME} prefere e-mail", ADDRESS, contact))
    db.sql("update public.session_context set summary = %s where conversation_id = %s",
           (f"{NAME} quer entrega na {ADDRESS}", conv))
    db.sql("update public.conversations set csat_comment = %s, handoff_reason = %s where id = %s",
           (f"Atendimento ótimo - {NAME}", f"{NAME} pediu humano", conv))
    with db.as_user(OWNER) as s:
        s.value("select public.record_contact_consent(%s, 'consent_given', %s)",
                (contact, f"{NAME} assinou o termo, e-mail {EMAIL}"))
    model = db.value("select id from public.ai_models order by gateway_id limit 1")
    db.sql("""insert into public.ai_usage (tenant_id, conversation_id, message_id, phone_hash, model_id,
                                          provider, model, api_type, feature, outcome, input_tokens, cost_usd,
                                          cost_brl, metadata, error_message)
              select %s, %s, %s, c.phone_hash, %s, 'anthropic', 'claude', 'chat', 'reply', 'success', 120,
                     0.0012, 0.0066, jsonb_build_object('prompt_preview', %s::text), %s
                from public.contacts c where c.id = %s""",
           (TENANT, conv, first, model, f"Cliente {NAME}", f"timeout para {EMAIL}", contact))
    db.sql("""insert into public.response_cache (tenant_id, cache_key, model_id, response_text, expires_at)
              values (%s, repeat('a', 64), %s, %s, now() + interval '1 day')""",
           (TENANT, model, f"{NAME}, seu pedido saiu"))
    source = db.value("""insert into public.knowledge_sources (tenant_id, title, kind, content)
                         values (%s, 'Casos resolvidos', 'text', %s) returning id""",
                      (TENANT, f"Caso da {NAME} (+55 11 98765-4321): troca aprovada."))
    db.sql("""insert into public.document_chunks (tenant_id, source_id, position, content, content_hash)
              values (%s, %s, 0, %s, repeat('b', 64))""",
           (TENANT, source, f"Caso da {NAME} (+55 11 98765-4321): troca aprovada."))
    db.sql("""insert into public.audit_log (tenant_id, actor_role, action, resource_type, resource_id,
                                          changes)
              values (%s, 'authenticated', 'update', 'contacts', %s, jsonb_build_object('email',
                      jsonb_build_object('old', null, 'new', %s::text))),
                     (%s, 'authenticated', 'update', 'tickets', gen_random_uuid(),
                      jsonb_build_object('subject', jsonb_build_object('new', %s::text)))""",
           (TENANT, contact, EMAIL, TENANT, f"Troca para CPF {CPF}"))
    db.sql("""insert into public.alerts (tenant_id, type, priority, title, message, dedupe_key)
              values (%s, 'custom', 'medium', 'Cliente VIP', %s, 'vip-joana')""",
           (TENANT, f"{NAME} ligou de 11987654321"))
    db.sql("""insert into public.webhook_attempts (tenant_id, delivery_id, endpoint_id, attempt, status_code,
                                                   response_body)
              select d.tenant_id, d.id, d.endpoint_id, 1, 400, %s from public.webhook_deliveries d
               where d.tenant_id = %s limit 1""", (f"erro: contato {NAME} duplicado", TENANT))
    attachment = seed_modules(db, media, contact, conv)
    later = seed_later_modules(db, contact, conv, first)
    recording = seed_recording(db, media, later["deal"])
    seed_staff_text(db)
    return {"contact": contact, "conversation": conv, "media_key": key, "attachment_key": attachment,
            "recording_key": recording, **later}


def seed_recording(db: Db, media: Path, deal: Any) -> str:
    """A recorded call of her deal waiting for its transcription, and an AI playbook draft
    whose description quotes her."""
    key = f"call-recordings/{TENANT}/calls/joana.mp3"
    with db.as_user(OWNER) as s:
        s.all("""insert into public.coaching_calls (tenant_id, seller_id, deal_id, title, occurred_at,
                                                    audio_storage_path, audio_mime_type)
                  values (%s, %s, %s, 'Ligação gravada', now() - interval '30 minutes', %s, 'audio/mpeg')""",
              (TENANT, AGENT_MEMBER, deal, key))
        s.one("select * from public.request_playbook_draft(%s, %s, 'sales', 'spin', %s)",
              (TENANT, TEAM, f"Vendas para clientes como {NAME}, CPF {CPF}"))
    (media / key).parent.mkdir(parents=True, exist_ok=True)
    (media / key).write_bytes(f"ID3... {NAME} {CPF}".encode())
    return key


def seed_staff_text(db: Db) -> None:
    """Text staff wrote that names her: an objective and its key result, a progress note (a
    history never edited) and an activated playbook (frozen)."""
    with db.as_user(OWNER) as s:
        period = s.value("insert into public.okr_periods (tenant_id, label, starts_on, ends_on)"
                         " values (%s, 'Q4', current_date - 30, current_date + 60) returning id", (TENANT,))
        objective = s.value("insert into public.objectives (tenant_id, period_id, title, area, description)"
                            " values (%s, %s, 'Reter clientes', 'cs', %s) returning id",
                            (TENANT, period, f"Começar por {NAME}, CPF {CPF}"))
        result = s.value("insert into public.key_results (tenant_id, objective_id, title, unit, target)"
                         " values (%s, %s, %s, 'number', 10) returning id",
                         (TENANT, objective, f"Renovar {NAME}"))
        s.all("insert into public.key_result_progress (tenant_id, key_result_id, value, note)"
              " values (%s, %s, 1, %s)", (TENANT, result, f"{NAME} renovou; telefone (11) 98765-4321"))
        s.all("insert into public.playbooks (tenant_id, team_id, name, function, methodology, status,"
              " content, description) values (%s, %s, 'Renovações', 'cs', 'spiced', 'active', %s, %s)",
              (TENANT, TEAM, json.dumps(PLAYBOOK), f"Modelo: a renovação de {NAME}"))


def seed_modules(db: Db, media: Path, contact: Any, conv: Any) -> str:
    """Her data in the modules built on contacts, through their entry points (a flow run's
    state is written by the worker's interpreter: inserted as it writes it)."""
    with db.as_user(OWNER) as s:
        ticket = s.one("select * from public.create_ticket(%s, %s, %s)",
                       (conv, f"Troca do pedido de {NAME}", f"CPF {CPF}, entregar na {ADDRESS}"))
        s.all("insert into public.ticket_notes (tenant_id, ticket_id, body) values (%s, %s, %s)",
              (TENANT, ticket["id"], f"Ligar para (11) 98765-4321, falar com {NAME}"))
        path = f"{TENANT}/tickets/{ticket['id']}/rg.pdf"
        s.all("insert into public.ticket_attachments (tenant_id, ticket_id, storage_path, file_name)"
              " values (%s, %s, %s, 'rg.pdf')", (TENANT, ticket["id"], path))
        s.one("select * from public.create_lead(contact_id => %s, name => %s, phone => '+5511987654321',"
              " email => %s, interest => %s)", (contact, NAME, EMAIL, f"Entrega na {ADDRESS}"))
        s.all("insert into public.appointments (tenant_id, contact_id, type, starts_at, ends_at, notes)"
              " values (%s, %s, 'demo', now() + interval '1 day', now() + interval '25 hours', %s)",
              (TENANT, contact, f"Demo com {NAME}, e-mail {EMAIL}"))
    campaign = draft_campaign(db, template(db))
    with db.as_user(OWNER) as s:
        s.one("select * from public.import_campaign_csv(%s, %s, 'clientes.csv')",
              (campaign, f"telefone\n{WA_ID}\n+{WA_ID},{NAME}"))
        s.one("select * from public.start_campaign(%s)", (campaign,))
    attachment = f"ticket-attachments/{path}"
    (media / attachment).parent.mkdir(parents=True, exist_ok=True)
    (media / attachment).write_bytes(f"%PDF RG {NAME} {CPF}".encode())
    # a purchase: Hotmart's postback names her as the buyer (found by her CPF)
    integration = create_integration(db)
    db.sql("insert into public.products (tenant_id, name, hotmart_product_id)"
           " values (%s, 'Curso', '4774438')", (TENANT,))
    purchase = event("purchase_approved", data__buyer__name=NAME, data__buyer__email=EMAIL,
                     data__buyer__document="12345678909", data__buyer__address__address=ADDRESS)
    with db.as_service() as s:
        s.value("select public.hotmart_ingest(%s, %s)", (integration, Jsonb(purchase)))
    # a flow that asked for her CPF, and an automation suggestion addressed to her
    flow, version = create_flow(db, "Cadastro", graph({"id": "start", "type": "start"}, edges=[]),
                                publish=False)
    answers = Jsonb({"cpf": CPF, "nome": NAME, "endereco": ADDRESS})
    run = db.value("""insert into public.flow_executions (tenant_id, flow_id, flow_version_id,
                          conversation_id, contact_id, started_by, expires_at, variables, last_input)
                      values (%s, %s, %s, %s, %s, 'keyword', now() + interval '1 day', %s, %s)
                      returning id""", (TENANT, flow, version, conv, contact, answers, CPF))
    db.sql("""insert into public.flow_steps (tenant_id, execution_id, flow_id, flow_version_id, block_id,
                                           block_type, input, outcome)
              values (%s, %s, %s, %s, 'cpf', 'input', %s, 'saved')""", (TENANT, run, flow, version, CPF))
    with db.as_user(OWNER) as s:
        s.all("insert into public.automation_rules (tenant_id, name, event_type, conditions, actions, mode)"
              " values (%s, 'boas-vindas', 'message.received', '{}', %s, 'suggest')",
              (TENANT, Jsonb([{"type": "send_text", "text": "Olá {{contact.name}}, já vamos atender!"}])))
    ingest(db, body(change(contacts=[profile(WA_ID, NAME)], messages=[text("alguém aí?", WA_ID)])))
    with db.as_service() as s:
        while s.value("select public.automation_run(500)"):
            pass
    return attachment


CALL = (f"Vendedor: Bom dia, falo com {NAME}?\nCliente: Sim, meu CPF é {CPF} e moro na {ADDRESS}.\n"
        f"Vendedor: Mando a proposta para {EMAIL}?\nCliente: Pode, ou no (11) 98765-4321.")


def analyse(db: Db, needles: dict[Any, str]) -> dict[Any, dict[str, Any]]:
    """The coaching worker's round: claims the pending insights, answers those of `needles`
    ({insight id: a text of one of its lines}) quoting it; returns the claims."""
    with db.as_service() as s:
        claimed = s.all("select * from public.coaching_insight_claim('lgpd-test', 50)")
        jobs = {j["insight_id"]: j for j in claimed}
        for insight, needle in needles.items():
            line = next(line for line in jobs[insight]["lines"] if needle in line["text"])
            quote = {"message_id": line["id"], "quote": needle}
            result = {"summary": f"{NAME} quer a proposta; mora na {ADDRESS}.", "sentiment": "positive",
                      "methodology": {"situation": {"score": 8, "evidence": [quote]}},
                      "key_moments": [{**quote, "note": f"{NAME} deu o CPF"}],
                      "suggested_actions": [f"Ligar para {NAME} amanhã"]}
            assert record(s, jobs[insight], result) == "done"
    return jobs


def record(s: Session, job: dict[str, Any], result: dict[str, Any]) -> str:
    """The coaching worker's answer for a claimed insight."""
    return str(s.value("select public.coaching_insight_record(%s, %s, 'done', %s, 'openai/gpt-4o-mini')",
                       (job["insight_id"], job["attempt"], Jsonb(result))))


def seed_later_modules(db: Db, contact: Any, conv: Any, first: Any) -> dict[str, Any]:
    """Her data in intents, coaching and chat search, through their entry points: the
    classifier's answer for her first message, an intent whose example quotes her; a call
    of her deal and one that only mentions her, analysed, a call of her lead whose analysis
    is still running, and an analysed WhatsApp conversation; a chat search that asked about
    her (the worker's final write)."""
    with db.as_user(OWNER) as s:
        s.all("insert into public.intents (tenant_id, name, description, examples)"
              " values (%s, 'troca', 'Cliente quer trocar um produto', %s)",
              (TENANT, [f"Sou {NAME}, quero trocar", "quero trocar o tênis"]))
    with db.as_service() as s:
        ask = s.value("select public.intent_begin(%s)", (first,))
        s.value("select public.intent_record(%s, %s, 'troca', 0.9)", (first, ask["key"]))
    calls = """insert into public.coaching_calls (tenant_id, seller_id, deal_id, title, occurred_at,
                                                  transcript, notes)
               values (%s, %s, %s, %s, now() - interval '1 hour', %s, %s) returning id"""
    with db.as_user(OWNER) as s:
        pipeline = s.value("insert into public.pipelines (tenant_id, name) values (%s, 'Cursos')"
                           " returning id", (TENANT,))
        stage = s.value("insert into public.pipeline_stages (tenant_id, pipeline_id, name)"
                        " values (%s, %s, 'Proposta') returning id", (TENANT, pipeline))
        deal = s.value("""insert into public.deals (tenant_id, contact_id, lead_id, title, pipeline_id,
                                                    stage_id, value)
                          select %s, %s, l.id, 'Curso anual', %s, %s, 1200 from public.leads l
                           where l.contact_id = %s returning id""",
                       (TENANT, contact, pipeline, stage, contact))
        call = s.value(calls, (TENANT, AGENT_MEMBER, deal, f"Demo com {NAME}", CALL,
                               f"Retornar para {NAME} no +55 11 98765-4321"))
        other = s.value(calls, (TENANT, AGENT_MEMBER, None, "Demo com Carla",
                                f"Cliente: Quem me indicou foi a {NAME}, cliente de vocês.", None))
        waiting = s.value("""insert into public.coaching_calls (tenant_id, seller_id, lead_id, occurred_at,
                                                               transcript)
                             select %s, %s, l.id, now(), %s from public.leads l where l.contact_id = %s
                             returning id""",
                          (TENANT, AGENT_MEMBER, f"Cliente: Aqui é {NAME} de novo.", contact))
        asked = s.one("select * from public.request_insight(conversation_id => %s)", (conv,))
    pending = {str(i["call_id"] or i["conversation_id"]): i["id"] for i in db.sql(
        "select id, call_id, conversation_id from public.conversation_insights where status = 'pending'"
        " and (call_id = any(%s) or conversation_id = %s)", ([call, other, waiting], conv))}
    assert pending[str(conv)] == asked["id"]
    jobs = analyse(db, {pending[str(call)]: CPF, pending[str(other)]: NAME, pending[str(conv)]: f"CPF {CPF}"})
    with db.as_user(AGENT) as s:
        search = s.value("select public.chat_search_ask(%s, %s)", (TENANT, f"Qual o telefone da {NAME}?"))
    sql = f"SELECT name, phone FROM public.chat_leads WHERE name = '{NAME}' LIMIT 200"
    with db.as_service() as s:
        assert s.one("select * from public.chat_search_claim('lgpd-test', 60)")["id"] == search
        s.all("""update public.chat_searches set status = 'answered', generated_sql = %s, executed_sql = %s,
                        check_verdict = 'ok', results = %s, row_count = 1, analysis = %s, finished_at = now(),
                        lease_until = null
                  where id = %s""",
              (sql, sql, Jsonb({"columns": ["name", "phone"], "rows": [[NAME, "+5511987654321"]]}),
               f"{NAME} tem o telefone +55 11 98765-4321.", search))
    return {"intent_key": ask["key"], "deal": deal, "call": call, "search": search,
            "running": jobs[pending[str(waiting)]]}


async def test_anonymisation_leaves_no_trace_and_the_export_held_every_place(
        db: Db, connect: Connect, tmp_path: Path) -> None:
    seeded = seed_everywhere(db, tmp_path)
    before = scan(db)
    assert before, "the seed put her data nowhere"
    for place in ("public.contacts.name", "public.messages.content", "public.messages.transcription",
                  "public.session_context.summary", "public.session_context.recent_messages",
                  "public.document_chunks.content", "public.inbound_events.payload",
                  "public.audit_log.changes", "public.events.payload", "public.ai_usage.metadata",
                  "public.webhook_attempts.response_body", "public.contact_consents.evidence",
                  "public.message_status_events.raw", "public.tickets.title", "public.tickets.description",
                  "public.ticket_notes.body", "public.leads.name",
                  "public.leads.phone", "public.appointments.notes", "public.hotmart_events.payload",
                  "public.flow_executions.variables", "public.flow_executions.last_input",
                  "public.flow_steps.input",
                  "public.campaign_recipients.wa_id", "public.import_logs.errors",
                  "public.automation_executions.actions", "public.dispatch_queue.preview",
                  "public.intents.examples", "public.coaching_calls.transcript",
                  "public.coaching_calls.title", "public.coaching_calls.notes",
                  "public.coaching_call_lines.text",
                  "public.conversation_insights.summary", "public.conversation_insights.methodology_scores",
                  "public.conversation_insights.key_moments",
                  "public.conversation_insights.suggested_actions", "public.chat_searches.question",
                  "public.chat_searches.executed_sql", "public.chat_searches.results",
                  "public.chat_searches.analysis", "public.playbook_drafts.description",
                  "public.objectives.description", "public.key_results.title",
                  "public.key_result_progress.note", "public.playbooks.description"):
        assert place in before, f"the seed missed {place}"
    running = seeded["running"]
    insights = """select status, methodology_score, cost_usd from public.conversation_insights
                   where id <> %s order by created_at, id"""
    scores = db.sql(insights, (running["insight_id"],))
    totals = db.sql("""select count(*) as messages, sum(input_tokens) as tokens, sum(cost_brl) as cost
                         from public.messages m left join public.ai_usage u on u.message_id = m.id
                        where m.contact_id = %s""", (seeded["contact"],))[0]

    with db.as_user(OWNER) as s:
        export = s.value("select public.lgpd_export_contact(%s)", (seeded["contact"],))
    for place, needles in before.items():
        schema, table, _ = place.split(".")
        assert schema == "public", f"{place} holds her data outside public"
        assert table in export["tables"], f"the export misses {table}"
        text_ = json.dumps(export["tables"][table], ensure_ascii=False).lower()
        assert any(n.lower() in text_ for n in needles), f"the export's {table} lacks what {place} holds"
    assert export["storage_objects"] == [seeded[k] for k in ("media_key", "attachment_key", "recording_key")]
    # what holds no readable text of hers is exported too: the classifier's answer for her message
    assert [c["key"] for c in export["tables"]["intent_cache"]] == [seeded["intent_key"]]
    assert [h["deal_id"] for h in export["tables"]["deal_stage_history"]] == [str(seeded["deal"])]

    with db.as_user(OWNER) as s:
        result = s.value("select public.lgpd_anonymise_contact(%s, %s)",
                         (seeded["contact"], "Pedido por e-mail em 03/12, protocolo 991"))
    assert result["storage_objects"] == 3
    assert await purge_storage(connect, LocalStorage(tmp_path)) == 3

    assert scan(db) == {}
    assert scan_files(tmp_path) == []
    assert not (tmp_path / seeded["media_key"]).exists()
    assert not (tmp_path / seeded["attachment_key"]).exists()
    assert not (tmp_path / seeded["recording_key"]).exists()
    # her recording is gone, so is its transcription: nothing left for the worker to claim
    with db.as_service() as s:
        assert s.all("select * from public.coaching_transcription_claim('lgpd-test', 5, 60)") == []
    after = db.sql("""select count(*) as messages, sum(input_tokens) as tokens, sum(cost_brl) as cost
                        from public.messages m left join public.ai_usage u on u.message_id = m.id
                       where m.contact_id = %s""", (seeded["contact"],))[0]
    assert after == totals  # counts and costs stay
    assert db.sql(insights, (running["insight_id"],)) == scores  # none lost, queued or paid for; scores stay
    # an analysis running meanwhile would store what was removed: it failed, its answer is refused
    with db.as_service() as s:
        assert record(s, running, {"summary": f"{NAME} ligou de novo."}) == "failed"
    assert db.value("select summary from public.conversation_insights where id = %s",
                    (running["insight_id"],)) is None
    assert db.value("select count(*) from public.intent_cache where key = %s", (seeded["intent_key"],)) == 0
    # her call is a conversation with her: its words go whole, the call and its analysis stay
    assert db.sql("select text from public.coaching_call_lines where call_id = %s",
                  (seeded["call"],)) == [{"text": "[removido]"}]
    assert db.value("select status from public.chat_searches where id = %s",
                    (seeded["search"],)) == "answered"
    contact = db.sql("select * from public.contacts where id = %s", (seeded["contact"],))[0]
    assert contact["lgpd_state"] == "anonymised" and contact["anonymised_at"] is not None
    # salted per tenant: not found by hashing every phone number
    assert contact["phone_hash"] != db.value("select private.phone_hash(%s)", (WA_ID,))
    assert db.value("select count(*) from public.storage_deletions") == 0
    assert db.value("select count(*) from public.events where type = 'contact.anonymised'") == 1


def test_a_returning_customer_is_a_new_contact(db: Db) -> None:
    ingest(db, body(change(contacts=[profile(WA_ID, NAME)], messages=[text("oi", WA_ID)])))
    old = db.value("select id from public.contacts where wa_id = %s", (WA_ID,))
    with db.as_user(OWNER) as s:
        s.value("select public.lgpd_anonymise_contact(%s, 'Pedido por telefone, protocolo 77')", (old,))
    ingest(db, body(change(contacts=[profile(WA_ID, NAME)], messages=[text("voltei", WA_ID)])))
    new = db.value("select id from public.contacts where wa_id = %s", (WA_ID,))
    assert new != old
    assert db.value("select count(*) from public.messages where contact_id = %s", (new,)) == 1


def test_only_admins_export_or_anonymise(db: Db) -> None:
    ingest(db, body(change(contacts=[profile(WA_ID, NAME)], messages=[text("oi", WA_ID)])))
    contact = db.value("select id from public.contacts where wa_id = %s", (WA_ID,))
    agent = db.add_member(uuid.UUID(TENANT), "manager")
    for call in ("select public.lgpd_export_contact(%s)",
                 "select public.lgpd_anonymise_contact(%s, 'Pedido por telefone, protocolo 77')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(agent) as s:
            s.value(call, (contact,))
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.as_user(OWNER) as s:
        s.value("select public.lgpd_anonymise_contact(%s, 'porque')", (contact,))
    assert db.value("select lgpd_state from public.contacts where id = %s", (contact,)) == "active"
