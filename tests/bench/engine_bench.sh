#!/usr/bin/env bash
# Engine throughput beside OpenSSL, in one run on this machine:
#   openssl speed: RSA-2048/4096 private-key ops/s (sign/s), AES-128-GCM and
#                  AES-128-CBC decrypt + SHA-1 at 16 KiB (the CBC-HMAC-SHA1
#                  reference is 1/(1/aes + 1/sha1));
#   engine_bench:  the same work as engine jobs (TLS pre-master decryptions,
#                  16 KiB TLS record opens, every result checked) for each
#                  engine at batch sizes 1, 8 and 64, one engine thread:
#                  cpu, emu (the kernels on the host's arithmetic) and
#                  emu-pure (the kernels' own arithmetic, PXY_EMU_PURE=1).
# Then the card's timing in emulation (--emu-timing, firmware/perf_model.py's
# model, every time stretched by SCALE so that this host keeps pace): the emu
# engine with the card's compute units, jobs streaming (512 in flight), and
# what it reached of the model's rate for full launches on every unit, how
# busy the units were, and the runs the host emulated too slowly (late).
# Prints tables and each engine's ratio to OpenSSL. Numbers only: it passes
# or fails nothing.
#
#   tests/bench/engine_bench.sh [--build DIR] [--engines cpu,emu,emu-pure] [--batches 1,8,64] [--seconds 2]
#                               [--timing u250:20,u55c:20 | --timing none]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build="$here/build"
engines=cpu,emu,emu-pure
batches=1,8,64
secs=2
timing=u250:20,u55c:20
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift ;;
	--engines) engines=$2; shift ;;
	--batches) batches=$2; shift ;;
	--seconds) secs=$2; shift ;;
	--timing) timing=$2; shift ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "engine_bench.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
bin="$build/tests/bench/engine_bench"
[ -x "$bin" ] || { echo "engine_bench.sh: $bin not built (cmake --build $build --target engine_bench)" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(openssl version)"
ossl() { openssl speed -seconds "$secs" "$@" 2>/dev/null; }
rsa2048=$(ossl rsa2048 | awk '/^rsa 2048 bits/ {print $6}')
rsa4096=$(ossl rsa4096 | awk '/^rsa 4096 bits/ {print $6}')
gcm=$(ossl -evp aes-128-gcm -bytes 16384 | awk '/^AES-128-GCM/ {sub("k","",$2); print $2 * 1000 / 1e9}')
cbc=$(ossl -decrypt -evp aes-128-cbc -bytes 16384 | awk '/^AES-128-CBC/ {sub("k","",$2); print $2 * 1000 / 1e9}')
sha1=$(ossl -evp sha1 -bytes 16384 | awk '/^sha1/ {sub("k","",$2); print $2 * 1000 / 1e9}')
cbcsha=$(awk -v a="$cbc" -v h="$sha1" 'BEGIN { print 1 / (1 / a + 1 / h) }')

# emu-pure: the emu engine on the kernels' own arithmetic (PXY_EMU_PURE=1)
out=""
IFS=, read -r -a elist <<<"$engines"
for en in "${elist[@]}"; do
	case $en in
	emu-pure) out+=$(PXY_EMU_PURE=1 "$bin" --engines emu --batches "$batches" --seconds "$secs" 2>/dev/null |
		sed 's/engine=emu /engine=emu-pure /')$'\n' ;;
	*) out+=$("$bin" --engines "$en" --batches "$batches" --seconds "$secs" 2>/dev/null)$'\n' ;;
	esac
done
out=$(printf '%s' "$out" | sed '/^$/d')
printf '\n%-16s %-8s %6s %12s %12s %8s\n' op engine batch rate openssl ratio
printf -- '------------------------------------------------------------------\n'
echo "$out" | while read -r line; do
	get() { printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
	op=$(get op) eng=$(get engine) b=$(get batch) rate=$(get rate) unit=$(get unit)
	case $op in
	rsa2048) ref=$rsa2048 ;;
	rsa4096) ref=$rsa4096 ;;
	aes128gcm) ref=$gcm ;;
	*) ref=$cbcsha ;;
	esac
	printf '%-16s %-8s %6s %12s %12s %8.3f  %s\n' "$op" "$eng" "$b" "$rate" "$(printf '%.4g' "$ref")" \
		"$(awk -v r="$rate" -v o="$ref" 'BEGIN { print r / o }')" "$unit"
done

[ "$timing" = none ] && exit 0
printf '\nCard timing in emulation (modelled card, times x SCALE; the emu engine, %s compute-unit threads)\n' "the card's"
printf '%-16s %-10s %6s %12s %12s %9s %8s %6s  %s\n' op card batch rate model of_model cu_busy late unit
printf -- '-------------------------------------------------------------------------------------------\n'
IFS=, read -r -a tlist <<<"$timing"
for t in "${tlist[@]}"; do
	for op in rsa2048 gcm cbc; do
		b=64
		[ "$op" = rsa2048 ] || b=128
		"$bin" --engines emu --ops "$op" --batches "$b" --seconds "$((secs * 2))" --emu-timing "$t" --threads 1 \
			--inflight 512 2>/dev/null
	done
done | while read -r line; do
	get() { printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
	printf '%-16s %-10s %6s %12s %12s %9s %8s %6s  %s\n' "$(get op)" "$(get engine | sed 's/^emu-//'):x$(get scale)" \
		"$(get batch)" "$(get rate)" "$(get model)" "$(get of_model)" "$(get cu_busy)" "$(get late_runs)" "$(get unit)"
done
