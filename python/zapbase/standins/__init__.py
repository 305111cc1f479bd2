"""Local stand-ins of the AI and speech providers' HTTP APIs, speaking their wire formats,
for tests, benchmarks and the offline demo (the WhatsApp side is `zapbase.simulator`).

ai      Anthropic and OpenAI (chat, embeddings, transcription); `Fault` scripts their failures
speech  OpenAI and ElevenLabs text-to-speech; the same `FaultKind`s script its failures
"""
