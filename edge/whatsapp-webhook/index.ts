// Supabase Edge Function `whatsapp-webhook`: Meta's callback URL for WhatsApp Cloud API events.
//
// Only wiring lives here: the real environment and a service-role Supabase client. The logic
// is `handle` in ./handler.ts, which the tests drive with a stubbed RPC (no network, no
// supabase-js). Meta sends no Supabase JWT, so deploy with `verify_jwt = false` for this
// function; the X-Hub-Signature-256 check authenticates the caller instead.
//
// Environment: WHATSAPP_VERIFY_TOKEN, WHATSAPP_APP_SECRETS (comma-separated, for rotation;
// optional when every number has its own in Vault), SUPABASE_URL and
// SUPABASE_SERVICE_ROLE_KEY (provided by the Supabase platform).

// Supabase bundles each function alone: an inline, versioned specifier needs no import map.
// deno-lint-ignore no-import-prefix
import { createClient } from "npm:@supabase/supabase-js@2";
import { type Deps, handle, type StoredSecrets } from "./handler.ts";

const supabaseUrl = Deno.env.get("SUPABASE_URL");
const serviceRoleKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
if (!supabaseUrl || !serviceRoleKey) {
  throw new Error("whatsapp-webhook needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY");
}
const supabase = createClient(supabaseUrl, serviceRoleKey, {
  auth: { persistSession: false, autoRefreshToken: false },
});

// The numbers' secrets live in Vault; an isolate serves many requests, so they are read at
// most every SECRETS_TTL_MS (a rotated secret is picked up within that time).
const SECRETS_TTL_MS = 45_000;
let cached: { at: number; secrets: StoredSecrets } | null = null;

async function stored(): Promise<StoredSecrets> {
  if (cached !== null && Date.now() - cached.at < SECRETS_TTL_MS) return cached.secrets;
  const { data, error } = await supabase.rpc("whatsapp_webhook_secrets");
  if (error !== null) {
    console.error(`whatsapp-webhook: cannot read the numbers' secrets: ${error.message}`);
    return cached?.secrets ?? { appSecrets: [], verifyTokens: [] };
  }
  const rows = (data ?? []) as { kind: string; secret: string }[];
  const secrets = {
    appSecrets: rows.filter((r) => r.kind === "app_secret").map((r) => r.secret),
    verifyTokens: rows.filter((r) => r.kind === "verify_token").map((r) => r.secret),
  };
  cached = { at: Date.now(), secrets };
  return secrets;
}

const deps: Deps = {
  env: (name) => Deno.env.get(name),
  rpc: async (fn, args) => {
    const { error } = await supabase.rpc(fn, args);
    return { error: error === null ? null : { message: error.message, code: error.code } };
  },
  stored,
};

Deno.serve((req) => handle(req, deps));
