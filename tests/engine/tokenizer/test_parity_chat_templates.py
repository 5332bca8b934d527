"""tokenizer.parity_chat_templates: our recognised chat templates render exactly what HF's
apply_chat_template(messages, tokenize=False, add_generation_prompt=...) renders from the
real Jinja texts, and the rendered prompts tokenize to the same ids.

Templates: SmolLM2's (from the default model's GGUF), a Qwen2.5 one (default system prompt,
tool branch), Meta's Llama-3 (on a trained Llama-3-style BPE), Meta's Llama-2 (on a trained
SentencePiece model). Llama-3.1's dated template and Mistral's [INST] one must not be
recognised."""
import os
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import tok_fixtures  # noqa: E402
import tlm_testing  # noqa: E402
import tlm_testing

QWEN25_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
    "roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
    "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
    "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

LLAMA31_TEMPLATE_HEAD = (
    "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- set date_string = "
    "\"26 Jul 2024\" %}\n{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n")

MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}"
    "{% endfor %}")

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
GEMMA3_TEMPLATE = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

CHATS = [
    [{"role": "user", "content": "Hello!"}],
    [SYSTEM, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Tell me a joke."}],
    [SYSTEM, {"role": "user", "content": "  padded question \n"},
     {"role": "assistant", "content": "\n answer with spaces  "},
     {"role": "user", "content": "Ünïcödé 😀 東京\n\nsecond paragraph\t"}],
    [SYSTEM, {"role": "user", "content": "Write code:\n```py\nprint('x')\n```"},
     {"role": "assistant", "content": "Done."}],
    [{"role": "user", "content": ""}],
]


class ChatTemplateParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tlm_testing.tmpdir("tlm-tok-chat-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def compare(self, name, hf_tok, template_text, probe_target, expect_name,
                expect_system=None, chats=CHATS):
        hf_tok.chat_template = template_text
        requests = []
        refs = []
        for messages in chats:
            for gen in (True, False):
                requests.append({"jinja": template_text, "messages": messages,
                                 "add_generation_prompt": gen})
                refs.append(hf_tok.apply_chat_template(messages, tokenize=False,
                                                       add_generation_prompt=gen))
        resp = tok_fixtures.probe({**probe_target, "chats": requests}, self.work)
        bad_text = bad_ids = 0
        for out, ref in zip(resp["chats"], refs):
            self.assertTrue(out.get("recognised"), f"{name}: template not recognised: {out}")
            self.assertEqual(out["name"], expect_name)
            self.assertEqual(out["default_system"], expect_system)
            if out["rendered"] != ref:
                bad_text += 1
                print(f"[parity] {name} render mismatch:\n ours {out['rendered']!r}\n hf   {ref!r}")
            if out["ids"] != hf_tok(ref, add_special_tokens=False)["input_ids"]:
                bad_ids += 1
        print(f"[parity] chat template {name}: {len(refs)} renders; text mismatches {bad_text}, "
              f"token-id mismatches {bad_ids}", flush=True)
        self.assertEqual(bad_text, 0)
        self.assertEqual(bad_ids, 0)
        return resp

    def smollm2(self):
        from transformers import AutoTokenizer

        model = tlm_testing.DEFAULT_MODEL
        if not model or not os.path.exists(model):
            self.skipTest("TLM_DEFAULT_MODEL is not set")
        tok = AutoTokenizer.from_pretrained(os.path.dirname(model),
                                            gguf_file=os.path.basename(model))
        return tok, {"gguf": model}

    def test_smollm2_template_from_gguf(self):
        tok, target = self.smollm2()
        gguf_template = tok.chat_template
        self.assertIn("SmolLM", gguf_template)
        self.compare("smollm2", tok, gguf_template, target, "chatml",
                     "You are a helpful AI assistant named SmolLM, trained by Hugging Face")

    def test_qwen25_template(self):
        tok, target = self.smollm2()
        self.compare("qwen2.5", tok, QWEN25_TEMPLATE, target, "chatml",
                     "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")

    def test_llama3_template(self):
        from transformers import AutoTokenizer

        directory = self.work / "llama3"
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                    "<|end_header_id|>", "<|eot_id|>"]
        tok_fixtures.train_byte_level_bpe(
            directory, tok_fixtures.training_corpus(seed=3, lines=1500), specials,
            vocab_size=1500, add_bos_template="<|begin_of_text|>",
            tokenizer_config={"tokenizer_class": "PreTrainedTokenizerFast",
                              "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
        hf = AutoTokenizer.from_pretrained(str(directory))
        self.compare("llama3", hf, LLAMA3_TEMPLATE, {"dir": str(directory)}, "llama3")

    def test_llama2_template(self):
        from transformers import AutoTokenizer

        directory = self.work / "llama2"
        tok_fixtures.train_sentencepiece(
            directory, tok_fixtures.training_corpus(seed=4, lines=3000), vocab_size=900,
            tokenizer_config={"tokenizer_class": "LlamaTokenizer", "add_bos_token": True,
                              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                              "legacy": False})
        hf = AutoTokenizer.from_pretrained(str(directory))
        self.compare("llama2", hf, LLAMA2_TEMPLATE, {"dir": str(directory)}, "llama2")
        # Both refuse a conversation whose roles do not alternate.
        bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        resp = tok_fixtures.probe({"chats": [{"jinja": LLAMA2_TEMPLATE, "messages": bad}]},
                                  self.work)
        self.assertIn("alternate", resp["chats"][0].get("error", ""))
        with self.assertRaises(Exception):
            hf.apply_chat_template(bad, tokenize=False)

    def test_gemma3_template(self):
        # Google's Gemma 3 template (chat_template.jinja of gemma-3-*-it), rendered by
        # transformers with bos_token "<bos>"; token ids through the SmolLM2 tokenizer (both sides).
        tok, target = self.smollm2()
        tok.bos_token = "<bos>"
        self.compare("gemma3", tok, GEMMA3_TEMPLATE, target, "gemma")

    def test_unrecognised_and_names(self):
        resp = tok_fixtures.probe({"chats": [
            {"jinja": LLAMA31_TEMPLATE_HEAD, "messages": []},
            {"jinja": MISTRAL_TEMPLATE, "messages": []},
            {"jinja": "{{ messages[0]['content'] }}", "messages": []},
            {"name": "chatml", "messages": [{"role": "user", "content": "x"}]},
            {"name": "alpaca", "messages": [{"role": "user", "content": "x"}]},
            {"name": "raw", "messages": [{"role": "user", "content": "x"}]},
            {"name": "vicuna", "messages": []},
        ]}, self.work)
        chats = resp["chats"]
        self.assertFalse(chats[0]["recognised"])
        self.assertFalse(chats[1]["recognised"])
        self.assertFalse(chats[2]["recognised"])
        self.assertEqual(chats[3]["rendered"], "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")
        self.assertTrue(chats[4]["rendered"].endswith("### Instruction:\nx\n\n### Response:\n"))
        self.assertEqual(chats[5]["rendered"], "x")
        self.assertIn("valid names: chatml, llama3, llama2, gemma, alpaca, raw", chats[6]["error"])


if __name__ == "__main__":
    tlm_testing.main()
