// The smack dashboard: polls the master's API (and, through the master,
// each service scheduler's API) and draws agents, plans, pods and tasks;
// scrapes each task whose pod has a `metrics` port (through the master's
// /v1/tasks/{id}/metrics) and charts its stage figures; scales a service by
// editing the `count:` line of a pod type in its spec. Plain JavaScript, no
// framework, no build step; the pure parts are in lib.js (`SmackLib`). The
// cluster token comes from the sign-in box or from `#token=...` in the link
// `smack up` prints, and is kept in sessionStorage for this browser session
// only.
'use strict';

const POLL_MS = 1500;
/** How often stage tasks are scraped, and how much their charts show. */
const STAGE_POLL_MS = 3000;
const STAGE_WINDOW_MS = 120000;
/** A chart's drawing box (its SVG viewBox; the page stretches it). */
const CHART_W = 160;
const CHART_H = 32;
const LOG_POLL_MS = 1500;
const LOG_MAX_CHARS = 400000;
const TOKEN_KEY = 'smack.token';

const $ = (id) => document.getElementById(id);

let token = null;
let pollTimer = null;
let polling = false;
let pollAgain = false;
let running = false;
/** Actions under way, by key: their buttons stay disabled. */
const pending = new Set();
/** The HTML last drawn into each element, to redraw only what changed. */
const drawn = new WeakMap();
/** The tasks to scrape, from the last poll: `{ fwId, pod, task }`. */
let stageTargets = [];
/** Task id → `{ hist, error, stage, parseErrors }`. */
const stages = new Map();
let stageTimer = null;
let stageBusy = false;
/** Counts typed but not yet applied, by `framework|pod type`. */
const scaleDraft = new Map();
/** The outcome of the last scale of each framework. */
const scaleNotes = new Map();

/** Thrown when the master refuses the token. */
class Unauthorized extends Error {}

// ---- helpers ---------------------------------------------------------------

function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const enc = encodeURIComponent;

function fmtCpus(c) {
  const n = Number(c) || 0;
  return String(Math.round(n * 100) / 100);
}

function fmtMiB(m) {
  const n = Number(m) || 0;
  if (n >= 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + ' TiB';
  if (n >= 1024) return (n / 1024).toFixed(1) + ' GiB';
  return n + ' MiB';
}

function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

function state(s) {
  const v = s || 'UNKNOWN';
  return `<span class="state s-${esc(v)}">${esc(v)}</span>`;
}

/** Replaces an element's content only if it changed, then sizes its bars. */
function draw(el, html) {
  if (drawn.get(el) === html) return;
  drawn.set(el, html);
  el.innerHTML = html;
  // Widths are set here: the page's policy allows no inline style attributes.
  for (const b of el.querySelectorAll('[data-w]')) b.style.width = b.dataset.w + '%';
}

function setStatus(text, bad) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('bad', !!bad);
}

function showBanner(text) {
  $('banner-text').textContent = text;
  $('banner').hidden = false;
}

// ---- the API ---------------------------------------------------------------

async function api(path, method = 'GET', body = undefined) {
  const headers = { Authorization: 'Bearer ' + token };
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new Error('cannot reach the master: ' + e.message);
  }
  if (resp.status === 401) throw new Unauthorized('the master refused the token');
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const msg = data && data.error ? data.error : text || resp.statusText;
    throw new Error(`${method} ${path}: ${resp.status} ${msg}`);
  }
  return data;
}

/** A GET whose answer is text (a task's metrics). */
async function apiText(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
  } catch (e) {
    throw new Error('cannot reach the master: ' + e.message);
  }
  if (resp.status === 401) throw new Unauthorized('the master refused the token');
  const text = await resp.text();
  if (!resp.ok) {
    let msg = text || resp.statusText;
    try {
      msg = JSON.parse(text).error || msg;
    } catch (_) {
      // not JSON: the text as is
    }
    throw new Error(`${resp.status} ${msg}`);
  }
  return text;
}

function frameworkBase(fwId) {
  return `/v1/frameworks/${enc(fwId)}/api/v1`;
}

// ---- loading ---------------------------------------------------------------

async function loadService(fw) {
  const out = { fw, plans: [], pods: [], spec: null, error: null };
  if (!fw.api_url) {
    out.error = 'this framework announced no API when it subscribed: no plans or pods to show';
    return out;
  }
  const base = frameworkBase(fw.id);
  try {
    const spec = api(base + '/spec').catch((e) => {
      if (e instanceof Unauthorized) throw e;
      return { error: e.message };
    });
    const [list, pods] = await Promise.all([api(base + '/plans'), api(base + '/pods')]);
    const views = await Promise.all(list.map((p) => api(base + '/plans/' + enc(p.name))));
    out.plans = views.map((v) => v.plan);
    out.pods = pods;
    out.spec = await spec;
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    out.error = `its scheduler does not answer (${e.message})`;
  }
  return out;
}

async function refresh() {
  const [agents, st] = await Promise.all([api('/v1/agents'), api('/v1/state')]);
  const services = await Promise.all(st.frameworks.map(loadService));
  stageTargets = services.flatMap((svc) => svc.pods
    .filter(({ pod }) => pod.ports && pod.ports.metrics !== undefined)
    .flatMap(({ pod, tasks }) => tasks.map((task) => ({ fwId: svc.fw.id, pod: pod.name, task }))));
  drawAgents(agents);
  drawServices(services, st);
  drawStages();
  if (stageTimer === null && !stageBusy) pollStages();
}

async function poll() {
  if (!running) return;
  if (polling) {
    pollAgain = true;
    return;
  }
  clearTimeout(pollTimer);
  polling = true;
  try {
    await refresh();
    setStatus('live · updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    if (e instanceof Unauthorized) {
      signOut('The master no longer accepts this token. Sign in again.');
      return;
    }
    setStatus(e.message + ' · retrying', true);
  } finally {
    polling = false;
  }
  if (!running) return;
  if (pollAgain) {
    pollAgain = false;
    poll();
  } else {
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

// ---- agents ----------------------------------------------------------------

function resourceCell(total, reserved, used, fmt) {
  const pct = (v) => (total > 0 ? Math.min(100, Math.round((v / total) * 1000) / 10) : 0);
  return `<td class="res"><div class="bar" aria-hidden="true">` +
    `<span class="reserved" data-w="${pct(reserved)}"></span><span class="used" data-w="${pct(used)}"></span></div>` +
    `<div class="figs"><b>${esc(fmt(used))}</b> used · <b>${esc(fmt(reserved))}</b> reserved / ${esc(fmt(total))}</div></td>`;
}

function drawAgents(agents) {
  if (!agents.length) {
    draw($('agents'), '<p class="muted">No agent has registered yet.</p>');
    return;
  }
  const rows = agents.map((a) => {
    const t = a.total || {};
    const r = a.reserved || {};
    const u = a.used || {};
    return `<tr data-agent="${esc(a.id)}">` +
      `<td><code>${esc(a.id)}</code></td>` +
      `<td>${esc(a.hostname)}</td>` +
      `<td>${esc(a.zone || '-')}</td>` +
      `<td>${state(a.state)}<div class="small muted">heartbeat ${esc(ago(a.last_heartbeat_ms))}</div></td>` +
      resourceCell(t.cpus || 0, r.cpus || 0, u.cpus || 0, fmtCpus) +
      resourceCell(t.mem || 0, r.mem || 0, u.mem || 0, fmtMiB) +
      resourceCell(t.disk || 0, r.disk || 0, u.disk || 0, fmtMiB) +
      `<td>${esc(a.tasks)}</td></tr>`;
  });
  draw($('agents'),
    `<div class="table-wrap"><table class="agents"><thead><tr><th>Agent</th><th>Host</th><th>Zone</th>` +
    `<th>Health</th><th>CPUs</th><th>Mem</th><th>Disk</th><th>Tasks</th></tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table></div>`);
}

// ---- services: plans -------------------------------------------------------

function actionButton(key, label, busyLabel, aria, attrs, enabled, cls = '') {
  const busy = pending.has(key);
  const dis = busy || !enabled ? ' disabled' : '';
  return `<button type="button" class="${cls}" data-key="${esc(key)}" ${attrs} aria-label="${esc(aria)}"${dis}>` +
    `${esc(busy ? busyLabel : label)}</button>`;
}

function planButtons(fwId, plan, phase) {
  const target = phase || plan;
  const what = phase ? `phase ${phase.name} of plan ${plan.name}` : `plan ${plan.name}`;
  const base = `data-act="plan" data-fw="${esc(fwId)}" data-plan="${esc(plan.name)}"` +
    (phase ? ` data-phase="${esc(phase.name)}"` : '');
  const keyBase = `plan|${fwId}|${plan.name}|${phase ? phase.name : ''}`;
  const canPause = !target.interrupted && target.status !== 'COMPLETE';
  const canResume = target.interrupted || target.status === 'WAITING';
  return `<span class="actions">` +
    actionButton(keyBase + '|pause', 'Pause', 'Pausing…', 'Pause ' + what, base + ' data-op="pause"', canPause) +
    actionButton(keyBase + '|resume', 'Resume', 'Resuming…', 'Resume ' + what, base + ' data-op="resume"', canResume) +
    `</span>`;
}

function drawStep(step) {
  const tasks = Object.entries(step.progress || {}).map(([t, p]) => `${esc(t)}: ${esc(p)}`).join(', ');
  let why = step.message || '';
  if (step.backoff && step.state === 'DELAYED') {
    const left = Math.max(0, Math.round((step.backoff.until_ms - Date.now()) / 1000));
    why = (why ? why + ' · ' : '') + `backing off after ${step.backoff.attempts} failure(s), retry in ~${left} s`;
  }
  return `<li class="step" data-step="${esc(step.name)}" data-state="${esc(step.state)}">` +
    `<code>${esc(step.name)}</code> ${state(step.state)}` +
    (step.interrupted && step.state !== 'COMPLETE' ? ' <span class="flag">paused</span>' : '') +
    (tasks ? ` <span class="small muted">${tasks}</span>` : '') +
    (why ? `<span class="why">${esc(why)}</span>` : '') +
    `</li>`;
}

function drawPlan(fwId, plan) {
  const steps = plan.phases.flatMap((p) => p.steps);
  const done = steps.filter((s) => s.state === 'COMPLETE').length;
  const phases = plan.phases.map((ph) =>
    `<li class="phase" data-phase="${esc(ph.name)}"><div class="phase-head">` +
    `<span>${esc(ph.name)}</span> <span class="muted small">${esc(ph.strategy)}</span> ${state(ph.status)}` +
    (ph.interrupted ? ' <span class="flag">paused</span>' : '') +
    planButtons(fwId, plan, ph) + `</div>` +
    `<ul>${ph.steps.map(drawStep).join('')}</ul></li>`).join('');
  const errors = (plan.errors || []).map((e) => `<li>${esc(e)}</li>`).join('');
  const params = Object.entries(plan.parameters || {}).map(([k, v]) => `${esc(k)}=${esc(v)}`).join(' ');
  return `<div class="plan" data-plan="${esc(plan.name)}" data-status="${esc(plan.status)}">` +
    `<div class="plan-head"><strong>${esc(plan.name)}</strong>` +
    ` <span class="muted small">${esc(plan.strategy)}</span> ${state(plan.status)}` +
    (plan.interrupted ? ' <span class="flag">paused</span>' : '') +
    ` <span class="count">${done}/${steps.length} steps</span>` +
    planButtons(fwId, plan, null) + `</div>` +
    (params ? `<div class="small muted">parameters: ${params}</div>` : '') +
    `<ul class="tree">${phases}</ul>` +
    (errors ? `<ul class="plan-errors">${errors}</ul>` : '') +
    `</div>`;
}

// ---- services: pods --------------------------------------------------------

function volumeIndex(st) {
  const vols = new Map();
  for (const a of st.agents || []) {
    for (const r of a.reservations || []) {
      for (const v of r.volumes || []) vols.set(v.id, v);
    }
  }
  return vols;
}

function drawVolume(id, vols) {
  const v = vols.get(id);
  if (!v) return `<div><code>${esc(id)}</code></div>`;
  const src = v.source || {};
  const kind = src.type === 'MOUNT' ? `MOUNT ${esc(src.path)}` : `ROOT ${esc(fmtMiB(src.size))}`;
  return `<div><code>${esc(v.container_path)}</code> <span class="small muted nowrap">${kind}</span>` +
    `<div class="ids">${esc(id)}</div></div>`;
}

function drawTask(t) {
  const st = t.state || 'LAUNCHING';
  const link = (stream) => `<a href="#log/${enc(t.id)}/${stream}" data-log="${esc(t.id)}">${stream}</a>`;
  return `<div class="task" data-task="${esc(t.id)}"><span>${esc(t.task)}</span> ${state(st)}` +
    (t.ready ? ' <span class="small muted">ready</span>' : '') +
    ` <span class="small">${link('stdout')} · ${link('stderr')}</span>` +
    (t.message ? `<span class="said">${esc(t.message)}</span>` : '') +
    `<div class="ids">${esc(t.id)}</div></div>`;
}

function drawPods(fwId, pods, vols) {
  if (!pods.length) return '<p class="note">No pods yet.</p>';
  const rows = pods.map(({ pod, tasks }) => {
    const placed = pod.agent_id
      ? `${esc(pod.hostname)}<div class="ids">${esc(pod.agent_id)}</div>`
      : '<span class="muted">not placed</span>';
    const ports = Object.entries(pod.ports || {}).map(([n, p]) => `<div>${esc(n)} <code>${esc(p)}</code></div>`);
    const flags = (pod.replace ? ' <span class="flag">replacing</span>' : '') +
      (pod.paused ? ' <span class="flag">maintenance</span>' : '');
    const base = `data-act="pod" data-fw="${esc(fwId)}" data-pod="${esc(pod.name)}"`;
    const key = `pod|${fwId}|${pod.name}|`;
    return `<tr data-pod="${esc(pod.name)}">` +
      `<td><strong>${esc(pod.name)}</strong>${flags}` +
      (pod.waiting ? `<span class="why">${esc(pod.waiting)}</span>` : '') + `</td>` +
      `<td>${placed}</td>` +
      `<td>${tasks.length ? tasks.map(drawTask).join('') : '<span class="muted">none launched</span>'}</td>` +
      `<td>${(pod.volume_ids || []).map((v) => drawVolume(v, vols)).join('') || '<span class="muted">-</span>'}</td>` +
      `<td>${ports.join('') || '<span class="muted">-</span>'}</td>` +
      `<td><span class="actions">` +
      actionButton(key + 'restart', 'Restart', 'Restarting…', `Restart pod ${pod.name}`, base + ' data-op="restart"', true) +
      actionButton(key + 'replace', 'Replace', 'Replacing…', `Replace pod ${pod.name}`, base + ' data-op="replace"', true,
        'danger') +
      `</span></td></tr>`;
  });
  return `<div class="table-wrap"><table class="pods"><thead><tr><th>Pod</th><th>Agent</th><th>Tasks</th>` +
    `<th>Volumes</th><th>Ports</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table></div>`;
}

// ---- services --------------------------------------------------------------

function drawService(svc, vols) {
  const fw = svc.fw;
  const head = `<div class="service-head"><h3>${esc(fw.name)}</h3>` +
    `${state(fw.connected ? 'REACHABLE' : 'UNREACHABLE')}` +
    `<span class="small muted">role <code>${esc(fw.role)}</code> · framework <code>${esc(fw.id)}</code>` +
    (fw.suppressed ? ' · offers suppressed' : '') + `</span></div>`;
  if (svc.error) return head + `<p class="note">${esc(svc.error)}</p>`;
  const plans = svc.plans.length
    ? `<div class="plans">${svc.plans.map((p) => drawPlan(fw.id, p)).join('')}</div>`
    : '<p class="note">No plans.</p>';
  return head + `<h4>Plans</h4>${plans}<h4>Pods</h4>${drawPods(fw.id, svc.pods, vols)}`;
}

function drawServices(services, st) {
  const root = $('services');
  if (!services.length) {
    draw(root, '<p class="muted">No service has subscribed yet. Deploy one with <code>smack service apply SPEC</code>.</p>');
    return;
  }
  // One card per framework, kept across polls so only changed cards redraw.
  if (!root.querySelector(':scope > .service')) {
    root.innerHTML = '';
    drawn.delete(root);
  }
  const vols = volumeIndex(st);
  const keep = new Set();
  for (const svc of services) {
    const id = 'svc-' + svc.fw.id;
    keep.add(id);
    let card = document.getElementById(id);
    if (!card) {
      card = document.createElement('article');
      card.id = id;
      card.className = 'card service';
      card.dataset.service = svc.fw.name;
      card.dataset.fw = svc.fw.id;
      for (const part of ['main', 'scale', 'stages']) {
        const div = document.createElement('div');
        div.className = 'svc-' + part;
        card.appendChild(div);
      }
      root.appendChild(card);
    }
    draw(card.querySelector('.svc-main'), drawService(svc, vols));
    // A field being typed in is not redrawn under the cursor.
    const scale = card.querySelector('.svc-scale');
    const typing = document.activeElement && document.activeElement.matches('input[data-scale]');
    if (!(typing && scale.contains(document.activeElement))) draw(scale, drawScale(svc));
  }
  for (const card of [...root.querySelectorAll(':scope > .service')]) {
    if (!keep.has(card.id)) card.remove();
  }
}

// ---- actions ---------------------------------------------------------------

async function act(button) {
  const d = button.dataset;
  const key = d.key;
  if (pending.has(key)) return;
  let path;
  let body;
  if (d.act === 'plan') {
    path = `${frameworkBase(d.fw)}/plans/${enc(d.plan)}/${enc(d.op)}`;
    body = d.phase ? { phase: d.phase } : {};
  } else if (d.act === 'scale') {
    scale(button);
    return;
  } else if (d.act === 'pod') {
    if (d.op === 'replace' &&
      !window.confirm(`Replace pod ${d.pod}? It is placed anew with a fresh volume; the data on its old volume is not kept.`)) {
      return;
    }
    path = `${frameworkBase(d.fw)}/pods/${enc(d.pod)}/${enc(d.op)}`;
  } else {
    return;
  }
  pending.add(key);
  button.disabled = true;
  try {
    await api(path, 'POST', body);
    $('banner').hidden = true;
  } catch (e) {
    if (e instanceof Unauthorized) {
      signOut('The master no longer accepts this token. Sign in again.');
      return;
    }
    showBanner(e.message);
  } finally {
    pending.delete(key);
    forgetDrawn();
    poll();
  }
}

/** Makes the next poll redraw everything (button states changed). */
function forgetDrawn() {
  for (const el of document.querySelectorAll('#agents, #services > .service > div')) drawn.delete(el);
}

// ---- scaling ---------------------------------------------------------------

function drawScale(svc) {
  const fw = svc.fw;
  if (svc.error || !svc.spec) return '';
  if (svc.spec.error) return `<h4>Scale</h4><p class="note">its spec cannot be read: ${esc(svc.spec.error)}</p>`;
  const read = SmackLib.podCounts(svc.spec.yaml);
  const note = scaleNotes.get(fw.id);
  const tail = note ? `<p class="scale-note small">${esc(note)}</p>` : '';
  if (read.error) return `<h4>Scale</h4><p class="note">pod counts cannot be edited here: ${esc(read.error)}</p>${tail}`;
  const rows = read.pods.map((p) => {
    const key = `${fw.id}|${p.type}`;
    const have = svc.pods.filter(({ pod }) => pod.pod_type === p.type).length;
    const value = scaleDraft.has(key) ? scaleDraft.get(key) : p.count ?? '';
    const attrs = `data-act="scale" data-fw="${esc(fw.id)}" data-pod-type="${esc(p.type)}"`;
    const field = p.count === null
      ? `<span class="why">${esc(p.error)}</span>`
      : `<input type="number" min="0" step="1" inputmode="numeric" value="${esc(value)}" data-scale="${esc(key)}"` +
        ` aria-label="${esc('Count of pod type ' + p.type)}">` +
        actionButton('scale|' + key, 'Scale', 'Scaling…', `Scale pod type ${p.type}`, attrs, true);
    return `<div class="scale-row" data-pod-type="${esc(p.type)}"><span class="scale-type">${esc(p.type)}</span>` +
      `${field}<span class="small muted">spec count ${esc(p.count ?? '?')} · ${have} pod${have === 1 ? '' : 's'}</span></div>`;
  });
  return `<h4>Scale</h4><div class="scale">${rows.join('')}</div>${tail}`;
}

/** Sets a pod type's count in the service's spec and applies it. */
async function scale(button) {
  const d = button.dataset;
  const key = d.key;
  if (pending.has(key)) return;
  const draftKey = `${d.fw}|${d.podType}`;
  const input = [...document.querySelectorAll('input[data-scale]')].find((i) => i.dataset.scale === draftKey);
  const raw = input ? input.value.trim() : '';
  const n = Number(raw);
  if (!raw || !Number.isInteger(n) || n < 0) {
    showBanner(`Scale ${d.podType}: the count must be a whole number, 0 or more (not "${raw}")`);
    return;
  }
  pending.add(key);
  button.disabled = true;
  const base = frameworkBase(d.fw);
  try {
    const spec = await api(base + '/spec');
    const edit = SmackLib.setPodCount(spec.yaml, d.podType, n);
    if (edit.error) throw new Error(`Cannot scale pod type ${d.podType}: ${edit.error}`);
    if (edit.from === n) {
      scaleNotes.set(d.fw, `${d.podType} already has count ${n}: nothing to change.`);
    } else {
      let r;
      try {
        r = await api(base + '/spec', 'POST', { yaml: edit.yaml, file: spec.file || '' });
      } catch (e) {
        if (e instanceof Unauthorized) throw e;
        const why = e.message.replace(/^POST \S+: /, '');
        throw new Error(`The scheduler refused to scale ${d.podType} from ${edit.from} to ${n}: ${why}`);
      }
      const plans = (r && r.plans) || [];
      scaleNotes.set(d.fw, `${d.podType}: count ${edit.from} → ${n}` +
        (plans.length ? ` · started ${plans.join(', ')}` : '') + '.');
    }
    scaleDraft.delete(draftKey);
    $('banner').hidden = true;
  } catch (e) {
    if (e instanceof Unauthorized) {
      signOut('The master no longer accepts this token. Sign in again.');
      return;
    }
    showBanner(e.message);
  } finally {
    pending.delete(key);
    if (document.activeElement && document.activeElement.dataset && document.activeElement.dataset.scale) {
      document.activeElement.blur();
    }
    forgetDrawn();
    poll();
  }
}

// ---- stage charts ----------------------------------------------------------

function fmtNum(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(1);
}

function fmtSecs(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v < 60) return (v < 10 ? v.toFixed(1) : Math.round(v)) + ' s';
  if (v < 3600) return Math.round(v / 60) + ' min';
  return (v / 3600).toFixed(1) + ' h';
}

function chart(key, label, series, shown, fmt, extra = '') {
  const now = Date.now();
  const { d, max } = SmackLib.sparkPath(series, now - STAGE_WINDOW_MS, now, CHART_W, CHART_H);
  return `<figure class="chart" data-chart="${key}"><figcaption><span>${esc(label)}</span>` +
    `<b class="val">${esc(shown)}</b></figcaption>` +
    `<svg viewBox="0 0 ${CHART_W} ${CHART_H}" preserveAspectRatio="none" role="img"` +
    ` aria-label="${esc(label + ', the last 2 minutes')}"><path class="base" d="M0 ${CHART_H - 0.5}H${CHART_W}"` +
    ` vector-effect="non-scaling-stroke"/>` +
    (d ? `<path class="line" d="${d}" vector-effect="non-scaling-stroke"/>` : '') + `</svg>` +
    `<div class="small muted">${max ? 'peak ' + esc(fmt(max)) : 'no data yet'}${extra}</div></figure>`;
}

function drawStage(target) {
  const { pod, task } = target;
  const entry = stages.get(task.id);
  const head = `<div class="stage-head"><strong>${esc(pod)}</strong> <span>${esc(task.task)}</span>` +
    ` ${state(task.state || 'LAUNCHING')}<span class="ids">${esc(task.id)}</span></div>`;
  let notes = '';
  if (task.state !== 'RUNNING') notes += `<p class="note">not running: its metrics are read while it runs</p>`;
  if (entry && entry.error) notes += `<p class="note bad-note">cannot read its metrics: ${esc(entry.error)}</p>`;
  if (entry && entry.hist.samples.length && !entry.stage) notes += '<p class="note">it serves no smack_stage_* families</p>';
  if (entry && entry.parseErrors.length) {
    notes += `<p class="note">${entry.parseErrors.length} line(s) of its metrics not understood: ` +
      `${esc(entry.parseErrors[0])}</p>`;
  }
  if (!entry || !entry.hist.samples.length) {
    return `<section class="stage" data-stage-task="${esc(task.id)}">${head}${notes}` +
      (task.state === 'RUNNING' && !(entry && entry.error) ? '<p class="note">reading its metrics…</p>' : '') +
      `</section>`;
  }
  const s = SmackLib.stageSeries(entry.hist);
  const l = s.latest;
  const reasons = Object.entries(l.deadByReason || {}).sort(([a], [b]) => a.localeCompare(b))
    .map(([r, v]) => `<span class="reason" data-reason="${esc(r)}">${esc(r || 'unknown')} ${esc(fmtNum(v))}</span>`)
    .join(' · ');
  let age = '–';
  if (l.checkpointAge !== null) age = fmtSecs(l.checkpointAge);
  else if (l.checkpointAgeAtLeast !== null) age = '≥ ' + fmtSecs(l.checkpointAgeAtLeast);
  else if (l.checkpoints === 0) age = 'none yet';
  const ckpts = l.checkpoints !== null ? ` · ${fmtNum(l.checkpoints)} written` : '';
  return `<section class="stage" data-stage-task="${esc(task.id)}">${head}${notes}<div class="charts">` +
    chart('records-in', 'records in/s', s.recordsIn, fmtNum(l.recordsIn), fmtNum) +
    chart('rows-out', 'rows out/s', s.rowsOut, fmtNum(l.rowsOut), fmtNum) +
    chart('consumer-lag', 'consumer lag', s.lag, fmtNum(l.lag), fmtNum) +
    chart('watermark-delay', 'watermark delay', s.watermarkDelay, fmtSecs(l.watermarkDelay), fmtSecs) +
    chart('dead-lettered', 'dead-lettered', s.deadLettered, fmtNum(l.deadLettered), fmtNum,
      reasons ? `<div class="reasons">${reasons}</div>` : '') +
    chart('checkpoint-age', 'checkpoint age', s.checkpointAge, age, fmtSecs, ckpts) +
    `</div></section>`;
}

function drawStages() {
  for (const card of document.querySelectorAll('#services > .service')) {
    const mine = stageTargets.filter((t) => t.fwId === card.dataset.fw);
    const html = mine.length
      ? `<h4>Stages <span class="small muted">the last 2 minutes, read every ${STAGE_POLL_MS / 1000} s</span></h4>` +
        `<div class="stages">${mine.map(drawStage).join('')}</div>`
      : '';
    draw(card.querySelector('.svc-stages'), html);
  }
}

async function scrapeStage(target) {
  const id = target.task.id;
  let entry = stages.get(id);
  if (!entry) {
    entry = { hist: SmackLib.newStageHistory(), error: null, stage: false, parseErrors: [] };
    stages.set(id, entry);
  }
  try {
    const text = await apiText(`/v1/tasks/${enc(id)}/metrics`);
    const parsed = SmackLib.parseOpenMetrics(text);
    entry.error = null;
    entry.parseErrors = parsed.errors;
    entry.stage = SmackLib.isStage(parsed);
    SmackLib.addStageSample(entry.hist, Date.now(), SmackLib.stageSnapshot(parsed), STAGE_WINDOW_MS);
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    entry.error = e.message;
  }
}

async function pollStages() {
  clearTimeout(stageTimer);
  stageTimer = null;
  if (!running) return;
  stageBusy = true;
  try {
    const live = stageTargets.filter((t) => t.task.state === 'RUNNING');
    await Promise.all(live.map(scrapeStage));
    const known = new Set(stageTargets.map((t) => t.task.id));
    for (const id of [...stages.keys()]) if (!known.has(id)) stages.delete(id);
    drawStages();
  } catch (e) {
    if (e instanceof Unauthorized) {
      stageBusy = false;
      signOut('The master no longer accepts this token. Sign in again.');
      return;
    }
  } finally {
    stageBusy = false;
  }
  if (running) stageTimer = setTimeout(pollStages, STAGE_POLL_MS);
}

function stopStages() {
  clearTimeout(stageTimer);
  stageTimer = null;
  stageTargets = [];
  stages.clear();
}

// ---- task logs -------------------------------------------------------------

const log = { task: null, stream: 'stdout', offset: null, timer: null, gen: 0 };

function routeLog() {
  const m = location.hash.match(/^#log\/([^/]+)\/(stdout|stderr)$/);
  if (!m || !token) {
    closeLog(false);
    return;
  }
  openLog(decodeURIComponent(m[1]), m[2]);
}

function openLog(task, stream) {
  clearTimeout(log.timer);
  log.gen += 1;
  Object.assign(log, { task, stream, offset: null });
  $('log-title').textContent = 'Log of ' + task;
  $('log-text').textContent = '';
  $('log-note').textContent = 'loading…';
  for (const b of document.querySelectorAll('#log [data-stream]')) {
    b.setAttribute('aria-pressed', String(b.dataset.stream === stream));
  }
  $('log').hidden = false;
  readLog(log.gen);
}

function closeLog(clearHash) {
  clearTimeout(log.timer);
  log.gen += 1;
  log.task = null;
  $('log').hidden = true;
  if (clearHash && location.hash.startsWith('#log/')) {
    history.replaceState(null, '', location.pathname + location.search);
  }
}

async function readLog(gen) {
  if (gen !== log.gen || !log.task) return;
  const q = log.offset === null ? 'lines=1000' : 'offset=' + log.offset;
  const pre = $('log-text');
  try {
    const r = await api(`/v1/tasks/${enc(log.task)}/log?stream=${log.stream}&${q}`);
    if (gen !== log.gen) return;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (r.data) {
      let text = pre.textContent + r.data;
      if (text.length > LOG_MAX_CHARS) text = text.slice(text.length - LOG_MAX_CHARS);
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    log.offset = r.offset;
    $('log-note').textContent = (pre.textContent ? '' : '(empty so far) ') + 'following · ' + log.stream;
  } catch (e) {
    if (gen !== log.gen) return;
    if (e instanceof Unauthorized) {
      signOut('The master no longer accepts this token. Sign in again.');
      return;
    }
    $('log-note').textContent = e.message;
  }
  log.timer = setTimeout(() => readLog(gen), LOG_POLL_MS);
}

// ---- signing in and out ----------------------------------------------------

function takeTokenFromLink() {
  const m = location.hash.match(/^#token=([^&]+)/);
  if (!m) return;
  try {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]).trim());
  } catch (_) {
    token = decodeURIComponent(m[1]).trim();
  }
  // The token leaves the address bar (and the history) at once.
  history.replaceState(null, '', location.pathname + location.search);
}

function showSignIn(message) {
  running = false;
  clearTimeout(pollTimer);
  stopStages();
  closeLog(false);
  $('app').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  setStatus('');
  const err = $('signin-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('token').focus();
}

function start() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  running = true;
  poll();
  routeLog();
}

function signOut(message) {
  token = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // storage unavailable: nothing kept
  }
  scaleDraft.clear();
  scaleNotes.clear();
  for (const id of ['agents', 'services']) {
    $(id).innerHTML = '<p class="muted">Loading…</p>';
    drawn.delete($(id));
  }
  showSignIn(message);
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $('token');
  const candidate = input.value.trim();
  if (!candidate) return;
  token = candidate;
  try {
    await api('/v1/health');
  } catch (e) {
    token = null;
    showSignIn(e instanceof Unauthorized ? 'The master refused this token.' : e.message);
    return;
  }
  try {
    sessionStorage.setItem(TOKEN_KEY, candidate);
  } catch (_) {
    // storage unavailable: the token lives in this page only
  }
  input.value = '';
  start();
}

// ---- wiring ----------------------------------------------------------------

function init() {
  takeTokenFromLink();
  try {
    token = token || sessionStorage.getItem(TOKEN_KEY);
  } catch (_) {
    // storage unavailable
  }
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => signOut(''));
  $('banner-close').addEventListener('click', () => { $('banner').hidden = true; });
  $('log-close').addEventListener('click', () => closeLog(true));
  document.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-act]');
    if (b && !b.disabled) act(b);
    const s = ev.target.closest('#log [data-stream]');
    if (s && log.task) {
      history.replaceState(null, '', `#log/${enc(log.task)}/${s.dataset.stream}`);
      routeLog();
    }
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !$('log').hidden) closeLog(true);
    const input = ev.target.closest && ev.target.closest('input[data-scale]');
    if (input && ev.key === 'Enter') {
      const b = input.parentElement.querySelector('button[data-act="scale"]');
      if (b && !b.disabled) act(b);
    }
  });
  document.addEventListener('input', (ev) => {
    const input = ev.target.closest && ev.target.closest('input[data-scale]');
    if (input) scaleDraft.set(input.dataset.scale, input.value);
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#token=')) {
      takeTokenFromLink();
      try {
        token = sessionStorage.getItem(TOKEN_KEY) || token;
      } catch (_) {
        // storage unavailable
      }
      if (!running && token) start();
      return;
    }
    routeLog();
  });
  if (token) start();
  else showSignIn('');
}

init();
