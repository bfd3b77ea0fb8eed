// The dashboard: SVG charts drawn from the existing metrics endpoints. The series over time are
// one /metrics/summary call per day (the endpoint takes any period); funnels come from
// /journeys/{name}/stats.
import { api } from "./api.js";
import { h, replace, s } from "./dom.js";

const DAYS = 7;
const COLORS = { sms: "#2f6fde", whatsapp: "#1aa260", email: "#d9822b", webchat: "#8e44ad", api: "#7f8c8d", system: "#95a5a6" };
const W = 520;
const H = 220;
const PAD = { l: 44, r: 10, t: 26, b: 28 };

function dayStarts() {
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  return Array.from({ length: DAYS }, (_, i) => new Date(today.getTime() - (DAYS - 1 - i) * 86400000));
}

function axis(max, label) {
  const y = (v) => PAD.t + (H - PAD.t - PAD.b) * (1 - v / (max || 1));
  const ticks = [0, max / 2, max].map((v) => s("g", {},
    s("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "gridline" }),
    s("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, label(v))));
  return { y, ticks };
}

function chart(title, desc, ...children) {
  return h("figure", { class: "chart card" }, h("figcaption", {}, title),
    s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": desc }, s("title", {}, desc), ...children));
}

/** Stacked bars: messages per channel per day. */
function perChannelChart(days, summaries) {
  const channels = [...new Set(summaries.flatMap((d) => d.per_channel.map((c) => c.channel)))].sort();
  const totals = summaries.map((d) => d.per_channel.reduce((n, c) => n + c.inbound + c.outbound, 0));
  const max = Math.max(1, ...totals);
  const { y, ticks } = axis(max, (v) => String(Math.round(v)));
  const slot = (W - PAD.l - PAD.r) / DAYS;
  const bars = summaries.flatMap((d, i) => {
    let acc = 0;
    return channels.map((ch) => {
      const row = d.per_channel.find((c) => c.channel === ch);
      const n = row ? row.inbound + row.outbound : 0;
      const rect = s("rect", { x: PAD.l + i * slot + slot * 0.2, width: slot * 0.6, y: y(acc + n), height: y(acc) - y(acc + n),
        fill: COLORS[ch] || "#888" }, s("title", {}, `${ch}: ${n} on ${days[i].toLocaleDateString()}`));
      acc += n;
      return rect;
    });
  });
  const labels = days.map((d, i) => s("text", { x: PAD.l + i * slot + slot / 2, y: H - 8, "text-anchor": "middle", class: "tick" },
    d.toLocaleDateString(undefined, { weekday: "short" })));
  const legend = channels.map((ch, i) => s("g", {}, s("rect", { x: PAD.l + i * 80, y: 0, width: 10, height: 10, fill: COLORS[ch] || "#888" }),
    s("text", { x: PAD.l + i * 80 + 14, y: 9, class: "tick" }, ch)));
  return chart("Messages per channel, last 7 days", `Stacked bars of messages per channel per day; total ${totals.reduce((a, b) => a + b, 0)}`,
    ...ticks, ...bars, ...labels, ...legend);
}

function fmtSeconds(v) {
  if (v === null || v === undefined) return "–";
  if (v < 10) return `${Number(v.toFixed(1))}s`;
  if (v < 90) return `${Math.round(v)}s`;
  if (v < 5400) return `${Math.round(v / 60)}m`;
  return `${(v / 3600).toFixed(1)}h`;
}

/** Median and average per day, side by side (the endpoint reports both, not the full histogram). */
function timesChart(title, days, summaries, key) {
  const values = summaries.map((d) => d[key]);
  const max = Math.max(1, ...values.flatMap((v) => [v.median || 0, v.average || 0]));
  const { y, ticks } = axis(max, fmtSeconds);
  const slot = (W - PAD.l - PAD.r) / DAYS;
  const bars = values.flatMap((v, i) => [["median", v.median, "bar-a", 0.15], ["average", v.average, "bar-b", 0.5]].map(([name, val, cls, off]) =>
    s("rect", { x: PAD.l + i * slot + slot * off, width: slot * 0.33, y: y(val || 0), height: y(0) - y(val || 0), class: cls },
      s("title", {}, `${name} ${fmtSeconds(val)} (${v.count} episodes) on ${days[i].toLocaleDateString()}`))));
  const labels = days.map((d, i) => s("text", { x: PAD.l + i * slot + slot / 2, y: H - 8, "text-anchor": "middle", class: "tick" },
    d.toLocaleDateString(undefined, { weekday: "short" })));
  const legend = [["median", "bar-a"], ["average", "bar-b"]].map(([name, cls], i) => s("g", {},
    s("rect", { x: PAD.l + i * 90, y: 0, width: 10, height: 10, class: cls }), s("text", { x: PAD.l + i * 90 + 14, y: 9, class: "tick" }, name)));
  return chart(title, `${title}: median and average per day`, ...ticks, ...bars, ...labels, ...legend);
}

const BUCKET_LABELS = ["≤1m", "1–5m", "5–15m", "15m–1h", "1–4h", "4h–1d", ">1d"];

/** The distribution over the week: episodes per time bucket (the endpoint's histogram). */
function histogramChart(title, stats) {
  const buckets = stats.histogram || [];
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const { y, ticks } = axis(max, (v) => String(Math.round(v)));
  const slot = (W - PAD.l - PAD.r) / Math.max(1, buckets.length);
  const bars = buckets.map((b, i) => s("rect", { x: PAD.l + i * slot + slot * 0.15, width: slot * 0.7, y: y(b.count),
    height: y(0) - y(b.count), class: "bar-a" }, s("title", {}, `${BUCKET_LABELS[i]}: ${b.count} episodes`)));
  const labels = buckets.map((b, i) => s("text", { x: PAD.l + i * slot + slot / 2, y: H - 8, "text-anchor": "middle", class: "tick" },
    BUCKET_LABELS[i] || ""));
  return chart(title, `${title}: ${buckets.map((b, i) => `${BUCKET_LABELS[i]} ${b.count}`).join(", ")}`, ...ticks, ...bars, ...labels);
}

function donut(title, share, label) {
  const r = 70;
  const c = 2 * Math.PI * r;
  const part = share === null ? 0 : share;
  return h("figure", { class: "chart card small" }, h("figcaption", {}, title),
    s("svg", { viewBox: "0 0 200 200", role: "img", "aria-label": `${title}: ${label}` },
      s("circle", { cx: 100, cy: 100, r, class: "donut-bg", "stroke-width": 24, fill: "none" }),
      s("circle", { cx: 100, cy: 100, r, class: "donut-fg", "stroke-width": 24, fill: "none",
        "stroke-dasharray": `${c * part} ${c}`, transform: "rotate(-90 100 100)" }),
      s("text", { x: 100, y: 108, "text-anchor": "middle", class: "big" }, share === null ? "–" : `${Math.round(share * 100)}%`)),
    h("p", { class: "muted" }, label));
}

function funnel(stats) {
  const t = stats.totals || {};
  const steps = ["entered", "sent", "delivered", "replied", "converted"].map((k) => [k, Number(t[k] || 0)]);
  const max = Math.max(1, ...steps.map(([, v]) => v));
  const rowH = 30;
  return h("figure", { class: "chart card" }, h("figcaption", {}, `Journey “${stats.journey}”`),
    s("svg", { viewBox: `0 0 ${W} ${steps.length * rowH + 10}`, role: "img", "aria-label": `Funnel of journey ${stats.journey}: ${steps.map(([k, v]) => `${k} ${v}`).join(", ")}` },
      steps.flatMap(([k, v], i) => [
        s("text", { x: 0, y: i * rowH + 20, class: "tick" }, k),
        s("rect", { x: 90, y: i * rowH + 6, height: 20, width: Math.max(1, (W - 150) * v / max), class: "bar-a" }),
        s("text", { x: 96 + Math.max(1, (W - 150) * v / max), y: i * rowH + 20, class: "tick" }, String(v))])));
}

export async function renderDashboard(main, app) {
  const page = h("section", { class: "dashboard page" }, h("h1", {}, "Dashboard"), h("p", { class: "muted" }, "Loading metrics…"));
  replace(main, page);
  const days = dayStarts();
  const until = new Date(days[DAYS - 1].getTime() + 86400000);
  try {
    const summaries = await Promise.all(days.map((d) => api("GET", "/metrics/summary",
      { query: { since: d.toISOString(), until: new Date(d.getTime() + 86400000).toISOString() } })));
    const week = await api("GET", "/metrics/summary", { query: { since: days[0].toISOString(), until: until.toISOString() } });
    const bc = week.bot_containment;
    const journeys = await api("GET", "/journeys").catch(() => ({ journeys: [] }));
    const stats = await Promise.all(journeys.journeys.map((j) => api("GET", `/journeys/${encodeURIComponent(j.name)}/stats`).catch(() => null)));
    replace(page, h("h1", {}, "Dashboard"),
      h("div", { class: "kpis" },
        h("div", { class: "card kpi" }, h("span", {}, "First response (median, 7 days)"), h("strong", {}, fmtSeconds(week.first_response_seconds.median))),
        h("div", { class: "card kpi" }, h("span", {}, "Resolution (median, 7 days)"), h("strong", {}, fmtSeconds(week.resolution_seconds.median))),
        h("div", { class: "card kpi" }, h("span", {}, "Episodes resolved"), h("strong", {}, String(week.resolution_seconds.count))),
        h("div", { class: "card kpi", "data-testid": "kpi-csat" }, h("span", {}, "Satisfaction (7 days)"),
          h("strong", {}, week.csat && week.csat.count ? `${week.csat.average.toFixed(1)} / 5` : "–"),
          h("small", { class: "muted" }, week.csat && week.csat.count
            ? `${week.csat.count} answers: ${[5, 4, 3, 2, 1].map((n) => `${week.csat.distribution[n]}×${n}`).join(" ")}`
            : "no survey answers yet (the survey is offered on resolve)"))),
      h("div", { class: "charts" },
        perChannelChart(days, summaries),
        timesChart("First response time per day", days, summaries, "first_response_seconds"),
        histogramChart("First response times, 7 days (episodes)", week.first_response_seconds),
        histogramChart("Resolution times, 7 days (episodes)", week.resolution_seconds),
        timesChart("Resolution time per day", days, summaries, "resolution_seconds"),
        donut("Bot containment (7 days)", bc.rate, `${bc.bot_only} of ${bc.episodes} episodes never needed an agent`),
        ...stats.filter(Boolean).map(funnel)));
  } catch (err) {
    replace(page, h("h1", {}, "Dashboard"), h("p", { class: "error" }, err.status === 403 ? "The dashboard is for admins." : err.message));
  }
}
