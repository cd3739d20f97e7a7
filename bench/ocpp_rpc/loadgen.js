// Load generator for `python -m bench.gateway --compare`: ocpp-rpc clients (OCPP 1.6,
// permessage-deflate offered as station stacks do) that connect, boot and start a
// transaction, then send MeterValues at each offered rate in turn (open loop: a call is
// made at every slot; ocpp-rpc queues it while the station's previous call is in flight,
// callConcurrency 1). Per rate: CALLRESULTs received in the measured window / window
// length, latency from call() to its result (client queueing included), errors by kind,
// connections closed and by which code. One JSON document on stdout; progress on stderr.
//
//   node loadgen.js '{"url":"ws://127.0.0.1:9000/ocpp","stations":2000,"rates":[1000,2000],
//                     "warmupS":5,"durationS":20,"drainS":20}'
'use strict';
const { RPCClient } = require('ocpp-rpc');

const opts = Object.assign({
  stations: 100, rates: [100], warmupS: 5, durationS: 20, drainS: 20, prefix: 'BENCH-',
  connectConcurrency: 50, callTimeoutMs: 30000, deflate: true, password: null,
}, JSON.parse(process.argv[2] || '{}'));

const log = (text) => process.stderr.write(`${text}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function percentiles(values) {
  if (!values.length) return { p50: null, p95: null, p99: null, max: null };
  const s = Float64Array.from(values).sort();
  const at = (p) => Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] * 10) / 10;
  return { p50: at(50), p95: at(95), p99: at(99), max: Math.round(s[s.length - 1] * 10) / 10 };
}

const closes = {};
let phase = null; // the rate's counters while it runs

class Station {
  constructor(index) {
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

  send(counters, measuring) {
    const started = performance.now();
    counters.sent += 1;
    this.client.call('MeterValues', this.meterValues()).then(() => {
      const done = performance.now();
      counters.answered += 1;
      if (measuring && done <= counters.windowEnd) {
        counters.ok += 1;
        counters.latencies.push(done - started);
      }
    }, (err) => {
      const kind = err.rpcErrorCode || err.name || 'Error';
      counters.errors[kind] = (counters.errors[kind] || 0) + 1;
    });
  }
}

async function main() {
  const stations = Array.from({ length: opts.stations }, (_, i) => new Station(i));
  const t0 = performance.now();
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
  const connectS = (performance.now() - t0) / 1000;
  log(`READY ${JSON.stringify({ connected: live.length, connect_s: connectS })}`);
  const results = [];
  for (const rate of opts.rates) {
    const interval = (live.length / rate) * 1000;
    const begin = performance.now() + 50;
    const windowStart = begin + opts.warmupS * 1000;
    const windowEnd = windowStart + opts.durationS * 1000;
    const counters = { sent: 0, answered: 0, ok: 0, latencies: [], errors: {}, windowEnd };
    phase = counters;
    const closedBefore = Object.values(closes).reduce((a, b) => a + b, 0);
    log(`PHASE-START ${rate}`);
    let measuredSent = 0;
    await Promise.all(live.map(async (st) => {
      let slot = begin + Math.random() * interval;
      while (slot < windowEnd) {
        const wait = slot - performance.now();
        if (wait > 0) await sleep(wait);
        const measuring = slot >= windowStart;
        if (measuring) measuredSent += 1;
        if (st.client.state === 1) st.send(counters, measuring);
        slot += interval;
      }
    }));
    log(`PHASE-END ${rate}`);
    // Let calls still queued finish (or time out) before the next rate starts.
    const drainUntil = performance.now() + opts.drainS * 1000;
    const settled = () => counters.answered + Object.values(counters.errors).reduce((a, b) => a + b, 0);
    while (settled() < counters.sent && performance.now() < drainUntil) await sleep(100);
    const closedNow = Object.values(closes).reduce((a, b) => a + b, 0);
    results.push({
      offered_per_s: rate,
      measured_offered: measuredSent,
      sustained_per_s: Math.round((counters.ok / opts.durationS) * 10) / 10,
      latency_ms: percentiles(counters.latencies),
      calls_sent: counters.sent,
      calls_answered: counters.answered,
      calls_unsettled_after_drain: counters.sent - settled(),
      errors: { ...counters.errors },
      connections_closed: closedNow - closedBefore,
    });
  }
  const openAtEnd = live.filter((st) => st.client.state === 1).length;
  await Promise.all(live.map((st) => st.client.close({ awaitPending: false }).catch(() => {})));
  process.stdout.write(`${JSON.stringify({
    stations: opts.stations, connected: live.length, connect_s: Math.round(connectS * 100) / 100,
    connect_failures: failures, deflate: opts.deflate, open_at_end: openAtEnd,
    close_codes: closes, rates: results,
  }, null, 2)}\n`);
  process.exit(0);
}

main().catch((err) => { log(err.stack); process.exit(1); });
