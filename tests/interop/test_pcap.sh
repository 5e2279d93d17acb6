#!/usr/bin/env bash
# Captures for the tools people use, read back with tshark:
#  - --pcap: the decrypted traffic as pcapng; following each TCP stream gives
#    exactly the plaintext each side sent (the same bytes as the plaintext
#    sinks), with the original addresses and ports; checksums validate;
#  - --pcap-tls: the TLS bytes with a Decryption Secrets Block; tshark, given
#    no key file, decrypts every stream to the same plaintext;
#  - --pcap-rotate: the files rotate (FILE.1, FILE.2, ...), each one readable;
#  - --pcap-feed: a reader of the FIFO gets a valid live pcapng stream; a
#    reader that does not read holds nothing up: packets are dropped and
#    counted while forwarding goes on.
. "$(dirname "$0")/lib.sh"
need_tool tshark curl

gen_cert srv srv.test
PT="$T/plaintext"
mkdir -p "$T/files"
head -c 30000 /dev/urandom >"$T/files/blob.bin"
bg WWW bash -c 'cd "$1" && exec openssl s_server -accept 127.0.0.1:0 -cert "$2" -key "$3" -WWW -no_tls1_3 -cipher "$4"' \
	s_server "$T/files" "$T/srv.crt" "$T/srv.key" "AES128-GCM-SHA256:AES256-SHA"
port=$(listen_port_of "$BG_PID") || fail "s_server did not listen"

mkfifo "$T/feed"
# the live reader: everything from the FIFO into a file
bg reader bash -c 'exec cat "$1" >"$2"' _ "$T/feed" "$T/feed.pcapng"
start_proxy px --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" --plaintext-dir "$PT" \
	--pcap "$T/dec.pcapng" --pcap-tls "$T/tls.pcapng" --pcap-feed "$T/feed"

names=()
for i in 1 2 3; do
	ciphers=AES128-GCM-SHA256
	[ $i = 2 ] && ciphers=AES256-SHA
	curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers "$ciphers" --resolve "c$i.test:$PX_PORT:127.0.0.1" \
		"https://c$i.test:$PX_PORT/blob.bin" -o "$T/c$i.out" 2>"$T/c$i.err" || fail "curl c$i: $(cat "$T/c$i.err")"
	cmp -s "$T/c$i.out" "$T/files/blob.bin" || fail "c$i: the file differs"
	names+=("c$i.test")
done
wait_conns "$PX_LOG" 3 20
stop_group "$PX_PID" # flushes the captures; the reader sees the end of the FIFO
wait_exit "$BG_PID" 10 || true

# follow CAPTURE KIND ID-LIST-FILE: per TCP stream, "<client port> <c2s hex> <s2c hex>"
follow() {
	local cap=$1 kind=$2 n
	n=$(tshark -r "$cap" -T fields -e tcp.stream 2>/dev/null | sort -un | wc -l)
	for ((s = 0; s < n; s++)); do
		tshark -r "$cap" -q -z "follow,$kind,raw,$s" 2>/dev/null | "$PY" -c '
import sys
c2s, s2c, port = [], [], "?"
for line in sys.stdin:
    if line.startswith("Node 0: "):
        port = line.rsplit(":", 1)[1].strip()
    elif line.startswith("\t") and line.strip():
        s2c.append(line.strip())
    elif line.strip() and all(ch in "0123456789abcdef" for ch in line.strip()):
        c2s.append(line.strip())
print(port, "".join(c2s) or "-", "".join(s2c) or "-")'
	done
}
hexof() { od -An -v -tx1 "$1" | tr -d ' \n'; }

# the plaintext every connection carried, by client port
declare -A want_c2s want_s2c
for name in "${names[@]}"; do
	get_conn "$PX_LOG" "$name"
	cport=${CONN#* client=127.0.0.1:}
	cport=${cport%% *}
	want_c2s[$cport]=$(hexof "$PT/$CONN_ID.c2s")
	want_s2c[$cport]=$(hexof "$PT/$CONN_ID.s2c")
	[ -n "${want_s2c[$cport]}" ] || fail "$name: empty s2c sink"
done

check_capture() { # CAPTURE KIND WHAT
	local cap=$1 kind=$2 what=$3 seen=0 p c s
	follow "$cap" "$kind" >"$T/$what.follow"
	while read -r p c s; do
		[ -n "${want_c2s[$p]:-}" ] || continue
		[ "$c" = "${want_c2s[$p]}" ] || fail "$what, client port $p: c2s differs from the plaintext sent"
		[ "$s" = "${want_s2c[$p]}" ] || fail "$what, client port $p: s2c differs from the plaintext sent"
		seen=$((seen + 1))
	done <"$T/$what.follow"
	[ "$seen" = 3 ] || fail "$what: $seen of 3 connections found exact in $cap"
}
check_capture "$T/dec.pcapng" tcp decrypted
bad=$(tshark -r "$T/dec.pcapng" -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE \
	-Y 'ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || tcp.analysis.flags' 2>/dev/null | wc -l)
[ "$bad" = 0 ] || fail "$bad packets with bad checksums or TCP analysis warnings in the decrypted capture"
tshark -r "$T/dec.pcapng" -T fields -e tcp.dstport -Y 'tcp.flags.syn == 1 && tcp.flags.ack == 0' 2>/dev/null |
	grep -qvx "$port" && fail "a flow does not go to the server's port $port"
say "--pcap: 3 TCP streams, each exactly the plaintext both ways, checksums valid, original ports"
check_capture "$T/tls.pcapng" tls tls
say "--pcap-tls: tshark decrypts every stream unaided (Decryption Secrets Block) to the same plaintext"
check_capture "$T/feed.pcapng" tcp feed
say "--pcap-feed: the live reader got all 3 streams exact"

# rotation, and a reader that never reads
mkfifo "$T/stuck"
exec 9<>"$T/stuck" # a reader that holds the FIFO open and reads nothing
start_proxy px2 --backend "127.0.0.1:$port" --cert "$T/srv.crt" --key "$T/srv.key" \
	--pcap "$T/rot.pcapng" --pcap-rotate 20000 --pcap-feed "$T/stuck"
for i in 1 2 3 4 5 6; do
	curl -sS -k --max-time 30 --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256 \
		--resolve "r$i.test:$PX_PORT:127.0.0.1" "https://r$i.test:$PX_PORT/blob.bin" -o "$T/r$i.out" 2>"$T/r$i.err" ||
		fail "curl r$i with a stuck feed reader: $(cat "$T/r$i.err")"
	cmp -s "$T/r$i.out" "$T/files/blob.bin" || fail "r$i: the file differs"
done
wait_conns "$PX_LOG" 6 20
kill -USR1 "$PX_PID"
wait_for 10 grep -Eq "stats capture .*feed_dropped=[1-9]" "$PX_LOG" ||
	fail "no dropped feed packets counted: $(grep 'stats capture' "$PX_LOG" | tail -n1)"
stop_group "$PX_PID"
exec 9>&-
n=$(ls "$T"/rot.pcapng.* 2>/dev/null | wc -l)
[ "$n" -ge 3 ] || fail "expected at least 3 rotated files, found $n"
total=0
for f in "$T"/rot.pcapng "$T"/rot.pcapng.*; do
	size=$(fsize "$f")
	[ "$size" -le $((20000 + 2 * 1500)) ] || fail "$f: $size bytes, past the rotation size"
	k=$(tshark -r "$f" 2>"$T/rot.err" | wc -l) || true
	[ -s "$T/rot.err" ] && ! grep -q "Running as user" "$T/rot.err" && fail "$f does not read: $(cat "$T/rot.err")"
	total=$((total + k))
done
[ "$total" -gt 6 ] || fail "the rotated files hold $total packets"
say "--pcap-rotate: $n rotated files plus the current one, each readable; a reader that never reads held nothing up"
