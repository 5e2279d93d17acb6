#!/usr/bin/env python3
"""firmware.model: the performance model end to end.

Runs pxy-trips (the kernels' instrumented C simulation) once, then
firmware/perf_model.py on its counts for both cards, and checks:
  - the last two lines are exactly rsa2048_decrypts_per_s=N and gcm_record_GBps=N;
  - the U250 figures reach the goals the kernels are designed for
    (>= 40,000 RSA-2048 decryptions/s, >= 12 GB/s of AES-GCM records);
  - every SLR of both placements fits (no OVER line);
  - --emit-timing writes the table the emulation device reads, and the
    committed firmware/platforms/<card>.timing is that table;
  - counts that name a loop the sources do not have, or a loop inside a
    pipelined loop, are refused with a message, not modelled.

  model_test.py PXY_TRIPS_EXE
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
MODEL = os.path.join(ROOT, 'firmware', 'perf_model.py')
failures = []


def check(name, ok, detail=''):
    print(f'{"ok  " if ok else "FAIL"} {name}')
    if not ok:
        failures.append(name)
        if detail:
            print('     ' + detail.strip().replace('\n', '\n     '))


def model(*args):
    r = subprocess.run([sys.executable, MODEL, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


with tempfile.TemporaryDirectory() as d:
    trips = os.path.join(d, 'trips.json')
    r = subprocess.run([sys.argv[1]], capture_output=True, text=True)
    check('pxy-trips runs', r.returncode == 0, r.stderr)
    if r.returncode:
        sys.exit(1)
    open(trips, 'w').write(r.stdout)
    counts = json.loads(r.stdout)

    for card in ('u250', 'u55c'):
        timing = os.path.join(d, f'{card}.timing')
        rc, out, err = model('--platform', card, '--trips', trips, '--emit-timing', timing)
        lines = out.strip().splitlines()
        check(f'{card}: model runs', rc == 0, err)
        if rc:
            continue
        m1 = re.fullmatch(r'rsa2048_decrypts_per_s=(\d+)', lines[-2])
        m2 = re.fullmatch(r'gcm_record_GBps=(\d+(?:\.\d+)?)', lines[-1])
        check(f'{card}: the last two lines', bool(m1 and m2), '\n'.join(lines[-2:]))
        check(f'{card}: every SLR fits', 'OVER' not in out, out)
        if card == 'u250' and m1 and m2:
            check(f'u250: RSA-2048 >= 40000/s ({m1.group(1)})', int(m1.group(1)) >= 40000)
            check(f'u250: AES-GCM >= 12 GB/s ({m2.group(1)})', float(m2.group(1)) >= 12.0)
        committed = os.path.join(ROOT, 'firmware', 'platforms', f'{card}.timing')
        check(f'{card}: firmware/platforms/{card}.timing is what the model emits now',
              open(timing).read() == open(committed).read(),
              f'regenerate it: make -C firmware timing (or perf_model.py --platform {card} --emit-timing {committed})')
        tab = dict(l.split(' = ', 1) for l in open(timing) if ' = ' in l)
        need = {'freq_mhz', 'rsa_cus', 'rec_cus', 'rsa_group', 'rsa2048_group_cycles', 'rsa3072_group_cycles',
                'rsa4096_group_cycles', 'rec_fixed', 'rec_per_record', 'rec_gcm_per_byte', 'rec_cbc_per_byte'}
        check(f'{card}: timing table', need <= set(tab) and all(float(tab[k]) > 0 for k in need), str(tab))

    bad = json.loads(json.dumps(counts))
    bad['scenarios']['rsa2048']['loops'][0]['name'] = 'NO_SUCH_LOOP'
    open(trips, 'w').write(json.dumps(bad))
    rc, out, err = model('--trips', trips)
    check('unknown loop refused', rc == 1 and 'NO_SUCH_LOOP' in err, err + out)

    bad = json.loads(json.dumps(counts))
    loops = bad['scenarios']['rsa2048']['loops']
    rows = next(n for n in loops if n['name'] == 'MM_ROWS')
    loops.append({'id': 999, 'name': 'MM_CARRY', 'parent': rows['id'], 'entries': 1, 'iters': 1})
    open(trips, 'w').write(json.dumps(bad))
    rc, out, err = model('--trips', trips)
    check('loop inside a pipelined loop refused', rc == 1 and 'pipelined' in err, err + out)

if failures:
    print(f'model_test: {len(failures)} failure(s)')
    sys.exit(1)
print('model_test: all passed')
