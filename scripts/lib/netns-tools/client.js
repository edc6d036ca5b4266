#!/usr/bin/env node
'use strict';
// Test/demo traffic client (plain Node, no dependencies). Runs inside a client network namespace and prints ONE
// JSON line on stdout.
//
//   node client.js --proto tcp|udp --target ADDR:PORT|[V6ADDR]:PORT [--count N] [--timeout-ms T]
//                  [--concurrency C] [--bind LOCALADDR]
//     N independent exchanges (default 1), at most C at a time (default min(N, 8)), each with timeout T ms
//     (default 2000). TCP: a new connection each, reads the backend's greeting line "NAME REMOTE". UDP: a new
//     connected socket (so a new source port) each, sends one datagram and waits for the reply "NAME REMOTE".
//     Output: {"ok":n,"counts":{NAME:k},"sources":{REMOTE:k},"errors":{CODE:k},"firstErrorMs":ms|null,
//              "elapsedMs":ms}
//     Error codes: those of the socket (ECONNREFUSED for a TCP RST or an ICMP port unreachable, which a
//     connected UDP socket reports too; EHOSTUNREACH, ENETUNREACH, ECONNRESET, ...), and:
//       ETIMEDOUT      TCP: no connection within T ms; UDP: no reply within T ms
//       EREPLYTIMEOUT  TCP: connected, but no greeting line within T ms of the start
//       ECLOSED        TCP: connection closed before a full greeting line
//       EBADREPLY      reply not of the form "NAME REMOTE"
//     Timing note: inside one machine the kernel can process the reaction to a SYN (an ICMP error sent back by a
//     reject rule) before connect() has released the socket lock; Linux then keeps that ICMP only as a soft error
//     (TcpExtLockDroppedIcmps) and ECONNREFUSED arrives with the SYN retransmission about 1 s later. In the sandbox
//     this happens for IPv6 nearly always. A TCP RST and UDP ICMP errors are reported at once. So checks for a
//     TCP reject by ICMP need a timeout above ~1.2 s (the default 2000 ms is fine).
//
//   node client.js --latency --target ADDR:PORT [--count N] [--warmup W] [--timeout-ms T] [--bind LOCALADDR]
//     N sequential TCP connects (after W unmeasured ones, default 0); each sample is the time from connect() to
//     the 'connect' event, in microseconds (process.hrtime.bigint()); the socket is then destroyed.
//     Output: {"n":ok samples,"p50Us","p90Us","p99Us","minUs","maxUs","meanUs","errors":{CODE:k},"elapsedMs"}
//     (percentiles by nearest rank; null when n is 0).
//
//   node client.js --proto tcp --target ADDR:PORT --hold-ms D [--interval-ms I] [--count N] [--timeout-ms T]
//                  [--until-eof] [--close fin|rst]
//     N TCP connections opened together and kept for D ms: each sends "HOLD", then a line every I ms (default 100)
//     and expects "NAME" back within T ms. Output as the first form plus "replies" (answered lines in total),
//     "switched" (connections where an answer named another backend than the greeting) and "stoppedBy" ("eof",
//     or "itself": D passed or every connection failed first); "ok" counts the connections that lasted without an
//     error; "counts" counts greetings.
//     --until-eof: the connections end when stdin closes (D is then only an upper bound): each first completes
//     one more exchange, begun after the EOF, so a connection that broke before the caller closed stdin is an
//     error even when its last line had been answered. Prints {"established":N} once all N have their greeting.
//     --close rst: a connection that ends well is closed with a reset (SO_LINGER 0) instead of a FIN, so neither
//     end keeps TIME_WAIT state (IPVS then forgets the connection after its CLOSE timeout, 10 s, not 2 min).
//
//   node client.js --proto udp --target ADDR:PORT --loop-ms D [--interval-ms I] [--timeout-ms T] [--until-eof]
//                  [--stream]
//     A DNS-like client: ONE socket (one source port, so one conntrack entry) sending a request every I ms (default
//     100) for D ms, each waiting up to T ms (default I) for its answer. Output: the first form's fields plus
//     "timeline": per request, in order, the backend that answered or the error code, and "stoppedBy" ("eof", or
//     "itself": D passed).
//     --until-eof: the loop also ends when stdin closes (after the request in flight). --stream: each timeline
//     entry is also printed at once, as a line {"r":ENTRY}, before the final JSON line.
//
//   node client.js --flows - [--timeout-ms T] [--concurrency C]
//     Many flows in one process (a process per flow costs more than the flows on a loaded machine): stdin is a JSON
//     array [{"proto":"tcp"|"udp","target":"ADDR:PORT","count":N,"bind":LOCALADDR?},...]; every exchange of every
//     flow runs as in the first form, at most C (default 32) at once. Output: {"flows":[{"ok","counts","sources",
//     "errors","firstErrorMs"},...] in input order, "elapsedMs"}.
//
//   node client.js --probe JSON [--timeout-ms T]
//     Readiness check used by the sandbox: JSON is [{"proto":"tcp"|"udp","target":"ADDR:PORT"},...]; each is
//     retried until it answers or T ms (default 10000) pass. Output: {"ok":bool,"failures":[{proto,target,error}]}

const net = require('node:net');
const dgram = require('node:dgram');

function die(msg) {
  process.stderr.write(`client: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const flags = new Set(['latency', 'until-eof', 'stream']);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) die(`unexpected argument ${JSON.stringify(a)}`);
    let key = a.slice(2);
    let val;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      val = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else if (flags.has(key)) {
      val = 'true';
    } else {
      val = argv[++i];
      if (val === undefined) die(`missing value for --${key}`);
    }
    out[key] = val;
  }
  return out;
}

function parseTarget(s) {
  let m = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(s);
  if (!m) m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(s);
  if (!m) die(`bad target ${JSON.stringify(s)} (want ADDR:PORT or [V6ADDR]:PORT)`);
  const host = m[1];
  const family = net.isIP(host);
  if (!family) die(`bad address ${JSON.stringify(host)}`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) die(`bad port in ${JSON.stringify(s)}`);
  return { host, port, family };
}

function intArg(args, key, def, min) {
  if (args[key] === undefined) return def;
  const n = Number(args[key]);
  if (!Number.isInteger(n) || n < min) die(`--${key} must be an integer >= ${min}`);
  return n;
}

const t0 = process.hrtime.bigint();
function sinceStartMs() {
  return Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100;
}

/** Calls fn once stdin ends (--until-eof). */
function onStdinEof(fn) {
  let called = false;
  const once = () => {
    if (!called) {
      called = true;
      fn();
    }
  };
  process.stdin.on('end', once);
  process.stdin.on('error', once);
  process.stdin.resume();
}

function parseReply(text) {
  const m = /^(\S+) (\S+)$/.exec(text.replace(/\r?\n$/, ''));
  return m ? { name: m[1], remote: m[2] } : null;
}

/** One TCP exchange: connect, read the greeting line. Resolves {name, remote} or {error}. */
function tcpOnce(target, timeoutMs, bind) {
  return new Promise((resolve) => {
    let done = false;
    let connected = false;
    let buf = '';
    const sock = net.connect({ host: target.host, port: target.port, localAddress: bind, noDelay: true });
    const finish = (res) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(res);
    };
    const timer = setTimeout(() => finish({ error: connected ? 'EREPLYTIMEOUT' : 'ETIMEDOUT' }), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      connected = true;
    });
    sock.on('data', (chunk) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 4096) finish({ error: 'EBADREPLY' });
        return;
      }
      const r = parseReply(buf.slice(0, nl));
      finish(r ? r : { error: 'EBADREPLY' });
    });
    sock.on('error', (err) => finish({ error: err.code || 'EUNKNOWN' }));
    sock.on('close', () => finish({ error: 'ECLOSED' }));
  });
}

/** One UDP exchange on a fresh connected socket. */
function udpOnce(target, timeoutMs, bind) {
  return new Promise((resolve) => {
    let done = false;
    const sock = dgram.createSocket(target.family === 6 ? 'udp6' : 'udp4');
    const finish = (res) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        /* already closed */
      }
      resolve(res);
    };
    const timer = setTimeout(() => finish({ error: 'ETIMEDOUT' }), timeoutMs);
    sock.on('error', (err) => finish({ error: err.code || 'EUNKNOWN' }));
    sock.on('message', (msg) => {
      const r = parseReply(msg.toString('utf8'));
      finish(r ? r : { error: 'EBADREPLY' });
    });
    const go = () =>
      sock.connect(target.port, target.host, (err) => {
        if (err) return finish({ error: err.code || 'EUNKNOWN' });
        sock.send('ping\n', (err2) => {
          if (err2) finish({ error: err2.code || 'EUNKNOWN' });
        });
      });
    if (bind) sock.bind({ address: bind, port: 0 }, go);
    else go();
  });
}

/** Runs tasks(i) for i in [0, n) with at most c at once. */
async function pool(n, c, task) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(c, n)) }, worker));
}

function newTally() {
  return { ok: 0, counts: {}, sources: {}, errors: {}, firstErrorMs: null };
}
function bump(obj, key) {
  obj[key] = (obj[key] || 0) + 1;
}
function noteError(tally, code) {
  bump(tally.errors, code);
  if (tally.firstErrorMs === null) tally.firstErrorMs = sinceStartMs();
}

async function runExchanges(args) {
  const proto = args.proto;
  if (proto !== 'tcp' && proto !== 'udp') die('--proto must be tcp or udp');
  if (!args.target) die('--target is required');
  const target = parseTarget(args.target);
  const count = intArg(args, 'count', 1, 0);
  const timeoutMs = intArg(args, 'timeout-ms', 2000, 1);
  const concurrency = intArg(args, 'concurrency', Math.min(count, 8), 1);
  const once = proto === 'tcp' ? tcpOnce : udpOnce;
  const tally = newTally();
  await pool(count, concurrency, async () => {
    const r = await once(target, timeoutMs, args.bind);
    if (r.error) return noteError(tally, r.error);
    tally.ok++;
    bump(tally.counts, r.name);
    bump(tally.sources, r.remote);
  });
  return { ...tally, elapsedMs: sinceStartMs() };
}

/**
 * One held TCP connection: HOLD, then a line every intervalMs until holdMs pass or stop() is called (stdin EOF);
 * after stop(), one more exchange, then it ends. Returns {done: Promise, stop()}.
 */
function holdOnce(target, holdMs, intervalMs, timeoutMs, bind, closeWithReset, tally, onGreeting) {
  let stop = () => {};
  const done = new Promise((resolve) => {
    let finished = false;
    let greeting = null;
    let connected = false;
    let switched = false;
    let buf = '';
    let pendingSince = 0;
    let ticker;
    let replyTimer;
    let holdTimer;
    let stopping = false;
    let finalSent = false;
    const sock = net.connect({ host: target.host, port: target.port, localAddress: bind, noDelay: true });
    const finish = (error) => {
      if (finished) return;
      finished = true;
      clearTimeout(connectTimer);
      clearTimeout(replyTimer);
      clearTimeout(holdTimer);
      clearInterval(ticker);
      if (closeWithReset && !error) sock.resetAndDestroy();
      else sock.destroy();
      if (greeting) {
        bump(tally.counts, greeting.name);
        bump(tally.sources, greeting.remote);
      }
      if (switched) tally.switched++;
      if (error) noteError(tally, error);
      else tally.ok++;
      resolve();
    };
    const connectTimer = setTimeout(() => finish(connected ? 'EREPLYTIMEOUT' : 'ETIMEDOUT'), timeoutMs);
    const sendPing = () => {
      if (pendingSince) return; // previous line still unanswered; its timer is running
      if (stopping) finalSent = true;
      pendingSince = Date.now();
      sock.write('ping\n');
      replyTimer = setTimeout(() => finish('EREPLYTIMEOUT'), timeoutMs);
    };
    stop = () => {
      if (finished || stopping) return;
      stopping = true;
      clearInterval(ticker);
      // The final exchange: now, or once the line in flight (sent before the stop) is answered.
      if (greeting && !pendingSince) sendPing();
    };
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      connected = true;
      sock.write('HOLD\n');
    });
    sock.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (!greeting) {
          const r = parseReply(line);
          if (!r) return finish('EBADREPLY');
          greeting = r;
          onGreeting();
          clearTimeout(connectTimer);
          holdTimer = setTimeout(() => finish(null), holdMs);
          if (!stopping) ticker = setInterval(sendPing, intervalMs);
          sendPing();
          continue;
        }
        if (!pendingSince) return finish('EBADREPLY');
        pendingSince = 0;
        clearTimeout(replyTimer);
        tally.replies++;
        if (line !== greeting.name) switched = true;
        if (finalSent) return finish(null);
        if (stopping) sendPing();
      }
    });
    sock.on('error', (err) => finish(err.code || 'EUNKNOWN'));
    sock.on('close', () => finish('ECLOSED'));
  });
  return { done, stop: () => stop() };
}

async function runHold(args) {
  if (args.proto !== undefined && args.proto !== 'tcp') die('--hold-ms works with --proto tcp only');
  if (!args.target) die('--target is required');
  const target = parseTarget(args.target);
  const count = intArg(args, 'count', 1, 0);
  const holdMs = intArg(args, 'hold-ms', 1000, 1);
  const intervalMs = intArg(args, 'interval-ms', 100, 1);
  const timeoutMs = intArg(args, 'timeout-ms', 2000, 1);
  if (args.close !== undefined && args.close !== 'fin' && args.close !== 'rst') die('--close takes fin or rst');
  const tally = { ...newTally(), replies: 0, switched: 0 };
  let stoppedBy = 'itself';
  let open = count;
  let greeted = 0;
  const onGreeting = () => {
    if (++greeted === count && args['until-eof'] === 'true') process.stdout.write(JSON.stringify({ established: count }) + '\n');
  };
  const conns = Array.from({ length: count }, () => holdOnce(target, holdMs, intervalMs, timeoutMs, args.bind, args.close === 'rst', tally, onGreeting));
  if (args['until-eof'] === 'true') {
    onStdinEof(() => {
      if (open > 0) stoppedBy = 'eof';
      for (const c of conns) c.stop();
    });
  }
  await Promise.all(conns.map((c) => c.done.then(() => open--)));
  return { ...tally, stoppedBy, elapsedMs: sinceStartMs() };
}

function connectLatency(target, timeoutMs, bind) {
  return new Promise((resolve) => {
    let done = false;
    const start = process.hrtime.bigint();
    const sock = net.connect({ host: target.host, port: target.port, localAddress: bind, noDelay: true });
    const finish = (res) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(res);
    };
    const timer = setTimeout(() => finish({ error: 'ETIMEDOUT' }), timeoutMs);
    sock.on('connect', () => finish({ us: Number(process.hrtime.bigint() - start) / 1000 }));
    sock.on('error', (err) => finish({ error: err.code || 'EUNKNOWN' }));
    sock.on('close', () => finish({ error: 'ECLOSED' }));
  });
}

async function runLatency(args) {
  if (args.proto !== undefined && args.proto !== 'tcp') die('--latency works with --proto tcp only');
  if (!args.target) die('--target is required');
  const target = parseTarget(args.target);
  const count = intArg(args, 'count', 1000, 0);
  const warmup = intArg(args, 'warmup', 0, 0);
  const timeoutMs = intArg(args, 'timeout-ms', 2000, 1);
  const errors = {};
  const samples = [];
  for (let i = 0; i < warmup + count; i++) {
    const r = await connectLatency(target, timeoutMs, args.bind);
    if (i < warmup) continue;
    if (r.error) bump(errors, r.error);
    else samples.push(r.us);
  }
  samples.sort((a, b) => a - b);
  const n = samples.length;
  const round = (x) => Math.round(x * 10) / 10;
  const rank = (q) => (n ? round(samples[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]) : null);
  return {
    n,
    p50Us: rank(0.5),
    p90Us: rank(0.9),
    p99Us: rank(0.99),
    minUs: n ? round(samples[0]) : null,
    maxUs: n ? round(samples[n - 1]) : null,
    meanUs: n ? round(samples.reduce((a, b) => a + b, 0) / n) : null,
    errors,
    elapsedMs: sinceStartMs(),
  };
}

async function runUdpLoop(args) {
  if (!args.target) die('--target is required');
  const target = parseTarget(args.target);
  const loopMs = intArg(args, 'loop-ms', 1000, 1);
  const intervalMs = intArg(args, 'interval-ms', 100, 1);
  const timeoutMs = intArg(args, 'timeout-ms', intervalMs, 1);
  const tally = newTally();
  const timeline = [];
  const stream = args.stream === 'true';
  let stoppedBy = 'itself';
  if (args['until-eof'] === 'true') onStdinEof(() => (stoppedBy = 'eof'));
  const sock = dgram.createSocket(target.family === 6 ? 'udp6' : 'udp4');
  let waiting = null;
  sock.on('message', (msg) => {
    if (!waiting) return; // a late answer to a request that timed out
    const w = waiting;
    waiting = null;
    w(parseReply(msg.toString('utf8')) || { error: 'EBADREPLY' });
  });
  sock.on('error', (err) => {
    if (waiting) {
      const w = waiting;
      waiting = null;
      w({ error: err.code || 'EUNKNOWN' });
    }
  });
  await new Promise((resolve, reject) => sock.connect(target.port, target.host, (err) => (err ? reject(err) : resolve())));
  const end = Date.now() + loopMs;
  while (Date.now() < end && stoppedBy === 'itself') {
    const started = Date.now();
    const r = await new Promise((resolve) => {
      const t = setTimeout(() => {
        waiting = null;
        resolve({ error: 'ETIMEDOUT' });
      }, timeoutMs);
      waiting = (res) => {
        clearTimeout(t);
        resolve(res);
      };
      sock.send('ping\n', (err) => {
        if (err && waiting) {
          waiting = null;
          clearTimeout(t);
          resolve({ error: err.code || 'EUNKNOWN' });
        }
      });
    });
    if (r.error) {
      noteError(tally, r.error);
      timeline.push(r.error);
    } else {
      tally.ok++;
      bump(tally.counts, r.name);
      bump(tally.sources, r.remote);
      timeline.push(r.name);
    }
    if (stream) process.stdout.write(JSON.stringify({ r: timeline[timeline.length - 1] }) + '\n');
    const rest = intervalMs - (Date.now() - started);
    if (rest > 0 && stoppedBy === 'itself') await new Promise((res) => setTimeout(res, rest));
  }
  sock.close();
  return { ...tally, timeline, stoppedBy, elapsedMs: sinceStartMs() };
}

async function runFlows(args) {
  const text = await new Promise((resolve) => {
    let buf = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (c) => (buf += c));
    process.stdin.on('end', () => resolve(buf));
  });
  let specs;
  try {
    specs = JSON.parse(text);
  } catch {
    die('--flows wants a JSON array on stdin');
  }
  if (!Array.isArray(specs)) die('--flows wants a JSON array on stdin');
  const timeoutMs = intArg(args, 'timeout-ms', 2000, 1);
  const concurrency = intArg(args, 'concurrency', 32, 1);
  const flows = specs.map((spec) => {
    if (spec.proto !== 'tcp' && spec.proto !== 'udp') die(`flow ${JSON.stringify(spec)}: proto must be tcp or udp`);
    return { target: parseTarget(String(spec.target)), once: spec.proto === 'tcp' ? tcpOnce : udpOnce, bind: spec.bind, tally: newTally() };
  });
  const exchanges = specs.flatMap((spec, i) => Array.from({ length: Math.max(0, Number(spec.count) || 1) }, () => i));
  await pool(exchanges.length, concurrency, async (k) => {
    const f = flows[exchanges[k]];
    const r = await f.once(f.target, timeoutMs, f.bind);
    if (r.error) return noteError(f.tally, r.error);
    f.tally.ok++;
    bump(f.tally.counts, r.name);
    bump(f.tally.sources, r.remote);
  });
  return { flows: flows.map((f) => f.tally), elapsedMs: sinceStartMs() };
}

async function runProbe(args) {
  let specs;
  try {
    specs = JSON.parse(args.probe);
  } catch {
    die('--probe wants a JSON array');
  }
  if (!Array.isArray(specs)) die('--probe wants a JSON array');
  const totalMs = intArg(args, 'timeout-ms', 10000, 1);
  const deadline = Date.now() + totalMs;
  const failures = [];
  await Promise.all(
    specs.map(async (spec) => {
      const target = parseTarget(String(spec.target));
      const once = spec.proto === 'udp' ? udpOnce : tcpOnce;
      let last = 'ETIMEDOUT';
      while (Date.now() < deadline) {
        const r = await once(target, Math.max(1, Math.min(500, deadline - Date.now())), undefined);
        if (!r.error) return;
        last = r.error;
        await new Promise((res) => setTimeout(res, 50));
      }
      failures.push({ proto: spec.proto, target: spec.target, error: last });
    }),
  );
  return { ok: failures.length === 0, failures };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let out;
  if (args.probe !== undefined) out = await runProbe(args);
  else if (args.flows !== undefined) out = await runFlows(args);
  else if (args.latency === 'true') out = await runLatency(args);
  else if (args['hold-ms'] !== undefined) out = await runHold(args);
  else if (args['loop-ms'] !== undefined) out = await runUdpLoop(args);
  else out = await runExchanges(args);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`client: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
