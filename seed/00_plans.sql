-- Reference data: the plans tenants subscribe to. Idempotent (re-applied by `make demo`).
insert into public.plans (code, name, description, price_monthly, max_whatsapp_numbers, max_members,
  max_contacts, max_bots, max_teams, monthly_message_limit, features, budget_mode, budget_period,
  budget_token_limit, budget_brl_limit)
values
  ('free', 'Grátis', 'Para testar: 1 número, 1 bot.', 0, 1, 2, 500, 1, 1, 1000,
   '{"knowledge": true, "tts": false, "campaigns": false}', 'both', 'monthly', 200000, 10),
  ('starter', 'Starter', 'Pequenos negócios.', 197, 1, 5, 5000, 2, 3, 10000,
   '{"knowledge": true, "tts": true, "campaigns": true}', 'brl', 'monthly', null, 100),
  ('pro', 'Pro', 'Times de atendimento e vendas.', 597, 3, 20, 50000, 10, 10, 100000,
   '{"knowledge": true, "tts": true, "campaigns": true, "automation": true}', 'brl', 'monthly', null, 500),
  ('enterprise', 'Enterprise', 'Sob medida.', 2497, 20, 200, 1000000, 100, 100, 2000000,
   '{"knowledge": true, "tts": true, "campaigns": true, "automation": true}', 'brl', 'monthly', null, 5000)
on conflict (code) do nothing;
