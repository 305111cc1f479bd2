// The queries and RPC calls a frontend makes for its main screens, written with supabase-js
// typed by the generated `Database` (supabase/types/database.ts, `make types`). edge/test.sh
// runs `deno check` on this file: a renamed column, view, RPC or RPC argument then breaks the
// build here, in review, before it breaks a frontend. Nothing here talks to a server in tests.
// (`_frontend` is no Edge Function: the CLI deploys only the functions in supabase/config.toml.)

// deno-lint-ignore no-import-prefix
import { createClient, type SupabaseClient } from "npm:@supabase/supabase-js@2.119.1";
import type { Database, Enums, Tables } from "../../supabase/types/database.ts";

export type Client = SupabaseClient<Database>;

/** A signed-in user's client: the anon key plus the user's session (role authenticated). */
export function frontendClient(url: string, anonKey: string): Client {
  return createClient<Database>(url, anonKey);
}

type Functions = Database["public"]["Functions"];

/** An RPC's arguments, exactly: supabase-js alone lets an argument the function no longer has
 * through (a renamed optional one would then be silently ignored by PostgREST's overloads). */
function args<F extends keyof Functions>(
  _fn: F,
  value: Functions[F]["Args"],
): Functions[F]["Args"] {
  return value;
}

function must<T>(result: { data: T | null; error: { message: string } | null }): T {
  if (result.error) throw new Error(result.error.message);
  if (result.data === null) throw new Error("no data");
  return result.data;
}

// -- Inbox -----------------------------------------------------------------------------------

/** One line of the inbox: the conversation, its contact and its last message. */
export interface InboxItem {
  id: string;
  status: string;
  mode: string;
  unreadCount: number;
  assigneeId: string | null;
  lastMessageAt: string | null;
  contact: { id: string; name: string | null; profileName: string | null; waId: string | null };
  lastMessage: { content: string | null; type: string; direction: string; status: string } | null;
}

export async function inbox(client: Client, tenantId: string, limit = 50): Promise<InboxItem[]> {
  const rows = must(
    await client
      .from("conversations")
      .select(
        "id, status, mode, unread_count, assignee_id, last_message_at, contact:contacts(id, name, profile_name, wa_id), messages(content, type, direction, status, created_at)",
      )
      .eq("tenant_id", tenantId)
      .order("last_message_at", { ascending: false, nullsFirst: false })
      .order("created_at", { referencedTable: "messages", ascending: false })
      .limit(1, { referencedTable: "messages" })
      .limit(limit),
  );
  return rows.map((row) => ({
    id: row.id,
    status: row.status,
    mode: row.mode,
    unreadCount: row.unread_count,
    assigneeId: row.assignee_id,
    lastMessageAt: row.last_message_at,
    contact: {
      id: row.contact.id,
      name: row.contact.name,
      profileName: row.contact.profile_name,
      waId: row.contact.wa_id,
    },
    lastMessage: row.messages[0] ?? null,
  }));
}

// -- Conversation ------------------------------------------------------------------------------

export type ConversationMessage = Pick<
  Tables<"messages">,
  | "id"
  | "direction"
  | "sender_type"
  | "type"
  | "content"
  | "transcription"
  | "media_storage_path"
  | "status"
  | "error_title"
  | "created_at"
  | "read_at"
>;

export async function conversationMessages(
  client: Client,
  conversationId: string,
  before?: string,
): Promise<ConversationMessage[]> {
  let query = client
    .from("messages")
    .select(
      "id, direction, sender_type, type, content, transcription, media_storage_path, status, error_title, created_at, read_at",
    )
    .eq("conversation_id", conversationId);
  if (before) query = query.lt("created_at", before);
  return must(await query.order("created_at", { ascending: false }).limit(50));
}

/** New and updated messages of the open conversation, through Realtime (RLS applies). */
export function watchConversation(
  client: Client,
  conversationId: string,
  onMessage: (message: Tables<"messages">) => void,
): () => void {
  const channel = client
    .channel(`conversation:${conversationId}`)
    .on<Tables<"messages">>(
      "postgres_changes",
      {
        event: "*",
        schema: "public",
        table: "messages",
        filter: `conversation_id=eq.${conversationId}`,
      },
      (change) => {
        if (change.eventType !== "DELETE") onMessage(change.new);
      },
    )
    .subscribe();
  return () => void client.removeChannel(channel);
}

export async function sendText(
  client: Client,
  conversationId: string,
  body: string,
  replyTo?: string,
): Promise<Pick<Tables<"messages">, "id" | "status" | "created_at">> {
  const sent = must(
    await client.rpc(
      "send_message",
      args("send_message", {
        conversation_id: conversationId,
        message: { type: "text", text: { body } },
        reply_to_message_id: replyTo,
      }),
    ),
  );
  return { id: sent.id, status: sent.status, created_at: sent.created_at };
}

export async function handOff(
  client: Client,
  conversationId: string,
  reason: string,
  teamId?: string,
): Promise<{ mode: string; teamId: string | null }> {
  const conversation = must(
    await client.rpc(
      "handoff_conversation",
      args("handoff_conversation", {
        conversation_id: conversationId,
        reason,
        team_id: teamId,
      }),
    ),
  );
  return { mode: conversation.mode, teamId: conversation.team_id };
}

// -- AI budget and knowledge ---------------------------------------------------------------------

export interface BudgetGauge {
  name: string | null;
  period: string | null;
  usedPct: number | null;
  usedBrl: number | null;
  brlLimit: number | null;
  usedTokens: number | null;
  tokenLimit: number | null;
  periodEnd: string | null;
  pausedReason: string | null;
}

export async function budgetStatus(client: Client, tenantId: string): Promise<BudgetGauge[]> {
  const rows = must(
    await client
      .from("budget_status")
      .select(
        "name, period, used_pct, used_brl, brl_limit, used_tokens, token_limit, period_end, paused_reason",
      )
      .eq("tenant_id", tenantId)
      .eq("is_active", true),
  );
  return rows.map((b) => ({
    name: b.name,
    period: b.period,
    usedPct: b.used_pct,
    usedBrl: b.used_brl,
    brlLimit: b.brl_limit,
    usedTokens: b.used_tokens,
    tokenLimit: b.token_limit,
    periodEnd: b.period_end,
    pausedReason: b.paused_reason,
  }));
}

export interface KnowledgeHit {
  title: string;
  headingPath: string[];
  content: string;
  score: number;
}

export async function searchKnowledge(
  client: Client,
  tenantId: string,
  question: string,
  botId?: string,
): Promise<KnowledgeHit[]> {
  const hits = must(
    await client.rpc(
      "match_knowledge",
      args("match_knowledge", {
        query_text: question,
        tenant_id: tenantId,
        bot_id: botId,
        match_count: 8,
      }),
    ),
  );
  return hits.map((h) => ({
    title: h.title,
    headingPath: h.heading_path,
    content: h.content,
    score: h.score,
  }));
}

// -- Tenancy: members and invites ----------------------------------------------------------------

export type Role = Enums<"member_role">;

export async function members(
  client: Client,
  tenantId: string,
): Promise<
  Pick<Tables<"members">, "id" | "user_id" | "display_name" | "role" | "status">[]
> {
  return must(
    await client
      .from("members")
      .select("id, user_id, display_name, role, status")
      .eq("tenant_id", tenantId)
      .order("display_name"),
  );
}

export async function pendingInvites(
  client: Client,
  tenantId: string,
): Promise<Pick<Tables<"invites">, "id" | "email" | "role" | "expires_at" | "team_id">[]> {
  return must(
    await client
      .from("invites")
      .select("id, email, role, expires_at, team_id")
      .eq("tenant_id", tenantId)
      .is("accepted_at", null)
      .order("expires_at"),
  );
}

export async function inviteMember(client: Client, tenantId: string, email: string, role: Role) {
  return must(
    await client.rpc("invite_member", args("invite_member", { tenant_id: tenantId, email, role })),
  );
}

export async function acceptInvite(client: Client, token: string): Promise<{ tenantId: string }> {
  const member = must(await client.rpc("accept_invite", args("accept_invite", { token })));
  return { tenantId: member.tenant_id };
}

export async function changeRole(client: Client, memberId: string, role: Role): Promise<Role> {
  return must(
    await client.rpc(
      "change_member_role",
      args("change_member_role", { member_id: memberId, new_role: role }),
    ),
  ).role;
}

export async function revokeInvite(client: Client, inviteId: string): Promise<void> {
  must(await client.from("invites").delete().eq("id", inviteId).select("id"));
}

export async function createTenant(
  client: Client,
  name: string,
  planCode: string,
): Promise<string> {
  return must(
    await client.rpc("create_tenant", args("create_tenant", { name, plan_code: planCode })),
  ).id;
}
