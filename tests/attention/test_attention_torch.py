"""Parity of the attention encoder-decoder with a PyTorch re-implementation written here
(same weights, float64): the teacher-forced loss and every gradient within 1e-10, for
additive and general attention, LSTM and GRU, uni- and bidirectional, 1 and 2 layers,
padded sources and targets.

The torch side is written from the equations (rnnkit.layers.attention and
rnnkit.layers.attention_decoder), not from rnnkit's code: nn.LSTM/GRU with packed sequences
for the encoder, per-layer bridge, a cell stack stepped by hand with input feeding."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnkit.gradcheck import rel_error  # noqa: E402
from rnnkit.layers.attention import Attention  # noqa: E402
from rnnkit.layers.attention_decoder import AttentionDecoder  # noqa: E402
from rnnkit.layers.basic import Embedding, Linear, softmax_cross_entropy  # noqa: E402
from rnnkit.layers.recurrent import RecurrentLayer  # noqa: E402

TOL = 1e-10


def torch_loss(w, cell, L, bidirectional, kind, src, src_len, tin, tout, tlen):
    """Loss of the attention seq2seq in torch from numpy weights ``w`` (rnnkit's names);
    returns ``(loss, {name: grad})``."""
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    K = 2 if bidirectional else 1
    H = P["decoder.weight_hh_l0"].shape[1]
    N, S = src.shape
    M = tin.shape[1]
    rnn_cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    enc = rnn_cls(P["src_embed.weight"].shape[1], H, num_layers=L, bidirectional=bidirectional,
                  batch_first=True, dtype=torch.float64)
    # Borrow the module's function with our leaf tensors as its parameters.
    names = [n for n, _ in enc.named_parameters()]
    for n in names:
        delattr(enc, n)
        setattr(enc, n, P[f"encoder.{n}"])
    enc._flat_weights = [getattr(enc, n) for n in enc._flat_weights_names]
    x = P["src_embed.weight"][torch.tensor(src)]
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(src_len), batch_first=True,
                                                     enforce_sorted=False)
    pout, st = enc(packed)
    mem, _ = torch.nn.utils.rnn.pad_packed_sequence(pout, batch_first=True, total_length=S)
    hn, cn = st if cell == "lstm" else (st, None)
    if bidirectional:
        def bridge(s, name, act):
            cat = s.view(L, K, N, H).permute(0, 2, 1, 3).reshape(L, N, K * H)
            z = cat @ P[f"{name}.weight"].T + P[f"{name}.bias"]
            return torch.tanh(z) if act else z
        hn = bridge(hn, "bridge_h", True)
        if cell == "lstm":
            cn = bridge(cn, "bridge_c", False)
    hs = [hn[i] for i in range(L)]
    cs = [cn[i] for i in range(L)] if cell == "lstm" else None
    valid = torch.arange(S)[None, :] < torch.tensor(src_len)[:, None]
    if kind == "additive":
        keys = mem @ P["attention.key_weight"].T
    else:
        keys = mem @ P["attention.weight"].T
    y = P["tgt_embed.weight"][torch.tensor(tin)]
    ht = torch.zeros(N, H, dtype=torch.float64)
    outs = []
    for t in range(M):
        inp = torch.cat([y[:, t], ht], dim=1)
        for layer in range(L):
            s = f"l{layer}"
            gi = inp @ P[f"decoder.weight_ih_{s}"].T + P[f"decoder.bias_ih_{s}"]
            gh = hs[layer] @ P[f"decoder.weight_hh_{s}"].T + P[f"decoder.bias_hh_{s}"]
            if cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                c = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                cs[layer] = c
            else:
                ir, iz, i_n = gi.chunk(3, dim=1)
                hr, hz, hn_ = gh.chunk(3, dim=1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(i_n + r * hn_)
                h = (1 - z) * n + z * hs[layer]
            hs[layer] = h
            inp = h
        q = hs[-1]
        if kind == "additive":
            e = torch.tanh(keys + (q @ P["attention.query_weight"].T)[:, None, :]) \
                @ P["attention.v"]
        else:
            e = (keys @ q[:, :, None])[:, :, 0]
        alpha = torch.softmax(e.masked_fill(~valid, float("-inf")), dim=1)
        ctx = (alpha[:, None, :] @ mem)[:, 0]
        ht = torch.tanh(torch.cat([ctx, q], dim=1) @ P["attn_combine.weight"].T
                        + P["attn_combine.bias"])
        outs.append(ht @ P["out.weight"].T + P["out.bias"])
    logits = torch.stack(outs, dim=1)
    tmask = torch.arange(M)[None, :] < torch.tensor(tlen)[:, None]
    nll = torch.nn.functional.cross_entropy(logits.reshape(N * M, -1),
                                            torch.tensor(tout).reshape(-1), reduction="none")
    loss = (nll * tmask.reshape(-1)).sum() / tmask.sum()
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in P.items()}


class Composed:
    """rnnkit's blocks chained by hand: embedding -> encoder -> bridge -> attention decoder
    -> output, and back (the path Seq2Seq's attention models take)."""

    def __init__(self, cell, L, bidirectional, kind, V_src=7, V_tgt=9, E=4, H=5, seed=0):
        rng = np.random.default_rng(seed)
        dt = np.float64
        self.cell, self.L, self.bi = cell, L, bidirectional
        K = 2 if bidirectional else 1
        self.blocks = {
            "src_embed": Embedding(V_src, E, dtype=dt, seed=rng),
            "encoder": RecurrentLayer(E, H, L, mode=cell, bidirectional=bidirectional, dtype=dt,
                                      seed=rng, forget_bias=1.0 if cell == "lstm" else 0.0),
            "tgt_embed": Embedding(V_tgt, E, dtype=dt, seed=rng),
            "decoder": RecurrentLayer(E + H, H, L, mode=cell, dtype=dt, seed=rng),
            "attention": Attention(kind, H, K * H, H, dtype=dt, seed=rng),
            "attn_combine": Linear(K * H + H, H, dtype=dt, seed=rng),
            "out": Linear(H, V_tgt, dtype=dt, seed=rng),
        }
        if bidirectional:
            self.blocks["bridge_h"] = Linear(K * H, H, dtype=dt, seed=rng)
            if cell == "lstm":
                self.blocks["bridge_c"] = Linear(K * H, H, dtype=dt, seed=rng)
        b = self.blocks
        self.dec = AttentionDecoder(b["decoder"], b["attention"], b["attn_combine"])

    @property
    def params(self):
        return {f"{n}.{k}": v for n, blk in self.blocks.items() for k, v in blk.params.items()}

    def loss_and_grads(self, src, src_len, tin, tout, tlen):
        b, L, H = self.blocks, self.L, self.dec.H
        K = 2 if self.bi else 1
        N = src.shape[0]
        x, ec = b["src_embed"].forward(src)
        mem, st, rc = b["encoder"].forward(x, src_len)
        states = list(st) if self.cell == "lstm" else [st]
        bc = []
        if self.bi:
            for i, s in enumerate(states):
                cat = s.reshape(L, K, N, H).transpose(0, 2, 1, 3).reshape(L, N, K * H)
                lin = b["bridge_h" if i == 0 else "bridge_c"]
                z, c = lin.forward(cat)
                z = np.tanh(z) if i == 0 else z
                bc.append((c, z))
                states[i] = z
        state = tuple(states) if self.cell == "lstm" else states[0]
        prep = b["attention"].prepare(mem, src_len)
        y, tc = b["tgt_embed"].forward(tin)
        (ht, _), dc = self.dec.forward(y, prep, state)
        logits, oc = b["out"].forward(ht)
        mask = (np.arange(tin.shape[1])[None, :] < tlen[:, None]).astype(np.float64)
        loss, dlogits = softmax_cross_entropy(logits, tout, mask)
        g = {}
        dht, g["out"] = b["out"].backward(dlogits, oc)
        dy, acc, dstate, g["decoder"], g["attn_combine"] = self.dec.backward(dht, dc)
        dmem, g["attention"] = b["attention"].prepare_backward(acc, prep)
        _, g["tgt_embed"] = b["tgt_embed"].backward(dy, tc)
        ds = list(dstate) if self.cell == "lstm" else [dstate]
        if self.bi:
            for i, (c, z) in enumerate(bc):
                name = "bridge_h" if i == 0 else "bridge_c"
                d = ds[i] * (1.0 - z * z) if i == 0 else ds[i]
                dcat, g[name] = b[name].backward(d, c)
                ds[i] = np.ascontiguousarray(
                    dcat.reshape(L, N, K, H).transpose(0, 2, 1, 3).reshape(L * K, N, H))
        dx, _, g["encoder"] = b["encoder"].backward(dmem, rc,
                                                    tuple(ds) if self.cell == "lstm" else ds[0])
        _, g["src_embed"] = b["src_embed"].backward(dx, ec)
        return loss, {f"{n}.{k}": v for n, gg in g.items() for k, v in gg.items()}


def batch(rng, V_src=7, V_tgt=9):
    src_len = np.array([6, 2, 4, 1])
    tlen = np.array([3, 5, 1, 4])
    S, M = 6, 5
    src = np.where(np.arange(S)[None, :] < src_len[:, None], rng.integers(3, V_src, (4, S)), 0)
    tin = np.where(np.arange(M)[None, :] < tlen[:, None], rng.integers(2, V_tgt, (4, M)), 0)
    tout = np.where(np.arange(M)[None, :] < tlen[:, None], rng.integers(2, V_tgt, (4, M)), 0)
    return src, src_len, tin, tout, tlen


CASES = [("lstm", 1, True, "additive"), ("lstm", 2, True, "general"),
         ("lstm", 2, False, "additive"), ("gru", 1, False, "general"),
         ("gru", 2, True, "additive")]


@pytest.mark.parametrize("cell,L,bi,kind", CASES)
def test_attention_seq2seq_matches_torch(cell, L, bi, kind):
    model = Composed(cell, L, bi, kind)
    rng = np.random.default_rng(3)
    data = batch(rng)
    loss, grads = model.loss_and_grads(*data)
    tloss, tgrads = torch_loss(model.params, cell, L, bi, kind, *data)
    assert abs(loss - tloss) <= TOL * abs(tloss)
    assert set(grads) == set(tgrads)
    errors = {k: rel_error(grads[k], tgrads[k]) for k in grads}
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, (worst, errors[worst])
