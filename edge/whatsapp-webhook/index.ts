// Supabase Edge Function `whatsapp-webhook`: Meta's callback URL for WhatsApp Cloud API events.
//
// Only wiring lives here: the real environment and a service-role Supabase client. The logic
// is `handle` in ./handler.ts, which the tests drive with a stubbed RPC (no network, no
// supabase-js). Meta sends no Supabase JWT, so deploy with `verify_jwt = false` for this
// function; the X-Hub-Signature-256 check authenticates the caller instead.
//
// Environment: WHATSAPP_VERIFY_TOKEN and WHATSAPP_APP_SECRETS (a JSON list, several for
// rotation) of the platform's Meta app, optional when every number has its own app in Vault;
// SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (provided by the Supabase platform).

// Supabase bundles each function alone: an inline, versioned specifier needs no import map.
// deno-lint-ignore no-import-prefix
import { createClient } from "npm:@supabase/supabase-js@2";
import { type App, type Deps, handle } from "./handler.ts";

const supabaseUrl = Deno.env.get("SUPABASE_URL");
const serviceRoleKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
if (!supabaseUrl || !serviceRoleKey) {
  throw new Error("whatsapp-webhook needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY");
}
const supabase = createClient(supabaseUrl, serviceRoleKey, {
  auth: { persistSession: false, autoRefreshToken: false },
});

// A tenant app's secrets live in Vault; an isolate serves many requests, so each is read
// at most every APP_TTL_MS (a rotated secret is picked up within that time).
const APP_TTL_MS = 45_000;
const MAX_CACHED = 10_000;
const cached = new Map<string, { at: number; app: App }>();

async function app(phoneNumberId: string): Promise<App> {
  const hit = cached.get(phoneNumberId);
  if (hit !== undefined && Date.now() - hit.at < APP_TTL_MS) return hit.app;
  const { data, error } = await supabase.rpc("whatsapp_webhook_app", {
    phone_number_id: phoneNumberId,
  });
  if (error !== null) {
    console.error(`whatsapp-webhook: cannot read the app of ${phoneNumberId}: ${error.message}`);
    return hit?.app ?? { appSecrets: [], verifyTokens: [] };
  }
  const rows = (data ?? []) as { app_secret: string | null; verify_token: string | null }[];
  const found = {
    appSecrets: rows.flatMap((r) => r.app_secret ? [r.app_secret] : []),
    verifyTokens: rows.flatMap((r) => r.verify_token ? [r.verify_token] : []),
  };
  cached.delete(phoneNumberId);
  if (cached.size >= MAX_CACHED) cached.delete(cached.keys().next().value as string);
  cached.set(phoneNumberId, { at: Date.now(), app: found });
  return found;
}

const deps: Deps = {
  env: (name) => Deno.env.get(name),
  rpc: async (fn, args) => {
    const { error } = await supabase.rpc(fn, args);
    return { error: error === null ? null : { message: error.message, code: error.code } };
  },
  app,
};

Deno.serve((req) => handle(req, deps));
