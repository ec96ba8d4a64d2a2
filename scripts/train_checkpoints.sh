#!/usr/bin/env bash
# Rebuild every shipped checkpoint with the project's own CLI (sample: about 20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
$py -m kdapp train-teacher --teacher seed_teacher --epochs 40 --data sample --out checkpoints/
for arch in mlp_1200 lenet5_wide lenet5 mlp_800 seed_student mlp_30; do
  $py -m kdapp train-teacher --teacher "$arch" --epochs 30 --data sample --out checkpoints/
done
$py -m kdapp distill --teacher seed_teacher --student seed_student --temperature 4 --alpha 0.7 \
  --epochs 30 --lr 0.005 --batch-size 128 --no-augment --data sample --seed 0 --out checkpoints/

# Full MNIST (python -m kdapp data import DIR first; about 45 minutes on 2 cores).
# The teachers are trained with the pen augmentation (rotation, scale, slant, shift, stroke width)
# so that they read other writers' digits. The shipped drawing models are lenet5_wide → lenet5
# (teacher, KD student, baseline); seed_teacher → seed_student, the articles' pair, is trained
# with the same recipe to show that the architecture, not the recipe, is what reads other writers.
$py -m kdapp train-teacher --teacher lenet5_wide --epochs 15 --data mnist --teacher-augment pen --out checkpoints/
$py -m kdapp distill --teacher lenet5_wide --student lenet5 --temperature 4 --alpha 0.9 \
  --epochs 20 --lr 0.005 --batch-size 128 --no-augment --data mnist --consistent --seed 0 --out checkpoints/
$py -m kdapp train-teacher --teacher seed_teacher --epochs 15 --data mnist --teacher-augment pen --out checkpoints/
$py -m kdapp train-teacher --teacher mlp_1200 --epochs 30 --data mnist --out checkpoints/
$py -m kdapp distill --teacher seed_teacher --student seed_student --temperature 4 --alpha 0.9 \
  --epochs 20 --lr 0.005 --batch-size 128 --no-augment --data mnist --consistent --seed 0 --out checkpoints/
