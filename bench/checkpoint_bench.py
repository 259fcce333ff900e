"""Checkpoint overhead: `clipscale train` with saves every N steps against the
same run without saves, in this run, on this machine.

    python3 bench/checkpoint_bench.py --clipscale build/bin/clipscale --data demo_data
        [--config configs/demo.yaml] [--model tiny] [--steps 120] [--every 40] [--ranks 2] [--repeats 2]

Runs of the same recipe, --steps steps each (max_steps; same batches, same
schedule): no checkpoints and checkpoint.every_steps=N asynchronous (the
default: the loop copies the state, a thread writes it), alternating,
--repeats times each (medians compared); then once synchronous
(checkpoint.async=false), for comparison. Each run's training-loop
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
import statistics
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
    if args.model:
        cmd += ['--set', f'model={args.model}']
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
    p.add_argument('--model', help="model name (default: the recipe's)")
    p.add_argument('--steps', type=int, default=120)
    p.add_argument('--every', type=int, default=40)
    p.add_argument('--ranks', type=int, default=2)
    p.add_argument('--interval-minutes', type=float, default=3.0)
    p.add_argument('--repeats', type=int, default=2)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix='checkpoint_bench_')
    every = f'checkpoint.every_steps={args.every}'
    rates = {'none': [], 'async': [], 'sync': []}
    metrics = {'async': None, 'sync': None}
    try:
        # Alternating, so that drift on a shared machine hits both sides alike.
        for r in range(args.repeats):
            rates['none'].append(run(args, os.path.join(tmp, f'none{r}'), [])[0])
            rate, metrics['async'] = run(args, os.path.join(tmp, f'async{r}'), [every])
            rates['async'].append(rate)
        rate, metrics['sync'] = run(args, os.path.join(tmp, 'sync'),
                                    [every, 'checkpoint.async=false'])
        rates['sync'].append(rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(rates['none'])
    print(f'{args.steps} steps, save every {args.every} steps, {args.ranks} rank(s), '
          f'{args.repeats} repeat(s) (medians)')
    print(f'  no saves      {base:8.1f} samples/s  (runs: {", ".join(f"{x:.1f}" for x in rates["none"])})')
    for name in ('async', 'sync'):
        rate = statistics.median(rates[name])
        m = metrics[name]
        blocking, writes = m['checkpoint/blocking_s'], m['checkpoint/write_s']
        mean_block = sum(blocking) / max(1, len(blocking))
        implied = mean_block / (args.interval_minutes * 60)
        print(f'  {name + " saves":12s}  {rate:8.1f} samples/s  (runs: {", ".join(f"{x:.1f}" for x in rates[name])}):'
              f' measured overhead {100 * (1 - rate / base):+.1f} %;'
              f' blocking {mean_block:.3f} s per save'
              f' (write {sum(writes) / max(1, len(writes)):.2f} s);'
              f' at one save per {args.interval_minutes:g} min of training: {100 * implied:.2f} %')


if __name__ == '__main__':
    main()
