#!/usr/bin/env python3
"""A small TLS client for differential tests: it sends first flights no
library sends (many extensions, broken extension blocks, wrong message types,
hellos over 64 KiB, SSLv2-compatible hellos) and reports what came back, so
that the same case can be sent to a server directly and through the proxy and
the answers compared.

  tlsclient.py PORT CASE [--version 1.0|1.2] [--timeout S]

Prints one line: `answer=<what the client saw> [handshake=complete] ...`:
  serverhello          a ServerHello came back (the flight was taken)
  alert:L:D            an alert, level L, description D
  close                the connection closed with no answer
  reset                the connection was reset with no answer
  data:HEX             something else (its first bytes)
and, for the cases that complete a handshake (sslv2, tls), whether it
completed and the first line of the HTTP answer (an `openssl s_server -www`).

Cases:
  tls           a plain TLS ClientHello, then the whole handshake (RSA, AES128-SHA)
  sslv2         an SSLv2-compatible ClientHello (RFC 5246 E.2), then the whole handshake
  sslv2-pure    an SSL 2.0 CLIENT-HELLO (version 0.2)
  exts-129      a ClientHello with 129 unknown empty extensions
  exts-300      ... with 300
  ext-trunc     the extensions block ends inside an extension's header
  ext-overrun   an extension's length runs past the block
  wrong-type    a ServerHello (type 2) as the client's first message
  big-hello     a ClientHello of 75 KiB (a padding extension and 5,000 suites, over five records)
"""
import argparse
import hashlib
import hmac
import os
import socket
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SUITES = [0x002F, 0x0035, 0x009C, 0x003C]  # RSA suites an RSA-only server takes


def u16(n):
    return struct.pack('>H', n)


def u24(n):
    return struct.pack('>I', n)[1:]


def hs(t, body):
    return bytes([t]) + u24(len(body)) + body


def records(ct, ver, data):
    out = b''
    for i in range(0, max(len(data), 1), 16384):
        chunk = data[i:i + 16384]
        out += bytes([ct]) + u16(ver) + u16(len(chunk)) + chunk
    return out


def client_hello(ver, random, exts=b'', suites=SUITES, ext_block=None):
    body = u16(ver) + random + b'\x00' + u16(2 * len(suites)) + b''.join(u16(s) for s in suites) + b'\x01\x00'
    if ext_block is not None:
        body += ext_block
    elif exts:
        body += u16(len(exts)) + exts
    return hs(1, body)


def unknown_exts(n):
    return b''.join(u16(0x2000 + i) + u16(0) for i in range(n))


class Conn:
    def __init__(self, port, timeout):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        self.buf = b''

    def send(self, b):
        self.s.sendall(b)

    def fill(self, n):
        while len(self.buf) < n:
            try:
                d = self.s.recv(65536)
            except ConnectionResetError:
                raise EOFError('reset')
            except socket.timeout:
                raise EOFError('timeout')
            if not d:
                raise EOFError('close')
            self.buf += d

    def record(self):
        self.fill(5)
        if self.buf[0] not in (20, 21, 22, 23):
            raise ValueError(self.buf[:8].hex())
        n = struct.unpack('>H', self.buf[3:5])[0]
        self.fill(5 + n)
        r = (self.buf[0], self.buf[5:5 + n])
        self.buf = self.buf[5 + n:]
        return r


def first_answer(c):
    """What the server said first: serverhello, alert:L:D, close, reset, data:HEX."""
    try:
        t, body = c.record()
    except EOFError as e:
        return str(e) if str(e) != 'timeout' else 'close'
    except ValueError as e:
        return 'data:' + str(e)
    if t == 21 and len(body) >= 2:
        return f'alert:{body[0]}:{body[1]}'
    if t == 22 and body and body[0] == 2:
        return 'serverhello'
    return f'data:{bytes([t]).hex()}{body[:4].hex()}'


# ---- a whole handshake: RSA key exchange, TLS_RSA_WITH_AES_128_CBC_SHA --------------------------------

def p_hash(h, secret, seed, n):
    a, out = seed, b''
    while len(out) < n:
        a = hmac.new(secret, a, h).digest()
        out += hmac.new(secret, a + seed, h).digest()
    return out[:n]


def prf(ver, secret, label, seed, n):
    if ver >= 0x0303:
        return p_hash(hashlib.sha256, secret, label + seed, n)
    half = (len(secret) + 1) // 2
    a = p_hash(hashlib.md5, secret[:half], label + seed, n)
    b = p_hash(hashlib.sha1, secret[-half:], label + seed, n)
    return bytes(x ^ y for x, y in zip(a, b))


def th(ver, transcript):
    if ver >= 0x0303:
        return hashlib.sha256(transcript).digest()
    return hashlib.md5(transcript).digest() + hashlib.sha1(transcript).digest()


class CbcSha:
    def __init__(self, ver, key, mac_key, iv):
        self.ver, self.key, self.mac_key, self.iv, self.seq = ver, key, mac_key, iv, 0

    def mac(self, ct, data):
        return hmac.new(self.mac_key, struct.pack('>Q', self.seq) + bytes([ct]) + u16(self.ver) + u16(len(data)) + data,
                        hashlib.sha1).digest()

    def seal(self, ct, data):
        p = data + self.mac(ct, data)
        pad = 15 - len(p) % 16
        p += bytes([pad]) * (pad + 1)
        iv = os.urandom(16) if self.ver >= 0x0302 else self.iv
        enc = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        c = enc.update(p) + enc.finalize()
        self.seq += 1
        if self.ver >= 0x0302:
            c = iv + c
        else:
            self.iv = c[-16:]
        return bytes([ct]) + u16(self.ver) + u16(len(c)) + c

    def open(self, ct, c):
        if self.ver >= 0x0302:
            iv, c = c[:16], c[16:]
        else:
            iv, self.iv = self.iv, c[-16:]
        dec = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        p = dec.update(c) + dec.finalize()
        p = p[:len(p) - p[-1] - 1]
        data, tag = p[:-20], p[-20:]
        if not hmac.compare_digest(tag, self.mac(ct, data)):
            raise ValueError('bad record MAC')
        self.seq += 1
        return data


def handshake(c, ver, hello_msg, cr):
    """The rest of a full handshake after the client's hello (hello_msg: the bytes hashed for it;
    ver: the version it offered, the pre-master's first two bytes)."""
    hello_ver = ver
    transcript, hsbuf, sr, cert = hello_msg, b'', None, None
    while True:
        t, body = c.record()
        if t == 21:
            return f'alert:{body[0]}:{body[1]}', None
        if t != 22:
            return 'data:' + body[:4].hex(), None
        hsbuf += body
        done = False
        while len(hsbuf) >= 4:
            n = int.from_bytes(hsbuf[1:4], 'big')
            if len(hsbuf) < 4 + n:
                break
            m, hsbuf = hsbuf[:4 + n], hsbuf[4 + n:]
            transcript += m
            if m[0] == 2:
                sver, sr, suite = struct.unpack('>H', m[4:6])[0], m[6:38], None
                sidl = m[38]
                suite = struct.unpack('>H', m[39 + sidl:41 + sidl])[0]
                if suite != 0x002F:
                    return f'serverhello suite={suite:#06x}', None
                ver = sver
            elif m[0] == 11:
                first = int.from_bytes(m[7:10], 'big')
                cert = x509.load_der_x509_certificate(m[10:10 + first])
            elif m[0] == 14:
                done = True
        if done:
            break
    pms = u16(hello_ver) + os.urandom(46)
    enc = cert.public_key().encrypt(pms, padding.PKCS1v15())
    cke = hs(16, u16(len(enc)) + enc)
    transcript += cke
    ms = prf(ver, pms, b'master secret', cr + sr, 48)
    ivl = 16 if ver < 0x0302 else 0
    kb = prf(ver, ms, b'key expansion', sr + cr, 2 * 20 + 2 * 16 + 2 * ivl)
    cw = CbcSha(ver, kb[40:56], kb[0:20], kb[72:88] if ivl else None)
    sw = CbcSha(ver, kb[56:72], kb[20:40], kb[88:104] if ivl else None)
    fin = hs(20, prf(ver, ms, b'client finished', th(ver, transcript), 12))
    c.send(records(22, ver, cke) + records(20, ver, b'\x01') + cw.seal(22, fin))
    transcript += fin
    want = prf(ver, ms, b'server finished', th(ver, transcript), 12)
    t, body = c.record()
    if t == 21:
        return f'alert:{body[0]}:{body[1]}', None
    t, body = c.record()
    sfin = sw.open(t, body)
    if sfin[4:] != want:
        return 'server-finished-mismatch', None
    c.send(cw.seal(23, b'GET / HTTP/1.0\r\n\r\n'))
    answer = b''
    try:
        while True:
            t, body = c.record()
            if t == 23:
                answer += sw.open(t, body)
            elif t == 21:
                break
    except EOFError:
        pass
    return 'serverhello', answer.split(b'\r\n', 1)[0].decode(errors='replace')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('port', type=int)
    ap.add_argument('case')
    ap.add_argument('--version', default='1.2')
    ap.add_argument('--timeout', type=float, default=5)
    a = ap.parse_args()
    ver = {'1.0': 0x0301, '1.1': 0x0302, '1.2': 0x0303}[a.version]
    c = Conn(a.port, a.timeout)
    cr = os.urandom(32)
    case = a.case
    if case in ('tls', 'sslv2'):
        if case == 'tls':
            msg = client_hello(ver, cr, suites=[0x002F])
            c.send(records(22, 0x0301, msg))
        else:
            specs = b'\x00\x00\x2f\x00\x00\xff'
            msg = b'\x01' + u16(ver) + u16(len(specs)) + u16(0) + u16(32) + specs + cr
            c.send(u16(0x8000 | len(msg)) + msg)
        try:
            answer, http = handshake(c, ver, msg, cr)
        except EOFError as e:
            answer, http = str(e), None
        print(f'answer={answer} handshake={"complete" if http is not None else "no"}'
              + (f' http="{http}"' if http is not None else ''))
        return
    if case == 'sslv2-pure':
        specs = b'\x01\x00\x80\x07\x00\xc0'
        msg = b'\x01' + u16(0x0002) + u16(len(specs)) + u16(0) + u16(16) + specs + cr[:16]
        c.send(u16(0x8000 | len(msg)) + msg)
    elif case.startswith('exts-'):
        c.send(records(22, 0x0301, client_hello(ver, cr, unknown_exts(int(case[5:])))))
    elif case == 'ext-trunc':
        exts = unknown_exts(3) + b'\x20'  # one byte of a fourth extension's type
        c.send(records(22, 0x0301, client_hello(ver, cr, ext_block=u16(len(exts)) + exts)))
    elif case == 'ext-overrun':
        exts = unknown_exts(2) + u16(0x2100) + u16(40) + b'\x00' * 4  # says 40 bytes, has 4
        c.send(records(22, 0x0301, client_hello(ver, cr, ext_block=u16(len(exts)) + exts)))
    elif case == 'wrong-type':
        c.send(records(22, 0x0301, hs(2, client_hello(ver, cr)[4:])))
    elif case == 'big-hello':
        # 65,000 bytes of extensions (a padding extension, RFC 7685) and 10,000 bytes of suites: 75 KiB
        pad = u16(21) + u16(50000) + b'\x00' * 50000
        more = u16(0x2200) + u16(14996) + b'\x00' * 14996
        suites = SUITES + [0x0A0A + 0x1010 * (i % 15) + (i // 15) * 0x100 for i in range(4996)]
        c.send(records(22, 0x0301, client_hello(ver, cr, pad + more, suites=[s & 0xffff for s in suites])))
    else:
        sys.exit(f'tlsclient: unknown case {case}')
    print(f'answer={first_answer(c)}')


if __name__ == '__main__':
    main()
