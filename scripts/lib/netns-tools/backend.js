#!/usr/bin/env node
'use strict';
// Test/demo backend server (plain Node, no dependencies). Runs inside a backend network namespace:
//
//   node backend.js NAME PORT[,PORT...]
//
// For each port it listens on TCP and UDP, dual-stack ('::' with ipv6Only false; falls back to 0.0.0.0 when the
// namespace has no IPv6).
//   TCP: on connection writes "NAME <remoteAddress>\n". If the client's first line is "HOLD" the connection stays
//        open and every further line is answered with "NAME\n" (for connection-keeping tests). Otherwise the server
//        ends the connection: at once when the client sends anything else or closes, at the latest after a grace
//        period (BACKEND_HOLD_GRACE_MS, default 5 s) that leaves a HOLD client time to say so. Generous: on a
//        loaded machine (or in the emulated test guest) either process can stall for longer than 300 ms, the grace
//        once used, and a held connection was ended under its client. Every client of these tools speaks or closes
//        first, so the grace only bounds a silent one.
//   UDP: replies to each datagram with "NAME <remoteAddress>".
// remoteAddress is the peer address as the backend sees it, IPv4-mapped IPv6 addresses shown as plain IPv4.
// Prints "ready" on stdout once every socket listens. With BACKEND_EXIT_ON_STDIN_EOF=1 it exits when its stdin
// closes (the sandbox uses that so no server outlives the process that started it).
// BACKEND_UDP_ADDRESSES=A,B,...: UDP sockets bound to each of these addresses instead of the wildcard, so a reply
// leaves from the address the request was sent to (a multi-homed host, e.g. the node, answering on each of its
// addresses: from a wildcard socket the kernel picks the reply's source by route, and a connected client drops it).

const net = require('node:net');
const dgram = require('node:dgram');

function usage(msg) {
  process.stderr.write(`backend: ${msg}\nusage: node backend.js NAME PORT[,PORT...]\n`);
  process.exit(2);
}

const [name, portList] = process.argv.slice(2);
if (!name || !portList) usage('missing arguments');
if (/\s/.test(name)) usage('NAME must not contain white space');
const ports = portList.split(',').map((p) => {
  const n = Number(p);
  if (!Number.isInteger(n) || n < 1 || n > 65535) usage(`bad port ${JSON.stringify(p)}`);
  return n;
});
const graceMs = Number(process.env.BACKEND_HOLD_GRACE_MS ?? '5000');

function plainAddress(addr) {
  if (typeof addr !== 'string') return 'unknown';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return m ? m[1] : addr;
}

function handleTcp(sock) {
  sock.setNoDelay(true);
  sock.on('error', () => {
    /* peers reset connections all the time (latency probes do on purpose) */
  });
  const remote = plainAddress(sock.remoteAddress);
  sock.write(`${name} ${remote}\n`);
  let holding = false;
  let first = true;
  let buf = '';
  // After the timer, one turn of the event loop's I/O first (setImmediate): a HOLD that arrived while this process
  // was stalled is read before the grace is judged to have passed.
  const grace = setTimeout(() => setImmediate(() => first && sock.end()), graceMs);
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (first) {
        first = false;
        clearTimeout(grace);
        if (line === 'HOLD') {
          holding = true;
          continue;
        }
        sock.end();
        return;
      }
      if (holding) sock.write(`${name}\n`);
    }
    if (buf.length > 4096) sock.destroy();
  });
  sock.on('close', () => clearTimeout(grace));
}

function listenTcp(port) {
  return new Promise((resolve, reject) => {
    const attempt = (host, fallback) => {
      const srv = net.createServer(handleTcp);
      srv.once('error', (err) => {
        if (fallback && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL')) attempt(fallback, undefined);
        else reject(err);
      });
      srv.listen({ host, port, ipv6Only: false, backlog: 1024 }, () => resolve(srv));
    };
    attempt('::', '0.0.0.0');
  });
}

function listenUdp(port) {
  return new Promise((resolve, reject) => {
    const attempt = (type, host, fallback) => {
      const sock = dgram.createSocket({ type, ipv6Only: false, reuseAddr: false });
      sock.once('error', (err) => {
        sock.close();
        if (fallback && (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL')) attempt('udp4', '0.0.0.0', undefined);
        else reject(err);
      });
      sock.on('message', (_msg, rinfo) => {
        sock.send(`${name} ${plainAddress(rinfo.address)}`, rinfo.port, rinfo.address, () => {});
      });
      sock.bind(port, host, () => {
        sock.removeAllListeners('error');
        sock.on('error', () => {});
        resolve(sock);
      });
    };
    attempt('udp6', '::', true);
  });
}

function listenUdpOn(port, host) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false });
    sock.once('error', reject);
    sock.on('message', (_msg, rinfo) => {
      sock.send(`${name} ${plainAddress(rinfo.address)}`, rinfo.port, rinfo.address, () => {});
    });
    sock.bind(port, host, () => {
      sock.removeAllListeners('error');
      sock.on('error', () => {});
      resolve(sock);
    });
  });
}

const udpAddresses = (process.env.BACKEND_UDP_ADDRESSES ?? '').split(',').filter(Boolean);

async function main() {
  const udp = (p) => (udpAddresses.length ? udpAddresses.map((a) => listenUdpOn(p, a)) : [listenUdp(p)]);
  await Promise.all(ports.flatMap((p) => [listenTcp(p), ...udp(p)]));
  process.stdout.write('ready\n');
}

if (process.env.BACKEND_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(0));

main().catch((err) => {
  process.stderr.write(`backend ${name}: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
