// Supabase Edge Function `whatsapp-webhook`: Meta's callback URL for WhatsApp Cloud API events.
//
// Only wiring lives here: the real environment and a service-role Supabase client. The logic
// is `handle` in ./handler.ts, which the tests drive with a stubbed RPC (no network, no
// supabase-js). Meta sends no Supabase JWT, so deploy with `verify_jwt = false` for this
// function; the X-Hub-Signature-256 check authenticates the caller instead.
//
// Environment: WHATSAPP_VERIFY_TOKEN, WHATSAPP_APP_SECRETS (comma-separated, for rotation),
// SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (provided by the Supabase platform).

// Supabase bundles each function alone: an inline, versioned specifier needs no import map.
// deno-lint-ignore no-import-prefix
import { createClient } from "npm:@supabase/supabase-js@2";
import { type Deps, handle } from "./handler.ts";

const supabaseUrl = Deno.env.get("SUPABASE_URL");
const serviceRoleKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
if (!supabaseUrl || !serviceRoleKey) {
  throw new Error("whatsapp-webhook needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY");
}
const supabase = createClient(supabaseUrl, serviceRoleKey, {
  auth: { persistSession: false, autoRefreshToken: false },
});

const deps: Deps = {
  env: (name) => Deno.env.get(name),
  rpc: async (fn, args) => {
    const { error } = await supabase.rpc(fn, args);
    return { error: error === null ? null : { message: error.message, code: error.code } };
  },
};

Deno.serve((req) => handle(req, deps));
