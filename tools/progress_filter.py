"""Condense a verbose compiler log on stdin into a one-line progress display.

Used by ``tools/env.sh`` while mmcv builds from source: ninja prints
``[12/98] c++ ...`` per object; setuptools without ninja prints one compiler
command per source. Only the count and the current file are shown; the full
log is kept by the caller.
"""
import re
import sys
import time

_NINJA = re.compile(r'^\[(\d+)/(\d+)\]\s')
_SOURCE = re.compile(r'\s-c\s+(\S+\.(?:cpp|cu|cc))\b')


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else 'build'
    # an expected count (e.g. 77 C++ sources for a CPU build of mmcv 2.1.0)
    total = f'~{sys.argv[2]}' if len(sys.argv) > 2 and sys.argv[2] else '?'
    start = time.time()
    done = 0
    tty = sys.stderr.isatty()
    last_print = 0.0
    for line in sys.stdin:
        m = _NINJA.match(line)
        src = _SOURCE.search(line)
        if m:
            done, total = int(m.group(1)), m.group(2)
        elif src:
            done += 1
        else:
            continue
        name = src.group(1).rsplit('/', 1)[-1] if src else ''
        now = time.time()
        msg = (f'[{label}] {done}/{total} sources compiled, '
               f'{int(now - start)} s  {name}')
        if tty:
            sys.stderr.write('\r' + msg[:120].ljust(120))
        elif now - last_print > 30:  # keep CI logs short
            sys.stderr.write(msg + '\n')
            last_print = now
        sys.stderr.flush()
    sys.stderr.write(f'\n[{label}] finished after {int(time.time() - start)} s, '
                     f'{done} sources compiled\n')


if __name__ == '__main__':
    main()
