#!/usr/bin/env python3
"""SCTP test tool (plain Python, no dependencies): Node has no SCTP sockets. Test tooling, not product code.

  sctp.py serve NAME PORT          listens on [::]:PORT (dual-stack, one-to-one style); on every association reads
                                   the client's request line, answers "NAME <peer address>\\n" and closes once the
                                   client has. Prints "ready" once listening.
  sctp.py connect ADDR PORT COUNT [TIMEOUT_S]
                                   COUNT associations one after another, each sending a request line and reading
                                   the answer, waiting at most TIMEOUT_S (default 2) for each step; prints one JSON
                                   line:
                                   {"ok": n, "counts": {name: n}, "sources": {addr: n}, "errors": {ERRNO: n}}

Needs a kernel with SCTP (the qemu guest's module `sctp`; this machine's own kernel has none).

Two SCTP behaviours that have nothing to do with what the tests check would otherwise lose associations behind
IPVS/NAT at random:
* The client speaks first. A server that writes as soon as accept() returns can have its first DATA overtake its
  COOKIE-ACK (the two leave from different CPUs and cross the veths through different per-CPU queues); Linux
  discards DATA that reaches the client still in COOKIE-ECHOED, and only the retransmission after RTO.Initial
  (3 s) delivers it. A request sent once connect() has returned reaches the server after the COOKIE-ACK reached
  the client, so the answer cannot overtake it.
* No heartbeats. Each side lists its own addresses in INIT/INIT-ACK, which NAT does not rewrite: the client learns
  the backend's real address and the backend the client's. About 1.5-4.5 s into an association each side probes
  those unconfirmed addresses with HEARTBEATs that bypass IPVS and the masquerade (whose random source port the
  other side does not know), so the peer answers with an ABORT and the association dies (ECONNRESET). Without
  heartbeats an unconfirmed address is never used: every chunk takes the primary path through IPVS.
"""
import errno
import json
import socket
import struct
import sys
import threading

SCTP_PEER_ADDR_PARAMS = 9
SPP_HB_DISABLE = 1 << 1


def no_heartbeats(s):
    """Default for the socket's associations: no HEARTBEATs (struct sctp_paddrparams, packed, any address)."""
    params = struct.pack('=i128sIHIIIIB', 0, b'', 0, 0, 0, 0, SPP_HB_DISABLE, 0, 0)
    s.setsockopt(socket.IPPROTO_SCTP, SCTP_PEER_ADDR_PARAMS, params + b'\0' * (-len(params) % 4))


def plain(addr):
    return addr[7:] if addr.startswith('::ffff:') else addr


def read_line(s):
    data = b''
    while not data.endswith(b'\n'):
        chunk = s.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def answer(c, name, peer):
    try:
        # A client that never asks (or never closes) is dropped after a while instead of holding a thread forever.
        c.settimeout(120)
        if read_line(c).endswith(b'\n'):
            c.sendall(f'{name} {plain(peer[0])}\n'.encode())
            # The client closes first: both sides starting SHUTDOWN at once ends in a (harmless, but confusing in a
            # capture) ABORT.
            while c.recv(256):
                pass
    except OSError:
        pass
    finally:
        c.close()


def serve(name, port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    no_heartbeats(s)  # accepted associations inherit it
    s.bind(('::', port))
    s.listen(64)
    print('ready', flush=True)
    while True:
        c, peer = s.accept()
        # One thread per association: a slow client never delays the next one's answer.
        threading.Thread(target=answer, args=(c, name, peer), daemon=True).start()


def connect(addr, port, count, timeout):
    fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
    out = {'ok': 0, 'counts': {}, 'sources': {}, 'errors': {}}
    for _ in range(count):
        s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        no_heartbeats(s)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.sendall(b'hello\n')
            parts = read_line(s).decode().split()
            if len(parts) != 2:
                raise OSError(errno.EPROTO, 'bad greeting')
            out['ok'] += 1
            out['counts'][parts[0]] = out['counts'].get(parts[0], 0) + 1
            out['sources'][parts[1]] = out['sources'].get(parts[1], 0) + 1
        except socket.timeout:
            out['errors']['ETIMEDOUT'] = out['errors'].get('ETIMEDOUT', 0) + 1
        except OSError as e:
            code = errno.errorcode.get(e.errno, str(e.errno))
            out['errors'][code] = out['errors'].get(code, 0) + 1
        finally:
            s.close()
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == 'serve':
        serve(a[1], int(a[2]))
    elif len(a) in (4, 5) and a[0] == 'connect':
        connect(a[1], int(a[2]), int(a[3]), float(a[4]) if len(a) == 5 else 2.0)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
