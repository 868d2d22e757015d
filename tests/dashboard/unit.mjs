// Unit tests of the dashboard's pure parts (operator/src/master/dashboard/lib.js),
// run by tests/dashboard.rs with `node unit.mjs` (no browser, no packages).
// The file is loaded as the page loads it: a plain script that sets
// `SmackLib` on the global object (this realm's, so that values compare).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import vm from 'node:vm';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const libPath = join(here, '../../operator/src/master/dashboard/lib.js');
vm.runInThisContext(readFileSync(libPath, 'utf8'), { filename: libPath });
const L = globalThis.SmackLib;

const tests = [];
const test = (name, f) => tests.push([name, f]);

// What prometheus-client writes for a stage task (pipelines/src/task/metrics.rs).
const STAGE_TEXT = `# HELP smack_stage_records_in Records read, per source.
# TYPE smack_stage_records_in counter
smack_stage_records_in_total{source="tx"} 100
smack_stage_records_in_total{source="cards"} 20
# HELP smack_stage_rows_out Rows written, per sink.
# TYPE smack_stage_rows_out counter
smack_stage_rows_out_total{sink="alerts"} 7
# TYPE smack_stage_dead_lettered counter
smack_stage_dead_lettered_total{source="tx",reason="decode"} 3
smack_stage_dead_lettered_total{source="tx",reason="late"} 2
smack_stage_dead_lettered_total{source="cards",reason="decode"} 1
# TYPE smack_stage_consumer_lag gauge
smack_stage_consumer_lag{source="tx",partition="0"} 40
smack_stage_consumer_lag{source="tx",partition="1"} 2
# TYPE smack_stage_watermark_delay_seconds gauge
# UNIT smack_stage_watermark_delay_seconds seconds
smack_stage_watermark_delay_seconds{source="tx"} 2.5
smack_stage_watermark_delay_seconds{source="cards"} 7.25
# TYPE smack_stage_checkpoint_duration_seconds histogram
smack_stage_checkpoint_duration_seconds_sum 0.5
smack_stage_checkpoint_duration_seconds_count 4
smack_stage_checkpoint_duration_seconds_bucket{le="0.0005"} 0
smack_stage_checkpoint_duration_seconds_bucket{le="+Inf"} 4
# TYPE smack_stage_checkpoints counter
smack_stage_checkpoints_total 4
# EOF
`;

test('OpenMetrics: samples, labels, types and special values', () => {
  const p = L.parseOpenMetrics(STAGE_TEXT);
  assert.deepEqual(p.errors, []);
  assert.equal(p.types.smack_stage_records_in, 'counter');
  assert.equal(p.types.smack_stage_checkpoint_duration_seconds, 'histogram');
  const inf = p.samples.find((s) => s.labels.le === '+Inf');
  assert.equal(inf.value, 4);
  assert.equal(L.sumOf(p, 'smack_stage_records_in_total'), 120);
  assert.equal(L.sumOf(p, 'smack_stage_records_in_total', { source: 'tx' }), 100);
  assert.equal(L.maxOf(p, 'smack_stage_watermark_delay_seconds'), 7.25);
  assert.equal(L.sumOf(p, 'nothing'), null);
  const v = L.parseOpenMetrics('a +Inf\nb -Inf\nc NaN\nd 1e3 1700000000\ne{x="1"} .5 # {trace="t"} 1');
  assert.deepEqual(v.samples.map((s) => s.value), [Infinity, -Infinity, NaN, 1000, 0.5]);
});

test('OpenMetrics: escaped label values and odd spacing', () => {
  const p = L.parseOpenMetrics('m{a="q\\"uote",b="back\\\\slash",c="new\\nline",} 5\n  m2 { a = "x" }  6  \r\n');
  assert.deepEqual(p.errors, []);
  assert.deepEqual({ ...p.samples[0].labels }, { a: 'q"uote', b: 'back\\slash', c: 'new\nline' });
  assert.equal(p.samples[1].value, 6);
});

test('OpenMetrics: bad lines are skipped and named, the rest is kept', () => {
  const p = L.parseOpenMetrics('good 1\n{x="1"} 2\nm{x="1" 3\nm{x=1} 4\nm notanumber\nm\nafter 5\n# EOF\nignored 9');
  assert.deepEqual(p.samples.map((s) => s.name), ['good', 'after']);
  assert.equal(p.errors.length, 5);
  assert.match(p.errors[0], /^line 2: /);
  assert.match(p.errors[3], /^line 5: "notanumber" is not a number/);
  assert.deepEqual(L.parseOpenMetrics('').samples, []);
  assert.deepEqual(L.parseOpenMetrics(undefined).samples, []);
});

test('stage snapshot: sums, the largest delay, dead letters by reason', () => {
  const p = L.parseOpenMetrics(STAGE_TEXT);
  assert.equal(L.isStage(p), true);
  assert.equal(L.isStage(L.parseOpenMetrics('up 1')), false);
  const s = L.stageSnapshot(p);
  assert.equal(s.recordsIn, 120);
  assert.equal(s.rowsOut, 7);
  assert.equal(s.lag, 42);
  assert.equal(s.watermarkDelay, 7.25);
  assert.equal(s.deadLettered, 6);
  assert.deepEqual({ ...s.deadByReason }, { decode: 4, late: 2 });
  assert.equal(s.checkpoints, 4);
  assert.equal(s.lastCheckpointTs, null);
});

const snap = (o) => ({
  recordsIn: null, rowsOut: null, lag: null, watermarkDelay: null, deadLettered: null, deadByReason: {},
  checkpoints: null, lastCheckpointTs: null, ...o,
});

test('stage series: rates from counter deltas, none across a restart', () => {
  const h = L.newStageHistory();
  L.addStageSample(h, 1000, snap({ recordsIn: 100, rowsOut: 10 }), 120000);
  L.addStageSample(h, 3000, snap({ recordsIn: 300, rowsOut: 11 }), 120000);
  L.addStageSample(h, 4000, snap({ recordsIn: 5, rowsOut: 0 }), 120000); // restarted
  L.addStageSample(h, 6000, snap({ recordsIn: 105, rowsOut: 4 }), 120000);
  const s = L.stageSeries(h);
  assert.deepEqual(s.recordsIn.map((p) => p.v), [100, null, 50]);
  assert.deepEqual(s.rowsOut.map((p) => p.v), [0.5, null, 2]);
  assert.equal(s.latest.recordsIn, 50);
  // A sample no newer than the last is ignored.
  L.addStageSample(h, 6000, snap({ recordsIn: 999 }), 120000);
  assert.equal(h.samples.length, 4);
});

test('stage series: the window keeps one sample before it, for a rate', () => {
  const h = L.newStageHistory();
  for (let t = 0; t <= 10000; t += 1000) L.addStageSample(h, t, snap({ recordsIn: t }), 5000);
  assert.deepEqual(h.samples.map((s) => s.t), [4000, 5000, 6000, 7000, 8000, 9000, 10000]);
  assert.deepEqual(L.stageSeries(h).recordsIn.map((p) => p.v), [1000, 1000, 1000, 1000, 1000, 1000]);
});

test('checkpoint age: from the task\'s own time when it serves one', () => {
  const h = L.newStageHistory();
  L.addStageSample(h, 100000, snap({ checkpoints: 3, lastCheckpointTs: 90 }), 120000);
  const s = L.stageSeries(h);
  assert.equal(s.latest.checkpointAge, 10);
});

test('checkpoint age: else from the scrape that saw the counter grow', () => {
  const h = L.newStageHistory();
  L.addStageSample(h, 1000, snap({ checkpoints: 0 }), 120000);
  let s = L.stageSeries(h);
  assert.equal(s.latest.checkpointAge, null);
  assert.equal(s.latest.checkpointAgeAtLeast, null, 'no checkpoint yet: no age at all');
  L.addStageSample(h, 2000, snap({ checkpoints: 0 }), 120000);
  L.addStageSample(h, 4000, snap({ checkpoints: 1 }), 120000);
  L.addStageSample(h, 7000, snap({ checkpoints: 1 }), 120000);
  s = L.stageSeries(h);
  assert.deepEqual(s.checkpointAge.map((p) => p.v), [null, null, 0, 3]);
  const w = L.newStageHistory();
  L.addStageSample(w, 1000, snap({ checkpoints: 5 }), 120000);
  L.addStageSample(w, 4000, snap({ checkpoints: 5 }), 120000);
  s = L.stageSeries(w);
  assert.equal(s.latest.checkpointAge, null);
  assert.equal(s.latest.checkpointAgeAtLeast, 3, 'checkpoints before the watch began: at least the time watched');
});

test('sparkline paths: scaled to the largest value, broken at gaps', () => {
  const pts = [{ t: 0, v: 0 }, { t: 50, v: 10 }, { t: 75, v: null }, { t: 100, v: 5 }];
  const { d, max } = L.sparkPath(pts, 0, 100, 100, 22);
  assert.equal(max, 10);
  assert.equal(d, 'M0 21L50 1M100 11');
  assert.equal(L.sparkPath([], 0, 100, 100, 20).d, '');
  assert.equal(L.sparkPath([{ t: -5, v: 1 }], 0, 100, 100, 20).d, '', 'points before the window are left out');
  assert.equal(L.sparkPath([{ t: 0, v: 0 }, { t: 10, v: 0 }], 0, 10, 10, 20).d, 'M0 19L10 19');
});

const SPEC = `name: board
# the pods
pods:
  board:
    count: 3   # three of them
    resources:
      cpus: 0.2
    tasks:
      server:
        cmd: |
          echo count: 9
        env:
          count: "7"
  "metrics-stage":

    count: 1
plans:
  deploy:
    count: 5
`;

test('pod counts: each pod type\'s own count line', () => {
  const r = L.podCounts(SPEC);
  assert.equal(r.error, null);
  assert.deepEqual(r.pods.map((p) => [p.type, p.count, p.line]), [['board', 3, 5], ['metrics-stage', 1, 16]]);
});

test('set pod count: only the number on that line changes', () => {
  const r = L.setPodCount(SPEC, 'board', 5);
  assert.equal(r.from, 3);
  const before = SPEC.split('\n');
  const after = r.yaml.split('\n');
  assert.equal(after.length, before.length);
  const changed = after.map((l, i) => [l, before[i]]).filter(([a, b]) => a !== b);
  assert.deepEqual(changed, [['    count: 5   # three of them', '    count: 3   # three of them']]);
  assert.match(L.setPodCount(SPEC, 'metrics-stage', 0).yaml, /\n {4}count: 0\nplans:/);
  const crlf = SPEC.replace(/\n/g, '\r\n');
  assert.equal(L.setPodCount(crlf, 'board', 4).yaml, crlf.replace('count: 3 ', 'count: 4 '));
});

test('set pod count: anything unclear is an error, never a guess', () => {
  const err = (yaml, type, n) => L.setPodCount(yaml, type, n).error;
  assert.match(err(SPEC, 'nope', 1), /no pod type nope \(it has board, metrics-stage\)/);
  assert.match(err(SPEC, 'board', -1), /whole number/);
  assert.match(err(SPEC, 'board', 1.5), /whole number/);
  assert.match(err('name: x\n', 'a', 1), /no top-level `pods:`/);
  assert.match(err('pods: {a: {count: 1}}\n', 'a', 1), /not a block mapping/);
  assert.match(err('pods:\n  a:\n    resources: {}\n', 'a', 1), /no `count:` line/);
  assert.match(err('pods:\n  a:\n    count: 1\n    count: 2\n', 'a', 1), /more than one `count:` line/);
  assert.match(err('pods:\n  a:\n    count: "{{N}}"\n', 'a', 1), /is not `count: N`/);
  assert.match(err('pods:\n  a:\n    count: 0x10\n', 'a', 1), /is not `count: N`/);
  assert.match(err('pods:\n  a:\n\tcount: 1\n', 'a', 1), /tab/);
  assert.match(err('pods:\n  a:\n    count: 1\n---\npods:\n  b:\n    count: 1\n', 'a', 1), /more than one `pods:`/);
  assert.match(err('pods:\n  a:\n    tasks:\n      count: 1\n', 'a', 1), /no `count:` line directly under it/);
  assert.match(err('pods:\n  - a\n', '- a', 1), /not a plain pod type key/);
});

let failed = 0;
for (const [name, f] of tests) {
  try {
    f();
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n${e.stack || e.message}`);
  }
}
console.log(`${tests.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
