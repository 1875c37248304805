"""Sample text from a language model exported by `rnnkit export DIR OUT --format onnx`, with
ONNX Runtime alone (no rnnkit):   python examples/onnx_sample.py OUT/model.onnx [TOKENS]"""
import json
import sys

import numpy as np
import onnxruntime as ort

sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = sess.get_modelmeta().custom_metadata_map
vocab, sep = json.loads(meta["rnnkit.vocab"]), "" if meta["rnnkit.level"] == "char" else " "
state = {i.name: np.zeros([1 if d == "N" else d for d in i.shape], np.float32)
         for i in sess.get_inputs() if i.name in ("h0", "c0")}  # zeros: the initial state
rng, token, text = np.random.default_rng(0), 2, []  # id 2 is <eos>, the start of a line
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 200):
    feeds = {"ids": np.array([[token]]), "lengths": np.array([1]), **state}
    log_probs, *new_state = sess.run(None, feeds)  # one step: T = 1, the state carried over
    state = dict(zip(("h0", "c0"), new_state))
    p = np.exp(log_probs[0, -1].astype(np.float64))
    token = rng.choice(len(vocab), p=p / p.sum())
    text.append("\n" if token == 2 else vocab[token])
print(sep.join(text))
