#!/usr/bin/env python3
"""Writes a prepared dataset (`l2d prepare` layout) whose train split is several splits of
another, in order (the splits are a global time split, so train then valid stays in time order).

usage: scripts/join-splits.py SRC OUT --train train,valid [--keep valid,test]

--keep copies those splits unchanged (a refit logs its valid loss on them); splits not kept
are absent from OUT and recorded as null in its dataset.json.
"""
import argparse
import json
import os
import shutil

parser = argparse.ArgumentParser()
parser.add_argument("src")
parser.add_argument("out")
parser.add_argument("--train", required=True, help="comma-separated splits, in time order")
parser.add_argument("--keep", default="", help="comma-separated splits copied as they are")
args = parser.parse_args()

os.makedirs(args.out, exist_ok=True)
shutil.copy(os.path.join(args.src, "catalog.jsonl"), args.out)
meta = json.load(open(os.path.join(args.src, "dataset.json")))
keep = [s for s in args.keep.split(",") if s]
for split in ("valid", "test"):
    if split in keep:
        shutil.copy(os.path.join(args.src, split + ".jsonl"), args.out)
    else:
        meta[split] = None
n = 0
with open(os.path.join(args.out, "train.jsonl"), "w") as f:
    for split in args.train.split(","):
        for line in open(os.path.join(args.src, split + ".jsonl")):
            f.write(line)
            n += 1
meta["train"] = n
json.dump(meta, open(os.path.join(args.out, "dataset.json"), "w"), indent=2)
