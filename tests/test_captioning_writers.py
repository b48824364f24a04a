"""Caption writers: validation, a real loopback OpenAI-style server, a tiny random transformers LLM, class prompts."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emocap.captioning.class_prompts import describe_classes, facs_descriptions, resolve_labels
from emocap.captioning.endpoint import OpenAIChatWriter, RateLimiter
from emocap.captioning.facts import facts_from_distribution
from emocap.captioning.writers import WriterError, build_messages, parse_captions, validate_captions
from emocap.prompts import load_prompt_set

HAPPY = facts_from_distribution({"happiness": 0.9, "surprise": 0.1}, estimates={12: 0.8, 6: 0.5, 25: 0.3})
GOOD = {
    "global": "a clearly happy face with a broad smile",
    "local": ["The lip corners are pulled up: AU12 lip corner puller, high.", "The cheeks lift: AU6 cheek raiser, moderate."],
    "summary": "The smile and raised cheeks show happiness.",
}


def test_parse_and_validate_catch_bad_output():
    caps = parse_captions("Sure! " + json.dumps(GOOD) + " hope this helps")
    validate_captions(caps, HAPPY)
    with pytest.raises(WriterError, match="no JSON"):
        parse_captions("happy face")
    with pytest.raises(WriterError, match="lacks summary"):
        parse_captions(json.dumps({"global": "x", "local": []}))
    bad = dict(GOOD, **{"global": "an angry face with a smile"})
    with pytest.raises(WriterError, match="names anger, contradicting the dominant emotion happiness"):
        validate_captions(parse_captions(json.dumps(bad)), HAPPY)
    with pytest.raises(WriterError, match="longer than 200"):
        validate_captions(dict(GOOD, **{"global": "happy " * 50}), HAPPY)
    with pytest.raises(WriterError, match="no local sentence"):
        validate_captions(dict(GOOD, local=[]), HAPPY)
    prompt = build_messages(HAPPY)
    assert "do not invent" in prompt[0]["content"]
    facts = json.loads(prompt[1]["content"].split("FACTS: ", 1)[1])
    assert facts["dominant_emotion"] == "happiness"
    assert {a["au"] for a in facts["action_units"]} == {"AU6", "AU12", "AU25"}


class _ChatServer:
    """A loopback HTTP server speaking the OpenAI chat-completions format; answers come from ``reply(body)``."""

    def __init__(self, reply):
        self.requests = []
        self.active = 0
        self.max_active = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    n = len(outer.requests)
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                time.sleep(0.02)
                status, content = reply(body, n)
                with lock:
                    outer.active -= 1
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _answer_from_facts(body, n):
    """A well-behaved model: captions from the facts in the prompt; every third answer contradicts them."""
    facts = json.loads(body["messages"][-1]["content"].split("FACTS: ", 1)[1])
    emotion = facts["dominant_emotion"]
    if n % 3 == 0:
        return 200, json.dumps({"global": "a furious and disgusted face", "local": ["x"], "summary": "rage."})
    local = [f"{r}: {s}." for r, s in facts["regions"].items()] or []
    return 200, json.dumps({"global": f"a face showing {emotion}", "local": local, "summary": f"The evidence points to {emotion}."})


def test_openai_writer_end_to_end_with_fallback_and_key(monkeypatch):
    monkeypatch.setenv("EMOCAP_TEST_KEY", "sk-test-123")
    with _ChatServer(_answer_from_facts) as server:
        writer = OpenAIChatWriter(model="tiny", base_url=server.url, api_key_env="EMOCAP_TEST_KEY", concurrency=4, retries=0)
        items = [(HAPPY, f"k{i}", None) for i in range(9)]
        out = writer.write_many(items)
    assert len(server.requests) == 9 and server.max_active >= 2  # concurrent requests
    assert all(r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer sk-test-123" for r in server.requests)
    assert server.requests[0]["body"]["model"] == "tiny"
    used = [o["writer"] for o in out]
    assert used.count("openai") == 6 and used.count("templates") == 3  # every third answer was invalid
    fallback = [o for o in out if o["writer"] == "templates"]
    assert all("contradicting the dominant emotion" in o["fallback_reason"] for o in fallback)
    good = next(o for o in out if o["writer"] == "openai")
    assert good["global"] == "a face showing happiness" and good["local"]


def test_openai_writer_sends_the_image_to_vision_endpoints():
    import base64

    with _ChatServer(lambda body, n: (200, json.dumps(GOOD))) as server:
        writer = OpenAIChatWriter(model="m", base_url=server.url, retries=0, concurrency=1, send_image=True)
        assert writer.write(HAPPY, "k", b"\x89PNG fake")["writer"] == "openai"
    content = server.requests[0]["body"]["messages"][-1]["content"]
    assert content[0]["type"] == "text" and content[0]["text"].startswith("FACTS: ")
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == b"\x89PNG fake"


def test_openai_writer_retries_with_backoff_then_succeeds():
    def flaky(body, n):
        return (429, "") if n < 3 else (200, json.dumps(GOOD))

    with _ChatServer(flaky) as server:
        writer = OpenAIChatWriter(model="m", base_url=server.url, retries=3, backoff=0.05, concurrency=1)
        t0 = time.monotonic()
        out = writer.write(HAPPY, "k")
        elapsed = time.monotonic() - t0
    assert out["writer"] == "openai" and len(server.requests) == 3
    assert elapsed >= 0.05 + 0.1  # backoff 0.05 then 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_falls_back_and_stops_calling():
    writer = OpenAIChatWriter(model="m", base_url=f"http://127.0.0.1:{_free_port()}/v1", retries=1, backoff=0.01,
                              concurrency=1, max_consecutive_failures=2, timeout=2)
    outs = [writer.write(HAPPY, f"k{i}") for i in range(5)]
    assert all(o["writer"] == "templates" for o in outs)
    assert "cannot reach" in outs[0]["fallback_reason"]
    assert "unreachable" in outs[-1]["fallback_reason"]
    assert writer.calls == 2  # after two connection failures in a row, no more calls


def test_rate_limiter_spaces_calls():
    limiter = RateLimiter(50.0)
    t0 = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - t0 >= 5 / 50 - 0.01


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory):
    """A randomly initialised 1-layer GPT-2 with a word-level tokenizer built here (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["[UNK]", "[EOS]", "{", "}", "[", "]", ":", ",", '"', "global", "local", "summary", "face", "happy",
             "the", "a", "smile", "lip", "corners", "up", "AU12"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]")
    folder = tmp_path_factory.mktemp("tiny-llm")
    fast.save_pretrained(folder)
    cfg = GPT2Config(vocab_size=len(words), n_positions=512, n_embd=16, n_layer=1, n_head=2,
                     bos_token_id=1, eos_token_id=1)
    GPT2LMHeadModel(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def test_local_llm_writer_runs_end_to_end_and_falls_back(tiny_llm_dir, tmp_path):
    from emocap.captioning.shards import build_captions
    from emocap.captioning.llm_local import TransformersWriter
    from emocap.captioning.sources import Sample

    writer = TransformersWriter(str(tiny_llm_dir), max_new_tokens=12, device="cpu")
    assert writer.name == "llm" and not any(tiny_llm_dir.glob("*.bin"))
    text = writer.generate(build_messages(HAPPY))
    assert isinstance(text, str)
    out = writer.write(HAPPY, "k1")
    assert out["writer"] == "templates" and out["fallback_reason"].startswith("llm: ")  # random weights: invalid

    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (48, 48), 100).save(buf, format="PNG")
    data = buf.getvalue()
    samples = [Sample(key=f"s{i}", source_file=f"s{i}", read_bytes=lambda: data, image_ext="png",
                      distribution={"happiness": 1.0}) for i in range(3)]
    report = build_captions(samples, tmp_path / "o", writer=writer, progress=False, dedup=False)
    assert report["writer_counts"] == {"templates": 3} and report["writer_fallbacks"] == 3
    assert all(f["reason"].startswith("llm: ") for f in report["fallbacks"])
    with pytest.raises(ValueError, match="cannot load the llm writer model"):
        TransformersWriter(str(tmp_path / "missing"), device="cpu")


def test_class_prompts_offline_and_through_an_endpoint(tmp_path):
    labels = resolve_labels(["rafdb-compound"])
    assert len(labels) == 11 and "happily surprised" in labels
    offline = describe_classes(labels, None, per_level=2, name="c")
    for label in labels:
        assert len(offline["descriptions"][label]) == 6 and set(offline["levels"][label]) == {"short", "medium", "detailed"}
    assert "AU12" in " ".join(offline["levels"]["happily surprised"]["detailed"])
    path = tmp_path / "c.json"
    path.write_text(json.dumps(offline))
    ps = load_prompt_set(None, descriptions=str(path))
    assert ps.descriptions_for("sadly angry") == offline["descriptions"]["sadly angry"]

    def reply(body, n):
        ask = body["messages"][-1]["content"]
        if "sadly angry" in ask:
            return 200, json.dumps(["a happy grin"] * 2)  # names happiness: invalid for "sadly angry"
        level_words = {"short": "the brows drop", "medium": "the brows are lowered and the lip corners are pulled down hard",
                       "detailed": "the brows are lowered and drawn together (AU4) while the lip corners are pulled down (AU15) and the chin rises (AU17)"}
        level = "short" if "at most 12" in ask else ("medium" if "8 to 30" in ask else "detailed")
        return 200, json.dumps([level_words[level], level_words[level] + " again"])

    with _ChatServer(reply) as server:
        writer = OpenAIChatWriter(model="m", base_url=server.url, retries=0, concurrency=1)
        data = describe_classes(["sadly angry", "anger"], writer, per_level=2)
    assert data["levels"]["anger"]["short"] == ["the brows drop", "the brows drop again"]
    fb = data["generated_by"]["fallbacks"]
    assert {f["class"] for f in fb} == {"sadly angry"} and len(fb) == 3
    assert data["levels"]["sadly angry"] == facs_descriptions("sadly angry", 2)


def test_bundled_compound_prompt_set_loads():
    ps = load_prompt_set("compound11")
    labels = resolve_labels(["rafdb-compound"])
    for label in labels:
        assert len(ps.descriptions_for(label)) >= 3, label
        assert ps.texts_for(label)


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    """A randomly initialised tiny LLaVA (1-layer CLIP vision tower + 1-layer Llama) with its processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["[UNK]", "[EOS]", "<image>", "{", "}", "happy", "face", "USER:", "ASSISTANT:"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]", pad_token="[EOS]",
                                   extra_special_tokens={"image_token": "<image>"})
    template = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                "<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %}ASSISTANT: {% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=fast, patch_size=16, vision_feature_select_strategy="default", chat_template=template,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=16)
    text = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, eos_token_id=1,
                       pad_token_id=1)
    folder = tmp_path_factory.mktemp("tiny-vlm")
    LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_index=2,
                                              vision_feature_layer=-1)).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_local_vlm_writer_sees_the_image_and_falls_back(tiny_vlm_dir):
    from PIL import Image
    import io

    from emocap.captioning.writers import make_writer

    writer = make_writer("vlm", model=str(tiny_vlm_dir), max_new_tokens=6, device="cpu")
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (90, 90, 90)).save(buf, format="PNG")
    inputs = writer._inputs(build_messages(HAPPY), buf.getvalue())
    assert inputs["pixel_values"].shape[-2:] == (32, 32)  # the face image goes into the model
    assert (inputs["input_ids"] == 2).sum() >= 1           # with its image tokens in the prompt
    out = writer.write(HAPPY, "k", buf.getvalue())
    assert out["writer"] == "templates" and out["fallback_reason"].startswith("vlm: ")
    with pytest.raises(ValueError, match="needs --writer-model"):
        make_writer("vlm")
