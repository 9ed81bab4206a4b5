// The local page: plain JS against /api/v1, no build step.
"use strict";
const token = new URLSearchParams(location.search).get("token");
const API = "api/v1";
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch(API + path, Object.assign({}, options, { headers }));
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.detail || body.error || resp.statusText);
  return body;
}

function el(tag, attrs = {}, text = "") {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}

function thumb(partId, hasImage) {
  if (!hasImage) return el("span", { class: "noimg" });
  const src = `${API}/inspections/${encodeURIComponent(partId)}/image` + (token ? `?token=${token}` : "");
  return el("img", { src, alt: partId, loading: "lazy" });
}

async function refreshStatus() {
  try {
    const s = await api("/status");
    $("station").textContent = s.station;
    $("state").textContent = s.paused ? "paused" : s.state;
    $("state").className = "badge " + (s.paused ? "paused" : s.state);
    $("links").replaceChildren(...[...(s.cameras || []), ...(s.links || [])].map((l) => {
      const good = ["ok", "ready", "online", "connected"].includes(l.state) && !l.failures;
      return el("span", { class: "badge " + (good ? "ok" : "bad") }, `${l.name} ${l.state}`);
    }));
    const c = s.counters;
    $("counters").textContent = `parts ${c.decisions}  PASS ${c.PASS}  REJECT ${c.REJECT}  NO-READ ${c["NO-READ"]}`;
  } catch (err) {
    $("state").textContent = "unreachable";
    $("state").className = "badge bad";
  }
}

function addLive(ev) {
  const li = el("li", { "data-part": ev.part_id });
  li.append(el("span", { class: "badge " + ev.outcome }, ev.outcome), thumb(ev.part_id, ev.outcome === "REJECT"),
            el("span", {}, `${ev.part_id}  ${ev.reason}  ${ev.t_total_ms.toFixed(1)} ms`));
  li.onclick = () => showDetail(ev.part_id);
  const list = $("live");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
  if (ev.outcome === "REJECT") refreshGallery();
}

async function refreshGallery() {
  const page = await api("/inspections?outcome=REJECT&limit=12");
  $("gallery").replaceChildren(...page.items.filter((r) => r.has_image).map((r) => {
    const img = thumb(r.part_id, true);
    img.onclick = () => showDetail(r.part_id);
    return img;
  }));
}

let current = null;
async function showDetail(partId) {
  const r = await api(`/inspections/${encodeURIComponent(partId)}`);
  current = r;
  $("detail").hidden = false;
  $("d-part").textContent = r.part_id;
  const img = $("d-image");
  const boxes = $("d-boxes");
  boxes.replaceChildren();
  if (r.image_url) {
    img.hidden = false;
    img.onload = () => {
      const sx = img.clientWidth / img.naturalWidth, sy = img.clientHeight / img.naturalHeight;
      for (const b of r.boxes || []) {
        const [x0, y0, x1, y1] = b.box;
        const d = el("div", { class: "box" });
        Object.assign(d.style, { left: x0 * sx + "px", top: y0 * sy + "px",
                                 width: (x1 - x0) * sx + "px", height: (y1 - y0) * sy + "px" });
        boxes.append(d);
      }
    };
    img.src = r.image_url + (token ? `?token=${token}` : "");
  } else {
    img.hidden = true;
  }
  const p = r.p_defective == null ? "-" : r.p_defective.toFixed(3);
  $("d-summary").textContent = `${r.outcome} (${r.reason}) · P(defective) ${p} · decided by ` +
    `${r.decided_by || "-"} · score ${r.score == null ? "-" : r.score} · ${(r.boxes || []).length} boxes · ` +
    `${r.detail || ""}`;
  $("d-votes").replaceChildren(...(r.votes || []).map((v, i) => {
    const tr = el("tr");
    const answer = v.defective == null ? "invalid" : v.defective ? "defective" : "good";
    tr.append(el("td", {}, `vote ${i + 1}`), el("td", {}, answer), el("td", {}, v.defect_type || ""),
              el("td", {}, v.description || ""));
    return tr;
  }));
  $("d-timings").textContent = "timings: " + Object.entries(r.timings || {})
    .map(([k, v]) => `${k} ${Number(v).toFixed(1)} ms`).join(" · ");
  const last = (r.labels || []).at(-1);
  $("r-result").textContent = last ? labelled(last) : "";
}

function labelled(row) {  // v1 rows have a verdict only
  const label = row.label || (row.verdict === "defect" ? "defective" : "good");
  return `labelled ${label}${row.defect_type ? " (" + row.defect_type + ")" : ""}${row.reviewer ? " by " + row.reviewer : ""}`;
}

async function review(label) {
  if (!current) return;
  const body = { label, defect_type: label === "defective" ? ($("r-type").value || null) : null };
  try {
    const row = await api(`/inspections/${encodeURIComponent(current.part_id)}/labels`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("r-result").textContent = labelled(row);
  } catch (err) {
    $("r-result").textContent = "not saved: " + err.message;
  }
}

async function control(name) {
  try { await api(`/control/${name}`, { method: "POST" }); } finally { refreshStatus(); }
}

$("r-defect").onclick = () => review("defective");
$("r-false").onclick = () => review("good");  // a false alarm: the part is good
$("pause").onclick = () => control("pause");
$("resume").onclick = () => control("resume");

const feed = new EventSource(`${API}/feed` + (token ? `?token=${token}` : ""));
feed.addEventListener("decision", (e) => addLive(JSON.parse(e.data)));
refreshStatus();
refreshGallery();
setInterval(refreshStatus, 2000);
