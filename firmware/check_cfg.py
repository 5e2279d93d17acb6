#!/usr/bin/env python3
"""Checks a v++ link configuration against the kernels it connects.

Reads the kernel names and argument counts from include/proxyssl/kernel_abi.h,
the top functions' signatures and `#pragma HLS INTERFACE` lines from the
kernel sources, and a v++ .cfg file, and fails (exit 1, one line per problem)
when the .cfg would not link or would link something else than intended:

  - nk= names a kernel that does not exist, or lists the wrong number of names;
  - sp= names an unknown compute unit, or a port that is not one of the
    kernel's m_axi arguments, or a bank the platform does not have;
  - some m_axi port of some compute unit has no sp= (v++ would pick a bank);
  - two ports of one m_axi bundle go to different banks;
  - slr= names an unknown compute unit or an SLR the platform does not have;
  - with --freq-mhz, kernel_frequency= is missing or says another frequency;
  - the compute units placed in one SLR need more than perf_model.py's
    SLR_LIMIT of what the platform leaves to kernels there (per-unit
    estimates from perf_model.resources()).

Compute units are those of nk=, or KERNEL_1 for a kernel without one (v++'s
default). The platform is --platform, else the .cfg's file name (u250.cfg).

  check_cfg.py [--platform u250|u55c] [--freq-mhz MHZ] [--abi H] [--kernels DIR] CFG...
"""
import argparse
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))

# memory banks (sp= tags) and SLRs of each supported card
PLATFORMS = {
    'u250': {'banks': {'DDR': 4}, 'slrs': 4,
             # DDR[n] is attached to SLRn: a unit elsewhere crosses SLRs
             'bank_slr': lambda tag, n: n if tag == 'DDR' else None},
    'u55c': {'banks': {'HBM': 32}, 'slrs': 3,
             'bank_slr': lambda tag, n: None},
}


class Problems:
    def __init__(self, where):
        self.where = where
        self.errors = []
        self.warnings = []

    def error(self, line, msg):
        self.errors.append(f'{self.where}:{line}: {msg}' if line else f'{self.where}: {msg}')

    def warn(self, line, msg):
        self.warnings.append(f'{self.where}:{line}: warning: {msg}' if line else f'{self.where}: warning: {msg}')


def strip_c_comments(text):
    # keep newlines so that line numbers and pragma lines survive
    text = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text)


def read_abi(path):
    """{kernel name: number of arguments} from PXY_K_<X>_NAME / PXY_K_<X>_NARGS."""
    text = open(path, encoding='utf-8').read()
    kernels = {}
    for prefix, name in re.findall(r'#define\s+PXY_K_(\w+)_NAME\s+"(\w+)"', text):
        m = re.search(r'#define\s+PXY_K_' + prefix + r'_NARGS\s+(\d+)', text)
        if not m:
            raise SystemExit(f'check_cfg: {path}: PXY_K_{prefix}_NAME without PXY_K_{prefix}_NARGS')
        kernels[name] = int(m.group(1))
    if not kernels:
        raise SystemExit(f'check_cfg: {path}: no PXY_K_*_NAME kernel names')
    return kernels


def pragma_options(text):
    """'m_axi port = keys offset = slave bundle = gmem0' -> ('m_axi', {'port': 'keys', ...})"""
    text = re.sub(r'\s*=\s*', '=', text.strip())
    mode, opts = None, {}
    for tok in text.split():
        if '=' in tok:
            k, v = tok.split('=', 1)
            opts[k.lower()] = v
        elif mode is None:
            mode = tok.lower()
    return opts.pop('mode', mode), opts


def read_kernel(name, nargs, sources):
    """The top function's arguments and its m_axi ports ({port: bundle}) from the sources."""
    for path in sources:
        text = strip_c_comments(open(path, encoding='utf-8').read())
        m = re.search(r'\bvoid\s+' + re.escape(name) + r'\s*\(([^)]*)\)\s*\{', text)
        if not m:
            continue
        params = []
        for p in m.group(1).split(','):
            ident = re.findall(r'[A-Za-z_]\w*', re.sub(r'\[.*?\]', '', p))
            if not ident:
                raise SystemExit(f'check_cfg: {path}: {name}: cannot read the argument "{p.strip()}"')
            params.append((ident[-1], '*' in p or '[' in p))
        # the body: up to the brace that closes the function
        depth, i = 0, m.end() - 1
        while i < len(text):
            depth += {'{': 1, '}': -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        body = text[m.end():i]
        maxi, errors = {}, []
        for line in body.splitlines():
            pm = re.match(r'\s*#\s*pragma\s+HLS\s+INTERFACE\b(.*)', line, re.I)
            if not pm:
                continue
            mode, opts = pragma_options(pm.group(1))
            if mode == 'm_axi':
                maxi[opts.get('port')] = opts.get('bundle', 'gmem')
        names = [p for p, _ in params]
        if len(params) != nargs:
            errors.append(f'{path}: {name} has {len(params)} arguments, kernel_abi.h says {nargs}')
        for port in maxi:
            if port not in names:
                errors.append(f'{path}: {name}: m_axi pragma for "{port}", which is not an argument')
        for p, is_ptr in params:
            if is_ptr and p not in maxi:
                errors.append(f'{path}: {name}: pointer argument "{p}" has no #pragma HLS INTERFACE m_axi')
        return {'args': names, 'maxi': maxi, 'source': path}, errors
    return None, [f'top function {name} (kernel_abi.h) is not defined in any kernel source']


BANK = re.compile(r'^([A-Z]+)\[(\d+)(?::(\d+))?\]$')


def check_bank(platform, bank):
    """None if the platform has this bank (or range), else why not."""
    m = BANK.match(bank)
    if not m:
        return f'"{bank}" is not a bank name (TAG[n] or TAG[lo:hi])'
    tag, lo = m.group(1), int(m.group(2))
    hi = int(m.group(3)) if m.group(3) is not None else lo
    have = PLATFORMS[platform]['banks']
    valid = ', '.join(f'{t}[0]..{t}[{n - 1}]' for t, n in have.items())
    if tag not in have or hi >= have[tag] or lo > hi:
        return f'{bank} is not a memory bank of {platform} (valid: {valid})'
    return None


def parse_cfg(path, pb):
    """[(section, key, value, line)]; options before any section have section ''."""
    entries, section = [], ''
    for n, raw in enumerate(open(path, encoding='utf-8'), 1):
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        m = re.match(r'^\[([\w.]+)\]$', line)
        if m:
            section = m.group(1).lower()
            continue
        if '=' not in line:
            pb.error(n, f'"{line}" is neither [section] nor key=value')
            continue
        k, v = line.split('=', 1)
        entries.append((section, k.strip(), v.strip(), n))
    return entries


def check(path, platform, kernels, freq_mhz, resources=None):
    pb = Problems(path)
    entries = parse_cfg(path, pb)
    cus = {}        # cu -> kernel
    nk_line = {}    # kernel -> line of its nk=
    sp = {}         # (cu, port) -> (bank, line)
    slr = {}        # cu -> (slr, line)
    freq = None

    for section, key, value, n in entries:
        if section == '' and key == 'kernel_frequency':
            freq = (value, n)
        if section != 'connectivity':
            continue
        if key == 'nk':
            parts = value.split(':')
            kname = parts[0]
            if kname not in kernels:
                pb.error(n, f'nk= names unknown kernel "{kname}" (kernels: {", ".join(sorted(kernels))})')
                continue
            if kname in nk_line:
                pb.error(n, f'second nk= for {kname} (first on line {nk_line[kname]})')
                continue
            nk_line[kname] = n
            if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) < 1 or len(parts) > 3:
                pb.error(n, f'nk={value}: expected {kname}:COUNT[:NAME1.NAME2...]')
                continue
            count = int(parts[1])
            names = re.split(r'[.,]', parts[2]) if len(parts) == 3 else [f'{kname}_{i + 1}' for i in range(count)]
            if len(names) != count:
                pb.error(n, f'nk= for {kname} asks for {count} compute units but names {len(names)}')
            for cu in names:
                if not re.match(r'^[A-Za-z_]\w*$', cu):
                    pb.error(n, f'nk= compute unit name "{cu}" is not an identifier')
                elif cu in cus:
                    pb.error(n, f'compute unit {cu} is declared twice')
                else:
                    cus[cu] = kname
        elif key in ('sp', 'slr'):
            pass  # checked once every nk= is known
        else:
            pb.error(n, f'[connectivity] {key}= is not checked here (the kernels have no stream ports); '
                        'only nk=, sp= and slr= are expected')

    for kname in kernels:
        if kname not in nk_line:
            cus[f'{kname}_1'] = kname  # v++ instantiates one unit of a kernel without nk=

    known = ', '.join(sorted(cus))
    for section, key, value, n in entries:
        if section != 'connectivity':
            continue
        if key == 'sp':
            m = re.match(r'^([^.:\s]+)\.([^:\s]+):(\S+)$', value)
            if not m:
                pb.error(n, f'sp={value}: expected CU.PORT:BANK')
                continue
            cu, port, bank = m.groups()
            if cu not in cus:
                pb.error(n, f'sp= names unknown compute unit "{cu}" (known: {known})')
                continue
            k = kernels[cus[cu]]
            if port not in k['maxi']:
                what = 'a scalar (s_axilite) argument' if port in k['args'] else 'not an argument'
                pb.error(n, f'sp= names port "{port}" of {cu}, which is {what} of {cus[cu]}; '
                            f'its m_axi ports are {", ".join(k["maxi"])}')
                continue
            why = check_bank(platform, bank)
            if why:
                pb.error(n, f'sp={value}: {why}')
                continue
            if (cu, port) in sp:
                pb.error(n, f'second sp= for {cu}.{port} (first on line {sp[(cu, port)][1]})')
                continue
            sp[(cu, port)] = (bank, n)
        elif key == 'slr':
            m = re.match(r'^([^:\s]+):SLR(\d+)$', value)
            if not m:
                pb.error(n, f'slr={value}: expected CU:SLRn')
                continue
            cu, s = m.group(1), int(m.group(2))
            if cu not in cus:
                pb.error(n, f'slr= names unknown compute unit "{cu}" (known: {known})')
                continue
            if s >= PLATFORMS[platform]['slrs']:
                pb.error(n, f'slr={value}: {platform} has SLR0..SLR{PLATFORMS[platform]["slrs"] - 1}')
                continue
            if cu in slr:
                pb.error(n, f'second slr= for {cu} (first on line {slr[cu][1]})')
                continue
            slr[cu] = (s, n)

    nports = 0
    for cu, kname in sorted(cus.items()):
        bundles = {}
        for port, bundle in kernels[kname]['maxi'].items():
            nports += 1
            if (cu, port) not in sp:
                pb.error(0, f'missing sp= for {cu}.{port}: every m_axi port of every compute unit needs '
                            'a memory bank')
                continue
            bank, n = sp[(cu, port)]
            if bundle in bundles and bundles[bundle][1] != bank:
                pb.error(n, f'{cu}.{port} and {cu}.{bundles[bundle][0]} share the m_axi bundle {bundle} '
                            f'but go to {bank} and {bundles[bundle][1]}')
            bundles.setdefault(bundle, (port, bank))
            m = BANK.match(bank)
            near = PLATFORMS[platform]['bank_slr'](m.group(1), int(m.group(2)))
            if cu in slr and near is not None and near != slr[cu][0]:
                pb.warn(n, f'{cu} is in SLR{slr[cu][0]} but {port} goes to {bank}, attached to SLR{near}')

    # resources: each SLR's compute units (perf_model.py's per-unit estimates) against what the platform
    # leaves to kernels there
    if resources is not None and platform in resources['platforms']:
        pm, per_cu = resources['module'], resources['per_cu']
        plat = pm.PLATFORMS[platform]
        placed = {cu: (kname, slr[cu][0] if cu in slr else None) for cu, kname in cus.items()}
        for e in pm.slr_problems(plat, pm.slr_usage(plat, placed, per_cu)):
            pb.error(0, f'{e} (perf_model.py\'s estimate: move a compute unit to another SLR)')

    if freq_mhz is not None:
        freq_mhz = f'{freq_mhz:g}'
        if freq is None:
            pb.error(0, f'no kernel_frequency= (expected kernel_frequency=0:{freq_mhz}, before any section)')
        else:
            m = re.match(r'^(?:0:)?(\d+(?:\.\d+)?)$', freq[0])
            if not m or float(m.group(1)) != float(freq_mhz):
                pb.error(freq[1], f'kernel_frequency={freq[0]}, but the kernels are compiled for '
                                  f'{freq_mhz} MHz (expected kernel_frequency=0:{freq_mhz})')

    for w in pb.warnings:
        print('check_cfg:', w)
    for e in pb.errors:
        print('check_cfg:', e)
    if pb.errors:
        print(f'check_cfg: {pb.where}: {len(pb.errors)} problem(s)')
        return False
    counts = {}
    for kname in cus.values():
        counts[kname] = counts.get(kname, 0) + 1
    print(f'check_cfg: {pb.where}: ok for {platform}: ' +
          ', '.join(f'{k} x{c}' for k, c in sorted(counts.items())) +
          f'; {nports} m_axi ports mapped, {len(slr)} of {len(cus)} units placed')
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('cfg', nargs='+')
    ap.add_argument('--platform', choices=sorted(PLATFORMS))
    ap.add_argument('--freq-mhz', type=float)
    ap.add_argument('--abi', default=os.path.join(ROOT, 'include', 'proxyssl', 'kernel_abi.h'))
    ap.add_argument('--kernels', default=os.path.join(ROOT, 'kernels-hls'), help='directory of the kernel sources')
    a = ap.parse_args()

    sources = sorted(os.path.join(a.kernels, f) for f in os.listdir(a.kernels) if f.endswith('.c'))
    kernels, errors = {}, []
    for name, nargs in read_abi(a.abi).items():
        k, errs = read_kernel(name, nargs, sources)
        errors += errs
        if k:
            kernels[name] = k
    if errors:
        for e in errors:
            print('check_cfg:', e)
        return 1

    resources = None
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import perf_model
        resources = {'module': perf_model, 'platforms': perf_model.PLATFORMS,
                     'per_cu': perf_model.resources(perf_model.geometry())}
    except Exception as e:  # no C compiler to read the kernels' geometry: the rest is still checked
        print(f'check_cfg: warning: SLR resources not checked ({e})')

    ok = True
    for cfg in a.cfg:
        platform = a.platform or os.path.splitext(os.path.basename(cfg))[0]
        if platform not in PLATFORMS:
            print(f'check_cfg: {cfg}: which platform? name the file u250.cfg/u55c.cfg or pass --platform')
            ok = False
            continue
        ok &= check(cfg, platform, kernels, a.freq_mhz, resources)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
