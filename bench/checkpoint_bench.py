"""Checkpoint overhead: `clipscale train` with saves every N steps against the
same run without saves, in this run, on this machine.

    python3 bench/checkpoint_bench.py --clipscale build/bin/clipscale --data demo_data
        [--config configs/demo.yaml] [--steps 180] [--every 60] [--ranks 2]

Three runs of the same recipe, --steps steps each (max_steps; same batches,
same schedule): no checkpoints; checkpoint.every_steps=N asynchronous (the
default: the loop copies the state, a thread writes it); and the same
synchronous (checkpoint.async=false), for comparison. Each run's training-loop
rate is what `clipscale train` prints ("trained N steps at X samples/s"; the
final save after the loop is outside it). The time a save blocks the loop is
the trainer's own `checkpoint/blocking_s` metric (copying the state, plus any
wait for the previous save), and the write time is `checkpoint/write_s`.

Printed: each run's rate, the measured overhead (1 - rate with saves / rate
without), the mean blocking time per save, and the overhead that blocking
implies at a save every --interval-minutes (default 3) of training, the
interval the target (< 2 %) is stated for; a measured overhead of a few
percent is within the noise of a shared 2-core machine.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def run(args, output, sets):
    cmd = []
    if args.ranks > 1:
        cmd += ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', str(args.ranks)]
    cmd += [args.clipscale, 'train', '--config', args.config,
            '--set', f'data.train={args.data}/train', '--set', 'data.val=',
            '--set', f'max_steps={args.steps}', '--set', f'output={output}',
            '--set', 'eval.every_steps=0'] + [x for s in sets for x in ('--set', s)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}')
    rate = float(re.search(r'trained \d+ steps at ([0-9.]+) samples/s', proc.stdout).group(1))
    metrics = {'checkpoint/blocking_s': [], 'checkpoint/write_s': []}
    with open(os.path.join(output, 'metrics.jsonl')) as f:
        for line in f:
            row = json.loads(line)
            for key in metrics:
                if key in row and row['step'] < args.steps:  # the final save is outside the loop
                    metrics[key].append(row[key])
    return rate, metrics


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--clipscale', required=True)
    p.add_argument('--data', required=True, help='folder with train/ shards')
    p.add_argument('--config', default='configs/demo.yaml')
    p.add_argument('--steps', type=int, default=180)
    p.add_argument('--every', type=int, default=60)
    p.add_argument('--ranks', type=int, default=2)
    p.add_argument('--interval-minutes', type=float, default=3.0)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix='checkpoint_bench_')
    try:
        base, _ = run(args, os.path.join(tmp, 'none'), [])
        every = f'checkpoint.every_steps={args.every}'
        asyn, am = run(args, os.path.join(tmp, 'async'), [every])
        sync, sm = run(args, os.path.join(tmp, 'sync'), [every, 'checkpoint.async=false'])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f'{args.steps} steps, save every {args.every} steps, {args.ranks} rank(s)')
    print(f'  no saves      {base:8.1f} samples/s')
    for name, rate, m in (('async saves', asyn, am), ('sync saves', sync, sm)):
        blocking = m['checkpoint/blocking_s']
        writes = m['checkpoint/write_s']
        mean_block = sum(blocking) / max(1, len(blocking))
        implied = mean_block / (args.interval_minutes * 60)
        print(f'  {name:12s}  {rate:8.1f} samples/s: measured overhead {100 * (1 - rate / base):+.1f} %;'
              f' {len(blocking)} saves, blocking {mean_block:.3f} s each'
              f' (write {sum(writes) / max(1, len(writes)):.2f} s);'
              f' at one save per {args.interval_minutes:g} min: {100 * implied:.2f} %')


if __name__ == '__main__':
    main()
