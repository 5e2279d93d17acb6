#!/usr/bin/env bash
# No Bleichenbacher oracle, from the outside: real s_client -> rewriting relay
# -> proxy -> real s_server. The relay replaces the encrypted pre-master
# secret in each handshake's ClientKeyExchange with one of: a valid PKCS#1
# block holding another secret, block type 1, a non-zero first byte, no zero
# separator, a 47- and a 49-byte secret, wrong version bytes, a ciphertext one
# byte short and one byte long. For every padding and version kind, what
# anyone outside can see of the proxy must be the same: it forwards
# everything (no alert or reset of its own: the client gets the server's
# answer, record for record the same shape), its conn line says the same
# (not-decrypted, close=fin; the reason is finished-mismatch, or server-alert
# when the server's own alert about the bad Finished wins the race against the
# proxy's check: timing, the same for every kind), and its counters move the
# same way (one RSA job and one finished_mismatch each; no protocol error, no
# engine error). The length kinds are public (the server itself answers them
# at once): the proxy adds nothing of its own there either. GCM and CBC.
. "$(dirname "$0")/lib.sh"

gen_cert srv srv.test
modulus=$(openssl x509 -in "$T/srv.crt" -noout -modulus | sed 's/^Modulus=//')

cat >"$T/relay.py" <<'PYEOF'
# relay.py LISTEN-PORT-FILE TO-PORT MODULUS-HEX KINDS...: one connection per kind, in order;
# the ClientKeyExchange's ciphertext replaced; what the client receives kept in got.N
import os, socket, struct, sys, threading
portfile, to, n_hex, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
n, e, k = int(n_hex, 16), 65537, len(n_hex) // 2

def block(kind):
    secret = os.urandom(48)
    version, mlen, lead0, bt, sep = b"\x03\x03", 48, 0, 2, True
    if kind == "block-type-1": bt = 1
    if kind == "first-byte": lead0 = 1
    if kind == "no-separator": sep = False
    if kind == "secret-47": mlen = 47
    if kind == "secret-49": mlen = 49
    if kind == "wrong-version": version = b"\x03\x01"
    msg = (version + secret)[:mlen] if mlen <= 48 else version + secret + b"\x00"
    ps = bytes(b or 1 for b in os.urandom(k - 3 - len(msg)))
    em = bytes([lead0, bt]) + ps + (b"\x00" if sep else b"\x01") + msg
    ct = pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")
    if kind == "short": ct = ct[:-1]
    if kind == "long": ct = ct + b"\x42"
    return ct

def rewrite(rec, kind):
    # a handshake record whose first message is a ClientKeyExchange (type 16)
    if rec[0] != 22 or len(rec) < 9 or rec[5] != 16:
        return rec
    ct = block(kind)
    body = struct.pack(">H", len(ct)) + ct
    hs = b"\x10" + struct.pack(">I", len(body))[1:] + body
    return rec[:3] + struct.pack(">H", len(hs)) + hs

def up(c, u, kind):
    buf = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                u.shutdown(socket.SHUT_WR); return
            buf += d
            while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">H", buf[3:5])[0]:
                l = 5 + struct.unpack(">H", buf[3:5])[0]
                u.sendall(rewrite(buf[:l], kind)); buf = buf[l:]
    except OSError:
        pass

ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
open(portfile + ".tmp", "w").write(str(ls.getsockname()[1])); os.rename(portfile + ".tmp", portfile)
for i, kind in enumerate(kinds):
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", to))
    t = threading.Thread(target=up, args=(c, u, kind), daemon=True); t.start()
    got = b""
    try:
        while True:
            d = u.recv(65536)
            if not d: break
            got += d; c.sendall(d)
    except OSError as ex:
        got += b"RESET" if isinstance(ex, ConnectionResetError) else b""
    open("%s.got.%d" % (portfile, i), "wb").write(got)
    c.close(); u.close()
PYEOF

KINDS="valid-other-secret block-type-1 first-byte no-separator secret-47 secret-49 wrong-version short long"
for cipher in AES128-GCM-SHA256 AES256-SHA; do
	bg "srv-$cipher" openssl s_server -accept 127.0.0.1:0 -www -tls1_2 -cipher "$cipher" \
		-cert "$T/srv.crt" -key "$T/srv.key"
	sport=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
	start_proxy "px-$cipher" --backend "127.0.0.1:$sport" --cert "$T/srv.crt" --key "$T/srv.key"
	rm -f "$T/relay.port"*
	# shellcheck disable=SC2086
	bg "relay-$cipher" "$PY" "$T/relay.py" "$T/relay.port" "$PX_PORT" "$modulus" $KINDS
	wait_for 10 test -s "$T/relay.port" || fail "the relay did not start"
	i=0
	for kind in $KINDS; do
		printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$(cat "$T/relay.port")" \
			-servername "$kind.test" -tls1_2 -cipher "$cipher" -quiet >"$T/$cipher-$kind.out" 2>"$T/$cipher-$kind.err"
		wait_for 10 test -e "$T/relay.port.got.$i" || fail "$kind: the relay did not finish the connection"
		i=$((i + 1))
	done
	wait_conns "$PX_LOG" 9 20
	kill -USR1 "$PX_PID"
	wait_for 10 grep -q "stats tls" "$PX_LOG" || fail "no stats"
	"$PY" - "$PX_LOG" "$T/relay.port" $KINDS <<'PYEOF' || fail "$cipher: the proxy's behaviour differs between kinds (see above)"
import re, sys
log, relay, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
lines = [l for l in open(log) if " INFO conn id=" in l]
by_sni = {}
for l in lines:
    kv = dict(f.split("=", 1) for f in l.split(" conn ", 1)[1].split() if "=" in f)
    by_sni[kv["sni"]] = kv
# the padding and version kinds share the ciphertext's length: the proxy must not tell them
# apart. A ciphertext of another length is public; there the server itself answers at once
# (an alert, before any Finished), and the proxy only reports that.
same_length = [k for k in kinds if k not in ("short", "long")]
shape = {}
for i, kind in enumerate(kinds):
    c = by_sni[kind + ".test"]
    seen = {k: c[k] for k in ("verdict", "reason", "close", "decrypted_c2s", "decrypted_s2c", "version", "suite", "ems", "etm", "resumed")}
    got = open("%s.got.%d" % (relay, i), "rb").read()
    assert not got.endswith(b"RESET"), (kind, "reset")
    recs, o = [], 0
    while o + 5 <= len(got):
        l = int.from_bytes(got[o + 3:o + 5], "big"); recs.append((got[o], l if got[o] != 22 else "hs")); o += 5 + l
    # the server fails the Finished too and alerts: whether its alert or the proxy's own
    # Finished check comes first is a race on a loaded machine, the same for every kind
    assert seen["reason"] in ("finished-mismatch", "server-alert"), (kind, seen)
    seen["reason"] = "finished-mismatch|server-alert"
    if kind in same_length:
        assert seen["verdict"] == "not-decrypted" and seen["close"] == "fin", (kind, seen)
        shape.setdefault(tuple(sorted(seen.items())), []).append(kind)
        shape.setdefault(("records", tuple(recs)), []).append(kind)
    else:
        assert seen["verdict"] == "not-decrypted" and seen["close"] == "fin", (kind, seen)
assert len(shape) == 2, "the kinds are told apart: %r" % shape
stats = [l for l in open(log) if " stats tls " in l][-1]
kv = dict(f.split("=", 1) for f in stats.split(" stats tls ", 1)[1].split())
assert kv["rsa_jobs"] == str(len(kinds)), kv
assert int(kv["finished_mismatch"]) + sum(1 for l in open(log) if " reason=server-alert " in l) >= len(kinds), kv
assert kv["protocol_errors"] == "0" and kv["keys_verified"] == "0", kv
eng = [l for l in open(log) if " stats engine " in l][-1]
assert " errors=0 " in eng, eng
assert not [l for l in open(log) if " WARN reject " in l], "a reject line"
print("%d kinds: one conn line shape, one record shape, counters +1 each" % len(kinds))
PYEOF
	stop_group "$PX_PID"
	say "$cipher: every bad ClientKeyExchange looks the same from outside"
done
