#!/usr/bin/env bash
# No CBC padding oracle, from the outside: real s_client -> tampering relay ->
# proxy -> real s_server -www, TLS 1.2 AES256-SHA, MAC-then-encrypt and
# encrypt-then-MAC. The relay reads the client's key log, derives the client's
# write keys and rebuilds the client's first application-data record (the
# HTTP request) in one of these ways, every one the same length:
#   valid        re-encrypted as it was (fresh IV): the control;
#   bad-mac      right padding, one MAC bit flipped;
#   bad-pad      right MAC, one padding byte wrong;
#   pad-overflow right MAC, a padding length longer than the record;
#   no-room      consistent padding that leaves no room for the MAC (MtE only);
#   bad-both     wrong padding and wrong MAC.
# For every bad kind, what anyone outside can see of the proxy must be the
# same: it forwards the record and the server's answer (no alert or reset of
# its own; the client gets the same records), its conn line is the same
# (reason record-auth-failed, nothing decrypted, the same byte counts), and its counters move the same way (one
# record_auth_fail per connection, one bad record per connection in the
# engine, no protocol error). The valid kind is decrypted in full.
. "$(dirname "$0")/lib.sh"

"$PY" -c 'import cryptography' 2>/dev/null || skip "python3-cryptography is not installed"
gen_cert srv srv.test

cat >"$T/relay.py" <<'PYEOF'
# relay.py PORT-FILE TO-PORT KEYLOG MODE KINDS...: one connection per kind, in order;
# the client's first application-data record rebuilt as the kind says; what the
# client receives kept in PORT-FILE.got.N
import hashlib, hmac, os, socket, struct, sys, threading, time
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
portfile, to, keylog, mode, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
MAC = 20  # HMAC-SHA1

def prf(secret, label, seed, n):
    seed = label + seed
    a, out = seed, b""
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:n]

def cbc(key, iv, data, enc):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    x = c.encryptor() if enc else c.decryptor()
    return x.update(data) + x.finalize()

def master(cr):
    for _ in range(200):
        for line in open(keylog):
            f = line.split()
            if len(f) == 3 and f[0] == "CLIENT_RANDOM" and f[1] == cr.hex():
                return bytes.fromhex(f[2])
        time.sleep(0.05)
    raise SystemExit("no key log line for this connection")

def mac(key, seq, hdr, body):
    return hmac.new(key, struct.pack(">Q", seq) + hdr[:3] + struct.pack(">H", len(body)) + body, hashlib.sha1).digest()

def rebuild(rec, st, kind):
    kb = prf(master(st["cr"]), b"key expansion", st["sr"] + st["cr"], 2 * MAC + 2 * 32)
    mkey, key, seq = kb[0:MAC], kb[2 * MAC:2 * MAC + 32], 1  # the Finished was record 0
    hdr, body = rec[:5], rec[5:]
    if mode == "etm":
        iv, ct = body[:16], body[16:-MAC]
        pt = cbc(key, iv, ct, False)
        content = pt[:-(pt[-1] + 1)]
    else:
        iv, ct = body[:16], body[16:]
        pt = cbc(key, iv, ct, False)
        content = pt[:-(pt[-1] + 1) - MAC]
    st["request"] = content
    # padding: at least two bytes, so that a byte of it can be wrong
    inner = len(content) + (MAC if mode == "mte" else 0)
    pad = (15 - inner % 16) % 16
    if pad < 2:
        pad += 16
    padding = bytearray([pad] * (pad + 1))
    if kind in ("bad-pad", "bad-both"):
        padding[0] ^= 0x40
    if kind == "pad-overflow":
        padding[-1] = 0xff
    iv = os.urandom(16)
    if mode == "etm":
        ct = cbc(key, iv, content + bytes(padding), True)
        tag = bytearray(mac(mkey, seq, hdr, iv + ct))
    else:
        tag = bytearray(mac(mkey, seq, hdr, content))
        if kind in ("bad-mac", "bad-both"):
            tag[3] ^= 0x01
        plain = content + bytes(tag) + bytes(padding)
        if kind == "no-room":
            # consistent padding reaching into where the MAC should be
            plain = bytes([len(plain) - 1] * len(plain))
        ct = cbc(key, iv, plain, True)
        tag = bytearray()
    if mode == "etm" and kind in ("bad-mac", "bad-both"):
        tag[3] ^= 0x01
    body = iv + ct + bytes(tag)
    return hdr[:3] + struct.pack(">H", len(body)) + body

def up(c, u, st, kind):
    buf, ccs, n = b"", False, 0
    try:
        while True:
            d = c.recv(65536)
            if not d:
                u.shutdown(socket.SHUT_WR); return
            buf += d
            while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">H", buf[3:5])[0]:
                l = 5 + struct.unpack(">H", buf[3:5])[0]
                rec, buf = buf[:l], buf[l:]
                if rec[0] == 22 and not ccs and rec[5] == 1:
                    st["cr"] = rec[11:43]
                if rec[0] == 20:
                    ccs = True
                elif ccs:
                    n += 1
                    if n == 2 and rec[0] == 23:
                        rec = rebuild(rec, st, kind)
                        open("%s.req.%d" % (portfile, st["i"]), "wb").write(st["request"])
                u.sendall(rec)
    except OSError:
        pass

ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
open(portfile + ".tmp", "w").write(str(ls.getsockname()[1])); os.rename(portfile + ".tmp", portfile)
for i, kind in enumerate(kinds):
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", to))
    st = {"i": i}
    t = threading.Thread(target=up, args=(c, u, st, kind), daemon=True); t.start()
    got, pend = b"", b""
    try:
        while True:
            d = u.recv(65536)
            if not d: break
            if "sr" not in st:
                pend += d
                if len(pend) >= 43 and pend[0] == 22 and pend[5] == 2:
                    st["sr"] = pend[11:43]
            got += d; c.sendall(d)
    except OSError as ex:
        got += b"RESET" if isinstance(ex, ConnectionResetError) else b""
    open("%s.got.%d" % (portfile, i), "wb").write(got)
    t.join(5)
    c.close(); u.close()
PYEOF

for mode in mte etm; do
	if [ $mode = mte ]; then
		KINDS="valid bad-mac bad-pad pad-overflow no-room bad-both"
		noetm=-no_etm
	else
		KINDS="valid bad-mac bad-pad pad-overflow bad-both"
		noetm=
	fi
	bg "srv-$mode" openssl s_server -accept 127.0.0.1:0 -www -tls1_2 -cipher AES256-SHA \
		-cert "$T/srv.crt" -key "$T/srv.key"
	sport=$(listen_port_of "$BG_PID") || fail "s_server did not listen"
	start_proxy "px-$mode" --backend "127.0.0.1:$sport" --cert "$T/srv.crt" --key "$T/srv.key"
	rm -f "$T/relay.port"* "$T/keys-$mode"
	: >"$T/keys-$mode"
	# shellcheck disable=SC2086
	bg "relay-$mode" "$PY" "$T/relay.py" "$T/relay.port" "$PX_PORT" "$T/keys-$mode" $mode $KINDS
	wait_for 10 test -s "$T/relay.port" || fail "the relay did not start"
	i=0
	for kind in $KINDS; do
		# shellcheck disable=SC2086
		printf 'GET / HTTP/1.0\r\n\r\n' | timeout 20 openssl s_client -connect "127.0.0.1:$(cat "$T/relay.port")" \
			-servername "k$i.test" -tls1_2 -cipher AES256-SHA $noetm -keylogfile "$T/keys-$mode" -quiet \
			>"$T/$mode-$kind.out" 2>"$T/$mode-$kind.err"
		wait_for 10 test -e "$T/relay.port.got.$i" || fail "$mode $kind: the relay did not finish the connection"
		test -e "$T/relay.port.req.$i" || fail "$mode $kind: the relay saw no request record"
		i=$((i + 1))
	done
	wait_conns "$PX_LOG" "$i" 20
	kill -USR1 "$PX_PID"
	wait_for 10 grep -q "stats engine" "$PX_LOG" || fail "no stats"
	# shellcheck disable=SC2086
	"$PY" - "$PX_LOG" "$T/relay.port" $mode $KINDS <<'PYEOF' || fail "$mode: the proxy's behaviour differs between kinds (see above)"
import sys
log, relay, mode, kinds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
by_sni = {}
for l in open(log):
    if " INFO conn id=" in l:
        kv = dict(f.split("=", 1) for f in l.split(" conn ", 1)[1].split() if "=" in f)
        by_sni[kv["sni"]] = kv
shapes = {}
for i, kind in enumerate(kinds):
    c = by_sni["k%d.test" % i]  # names of one length: the ClientHellos are the same size
    got = open("%s.got.%d" % (relay, i), "rb").read()
    req = open("%s.req.%d" % (relay, i), "rb").read()
    assert not got.endswith(b"RESET"), (kind, "reset")
    assert c["etm"] == ("yes" if mode == "etm" else "no"), (kind, c["etm"])
    if kind == "valid":
        assert c["verdict"] == "decrypted" and c["reason"] == "-" and c["close"] == "fin", (kind, c)
        assert c["decrypted_c2s"] == str(len(req)) and int(c["decrypted_s2c"]) > 0, (kind, c, len(req))
        continue
    seen = {k: c[k] for k in ("verdict", "reason", "close", "bytes_c2s", "bytes_s2c", "decrypted_c2s", "decrypted_s2c",
                              "version", "suite", "ems", "etm", "resumed", "client_cert")}
    recs, o = [], 0
    while o + 5 <= len(got):
        l = int.from_bytes(got[o + 3:o + 5], "big"); recs.append((got[o], l if got[o] != 22 else "hs")); o += 5 + l
    seen["records to the client"] = tuple(recs)
    assert seen["reason"] == "record-auth-failed" and seen["decrypted_c2s"] == "0", (kind, seen)
    shapes.setdefault(tuple(sorted(seen.items())), []).append(kind)
assert len(shapes) == 1, "the kinds are told apart: %r" % shapes
bad = len(kinds) - 1
tls = dict(f.split("=", 1) for f in [l for l in open(log) if " stats tls " in l][-1].split(" stats tls ", 1)[1].split())
assert tls["record_auth_fail"] == str(bad), tls
assert tls["protocol_errors"] == "0" and tls["finished_mismatch"] == "0", tls
eng = dict(f.split("=", 1) for f in [l for l in open(log) if " stats engine " in l][-1].split(" stats engine ", 1)[1].split() if "=" in f)
assert eng["rec_bad"] == str(bad) and eng["errors"] == "0", eng
assert not [l for l in open(log) if " WARN reject " in l], "a reject line"
print("%s: %d bad kinds, one conn line shape, record_auth_fail=%s rec_bad=%s" % (mode, bad, tls["record_auth_fail"], eng["rec_bad"]))
PYEOF
	stop_group "$PX_PID"
	say "$mode: every bad CBC record looks the same from outside"
done
