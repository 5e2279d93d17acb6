#!/usr/bin/env python3
"""Raw TCP and TLS peers for the proxyssl interop tests (stdlib only).

Every subcommand bounds its waits (--timeout) and never listens on anything
but 127.0.0.1. TLS is driven through ssl.MemoryBIO over plain sockets so that
the TCP side (half-close, reset, exact bytes) stays under our control.

  listen-port  --pgid PID              port of the first 127.0.0.1 listener of a process group
  feed FILE --until PATH:SIZE ...      copy FILE to stdout, then wait until every PATH has SIZE bytes
  hello-client --port P ...            send a real ClientHello, record what comes back and how it ends
  lines-client --port P --version V .. s_client -quiet's stdin/stdout exchange, without its lost input
  relay --to PORT ...                  TCP relay that records, per connection, the proxy side
  tls-server --cert C --key K ...      threaded TLS server; the SNI name picks the scenario
  tls-client --port P --sni NAME ...   TLS client running the scenario NAME (<scenario>.<tag>)
  hold-port / full-listener            a port that refuses connections / one whose SYNs are dropped
  jget FILE KEY                        one field of a JSON report
"""

import argparse
import hashlib
import json
import os
import random
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time

HOST = "127.0.0.1"
RSA_SUITES = "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256"


def die(msg):
    sys.stderr.write("peers.py: %s\n" % msg)
    sys.exit(1)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(tmp, path)


def rst_close(sock):
    """Close with SO_LINGER {1, 0}: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def data_for(tag, n):
    """Deterministic pseudo-random bytes, different for every tag."""
    return random.Random(hashlib.sha256(tag.encode()).digest()).randbytes(n)


# ---- listen-port -------------------------------------------------------------

def listening_inodes():
    """inode -> port for TCP sockets listening on 127.0.0.1 or 0.0.0.0."""
    res = {}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                local, state, inode = p[1], p[3], p[9]
                if state != "0A":
                    continue
                ip, port = local.split(":")
                if ip in ("0100007F", "00000000"):
                    res[inode] = int(port, 16)
    except OSError:
        pass
    return res


def group_pids(pgid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if fields[0] == "Z":
            continue
        if int(fields[2]) == pgid or int(d) == pgid:
            pids.append(d)
    return pids


def cmd_listen_port(a):
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        lis = listening_inodes()
        pids = group_pids(a.pgid)
        if not pids:
            die("process group %d is gone" % a.pgid)
        for pid in pids:
            try:
                fds = os.listdir("/proc/%s/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink("/proc/%s/fd/%s" % (pid, fd))
                except OSError:
                    continue
                m = re.match(r"socket:\[(\d+)\]", link)
                if m and m.group(1) in lis:
                    print(lis[m.group(1)])
                    return
        time.sleep(0.03)
    die("no listener in process group %d after %.0fs" % (a.pgid, a.timeout))


# ---- feed --------------------------------------------------------------------

def cmd_feed(a):
    out = sys.stdout.buffer
    with open(a.file, "rb") as f:
        while True:
            b = f.read(1 << 16)
            if not b:
                break
            try:
                out.write(b)
            except BrokenPipeError:
                die("feed: the reader went away early")
    out.flush()
    conds = []
    for u in a.until or []:
        path, size = u.rsplit(":", 1)
        conds.append((path, int(size)))
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(p) and os.path.getsize(p) >= n for p, n in conds):
            break
        time.sleep(0.02)
    else:
        sys.stderr.write("feed: timed out waiting for %s\n" %
                         ", ".join("%s (%d/%d)" % (p, os.path.getsize(p) if os.path.exists(p) else -1, n)
                                   for p, n in conds))
    if a.linger:
        time.sleep(a.linger)
    # closing stdout here ends the peer's input


# ---- TLS over a plain socket ---------------------------------------------------

class Tls:
    """An SSLObject pumped by hand over a blocking socket."""

    def __init__(self, sock, ctx, server_side, sni=None):
        self.sock = sock
        self.inb = ssl.MemoryBIO()
        self.outb = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb, server_side=server_side,
                                server_hostname=None if server_side else sni)
        self.eof = False

    def flush(self):
        d = self.outb.read()
        if d:
            self.sock.sendall(d)

    def fill(self):
        """More bytes from the socket into the TLS object; False at TCP EOF.
        The EOF is not passed to OpenSSL: a peer that half-closes without
        close_notify leaves our side able to write."""
        if self.eof:
            return False
        d = self.sock.recv(1 << 16)
        if not d:
            self.eof = True
            return False
        self.inb.write(d)
        return True

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                if not self.fill():
                    raise ConnectionAbortedError("EOF during the handshake")

    def send(self, data):
        v = memoryview(data)
        while len(v):
            n = self.obj.write(v[:16384])
            v = v[n:]
            self.flush()

    def recv(self):
        """Some application bytes; b'' at close_notify or TCP EOF."""
        while True:
            try:
                return self.obj.read(1 << 16)
            except ssl.SSLWantReadError:
                if not self.fill():
                    return b""
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                return b""

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            d = self.recv()
            if not d:
                break
            buf += d
        return bytes(buf)

    def recv_all(self):
        buf = bytearray()
        while True:
            d = self.recv()
            if not d:
                return bytes(buf)
            buf += d

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self.flush()


def outcome_of(fn):
    """Run fn(); name how the connection ended."""
    try:
        fn()
        return "ok"
    except ConnectionResetError:
        return "reset"
    except BrokenPipeError:
        return "broken-pipe"
    except socket.timeout:
        return "timeout"
    except ConnectionAbortedError as e:
        return "eof" if "EOF" in str(e) else "aborted"
    except ssl.SSLError as e:
        return "ssl-error:%s" % (e.reason or e)
    except OSError as e:
        return "oserror:%s" % e


def wait_end(sock, timeout):
    """After everything expected was read: does the connection end with EOF, RST or nothing?"""
    sock.settimeout(timeout)
    try:
        extra = b""
        while True:
            d = sock.recv(1 << 16)
            if not d:
                return "eof", extra
            extra += d
    except ConnectionResetError:
        return "reset", extra
    except socket.timeout:
        return "timeout", extra


# ---- hello-client --------------------------------------------------------------

def client_ctx(ciphers, tls12, tls11=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers(ciphers)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if tls11:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def cmd_hello_client(a):
    """Send a real ClientHello, then read until EOF/RST/timeout; report as JSON."""
    ctx = client_ctx(a.ciphers, a.tls12, a.tls11)
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_side=False, server_hostname=a.sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = b"" if a.no_hello else outb.read()
    t0 = time.monotonic()
    got = bytearray()
    end = "timeout"
    deadline = time.monotonic() + a.timeout
    s = socket.socket()
    s.settimeout(a.timeout)
    try:
        # connect() itself reports the reset when it comes before connect returns
        s.connect((HOST, a.port))
        if hello:
            # the proxy may reset us before this is sent (e.g. backend refused)
            s.sendall(hello)
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            d = s.recv(1 << 16)
            if not d:
                end = "eof"
                break
            got += d
    except (ConnectionResetError, BrokenPipeError):
        end = "reset"
    except socket.timeout:
        end = "timeout"
    s.close()
    # what does the client's TLS stack make of the bytes?
    tls_error = "-"
    inb.write(bytes(got))
    try:
        obj.do_handshake()
        tls_error = "handshake-completed"
    except ssl.SSLWantReadError:
        tls_error = "want-read"
    except ssl.SSLError as e:
        tls_error = str(e.reason or e)
    print(json.dumps({"hello": hello.hex(), "received": bytes(got).hex(), "end": end,
                      "tls_error": tls_error, "seconds": round(time.monotonic() - t0, 3)}))


# ---- lines-client ----------------------------------------------------------------

def cmd_lines_client(a):
    """An interactive TLS client like `openssl s_client -quiet`: stdin goes to
    the server, what the server sends to stdout, and stdin's end closes the
    connection (close_notify, then FIN). Unlike s_client it never drops input
    it read while a handshake (a renegotiation the server started) made a
    write wait: the bytes stay queued until the write goes through."""
    ctx = client_ctx(a.ciphers, False)
    ver = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2}[a.version]
    ctx.minimum_version = ctx.maximum_version = ver
    if a.cert:
        ctx.load_cert_chain(a.cert, a.key)
    raw = socket.create_connection((HOST, a.port), timeout=a.timeout)
    s = ctx.wrap_socket(raw, server_hostname=a.sni)
    s.setblocking(False)
    stdin, out = sys.stdin.buffer.raw, sys.stdout.buffer
    pending, stdin_open = b"", True
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        rd = [s] + ([stdin] if stdin_open and not pending else [])
        r, w, _ = select.select(rd, [s] if pending else [], [], 0.2 if s.pending() == 0 else 0)
        if stdin in r:
            d = os.read(stdin.fileno(), 16384)
            if d:
                pending += d
            else:
                stdin_open = False
        if pending:
            try:
                pending = pending[s.send(pending):]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass  # a handshake is under way: the same bytes go again
        try:
            while True:
                d = s.recv(1 << 16)
                if not d:
                    return  # the server closed
                out.write(d)
                out.flush()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        if not stdin_open and not pending:
            break
    s.setblocking(True)
    s.settimeout(5)
    try:
        s.unwrap()  # close_notify
    except (OSError, ssl.SSLError):
        pass
    s.close()


# ---- relay -------------------------------------------------------------------

def relay_one(a, c, n):
    """Relay one accepted connection to --to; write what the proxy side did to REPORT.n"""
    rep = {"n": n}
    c.settimeout(a.timeout)
    try:
        b = socket.create_connection((HOST, a.to), timeout=a.timeout)
    except OSError as e:
        rep["error"] = "backend: %s" % e
        write_atomic("%s.%d" % (a.report, n), json.dumps(rep))
        rst_close(c)
        return
    from_proxy = bytearray()
    from_backend = bytearray()
    ends = {}
    socks = {c: "proxy", b: "backend"}
    deadline = time.monotonic() + a.timeout
    open_ = {c, b}
    while open_ and time.monotonic() < deadline:
        r, _, _ = select.select(list(open_), [], [], 0.1)
        for s in r:
            if s not in open_:
                continue
            name = socks[s]
            other = b if s is c else c
            try:
                d = s.recv(1 << 16)
            except ConnectionResetError:
                ends[name] = "reset"
                open_.discard(s)
                # pass the reset on, like a transparent middlebox
                if other in open_:
                    rst_close(other)
                    open_.discard(other)
                    ends.setdefault(socks[other], "reset-by-relay")
                continue
            if not d:
                ends[name] = "eof"
                open_.discard(s)
                try:
                    other.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            (from_proxy if s is c else from_backend).extend(d)
            if other not in open_:
                continue
            try:
                other.sendall(d)
            except (ConnectionResetError, BrokenPipeError):
                # the reset reached us through send() first (a later recv would say EOF)
                ends.setdefault(socks[other], "reset")
                open_.discard(other)
                rst_close(s)
                open_.discard(s)
                ends.setdefault(name, "reset-by-relay")
            except OSError:
                pass
    for s in (c, b):
        if s in open_:
            ends.setdefault(socks[s], "timeout")
        s.close()
    rep.update({"from_proxy": bytes(from_proxy).hex(), "from_backend": bytes(from_backend).hex(),
                "proxy_end": ends.get("proxy", "?"), "backend_end": ends.get("backend", "?")})
    write_atomic("%s.%d" % (a.report, n), json.dumps(rep))


def cmd_relay(a):
    """Accept connections (from the proxy) and relay each to --to, recording the proxy side:
    REPORT.<n> (n = 1, 2, ...) holds every byte the proxy sent and whether it ended with
    FIN (eof) or RST (reset)."""
    ls = socket.socket()
    ls.bind((HOST, 0))
    ls.listen(16)
    write_atomic(a.port_file, "%d\n" % ls.getsockname()[1])
    n = 0
    while True:
        c, _ = ls.accept()
        n += 1
        threading.Thread(target=relay_one, args=(a, c, n), daemon=True).start()


def cmd_hold_port(a):
    """Bind a port without listening: connections to it are refused, and nobody else gets it."""
    s = socket.socket()
    s.bind((HOST, 0))
    write_atomic(a.port_file, "%d\n" % s.getsockname()[1])
    time.sleep(a.timeout)


def cmd_full_listener(a):
    """A listener whose accept queue is full: SYNs to it are dropped, connects time out."""
    ls = socket.socket()
    ls.bind((HOST, 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    # backlog 0 admits one connection; one more for safety (the extra one may hang: don't wait)
    for _ in range(2):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect((HOST, port))
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)
    write_atomic(a.port_file, "%d\n" % port)
    time.sleep(a.timeout)


def cmd_hexfield(a):
    """Print one field of a JSON report (for the shell)."""
    with open(a.file) as f:
        v = json.load(f).get(a.key, "")
    print(v)


# ---- tls-server --------------------------------------------------------------

# scenario sizes (bytes)
SIZES = {"hc-c2s": (200000, 150000), "hc-s2c": (150000, 200000)}


class Server:
    def __init__(self, a):
        self.a = a
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(a.cert, a.key)
        self.ctx.set_ciphers(a.ciphers)
        self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.sni_callback = self.on_sni
        self.tl = threading.local()

    def on_sni(self, obj, name, ctx):
        self.tl.name = name or "-"

    def out(self, tag, what, data):
        write_atomic(os.path.join(self.a.out_dir, "%s.server.%s" % (tag, what)), data)

    def handle(self, sock):
        sock.settimeout(self.a.timeout)
        t = Tls(sock, self.ctx, server_side=True)
        # read the ClientHello first so that the scenario is known before answering
        self.tl.name = None
        early_error = None
        while True:
            try:
                if not t.fill():
                    sock.close()
                    return
            except OSError:
                sock.close()
                return
            try:
                t.obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                early_error = e
            if self.tl.name is not None or early_error is not None or t.outb.pending:
                break
        name = self.tl.name or "-"
        tag = name
        scen = name.split(".", 1)[0]
        if scen == "rst-s-early":
            self.out(tag, "hs", "reset-before-serverhello\n")
            rst_close(sock)
            return
        if scen == "rst-s-mid" and early_error is None:
            # the flight goes out; the client's answer to it (ClientKeyExchange) gets a reset
            outcome_of(t.flush)
            outcome_of(t.fill)
            self.out(tag, "hs", "reset-after-flight\n")
            rst_close(sock)
            return
        if early_error is None:
            hs = outcome_of(t.handshake)
        else:
            hs = "ssl-error:%s" % (early_error.reason or early_error)
            outcome_of(t.flush)
        self.out(tag, "hs", "%s %s %s\n" % (hs, t.obj.version() or "-", (t.obj.cipher() or ("-",))[0]))
        if hs != "ok":
            end, _ = wait_end(sock, 5) if hs.startswith("ssl-error") else ("-", b"")
            self.out(tag, "end", end + "\n")
            sock.close()
            return
        getattr(self, "s_" + scen.replace("-", "_"), self.s_echo)(t, sock, tag)

    def s_echo(self, t, sock, tag):
        got = bytearray()

        def run():
            while True:
                d = t.recv()
                if not d:
                    break
                got.extend(d)
                t.send(d)
        end = outcome_of(run)
        self.out(tag, "recv", bytes(got))
        self.out(tag, "sent", bytes(got))
        self.out(tag, "end", ("eof" if end == "ok" else end) + "\n")
        if end == "ok":
            sock.shutdown(socket.SHUT_WR)
            wait_end(sock, 5)
        sock.close()

    def s_hc_c2s(self, t, sock, tag):
        # read the client's data until its FIN, then answer and close
        nc, ns = SIZES["hc-c2s"]
        got = t.recv_all()
        self.out(tag, "recv", got)
        reply = data_for(tag + "/s2c", ns)
        r = outcome_of(lambda: t.send(reply))
        self.out(tag, "sent", reply if r == "ok" else b"")
        self.out(tag, "end", "eof-then-sent:%s\n" % r)
        sock.shutdown(socket.SHUT_WR)
        wait_end(sock, 5)
        sock.close()

    def s_hc_s2c(self, t, sock, tag):
        # send, half-close, then read the client's answer until its FIN
        nc, ns = SIZES["hc-s2c"]
        data = data_for(tag + "/s2c", ns)
        t.send(data)
        sock.shutdown(socket.SHUT_WR)
        self.out(tag, "sent", data)
        got = bytearray()

        def run():
            got.extend(t.recv_all())
        r = outcome_of(run)
        self.out(tag, "recv", bytes(got))
        self.out(tag, "end", ("eof" if r == "ok" else r) + "\n")
        sock.close()

    def s_bulk(self, t, sock, tag):
        # bulk.<c2s bytes>.<s2c bytes>.<id>: read everything until the client's FIN,
        # then send, then close at once
        nc, ns = (int(x) for x in tag.split(".")[1:3])
        got = bytearray()
        r = outcome_of(lambda: got.extend(t.recv_all()))
        self.out(tag, "recv", bytes(got))
        data = data_for(tag + "/s2c", ns)
        r2 = outcome_of(lambda: t.send(data))
        self.out(tag, "sent", data)
        self.out(tag, "end", "%s %s\n" % (r, r2))
        sock.close()

    def s_rst_c(self, t, sock, tag):
        # echo 1000 bytes, then wait for the client's reset to arrive through the proxy
        d = t.recv_exact(1000)
        t.send(d)
        self.out(tag, "recv", d)
        end, extra = wait_end(sock, self.a.timeout)
        self.out(tag, "end", end + "\n")
        sock.close()

    def s_rst_s(self, t, sock, tag):
        d = t.recv_exact(1000)
        t.send(d)
        self.out(tag, "recv", d)
        # give the echo time to get out, then reset
        time.sleep(0.2)
        self.out(tag, "end", "reset-sent\n")
        rst_close(sock)

    def serve(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((HOST, 0))
        ls.listen(64)
        write_atomic(self.a.port_file, "%d\n" % ls.getsockname()[1])
        while True:
            c, _ = ls.accept()
            threading.Thread(target=self.guarded, args=(c,), daemon=True).start()

    def guarded(self, c):
        try:
            self.handle(c)
        except Exception as e:  # report, never hang
            sys.stderr.write("tls-server: %r\n" % e)
            try:
                c.close()
            except OSError:
                pass


def cmd_tls_server(a):
    Server(a).serve()


# ---- tls-client ---------------------------------------------------------------

def cmd_tls_client(a):
    tag = a.sni
    scen = tag.split(".", 1)[0]
    s = socket.create_connection((HOST, a.port), timeout=a.timeout)
    ctx = client_ctx(a.ciphers, True)
    t = Tls(s, ctx, server_side=False, sni=tag)
    res = {"tag": tag}

    def out(what, data):
        write_atomic(os.path.join(a.out_dir, "%s.client.%s" % (tag, what)), data)

    if scen in ("rst-c-early", "hc-early", "rst-s-early"):
        # only the ClientHello goes out: what follows happens before the proxy's verdict
        try:
            t.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        t.flush()
        if scen == "rst-c-early":
            # a reset before the server's flight could be released
            time.sleep(a.pause)
            rst_close(s)
            res["result"] = "reset-sent"
        else:
            if scen == "hc-early":
                s.shutdown(socket.SHUT_WR)  # FIN at once
            end, extra = wait_end(s, a.timeout)
            res.update({"end": end, "received": len(extra)})
            if scen == "hc-early":
                res["head"] = extra[:3].hex()
        print(json.dumps(res))
        return
    if scen == "rst-c-mid":
        # the server's flight arrives whole (the proxy released it); a reset instead of
        # the ClientKeyExchange
        hello_sent = False
        while True:
            try:
                t.obj.do_handshake()
                res["result"] = "handshake-completed"
                break
            except ssl.SSLWantReadError:
                if hello_sent and t.outb.pending:
                    rst_close(s)
                    res["result"] = "reset-sent"
                    break
                t.flush()
                hello_sent = True
                if not t.fill():
                    res["result"] = "eof"
                    break
        print(json.dumps(res))
        return
    hs = outcome_of(t.handshake)
    res["handshake"] = hs
    if scen == "rst-s-mid":
        print(json.dumps(res))
        return
    if hs != "ok":
        print(json.dumps(res))
        sys.exit(1)
    res["suite"] = t.obj.cipher()[0]
    if scen == "hc-c2s":
        nc, ns = SIZES[scen]
        data = data_for(tag + "/c2s", nc)
        t.send(data)
        out("sent", data)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        res["end"] = outcome_of(lambda: got.extend(t.recv_all()))
        out("recv", bytes(got))
    elif scen == "hc-s2c":
        nc, ns = SIZES[scen]
        got = bytearray()
        res["end_s2c"] = outcome_of(lambda: got.extend(t.recv_all()))
        out("recv", bytes(got))
        # the server half-closed; we can still talk
        data = data_for(tag + "/c2s", nc)
        res["send_after_eof"] = outcome_of(lambda: t.send(data))
        out("sent", data)
        s.shutdown(socket.SHUT_WR)
        res["end"], _ = wait_end(s, a.timeout)
    elif scen == "bulk":
        nc, ns = (int(x) for x in tag.split(".")[1:3])
        data = data_for(tag + "/c2s", nc)
        t.send(data)
        out("sent", data)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        res["end"] = outcome_of(lambda: got.extend(t.recv_all()))
        out("recv", bytes(got))
    elif scen == "rst-c":
        d = data_for(tag + "/c2s", 1000)
        t.send(d)
        out("sent", d)
        e = t.recv_exact(1000)
        out("recv", e)
        res["echo_ok"] = e == d
        rst_close(s)
        res["end"] = "reset-sent"
    elif scen == "rst-s":
        d = data_for(tag + "/c2s", 1000)
        t.send(d)
        out("sent", d)
        e = bytearray()

        def run():
            while True:
                d = t.recv()
                if not d:
                    return
                e.extend(d)
        res["end"] = outcome_of(run)
        out("recv", bytes(e))
        res["echo_ok"] = bytes(e) == d
    elif scen == "long":
        # two rounds of echo with a pause between them (while other connections come and go)
        sent = bytearray()
        got = bytearray()
        for rnd in (1, 2):
            if rnd == 2:
                deadline = time.monotonic() + a.timeout
                while not os.path.exists(a.go_file) and time.monotonic() < deadline:
                    time.sleep(0.02)
                res["go"] = os.path.exists(a.go_file)
            d = data_for("%s/c2s/%d" % (tag, rnd), 100000)
            t.send(d)
            sent += d
            got += t.recv_exact(len(d))
            if rnd == 1:
                write_atomic(a.ready_file, "ready\n")
        s.shutdown(socket.SHUT_WR)
        res["end"] = outcome_of(lambda: got.extend(t.recv_all()))
        out("sent", bytes(sent))
        out("recv", bytes(got))
        res["echo_ok"] = bytes(got) == bytes(sent)
    else:
        die("unknown scenario %s" % scen)
    s.close()
    print(json.dumps(res))


# ---- main ------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("listen-port")
    q.add_argument("--pgid", type=int, required=True)
    q.add_argument("--timeout", type=float, default=20)
    q.set_defaults(fn=cmd_listen_port)

    q = sub.add_parser("feed")
    q.add_argument("file")
    q.add_argument("--until", action="append")
    q.add_argument("--timeout", type=float, default=60)
    q.add_argument("--linger", type=float, default=0)
    q.set_defaults(fn=cmd_feed)

    q = sub.add_parser("hello-client")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--sni", default=None)
    q.add_argument("--ciphers", default="ECDHE-RSA-AES128-GCM-SHA256:" + RSA_SUITES)
    q.add_argument("--tls12", action="store_true")
    q.add_argument("--tls11", action="store_true")
    q.add_argument("--no-hello", action="store_true", help="send nothing, only read")
    q.add_argument("--timeout", type=float, default=15)
    q.set_defaults(fn=cmd_hello_client)

    q = sub.add_parser("lines-client")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--sni", default=None)
    q.add_argument("--version", choices=["1.0", "1.1", "1.2"], required=True)
    q.add_argument("--ciphers", required=True)
    q.add_argument("--cert", default="")
    q.add_argument("--key", default="")
    q.add_argument("--timeout", type=float, default=60)
    q.set_defaults(fn=cmd_lines_client)

    q = sub.add_parser("relay")
    q.add_argument("--to", type=int, required=True)
    q.add_argument("--port-file", required=True)
    q.add_argument("--report", required=True)
    q.add_argument("--timeout", type=float, default=30)
    q.set_defaults(fn=cmd_relay)

    q = sub.add_parser("hold-port")
    q.add_argument("--port-file", required=True)
    q.add_argument("--timeout", type=float, default=600)
    q.set_defaults(fn=cmd_hold_port)

    q = sub.add_parser("full-listener")
    q.add_argument("--port-file", required=True)
    q.add_argument("--timeout", type=float, default=600)
    q.set_defaults(fn=cmd_full_listener)

    q = sub.add_parser("jget")
    q.add_argument("file")
    q.add_argument("key")
    q.set_defaults(fn=cmd_hexfield)

    q = sub.add_parser("tls-server")
    q.add_argument("--cert", required=True)
    q.add_argument("--key", required=True)
    q.add_argument("--ciphers", default="AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    q.add_argument("--port-file", required=True)
    q.add_argument("--out-dir", required=True)
    q.add_argument("--timeout", type=float, default=30)
    q.set_defaults(fn=cmd_tls_server)

    q = sub.add_parser("tls-client")
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--sni", required=True)
    q.add_argument("--ciphers", default="AES128-GCM-SHA256")
    q.add_argument("--out-dir", required=True)
    q.add_argument("--go-file", default="")
    q.add_argument("--ready-file", default="")
    q.add_argument("--pause", type=float, default=0.05)
    q.add_argument("--timeout", type=float, default=30)
    q.set_defaults(fn=cmd_tls_client)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
