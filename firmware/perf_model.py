#!/usr/bin/env python3
"""Performance and resource model of the proxyssl kernels on an Alveo card.

Everything printed here is MODELLED, not measured: no card and no Vitis run
behind it. It is derived from the code:

  trip counts   from an instrumented C simulation of the kernels in their
                synthesis form (pxy-trips, firmware/trips.c): how many times
                each labelled loop was entered and iterated, and inside which
                loop iteration, for full batches of real work (RSA keys, TLS
                records of full size). The kernels are constant time: the
                counts depend on public sizes only.
  II, latency   from the `#pragma HLS` lines of each loop (PIPELINE II=n,
                LATENCY max=n, UNROLL [factor=n], PIPELINE off, DATAFLOW),
                read from the sources as v++ sees them (preprocessed with
                __SYNTHESIS__ defined).
  geometry      RSA_W, RSA_U, RSA_LG, REC_G, AES_BLOCKS, GH_MULS ... from the
                same preprocessed sources.
  placement     compute units per kernel and per SLR from platforms/<card>.cfg.

Cycle rules (one loop of the trip tree; `iters` and `entries` over the run):
  pipelined     iters / factor * II + entries * depth   (depth = LATENCY max,
                DEFAULT_DEPTH where the loop states none)
  sequential    iters * SEQ_ITER + the cycles of the loops inside
  unrolled      (with counted loops inside: parallel units) the cycles of the
                loops inside / copies per entry
  dataflow      per iteration the slowest stage (the loops of one callee),
                plus the other stages once per entry (fill and drain)
  per launch    CALL_OVERHEAD (control registers, straight-line code)

Resources are per-operator estimates (see resources()), stated next to each
figure; a Vitis user checks them, and the cycle figures, against the HLS
reports:

  v++ -c -t hw --platform <platform> -k rsa_crt_decrypt --hls.clock 300000000:rsa_crt_decrypt \\
      --report_level 2 --save-temps -I include -I kernels-hls kernels-hls/rsa_crt_decrypt.c -o rsa.xo
  then _x/rsa_crt_decrypt/rsa_crt_decrypt/rsa_crt_decrypt/solution/syn/report/*_csynth.rpt:
  "Latency (cycles)" and "Interval" per loop and function (against the cycles
  below), "II" and "Pipelined" per loop (against the pragmas), and the
  "Utilization Estimates" table: DSP, FF, LUT, BRAM_18K, URAM (against the
  resource table below).

  perf_model.py [--platform u250|u55c] [--cfg FILE] [--trips JSON | --trips-exe PXY_TRIPS | --build DIR]
                [--emit-timing FILE] [--json]

Without --trips or --trips-exe it builds pxy-trips in DIR (default firmware/build/model, configured
with CMake if needed), runs it, and keeps its output there until a kernel source changes.

The last two lines are exactly `rsa2048_decrypts_per_s=N` and `gcm_record_GBps=N`.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys

FW = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(FW, '..'))
KDIR = os.path.join(ROOT, 'kernels-hls')
SOURCES = ['rsa_crt_decrypt.c', 'tls_record_crypt.c', 'aes.c', 'ghash.c', 'sha.c']

# ---- cycle rules: stated assumptions ---------------------------------------------------------------
DEFAULT_DEPTH = 8      # pipeline depth of a pipelined loop that states no LATENCY
SEQ_ITER = 2           # cycles of a sequential (PIPELINE off) iteration besides its inner loops
CALL_OVERHEAD = 200    # per launch: ap_ctrl handshake, argument reads, straight-line code
DATAFLOW_SYNC = 4      # per dataflow iteration: ping-pong buffer handover

# ---- platforms --------------------------------------------------------------------------------------
# Device totals from the data sheets (DS962: XCU250, XCU55C), an even share per SLR. STATIC: what the
# platform takes in an SLR (the static region: PCIe, XDMA, card management, and the memory subsystem),
# estimated from the per-SLR availability `platforminfo` reports for comparable xdma platforms (the SLR
# with the static region keeps about half of its LUTs). Per SLR, kernels may use SLR_LIMIT of what is
# left: UG1393 reserves about 10% of the available resources for infrastructure and routing.
PLATFORMS = {
    'u250': {
        'name': 'Alveo U250 (xilinx_u250_gen3x16_xdma_4_1_202210_1)',
        'freq_mhz': 300, 'slrs': 4,
        'total': {'DSP': 12288, 'LUT': 1728000, 'FF': 3456000, 'BRAM36': 2688, 'URAM': 1280},
        'static': {1: {'DSP': 960, 'LUT': 200000, 'FF': 400000, 'BRAM36': 300, 'URAM': 160}},
        # a DDR4 controller in each SLR (its bank's)
        'per_slr': {'DSP': 3, 'LUT': 12000, 'FF': 15000, 'BRAM36': 25, 'URAM': 0},
        'pcie_GBps': 12.5,  # Gen3 x16, per direction, XDMA with 256-byte TLPs (15.75 raw)
        'mem': 'DDR', 'banks': 4, 'bank_GBps': 16.0,  # DDR4-2400 x72: 19.2 peak, ~16 with refresh/turnarounds
    },
    'u55c': {
        'name': 'Alveo U55C (xilinx_u55c_gen3x16_xdma_3_202210_1)',
        'freq_mhz': 300, 'slrs': 3,
        'total': {'DSP': 9024, 'LUT': 1304000, 'FF': 2607000, 'BRAM36': 2016, 'URAM': 960},
        'static': {0: {'DSP': 960, 'LUT': 200000, 'FF': 400000, 'BRAM36': 300, 'URAM': 160}},
        'per_slr': {'DSP': 0, 'LUT': 0, 'FF': 0, 'BRAM36': 0, 'URAM': 0},
        'pcie_GBps': 12.5,
        'mem': 'HBM', 'banks': 32, 'bank_GBps': 12.8,  # HBM2 pseudo-channel: 14.4 peak, ~12.8 achievable
    },
}
SLR_LIMIT = 0.90
RES = ['DSP', 'LUT', 'FF', 'BRAM36', 'URAM']


class ModelError(Exception):
    pass


# ---- the sources as v++ sees them ------------------------------------------------------------------

def cc():
    for c in (os.environ.get('CC'), 'cc', 'gcc', 'clang'):
        if c and shutil.which(c):
            return c
    raise ModelError('no C compiler (cc) to preprocess the kernels')


def preprocess(src, defines_only=False):
    cmd = [cc(), '-E', '-D__SYNTHESIS__', '-DPXYK_NO_VECTOR', '-DPXYK_TRIPS',
           '-I', os.path.join(ROOT, 'include'), '-I', KDIR]
    if defines_only:
        cmd.append('-dM')
    out = subprocess.run(cmd + [os.path.join(KDIR, src)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ModelError(f'preprocessing {src}: {out.stderr.strip()}')
    return out.stdout


def geometry():
    """Numeric #defines of the synthesis form (RSA_W, REC_G, AES_BLOCKS ...)."""
    defs = {}
    for src in SOURCES:
        for line in preprocess(src, defines_only=True).splitlines():
            m = re.match(r'#define (\w+) (.+)$', line)
            if m and m.group(1)[0] != '_':
                defs[m.group(1)] = m.group(2).strip()

    def ev(name, depth=0):
        v = defs[name]
        expr = re.sub(r'\b([A-Z_][A-Z0-9_]*)\b', lambda m: str(ev(m.group(1), depth + 1)) if depth < 8 else 'x', v)
        expr = re.sub(r'(\d+)[uUlL]+\b', r'\1', expr)
        return int(eval(expr.replace('/', '//'), {'__builtins__': {}}))
    g = {}
    for k in ('RSA_W', 'RSA_U', 'RSA_LG', 'RSA_NB', 'RSA_ND', 'RSA_TBL', 'RSA_LANES', 'RSA_GROUP', 'RSA_ROW_DEPTH',
              'REC_G', 'REC_BEAT', 'REC_BUF', 'AES_BLOCKS', 'GH_L', 'GH_MULS', 'PXY_K_REC_SLOT', 'PXY_K_REC_MAX_BATCH',
              'PXY_K_RSA_MAX_BATCH'):
        try:
            g[k] = ev(k)
        except (KeyError, SyntaxError, NameError, TypeError) as e:
            raise ModelError(f'geometry: cannot evaluate {k} ({e})')
    return g


PRAGMA = re.compile(r'#\s*pragma\s+HLS\s+(\w+)(.*)$', re.I)


def parse_loops():
    """{label: {file, line, func, ii, latency, unroll, factor, off, dataflow, tripcount, trip}} from the
    preprocessed sources (kernel.h's helpers come with every file that includes it)."""
    loops = {}
    for src in SOURCES:
        text = preprocess(src)
        cur_file, lineno = src, 0
        depth, func, head = 0, None, ''
        lines = text.split('\n')
        i = 0
        pending = None  # (label, file, line) waiting for its for-loop
        while i < len(lines):
            raw = lines[i]
            i += 1
            m = re.match(r'#\s*(\d+)\s+"([^"]*)"', raw)
            if m:
                lineno, cur_file = int(m.group(1)) - 1, m.group(2)
                continue
            lineno += 1
            if not os.path.abspath(cur_file).startswith(KDIR + os.sep):
                continue
            code = re.sub(r'"(\\.|[^"\\])*"', '""', raw)
            lm = re.match(r'^\s*([A-Z][A-Z0-9_]+)\s*:\s*$', code)
            if lm:
                pending = (lm.group(1), os.path.relpath(cur_file, ROOT), lineno)
                continue
            if pending and re.match(r'^\s*for\s*\(', code):
                label, f, ln = pending
                pending = None
                info = {'file': f, 'line': ln, 'func': func, 'ii': None, 'latency': None, 'unroll': False,
                        'factor': None, 'off': False, 'dataflow': False, 'tripcount': None, 'trip': False}
                j = i
                while j < len(lines) and lines[j].lstrip().startswith('#'):
                    pm = PRAGMA.match(lines[j].strip())
                    j += 1
                    if not pm:
                        continue
                    kind, args = pm.group(1).upper(), pm.group(2)
                    kv = dict((a.lower(), b) for a, b in re.findall(r'(\w+)\s*=\s*(\w+)', args))
                    if kind == 'PIPELINE':
                        if re.search(r'\boff\b', args):
                            info['off'] = True
                        else:
                            info['ii'] = int(kv.get('ii', 1))
                    elif kind == 'LATENCY':
                        info['latency'] = int(kv['max'])
                    elif kind == 'UNROLL':
                        if 'factor' in kv:
                            info['factor'] = int(kv['factor'])
                        else:
                            info['unroll'] = True
                    elif kind == 'DATAFLOW':
                        info['dataflow'] = True
                    elif kind == 'LOOP_TRIPCOUNT':
                        info['tripcount'] = {k: int(v) for k, v in kv.items()}
                # PXYK_TRIP(LABEL) expands to a pxyk_trip_enter(..., "LABEL") call within the body's first lines
                body = '\n'.join(lines[j:j + 4])
                info['trip'] = f'"{label}"' in body and 'pxyk_trip_enter' in body
                old = loops.get(label)
                if old and (old['file'], old['line']) != (info['file'], info['line']):
                    raise ModelError(f'loop label {label} used twice ({old["file"]}:{old["line"]}, {f}:{ln})')
                loops[label] = info
            # functions: the identifier before the first '(' of what precedes a '{' at depth 0
            for ch in code:
                if depth == 0:
                    head += ch
                if ch == '{':
                    if depth == 0:
                        h = re.sub(r'__attribute__\s*\(\(.*?\)\)', '', head)
                        fm = re.search(r'\b([A-Za-z_]\w*)\s*\(', h)
                        func = fm.group(1) if fm and not re.search(r'=\s*\{$', h.strip()) else None
                    depth += 1
                elif ch == '}':
                    depth -= 1
                    if depth == 0:
                        func, head = None, ''
                elif ch == ';' and depth == 0:
                    head = ''
            if depth == 0:
                head += ' '
    return loops


def lint_loops():
    """Problems with the loops' pragmas, in the synthesis form: every loop is labelled, states its trip count
    (LOOP_TRIPCOUNT) and how it is scheduled (PIPELINE II=n, PIPELINE off, UNROLL or DATAFLOW), and every loop
    that is not fully unrolled counts its iterations with PXYK_TRIP (what this model's cycles come from)."""
    problems = []
    for src in SOURCES:
        text = preprocess(src)
        cur_file, lineno, prev = src, 0, ''
        lines = text.split('\n')
        for i, raw in enumerate(lines):
            m = re.match(r'#\s*(\d+)\s+"([^"]*)"', raw)
            if m:
                lineno, cur_file = int(m.group(1)) - 1, m.group(2)
                continue
            lineno += 1
            if not os.path.abspath(cur_file).startswith(KDIR + os.sep):
                continue
            if re.match(r'^\s*for\s*\(', raw):
                where = f'{os.path.relpath(cur_file, ROOT)}:{lineno}'
                lm = re.match(r'^\s*([A-Z][A-Z0-9_]+)\s*:\s*$', prev)
                if not lm:
                    problems.append(f'{where}: loop without a label')
                    continue
                label = lm.group(1)
                kinds, j = set(), i + 1
                while j < len(lines) and lines[j].lstrip().startswith('#'):
                    pm = PRAGMA.match(lines[j].strip())
                    if pm:
                        kinds.add(pm.group(1).upper() + (' off' if re.search(r'\boff\b', pm.group(2)) else ''))
                    j += 1
                if 'LOOP_TRIPCOUNT' not in kinds:
                    problems.append(f'{where}: {label}: no LOOP_TRIPCOUNT')
                if not kinds & {'PIPELINE', 'PIPELINE off', 'UNROLL', 'DATAFLOW'}:
                    problems.append(f'{where}: {label}: no PIPELINE II=n, PIPELINE off, UNROLL or DATAFLOW')
                body = '\n'.join(lines[j:j + 4])
                counted = f'"{label}"' in body and 'pxyk_trip_enter' in body
                if not counted and not ('UNROLL' in kinds and 'PIPELINE' not in kinds):
                    problems.append(f'{where}: {label}: no PXYK_TRIP({label}) (the model counts every loop that '
                                    'is not fully unrolled)')
            if raw.strip():
                prev = raw
    return sorted(set(problems))


# ---- trip counts -----------------------------------------------------------------------------------

def load_trips(args):
    if args.trips:
        with open(args.trips, encoding='utf-8') as f:
            return json.load(f)
    if args.trips_exe:
        out = subprocess.run([args.trips_exe], capture_output=True, text=True)
        if out.returncode != 0:
            raise ModelError(f'{args.trips_exe} failed: {out.stderr.strip()}')
        return json.loads(out.stdout)
    build = args.build or os.path.join(FW, 'build', 'model')
    exe = os.path.join(build, 'firmware', 'pxy-trips')
    cache = os.path.join(build, 'trips.json')
    srcs = [os.path.join(KDIR, s) for s in os.listdir(KDIR)] + [os.path.join(FW, 'trips.c')]
    newest = max(os.path.getmtime(s) for s in srcs)
    if os.path.exists(cache) and os.path.getmtime(cache) >= newest:
        with open(cache, encoding='utf-8') as f:
            return json.load(f)
    if not os.path.exists(os.path.join(build, 'CMakeCache.txt')):
        run(['cmake', '-S', ROOT, '-B', build, '-DCMAKE_BUILD_TYPE=Release', '-DBUILD_TESTING=OFF'])
    run(['cmake', '--build', build, '--target', 'pxy-trips', '-j2'])
    out = subprocess.run([exe], capture_output=True, text=True)
    if out.returncode != 0:
        raise ModelError(f'pxy-trips failed: {out.stderr.strip()}')
    with open(cache, 'w', encoding='utf-8') as f:
        f.write(out.stdout)
    return json.loads(out.stdout)


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise ModelError(f'{" ".join(cmd)}: {(out.stderr or out.stdout).strip()[-2000:]}')


def cycles(scn, loops):
    """Cycles of one launch of a scenario, and {label: cycles} of the top contributors."""
    nodes = scn['loops']
    kids = {}
    for n in nodes:
        kids.setdefault(n['parent'], []).append(n)
    by_label = {}

    def cost(n):
        info = loops.get(n['name'])
        if info is None:
            raise ModelError(f'loop {n["name"]} counted by pxy-trips but not found in the sources')
        ks = kids.get(n['id'], [])
        if info['dataflow']:
            stages = {}
            for k in ks:
                stages[loops[k['name']]['func']] = stages.get(loops[k['name']]['func'], 0) + cost(k)
            per = {f: c / n['iters'] for f, c in stages.items()}
            slow = max(per.values()) if per else 0
            c = n['iters'] * (slow + DATAFLOW_SYNC) + n['entries'] * (sum(per.values()) - slow)
        elif info['ii'] is not None:
            if ks:
                raise ModelError(f'{n["name"]}: pipelined, but loops inside it were counted ({ks[0]["name"]})')
            it = n['iters']
            if info['factor']:
                it = n['entries'] * math.ceil(n['iters'] / n['entries'] / info['factor'])
            c = it * info['ii'] + n['entries'] * (info['latency'] or DEFAULT_DEPTH)
        elif info['unroll']:
            c = sum(cost(k) for k in ks) * n['entries'] / n['iters']
        else:
            c = n['iters'] * SEQ_ITER + sum(cost(k) for k in ks)
        by_label[n['name']] = by_label.get(n['name'], 0) + c
        return c
    total = CALL_OVERHEAD + sum(cost(n) for n in kids.get(-1, []))
    return total, by_label


# ---- resources -------------------------------------------------------------------------------------

def resources(g):
    """Per compute unit: {kernel: ({resource: n}, [(item, note)])}. Operator costs (stated):
    32x32-bit unsigned product, full 64-bit result: 4 DSP48E2 (27x18 signed = 26x17 unsigned pieces);
    low half only: 3 DSP. A bank of LUTRAM with one write and up to three reads per cycle (RAM64M): 4 LUT
    per 3 bits per 64 words. AES S-box as a 256x8 ROM in LUTs: 32 LUT. A 128x128 carry-less multiply by
    Karatsuba down to 8x8 schoolbook pieces and its reduction: 4,000 LUT. A SHA unit with SHA-1, -256
    and -512 rounds (one round per cycle), its 16-word window and HMAC control: 6,200 LUT, 3,000 FF.
    One 512-bit AXI master with burst buffers: 3,000 LUT, 4,000 FF, 4 BRAM36."""
    W, U, LG, NB, ND, TBL = g['RSA_W'], g['RSA_U'], g['RSA_LG'], g['RSA_NB'], g['RSA_ND'], g['RSA_TBL']
    cells = W + 1
    bank_words = LG * NB                      # words per (lane bank, digit bank)
    lutram = lambda bits, words: math.ceil(bits / 3) * 4 * math.ceil(words / 64)
    rsa = {
        'DSP': U * (2 * W * 4 + 3 * 3),
        # per cell: 4-term carry-save adds (~250 LUT), operand selects (~100); per array the carry and
        # store passes (16 digits: ~2,000); control, load, Garner, unpadding and the AXI masters
        'LUT': U * (cells * 350 + 2000) + 15000 + 3 * 3000
        # 9 digit arrays and c2 (2 ND) of 32 bits, s of 64 bits, banked U x W, in LUTRAM
        + U * W * (9 * lutram(32, bank_words) + lutram(32, 2 * bank_words) + lutram(64, bank_words)),
        'FF': U * cells * g['RSA_ROW_DEPTH'] * 96 + 20000 + 3 * 4000,
        # the window table: TBL entries x a bank of LG*NB words per (lane bank, digit bank), in BRAM
        'BRAM36': U * W * math.ceil(TBL * bank_words * 32 / 36864) + 2 + 3 * 4,
        'URAM': 0,
    }
    rsa_notes = [
        (f'DSP {rsa["DSP"]}', f'{U} arrays x ({2 * W} full 32x32 products x 4 + 3 low halves x 3)'),
        (f'BRAM36 {rsa["BRAM36"]}', f'window table {TBL} x {U * W} banks of {bank_words} digits; job/key/AXI buffers'),
        ('LUT', f'{U} arrays x {cells} cells, LUTRAM for {U * W} banks x 11 digit arrays'),
    ]
    AB, G = g['AES_BLOCKS'], g['REC_G']
    beats = math.ceil(g['REC_BUF'] / 64)
    rec = {
        'DSP': 0,
        # AES: encryption and decryption pipelines, AB blocks x 14 rounds x 16 S-boxes, plus the linear layers
        'LUT': AB * 14 * (16 * 32 + 128 * 3) + AB * 14 * (16 * 32 + 128 * 4) + 2000
        + g['GH_MULS'] * 4000 + 3000 + G * 6200 + 5000 + 4 * 3000,
        'FF': 2 * AB * 14 * 128 * 2 + g['GH_MULS'] * 2000 + G * 3000 + 20000 + 4 * 4000,
        # mbuf: one per record (the MAC units read theirs at once), ping-pong, 8 BRAM36 wide each
        'BRAM36': 2 * G * 8 * math.ceil(beats / 512) + 4 * 4,
        # ibuf and obuf: one memory for the group's records each (one record at a time), ping-pong
        'URAM': 2 * 2 * 8 * math.ceil(G * beats / 4096),
    }
    rec_notes = [
        ('LUT', f'AES {AB} blocks x 14 rounds (enc + dec), {g["GH_MULS"]} GHASH multipliers, {G} SHA/HMAC units'),
        (f'URAM {rec["URAM"]}', f'ibuf and obuf: {G} records of {beats} beats, 8 URAM wide, ping-pong'),
        (f'BRAM36 {rec["BRAM36"]}', f'mbuf {G} x 2 x 8, AXI buffers'),
    ]
    return {'rsa_crt_decrypt': (rsa, rsa_notes), 'tls_record_crypt': (rec, rec_notes)}


def read_cfg(path):
    """{cu: (kernel, slr or None)} from a v++ .cfg's nk= and slr= lines."""
    cus, slr = {}, {}
    for line in open(path, encoding='utf-8'):
        line = line.split('#', 1)[0].strip()
        m = re.match(r'nk=(\w+):(\d+)(?::(.*))?$', line)
        if m:
            names = m.group(3).split('.') if m.group(3) else [f'{m.group(1)}_{i + 1}' for i in range(int(m.group(2)))]
            for nm in names:
                cus[nm] = m.group(1)
        m = re.match(r'slr=(\w+):SLR(\d+)$', line)
        if m:
            slr[m.group(1)] = int(m.group(2))
    return {cu: (k, slr.get(cu)) for cu, k in cus.items()}


def read_sp(path):
    """{(cu, port): (tag, lo, hi)} from a v++ .cfg's sp= lines."""
    sp = {}
    for line in open(path, encoding='utf-8'):
        line = line.split('#', 1)[0].strip()
        m = re.match(r'sp=(\w+)\.(\w+):([A-Z]+)\[(\d+)(?::(\d+))?\]$', line)
        if m:
            lo = int(m.group(4))
            sp[(m.group(1), m.group(2))] = (m.group(3), lo, int(m.group(5)) if m.group(5) else lo)
    return sp


def slr_avail(plat):
    """[{resource: available to kernels}] per SLR."""
    out = []
    for n in range(plat['slrs']):
        st = plat['static'].get(n, {})
        out.append({r: plat['total'][r] // plat['slrs'] - st.get(r, 0) - plat['per_slr'][r] for r in RES})
    return out


def slr_usage(plat, cfg_cus, per_cu):
    """[{resource: used by kernels}] per SLR; CUs without slr= (v++ places them) are not counted."""
    use = [{r: 0 for r in RES} for _ in range(plat['slrs'])]
    for cu, (k, s) in cfg_cus.items():
        if s is not None and 0 <= s < plat['slrs']:
            for r in RES:
                use[s][r] += per_cu[k][0][r]
    return use


def slr_problems(plat, use):
    """Errors: an SLR asked for more than SLR_LIMIT of what it has for kernels."""
    errs = []
    for s, (u, a) in enumerate(zip(use, slr_avail(plat))):
        for r in RES:
            if u[r] > SLR_LIMIT * a[r]:
                errs.append(f'SLR{s}: {r} {u[r]:,} of {a[r]:,} available to kernels '
                            f'({100 * u[r] / a[r]:.0f}%, over {100 * SLR_LIMIT:.0f}%)')
    return errs


# ---- the report ------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description='proxyssl kernels: modelled cycles, throughput and resources')
    ap.add_argument('--platform', default='u250', choices=sorted(PLATFORMS))
    ap.add_argument('--cfg', help='v++ link config (default platforms/<platform>.cfg)')
    ap.add_argument('--trips', help='pxy-trips JSON (default: build and run pxy-trips under --build)')
    ap.add_argument('--trips-exe', help='run this pxy-trips for the trip counts')
    ap.add_argument('--build', help='CMake build directory for pxy-trips (default firmware/build/model)')
    ap.add_argument('--emit-timing', metavar='FILE', help='write the emulation timing table (--emu-timing)')
    ap.add_argument('--json', action='store_true', help='the figures as JSON instead of the report')
    args = ap.parse_args()
    try:
        report(args)
    except ModelError as e:
        print(f'perf_model: {e}', file=sys.stderr)
        return 1
    return 0


def report(args):
    plat = PLATFORMS[args.platform]
    f_hz = plat['freq_mhz'] * 1e6
    cfg = args.cfg or os.path.join(FW, 'platforms', f'{args.platform}.cfg')
    cus = read_cfg(cfg)
    n_rsa = sum(1 for k, _ in cus.values() if k == 'rsa_crt_decrypt')
    n_rec = sum(1 for k, _ in cus.values() if k == 'tls_record_crypt')
    g = geometry()
    loops = parse_loops()
    trips = load_trips(args)
    scn = trips['scenarios']
    res = resources(g)

    out = []
    p = out.append
    p(f'proxyssl kernels on {plat["name"]} at {plat["freq_mhz"]} MHz: MODELLED (no card, no HLS run)')
    p(f'  placement ({os.path.relpath(cfg, ROOT)}): {n_rsa} x rsa_crt_decrypt, {n_rec} x tls_record_crypt')
    p(f'  cycle rules: pipelined = iters/factor*II + entries*depth (depth = LATENCY max, else {DEFAULT_DEPTH}); '
      f'sequential = iters*{SEQ_ITER} + inner loops; dataflow = iters*slowest stage + the others once; '
      f'+{CALL_OVERHEAD} per launch')
    p('')
    p('Pragmas the figures rest on (per loop that costs cycles):')
    used = set()
    for s in scn.values():
        used.update(n['name'] for n in s['loops'])
    for lab in sorted(used, key=lambda l: (loops[l]['file'], loops[l]['line'])):
        i = loops[lab]
        kind = ('DATAFLOW' if i['dataflow'] else f'PIPELINE II={i["ii"]}' + (f' UNROLL factor={i["factor"]}' if i['factor'] else '')
                + f' depth={i["latency"] or DEFAULT_DEPTH}{"" if i["latency"] else " (assumed)"}' if i['ii'] is not None
                else 'UNROLL (parallel units)' if i['unroll'] else 'sequential')
        p(f'  {lab:<16} {i["file"]}:{i["line"]:<5} {kind}')
    p('')

    figures = {}
    p('RSA (rsa_crt_decrypt: one group of lanes in lock step per launch)')
    p(f'  lanes {g["RSA_LANES"]} ({g["RSA_GROUP"]} jobs, a p and a q lane each), {g["RSA_U"]} multiplier arrays x '
      f'{g["RSA_W"]} digits of 32 bits, row pipeline II=1 depth {g["RSA_ROW_DEPTH"]}')
    p(f'  {"key":<10}{"cycles/group":>14}{"us/group":>10}{"per CU /s":>12}{"card /s":>12}   where the cycles go')
    for bits in (2048, 3072, 4096):
        s = scn.get(f'rsa{bits}')
        if not s:
            continue
        c, by = cycles(s, loops)
        per_cu = s['units'] * f_hz / c
        card = per_cu * n_rsa
        figures[f'rsa{bits}'] = {'cycles': c, 'jobs': s['units'], 'per_cu': per_cu, 'card': card}
        mm = sum(v for k, v in by.items() if k.startswith('MM_ROWS'))
        p(f'  RSA-{bits:<6}{c:>14,.0f}{c / f_hz * 1e6:>10,.0f}{per_cu:>12,.0f}{card:>12,.0f}   '
          f'MM_ROWS {100 * mm / c:.0f}%')
    p('')

    p('Records (tls_record_crypt: groups of records through setup | load | crypt | finish)')
    p(f'  {"batch":<28}{"cycles":>11}{"B/cycle":>9}{"per CU GB/s":>13}{"card GB/s":>11}  bound')
    pcie = plat['pcie_GBps']
    for name, s in scn.items():
        if s['kernel'] != 'tls_record_crypt':
            continue
        c, by = cycles(s, loops)
        bpc = s['bytes'] / c
        per_cu = bpc * f_hz / 1e9
        n = s['units']
        rec_bytes = s['bytes'] / n
        # PCIe, per direction: in = records (+ header, nonce, tag ~ 29 B) + descriptors (256 B);
        # out = plaintext + results (80 B). Full duplex: the larger one bounds.
        wire_in = (rec_bytes + 29 + 256) / rec_bytes
        wire_out = (rec_bytes + 29 + 80) / rec_bytes
        pcie_bound = pcie / max(wire_in, wire_out)
        card = min(per_cu * n_rec, pcie_bound)
        figures[name] = {'cycles': c, 'records': n, 'bytes': s['bytes'], 'per_cu_GBps': per_cu, 'card_GBps': card,
                         'pcie_GBps': pcie_bound}
        p(f'  {name:<28}{c:>11,.0f}{bpc:>9.1f}{per_cu:>13.2f}{card:>11.2f}  '
          f'{"PCIe" if card == pcie_bound else "compute"}')
    p(f'  PCIe Gen3 x16: {pcie} GB/s per direction assumed (15.75 raw; TLP and DMA descriptor overhead)')
    p('')

    p('Memory bandwidth (per bank, at the card figures above)')
    gcm = figures.get('gcm128_open_16k')
    rsa = figures.get('rsa2048')
    sp = read_sp(cfg)
    load = {}
    if gcm and n_rec:
        # each record byte is written by the host and read by the unit (in), written by the unit and read by
        # the host (out): twice the unit's share of the card figure on each of the two ports' banks
        share = gcm['card_GBps'] / n_rec
        for (cu, port), (tag, lo, hi) in sp.items():
            if cus.get(cu, ('',))[0] == 'tls_record_crypt' and port in ('in', 'out'):
                for b in range(lo, hi + 1):
                    load[f'{tag}[{b}]'] = load.get(f'{tag}[{b}]', 0) + 2 * share / (hi - lo + 1)
    worst = max(load.values()) if load else 0
    for bank in sorted(load, key=lambda x: int(re.search(r'\d+', x).group(0))):
        p(f'  {bank:<8} {load[bank]:5.1f} GB/s of record traffic (host DMA + kernel) of ~{plat["bank_GBps"]} usable')
    p(f'  {"ok" if worst <= plat["bank_GBps"] else "OVER"}: the busiest bank carries {worst:.1f} GB/s; '
      f'a 512-bit port at {plat["freq_mhz"]} MHz moves up to {64 * plat["freq_mhz"] / 1000:.1f} GB/s')
    if rsa:
        p(f'  RSA: {rsa["card"] * (576 + 528) / 1e9:.3f} GB/s of jobs and results at {rsa["card"]:,.0f}/s: negligible')
    p('')

    p('Resources (modelled per compute unit; per-operator costs in perf_model.resources())')
    avail = slr_avail(plat)
    tot = {r: 0 for r in RES}
    p(f'  {"":<24}' + ''.join(f'{r:>10}' for r in RES))
    for k, count in (('rsa_crt_decrypt', n_rsa), ('tls_record_crypt', n_rec)):
        r_, notes = res[k]
        p(f'  {k + " (1 CU)":<24}' + ''.join(f'{r_[r]:>10,}' for r in RES))
        for r in RES:
            tot[r] += r_[r] * count
    p(f'  {"kernels, all CUs":<24}' + ''.join(f'{tot[r]:>10,}' for r in RES))
    p(f'  {"available to kernels":<24}' + ''.join(f'{sum(a[r] for a in avail):>10,}' for r in RES))
    p(f'  {"device":<24}' + ''.join(f'{plat["total"][r]:>10,}' for r in RES))
    p(f'  {"used of available":<24}' + ''.join(f'{100 * tot[r] / sum(a[r] for a in avail):>9.0f}%' for r in RES))
    use = slr_usage(plat, cus, res)
    for s, u in enumerate(use):
        names = sorted((cu for cu, (k, sl) in cus.items() if sl == s), key=lambda c: (c[0], c))
        p(f'  {"SLR" + str(s) + " used":<24}' + ''.join(f'{100 * u[r] / avail[s][r]:>9.0f}%' for r in RES)
          + f'   {", ".join(names)}')
    errs = slr_problems(plat, use)
    for w in errs:
        p(f'  OVER: {w}')
    if not errs:
        p(f'  every SLR within {100 * SLR_LIMIT:.0f}% of what its platform leaves to kernels')
    for k in res:
        for a, b in res[k][1]:
            p(f'  {k}: {a}: {b}')
    p('')

    rsa_rate = int(figures['rsa2048']['card']) if 'rsa2048' in figures else 0
    gcm_rate = figures['gcm128_open_16k']['card_GBps'] if gcm else 0.0
    if args.emit_timing:
        emit_timing(args.emit_timing, args.platform, plat, n_rsa, n_rec, figures, g)
    if args.json:
        print(json.dumps({'platform': args.platform, 'rsa_cus': n_rsa, 'rec_cus': n_rec, 'figures': figures,
                          'rsa2048_decrypts_per_s': rsa_rate, 'gcm_record_GBps': round(gcm_rate, 2)}, indent=1))
        return
    print('\n'.join(out))
    print(f'rsa2048_decrypts_per_s={rsa_rate}')
    print(f'gcm_record_GBps={gcm_rate:.2f}')


def emit_timing(path, platform, plat, n_rsa, n_rec, fig, g):
    """The emulation device's timing table (host/engine/dev_emu.c reads it): key = value lines.
    RSA: cycles per group of lanes by key size. Records: cycles = rec_fixed + rec_per_record * n
    + bytes * rec_gcm_per_byte (or rec_cbc_per_byte), fitted on the 16 KiB and 1 KiB GCM batches."""
    big, small = fig['gcm128_open_16k'], fig['gcm128_open_1k']
    per_byte = (big['cycles'] - small['cycles']) / (big['bytes'] - small['bytes'])
    per_rec = (small['cycles'] - CALL_OVERHEAD - per_byte * small['bytes']) / small['records']
    cbc = fig.get('cbc128_sha256_open_16k')
    cbc_per_byte = (cbc['cycles'] - CALL_OVERHEAD - per_rec * cbc['records']) / cbc['bytes'] if cbc else per_byte
    lines = [f'# proxyssl emulation timing, modelled by firmware/perf_model.py --platform {platform}',
             f'platform = {platform}', f'freq_mhz = {plat["freq_mhz"]}', f'rsa_cus = {n_rsa}', f'rec_cus = {n_rec}',
             f'rsa_group = {g["RSA_GROUP"]}']
    for bits in (2048, 3072, 4096):
        if f'rsa{bits}' in fig:
            lines.append(f'rsa{bits}_group_cycles = {fig[f"rsa{bits}"]["cycles"]:.0f}')
    lines += [f'rec_fixed = {CALL_OVERHEAD}', f'rec_per_record = {per_rec:.1f}',
              f'rec_gcm_per_byte = {per_byte:.5f}', f'rec_cbc_per_byte = {cbc_per_byte:.5f}',
              f'pcie_GBps = {plat["pcie_GBps"]}']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    sys.exit(main())
