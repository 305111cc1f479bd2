// Supabase Edge Function `hotmart-webhook`: Hotmart's webhook URL (postback v2) of a tenant's
// Hotmart integration, `/functions/v1/hotmart-webhook/<integration id>`.
//
// Only wiring lives here: a service-role Supabase client and the hottok cache. The logic is
// `handle` in ./handler.ts, which the tests drive with stubs. Hotmart sends no Supabase JWT,
// so deploy with `verify_jwt = false`; the X-HOTMART-HOTTOK check authenticates the caller.
//
// Environment: SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (provided by the Supabase platform).

// deno-lint-ignore no-import-prefix
import { createClient } from "npm:@supabase/supabase-js@2";
import { type Deps, handle } from "./handler.ts";

const supabaseUrl = Deno.env.get("SUPABASE_URL");
const serviceRoleKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
if (!supabaseUrl || !serviceRoleKey) {
  throw new Error("hotmart-webhook needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY");
}
const supabase = createClient(supabaseUrl, serviceRoleKey, {
  auth: { persistSession: false, autoRefreshToken: false },
});

// Hottoks live in Vault; an isolate serves many requests, so each is read at most every
// HOTTOK_TTL_MS (a rotated hottok is picked up within that time).
const HOTTOK_TTL_MS = 45_000;
const MAX_CACHED = 10_000;
const cached = new Map<string, { at: number; hottok: string | null }>();

async function hottok(integrationId: string): Promise<string | null> {
  const hit = cached.get(integrationId);
  if (hit !== undefined && Date.now() - hit.at < HOTTOK_TTL_MS) return hit.hottok;
  const { data, error } = await supabase.rpc("hotmart_webhook_secret", {
    integration_id: integrationId,
  });
  if (error !== null) {
    console.error(`hotmart-webhook: cannot read the hottok of ${integrationId}: ${error.message}`);
    return hit?.hottok ?? null;
  }
  const found = typeof data === "string" && data !== "" ? data : null;
  cached.delete(integrationId);
  if (cached.size >= MAX_CACHED) cached.delete(cached.keys().next().value as string);
  cached.set(integrationId, { at: Date.now(), hottok: found });
  return found;
}

const deps: Deps = {
  rpc: async (fn, args) => {
    const { error } = await supabase.rpc(fn, args);
    return { error: error === null ? null : { message: error.message, code: error.code } };
  },
  hottok,
};

Deno.serve((req) => handle(req, deps));
