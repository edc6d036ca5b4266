#!/usr/bin/env python3
"""SCTP test tool (plain Python, no dependencies): Node has no SCTP sockets. Test tooling, not product code.

  sctp.py serve NAME PORT          listens on [::]:PORT (dual-stack, one-to-one style); for every association
                                   writes "NAME <peer address>\\n" and closes. Prints "ready" once listening.
  sctp.py connect ADDR PORT COUNT [TIMEOUT_S]
                                   COUNT associations one after another; prints one JSON line:
                                   {"ok": n, "counts": {name: n}, "sources": {addr: n}, "errors": {ERRNO: n}}

Needs a kernel with SCTP (the qemu guest's module `sctp`; this machine's own kernel has none).
"""
import errno
import json
import socket
import sys


def plain(addr):
    return addr[7:] if addr.startswith('::ffff:') else addr


def serve(name, port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::', port))
    s.listen(64)
    print('ready', flush=True)
    while True:
        c, peer = s.accept()
        try:
            c.sendall(f'{name} {plain(peer[0])}\n'.encode())
        except OSError:
            pass
        finally:
            c.close()


def connect(addr, port, count, timeout):
    fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
    out = {'ok': 0, 'counts': {}, 'sources': {}, 'errors': {}}
    for _ in range(count):
        s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            data = b''
            while not data.endswith(b'\n'):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            parts = data.decode().split()
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
