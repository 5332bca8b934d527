"""`tlm serve` under mpirun with --tp-size 2 against the same server in one process, on a tiny
random Llama made here (4 heads, 2 KV heads): rank 0 serves HTTP and sends each turn of its
engine loop to rank 1, and both compute their shards of every prefill, decode step, learning
step and export. The same requests in the same order to both servers:

  - 8 prompts to session "tlm/s" one by one (chunks of 4: two learned chunks, 8 TLM steps at
    lr 1e-3, LoRA on all 7 projections): every greedy answer equal;
  - then three requests at once to the session, the shared adapter and the base model (one
    decode batch, each row its own LoRA): every answer equal;
  - the session's exported adapter within 1e-5 of the one-process server's (TP sums in
    another order; the bound `tlm adapt`'s TP test uses);
  - SIGUSR1 to mpirun: every rank stops cleanly (exit 0) after rank 0 checkpointed the full
    tensors, which a one-process server resumes (--resume latest): its export of the session
    is bitwise the TP server's.
"""
import concurrent.futures
import signal
import unittest

import numpy as np
from safetensors.numpy import load_file

import tlm_testing as T
from test_serve import Server, chat
from tiny_llama import PROMPTS, make_tiny_llama

TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


class ServeUnderMpirun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = T.tmpdir("tlm-serve-mpi-")
        cls.model_dir = cls.work / "model"
        make_tiny_llama(cls.model_dir, vocab_multiple=4)

    def flags(self, name):
        return ["--model", self.model_dir, "--chat-template", "chatml", "--device", "cpu", "--stream-batch", 4,
                "--lr", "1e-3", "--lora-targets", TARGETS, "--output-dir", self.work / name]

    def exercise(self, server):
        client = server.client()
        answers = [chat(client, "tlm/s", p, max_tokens=6) for p in PROMPTS[:8]]
        server.wait_learned("tlm/s", 8)
        models = ["tlm/s", "tlm", "base"]
        with concurrent.futures.ThreadPoolExecutor(len(models)) as pool:
            together = list(pool.map(lambda m: chat(server.client(), m, PROMPTS[9], max_tokens=8, stream=m == "tlm"),
                                     models))
        return answers, together, load_file(server.export("tlm/s") / "adapter_model.safetensors")

    def test_tp2_serves_and_learns_as_one_process(self):
        one = Server(*self.flags("single"))
        try:
            ref_answers, ref_together, ref_adapter = self.exercise(one)
        finally:
            code, err = one.stop()
        self.assertEqual(code, 0, err[-2000:])

        ck = self.work / "ck-tp2"
        tp = Server(*self.flags("tp2"), "--tp-size", 2, "--collective-timeout", 120, "--checkpoint-dir", ck,
                    launcher=T.MPIRUN + ["-np", "2"], env=T.MPI_ENV, threads=1, stop_signal=signal.SIGUSR1)
        try:
            answers, together, adapter = self.exercise(tp)
        finally:
            code, err = tp.stop()
        self.assertEqual(code, 0, err[-3000:])
        self.assertIn("tp 2", err)
        self.assertEqual(answers, ref_answers)
        self.assertEqual(together, ref_together)
        self.assertEqual(sorted(adapter), sorted(ref_adapter))
        worst = max(float(np.abs(adapter[k] - ref_adapter[k]).max()) for k in ref_adapter)
        print(f"[parity] tlm serve at tp 2: answers equal; session adapter max abs diff {worst:.3e} over "
              f"{len(ref_adapter)} tensors", flush=True)
        self.assertLessEqual(worst, 1e-5)

        back = Server(*self.flags("resumed"), "--checkpoint-dir", ck, "--resume", "latest", "--learn", "false")
        try:
            self.assertEqual(back.adapters()["tlm/s"]["learned_prompts"], 8)
            resumed = load_file(back.export("tlm/s") / "adapter_model.safetensors")
        finally:
            code, err = back.stop()
        self.assertEqual(code, 0, err[-2000:])
        for k in adapter:
            self.assertTrue(np.array_equal(resumed[k], adapter[k]), f"{k}: the TP checkpoint resumed in one process")


if __name__ == "__main__":
    T.main()
