-- Demo bot of Loja Demo (local development only). Idempotent.
insert into public.bots (id, tenant_id, name, description, type, system_prompt, formatter_prompt,
  temperature, max_tokens, knowledge_enabled, tts_mode, tts_model, tts_voice, handoff_keywords,
  welcome_message, fallback_message, away_message, business_hours,
  max_replies_per_contact_per_day, max_replies_per_tenant_per_day, memory_turns)
values (
  '00000000-0000-4000-e000-000000000001', '00000000-0000-4000-b000-000000000001',
  'Assistente Loja Demo', 'Atende clientes da loja pelo WhatsApp.', 'support',
  'Você é a assistente virtual da Loja Demo, uma loja online de roupas e acessórios. '
  'Responda em português do Brasil, com frases curtas, simpatia e sem inventar informações. '
  'Use apenas o que estiver no contexto sobre produtos, prazos de entrega, trocas e pagamentos. '
  'Se não souber a resposta, ou se o cliente pedir, ofereça falar com um atendente humano. '
  'Nunca peça senhas nem dados completos de cartão.',
  'Reescreva a resposta para o WhatsApp: no máximo 3 parágrafos curtos, listas com "•", '
  'sem markdown de títulos, no máximo um emoji.',
  0.3, 600, true, 'on_voice', 'openai/tts-1', 'nova',
  '{atendente, humano, pessoa, "falar com alguém", reclamação}',
  'Olá! 👋 Sou a assistente virtual da Loja Demo. Como posso ajudar?',
  'Desculpe, não entendi. Pode reformular? Se preferir, digite "atendente" para falar com uma pessoa.',
  'Nosso horário de atendimento humano é de segunda a sexta, das 9h às 18h, e sábado, das 9h às 13h. '
  'Deixe sua mensagem que respondemos assim que possível.',
  '{"mon": [["09:00","18:00"]], "tue": [["09:00","18:00"]], "wed": [["09:00","18:00"]], "thu": [["09:00","18:00"]], "fri": [["09:00","18:00"]], "sat": [["09:00","13:00"]]}',
  30, 5000, 10)
on conflict (id) do nothing;
