-- Reference data of the AI gateway: model registry at public list prices, a USD→BRL rate
-- and the platform default policy. Idempotent (re-applied by `make demo`); existing rows
-- are left alone so prices edited by the platform survive.
--
-- List prices in USD per million tokens (input / output / cache read / cache write),
-- as published by the providers in 2025:
--   Anthropic claude-sonnet-4     3.00 / 15.00 / 0.30  / 3.75  (cache write = 5-min, 1.25× input)
--   Anthropic claude-haiku-4-5    1.00 /  5.00 / 0.10  / 1.25
--   OpenAI    gpt-4o-mini         0.15 /  0.60 / 0.075 / —     (OpenAI has no write premium:
--   OpenAI    gpt-4.1-mini        0.40 /  1.60 / 0.10  / —      writes bill as plain input)
--   Groq      llama-3.3-70b       0.59 /  0.79 / —     / —
--   Gemini    gemini-2.5-flash    0.30 /  2.50 / 0.075 / —     (OpenAI-compatible endpoint)
--   Gemini    gemini-2.0-flash    0.10 /  0.40 / 0.025 / —
--   OpenRouter openai/gpt-4o-mini 0.15 /  0.60 / —     / —     (OpenRouter bills the provider's price)
-- capabilities.structured_output says how a model takes a JSON schema (zapbase.ai.structured).
--   OpenAI    text-embedding-3-small 0.02 per million input tokens
-- Audio: whisper-1 USD 0.006 per minute; Groq whisper-large-v3 USD 0.111 per hour.
-- TTS: tts-1 USD 15 and tts-1-hd USD 30 per million characters.
insert into public.ai_models (provider, model, gateway_id, api_type, capabilities, context_window,
  max_output_tokens, input_usd_per_mtok, output_usd_per_mtok, cache_read_usd_per_mtok,
  cache_write_usd_per_mtok, usd_per_audio_minute, usd_per_mchars, description)
values
  ('anthropic', 'claude-sonnet-4-20250514', 'anthropic/claude-sonnet-4', 'chat',
   '{"tools": true, "vision": true, "prompt_cache": true}', 200000, 64000, 3.00, 15.00, 0.30, 3.75, 0, 0,
   'Anthropic Claude Sonnet 4: best answers, highest price.'),
  ('anthropic', 'claude-haiku-4-5-20251001', 'anthropic/claude-haiku-4-5', 'chat',
   '{"tools": true, "vision": true, "prompt_cache": true}', 200000, 64000, 1.00, 5.00, 0.10, 1.25, 0, 0,
   'Anthropic Claude Haiku 4.5: fast and cheap; the default first choice for replies.'),
  ('openai', 'gpt-4o-mini', 'openai/gpt-4o-mini', 'chat',
   '{"tools": true, "vision": true, "prompt_cache": true, "structured_output": "json_schema"}', 128000, 16384, 0.15, 0.60, 0.075, 0.15, 0, 0,
   'OpenAI GPT-4o mini: the fallback after Anthropic.'),
  ('openai', 'gpt-4.1-mini', 'openai/gpt-4.1-mini', 'chat',
   '{"tools": true, "vision": true, "prompt_cache": true, "structured_output": "json_schema"}', 1047576, 32768, 0.40, 1.60, 0.10, 0.40, 0, 0,
   'OpenAI GPT-4.1 mini: long context.'),
  ('groq', 'llama-3.3-70b-versatile', 'groq/llama-3.3-70b-versatile', 'chat',
   '{"tools": true, "structured_output": "json_object"}', 131072, 32768, 0.59, 0.79, 0, 0, 0, 0,
   'Llama 3.3 70B on Groq (OpenAI-compatible API): very low latency.'),
  ('gemini', 'gemini-2.5-flash', 'gemini/gemini-2.5-flash', 'chat',
   '{"tools": true, "vision": true, "structured_output": "json_schema"}', 1048576, 65536, 0.30, 2.50, 0.075, 0, 0, 0,
   'Gemini 2.5 Flash through Google''s OpenAI-compatible endpoint.'),
  ('gemini', 'gemini-2.0-flash', 'gemini/gemini-2.0-flash', 'chat',
   '{"tools": true, "vision": true, "structured_output": "json_schema"}', 1048576, 8192, 0.10, 0.40, 0.025, 0, 0, 0,
   'Gemini 2.0 Flash through Google''s OpenAI-compatible endpoint: cheapest long context.'),
  ('openrouter', 'openai/gpt-4o-mini', 'openrouter/openai/gpt-4o-mini', 'chat',
   '{"tools": true, "structured_output": "json_schema"}', 128000, 16384, 0.15, 0.60, 0, 0, 0, 0,
   'GPT-4o mini through OpenRouter (one key, many providers).'),
  ('openai', 'whisper-1', 'openai/whisper-1', 'transcription',
   '{"languages": ["pt", "en", "es"]}', null, null, 0, 0, 0, 0, 0.006, 0,
   'OpenAI Whisper: voice notes to text, per minute of audio.'),
  ('groq', 'whisper-large-v3', 'groq/whisper-large-v3', 'transcription',
   '{"languages": ["pt", "en", "es"]}', null, null, 0, 0, 0, 0, 0.00185, 0,
   'Whisper large v3 on Groq: USD 0.111 per hour of audio.'),
  ('openai', 'text-embedding-3-small', 'openai/text-embedding-3-small', 'embedding',
   '{"dimensions": 384, "native_dimensions": 1536}', 8191, null, 0.02, 0, 0, 0, 0, 0,
   'Embeddings for RAG, requested with dimensions = 384 to match document_chunks.'),
  ('openai', 'tts-1', 'openai/tts-1', 'tts',
   '{"voices": ["alloy", "echo", "fable", "onyx", "nova", "shimmer"], "max_characters": 4096}',
   null, null, 0, 0, 0, 0, 0, 15.00, 'OpenAI TTS: voice notes, per million characters.'),
  ('openai', 'tts-1-hd', 'openai/tts-1-hd', 'tts',
   '{"voices": ["alloy", "echo", "fable", "onyx", "nova", "shimmer"], "max_characters": 4096}',
   null, null, 0, 0, 0, 0, 0, 30.00, 'OpenAI TTS HD: higher quality, twice the price.'),
  ('local', 'local-chat', 'local/local-chat', 'chat',
   '{"offline": true}', 8192, 1024, 0, 0, 0, 0, 0, 0,
   'The worker''s local model: last resort of the chain, tests and the offline demo. Free.'),
  ('local', 'hashing-v1', 'local/hashing-v1', 'embedding', '{"dimensions": 384, "offline": true}',
   null, null, 0, 0, 0, 0, 0, 0, 'Offline lexical embedder (feature hashing): the default without keys. Free.'),
  ('local', 'all-MiniLM-L6-v2', 'local/all-MiniLM-L6-v2', 'embedding', '{"dimensions": 384, "offline": true}',
   256, null, 0, 0, 0, 0, 0, 0, 'Offline semantic embedder (extra kb-local). Free.'),
  ('espeak', 'espeak-ng', 'espeak/espeak-ng', 'tts', '{"offline": true}',
   null, null, 0, 0, 0, 0, 0, 0, 'Offline robotic voice for development (espeak-ng). Free.')
on conflict (tenant_id, gateway_id) do nothing;

-- USD→BRL: an approximate rate so that costs have a BRL value from day one. Production
-- loads the daily BCB PTAX rate into fx_rates; lookups use the latest on or before a day.
insert into public.fx_rates (base, quote, rate_date, rate, source)
values ('USD', 'BRL', '2025-01-01', 5.500000, 'seed: approximate, replace with BCB PTAX')
on conflict (base, quote, rate_date) do nothing;

-- Platform default policy: Anthropic ▸ OpenAI ▸ local.
insert into public.gateway_policies (tenant_id, name, chain, timeout_ms, max_retries,
  failures_before_cooldown, cooldown_seconds, cache_ttl_seconds, is_default)
select null, 'Padrão da plataforma',
       '{anthropic/claude-haiku-4-5, openai/gpt-4o-mini, local/local-chat}', 20000, 1, 3, 30, 3600, true
 where not exists (select 1 from public.gateway_policies p where p.tenant_id is null and p.is_default);
