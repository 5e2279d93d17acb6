#!/usr/bin/env python3
"""firmware/check_cfg.py on broken link configurations: each one, made from
the real platforms/*.cfg by one edit, must fail with a message that names
the problem; the real files must pass.

  check_cfg_test.py [REPO_ROOT]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', '..'))
CHECK = os.path.join(ROOT, 'firmware', 'check_cfg.py')
failures = []


def run(cfg, *extra):
    r = subprocess.run([sys.executable, CHECK, *extra, cfg], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def real(card):
    return open(os.path.join(ROOT, 'firmware', 'platforms', card + '.cfg'), encoding='utf-8').read()


def expect(name, card, text, want_rc, want_msg, *extra):
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, card + '.cfg')  # the file name tells the platform
        with open(cfg, 'w', encoding='utf-8') as f:
            f.write(text)
        rc, out = run(cfg, *extra)
    ok = (rc == 0) == (want_rc == 0) and (want_msg is None or re.search(want_msg, out))
    print(f'{"ok  " if ok else "FAIL"} {name}')
    if not ok:
        failures.append(name)
        print('     exit', rc, 'output:\n     ' + out.strip().replace('\n', '\n     '))


def drop(text, pattern):
    """text without the first line matching pattern (which must exist)"""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if re.match(pattern, line):
            return ''.join(lines[:i] + lines[i + 1:])
    raise SystemExit(f'check_cfg_test: no line matches {pattern}')


def sub(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


u250, u55c = real('u250'), real('u55c')

# the real configurations pass
expect('u250.cfg passes', 'u250', u250, 0, r'ok for u250', '--freq-mhz', '300')
expect('u55c.cfg passes', 'u55c', u55c, 0, r'ok for u55c', '--freq-mhz', '300')

# a port without a bank
expect('missing sp= (u250)', 'u250', drop(u250, r'sp=rsa_crt_decrypt_3\.jobs:'), 1,
       r'missing sp= for rsa_crt_decrypt_3\.jobs')
expect('missing sp= (u55c)', 'u55c', drop(u55c, r'sp=tls_record_crypt_1\.out:'), 1,
       r'missing sp= for tls_record_crypt_1\.out')
# one more compute unit than sp= lines cover
expect('nk= adds a unit without banks', 'u250',
       sub(u250, 'nk=tls_record_crypt:2:tls_record_crypt_1.tls_record_crypt_2',
           'nk=tls_record_crypt:3:tls_record_crypt_1.tls_record_crypt_2.tls_record_crypt_3'), 1,
       r'missing sp= for tls_record_crypt_3\.descs')
# a kernel left without nk= gets v++'s single default unit, KERNEL_1, which the sp= lines must cover
expect('kernel without nk= has one default unit', 'u250',
       drop(u250, r'nk=tls_record_crypt:'), 1,
       r'unknown compute unit "tls_record_crypt_2"')

# names that do not exist
expect('nk= unknown kernel', 'u250', sub(u250, 'nk=tls_record_crypt:2:', 'nk=tls_record_decrypt:2:'), 1,
       r'unknown kernel "tls_record_decrypt"')
expect('nk= count and names disagree', 'u250', sub(u250, 'nk=tls_record_crypt:2:', 'nk=tls_record_crypt:3:'), 1,
       r'asks for 3 compute units but names 2')
expect('sp= unknown compute unit', 'u250', u250 + 'sp=rsa_crt_decrypt_9.keys:DDR[0]\n', 1,
       r'unknown compute unit "rsa_crt_decrypt_9"')
expect('sp= unknown port', 'u250', sub(u250, 'sp=rsa_crt_decrypt_1.keys:', 'sp=rsa_crt_decrypt_1.key:'), 1,
       r'port "key" of rsa_crt_decrypt_1, which is not an argument')
expect('sp= on a scalar argument', 'u250', u250 + 'sp=rsa_crt_decrypt_1.n_jobs:DDR[0]\n', 1,
       r'scalar \(s_axilite\)')
expect('sp= twice for one port', 'u250', u250 + 'sp=rsa_crt_decrypt_1.keys:DDR[1]\n', 1,
       r'second sp= for rsa_crt_decrypt_1\.keys')
expect('slr= unknown compute unit', 'u55c', u55c + 'slr=tls_record_crypt_9:SLR0\n', 1,
       r'slr= names unknown compute unit "tls_record_crypt_9"')

# banks and SLRs the platform does not have
expect('u250 has no HBM', 'u250', sub(u250, 'sp=rsa_crt_decrypt_1.keys:DDR[0]', 'sp=rsa_crt_decrypt_1.keys:HBM[0]'),
       1, r'HBM\[0\] is not a memory bank of u250')
expect('u250 has DDR[0..3]', 'u250', sub(u250, 'sp=rsa_crt_decrypt_1.keys:DDR[0]', 'sp=rsa_crt_decrypt_1.keys:DDR[4]'),
       1, r'DDR\[4\] is not a memory bank of u250')
expect('u55c has no DDR', 'u55c', sub(u55c, 'sp=rsa_crt_decrypt_1.keys:HBM[10]', 'sp=rsa_crt_decrypt_1.keys:DDR[0]'),
       1, r'DDR\[0\] is not a memory bank of u55c')
expect('u55c has HBM[0..31]', 'u55c',
       sub(u55c, 'sp=rsa_crt_decrypt_1.keys:HBM[10]', 'sp=rsa_crt_decrypt_1.keys:HBM[32]'),
       1, r'HBM\[32\] is not a memory bank of u55c')
expect('u55c HBM range', 'u55c', sub(u55c, 'sp=rsa_crt_decrypt_1.keys:HBM[10]', 'sp=rsa_crt_decrypt_1.keys:HBM[0:3]'),
       0, None)
expect('u55c has SLR0..SLR2', 'u55c', sub(u55c, 'slr=rsa_crt_decrypt_4:SLR2', 'slr=rsa_crt_decrypt_4:SLR3'), 1,
       r'u55c has SLR0\.\.SLR2')

# resources: four RSA units in the SLR that holds the static region do not fit (perf_model.py's estimates)
expect('SLR over its resources', 'u250',
       sub(sub(u250, 'slr=rsa_crt_decrypt_5:SLR3', 'slr=rsa_crt_decrypt_5:SLR1'),
           'slr=rsa_crt_decrypt_6:SLR3', 'slr=rsa_crt_decrypt_6:SLR1'), 1,
       r'SLR1: LUT [\d,]+ of [\d,]+ available to kernels \(\d+%, over 90%\)')

# the clock must be the one the kernels are compiled for
expect('kernel_frequency disagrees', 'u250', u250, 1, r'compiled for 250 MHz', '--freq-mhz', '250')
expect('kernel_frequency missing', 'u250', sub(u250, 'kernel_frequency=0:300', ''), 1, r'no kernel_frequency=',
       '--freq-mhz', '300')

# the ports come from the kernel sources: a pointer argument without m_axi pragma is reported
with tempfile.TemporaryDirectory() as d:
    kdir = os.path.join(d, 'kernels')
    shutil.copytree(os.path.join(ROOT, 'kernels-hls'), kdir)
    src = os.path.join(kdir, 'rsa_crt_decrypt.c')
    text = open(src, encoding='utf-8').read()
    text = re.sub(r'#pragma HLS INTERFACE m_axi port = results[^\n]*\n', '', text, count=1)
    open(src, 'w', encoding='utf-8').write(text)
    rc, out = run(os.path.join(ROOT, 'firmware', 'platforms', 'u250.cfg'), '--kernels', kdir)
    ok = rc != 0 and re.search(r'pointer argument "results" has no #pragma HLS INTERFACE m_axi', out)
    print(f'{"ok  " if ok else "FAIL"} kernel source without an m_axi pragma')
    if not ok:
        failures.append('m_axi pragma')
        print('     exit', rc, 'output:\n     ' + out.strip().replace('\n', '\n     '))

if failures:
    print(f'check_cfg_test: {len(failures)} failure(s): {", ".join(failures)}')
    sys.exit(1)
print('check_cfg_test: all passed')
