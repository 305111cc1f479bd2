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

insert into public.members (id, tenant_id, user_id, role, display_name, area, presence)
values
  ('00000000-0000-4000-c000-000000000001', '00000000-0000-4000-b000-000000000001',
   '00000000-0000-4000-a000-000000000001', 'owner', 'Ana Souza', 'management', 'online'),
  ('00000000-0000-4000-c000-000000000002', '00000000-0000-4000-b000-000000000001',
   '00000000-0000-4000-a000-000000000002', 'agent', 'Bruno Lima', 'support', 'online')
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
