// Pure data functions of the dashboard: no DOM, no network. Dates are ISO "YYYY-MM-DD"
// strings of the member's own calendar; arithmetic on them is done in UTC so that a
// daylight-saving change in the coach's zone never shifts a member's day.
//
// The shapes read here are the service's documented ones (/dashboard/api/..., the same
// fields as GET /v1/coaches/{id}/clients and the feed's FeedItem): nothing is guessed, and
// nothing the service computes (runs, milestones, risk, "today") is computed again here.

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

export function shortDate(iso) {
  return new Date(parseDay(iso)).toLocaleDateString("en-GB", { timeZone: "UTC", day: "numeric", month: "short" });
}

export function longDate(iso) {
  return new Date(parseDay(iso)).toLocaleDateString("en-GB", {
    timeZone: "UTC", weekday: "short", day: "numeric", month: "short", year: "numeric",
  });
}

/** hh:mm of an instant, in the coach's own zone (when the page last heard from the service). */
export function clockTime(date) {
  return date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

/**
 * Whole days from `iso` to the member's today: THE day count of the page. "Last check-in:
 * 4 days ago" and "no check-in for 4 days" are the same number, by construction.
 */
export function daysSince(iso, today) {
  return iso && today ? daysBetween(iso, today) : null;
}

/** "today", "yesterday", "4 days ago" (see daysSince). */
export function relativeDay(iso, today) {
  if (!iso) return "never";
  const ago = daysSince(iso, today);
  if (ago === null) return shortDate(iso);
  if (ago <= 0) return "today";
  if (ago === 1) return "yesterday";
  return `${ago} days ago`;
}

// -- the coach's client list -------------------------------------------------------------------

/** One commitment of the clients endpoint (ClientCommitmentOut), in the shape the page renders. */
export function normaliseCommitment(raw, memberId, profile) {
  // The service's today in the member's zone: the streak is computed as of it.
  const today = raw.streak.as_of;
  const days = raw.last_30_days.map((d) => ({ date: d.date, state: d.state }));
  // The service leaves today out until it is reported (the day is not over); the strip
  // still ends on today so the coach sees where "now" is.
  if (raw.status === "active" && (!days.length || days[days.length - 1].date < today)) {
    days.push({ date: today, state: "unreported" });
    if (days.length > 30) days.shift();
  }
  return {
    memberId,
    displayName: profile?.display_name || null,
    commitmentId: raw.commitment_id,
    label: raw.contact_label || "(no label)",
    relationship: RELATIONSHIPS[raw.relationship] || null,
    status: raw.status,
    today,
    current: raw.streak.current_days,
    longest: raw.streak.longest_days,
    nextMilestone: raw.streak.next_milestone,
    lastCheckIn: raw.last_check_in_on,
    days,
    urges: raw.recent_urges.map((u) => ({ date: u.date, value: u.urge })),
    atRisk: raw.at_risk,
    reasons: raw.reasons.map((code) => ({ code })),
  };
}

/** The clients endpoint's JSON → [{memberId, name, commitments, atRisk, checkedInToday}]. */
export function normaliseClients(json) {
  return json.items.map((item) => {
    const commitments = item.commitments.map((raw) => normaliseCommitment(raw, item.member_id, item.profile));
    commitments.sort((a, b) => Number(b.atRisk) - Number(a.atRisk) || a.label.localeCompare(b.label));
    const active = commitments.filter((c) => c.status === "active");
    return {
      memberId: item.member_id,
      displayName: item.profile?.display_name || null,
      name: item.profile?.display_name || item.member_id,
      commitments,
      atRisk: item.at_risk,
      // Counted per client, never per commitment: every active commitment reported today.
      checkedInToday: active.length > 0 && active.every((c) => c.lastCheckIn && c.lastCheckIn >= c.today),
      hasActive: active.length > 0,
      current: Math.min(...commitments.map((c) => c.current)),
      lastCheckIn: commitments.map((c) => c.lastCheckIn).filter(Boolean).sort().pop() || null,
      daysSilent: Math.max(...commitments.map((c) => daysSince(c.lastCheckIn, c.today) ?? Infinity)),
    };
  });
}

export const SORTS = {
  risk: "At risk first",
  name: "Name",
  streak: "Shortest streak",
  silent: "Longest without a check-in",
};

/** The clients the coach asked for: filter chip, search text, sort order. */
export function visibleClients(clients, { filter = "all", query = "", sort = "risk" } = {}) {
  const needle = query.trim().toLowerCase();
  const shown = clients.filter((client) => {
    if (filter === "at_risk" && !client.atRisk) return false;
    if (filter === "not_today" && (client.checkedInToday || !client.hasActive)) return false;
    if (!needle) return true;
    const haystack = [client.memberId, client.displayName || "", ...client.commitments.map((c) => c.label)];
    return haystack.some((text) => text.toLowerCase().includes(needle));
  });
  const byName = (a, b) => a.name.localeCompare(b.name) || a.memberId.localeCompare(b.memberId);
  const orders = {
    risk: (a, b) => Number(b.atRisk) - Number(a.atRisk) || byName(a, b),
    name: byName,
    streak: (a, b) => a.current - b.current || byName(a, b),
    silent: (a, b) => b.daysSilent - a.daysSilent || byName(a, b),
  };
  return shown.sort(orders[sort] || orders.risk);
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
      const silent = c ? daysSince(c.lastCheckIn, c.today) : null;
      if (silent === null) return "no check-in yet";
      return `no check-in for ${silent} day${silent === 1 ? "" : "s"}`;
    }
    default:
      return reason.code.replace(/_/g, " ");
  }
}

/** How an urge level reads against the tenant's own threshold (at_risk.high_urge). */
export function urgeLevel(value, highUrge) {
  if (value === null || value === undefined) return null;
  if (value >= highUrge) return "high";
  if (value >= Math.ceil(highUrge / 2)) return "moderate";
  return "low";
}

export function urgeTrend(urges) {
  if (urges.length < 2) return "steady";
  const first = urges[0].value;
  const last = urges[urges.length - 1].value;
  return last > first + 1 ? "rising" : last < first - 1 ? "falling" : "steady";
}

export function channelText(channel) {
  return CHANNELS[channel] || (channel || "").replace(/_/g, " ");
}

// -- one commitment's full history ------------------------------------------------------------

/** The detail's check-ins → {date: {outcome, urge, mood, slip, attempts}}; nothing else is kept. */
export function reportsByDay(checkIns) {
  const byDay = {};
  for (const item of checkIns) {
    // Only what a coach may see is kept; a private note never reaches the page's state.
    byDay[item.date] = {
      outcome: item.outcome,
      urge: item.urge,
      mood: item.mood,
      slip: item.slip ? { channel: item.slip.channel, initiatedBy: item.slip.initiated_by } : null,
      // The channels the other person reached out on: a kept day with any is a held-firm
      // day (the service's own rule, CheckInOut.contact_attempts).
      attempts: item.contact_attempts.map((a) => a.channel),
    };
  }
  return byDay;
}

/** The days the pauses (PauseOut) not cancelled cover: a set of ISO dates. */
export function pausedDays(pauses) {
  const days = new Set();
  for (const pause of pauses) {
    if (pause.cancelled_at !== null) continue;
    for (let day = pause.from; day <= pause.to; day = addDays(day, 1)) days.add(day);
  }
  return days;
}

/** The slipped days among the reports, oldest first, with what a coach may see of each. */
export function slipsOf(reports) {
  return Object.keys(reports)
    .filter((day) => reports[day].outcome === "slipped")
    .sort()
    .map((day) => ({ date: day, ...reports[day].slip, urge: reports[day].urge }));
}

/** The service's runs (RunOut, oldest first), renamed for the page; never derived here. */
export function runsOf(items) {
  return items.map((run) => ({
    start: run.started_on,
    end: run.ended_on,
    length: run.days,
    endedBy: run.ended_by,
    reportedDays: run.reported_days,
    milestones: run.milestones,
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

// -- the coach's feed ------------------------------------------------------------------------------

const FEED_TEXT = {
  sos: () => "SOS: asked for help now",
  slip: (d) => `Slipped${d.date ? ` on ${shortDate(d.date)}` : ""}`,
  urge_reached_out: () => "Reached out after an urge",
  missed_day: (d) => `No check-in for ${d.date ? shortDate(d.date) : "a day"}`,
  at_risk: (d) => (d.at_risk === false ? "No longer at risk" : "Now at risk"),
  milestone: (d) => `Reached ${d.milestone} day${d.milestone === 1 ? "" : "s"}`,
  milestone_revoked: (d) => `Milestone of ${d.milestone} days taken back (a report was corrected)`,
};

/** A feed item (FeedItem) as the page shows it. */
export function feedItem(item) {
  const text = (FEED_TEXT[item.kind] || (() => item.kind.replace(/_/g, " ")))(item.data || {});
  return {
    id: item.id,
    kind: item.kind,
    text,
    message: item.kind === "sos" ? item.data?.message ?? null : null,
    memberId: item.member_id,
    commitmentId: item.commitment_id,
    occurredAt: item.occurred_at,
    pinned: item.pinned,
    acknowledged: item.acknowledged_at !== null,
  };
}
