"""The official TLM computations in plain torch, for the tests that compare tlm against PEFT:
the per-sample ce (the official cal_ce) and the TLM loss with its selection."""
import torch


def sample_ce(model, batch, device="cpu"):
    """Mean next-token NLL per sample, as the official cal_ce / cal_kl compute it."""
    T = max(map(len, batch))
    ids = torch.tensor([s + [0] * (T - len(s)) for s in batch], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in batch], device=device)
    labels = ids.masked_fill(mask == 0, -100)
    logits = model(input_ids=ids, attention_mask=mask).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    tgt = labels[:, 1:]
    valid = tgt != -100
    tok = -torch.gather(logp, 2, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
    return tok.sum(1) / valid.sum(1)


def tlm_loss(ce, sel_ce, threshold, lamb):
    """The official loss: coeff = lambda exp(sel_ce - threshold) on the selected samples."""
    mask = sel_ce > threshold
    coeff = lamb * torch.exp(sel_ce.detach() - threshold)
    weighted = ce * coeff * mask
    return (weighted.mean() if mask.sum() == 0 else weighted.sum() / mask.sum()), mask
