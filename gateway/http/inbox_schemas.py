"""JSON schemas of the inbox API (request bodies and responses), used by the OpenAPI document."""
from __future__ import annotations

from gateway.domain.consent import RECORD_CHANNELS
from gateway.domain.conversation import Mode, Status
from gateway.domain.identity import API_KINDS, CONSENT_KINDS
from gateway.domain.types import Channel
from gateway.http.openapi import ID, TIME, array, nullable, obj

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
ANY_OBJECT = {"type": "object"}
N_ID, N_TIME, N_STR = nullable(ID), nullable(TIME), nullable(STR)
CHANNELS = [c.value for c in Channel]
LABEL = {"type": "string", "minLength": 1, "maxLength": 50}

CONVERSATION_FIELDS = dict(
    id=ID, contact_id=ID, status={"type": "string", "enum": [s.value for s in Status]},
    mode={"type": "string", "enum": [m.value for m in Mode]}, team_id=N_ID, assignee_id=N_ID, labels=array(STR),
    flow_name=N_STR, flow_state=N_STR, last_seq=INT, last_inbound_at=N_TIME, last_inbound_channel=N_STR,
    last_message_at=N_TIME, waiting_since=N_TIME, snoozed_until=N_TIME, current_episode_id=N_ID,
    created_at=TIME, updated_at=TIME,
)
CONVERSATION_REQUIRED = list(CONVERSATION_FIELDS)
CONVERSATION_FIELDS["inbox_id"] = N_ID   # the inbox the customer last wrote to (gateway.inboxes)
CONVERSATION_ITEM = obj(CONVERSATION_REQUIRED + ["contact_name"], **CONVERSATION_FIELDS, contact_name=N_STR)
CONVERSATION_PAGE = obj(["conversations", "next_cursor"], conversations=array(CONVERSATION_ITEM),
                        next_cursor=N_STR)

IDENTITY = obj(["id", "kind", "address", "verified", "created_at"], id=ID, kind=STR, address=STR,
               verified=BOOL, created_at=TIME)
CONTACT = obj(["id", "name", "external_id", "attributes", "identities", "conversation_id", "created_at"],
              id=ID, name=N_STR, external_id=N_STR, attributes=ANY_OBJECT, locale=N_STR, timezone=N_STR,
              created_at=TIME, updated_at=TIME, identities=array(IDENTITY), conversation_id=N_ID)
EPISODE = obj(["id", "opened_at"], id=ID, opened_at=TIME, escalated_at=N_TIME, first_response_at=N_TIME,
              resolved_at=N_TIME, resolved_by=N_ID, escalation_reason=N_STR, channel=N_STR,
              csat_score=nullable(INT), csat_at=N_TIME)
CONVERSATION_DETAIL = obj(
    CONVERSATION_REQUIRED + ["contact", "episode", "episodes", "assignee", "team"], **CONVERSATION_FIELDS,
    contact=CONTACT, episode=nullable(EPISODE), episodes=INT,
    assignee=nullable(obj(["id", "name"], id=ID, name=STR, email=N_STR)),
    team=nullable(obj(["id", "name"], id=ID, name=STR)))

MESSAGE = obj(
    ["id", "conversation_id", "seq", "direction", "kind", "channel", "body", "content", "status", "created_at"],
    id=ID, conversation_id=ID, seq=INT, episode_id=N_ID,
    direction={"type": "string", "enum": ["in", "out", "internal"]},
    kind={"type": "string", "enum": ["message", "note", "event"]}, channel=STR, body=STR, content=ANY_OBJECT,
    status=N_STR, error_code=N_STR, error_message=N_STR, author_type=N_STR, author_id=nullable(INT),
    sender_address=N_STR, recipient_address=N_STR, purpose=N_STR, created_at=TIME, status_updated_at=N_TIME,
    inbox_id=N_ID,                    # in: the inbox it was addressed to; out: the inbox it leaves from
    expired_at=N_TIME,                # past its retention limit: a tombstone (place kept, content gone)
    sender_verified=nullable(BOOL),   # inbound email: From authenticated by SPF/DKIM/DMARC; else null
    provider_message_id=N_STR,        # outbound: the provider's id once accepted
    sent_text=N_STR,                  # outbound: the exact text the provider got, when the channel rendered
                                      # the message differently (buttons as a numbered menu on SMS/email)
    attempts=nullable(INT), last_error=N_STR)   # outbound: sends tried so far, the last transient error
MESSAGE_PAGE = obj(["messages", "has_more_before", "has_more_after"], messages=array(MESSAGE),
                   has_more_before=BOOL, has_more_after=BOOL)
SENT = obj(["message", "duplicate"], message=MESSAGE, duplicate=BOOL)
NO_ROUTE = obj(["error"], error=obj(["code", "message", "reasons"], code=STR, message=STR,
                                    reasons={"type": "object", "additionalProperties": STR}))
CHANNEL_OPTIONS = obj(
    ["available", "unavailable", "default"],
    available=array(obj(["channel", "address", "needs_template"], channel=STR, address=STR,
                        needs_template=BOOL)),
    unavailable={"type": "object", "additionalProperties": STR}, default=N_STR)

ATTACHMENT = obj(["url"], url={"type": "string", "maxLength": 2000}, content_type={"type": "string", "maxLength": 200},
                 filename={"type": "string", "maxLength": 300})
REPLY_BODY = obj(
    None, text={"type": "string", "maxLength": 10000}, channel={"type": "string", "enum": CHANNELS},
    attachments=array(ATTACHMENT, maxItems=10), subject={"type": "string", "maxLength": 500},
    canned_response_id=ID, variables={"type": "object", "additionalProperties": {"type": "string"}},
    inbox_id=ID)
NOTE_BODY = obj(["text"], text={"type": "string", "minLength": 1, "maxLength": 10000})
ASSIGN_BODY = obj(["agent_id"], agent_id=ID)
TEAM_BODY = obj(["team_id"], team_id=N_ID)
TEAM_ROUTED = obj(["conversation_id", "team_id"], conversation_id=ID, team_id=N_ID)
SNOOZE_BODY = obj(["until"], until=TIME)
RESOLVE_BODY = obj(None, csat=BOOL, csat_text={"type": "string", "minLength": 1, "maxLength": 1000})
HANDBACK_BODY = obj(["flow_state"], flow_state={"type": "string", "minLength": 1, "maxLength": 200},
                    flow_name={"type": "string", "minLength": 1, "maxLength": 200})
LABELS_BODY = obj(None, add=array(LABEL, maxItems=50), remove=array(LABEL, maxItems=50))
TYPING_BODY = obj(None, typing=BOOL)

OK = obj(["ok"], ok=BOOL)
RESOLVED = obj(["conversation", "csat"], conversation=CONVERSATION_DETAIL,
               csat=nullable(obj(["sent"], sent=BOOL, message_id=ID,
                                 reasons={"type": "object", "additionalProperties": STR})))

PROFILE = dict(locale=nullable({"type": "string", "minLength": 2, "maxLength": 20, "description": "e.g. en, pt_BR"}),
               timezone=nullable({"type": "string", "maxLength": 64, "description": "IANA zone, e.g. Europe/Madrid"}))
CONTACT_PATCH = obj(None, **PROFILE, name=nullable({"type": "string", "maxLength": 200}),
                    attributes={"type": "object", "description": "merged in; a null value removes the key"})
MERGE_BODY = obj(["contact_id"], contact_id=ID)
IDENTITY_KIND = {"type": "string", "enum": list(API_KINDS)}
IDENTITY_BODY = obj(["kind", "address"], kind=IDENTITY_KIND, address={"type": "string", "minLength": 1, "maxLength": 320},
                    merge={"type": "boolean", "description": "POST only: merge the contact that owns it into this one"})
CONTACT_CREATE = obj(None, **PROFILE, name=nullable({"type": "string", "maxLength": 200}), attributes=ANY_OBJECT,
                     identities=array(obj(["kind", "address"], kind=IDENTITY_KIND,
                                          address={"type": "string", "minLength": 1, "maxLength": 320}), maxItems=20))
CONTACT_PAGE = obj(["contacts", "next_cursor"], next_cursor=N_STR, contacts=array(obj(
    ["id", "name", "identities", "created_at"], id=ID, name=N_STR, external_id=N_STR, attributes=ANY_OBJECT,
    locale=N_STR, timezone=N_STR, created_at=TIME, conversation_id=N_ID, identities=array(ANY_OBJECT))))
MERGED = obj(["contact_id", "merged_contact_id", "conversation_id", "moved_identities", "moved_messages"],
             contact_id=ID, merged_contact_id=ID, conversation_id=N_ID, moved_identities=INT, moved_messages=INT)
ERASED = obj(["contact_id", "conversation_id", "identities_removed", "suppressed_addresses", "messages_redacted",
              "blobs_removed"],
             contact_id=ID, conversation_id=N_ID, identities_removed=INT, suppressed_addresses=INT,
             messages_redacted=INT, blobs_removed=INT)
EXPORT = obj(["contact", "identities", "consents", "consent_history", "conversation", "episodes", "messages",
              "events"],
             contact=ANY_OBJECT, identities=array(ANY_OBJECT), consents=array(ANY_OBJECT),
             consent_history=array(ANY_OBJECT),
             merged_contact_ids=array(ID), conversation=nullable(ANY_OBJECT), episodes=array(ANY_OBJECT),
             messages=array(ANY_OBJECT), events=array(ANY_OBJECT))
SEARCH = obj(["messages", "contacts"],
             messages=array(obj(["id", "conversation_id", "seq", "snippet", "created_at"], id=ID,
                                conversation_id=ID, seq=INT, direction=STR, kind=STR, channel=STR,
                                snippet=STR, created_at=TIME)),
             contacts=array(obj(["id", "name"], id=ID, name=N_STR, external_id=N_STR, attributes=ANY_OBJECT,
                                conversation_id=N_ID)))

AGENT = obj(["id", "name", "email", "capacity", "presence", "team_ids"], id=ID, name=STR, email=N_STR,
            role={"type": "string", "enum": ["agent", "admin"]}, has_password=BOOL, invite_url=STR, capacity=INT, presence={"type": "string", "enum": ["online", "away", "offline"]},
            last_seen_at=N_TIME, created_at=TIME, deactivated_at=N_TIME, team_ids=array(ID))
AGENT_BODY = obj(None, name={"type": "string", "minLength": 1, "maxLength": 200},
                 email={"type": "string", "maxLength": 320}, password={"type": "string", "maxLength": 1024},
                 role={"type": "string", "enum": ["agent", "admin"]}, capacity={"type": "integer", "minimum": 0, "maximum": 1000},
                 team_ids=array(ID, maxItems=100))
AGENT_PATCH = obj(None, name={"type": "string", "minLength": 1, "maxLength": 200},
                  capacity={"type": "integer", "minimum": 0, "maximum": 1000}, team_ids=array(ID, maxItems=100),
                  active=BOOL, role={"type": "string", "enum": ["agent", "admin"]})
INVITE = obj(["invite_url"], invite_url=STR)
CONSENT_ROW = dict(address_kind=STR, address=STR, channel=STR, purpose=STR, granted=BOOL, source=N_STR,
                   proof=nullable(ANY_OBJECT))
CONSENT_FIELDS = dict(
    consents=array(obj(["address_kind", "address", "channel", "purpose", "granted"], **CONSENT_ROW,
                       updated_at=TIME)),
    current=array(obj(["channel", "purpose", "regime", "allowed", "reason"], channel=STR, purpose=STR,
                      regime={"type": "string", "enum": ["opt_in", "opt_out"]}, allowed=BOOL, reason=N_STR)),
    history=array(obj(["id", "address_kind", "address", "channel", "purpose", "granted", "occurred_at"],
                      id=ID, **CONSENT_ROW, occurred_at=TIME, recorded_at=TIME)))
CONSENTS = obj(["consents", "current", "history"], **CONSENT_FIELDS)
CONSENT_RECORDED = obj(["consents", "current", "history", "recorded"], **CONSENT_FIELDS,
                       recorded=array(obj(["address_kind", "address"], address_kind=STR, address=STR)))
_ANSWER = dict(channel={"type": "string", "enum": list(RECORD_CHANNELS)},
               purpose={"type": "string", "enum": ["marketing", "transactional", "all"]}, granted=BOOL,
               source={"type": "string", "minLength": 1, "maxLength": 200},
               proof={"type": "object", "description": "required for an opt-in: the text shown, the form or "
                                                       "page, the IP, ..."})
CONSENT_BODY = obj(["channel", "purpose", "granted", "source"], **_ANSWER,
                   address={"type": "string", "maxLength": 320, "description": "only this address of the contact"})
CONSENT_IMPORT = obj(["records"], records=array(obj(
    ["kind", "address", "channel", "purpose", "granted", "source"], **_ANSWER,
    kind={"type": "string", "enum": list(CONSENT_KINDS)}, address={"type": "string", "maxLength": 320},
    at={"type": "string", "format": "date-time", "description": "when the answer was given (default: now)"}),
    minItems=1, maxItems=1000))
PREFERENCES_LINK = obj(["url", "expires_at"], url=STR, expires_at={"type": "integer", "description": "Unix time"})
CONSENT_IMPORTED = obj(["imported", "applied", "history_only"], imported=INT, applied=INT, history_only=INT)
CONTACT_JOURNEYS = obj(["journeys"], journeys=array(obj(
    ["id", "journey", "version", "status", "entered_at"], id=ID, journey=STR, version=STR, status=STR, step=N_STR,
    waiting_event=N_STR, variant=N_STR, entered_at=TIME, exited_at=N_TIME, exit_reason=N_STR,
    converted_at=N_TIME, next_action_at=N_TIME,
    sends=array(obj(["step", "channel", "sent_at", "status"], step=STR, channel=STR, attempt=INT, sent_at=TIME,
                    status=STR, delivered_at=N_TIME, read_at=N_TIME, replied_at=N_TIME, clicked_at=N_TIME,
                    message_id=ID)),
    skips=array(obj(["step", "reason", "at"], step=STR, reason=STR, details=ANY_OBJECT, at=TIME)))))
FLOWS = obj(["default", "flows"], default=N_STR, flows=array(obj(
    ["name", "version", "start", "states"], name=STR, version=STR, start=STR,
    states=array(obj(["name"], name=STR, description=N_STR, final=BOOL)))))
TOKEN_BODY = obj(None, name={"type": "string", "minLength": 1, "maxLength": 200})
TOKEN = obj(["id", "token", "prefix", "agent_id"], id=ID, token=STR, prefix=STR, agent_id=ID)
_ROLE = {"type": "string", "enum": ["admin", "agent", "integration", "readonly"]}
_SCOPES = array({"type": "string", "enum": ["events:read"]}, maxItems=10)
TOKEN_NEW_BODY = obj(["name", "role"], name={"type": "string", "minLength": 1, "maxLength": 200}, role=_ROLE,
                     agent_id=ID, scopes=_SCOPES)
TOKEN_CREATED = obj(["id", "token", "prefix", "role", "agent_id", "scopes"], id=ID, token=STR, prefix=STR,
                    role=_ROLE, agent_id=N_ID, scopes=_SCOPES)
TOKEN_INFO = obj(["id", "prefix", "name", "role", "agent_id", "scopes", "created_at", "revoked_at"], id=ID,
                 prefix=STR, name=STR, role=_ROLE, agent_id=N_ID, scopes=_SCOPES, created_at=TIME,
                 last_used_at=N_TIME, revoked_at=N_TIME)
TEAM = obj(["id", "name"], id=ID, name=STR, created_at=TIME, agent_ids=array(ID))
TEAM_BODY_NEW = obj(["name"], name={"type": "string", "minLength": 1, "maxLength": 200})
CANNED = obj(["id", "short_code", "title", "body", "team_id"], id=ID, short_code=STR, title=STR, body=STR,
             team_id=N_ID, created_at=TIME, updated_at=TIME)
CANNED_BODY = obj(["short_code", "body"], short_code={"type": "string", "minLength": 1, "maxLength": 100},
                  title={"type": "string", "maxLength": 200}, body={"type": "string", "minLength": 1, "maxLength": 10000},
                  team_id=ID)
PRESENCE_BODY = obj(["presence"], presence={"type": "string", "enum": ["online", "away", "offline"]})
PRESENCE = obj(["agent_id", "presence"], agent_id=ID, presence=STR, last_seen_at=TIME)
ME = obj(["role", "name", "agent_id", "team_ids"], role=STR, name=STR, agent_id=N_ID, token_id=N_ID,
         team_ids=nullable(array(ID)))
STATS = obj(["count", "average", "median"], count=INT, average=nullable({"type": "number"}),
            median=nullable({"type": "number"}),
            histogram=array(obj(["up_to", "count"], up_to=nullable(INT), count=INT)))
CSAT_STATS = dict(count=INT, average=nullable({"type": "number"}),
                  distribution=obj([str(i) for i in range(1, 6)], **{str(i): INT for i in range(1, 6)}))
CSAT = obj(["count", "average", "distribution", "per_agent", "per_team", "per_channel"], **CSAT_STATS,
           per_agent=array(obj(["agent_id", "count", "average", "distribution"], agent_id=N_ID, name=N_STR,
                               **CSAT_STATS)),
           per_team=array(obj(["team_id", "count", "average", "distribution"], team_id=N_ID, name=N_STR,
                              **CSAT_STATS)),
           per_channel=array(obj(["channel", "count", "average", "distribution"], channel=N_STR, **CSAT_STATS)))
METRICS = obj(
    ["since", "until", "csat", "first_response_seconds", "resolution_seconds", "bot_containment", "per_channel",
     "per_agent", "per_team"],
    since=TIME, until=TIME, csat=CSAT, first_response_seconds=STATS, resolution_seconds=STATS,
    bot_containment=obj(["episodes", "bot_only", "rate"], episodes=INT, bot_only=INT,
                        rate=nullable({"type": "number"})),
    per_channel=array(obj(["channel", "inbound", "outbound"], channel=STR, inbound=INT, outbound=INT)),
    per_inbox=array(obj(["inbox_id", "inbound", "outbound", "conversations"], inbox_id=N_ID, name=N_STR,
                        channel=N_STR, address=N_STR, inbound=INT, outbound=INT, conversations=INT)),
    per_agent=array(obj(["agent_id", "name", "replies", "resolved"], agent_id=ID, name=STR, replies=INT,
                        resolved=INT)),
    per_team=array(obj(["team_id", "episodes", "escalated", "resolved"], team_id=N_ID, name=N_STR,
                       episodes=INT, escalated=INT, resolved=INT)))
AUDIT = obj(["entries", "next_cursor"], next_cursor=N_STR, entries=array(obj(
    ["id", "actor_type", "action", "created_at"], id=ID, actor_type=STR, actor_id=nullable(INT), action=STR,
    conversation_id=N_ID, contact_id=N_ID, details=ANY_OBJECT, created_at=TIME)))
ASSIGN_RUN = obj(["assigned"], assigned=INT)
DEPLOYED = obj(["deployment_id", "flows", "journeys"], deployment_id=ID,
               flows={"type": "object", "additionalProperties": STR},
               journeys={"type": "object", "additionalProperties": STR})
ROUTING = obj(["version", "default", "rules", "teams"], version=STR, source=N_STR, default=N_STR,
              rules=array(obj(["team", "when"], team=STR, when=ANY_OBJECT)), teams=ANY_OBJECT)
