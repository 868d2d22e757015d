// The dashboard's pure parts, kept apart from the page so that they can be
// unit-tested in Node (tests/dashboard/unit.mjs loads this file as is):
//
// - parseOpenMetrics: a small, tolerant reader of the OpenMetrics (and
//   Prometheus) text format: samples with their labels and values;
// - stageSnapshot / addStageSample / stageSeries: a stage task's figures
//   (records in/s, rows out/s, consumer lag, watermark delay, dead letters,
//   checkpoint age) from successive scrapes;
// - sparkPath: the SVG path of a small chart;
// - podCounts / setPodCount: read and edit the `count:` line of a pod type
//   in a service spec's YAML text, refusing anything not plainly recognizable.
//
// No DOM, no network. Everything is exposed as `SmackLib`.
'use strict';

(function (root) {
  // ---- OpenMetrics text ----------------------------------------------------

  const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
  const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*/;
  const MAX_ERRORS = 20;

  function parseValue(tok) {
    if (tok === 'NaN') return NaN;
    if (tok === '+Inf' || tok === 'Inf') return Infinity;
    if (tok === '-Inf') return -Infinity;
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(tok)) return null;
    return Number(tok);
  }

  /** Parses `{a="x",b="y"}` at the start of `s`; returns [labels, rest] or throws. */
  function parseLabels(s) {
    const labels = {};
    let i = 1; // past '{'
    for (;;) {
      while (s[i] === ' ') i++;
      if (s[i] === '}') return [labels, s.slice(i + 1)];
      const m = s.slice(i).match(LABEL_RE);
      if (!m) throw new Error('expected a label name');
      const name = m[0];
      i += name.length;
      while (s[i] === ' ') i++;
      if (s[i] !== '=') throw new Error(`expected = after label ${name}`);
      i++;
      while (s[i] === ' ') i++;
      if (s[i] !== '"') throw new Error(`expected a quoted value for label ${name}`);
      i++;
      let v = '';
      for (;;) {
        if (i >= s.length) throw new Error(`unterminated value of label ${name}`);
        const c = s[i];
        if (c === '\\') {
          const n = s[i + 1];
          v += n === 'n' ? '\n' : n === undefined ? '' : n;
          i += 2;
        } else if (c === '"') {
          i++;
          break;
        } else {
          v += c;
          i++;
        }
      }
      labels[name] = v;
      while (s[i] === ' ') i++;
      if (s[i] === ',') i++;
      else if (s[i] !== '}') throw new Error(`expected , or } after label ${name}`);
    }
  }

  /**
   * Reads OpenMetrics / Prometheus text. Returns `{ samples, types, errors }`:
   * samples as `{ name, labels, value }`, family types by family name (from
   * `# TYPE`), and what could not be read (`line N: why`, at most 20). Bad
   * lines are skipped; reading stops at `# EOF`.
   */
  function parseOpenMetrics(text) {
    const samples = [];
    const types = {};
    const errors = [];
    const lines = String(text ?? '').split(/\r?\n/);
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n].trim();
      if (!line) continue;
      if (line.startsWith('#')) {
        if (line === '# EOF') break;
        const m = line.match(/^#\s+TYPE\s+(\S+)\s+(\S+)/);
        if (m) types[m[1]] = m[2];
        continue;
      }
      try {
        const nm = line.match(NAME_RE);
        if (!nm) throw new Error('expected a metric name');
        const name = nm[0];
        let rest = line.slice(name.length).trimStart();
        let labels = {};
        if (rest.startsWith('{')) [labels, rest] = parseLabels(rest);
        const tok = rest.trim().split(/\s+/)[0];
        if (!tok) throw new Error(`no value for ${name}`);
        const value = parseValue(tok);
        if (value === null) throw new Error(`${JSON.stringify(tok)} is not a number`);
        samples.push({ name, labels, value });
      } catch (e) {
        if (errors.length < MAX_ERRORS) errors.push(`line ${n + 1}: ${e.message}`);
      }
    }
    return { samples, types, errors };
  }

  /** Whether a sample matches every label in `where`. */
  function matches(s, where) {
    return Object.entries(where || {}).every(([k, v]) => s.labels[k] === v);
  }

  /** The sum of every sample called `name` (null if there is none). */
  function sumOf(parsed, name, where) {
    let sum = null;
    for (const s of parsed.samples) {
      if (s.name === name && matches(s, where) && Number.isFinite(s.value)) sum = (sum ?? 0) + s.value;
    }
    return sum;
  }

  /** The largest of the samples called `name` (null if there is none). */
  function maxOf(parsed, name, where) {
    let max = null;
    for (const s of parsed.samples) {
      if (s.name === name && matches(s, where) && Number.isFinite(s.value)) max = max === null ? s.value : Math.max(max, s.value);
    }
    return max;
  }

  /** Sums of the samples called `name`, by the value of `label`. */
  function sumBy(parsed, name, label) {
    const out = {};
    for (const s of parsed.samples) {
      if (s.name !== name || !Number.isFinite(s.value)) continue;
      const k = s.labels[label] ?? '';
      out[k] = (out[k] ?? 0) + s.value;
    }
    return out;
  }

  // ---- a stage task's figures ------------------------------------------------

  /** The sample names the stage charts read (see pipelines/src/task/metrics.rs). */
  const STAGE = {
    recordsIn: 'smack_stage_records_in_total',
    rowsOut: 'smack_stage_rows_out_total',
    deadLettered: 'smack_stage_dead_lettered_total',
    lag: 'smack_stage_consumer_lag',
    watermarkDelay: 'smack_stage_watermark_delay_seconds',
    checkpoints: 'smack_stage_checkpoints_total',
    checkpointCount: 'smack_stage_checkpoint_duration_seconds_count',
    lastCheckpoint: 'smack_stage_last_checkpoint_timestamp_seconds',
  };

  /** Whether a scrape holds any stage family. */
  function isStage(parsed) {
    return parsed.samples.some((s) => s.name.startsWith('smack_stage_'));
  }

  /**
   * One scrape's figures: counters summed over sources and sinks, lag summed
   * over partitions, the largest watermark delay, dead letters in total and
   * by reason, checkpoints written and (if the task says) the time of the
   * last one, in seconds since the epoch.
   */
  function stageSnapshot(parsed) {
    return {
      recordsIn: sumOf(parsed, STAGE.recordsIn),
      rowsOut: sumOf(parsed, STAGE.rowsOut),
      lag: sumOf(parsed, STAGE.lag),
      watermarkDelay: maxOf(parsed, STAGE.watermarkDelay),
      deadLettered: sumOf(parsed, STAGE.deadLettered),
      deadByReason: sumBy(parsed, STAGE.deadLettered, 'reason'),
      checkpoints: sumOf(parsed, STAGE.checkpoints) ?? sumOf(parsed, STAGE.checkpointCount),
      lastCheckpointTs: maxOf(parsed, STAGE.lastCheckpoint),
    };
  }

  /** An empty history of one task's scrapes. */
  function newStageHistory() {
    return { samples: [], firstT: null, checkpointSeenT: null };
  }

  /**
   * Adds the scrape taken at `t` (ms) to `hist`, keeping `windowMs` (and one
   * sample before it, for rates). The checkpoint age is the task's own last
   * checkpoint time when it serves one; otherwise it is counted from the
   * scrape that first saw the checkpoint counter grow (so it is known only
   * once a checkpoint happened while the page watched; until then it is "at
   * least" the time watched). A counter that went down means the task
   * restarted: the watch starts again.
   */
  function addStageSample(hist, t, snap, windowMs) {
    const prev = hist.samples[hist.samples.length - 1];
    if (prev && t <= prev.t) return hist;
    const restarted = prev && ['recordsIn', 'rowsOut', 'checkpoints'].some(
      (k) => prev.snap[k] !== null && snap[k] !== null && snap[k] < prev.snap[k]);
    if (hist.firstT === null || restarted) {
      hist.firstT = t;
      hist.checkpointSeenT = null;
    }
    if (prev && !restarted && snap.checkpoints !== null && prev.snap.checkpoints !== null &&
      snap.checkpoints > prev.snap.checkpoints) {
      hist.checkpointSeenT = t;
    }
    let age = null;
    let ageAtLeast = null;
    if (snap.lastCheckpointTs !== null && snap.lastCheckpointTs > 0) {
      age = Math.max(0, t / 1000 - snap.lastCheckpointTs);
    } else if (hist.checkpointSeenT !== null) {
      age = (t - hist.checkpointSeenT) / 1000;
    } else if (snap.checkpoints) {
      ageAtLeast = (t - hist.firstT) / 1000;
    }
    hist.samples.push({ t, snap, restarted: !!restarted, checkpointAge: age, checkpointAgeAtLeast: ageAtLeast });
    const from = t - windowMs;
    while (hist.samples.length > 2 && hist.samples[1].t < from) hist.samples.shift();
    return hist;
  }

  /** The per-second rate of counter `key` between two samples (null across a restart). */
  function rate(a, b, key) {
    const dt = (b.t - a.t) / 1000;
    if (b.restarted || dt <= 0 || a.snap[key] === null || b.snap[key] === null || b.snap[key] < a.snap[key]) return null;
    return (b.snap[key] - a.snap[key]) / dt;
  }

  /**
   * The chart series of a history: `[{ t, v }]` each (v null where unknown)
   * and the latest figures.
   */
  function stageSeries(hist) {
    const s = hist.samples;
    const pts = (f) => s.map((x) => ({ t: x.t, v: f(x) }));
    const rates = (key) => s.slice(1).map((b, i) => ({ t: b.t, v: rate(s[i], b, key) }));
    const last = s[s.length - 1];
    const lastOf = (series) => (series.length ? series[series.length - 1].v : null);
    const out = {
      recordsIn: rates('recordsIn'),
      rowsOut: rates('rowsOut'),
      lag: pts((x) => x.snap.lag),
      watermarkDelay: pts((x) => x.snap.watermarkDelay),
      deadLettered: pts((x) => x.snap.deadLettered),
      checkpointAge: pts((x) => x.checkpointAge),
    };
    out.latest = {
      recordsIn: lastOf(out.recordsIn),
      rowsOut: lastOf(out.rowsOut),
      lag: last ? last.snap.lag : null,
      watermarkDelay: last ? last.snap.watermarkDelay : null,
      deadLettered: last ? last.snap.deadLettered : null,
      deadByReason: last ? last.snap.deadByReason : {},
      checkpoints: last ? last.snap.checkpoints : null,
      checkpointAge: last ? last.checkpointAge : null,
      checkpointAgeAtLeast: last ? last.checkpointAgeAtLeast : null,
    };
    return out;
  }

  // ---- small charts ------------------------------------------------------------

  /**
   * The SVG path (`d`) of `points` ([{t, v}]) drawn between times t0 and t1
   * in a w × h box, from 0 up to the largest value (or 1); a null value
   * breaks the line. Returns `{ d, max }`.
   */
  function sparkPath(points, t0, t1, w, h) {
    const finite = points.filter((p) => p.v !== null && Number.isFinite(p.v));
    const max = Math.max(1e-9, ...finite.map((p) => p.v), 0);
    const span = Math.max(1, t1 - t0);
    const r = (x) => Math.round(x * 10) / 10;
    let d = '';
    let pen = false;
    for (const p of points) {
      if (p.v === null || !Number.isFinite(p.v) || p.t < t0) {
        pen = false;
        continue;
      }
      const x = r(((p.t - t0) / span) * w);
      const y = r(h - 1 - (Math.max(0, p.v) / max) * (h - 2));
      d += (pen ? 'L' : 'M') + x + ' ' + y;
      pen = true;
    }
    return { d, max: finite.length ? max : 0 };
  }

  // ---- pod counts in a spec's YAML ---------------------------------------------

  const KEY_RE = /^([A-Za-z0-9_.-]+|"[^"\\]*"|'[^']*'):[ \t]*(#.*)?$/;

  function indentOf(line) {
    return line.length - line.trimStart().length;
  }

  function blank(line) {
    const t = line.trim();
    return t === '' || t.startsWith('#');
  }

  function unquote(k) {
    return /^["']/.test(k) ? k.slice(1, -1) : k;
  }

  /**
   * The pod types of a spec's YAML text and their `count:` lines:
   * `{ pods: [{ type, count, line }] , error }`. A pod type whose count is
   * not a plain `count: N` line directly under it gets `count: null` and an
   * `error`; `error` at the top says why no pod type could be read.
   */
  function podCounts(yaml) {
    const lines = String(yaml ?? '').split('\n');
    const tops = [];
    for (let i = 0; i < lines.length; i++) {
      if (/^pods:/.test(lines[i])) tops.push(i);
    }
    if (tops.length !== 1) {
      return { pods: [], error: tops.length ? 'the spec has more than one `pods:` line' : 'the spec has no top-level `pods:` line' };
    }
    const top = tops[0];
    if (!/^pods:[ \t]*(#.*)?\r?$/.test(lines[top])) {
      return { pods: [], error: `line ${top + 1}: \`pods:\` is not a block mapping (\`${lines[top].trim()}\`)` };
    }
    let end = lines.length;
    for (let i = top + 1; i < lines.length; i++) {
      if (!blank(lines[i]) && indentOf(lines[i]) === 0) {
        end = i;
        break;
      }
    }
    for (let i = top + 1; i < end; i++) {
      if (!blank(lines[i]) && /^ *\t/.test(lines[i])) return { pods: [], error: `line ${i + 1}: indented with a tab` };
    }
    const body = [];
    for (let i = top + 1; i < end; i++) if (!blank(lines[i])) body.push(i);
    if (!body.length) return { pods: [], error: '`pods:` is empty' };
    const podIndent = indentOf(lines[body[0]]);
    const pods = [];
    for (let b = 0; b < body.length; b++) {
      const i = body[b];
      if (indentOf(lines[i]) !== podIndent) continue;
      const text = lines[i].trim().replace(/\r$/, '');
      const km = text.match(KEY_RE);
      if (!km) {
        pods.push({ type: text, count: null, line: null, error: `line ${i + 1}: \`${text}\` is not a plain pod type key` });
        continue;
      }
      const type = unquote(km[1]);
      // The pod's own fields: the lines indented under it, at its first field's indent.
      const fields = [];
      for (let c = b + 1; c < body.length && indentOf(lines[body[c]]) > podIndent; c++) fields.push(body[c]);
      const fieldIndent = fields.length ? indentOf(lines[fields[0]]) : null;
      const counts = fields.filter((c) => indentOf(lines[c]) === fieldIndent && /^count\s*:/.test(lines[c].trim()));
      if (counts.length !== 1) {
        const why = counts.length ? 'more than one `count:` line' : 'no `count:` line directly under it';
        pods.push({ type, count: null, line: null, error: `pod type ${type} has ${why}` });
        continue;
      }
      const c = counts[0];
      const vm = lines[c].match(/^(\s*count\s*:[ \t]*)(\d+)([ \t]*(#.*)?\r?)$/);
      if (!vm) {
        pods.push({ type, count: null, line: c + 1, error: `line ${c + 1}: \`${lines[c].trim()}\` is not \`count: N\`` });
        continue;
      }
      pods.push({ type, count: Number(vm[2]), line: c + 1, error: null });
    }
    return { pods, error: pods.length ? null : 'no pod type under `pods:`' };
  }

  /**
   * The spec's YAML with pod type `type`'s count set to `n`, changing only
   * the number on its `count:` line: `{ yaml, from }`, or `{ error }` when
   * the count is not plainly recognizable (then nothing is guessed).
   */
  function setPodCount(yaml, type, n) {
    if (!Number.isInteger(n) || n < 0) return { error: `the count must be a whole number, 0 or more (not ${n})` };
    const read = podCounts(yaml);
    if (read.error) return { error: read.error };
    const pod = read.pods.find((p) => p.type === type);
    if (!pod) return { error: `the spec has no pod type ${type} (it has ${read.pods.map((p) => p.type).join(', ')})` };
    if (pod.error) return { error: pod.error };
    const lines = String(yaml).split('\n');
    lines[pod.line - 1] = lines[pod.line - 1].replace(/^(\s*count\s*:[ \t]*)\d+/, (_, head) => head + n);
    return { yaml: lines.join('\n'), from: pod.count };
  }

  root.SmackLib = {
    parseOpenMetrics,
    sumOf,
    maxOf,
    sumBy,
    isStage,
    stageSnapshot,
    newStageHistory,
    addStageSample,
    stageSeries,
    sparkPath,
    podCounts,
    setPodCount,
  };
})(typeof globalThis !== 'undefined' ? globalThis : this);
