#!/usr/bin/env python3
"""When does a reload's work end? (BENCHMARKS.md, Reloads under load: the 50 ms window.)

perimeter --workers 1 with the bench's configuration, every thread pinned to CPU 0, no load.
After 20 reloads and SETTLE seconds, N times: change the site file, send SIGHUP, and read the CPU
time of every thread of the control process and the worker (/proc/<pid>/task/*/schedstat)
every 2 ms for 500 ms. Prints the mean CPU used from the signal up to each moment.
NOSIGNAL=1 changes the file but sends no signal: what the processes use anyway.

  npm run build && bench/lab/reload-cpu.sh /tmp/rc 1   # writes the configurations
  SETTLE=15 bench/lab/reload-cpu-timeline.py /tmp/rc [N]
"""
import glob
import os
import shutil
import subprocess
import sys
import time

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
main = os.environ.get('MAIN', os.path.join(repo, 'dist', 'src', 'cli', 'main.js'))
signal = os.environ.get('NOSIGNAL') != '1'
site = f'{out}/p/sites/bench.yaml'
gens = sorted(glob.glob(f'{out}/gen/*.yaml'), key=lambda f: int(os.path.basename(f).split('.')[0]))
if len(gens) < 2:
    sys.exit(f'{out}/gen has no configurations: run bench/lab/reload-cpu.sh {out} 1 first')
shutil.copy(gens[0], site)
p = subprocess.Popen(['node', main, 'run', '--workers', '1', '--no-watch', f'{out}/p'], stdout=open(f'{out}/timeline.log', 'w'), stderr=subprocess.STDOUT)
try:
    time.sleep(2.5)
    pids = [p.pid] + [int(x) for x in subprocess.run(['pgrep', '-P', str(p.pid)], capture_output=True, text=True).stdout.split()]
    for pid in pids:
        subprocess.run(['taskset', '-a', '-p', '-c', '0', str(pid)], capture_output=True)

    def snap():
        tot = {}
        for pid in pids:
            for t in glob.glob(f'/proc/{pid}/task/*/schedstat'):
                try:
                    tot[(pid, t)] = int(open(t).read().split()[0])
                except OSError:
                    pass
        return tot

    def change(g):
        shutil.copy(gens[g % len(gens)], site)
        if signal:
            p.send_signal(1)

    for g in range(1, 21):
        change(g)
        time.sleep(0.2)
    time.sleep(float(os.environ.get('SETTLE', '0')))
    edges = [0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 450]
    acc = {}
    for g in range(21, 21 + n):
        base = snap()
        t0 = time.monotonic()
        change(g)
        samples = []
        while time.monotonic() - t0 < 0.5:
            time.sleep(0.002)
            samples.append(((time.monotonic() - t0) * 1000, snap()))
        for e in edges:
            s = next((s for ms, s in samples if ms >= e), samples[-1][1])
            for who, pid in (('control', p.pid), ('worker', pids[1])):
                acc.setdefault((who, e), []).append(sum(v - base.get(k, v) for k, v in s.items() if k[0] == pid) / 1e6)
    print(f'ms after the {"signal" if signal else "file change (no signal)"}: CPU ms used since (mean of {n}), control process / worker')
    for e in edges:
        print(f'{e:4d}  {sum(acc[("control", e)]) / n:6.2f}  {sum(acc[("worker", e)]) / n:6.2f}')
finally:
    p.terminate()
    p.wait()
