#!/usr/bin/env python3
"""Builds the L2D memory on a Ray cluster: `l2d memory --shard i/n` as one Ray task per shard,
then `l2d memory --merge` on the driver. The merged file is byte-identical to a single
`l2d memory` run (the shards are disjoint, their merge restores the sample order).

usage: scripts/ray_memory.py --dataset DIR --model DIR --out FILE [--shards N]
                             [--shard-dir DIR] [--address ADDR] [--l2d BIN] [--batch B]
                             [--retries R] [--num-cpus C]

Each task runs the l2d binary on a worker and returns the shard file's bytes through Ray's
object store; the driver writes them to --shard-dir (default: FILE's directory/shards) and
merges. A shard that is already there with the same options is not computed again, and a
failed or lost task is retried (--retries): shards are idempotent, so a retry costs nothing
but its time.

Where it runs:
  --address omitted   a local Ray instance on this machine (`ray.init()`, --num-cpus workers)
  --address auto      the cluster this machine belongs to (after `ray start --address=HEAD:6379`)
  --address ray://HOST:10001   a remote cluster through Ray Client
Workers need the l2d binary and the dataset and model directories at the same paths as the
driver (a shared volume, or an image that holds them); pass --l2d for the binary's path there.
Ray is optional for l2d: `pip install ray` where this driver runs.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time


def shard_name(i, n, options):
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    return f"shard-{i:04d}-of-{n:04d}-{digest}.safetensors"


def encode_shard(l2d, dataset, model, batch, i, n):
    """One shard's bytes: runs `l2d memory --shard i/n` in a scratch directory of the worker."""
    with tempfile.TemporaryDirectory(prefix="l2d-shard-") as scratch:
        out = os.path.join(scratch, "shard.safetensors")
        started = time.time()
        run = subprocess.run(
            [l2d, "memory", "--dataset", dataset, "--model", model, "--batch", str(batch),
             "--shard", f"{i}/{n}", "--out", out],
            capture_output=True, text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(f"shard {i}/{n}: l2d memory failed ({run.returncode}): {run.stderr[-2000:]}")
        with open(out, "rb") as f:
            return f.read(), time.time() - started, os.uname().nodename


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--out", required=True, help="the merged memory file to write")
    parser.add_argument("--shards", type=int, default=4, help="how many shards (tasks)")
    parser.add_argument("--shard-dir", help="where the shard files go (default: OUT's directory/shards)")
    parser.add_argument("--address", help="Ray cluster address (default: a local instance)")
    parser.add_argument("--l2d", default=os.path.abspath("target/release/l2d"), help="the l2d binary (on the workers)")
    parser.add_argument("--batch", type=int, default=64, help="prompts per forward pass")
    parser.add_argument("--retries", type=int, default=3, help="retries of a failed or lost shard task")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local instance (default: every core)")
    args = parser.parse_args()
    if args.shards < 1:
        sys.exit(f"--shards {args.shards}: expected at least 1")
    try:
        import ray
    except ImportError:
        sys.exit("the Ray engine needs Ray where the driver runs: pip install ray")

    dataset, model, out = (os.path.abspath(p) for p in (args.dataset, args.model, args.out))
    shard_dir = os.path.abspath(args.shard_dir or os.path.join(os.path.dirname(out), "shards"))
    os.makedirs(shard_dir, exist_ok=True)
    # The options a shard depends on name its file (with the model's own files' sizes and
    # times): a rerun reuses finished shards, another model or dataset never does.
    stamp = {name: [os.stat(os.path.join(model, name)).st_size, os.stat(os.path.join(model, name)).st_mtime_ns]
             for name in ("config.json", "model.safetensors", "tokenizer.json", "l2d.json")}
    options = {"dataset": dataset, "model": model, "batch": args.batch, "shards": args.shards, "stamp": stamp}
    paths = [os.path.join(shard_dir, shard_name(i, args.shards, options)) for i in range(args.shards)]

    init = {"address": args.address} if args.address else {"num_cpus": args.num_cpus}
    ray.init(**init, logging_level="warning", log_to_driver=False)
    task = ray.remote(max_retries=args.retries, retry_exceptions=True)(encode_shard)
    started = time.time()
    pending = {}
    for i, path in enumerate(paths):
        if os.path.exists(path):
            print(f"shard {i}/{args.shards}: kept from an earlier run ({path})", flush=True)
            continue
        pending[task.remote(args.l2d, dataset, model, args.batch, i, args.shards)] = (i, path)
    done = len(paths) - len(pending)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        i, path = pending.pop(ready[0])
        data, seconds, node = ray.get(ready[0])
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        done += 1
        print(f"shard {i}/{args.shards}: {len(data) / 1e6:.2f} MB in {seconds:.1f} s on {node} "
              f"({done}/{len(paths)} done, {time.time() - started:.1f} s)", flush=True)
    ray.shutdown()
    merge = subprocess.run([args.l2d, "memory", "--merge", *paths, "--out", out])
    if merge.returncode != 0:
        sys.exit(f"l2d memory --merge failed ({merge.returncode})")
    print(f"memory on Ray: {args.shards} shards in {time.time() - started:.1f} s → {out}", flush=True)


if __name__ == "__main__":
    main()
