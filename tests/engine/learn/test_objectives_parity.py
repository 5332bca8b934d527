"""Tent, EATA, COME and the SyTTA-style objective against references written here in torch, on a tiny random Llama
(transformers) with a PEFT LoRA (r 8 on q/v; B drawn non-zero so that every LoRA tensor gets a
gradient), through tests/engine/learn/objective_probe:
  - per-sample mean token entropy over the scored positions (every prompt position; or the
    positions [from, to) that produced appended "generated" tokens), weights, selections;
  - the loss sum_i w_i m_i E_i / max(1, sum_i m_i) and its gradient w.r.t. every LoRA tensor;
  - EATA over two batches: the entropy filter E < E0 (E0 = entropy_margin * ln V) on the first,
    the moving average set from its kept samples' mean distributions, then on the second both
    filters (cosine to the average < redundancy_margin) and the weights exp(E0 - E). The margins
    are placed between the samples' values here, so that each filter keeps some samples and
    drops others.
  - COME (on Tent and on EATA): the entropy of the opinion as COME's official code writes it
    (norm-fixed logits, belief e^z / (sum e^z + K), uncertainty K / (sum e^z + K), + 1e-7);
  - SyTTA-style: prompt NLL + lambda * entropy + beta * KL(p || p_base) over the generated
    positions, the base being the PEFT model with its adapter disabled.
Tolerances (fp32): values, weights and the loss 1e-5 relative (the reverse KL, ~0.05, 1e-5
relative + 1e-7 absolute); gradients 1e-5 of the largest
gradient entry, absolute; the cosines and the moving average 1e-6 absolute.
"""
import copy
import json
import math
import unittest

import numpy as np
import peft
import torch

import tlm_testing
from tiny_llama import PROMPTS, chat_ids, make_tiny_llama
from tlm_testing import assert_close, binary, run, tmpdir


def reference_entropy(model, batch, bounds=None):
    """Per-sample mean token entropy E [B] and mean distribution q [B, V] over scored positions."""
    T = max(map(len, batch))
    ids = torch.tensor([s + [0] * (T - len(s)) for s in batch])
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in batch]).bool()
    logits = model(input_ids=ids, attention_mask=mask.long()).logits.float()
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    ent = -(p * logp).sum(-1)  # [B, T]
    counted = mask.clone()
    if bounds is not None:
        t = torch.arange(T).unsqueeze(0)
        lo = torch.tensor(bounds[0]).unsqueeze(1)
        hi = torch.tensor(bounds[1]).unsqueeze(1)
        counted &= (t >= lo) & (t < hi)
    n = counted.sum(1).clamp(min=1)
    E = (ent * counted).sum(1) / n
    q = (p * counted.unsqueeze(-1)).sum(1) / n.unsqueeze(1)
    return E, q


def logits_and_mask(model, batch):
    T = max(map(len, batch))
    ids = torch.tensor([s + [0] * (T - len(s)) for s in batch])
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in batch]).bool()
    return model(input_ids=ids, attention_mask=mask.long()).logits.float(), ids, mask


def opinion_entropy(x, K, eps=1e-7):
    """COME's entropy of opinion (BlueWhaleLab/COME), over the last dimension."""
    norm = torch.norm(x, p=2, dim=-1, keepdim=True)
    x = x / norm * norm.detach()
    s = torch.exp(x).sum(-1, keepdim=True) + K
    probability = torch.cat([torch.exp(x) / s, K / s], dim=-1) + eps
    return -(probability * torch.log(probability)).sum(-1)


def reference_opinion_entropy(model, batch, K):
    logits, _, mask = logits_and_mask(model, batch)
    ent = opinion_entropy(logits, K)
    return (ent * mask).sum(1) / mask.sum(1)


def lora_grads(model):
    out = {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            key = name.replace("base_model.model.", "").replace(".default.weight", "")
            out[key] = p.grad.detach().numpy().copy() if p.grad is not None else np.zeros(p.shape)
    return out


class ObjectiveParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tmpdir("tlm-objectives-")
        cls.model_dir = cls.work / "model"
        base, cls.tok = make_tiny_llama(cls.model_dir, seed=3)
        torch.manual_seed(2)
        model = peft.get_peft_model(base, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                          lora_dropout=0.0))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.1 * torch.randn_like(p))
        cls.adapter = cls.work / "adapter"
        model.save_pretrained(cls.adapter)
        cls.peft = model
        cls.vocab = base.config.vocab_size
        cls.ids = [chat_ids(cls.tok, p) for p in PROMPTS]

    def probe(self, payload):
        (self.work / "in.json").write_text(json.dumps(payload))
        run([binary("tests/engine/learn/objective_probe"), self.model_dir, self.adapter, self.work / "in.json",
             self.work / "out.json"])
        return json.loads((self.work / "out.json").read_text())

    def compare_grads(self, ours, model, what):
        ref = lora_grads(model)
        self.assertEqual(sorted(ours), sorted(ref))
        worst = max(float(np.abs(np.asarray(ref[k])).max()) for k in ref)
        print(f"[parity] {what}: largest gradient entry {worst:.3e}", flush=True)
        self.assertGreater(worst, 1e-4, f"{what}: the gradients are ~0, the test would not see a wrong one")
        for name in sorted(ref):
            assert_close(self, np.asarray(ours[name]).reshape(ref[name].shape), ref[name], atol=1e-5 * worst,
                         what=f"{what} grad {name.split('layers.')[-1]}")

    def test_tent_over_prompt_positions(self):
        batch = self.ids[:4]
        out = self.probe({"method": "tent", "batches": [batch]})
        model = copy.deepcopy(self.peft)
        E, _ = reference_entropy(model, batch)
        loss = E.mean()
        loss.backward()
        assert_close(self, out["value"], E.detach().numpy(), rtol=1e-5, what="tent per-sample entropy")
        assert_close(self, out["extra"]["entropy"], E.detach().numpy(), rtol=1e-5, what="tent recorded entropy")
        self.assertEqual(out["selected"], [1.0] * 4)
        assert_close(self, [out["loss"]], [loss.item()], rtol=1e-5, what="tent loss")
        self.compare_grads(out["grads"], model, "tent")

    def test_tent_over_generated_positions(self):
        # Each prompt followed by 5 "generated" tokens; only the 5 distributions that produced
        # them count.
        rng = np.random.default_rng(4)
        batch = [s + rng.integers(3, self.vocab, size=5).tolist() for s in self.ids[4:7]]
        lo = [len(s) - 1 for s in self.ids[4:7]]
        hi = [x + 5 for x in lo]
        out = self.probe({"method": "tent", "batches": [batch], "scored_from": [lo], "scored_to": [hi]})
        model = copy.deepcopy(self.peft)
        E, _ = reference_entropy(model, batch, (lo, hi))
        E.mean().backward()
        assert_close(self, out["value"], E.detach().numpy(), rtol=1e-5, what="tent entropy over generated tokens")
        self.compare_grads(out["grads"], model, "tent (generated)")

    def test_eata_filters_weights_and_moving_average(self):
        first, second = self.ids[:5], self.ids[5:10]
        with torch.no_grad():
            E1, q1 = reference_entropy(self.peft, first)
            E2, q2 = reference_entropy(self.peft, second)
        ln_v = math.log(self.vocab)
        # E0 between the values: some of the first batch dropped, at least two of the second kept.
        values = sorted(torch.cat([E1, E2]).tolist())
        E0 = None
        for a, b in zip(values, values[1:]):
            cut = (a + b) / 2
            if 0 < int((E1 < cut).sum()) < len(first) and int((E2 < cut).sum()) >= 2:
                E0 = cut
                break
        self.assertIsNotNone(E0, f"no entropy margin splits the samples: {values}")
        m = q1[E1 < E0].mean(0)
        kept_e = E2 < E0
        cos = torch.nn.functional.cosine_similarity(q2, m.unsqueeze(0), dim=1)
        c = sorted(cos[kept_e].tolist())
        margin = (c[0] + c[1]) / 2  # the most dissimilar kept, the next one dropped
        options = {"entropy_margin": E0 / ln_v, "redundancy_margin": margin}
        print(f"[parity] eata: E0 {E0:.5f} (margin {E0 / ln_v:.5f} x ln V), entropies {np.round(values, 5).tolist()}, "
              f"cosines of the second batch {np.round(cos.tolist(), 6).tolist()}, margin {margin:.6f}", flush=True)
        out = self.probe({"method": "eata", "options": options, "batches": [first, second]})

        model = copy.deepcopy(self.peft)
        E, q = reference_entropy(model, second)
        keep = (E.detach() < E0) & (torch.nn.functional.cosine_similarity(q.detach(), m.unsqueeze(0), dim=1) < margin)
        weight = torch.exp(E0 - E.detach())
        loss = (weight * keep * E).sum() / max(1, int(keep.sum()))
        loss.backward()
        self.assertEqual([bool(x) for x in out["selected"]], keep.tolist(), "selection differs")
        self.assertIn(True, keep.tolist())
        self.assertIn(False, keep.tolist())
        assert_close(self, out["weight"], weight.numpy(), rtol=1e-5, what="eata weights exp(E0 - E)")
        assert_close(self, out["extra"]["redundancy_cos"], cos.numpy(), atol=1e-6, what="eata cosines")
        assert_close(self, [out["loss"]], [loss.item()], rtol=1e-5, what="eata loss")
        self.compare_grads(out["grads"], model, "eata")
        # The state after the first batch: the kept samples' mean distribution.
        assert_close(self, out["state"]["eata.moving_average"], m.numpy(), atol=1e-6, what="eata moving average")

    def test_come_on_tent(self):
        batch = self.ids[:4]
        out = self.probe({"method": "come", "batches": [batch]})
        model = copy.deepcopy(self.peft)
        E = reference_opinion_entropy(model, batch, float(self.vocab))
        loss = E.mean()
        loss.backward()
        print(f"[parity] come (tent): opinion entropies {np.round(E.tolist(), 5).tolist()}", flush=True)
        assert_close(self, out["value"], E.detach().numpy(), rtol=1e-5, what="come per-sample opinion entropy")
        assert_close(self, [out["loss"]], [loss.item()], rtol=1e-5, what="come loss")
        self.compare_grads(out["grads"], model, "come (tent)")

    def test_come_on_eata_with_its_uncertainty_mass(self):
        batch = self.ids[:6]
        K = 7.0
        with torch.no_grad():
            E = reference_opinion_entropy(self.peft, batch, K)
        v = sorted(E.tolist())
        E0 = (v[2] + v[3]) / 2  # the three lowest kept
        ln_v = math.log(self.vocab)
        out = self.probe({"method": "come", "options": {"come_base": "eata", "uncertainty_mass": K,
                                                         "entropy_margin": E0 / ln_v}, "batches": [batch]})
        model = copy.deepcopy(self.peft)
        E = reference_opinion_entropy(model, batch, K)
        keep = E.detach() < E0
        weight = torch.exp(E0 - E.detach())
        loss = (weight * keep * E).sum() / int(keep.sum())
        loss.backward()
        self.assertEqual([bool(x) for x in out["selected"]], keep.tolist())
        assert_close(self, out["weight"], weight.numpy(), rtol=1e-5, what="come (eata) weights")
        assert_close(self, [out["loss"]], [loss.item()], rtol=1e-5, what="come (eata) loss")
        self.compare_grads(out["grads"], model, "come (eata)")

    def test_sytta_prompt_nll_entropy_and_trust_region(self):
        rng = np.random.default_rng(6)
        prompts = self.ids[2:6]
        gen = [rng.integers(3, self.vocab, size=g).tolist() for g in (5, 3, 5, 4)]
        batch = [p + g for p, g in zip(prompts, gen)]
        lo = [len(p) - 1 for p in prompts]
        hi = [a + len(g) for a, g in zip(lo, gen)]
        lam, beta = 0.7, 0.5
        out = self.probe({"method": "sytta", "options": {"entropy_weight": lam, "kl_weight": beta},
                          "batches": [batch], "scored_from": [lo], "scored_to": [hi]})
        model = copy.deepcopy(self.peft)
        with torch.no_grad(), model.disable_adapter():
            base_logits, _, _ = logits_and_mask(model, batch)
        logits, ids, mask = logits_and_mask(model, batch)
        logp = torch.log_softmax(logits, -1)
        T = ids.shape[1]
        t = torch.arange(T).unsqueeze(0)
        lo_t, hi_t = torch.tensor(lo).unsqueeze(1), torch.tensor(hi).unsqueeze(1)
        target_ll = logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
        in_prompt = (t[:, :-1] < lo_t).float()
        nll = -(target_ll * in_prompt).sum(1) / in_prompt.sum(1)
        scored = ((t >= lo_t) & (t < hi_t) & mask).float()
        ent = -(logp.exp() * logp).sum(-1)
        kl = (logp.exp() * (logp - torch.log_softmax(base_logits, -1))).sum(-1)
        H = (ent * scored).sum(1) / scored.sum(1)
        KL = (kl * scored).sum(1) / scored.sum(1)
        value = nll + lam * H + beta * KL
        loss = value.mean()
        loss.backward()
        print(f"[parity] sytta: nll {np.round(nll.tolist(), 4).tolist()}, entropy {np.round(H.tolist(), 4).tolist()}, "
              f"reverse KL {np.round(KL.tolist(), 6).tolist()}", flush=True)
        self.assertGreater(float(KL.min()), 1e-6, "the trust region term is ~0, the test would not see a wrong one")
        assert_close(self, out["extra"]["prompt_nll"], nll.detach().numpy(), rtol=1e-5, what="sytta prompt NLL")
        assert_close(self, out["extra"]["entropy"], H.detach().numpy(), rtol=1e-5, what="sytta entropy")
        assert_close(self, out["extra"]["reverse_kl"], KL.detach().numpy(), rtol=1e-5, atol=1e-7, what="sytta reverse KL")
        assert_close(self, out["value"], value.detach().numpy(), rtol=1e-5, what="sytta per-sample value")
        assert_close(self, [out["loss"]], [loss.item()], rtol=1e-5, what="sytta loss")
        self.compare_grads(out["grads"], model, "sytta")


if __name__ == "__main__":
    tlm_testing.main()
