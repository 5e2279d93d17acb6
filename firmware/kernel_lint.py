#!/usr/bin/env python3
"""Checks that the HLS kernels stay within what synthesizes.

Reads the LLVM IR of every kernel source (clang -S -emit-llvm -O0, no
inlining) and fails if a function calls itself directly or through others
(recursion), calls through a pointer (HLS has no function pointers), calls
anything outside the kernel sources (libc, compiler runtime), or allocates a
variable-length array; and checks that every top function declares its AXI
interfaces with #pragma HLS INTERFACE; and that every loop is labelled,
states its trip count and its schedule (PIPELINE II=n, PIPELINE off,
UNROLL, DATAFLOW) and, unless fully unrolled, counts its iterations with
PXYK_TRIP for firmware/perf_model.py.

  kernel_lint.py --tops rsa_crt_decrypt,tls_record_crypt --sources SRC.c... --ir SRC.ll...
"""
import argparse
import os
import re
import sys

DEFINE = re.compile(r'^define [^@]*@"?([\w.]+)"?\(')
CALL = re.compile(r'\b(?:call|invoke)\b[^@%]*(@"?[\w.]+"?|%[\w.]+)\(')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tops', required=True)
    ap.add_argument('--sources', nargs='+', required=True)
    ap.add_argument('--ir', nargs='+', required=True)
    a = ap.parse_args()

    graph, problems = {}, []
    for path in a.ir:
        fn = None
        for line in open(path, encoding='utf-8', errors='replace'):
            m = DEFINE.match(line)
            if m:
                fn = m.group(1)
                graph.setdefault(fn, set())
                continue
            if line.startswith('}'):
                fn = None
                continue
            if fn is None:
                continue
            if re.search(r'\balloca\b.*,\s*i\d+\s+%', line):
                problems.append(f'{path}: {fn}: variable-length array (alloca with a run-time count)')
            for m in CALL.finditer(line):
                callee = m.group(1).strip('"')
                if callee.startswith('%'):
                    problems.append(f'{path}: {fn}: indirect call through a pointer')
                    continue
                callee = callee[1:]
                # compiler intrinsics (lifetime markers, fixed-size struct copies, bit ops)
                # are lowered to logic, not calls
                if callee.startswith('llvm.'):
                    continue
                graph[fn].add(callee)

    defined = set(graph)
    for fn, callees in sorted(graph.items()):
        for c in sorted(callees):
            if c not in defined:
                problems.append(f'{fn} calls {c}, which is not part of the kernels (a library call)')

    # recursion: a cycle in the call graph
    WHITE, GREY, BLACK = 0, 1, 2
    color = {f: WHITE for f in graph}

    def visit(f, stack):
        color[f] = GREY
        stack.append(f)
        for c in sorted(graph.get(f, ())):
            if c not in color:
                continue
            if color[c] == GREY:
                cyc = stack[stack.index(c):] + [c]
                problems.append('recursion: ' + ' -> '.join(cyc))
            elif color[c] == WHITE:
                visit(c, stack)
        stack.pop()
        color[f] = BLACK

    sys.setrecursionlimit(10000)
    for f in sorted(graph):
        if color[f] == WHITE:
            visit(f, [])

    text = '\n'.join(open(s, encoding='utf-8').read() for s in a.sources)
    for top in a.tops.split(','):
        if top not in defined:
            problems.append(f'top function {top} is missing')
            continue
        body = re.search(r'\n[a-z].*\b' + re.escape(top) + r'\((?:[^)]*)\)\s*\{(.*?)\n\}', text, re.S)
        if not body or 'm_axi' not in body.group(1) or 's_axilite port = return' not in body.group(1):
            problems.append(f'top function {top}: no #pragma HLS INTERFACE m_axi / s_axilite port = return')

    # loops: labelled, scheduled, trip counts stated and counted (perf_model.py reads them)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import perf_model
    try:
        problems += perf_model.lint_loops()
    except perf_model.ModelError as e:
        problems.append(str(e))

    for p in problems:
        print('kernel-lint:', p)
    print(f'kernel-lint: {len(graph)} functions, {sum(len(v) for v in graph.values())} call edges, '
          f'{len(problems)} problem(s)')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
