// Pure data functions of the dashboard: no DOM, no network. Dates are ISO "YYYY-MM-DD"
// strings of the member's own calendar; arithmetic on them is done in UTC so that a
// daylight-saving change in the coach's zone never shifts a member's day.

const RELATIONSHIPS = {
  romantic: "romantic", family: "family", friend: "friend", professional: "professional", other: "other",
};

const CHANNELS = {
  calls: "calls", texts: "texts", social_media: "social media", email: "email", in_person: "in person",
};

// -- dates ----------------------------------------------------------------------------------

export function parseDay(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  return Date.UTC(y, m - 1, d);
}

export function formatDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function addDays(iso, n) {
  return formatDay(parseDay(iso) + n * 86400000);
}

export function daysBetween(a, b) {
  return Math.round((parseDay(b) - parseDay(a)) / 86400000);
}

export function weekday(iso) {
  // 0 = Monday … 6 = Sunday
  return (new Date(parseDay(iso)).getUTCDay() + 6) % 7;
}

/** Today's date in an IANA zone (the member's), or null when the zone is unknown. */
export function todayIn(timezone, now = new Date()) {
  if (!timezone) return null;
  try {
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: timezone, year: "numeric", month: "2-digit", day: "2-digit",
    }).formatToParts(now);
    const get = (type) => parts.find((p) => p.type === type).value;
    return `${get("year")}-${get("month")}-${get("day")}`;
  } catch {
    return null;
  }
}

export function shortDate(iso) {
  return new Date(parseDay(iso)).toLocaleDateString(undefined, { timeZone: "UTC", day: "numeric", month: "short" });
}

export function longDate(iso) {
  return new Date(parseDay(iso)).toLocaleDateString(undefined, {
    timeZone: "UTC", weekday: "short", day: "numeric", month: "short", year: "numeric",
  });
}

/** "today", "yesterday", "3 days ago" relative to the member's today. */
export function relativeDay(iso, today) {
  if (!iso) return "never";
  if (!today) return shortDate(iso);
  const ago = daysBetween(iso, today);
  if (ago <= 0) return "today";
  if (ago === 1) return "yesterday";
  return `${ago} days ago`;
}

// -- credentials ----------------------------------------------------------------------------

/** The claims of a scoped token (JWT), or null for an API key. Display only: the server verifies. */
export function tokenClaims(token) {
  const parts = (token || "").split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json);
    return typeof claims === "object" && claims ? claims : null;
  } catch {
    return null;
  }
}

// -- the coach's client list -------------------------------------------------------------------

const pick = (obj, ...keys) => {
  for (const key of keys) {
    if (obj && obj[key] !== undefined && obj[key] !== null) return obj[key];
  }
  return undefined;
};

function dayState(value) {
  const state = typeof value === "string" ? value : pick(value, "outcome", "state", "status");
  return state === "kept" || state === "slipped" || state === "excused" ? state : "unreported";
}

function reasonCode(reason) {
  return typeof reason === "string" ? reason : pick(reason, "code", "reason", "type") || "unknown";
}

/** One commitment of the clients endpoint, in the shape the page renders. */
export function normaliseCommitment(raw, client) {
  const streak = pick(raw, "streak") || raw;
  const contact = pick(raw, "contact") || {};
  const risk = pick(raw, "risk");
  const atRiskRaw = pick(raw, "at_risk");
  const atRisk = typeof atRiskRaw === "object" && atRiskRaw !== null ? Boolean(atRiskRaw.at_risk) : Boolean(atRiskRaw ?? risk?.at_risk);
  const reasons = (pick(raw, "risk_reasons", "reasons") ?? atRiskRaw?.reasons ?? risk?.reasons ?? []).map((r) => ({
    code: reasonCode(r),
    detail: typeof r === "object" ? r : null,
  }));
  const timezone = pick(raw, "timezone") || pick(client, "timezone") || null;
  const today = pick(raw, "today", "as_of") || pick(streak, "as_of") || todayIn(timezone);
  let days = (pick(raw, "last_30_days", "days", "calendar", "recent_days") || []).map((d, i, all) => ({
    date: typeof d === "object" && d ? pick(d, "date", "day") : null,
    state: dayState(d),
    index: i - all.length + 1,
  }));
  // A bare list of states ends today: give each its date.
  if (today) days = days.map((d) => ({ ...d, date: d.date || addDays(today, d.index) }));
  // The service leaves out today until it is reported (the day is not over); the strip
  // still ends on today so the coach sees where "now" is.
  const status = pick(raw, "status") || "active";
  if (today && status === "active" && days.length && days[days.length - 1].date < today) {
    days.push({ date: today, state: "unreported", index: 0 });
    if (days.length > 30) days = days.slice(-30);
  }
  const urges = (pick(raw, "recent_urges", "urges", "urge_levels") || [])
    .map((u) => (typeof u === "number" ? { date: null, value: u } : { date: pick(u, "date", "day") || null, value: pick(u, "urge", "value") }))
    .filter((u) => typeof u.value === "number");
  const lastCheckIn = pick(raw, "last_check_in_on") ?? pick(streak, "last_check_in_on") ?? pick(raw, "last_check_in");
  return {
    memberId: pick(raw, "member_id") || pick(client, "member_id") || "?",
    commitmentId: pick(raw, "commitment_id", "id"),
    label: pick(contact, "label") || pick(raw, "contact_label", "label") || "(no label)",
    relationship: RELATIONSHIPS[pick(contact, "relationship") || pick(raw, "relationship")] || null,
    status,
    timezone,
    today,
    startsOn: pick(raw, "starts_on") || null,
    endsOn: pick(raw, "ends_on") || null,
    current: Number(pick(streak, "current_days") ?? 0),
    longest: Number(pick(streak, "longest_days") ?? 0),
    nextMilestone: pick(streak, "next_milestone") ?? null,
    milestonesReached: pick(streak, "milestones_reached") || [],
    lastCheckIn: typeof lastCheckIn === "object" && lastCheckIn ? pick(lastCheckIn, "date", "day") : lastCheckIn || null,
    days,
    urges,
    atRisk: atRisk || reasons.length > 0,
    reasons,
  };
}

/** The clients endpoint's JSON → [{memberId, commitments: [...], atRisk}], at-risk clients first. */
export function normaliseClients(json) {
  const list = Array.isArray(json) ? json : pick(json, "clients", "items") || [];
  const byMember = new Map();
  for (const client of list) {
    const commitments = pick(client, "commitments");
    const raws = Array.isArray(commitments) ? commitments : [client];
    for (const raw of raws) {
      const c = normaliseCommitment(raw, client);
      if (!byMember.has(c.memberId)) byMember.set(c.memberId, { memberId: c.memberId, commitments: [] });
      byMember.get(c.memberId).commitments.push(c);
    }
  }
  const clients = [...byMember.values()].map((client) => {
    client.commitments.sort((a, b) => Number(b.atRisk) - Number(a.atRisk) || a.label.localeCompare(b.label));
    client.atRisk = client.commitments.some((c) => c.atRisk);
    return client;
  });
  // At risk first; then a stable alphabetical order a coach can find people in each morning.
  clients.sort((a, b) => Number(b.atRisk) - Number(a.atRisk) || a.memberId.localeCompare(b.memberId));
  return clients;
}

export function daysToNextMilestone(c) {
  if (c.nextMilestone == null) return null;
  return Math.max(c.nextMilestone - c.current, 0);
}

/** A sentence per reason code; unknown codes are shown humanised rather than hidden. */
export function reasonText(reason, c) {
  switch (reason.code) {
    case "recent_slip":
      return "slipped in the last 7 days";
    case "high_urges":
      return "urges running high";
    case "not_checking_in": {
      const silent = c && c.lastCheckIn && c.today ? daysBetween(c.lastCheckIn, c.today) - 1 : null;
      return silent && silent > 0 ? `no check-in for ${silent} day${silent === 1 ? "" : "s"}` : "stopped checking in";
    }
    default:
      return reason.code.replace(/_/g, " ");
  }
}

export function channelText(channel) {
  return CHANNELS[channel] || (channel || "").replace(/_/g, " ");
}

// -- one commitment's full history ------------------------------------------------------------

/** Check-ins endpoint JSON → {date: {outcome, urge, slip}}; anything else in a report is dropped. */
export function reportsByDay(json) {
  const list = Array.isArray(json) ? json : pick(json, "items", "check_ins") || [];
  const byDay = {};
  for (const item of list) {
    const date = pick(item, "date", "day");
    if (!date) continue;
    // Only what a coach may see is kept; a private note never reaches the page's state.
    byDay[date] = {
      outcome: item.outcome === "slipped" ? "slipped" : "kept",
      urge: typeof item.urge === "number" ? item.urge : null,
      slip: item.slip ? { channel: item.slip.channel, initiatedBy: item.slip.initiated_by } : null,
    };
  }
  return byDay;
}

/** The slipped days among the reports, oldest first, with what a coach may see of each. */
export function slipsOf(reports) {
  return Object.keys(reports)
    .filter((day) => reports[day].outcome === "slipped")
    .sort()
    .map((day) => ({ date: day, ...reports[day].slip, urge: reports[day].urge }));
}

/**
 * The runs endpoint's JSON (`GET .../runs`: the service's own streak rules, oldest first) →
 * [{start, end, length, endedBy, reportedDays, milestones}]; `end` and `endedBy` are null
 * while the run goes on. The page never derives runs itself: they are the server's.
 */
export function runsOf(json) {
  const list = Array.isArray(json) ? json : pick(json, "items") || [];
  return list.map((run) => ({
    start: run.started_on,
    end: run.ended_on ?? null,
    length: Number(run.days ?? 0),
    endedBy: run.ended_by ?? null,
    reportedDays: Number(run.reported_days ?? 0),
    milestones: Array.isArray(run.milestones) ? run.milestones : [],
  }));
}

/** Every milestone the runs reached, with the day it was reached on, in the order reached. */
export function milestonesReached(runs) {
  const reached = [];
  for (const run of runs) {
    for (const threshold of run.milestones) reached.push({ threshold, on: addDays(run.start, threshold - 1), runStart: run.start });
  }
  return reached.sort((a, b) => (a.on < b.on ? -1 : a.on > b.on ? 1 : a.threshold - b.threshold));
}
