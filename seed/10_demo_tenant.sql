-- Demo tenant "Loja Demo" with an owner and an agent (local development only).
insert into auth.users (id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
values
  ('00000000-0000-4000-a000-000000000001', 'authenticated', 'authenticated', 'dona@lojademo.com.br', now(),
   '{"provider": "email"}', '{"full_name": "Ana Souza"}'),
  ('00000000-0000-4000-a000-000000000002', 'authenticated', 'authenticated', 'atendente@lojademo.com.br', now(),
   '{"provider": "email"}', '{"full_name": "Bruno Lima"}')
on conflict (id) do nothing;

insert into public.tenants (id, slug, name, status, plan_id, contact_email)
select '00000000-0000-4000-b000-000000000001', 'loja-demo', 'Loja Demo', 'active', p.id, 'contato@lojademo.com.br'
  from public.plans p where p.code = 'pro'
on conflict (id) do nothing;

insert into public.members (id, tenant_id, user_id, role, display_name, area)
values
  ('00000000-0000-4000-c000-000000000001', '00000000-0000-4000-b000-000000000001',
   '00000000-0000-4000-a000-000000000001', 'owner', 'Ana Souza', 'management'),
  ('00000000-0000-4000-c000-000000000002', '00000000-0000-4000-b000-000000000001',
   '00000000-0000-4000-a000-000000000002', 'agent', 'Bruno Lima', 'support')
on conflict (tenant_id, user_id) do nothing;

insert into public.teams (id, tenant_id, name, kind, assignment_strategy, business_hours)
values ('00000000-0000-4000-d000-000000000001', '00000000-0000-4000-b000-000000000001', 'Atendimento',
        'support', 'round_robin',
        '{"mon": [["09:00","18:00"]], "tue": [["09:00","18:00"]], "wed": [["09:00","18:00"]], "thu": [["09:00","18:00"]], "fri": [["09:00","18:00"]], "sat": [["09:00","13:00"]]}')
on conflict (tenant_id, name) do nothing;

insert into public.team_members (tenant_id, team_id, member_id)
values ('00000000-0000-4000-b000-000000000001', '00000000-0000-4000-d000-000000000001',
        '00000000-0000-4000-c000-000000000002')
on conflict (team_id, member_id) do nothing;

-- Its WhatsApp number: the one the local Cloud API simulator (`zapbase simulator`) plays.
-- The credentials are the simulator's, not Meta's, and live in the (local) Vault.
insert into public.whatsapp_numbers (id, tenant_id, phone_number, phone_number_id, waba_id, display_name, is_default)
values ('00000000-0000-4000-9000-000000000001', '00000000-0000-4000-b000-000000000001', '+5511999990000',
        '106540352242922', '102290129340398', 'Loja Demo', true)
on conflict (phone_number_id) do nothing;

select public.set_whatsapp_number_secret(n.id, k.kind, k.secret)
  from public.whatsapp_numbers n
  cross join (values ('access_token', 'zapbase-simulator-token'),
                     ('app_secret', 'zapbase-simulator-app-secret'),
                     ('verify_token', 'zapbase-simulator-verify-token')) as k(kind, secret)
 where n.id = '00000000-0000-4000-9000-000000000001'
   and case k.kind when 'access_token' then n.access_token_secret_id
                   when 'app_secret' then n.app_secret_secret_id
                   else n.verify_token_secret_id end is null;

insert into public.message_templates (tenant_id, waba_id, name, language, category, status, components)
values ('00000000-0000-4000-b000-000000000001', '102290129340398', 'retomar_atendimento', 'pt_BR', 'UTILITY',
        'APPROVED', '[{"type": "BODY", "text": "Olá {{1}}! Podemos continuar seu atendimento por aqui?"}]'),
       ('00000000-0000-4000-b000-000000000001', '102290129340398', 'desculpe_demora', 'pt_BR', 'UTILITY',
        'APPROVED', '[{"type": "BODY", "text": "Olá {{1}}, desculpe a demora! Uma pessoa da nossa equipe já vai responder você."}]')
on conflict (tenant_id, waba_id, name, language) do nothing;

-- Templates the CRM jobs send (appointment reminders with reply buttons, certificate expiry).
insert into public.message_templates (tenant_id, waba_id, name, language, category, status, components)
values ('00000000-0000-4000-b000-000000000001', '102290129340398', 'lembrete_agendamento', 'pt_BR', 'UTILITY',
        'APPROVED', '[{"type": "BODY", "text": "Olá {{1}}! Lembrete do seu atendimento em {{2}}."},
                      {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Confirmar"},
                        {"type": "QUICK_REPLY", "text": "Remarcar"}, {"type": "QUICK_REPLY", "text": "Cancelar"}]}]'),
       ('00000000-0000-4000-b000-000000000001', '102290129340398', 'certificado_vencendo', 'pt_BR', 'UTILITY',
        'APPROVED', '[{"type": "BODY", "text": "Olá {{1}}! Seu certificado {{2}} vence em {{3}}. Vamos renovar?"}]')
on conflict (tenant_id, waba_id, name, language) do nothing;

-- Its Hotmart integration (commerce): the webhook URL /webhooks/hotmart/<id>, the hottok in
-- the (local) Vault. `zapbase demo` plays a student's purchase through it.
insert into public.integrations (id, tenant_id, type, provider, name, status)
values ('00000000-0000-4000-8600-000000000001', '00000000-0000-4000-b000-000000000001', 'payments', 'hotmart',
        'Hotmart (demo)', 'active')
on conflict (id) do nothing;
update public.integrations
   set secret_id = private.vault_store('integration:' || id, 'zapbase-demo-hottok', 'Hottok of the demo Hotmart integration')
 where id = '00000000-0000-4000-8600-000000000001' and secret_id is null;
