// Load generator for `python -m bench.gateway --compare`: ocpp-rpc clients (OCPP 1.6,
// permessage-deflate offered as station stacks do) that connect, boot and start a
// transaction, then send MeterValues at each offered rate in turn (open loop: a call is
// made at every slot; ocpp-rpc queues it while the station's previous call is in flight,
// callConcurrency 1 as in ocpp-rpc's default and OCPP's one-CALL-at-a-time rule).
//
// Per rate: sustained = CALLRESULTs received during the measured window / its length;
// latency = call() to its result for calls made in the window (client queueing
// included; answers that come during the drain after the window count too); errors by
// kind; connections closed meanwhile. The stations are spread over `workers` processes
// (one Node process would be the bottleneck); all follow one schedule from a common
// start time. One JSON document on stdout; READY and PHASE-START/END <rate> on stderr.
//
//   node loadgen.js '{"url":"ws://127.0.0.1:9000/ocpp","stations":2000,"rates":[1000,2000],
//                     "warmupS":5,"durationS":20,"drainS":10,"workers":2}'
'use strict';
const { fork } = require('child_process');
const { RPCClient } = require('ocpp-rpc');

const opts = Object.assign({
  stations: 100, rates: [100], warmupS: 5, durationS: 20, drainS: 10, prefix: 'BENCH-',
  connectConcurrency: 50, callTimeoutMs: 60000, deflate: true, password: null, workers: 2,
  first: 0,
}, JSON.parse(process.argv[2] || '{}'));

const log = (text) => process.stderr.write(`${text}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const phaseMs = () => (opts.warmupS + opts.durationS + opts.drainS) * 1000;

function percentiles(values) {
  if (!values.length) return { p50: null, p95: null, p99: null, max: null };
  const s = Float64Array.from(values).sort();
  const at = (p) => Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 10) / 10;
  return { p50: at(50), p95: at(95), p99: at(99), max: Math.round(s[s.length - 1] * 10) / 10 };
}

// ------------------------------------------------------------------ one worker's stations

class Station {
  constructor(index, closes) {
    this.index = index;
    this.id = `${opts.prefix}${String(index).padStart(5, '0')}`;
    this.register = 1000000 + index * 10;
    this.client = new RPCClient({
      endpoint: opts.url, identity: this.id, protocols: ['ocpp1.6'], reconnect: false,
      callTimeoutMs: opts.callTimeoutMs, password: opts.password,
      wsOpts: { perMessageDeflate: opts.deflate },
    });
    this.client.on('close', ({ code }) => { closes[code] = (closes[code] || 0) + 1; });
  }

  async up() {
    await this.client.connect();
    await this.client.call('BootNotification', {
      chargePointVendor: 'chargeflow-bench', chargePointModel: 'OCPP-RPC', chargePointSerialNumber: this.id,
    });
    const start = await this.client.call('StartTransaction', {
      connectorId: 1, idTag: `BT${this.index}`, meterStart: this.register, timestamp: new Date().toISOString(),
    });
    this.tx = start.transactionId;
  }

  meterValues() {
    this.register += 4;
    return {
      connectorId: 1, transactionId: this.tx, meterValue: [{
        timestamp: new Date().toISOString(), sampledValue: [
          { value: String(this.register), context: 'Sample.Periodic', measurand: 'Energy.Active.Import.Register', location: 'Outlet', unit: 'Wh' },
          { value: '11000', context: 'Sample.Periodic', measurand: 'Power.Active.Import', location: 'Outlet', unit: 'W' },
          { value: '15.9', context: 'Sample.Periodic', measurand: 'Current.Import', location: 'Outlet', unit: 'A', phase: 'L1' },
        ],
      }],
    };
  }
}

async function worker() {
  const closes = {};
  const stations = Array.from({ length: opts.stations }, (_, i) => new Station(opts.first + i, closes));
  let next = 0;
  const failures = {};
  const live = [];
  await Promise.all(Array.from({ length: opts.connectConcurrency }, async () => {
    while (next < stations.length) {
      const st = stations[next++];
      try { await st.up(); live.push(st); } catch (err) {
        const kind = err.message.slice(0, 60);
        failures[kind] = (failures[kind] || 0) + 1;
      }
    }
  }));
  process.send({ ready: { connected: live.length, failures } });
  const { startAt } = await new Promise((r) => process.once('message', r));
  const t0 = performance.now() + (startAt - Date.now());
  const results = [];
  for (const [k, rate] of opts.rates.entries()) {
    const begin = t0 + k * phaseMs();
    const windowStart = begin + opts.warmupS * 1000;
    const windowEnd = windowStart + opts.durationS * 1000;
    const interval = (live.length / rate) * 1000;
    const c = { sent: 0, measuredSent: 0, answered: 0, completions: 0, latencies: [], errors: {} };
    const closedBefore = Object.values(closes).reduce((a, b) => a + b, 0);
    await Promise.all(live.map(async (st) => {
      let slot = begin + Math.random() * interval;
      while (slot < windowEnd) {
        const wait = slot - performance.now();
        if (wait > 0) await sleep(wait);
        const measuring = slot >= windowStart;
        slot += interval;
        if (st.client.state !== 1) continue;
        const started = performance.now();
        c.sent += 1;
        if (measuring) c.measuredSent += 1;
        st.client.call('MeterValues', st.meterValues()).then(() => {
          const done = performance.now();
          c.answered += 1;
          if (done >= windowStart && done <= windowEnd) c.completions += 1;
          if (measuring) c.latencies.push(done - started);
        }, (err) => {
          const kind = err.rpcErrorCode || err.name || 'Error';
          c.errors[kind] = (c.errors[kind] || 0) + 1;
        });
      }
    }));
    await sleep(Math.max(0, begin + phaseMs() - 200 - performance.now()));
    const settled = c.answered + Object.values(c.errors).reduce((a, b) => a + b, 0);
    results.push({
      sent: c.sent, measuredSent: c.measuredSent, answered: c.answered, completions: c.completions,
      latencies: c.latencies, errors: { ...c.errors }, unsettled: c.sent - settled,
      closed: Object.values(closes).reduce((a, b) => a + b, 0) - closedBefore,
    });
  }
  const openAtEnd = live.filter((st) => st.client.state === 1).length;
  const closesDuringRun = { ...closes };
  // Exit only once the report is through the IPC channel: process.exit drops a
  // message still queued, and the coordinator then sees an exit before 'done'.
  await new Promise((resolve) => process.send({ done: { results, openAtEnd, closes: closesDuringRun } }, resolve));
  await Promise.all(live.map((st) => st.client.close({ awaitPending: false }).catch(() => {})));
  process.exit(0);
}

// ------------------------------------------------------------------ the coordinator

async function coordinator() {
  const n = Math.max(1, Math.min(opts.workers, opts.stations));
  const children = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1) {
    const first = Math.floor((i * opts.stations) / n);
    const count = Math.floor(((i + 1) * opts.stations) / n) - first;
    const share = count / opts.stations;
    const spec = { ...opts, first, stations: count, rates: opts.rates.map((r) => r * share),
      connectConcurrency: Math.max(1, Math.ceil(opts.connectConcurrency / n)) };
    children.push(fork(__filename, [JSON.stringify(spec)], { env: { ...process.env, LOADGEN_WORKER: '1' } }));
  }
  const message = (child, key) => new Promise((resolve, reject) => {
    const onMessage = (m) => { if (key in m) { child.off('message', onMessage); resolve(m[key]); } };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`worker exited with ${code} before '${key}'`)));
  });
  const ready = await Promise.all(children.map((ch) => message(ch, 'ready')));
  const connectS = (performance.now() - t0) / 1000;
  const connected = ready.reduce((a, r) => a + r.connected, 0);
  const failures = {};
  for (const r of ready) for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] || 0) + v;
  log(`READY ${JSON.stringify({ connected, connect_s: connectS })}`);
  const startAt = Date.now() + 300;
  const doneP = children.map((ch) => message(ch, 'done'));
  for (const ch of children) ch.send({ startAt });
  opts.rates.forEach((rate, k) => {
    const begin = startAt + k * phaseMs();
    setTimeout(() => log(`PHASE-START ${rate}`), begin + opts.warmupS * 1000 - Date.now());
    setTimeout(() => log(`PHASE-END ${rate}`), begin + (opts.warmupS + opts.durationS) * 1000 - Date.now());
  });
  const done = await Promise.all(doneP);
  const closes = {};
  for (const d of done) for (const [k, v] of Object.entries(d.closes)) closes[k] = (closes[k] || 0) + v;
  const rates = opts.rates.map((rate, k) => {
    const parts = done.map((d) => d.results[k]);
    const sum = (f) => parts.reduce((a, p) => a + f(p), 0);
    const errors = {};
    for (const p of parts) for (const [e, v] of Object.entries(p.errors)) errors[e] = (errors[e] || 0) + v;
    return {
      offered_per_s: rate,
      measured_offered: sum((p) => p.measuredSent),
      sustained_per_s: Math.round((sum((p) => p.completions) / opts.durationS) * 10) / 10,
      latency_ms: percentiles(parts.flatMap((p) => p.latencies)),
      calls_sent: sum((p) => p.sent),
      calls_answered: sum((p) => p.answered),
      calls_unsettled_after_drain: sum((p) => p.unsettled),
      errors,
      connections_closed: sum((p) => p.closed),
    };
  });
  process.stdout.write(`${JSON.stringify({
    stations: opts.stations, workers: n, connected, connect_s: Math.round(connectS * 100) / 100,
    connect_failures: failures, deflate_offered: opts.deflate,
    open_at_end: done.reduce((a, d) => a + d.openAtEnd, 0), close_codes_during_run: closes, rates,
  }, null, 2)}\n`);
}

(process.env.LOADGEN_WORKER ? worker() : coordinator()).catch((err) => {
  log(err.stack);
  process.exit(1);
});
