"""experiments/learned.py and its logging by experiments/train.py: the summaries of the
learnt pool parameters against numpy computations from the modules' own parameters,
and metrics.jsonl / TensorBoard against the checkpointed parameters of a real run."""

import json
import os
import struct

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from configs import mnist
from experiments import checkpoints as ckpt_lib
from experiments import learned
from experiments import models
from experiments import train


def build(pool, options=None, model="seed_cnn"):
  m = models.build_model(model, pool=pool, pool_options=options or {}, rngs=nnx.Rngs(0))
  m.eval()
  return m


def set_param(param, values):
  param[...] = np.asarray(values, np.float32).reshape(param[...].shape)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def test_mixed_alpha_per_channel():
  m = build("mixed", {"granularity": "channel"})
  logits = np.linspace(-2.0, 3.0, 32)
  set_param(m.pool.alpha_logit, logits)
  got = {k: float(v) for k, v in learned.parameter_stats(m).items()}
  a = sigmoid(logits)
  assert got == pytest.approx(
    {
      "learned/pool/alpha/mean": a.mean(),
      "learned/pool/alpha/min": a.min(),
      "learned/pool/alpha/max": a.max(),
    },
    rel=1e-6,
  )


def test_tree_filter_norms():
  m = build("tree")
  rng = np.random.default_rng(0)
  leaves, gates = rng.normal(size=(2, 2, 2, 1)), rng.normal(size=(1, 2, 2, 1))
  set_param(m.pool.leaves, leaves)
  set_param(m.pool.gates, gates)
  got = {k: float(v) for k, v in learned.parameter_stats(m).items()}
  leaf_norms = [np.sqrt((leaves[i] ** 2).sum()) for i in range(2)]
  gate_norm = np.sqrt((gates**2).sum())
  assert got["learned/pool/leaf_norm/mean"] == pytest.approx(np.mean(leaf_norms), rel=1e-6)
  assert got["learned/pool/leaf_norm/min"] == pytest.approx(min(leaf_norms), rel=1e-6)
  assert got["learned/pool/leaf_norm/max"] == pytest.approx(max(leaf_norms), rel=1e-6)
  assert got["learned/pool/gate_norm/max"] == pytest.approx(gate_norm, rel=1e-6)


def test_lp_p_and_pools_without_parameters():
  m = build("lp", {"p": 3.0, "learn_p": True})
  set_param(m.pool.raw_p, 0.7)
  got = {k: float(v) for k, v in learned.parameter_stats(m).items()}
  p = 1.0 + np.log1p(np.exp(0.7))  # 1 + softplus(raw).
  assert got == pytest.approx({f"learned/pool/p/{s}": p for s in ("mean", "min", "max")})
  for pool, options in (("max", {}), ("lp", {"p": 3.0}), ("mixed", {"stochastic": True})):
    assert learned.parameter_stats(build(pool, options)) == {}
    assert learned.learnable_pools(build(pool, options)) == []


def test_gated_gate_output_over_images_against_numpy():
  m = build("gated")
  gate = np.array([[0.3, -1.2], [2.0, 0.5]])
  set_param(m.pool.gate, gate)
  images = np.random.default_rng(1).uniform(size=(23, 28, 28, 1)).astype(np.float32)
  got = jax.jit(lambda m, x: learned.gate_stats(m, x, batch_size=10))(m, images)
  # The features the pool sees: relu(conv(x)), (23, 26, 26, 32); 2x2 stride-2 windows.
  x = np.maximum(np.asarray(m.conv(images)), 0.0).astype(np.float64)
  windows = x.reshape(23, 13, 2, 13, 2, 32)
  logits = np.einsum("naibjc,ij->nabc", windows, gate)
  g = sigmoid(logits)
  assert float(got["learned/pool/gate/mean"]) == pytest.approx(g.mean(), rel=1e-5)
  assert float(got["learned/pool/gate/min"]) == pytest.approx(g.min(), rel=1e-5)
  assert float(got["learned/pool/gate/max"]) == pytest.approx(g.max(), rel=1e-5)


def test_three_gated_layers_are_named_by_path():
  m = build("gated", model="zeiler_fergus")
  images = np.zeros((4, 28, 28, 1), np.float32)
  got = learned.gate_stats(m, images, batch_size=4)
  assert sorted({k.rsplit("/", 2)[0] for k in got}) == [
    "learned/pools.0",
    "learned/pools.1",
    "learned/pools.2",
  ]


TINY = "mock,data.mock_num_examples=96,batch_size=32,eval_batch_size=32,num_epochs=2,quiet=true"


def test_training_logs_the_checkpointed_parameters(tmp_path):
  """metrics.jsonl's learned values of the last epoch are those of the state that
  the checkpoint of that epoch holds; TensorBoard has the same scalars."""
  config = mnist.get_config(TINY + ",pool=mixed")
  config.pool_options.granularity = "channel"
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert len(records) == 2
  trainer = train.Trainer(config, Mesh(np.asarray(jax.devices()), ("data",)), 96, 96)
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"), 2)
  epoch, stored, _ = checkpoints.restore_latest(train._to_storable(trainer.create_state()))
  checkpoints.close()
  assert epoch == 2
  logits = np.asarray(stored["params"]["pool"]["alpha_logit"])
  alpha = sigmoid(logits)
  assert alpha.shape == (32,) and alpha.std() > 0  # It trained per channel.
  last = records[-1]
  assert last["learned/pool/alpha/mean"] == pytest.approx(alpha.mean(), rel=1e-6)
  assert last["learned/pool/alpha/min"] == pytest.approx(alpha.min(), rel=1e-6)
  assert last["learned/pool/alpha/max"] == pytest.approx(alpha.max(), rel=1e-6)
  assert records[0]["learned/pool/alpha/mean"] != last["learned/pool/alpha/mean"]

  events = tensorboard_scalars(os.path.join(workdir, "tensorboard"), "learned/pool/alpha/mean")
  assert [step for step, _ in events] == [1, 2]
  assert events[-1][1] == pytest.approx(last["learned/pool/alpha/mean"], rel=1e-6)


def tensorboard_scalars(logdir, tag):
  """[(step, value)] of `tag` in the event files of `logdir` (TFRecord framing:
  length u64, its crc u32, the Event proto, its crc u32)."""
  from tensorboardX.proto import event_pb2

  out = []
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        if value.tag == tag:
          out.append((event.step, value.simple_value))
  return out


def test_training_without_learnable_pools_logs_no_learned_keys(tmp_path):
  train.train_and_evaluate(mnist.get_config(TINY + ",num_epochs=1"), str(tmp_path))
  with open(os.path.join(str(tmp_path), "metrics.jsonl")) as f:
    record = json.loads(f.readline())
  assert not [k for k in record if k.startswith("learned/")]
