-- Demo flow of Loja Demo (local development only): order tracking. Idempotent.
-- The customer sends "rastreio" (or scans the QR code / taps the wa.me link of code RASTREIO);
-- the flow asks for a CPF (validated, two retries), looks the order up in the shop's order
-- API (the local stand-in zapbase.standins.orders on port 8788), shows it and offers a list
-- of next steps; "Falar com atendente" hands the conversation to the Atendimento team.
insert into public.flows (id, tenant_id, name, description, status, on_trigger_while_running)
values ('00000000-0000-4000-f100-000000000001', '00000000-0000-4000-b000-000000000001', 'Rastreio de pedidos',
        'Localiza o pedido pelo CPF e oferece os próximos passos.', 'draft', 'interrupt')
on conflict (id) do nothing;

insert into public.flow_versions (id, tenant_id, flow_id, graph)
select '00000000-0000-4000-f200-000000000001', '00000000-0000-4000-b000-000000000001',
       '00000000-0000-4000-f100-000000000001', $graph$
{"blocks": [
  {"id": "start", "type": "start"},
  {"id": "hello", "type": "message", "text": "Olá, {{contact.name}}! Vou localizar seu pedido. 📦"},
  {"id": "ask_cpf", "type": "question", "kind": "cpf", "variable": "cpf", "max_retries": 2,
   "text": "Qual é o CPF usado na compra? (só os números)"},
  {"id": "lookup", "type": "http", "method": "GET", "url": "http://localhost:8788/orders?cpf={{cpf}}",
   "timeout_ms": 3000, "save": {"found": "found", "order_id": "order.id", "status": "order.status", "eta": "order.eta"}},
  {"id": "found", "type": "condition", "rules": [{"variable": "found", "op": "equals", "value": "true"}]},
  {"id": "show", "type": "message", "text": "Encontrei o pedido {{order_id}}: {{status}}, previsão de entrega {{eta}}."},
  {"id": "not_found", "type": "message", "text": "Não encontrei pedidos para esse CPF."},
  {"id": "menu", "type": "choice", "variable": "next", "text": "Como posso ajudar agora?",
   "options": [
     {"id": "other", "label": "Consultar outro CPF"},
     {"id": "invoice", "label": "Segunda via da nota fiscal"},
     {"id": "address", "label": "Alterar endereço de entrega", "description": "Antes do envio"},
     {"id": "agent", "label": "Falar com atendente"},
     {"id": "done", "label": "Era só isso, obrigado"}]},
  {"id": "invoice", "type": "message", "text": "Pronto! Enviamos a segunda via para o seu e-mail cadastrado."},
  {"id": "api_down", "type": "message", "text": "Nosso sistema de pedidos não respondeu agora."},
  {"id": "agent", "type": "handoff", "team_id": "00000000-0000-4000-d000-000000000001",
   "reason": "pediu atendente no rastreio", "text": "Certo! Vou chamar uma pessoa da equipe de Atendimento."},
  {"id": "bye", "type": "end", "text": "Obrigado! Qualquer coisa, é só chamar. 😊"}],
 "edges": [
  {"from": "start", "to": "hello"}, {"from": "hello", "to": "ask_cpf"},
  {"from": "ask_cpf", "to": "lookup"}, {"from": "ask_cpf", "to": "agent", "port": "invalid"},
  {"from": "lookup", "to": "found"}, {"from": "lookup", "to": "api_down", "port": "error"},
  {"from": "found", "to": "show", "port": "true"}, {"from": "found", "to": "not_found", "port": "false"},
  {"from": "show", "to": "menu"}, {"from": "not_found", "to": "menu"},
  {"from": "menu", "to": "ask_cpf", "port": "other"}, {"from": "menu", "to": "invoice", "port": "invoice"},
  {"from": "menu", "to": "agent", "port": "address"}, {"from": "menu", "to": "agent", "port": "agent"},
  {"from": "menu", "to": "bye", "port": "done"}, {"from": "invoice", "to": "bye"},
  {"from": "api_down", "to": "agent"}]}
$graph$::jsonb
where not exists (select 1 from public.flow_versions v where v.flow_id = '00000000-0000-4000-f100-000000000001');

insert into public.flow_triggers (tenant_id, flow_id, kind, value, match)
select '00000000-0000-4000-b000-000000000001', '00000000-0000-4000-f100-000000000001', t.kind, t.value, t.match
  from (values ('keyword', 'rastreio', 'exact'), ('keyword', 'rastrear pedido', 'contains'),
               ('qr_code', 'RASTREIO', 'exact')) t(kind, value, match)
 where not exists (select 1 from public.flow_triggers x where x.flow_id = '00000000-0000-4000-f100-000000000001');

select public.publish_flow('00000000-0000-4000-f200-000000000001')
 where exists (select 1 from public.flow_versions v
                where v.id = '00000000-0000-4000-f200-000000000001' and v.published_at is null);
